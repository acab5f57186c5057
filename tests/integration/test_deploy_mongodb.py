"""A stack whose database is MongoDB (mongo_probe: the bed's Python image as its web process, the bed's
MongoDB, backups to a bucket of its own on the bed's S3), deployed once for every test that only reads it:
the app's URL in the 0600 env file only, its user reading and writing its database and no other, anonymous
access refused, the server's least privilege; a second deploy unchanged and --check --diff saying so;
backup.yml then restore.yml into a scratch database with the same documents and indexes, dropped by
restore_drop; the scheduled backup and drill run as cron runs them, shown by status.yml; a missing password
or a bad name stopped by the preflight naming the variable; a server removed by hand made again on its volume by
the next deploy, which sets the passwords rotated in the vault with the one the server still had."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import uuid
from pathlib import Path

import pymongo
import pytest
from backup_support import cron_command, empty_bucket, keys, manifest, s3_client
from conftest import REPO, teardown_stack, wait_for
from playbook import run_playbook

STACK = "mongo_probe"
INVENTORY = "tests/integration/inventories/mongo_probe"
CONTAINER = f"{STACK}-mongodb"
ENV_FILE = Path(f"/etc/pydeploy/{STACK}/app.env")
CRON_FILE = Path(f"/etc/cron.d/pydeploy-{STACK}-backup")
STATE = Path(f"/var/lib/pydeploy/{STACK}/backup")
SECRETS = REPO / ".bed" / "secrets"


def root_password() -> str:
    return (SECRETS / f"{STACK}_mongodb_root_password").read_text().strip()


def address() -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", f"{{{{.NetworkSettings.Networks.{STACK}.IPAddress}}}}", CONTAINER],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def client(url: str | None = None, **login) -> pymongo.MongoClient:
    """A client of the stack's server at its address on the stack network (the app's URL names its host)."""
    if url:
        return pymongo.MongoClient(
            url.replace(f"@{CONTAINER}:", f"@{address()}:"), directConnection=True, serverSelectionTimeoutMS=5000
        )
    return pymongo.MongoClient(address(), 27017, directConnection=True, serverSelectionTimeoutMS=5000, **login)


def root(password: str | None = None) -> pymongo.MongoClient:
    return client(username="root", password=password or root_password(), authSource="admin")


def app_env() -> dict[str, str]:
    lines = ENV_FILE.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def fingerprint(database: str) -> dict:
    """Per collection: count, a hash of the documents in _id order, and the indexes."""
    with root() as server:
        db = server[database]
        out = {}
        for name in sorted(db.list_collection_names()):
            docs = json.dumps(list(db[name].find().sort("_id", 1)), default=str, sort_keys=True)
            indexes = {
                key: (info["key"], info.get("unique", False)) for key, info in db[name].index_information().items()
            }
            out[name] = (db[name].count_documents({}), hashlib.sha256(docs.encode()).hexdigest(), indexes)
        return out


def scratch_databases() -> set[str]:
    with root() as server:
        return {name for name in server.list_database_names() if name.startswith(f"{STACK}_restore_")}


@pytest.fixture(scope="module")
def s3(bed):
    conn = s3_client(bed["s3"])
    bucket = f"mongo-probe-{uuid.uuid4().hex[:10]}"
    conn.create_bucket(Bucket=bucket)
    yield conn, bucket
    empty_bucket(conn, bucket)
    conn.delete_bucket(Bucket=bucket)


def playbook(name: str, bed, bucket: str, *, extra=None, **kwargs):
    conf = bed["s3"]
    s3 = {
        "endpoint_url": conf["endpoint"],
        "bucket": bucket,
        "prefix": "backups/",
        "region": conf["region"],
        "access_key": conf["access_key"],
        "secret_key": conf["secret_key"],
    }
    backup = {"s3": s3, "retention": {"max_count": 10, "min_verified": 1}}
    return run_playbook(name, INVENTORY, extra_vars={"stack_backup": backup, **(extra or {})}, **kwargs)


@pytest.fixture(scope="module")
def deployed(bed, docker_client, s3):
    _, bucket = s3
    teardown_stack(docker_client, STACK)
    run = playbook("deploy.yml", bed, bucket)
    assert run.rc == 0, run.explain()
    with client(app_env()["MONGODB_URL"]) as app:
        db = app.get_default_database()
        db.customers.insert_many([{"_id": i, "email": f"c{i}@example.test", "tier": i % 3} for i in range(30)])
        db.customers.create_index("email", unique=True, name="email_unique")
        db.orders.insert_many([{"_id": i, "customer": i % 30, "total": i * 2.5} for i in range(120)])
        db.orders.create_index([("customer", 1), ("total", -1)], name="customer_total")
    yield run
    teardown_stack(docker_client, STACK)


def test_the_app_reads_and_writes_its_database_only(deployed, docker_client):
    env = app_env()
    assert ENV_FILE.stat().st_mode & 0o777 == 0o600
    url = env["MONGODB_URL"]
    password = (SECRETS / f"{STACK}_mongodb_password").read_text().strip() + "@/:"
    # Percent-encoded: the password's @, / and : stay in the password.
    assert re.fullmatch(rf"mongodb://{STACK}:[^@/]+%40%2F%3A@{CONTAINER}:27017/{STACK}\?authSource={STACK}", url), url
    assert (env["MONGO_HOST"], env["MONGO_DB"]) == (CONTAINER, STACK)
    web = docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"]})
    assert web and all(password not in json.dumps(container.attrs) for container in web)
    assert password not in json.dumps(docker_client.containers.get(CONTAINER).attrs)
    assert root_password() not in json.dumps(docker_client.containers.get(CONTAINER).attrs)

    with client(url) as app:
        db = app.get_default_database()
        assert db.name == STACK
        db.notes.insert_one({"_id": "hello", "text": "written by the app"})
        assert db.notes.find_one({"_id": "hello"})["text"] == "written by the app"
        db.drop_collection("notes")
        assert app.list_database_names() == [STACK]
        with pytest.raises(pymongo.errors.OperationFailure) as refused:
            app.admin.system.users.find_one()
        assert refused.value.code == 13  # Unauthorized
        with pytest.raises(pymongo.errors.OperationFailure):
            app.config.settings.find_one()
    with client() as anonymous, pytest.raises(pymongo.errors.OperationFailure):
        anonymous[STACK].customers.find_one()


def test_the_server_runs_with_least_privilege_on_a_labelled_volume(deployed, docker_client):
    server = docker_client.containers.get(CONTAINER)
    host = server.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == ["CHOWN", "DAC_READ_SEARCH", "SETGID", "SETUID"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["PidsLimit"] == 1024
    assert host["Memory"] == 512 * 1024 * 1024 and host["NanoCpus"] == 10**9

    def healthy():
        server.reload()
        return server.attrs["State"]["Health"]["Status"] == "healthy"

    # The engine's own check (a ping in the container) runs every mongodb_healthcheck_interval.
    wait_for(healthy, timeout=90, what=f"{CONTAINER} healthy by the engine's check")
    assert server.labels["pydeploy.process"] == "mongodb"
    volume = docker_client.volumes.get(f"{STACK}-mongodata")
    assert volume.attrs["Labels"] == {"pydeploy.stack": STACK, "pydeploy.process": "mongodb"}
    secret = Path(f"/etc/pydeploy/{STACK}/mongodb/root_password")
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.stat().st_uid == 999


def test_a_second_deploy_changes_nothing_and_check_diff_says_so(bed, s3, deployed):
    _, bucket = s3
    again = playbook("deploy.yml", bed, bucket)
    assert again.rc == 0, again.explain()
    assert again.changed() == 0, again.changed_tasks()
    check = playbook("deploy.yml", bed, bucket, check=True, diff=True, extra={"pydeploy_fast_path": False})
    assert check.rc == 0, check.explain()
    assert check.changed() == 0, check.changed_tasks()


def test_backup_then_restore_into_scratch_round_trips(bed, s3, deployed):
    conn, bucket = s3
    before = fingerprint(STACK)
    assert {name: value[0] for name, value in before.items()} == {"customers": 30, "orders": 120}

    backup = playbook("backup.yml", bed, bucket)
    assert backup.rc == 0, backup.explain()
    key = backup.returned("pydeploy_backup")["key"]
    assert key.startswith(f"backups/{STACK}/") and key.endswith(".archive.zst"), key
    stored = manifest(conn, bucket, key)
    assert stored["engine"] == "mongodb" and stored["counts"] == {"customers": 30, "orders": 120}
    assert stored["verified"] is True
    summary = next(result["msg"] for name, result in backup.tasks() if name == "Summarise the backup")
    assert re.fullmatch(
        r"verified  yes: restored into a scratch database, (\d+)/\1 checks passed, dropped", summary[-1]
    )

    restore = playbook("restore.yml", bed, bucket, extra={"restore_key": key, "restore_target": "scratch"})
    assert restore.rc == 0, restore.explain()
    report = restore.returned("pydeploy_restore")
    scratch = report["into"]
    assert scratch.startswith(f"{STACK}_restore_"), report
    shown = next(result["msg"] for name, result in restore.tasks() if name == "Summarise the restore")
    assert any(line.startswith("verified  yes: ") for line in shown), shown
    # The same documents and the same indexes under another name.
    assert fingerprint(scratch) == before

    drop = playbook("restore.yml", bed, bucket, extra={"restore_drop": scratch})
    assert drop.rc == 0, drop.explain()
    assert scratch_databases() == set()
    assert fingerprint(STACK) == before


def test_scheduled_backup_and_drill_and_status(bed, s3, deployed):
    conn, bucket = s3
    for job in ("backup", "drill"):  # as cron would run them
        done = subprocess.run(cron_command(CRON_FILE, job), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (job, done.stdout[-2000:], done.stderr[-2000:])
    backup = json.loads((STATE / "backup.json").read_text())
    drill = json.loads((STATE / "drill.json").read_text())
    assert backup["state"] == "succeeded" and backup["result"]["key"] in keys(conn, bucket)
    assert drill["state"] == "succeeded" and drill["result"]["verified"] is True
    assert drill["result"]["key"] == backup["result"]["key"]
    assert scratch_databases() == set()

    status = run_playbook("status.yml", INVENTORY)
    assert status.rc == 0, status.explain()
    shown = next(result["msg"] for name, result in status.tasks() if name == "Show the state of this host")
    assert "succeeded, exit 0" in shown["backups"]["backup"] and backup["result"]["key"] in shown["backups"]["backup"]
    assert "succeeded, exit 0" in shown["backups"]["drill"], shown
    assert "mongodb" in json.dumps(shown["processes"]), shown["processes"]


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"mongodb_password": ""}, "mongodb_password is required"),
        ({"mongodb_database": "shop.v2"}, "mongodb_database shop.v2: letters, digits"),
    ],
    ids=["missing-password", "bad-database-name"],
)
def test_bad_settings_fail_in_the_preflight_naming_the_variable(bed, s3, deployed, docker_client, extra, variable):
    _, bucket = s3
    started = docker_client.containers.get(CONTAINER).attrs["State"]["StartedAt"]
    env = ENV_FILE.read_bytes()
    run = playbook("deploy.yml", bed, bucket, extra=extra)
    assert run.rc != 0
    assert any(variable in message for message in run.failure_messages()), run.failure_messages()
    assert run.changed() == 0, run.changed_tasks()
    assert "Run MongoDB" not in run.plays_with_results()
    assert docker_client.containers.get(CONTAINER).attrs["State"]["StartedAt"] == started
    assert ENV_FILE.read_bytes() == env


def test_a_removed_server_comes_back_with_its_data_and_rotated_passwords(bed, s3, deployed, docker_client):
    """Last: the server removed by hand and both passwords changed in the vault; one deploy makes the
    container again on its volume and sets the new passwords with the one the server still had."""
    _, bucket = s3
    before = fingerprint(STACK)
    old_root = root_password()
    new_root, new_app = f"root-{uuid.uuid4().hex}", f"app-{uuid.uuid4().hex}"
    docker_client.containers.get(CONTAINER).remove(force=True)

    run = playbook("deploy.yml", bed, bucket, extra={"mongodb_root_password": new_root, "mongodb_password": new_app})
    assert run.rc == 0, run.explain()
    assert "Start the server" in run.changed_tasks(), run.changed_tasks()
    assert docker_client.containers.get(CONTAINER).status == "running"
    with root(new_root) as server:
        assert server.admin.command("ping")["ok"] == 1
    with root(old_root) as old, pytest.raises(pymongo.errors.OperationFailure):
        old.admin.command("listDatabases")
    # The data kept on its volume; the app given its new password, which the server takes.
    with client(username="root", password=new_root, authSource="admin") as server:
        assert server[STACK].orders.count_documents({}) == 120
        assert sorted(server[STACK].customers.index_information()) == sorted(before["customers"][2])
    assert f":{new_app}@" in app_env()["MONGODB_URL"]
    with client(app_env()["MONGODB_URL"]) as app:
        assert app.get_default_database().customers.count_documents({}) == 30
