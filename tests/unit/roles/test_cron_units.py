"""The cron role's systemd units, rendered from its templates the way the role
renders them, and checked by systemd's own parser where it is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
from ansible_collections.pydeploy.stack.plugins.filter.cron import cron_to_oncalendar

TEMPLATES = Path(__file__).resolve().parents[3] / "roles" / "cron" / "templates"
CONTEXT = {
    "ansible_managed": "Ansible managed",
    "stack_name": "flight_hunter",
    "cron_python": "/usr/bin/python3",
    "cron_runner_path": "/usr/local/lib/pydeploy/pydeploy-job",
    "cron_stop_grace_period": 30,
    "_cron_config": "/etc/pydeploy/flight_hunter/jobs.json",
}


def render(name: str, job: str, spec: dict) -> str:
    # systemd units, not HTML: nothing to escape.
    environment = jinja2.Environment(  # noqa: S701
        loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True
    )
    environment.filters["pydeploy.stack.cron_to_oncalendar"] = cron_to_oncalendar
    return environment.get_template(f"{name}.j2").render(item=({"key": job, "value": spec}, name), **CONTEXT)


def test_the_timer_carries_one_oncalendar_per_systemd_expression():
    timer = render("timer", "cleanup_cache", {"schedule": "0 3 * * *"})
    assert "OnCalendar=*-*-* 03:00:00\n" in timer
    either = render("timer", "report", {"schedule": "0 9 1 * mon"})
    assert either.count("OnCalendar=") == 2  # cron fires on the 1st OR on Mondays


def test_the_service_runs_the_job_through_the_runner_and_lets_it_stop_its_container():
    service = render("service", "fetch_prices", {"schedule": "*/6 * * * *", "stop_grace_period": 10})
    assert (
        "ExecStart=/usr/bin/python3 /usr/local/lib/pydeploy/pydeploy-job "
        "/etc/pydeploy/flight_hunter/jobs.json fetch_prices\n"
    ) in service
    assert "TimeoutStopSec=40\n" in service
    assert "KillMode=mixed\n" in service


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
@pytest.mark.parametrize("schedule", ["*/6 * * * *", "0 3 * * *", "30 2 * * 1-5", "0 9 1 * mon", "@weekly"])
def test_systemd_accepts_every_calendar_expression(schedule):
    for expression in cron_to_oncalendar(schedule):
        checked = subprocess.run(
            ["systemd-analyze", "calendar", expression], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stderr
