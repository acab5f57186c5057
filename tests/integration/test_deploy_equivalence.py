"""Equivalence (FastAPI + RQ worker, Alembic, an idempotent seed, a salt
generated once) deployed from its inventory: the seed runs once per release,
API keys are stored only as HMAC hashes of a salt that no rerun changes and
no log shows, and run.yml is how an operator seeds again or rotates a key."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import stack_query, teardown_stack, wait_for
from playbook import run_playbook
from proxy import https_request

STACK = "equivalence"
INVENTORY = "tests/integration/inventories/equivalence"
PORT = 9543
SALT_FILE = Path(f"/etc/pydeploy/{STACK}/secrets/API_KEY_SALT")
ENV_FILE = Path(f"/etc/pydeploy/{STACK}/app.env")
SEEDED = {"categories": 4, "units": 24, "equivalences": 20}
POST_MIGRATE = "Run the post-migrate hook once, in a one-off container of the release"


def deploy(**kwargs):
    run = run_playbook(inventory=INVENTORY, **kwargs)
    assert run.rc == 0, run.explain()
    return run


def run_cmd(command, *, as_extra_var: bool = False, **kwargs):
    """run.yml the way an operator types it (-e 'cmd="..."'), or with a JSON list."""
    if as_extra_var:
        return run_playbook("run.yml", inventory=INVENTORY, args=["-e", f"cmd={json.dumps(command)}"], **kwargs)
    return run_playbook("run.yml", inventory=INVENTORY, extra_vars={"cmd": command}, **kwargs)


def result_of(run, task: str) -> dict:
    return next(result for name, result in run.tasks() if name == task)


def counts() -> dict:
    return {table: stack_query(STACK, f"SELECT count(*) FROM {table}")[0][0] for table in SEEDED}  # noqa: S608


def salt() -> str:
    return SALT_FILE.read_text()


@pytest.fixture(scope="module")
def deployed(bed, docker_client):
    teardown_stack(docker_client, STACK)
    subprocess.run(["rm", "-rf", f"/etc/pydeploy/{STACK}", f"/var/lib/pydeploy/{STACK}"], check=True)
    first = deploy()
    yield first
    teardown_stack(docker_client, STACK)


def test_the_salt_is_generated_once_private_and_hex(deployed):
    value = salt()
    assert len(value) == 64
    assert set(value) <= set("0123456789abcdef")
    stat = SALT_FILE.stat()
    assert (stat.st_mode & 0o777, stat.st_uid) == (0o600, 0)
    assert SALT_FILE.parent.stat().st_mode & 0o777 == 0o700
    assert f"API_KEY_SALT={value}\n" in ENV_FILE.read_text()


def test_the_seed_ran_once_and_a_rerun_changes_nothing(deployed):
    hook = result_of(deployed, POST_MIGRATE)
    assert hook["changed"] is True
    assert "seed: inserted 49 rows, 0 already present" in hook["output"]
    assert counts() == SEEDED
    assert stack_query(STACK, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")[0][0] == 1

    before = salt()
    # At -vvvv, as an operator debugging it would run it: the salt appears nowhere in what it prints.
    again = deploy(verbosity=4, json_output=False)
    recap = re.search(r"^localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0\s", again.stdout, re.M)
    # Nothing changed, the hook included: skipped with the rest of an unchanged release, or found already run.
    assert recap and recap[1] == "0", again.stdout[-3000:]
    assert before not in again.stdout + again.stderr
    assert counts() == SEEDED
    assert salt() == before


def test_check_mode_after_deploy_predicts_no_change(deployed):
    run = deploy(check=True, diff=True)
    assert run.changed() == 0, run.changed_tasks()


def test_running_the_seed_again_adds_nothing(deployed):
    run = run_cmd("python -m app.seed", as_extra_var=True)
    assert run.rc == 0, run.explain()
    output = result_of(run, "Run the command in a one-off container of the current release")
    assert output["rc"] == 0
    assert "seed: inserted 0 rows, 49 already present" in output["stdout"]
    assert counts() == SEEDED


def test_a_rotated_key_is_stored_only_as_its_hmac_and_works_through_the_proxy(deployed):
    run = run_cmd(["python", "-m", "app.rotate_keys", "--name", "admin"])
    assert run.rc == 0, run.explain()
    key = result_of(run, "Run the command in a one-off container of the current release")["stdout_lines"]
    key = [line for line in key if len(line) == 64][-1]

    rows = stack_query(STACK, "SELECT * FROM api_keys")
    assert key not in repr(rows)
    digest = hmac.new(salt().encode(), key.encode(), hashlib.sha256).hexdigest()
    active = stack_query(STACK, "SELECT key_hash FROM api_keys WHERE name = 'admin' AND revoked_at IS NULL")
    assert active == [(digest,)]

    status, _, body = https_request(STACK, PORT, "/api/units?category=length", headers={"X-API-Key": key})
    assert status == 200, body
    status, _, _ = https_request(STACK, PORT, "/api/units", headers={"X-API-Key": "x" * 64})
    assert status in (401, 403)

    status, _, body = https_request(
        STACK,
        PORT,
        "/api/conversions",
        method="POST",
        body={"value": "2.5", "from": "km", "to": "m"},
        headers={"X-API-Key": key},
    )
    assert status == 202, body
    job = json.loads(body)["job_id"]

    def finished():
        code, _, document = https_request(STACK, PORT, f"/api/jobs/{job}", headers={"X-API-Key": key})
        document = json.loads(document)
        return document if code == 200 and document["status"] == "finished" else None

    assert wait_for(finished, timeout=60, interval=0.5, what="the conversion job")["result"]


def test_ready_checks_database_and_redis_through_the_proxy(deployed):
    status, _, body = https_request(STACK, PORT, "/ready")
    assert status == 200, body
    assert json.loads(body)["status"] == "ready"


def test_run_fails_with_the_commands_exit_code(deployed):
    run = run_cmd('sh -c "echo about to fail; exit 7"', as_extra_var=True)
    assert run.rc != 0
    assert "the command exited with 7: about to fail" in " ".join(run.failure_messages())
    result = result_of(run, "Run the command in a one-off container of the current release")
    assert result["rc"] == 7
    assert result["stdout_lines"] == ["about to fail"]


def test_run_without_a_command_says_how_to_give_one(deployed):
    run = run_playbook("run.yml", inventory=INVENTORY)
    assert run.rc != 0
    assert "no command to run" in " ".join(run.failure_messages())


def test_the_salt_appears_in_no_log(deployed, docker_client):
    """Nor in run.yml's output at -vvvv, nor in any container's log (a redeploy's at -vvvv: the rerun above)."""
    value = salt()
    assert value not in deployed.stdout + deployed.stderr
    seeded = run_cmd("python -m app.seed", verbosity=4, json_output=False)
    assert value not in seeded.stdout + seeded.stderr
    for container in docker_client.containers.list(all=True, filters={"label": f"pydeploy.stack={STACK}"}):
        assert value.encode() not in container.logs(), container.name
