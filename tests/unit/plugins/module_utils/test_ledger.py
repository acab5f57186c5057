"""The release ledger and the deploy lock (plugins/module_utils/_ledger.py)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from ansible_collections.pydeploy.stack.plugins.module_utils import _ledger
from ansible_collections.pydeploy.stack.plugins.module_utils._ledger import Ledger, LockHeld, holder_is_dead

HOST = "controller-1"


def holder(run: str = "r1", **extra) -> dict:
    return {
        "user": "ana",
        "controller": HOST,
        "pid": os.getpid(),
        "pid_start": _ledger.process_start(os.getpid()),
        "run_id": run,
        "version": "v2",
        **extra,
    }


def test_records_are_numbered_and_previous_is_the_last_other_release(tmp_path):
    ledger = Ledger(str(tmp_path / "stack"))
    assert ledger.releases() == []
    for version in ("v1", "v2", "v2", "v3"):
        ledger.record({"version": version, "image": f"app:{version}"})
    releases = ledger.releases()
    assert [entry["id"] for entry in releases] == [1, 2, 3, 4]
    assert Ledger.current(releases)["version"] == "v3"
    assert Ledger.previous(releases)["version"] == "v2"
    assert Ledger.versions(releases) == ["v3", "v2", "v1"]
    assert (tmp_path / "stack").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "stack" / "releases.json").stat().st_mode & 0o777 == 0o600


def test_a_crash_mid_write_leaves_the_old_ledger_whole(tmp_path, monkeypatch):
    ledger = Ledger(str(tmp_path))
    ledger.record({"version": "v1", "image": "app:v1"})

    def crash(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_ledger.os, "replace", crash)
    with pytest.raises(_ledger.LedgerError, match="No space left on device"):
        ledger.record({"version": "v2", "image": "app:v2"})
    assert [entry["version"] for entry in ledger.releases()] == ["v1"]
    assert [p.name for p in tmp_path.iterdir()] == ["releases.json"]  # no temporary file left


def test_a_torn_ledger_is_reported_not_ignored(tmp_path):
    (tmp_path / "releases.json").write_text('{"releases": [')
    with pytest.raises(_ledger.LedgerError, match="cannot read the release ledger"):
        Ledger(str(tmp_path)).releases()


def test_a_second_run_is_refused_naming_the_holder(tmp_path):
    ledger = Ledger(str(tmp_path))
    assert ledger.acquire(holder("r1"), hostname=HOST) == (True, None)
    assert ledger.acquire(holder("r1"), hostname=HOST) == (False, None)  # the same run again
    with pytest.raises(LockHeld) as refused:
        ledger.acquire(holder("r2", user="bea"), hostname=HOST)
    assert "ana from controller-1" in str(refused.value)
    assert "deploying v2" in str(refused.value)


def test_break_lock_takes_it_and_reports_the_old_holder(tmp_path):
    ledger = Ledger(str(tmp_path))
    ledger.acquire(holder("r1"), hostname=HOST)
    taken, broken = ledger.acquire(holder("r2"), hostname=HOST, break_lock=True)
    assert taken and broken["run_id"] == "r1"
    assert ledger.holder()["run_id"] == "r2"


def test_the_lock_of_a_dead_process_on_this_controller_is_stale(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = holder("r1", pid=dead.pid, pid_start=12345)
    assert holder_is_dead(stale, HOST)
    assert not holder_is_dead(stale, "another-controller")  # cannot know: refuse
    assert not holder_is_dead(holder("r1"), HOST)  # this process is alive
    assert holder_is_dead(holder("r1", pid_start=1), HOST)  # pid reused by another process

    ledger = Ledger(str(tmp_path))
    (tmp_path / "deploy.lock").write_text(json.dumps(stale))
    taken, broken = ledger.acquire(holder("r2"), hostname=HOST)
    assert taken and broken["run_id"] == "r1"


def test_check_mode_predicts_without_taking(tmp_path):
    ledger = Ledger(str(tmp_path))
    assert ledger.acquire(holder("r1"), hostname=HOST, dry_run=True) == (True, None)
    assert ledger.holder() is None


def test_only_the_holder_releases(tmp_path):
    ledger = Ledger(str(tmp_path))
    ledger.acquire(holder("r1"), hostname=HOST)
    with pytest.raises(LockHeld):
        ledger.release(holder("r2"))
    assert ledger.release(holder("r1"))
    assert ledger.holder() is None
    assert not ledger.release(holder("r1"))
