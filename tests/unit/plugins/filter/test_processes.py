from __future__ import annotations

from ansible_collections.pydeploy.stack.plugins.filter.processes import (
    process_containers,
    process_replicas,
    process_surplus,
)

PROCESSES = {
    "web": {"command": "gunicorn app:app", "port": 8080, "replicas": 2},
    "worker": {"command": "celery -A celery_app worker", "replicas": 2, "stop_grace_period": 120},
    "beat": {"command": "celery -A celery_app beat", "singleton": True},
}


def names(host, workers=("w1", "w2"), singleton="w1"):
    return [c["name"] for c in process_containers(PROCESSES, "ff", host, list(workers), singleton)]


def test_workers_run_their_replicas_on_every_worker_host_and_beat_once():
    assert names("w1") == ["ff-beat-1", "ff-worker-1", "ff-worker-2"]
    assert names("w2") == ["ff-worker-1", "ff-worker-2"]


def test_a_host_outside_the_worker_group_runs_no_worker_but_may_run_beat():
    assert names("b1", singleton="b1") == ["ff-beat-1"]
    assert names("web1") == []


def test_entries_carry_the_process_settings():
    worker = process_containers(PROCESSES, "ff", "w1", ["w1"], "w1")[1]
    assert worker == {
        "name": "ff-worker-1",
        "process": "worker",
        "replica": 1,
        "command": "celery -A celery_app worker",
        "singleton": False,
        "stop_grace_period": 120,
    }


def test_a_bare_command_is_one_replica_and_zero_replicas_is_none():
    assert names("w1") and process_containers({"rq": "rq worker"}, "eq", "w1", ["w1"], "w1")[0]["name"] == "eq-rq-1"
    assert process_containers({"worker": {"command": "x", "replicas": 0}}, "s", "w1", ["w1"], "w1") == []


def test_surplus_is_what_runs_but_is_not_wanted():
    running = [
        {"Names": ["/ff-worker-3"], "Labels": {"pydeploy.process": "worker"}},
        {"Names": ["/ff-worker-1"], "Labels": {"pydeploy.process": "worker"}},
        {"Names": ["/ff-rq-1"], "Labels": {"pydeploy.process": "rq"}},
    ]
    wanted = process_containers(PROCESSES, "ff", "w1", ["w1"], "w1")
    assert process_surplus(running, wanted) == [
        {"name": "ff-rq-1", "process": "rq"},
        {"name": "ff-worker-3", "process": "worker"},
    ]


def test_a_host_leaves_the_containers_of_another_inventory_host_on_a_shared_engine_alone():
    running = [
        {"Names": ["/ff-beat-1"], "Labels": {"pydeploy.process": "beat", "pydeploy.host": "b"}},
        {"Names": ["/ff-worker-3"], "Labels": {"pydeploy.process": "worker", "pydeploy.host": "a"}},
        {"Names": ["/ff-old-1"], "Labels": {"pydeploy.process": "old"}},
    ]
    assert [entry["name"] for entry in process_surplus(running, [], "a")] == ["ff-old-1", "ff-worker-3"]
    assert [entry["name"] for entry in process_surplus(running, [], "b")] == ["ff-beat-1", "ff-old-1"]


def test_counts_by_process_leave_one_offs_out():
    from ansible_collections.pydeploy.stack.plugins.filter.processes import process_counts

    containers = [
        {"State": "running", "Labels": {"pydeploy.process": "web", "pydeploy.version": "v2"}},
        {
            "State": "running",
            "Status": "Up 3 minutes (unhealthy)",
            "Labels": {"pydeploy.process": "web", "pydeploy.version": "v1"},
        },
        {"State": "exited", "Labels": {"pydeploy.process": "worker", "pydeploy.version": "v2"}},
        {"State": "running", "Labels": {"pydeploy.process": "job", "pydeploy.oneoff": "run"}},
        {"State": "running", "Labels": {}},
    ]
    assert process_counts(containers) == {
        "web": {"running": 2, "other": 0, "unhealthy": 1, "versions": ["v1", "v2"]},
        "worker": {"running": 0, "other": 1, "unhealthy": 0, "versions": ["v2"]},
    }


def web(name, slot, spec="s1", state="running"):
    labels = {"pydeploy.process": "web", "pydeploy.spec": spec}
    if slot:
        labels["pydeploy.slot"] = slot
    return {"Names": [f"/{name}"], "State": state, "Labels": labels}


def test_a_first_release_goes_to_slot_a():
    from ansible_collections.pydeploy.stack.plugins.filter.processes import web_rollout

    plan = web_rollout([], "ff", "", "s1", 2, 8000)
    assert (plan["up_to_date"], plan["next"], plan["leftovers"]) == (False, ["ff-web-a-1", "ff-web-a-2"], [])
    assert plan["next_servers"] == ["ff-web-a-1:8000", "ff-web-a-2:8000"]


def test_the_live_slot_up_to_date_means_nothing_to_do():
    from ansible_collections.pydeploy.stack.plugins.filter.processes import web_rollout

    running = [web("ff-web-a-1", "a"), web("ff-web-a-2", "a")]
    plan = web_rollout(running, "ff", "a", "s1", 2, 8000)
    assert plan["up_to_date"] and plan["live"] == ["ff-web-a-1", "ff-web-a-2"]
    assert not web_rollout(running, "ff", "a", "s2", 2, 8000)["up_to_date"]  # another spec
    assert not web_rollout(running, "ff", "a", "s1", 3, 8000)["up_to_date"]  # another count
    assert web_rollout(running, "ff", "a", "s2", 2, 8000)["next_slot"] == "b"


def test_leftovers_of_a_killed_run_and_an_older_layout():
    from ansible_collections.pydeploy.stack.plugins.filter.processes import web_rollout

    found = [web("ff-web-b-1", "b"), web("ff-web-b-2", "b", spec="s2", state="created"), web("ff-web-1", "")]
    plan = web_rollout(found, "ff", "b", "s2", 2, 8000)
    assert plan["live"] == ["ff-web-b-1", "ff-web-b-2"] and not plan["up_to_date"]
    assert plan["leftovers"] == ["ff-web-1"]
    # No record of the live slot: the running containers are live.
    older = web_rollout([web("ff-web-1", ""), web("ff-web-2", "")], "ff", "", "s1", 2, 8000)
    assert older["live"] == ["ff-web-1", "ff-web-2"] and older["next_slot"] == "a"


def steps(new, old, size):
    from ansible_collections.pydeploy.stack.plugins.filter.processes import rollout_batches

    found = rollout_batches([f"n{i}" for i in range(1, new + 1)], [f"o{i}" for i in range(1, old + 1)], size, 80)
    for step in found:  # the servers of the retired replicas, as the proxy names them
        assert step.pop("retire_servers") == [f"{name}:80" for name in step["retire"]]
    return found


def test_all_at_once_is_one_step_that_retires_every_old_replica():
    for size in (0, 3, 7, -1):
        assert steps(3, 3, size) == [
            {
                "start": ["n1", "n2", "n3"],
                "servers": ["n1:80", "n2:80", "n3:80"],
                "retire": ["o1", "o2", "o3"],
                "last": True,
            }
        ]


def test_one_at_a_time_keeps_the_serving_count_and_one_extra_replica():
    plan = steps(3, 3, 1)
    assert [step["start"] for step in plan] == [["n1"], ["n2"], ["n3"]]
    assert [step["servers"] for step in plan] == [
        ["n1:80", "o1:80", "o2:80"],
        ["n1:80", "n2:80", "o1:80"],
        ["n1:80", "n2:80", "n3:80"],
    ]
    assert [step["retire"] for step in plan] == [["o3"], ["o2"], ["o1"]]
    assert [step["last"] for step in plan] == [False, False, True]
    # Running at any moment: the old ones not yet retired plus the new ones started.
    running = 3
    for step in plan:
        running += len(step["start"])
        assert running <= 4
        running -= len(step["retire"])
    assert running == 3


def test_every_old_replica_is_retired_exactly_once_whatever_the_counts():
    for new in range(1, 6):
        for old in range(0, 6):
            for size in range(0, 6):
                plan = steps(new, old, size)
                retired = [name for step in plan for name in step["retire"]]
                assert sorted(retired) == sorted(f"o{i}" for i in range(1, old + 1)), (new, old, size)
                assert [name for step in plan for name in step["start"]] == [f"n{i}" for i in range(1, new + 1)]
                assert plan[-1]["servers"] == [f"n{i}:80" for i in range(1, new + 1)]
                # The proxy always has a replica to send traffic to.
                assert all(step["servers"] for step in plan)


def test_the_plan_carries_its_steps():
    from ansible_collections.pydeploy.stack.plugins.filter.processes import web_rollout

    running = [web("ff-web-a-1", "a"), web("ff-web-a-2", "a")]
    plan = web_rollout(running, "ff", "a", "s2", 2, 8000, 1)
    assert [step["start"] for step in plan["batches"]] == [["ff-web-b-1"], ["ff-web-b-2"]]
    assert plan["batches"][0]["servers"] == ["ff-web-b-1:8000", "ff-web-a-1:8000"]
    assert plan["batches"][0]["retire"] == ["ff-web-a-2"]


def test_each_container_goes_to_the_replicas_module_with_what_sets_it_apart():
    processes = {
        **PROCESSES,
        "rq": {"command": "rq worker", "memory": "256m", "cpus": 0.5, "healthcheck": ["CMD", "rq", "info"]},
    }
    entries = process_replicas(process_containers(processes, "ff", "w1", ["w1"], "w1"))
    assert [entry["name"] for entry in entries] == ["ff-beat-1", "ff-rq-1", "ff-worker-1", "ff-worker-2"]
    beat, rq, worker = entries[0], entries[1], entries[2]
    assert beat == {
        "name": "ff-beat-1",
        "command": "celery -A celery_app beat",
        "env": {"PYDEPLOY_PROCESS": "beat"},
        "labels": {"pydeploy.process": "beat", "pydeploy.replica": "1"},
        "overlap": False,  # a singleton never runs twice at once
        # No capability, no privilege gained, a bounded number of processes: unless the process says otherwise.
        "security": {"cap_drop": ["ALL"], "no_new_privileges": True, "pids_limit": 1024},
    }
    assert worker["stop_timeout"] == 120 and "memory" not in worker and "healthcheck" not in worker
    assert rq["memory"] == "256m" and rq["cpus"] == 0.5
    assert rq["healthcheck"] == {"test": ["CMD", "rq", "info"]}
    # Every other process is replaced by starting the new container first, unless it says otherwise.
    assert worker["overlap"] is True and rq["overlap"] is True
    solo = process_replicas(process_containers({"sched": {"command": "x", "overlap": False}}, "ff", "w1", ["w1"], "w1"))
    assert solo[0]["overlap"] is False
    assert process_replicas([]) == []


def test_a_process_loosens_or_tightens_its_security_and_the_rest_stays_default():
    from ansible_collections.pydeploy.stack.plugins.filter.processes import process_security

    assert process_security(None) == {"cap_drop": ["ALL"], "no_new_privileges": True, "pids_limit": 1024}
    loosened = process_security({"cap_add": ["SETUID", "SETGID"], "no_new_privileges": False, "pids_limit": 0})
    assert loosened == {"cap_drop": ["ALL"], "cap_add": ["SETUID", "SETGID"]}
    tightened = process_security({"read_only": True, "tmpfs": ["/tmp:size=64m"]})
    assert tightened["read_only"] is True and tightened["tmpfs"] == ["/tmp:size=64m"]
    # Docker's default capabilities, for an image that needs them all.
    assert "cap_drop" not in process_security({"cap_drop": []})
