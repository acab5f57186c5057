"""The Conductor CRM sample app (``tests/apps/conductor``) on the bed, as an app.

One FastAPI + Celery image, built by the bed as ``v20251201_090000`` and
``v20251208_090000``, run the way its README says on a Docker network of the
test's own: MongoDB (the bed's ``mongo:6.0``, auth on) as ``mongo``, Redis with
a password as ``redis``, the index migration in one-off containers, then the
API (published on 127.0.0.1), a Celery worker and Celery beat in containers of
their own.  Checked as a user sees it: the health endpoint pinging both, a
contact written and read through the API with its unique e-mail index holding,
websocket clients getting their echo and the server's events, a heartbeat
document that beat schedules and the worker writes, and the secrets in no log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

import docker
import pymongo
import pytest
from conftest import TEST_LABEL, built_image, container_logs, free_port, wait_for

REPOSITORY = "pydeploy/conductor"
OLD, NEW = "v20251201_090000", "v20251208_090000"
MONGO_USER = "root"
MONGO_PASSWORD = "mongo-S3cret-5a1f"
REDIS_PASSWORD = "redis-S3cret-c0d7"
SECRET_KEY = "conductor-secret-key-7e2b9a41"
SECRETS = [MONGO_PASSWORD, REDIS_PASSWORD, SECRET_KEY]
DATABASE = "conductor"
ORIGIN = "https://conductor.example"
START_TIMEOUT = 60.0
JOB_TIMEOUT = 60
MIGRATE = ["python", "-m", "conductor.migrate"]
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def app_env(**extra: str) -> dict:
    return {
        "MONGO_URL": f"mongodb://{MONGO_USER}:{MONGO_PASSWORD}@mongo:27017/{DATABASE}?authSource=admin",
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@redis:6379/0",
        "CELERY_BROKER_URL": f"redis://:{REDIS_PASSWORD}@redis:6379/1",
        "SECRET_KEY": SECRET_KEY,
        "ENVIRONMENT": "production",
        "CORS_ORIGINS": ORIGIN,
        "ALLOWED_HOSTS": "api.conductor.example,127.0.0.1,localhost",
        "HEARTBEAT_INTERVAL": "1",
        **extra,
    }


# ---------------------------------------------------------------------------- HTTP and websocket clients


def call(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    """(status, headers, JSON body or None) of a request to 127.0.0.1:port."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http://127.0.0.1 only
            raw, status, answer_headers = response.read(), response.status, response.headers
    except urllib.error.HTTPError as error:
        raw, status, answer_headers = error.read(), error.code, error.headers
    return status, {k.lower(): v for k, v in answer_headers.items()}, json.loads(raw) if raw else None


class WebSocketClient:
    """Just enough of RFC 6455 for a test: the handshake, masked text frames out, text frames in."""

    def __init__(self, port: int, path: str, origin: str | None = None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.sock.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin:
            lines.append(f"Origin: {origin}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = self.reader.readline().decode()
        headers = {}
        while (line := self.reader.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.status = int(status_line.split()[1])
        if self.status == 101:
            expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324
            assert headers.get("sec-websocket-accept") == expected, headers

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self, timeout: float = 10.0) -> dict:
        self.sock.settimeout(timeout)
        first, second = self.reader.read(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self.reader.read(2), "big")
        elif length == 127:
            length = int.from_bytes(self.reader.read(8), "big")
        payload = self.reader.read(length)
        opcode = first & 0x0F
        assert opcode == 0x1, f"expected a text frame, got opcode {opcode}: {payload!r}"
        return json.loads(payload)

    def receive_until(self, predicate, timeout: float = 15.0) -> dict:
        """The first message ``predicate`` accepts (others, such as heartbeats, are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if predicate(message):
                return message
        pytest.fail("no matching websocket message in time")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


# ---------------------------------------------------------------------------- the app on a network of its own


@dataclass
class Conductor:
    client: docker.DockerClient
    network: object
    containers: list = field(default_factory=list)
    mongo_port: int = 0
    web_port: int = 0
    worker: object = None
    migrations: list = field(default_factory=list)  # (exit status, output) of each migrate run, in order

    def run(self, image: str, alias: str | None = None, ports: dict | None = None, **kwargs):
        bindings = {port: ("127.0.0.1", free_port()) for port in ports or {}}
        config = {self.network.name: self.client.api.create_endpoint_config(aliases=[alias] if alias else None)}
        container = self.client.containers.run(
            image,
            detach=True,
            name=f"pydeploy-test-conductor-{alias or 'app'}-{uuid.uuid4().hex[:8]}",
            labels={TEST_LABEL: "1"},
            network=self.network.name,
            networking_config=config,
            ports=bindings,
            **kwargs,
        )
        self.containers.append(container)
        return container, {port: binding[1] for port, binding in bindings.items()}

    def job(self, image: str, command: list[str], environment: dict | None = None) -> tuple[int, str]:
        """A one-off container of ``image`` run to completion: (exit status, output)."""
        container, _ = self.run(image, command=command, environment=environment or app_env())
        status = container.wait(timeout=JOB_TIMEOUT)["StatusCode"]
        return status, container_logs(container)

    def web(self, image: str) -> tuple[object, int]:
        container, ports = self.run(image, ports={"8000/tcp": None}, environment=app_env())
        port = ports["8000/tcp"]

        def up():
            container.reload()
            if container.status in ("exited", "dead"):
                pytest.fail(f"{image} exited:\n{container_logs(container)}")
            return call(port, "GET", "/api/v1/health/simple")[0] == 200

        wait_for(up, timeout=START_TIMEOUT, what=f"the API of {image}")
        return container, port

    def mongo(self) -> pymongo.MongoClient:
        return pymongo.MongoClient(
            "127.0.0.1",
            self.mongo_port,
            username=MONGO_USER,
            password=MONGO_PASSWORD,
            authSource="admin",
            directConnection=True,
            serverSelectionTimeoutMS=3000,
            tz_aware=True,
        )


@pytest.fixture(scope="module")
def app_image(bed, docker_client):
    def resolve(tag: str) -> str:
        return built_image(docker_client, f"{bed['registry']}/{REPOSITORY}:{tag}")

    return resolve


@pytest.fixture(scope="module")
def conductor(docker_client, bed_image, app_image):
    """MongoDB and Redis, the migration (its revision asked before and after, run twice), then the API, a worker
    and beat of the older release."""
    network = docker_client.networks.create(f"pydeploy-test-{uuid.uuid4().hex[:10]}", labels={TEST_LABEL: "1"})
    app = Conductor(docker_client, network)
    try:
        _, ports = app.run(
            bed_image("mongo"),
            alias="mongo",
            ports={"27017/tcp": None},
            environment={"MONGO_INITDB_ROOT_USERNAME": MONGO_USER, "MONGO_INITDB_ROOT_PASSWORD": MONGO_PASSWORD},
        )
        app.mongo_port = ports["27017/tcp"]
        app.run(bed_image("redis"), alias="redis", command=["redis-server", "--requirepass", REDIS_PASSWORD])
        image = app_image(OLD)
        with app.mongo() as client:
            wait_for(lambda: client.admin.command("ping")["ok"] == 1, timeout=START_TIMEOUT, what="MongoDB")
        app.migrations.append(app.job(image, [*MIGRATE, "--revision"]))
        app.migrations.append(app.job(image, MIGRATE))
        app.migrations.append(app.job(image, MIGRATE))
        app.migrations.append(app.job(image, [*MIGRATE, "--revision"]))
        app.worker, _ = app.run(
            image,
            alias="worker",
            command=["celery", "-A", "conductor.celery_app", "worker", "--loglevel=INFO", "--concurrency=2"],
            environment=app_env(),
        )
        app.run(
            image, alias="beat", command=["celery", "-A", "conductor.celery_app", "beat", "--loglevel=INFO"],
            environment=app_env(),
        )  # fmt: skip
        _, app.web_port = app.web(image)
        yield app
    finally:
        for container in app.containers:
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
        network.remove()


# ---------------------------------------------------------------------------- the tests


def test_migrate_creates_the_indexes_once_and_prints_the_revision(conductor):
    (before_status, before), (first_status, first), (second_status, second), (after_status, after) = (
        conductor.migrations
    )
    assert (before_status, first_status, second_status, after_status) == (0, 0, 0, 0), conductor.migrations
    assert before.strip() == "none"
    assert "revision 0001: indexes email_unique, created_at" in first
    assert f"database {DATABASE} migrated from nothing to 0002" in first
    assert first.strip().splitlines()[-1] == "0002"
    assert f"database {DATABASE} is up to date" in second and "revision 0001" not in second
    assert second.strip().splitlines()[-1] == "0002"
    assert after.strip() == "0002"
    with conductor.mongo() as client:
        indexes = client[DATABASE].contacts.index_information()
        assert indexes["email_unique"]["unique"] is True
        assert indexes["email_unique"]["key"] == [("email", 1)]
        assert "expireAfterSeconds" in client[DATABASE].heartbeats.index_information()["at_ttl"]
        assert client[DATABASE].schema_migrations.find_one({"_id": "schema"})["revision"] == "0002"


def test_health_reports_mongodb_and_redis(conductor):
    status, headers, body = call(conductor.web_port, "GET", "/api/v1/health")
    assert status == 200, body
    assert body["status"] == "healthy"
    assert body["services"] == {"mongodb": "healthy", "redis": "healthy"}
    assert body["version"] == OLD and headers["x-app-version"] == OLD
    assert call(conductor.web_port, "GET", "/api/v1/health/simple")[2] == {"status": "ok", "version": OLD}
    # ALLOWED_HOSTS holds for the API, not for the health checks (which come by IP address).
    assert call(conductor.web_port, "GET", "/api/v1/contacts", headers={"Host": "evil.example"})[0] == 400
    assert call(conductor.web_port, "GET", "/api/v1/health", headers={"Host": "10.1.2.3:8000"})[0] == 200


def test_contacts_are_written_read_and_their_email_unique(conductor):
    port = conductor.web_port
    email = f"ana.{uuid.uuid4().hex[:8]}@example.com"
    status, _, created = call(port, "POST", "/api/v1/contacts", {"name": "Ana Souza", "email": email.upper()})
    assert status == 201, created
    assert created["email"] == email
    assert call(port, "GET", f"/api/v1/contacts/{created['id']}")[2]["name"] == "Ana Souza"
    listed = call(port, "GET", f"/api/v1/contacts?email={email}")[2]
    assert listed["count"] == 1 and listed["contacts"][0]["id"] == created["id"]
    # The unique index the migration made: the same address again, in another case, is refused.
    status, _, body = call(port, "POST", "/api/v1/contacts", {"name": "Ana S.", "email": email.title()})
    assert status == 409, body
    assert call(port, "POST", "/api/v1/contacts", {"name": "x", "email": "not-an-address"})[0] == 422
    status, _, patched = call(port, "PATCH", f"/api/v1/contacts/{created['id']}", {"company": "Conductor"})
    assert (status, patched["company"]) == (200, "Conductor")
    with conductor.mongo() as client:
        stored = client[DATABASE].contacts.find_one({"email": email})
        assert stored["name"] == "Ana Souza" and stored["company"] == "Conductor"
        assert client[DATABASE].contacts.count_documents({"email": email}) == 1
    assert call(port, "DELETE", f"/api/v1/contacts/{created['id']}")[0] == 204
    assert call(port, "GET", f"/api/v1/contacts/{created['id']}")[0] == 404


def test_websocket_echoes_and_relays_server_events(conductor):
    port = conductor.web_port
    refused = WebSocketClient(port, "/ws/events", origin="https://evil.example")
    assert refused.status == 403  # an origin CORS_ORIGINS does not list
    refused.close()
    clients = [WebSocketClient(port, "/ws/events", origin=ORIGIN), WebSocketClient(port, "/ws/events")]
    try:
        for client in clients:
            assert client.status == 101
            assert client.receive() == {"type": "welcome", "version": OLD}
            client.send("olá, conductor")
            assert client.receive_until(lambda m: m["type"] == "echo") == {"type": "echo", "data": "olá, conductor"}
            # Beat's heartbeats (every second) come too: the API's relay of the server's events listens.
            assert client.receive_until(lambda m: m["type"] == "heartbeat")["worker"].startswith("celery@")
        email = f"bia.{uuid.uuid4().hex[:8]}@example.com"
        assert call(port, "POST", "/api/v1/contacts", {"name": "Bia", "email": email})[0] == 201
        for client in clients:
            event = client.receive_until(lambda m: m["type"] == "contact.created" and m["email"] == email)
            assert event["name"] == "Bia"
    finally:
        for client in clients:
            client.close()


def test_beat_schedules_a_heartbeat_that_the_worker_writes(conductor):
    conductor.worker.reload()
    node = f"celery@{conductor.worker.attrs['Config']['Hostname']}"
    with conductor.mongo() as client:
        heartbeats = client[DATABASE].heartbeats

        def written():
            return heartbeats.find_one({"worker": node}, sort=[("at", pymongo.DESCENDING)])

        latest = wait_for(written, timeout=30, what="a heartbeat document written by the worker")
        assert latest["version"] == OLD
        age = time.time() - latest["at"].timestamp()
        assert age < 30, latest
        # HEARTBEAT_INTERVAL=1: more keep coming.
        count = heartbeats.count_documents({})
        wait_for(lambda: heartbeats.count_documents({}) > count, timeout=15, what="the next heartbeat")
    status, _, body = call(conductor.web_port, "GET", "/api/v1/heartbeats")
    assert status == 200 and body["count"] >= 2 and body["latest"]["worker"] == node


def test_the_next_release_reports_its_own_version(conductor, app_image):
    container, port = conductor.web(app_image(NEW))
    assert call(port, "GET", "/api/v1/health/simple")[2] == {"status": "ok", "version": NEW}
    assert call(port, "GET", "/api/v1/health")[2]["status"] == "healthy"
    frontend = container.exec_run(["cat", "/app/frontend/version.json"]).output
    assert json.loads(frontend) == {"version": NEW}
    index = container.exec_run(["cat", "/app/frontend/index.html"]).output.decode()
    assert f'<span id="frontend-version">{NEW}</span>' in index


def test_settings_errors_name_the_setting_and_no_secret_is_logged(conductor, app_image):
    status, output = conductor.job(app_image(OLD), ["python", "-c", "import conductor.main"], app_env(SECRET_KEY=""))
    assert status == 2
    assert "SECRET_KEY is not set" in output
    # The migration reads MongoDB's settings only.
    status, output = conductor.job(app_image(OLD), MIGRATE, {"REDIS_URL": "redis://redis:6379/0"})
    assert status == 2 and "MONGODB_URL (or MONGO_URL) is not set" in output
    status, output = conductor.job(app_image(OLD), [*MIGRATE, "--revision"], {"MONGODB_URL": app_env()["MONGO_URL"]})
    assert (status, output.strip()) == (0, "0002")
    for container in conductor.containers:
        if REPOSITORY not in (container.attrs["Config"]["Image"]):
            continue
        logs = container_logs(container)
        for secret in SECRETS:
            assert secret not in logs, f"{container.name} logged a secret"
