"""db_backup and db_restore for MongoDB through ansible-playbook: mongodump archives (gzip) in the bed's
SeaweedFS, restored into a scratch database and into live, documents and indexes compared."""

from __future__ import annotations

import hashlib
import json
import uuid

import pymongo
import pytest
from backup_support import keys, manifest, run_module, s3_args, tools_containers
from conftest import wait_for

ROOT = "root"
DB = "crm"


class Mongo:
    def __init__(self, container, port: int, password: str):
        self.container = container
        self.name = container.name
        self.client = pymongo.MongoClient(
            "127.0.0.1",
            port,
            username=ROOT,
            password=password,
            authSource="admin",
            directConnection=True,
            serverSelectionTimeoutMS=3000,
        )
        self.password = password

    def fingerprint(self, dbname: str = DB) -> dict:
        """Per collection: document count, a hash of every document in _id order, and the indexes."""
        db = self.client[dbname]
        result = {}
        for name in sorted(db.list_collection_names()):
            docs = json.dumps(list(db[name].find().sort("_id", 1)), default=str, sort_keys=True)
            indexes = {
                index: (info["key"], info.get("unique", False)) for index, info in db[name].index_information().items()
            }
            result[name] = (db[name].count_documents({}), hashlib.sha256(docs.encode()).hexdigest(), indexes)
        return result

    def scratch(self) -> set[str]:
        return {name for name in self.client.list_database_names() if "_restore_" in name}


@pytest.fixture
def mongo(network, run_container, bed_image) -> Mongo:
    password = f"pw-{uuid.uuid4().hex}"
    container, ports = run_container(
        bed_image("mongo"),
        name=f"pydeploy-test-bkmongo-{uuid.uuid4().hex[:8]}",
        ports={"27017/tcp": None},
        network=network.name,
        environment={"MONGO_INITDB_ROOT_USERNAME": ROOT, "MONGO_INITDB_ROOT_PASSWORD": password},
    )
    db = Mongo(container, ports["27017/tcp"], password)

    def ready():
        container.reload()
        if container.status in ("exited", "dead"):
            pytest.fail(f"mongo exited:\n{container.logs().decode()}")
        return db.client.admin.command("ping")["ok"] == 1

    wait_for(ready, timeout=120, what="mongo")
    crm = db.client[DB]
    crm.customers.insert_many([{"_id": i, "email": f"c{i}@example.test", "tier": i % 3} for i in range(25)])
    crm.customers.create_index([("email", pymongo.ASCENDING)], unique=True, name="email_unique")
    crm.orders.insert_many([{"_id": i, "customer": i % 25, "total": i * 1.5, "lines": [i, i + 1]} for i in range(140)])
    crm.orders.create_index([("customer", 1), ("total", -1)], name="customer_total")
    crm.events.insert_many([{"_id": i, "kind": "login" if i % 2 else "logout", "n": i} for i in range(500)])
    crm.events.create_index("kind", name="kind")
    yield db
    db.client.close()


def test_mongodump_gzip_round_trip_scratch_verify_and_live(tmp_path, mongo, network, s3, s3conf, bucket, docker_client):
    secrets = [mongo.password, s3conf["secret_key"]]
    lock_path = str(tmp_path / "backup.lock")
    base = {
        "engine": "mongodb",
        "container": mongo.name,
        "network": network.name,
        "database": DB,
        "lock_path": lock_path,
        **s3_args(s3conf, bucket),
    }
    live_before = mongo.fingerprint()
    assert {name: value[0] for name, value in live_before.items()} == {"customers": 25, "orders": 140, "events": 500}

    plan = run_module(tmp_path, "db_backup", {**base, "compression": "gzip"}, check=True, secrets=secrets)
    assert not plan.failed and plan.result["changed"] is True, plan.explain()
    assert keys(s3, bucket) == set()

    done = run_module(tmp_path, "db_backup", {**base, "compression": "gzip"}, secrets=secrets)
    assert not done.failed, done.explain()
    key = done.result["key"]
    assert key.startswith(f"backups/{DB}/{DB}-") and key.endswith(".archive.gz")
    stored = manifest(s3, bucket, key)
    assert stored["counts"] == {"customers": 25, "events": 500, "orders": 140}
    assert stored["counts_changed"] == {}
    assert "email_unique" in stored["indexes"]["customers"]
    assert stored["engine"] == "mongodb" and stored["server_version"].startswith("6.")
    assert "mongodump" in stored["tool_version"]
    # the password went into a file in the tools container, never onto a command line
    dump = next(argv for argv in done.result["commands"] if "--archive" in argv)
    assert any(arg.startswith("--config=") for arg in dump) and mongo.password not in json.dumps(dump)

    # scratch: the same documents and indexes under another name
    restored = run_module(tmp_path, "db_restore", base, secrets=secrets)
    assert not restored.failed, restored.explain()
    scratch = restored.result["scratch_database"]
    assert scratch.startswith(f"{DB}_restore_")
    assert mongo.fingerprint(scratch) == live_before
    assert all(check["ok"] for check in restored.result["checks"])
    mongo.client.drop_database(scratch)

    checks = [{"name": "gold customers", "query": {"collection": "customers", "filter": {"tier": 2}}, "expect": 8}]
    verified = run_module(tmp_path, "db_restore", {**base, "mode": "verify", "checks": checks}, secrets=secrets)
    assert not verified.failed, verified.explain()
    assert {"gold customers", "count orders", "indexes customers"} <= {c["name"] for c in verified.result["checks"]}
    assert mongo.scratch() == set()
    assert manifest(s3, bucket, key)["verified"] is True

    # a dropped collection comes back in live, after a fresh backup of what is replaced
    mongo.client[DB].drop_collection("orders")
    mongo.client[DB].notes.insert_one({"_id": 1, "text": "written after the backup"})
    live_args = {**base, "key": key, "target": "live", "confirm_live": True}
    plan = run_module(tmp_path, "db_restore", live_args, check=True, secrets=secrets)
    assert not plan.failed and "orders" not in mongo.fingerprint(), plan.explain()
    live = run_module(tmp_path, "db_restore", live_args, secrets=secrets)
    assert not live.failed, live.explain()
    assert mongo.fingerprint() == live_before
    before = live.result["pre_restore_backup"]["key"]
    assert before in keys(s3, bucket) and before != key
    assert manifest(s3, bucket, before)["counts"] == {"customers": 25, "events": 500, "notes": 1}
    assert mongo.scratch() == set()
    assert tools_containers(docker_client, lock_path) == []
