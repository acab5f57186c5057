"""The mongodb role alone, in a play of its own on localhost (stack mongo_probe_ext): with
mongodb_external_url (Atlas's mongodb+srv://) it runs no container and writes nothing, and the app's service
is that URL's; its preflight names the variable of a bad setting."""

from __future__ import annotations

import json

import pytest
from playbook import run_playbook

STACK = "mongo_probe_ext"
ATLAS = "mongodb+srv://crm:s%40cret@cluster0.ab1cd.mongodb.net/crm?retryWrites=true&w=majority"


def play(tmp_path, role_vars: dict, tasks_from: str = "main", role: str = "mongodb"):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                        }
                    },
                    "children": {"mongodb": {"hosts": {"localhost": {}}}},
                }
            }
        )
    )
    tasks = [
        {
            "name": "Check the MongoDB settings",
            "ansible.builtin.include_role": {"name": f"pydeploy.stack.{role}", "tasks_from": "preflight"},
        }
    ]
    if tasks_from == "main":
        tasks += [
            {"name": "Run MongoDB", "ansible.builtin.include_role": {"name": "pydeploy.stack.mongodb"}},
            {
                "name": "The service the app is given",
                "ansible.builtin.assert": {
                    "that": [
                        "mongodb_url == mongodb_external_url",
                        "mongodb_service.scheme == 'mongodb+srv'",
                        "mongodb_service.host == 'cluster0.ab1cd.mongodb.net'",
                        "mongodb_service.user == 'crm' and mongodb_service.password == 's@cret'",
                        "mongodb_service.database == 'crm'",
                        "mongodb_user_result is not defined or mongodb_user_result is skipped",
                    ]
                },
            },
        ]
    playbook = tmp_path / "mongodb.yml"
    playbook.write_text(
        json.dumps(
            [{"hosts": "localhost", "gather_facts": False, "vars": {"stack_name": STACK, **role_vars}, "tasks": tasks}]
        )
    )
    return run_playbook(str(playbook), str(inventory))


def test_an_external_mongodb_runs_no_container(tmp_path, docker_client):
    run = play(tmp_path, {"mongodb_external_url": ATLAS})
    assert run.rc == 0, run.explain()
    assert run.changed() == 0, run.changed_tasks()
    assert docker_client.containers.list(all=True, filters={"name": f"{STACK}-mongodb"}) == []
    assert not any(volume.name.startswith(f"{STACK}-") for volume in docker_client.volumes.list())
    assert "s@cret" not in run.stdout and "s%40cret" not in run.stdout


@pytest.mark.parametrize(
    ("role_vars", "message"),
    [
        ({"mongodb_external_url": "postgresql://crm:pw@db/crm"}, "mongodb_external_url must be a mongodb://"),
        ({"mongodb_password": "pw", "mongodb_root_password": ""}, "mongodb_root_password is required"),
        (
            {"mongodb_password": "pw", "mongodb_root_password": "rpw", "mongodb_database": "admin"},
            "mongodb_database admin: letters, digits",
        ),
        (
            {"mongodb_password": "pw", "mongodb_root_password": "rpw", "mongodb_user": "root"},
            "mongodb_root_user root: letters, digits, and . _ - @ only, and not mongodb_user",
        ),
    ],
    ids=["external-url-scheme", "root-password", "reserved-database", "user-is-root"],
)
def test_the_preflight_names_the_variable(tmp_path, role_vars, message):
    run = play(tmp_path, role_vars, tasks_from="preflight")
    assert run.rc != 0
    assert any(message in failure for failure in run.failure_messages()), run.failure_messages()
    assert "postgresql://crm:pw@" not in " ".join(run.failure_messages())


def test_backups_of_an_external_mongodb_are_refused_before_s3_is_asked(tmp_path):
    # Nothing listens on port 9: the S3 check would fail otherwise, naming the endpoint.
    backup = {"s3": {"endpoint_url": "http://127.0.0.1:9", "bucket": "nowhere", "access_key": "a", "secret_key": "b"}}
    run = play(tmp_path, {"mongodb_external_url": ATLAS, "stack_backup": backup}, tasks_from="preflight", role="backup")
    assert run.rc != 0
    failures = run.failure_messages()
    assert any("mongodb_external_url names an external one" in failure for failure in failures), failures
