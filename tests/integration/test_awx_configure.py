"""playbooks/awx_configure.yml against a stand-in for AWX's API (fake_controller.py): it creates the credential
types of awx/credential_types.yml with their injectors as written (not templated by Ansible), the execution
environment, the project, the inventory fed from the project, and one job template per entry of
awx/job_templates.yml with its playbook, survey and credentials; a second run changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from fake_controller import Controller

AWX = REPO / "awx"
TYPES = yaml.safe_load((AWX / "credential_types.yml").read_text())["credential_types"]
TEMPLATES = yaml.safe_load((AWX / "job_templates.yml").read_text())["job_templates"]
CREDENTIALS = ["prod hosts", "registry", "backups S3", "prod vault"]


def awx_version() -> str:
    import ansible_collections.awx.awx as awx

    return json.loads((Path(awx.__path__[0]) / "MANIFEST.json").read_text())["collection_info"]["version"]


def configure(controller: Controller, token: str, *extra: str) -> dict:
    """Run awx_configure.yml against ``controller``; the JSON callback's result."""
    inputs = {
        "awx_controller_host": controller.url,
        "awx_controller_token": token,
        "awx_organization": "Acme",
        "awx_ee_image": "registry.example.com/team/pydeploy-ee:0.1.0",
        "awx_project_scm_url": "https://git.example.com/acme/deploy.git",
        "awx_inventory": "flight-hunter-prod",
        "awx_inventory_source_path": "inventories/prod",
        "awx_credentials": CREDENTIALS,
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/awx_configure.yml", "-e",
         json.dumps(inputs), *extra],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
             "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
    )  # fmt: skip
    try:
        data = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"no JSON from ansible-playbook (rc {result.returncode}): {result.stdout[-2000:]}{result.stderr}")
    data["rc"] = result.returncode
    return data


def failures(data: dict) -> list[str]:
    found = []
    for play in data.get("plays", []):
        for task in play["tasks"]:
            for result in task["hosts"].values():
                items = [item for item in result.get("results") or [] if item.get("failed")] or [result]
                found += [f"{task['task']['name']}: {item.get('msg')}" for item in items if item.get("failed")]
    return found


@pytest.fixture(scope="module")
def controller():
    token = uuid.uuid4().hex
    with Controller(token, awx_version()) as fake:
        organization = fake.add("organizations", name="Acme")
        for name in CREDENTIALS:
            fake.add("credentials", name=name, organization=organization["id"])
        yield fake, token, organization["id"]


@pytest.fixture(scope="module")
def first_run(controller):
    fake, token, _ = controller
    data = configure(fake, token)
    assert data["rc"] == 0, failures(data)
    return data


def test_the_credential_types_are_created_as_written(controller, first_run):
    fake, _, _ = controller
    for kind in TYPES:
        created = fake.named("credential_types", kind["name"])
        assert created, kind["name"]
        assert (created["kind"], created["inputs"], created["injectors"]) == (
            kind["kind"], kind["inputs"], kind["injectors"],
        ), "the injectors' templates reach AWX untouched ({{ password }}, not its value)"  # fmt: skip
    registry = fake.named("credential_types", "pydeploy.stack container registry")
    assert registry["injectors"]["extra_vars"]["docker_host_registry_password"] == "{{ password }}"


def test_the_execution_environment_project_and_inventory(controller, first_run):
    fake, _, organization = controller
    ee = fake.named("execution_environments", "pydeploy.stack")
    assert (ee["image"], ee["organization"], ee["pull"]) == (
        "registry.example.com/team/pydeploy-ee:0.1.0", organization, "missing",
    )  # fmt: skip
    project = fake.named("projects", "pydeploy.stack")
    assert (project["scm_type"], project["scm_url"], project["scm_branch"]) == (
        "git", "https://git.example.com/acme/deploy.git", "main",
    )  # fmt: skip
    assert project["default_environment"] == ee["id"]
    inventory = fake.named("inventories", "flight-hunter-prod")
    source = fake.named("inventory_sources", "flight-hunter-prod from pydeploy.stack")
    assert (source["inventory"], source["source"], source["source_project"], source["source_path"]) == (
        inventory["id"], "scm", project["id"], "inventories/prod",
    )  # fmt: skip


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["name"] for t in TEMPLATES])
def test_each_job_template_has_its_playbook_survey_and_credentials(controller, first_run, template):
    fake, _, _ = controller
    created = fake.named("job_templates", f"pydeploy {template['name']}")
    assert created, template["name"]
    assert created["playbook"] == template["playbook"]
    assert created["project"] == fake.named("projects", "pydeploy.stack")["id"]
    assert created["inventory"] == fake.named("inventories", "flight-hunter-prod")["id"]
    assert created["execution_environment"] == fake.named("execution_environments", "pydeploy.stack")["id"]
    assert created["ask_limit_on_launch"] is True
    linked = [fake.objects["credentials"][cid]["name"] for cid in fake.associations[created["id"]]]
    assert sorted(linked) == sorted(CREDENTIALS)
    assert created["survey_enabled"] is bool(template["survey"])
    if template["survey"]:
        assert fake.surveys[created["id"]]["spec"] == template["survey"]


def test_a_second_run_changes_nothing(controller, first_run):
    fake, token, _ = controller
    before = json.dumps([fake.objects, fake.surveys, fake.associations], sort_keys=True)
    data = configure(fake, token)
    assert data["rc"] == 0, failures(data)
    changed = {host: stats["changed"] for host, stats in data["stats"].items()}
    assert changed == {"localhost": 0}, [
        task["task"]["name"] for play in data["plays"] for task in play["tasks"]
        if any(result.get("changed") for result in task["hosts"].values())
    ]  # fmt: skip
    assert json.dumps([fake.objects, fake.surveys, fake.associations], sort_keys=True) == before


def test_a_wrong_token_is_refused_by_the_controller(controller):
    fake, _, _ = controller
    data = configure(fake, "not-the-token")
    assert data["rc"] != 0
    assert any("Invalid authentication credentials" in failure for failure in failures(data)), failures(data)
