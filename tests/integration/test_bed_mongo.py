"""Contract tests for the bed's ``mongo`` stand-in image (``bed/images/mongo``).

The stand-in must behave like the official ``mongo:6.0`` image as far as our
Ansible roles rely on it: root user from ``MONGO_INITDB_ROOT_*`` with auth
enforced, data kept in ``/data/db`` across restarts without re-initialising,
a clear failure on half-given credentials, refusal of ``*.js`` init scripts
(there is no mongosh), and working ``mongodump``/``mongorestore`` archives.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pymongo
import pytest
from conftest import container_logs, wait_for
from pymongo.errors import OperationFailure

MONGO_PORT = "27017/tcp"
ROOT_USER = "root"
READY_TIMEOUT = 120.0

# Runs as the "mongodb" user against the temporary, socket/loopback-only mongod
# during first-start initialisation; counts how often it has been run.
INIT_SCRIPT = """#!/bin/bash
set -eu
python3 - <<'EOF'
import os
import pymongo

client = pymongo.MongoClient(
    "127.0.0.1",
    27017,
    username=os.environ["MONGO_INITDB_ROOT_USERNAME"],
    password=os.environ["MONGO_INITDB_ROOT_PASSWORD"],
    authSource="admin",
)
db = client[os.environ["MONGO_INITDB_DATABASE"]]
db.initdb_runs.update_one({"_id": "runs"}, {"$inc": {"count": 1}}, upsert=True)
client.close()
EOF
"""


@pytest.fixture
def mongo_image(bed_image) -> str:
    return bed_image("mongo")


@pytest.fixture
def clients():
    """Factory for pymongo clients on 127.0.0.1; all closed after the test."""
    opened: list[pymongo.MongoClient] = []

    def connect(port: int, username: str | None = None, password: str | None = None):
        kwargs = {}
        if username is not None:
            kwargs.update(username=username, password=password, authSource="admin")
        client = pymongo.MongoClient(
            "127.0.0.1",
            port,
            directConnection=True,
            serverSelectionTimeoutMS=2000,
            connectTimeoutMS=2000,
            **kwargs,
        )
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def new_password() -> str:
    return f"pw-{uuid.uuid4().hex}"


def root_env(password: str, **extra: str) -> dict:
    env = {"MONGO_INITDB_ROOT_USERNAME": ROOT_USER, "MONGO_INITDB_ROOT_PASSWORD": password}
    env.update(extra)
    return env


def wait_ready(container, connect, port: int, password: str) -> pymongo.MongoClient:
    """Wait until root can authenticate over the published port; return that client."""
    client = connect(port, ROOT_USER, password)

    def ready():
        container.reload()
        if container.status in ("exited", "dead"):
            pytest.fail(f"mongo container stopped while starting:\n{container_logs(container)}")
        return client.admin.command("ping")["ok"] == 1

    wait_for(ready, timeout=READY_TIMEOUT, what=f"mongo on 127.0.0.1:{port} to accept root")
    return client


def wait_exit(container) -> int:
    def exited():
        container.reload()
        return container.status in ("exited", "dead")

    wait_for(exited, timeout=READY_TIMEOUT, what="the mongo container to exit")
    return container.attrs["State"]["ExitCode"]


def init_dir(tmp_path, name: str, content: str, mode: int = 0o755):
    """A directory to bind-mount on /docker-entrypoint-initdb.d, readable by uid 999."""
    directory = tmp_path / "initdb"
    directory.mkdir()
    script = directory / name
    script.write_text(content)
    directory.chmod(0o755)
    script.chmod(mode)
    return {str(directory): {"bind": "/docker-entrypoint-initdb.d", "mode": "ro"}}


def test_root_user_is_created_and_auth_is_enforced(mongo_image, run_container, clients):
    password = new_password()
    container, ports = run_container(mongo_image, ports={MONGO_PORT: None}, environment=root_env(password))
    port = ports[MONGO_PORT]
    root = wait_ready(container, clients, port, password)

    status = root.admin.command("connectionStatus")["authInfo"]
    assert {"user": ROOT_USER, "db": "admin"} in status["authenticatedUsers"]
    assert {"role": "root", "db": "admin"} in status["authenticatedUserRoles"]
    root.contract.items.insert_one({"name": "written by root"})
    assert root.contract.items.count_documents({}) == 1
    assert "contract" in root.list_database_names()

    anonymous = clients(port)
    with pytest.raises(OperationFailure):
        anonymous.list_database_names()
    with pytest.raises(OperationFailure):
        anonymous.contract.items.find_one()

    with pytest.raises(OperationFailure):
        clients(port, ROOT_USER, "not-" + password).admin.command("ping")


def test_data_survives_restart_and_init_runs_once(mongo_image, run_container, clients, tmp_path):
    password = new_password()
    container, ports = run_container(
        mongo_image,
        ports={MONGO_PORT: None},
        environment=root_env(password, MONGO_INITDB_DATABASE="app"),
        volumes=init_dir(tmp_path, "10-count.sh", INIT_SCRIPT),
    )
    port = ports[MONGO_PORT]
    root = wait_ready(container, clients, port, password)
    assert root.app.initdb_runs.find_one({"_id": "runs"})["count"] == 1
    root.app.notes.insert_many([{"n": i} for i in range(5)])
    root.close()

    container.restart()
    root = wait_ready(container, clients, port, password)

    assert root.app.notes.count_documents({}) == 5
    assert root.app.initdb_runs.find_one({"_id": "runs"})["count"] == 1
    with pytest.raises(OperationFailure):
        clients(port).list_database_names()


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"),
        ("MONGO_INITDB_ROOT_PASSWORD", "MONGO_INITDB_ROOT_USERNAME"),
    ],
)
def test_half_given_root_credentials_fail(mongo_image, run_container, given, missing):
    container, _ = run_container(mongo_image, environment={given: "only-this-one"})
    assert wait_exit(container) != 0
    logs = container_logs(container)
    assert missing in logs, logs


def test_js_init_scripts_are_refused(mongo_image, run_container, tmp_path):
    container, _ = run_container(
        mongo_image,
        environment=root_env(new_password()),
        volumes=init_dir(tmp_path, "10-users.js", "db.getSiblingDB('app').x.insertOne({});\n", 0o644),
    )
    assert wait_exit(container) != 0
    logs = container_logs(container)
    assert "10-users.js" in logs and "not supported" in logs.lower(), logs


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI for 'docker exec -i'")
def test_mongodump_archive_restores_into_a_fresh_container(mongo_image, run_container, clients):
    source_password = new_password()
    source, source_ports = run_container(mongo_image, ports={MONGO_PORT: None}, environment=root_env(source_password))
    target_password = new_password()
    target, target_ports = run_container(mongo_image, ports={MONGO_PORT: None}, environment=root_env(target_password))

    src = wait_ready(source, clients, source_ports[MONGO_PORT], source_password)
    shop = src.shop
    shop.customers.insert_many([{"email": f"c{i}@example.test", "tier": i % 3} for i in range(25)])
    shop.orders.insert_many([{"customer": f"c{i % 25}@example.test", "total": i} for i in range(140)])
    shop.customers.create_index([("email", pymongo.ASCENDING)], unique=True, name="email_unique")

    dump = source.exec_run(
        [
            "mongodump",
            "--uri",
            f"mongodb://{ROOT_USER}:{source_password}@127.0.0.1:27017/?authSource=admin",
            "--db",
            "shop",
            "--archive",
            "--gzip",
        ],
        demux=True,
    )
    archive, dump_log = dump.output
    assert dump.exit_code == 0, dump_log
    assert archive, dump_log

    dst = wait_ready(target, clients, target_ports[MONGO_PORT], target_password)
    assert "shop" not in dst.list_database_names()
    restore = subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            target.id,
            "mongorestore",
            "--uri",
            f"mongodb://{ROOT_USER}:{target_password}@127.0.0.1:27017/?authSource=admin",
            "--archive",
            "--gzip",
        ],
        input=archive,
        capture_output=True,
        check=False,
    )
    assert restore.returncode == 0, restore.stderr.decode("utf-8", "replace")

    restored = dst.shop
    assert sorted(restored.list_collection_names()) == ["customers", "orders"]
    assert restored.customers.count_documents({}) == 25
    assert restored.orders.count_documents({}) == 140
    index = restored.customers.index_information()["email_unique"]
    assert index["key"] == [("email", 1)]
    assert index["unique"] is True
