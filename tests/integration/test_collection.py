"""The collection builds, installs from its tarball into an empty path, and
its modules, roles and playbooks are found by their names there."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from playbook import REPO

BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.stem.startswith("_"))
# ansible-doc's type of the plugins in each directory of plugins/.
DOC_TYPES = {
    "modules": "module",
    "lookup": "lookup",
    "filter": "filter",
    "test": "test",
    "callback": "callback",
    "inventory": "inventory",
    "connection": "connection",
    "become": "become",
    "cache": "cache",
    "vars": "vars",
}
# Directories of plugins/ without documentation of their own: code the plugins share, documentation
# they extend, and action plugins, which are documented by their module.
NOT_DOCUMENTED = {"module_utils", "plugin_utils", "doc_fragments", "action", "__pycache__"}
# Filter and test plugin files each hold several plugins, named by what they return.
JINJA_PLUGINS = {"filter": ("FilterModule", "filters"), "test": ("TestModule", "tests")}


def documented_plugins() -> list[tuple[str, str]]:
    """(ansible-doc type, name) of every plugin in plugins/ and of every role."""
    found = []
    for directory in sorted(p for p in (REPO / "plugins").iterdir() if p.is_dir() and p.name in DOC_TYPES):
        for path in sorted(directory.glob("*.py")):
            if path.stem.startswith("_"):
                continue
            if directory.name in JINJA_PLUGINS:
                cls, method = JINJA_PLUGINS[directory.name]
                plugin = importlib.import_module(
                    f"ansible_collections.pydeploy.stack.plugins.{directory.name}.{path.stem}"
                )
                names = sorted(getattr(getattr(plugin, cls)(), method)())
            else:
                names = [path.stem]
            found += [(DOC_TYPES[directory.name], name) for name in names]
    found += [("role", p.parent.parent.name) for p in sorted(REPO.glob("roles/*/meta/argument_specs.yml"))]
    return found


PLUGINS = documented_plugins()


def run(argv: list, work: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / argv[0], *argv[1:]], cwd=work, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("collection")
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(work / "installed")
    build = run(["ansible-galaxy", "collection", "build", "--output-path", work, REPO], work, env)
    assert build.returncode == 0, build.stderr
    version = __import__("yaml").safe_load((REPO / "galaxy.yml").read_text())["version"]
    tarball = work / f"pydeploy-stack-{version}.tar.gz"
    assert tarball.exists()
    install = run(["ansible-galaxy", "collection", "install", tarball], work, env)
    assert install.returncode == 0, install.stdout + install.stderr
    root = work / "installed" / "ansible_collections" / "pydeploy" / "stack"
    assert (root / "MANIFEST.json").exists()
    return work, env, root


def test_tarball_leaves_out_development_files(installed):
    _, _, root = installed
    assert (root / "roles" / "app" / "meta" / "argument_specs.yml").exists()
    # awx_configure.yml reads them beside it (pydeploy.stack.awx_configure).
    assert (root / "awx" / "job_templates.yml").exists() and (root / "awx" / "credential_types.yml").exists()
    for absent in ("Makefile", "bed", "tests", ".venv", ".bed", "inventories/local", "ansible.cfg"):
        assert not (root / absent).exists(), absent


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_every_module(installed, module):
    work, env, _ = installed
    result = run(["ansible-doc", "--json", f"pydeploy.stack.{module}"], work, env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)[f"pydeploy.stack.{module}"]
    assert doc["doc"]["short_description"]
    assert doc["examples"].strip()
    assert doc["return"]


def test_every_plugin_directory_has_a_known_doc_type():
    directories = {p.name for p in (REPO / "plugins").iterdir() if p.is_dir()}
    assert directories - NOT_DOCUMENTED <= set(DOC_TYPES), "add the ansible-doc type of the new plugin directory"
    assert {"module", "lookup", "filter", "role"} <= {kind for kind, _ in PLUGINS}


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=[f"{kind}:{name}" for kind, name in PLUGINS])
def test_ansible_doc_text_renders_every_plugin(installed, kind, name):
    """The text form, as a user reads it, renders more than --json checks: an option description
    that YAML reads as a mapping (an unquoted "Not masked: ...") passes --json and fails here."""
    work, env, _ = installed
    result = run(["ansible-doc", "-t", kind, f"pydeploy.stack.{name}"], work, env)
    assert result.returncode == 0, result.stderr
    # Warnings too: a name ansible-doc cannot find is a warning with exit status 0.
    assert not result.stderr.strip(), result.stderr
    assert f"pydeploy.stack.{name}" in result.stdout


def test_role_argument_specs_are_documented(installed):
    work, env, _ = installed
    result = run(["ansible-doc", "--json", "-t", "role", "pydeploy.stack.app"], work, env)
    assert result.returncode == 0, result.stderr
    entry_points = json.loads(result.stdout)["pydeploy.stack.app"]["entry_points"]
    assert {"main", "preflight"} <= set(entry_points)


@pytest.mark.parametrize(
    "playbook",
    ["deploy", "rollback", "backup", "restore", "run", "status", "logs", "teardown", "init", "awx_configure"],
)
def test_playbooks_are_callable_by_name(installed, playbook):
    work, env, _ = installed
    result = run(["ansible-playbook", f"pydeploy.stack.{playbook}", "--syntax-check", "-i", "localhost,"], work, env)
    assert result.returncode == 0, result.stdout + result.stderr
