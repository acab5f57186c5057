"""`bed/bedctl.py up`: a warm rerun rebuilds nothing, and bad conditions stop it
with one line naming the cause, before anything is started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from conftest import REPO

BEDCTL = [sys.executable, str(REPO / "bed" / "bedctl.py")]


def _bedctl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*BEDCTL, *args], capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )


def test_warm_rerun_builds_nothing(bed):
    result = _bedctl("up")
    assert result.returncode == 0, result.stderr
    assert "building" not in result.stdout
    assert "ready in" in result.stdout
    for image in bed["images"].values():
        assert image["ref"] in result.stdout


def test_port_taken_fails_naming_it_and_starts_nothing(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _bedctl("up", env={"BED_STATE": str(tmp_path), "BED_REGISTRY_PORT": str(port)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "taken" in lines[0]
    assert not list(Path(tmp_path, "run").glob("*.pid"))


def test_full_disk_fails_before_anything_starts(tmp_path):
    result = _bedctl("up", env={"BED_STATE": str(tmp_path), "BED_MIN_FREE_GB": "1000000"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GiB free" in lines[0]
    assert not (tmp_path / "run").exists()


def test_missing_tools_are_named(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    result = _bedctl("up", env={"BED_STATE": str(tmp_path / "state"), "PATH": str(bin_dir)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "missing tools: docker, dockerd, debootstrap, docker-registry" in lines[0]
    assert "make bed" in lines[0]
