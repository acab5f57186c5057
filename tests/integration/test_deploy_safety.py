"""Bad input fails before any host change, secrets never leak, and a failing
migration leaves the running release serving."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from playbook import REPO, run_playbook
from test_deploy_flight_hunter import STACK, https_get

CANARY = "canary-9f3b1c7e5d2a4b60-secret"
ENV_FILE = Path(f"/etc/pydeploy/{STACK}/app.env")
# The app's settings in other names, bound to the services (libpq's PG* variables, a Redis database of its own).
BINDINGS = {
    "DATABASE_URL": "postgres.url",
    "REDIS_URL": "redis.url",
    "PGHOST": "postgres.host",
    "PGPORT": "postgres.port",
    "PGUSER": "postgres.user",
    "PGPASSWORD": "postgres.password",
    "PGDATABASE": "postgres.database",
    "BROKER_URL": {"service": "redis", "property": "url", "db": 3},
}
PREFLIGHT = "Preflight — take the deploy lock and check every input before anything changes"


@pytest.fixture(scope="module")
def stack_up(flight_hunter_deployed):
    """The stack deployed once for this module and test_deploy_flight_hunter.py (which leaves it as deployed)."""
    return flight_hunter_deployed["real2"]


def web_container_ids(docker_client) -> set[str]:
    return {
        c.id
        for c in docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"]})
    }


def secrets_with(**extra) -> dict:
    base = {
        "STRIPE_SECRET_KEY": "sk_test_local_demo_only",
        "STRIPE_WEBHOOK_SECRET": "whsec_local_demo_only",
        "AMADEUS_CLIENT_ID": "local-demo",
        "AMADEUS_CLIENT_SECRET": "local-demo-secret",
        "DUFFEL_TOKEN": "duffel_test_local",
        "SENDGRID_API_KEY": "SG.local-demo",
        "TELEGRAM_BOT_TOKEN": "000000:local-demo",
    }
    return {**base, **extra}


@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        pytest.param({"stack_secrets": secrets_with(STRIPE_SECRET_KEY="")}, "STRIPE_SECRET_KEY", id="missing-secret"),
        pytest.param(
            {"stack_processes": {"web": {"command": "uvicorn app.main:app", "port": 8000, "replcas": 2}}},
            "stack_processes.web",
            id="typo-in-process",
        ),
        pytest.param({"stack_version": "v2 bad!"}, "stack_version", id="bad-version"),
        pytest.param({"stack_version": "v999"}, "v999: the tag is not in the registry", id="absent-tag"),
        pytest.param(
            {"stack_image": "127.0.0.1:5999/pydeploy/flight-hunter"}, "registry is unreachable", id="registry-down"
        ),
        pytest.param({"postgres_password": ""}, "postgres_password", id="missing-db-password"),
        pytest.param({"nginx_tls_mode": "acme-typo"}, "nginx_tls_mode", id="bad-choice"),
        pytest.param(
            {"stack_bindings": {"POSTGRES_HOST": "postgres.hostname"}},
            "stack_bindings.POSTGRES_HOST: postgres has no property 'hostname'",
            id="bad-binding",
        ),
        pytest.param(
            {
                "stack_volumes": {"uploads": {"path": "/app/uploads", "serve": "uploads"}},
                "stack_processes": {"web": {"command": "uvicorn app.main:app", "port": 8000, "volumes": ["upload"]}},
            },
            "stack_volumes.uploads.serve must be a URL path prefix",
            id="bad-volume",
        ),
    ],
)
def test_bad_input_fails_before_any_change(stack_up, docker_client, extra_vars, expected):
    before = web_container_ids(docker_client)
    run = run_playbook(extra_vars=extra_vars)
    assert run.rc != 0
    messages = " ".join(run.failure_messages())
    assert expected in messages, messages
    assert run.changed() == 0, run.changed_tasks()
    assert web_container_ids(docker_client) == before
    # Nothing ran past the preflight play.
    assert run.plays_with_results() == [PREFLIGHT]


def test_canary_secret_never_leaks(stack_up, docker_client):
    """A canary secret, and the service passwords that bindings give the app in its own names, appear
    nowhere at -vvvv, in check mode with --diff, in the logs, labels or the rest of docker inspect: only in
    the 0600 env file and the Config.Env the engine keeps of it."""
    extra = {"stack_secrets": secrets_with(CANARY_TOKEN=CANARY), "stack_bindings": BINDINGS}
    passwords = [
        (REPO / ".bed" / "secrets" / name).read_text().strip() for name in ("postgres_password", "redis_password")
    ]
    # First, while the env file on the host does not hold the canary yet: a check run shows what would change.
    dry = run_playbook(extra_vars=extra, check=True, diff=True, verbosity=4, json_output=False)
    assert dry.rc == 0, dry.stderr[-2000:]
    # The env file would change: its task reports it, and withholds the diff.
    env_task = dry.stdout.split("Write the secrets env file (0600)]", 1)[1].split("TASK [", 1)[0]
    assert "changed: [localhost]" in env_task, env_task
    verbose = run_playbook(extra_vars=extra, verbosity=4, json_output=False)
    assert verbose.rc == 0, verbose.stderr[-2000:]
    for secret in (CANARY, *passwords):
        for output in (dry.stdout, dry.stderr, verbose.stdout, verbose.stderr):
            assert secret not in output
    # The inventory has no mongodb, worker or beat group: their steps have no host, and say nothing of it.
    assert "Could not match supplied host pattern" not in verbose.stdout + verbose.stderr
    assert ENV_FILE.stat().st_mode & 0o777 == 0o600
    env = dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)
    assert env["PGPASSWORD"] == passwords[0] and env["PGHOST"] == f"{STACK}-postgres"

    for container in docker_client.containers.list(filters={"label": f"pydeploy.stack={STACK}"}):
        logs = container.logs().decode(errors="replace")
        assert CANARY not in logs, container.name
        assert CANARY not in json.dumps(container.labels), container.name
        # The engine keeps what came from an env file in Config.Env: that one line, in the
        # containers that take the env file (the web replicas, the worker), is the only place the canary may be.
        config = container.attrs["Config"]
        in_env = [entry for entry in config.get("Env") or [] if CANARY in entry]
        rest = {**container.attrs, "Config": {key: value for key, value in config.items() if key != "Env"}}
        assert CANARY not in json.dumps(rest), container.name
        if container.labels.get("pydeploy.process") == "web" or container.labels.get("pydeploy.role") == "workers":
            assert in_env == [f"CANARY_TOKEN={CANARY}"], container.name
            assert sorted(entry for entry in config["Env"] if passwords[0] in entry) == [
                f"DATABASE_URL={env['DATABASE_URL']}",
                f"PGPASSWORD={passwords[0]}",
            ], container.name
        else:
            assert in_env == [], container.name
        assert not [secret for secret in passwords if secret in json.dumps(rest) or secret in logs], container.name
    ps = subprocess.run(["ps", "axww", "-o", "args"], capture_output=True, text=True, check=True).stdout
    assert CANARY not in ps

    # The app reads the bound names: libpq finds the database from PG* alone, Redis database 3 from BROKER_URL.
    web = docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"]})[0]
    code, output = web.exec_run(
        [
            "python",
            "-c",
            "import os, psycopg, redis; print(psycopg.connect('').execute('select current_user').fetchone()[0]); "
            "r = redis.Redis.from_url(os.environ['BROKER_URL']); r.set('bound', 'yes'); "
            "print(r.connection_pool.connection_kwargs['db'], r.get('bound').decode())",
        ]
    )
    assert (code, output.decode().split()) == (0, [STACK, "3", "yes"]), output

    # Leave the stack as the other tests expect it: a run that rewrites the env file without the
    # canary, whose returned JSON (every task's result) does not hold it either.
    restore = run_playbook()
    assert restore.rc == 0, restore.explain()
    assert "Write the secrets env file (0600)" in restore.changed_tasks()
    assert CANARY not in restore.stdout and CANARY not in restore.stderr
    # Without bindings, the URLs alone again.
    assert "PGPASSWORD=" not in ENV_FILE.read_text() and "DATABASE_URL=" in ENV_FILE.read_text()


def test_failing_migration_leaves_the_running_release_serving(stack_up, docker_client):
    before = web_container_ids(docker_client)
    run = run_playbook(extra_vars={"stack_version": "v-bad"})
    assert run.rc != 0
    messages = " ".join(run.failure_messages())
    assert "migration failed" in messages
    assert "does_not_exist" in messages or "UndefinedTable" in messages or "does not exist" in messages, messages
    assert web_container_ids(docker_client) == before
    status, _, body = https_get("/health")
    assert status == 200
    assert json.loads(body)["version"] == "v2"
    # This stack's one-off containers: other stacks' tests run theirs meanwhile.
    assert not docker_client.containers.list(
        all=True, filters={"label": ["pydeploy.oneoff", f"pydeploy.stack={STACK}"]}
    )
