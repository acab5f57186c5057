"""Systemd units of the roles (the cron role's templates, shared with the backup role),
rendered the way a role renders them, and checked by systemd's own parser where it is
installed. Shared by test_cron_units.py and test_backup_units.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule as CoreFilters
from ansible_collections.pydeploy.stack.plugins.filter.cron import cron_to_oncalendar
from jinja2.nativetypes import NativeEnvironment

ROLES = Path(__file__).resolve().parents[3] / "roles"
KINDS = ("service", "timer")

needs_systemd_analyze = pytest.mark.skipif(
    not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed"
)


def _with_filters(environment: jinja2.Environment) -> jinja2.Environment:
    environment.filters["pydeploy.stack.cron_to_oncalendar"] = cron_to_oncalendar
    environment.filters["dict2items"] = CoreFilters().filters()["dict2items"]
    return environment


# systemd units and cron files, not HTML: nothing to escape.
TEMPLATES = _with_filters(jinja2.Environment(loader=jinja2.FileSystemLoader(ROLES), keep_trailing_newline=True))  # noqa: S701
NATIVE = _with_filters(NativeEnvironment())


def include_vars(role: str, task: str, context: dict) -> dict:
    """The vars a task of roles/<role>/tasks/main.yml passes to what it includes, rendered with ``context``."""
    tasks = yaml.safe_load((ROLES / role / "tasks" / "main.yml").read_text())
    found = next(entry for entry in tasks if entry.get("name") == task)
    return {
        name: NATIVE.from_string(value).render(context) if isinstance(value, str) else value
        for name, value in found["vars"].items()
    }


def role_var(role: str, name: str, context: dict):
    """A variable of roles/<role>/vars/main.yml, rendered with ``context``."""
    value = yaml.safe_load((ROLES / role / "vars" / "main.yml").read_text())[name]
    return NATIVE.from_string(value).render(context) if isinstance(value, str) else value


def render(template: str, context: dict, **extra) -> str:
    """roles/<template> rendered with ``context`` (Ansible's ``ansible_managed`` included)."""
    return TEMPLATES.get_template(template).render({"ansible_managed": "Ansible managed", **context, **extra})


def units(context: dict) -> dict[str, str]:
    """Every unit tasks/systemd.yml of the cron role writes with the parameters in ``context``
    (cron_timers_*): {file name: content}."""
    return {
        f"{context['cron_timers_prefix']}{job['key']}.{kind}": render(
            f"cron/templates/{kind}.j2", context, item=(job, kind)
        )
        for job in context["cron_timers_jobs"]
        for kind in KINDS
    }


def directives(unit: str, name: str) -> list[str]:
    """The values of every ``name=`` line of a unit."""
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{name}=")]


def verify(directory: Path, written: dict[str, str]) -> str:
    """systemd-analyze verify of the units, written to ``directory``: what it says (nothing when
    they are sound; it exits 0 on mere warnings, so its words are the verdict)."""
    paths = []
    for name, content in written.items():
        path = directory / name
        path.write_text(content)
        paths.append(str(path))
    checked = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True, check=False
    )
    said = (checked.stdout + checked.stderr).strip()
    return f"exit {checked.returncode}: {said}" if checked.returncode or said else ""
