"""The container_logs and container_state modules on the bed's engine, through their own tasks as a user runs them:
one process's lines of one stack (nothing of a stack whose name starts the same, nor of a one-off container), the
env file's secret masked, in check mode as for real, since and lines, a follow window and the next one resuming
without a gap or a line twice, a job runner's log file, containers whose log driver keeps nothing the engine can
read back named with the reason, arguments checked; and a process given 64 MiB that allocates more, OOM-killed,
restarted by the engine and shown so by container_state and status.yml."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import docker
import pytest
from conftest import OOM_HOG, TEST_LABEL, free_port, wait_for
from playbook import module_task, run_playbook

CANARY = "canary-logs-7c2e91"
# Says its secret once, then counts: "<tag> <n>" every 0.2 s.
COUNTER = """
import os, sys, time
print('token is', os.environ['API_TOKEN'], flush=True)
print('to stderr', file=sys.stderr, flush=True)
n = 0
while True:
    n += 1
    print(os.environ['TAG'], n, flush=True)
    time.sleep(0.2)
"""


def logs_task(tmp_path, args: dict, *, check: bool = False):
    return module_task(tmp_path, "container_logs", args, check=check)


@pytest.fixture
def stack(tmp_path, run_container, bed_image):
    """Two web containers of a stack of the test's own, counting; its env file; and around them a web container of
    a stack whose name starts the same, a one-off container of the stack and a worker of it."""
    name = f"lt{uuid.uuid4().hex[:8]}"
    env_file = tmp_path / "app.env"
    env_file.write_text(f"# the app's secrets\nAPI_TOKEN={CANARY}\n")
    env_file.chmod(0o600)
    image = bed_image("python")

    def start(container_name: str, tag: str, **labels):
        container, _ = run_container(
            image,
            command=["python", "-c", COUNTER],
            name=container_name,
            environment={"API_TOKEN": CANARY, "TAG": tag},
            labels={"pydeploy.stack": name, "pydeploy.process": "web", **labels},
        )
        return container

    webs = [start(f"{name}-web-a-1", "web1"), start(f"{name}-web-a-2", "web2")]
    start(f"{name}x-web-a-1", "other-stack", **{"pydeploy.stack": f"{name}x"})
    start(f"{name}-run", "oneoff", **{"pydeploy.oneoff": "run"})
    start(f"{name}-worker-1", "worker", **{"pydeploy.process": "worker"})
    for web in webs:
        wait_for(lambda web=web: b"web" in web.logs() and b" 5\n" in web.logs(), timeout=30, what="the counters")
    return {"name": name, "env_file": str(env_file), "webs": webs}


def counts(entries: list, source: str) -> list[int]:
    return [int(e["text"].split()[1]) for e in entries if e["source"] == source and re.match(r"web\d \d+$", e["text"])]


def test_one_process_of_one_stack_masked_check_and_real(tmp_path, stack):
    name = stack["name"]
    args = {"stack": name, "process": "web", "lines": 4, "env_file": stack["env_file"]}
    for check in (True, False):
        rc, result, output = logs_task(tmp_path, args, check=check)
        assert rc == 0 and result["changed"] is False, output
        assert [s["name"] for s in result["sources"]] == [f"{name}-web-a-1", f"{name}-web-a-2"]
        assert result["processes"] == ["web", "worker"]  # the one-off container is no process
        assert {e["source"] for e in result["entries"]} == {f"{name}-web-a-1", f"{name}-web-a-2"}
        assert len(result["entries"]) == 8
        times = [e["time"] for e in result["entries"]]
        assert times == sorted(times) and all(re.fullmatch(r"\S+T\S+\.\d{9}Z", t) for t in times)
        assert result["lines"] == [f"{e['source']} | {e['text']}" for e in result["entries"]]
        assert result["unreadable"] == [] and result["dropped"] == 0
        assert set(result["resume"]) == {f"{name}-web-a-1", f"{name}-web-a-2"}

    # From the start: the secret each printed is masked; stderr is there too; nothing of the others.
    rc, result, output = logs_task(tmp_path, {**args, "lines": None, "since": "10m"})
    assert rc == 0, output
    texts = [e["text"] for e in result["entries"]]
    assert texts.count("token is ********") == 2 and texts.count("to stderr") == 2
    assert CANARY not in output
    assert not [t for t in texts if "other-stack" in t or "oneoff" in t or "worker" in t]
    for source in (f"{name}-web-a-1", f"{name}-web-a-2"):
        numbers = counts(result["entries"], source)
        assert numbers == list(range(1, len(numbers) + 1))

    # An RFC 3339 time and an end: only what lies between.
    middle = result["entries"][len(result["entries"]) // 2]["time"]
    rc, after, _ = logs_task(tmp_path, {**args, "lines": None, "since": middle, "until": middle})
    assert rc == 0 and [e["time"] for e in after["entries"]] == [middle], after["entries"]


def test_following_a_window_then_the_next_without_a_gap_or_a_line_twice(tmp_path, stack):
    name = stack["name"]
    args = {"stack": name, "process": "web", "lines": 1, "follow_seconds": 2, "env_file": stack["env_file"]}
    began = time.monotonic()
    rc, first, output = logs_task(tmp_path, args)
    assert rc == 0, output
    assert time.monotonic() - began >= 2
    rc, second, output = logs_task(
        tmp_path,
        {**args, "lines": None, "since": first["read_started"], "resume": first["resume"]},
    )
    assert rc == 0, output
    for source in (f"{name}-web-a-1", f"{name}-web-a-2"):
        numbers = counts(first["entries"], source) + counts(second["entries"], source)
        assert len(counts(first["entries"], source)) >= 5  # a line every 0.2 s while following
        assert len(counts(second["entries"], source)) >= 5
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers


def test_a_job_runners_log_file(tmp_path):
    log = tmp_path / "fetch_prices.log"
    log.write_text(
        "2026-01-05T03:00:01Z runner| start fetch_prices: image app:v2\n"
        f"2026-01-05T03:00:02Z stdout| fetched with token {CANARY}\n"
        "2026-01-05T03:00:03Z runner| end fetch_prices: succeeded, exit code 0, 2 s\n"
    )
    env_file = tmp_path / "app.env"
    env_file.write_text(f"API_TOKEN={CANARY}\n")
    args = {
        "stack": "nostack",
        "files": [{"path": str(log)}, {"path": str(tmp_path / "absent.log")}],
        "lines": 2,
        "env_file": str(env_file),
    }
    rc, result, output = logs_task(tmp_path, args)
    assert rc == 0, output
    assert result["lines"] == [
        "fetch_prices | stdout| fetched with token ********",
        "fetch_prices | runner| end fetch_prices: succeeded, exit code 0, 2 s",
    ]
    assert [(s["name"], s["state"]) for s in result["sources"]] == [("fetch_prices", "present"), ("absent", "absent")]

    def append():
        time.sleep(1)
        with log.open("a") as handle:
            handle.write("2026-01-05T03:10:01Z runner| start fetch_prices: image app:v2\n")

    writer = threading.Thread(target=append)
    writer.start()
    rc, followed, output = logs_task(
        tmp_path, {**args, "lines": None, "follow_seconds": 3, "resume": result["resume"], "files": args["files"][:1]}
    )
    writer.join()
    assert rc == 0, output
    assert followed["lines"] == ["fetch_prices | runner| start fetch_prices: image app:v2"]
    assert followed["entries"][0]["time"] == "2026-01-05T03:10:01.000000000Z"


def test_log_drivers_that_keep_nothing_to_read_are_named(tmp_path, run_container, bed_image):
    name = f"lt{uuid.uuid4().hex[:8]}"
    syslog = {"syslog-address": f"udp://127.0.0.1:{free_port()}"}
    for suffix, log_config in (
        ("none", docker.types.LogConfig(type="none")),
        ("syslog-nocache", docker.types.LogConfig(type="syslog", config={**syslog, "cache-disabled": "true"})),
        ("syslog", docker.types.LogConfig(type="syslog", config=syslog)),
    ):
        run_container(
            bed_image("python"),
            command=["python", "-c", "print('hello', flush=True); import time; time.sleep(600)"],
            name=f"{name}-web-{suffix}",
            labels={"pydeploy.stack": name, "pydeploy.process": "web"},
            log_config=log_config,
        )
    time.sleep(2)
    rc, result, output = logs_task(tmp_path, {"stack": name, "process": "web"})
    assert rc == 0, output
    unreadable = {u["name"]: u for u in result["unreadable"]}
    assert sorted(unreadable) == [f"{name}-web-none", f"{name}-web-syslog-nocache"]
    assert "log driver is none" in unreadable[f"{name}-web-none"]["reason"]
    assert "syslog" in unreadable[f"{name}-web-syslog-nocache"]["reason"]
    assert "cache-disabled" in unreadable[f"{name}-web-syslog-nocache"]["reason"]
    # With the engine's local copy (its default since 20.10), syslog's lines read back.
    assert result["lines"] == [f"{name}-web-syslog | hello"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"stack": "x"}, "give the process whose containers to read, or files"),
        ({"stack": "x", "process": "web", "lines": 0}, "lines must be at least 1, got 0"),
        ({"stack": "x", "process": "web", "follow_seconds": 3601}, "follow_seconds must be between 0 and 3600"),
        ({"stack": "x", "process": "web", "since": "yesterday"}, "since: 'yesterday' is neither a duration"),
        ({"stack": "x", "process": "web", "since": "5m", "until": "10m"}, "until (10m) is before since (5m)"),
        ({"stack": "x", "process": "web", "resume": {"a": "soon"}}, "resume[a]: 'soon' is neither"),
        ({"stack": "x", "process": "web", "max_lines": 0}, "max_lines must be at least 1"),
    ],
)
def test_arguments_are_checked_before_anything_is_read(tmp_path, args, message):
    rc, result, _ = logs_task(tmp_path, args)
    assert rc != 0 and message in result["msg"], result


def test_a_process_over_its_memory_limit_is_oom_killed_restarted_and_shown_so(tmp_path, docker_client, bed_image):
    stack = f"lt{uuid.uuid4().hex[:8]}"
    name = f"{stack}-hog-1"
    args = {
        "names": [name],
        "image": bed_image("python"),
        "command": ["python", "-c", OOM_HOG],
        "memory": "64m",
        "restart_policy": "unless-stopped",
        "labels": {TEST_LABEL: "1", "pydeploy.stack": stack, "pydeploy.process": "hog"},
    }
    try:
        rc, _, output = module_task(tmp_path, "replicas", args)
        assert rc == 0, output

        def restarted():
            attrs = docker_client.api.inspect_container(name)
            return attrs if attrs["RestartCount"] >= 1 and attrs["State"]["Running"] else None

        attrs = wait_for(restarted, timeout=60, what="the hog to be OOM-killed and restarted")
        assert attrs["State"]["OOMKilled"] is True and attrs["HostConfig"]["Memory"] == 64 << 20

        rc, state, output = module_task(tmp_path, "container_state", {"stack": stack}, check=True)
        assert rc == 0 and state["changed"] is False, output
        assert [c["Name"] for c in state["containers"]] == [name]
        assert state["containers"][0]["State"]["OOMKilled"] is True
        actions = [e["action"] for e in state["events"]]
        if state["events_complete"]:  # the engine still remembers the start of the test
            assert actions[actions.index("oom") :][:3] == ["oom", "die", "start"], actions
            assert [e.get("exit_code") for e in state["events"] if e["action"] == "die"] == [137]

        inventory = tmp_path / "hosts.yml"
        inventory.write_text(
            json.dumps(
                {
                    "all": {
                        "hosts": {
                            "localhost": {
                                "ansible_connection": "local",
                                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                            }
                        },
                        "vars": {
                            "stack_name": stack,
                            "stack_image": "127.0.0.1:5000/library/python",
                            "stack_version": "3.11-slim",
                            "stack_processes": {
                                "web": {"command": "python -m http.server 8000", "port": 8000},
                                "hog": {"command": "python -c pass", "memory": "64m"},
                            },
                        },
                    }
                }
            )
        )
        report = run_playbook("status.yml", str(inventory))
        assert report.rc == 0, report.explain()
        shown = next(result for task, result in report.tasks() if task == "Show the state of this host")
        hog = shown["msg"]["processes"]["hog"]
        assert hog["running"] == 1 and hog["oom_killed"] is True, hog
        assert hog["restart_count"] >= 1 and hog["restarts_recent"] >= 1, hog
        assert hog["limits"].startswith("memory 64 MiB, "), hog
        assert re.match(rf"OOM-killed at \S+Z \({name}, its last exit\)", hog["oom"]), hog
        assert hog["restarts"].startswith(f"{hog['restart_count']} by the engine (RestartCount), "), hog
        finished = attrs["State"]["FinishedAt"][:19] + "Z"
        assert hog["last_oom_kill"] == finished
        returned = next(
            result["ansible_stats"]["data"]["pydeploy_status"]
            for _task, result in report.tasks()
            if "pydeploy_status" in (result.get("ansible_stats") or {}).get("data", {})
        )
        assert returned["localhost"]["processes"]["hog"] == hog
    finally:
        module_task(tmp_path, "replicas", {"names": [name], "state": "absent"})
