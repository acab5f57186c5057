"""Scheduled jobs of Flight Hunter (a stack of its own, fh_cron), each run the way cron runs it: the tests
take a job's line from /etc/cron.d/pydeploy-fh_cron and run its command
themselves, at once, instead of waiting for the minute it is scheduled at.
Each run is a one-off container of the release deployed last, a slow job
never overlaps itself (a second run while it runs is skipped and counted), a
failing job's exit status is visible in status.yml, and after deploying v2 and
after rolling back to v1 (rollback.yml) the next run uses that image.  One
test leaves it to the host's real cron daemon: a `* * * * *` job fires on the
minute, late by seconds at most."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import stack_query, teardown_stack, wait_for
from playbook import run_playbook

STACK = "fh_cron"
INVENTORY = "tests/integration/inventories/flight_hunter_cron"
STATE = Path(f"/var/lib/pydeploy/{STACK}/jobs")
LOGS = Path(f"/var/log/pydeploy/{STACK}")
CRON_FILE = Path(f"/etc/cron.d/pydeploy-{STACK}")
EVERY_MINUTE = "* * * * *"
# February 31st: cron never fires these; the tests run them, one run at a
# time, so that no run of cron's takes a job's lock from under them.
NEVER = "0 0 31 2 *"
SLOW_SECONDS = 20
JOBS = {
    # The one job the cron daemon fires.
    "every_minute": {"schedule": EVERY_MINUTE, "command": ["sh", "-c", "echo tick of release $APP_VERSION"]},
    "fetch_prices": {"schedule": NEVER, "command": "python -m app.workers.fetch_prices --days 2"},
    "report_version": {"schedule": NEVER, "command": ["sh", "-c", "echo running release $APP_VERSION"]},
    "slow": {
        "schedule": NEVER,
        "command": ["sh", "-c", f"echo begin; sleep {SLOW_SECONDS}; echo done"],
        "timeout": SLOW_SECONDS + 60,
    },
    "failing": {"schedule": NEVER, "command": ["sh", "-c", "echo failing on purpose >&2; exit 3"]},
    "nightly": {"schedule": "0 3 * * *", "command": "python -m app.workers.cleanup_cache"},
}
# One scheduled minute plus cron's start-up and a run's length.
NEXT_RUN = 150


def deploy(version: str, check: bool = False, diff: bool = False, **extra):
    run = run_playbook(
        inventory=INVENTORY, extra_vars={"stack_version": version, "stack_jobs": JOBS, **extra}, check=check, diff=diff
    )
    assert run.rc == 0, run.explain()
    return run


def rollback(**extra):
    run = run_playbook("rollback.yml", INVENTORY, extra_vars={"stack_jobs": JOBS, **extra})
    assert run.rc == 0, run.explain()
    return run


def status(job: str) -> dict:
    try:
        return json.loads((STATE / f"{job}.json").read_text())
    except FileNotFoundError:
        return {}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cron_line(job: str) -> tuple[list[str], dict[str, str]]:
    """What cron runs for ``job``: its shell's argv with the line's command (redirection and all), and the
    environment cron gives it (the file's own settings, SHELL and PATH, over cron's HOME and LOGNAME)."""
    env = {"HOME": "/root", "LOGNAME": "root"}
    text = CRON_FILE.read_text()
    for line in text.splitlines():
        setting = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if setting:
            env[setting[1]] = setting[2]
            continue
        if not line.strip() or line.startswith("#"):
            continue
        *_, user, command = line.split(None, 6)  # minute hour day month weekday user command
        if shlex.split(command.split(">>", 1)[0])[-1] == job:
            assert user == "root", line
            return [env.get("SHELL", "/bin/sh"), "-c", command], env
    raise AssertionError(f"no {job} line in {CRON_FILE}:\n{text}")


def run_job(job: str, background: bool = False):
    """Run ``job`` now, as its cron.d line would: the finished process, or the running one."""
    argv, env = cron_line(job)
    if background:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def runner_log() -> str:
    """The runner's own output, where the cron.d line sends it."""
    try:
        return (LOGS / "runner.log").read_text()[-3000:]
    except FileNotFoundError:
        return ""


def slow_containers(docker_client) -> list:
    return docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.job=slow"]})


@pytest.fixture(scope="module")
def scheduled(bed, docker_client):
    teardown_stack(docker_client, STACK)
    run = deploy("v1")
    started = now()
    yield started, run
    teardown_stack(docker_client, STACK)


def test_jobs_are_scheduled_in_cron_d_for_the_current_release(scheduled):
    text = CRON_FILE.read_text()
    for job, spec in JOBS.items():
        line = rf"^{re.escape(spec['schedule'])} root \S+ \S+/pydeploy-job \S+/jobs\.json {job} >>\S+ 2>&1$"
        assert re.search(line, text, re.M), (job, text)
    assert CRON_FILE.stat().st_mode & 0o777 == 0o644


def test_a_job_run_as_cron_runs_it_writes_its_rows(scheduled):
    moment = datetime.now(UTC).replace(microsecond=0)
    done = run_job("fetch_prices")
    assert done.returncode == 0, (done.stdout, done.stderr, runner_log())
    run = status("fetch_prices")
    assert run["state"] == "succeeded" and run["exit_code"] == 0, run
    assert run["image"].endswith(":v1") and run["version"] == "v1", run
    rows = stack_query(STACK, "SELECT count(*) FROM price_cache WHERE fetched_at >= %s", (moment,))
    assert rows[0][0] == 5 * 2  # five routes, two days
    assert "start fetch_prices: image " in (LOGS / "fetch_prices.log").read_text()


def test_a_failing_jobs_exit_status_is_visible_in_status_yml(scheduled):
    done = run_job("failing")
    assert done.returncode == 3, (done.stdout, done.stderr, runner_log())
    assert status("failing")["exit_code"] == 3
    assert status("failing")["state"] == "failed"
    report = run_playbook("status.yml", INVENTORY)
    assert report.rc == 0, report.explain()
    shown = next(result for name, result in report.tasks() if name == "Show the state of this host")
    assert shown["msg"]["jobs"]["failing"].startswith("failed, exit 3, ")
    assert "failing on purpose" in (LOGS / "failing.log").read_text()


def test_a_slow_job_never_overlaps_itself(scheduled, docker_client):
    """A run while the previous one still runs is skipped and counted, never started beside it."""
    first = run_job("slow", background=True)
    try:
        wait_for(lambda: status("slow").get("state") == "running", timeout=30, interval=0.2, what="the slow run")
        wait_for(lambda: slow_containers(docker_client), timeout=30, interval=0.2, what="the slow run's container")

        began = time.monotonic()
        second = run_job("slow")
        assert second.returncode == 0, (second.stdout, second.stderr, runner_log())
        assert time.monotonic() - began < SLOW_SECONDS / 2  # it did not wait for the first run either
        assert first.poll() is None, "the first run ended before the second began: nothing was tested"
        skipped = status("slow")
        assert skipped["state"] == "running" and skipped["skipped"] == 1 and skipped["last_skipped_at"], skipped
        assert len(slow_containers(docker_client)) == 1

        assert first.wait(timeout=SLOW_SECONDS + 60) == 0, runner_log()
    finally:
        if first.poll() is None:
            first.terminate()
            first.wait(timeout=60)
    done = status("slow")
    assert done["state"] == "succeeded" and done["runs"] == 1, done
    assert done["skipped"] == 1 and done["last_skipped_at"] == skipped["last_skipped_at"], done

    log = (LOGS / "slow.log").read_text().splitlines()
    running = 0
    for line in log:
        if " start slow:" in line:
            running += 1
        elif " end slow:" in line:
            running -= 1
        assert running <= 1, "\n".join(log)
    events = [line.split("| ", 1)[1].split(":")[0] for line in log if " runner| " in line]
    assert events == ["start slow", "skipped", "end slow"], "\n".join(log)


def test_redeploying_the_same_release_changes_nothing(scheduled):
    """A real second run. Check mode on the same input changing nothing is proven on the stack of
    inventories/local, which has jobs too (test_deploy_flight_hunter.py, test_check_after_deploy_predicts_no_change);
    check mode on these jobs is the next test's."""
    run = deploy("v1")
    assert run.changed() == 0, run.changed_tasks()


def test_check_mode_shows_a_changed_schedule_without_applying_it(scheduled):
    """Only the two tasks that read the schedule would change: every other task of the run, this stack's roles
    and the jobs' runner, predicts no change after the real second run above."""
    before = CRON_FILE.read_text()
    jobs = {**JOBS, "nightly": {**JOBS["nightly"], "schedule": "30 4 * * *"}}
    run = run_playbook(
        inventory=INVENTORY, extra_vars={"stack_version": "v1", "stack_jobs": jobs}, check=True, diff=True
    )
    assert run.rc == 0, run.explain()
    assert set(run.changed_tasks()) == {"Point the jobs at the current release", "Schedule the jobs in /etc/cron.d"}
    assert CRON_FILE.read_text() == before
    scheduled_line = [result.get("diff") for name, result in run.tasks() if name == "Schedule the jobs in /etc/cron.d"]
    assert "30 4 * * *" in json.dumps(scheduled_line), scheduled_line


def test_bad_jobs_fail_before_anything_changes(scheduled):
    """Every bad job of one run is named, each with its own problem."""
    jobs = {
        "out-of-range": {"schedule": "61 * * * *", "command": "true"},
        "four-fields": {"schedule": "* * * *", "command": "true"},
        "reboot": {"schedule": "@reboot", "command": "true"},
        "typo": {"schedule": EVERY_MINUTE, "comand": "true"},
        "Bad Name": {"schedule": EVERY_MINUTE, "command": "true"},
    }
    expected = [
        "stack_jobs.out-of-range.schedule '61 * * * *': minute field \"61\"",
        "stack_jobs.four-fields.schedule '* * * *': ",
        "stack_jobs.reboot.schedule '@reboot': ",
        "stack_jobs.typo: unknown key(s) comand",
        "stack_jobs.Bad Name: a job name",
    ]
    before = CRON_FILE.read_text()
    run = run_playbook(inventory=INVENTORY, extra_vars={"stack_version": "v1", "stack_jobs": jobs})
    assert run.rc != 0
    messages = " ".join(run.failure_messages())
    for message in expected:
        assert message in messages, (message, run.explain())
    assert run.changed() == 0
    assert CRON_FILE.read_text() == before


def test_the_cron_daemon_fires_a_job_on_the_minute(scheduled):
    """The one wait for the clock, placed after the other tests so that the minute has mostly passed."""
    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode != 0:
        pytest.fail("no cron daemon runs on this host: 'make bed' starts it")
    started, _ = scheduled

    def finished_run():
        current = status("every_minute")
        done = current.get("state") not in (None, "running")
        return current if done and current.get("started_at", "") > started else None

    run = wait_for(finished_run, timeout=NEXT_RUN, interval=1, what=f"cron's run of every_minute after {started}")
    assert run["state"] == "succeeded", run
    assert run["image"].endswith(":v1")
    assert "tick of release v1" in (LOGS / "every_minute.log").read_text()
    fired = datetime.fromisoformat(run["started_at"].replace("Z", "+00:00"))
    # Cron starts a job on the minute: its start is late by seconds, not minutes.
    assert fired.second < 30, run


def test_after_each_deploy_the_next_run_uses_that_release(scheduled):
    """Last: it leaves the database on v2's schema."""
    # Then rollback.yml back to v1: v1's code on the schema v2 migrated to.
    steps = (
        ("v1", lambda: None),
        ("v2", lambda: deploy("v2")),
        ("v1", lambda: rollback(app_rollback_schema="proceed")),
    )
    for version, step in steps:
        step()
        done = run_job("report_version")
        assert done.returncode == 0, (version, done.stdout, done.stderr, runner_log())
        run = status("report_version")
        assert run["state"] == "succeeded", run
        assert run["image"].endswith(f":{version}"), run
        assert run["version"] == version
        log = (LOGS / "report_version.log").read_text()
        assert f"running release {version}" in log.split(f"start report_version: image {run['image']}")[-1]
