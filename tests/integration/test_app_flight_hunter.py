"""The Flight Hunter sample app (``tests/apps/flight_hunter``) on the bed.

The bed builds three tags of one FastAPI app: ``v1`` ships Alembic revision
0001, ``v2`` adds 0002, ``v-bad`` adds 0003, which fails.  These tests run
them the way a deployment does, on a private Docker network with Postgres
(``db``) and Redis (``cache``) from the bed's stand-in images: migrations and
jobs in one-off containers, the API in a long-running one published on
127.0.0.1.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import docker
import psycopg
import pytest
import redis
from conftest import built_image, container_logs, wait_for

REPOSITORY = "pydeploy/flight-hunter"
DB_USER = "flight"
DB_PASSWORD = "pg-S3cret/with:odd@chars"  # needs quoting in a URL
DB_NAME = "flight_db"
REDIS_PASSWORD = "redis-S3cret-7f3a"
PROVIDER_SECRETS = {
    "AMADEUS_CLIENT_ID": "amadeus-client-id-5c1d",
    "AMADEUS_CLIENT_SECRET": "amadeus-client-secret-9e2b",
    "DUFFEL_TOKEN": "duffel_test_0a9f3c",
    "SENDGRID_API_KEY": "SG.sendgrid-key-77d1",
    "STRIPE_SECRET_KEY": "sk_test_stripe_41ac",
    "STRIPE_WEBHOOK_SECRET": "whsec_stripe_hook_8b20",
    "TELEGRAM_BOT_TOKEN": "123456:telegram-token-e6f4",
}
SECRETS = [DB_PASSWORD, urllib.parse.quote(DB_PASSWORD, safe=""), REDIS_PASSWORD, *PROVIDER_SECRETS.values()]
START_TIMEOUT = 120.0
JOB_TIMEOUT = 120


def db_url(scheme: str = "postgresql", host: str = "db") -> str:
    return f"{scheme}://{DB_USER}:{urllib.parse.quote(DB_PASSWORD, safe='')}@{host}:5432/{DB_NAME}"


REDIS_URL = f"redis://:{REDIS_PASSWORD}@cache:6379/0"


@pytest.fixture(scope="module")
def app_image(bed, docker_client):
    """``app_image('v1')``: the local reference of a Flight Hunter tag; the bed builds every tag."""

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

    def run(self, image: str, aliases: tuple[str, ...] = (), **kwargs):
        config = {self.network.name: self.docker_client.api.create_endpoint_config(aliases=list(aliases) or None)}
        return self.start(image, network=self.network.name, networking_config=config, **kwargs)

    def job(self, image: str, command: list[str], environment: dict | None = None) -> tuple[int, str]:
        """Run a one-off container of ``image`` to completion: (exit status, output)."""
        env = {"DATABASE_URL": db_url(), "REDIS_URL": REDIS_URL, **(environment or {})}
        container, _ = self.run(image, command=command, environment=env)
        status = container.wait(timeout=JOB_TIMEOUT)["StatusCode"]
        return status, container_logs(container)

    def app(self, image: str, environment: dict | None = None) -> tuple[object, int]:
        """Start the API (read-only root file system); return it and its port on 127.0.0.1."""
        env = {
            "DATABASE_URL": db_url("postgres"),  # the Heroku-style scheme must work too
            "REDIS_URL": REDIS_URL,
            "APP_ENV": "staging",
            **PROVIDER_SECRETS,
            **(environment or {}),
        }
        container, ports = self.run(image, ports={"8000/tcp": None}, environment=env, read_only=True)
        port = ports["8000/tcp"]

        def healthy():
            container.reload()
            if container.status in ("exited", "dead"):
                pytest.fail(f"{image} exited:\n{container_logs(container)}")
            return get(port, "/health")[0] == 200

        wait_for(healthy, timeout=START_TIMEOUT, what=f"/health of {image}")
        return container, port


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
    _, ports = s.run(
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


def request(method: str, port: int, path: str, payload: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310 - http://127.0.0.1 only
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    BODIES.append(raw)
    return status, json.loads(raw)


def get(port: int, path: str) -> tuple[int, dict]:
    return request("GET", port, path)


def post(port: int, path: str, payload: dict) -> tuple[int, dict]:
    return request("POST", port, path, payload)


def wait_ready(port: int, what: str) -> dict:
    def ready():
        status, body = get(port, "/ready")
        return body if status == 200 else None

    return wait_for(ready, timeout=START_TIMEOUT, what=f"/ready of {what}")


def columns(conn, table: str) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT column_name, column_default FROM information_schema.columns WHERE table_name = %s", (table,)
    ).fetchall()
    return dict(rows)


def assert_no_secrets(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


# ---------------------------------------------------------------------------- the image


@pytest.mark.parametrize(
    ("tag", "revisions"),
    [("v1", ["0001"]), ("v2", ["0001", "0002"]), ("v-bad", ["0001", "0002", "0003"])],
)
def test_image(docker_client, run_container, app_image, tag, revisions):
    ref = app_image(tag)
    config = docker_client.images.get(ref).attrs["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["Labels"]["org.opencontainers.image.version"] == tag
    assert env["APP_VERSION"] == tag
    assert config["User"] == "10001:10001"
    assert config["WorkingDir"] == "/app"
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Cmd"] == ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]  # noqa: S104
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "app.healthcheck"]

    # Migrations for this tag only; no wheels, no pip in the venv; uid 10001 owns no file.
    script = (
        "set -e; ls /app/migrations/versions; echo --; ls /tmp; echo --; "
        "/opt/venv/bin/python -c 'import pip' 2>&1 || true; echo --; "
        "find / -xdev -user 10001 -print; echo --"
    )
    container, _ = run_container(ref, command=["sh", "-c", script], user="0")
    assert container.wait(timeout=JOB_TIMEOUT)["StatusCode"] == 0, container_logs(container)
    shipped, tmp, pip, owned, _ = container_logs(container).split("--\n")
    assert [name.split("_", 1)[0] for name in shipped.split()] == revisions
    assert tmp.strip() == ""
    assert "No module named 'pip'" in pip
    assert owned.strip() == ""


# ---------------------------------------------------------------------------- a deployment


def test_deploy_migrate_and_jobs(stack, app_image):
    v1, v2, bad = app_image("v1"), app_image("v2"), app_image("v-bad")

    # --- v1: migrate, then start the API
    status, out = stack.job(v1, ["alembic", "upgrade", "head"])
    assert status == 0, out
    assert "Running upgrade  -> 0001" in out
    status, out = stack.job(v1, ["alembic", "current"])
    assert status == 0 and re.search(r"^0001 \(head\)$", out, re.MULTILINE), out

    app1, port1 = stack.app(v1)
    assert get(port1, "/health") == (200, {"status": "ok", "version": "v1"})
    ready = wait_ready(port1, "v1")
    assert ready == {
        "status": "ready",
        "database": "ok",
        "redis": "ok",
        "revision": "0001",
        "expected_revision": "0001",
        "version": "v1",
    }
    assert app1.exec_run(["id", "-u"]).output.decode().strip() == "10001"
    assert app1.exec_run(["python", "-m", "app.healthcheck"]).exit_code == 0

    # --- prices: empty, then fetched by the job, then served from the cache
    status, body = get(port1, "/api/prices?origin=GRU&destination=LIS")
    assert (status, body["count"], body["cached"]) == (200, 0, False)

    status, out = stack.job(
        v1, ["python", "-m", "app.workers.fetch_prices", "--routes", "GRU-LIS,LIS-GRU", "--days", "5"]
    )
    assert status == 0, out
    assert "fetch_prices: inserted 10 rows for 2 routes x 5 days" in out
    assert "1 cached lists dropped" in out

    status, body = get(port1, "/api/prices?origin=gru&destination=lis")
    assert (status, body["origin"], body["destination"], body["count"], body["cached"]) == (200, "GRU", "LIS", 5, False)
    first = body["prices"][0]
    assert set(first) == {"id", "origin", "destination", "departure_date", "price", "currency", "fetched_at"}
    assert first["currency"] == "EUR" and 150 <= float(first["price"]) < 1500
    status, again = get(port1, "/api/prices?origin=GRU&destination=LIS")
    assert (status, again["cached"], again["prices"]) == (200, True, body["prices"])
    assert 0 < redis_client(stack.redis_port).ttl("flight-hunter:prices:GRU:LIS:100") <= 60

    assert get(port1, "/api/prices?origin=GRUU&destination=LIS")[0] == 422

    # --- alerts: one that matches any price, one that never does
    cheapest = min(float(row["price"]) for row in body["prices"])
    status, alert = post(
        port1,
        "/api/alerts",
        {"origin": "GRU", "destination": "LIS", "max_price": "2000", "email": "jane.doe@example.com"},
    )
    assert status == 201, alert
    assert alert["email"] == "jane.doe@example.com" and alert["max_price"] == "2000.00"
    assert alert["last_sent_at"] is None and "channel" not in alert
    status, never = post(
        port1,
        "/api/alerts",
        {"origin": "gru", "destination": "lis", "max_price": f"{cheapest - 1:.2f}", "email": "bob@example.org"},
    )
    assert (status, never["origin"]) == (201, "GRU"), never
    bad_alert = {"origin": "GRU", "destination": "GRU", "max_price": "10", "email": "x@example.com"}
    assert post(port1, "/api/alerts", bad_alert)[0] == 422
    telegram = {
        "origin": "GRU",
        "destination": "LIS",
        "max_price": "10",
        "email": "x@example.com",
        "channel": "telegram",
    }
    assert post(port1, "/api/alerts", telegram)[0] == 422  # v1 sends e-mail only

    status, out = stack.job(v1, ["python", "-m", "app.workers.send_alerts"])
    assert status == 0, out
    assert f"would notify j***@example.com via email: GRU-LIS at {cheapest:.2f} EUR (alert {alert['id']}" in out
    assert "jane.doe" not in out and "bob" not in out
    assert "send_alerts: notified 1 of 2 alerts" in out
    status, out = stack.job(v1, ["python", "-m", "app.workers.send_alerts"])
    assert (status, "send_alerts: notified 0 of 2 alerts" in out) == (0, True), out  # no new prices since
    status, listed = get(port1, "/api/alerts")
    assert status == 200 and listed["count"] == 2
    assert listed["alerts"][0]["last_sent_at"] is not None and listed["alerts"][1]["last_sent_at"] is None

    # --- cleanup: only rows fetched more than 30 days ago go
    with connect(stack.pg_port) as conn:
        conn.execute(
            "INSERT INTO price_cache (origin, destination, departure_date, price, currency, fetched_at)"
            " VALUES ('GRU', 'LIS', current_date, 99.00, 'EUR', now() - interval '31 days')"
        )
    status, out = stack.job(v1, ["python", "-m", "app.workers.cleanup_cache"])
    assert status == 0, out
    assert "cleanup_cache: deleted 1 price rows fetched more than 30 days ago" in out
    with connect(stack.pg_port) as conn:
        assert conn.execute("SELECT count(*) FROM price_cache").fetchone() == (10,)

    # --- v2 before its migration: up, but not ready
    app2, port2 = stack.app(v2)
    status, body = get(port2, "/ready")
    assert status == 503, body
    assert (body["database"], body["redis"], body["revision"]) == ("migration pending", "ok", "0001")
    assert body["expected_revision"] == "0002"

    # --- v2 migration: expand-only, so v1 stays ready on the new schema
    status, out = stack.job(v2, ["alembic", "upgrade", "head"])
    assert status == 0, out
    assert "Running upgrade 0001 -> 0002" in out
    status, out = stack.job(v2, ["alembic", "current"])
    assert status == 0 and re.search(r"^0002 \(head\)$", out, re.MULTILINE), out
    with connect(stack.pg_port) as conn:
        assert "provider" in columns(conn, "price_cache")
        assert columns(conn, "alerts")["channel"] == "'email'::text"
        assert conn.execute("SELECT DISTINCT channel FROM alerts").fetchall() == [("email",)]

    assert wait_ready(port2, "v2")["revision"] == "0002"
    status, body = get(port1, "/ready")
    assert (status, body["revision"], body["expected_revision"]) == (200, "0002", "0001")
    assert get(port1, "/api/alerts")[0] == 200

    status, out = stack.job(v2, ["python", "-m", "app.workers.fetch_prices", "--routes", "GRU-LIS", "--days", "3"])
    assert status == 0, out
    status, body = get(port2, "/api/prices?origin=GRU&destination=LIS")
    assert (status, body["cached"], body["count"]) == (200, False, 8)
    assert [row["provider"] for row in body["prices"]] == ["local"] * 3 + [None] * 5
    status, alert = post(
        port2,
        "/api/alerts",
        {"origin": "LIS", "destination": "GRU", "max_price": "500", "email": "ana@example.pt", "channel": "telegram"},
    )
    assert (status, alert["channel"]) == (201, "telegram"), alert

    # --- the bad build: its migration fails with the SQL error and changes nothing
    status, out = stack.job(bad, ["alembic", "upgrade", "head"])
    assert status != 0, out
    assert "Running upgrade 0002 -> 0003" in out
    assert 'relation "price_history" does not exist' in out
    assert "ALTER TABLE price_history ADD COLUMN airline text" in out
    assert_no_secrets(out, "the failed migration's output")
    status, out = stack.job(v2, ["alembic", "current"])
    assert status == 0 and re.search(r"^0002 \(head\)$", out, re.MULTILINE), out
    assert get(port2, "/ready")[0] == 200

    # --- logs: on stdout, provider names but never a secret, in logs or in answers
    for container, tag in ((app1, "v1"), (app2, "v2")):
        stdout = container.logs(stdout=True, stderr=False).decode()
        assert f"flight-hunter {tag} starting: env=staging" in stdout
        assert "providers configured: amadeus, duffel, sendgrid, stripe, telegram" in stdout
        assert '"GET /health HTTP/1.1" 200' in stdout
        assert container.logs(stdout=False, stderr=True).decode() == ""
        assert_no_secrets(container_logs(container), f"the logs of {tag}")
    assert_no_secrets("\n".join(BODIES), "an HTTP answer")


# ---------------------------------------------------------------------------- failures


def test_ready_names_what_is_missing(stack, app_image):
    v1 = app_image("v1")
    # Nothing migrated yet, and the wrong Redis password.
    _, port = stack.app(v1, {"REDIS_URL": "redis://:wrong-password@cache:6379/0"})
    status, body = get(port, "/ready")
    assert status == 503, body
    assert (body["status"], body["database"], body["redis"]) == ("not ready", "not migrated", "authentication failed")

    # A database host that does not exist, and no Redis at all.
    _, port = stack.app(v1, {"DATABASE_URL": db_url(host="no-such-db"), "REDIS_URL": ""})
    status, body = get(port, "/ready")
    assert status == 503, body
    assert (body["database"], body["redis"], body["revision"]) == ("unavailable", "not configured", None)
    assert get(port, "/health") == (200, {"status": "ok", "version": "v1"})
    assert_no_secrets(json.dumps(body), "/ready")


@pytest.mark.parametrize(
    ("name", "command", "unreachable_status", "config_status"),
    [
        ("fetch_prices", ["python", "-m", "app.workers.fetch_prices"], 3, 2),
        ("send_alerts", ["python", "-m", "app.workers.send_alerts"], 3, 2),
        ("cleanup_cache", ["python", "-m", "app.workers.cleanup_cache"], 3, 2),
        ("alembic", ["alembic", "upgrade", "head"], 1, 1),
    ],
)
def test_commands_fail_clearly_without_database(
    bare_stack, app_image, name, command, unreachable_status, config_status
):
    v1 = app_image("v1")
    # Nothing answers as "db" on this network.
    status, out = bare_stack.job(v1, command)
    assert status == unreachable_status, out
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"{name}: database unreachable: ") and "'db'" in last, out
    assert_no_secrets(out, f"the output of {name}")

    status, out = bare_stack.job(v1, command, {"DATABASE_URL": ""})
    assert status == config_status, out
    assert out.strip().splitlines()[-1] == f"{name}: configuration error: DATABASE_URL is not set", out
