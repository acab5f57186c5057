"""The Car API sample app (``tests/apps/car_api``) on the bed.

The bed builds six tags of one FastAPI app from the same sources, build args
picking the behaviour: three good releases (``v20251101_090000`` ships Alembic
revision 0001, ``v20251105_143022`` adds the expand-only 0002,
``v20251110_120000`` is the same schema with another version), one that is
never healthy, one that waits 20 s before it listens, and one whose migration
0003 fails.  These tests run them the way a deployment does, on a private
Docker network with Postgres (``db``) from the bed's stand-in image: the
migrations in one-off containers, the API in long-running ones published on
127.0.0.1.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import docker
import psycopg
import pytest
from conftest import built_image, container_logs, wait_for

REPOSITORY = "pydeploy/car-api"
V1 = "v20251101_090000"  # schema 0001
V2 = "v20251105_143022"  # schema 0002
V3 = "v20251110_120000"  # schema 0002, no migration
UNHEALTHY = "v-unhealthy"
SLOWSTART = "v-slowstart"
BADMIGRATION = "v-badmigration"
BADPROXY = "v-badproxy"
EXPECTED_SCHEMA = {
    V1: "0001",
    V2: "0002",
    V3: "0002",
    UNHEALTHY: "0002",
    SLOWSTART: "0002",
    BADMIGRATION: "0003",
    BADPROXY: "0002",
}

DB_USER = "car_api"
DB_PASSWORD = "pg-S3cret/car:api@7d1e"  # needs quoting in a URL
DB_NAME = "car_api"
SECRET_KEY = "car-api-secret-key-4f9d2c7e1b8a"
SECRETS = [DB_PASSWORD, urllib.parse.quote(DB_PASSWORD, safe=""), SECRET_KEY]

START_TIMEOUT = 120.0
JOB_TIMEOUT = 120
STARTUP_DELAY = 20  # the v-slowstart build's
DELAYING = "STARTUP_DELAY=20: waiting before listening"
LISTENING = "Uvicorn running on http://0.0.0.0:8000"
STOP_TIMEOUT = 30  # docker stop: more than uvicorn's --timeout-graceful-shutdown 20
SECOND = 1_000_000_000  # Docker's health check durations are in nanoseconds
# The image's HEALTHCHECK (its command and start period), probed every second.
FAST_HEALTHCHECK = {"interval": SECOND, "timeout": 3 * SECOND, "retries": 2}
CMD = [
    "uvicorn",
    "car_api.app:app",
    "--host",
    "0.0.0.0",  # noqa: S104 - inside the container
    "--port",
    "8000",
    "--timeout-graceful-shutdown",
    "20",
]


def db_url(scheme: str = "postgresql", host: str = "db") -> str:
    return f"{scheme}://{DB_USER}:{urllib.parse.quote(DB_PASSWORD, safe='')}@{host}:5432/{DB_NAME}"


@pytest.fixture(scope="module")
def app_image(bed, docker_client):
    """``app_image('v-unhealthy')``: the local reference of a Car API tag; the bed builds every tag."""

    def resolve(tag: str) -> str:
        return built_image(docker_client, f"{bed['registry']}/{REPOSITORY}:{tag}")

    return resolve


# ---------------------------------------------------------------------------- HTTP

BODIES: list[str] = []  # every response body, checked for secrets


@dataclass
class Answer:
    status: int
    headers: dict
    body: object

    @property
    def version(self) -> str | None:
        return self.headers.get("x-app-version")


def request(
    method: str,
    port: int,
    path: str,
    payload: dict | None = None,
    timeout: float = 10,
    extra_headers: dict | None = None,
) -> Answer:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(extra_headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310 - http://127.0.0.1 only
            status, headers, raw = response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, exc.headers, exc.read().decode()
    BODIES.append(raw)
    return Answer(status, {key.lower(): value for key, value in headers.items()}, json.loads(raw) if raw else None)


def get(port: int, path: str) -> Answer:
    return request("GET", port, path)


def post(port: int, path: str, payload: dict) -> Answer:
    return request("POST", port, path, payload)


def health(port: int) -> Answer:
    return get(port, "/health_check")


def assert_no_secrets(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


# ---------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """A private network with Postgres as ``db``, and helpers to run the app on it."""

    docker_client: docker.DockerClient
    network: object
    start: object  # the run_container fixture
    pg_port: int = 0
    containers: list = field(default_factory=list)  # the app's, for the log checks

    def run(self, image: str, aliases: tuple[str, ...] = (), **kwargs):
        config = {self.network.name: self.docker_client.api.create_endpoint_config(aliases=list(aliases) or None)}
        return self.start(
            image,
            name=f"carapi-test-{uuid.uuid4().hex[:10]}",
            network=self.network.name,
            networking_config=config,
            **kwargs,
        )

    def job(self, image: str, command: list[str], environment: dict | None = None) -> tuple[int, str]:
        """Run a one-off container of ``image`` to completion: (exit status, output).  No SECRET_KEY."""
        container, _ = self.run(image, command=command, environment={"DATABASE_URL": db_url(), **(environment or {})})
        self.containers.append(container)
        status = container.wait(timeout=JOB_TIMEOUT)["StatusCode"]
        return status, container_logs(container)

    def migrate(self, image: str) -> str:
        status, out = self.job(image, ["alembic", "upgrade", "head"])
        assert status == 0, out
        return out

    def current(self, image: str) -> str:
        """The revision ``alembic current`` reports."""
        status, out = self.job(image, ["alembic", "current"])
        assert status == 0, out
        found = re.findall(r"^(\d{4}) \(head\)$", out, re.MULTILINE)
        assert len(found) == 1, out
        return found[0]

    def revision(self) -> str:
        """The revision recorded in the database (what ``alembic current`` reads, without a container)."""
        with connect(self.pg_port) as conn:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        assert len(rows) == 1, rows
        return rows[0][0]

    def launch(self, image: str, environment: dict | None = None, **kwargs) -> tuple[object, int]:
        """Start the API (read-only root file system) without waiting; return it and its port on 127.0.0.1."""
        env = {"DATABASE_URL": db_url("postgresql+psycopg"), "SECRET_KEY": SECRET_KEY, **(environment or {})}
        container, ports = self.run(image, ports={"8000/tcp": None}, environment=env, read_only=True, **kwargs)
        self.containers.append(container)
        return container, ports["8000/tcp"]

    def web(self, image: str, expect: int = 200, **kwargs) -> tuple[object, int]:
        """Start the API and wait until /health_check answers ``expect``."""
        container, port = self.launch(image, **kwargs)

        def answers():
            container.reload()
            if container.status in ("exited", "dead"):
                pytest.fail(f"{image} exited:\n{container_logs(container)}")
            return health(port).status == expect

        wait_for(answers, timeout=START_TIMEOUT, what=f"/health_check of {image} to answer {expect}")
        return container, port

    def check_logs(self) -> None:
        for container in self.containers:
            assert_no_secrets(container_logs(container), f"the logs of {container.name}")
        assert_no_secrets("\n".join(BODIES), "an HTTP answer")


@pytest.fixture
def bare_stack(docker_client, network, run_container) -> Stack:
    """The network only: nothing answers as ``db``."""
    return Stack(docker_client, network, run_container)


@pytest.fixture
def stack(bare_stack, bed_image) -> Stack:
    s = bare_stack
    pg, ports = s.run(
        bed_image("postgres"),
        aliases=("db",),
        ports={"5432/tcp": None},
        environment={"POSTGRES_USER": DB_USER, "POSTGRES_PASSWORD": DB_PASSWORD, "POSTGRES_DB": DB_NAME},
    )
    s.pg_port = ports["5432/tcp"]

    def pg_ready():
        pg.reload()
        if pg.status in ("exited", "dead"):
            pytest.fail(f"postgres exited:\n{container_logs(pg)}")
        with connect(s.pg_port) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    wait_for(pg_ready, timeout=START_TIMEOUT, what="postgres")
    yield s
    s.check_logs()


def connect(port: int):
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=DB_USER,
        password=DB_PASSWORD,
        dbname=DB_NAME,
        connect_timeout=5,
        autocommit=True,
    )


def columns(port: int) -> dict[str, str]:
    """``cars``' columns and whether each is nullable (YES / NO)."""
    with connect(port) as conn:
        rows = conn.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = 'cars'"
        ).fetchall()
    return dict(rows)


def docker_health(container) -> str:
    container.reload()
    return container.attrs["State"]["Health"]["Status"]


def assert_healthy(port: int, tag: str) -> None:
    answer = health(port)
    assert (answer.status, answer.body, answer.version) == (
        200,
        {"status": "ok", "version": tag, "schema": EXPECTED_SCHEMA[tag]},
        tag,
    )


# ---------------------------------------------------------------------------- the image


@pytest.mark.parametrize(
    ("tag", "build", "revisions"),
    [
        (V1, {"APP_SCHEMA": "1", "APP_HEALTH": "ok", "STARTUP_DELAY": "0"}, ["0001"]),
        (V2, {"APP_SCHEMA": "2", "APP_HEALTH": "ok", "STARTUP_DELAY": "0"}, ["0001", "0002"]),
        (V3, {"APP_SCHEMA": "2", "APP_HEALTH": "ok", "STARTUP_DELAY": "0"}, ["0001", "0002"]),
        (UNHEALTHY, {"APP_SCHEMA": "2", "APP_HEALTH": "unhealthy", "STARTUP_DELAY": "0"}, ["0001", "0002"]),
        (SLOWSTART, {"APP_SCHEMA": "2", "APP_HEALTH": "ok", "STARTUP_DELAY": "20"}, ["0001", "0002"]),
        (BADPROXY, {"APP_SCHEMA": "2", "APP_HEALTH": "badproxy", "STARTUP_DELAY": "0"}, ["0001", "0002"]),
        (BADMIGRATION, {"APP_SCHEMA": "bad", "APP_HEALTH": "ok", "STARTUP_DELAY": "0"}, ["0001", "0002", "0003"]),
    ],
)
def test_image(docker_client, run_container, app_image, tag, build, revisions):
    ref = app_image(tag)
    config = docker_client.images.get(ref).attrs["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["Labels"]["org.opencontainers.image.version"] == tag
    assert config["Labels"]["org.opencontainers.image.title"] == "car-api"
    assert {key: env[key] for key in ("APP_VERSION", *build)} == {"APP_VERSION": tag, **build}
    assert config["User"] == "10001:10001"
    assert config["WorkingDir"] == "/app"
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Cmd"] == CMD
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "car_api.healthcheck"]
    assert config["Healthcheck"]["StartPeriod"] > STARTUP_DELAY * SECOND

    # Migrations for this tag only; no wheels, no pip in the venv; uid 10001 owns no file.
    script = (
        "set -e; ls /app/migrations/versions; echo --; ls /tmp; echo --; "
        "/opt/venv/bin/python -c 'import pip' 2>&1 || true; echo --; "
        "find / -xdev -user 10001 -print; echo --"
    )
    container, _ = run_container(
        ref, name=f"carapi-test-{uuid.uuid4().hex[:10]}", command=["sh", "-c", script], user="0"
    )
    assert container.wait(timeout=JOB_TIMEOUT)["StatusCode"] == 0, container_logs(container)
    shipped, tmp, pip, owned, _ = container_logs(container).split("--\n")
    assert [name.split("_", 1)[0] for name in shipped.split()] == revisions
    assert tmp.strip() == ""
    assert "No module named 'pip'" in pip
    assert owned.strip() == ""


# ---------------------------------------------------------------------------- releases


def crud_round_trip(port: int, tag: str) -> None:
    """Create, read, list, delete a car, and the 404s and 422s around that, on the 0001 release."""
    car = {"brand": "Volkswagen", "model": "Gol", "year": 2019, "price": "45990.5"}
    created = post(port, "/api/cars", car)
    assert (created.status, created.version) == (201, tag), created
    body = created.body
    assert set(body) == {"id", "brand", "model", "year", "price", "created_at"}  # no color before 0002
    assert (body["brand"], body["model"], body["year"], body["price"]) == ("Volkswagen", "Gol", 2019, "45990.50")
    car_id = body["id"]

    assert get(port, f"/api/cars/{car_id}").body == body
    listed = get(port, "/api/cars")
    assert (listed.status, listed.version, listed.body) == (200, tag, {"count": 1, "cars": [body]})

    post(port, "/api/cars", {"brand": " Fiat ", "model": "Uno", "year": 2010, "price": 15000})
    assert get(port, "/api/cars?limit=1").body["count"] == 1
    assert [c["brand"] for c in get(port, "/api/cars?limit=10").body["cars"]] == ["Volkswagen", "Fiat"]
    assert get(port, "/api/cars?offset=1").body["cars"][0]["brand"] == "Fiat"
    assert get(port, "/api/cars?limit=0").status == 422

    for bad in (
        {"model": "Gol", "year": 2019, "price": "1"},  # no brand
        {**car, "brand": "  "},
        {**car, "year": 1700},
        {**car, "price": "-1"},
        {**car, "price": "1.999"},
        {**car, "mileage": 1000},  # unknown field
        {**car, "color": "red"},  # the 0001 release stores no color
    ):
        answer = post(port, "/api/cars", bad)
        assert (answer.status, answer.version) == (422, tag), (bad, answer)

    missing = get(port, "/api/cars/999999")
    assert (missing.status, missing.body, missing.version) == (404, {"detail": "car 999999 not found"}, tag)
    assert get(port, "/api/cars/abc").status == 422
    deleted = request("DELETE", port, f"/api/cars/{car_id}")
    assert (deleted.status, deleted.body, deleted.version) == (204, None, tag)
    assert get(port, f"/api/cars/{car_id}").status == 404
    assert request("DELETE", port, f"/api/cars/{car_id}").status == 404
    assert get(port, "/no/such/route").version == tag


def test_releases_migrate_and_roll_back(stack, app_image):
    v1, v2, v3, bad = app_image(V1), app_image(V2), app_image(V3), app_image(BADMIGRATION)

    # --- v1: migrate (no SECRET_KEY needed), start, CRUD
    out = stack.migrate(v1)
    assert "Running upgrade  -> 0001" in out
    assert stack.current(v1) == "0001"
    assert set(columns(stack.pg_port)) == {"id", "brand", "model", "year", "price", "created_at"}

    web1, port1 = stack.web(v1)
    assert_healthy(port1, V1)
    assert web1.exec_run(["id", "-u"]).output.decode().strip() == "10001"
    assert web1.exec_run(["python", "-m", "car_api.healthcheck"]).exit_code == 0
    crud_round_trip(port1, V1)

    # --- v2: migrate to 0002 while v1 serves; v1 keeps working on the new schema
    out = stack.migrate(v2)
    assert "Running upgrade 0001 -> 0002" in out
    assert stack.revision() == "0002"
    assert columns(stack.pg_port)["color"] == "YES"
    assert_healthy(port1, V1)
    old = post(port1, "/api/cars", {"brand": "Chevrolet", "model": "Onix", "year": 2022, "price": "79900"})
    assert old.status == 201 and "color" not in old.body, old

    web2, port2 = stack.web(v2)
    assert_healthy(port2, V2)
    new = post(
        port2, "/api/cars", {"brand": "Toyota", "model": "Corolla", "year": 2024, "price": "150000", "color": "prata"}
    )
    assert (new.status, new.body["color"], new.version) == (201, "prata", V2), new
    assert get(port2, f"/api/cars/{old.body['id']}").body == {**old.body, "color": None}
    # The 0001 code reads rows the 0002 code wrote, without the column it does not know.
    assert get(port1, f"/api/cars/{new.body['id']}").body == {k: v for k, v in new.body.items() if k != "color"}
    assert get(port1, "/api/cars").body["count"] == 3

    # --- v3: no migration to run, another version on the same schema
    out = stack.migrate(v3)
    assert "Running upgrade" not in out
    assert stack.revision() == "0002"
    _, port3 = stack.web(v3)
    assert_healthy(port3, V3)
    assert get(port3, "/api/cars").body == get(port2, "/api/cars").body

    # --- roll back to v1: a fresh container of the 0001 code on the 0002 schema
    web2.stop(timeout=STOP_TIMEOUT)
    web1.stop(timeout=STOP_TIMEOUT)
    _, port1b = stack.web(v1)
    assert_healthy(port1b, V1)
    assert get(port1b, "/api/cars").body["count"] == 3
    crud = post(port1b, "/api/cars", {"brand": "Honda", "model": "Civic", "year": 2018, "price": "98000"})
    assert (crud.status, crud.version) == (201, V1)
    assert request("DELETE", port1b, f"/api/cars/{crud.body['id']}").status == 204

    # --- the bad migration fails, changes nothing, and the running release is unaffected
    status, out = stack.job(bad, ["alembic", "upgrade", "head"])
    assert status != 0, out
    assert "Running upgrade 0002 -> 0003" in out
    assert 'relation "car_owners" does not exist' in out
    assert stack.revision() == "0002"
    assert "mileage" not in columns(stack.pg_port)
    assert_healthy(port3, V3)
    assert_healthy(port1b, V1)

    # --- logs: on stdout, a start line per release, no secret
    for container, tag in ((web1, V1), (web2, V2)):
        stdout = container.logs(stdout=True, stderr=False).decode()
        assert f"car-api {tag} starting: schema revision {EXPECTED_SCHEMA[tag]}, database configured" in stdout
        assert '"GET /health_check HTTP/1.1" 200' in stdout
        assert container.logs(stdout=False, stderr=True).decode() == ""


def test_graceful_stop_finishes_the_request_in_flight(stack, app_image):
    web, port = stack.web(app_image(V3))
    answers: list[Answer] = []
    client = threading.Thread(target=lambda: answers.append(request("GET", port, "/api/slow?seconds=2", timeout=60)))
    client.start()
    wait_for(lambda: "slow request: answering in 2s" in container_logs(web), timeout=30, what="the request")

    web.stop(timeout=STOP_TIMEOUT)  # SIGTERM, then SIGKILL only after 30 s
    client.join(timeout=60)

    assert answers, "the request in flight got no answer"
    assert (answers[0].status, answers[0].body, answers[0].version) == (200, {"slept": 2.0, "version": V3}, V3)
    web.reload()
    assert web.attrs["State"]["ExitCode"] == 0  # exited on its own, not killed
    lines = container_logs(web).splitlines()

    def position(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    # The request began before the shutdown, and was answered during it.
    assert (
        position("slow request: answering in 2s")
        < position("Shutting down")
        < position('"GET /api/slow?seconds=2 HTTP/1.1" 200')
        < position(f"car-api {V3} stopping")
        < position("Finished server process")
    ), "\n".join(lines)


# ---------------------------------------------------------------------------- faulty builds


def test_unhealthy_build(stack, app_image):
    stack.migrate(app_image(V2))
    web, port = stack.web(app_image(UNHEALTHY), expect=503, healthcheck={**FAST_HEALTHCHECK, "start_period": SECOND})

    answer = health(port)
    assert (answer.status, answer.version) == (503, UNHEALTHY)
    assert answer.body == {
        "status": "unhealthy",
        "version": UNHEALTHY,
        "schema": "0002",
        "detail": "unhealthy by build (APP_HEALTH=unhealthy)",
    }
    # The API itself works.
    created = post(port, "/api/cars", {"brand": "Renault", "model": "Kwid", "year": 2023, "price": "68000"})
    assert (created.status, created.version) == (201, UNHEALTHY), created
    assert get(port, "/api/cars").body["count"] == 1

    wait_for(lambda: docker_health(web) == "unhealthy", timeout=30, what="Docker to report v-unhealthy unhealthy")
    last = web.attrs["State"]["Health"]["Log"][-1]
    assert last["ExitCode"] == 1 and "503" in last["Output"], last
    time.sleep(2)
    assert docker_health(web) == "unhealthy" and health(port).status == 503  # and it stays so


def test_badproxy_build_fails_only_behind_a_proxy(stack, app_image):
    stack.migrate(app_image(V2))
    web, port = stack.web(app_image(BADPROXY), healthcheck={**FAST_HEALTHCHECK, "start_period": SECOND})

    assert (health(port).status, health(port).version) == (200, BADPROXY)
    proxied = request("GET", port, "/health_check", extra_headers={"X-Forwarded-For": "203.0.113.7"})
    assert proxied.status == 503
    assert proxied.body["detail"] == "refuses proxied requests by build (APP_HEALTH=badproxy)"
    assert get(port, "/api/cars").status == 200
    wait_for(lambda: docker_health(web) == "healthy", timeout=30, what="Docker to report v-badproxy healthy")


def log_time(container, text: str) -> datetime:
    """When the app logged its first line containing ``text`` (its own clock, to the millisecond)."""
    line = next(line for line in container_logs(container).splitlines() if text in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def test_slow_start_refuses_connections_then_is_healthy(stack, app_image):
    image = app_image(SLOWSTART)
    stack.migrate(app_image(V2))
    # The image's health check, probed every second; a start period that outlasts a slow host.
    web, port = stack.launch(image, healthcheck={**FAST_HEALTHCHECK, "start_period": 90 * SECOND})
    stopped_early, _ = stack.launch(image)

    # Stopped during its delay, a container ends the wait at once and exits cleanly.
    wait_for(lambda: DELAYING in container_logs(stopped_early), timeout=60, what="the delay of v-slowstart")
    stopped_early.stop(timeout=STOP_TIMEOUT)
    stopped_early.reload()
    out = container_logs(stopped_early)
    assert stopped_early.attrs["State"]["ExitCode"] == 0, out
    assert "asked to stop during the start-up delay" in out
    assert f"car-api {SLOWSTART} stopping" in out

    # During the delay nothing listens: connections are refused, Docker says "starting".
    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 8000), timeout=2).close()\n"
        "    print('open')\n"
        "except ConnectionRefusedError:\n"
        "    print('refused')\n"
    )
    wait_for(lambda: DELAYING in container_logs(web), timeout=60, what="the delay of v-slowstart")
    refused = 0
    while True:
        # Read before the probe: the app may begin to listen between a refused probe and a later read.
        logs_before, health_before = container_logs(web), docker_health(web)
        if web.exec_run(["python", "-c", probe]).output.decode().strip() != "refused":
            break
        refused += 1
        assert LISTENING not in logs_before
        assert health_before == "starting"
        try:
            health(port)  # through the published port: no HTTP answer either, unless it just began to listen
        except OSError:
            pass
        else:
            assert LISTENING in container_logs(web)
            break
        time.sleep(1)
    assert refused >= 3, "the probe found v-slowstart listening too soon"

    wait_for(lambda: health(port).status == 200, timeout=START_TIMEOUT, interval=0.25, what="v-slowstart")
    waited = (log_time(web, LISTENING) - log_time(web, DELAYING)).total_seconds()
    assert STARTUP_DELAY <= waited < STARTUP_DELAY + 10, waited
    assert_healthy(port, SLOWSTART)
    assert get(port, "/api/cars").status == 200
    wait_for(lambda: docker_health(web) == "healthy", timeout=30, what="Docker to report v-slowstart healthy")


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("secret_key", "message"),
    [
        (None, "SECRET_KEY is not set (generate one with: openssl rand -hex 32)"),
        ("", "SECRET_KEY is not set (generate one with: openssl rand -hex 32)"),
        ("short-key-123", "SECRET_KEY must be at least 16 characters (generate one with: openssl rand -hex 32)"),
    ],
    ids=["unset", "empty", "short"],
)
def test_secret_key_is_required(bare_stack, app_image, secret_key, message):
    env = {"DATABASE_URL": db_url()}
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    container, _ = bare_stack.run(app_image(V2), environment=env, read_only=True)
    status = container.wait(timeout=JOB_TIMEOUT)["StatusCode"]
    out = container_logs(container)
    assert status == 2, out
    lines = [line for line in out.splitlines() if "SECRET_KEY" in line]
    assert len(lines) == 1 and lines[0].endswith(f"configuration error: {message}"), out
    assert "Traceback" not in out, out
    assert_no_secrets(out, "the logs of a refused start")
    if secret_key:
        assert secret_key not in out


def test_database_down(bare_stack, app_image):
    """Nothing answers as ``db``: the API starts and says so on /health_check; the migrations fail clearly."""
    _, port = bare_stack.web(app_image(V2), expect=503)
    answer = health(port)
    assert (answer.status, answer.version) == (503, V2)
    assert answer.body == {"status": "unhealthy", "version": V2, "schema": "0002", "detail": "database unavailable"}
    assert get(port, "/api/cars").body == {"detail": "database unavailable"}

    status, out = bare_stack.job(app_image(V2), ["alembic", "upgrade", "head"])
    assert status == 1, out
    assert out.strip().splitlines()[-1].startswith("alembic: database unreachable: "), out
    status, out = bare_stack.job(app_image(V2), ["alembic", "upgrade", "head"], {"DATABASE_URL": ""})
    assert (status, out.strip().splitlines()[-1]) == (1, "alembic: configuration error: DATABASE_URL is not set")
    bare_stack.check_logs()
