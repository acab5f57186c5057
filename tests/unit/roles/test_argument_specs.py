"""Every role's defaults and meta/argument_specs.yml agree: each public
variable is documented with its type and the same default, and each entry
point validates the same options. The stack description (stack_*) is
declared once, by the stack role, and every stack_* variable the roles and
playbooks read is declared there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLES = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir())
STACK = REPO / "roles" / "stack"
# The stack role's entry points: the description, and the shape of one entry of its maps.
STACK_ENTRY_POINTS = {"main", "process", "job", "volume"}
STACK_VARIABLE = re.compile(r"\bstack_[a-z_]+")


def specs_of(role: Path) -> dict:
    return yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_defaults_match_argument_specs(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    options = specs_of(role)["main"]["options"]
    for name, value in defaults.items():
        assert name.startswith(f"{role.name}_"), f"{name}: public variables carry the role's prefix"
        assert name in options, f"{name} is in defaults but not in argument_specs"
        assert not options[name].get("required"), f"{name} is required: it has no default"
        assert options[name].get("default") == value, f"{name}: default differs between defaults and argument_specs"
    for name, spec in options.items():
        assert spec.get("type"), f"{name} has no type"
        assert spec.get("description"), f"{name} has no description"
        assert name.startswith(f"{role.name}_"), f"{name}: a role declares only its own variables"
        if not spec.get("required"):
            assert name in defaults, f"{name} is in argument_specs but not in defaults"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_entry_point_validates_the_same_options(role):
    specs = specs_of(role)
    if role == STACK:
        assert set(specs) == STACK_ENTRY_POINTS
        return
    assert {"main", "preflight"} <= set(specs)
    for name, entry_point in specs.items():
        assert entry_point["options"] == specs["main"]["options"], name


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_secrets_are_no_log(role):
    def check(options, where):
        for name, spec in options.items():
            place = name.endswith(("_host", "_dir"))  # where secrets are kept, not a secret
            secret_words = ("password", "secret", "private_key", "external_url", "access_key", "session_token")
            if not place and any(word in name for word in secret_words):
                assert spec.get("no_log") is True, f"{where}{name} must be no_log"
            check(spec.get("options") or {}, f"{where}{name}.")

    for entry_point in specs_of(role).values():
        check(entry_point["options"], "")


def test_the_stack_description_is_declared_only_by_the_stack_role():
    for role in ROLES:
        if role == STACK:
            continue
        declared = [name for entry_point in specs_of(role).values() for name in entry_point["options"]]
        stack = sorted({name for name in declared if name.startswith("stack_")})
        assert not stack, f"{role.name} declares {', '.join(stack)}: the stack role declares the stack description"
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
        assert not [name for name in defaults if name.startswith("stack_")], role.name


def referenced_stack_variables() -> dict[str, list[str]]:
    """Every stack_* name in the YAML and Jinja of roles/ and playbooks/ (and the top-level playbooks),
    with the files it appears in."""
    files = [
        path
        for top in (REPO / "roles", REPO / "playbooks")
        for path in sorted(top.rglob("*"))
        if path.suffix in (".yml", ".yaml", ".j2") and path.is_file()
    ]
    files += sorted(REPO.glob("*.yml"))
    seen: dict[str, list[str]] = {}
    for path in files:
        if path == STACK / "meta" / "argument_specs.yml":
            continue
        for name in set(STACK_VARIABLE.findall(path.read_text())):
            seen.setdefault(name, []).append(str(path.relative_to(REPO)))
    return seen


def test_every_stack_variable_read_is_declared_by_the_stack_role():
    declared = set(specs_of(STACK)["main"]["options"])
    referenced = referenced_stack_variables()
    # The search finds them: a change that breaks it would make this test pass vacuously.
    assert {"stack_name", "stack_processes", "stack_jobs", "stack_backup"} <= set(referenced)
    undeclared = {name: where for name, where in referenced.items() if name not in declared}
    assert not undeclared, f"read but not declared in roles/stack/meta/argument_specs.yml: {undeclared}"


def test_the_stack_role_declares_its_shapes_with_the_keys_the_code_reads():
    from ansible_collections.pydeploy.stack.plugins.filter.jobs import KEYS as JOB_KEYS
    from ansible_collections.pydeploy.stack.plugins.filter.processes import SETTINGS

    specs = specs_of(STACK)
    assert list(specs["job"]["options"]) == list(JOB_KEYS)
    assert set(SETTINGS) <= set(specs["process"]["options"])
    assert {"command", "port", "replicas", "singleton"} <= set(specs["process"]["options"])
