"""The backup role's systemd units (the cron role's templates with the parameters the backup
role passes): a service and a timer per job, backup and drill, that run what the
/etc/cron.d line runs, checked by systemd's own parser where it is installed; and the job
runner run by that service's command line in a systemd service's environment."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.pydeploy.stack.plugins.filter.cron import cron_to_oncalendar
from systemd_units import ROLES, directives, include_vars, needs_systemd_analyze, render, role_var, units, verify

RUNNER = ROLES / "cron" / "files" / "pydeploy-job"
TASK = "Schedule the backups and drills with systemd timers"
# What cron gives a job (the cron.d file's SHELL and PATH, and root's HOME and
# LOGNAME), and what systemd gives a system service (no HOME, no LOGNAME).
CRON_ENV = {"SHELL": "/bin/sh", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
CRON_ENV |= {"HOME": "/root", "LOGNAME": "root"}
SYSTEMD_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "LANG": "C.UTF-8"}


def backup_context(**changes) -> dict:
    """The backup role's values the units are made of, for the stack flight_hunter."""
    context = {
        "stack_name": "flight_hunter",
        "backup_name": "flight_hunter",
        "backup_python": "/usr/bin/python3",
        "backup_runner_path": "/usr/local/lib/pydeploy/pydeploy-job",
        "backup_bundle_path": "/usr/local/lib/pydeploy/pydeploy-backup.pyz",
        "backup_config_dir": "/etc/pydeploy/flight_hunter/backup",
        "backup_log_dir": "/var/log/pydeploy/flight_hunter",
        "_backup_s3_args": {"bucket": "acme-backups", "prefix": "prod/"},
        "_backup_active": True,
        "_backup_use_systemd": True,
        "schedules": {"backup": "0 3 * * *", "drill": "30 4 * * 0"},
    }
    context.update(changes)
    context["_backup_jobs_config"] = context["backup_config_dir"] + "/jobs.json"
    context["_backup_unit_prefix"] = role_var("backup", "_backup_unit_prefix", context)
    modules = {"backup": "db_backup", "drill": "db_restore"}
    context["_backup_jobs"] = [
        {
            "key": job,
            "value": {
                "host": True,
                "stop_grace_period": 60,
                "schedule": schedule,
                "timeout": 21600,
                "command": [
                    context["backup_python"],
                    context["backup_bundle_path"],
                    modules[job],
                    f"{context['backup_config_dir']}/{job}.json",
                ],
            },
        }
        for job, schedule in context["schedules"].items()
        if schedule
    ]
    return context


def parameters(context: dict) -> dict:
    """What the backup role passes to the cron role's tasks/systemd.yml."""
    return {**context, **include_vars("backup", TASK, context)}


def backup_units(**changes) -> dict[str, str]:
    return units(parameters(backup_context(**changes)))


def cron_line(context: dict, job: str) -> str:
    """What /etc/cron.d/pydeploy-<stack>-backup runs for ``job``: its line without schedule and user."""
    for line in render("backup/templates/cron.d.j2", context).splitlines():
        if " root " in line and not line.startswith("#") and line.split(" >>", 1)[0].split()[-1] == job:
            return line.split(" root ", 1)[1]
    raise AssertionError(f"no {job} line")


def test_a_service_and_a_timer_per_job_named_apart_from_the_cron_jobs_units():
    assert set(backup_units()) == {
        f"pydeploy-flight-hunter-backup-{job}.{kind}" for job in ("backup", "drill") for kind in ("service", "timer")
    }
    assert set(backup_units(schedules={"backup": "0 3 * * *", "drill": ""})) == {
        "pydeploy-flight-hunter-backup-backup.service",
        "pydeploy-flight-hunter-backup-backup.timer",
    }


@pytest.mark.parametrize("job", ["backup", "drill"])
def test_the_service_runs_what_the_cron_line_runs(job):
    context = backup_context()
    service = units(parameters(context))[f"pydeploy-flight-hunter-backup-{job}.service"]
    assert directives(service, "Type") == ["oneshot"]
    assert directives(service, "ExecStart") == [cron_line(context, job).split(" >>", 1)[0]]
    assert directives(service, "ExecStart") == [
        f"/usr/bin/python3 /usr/local/lib/pydeploy/pydeploy-job /etc/pydeploy/flight_hunter/backup/jobs.json {job}"
    ]
    assert directives(service, "TimeoutStopSec") == ["90"]  # the job's grace period, 60 s, and 30 s
    assert directives(service, "KillMode") == ["mixed"]
    assert directives(service, "Requires") == ["docker.service"]


@pytest.mark.parametrize(
    ("job", "schedule"), [("backup", "0 3 * * *"), ("drill", "30 4 * * 0"), ("drill", "0 9 1 * mon")]
)
def test_the_timer_fires_when_cron_would_and_makes_up_a_missed_run(job, schedule):
    timer = backup_units(schedules={job: schedule})[f"pydeploy-flight-hunter-backup-{job}.timer"]
    assert directives(timer, "OnCalendar") == cron_to_oncalendar(schedule)
    assert directives(timer, "Persistent") == ["true"]
    assert directives(timer, "WantedBy") == ["timers.target"]


@pytest.mark.parametrize("changes", [{"_backup_use_systemd": False}, {"_backup_active": False}])
def test_no_units_where_cron_runs_the_backups_or_none_runs(changes):
    """The shared tasks then remove the units of an earlier run (jobs: none)."""
    assert parameters(backup_context(**changes))["cron_timers_jobs"] == []


@needs_systemd_analyze
def test_systemd_accepts_the_units(tmp_path):
    written = backup_units()
    assert len(written) == 4
    assert verify(tmp_path, written) == ""


def test_the_runner_started_by_the_service_does_what_it_does_from_cron(tmp_path):
    """A host job run by the service's command line in a systemd service's environment (no
    HOME, a shorter PATH, / as working directory) and by the cron line in cron's: the same
    exit status, status file, result and log."""
    job = (
        "import json, os; print('dumped'); "
        "json.dump({'key': 'k', 'size': 3, 'failed': False}, open(os.environ['PYDEPLOY_JOB_RESULT'], 'w'))"
    )
    outcomes = {}
    for how in ("cron", "systemd"):
        root = tmp_path / how
        (root / "log").mkdir(parents=True)
        context = backup_context(
            backup_python=sys.executable,
            backup_runner_path=str(RUNNER),
            backup_config_dir=str(root),
            backup_log_dir=str(root / "log"),
        )
        description = {
            "stack": "flight_hunter",
            "state_dir": str(root / "state"),
            "log_dir": str(root / "log"),
            "jobs": {"backup": {"host": True, "command": [sys.executable, "-c", job], "timeout": 60}},
        }
        Path(context["_backup_jobs_config"]).write_text(json.dumps(description))
        if how == "cron":
            argv, env = ["/bin/sh", "-c", cron_line(context, "backup")], CRON_ENV
        else:
            service = units(parameters(context))["pydeploy-flight-hunter-backup-backup.service"]
            argv, env = shlex.split(directives(service, "ExecStart")[0]), SYSTEMD_ENV
        done = subprocess.run(argv, env=env, cwd="/", capture_output=True, text=True, timeout=60, check=False)
        status = json.loads((root / "state" / "backup.json").read_text())
        log = (root / "log" / "backup.log").read_text()
        outcomes[how] = (done.returncode, status["state"], status["exit_code"], status["host"], status["result"])
        assert "stdout| dumped" in log and "end backup: succeeded, exit code 0" in log, log
    assert (
        outcomes["systemd"] == outcomes["cron"] == (0, "succeeded", 0, True, {"key": "k", "size": 3, "failed": False})
    )
