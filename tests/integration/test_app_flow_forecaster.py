"""The Flow Forecaster sample app (``tests/apps/flow_forecaster``) on the bed.

One Flask + Celery image, built by the bed as ``v1`` and ``v2``, run the way
its deployment guide runs it, on a private Docker network with Postgres
(``db``) and Redis (``cache``, with a password) from the bed's stand-in
images: the schema in a one-off container (``init_db``), the web process
published on 127.0.0.1, and Celery workers in their own containers.  The
workers are stopped the way a deploy stops them (``docker stop``: SIGTERM,
then a grace period), and a task they are running must still finish, once.
"""

from __future__ import annotations

import json
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

REPOSITORY = "pydeploy/flow-forecaster"
DB_USER = "flow"
DB_PASSWORD = "pg-S3cret/with:odd@chars"  # needs quoting in a URL
DB_NAME = "flow_db"
REDIS_PASSWORD = "redis-S3cret-2b9e"
SECRET_KEY = "flask-secret-key-41d7c0"
SECRETS = [DB_PASSWORD, urllib.parse.quote(DB_PASSWORD, safe=""), REDIS_PASSWORD, SECRET_KEY]
START_TIMEOUT = 120.0
TASK_TIMEOUT = 60.0
JOB_TIMEOUT = 120
STOP_GRACE = 30  # seconds docker stop waits before SIGKILL
SLEEP_SECONDS = 8
INIT_DB = ["python", "-c", "from database import init_db; init_db()"]
FORECAST = {
    "targetOutcome": 100,
    "pBest": 10,
    "pWorst": 50,
    "pLikely": 25,
    "sCurveSize": 3,
    "nSimulations": 1000,
    "confidence": 0.85,
}


def db_url(scheme: str = "postgres", host: str = "db") -> str:
    return f"{scheme}://{DB_USER}:{urllib.parse.quote(DB_PASSWORD, safe='')}@{host}:5432/{DB_NAME}"


REDIS_URL = f"redis://:{REDIS_PASSWORD}@cache:6379/0"


@pytest.fixture(scope="module")
def app_image(bed, docker_client):
    """``app_image('v1')``: the local reference of a Flow Forecaster tag; the bed builds every tag."""

    def resolve(tag: str) -> str:
        return built_image(docker_client, f"{bed['registry']}/{REPOSITORY}:{tag}")

    return resolve


@dataclass
class Stack:
    """A private network with Postgres as ``db`` and Redis as ``cache``, and helpers to run the app."""

    docker_client: docker.DockerClient
    network: object
    start: object  # the run_container fixture
    pg_port: int = 0
    redis_port: int = 0
    cache: object = None  # the Redis container
    containers: list = field(default_factory=list)  # the app's, for the log checks

    def env(self, environment: dict | None = None) -> dict:
        return {
            "DATABASE_URL": db_url(),  # the Heroku/Fly-style scheme
            "REDIS_URL": REDIS_URL,
            "SECRET_KEY": SECRET_KEY,
            **(environment or {}),
        }

    def run(self, image: str, aliases: tuple[str, ...] = (), **kwargs):
        config = {self.network.name: self.docker_client.api.create_endpoint_config(aliases=list(aliases) or None)}
        return self.start(image, network=self.network.name, networking_config=config, **kwargs)

    def job(self, image: str, command: list[str], environment: dict | None = None) -> tuple[int, str]:
        """Run a one-off container of ``image`` to completion: (exit status, output)."""
        container, _ = self.run(image, command=command, environment=self.env(environment))
        self.containers.append(container)
        status = container.wait(timeout=JOB_TIMEOUT)["StatusCode"]
        return status, container_logs(container)

    def web(self, image: str, environment: dict | None = None) -> tuple[object, int]:
        """Start the web process (read-only root file system); return it and its port on 127.0.0.1."""
        container, ports = self.run(image, ports={"8080/tcp": None}, environment=self.env(environment), read_only=True)
        self.containers.append(container)
        port = ports["8080/tcp"]

        def healthy():
            container.reload()
            if container.status in ("exited", "dead"):
                pytest.fail(f"{image} exited:\n{container_logs(container)}")
            return get(port, "/health")[0] == 200

        wait_for(healthy, timeout=START_TIMEOUT, what=f"/health of {image}")
        return container, port

    def worker(self, image: str, name: str, environment: dict | None = None):
        """Start a Celery worker as the guide does, named ``name@<container hostname>``."""
        command = ["celery", "-A", "celery_app", "worker", "--concurrency=2", "-n", f"{name}@%h"]
        env = self.env({"DATABASE_URL": db_url("postgresql"), **(environment or {})})
        # Read-only too, but billiard (the prefork pool) keeps its shared memory in a file under /tmp.
        container, _ = self.run(
            image, command=command, environment=env, read_only=True, tmpfs={"/tmp": "size=16m,mode=1777"}
        )
        self.containers.append(container)
        return container


@pytest.fixture
def bare_stack(docker_client, network, run_container) -> Stack:
    """The network only: nothing answers as ``db`` or ``cache``."""
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
    s.cache, ports = s.run(
        bed_image("redis"), aliases=("cache",), ports={"6379/tcp": None}, command=["--requirepass", REDIS_PASSWORD]
    )
    s.redis_port = ports["6379/tcp"]

    def pg_ready():
        pg.reload()
        if pg.status in ("exited", "dead"):
            pytest.fail(f"postgres exited:\n{container_logs(pg)}")
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


def request(method: str, port: int, path: str, payload: object = None) -> tuple[int, dict]:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as response:  # noqa: S310 - http://127.0.0.1 only
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    BODIES.append(raw)
    return status, json.loads(raw)


def get(port: int, path: str) -> tuple[int, dict]:
    return request("GET", port, path)


def post(port: int, path: str, payload: object) -> tuple[int, dict]:
    return request("POST", port, path, payload)


def wait_workers(port: int, count: int) -> dict:
    def reported():
        status, body = get(port, "/api/async/health")
        return body if status == 200 and body["celery_workers"] == count else None

    return wait_for(reported, timeout=START_TIMEOUT, what=f"/api/async/health to report {count} workers")


def wait_task(port: int, task_id: str, state: str = "SUCCESS") -> dict:
    def reached():
        status, body = get(port, f"/api/tasks/{task_id}")
        assert status == 200, body
        assert body["status"] != "FAILURE", body
        return body if body["status"] == state else None

    return wait_for(reached, timeout=TASK_TIMEOUT, interval=0.25, what=f"task {task_id} to be {state}")


def node_name(container, name: str) -> str:
    """The Celery node name of a worker started as ``-n name@%h``."""
    container.reload()
    return f"{name}@{container.attrs['Config']['Hostname']}"


def rows(port: int, task_id: str) -> list[tuple]:
    with connect(port) as conn:
        return conn.execute(
            "SELECT kind, params, result, worker, started_at <= finished_at FROM forecasts WHERE task_id = %s",
            (task_id,),
        ).fetchall()


def assert_no_secrets(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


# ---------------------------------------------------------------------------- the image

CMD = ["gunicorn", "--bind", "0.0.0.0:8080", "--workers", "2", "--graceful-timeout", "30", "app:app"]


@pytest.mark.parametrize("tag", ["v1", "v2"])
def test_image(docker_client, run_container, app_image, tag):
    ref = app_image(tag)
    config = docker_client.images.get(ref).attrs["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["Labels"]["org.opencontainers.image.version"] == tag
    assert env["APP_VERSION"] == tag
    assert env["FLASK_ENV"] == "production"
    assert config["User"] == "10001:10001"
    assert config["WorkingDir"] == "/app"
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Cmd"] == CMD
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "healthcheck.py"]

    # No wheels, no pip in the venv; uid 10001 owns no file; the sources only.
    script = (
        "set -e; ls /app; echo --; ls /tmp; echo --; "
        "/opt/venv/bin/python -c 'import pip' 2>&1 || true; echo --; "
        "find / -xdev -user 10001 -print; echo --"
    )
    container, _ = run_container(ref, command=["sh", "-c", script], user="0")
    assert container.wait(timeout=JOB_TIMEOUT)["StatusCode"] == 0, container_logs(container)
    sources, tmp, pip, owned, _ = container_logs(container).split("--\n")
    assert {"app.py", "celery_app.py", "tasks.py", "database.py", "gunicorn.conf.py", "healthcheck.py"} <= set(
        sources.split()
    )
    assert "wheels" not in sources and "requirements.txt" not in sources
    assert tmp.strip() == ""
    assert "No module named 'pip'" in pip
    assert owned.strip() == ""


# ---------------------------------------------------------------------------- a deployment


def test_deploy_web_and_workers(stack, app_image):
    image = app_image("v1")

    # --- the schema: create_all, so a second run changes nothing
    status, out = stack.job(image, INIT_DB)
    assert (status, out.strip()) == (0, "init_db: created forecasts; forecasts has 0 rows")
    status, out = stack.job(image, INIT_DB)
    assert (status, out.strip()) == (0, "init_db: nothing to create; already present: forecasts; forecasts has 0 rows")

    # --- the web process, before any worker: healthy, and it counts no worker
    web, port = stack.web(image)
    assert get(port, "/health") == (200, {"status": "ok", "version": "v1"})
    assert web.exec_run(["id", "-u"]).output.decode().strip() == "10001"
    assert web.exec_run(["python", "healthcheck.py"]).exit_code == 0
    status, body = get(port, "/api/async/health")
    assert status == 200, body
    assert set(body) == {"status", "redis", "database", "celery_workers", "timestamp", "version"}
    assert (body["status"], body["redis"], body["database"]) == ("healthy", "connected", "connected")
    assert (body["celery_workers"], body["version"]) == (0, "v1")

    # --- two workers (scale worker=2): both answer a ping
    worker1 = stack.worker(image, "worker1")
    worker2 = stack.worker(image, "worker2")
    wait_workers(port, 2)
    nodes = {node_name(worker1, "worker1"): worker1, node_name(worker2, "worker2"): worker2}

    # --- a forecast round trip
    status, queued = post(port, "/api/async/simulate", FORECAST)
    assert status == 202, queued
    assert set(queued) == {"task_id", "status"} and queued["status"] == "PENDING"
    task_id = queued["task_id"]
    done = wait_task(port, task_id)
    assert set(done) == {"task_id", "status", "result"} and done["task_id"] == task_id
    result = done["result"]
    periods = result["periods"]
    assert (result["targetOutcome"], result["nSimulations"], result["confidence"]) == (100, 1000, 0.85)
    assert 1 <= periods["min"] <= periods["p50"] <= periods["p85"] <= periods["p95"] <= periods["max"]
    assert result["periodsAtConfidence"] == periods["p85"]
    assert sum(count for _, count in result["histogram"]) == 1000
    [(kind, params, stored, worker, ordered)] = rows(stack.pg_port, task_id)
    assert (kind, params, stored, ordered) == ("forecast", FORECAST, result, True)
    assert worker in nodes

    # The same parameters give the same forecast (seeded), whichever worker runs it.
    status, again = post(port, "/api/async/simulate", FORECAST)
    assert status == 202, again
    assert wait_task(port, again["task_id"])["result"] == result

    # Bad input never reaches the queue; an unknown id is PENDING (Celery cannot tell).
    for payload in ({**FORECAST, "pBest": 60}, {**FORECAST, "confidence": 1}, {"targetOutcome": 100}, [1]):
        status, body = post(port, "/api/async/simulate", payload)
        assert status == 400 and body["error"], (payload, body)
    assert post(port, "/api/async/sleep", {"seconds": -1})[0] == 400
    status, body = get(port, f"/api/tasks/{uuid.uuid4()}")
    assert (status, body["status"], body["result"]) == (200, "PENDING", None)

    # --- stop one worker: the count follows
    worker2.stop(timeout=STOP_GRACE)
    wait_workers(port, 1)

    # --- graceful shutdown: a worker stopped mid-task finishes that task first, and only once
    worker3 = stack.worker(image, "worker3")
    wait_workers(port, 2)
    nodes[node_name(worker3, "worker3")] = worker3

    status, queued = post(port, "/api/async/sleep", {"seconds": SLEEP_SECONDS})
    assert (status, queued["status"]) == (202, "PENDING"), queued
    sleep_id = queued["task_id"]
    wait_task(port, sleep_id, "STARTED")
    running = wait_for(
        lambda: next((c for c in (worker1, worker3) if f"sleep[{sleep_id}] received" in container_logs(c)), None),
        timeout=TASK_TIMEOUT,
        what=f"the worker that received {sleep_id}",
    )
    other = worker3 if running is worker1 else worker1
    running_node = next(node for node, c in nodes.items() if c is running)
    assert rows(stack.pg_port, sleep_id) == []  # still sleeping

    running.stop(timeout=STOP_GRACE)  # SIGTERM: Celery's warm shutdown waits for the task
    running.reload()
    assert running.attrs["State"]["ExitCode"] == 0, container_logs(running)
    logs = container_logs(running)
    assert "Warm shutdown" in logs, logs
    assert f"Task flow_forecaster.sleep[{sleep_id}] succeeded" in logs, logs

    done = wait_task(port, sleep_id)
    assert done["result"] == {"slept": SLEEP_SECONDS, "worker": running_node}
    # A task that came back to the queue would be taken before a later one: once that later
    # one has run on the remaining worker, the sleep task has had its chance to run twice.
    status, later = post(port, "/api/async/simulate", {**FORECAST, "nSimulations": 10})
    assert status == 202, later
    wait_task(port, later["task_id"])
    assert f"sleep[{sleep_id}]" not in container_logs(other)
    [(kind, params, stored, worker, ordered)] = rows(stack.pg_port, sleep_id)
    assert (kind, params, stored, worker, ordered) == (
        "sleep",
        {"seconds": SLEEP_SECONDS},
        {"slept": SLEEP_SECONDS, "worker": running_node},
        running_node,
        True,
    )
    wait_workers(port, 1)

    # --- logs: on stdout, never a secret, in logs or in answers
    stdout = web.logs(stdout=True, stderr=False).decode()
    assert "flow-forecaster v1 web starting: env=production, database configured, redis configured" in stdout
    assert '"GET /api/async/health HTTP/1.1" 200' in stdout
    for container in [web, worker1, worker2, worker3]:
        assert container.logs(stdout=False, stderr=True).decode() == "", container_logs(container)
    assert f"{running_node} ready." in running.logs(stdout=True, stderr=False).decode()
    for container in stack.containers:
        assert_no_secrets(container_logs(container), f"the logs of {container.name}")
    assert_no_secrets("\n".join(BODIES), "an HTTP answer")


def test_v2_shares_the_queue_with_v1(stack, app_image):
    """A rolling upgrade: v2's web process sees v1's worker and v1's rows, and the other way round."""
    v1, v2 = app_image("v1"), app_image("v2")
    assert stack.job(v1, INIT_DB)[0] == 0
    status, out = stack.job(v2, INIT_DB)
    assert (status, "nothing to create" in out) == (0, True), out
    _, port1 = stack.web(v1)
    _, port2 = stack.web(v2)
    stack.worker(v1, "old")
    body = wait_workers(port2, 1)
    assert body["version"] == "v2"
    status, queued = post(port2, "/api/async/simulate", FORECAST)
    assert status == 202, queued
    assert wait_task(port1, queued["task_id"])["status"] == "SUCCESS"
    assert get(port2, "/health") == (200, {"status": "ok", "version": "v2"})


# ---------------------------------------------------------------------------- failures


def test_health_names_what_is_down(stack, app_image, docker_client):
    image = app_image("v1")
    assert stack.job(image, INIT_DB)[0] == 0

    # Redis goes away, then comes back: 503 meanwhile, and the web process recovers by itself.
    _, port = stack.web(image)
    stack.cache.stop(timeout=5)
    status, body = get(port, "/api/async/health")
    assert status == 503, body
    assert (body["status"], body["redis"], body["database"], body["celery_workers"]) == (
        "unhealthy",
        "disconnected",
        "connected",
        0,
    )
    assert post(port, "/api/async/simulate", FORECAST) == (503, {"error": "task queue unavailable"})
    stack.cache.start()
    wait_workers(port, 0)
    status, body = post(port, "/api/async/simulate", FORECAST)
    assert (status, body["status"]) == (202, "PENDING"), body

    # Redis refuses the password: 503, and no worker can be counted.
    _, port = stack.web(image, {"REDIS_URL": "redis://:wrong-password@cache:6379/0"})
    status, body = get(port, "/api/async/health")
    assert status == 503, body
    assert (body["status"], body["redis"], body["database"], body["celery_workers"]) == (
        "unhealthy",
        "disconnected",
        "connected",
        0,
    )
    status, body = post(port, "/api/async/simulate", FORECAST)
    assert (status, body) == (503, {"error": "task queue unavailable"})

    # A database host that does not exist.
    _, port = stack.web(image, {"DATABASE_URL": db_url(host="no-such-db")})
    status, body = get(port, "/api/async/health")
    assert status == 503, body
    assert (body["status"], body["redis"], body["database"]) == ("unhealthy", "connected", "disconnected")
    assert get(port, "/health") == (200, {"status": "ok", "version": "v1"})
    for container in stack.containers:
        assert_no_secrets(container_logs(container), f"the logs of {container.name}")
    assert_no_secrets("\n".join(BODIES), "an HTTP answer")


def test_configuration_errors(bare_stack, app_image):
    image = app_image("v1")
    # Nothing answers as "db" on this network.
    status, out = bare_stack.job(image, INIT_DB)
    assert status == 3, out
    assert out.strip().startswith("init_db: database error: ") and "db" in out, out
    status, out = bare_stack.job(image, INIT_DB, {"DATABASE_URL": ""})
    assert (status, out.strip()) == (2, "init_db: configuration error: DATABASE_URL is not set")
    status, out = bare_stack.job(image, INIT_DB, {"DATABASE_URL": "mysql://u:p@db/x"})
    assert status == 2 and "must be a postgres:// or postgresql:// URL, not mysql://" in out, out

    # The web process refuses to start in production without SECRET_KEY.
    status, out = bare_stack.job(image, CMD, {"SECRET_KEY": ""})
    # The app exits 4, gunicorn's "App failed to load", so gunicorn stops instead of respawning
    # workers; gunicorn itself exits 4, or 1 when the second worker's exit races its halt.
    assert status in (1, 4), out
    assert "App failed to load" in out, out
    assert "configuration error: SECRET_KEY is not set" in out, out
    for container in bare_stack.containers:
        assert_no_secrets(container_logs(container), f"the logs of {container.name}")
