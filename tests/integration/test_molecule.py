"""The molecule scenarios, run as a user runs them: ``molecule test -s <scenario>`` from the repository's root
(create: hosts of the bed started by tests/integration/hosts.py; converge: deploy.yml over SSH; idempotence: a
second deploy changes nothing; verify: requests through the proxy, rows, restored counts; destroy).  The others
are checked for their syntax only (README, "Molecule scenarios": what each costs, what each needs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playbook import REPO

BIN = Path(sys.executable).parent
SCENARIOS = {
    # scenario: what the run proves
    "default": "one host runs the whole stack: requests through the proxy, a row the app wrote",
}
# Checked for their syntax here; run by hand (README, "Molecule scenarios"): backup_restore's scheduled backup
# and restore are proven by tests/integration/test_backup_flight_hunter.py, which costs a whole host less.
SYNTAX_ONLY = ["backup_restore", "fleet", "fleet_rollback"]


def molecule(*args: str, timeout: float) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    environment.pop("ANSIBLE_CONFIG", None)  # molecule writes its own
    return subprocess.run(
        [BIN / "molecule", *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_molecule_scenario_passes(scenario, bed):
    started = time.monotonic()
    result = molecule("test", "-s", scenario, timeout=2400)
    output = result.stdout + result.stderr
    print(f"\nmolecule test -s {scenario}: rc {result.returncode} in {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, output[-6000:]
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert f"{step}: Executed: Successful" in output, (step, output[-3000:])


@pytest.mark.parametrize("scenario", SYNTAX_ONLY)
def test_molecule_scenario_syntax(scenario):
    result = molecule("syntax", "-s", scenario, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
