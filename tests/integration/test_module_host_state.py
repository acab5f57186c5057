"""The host_state module on the bed's engine, through its own task as a user runs it: recording a role
(check, real, check, real), then every way what a record names can change behind its back - a container
stopped, removed or replaced, a file edited, removed or given another mode, a network removed - reported
as not intact with the reason; refresh, forget, and the engine and free-space facts."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from playbook import module_task


def host_state(tmp_path: Path, args: dict, *, check: bool = False) -> tuple[int, dict]:
    rc, result, _ = module_task(tmp_path, "host_state", args, check=check)
    return rc, result


@pytest.fixture
def managed(tmp_path, run_container, bed_image, docker_client):
    """A container, a file and a network as a role leaves them, and a record of them."""
    network = docker_client.networks.create(f"pydeploy-test-{uuid.uuid4().hex[:8]}", labels={"pydeploy.test": "1"})
    container, _ = run_container(bed_image("python"), command=["sleep", "600"], network=network.name)
    config = tmp_path / "etc" / "app.conf"
    config.parent.mkdir()
    config.write_text("setting = 1\n")
    config.chmod(0o600)
    args = {
        "stack": "hoststate",
        "directory": str(tmp_path / "state"),
        "state": "record",
        "roles": {
            "role_a": {
                "fingerprint": "f00d",
                "containers": [container.name],
                "files": [str(config)],
                "networks": [network.name],
                "facts": {"upstream_servers": [f"{container.name}:8000"]},
            }
        },
    }
    yield args, container, config, network
    # The network test removes it itself. This teardown runs before the one
    # of run_container: the containers on the network go first.
    for leftover in docker_client.containers.list(all=True, filters={"network": network.name}):
        leftover.remove(force=True)
    if docker_client.networks.list(names=[network.name]):
        network.remove()


def query(tmp_path, args) -> dict:
    rc, result = host_state(tmp_path, {"stack": args["stack"], "directory": args["directory"]})
    assert rc == 0, result
    return result["roles"]["role_a"]


def test_record_check_real_check_real(tmp_path, managed):
    args, container, config, _ = managed
    state_file = Path(args["directory"]) / "host_state.json"

    rc, first = host_state(tmp_path, args, check=True)
    assert (rc, first["changed"]) == (0, True), first
    assert not state_file.exists()

    rc, real = host_state(tmp_path, args)
    assert (rc, real["changed"]) == (0, True), real
    assert state_file.stat().st_mode & 0o777 == 0o600
    record = json.loads(state_file.read_text())["roles"]["role_a"]
    assert record["containers"] == {container.name: container.id}
    assert record["files"][str(config)]["mode"] == "0600"

    for check in (True, False):
        rc, again = host_state(tmp_path, args, check=check)
        assert (rc, again["changed"]) == (0, False), again

    roles = query(tmp_path, args)
    assert roles == {
        "fingerprint": "f00d",
        "intact": True,
        "reason": "",
        "facts": {"upstream_servers": [f"{container.name}:8000"]},
    }


def test_query_reports_the_engine_and_free_space(tmp_path, managed):
    args = managed[0]
    rc, result = host_state(tmp_path, {"stack": args["stack"], "directory": args["directory"]})
    assert rc == 0, result
    engine = result["engine"]
    assert engine["answers"] is True and engine["version"]
    assert engine["free_bytes"] > 0 and engine["root_dir"].startswith("/")
    assert result["roles"] == {}


@pytest.mark.parametrize(
    "change, reason",
    [
        ("stop", "is not running"),
        ("remove", "is missing"),
        ("edit", "changed"),
        ("chmod", "changed"),
        ("delete", "is missing"),
        ("network", "network"),
    ],
)
def test_a_change_behind_the_records_back_is_reported(tmp_path, managed, docker_client, change, reason):
    args, container, config, network = managed
    assert host_state(tmp_path, args)[0] == 0
    if change == "stop":
        container.stop(timeout=1)
    elif change == "remove":
        container.remove(force=True)
    elif change == "edit":
        config.write_text("setting = 2\n")
    elif change == "chmod":
        config.chmod(0o644)
    elif change == "delete":
        config.unlink()
    elif change == "network":
        network.disconnect(container, force=True)
        network.remove()
    role = query(tmp_path, args)
    assert role["intact"] is False
    assert reason in role["reason"], role


def test_a_replaced_container_is_reported(tmp_path, managed, run_container, bed_image):
    args, container, _, network = managed
    assert host_state(tmp_path, args)[0] == 0
    name = container.name
    container.remove(force=True)
    run_container(bed_image("python"), command=["sleep", "600"], name=name, network=network.name)
    role = query(tmp_path, args)
    assert (role["intact"], role["reason"]) == (False, f"container {name} was replaced")


def test_refresh_takes_the_current_checksums_and_forget_drops_the_record(tmp_path, managed):
    args, _, config, _ = managed
    assert host_state(tmp_path, args)[0] == 0
    config.write_text("setting = 3\n")
    assert query(tmp_path, args)["intact"] is False
    rc, result = host_state(
        tmp_path, {"stack": args["stack"], "directory": args["directory"], "state": "record", "refresh": ["role_a"]}
    )
    assert (rc, result["changed"]) == (0, True), result
    assert query(tmp_path, args)["intact"] is True
    rc, result = host_state(
        tmp_path, {"stack": args["stack"], "directory": args["directory"], "state": "forget", "roles": {"role_a": {}}}
    )
    assert (rc, result["changed"], result["roles"]) == (0, True, {}), result


def test_a_record_of_what_does_not_exist_fails_naming_it(tmp_path, managed):
    args = managed[0]
    args["roles"]["role_a"]["files"] = [str(tmp_path / "nowhere.conf")]
    rc, result = host_state(tmp_path, args)
    assert rc != 0
    assert result["msg"] == f"file {tmp_path / 'nowhere.conf'} to record does not exist"
    assert not (Path(args["directory"]) / "host_state.json").exists()


def test_record_writes_the_files_left_to_it_check_real_check_real(tmp_path, managed):
    """A fast path's file (the release the jobs run) is written by the record, only when it differs:
    check (would write, writes nothing), real (writes 0600, records its checksum), then both unchanged."""
    args = managed[0]
    jobs = tmp_path / "etc" / "jobs.json"
    files = {str(jobs): {"content": '{"version": "v2"}\n', "mode": "0600"}}
    record = {**args, "roles": {"role_b": {"fingerprint": "beef", "files": [str(jobs)]}}, "files": files}

    rc, check = host_state(tmp_path, record, check=True)
    assert rc == 0 and check["written"] == [str(jobs)], check
    assert not jobs.exists()
    rc, real = host_state(tmp_path, record)
    assert rc == 0 and real["changed"] and real["written"] == [str(jobs)], real
    assert jobs.read_text() == '{"version": "v2"}\n' and jobs.stat().st_mode & 0o777 == 0o600
    assert query_role(tmp_path, args, "role_b")["intact"] is True
    for check_mode in (True, False):
        rc, again = host_state(tmp_path, record, check=check_mode)
        assert rc == 0 and again["written"] == [] and again["changed"] is False, again

    # Another mode alone is written again; a file the module cannot write fails naming it.
    jobs.chmod(0o644)
    rc, again = host_state(tmp_path, record)
    assert rc == 0 and again["written"] == [str(jobs)] and jobs.stat().st_mode & 0o777 == 0o600
    missing = str(tmp_path / "no-such-dir" / "jobs.json")
    rc, failed = host_state(tmp_path, {**args, "roles": {}, "files": {missing: {"content": "x"}}})
    assert rc != 0 and f"cannot write {missing}" in failed["msg"], failed


def query_role(tmp_path, args, role: str) -> dict:
    rc, result = host_state(tmp_path, {"stack": args["stack"], "directory": args["directory"]})
    assert rc == 0, result
    return result["roles"][role]


def test_query_reads_the_ledger_and_every_tag_of_an_image(tmp_path, managed, bed_image, docker_client):
    """What a rollback chooses from, in the preflight's one read: the ledger, and the tags of the
    stack's image on the host (a name without a tag)."""
    args = managed[0]
    state = Path(args["directory"])
    rc, empty = host_state(tmp_path, {"stack": args["stack"], "directory": str(state), "ledger": True})
    assert rc == 0 and empty["ledger"] == {"releases": [], "current": None, "previous": None, "versions": []}

    releases = [
        {"id": 1, "version": "v1", "image": "app", "kind": "deploy"},
        {"id": 2, "version": "v2", "image": "app", "kind": "deploy"},
    ]
    state.mkdir(exist_ok=True)
    (state / "releases.json").write_text(json.dumps({"format": 1, "releases": releases}))
    reference = bed_image("python")
    repository = reference.rsplit(":", 1)[0]
    rc, result = host_state(
        tmp_path,
        {"stack": args["stack"], "directory": str(state), "ledger": True, "images": [repository, f"{repository}:nope"]},
    )
    assert rc == 0, result
    assert result["ledger"]["current"]["version"] == "v2" and result["ledger"]["previous"]["version"] == "v1"
    assert result["ledger"]["versions"] == ["v2", "v1"]
    assert result["images"][reference] == docker_client.images.get(reference).id
    assert result["images"][f"{repository}:nope"] == ""
    assert all(ref.startswith(repository + ":") for ref in result["images"]), result["images"]


def test_the_read_takes_the_deploy_lock_first_and_lists_the_web_replicas_under_it(tmp_path, run_container, bed_image):
    """The preflight's read on the host that keeps the ledger: the lock taken (check, real, check, real),
    the stack's web replicas and the ledger read under it, another run refused naming the holder."""
    stack = f"hs{uuid.uuid4().hex[:8]}"
    labels = {"pydeploy.stack": stack, "pydeploy.process": "web"}
    web, _ = run_container(bed_image("python"), command=["sleep", "600"], labels=labels)
    run_container(bed_image("python"), command=["sleep", "600"], labels={**labels, "pydeploy.process": "worker"})
    lock = {
        "holder": {"run_id": "run-1", "user": "ci"},
        "containers": [f"pydeploy.stack={stack}", "pydeploy.process=web"],
    }
    args = {"stack": stack, "directory": str(tmp_path / "state"), "lock": lock}
    lock_file = tmp_path / "state" / "deploy.lock"

    # Check mode, or a read that runs in check mode too (check_only): the lock checked, not taken.
    for check, check_only in ((True, False), (False, True)):
        rc, dry = host_state(tmp_path, {**args, "lock": {**lock, "check_only": check_only}}, check=check)
        assert rc == 0 and dry["lock"]["taken"] is False and not lock_file.exists(), dry
        assert [entry["Names"][0].lstrip("/") for entry in dry["containers"]] == [web.name]
    rc, real = host_state(tmp_path, args)
    assert rc == 0 and real["lock"]["taken"] is True and real["changed"] is False, real
    assert json.loads(lock_file.read_text())["run_id"] == "run-1"
    assert [entry["Names"][0].lstrip("/") for entry in real["containers"]] == [web.name]
    assert real["ledger"] == {"releases": [], "current": None, "previous": None, "versions": []}
    assert real["engine"]["answers"] is True
    # The same run holds it already; another one is refused at once, naming the holder.
    rc, again = host_state(tmp_path, args)
    assert rc == 0, again
    rc, refused = host_state(tmp_path, {**args, "lock": {**lock, "holder": {"run_id": "run-2", "user": "other"}}})
    assert rc != 0 and f"another deploy of {stack} is running" in refused["msg"] and "other" in refused["msg"]
    assert "pydeploy_break_lock" in refused["msg"]
    rc, misplaced = host_state(tmp_path, {**args, "state": "record"})
    assert rc != 0 and "lock goes with state=query" in misplaced["msg"], misplaced


def test_the_end_of_a_run_retires_records_and_unlocks_check_real_check_real(
    tmp_path, run_container, bed_image, docker_client
):
    """A web host's record call: the replicas the release replaced stopped (SIGTERM, then the stop
    timeout) and removed, the release recorded in the ledger, the lock released - one call."""
    stack = f"hs{uuid.uuid4().hex[:8]}"
    image = bed_image("python")
    old = [run_container(image, command=["sleep", "600"], labels={"pydeploy.stack": stack})[0] for _ in range(2)]
    directory = tmp_path / "state"
    holder = {"run_id": "run-1", "user": "ci", "controller": "ctl"}
    rc, taken = host_state(tmp_path, {"stack": stack, "directory": str(directory), "lock": {"holder": holder}})
    assert rc == 0 and taken["lock"]["taken"], taken
    args = {
        "stack": stack,
        "directory": str(directory),
        "state": "record",
        "retire": {"names": [container.name for container in old], "stop_timeout": 1},
        "release": {"version": "v1", "image": image, "holder": holder, "migration_after": "0001", "keep": 3},
    }

    rc, check = host_state(tmp_path, args, check=True)
    assert (rc, check["changed"]) == (0, True), check
    assert sorted(check["retired"]) == sorted(container.name for container in old)
    assert check["release"]["recorded"]["version"] == "v1" and check["release"]["current"]["version"] == "v1"
    assert all(docker_client.containers.get(container.id).status == "running" for container in old)
    assert not (directory / "releases.json").exists() and (directory / "deploy.lock").exists()

    rc, real = host_state(tmp_path, args)
    assert (rc, real["changed"]) == (0, True), real
    assert sorted(real["retired"]) == sorted(container.name for container in old)
    assert not docker_client.containers.list(all=True, filters={"label": f"pydeploy.stack={stack}"})
    entry = json.loads((directory / "releases.json").read_text())["releases"][-1]
    assert (entry["version"], entry["deployed_by"], entry["migration_after"]) == ("v1", "ci", "0001")
    assert entry["image_id"] == docker_client.images.get(image).id
    assert not (directory / "deploy.lock").exists()

    for check_mode in (True, False):
        rc, again = host_state(tmp_path, args, check=check_mode)
        assert (rc, again["changed"], again["retired"]) == (0, False, []), again
        assert again["release"]["recorded"] is None and again["release"]["versions"] == ["v1"]
    # Nothing to retire and no release (as a check run passes them): nothing asked of the engine.
    rc, idle = host_state(tmp_path, {**args, "retire": {"names": []}, "release": None}, check=True)
    assert (rc, idle["changed"], idle["retired"]) == (0, False, []), idle
    rc, misplaced = host_state(tmp_path, {**args, "state": "query"})
    assert rc != 0 and "retire and release go with state=record" in misplaced["msg"], misplaced
