"""The release module's deploy lock through its own task, as a user's playbook runs it: the lock taken
(check, real, check, real) with the stack's web replicas read under it, refused to another run naming
its holder, and released."""

from __future__ import annotations

import uuid

from playbook import module_task


def release(tmp_path, args: dict, *, check: bool = False) -> tuple[int, dict]:
    rc, result, _ = module_task(tmp_path, "release", args, check=check)
    return rc, result


def test_the_lock_reads_the_web_replicas_once_held(tmp_path, run_container, bed_image):
    stack = f"rel{uuid.uuid4().hex[:8]}"
    labels = {"pydeploy.stack": stack, "pydeploy.process": "web", "pydeploy.slot": "a"}
    web, _ = run_container(bed_image("python"), command=["sleep", "600"], labels=labels)
    stopped, _ = run_container(bed_image("python"), command=["true"], labels={**labels, "pydeploy.slot": "b"})
    stopped.wait(timeout=60)
    run_container(bed_image("python"), command=["sleep", "600"], labels={**labels, "pydeploy.process": "worker"})
    holder = {"run_id": "run-1", "user": "ci"}
    args = {
        "stack": stack,
        "directory": str(tmp_path / "ledger"),
        "state": "lock",
        "holder": holder,
        "containers": [f"pydeploy.stack={stack}", "pydeploy.process=web"],
    }
    lock_file = tmp_path / "ledger" / "deploy.lock"

    rc, check = release(tmp_path, args, check=True)
    assert rc == 0, check
    assert check["lock"] is None and not lock_file.exists()
    rc, real = release(tmp_path, args)
    assert rc == 0 and real["lock"]["run_id"] == "run-1", real
    # Running or not, every web replica of the stack and nothing else, as the engine lists them.
    found = {entry["Names"][0].lstrip("/"): entry for entry in real["containers"]}
    assert set(found) == {web.name, stopped.name}, found
    assert found[web.name]["State"] == "running" and found[stopped.name]["State"] == "exited"
    assert found[web.name]["Labels"]["pydeploy.slot"] == "a"
    # The same run holds it already (check and real alike); another run is refused, naming the holder.
    for check_mode in (True, False):
        rc, again = release(tmp_path, args, check=check_mode)
        assert rc == 0 and again["lock"]["run_id"] == "run-1", again
    rc, refused = release(tmp_path, {**args, "holder": {"run_id": "run-2", "user": "other"}})
    assert rc != 0 and "another deploy of" in refused["msg"] and "other" in refused["msg"], refused
    assert "containers" not in refused

    rc, freed = release(tmp_path, {**args, "state": "unlock", "containers": []})
    assert rc == 0 and freed["lock"] is None and not lock_file.exists(), freed
