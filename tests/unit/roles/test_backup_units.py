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
import yaml
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


# --------------------------------------------------------------------------- the Python of the scheduled backups

CONTROLLER_VENV = "/home/me/pydeploy/.venv/bin/python"


def backup_python(**host_vars) -> str:
    """backup_python's default (roles/backup/defaults) for a host with ``host_vars``, as Ansible renders it."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    default = yaml.safe_load((ROLES / "backup" / "defaults" / "main.yml").read_text())["backup_python"]
    variables = {"ansible_playbook_python": CONTROLLER_VENV, **host_vars}
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(default))


@pytest.mark.parametrize(
    ("host_vars", "expected"),
    [
        pytest.param({}, "/usr/bin/python3", id="apt-by-default"),
        pytest.param(
            {"ansible_python_interpreter": "/opt/tools/bin/python"}, "/usr/bin/python3", id="apt-installs-for-debian"
        ),
        pytest.param(
            {"docker_host_python_deps": "none", "ansible_connection": "local",
             "ansible_python_interpreter": CONTROLLER_VENV},
            "/usr/bin/python3",
            id="never-the-controllers-virtualenv",
        ),
        pytest.param(
            {"docker_host_python_deps": "none", "ansible_python_interpreter": "/opt/tools/bin/python"},
            "/opt/tools/bin/python",
            id="the-hosts-interpreter-with-deps-none",
        ),
        pytest.param(
            {"docker_host_python_deps": "none", "ansible_connection": "ssh",
             "ansible_python_interpreter": CONTROLLER_VENV},
            CONTROLLER_VENV,
            id="a-remote-host-with-the-same-path",
        ),
        pytest.param(
            {"docker_host_python_deps": "none", "ansible_python_interpreter": "auto_silent"},
            "/usr/bin/python3",
            id="discovery-is-no-path",
        ),
    ],
)  # fmt: skip
def test_the_scheduled_backups_python_outlives_the_controller(host_vars, expected):
    assert backup_python(**host_vars) == expected


def probe(python: str, *libraries: str) -> subprocess.CompletedProcess:
    """The preflight's check of backup_python (roles/backup/vars: _backup_python_probe)."""
    code = yaml.safe_load((ROLES / "backup" / "vars" / "main.yml").read_text())["_backup_python_probe"]
    return subprocess.run([python, "-c", code, *libraries], capture_output=True, text=True, timeout=60, check=False)


def test_the_python_check_names_what_is_missing():
    done = probe(sys.executable, "json", "pydeploy_no_such_library", "zlib", "pydeploy_nor_this")
    assert (done.returncode, done.stdout.strip()) == (1, "pydeploy_no_such_library, pydeploy_nor_this")
    done = probe(sys.executable, "json", "zlib")
    assert (done.returncode, done.stdout.strip()) == (0, "Python {}.{}.{}".format(*sys.version_info[:3]))


def rendered(role_vars: list[str], **variables):
    """Variables of roles/backup/vars (and its defaults), rendered as Ansible does for ``variables``."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    from ansible.utils.vars import combine_vars

    def trusted(value):
        if isinstance(value, str):
            return trust_as_template(value)
        if isinstance(value, dict):
            return {key: trusted(item) for key, item in value.items()}
        if isinstance(value, list):
            return [trusted(item) for item in value]
        return value

    files = [ROLES / "backup" / "defaults" / "main.yml", ROLES / "backup" / "vars" / "main.yml"]
    context = trusted(combine_vars(*(yaml.safe_load(path.read_text()) for path in files)))
    templar = Templar(loader=DataLoader(), variables={**context, **variables})
    return [templar.template(context[name]) for name in role_vars]


@pytest.mark.parametrize(("schedule", "started"), [("0 3 * * *", ["backup", "drill"]), ("", ["drill"])])
def test_jobs_json_describes_both_jobs_and_only_the_scheduled_ones_are_started(schedule, started):
    """A backup taken by a playbook is recorded as the backup job's last run, scheduled or not."""
    description, jobs = rendered(
        ["_backup_description", "_backup_jobs"],
        stack_name="flight_hunter",
        stack_backup={"s3": {"bucket": "b"}, "schedule": schedule},
        ansible_playbook_python=CONTROLLER_VENV,
    )
    assert sorted(description["jobs"]) == ["backup", "drill"]
    bundle = "/usr/local/lib/pydeploy/pydeploy-backup.pyz"
    assert description["jobs"]["backup"]["command"][:3] == ["/usr/bin/python3", bundle, "db_backup"]
    assert [job["key"] for job in jobs] == started
