"""The fast_path action's decision: skip only when the fingerprint equals the one recorded on the host,
what the role manages is intact and the fast path is enabled; the facts it sets keep the other records."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.template import Templar
from ansible_collections.pydeploy.stack.plugins.action.fast_path import ActionModule


def decide(args: dict, task_vars: dict) -> dict:
    loader = DataLoader()
    task = Task()
    task.args = args
    action = ActionModule(
        task, MagicMock(), PlayContext(), loader, Templar(loader=loader, variables=task_vars), MagicMock()
    )
    return action.run(task_vars=task_vars)


def state(fingerprint: str, intact: bool = True, reason: str = "") -> dict:
    return {"roles": {"web": {"fingerprint": fingerprint, "intact": intact, "reason": reason}}}


def test_an_equal_fingerprint_of_an_intact_record_skips_and_keeps_the_other_records():
    earlier = {"pydeploy_fingerprints": {"db": "1111"}, "pydeploy_unchanged": {"db": True}}
    result = decide({"key": "web", "fingerprint": "abcd"}, {"pydeploy_host_state": state("abcd"), **earlier})
    assert (result["unchanged"], result["reason"], result["changed"]) == (True, "", False)
    assert result["ansible_facts"] == {
        "pydeploy_fingerprints": {"db": "1111", "web": "abcd"},
        "pydeploy_unchanged": {"db": True, "web": True},
    }


@pytest.mark.parametrize(
    ("recorded", "enabled", "reason"),
    [
        (None, True, "no record on the host"),
        (state("0000"), True, "an input changed"),
        (state("abcd", intact=False, reason="container web-1 is missing"), True, "container web-1 is missing"),
        (state("abcd"), False, "the fast path is off"),
    ],
    ids=["no-record", "changed-input", "not-intact", "disabled"],
)
def test_anything_else_runs_the_role(recorded, enabled, reason):
    task_vars = {"pydeploy_host_state": recorded} if recorded else {}
    result = decide({"key": "web", "fingerprint": "abcd", "enabled": enabled}, task_vars)
    assert result["unchanged"] is False and result["ansible_facts"]["pydeploy_unchanged"] == {"web": False}
    assert result["reason"].startswith(reason), result["reason"]


def test_a_role_is_fingerprinted_as_the_lookup_does():
    from ansible_collections.pydeploy.stack.plugins.lookup import fingerprint

    task_vars = {"stack_name": "shop", "postgres_password": "pw"}
    loader = DataLoader()
    lookup = fingerprint.LookupModule(loader=loader, templar=Templar(loader=loader, variables=task_vars))
    (expected,) = lookup.run(["postgres"], variables=task_vars, names=["stack_name"])
    result = decide({"key": "postgres", "role": "postgres", "names": ["stack_name"]}, task_vars)
    assert result["fingerprint"] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [({"fingerprint": "abcd"}, "key"), ({"key": "web"}, "give the role"), ({"key": "web", "names": "x"}, "names")],
)
def test_bad_arguments_fail_naming_them(args, message):
    with pytest.raises(AnsibleActionFail, match=message):
        decide(args, {})
