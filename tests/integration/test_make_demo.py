"""`make demo`, as the README says: it ends by printing the URL, and the URL
answers through nginx with the deployed version. Then the commands the README
gives after it, run as written: a backup and a restore into a scratch
database, both verified, the scratch database dropped, and status.yml showing
that backup; and the background worker at work. One deploy for all of it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest
from conftest import container_logs, stack_query, wait_for
from playbook import REPO, ansible_env
from test_deploy_flight_hunter import STACK, https_get


@pytest.fixture(scope="module")
def demo(bed):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    result = subprocess.run(["make", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_make_demo_prints_the_url_that_serves_the_app(demo):
    tail = demo.stdout.strip().splitlines()[-15:]
    assert any("url       https://localhost:8443/" in line for line in tail), tail
    status, _, body = https_get("/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "version": "v2"}


def readme_commands() -> list[list[str]]:
    """The commands of the README's block after `make demo`, without their comments."""
    text = (REPO / "README.md").read_text()
    after = text[text.index("After `make demo`") :]
    block = after.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def scratch_databases() -> list[str]:
    rows = stack_query(STACK, "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{STACK}_restore_%",))
    return [row[0] for row in rows]


def test_the_readme_commands_after_make_demo_back_up_restore_and_show_it(demo):
    commands = readme_commands()
    assert [argv[:2] for argv in commands] == [
        ["ansible-playbook", "backup.yml"],
        ["ansible-playbook", "restore.yml"],
        ["ansible-playbook", "restore.yml"],
        ["ansible-playbook", "status.yml"],
    ], commands
    output = []
    for argv in commands:  # as a user types them, in the checkout, with its virtualenv
        done = subprocess.run(
            argv, cwd=REPO, env=ansible_env(ANSIBLE_NOCOLOR="1"), capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, (argv, done.stdout[-3000:], done.stderr[-3000:])
        output.append(done.stdout)
    backup, restore, drop, status = output
    assert "verified  yes: restored into a scratch database, " in backup, backup[-3000:]
    key = re.search(r"backup    s3://pydeploy-backups/(local/flight_hunter/\S+?)['\"]?$", backup, re.M).group(1)
    assert "verified  yes: " in restore and f"restored  s3://pydeploy-backups/{key}" in restore, restore[-3000:]
    scratch = re.search(rf"into      ({STACK}_restore_[0-9a-f]+)", restore).group(1)
    assert f"-e restore_drop={scratch}" in restore  # the summary says how to drop it
    assert f"dropped   {scratch}" in drop, drop[-3000:]
    assert scratch_databases() == []
    # One line of status.yml's report, which its YAML output may fold.
    last_backup = re.search(r" backup: (\S.*? skipped)", " ".join(status.split())).group(1)
    assert f"key {key}, " in last_backup and ", verified, by backup.yml, " in last_backup, last_backup


def test_the_background_worker_sends_price_alerts(demo, docker_client):
    """The alerts worker notifies an alert within a round (10 s) of a price below its maximum."""
    workers = docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=alerts"]})
    assert [worker.labels["pydeploy.version"] for worker in workers] == ["v2"]
    stack_query(STACK, "DELETE FROM price_cache WHERE origin = 'DMO'")
    stack_query(STACK, "DELETE FROM alerts WHERE origin = 'DMO'")
    stack_query(
        STACK,
        "INSERT INTO price_cache (origin, destination, departure_date, price, provider)"
        " VALUES ('DMO', 'TST', current_date + 30, 99.00, 'demo')",
    )
    ((alert,),) = stack_query(
        STACK,
        "INSERT INTO alerts (email, origin, destination, max_price) VALUES ('demo@example.com', 'DMO', 'TST', 150)"
        " RETURNING id",
    )
    try:
        wait_for(
            lambda: stack_query(STACK, "SELECT last_sent_at FROM alerts WHERE id = %s", (alert,))[0][0],
            timeout=60,
            what="the alerts worker to notify the alert",
        )
        notified = f"send_alerts: would notify d***@example.com via email: DMO-TST at 99.00 EUR (alert {alert},"
        assert notified in container_logs(workers[0])
    finally:
        stack_query(STACK, "DELETE FROM alerts WHERE origin = 'DMO'")
        stack_query(STACK, "DELETE FROM price_cache WHERE origin = 'DMO'")
