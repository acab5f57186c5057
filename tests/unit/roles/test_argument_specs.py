"""Every role's defaults and meta/argument_specs.yml agree: each public
variable is documented with its type and the same default, and each entry
point validates the same options."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[3] / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_defaults_match_argument_specs(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]
    for name, value in defaults.items():
        assert name.startswith(f"{role.name}_"), f"{name}: public variables carry the role's prefix"
        assert name in options, f"{name} is in defaults but not in argument_specs"
        assert options[name].get("default") == value, f"{name}: default differs between defaults and argument_specs"
        assert options[name].get("type"), f"{name} has no type"
        assert options[name].get("description"), f"{name} has no description"
    for name in options:
        if name.startswith(f"{role.name}_"):
            assert name in defaults, f"{name} is in argument_specs but not in defaults"
        else:
            assert name.startswith("stack_"), f"{name}: only the shared stack_* description may be read unprefixed"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_entry_point_validates_the_same_options(role):
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert {"main", "preflight"} <= set(specs)
    assert specs["preflight"]["options"] == specs["main"]["options"]


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_secrets_are_no_log(role):
    options = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    for name, spec in options.items():
        where = name.endswith(("_host", "_dir"))  # where secrets are kept, not a secret
        if not where and any(word in name for word in ("password", "secret", "private_key", "external_url")):
            assert spec.get("no_log") is True, f"{name} must be no_log"
