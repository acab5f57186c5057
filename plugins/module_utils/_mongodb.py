# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MongoDB server's users (module pydeploy.stack.mongodb_user): wait until the server answers, log in as
its root user (setting a rotated password with the one it still has), and keep the application's user with
its password and readWrite on its own database only.  pymongo on the managed host, at the server's address."""

from __future__ import annotations

import time
import traceback

from ansible.module_utils.basic import missing_required_lib

try:
    import pymongo
    from pymongo.errors import OperationFailure, PyMongoError

    PYMONGO_ERROR = None
except ImportError:  # reported once, by run_module
    pymongo = None
    OperationFailure = PyMongoError = Exception
    PYMONGO_ERROR = traceback.format_exc()

AUTH_FAILED = 18  # MongoDB's AuthenticationFailed


class MongoUserError(Exception):
    pass


def wanted_roles(database: str) -> list[dict]:
    """The application user's roles: readWrite on its database, nothing else."""
    return [{"role": "readWrite", "db": database}]


def same_roles(current, database: str) -> bool:
    have = sorted((str(role.get("role")), str(role.get("db"))) for role in current or [])
    return have == [("readWrite", database)]


def plan(root_rotated: bool, user_info, password_ok: bool, database: str, root_user: str, name: str) -> list[str]:
    """What is to be done, in words (the module's ``actions``), from what was read on the server."""
    actions = []
    if root_rotated:
        actions.append(f"set the password of {root_user}")
    if user_info is None:
        actions.append(f"create the user {name} in {database} with readWrite on {database}")
        return actions
    if not same_roles(user_info.get("roles"), database):
        actions.append(f"give {name} readWrite on {database} only")
    if not password_ok:
        actions.append(f"set the password of {name}")
    return actions


class Server:
    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout_ms = host, port, int(timeout * 1000)

    def client(self, user=None, password=None, source="admin"):
        kwargs = {"username": user, "password": password, "authSource": source} if user else {}
        return pymongo.MongoClient(
            self.host,
            self.port,
            directConnection=True,
            serverSelectionTimeoutMS=self.timeout_ms,
            connectTimeoutMS=self.timeout_ms,
            **kwargs,
        )

    def wait(self, timeout: int) -> str:
        """The server's version once it answers a ping (allowed before login); fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            client = self.client()
            try:
                client.admin.command("ping")
                return str(client.server_info().get("version", ""))
            except PyMongoError as exc:
                last = exc
            finally:
                client.close()
            if time.monotonic() >= deadline:
                raise MongoUserError(f"MongoDB at {self.host}:{self.port} did not answer within {timeout}s: {last}")
            time.sleep(0.5)

    def login(self, user: str, password: str, source: str = "admin"):
        """A client logged in as ``user``, or None when the server refuses the password."""
        client = self.client(user, password, source)
        try:
            client.admin.command("ping")
            return client
        except OperationFailure as exc:
            client.close()
            if exc.code == AUTH_FAILED:
                return None
            raise


def run_module(module) -> None:
    if PYMONGO_ERROR:
        module.fail_json(msg=missing_required_lib("pymongo"), exception=PYMONGO_ERROR)
    params = module.params
    root_user, password = params["login_user"], params["login_password"]
    name, database = params["name"], params["database"]
    server = Server(params["login_host"], params["login_port"], min(params["wait_timeout"], 10))
    result = {"changed": False, "actions": [], "user": name, "database": database}
    root = None
    try:
        result["server_version"] = server.wait(params["wait_timeout"])
        root = server.login(root_user, password)
        rotated = False
        if root is None:
            for previous in params["previous_passwords"] or []:
                if previous and previous != password:
                    root = server.login(root_user, previous)
                if root is not None:
                    rotated = True
                    break
        if root is None:
            raise MongoUserError(
                f"MongoDB at {server.host}:{server.port} refused {root_user} with the password given"
                " (nor with the previous one recorded on the host)"
            )
        found = root[database].command("usersInfo", name).get("users") or []
        info = found[0] if found else None
        password_ok = False
        if info is not None:
            probe = server.login(name, params["password"], database)
            password_ok = probe is not None
            if probe is not None:
                probe.close()
        actions = plan(rotated, info, password_ok, database, root_user, name)
        result.update(changed=bool(actions), actions=actions)
        result["diff"] = {
            "before": {"user": name, "exists": info is not None, "roles": (info or {}).get("roles", [])},
            "after": {"user": name, "exists": True, "roles": wanted_roles(database)},
        }
        if actions and not module.check_mode:
            if rotated:
                root.admin.command("updateUser", root_user, pwd=password)
            if info is None:
                root[database].command("createUser", name, pwd=params["password"], roles=wanted_roles(database))
            elif not same_roles(info.get("roles"), database) or not password_ok:
                root[database].command("updateUser", name, pwd=params["password"], roles=wanted_roles(database))
    except MongoUserError as exc:
        module.fail_json(msg=str(exc), **result)
    except PyMongoError as exc:
        module.fail_json(msg=f"MongoDB at {server.host}:{server.port}: {exc}", **result)
    finally:
        if root is not None:
            root.close()
    module.exit_json(**result)
