"""Each process and job of the stack description checked against the shape the stack role declares
(roles/stack/meta/argument_specs.yml, entry points process and job)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.pydeploy.stack.plugins.filter.contract import shape_errors, well_shaped

PROCESS_KEYS = (
    "command, port, replicas, stop_grace_period, singleton, overlap, volumes, healthcheck, memory, memory_reservation,"
    " security, cpus"
)
JOB_KEYS = "schedule, command, timeout, stop_grace_period, memory, cpus, security, volumes, enabled"


def processes(**entries):
    return shape_errors(entries, "process", "stack_processes", "command")


def jobs(**entries):
    return shape_errors(entries, "job", "stack_jobs")


def test_valid_processes_have_no_error():
    assert (
        processes(
            web={"command": "uvicorn app.main:app", "port": 8000, "replicas": 2, "healthcheck": ["CMD", "true"]},
            worker={"command": "celery -A app worker", "replicas": 2, "stop_grace_period": 120, "memory": "512m"},
            beat={"command": "celery -A app beat", "singleton": True, "cpus": 0.5},
        )
        == []
    )


def test_a_process_given_as_a_string_is_its_command():
    assert processes(worker="rq worker") == []


def test_an_unknown_process_key_is_named_with_the_known_ones():
    assert processes(web={"command": "uvicorn app.main:app", "port": 8000, "replcas": 2}) == [
        f"stack_processes.web: unknown key(s) replcas (known: {PROCESS_KEYS})"
    ]


def test_a_process_value_of_the_wrong_type_names_the_key():
    (error,) = processes(web={"command": "uvicorn app.main:app", "port": "eighty"})
    assert error.startswith("stack_processes.web.port is of type str and we were unable to convert to int"), error
    (error,) = processes(beat={"command": "celery beat", "singleton": "maybe"})
    assert error.startswith("stack_processes.beat.singleton is of type str"), error


def test_a_value_ansible_can_convert_is_accepted():
    assert processes(web={"command": "gunicorn app:app", "port": "8000", "singleton": "no"}) == []


def test_a_process_without_a_command():
    assert processes(worker={"replicas": 2}) == ["stack_processes.worker: missing required key(s) command"]
    assert processes(worker={"command": None}) == ["stack_processes.worker: missing required key(s) command"]
    assert processes(worker=None) == ["stack_processes.worker: missing required key(s) command"]


def test_a_typo_in_the_command_key_is_both_unknown_and_missing():
    assert processes(worker={"comand": "celery -A app worker"}) == [
        f"stack_processes.worker: unknown key(s) comand (known: {PROCESS_KEYS})",
        "stack_processes.worker: missing required key(s) command",
    ]


def test_every_problem_of_every_process_is_reported_in_name_order():
    errors = processes(worker={"comand": "x"}, beat={"command": "y", "cpus": "lots"}, web={"command": "z"})
    assert [error.split(":")[0].split(" ")[0] for error in errors] == [
        "stack_processes.beat.cpus",
        "stack_processes.worker",
        "stack_processes.worker",
    ]


def test_a_valid_job_has_no_error():
    assert (
        jobs(
            fetch_prices={"schedule": "*/6 * * * *", "command": "python -m app.fetch", "timeout": 300},
            report={"schedule": "@daily", "command": ["sh", "-c", "echo $APP_VERSION"], "enabled": False},
            heavy={"schedule": "0 3 * * *", "command": "x", "stop_grace_period": 60, "memory": "1g", "cpus": 2},
        )
        == []
    )


def test_an_unknown_job_key_is_named_with_the_known_ones():
    assert jobs(bad={"schedule": "* * * * *", "command": "true", "timout": 5}) == [
        f"stack_jobs.bad: unknown key(s) timout (known: {JOB_KEYS})"
    ]


def test_a_job_value_of_the_wrong_type_names_the_key():
    (error,) = jobs(bad={"schedule": "* * * * *", "command": "true", "timeout": [300]})
    assert error.startswith("stack_jobs.bad.timeout is of type list and we were unable to convert to int"), error
    (error,) = jobs(bad={"schedule": "* * * * *", "command": "true", "enabled": "sometimes"})
    assert error.startswith("stack_jobs.bad.enabled is of type str"), error


def test_a_job_without_a_command_or_a_schedule():
    assert jobs(bad={"schedule": "* * * * *"}) == ["stack_jobs.bad: missing required key(s) command"]
    assert jobs(bad={"command": "true"}) == ["stack_jobs.bad: missing required key(s) schedule"]
    assert jobs(bad={}) == ["stack_jobs.bad: missing required key(s) schedule, command"]


def test_a_job_that_is_not_a_dict():
    assert jobs(bad="python -m app.fetch") == ["stack_jobs.bad must be a dict with schedule and command"]


def test_no_entries_and_entries_that_are_not_a_dict():
    assert processes() == []
    assert shape_errors(None, "job", "stack_jobs") == []
    assert shape_errors(["fetch"], "job", "stack_jobs") == ["stack_jobs must be a dict (job name: job)"]


def test_an_unknown_shape_is_an_error_naming_the_known_ones():
    with pytest.raises(AnsibleFilterError, match="known: job, process, volume"):
        shape_errors({}, "main", "stack_processes")
    with pytest.raises(AnsibleFilterError, match="no shape 'proces'"):
        shape_errors({}, "proces", "stack_processes")


def test_well_shaped_keeps_only_the_entries_without_a_shape_problem():
    jobs = {
        "typo": {"schedule": "* * * * *", "comand": "true"},
        "bad-schedule": {"schedule": "61 * * * *", "command": "true"},
        "Bad Name": {"schedule": "* * * * *", "command": "true"},
    }
    assert sorted(well_shaped(jobs, "job", "stack_jobs")) == ["Bad Name", "bad-schedule"]
    assert well_shaped(None, "job", "stack_jobs") == {}
