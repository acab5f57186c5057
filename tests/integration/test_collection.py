"""The collection builds, installs from its tarball into an empty path, and
its modules, roles and playbooks are found by their names there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from playbook import REPO

BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.stem.startswith("_"))


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


def test_role_argument_specs_are_documented(installed):
    work, env, _ = installed
    result = run(["ansible-doc", "--json", "-t", "role", "pydeploy.stack.app"], work, env)
    assert result.returncode == 0, result.stderr
    entry_points = json.loads(result.stdout)["pydeploy.stack.app"]["entry_points"]
    assert {"main", "preflight"} <= set(entry_points)


@pytest.mark.parametrize("playbook", ["deploy", "rollback", "backup", "restore", "run", "status"])
def test_playbooks_are_callable_by_name(installed, playbook):
    work, env, _ = installed
    result = run(["ansible-playbook", f"pydeploy.stack.{playbook}", "--syntax-check", "-i", "localhost,"], work, env)
    assert result.returncode == 0, result.stdout + result.stderr
