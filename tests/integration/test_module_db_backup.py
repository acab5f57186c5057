"""db_backup, db_restore and backup_prune through ansible-playbook, against the bed's SeaweedFS and a real
PostgreSQL on a network of the test's own.  Each test has a bucket of its own, removed afterwards."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from backup_support import (
    ModuleRun,
    keys,
    manifest,
    run_module,
    s3_args,
    tools_containers,
    uploads,
)
from conftest import wait_for
from s3fault import FaultProxy

DB_USER = "app"
DB_NAME = "appdb"
TABLES = {"cars": 120, "owners": 45, "trips": 300}
SAFETY_TIMEOUT = 300  # a fault must fail the run well within this


class Postgres:
    def __init__(self, container, port: int, password: str):
        self.container = container
        self.name = container.name
        self.port = port
        self.password = password

    def connect(self, dbname=DB_NAME):
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=DB_USER,
            password=self.password,
            dbname=dbname,
            connect_timeout=5,
            autocommit=True,
        )

    def query(self, sql, params=None, dbname=DB_NAME):
        with self.connect(dbname) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def databases(self) -> set[str]:
        return {row[0] for row in self.query("SELECT datname FROM pg_database WHERE NOT datistemplate")}

    def fingerprint(self, dbname=DB_NAME) -> dict:
        """Every table's row count and a checksum of its content, in key order."""
        result = {}
        for (table,) in self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", dbname=dbname):
            count, digest = self.query(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t",  # noqa: S608 - our own table names
                dbname=dbname,
            )[0]
            result[table] = (count, digest)
        return result


@pytest.fixture
def postgres(network, run_container, bed_image) -> Postgres:
    password = f"pw-{uuid.uuid4().hex}"
    container, ports = run_container(
        bed_image("postgres"),
        name=f"pydeploy-test-bkpg-{uuid.uuid4().hex[:8]}",
        ports={"5432/tcp": None},
        network=network.name,
        environment={"POSTGRES_USER": DB_USER, "POSTGRES_PASSWORD": password, "POSTGRES_DB": DB_NAME},
    )
    db = Postgres(container, ports["5432/tcp"], password)

    def ready():
        container.reload()
        if container.status in ("exited", "dead"):
            pytest.fail(f"postgres exited:\n{container.logs().decode()}")
        db.query("SELECT 1")
        return True

    wait_for(ready, timeout=120, what="postgres")
    with db.connect() as conn:
        conn.execute("CREATE TABLE owners (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("CREATE TABLE cars (id int PRIMARY KEY, owner int REFERENCES owners, model text, price numeric)")
        conn.execute("CREATE INDEX cars_model ON cars (model)")
        conn.execute("CREATE TABLE trips (id int PRIMARY KEY, car int REFERENCES cars, km real, note text)")
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0002')")
        conn.execute("INSERT INTO owners SELECT i, 'owner ' || i FROM generate_series(1, 45) i")
        conn.execute(
            "INSERT INTO cars SELECT i, 1 + i % 45, 'model ' || (i % 7), i * 1000.5 FROM generate_series(1, 120) i"
        )
        conn.execute(
            "INSERT INTO trips SELECT i, 1 + i % 120, i * 1.25, repeat(md5(i::text), 20) FROM generate_series(1, 300) i"
        )
    return db


@pytest.fixture
def lock_path(tmp_path) -> str:
    return str(tmp_path / "backup.lock")


@pytest.fixture
def base(postgres, network, s3conf, bucket, lock_path) -> dict:
    return {
        "engine": "postgres",
        "container": postgres.name,
        "network": network.name,
        "database": DB_NAME,
        "lock_path": lock_path,
        **s3_args(s3conf, bucket),
    }


def secrets_of(postgres, s3conf) -> list[str]:
    return [postgres.password, s3conf["secret_key"]]


def object_sha256(s3, bucket, key) -> str:
    return hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


def scratch_databases(postgres) -> set[str]:
    return {name for name in postgres.databases() if "_restore_" in name}


# --------------------------------------------------------------------------- backup, restore, verify, live


def test_backup_restore_verify_and_live(tmp_path, postgres, base, s3, s3conf, bucket, docker_client, lock_path):
    secrets = secrets_of(postgres, s3conf)
    live_before = postgres.fingerprint()
    assert {table: live_before[table][0] for table in TABLES} == TABLES

    args = {**base, "release": "v20251105_143022", "migration_revision": "0002", "sse": "AES256"}
    plan = run_module(tmp_path, "db_backup", args, check=True, secrets=secrets)
    assert not plan.failed, plan.explain()
    assert plan.result["changed"] is True
    assert plan.result["msg"].startswith(f"would dump postgres database {DB_NAME} of container {postgres.name} to ")
    assert keys(s3, bucket) == set() and uploads(s3, bucket) == []
    assert tools_containers(docker_client, lock_path) == []

    done = run_module(tmp_path, "db_backup", args, secrets=secrets)
    assert not done.failed, done.explain()
    result = done.result
    key = result["key"]
    assert result["changed"] is True
    assert key.startswith(f"backups/{DB_NAME}/{DB_NAME}-") and key.endswith(".dump.zst")
    assert keys(s3, bucket) == {key, key + ".manifest.json"}
    assert object_sha256(s3, bucket, key) == result["sha256"]
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == result["size"] and head["ServerSideEncryption"] == "AES256"
    stored = manifest(s3, bucket, key)
    assert stored == result["manifest"]
    assert stored["counts"] == {f"public.{t}": n for t, n in {**TABLES, "alembic_version": 1}.items()}
    assert "cars_model" in stored["indexes"]["public.cars"]
    assert (stored["engine"], stored["format"], stored["compression"]) == ("postgres", "custom", "zstd")
    assert (stored["release"], stored["migration_revision"], stored["verified"]) == ("v20251105_143022", "0002", None)
    assert stored["server_version"].startswith("15") and "pg_dump" in stored["tool_version"]
    assert result["throughput"] > 0 and result["duration"] >= 0
    assert any(argv[0] == "pg_dump" and "--compress=0" in argv for argv in result["commands"])
    assert tools_containers(docker_client, lock_path) == []

    # restore into a scratch database: every table's rows and content
    restore_args = {k: v for k, v in base.items()}
    plan = run_module(tmp_path, "db_restore", restore_args, check=True, secrets=secrets)
    assert not plan.failed, plan.explain()
    assert plan.result["key"] == key and plan.result["changed"] is True
    assert scratch_databases(postgres) == set()

    restored = run_module(tmp_path, "db_restore", restore_args, secrets=secrets)
    assert not restored.failed, restored.explain()
    scratch = restored.result["scratch_database"]
    assert scratch.startswith(f"{DB_NAME}_restore_")
    assert postgres.fingerprint(scratch) == live_before
    assert all(check["ok"] for check in restored.result["checks"])
    assert restored.result["checks"][0]["name"] == "sha256"
    postgres.query(f'DROP DATABASE "{scratch}"', dbname="postgres")

    # verify: checks reported, scratch dropped, manifest marked
    checks = [{"name": "owners named", "query": "SELECT count(*) FROM owners WHERE name LIKE 'owner %'", "expect": 45}]
    verified = run_module(tmp_path, "db_restore", {**restore_args, "mode": "verify", "checks": checks}, secrets=secrets)
    assert not verified.failed, verified.explain()
    names = [check["name"] for check in verified.result["checks"]]
    assert names[0] == "sha256" and "count public.trips" in names and "migration revision" in names
    assert "owners named" in names and "indexes public.cars" in names
    assert verified.result["verified"] is True
    assert scratch_databases(postgres) == set()
    marked = manifest(s3, bucket, key)
    assert marked["verified"] is True and marked["verified_at"]

    # a table dropped in live comes back with a live restore, after a fresh backup of what it replaces
    postgres.query("DROP TABLE trips")
    refused = run_module(tmp_path, "db_restore", {**restore_args, "key": key, "target": "live"}, secrets=secrets)
    assert refused.failed and "confirm_live" in refused.result["msg"], refused.explain()
    live_args = {**restore_args, "key": key, "target": "live", "confirm_live": True}
    plan = run_module(tmp_path, "db_restore", live_args, check=True, secrets=secrets)
    assert not plan.failed and plan.result["changed"] is True, plan.explain()
    assert "trips" not in postgres.fingerprint()
    live = run_module(tmp_path, "db_restore", live_args, secrets=secrets)
    assert not live.failed, live.explain()
    assert postgres.fingerprint() == live_before
    before = live.result["pre_restore_backup"]
    assert before["key"] != key and before["key"] in keys(s3, bucket)
    assert "public.trips" not in manifest(s3, bucket, before["key"])["counts"]
    assert scratch_databases(postgres) == set()
    assert not {name for name in postgres.databases() if "_restore_old_" in name}
    assert tools_containers(docker_client, lock_path) == []


def test_plain_gzip_with_local_copy_and_parallel_restore(tmp_path, postgres, base, s3, s3conf, bucket):
    secrets = secrets_of(postgres, s3conf)
    copies = tmp_path / "backups"
    done = run_module(
        tmp_path,
        "db_backup",
        {**base, "format": "plain", "compression": "gzip", "local_copy_dir": str(copies)},
        secrets=secrets,
    )
    assert not done.failed, done.explain()
    key = done.result["key"]
    assert key.endswith(".sql.gz")
    local = copies / key.rsplit("/", 1)[-1]
    assert local.stat().st_mode & 0o777 == 0o600
    assert hashlib.sha256(local.read_bytes()).hexdigest() == done.result["sha256"]
    assert (copies / (local.name + ".manifest.json")).exists()

    restored = run_module(tmp_path, "db_restore", {**base, "mode": "verify"}, secrets=secrets)
    assert not restored.failed, restored.explain()
    assert any(argv[0] == "psql" for argv in restored.result["commands"])

    custom = run_module(tmp_path, "db_backup", {**base, "compression": "none"}, secrets=secrets)
    assert not custom.failed, custom.explain()
    parallel = run_module(tmp_path, "db_restore", {**base, "key": custom.result["key"], "jobs": 3}, secrets=secrets)
    assert not parallel.failed, parallel.explain()
    assert any("--jobs=3" in argv for argv in parallel.result["commands"])
    assert postgres.fingerprint(parallel.result["scratch_database"]) == postgres.fingerprint()


def test_flipped_byte_fails_naming_key_and_hashes(tmp_path, postgres, base, s3, s3conf, bucket):
    secrets = secrets_of(postgres, s3conf)
    done = run_module(tmp_path, "db_backup", {**base, "compression": "gzip"}, secrets=secrets)
    assert not done.failed, done.explain()
    key, good = done.result["key"], done.result["sha256"]
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x10
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    bad = hashlib.sha256(bytes(data)).hexdigest()
    live_before = postgres.fingerprint()

    verify = run_module(tmp_path, "db_restore", {**base, "mode": "verify"}, secrets=secrets)
    assert verify.failed, verify.explain()
    msg = verify.result["msg"]
    assert key in msg and good in msg and bad in msg, msg
    assert msg.startswith("checksum mismatch")
    assert verify.result["scratch_dropped"] is True
    assert scratch_databases(postgres) == set()
    assert manifest(s3, bucket, key)["verified"] is False

    live = run_module(tmp_path, "db_restore", {**base, "target": "live", "confirm_live": True}, secrets=secrets)
    assert live.failed and key in live.result["msg"] and bad in live.result["msg"], live.explain()
    assert "pre_restore_backup" not in live.result
    assert scratch_databases(postgres) == set()
    assert postgres.fingerprint() == live_before


# --------------------------------------------------------------------------- failing early


def test_wrong_credentials_and_missing_bucket_fail_before_any_dump(
    tmp_path, postgres, base, s3, s3conf, bucket, docker_client, lock_path
):
    wrong = f"wrong-{uuid.uuid4().hex}"
    outcome = run_module(tmp_path, "db_backup", {**base, "secret_key": wrong}, secrets=[wrong, postgres.password])
    assert outcome.failed, outcome.explain()
    msg = outcome.result["msg"]
    assert msg.startswith(f"S3 bucket {bucket} at {s3conf['endpoint']}: access denied"), msg
    assert outcome.result["commands"] == []
    assert tools_containers(docker_client, lock_path) == []
    assert keys(s3, bucket) == set() and uploads(s3, bucket) == []

    missing = f"pydeploy-test-missing-{uuid.uuid4().hex[:8]}"
    outcome = run_module(tmp_path, "db_backup", {**base, "bucket": missing}, secrets=secrets_of(postgres, s3conf))
    assert outcome.failed, outcome.explain()
    assert outcome.result["msg"] == f"S3 bucket {missing} at {s3conf['endpoint']}: the bucket does not exist"
    assert tools_containers(docker_client, lock_path) == []

    outcome = run_module(tmp_path, "db_restore", {**base, "secret_key": wrong}, secrets=[wrong])
    assert outcome.failed and "access denied" in outcome.result["msg"], outcome.explain()


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("mode", ["error", "cut", "stall"])
def test_s3_faults_fail_within_bounded_time_and_leave_nothing(
    tmp_path, mode, postgres, base, s3, s3conf, bucket, docker_client, lock_path
):
    secrets = secrets_of(postgres, s3conf)
    earlier = run_module(tmp_path, "db_backup", base, secrets=secrets)
    assert not earlier.failed, earlier.explain()
    good = earlier.result["key"]

    with FaultProxy(s3conf["endpoint"], mode=mode) as proxy:
        args = {**base, "endpoint_url": proxy.url, "s3_read_timeout": 3, "s3_max_attempts": 2}
        outcome = run_module(tmp_path, "db_backup", args, secrets=secrets, timeout=SAFETY_TIMEOUT)
        assert proxy.faults >= 1
    assert outcome.failed, outcome.explain()
    msg = outcome.result["msg"]
    assert msg.startswith("upload of s3://") and "the upload was aborted" in msg, msg
    assert uploads(s3, bucket) == []
    assert keys(s3, bucket) == {good, good + ".manifest.json"}
    assert object_sha256(s3, bucket, good) == manifest(s3, bucket, good)["sha256"]
    assert tools_containers(docker_client, lock_path) == []


def test_killed_backup_is_swept_by_the_next_run(tmp_path, postgres, base, s3, s3conf, bucket, docker_client, lock_path):
    secrets = secrets_of(postgres, s3conf)
    with FaultProxy(s3conf["endpoint"], mode="stall") as proxy:
        runner = ModuleRun(tmp_path, "db_backup", {**base, "endpoint_url": proxy.url, "s3_read_timeout": 600})
        runner.start()
        try:
            wait_for(proxy.stalled.is_set, timeout=SAFETY_TIMEOUT, what="the first part to reach the proxy")
            left = uploads(s3, bucket)
            assert len(left) == 1
        finally:
            runner.kill()
    assert [upload["UploadId"] for upload in uploads(s3, bucket)] == [left[0]["UploadId"]]

    # a fresh run under the same lock removes the tools container and aborts the upload (age 0: all of them)
    swept = run_module(tmp_path, "db_backup", {**base, "stale_upload_age": 0}, secrets=secrets)
    assert not swept.failed, swept.explain()
    assert [upload["upload_id"] for upload in swept.result["swept_uploads"]] == [left[0]["UploadId"]]
    assert uploads(s3, bucket) == []
    assert tools_containers(docker_client, lock_path) == []
    assert swept.result["key"] in keys(s3, bucket)


# --------------------------------------------------------------------------- retention


def planted(index: int, now: datetime) -> tuple[str, dict, datetime]:
    when = now - timedelta(hours=12 * index, minutes=5)
    key = f"backups/{DB_NAME}/{DB_NAME}-{when.strftime('%Y%m%dT%H%M%SZ')}-{index:06x}.dump.zst"
    verified = True if index % 97 == 96 else (False if index % 5 == 0 else None)
    document = {"key": key, "finished": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "verified": verified, "sha256": "x"}
    return key, document, when


def test_retention_over_a_thousand_backups(tmp_path, s3, s3conf, bucket):
    import json

    now = datetime.now(UTC)
    entries = [planted(i, now) for i in range(1000)]

    def put(entry):
        key, document, _ = entry
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        s3.put_object(Bucket=bucket, Key=key + ".manifest.json", Body=json.dumps(document).encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, entries))
    s3.put_object(Bucket=bucket, Key=f"backups/{DB_NAME}/README.txt", Body=b"not a backup")
    assert len(keys(s3, bucket)) == 2001

    expected = {entries[i][0] for i in set(range(50, 1000)) - {96, 193, 290}}
    args = {**s3_args(s3conf, bucket), "name": DB_NAME, "max_age_days": 30, "max_count": 50, "min_verified": 3}
    plan = run_module(tmp_path, "backup_prune", args, check=True, secrets=[s3conf["secret_key"]])
    assert not plan.failed, plan.explain()
    assert set(plan.result["deleted"]) == expected and plan.result["changed"] is True
    assert len(keys(s3, bucket)) == 2001

    done = run_module(tmp_path, "backup_prune", args, secrets=[s3conf["secret_key"]])
    assert not done.failed, done.explain()
    assert set(done.result["deleted"]) == expected
    assert done.result["kept"] == 53
    kept = {entries[i][0] for i in set(range(1000))} - expected
    assert keys(s3, bucket) == kept | {key + ".manifest.json" for key in kept} | {f"backups/{DB_NAME}/README.txt"}

    again = run_module(tmp_path, "backup_prune", args, secrets=[s3conf["secret_key"]])
    assert not again.failed and again.result["changed"] is False and again.result["deleted"] == [], again.explain()
