"""The fingerprint lookup: the same inputs give the same fingerprint, any input of the role changes it
(an option it declares, a named stack_* option, a rendered value), and what is not an input does not."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_collections.pydeploy.stack.plugins.lookup import fingerprint

BASE = {
    "stack_name": "shop",
    "stack_env": {"APP_ENV": "prod"},
    "postgres_image": "postgres:16",
    "postgres_password": "pw-1",
    "unrelated": "anything",
}


def fp(variables: dict, role: str = "postgres", **kwargs) -> str:
    loader = DataLoader()
    lookup = fingerprint.LookupModule(loader=loader, templar=Templar(loader=loader, variables=variables))
    (result,) = lookup.run([role], variables=variables, **kwargs)
    return result


def test_same_inputs_same_fingerprint():
    first = fp(dict(BASE), names=["stack_name"])
    assert first == fp(dict(BASE), names=["stack_name"])
    assert len(first) == 16 and int(first, 16) >= 0


@pytest.mark.parametrize(
    "name, value",
    [("postgres_image", "postgres:17"), ("postgres_password", "pw-2"), ("stack_name", "shop2")],
)
def test_a_changed_input_changes_it(name, value):
    changed = {**BASE, name: value}
    assert fp(changed, names=["stack_name"]) != fp(dict(BASE), names=["stack_name"])


def test_what_is_not_an_input_does_not_change_it():
    assert fp({**BASE, "unrelated": "else", "stack_env": {}}, names=["stack_name"]) == fp(
        dict(BASE), names=["stack_name"]
    )


def test_rendered_values_and_the_role_are_inputs():
    assert fp(dict(BASE), values={"version": "v1"}) != fp(dict(BASE), values={"version": "v2"})
    assert fp(dict(BASE), role="redis") != fp(dict(BASE), role="postgres")


def test_options_are_read_from_the_role_argument_spec():
    assert "postgres_image" in fingerprint.role_options("postgres")
    assert "redis_image" not in fingerprint.role_options("postgres")


def test_an_unknown_option_is_refused():
    with pytest.raises(AnsibleError, match="unknown option"):
        fp(dict(BASE), name=["stack_name"])
