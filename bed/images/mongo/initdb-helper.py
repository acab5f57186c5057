#!/usr/bin/python3
"""First-start helper for the mongo stand-in's docker-entrypoint.sh.

The official image drives its temporary mongod with mongosh, which we do not
have; this helper does the two things the entrypoint needs, with Debian's
python3-pymongo, talking to the temporary mongod over its unix socket only:

    initdb-helper.py wait SOCKET PID TIMEOUT   wait until mongod answers a ping
    initdb-helper.py create-root SOCKET        create the root user

The credentials are read from MONGO_INITDB_ROOT_USERNAME and
MONGO_INITDB_ROOT_PASSWORD in the environment (never from argv, so that they do
not show up in the process list).
"""

import os
import sys
import time
import urllib.parse

import pymongo
from pymongo.errors import PyMongoError


def log(message):
    print(f"initdb-helper: {message}", file=sys.stderr, flush=True)


def client_for(socket_path, timeout_ms=2000):
    uri = "mongodb://" + urllib.parse.quote(socket_path, safe="")
    return pymongo.MongoClient(
        uri,
        directConnection=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
    )


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); check its state.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait(socket_path, pid, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not process_alive(pid):
            log(f"the temporary mongod (pid {pid}) exited before it became ready")
            return 1
        if os.path.exists(socket_path):
            client = client_for(socket_path, timeout_ms=1000)
            try:
                client.admin.command("ping")
                return 0
            except PyMongoError as exc:
                last = exc
            finally:
                client.close()
        time.sleep(0.5)
    log(f"the temporary mongod did not answer within {timeout:.0f}s (last error: {last!r})")
    return 1


def create_root(socket_path):
    username = os.environ.get("MONGO_INITDB_ROOT_USERNAME", "")
    password = os.environ.get("MONGO_INITDB_ROOT_PASSWORD", "")
    if not username or not password:
        log("MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD must both be set")
        return 1
    client = client_for(socket_path)
    try:
        client.admin.command(
            "createUser",
            username,
            pwd=password,
            roles=[{"role": "root", "db": "admin"}],
        )
    except PyMongoError as exc:
        log(f"creating the root user {username!r} failed: {exc}")
        return 1
    finally:
        client.close()
    log(f"created user {username!r} with role root on admin")
    return 0


def main(argv):
    if len(argv) == 5 and argv[1] == "wait":
        return wait(argv[2], int(argv[3]), float(argv[4]))
    if len(argv) == 3 and argv[1] == "create-root":
        return create_root(argv[2])
    log(f"usage: {argv[0]} wait SOCKET PID TIMEOUT | create-root SOCKET")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
