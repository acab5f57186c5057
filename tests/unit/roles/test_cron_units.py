"""The cron role's systemd units, rendered from its templates with the parameters its
tasks pass, and checked by systemd's own parser where it is installed."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from ansible.plugins.filter.core import FilterModule as CoreFilters
from ansible_collections.pydeploy.stack.plugins.filter.cron import cron_to_oncalendar
from ansible_collections.pydeploy.stack.plugins.filter.jobs import cron_job
from jinja2.nativetypes import NativeEnvironment
from systemd_units import ROLES, directives, include_vars, needs_systemd_analyze, render, units, verify

JOBS = {
    "fetch_prices": {
        "schedule": "*/6 * * * *",
        "command": "python -m app.workers.fetch_prices",
        "stop_grace_period": 10,
    },
    "cleanup_cache": {"schedule": "0 3 * * *", "command": "python -m app.workers.cleanup"},
    "report": {"schedule": "0 9 1 * mon", "command": ["python", "-m", "app.report"]},
}


def cron_units(jobs: dict = JOBS, **changes) -> dict[str, str]:
    """The units the cron role writes for ``jobs``: {file name: content}."""
    context = {
        "stack_name": "flight_hunter",
        "cron_python": "/usr/bin/python3",
        "cron_runner_path": "/usr/local/lib/pydeploy/pydeploy-job",
        "_cron_config": "/etc/pydeploy/flight_hunter/jobs.json",
        "_cron_unit_prefix": "pydeploy-flight-hunter-",
        "_cron_active": True,
        "_cron_description": {"jobs": {name: cron_job(spec, 3600, 30) for name, spec in jobs.items()}},
        **changes,
    }
    return units({**context, **include_vars("cron", "Schedule the jobs with systemd timers", context)})


def test_the_timer_carries_one_oncalendar_per_systemd_expression():
    written = cron_units()
    assert directives(written["pydeploy-flight-hunter-cleanup_cache.timer"], "OnCalendar") == ["*-*-* 03:00:00"]
    either = written["pydeploy-flight-hunter-report.timer"]
    assert len(directives(either, "OnCalendar")) == 2  # cron fires on the 1st OR on Mondays
    assert directives(either, "Persistent") == ["false"]  # as cron: a run missed while down is not made up


def test_the_service_runs_the_job_through_the_runner_and_lets_it_stop_its_container():
    service = cron_units()["pydeploy-flight-hunter-fetch_prices.service"]
    assert directives(service, "ExecStart") == [
        "/usr/bin/python3 /usr/local/lib/pydeploy/pydeploy-job /etc/pydeploy/flight_hunter/jobs.json fetch_prices"
    ]
    assert directives(service, "TimeoutStopSec") == ["40"]
    assert directives(cron_units()["pydeploy-flight-hunter-report.service"], "TimeoutStopSec") == ["60"]  # 30 + 30
    assert directives(service, "KillMode") == ["mixed"]
    assert directives(service, "Description") == [
        "flight_hunter job fetch_prices (a one-off container of the current release)"
    ]


def test_no_units_where_no_job_runs():
    """A host that runs no job (not the cron group's acting host) has its timers written with no job, which
    removes them, before the acting host schedules its own; the scheduling task skips it."""
    tasks = {task["name"]: task for task in yaml.safe_load((ROLES / "cron" / "tasks" / "main.yml").read_text())}
    removal = tasks["Remove the jobs' timers where no job runs"]
    assert removal["vars"]["cron_timers_jobs"] == []
    assert removal["when"] == "_cron_use_systemd and not _cron_active"
    assert tasks["Schedule the jobs with systemd timers"]["when"] == "_cron_use_systemd and _cron_active"
    names = list(tasks)
    assert names.index("Remove the jobs' timers where no job runs") < names.index(
        "Schedule the jobs with systemd timers"
    )
    assert cron_units(_cron_active=False, **{"_cron_description": {"jobs": {}}}) == {}


@needs_systemd_analyze
def test_systemd_accepts_the_units(tmp_path):
    written = cron_units()
    assert len(written) == 2 * len(JOBS)
    assert verify(tmp_path, written) == ""


@needs_systemd_analyze
@pytest.mark.parametrize("schedule", ["*/6 * * * *", "0 3 * * *", "30 2 * * 1-5", "0 9 1 * mon", "@weekly"])
def test_systemd_accepts_every_calendar_expression(schedule):
    for expression in cron_to_oncalendar(schedule):
        checked = subprocess.run(
            ["systemd-analyze", "calendar", expression], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stderr


# With Ansible's flatten, and the collection's filter.
NATIVE = NativeEnvironment()
NATIVE.filters["flatten"] = CoreFilters().filters()["flatten"]
NATIVE.filters["pydeploy.stack.cron_to_oncalendar"] = cron_to_oncalendar


def native(value, context: dict):
    return NATIVE.from_string(value).render(context) if isinstance(value, str) else value


def restart_check(**changes) -> tuple[dict, dict[str, str]]:
    """The context the cron role's tasks/notify.yml renders the restart check with, and its units."""
    context = {
        "stack_name": "flight_hunter",
        "stack_notify": [{"url": "https://hooks.example.com/x", "events": ["container_restarting"]}],
        "cron_python": "/usr/bin/python3",
        "cron_runner_path": "/usr/local/lib/pydeploy/pydeploy-job",
        "cron_restarts_schedule": "*/5 * * * *",
        "cron_restarts_threshold": 3,
        "cron_log_dir": "/var/log/pydeploy/flight_hunter",
        **changes,
    }
    role_vars = yaml.safe_load((ROLES / "cron" / "vars" / "main.yml").read_text())
    for name in ("_cron_notify", "_cron_notify_config", "_cron_restart_check", "_cron_restarts_unit_prefix"):
        context[name] = native(role_vars[name], context)
    context["_cron_restarts_job"] = {
        "key": "check-restarts",
        "value": {"schedule": context["cron_restarts_schedule"], "stop_grace_period": 30, "args": "--check-restarts"},
    }
    tasks = yaml.safe_load((ROLES / "cron" / "tasks" / "notify.yml").read_text())
    task = next(entry for entry in tasks if entry["name"] == "Schedule the restart check with a systemd timer")
    params = {key: native(value, context) for key, value in task["vars"].items()}
    return context, units({**context, **params})


def test_the_restart_check_runs_from_a_timer_of_its_own():
    _, written = restart_check()
    assert sorted(written) == [
        "pydeploy-flight-hunter.check-restarts.service",
        "pydeploy-flight-hunter.check-restarts.timer",
    ]
    service = written["pydeploy-flight-hunter.check-restarts.service"]
    assert directives(service, "ExecStart") == [
        "/usr/bin/python3 /usr/local/lib/pydeploy/pydeploy-job /etc/pydeploy/flight_hunter/notify.json --check-restarts"
    ]
    assert directives(written["pydeploy-flight-hunter.check-restarts.timer"], "OnCalendar") == ["*-*-* *:00/5:00"]


def test_the_restart_check_runs_only_where_a_webhook_wants_it():
    assert restart_check(stack_notify=[{"url": "https://h.example/x", "events": ["deploy_failed"]}])[1] == {}
    assert restart_check(stack_notify=[])[1] == {}
    assert len(restart_check(stack_notify=[{"url": "https://h.example/x"}])[1]) == 2  # all events by default


def test_the_restart_check_runs_from_cron_d_elsewhere():
    context, _ = restart_check()
    line = render("cron/templates/restarts.cron.d.j2", context).splitlines()[-1]
    assert line == (
        "*/5 * * * * root /usr/bin/python3 /usr/local/lib/pydeploy/pydeploy-job /etc/pydeploy/flight_hunter/notify.json"
        " --check-restarts >>/var/log/pydeploy/flight_hunter/runner.log 2>&1"
    )


@needs_systemd_analyze
def test_systemd_accepts_the_restart_checks_units(tmp_path):
    assert verify(tmp_path, restart_check()[1]) == ""
