"""db_migrate through ansible-playbook, against a real PostgreSQL on a Docker network of the test's own.

The Alembic tests use the Flight Hunter images (``tests/apps/flight_hunter``: v1 has revision 0001, v2
adds 0002, v-bad adds a failing 0003).  The lock, timeout, signal and masking tests need only the bed's
python stand-in, running small scripts as the "migration".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from conftest import REPO, TEST_LABEL, built_image, wait_for

VENV_BIN = Path(sys.executable).parent
FLIGHT_HUNTER = "127.0.0.1:5000/pydeploy/flight-hunter"
DB_USER = "app"
DB_NAME = "appdb"
ONEOFF_LABEL = "pydeploy.oneoff"


# --------------------------------------------------------------------------- running the module


@dataclass
class Run:
    rc: int
    result: dict
    stdout: str
    stderr: str

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    def explain(self) -> str:
        return f"rc={self.rc}\nresult={json.dumps(self.result, indent=1)[:6000]}\nstderr={self.stderr[-3000:]}"


class Playbook:
    """One db_migrate task in a playbook of its own, run by ansible-playbook on localhost."""

    def __init__(self, tmp_path: Path, name: str, args: dict, *, check: bool = False):
        self.dir = tmp_path / name
        self.dir.mkdir()
        play = {
            "name": name,
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": str(VENV_BIN / "python")},
            "tasks": [{"name": "migrate", "pydeploy.stack.db_migrate": args, "check_mode": check}],
        }
        # JSON is YAML: no quoting surprises in the arguments
        (self.dir / "playbook.yml").write_text(json.dumps([play], indent=1))
        (self.dir / "inventory.ini").write_text("localhost\n")

    def argv(self) -> list[str]:
        return [
            str(VENV_BIN / "ansible-playbook"),
            str(self.dir / "playbook.yml"),
            "-i",
            str(self.dir / "inventory.ini"),
        ]

    @staticmethod
    def env() -> dict:
        return {
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        }

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(), cwd=REPO, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 600) -> Run:
        stdout, stderr = proc.communicate(timeout=timeout)
        try:
            data = json.loads(stdout[stdout.index("{") :])
            result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            pytest.fail(f"no task result in ansible-playbook output (rc={proc.returncode}):\n{stdout}\n{stderr}")
        return Run(proc.returncode, result, stdout, stderr)


@pytest.fixture
def migrate(tmp_path):
    """``migrate(args, check=False, secrets=())`` runs db_migrate and returns its :class:`Run`.

    Every run is checked for the secrets given: none may appear anywhere in what ansible-playbook printed.
    """
    counter = iter(range(1000))

    def run(args: dict, *, check: bool = False, secrets=()) -> Run:
        playbook = Playbook(tmp_path, f"run{next(counter)}", args, check=check)
        outcome = Playbook.finish(playbook.start())
        for secret in secrets:
            assert secret not in outcome.stdout, "a secret reached the JSON output"
            assert secret not in outcome.stderr, "a secret reached stderr"
        return outcome

    return run


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def stack() -> str:
    """A stack name of the test's own: it names the one-off containers and labels them."""
    return f"mt{uuid.uuid4().hex[:10]}"


@pytest.fixture
def leftovers(docker_client, stack):
    """Containers of this test's stack labelled pydeploy.oneoff, whatever their state."""

    def find() -> list:
        filters = {"label": [ONEOFF_LABEL, f"pydeploy.stack={stack}"]}
        return docker_client.containers.list(all=True, filters=filters)

    yield find
    for container in find():  # do not leak them into other tests, even when an assertion failed
        container.remove(force=True)


@dataclass
class Database:
    port: int
    password: str
    url: str  # as seen from the network

    def query(self, sql: str, params=None) -> list[tuple]:
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=DB_USER,
            password=self.password,
            dbname=DB_NAME,
            connect_timeout=5,
            autocommit=True,
        ) as conn:
            return conn.execute(sql, params).fetchall()

    def tables(self) -> set[str]:
        return {row[0] for row in self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}

    def revision(self):
        if "alembic_version" not in self.tables():
            return None
        return self.query("SELECT version_num FROM alembic_version")[0][0]

    def columns(self, table: str) -> set[str]:
        rows = self.query("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
        return {row[0] for row in rows}


@pytest.fixture
def postgres(network, run_container, bed_image) -> Database:
    password = f"pw-{uuid.uuid4().hex}"
    name = f"pydeploy-test-db-{uuid.uuid4().hex[:8]}"
    container, ports = run_container(
        bed_image("postgres"),
        name=name,
        ports={"5432/tcp": None},
        network=network.name,
        environment={"POSTGRES_USER": DB_USER, "POSTGRES_PASSWORD": password, "POSTGRES_DB": DB_NAME},
    )
    db = Database(ports["5432/tcp"], password, f"postgresql://{DB_USER}:{password}@{name}:5432/{DB_NAME}")

    def ready() -> bool:
        container.reload()
        if container.status in ("exited", "dead"):
            pytest.fail(f"postgres exited:\n{container.logs().decode()}")
        db.query("SELECT 1")
        return True

    wait_for(ready, timeout=120, what="postgres")
    return db


@pytest.fixture
def flight_hunter(docker_client):
    """``flight_hunter('v2')``: the image reference, pulled from the bed registry when not on this host."""

    def resolve(tag: str) -> str:
        return built_image(docker_client, f"{FLIGHT_HUNTER}:{tag}")

    return resolve


@pytest.fixture
def app_env(tmp_path, postgres) -> tuple[str, list[str]]:
    """The app's env file (DATABASE_URL and a provider secret) and the secrets in it."""
    stripe = f"sk_test_{uuid.uuid4().hex}"
    path = tmp_path / "app.env"
    path.write_text(f"# Flight Hunter\nAPP_ENV=prod\nDATABASE_URL={postgres.url}\nSTRIPE_SECRET_KEY={stripe}\n")
    path.chmod(0o600)
    return str(path), [postgres.password, stripe]


# --------------------------------------------------------------------------- Alembic (Flight Hunter)


def test_alembic_check_real_check_real(migrate, flight_hunter, postgres, app_env, network, stack, leftovers, tmp_path):
    env_file, secrets = app_env
    base = {
        "env_file": env_file,
        "network": network.name,
        "stack": stack,
        "lock_path": str(tmp_path / "migrate.lock"),
        "labels": {TEST_LABEL: "1"},
    }

    def run(tag: str, check: bool = False) -> Run:
        outcome = migrate({**base, "image": flight_hunter(tag)}, check=check, secrets=secrets)
        assert not outcome.failed, outcome.explain()
        assert leftovers() == []
        return outcome

    # check mode on an empty database: everything pending, nothing written (not even alembic_version)
    plan = run("v2", check=True).result
    assert plan["changed"] is True
    assert plan["pending"] == ["0001", "0002"]
    assert (plan["revision_before"], plan["head"]) == (None, "0002")
    assert plan["diff"] == {"before": "\n", "after": "0002\n"}
    assert plan["commands"] == [["alembic", "history"], ["alembic", "current"]]
    assert postgres.tables() == set()

    # real run with v1: none -> 0001, its tables exist
    first = run("v1").result
    assert first["changed"] is True
    assert (first["revision_before"], first["revision_after"], first["pending"]) == (None, "0001", ["0001"])
    assert "Running upgrade  -> 0001" in first["output"]
    assert postgres.tables() == {"alembic_version", "price_cache", "alerts"}
    assert postgres.revision() == "0001"

    # v1 again: nothing to do
    again = run("v1").result
    assert (again["changed"], again["pending"], again["revision_after"]) == (False, [], "0001")

    # check mode with v2 tells what the real run then does, and changes nothing
    plan = run("v2", check=True).result
    assert (plan["changed"], plan["pending"], plan["revision_before"], plan["head"]) == (True, ["0002"], "0001", "0002")
    assert postgres.revision() == "0001"
    assert "channel" not in postgres.columns("alerts")

    real = run("v2").result
    assert (real["changed"], real["pending"]) == (plan["changed"], plan["pending"])
    assert (real["revision_before"], real["revision_after"]) == ("0001", "0002")
    assert postgres.revision() == "0002"
    assert "channel" in postgres.columns("alerts")

    # and both again: unchanged
    plan = run("v2", check=True).result
    assert (plan["changed"], plan["pending"]) == (False, [])
    real = run("v2").result
    assert (real["changed"], real["pending"], real["revision_after"]) == (False, [], "0002")

    # The older release on the schema the newer one migrated: refused, saying why and what to do.
    older = migrate({**base, "image": flight_hunter("v1")}, secrets=secrets)
    assert older.failed, older.explain()
    assert older.result["msg"].startswith("the database is at revision 0002, which "), older.result["msg"]
    assert "rollback.yml" in older.result["msg"]
    assert postgres.revision() == "0002"


def test_alembic_failing_migration(migrate, flight_hunter, postgres, app_env, network, stack, leftovers, tmp_path):
    env_file, secrets = app_env
    base = {"env_file": env_file, "network": network.name, "stack": stack, "lock_path": str(tmp_path / "migrate.lock")}
    ok = migrate({**base, "image": flight_hunter("v2")}, secrets=secrets)
    assert not ok.failed, ok.explain()

    bad = migrate({**base, "image": flight_hunter("v-bad")}, secrets=secrets)
    assert bad.failed and bad.rc != 0, bad.explain()
    msg = bad.result["msg"]
    assert msg.startswith("migration failed (exit 1): "), msg
    assert 'relation "price_history" does not exist' in msg
    assert "Running upgrade 0002 -> 0003" in msg
    assert bad.result["pending"] == ["0003"]
    # the upgrade is one transaction: the database stays at 0002, and the module says so
    result = bad.result
    assert (result["revision_before"], result["revision_after"], result["changed"]) == ("0002", "0002", False)
    assert postgres.revision() == "0002"
    assert leftovers() == []


# --------------------------------------------------------------------------- python stand-in only


@pytest.fixture
def python_image(bed_image) -> str:
    return bed_image("python")


@pytest.fixture
def token_env(tmp_path) -> tuple[str, str]:
    token = f"tok-{uuid.uuid4().hex}"
    path = tmp_path / "tool.env"
    path.write_text(f"API_TOKEN={token}\nAPP_ENV=production\n")
    return str(path), token


def script(*lines: str) -> list[str]:
    return ["python", "-c", "\n".join(lines)]


def test_command_tool_success_and_check_mode(migrate, python_image, token_env, stack, leftovers, tmp_path):
    env_file, token = token_env
    args = {
        "image": python_image,
        "tool": "command",
        "command": script("import os", "print('migrated with', os.environ['API_TOKEN'])"),
        "revision_command": script("print('schema 7')"),
        "env_file": env_file,
        "stack": stack,
        "lock_path": str(tmp_path / "migrate.lock"),
    }
    plan = migrate(args, check=True, secrets=[token])
    assert not plan.failed, plan.explain()
    assert plan.result["changed"] is True
    assert plan.result["commands"] == [args["revision_command"]]
    assert plan.result["output"] == ""

    real = migrate(args, secrets=[token])
    assert not real.failed, real.explain()
    assert real.result["changed"] is True
    assert real.result["output"].strip() == "migrated with ********"
    assert (real.result["revision_before"], real.result["revision_after"]) == ("schema 7", "schema 7")
    assert leftovers() == []


def test_failing_command_reports_its_error_masked(migrate, python_image, token_env, stack, leftovers, tmp_path):
    env_file, token = token_env
    args = {
        "image": python_image,
        "tool": "command",
        "command": script(
            "import os, sys",
            "print('connecting with token', os.environ['API_TOKEN'], flush=True)",
            "sys.exit('ERROR: relation \"ledger\" does not exist (token ' + os.environ['API_TOKEN'] + ')')",
        ),
        "env_file": env_file,
        "stack": stack,
        "lock_path": str(tmp_path / "migrate.lock"),
    }
    outcome = migrate(args, secrets=[token])
    assert outcome.failed, outcome.explain()
    # stdout and stderr are both kept; Docker does not order lines across the two streams.
    msg = outcome.result["msg"]
    assert msg.startswith("migration failed (exit 1): ")
    assert sorted(msg.removeprefix("migration failed (exit 1): ").splitlines()) == [
        'ERROR: relation "ledger" does not exist (token ********)',
        "connecting with token ********",
    ]
    assert leftovers() == []


def test_timeout_kills_and_removes_the_container(migrate, python_image, stack, leftovers, tmp_path):
    args = {
        "image": python_image,
        "tool": "command",
        "command": script("import time", "print('starting', flush=True)", "time.sleep(600)"),
        "timeout": 3,
        "stack": stack,
        "lock_path": str(tmp_path / "migrate.lock"),
    }
    outcome = migrate(args)
    assert outcome.failed, outcome.explain()
    assert outcome.result["msg"] == "migration timed out after 3 s and was killed: starting"
    assert leftovers() == []


def held_by(lock_path: Path) -> dict | None:
    text = lock_path.read_text() if lock_path.exists() else ""
    return json.loads(text) if text.strip() else None


def test_concurrent_runs_wait_for_the_lock(tmp_path, python_image, stack, leftovers):
    lock = tmp_path / "migrate.lock"
    base = {"image": python_image, "tool": "command", "stack": stack, "lock_path": str(lock)}
    stamp = "import time; print('{}', time.time(), flush=True)"
    slow = Playbook(
        tmp_path,
        "holder",
        {**base, "command": script(stamp.format("start"), "time.sleep(12)", stamp.format("end"))},
    )
    holder_proc = slow.start()
    waiter_proc = None
    try:
        holder = wait_for(lambda: held_by(lock), timeout=60, what="the first run to take the lock")
        wait_for(leftovers, timeout=60, what="the first run's one-off container")

        impatient = Playbook(tmp_path, "impatient", {**base, "command": script("print('x')"), "lock_timeout": 1})
        patient = Playbook(tmp_path, "patient", {**base, "command": script(stamp.format("start"))})
        refused = Playbook.finish(impatient.start())
        waiter_proc = patient.start()

        assert refused.failed, refused.explain()
        assert refused.result["msg"] == (
            f"migration lock {lock} is held by pid {holder['pid']} on host {socket.gethostname()} since "
            f"{holder['since']} (image {python_image}); gave up after 1 s (lock_timeout)"
        )
        assert refused.result["lock_holder"] == holder
        assert refused.result["commands"] == []

        first = Playbook.finish(holder_proc)
        waited = Playbook.finish(waiter_proc)
    finally:
        for proc in (holder_proc, waiter_proc):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert not first.failed, first.explain()
    assert not waited.failed, waited.explain()
    first_end = float(first.result["output"].split("end")[1])
    waiter_start = float(waited.result["output"].split("start")[1])
    assert waiter_start >= first_end, "the second run migrated while the first one held the lock"
    assert lock.read_text() == ""
    assert leftovers() == []


def test_sigterm_to_the_module_removes_the_oneoff(tmp_path, python_image, stack, leftovers):
    lock = tmp_path / "migrate.lock"
    args = {
        "image": python_image,
        "tool": "command",
        "command": script("import time", "time.sleep(600)"),
        "stack": stack,
        "lock_path": str(lock),
    }
    proc = Playbook(tmp_path, "doomed", args).start()
    try:
        holder = wait_for(lambda: held_by(lock), timeout=60, what="the run to take the lock")
        wait_for(leftovers, timeout=60, what="the one-off container")
        os.kill(holder["pid"], signal.SIGTERM)
        outcome = Playbook.finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert outcome.failed, outcome.explain()
    assert outcome.result["msg"].startswith("interrupted (received signal 15)")
    assert leftovers() == []
