"""status.yml's lines per process (process_status) and logs.yml's merge of the hosts' lines (log_merge)."""

from __future__ import annotations

from ansible_collections.pydeploy.stack.plugins.filter.status import log_merge, process_status

NOW = "2026-12-07T08:00:00.000000000Z"
HOUR_AGO = "2026-12-07T07:00:00.000000000Z"


def container(name, process, *, state="running", health=None, restarts=0, started="2026-12-07T06:00:00Z",
              finished="0001-01-01T00:00:00Z", oom=False, memory=0, nano_cpus=0, pids=None, version=None,
              **labels):  # fmt: skip
    status = {"Status": state, "OOMKilled": oom, "StartedAt": started, "FinishedAt": finished, "ExitCode": 0}
    if health:
        status["Health"] = {"Status": health, "FailingStreak": 0}
    all_labels = {"pydeploy.stack": "fh", "pydeploy.process": process, **labels}
    if version:
        all_labels["pydeploy.version"] = version
    return {
        "Id": f"id-{name}",
        "Name": name,
        "RestartCount": restarts,
        "State": status,
        "Config": {"Labels": all_labels, "Image": "img"},
        "HostConfig": {"Memory": memory, "NanoCpus": nano_cpus, "CpuQuota": 0, "CpuPeriod": 0, "PidsLimit": pids},
    }


def state(containers, events=(), complete=True, oldest=""):
    return {
        "containers": containers,
        "events": list(events),
        "events_since": HOUR_AGO,
        "events_complete": complete,
        "events_oldest": oldest,
        "now": NOW,
    }


def event(action, name, at, exit_code=None):
    entry = {"time": at, "action": action, "id": f"id-{name}", "name": name}
    if exit_code is not None:
        entry["exit_code"] = exit_code
    return entry


def test_a_quiet_process_keeps_its_counts_and_says_none():
    report = process_status(
        state(
            [
                container("fh-web-a-1", "web", health="healthy", memory=512 << 20, nano_cpus=500_000_000, version="v2"),
                container("fh-web-a-2", "web", health="healthy", memory=512 << 20, nano_cpus=500_000_000, version="v2"),
            ]
        )
    )
    assert report == {
        "web": {
            "running": 2,
            "other": 0,
            "unhealthy": 0,
            "versions": ["v2"],
            "health": "2 healthy",
            "limits": "memory 512 MiB, cpus 0.5, pids unlimited",
            "restart_count": 0,
            "restarts_recent": 0,
            "restarts": "none",
            "oom_killed": False,
            "last_oom_kill": "",
            "oom": "none",
        }
    }


def test_an_oom_killed_process_restarted_by_the_engine():
    hog = container(
        "fh-hog-1", "hog", restarts=1, started="2026-12-07T07:50:01.5Z", finished="2026-12-07T07:50:00.9Z", oom=True,
        memory=64 << 20, pids=128,
    )  # fmt: skip
    events = [
        event("start", "fh-hog-1", "2026-12-07T07:49:58.000000000Z"),
        event("oom", "fh-hog-1", "2026-12-07T07:50:00.800000000Z"),
        event("die", "fh-hog-1", "2026-12-07T07:50:00.900000000Z", exit_code=137),
        event("start", "fh-hog-1", "2026-12-07T07:50:01.500000000Z"),
    ]
    entry = process_status(state([hog], events))["hog"]
    assert entry["limits"] == "memory 64 MiB, cpus unlimited, pids 128"
    assert entry["health"] == "1 without a health check"
    assert (entry["restart_count"], entry["restarts_recent"]) == (1, 1)
    assert entry["restarts"] == (
        "1 by the engine (RestartCount), 1 in the last hour (its die and start events),"
        " the last at 2026-12-07T07:50:01Z, 9 min ago"
    )
    assert entry["oom_killed"] is True
    assert entry["last_oom_kill"] == "2026-12-07T07:50:00Z"
    assert entry["oom"] == "OOM-killed at 2026-12-07T07:50:00Z (fh-hog-1, its last exit); 1 OOM kill in the last hour"


def test_forgotten_events_make_the_recent_count_a_lower_bound_and_say_how_far_they_go():
    worker = container("fh-worker-1", "worker", restarts=5, started="2026-12-07T07:40:00Z")
    report = process_status(state([worker], complete=False, oldest="2026-12-07T07:58:00Z"))["worker"]
    assert report["restarts_recent"] == 1  # its last start, after a restart, is within the hour
    assert report["restarts"] == (
        "5 by the engine (RestartCount), at least 1 in the last hour (its die and start events;"
        " the engine remembers its events of the last 2 min only), the last at 2026-12-07T07:40:00Z, 20 min ago"
    )


def test_restarts_before_the_window_count_in_all_but_not_as_recent():
    old = container("fh-worker-1", "worker", restarts=2, started="2026-12-07T05:00:00Z")
    entry = process_status(state([old]))["worker"]
    assert (entry["restart_count"], entry["restarts_recent"]) == (2, 0)
    assert entry["restarts"].startswith("2 by the engine (RestartCount), 0 in the last hour")


def test_an_oom_kill_inside_a_container_that_kept_running():
    web = container("fh-web-a-1", "web", health="healthy")
    entry = process_status(state([web], [event("oom", "fh-web-a-1", "2026-12-07T07:30:00.000000000Z")]))["web"]
    assert entry["oom_killed"] is False
    assert entry["oom"] == (
        "an OOM kill in fh-web-a-1 at 2026-12-07T07:30:00Z (the container kept running); 1 OOM kill in the last hour"
    )


def test_health_and_limits_that_differ_between_replicas_are_all_shown():
    report = process_status(
        state(
            [
                container("fh-web-a-1", "web", health="healthy", memory=256 << 20),
                container("fh-web-a-2", "web", health="unhealthy", memory=1536 << 20),
                container("fh-web-a-3", "web", state="exited"),
            ]
        )
    )["web"]
    assert (report["running"], report["other"], report["unhealthy"]) == (2, 1, 1)
    assert report["health"] == "1 healthy, 1 unhealthy, 1 without a health check"
    assert report["limits"].startswith("memory 256 MiB / 1.5 GiB / unlimited, ")


def test_cpus_from_a_quota_and_one_off_containers_left_out():
    quota = container("fh-beat-1", "beat")
    quota["HostConfig"].update(CpuQuota=150000, CpuPeriod=100000)
    oneoff = container("fh-run", "web", **{"pydeploy.oneoff": "run"})
    report = process_status(state([quota, oneoff]))
    assert list(report) == ["beat"]
    assert "cpus 1.5," in report["beat"]["limits"]


def test_no_state_is_no_process():
    assert process_status(None) == {}
    assert process_status({"containers": []}) == {}


def read(host_entries, sources, unreadable=(), processes=("web",)):
    return {
        "entries": [{"time": at, "source": source, "text": text} for at, source, text in host_entries],
        "sources": [{"name": name, "id": ident, "state": "running", "readable": True} for name, ident in sources],
        "unreadable": list(unreadable),
        "processes": list(processes),
        "dropped": 0,
    }


def test_hosts_lines_merge_in_the_engines_time_order():
    merged = log_merge(
        {
            "host1": read(
                [
                    ("2026-12-07T07:00:00.000000001Z", "fh-web-a-1", "one"),
                    ("2026-12-07T07:00:02Z", "fh-web-a-1", "three"),
                ],
                [("fh-web-a-1", "id1")],
            ),
            "host2": read(
                [("2026-12-07T07:00:01.5Z", "fh-web-a-1", "two"), ("2026-12-07T07:00:02Z", "fh-web-a-2", "three too")],
                [("fh-web-a-1", "id2"), ("fh-web-a-2", "id3")],
                processes=("web", "worker"),
            ),
        }
    )
    assert merged["lines"] == [
        "host1 fh-web-a-1 | one",
        "host2 fh-web-a-1 | two",
        "host1 fh-web-a-1 | three",
        "host2 fh-web-a-2 | three too",
    ]
    assert merged["sources"] == ["host1 fh-web-a-1", "host2 fh-web-a-1", "host2 fh-web-a-2"]
    assert merged["processes"] == ["web", "worker"]


def test_a_container_two_inventory_names_share_is_shown_once():
    same = read([("2026-12-07T07:00:00Z", "fh-worker-1", "tick")], [("fh-worker-1", "id1")])
    merged = log_merge({"host1": same, "twin": same})
    assert merged["lines"] == ["host1 fh-worker-1 | tick"]
    assert merged["sources"] == ["host1 fh-worker-1"]


def test_unreadable_sources_skipped_and_failed_hosts():
    problem = {"name": "fh-web-a-1", "log_driver": "none", "reason": "its log driver is none"}
    result = read([], [], unreadable=[problem])
    result["sources"] = [{"name": "fh-web-a-1", "id": "id1", "state": "running", "readable": False}]
    merged = log_merge({"host1": result, "host2": {"skipped": True}, "host3": {"failed": True, "msg": "x"}})
    assert merged["unreadable"] == ["host1 fh-web-a-1: its log driver is none"]
    assert merged["sources"] == []
    assert merged["lines"] == []
