"""The collection's one bundle builder (roles/stack/files/build-bundle.py), as the backup and nginx roles run it:
each bundle imports its modules from the zip alone, with no Ansible installed beside it, and the same code gives
the same bytes (a host's copy is then unchanged)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BUILDER = REPO / "roles" / "stack" / "files" / "build-bundle.py"
BUNDLES = {
    # what each role's task passes: its main, and the collections' modules it packs
    "backup": (
        REPO / "roles" / "backup" / "files" / "bundle-main.py",
        [f"pydeploy.stack={REPO}:db_backup,db_restore,backup_prune"],
        [
            f"ansible_collections.pydeploy.stack.plugins.modules.{m}"
            for m in ("db_backup", "db_restore", "backup_prune")
        ],
    ),
    "acme": (
        REPO / "roles" / "nginx" / "files" / "acme-renew.py",
        ["community.crypto:acme_certificate"],
        ["ansible_collections.community.crypto.plugins.modules.acme_certificate"],
    ),
}


def build(main: Path, output: Path, sources: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BUILDER), str(main), str(output), *sources], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_a_bundle_imports_its_modules_without_ansible_and_is_deterministic(name, tmp_path):
    main, sources, modules = BUNDLES[name]
    first, second = tmp_path / "first.pyz", tmp_path / "second.pyz"
    assert build(main, first, sources).returncode == 0
    assert build(main, second, sources).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    # -I -S: no site-packages, no environment: only the zip supplies ansible and the collections.
    probe = "import importlib, sys; sys.path.insert(0, sys.argv[1]); [importlib.import_module(m) for m in sys.argv[2:]]"
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(first), *modules], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_a_malformed_source_is_named(tmp_path):
    result = build(BUNDLES["acme"][0], tmp_path / "x.pyz", ["community-crypto"])
    assert result.returncode != 0
    assert "community-crypto" in result.stderr
