"""logs.yml and status.yml against a small stack of their own (tests/integration/inventories/logs_probe: two web
replicas of the bed's Python image behind nginx, a background process logging through the engine's local driver):
the last lines of both web replicas, each prefixed with host and container, in time order, nothing of the other
stacks on the engine, the secret the replicas print masked; since; following while requests come in, each line once;
the background process by its name; wrong arguments named; status.yml's limits, health and restarts."""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest
from conftest import teardown_stack, wait_for
from playbook import run_playbook
from proxy import https_request

INVENTORY = "tests/integration/inventories/logs_probe"
STACK = "logs_probe"
HTTPS_PORT = 10843
CANARY = "canary-logs-probe-5b7d0c19"
PREFIX = re.compile(rf"^localhost ({STACK}-[a-z0-9-]+) \| (.*)$")
# http.server's request lines: 127.0.0.1 - - [07/Dec/2026 07:35:26] "GET / HTTP/1.1" 200 -
REQUEST_TIME = re.compile(r"\[(\d{2})/(\w{3})/(\d{4}) (\d{2}:\d{2}:\d{2})\]")


@pytest.fixture(scope="module")
def deployed(bed, docker_client):
    teardown_stack(docker_client, STACK)
    run = run_playbook("deploy.yml", INVENTORY)
    assert run.rc == 0, run.explain()
    yield run
    teardown_stack(docker_client, STACK)


def logs(*args: str, **kwargs):
    """logs.yml as a user types it: -e key=value pairs."""
    argv = [arg for pair in args for arg in ("-e", pair)]
    return run_playbook("logs.yml", INVENTORY, args=argv, **kwargs)


def shown(run) -> list[str]:
    """Every line the run's 'Show the lines of <process>' tasks printed, in order."""
    lines = []
    for task, result in run.tasks():
        if task.startswith("Show the lines of ") and not result.get("skipped"):
            lines += result["msg"]
    return lines


def test_the_last_lines_of_both_web_replicas_prefixed_in_time_order(deployed, docker_client):
    webs = sorted(
        c.name
        for c in docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}"]})
        if "-web-" in c.name
    )
    assert len(webs) == 2
    # Each replica answers the engine's health check every 5 s: some lines each.
    wait_for(
        lambda: all(docker_client.containers.get(name).logs().count(b"GET / ") >= 3 for name in webs),
        timeout=60,
        what="requests in both replicas' logs",
    )
    run = logs("process=web", "lines=20")
    assert run.rc == 0, run.explain()
    lines = shown(run)
    assert 6 <= len(lines) <= 40, lines
    matches = [PREFIX.match(line) for line in lines]
    assert all(matches), [line for line, match in zip(lines, matches, strict=True) if not match]
    assert {match.group(1) for match in matches} == set(webs)
    for name in webs:  # at most 20 of each
        assert sum(match.group(1) == name for match in matches) <= 20
    stamps = [REQUEST_TIME.search(line) for line in lines]
    order = [time.strptime(" ".join(stamp.groups()), "%d %b %Y %H:%M:%S") for stamp in stamps if stamp]
    assert len(order) >= 6 and order == sorted(order), lines
    assert CANARY not in run.stdout + run.stderr
    assert "flight_hunter" not in "\n".join(lines)


def test_since_shows_the_secret_they_printed_masked(deployed):
    run = logs("process=web", "since=1h")
    assert run.rc == 0, run.explain()
    lines = shown(run)
    assert sum(line.endswith("| canary is ********") for line in lines) == 2, lines
    assert CANARY not in run.stdout + run.stderr


def test_following_shows_the_requests_that_come_in_each_once(deployed):
    markers = [f"/follow-{uuid.uuid4().hex[:8]}-{n}" for n in range(6)]
    result = {}

    def follow():
        result["run"] = logs("process=web", "lines=1", "follow=true", "follow_seconds=8", "logs_follow_window=3")

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(5)  # the play starts, then its first window opens
    for marker in markers:
        status, _, _ = https_request(STACK, HTTPS_PORT, marker)
        assert status == 404  # http.server has no such file; it logs the request all the same
        time.sleep(0.3)
    follower.join(timeout=180)
    run = result["run"]
    assert run.rc == 0, run.explain()
    windows = [task for task, _ in run.tasks() if task == "Read the lines on each host"]
    assert len(windows) == 3  # 8 s in windows of 3 s
    lines = shown(run)
    for marker in markers:
        assert sum(f"GET {marker} " in line for line in lines) == 1, (marker, lines)


def test_a_background_process_by_its_name(deployed, docker_client):
    (ticker,) = docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=ticker"]})
    assert ticker.attrs["HostConfig"]["LogConfig"]["Type"] == "local"
    run = logs("process=ticker", "lines=3")
    assert run.rc == 0, run.explain()
    lines = shown(run)
    assert len(lines) == 3 and all(re.fullmatch(rf"localhost {STACK}-ticker-1 \| tick \d+", line) for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give the process to show: -e process=web"),
        (("process=web", "lines=none"), "lines must be a whole number, at least 1 (got none)"),
        (("process=web", "follow=true", "follow_seconds=7200"), "follow_seconds must be a whole number of seconds"),
        (("process=job:nightly",), "job nightly is not in stack_jobs (none)"),
        (
            ("process=beat",),
            f"no container of process beat in stack {STACK} on any host; processes there: proxy, ticker, web",
        ),
        (("process=web", "since=yesterday"), "since: 'yesterday' is neither a duration back from now"),
    ],
)
def test_what_cannot_be_shown_is_named(deployed, args, message):
    run = logs(*args)
    assert run.rc != 0
    assert any(message in failure for failure in run.failure_messages()), run.explain()


def test_status_shows_each_processes_limits_health_and_restarts(deployed):
    report = run_playbook("status.yml", INVENTORY)
    assert report.rc == 0, report.explain()
    state = next(result for task, result in report.tasks() if task == "Show the state of this host")
    processes = state["msg"]["processes"]
    assert sorted(processes) == ["proxy", "ticker", "web"]
    web = processes["web"]
    assert (web["running"], web["other"]) == (2, 0)
    assert web["limits"].startswith("memory 128 MiB, cpus unlimited, pids "), web
    assert web["health"] in ("2 healthy", "1 healthy, 1 starting", "2 starting"), web
    assert (web["restarts"], web["restart_count"], web["oom"], web["oom_killed"]) == ("none", 0, "none", False)
    assert processes["ticker"]["health"] == "1 without a health check"
    assert processes["proxy"]["limits"].startswith("memory unlimited, ")
