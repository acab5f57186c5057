"""Scheduled jobs of Flight Hunter, fired by the host's real cron daemon
(`* * * * *` test schedules): each run is a one-off container of the release
deployed last, a slow job never overlaps itself, a failing job's exit status
is visible in status.yml, and after deploying v2 and after rolling back to v1
(rollback.yml) the next run uses that image."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import stack_query, teardown_stack, wait_for
from playbook import run_playbook

STACK = "flight_hunter"
STATE = Path(f"/var/lib/pydeploy/{STACK}/jobs")
LOGS = Path(f"/var/log/pydeploy/{STACK}")
CRON_FILE = Path(f"/etc/cron.d/pydeploy-{STACK}")
EVERY_MINUTE = "* * * * *"
JOBS = {
    "fetch_prices": {"schedule": EVERY_MINUTE, "command": "python -m app.workers.fetch_prices --days 2"},
    "report_version": {"schedule": EVERY_MINUTE, "command": ["sh", "-c", "echo running release $APP_VERSION"]},
    # Slower than its interval: the run of the next minute must be skipped, not overlap.
    "slow": {"schedule": EVERY_MINUTE, "command": ["sh", "-c", "echo begin; sleep 75; echo done"], "timeout": 150},
    "failing": {"schedule": EVERY_MINUTE, "command": ["sh", "-c", "echo failing on purpose >&2; exit 3"]},
    "nightly": {"schedule": "0 3 * * *", "command": "python -m app.workers.cleanup_cache"},
}
# One scheduled minute plus cron's start-up and a run's length.
NEXT_RUN = 150


def deploy(version: str, check: bool = False, diff: bool = False, **extra):
    run = run_playbook(extra_vars={"stack_version": version, "stack_jobs": JOBS, **extra}, check=check, diff=diff)
    assert run.rc == 0, run.explain()
    return run


def rollback(**extra):
    run = run_playbook("rollback.yml", extra_vars={"stack_jobs": JOBS, **extra})
    assert run.rc == 0, run.explain()
    return run


def status(job: str) -> dict:
    try:
        return json.loads((STATE / f"{job}.json").read_text())
    except FileNotFoundError:
        return {}


def finished_run_after(job: str, moment: str) -> dict:
    """The status of the first finished run of ``job`` that started after ``moment`` (UTC ISO)."""

    def check():
        current = status(job)
        done = current.get("state") not in (None, "running")
        return current if done and current.get("started_at", "") > moment else None

    return wait_for(check, timeout=NEXT_RUN, interval=1, what=f"a run of {job} after {moment}")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def scheduled(bed, docker_client):
    teardown_stack(docker_client, STACK)
    run = deploy("v1")
    started = now()
    yield started, run
    teardown_stack(docker_client, STACK)
    # Leave the default stack as the local inventory describes it.
    assert run_playbook().rc == 0


def test_jobs_are_scheduled_in_cron_d_for_the_current_release(scheduled):
    text = CRON_FILE.read_text()
    for job in ("fetch_prices", "report_version", "slow", "failing"):
        assert re.search(rf"^\* \* \* \* \* root \S+ \S+/pydeploy-job \S+/jobs\.json {job} ", text, re.M), text
    assert re.search(r"^0 3 \* \* \* root .* nightly ", text, re.M)
    assert CRON_FILE.stat().st_mode & 0o777 == 0o644


def test_a_job_fires_on_schedule_and_writes_its_rows(scheduled):
    started, _ = scheduled
    run = finished_run_after("fetch_prices", started)
    assert run["state"] == "succeeded", run
    assert run["image"].endswith(":v1")
    fetched = datetime.fromisoformat(run["started_at"].replace("Z", "+00:00"))
    rows = stack_query(STACK, "SELECT count(*) FROM price_cache WHERE fetched_at >= %s", (fetched.replace(second=0),))
    assert rows[0][0] == 5 * 2  # five routes, two days
    # Cron starts a job on the minute: its start is late by seconds, not minutes.
    assert fetched.second < 30


def test_a_failing_jobs_exit_status_is_visible_in_status_yml(scheduled):
    started, _ = scheduled
    assert finished_run_after("failing", started)["exit_code"] == 3
    report = run_playbook("status.yml")
    assert report.rc == 0, report.explain()
    shown = next(result for name, result in report.tasks() if name == "Show the state of this host")
    assert shown["msg"]["jobs"]["failing"].startswith("failed, exit 3, ")
    assert "failing on purpose" in (LOGS / "failing.log").read_text()


def test_a_slow_job_never_overlaps_itself(scheduled):
    """75 s runs every minute: the run of the next minute is skipped, never started beside it."""
    wait_for(lambda: status("slow").get("skipped", 0) >= 1, timeout=NEXT_RUN + 60, interval=2, what="a skipped run")
    wait_for(lambda: status("slow").get("state") == "succeeded", timeout=NEXT_RUN, interval=2, what="a slow run")
    log = (LOGS / "slow.log").read_text().splitlines()
    running = 0
    for line in log:
        if " start slow:" in line:
            running += 1
        elif " end slow:" in line:
            running -= 1
        assert running <= 1, "\n".join(log)
    assert any("skipped: previous run" in line for line in log)


def test_redeploying_the_same_release_changes_nothing(scheduled):
    run = deploy("v1")
    assert run.changed() == 0, run.changed_tasks()
    check = deploy("v1", check=True, diff=True)
    assert check.changed() == 0, check.changed_tasks()


def test_check_mode_shows_a_changed_schedule_without_applying_it(scheduled):
    before = CRON_FILE.read_text()
    jobs = {**JOBS, "nightly": {**JOBS["nightly"], "schedule": "30 4 * * *"}}
    run = run_playbook(extra_vars={"stack_version": "v1", "stack_jobs": jobs}, check=True, diff=True)
    assert run.rc == 0, run.explain()
    assert set(run.changed_tasks()) == {"Point the jobs at the current release", "Schedule the jobs in /etc/cron.d"}
    assert CRON_FILE.read_text() == before


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        (
            {"bad": {"schedule": "61 * * * *", "command": "true"}},
            "stack_jobs.bad.schedule '61 * * * *': minute field \"61\"",
        ),
        ({"bad": {"schedule": "* * * *", "command": "true"}}, "stack_jobs.bad.schedule"),
        ({"bad": {"schedule": "@reboot", "command": "true"}}, "stack_jobs.bad.schedule"),
        ({"bad": {"schedule": EVERY_MINUTE, "comand": "true"}}, "stack_jobs.bad: unknown key(s) comand"),
        ({"Bad Name": {"schedule": EVERY_MINUTE, "command": "true"}}, "stack_jobs.Bad Name: a job name"),
    ],
    ids=["out-of-range", "four-fields", "reboot", "typo", "bad-name"],
)
def test_a_bad_job_fails_before_anything_changes(scheduled, jobs, expected):
    before = CRON_FILE.read_text()
    run = run_playbook(extra_vars={"stack_version": "v1", "stack_jobs": jobs})
    assert run.rc != 0
    assert expected in " ".join(run.failure_messages())
    assert run.changed() == 0
    assert CRON_FILE.read_text() == before


def test_after_each_deploy_the_next_run_uses_that_release(scheduled):
    """Last: it leaves the database on v2's schema."""
    started, _ = scheduled
    first = finished_run_after("report_version", started)
    assert first["image"].endswith(":v1")

    # Then rollback.yml back to v1: v1's code on the schema v2 migrated to.
    steps = (
        ("v2", lambda: deploy("v2")),
        ("v1", lambda: rollback(app_rollback_schema="proceed")),
    )
    for version, step in steps:
        step()
        # Runs that started during the deploy may still have used the release before it.
        run = finished_run_after("report_version", now())
        assert run["image"].endswith(f":{version}"), run
        assert run["version"] == version
        log = (LOGS / "report_version.log").read_text()
        assert f"running release {version}" in log.split(f"start report_version: image {run['image']}")[-1]
