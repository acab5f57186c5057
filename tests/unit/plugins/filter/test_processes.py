from __future__ import annotations

from ansible_collections.pydeploy.stack.plugins.filter.processes import process_containers, process_surplus

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
