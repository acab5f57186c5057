"""The Conductor CRM (``tests/apps/conductor``) deployed whole through the playbooks from its example inventory
(``inventories/examples/conductor``): its group_vars as they are (bindings, sites, routes, the frontend's volume,
backups, the vault), with only what this machine cannot provide overridden by
``tests/integration/inventories/conductor/group_vars/all/zz_bed.yml`` (the bed's images and S3, a self-signed
certificate, ports 10780/11143 on 127.0.0.1, no Slack, no registry login, a heartbeat every 2 s).

One stack for the module: v1 deployed once for the read-only tests, then backup and restore, v2 under traffic,
and a rollback; a websocket opened at the start stays connected through all of it; the stack is torn down at the
end."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import queue
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import docker
import pymongo
import pytest
import yaml
from backup_support import s3_client
from conftest import teardown_stack, wait_for
from playbook import REPO, VENV_BIN, run_playbook

STACK = "conductor"
INVENTORY = "tests/integration/inventories/conductor"
VAULT_PASSWORD_FILE = "inventories/examples/vault-password.example"
HTTP_PORT, HTTPS_PORT = 10780, 11143
CAFILE = Path(f"/etc/pydeploy/{STACK}/nginx/certs/fullchain.pem")
API, APEX, WWW = "api.conductor.example", "conductor.example", "www.conductor.example"
V1, V2 = "v20251201_090000", "v20251208_090000"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SAMPLE_INTERVAL = 0.2
S3_PREFIX = "conductor-test/"  # stack_backup.s3.prefix of the override


# ---------------------------------------------------------------------------- talking to the stack


def tls_socket(host: str) -> ssl.SSLSocket:
    """A TLS connection to nginx on 127.0.0.1 for ``host`` (SNI), its certificate checked for that name."""
    context = ssl.create_default_context(cafile=str(CAFILE))
    return context.wrap_socket(socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10), server_hostname=host)


def request(host: str, path: str, *, secure: bool = True, method: str = "GET"):
    """(status, headers, body) of a request through the stack's nginx with ``host`` as Host (and SNI)."""
    if secure:
        conn = http.client.HTTPSConnection("127.0.0.1", HTTPS_PORT, timeout=10)
        conn.sock = tls_socket(host)
        port = HTTPS_PORT
    else:
        conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=10)
        port = HTTP_PORT
    try:
        conn.request(method, path, headers={"Host": f"{host}:{port}"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def api_json(path: str) -> tuple[int, dict]:
    status, _, body = request(API, path)
    return status, json.loads(body)


def frontend_version() -> str:
    status, _, body = request(APEX, "/version.json")
    assert status == 200, body[:300]
    return json.loads(body)["version"]


class WebSocket:
    """Just enough of RFC 6455 over TLS through nginx: the handshake, masked text frames out, text frames in."""

    def __init__(self, path: str = "/ws/events"):
        self.pings = 0
        self.sending = threading.Lock()
        self.messages: queue.Queue | None = None
        self.sock = tls_socket(API)
        self.reader = self.sock.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {API}:{HTTPS_PORT}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Origin: https://{APEX}",
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = self.reader.readline().decode()
        headers = {}
        while (line := self.reader.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.status = int(status_line.split()[1]) if status_line else 0
        if self.status == 101:
            expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324
            assert headers.get("sec-websocket-accept") == expected, headers

    def send(self, text: str) -> None:
        self.frame(0x1, text.encode())

    def frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self.sending:  # the pump's pongs and the test's messages
            self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def receive(self, timeout: float = 10.0) -> dict:
        """The next text message; the server's pings (uvicorn's, every 20 s) are answered on the way."""
        self.sock.settimeout(timeout)
        while True:
            head = self.reader.read(2)
            if len(head) < 2:
                raise ConnectionError("the websocket was closed")
            first, second = head
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(self.reader.read(2), "big")
            elif length == 127:
                length = int.from_bytes(self.reader.read(8), "big")
            payload = self.reader.read(length)
            opcode = first & 0x0F
            if opcode == 0x9:  # ping
                self.frame(0xA, payload)
                self.pings += 1
                continue
            if opcode == 0xA:  # pong
                continue
            assert opcode == 0x1, f"expected a text frame, got {first:#x}: {payload!r}"
            return json.loads(payload)

    def answer_pings(self) -> None:
        """Read from a thread from now on, as a browser does: pings answered, messages queued; the client itself
        sends nothing."""
        self.messages = queue.Queue()

        def pump():
            try:
                while True:
                    self.messages.put(self.receive(None))
            except (OSError, ValueError, ConnectionError, AssertionError) as exc:
                self.messages.put({"type": "closed", "error": repr(exc)})

        threading.Thread(target=pump, daemon=True).start()

    def receive_until(self, predicate, timeout: float = 15.0) -> dict:
        """The first message ``predicate`` accepts (the server's heartbeat events are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self.messages is None:
                message = self.receive(left)
            else:
                try:
                    message = self.messages.get(timeout=left)
                except queue.Empty:
                    break
                assert message["type"] != "closed", message
            if predicate(message):
                return message
        pytest.fail("no matching websocket message in time")

    def echo(self, text: str) -> dict:
        self.send(text)
        return self.receive_until(lambda m: m["type"] == "echo")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


# ---------------------------------------------------------------------------- the stack and its database


def playbook(name: str, **extra):
    return run_playbook(name, INVENTORY, extra_vars=extra or None, args=["--vault-password-file", VAULT_PASSWORD_FILE])


def deployed_ok(name: str = "deploy.yml", **extra):
    run = playbook(name, **extra)
    assert run.rc == 0, run.explain()
    return run


def vault() -> dict:
    path = REPO / "inventories/examples/conductor/group_vars/all/vault.yml"
    text = subprocess.run(
        [str(VENV_BIN / "ansible-vault"), "view", "--vault-password-file", VAULT_PASSWORD_FILE, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return yaml.safe_load(text)


def mongo_root() -> pymongo.MongoClient:
    """MongoDB's root user at the server's address on the stack's network."""
    address = subprocess.run(
        ["docker", "inspect", "-f", f"{{{{.NetworkSettings.Networks.{STACK}.IPAddress}}}}", f"{STACK}-mongodb"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return pymongo.MongoClient(
        address,
        27017,
        username="root",
        password=vault()["vault_mongodb_root_password"],
        authSource="admin",
        directConnection=True,
        serverSelectionTimeoutMS=5000,
    )


def indexes(database) -> dict:
    return {
        name: {
            key: (info["key"], info.get("unique", False)) for key, info in database[name].index_information().items()
        }
        for name in sorted(database.list_collection_names())
    }


def remove_backups(bed) -> None:
    """The module's backups in the bed's bucket (under the override's prefix)."""
    conn = s3_client(bed["s3"])
    bucket = bed["s3"]["bucket"]
    for page in conn.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=S3_PREFIX):
        for obj in page.get("Contents", []):
            conn.delete_object(Bucket=bucket, Key=obj["Key"])


@pytest.fixture(scope="module")
def deployed(bed, docker_client):
    """The stack at v1, as the example inventory says (with the bed's overrides)."""
    teardown_stack(docker_client, STACK)
    remove_backups(bed)
    run = deployed_ok()
    yield run
    teardown_stack(docker_client, STACK)
    remove_backups(bed)


@pytest.fixture(scope="module")
def idle_socket(deployed):
    """A websocket opened right after the first deploy, then left idle (the client sends nothing) until the
    test that checks it is still connected."""
    ws = WebSocket()
    assert ws.status == 101
    assert ws.receive() == {"type": "welcome", "version": V1}
    ws.answer_pings()
    opened = time.monotonic()
    yield ws, opened
    ws.close()


# ---------------------------------------------------------------------------- v1, read only


def test_the_frontend_is_served_at_the_apex_with_long_cache_headers(deployed, idle_socket):
    status, headers, page = request(APEX, "/")
    assert status == 200, page[:300]
    assert f'<span id="frontend-version">{V1}</span>'.encode() in page
    assert frontend_version() == V1
    # The inventory's frontend route: max_age 300.
    assert "max-age=300" in headers.get("cache-control", ""), headers
    # The apex is nginx alone: the API is not routed there.
    assert request(APEX, "/api/v1/health")[0] == 404


def test_www_and_http_redirect_to_the_apex_keeping_path_and_query(deployed):
    apex = f"https://{APEX}:{HTTPS_PORT}"
    status, headers, _ = request(WWW, "/p?q=1", secure=False)
    assert (status, headers.get("location")) == (301, f"{apex}/p?q=1"), headers
    status, headers, _ = request(WWW, "/")
    assert (status, headers.get("location")) == (301, f"{apex}/"), headers
    # Plain HTTP to the apex and the API goes to HTTPS on the same name.
    status, headers, _ = request(API, "/api/v1/health?x=1", secure=False)
    assert (status, headers.get("location")) == (301, f"https://{API}:{HTTPS_PORT}/api/v1/health?x=1"), headers


def test_the_api_reports_mongodb_and_redis_healthy(deployed):
    status, body = api_json("/api/v1/health")
    assert status == 200, body
    assert body["status"] == "healthy" and body["version"] == V1, body
    assert body["services"]["mongodb"] == "healthy" and body["services"]["redis"] == "healthy", body


def test_beat_schedules_a_heartbeat_the_worker_writes(deployed, docker_client):
    start = api_json("/api/v1/heartbeats")[1]["count"]
    latest = wait_for(
        lambda: (body := api_json("/api/v1/heartbeats")[1])["count"] > start and body,
        timeout=15,
        interval=0.5,
        what="a heartbeat document",
    )
    [worker] = docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=worker"]})
    assert latest["latest"]["worker"] == f"celery@{worker.attrs['Config']['Hostname']}"
    with mongo_root() as server:
        assert server[STACK].heartbeats.count_documents({}) > start


def test_a_websocket_through_nginx_echoes(deployed):
    ws = WebSocket()
    try:
        assert ws.status == 101
        assert ws.receive() == {"type": "welcome", "version": V1}
        assert ws.echo("hello through nginx") == {"type": "echo", "data": "hello through nginx"}
    finally:
        ws.close()


# ---------------------------------------------------------------------------- then the changes, in order


def test_backup_then_restore_into_scratch_round_trips(deployed):
    with mongo_root() as server:
        contacts = server[STACK].contacts
        contacts.insert_many([{"name": f"Contact {i}", "email": f"c{i}@conductor.example"} for i in range(25)])
        live_indexes = indexes(server[STACK])
    assert any(unique for _, unique in live_indexes["contacts"].values()), live_indexes

    backup = deployed_ok("backup.yml")
    summary = next(result["msg"] for name, result in backup.tasks() if name == "Summarise the backup")
    assert summary[-1].startswith("verified  yes: "), summary
    key = backup.returned("pydeploy_backup")["key"]

    restore = deployed_ok("restore.yml", restore_key=key, restore_target="scratch")
    report = restore.returned("pydeploy_restore")
    scratch = report["into"]
    assert scratch.startswith(f"{STACK}_restore_"), report
    shown = next(result["msg"] for name, result in restore.tasks() if name == "Summarise the restore")
    assert any(line.startswith("verified  yes: ") for line in shown), shown
    try:
        with mongo_root() as server:
            restored = server[scratch]
            counts = {name: restored[name].count_documents({}) for name in restored.list_collection_names()}
            assert {name: int(count) for name, count in report["counts"].items()} == counts, (report, counts)
            assert counts["contacts"] == server[STACK].contacts.count_documents({}) == 25
            assert indexes(restored) == live_indexes
    finally:
        deployed_ok("restore.yml", restore_drop=scratch)
    with mongo_root() as server:
        assert scratch not in server.list_database_names()


def test_a_second_deploy_changes_nothing(deployed):
    run = deployed_ok()
    assert run.changed() == 0, run.changed_tasks()


def test_the_idle_websocket_survives_a_minute_and_an_nginx_reload(deployed, idle_socket, docker_client):
    """Opened before the first test, sent nothing since (the server's heartbeat events still come to it); the
    deploy of v2 below retires its replica, so it is checked here."""
    ws, opened = idle_socket
    idle = time.monotonic() - opened
    if idle < 61:
        time.sleep(61 - idle)
    nginx = docker_client.containers.get(f"{STACK}-nginx")
    assert nginx.exec_run(["nginx", "-s", "reload"]).exit_code == 0
    time.sleep(1)
    assert ws.echo("still here") == {"type": "echo", "data": "still here"}
    assert ws.pings >= 2, "uvicorn pings every 20 s"


class Sampler:
    """GET /api/v1/health/simple through nginx every SAMPLE_INTERVAL s, and a websocket client reconnecting in a
    loop (each attempt must get 101 and the welcome; a connection closed later, its replica retired, is fine)."""

    def __init__(self):
        self.samples: list[tuple[float, object]] = []
        self.reconnects: list[tuple[float, object]] = []
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self.poll, daemon=True), threading.Thread(target=self.ws, daemon=True)]

    def poll(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, _, body = request(API, "/api/v1/health/simple")
                self.samples.append((started, status if status != 200 else json.loads(body)["version"]))
            except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
                self.samples.append((started, repr(exc)))
            self._stop.wait(SAMPLE_INTERVAL)

    def ws(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                ws = WebSocket()
                try:
                    welcome = ws.receive() if ws.status == 101 else {"status": ws.status}
                    self.reconnects.append((started, welcome.get("version", welcome)))
                finally:
                    ws.close()
            except (OSError, ssl.SSLError, ValueError, AssertionError) as exc:
                self.reconnects.append((started, repr(exc)))
            self._stop.wait(SAMPLE_INTERVAL)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc):
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def test_v2_is_deployed_with_no_failed_request_and_clean_websocket_reconnects(deployed):
    with Sampler() as sampler:
        time.sleep(1)
        started = time.monotonic()
        deployed_ok(stack_version=V2)
        took = time.monotonic() - started
        time.sleep(1)
    versions = {V1, V2}
    failed = [sample for sample in sampler.samples if sample[1] not in versions]
    assert failed == [], failed[:10]
    assert len(sampler.samples) >= took / (SAMPLE_INTERVAL + 1), (len(sampler.samples), took)
    assert sampler.samples[0][1] == V1 and sampler.samples[-1][1] == V2
    refused = [attempt for attempt in sampler.reconnects if attempt[1] not in versions]
    assert refused == [], refused[:10]
    assert sampler.reconnects[-1][1] == V2
    assert api_json("/api/v1/health")[1]["version"] == V2
    assert frontend_version() == V2


def test_rollback_to_v1(deployed):
    deployed_ok("rollback.yml")
    assert api_json("/api/v1/health")[1]["version"] == V1
    assert frontend_version() == V1
    status, _, page = request(APEX, "/")
    assert status == 200 and f'<span id="frontend-version">{V1}</span>'.encode() in page


def test_teardown_removes_the_stack_its_volumes_and_its_backups(bed, deployed, docker_client):
    run = deployed_ok("teardown.yml", teardown_stack=STACK, teardown_volumes=True, teardown_backups=True)
    conn = s3_client(bed["s3"])
    left = conn.list_objects_v2(Bucket=bed["s3"]["bucket"], Prefix=S3_PREFIX).get("Contents", [])
    assert left == [], [obj["Key"] for obj in left]
    assert docker_client.containers.list(all=True, filters={"label": f"pydeploy.stack={STACK}"}) == []
    assert [v.name for v in docker_client.volumes.list() if v.name.startswith(f"{STACK}-")] == []
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(STACK)
    assert not Path(f"/etc/cron.d/pydeploy-{STACK}-backup").exists(), run.changed_tasks()
    assert not Path(f"/etc/pydeploy/{STACK}").exists()
