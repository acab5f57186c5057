"""The oneoff module on the bed's engine, through its own task: a one-off container with a named volume
(check, real, check, real) - the volume created once, with its labels, what the command wrote kept in it,
the container and its anonymous volumes gone - and a mount in the wrong form refused before anything runs."""

from __future__ import annotations

import uuid

import pytest
from conftest import TEST_LABEL
from playbook import module_task


@pytest.fixture
def volume(docker_client):
    name = f"pydeploy-test-{uuid.uuid4().hex[:8]}-data"
    yield name
    for found in docker_client.volumes.list(filters={"name": name}):
        found.remove(force=True)


def test_a_named_volume_check_real_check_real(tmp_path, volume, docker_client, bed_image):
    args = {
        "image": bed_image("python"),
        "command": ["sh", "-c", "echo run >> /data/runs && wc -l < /data/runs"],
        "volumes": [f"{volume}:/data"],
        "volume_labels": {TEST_LABEL: "1", "pydeploy.stack": "oneoff-test"},
        "labels": {TEST_LABEL: "1"},
    }
    dangling = {v.name for v in docker_client.volumes.list(filters={"dangling": True})}
    rc, first, _ = module_task(tmp_path, "oneoff", args, check=True)
    assert (rc, first["changed"]) == (0, True), first
    assert not docker_client.volumes.list(filters={"name": volume})

    for runs in ("1", "2"):
        rc, real, _ = module_task(tmp_path, "oneoff", args)
        assert (rc, real["rc"], real["stdout"].strip()) == (0, 0, runs), real
        assert real["volumes_created"] == ([volume] if runs == "1" else [])
        rc, check, _ = module_task(tmp_path, "oneoff", args, check=True)
        assert (rc, check["changed"]) == (0, True), check
    assert docker_client.volumes.get(volume).attrs["Labels"] == {TEST_LABEL: "1", "pydeploy.stack": "oneoff-test"}
    assert not docker_client.containers.list(all=True, filters={"label": "pydeploy.oneoff=run", "volume": volume})
    assert {v.name for v in docker_client.volumes.list(filters={"dangling": True})} - dangling <= {volume}

    rc, bad, _ = module_task(tmp_path, "oneoff", {**args, "volumes": [f"{volume}:/data:rx"]})
    assert rc != 0 and "is not source:/path" in bad["msg"], bad


def test_the_container_keeps_no_capability_and_gains_no_privilege_when_told(tmp_path, bed_image):
    args = {
        "image": bed_image("python"),
        "command": [
            "sh",
            "-c",
            "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status;"
            " cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
        ],
        "labels": {TEST_LABEL: "1"},
        "security": {"cap_drop": ["ALL"], "no_new_privileges": True, "pids_limit": 64},
    }
    rc, result, _ = module_task(tmp_path, "oneoff", args)
    assert rc == 0, result
    lines = dict(line.split(":", 1) for line in result["stdout_lines"] if ":" in line)
    assert int(lines["CapEff"].strip(), 16) == 0 and lines["NoNewPrivs"].strip() == "1", result["stdout"]
    assert result["stdout_lines"][-1].strip() == "64", result["stdout"]
    rc, bad, _ = module_task(tmp_path, "oneoff", {**args, "security": {"tmpfs": ["tmp"]}})
    assert rc != 0 and "not an absolute path" in bad["msg"], bad
