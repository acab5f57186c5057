"""Who runs a deploy: the deploy_holder lookup reads AWX's job id and launching user from the extra vars the
controller sets (awx_* or tower_*), the ledger records them, and the summaries name them."""

from __future__ import annotations

import pytest
import yaml
from ansible import constants as C
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_collections.pydeploy.stack.plugins.filter.jobs import lock_summary, release_summary
from ansible_collections.pydeploy.stack.plugins.lookup import deploy_holder
from ansible_collections.pydeploy.stack.plugins.module_utils._ledger import describe_holder, release_entry

NAME = "pydeploy.stack.deploy_holder"


def holder(variables: dict, **kwargs) -> dict:
    """The lookup with its options as Ansible's plugin loader declares them, from its documentation."""
    C.config.initialize_plugin_configuration_definitions(
        "lookup", NAME, yaml.safe_load(deploy_holder.DOCUMENTATION)["options"]
    )
    loader = DataLoader()
    lookup = deploy_holder.LookupModule(loader=loader, templar=Templar(loader=loader))
    lookup._load_name = NAME
    (result,) = lookup.run([], variables=variables, **kwargs)
    return result


def test_outside_awx_the_controller_user_and_no_job():
    found = holder({}, version="v2")
    assert found["version"] == "v2"
    assert found["user"] and found["awx_job_id"] == "" and found["awx_user_name"] == ""


@pytest.mark.parametrize(
    "variables",
    [
        {"awx_job_id": 42, "awx_user_name": "ana"},
        {"tower_job_id": 42, "tower_user_name": "ana"},
        {"awx_job_id": 42, "tower_job_id": 7, "awx_user_name": "ana", "tower_user_name": "bo"},
    ],
)
def test_awx_extra_vars_name_the_job_and_who_launched_it(variables):
    # The roles pass awx_job_id=awx_job_id | default(''): an empty one leaves it to the extra vars.
    found = holder(variables, version="v2", awx_job_id="")
    assert (found["awx_job_id"], found["awx_user_name"]) == ("42", "ana")


def test_a_job_id_given_wins():
    assert holder({"awx_job_id": 42}, awx_job_id="43")["awx_job_id"] == "43"


def test_the_ledger_records_the_awx_user_and_job():
    release = {"version": "v2", "image": "reg/app:v2", "holder": holder({"awx_job_id": 42, "awx_user_name": "ana"})}
    entry = release_entry(release, {"image_id": "sha256:1", "digest": None, "revision": None}, None)
    assert (entry["deployed_by"], entry["awx_job_id"]) == ("ana", "42")
    entry["deployed_at"] = "2025-11-05T14:31:02Z"
    assert release_summary(entry) == "v2 at 2025-11-05T14:31:02Z by ana (AWX job 42)"


def test_outside_awx_the_ledger_records_the_controller_user():
    release = {"version": "v2", "image": "reg/app:v2", "holder": {"user": "deploy", "awx_job_id": ""}}
    entry = release_entry(release, {"image_id": "sha256:1", "digest": None, "revision": None}, None)
    assert (entry["deployed_by"], entry["awx_job_id"]) == ("deploy", None)


def test_the_lock_names_the_awx_user_and_job():
    held = {"user": "runner", "awx_user_name": "ana", "awx_job_id": "42", "controller": "ee-1", "pid": 9,
            "since": "2025-11-05T14:30:22Z", "version": "v2"}  # fmt: skip
    assert describe_holder(held).startswith("ana (AWX job 42) from ee-1, pid 9")
    assert lock_summary(held).startswith("ana (AWX job 42) from ee-1 (pid 9)")
