"""Contract tests for the bed's redis:7 stand-in (``bed/images/redis``).

Roles are written against the official ``redis:7`` image; these tests pin the
parts of its contract that they rely on: options on the command line, a
configuration file as first argument, data in ``/data``, the redis user, and
protected mode off unless asked for.
"""

from __future__ import annotations

import re
import socket

import pytest
import redis
from conftest import container_logs, wait_for
from redis.backoff import NoBackoff
from redis.retry import Retry

PASSWORD = "r3dis-s3cret"
START_TIMEOUT = 60.0
CONF_DIR = "/usr/local/etc/redis"


@pytest.fixture(scope="module")
def image(bed_image) -> str:
    return bed_image("redis")


def start_redis(run_container, image: str, command=None, **kwargs):
    container, ports = run_container(image, ports={"6379/tcp": None}, command=command, **kwargs)
    return container, ports["6379/tcp"]


def client(port: int, password: str | None = None) -> redis.Redis:
    # RESP2, like most clients in the field: newer redis-py versions open with
    # HELLO 3, which changes the errors an unauthenticated client sees.  No
    # retries inside redis-py (it retries refused logins with a backoff):
    # wait_for does the polling.
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        protocol=2,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=5,
        socket_connect_timeout=5,
        decode_responses=True,
    )


def raw_reply(port: int, *words: str) -> str:
    """Send one command without any client library; return the first reply line."""
    request = f"*{len(words)}\r\n" + "".join(f"${len(word.encode())}\r\n{word}\r\n" for word in words)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()


def fail_if_exited(container) -> None:
    container.reload()
    if container.status in ("exited", "dead"):
        pytest.fail(f"container {container.name} exited:\n{container_logs(container)}")


def wait_until_ready(container, port: int, password: str | None = None) -> redis.Redis:
    conn = client(port, password)

    def ready() -> bool:
        fail_if_exited(container)
        return conn.ping()

    wait_for(ready, timeout=START_TIMEOUT, what=f"redis in {container.name} on port {port}")
    return conn


def wait_for_log(container, text: str) -> None:
    def logged() -> bool:
        fail_if_exited(container)
        return text in container_logs(container)

    wait_for(logged, timeout=START_TIMEOUT, what=f"{text!r} in the logs of {container.name}")


def exec_out(container, *command: str) -> str:
    result = container.exec_run(list(command))
    assert result.exit_code == 0, result.output
    return result.output.decode().strip()


def test_image_metadata(docker_client, image):
    config = docker_client.images.get(image).attrs["Config"]
    assert config["Entrypoint"] == ["docker-entrypoint.sh"]
    assert config["Cmd"] == ["redis-server"]
    assert "6379/tcp" in config["ExposedPorts"]
    assert "/data" in config["Volumes"]
    assert config["WorkingDir"] == "/data"


def test_default_server_answers_from_outside(run_container, image):
    container, port = start_redis(run_container, image)
    # The client reaches redis through Docker's port mapping, i.e. not from the
    # container's loopback: protected mode would answer with a DENIED error.
    conn = wait_until_ready(container, port)
    assert conn.set("greeting", "hello")
    assert conn.get("greeting") == "hello"
    assert conn.config_get("protected-mode") == {"protected-mode": "no"}
    assert conn.config_get("dir") == {"dir": "/data"}
    assert conn.info("server")["redis_version"].startswith("7.")

    status = exec_out(container, "cat", "/proc/1/status")
    assert re.search(r"^Uid:\s+999\s", status, re.MULTILINE), "redis-server must run as uid 999"
    assert exec_out(container, "stat", "-c", "%u:%g", "/data") == "999:999"
    assert exec_out(container, "redis-cli", "ping") == "PONG"


@pytest.mark.parametrize("where", ["command line", "config file"])
def test_protected_mode_yes_wins(tmp_path, run_container, image, where):
    if where == "command line":
        container, port = start_redis(run_container, image, ["--protected-mode", "yes"])
    else:
        conf_dir = tmp_path / "conf"
        conf_dir.mkdir(mode=0o755)
        conf_dir.chmod(0o755)
        (conf_dir / "redis.conf").write_text("protected-mode yes\n")
        (conf_dir / "redis.conf").chmod(0o644)
        container, port = start_redis(
            run_container,
            image,
            [f"{CONF_DIR}/redis.conf"],
            volumes={str(conf_dir): {"bind": CONF_DIR, "mode": "ro"}},
        )
    wait_for_log(container, "Ready to accept connections")
    assert raw_reply(port, "PING").startswith("-DENIED")
    # From the container's own loopback it still answers.
    assert exec_out(container, "redis-cli", "config", "get", "protected-mode").split() == [
        "protected-mode",
        "yes",
    ]


def test_requirepass_is_honoured(run_container, image):
    # A leading option gets "redis-server" put in front of it, as upstream does.
    container, port = start_redis(run_container, image, ["--requirepass", PASSWORD])
    conn = wait_until_ready(container, port, password=PASSWORD)
    assert conn.set("secret", "value")
    assert conn.get("secret") == "value"

    assert raw_reply(port, "GET", "secret").startswith("-NOAUTH")
    with pytest.raises(redis.AuthenticationError):
        client(port).get("secret")
    with pytest.raises(redis.AuthenticationError):
        client(port, password="wrong").ping()


def test_appendonly_persists_in_data(tmp_path, run_container, image):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    volumes = {str(data_dir): {"bind": "/data", "mode": "rw"}}
    # No RDB snapshots at all: only the append-only file can bring keys back.
    command = ["--appendonly", "yes", "--save", ""]
    container, port = start_redis(run_container, image, command, volumes=volumes)
    conn = wait_until_ready(container, port)
    assert conn.config_get("appendonly") == {"appendonly": "yes"}
    assert conn.set("persisted", "across restarts")

    container.restart(timeout=30)
    conn = wait_until_ready(container, port)
    assert conn.get("persisted") == "across restarts"

    # The append-only files live in the /data volume, owned by redis.
    container.stop(timeout=30)
    aof_dir = data_dir / "appendonlydir"
    assert aof_dir.is_dir()
    assert not (data_dir / "dump.rdb").exists()
    assert {path.stat().st_uid for path in aof_dir.iterdir()} == {999}

    second, port = start_redis(run_container, image, command, volumes=volumes)
    conn = wait_until_ready(second, port)
    assert conn.get("persisted") == "across restarts"


def test_config_file_as_first_argument(tmp_path, run_container, image):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir(mode=0o755)
    conf_dir.chmod(0o755)
    (conf_dir / "redis.conf").write_text(f"requirepass {PASSWORD}\nmaxmemory 12mb\nmaxmemory-policy allkeys-lru\n")
    (conf_dir / "redis.conf").chmod(0o644)
    container, port = start_redis(
        run_container,
        image,
        [f"{CONF_DIR}/redis.conf", "--maxmemory-samples", "7"],
        volumes={str(conf_dir): {"bind": CONF_DIR, "mode": "ro"}},
    )
    conn = wait_until_ready(container, port, password=PASSWORD)
    assert conn.config_get("maxmemory") == {"maxmemory": str(12 * 1024 * 1024)}
    assert conn.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    assert conn.config_get("maxmemory-samples") == {"maxmemory-samples": "7"}
    # The file does not mention protected-mode, so the image default applies.
    assert conn.config_get("protected-mode") == {"protected-mode": "no"}
    assert conn.info("server")["config_file"] == f"{CONF_DIR}/redis.conf"
    assert raw_reply(port, "PING").startswith("-NOAUTH")


def test_other_commands_run_directly(run_container, image):
    container, _ = run_container(image, command=["redis-cli", "--version"])
    status = container.wait(timeout=START_TIMEOUT)["StatusCode"]
    logs = container_logs(container)
    assert status == 0, logs
    assert re.match(r"redis-cli 7\.", logs.strip()), logs
