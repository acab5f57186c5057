"""The example inventories resolve (vault included) and the playbooks parse
against them; every secret they reference is defined and non-empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from playbook import REPO

BIN = Path(sys.executable).parent
EXAMPLES = sorted(p for p in (REPO / "inventories" / "examples").iterdir() if p.is_dir())
ENV = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}


def _vault_args(inventory: Path) -> list[str]:
    password = inventory.parent / "vault-password.example"
    return ["--vault-password-file", str(password)] if password.exists() else []


@pytest.mark.parametrize("inventory", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_inventory_resolves_every_secret(inventory):
    listing = subprocess.run(
        [BIN / "ansible-inventory", "-i", inventory, "--list", *_vault_args(inventory)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
        check=True,
    )
    data = json.loads(listing.stdout)
    hosts = data["_meta"]["hostvars"]
    assert hosts, "the inventory has no hosts"
    for host in hosts:
        # Render the stack's secrets the way a play would: every vault_* reference resolves (an inventory
        # may have none, its secrets generated on the first deploy).
        rendered = subprocess.run(
            [
                BIN / "ansible",
                host,
                "-i",
                inventory,
                *_vault_args(inventory),
                "-c",
                "local",
                "-m",
                "ansible.builtin.debug",
                "-a",
                "msg={{ stack_secrets | default({}) | dict2items | rejectattr('value') | map(attribute='key') "
                "| list }}",
            ],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=REPO,
        )
        assert rendered.returncode == 0, rendered.stdout[-2000:] + rendered.stderr[-2000:]
        assert "msg: []" in rendered.stdout, f"{host} has empty secrets: {rendered.stdout[-1000:]}"


@pytest.mark.parametrize(
    "inventory", [REPO / "inventories" / "local", *EXAMPLES], ids=["local", *[p.name for p in EXAMPLES]]
)
@pytest.mark.parametrize(
    "playbook", ["deploy.yml", "rollback.yml", "run.yml", "status.yml", "logs.yml", "backup.yml", "restore.yml"]
)
def test_playbooks_parse_against_the_inventory(inventory, playbook):
    result = subprocess.run(
        [BIN / "ansible-playbook", playbook, "-i", inventory, "--syntax-check", *_vault_args(inventory)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.parametrize(
    "inventory", [REPO / "inventories" / "local", *EXAMPLES], ids=["local", *[p.name for p in EXAMPLES]]
)
def test_no_host_pattern_warning_for_a_group_the_inventory_has_not(inventory):
    """Every play of every playbook resolves its hosts against the inventory's groups without a warning
    (an inventory with no redis, worker or mongodb group is a normal one)."""
    playbooks = [
        "deploy.yml", "rollback.yml", "run.yml", "status.yml", "logs.yml", "backup.yml", "restore.yml", "teardown.yml",
    ]  # fmt: skip
    for playbook in playbooks:
        result = subprocess.run(
            [BIN / "ansible-playbook", playbook, "-i", inventory, "--list-hosts", *_vault_args(inventory)],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=REPO,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-2000:]
        assert "Could not match supplied host pattern" not in output, (playbook, output[-2000:])
