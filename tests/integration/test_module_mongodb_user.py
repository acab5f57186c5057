"""pydeploy.stack.mongodb_user against the bed's MongoDB (a container of the test's own, published on
127.0.0.1): the app's user created with readWrite on its database only (check, real, check, real), its
password set again when the vault's changes, the root password rotated with the one the server still has,
and a root password the server refuses failing without showing it."""

from __future__ import annotations

import json
import uuid

import pymongo
import pytest
from conftest import wait_for
from playbook import module_task

ROOT_PASSWORD = f"root-{uuid.uuid4().hex}"
APP_PASSWORD = f"app-{uuid.uuid4().hex}@/:"


@pytest.fixture
def server(run_container, bed_image):
    container, ports = run_container(
        bed_image("mongo"),
        name=f"pydeploy-test-mongouser-{uuid.uuid4().hex[:8]}",
        ports={"27017/tcp": None},
        environment={"MONGO_INITDB_ROOT_USERNAME": "root", "MONGO_INITDB_ROOT_PASSWORD": ROOT_PASSWORD},
    )
    port = ports["27017/tcp"]

    def up():
        container.reload()
        if container.status in ("exited", "dead"):
            pytest.fail(f"mongo exited:\n{container.logs().decode()}")
        with login("root", ROOT_PASSWORD, "admin", port) as client:
            return client.admin.command("ping")["ok"] == 1

    wait_for(up, timeout=120, what="mongo")
    return port


def login(user: str, password: str, source: str, port: int) -> pymongo.MongoClient:
    return pymongo.MongoClient(
        "127.0.0.1",
        port,
        username=user,
        password=password,
        authSource=source,
        directConnection=True,
        serverSelectionTimeoutMS=3000,
    )


def args(port: int, **changes) -> dict:
    return {
        "login_host": "127.0.0.1",
        "login_port": port,
        "login_password": ROOT_PASSWORD,
        "name": "shop",
        "password": APP_PASSWORD,
        "database": "shop",
        "wait_timeout": 30,
        **changes,
    }


def run(tmp_path, port: int, check: bool = False, **changes) -> dict:
    rc, result, output = module_task(tmp_path, "mongodb_user", args(port, **changes), check=check, diff=True)
    for secret in (ROOT_PASSWORD, APP_PASSWORD, *changes.values()):
        if isinstance(secret, str) and len(secret) > 8:
            assert secret not in output
    assert rc == 0, output
    return result


def test_app_user_created_once_with_its_database_only(tmp_path, server):
    plan = run(tmp_path, server, check=True)
    assert plan["changed"] is True
    assert plan["actions"] == ["create the user shop in shop with readWrite on shop"]
    with login("root", ROOT_PASSWORD, "admin", server) as root:
        assert root.shop.command("usersInfo", "shop")["users"] == []

    done = run(tmp_path, server)
    assert done["changed"] is True and done["actions"] == plan["actions"]
    assert done["server_version"].startswith("6.")
    assert run(tmp_path, server, check=True)["changed"] is False
    again = run(tmp_path, server)
    assert again["changed"] is False and again["actions"] == []

    with login("root", ROOT_PASSWORD, "admin", server) as root:
        root.other.secrets.insert_one({"_id": 1})
    with login("shop", APP_PASSWORD, "shop", server) as app:
        app.shop.orders.insert_one({"_id": 1, "total": 9.5})
        assert app.shop.orders.count_documents({}) == 1
        with pytest.raises(pymongo.errors.OperationFailure) as refused:
            app.other.secrets.find_one()
        assert refused.value.code == 13  # Unauthorized
        # It sees only the databases it may use.
        assert app.list_database_names() == ["shop"]
    with pymongo.MongoClient("127.0.0.1", server, directConnection=True, serverSelectionTimeoutMS=3000) as anonymous:
        with pytest.raises(pymongo.errors.OperationFailure):
            anonymous.shop.orders.find_one()


def test_rotated_passwords_are_set_on_the_server(tmp_path, server):
    run(tmp_path, server)
    new_app = f"app2-{uuid.uuid4().hex}"
    plan = run(tmp_path, server, check=True, password=new_app)
    assert plan["actions"] == ["set the password of shop"]
    assert run(tmp_path, server, password=new_app)["changed"] is True
    with login("shop", new_app, "shop", server) as app:
        assert app.shop.command("ping")["ok"] == 1

    new_root = f"root2-{uuid.uuid4().hex}"
    rotation = {"login_password": new_root, "previous_passwords": [ROOT_PASSWORD], "password": new_app}
    plan = run(tmp_path, server, check=True, **rotation)
    assert plan["actions"] == ["set the password of root"]
    with login("root", ROOT_PASSWORD, "admin", server) as root:
        assert root.admin.command("ping")["ok"] == 1  # check mode changed nothing
    assert run(tmp_path, server, **rotation)["changed"] is True
    with login("root", new_root, "admin", server) as root:
        assert root.admin.command("ping")["ok"] == 1
    with login("root", ROOT_PASSWORD, "admin", server) as old, pytest.raises(pymongo.errors.OperationFailure):
        old.admin.command("listDatabases")
    assert run(tmp_path, server, **rotation)["changed"] is False


def test_a_root_password_the_server_refuses_fails_without_showing_it(tmp_path, server):
    wrong = f"wrong-{uuid.uuid4().hex}"
    rc, result, output = module_task(
        tmp_path, "mongodb_user", args(server, login_password=wrong, previous_passwords=[f"old-{wrong}"])
    )
    assert rc != 0 and result.get("failed") is True
    assert "refused root with the password given" in result["msg"], result
    assert wrong not in output and wrong not in json.dumps(result)
    with login("root", ROOT_PASSWORD, "admin", server) as root:
        assert root.shop.command("usersInfo", "shop")["users"] == []


def test_no_password_in_the_verbose_output(tmp_path, server):
    new_root = f"root3-{uuid.uuid4().hex}"
    rotation = args(server, login_password=new_root, previous_passwords=[ROOT_PASSWORD])
    rc, _result, output = module_task(tmp_path, "mongodb_user", rotation, diff=True, verbosity="-vvvv")
    assert rc == 0, output
    assert "set the password of root" in output
    for secret in (ROOT_PASSWORD, APP_PASSWORD, new_root):
        assert secret not in output
