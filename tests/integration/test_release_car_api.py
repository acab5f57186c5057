"""Car API releases: a rolling deploy and a rollback under a steady request
load through nginx lose no request; deploys take a lock; a killed deploy's
rerun converges; a rollback works with the registry down and refuses unknown
tags and an older schema unless told; a killed app container serves again.
(Releases that fail: test_release_car_api_faults.py, a stack of its own.)

The stack's images come from a registry of its own on loopback (serving the
bed's registry storage, read-only), so this module can stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import wait_for
from playbook import REPO, VENV_BIN
from release_support import INVENTORY, V1, V2, V3, CarStack, fixtures

CAR = CarStack("car_api", http_port=9380, https_port=9743)
STACK = CAR.name
LEDGER = CAR.ledger
mirror, extra, released = fixtures(CAR)


def test_deploy_and_rollback_under_load_lose_no_request(released, extra, docker_client):
    with CAR.load() as load:
        time.sleep(2)
        assert CAR.serving_version() == V1
        run = CAR.deploy(extra, V2)
        assert run.rc == 0, run.explain()
        assert CAR.serving_version() == V2
        time.sleep(2)
        back = CAR.deploy(extra, playbook="rollback.yml", more={"app_rollback_schema": "proceed"})
        assert back.rc == 0, back.explain()
        assert CAR.serving_version() == V1
        time.sleep(2)
    assert load.failures == [], load.failures[:10]
    assert load.ok > 200
    # During each switch both releases answer for a moment (nginx's old workers finish theirs).
    assert load.serving()[0] == V1 and load.serving()[-1] == V1 and V2 in load.serving()
    replicas = CAR.web_containers(docker_client)
    assert [version for _, version in replicas] == [V1, V1, V1]
    assert len({name.rsplit("-", 2)[-2] for name, _ in replicas}) == 1, replicas  # one slot
    assert CAR.ledger_versions()[-3:] == [V1, V2, V1]
    assert json.loads(LEDGER.read_text())["releases"][-1]["kind"] == "rollback"


def test_a_second_run_changes_nothing(released, extra):
    """Rerunning the last run (the rollback to V1) changes nothing, check mode included."""
    again = {"rollback_to": V1, "app_rollback_schema": "proceed"}
    run = CAR.deploy(extra, playbook="rollback.yml", more=again)
    assert run.rc == 0, run.explain()
    assert run.changed() == 0, run.changed_tasks()
    check = CAR.deploy(extra, playbook="rollback.yml", more=again, check=True, diff=True)
    assert check.rc == 0, check.explain()
    assert check.changed() == 0, check.changed_tasks()


def test_a_slow_starting_release_is_waited_for(released, extra):
    run = CAR.deploy(extra, "v-slowstart")
    assert run.rc == 0, run.explain()
    assert CAR.serving_version() == "v-slowstart"
    assert CAR.deploy(extra, V1, more={"stack_migrations": {}}).rc == 0


def test_two_deploys_at_once_one_is_refused_naming_the_holder(released, extra):
    first = subprocess.Popen(
        [
            str(VENV_BIN / "ansible-playbook"),
            "deploy.yml",
            "-i",
            INVENTORY,
            "-e",
            json.dumps({**extra, "stack_version": V3}),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(
        lambda: CAR.lock.exists(),
        timeout=120,
        interval=0.2,
        what="the first deploy to take the lock",
    )
    second = CAR.deploy(extra, V3)
    assert second.rc != 0
    message = " ".join(second.failure_messages())
    assert "another deploy of car_api is running" in message and "deploying v20251110_120000" in message, message
    output, _ = first.communicate(timeout=900)
    assert first.returncode == 0, output[-3000:]
    assert CAR.serving_version() == V3


def session_of(proc: Path) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid pgrp session ..."; comm may hold spaces.
    return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3])


def kill_processes_with_argument(argument: str) -> None:
    """SIGKILL every process whose command line holds ``argument``, and everything in their sessions (the
    modules they were running on this host): a controller that dies takes its local processes with it."""
    sessions = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argument.encode() in argv:
                sessions.add(session_of(proc))
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError, ValueError, IndexError):
            continue
    sessions.discard(os.getsid(0))
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if session_of(proc) in sessions:
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError, ValueError, IndexError):
            continue


def test_a_killed_deploy_converges_on_rerun(released, extra, docker_client):
    variables = json.dumps({**extra, "stack_version": V2})
    process = subprocess.Popen(
        [
            str(VENV_BIN / "ansible-playbook"),
            "deploy.yml",
            "-i",
            INVENTORY,
            "-e",
            variables,
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Kill it once the new replicas exist beside the old ones.
    wait_for(
        lambda: any(v == V2 for _, v in CAR.web_containers(docker_client)),
        timeout=300,
        interval=0.2,
        what="the new replicas to start",
    )
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # Ansible's workers run in sessions of their own: they go the same way.
    kill_processes_with_argument(variables)

    run = CAR.deploy(extra, V2)
    assert run.rc == 0, run.explain()
    assert any("broke the deploy lock" in str(w) for _, r in run.tasks() for w in r.get("warnings", [])), (
        "the stale lock of the killed run is reported"
    )
    assert {v for _, v in CAR.web_containers(docker_client)} == {V2}
    assert len(CAR.web_containers(docker_client)) == 3
    assert CAR.serving_version() == V2
    assert CAR.ledger_versions()[-1] == V2
    assert not CAR.lock.exists()


def test_rollback_works_with_the_registry_down_and_refuses_unknown_tags(released, extra, mirror):
    mirror.stop()
    try:
        unknown = CAR.deploy(extra, playbook="rollback.yml", more={"rollback_to": "v20200101_000000"})
        assert unknown.rc != 0
        message = " ".join(unknown.failure_messages())
        assert "rollback_to=v20200101_000000 is not a recorded release of car_api; known: " in message
        assert V1 in message and V2 in message

        run = CAR.deploy(extra, playbook="rollback.yml", more={"rollback_to": V3})
        assert run.rc == 0, run.explain()
        assert CAR.serving_version() == V3
    finally:
        mirror.start()


def test_a_rollback_to_an_older_schema_stops_unless_told(released, extra):
    run = CAR.deploy(extra, playbook="rollback.yml", more={"rollback_to": V1})
    assert run.rc != 0
    message = " ".join(run.failure_messages())
    assert "released with the schema at revision 0001, the database is at 0002" in message, message
    assert "app_rollback_schema=proceed" in message


def test_a_killed_app_container_serves_again(released, extra, docker_client):
    victim = CAR.running_web_containers(docker_client)[0]
    before = CAR.ledger_versions()
    # The app's main process dies (an out-of-memory kill, a crash): the restart policy brings it back.
    os.kill(victim.attrs["State"]["Pid"], signal.SIGKILL)
    wait_for(
        lambda: (
            docker_client.containers.get(victim.name).attrs["RestartCount"] > 0
            and docker_client.containers.get(victim.name).attrs["State"]["Health"]["Status"] == "healthy"
        ),
        timeout=60,
        interval=1,
        what="the killed replica to serve again",
    )
    assert CAR.serving_version()
    assert CAR.ledger_versions() == before
