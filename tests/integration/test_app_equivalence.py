"""The Equivalence sample app (``tests/apps/equivalence``) on the bed.

One FastAPI + RQ image, built by the bed as ``v1`` and ``v2``, run the way its
deployment guide runs it, on a private Docker network with Postgres (``db``)
and Redis (``cache``, with a password) from the bed's stand-in images: the
migrations, the seed and the key commands in one-off containers, the API
published on 127.0.0.1, and an RQ worker in its own container.  API keys are
stored only as HMAC-SHA256(API_KEY_SALT, key); the salt, the passwords and
the keys stay out of every log, except for the key that a key command prints
on purpose, once, on its stdout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

import docker
import psycopg
import pytest
import redis
from conftest import built_image, container_logs, wait_for

REPOSITORY = "pydeploy/equivalence"
DB_USER = "equivalence"
DB_PASSWORD = "pg-S3cret/with:odd@chars"  # needs quoting in a URL
DB_NAME = "equivalence_db"
REDIS_PASSWORD = "redis-S3cret-5d0c"
SALT = secrets.token_hex(32)  # what `openssl rand -hex 32` makes
SECRETS = [DB_PASSWORD, urllib.parse.quote(DB_PASSWORD, safe=""), REDIS_PASSWORD, SALT]
START_TIMEOUT = 120.0
JOB_TIMEOUT = 120
TASK_TIMEOUT = 60.0
STOP_GRACE = 30  # seconds docker stop waits before SIGKILL
SLEEP_SECONDS = 6
CMD = ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]  # noqa: S104
MIGRATE = ["alembic", "upgrade", "head"]
SEED = ["python", "-m", "app.seed"]
WORKER = ["python", "-m", "app.worker"]
# What the seed loads: 4 categories, 24 units, 20 equivalences (each unit to its base), 1 admin key.
SEEDED = {"categories": 4, "units": 24, "equivalences": 20, "api_keys": 1}


def db_url(scheme: str = "postgresql", host: str = "db") -> str:
    return f"{scheme}://{DB_USER}:{urllib.parse.quote(DB_PASSWORD, safe='')}@{host}:5432/{DB_NAME}"


REDIS_URL = f"redis://:{REDIS_PASSWORD}@cache:6379/0"


def key_hash(key: str) -> str:
    """What the app stores for ``key``: HMAC-SHA256 keyed with the salt's text, in hex."""
    return hmac.new(SALT.encode(), key.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def app_image(bed, docker_client):
    """``app_image('v1')``: the local reference of an Equivalence tag; the bed builds every tag."""

    def resolve(tag: str) -> str:
        return built_image(docker_client, f"{bed['registry']}/{REPOSITORY}:{tag}")

    return resolve


@dataclass
class Stack:
    """A private network with Postgres as ``db`` and Redis as ``cache``, and helpers to run the app."""

    docker_client: docker.DockerClient
    network: object
    start: object  # the run_container fixture
    pg: object = None  # the Postgres container
    pg_port: int = 0
    cache: object = None  # the Redis container
    redis_port: int = 0
    containers: list = field(default_factory=list)  # the app's, for the log checks

    def env(self, environment: dict | None = None) -> dict:
        return {"DATABASE_URL": db_url(), "REDIS_URL": REDIS_URL, "API_KEY_SALT": SALT, **(environment or {})}

    def run(self, image: str, aliases: tuple[str, ...] = (), **kwargs):
        config = {self.network.name: self.docker_client.api.create_endpoint_config(aliases=list(aliases) or None)}
        return self.start(image, network=self.network.name, networking_config=config, **kwargs)

    def job(self, image: str, command: list[str], environment: dict | None = None):
        """Run a one-off container of ``image`` to completion: (exit status, stdout, stderr)."""
        container, _ = self.run(image, command=command, environment=self.env(environment))
        self.containers.append(container)
        status = container.wait(timeout=JOB_TIMEOUT)["StatusCode"]
        stdout = container.logs(stdout=True, stderr=False).decode()
        stderr = container.logs(stdout=False, stderr=True).decode()
        return status, stdout, stderr

    def web(self, image: str, environment: dict | None = None) -> tuple[object, int]:
        """Start the API (read-only root file system); return it and its port on 127.0.0.1."""
        env = self.env({"DATABASE_URL": db_url("postgresql+psycopg"), **(environment or {})})
        container, ports = self.run(image, ports={"8000/tcp": None}, environment=env, read_only=True)
        self.containers.append(container)
        port = ports["8000/tcp"]

        def healthy():
            container.reload()
            if container.status in ("exited", "dead"):
                pytest.fail(f"{image} exited:\n{container_logs(container)}")
            return get(port, "/health")[0] == 200

        wait_for(healthy, timeout=START_TIMEOUT, what=f"/health of {image}")
        return container, port

    def worker(self, image: str):
        """Start the RQ worker (read-only root file system, no HEALTHCHECK: it serves no HTTP)."""
        container, _ = self.run(
            image,
            command=WORKER,
            environment=self.env(),
            read_only=True,
            healthcheck={"test": ["NONE"]},
            stop_signal="SIGTERM",
        )
        self.containers.append(container)

        def listening():
            container.reload()
            if container.status in ("exited", "dead"):
                pytest.fail(f"the worker exited:\n{container_logs(container)}")
            return "*** Listening on equivalence" in container_logs(container)

        wait_for(listening, timeout=START_TIMEOUT, what="the worker to listen on queue equivalence")
        return container


@pytest.fixture
def bare_stack(docker_client, network, run_container) -> Stack:
    """The network only: nothing answers as ``db`` or ``cache``."""
    return Stack(docker_client, network, run_container)


@pytest.fixture
def stack(bare_stack, bed_image) -> Stack:
    s = bare_stack
    s.pg, ports = s.run(
        bed_image("postgres"),
        aliases=("db",),
        ports={"5432/tcp": None},
        environment={"POSTGRES_USER": DB_USER, "POSTGRES_PASSWORD": DB_PASSWORD, "POSTGRES_DB": DB_NAME},
    )
    s.pg_port = ports["5432/tcp"]
    s.cache, ports = s.run(
        bed_image("redis"), aliases=("cache",), ports={"6379/tcp": None}, command=["--requirepass", REDIS_PASSWORD]
    )
    s.redis_port = ports["6379/tcp"]

    def pg_ready():
        s.pg.reload()
        if s.pg.status in ("exited", "dead"):
            pytest.fail(f"postgres exited:\n{container_logs(s.pg)}")
        with connect(s.pg_port) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    wait_for(pg_ready, timeout=START_TIMEOUT, what="postgres")
    wait_for(lambda: redis_client(s.redis_port).ping(), timeout=START_TIMEOUT, what="redis")
    return s


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


def redis_client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, password=REDIS_PASSWORD, protocol=2, socket_timeout=5)


BODIES: list[str] = []  # every response body, checked for secrets


def request(method: str, port: int, path: str, payload: object = None, key: str | None = None) -> tuple[int, dict]:
    data = json.dumps(payload).encode() if payload is not None else None
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as response:  # noqa: S310 - http://127.0.0.1 only
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    BODIES.append(raw)
    return status, json.loads(raw)


def get(port: int, path: str, key: str | None = None) -> tuple[int, dict]:
    return request("GET", port, path, key=key)


def post(port: int, path: str, payload: object, key: str | None = None) -> tuple[int, dict]:
    return request("POST", port, path, payload, key=key)


def wait_job(port: int, key: str, job_id: str, state: str = "finished") -> dict:
    def reached():
        status, body = get(port, f"/api/jobs/{job_id}", key)
        assert status == 200, body
        assert body["status"] != "failed", body
        return body if body["status"] == state else None

    return wait_for(reached, timeout=TASK_TIMEOUT, interval=0.25, what=f"job {job_id} to be {state}")


def counts(port: int) -> dict[str, int]:
    with connect(port) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in SEEDED}  # noqa: S608


def dump_api_keys(stack: Stack) -> str:
    """``pg_dump`` of table api_keys, data included, as a backup would hold it."""
    result = stack.pg.exec_run(
        ["pg_dump", "-U", DB_USER, "-d", DB_NAME, "--table=api_keys", "--no-owner"], user="postgres"
    )
    assert result.exit_code == 0, result.output.decode()
    return result.output.decode()


def printed_key(status: int, stdout: str, stderr: str) -> str:
    """The key a key command printed: its whole stdout, one line."""
    assert status == 0, stdout + stderr
    lines = stdout.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"[A-Za-z0-9_-]{64}", lines[0]), stdout
    return lines[0]


def assert_no_secrets(text: str, where: str, keys: list[str] = ()) -> None:
    for secret in [*SECRETS, *keys]:
        assert secret not in text, f"a secret leaked into {where}"


# ---------------------------------------------------------------------------- the image


@pytest.mark.parametrize("tag", ["v1", "v2"])
def test_image(docker_client, run_container, app_image, tag):
    ref = app_image(tag)
    config = docker_client.images.get(ref).attrs["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["Labels"]["org.opencontainers.image.version"] == tag
    assert env["APP_VERSION"] == tag
    assert config["User"] == "10001:10001"
    assert config["WorkingDir"] == "/app"
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Cmd"] == CMD
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "app.healthcheck"]

    # The migrations and the sources; no wheels, no pip in the venv; uid 10001 owns no file.
    script = (
        "set -e; ls /app /app/app /app/migrations/versions; echo --; ls /tmp; echo --; "
        "/opt/venv/bin/python -c 'import pip' 2>&1 || true; echo --; "
        "find / -xdev -user 10001 -print; echo --"
    )
    container, _ = run_container(ref, command=["sh", "-c", script], user="0")
    assert container.wait(timeout=JOB_TIMEOUT)["StatusCode"] == 0, container_logs(container)
    sources, tmp, pip, owned, _ = container_logs(container).split("--\n")
    names = set(sources.split())
    assert {"alembic.ini", "main.py", "worker.py", "seed.py", "rotate_keys.py", "create_key.py"} <= names
    assert "0001_units_equivalences_api_keys.py" in names
    assert "wheels" not in names and "requirements.txt" not in names
    assert tmp.strip() == ""
    assert "No module named 'pip'" in pip
    assert owned.strip() == ""


# ---------------------------------------------------------------------------- a deployment


def test_deploy_seed_keys_and_jobs(stack, app_image):
    image = app_image("v1")

    # --- migrations, then the seed twice: the second run inserts nothing
    status, out, err = stack.job(image, MIGRATE)
    assert status == 0, out + err
    assert "Running upgrade  -> 0001" in out + err
    status, out, err = stack.job(image, ["alembic", "current"])
    assert status == 0 and re.search(r"^0001 \(head\)$", out, re.MULTILINE), out + err

    status, out, err = stack.job(image, SEED)
    assert (status, err) == (0, ""), out + err
    match = re.fullmatch(
        r"seed: inserted 49 rows, 0 already present \(admin key ([A-Za-z0-9_-]{8})\.\.\. created, not shown:"
        r" python -m app.rotate_keys --name admin prints a usable one\)\n",
        out,
    )
    assert match, out
    seeded_prefix = match.group(1)
    assert counts(stack.pg_port) == SEEDED

    status, out, err = stack.job(image, SEED)
    assert (status, err) == (0, ""), out + err
    assert out == "seed: inserted 0 rows, 49 already present (an active admin key exists)\n"
    assert counts(stack.pg_port) == SEEDED

    # --- keys: the commands print the key once on stdout, the table holds only its HMAC
    status, out, err = stack.job(image, ["python", "-m", "app.rotate_keys"])
    admin1 = printed_key(status, out, err)
    assert err == (
        f"rotate_keys: key 'admin' rotated: new key {admin1[:8]}... printed on stdout; revoked: {seeded_prefix}...\n"
    )
    status, out, err = stack.job(image, ["python", "-m", "app.create_key", "--name", "client"])
    client = printed_key(status, out, err)
    assert err == f"create_key: key 'client' created: {client[:8]}... printed on stdout\n"
    status, out, err = stack.job(image, ["python", "-m", "app.create_key", "--name", "client"])
    assert (status, out) == (1, ""), out + err
    assert "create_key: an active key named 'client' exists: rotate it with python -m app.rotate_keys" in err
    status, out, err = stack.job(image, ["python", "-m", "app.rotate_keys", "--name", "admin"])
    admin2 = printed_key(status, out, err)
    assert f"revoked: {admin1[:8]}..." in err
    keys = [admin1, client, admin2]
    assert len(set(keys)) == 3

    dump = dump_api_keys(stack)
    assert "COPY public.api_keys" in dump, dump
    for key in keys:
        assert key not in dump
        assert key_hash(key) in dump
    with connect(stack.pg_port) as conn:
        rows = conn.execute("SELECT name, prefix, key_hash, revoked_at IS NULL FROM api_keys ORDER BY id").fetchall()
    assert rows[0][:2] == ("admin", seeded_prefix) and rows[0][3] is False
    assert rows[1:] == [
        ("admin", admin1[:8], key_hash(admin1), False),
        ("client", client[:8], key_hash(client), True),
        ("admin", admin2[:8], key_hash(admin2), True),
    ]

    # --- the API: healthy, ready, non-root
    web, port = stack.web(image)
    assert get(port, "/health") == (200, {"status": "ok", "version": "v1"})
    assert get(port, "/ready") == (200, {"status": "ready", "database": "ok", "redis": "ok"})
    assert web.exec_run(["id", "-u"]).output.decode().strip() == "10001"
    assert web.exec_run(["python", "-m", "app.healthcheck"]).exit_code == 0

    # --- authentication: 401 without a key, 403 for a wrong or revoked one, 200 for an active one
    assert get(port, "/api/units") == (401, {"detail": "missing X-API-Key header"})
    assert get(port, "/api/units", key="") == (401, {"detail": "missing X-API-Key header"})
    forbidden = (403, {"detail": "invalid or revoked API key"})
    assert get(port, "/api/units", key="not-a-key") == forbidden
    assert get(port, "/api/units", key=admin2[:8] + "x" * 56) == forbidden  # right prefix, wrong key
    assert get(port, "/api/units", key=admin1) == forbidden  # rotated away
    status, body = get(port, "/api/units?category=length", key=admin2)
    assert (status, body["count"]) == (200, 9), body
    assert body["units"][:2] == [
        {"code": "m", "name": "metre", "category": "length"},
        {"code": "km", "name": "kilometre", "category": "length"},
    ]
    status, body = get(port, "/api/categories", key=client)
    assert (status, [c["code"] for c in body["categories"]]) == (200, ["length", "mass", "time", "volume"]), body
    assert post(port, "/api/conversions", {"value": 1, "from": "mi", "to": "km"})[0] == 401
    assert post(port, "/api/conversions", {"value": 1, "from": "mi", "to": "km"}, key=admin1) == forbidden

    # --- a conversion round trip through the worker
    worker1 = stack.worker(image)
    status, queued = post(port, "/api/conversions", {"value": "1.5", "from": "mi", "to": "km"}, key=client)
    assert status == 202, queued
    assert set(queued) == {"job_id", "status"} and queued["status"] == "queued"
    done = wait_job(port, client, queued["job_id"])
    assert done == {
        "job_id": queued["job_id"],
        "status": "finished",
        "result": {"value": "1.5", "from": "mi", "to": "km", "result": "2.414016", "factor": "1.609344"},
    }
    # Through the base unit both ways: pounds to ounces, 16 to the pound.
    status, queued = post(port, "/api/conversions", {"value": 2, "from": "lb", "to": "oz"}, key=admin2)
    assert status == 202, queued
    assert wait_job(port, admin2, queued["job_id"])["result"]["result"] == "32"

    # Bad input never reaches the queue; an unknown job is 404.
    for payload, detail in (
        ({"value": 1, "from": "km", "to": "kg"}, "cannot convert length (km) to mass (kg)"),
        ({"value": 1, "from": "km", "to": "parsec"}, "unknown unit: parsec"),
        ({"value": "abc", "from": "km", "to": "m"}, "value must be a number or a decimal string"),
    ):
        assert post(port, "/api/conversions", payload, key=client) == (422, {"detail": detail}), payload
    assert post(port, "/api/conversions", {"value": 1, "from": "km"}, key=client)[0] == 422
    assert post(port, "/api/sleep", {"seconds": -1}, key=client)[0] == 422
    assert get(port, f"/api/jobs/{uuid.uuid4()}", key=client) == (404, {"detail": "no such job"})

    # --- graceful shutdown: a worker stopped mid-job (SIGTERM, then a grace period) finishes it
    status, queued = post(port, "/api/sleep", {"seconds": SLEEP_SECONDS}, key=client)
    assert status == 202, queued
    sleep_id = queued["job_id"]
    wait_job(port, client, sleep_id, "started")
    worker1.reload()
    hostname = worker1.attrs["Config"]["Hostname"]
    worker1.stop(timeout=STOP_GRACE)  # RQ's warm shutdown waits for the job
    worker1.reload()
    logs = container_logs(worker1)
    assert worker1.attrs["State"]["ExitCode"] == 0, logs
    assert "warm shut down requested" in logs, logs
    assert f"Job OK ({sleep_id})" in logs, logs
    assert "cold shut down" not in logs, logs
    done = wait_job(port, client, sleep_id)
    assert done["result"] == {"slept": SLEEP_SECONDS, "worker": hostname}

    # A second worker finds the queue empty: the job ran once.
    worker2 = stack.worker(image)
    status, queued = post(port, "/api/conversions", {"value": 90, "from": "min", "to": "h"}, key=client)
    assert status == 202, queued
    assert wait_job(port, client, queued["job_id"])["result"]["result"] == "1.5"
    assert sleep_id not in container_logs(worker2)

    # --- Redis goes away: /ready says so, jobs are refused; back, and all recovers by itself
    stack.cache.stop(timeout=5)
    status, body = get(port, "/ready")
    assert (status, body) == (503, {"status": "not ready", "database": "ok", "redis": "unavailable"})
    assert get(port, "/health") == (200, {"status": "ok", "version": "v1"})
    status, body = post(port, "/api/conversions", {"value": 1, "from": "km", "to": "m"}, key=client)
    assert (status, body) == (503, {"detail": "job queue unavailable"})
    stack.cache.start()
    wait_for(lambda: get(port, "/ready")[0] == 200, timeout=START_TIMEOUT, what="/ready after redis came back")

    # --- logs: on stdout, never a secret; a key only on the stdout of the command that made it
    stdout = web.logs(stdout=True, stderr=False).decode()
    assert "equivalence v1 starting: database configured, redis configured, queue equivalence" in stdout
    assert '"GET /api/units?category=length HTTP/1.1" 200' in stdout
    assert "readiness: redis unavailable" in stdout
    for container in (web, worker1, worker2):
        assert container.logs(stdout=False, stderr=True).decode() == "", container_logs(container)
    for container in stack.containers:
        out = container.logs(stdout=True, stderr=False).decode()
        err = container.logs(stdout=False, stderr=True).decode()
        shown = [key for key in keys if out.strip() == key]
        assert_no_secrets(err, f"the stderr of {container.name}", keys)
        assert_no_secrets(out, f"the stdout of {container.name}", [key for key in keys if key not in shown])
        for key in shown:
            assert out == key + "\n"
    assert_no_secrets(container_logs(stack.pg), "the logs of postgres", keys)
    assert_no_secrets("\n".join(BODIES), "an HTTP answer", keys)


def test_v2_shares_the_queue_with_v1(stack, app_image):
    """A rolling upgrade: v2's API queues jobs that v1's worker runs, with the same keys and data."""
    v1, v2 = app_image("v1"), app_image("v2")
    assert stack.job(v1, MIGRATE)[0] == 0
    assert stack.job(v2, MIGRATE)[0] == 0  # nothing to do
    status, out, err = stack.job(v2, SEED)
    assert (status, out.startswith("seed: inserted 49 rows")) == (0, True), out + err
    status, out, err = stack.job(v1, SEED)
    assert (status, out) == (0, "seed: inserted 0 rows, 49 already present (an active admin key exists)\n"), err
    key = printed_key(*stack.job(v1, ["python", "-m", "app.create_key", "--name", "rolling"]))
    _, port2 = stack.web(v2)
    assert get(port2, "/health") == (200, {"status": "ok", "version": "v2"})
    stack.worker(v1)
    status, queued = post(port2, "/api/conversions", {"value": 1, "from": "gal_us", "to": "l"}, key=key)
    assert status == 202, queued
    assert wait_job(port2, key, queued["job_id"])["result"]["result"] == "3.785411784"


# ---------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("salt", "message"),
    [
        (None, "API_KEY_SALT is not set (generate one with: openssl rand -hex 32)"),
        ("", "API_KEY_SALT is not set (generate one with: openssl rand -hex 32)"),
        ("0123456789abcdef", "API_KEY_SALT must be at least 32 hexadecimal characters"),
        ("not-hex-" * 8, "API_KEY_SALT must be at least 32 hexadecimal characters"),
    ],
    ids=["unset", "empty", "short", "not-hex"],
)
def test_salt_is_required(bare_stack, app_image, salt, message):
    image = app_image("v1")
    environment = {"API_KEY_SALT": salt} if salt is not None else {}
    env = {k: v for k, v in bare_stack.env(environment).items() if k != "API_KEY_SALT" or salt is not None}

    # The API exits at start-up with one line naming API_KEY_SALT (and no traceback).
    container, _ = bare_stack.run(image, environment=env, read_only=True)
    bare_stack.containers.append(container)
    status = container.wait(timeout=JOB_TIMEOUT)["StatusCode"]
    out = container_logs(container)
    assert status != 0, out
    lines = [line for line in out.splitlines() if "API_KEY_SALT" in line]
    assert len(lines) == 1 and f"configuration error: {message}" in lines[0], out
    assert "Traceback" not in out, out

    # So do the commands that use it, before touching the database (nothing answers as "db").
    for name, command in (
        ("seed", SEED),
        ("rotate_keys", ["python", "-m", "app.rotate_keys"]),
        ("create_key", ["python", "-m", "app.create_key", "--name", "x"]),
    ):
        container, _ = bare_stack.run(image, command=command, environment=env)
        bare_stack.containers.append(container)
        status = container.wait(timeout=JOB_TIMEOUT)["StatusCode"]
        stdout = container.logs(stdout=True, stderr=False).decode()
        stderr = container.logs(stdout=False, stderr=True).decode()
        assert (status, stdout) == (2, ""), stdout + stderr
        assert stderr.startswith(f"{name}: configuration error: {message}"), stderr
        assert len(stderr.splitlines()) == 1, stderr

    for container in bare_stack.containers:
        out = container_logs(container)
        assert_no_secrets(out, f"the logs of {container.name}")
        if salt:
            assert salt not in out


def test_commands_fail_clearly_without_database(bare_stack, app_image):
    image = app_image("v1")
    # Nothing answers as "db" on this network.
    for name, command, code in (("seed", SEED, 3), ("alembic", MIGRATE, 1)):
        status, out, err = bare_stack.job(image, command)
        assert status == code, out + err
        last = (out + err).strip().splitlines()[-1]
        assert last.startswith(f"{name}: database unreachable: ") and "'db'" in last, out + err
        assert_no_secrets(out + err, f"the output of {name}")
    # The worker needs no salt, but a Redis.
    status, out, err = bare_stack.job(image, WORKER, {"API_KEY_SALT": ""})
    assert status == 3, out + err
    assert err.startswith("worker: redis unavailable: ") and "cache" in err, err
    status, out, err = bare_stack.job(image, WORKER, {"REDIS_URL": ""})
    assert (status, err) == (2, "worker: configuration error: REDIS_URL is not set\n"), out + err
    status, out, err = bare_stack.job(image, SEED, {"DATABASE_URL": "mysql://u:p@db/x"})
    assert status == 2, out + err
    assert "DATABASE_URL must be a postgresql:// or postgresql+psycopg:// URL, not mysql://" in err, err
    for container in bare_stack.containers:
        assert_no_secrets(container_logs(container), f"the logs of {container.name}")
