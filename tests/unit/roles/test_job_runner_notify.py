"""The job runner's notifications (roles/cron/files/pydeploy-job with the collection's module_utils/_notify.py,
as in a checkout): a failed, timed-out or unrunnable run sends one event to a webhook receiver on loopback,
with the job's name, exit code and the last lines of its log; a failing webhook changes nothing of the run but
a line in its log; the URL is never written. The restart check against a fake docker (ps, inspect, events),
and the rule it keeps: once per container per window."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest
from test_job_runner import FAKE_DOCKER, Stack, python, runner
from webhook_receiver import Receiver

TOKEN = "T0KEN-canary-runner-71d0"
HOUR = 3600.0


@pytest.fixture
def stack(tmp_path):
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    config = {
        "stack": "flight_hunter",
        "image": "registry.test/pydeploy/flight-hunter:v2",
        "version": "v2",
        "state_dir": str(tmp_path / "state" / "jobs"),
        "log_dir": str(tmp_path / "log"),
        "docker": str(docker),
        "notify": {"file": str(tmp_path / "notify.json")},
        "jobs": {
            "fetch_prices": {
                "command": python("""
                    import sys
                    print("fetched 0 prices")
                    print("provider answered 503", file=sys.stderr)
                    sys.exit(3)
                """),
                "timeout": 600,
                "stop_grace_period": 2,
            },
        },
    }
    return Stack(tmp_path, config)


def hooks(stack, *webhooks, **settings):
    path = stack.root / "notify.json"
    path.write_text(json.dumps({"stack": "flight_hunter", "host": "db1", "webhooks": list(webhooks), **settings}))
    path.chmod(0o600)


def written(stack) -> str:
    """Everything the runner wrote: the job's log and status files."""
    files = [*(stack.root / "log").glob("*"), *(stack.root / "state").rglob("*.json")]
    return "\n".join(path.read_text() for path in files if path.is_file())


def test_a_failing_job_sends_one_event_with_its_exit_code_and_log_tail(stack):
    with Receiver() as receiver:
        hooks(stack, {"url": receiver.url(TOKEN)})
        done = stack.run()
        bodies = receiver.wait(1, timeout=2)
    assert done.returncode == 3, done.stderr
    [body] = bodies
    assert body["event"] == "job_failed" and body["status"] == "failed" and body["job"] == "fetch_prices"
    assert body["stack"] == "flight_hunter" and body["host"] == "db1"
    assert body["message"] == "job fetch_prices failed with exit code 3"
    assert body["cause"] == "provider answered 503"
    details = body["details"]
    assert details["exit_code"] == 3 and details["version"] == "v2" and details["log"].endswith("fetch_prices.log")
    assert "stdout| fetched 0 prices" in details["log_tail"] and "stderr| provider answered 503" in details["log_tail"]
    assert f"notified http://127.0.0.1:{receiver.port}/… of job_failed (json)" in stack.log
    assert TOKEN not in written(stack) and TOKEN not in done.stdout + done.stderr


def test_a_job_that_succeeds_sends_nothing(stack):
    stack.job(command=python("print('ok')"))
    with Receiver() as receiver:
        hooks(stack, {"url": receiver.url(TOKEN)})
        assert stack.run().returncode == 0
    assert receiver.requests == []


def test_a_timed_out_job_is_sent_as_timed_out(stack):
    stack.job(command=python("import time; time.sleep(60)"), timeout=1)
    with Receiver() as receiver:
        hooks(stack, {"url": receiver.url(TOKEN), "format": "slack"})
        done = stack.run()
        [body] = receiver.wait(1, timeout=2)
    assert done.returncode == 124
    assert body["text"].startswith(":x: *flight_hunter* job fetch_prices timed out after 1 s on db1")


def test_a_webhook_answering_500_leaves_the_run_as_it_was_and_says_so_in_its_log(stack):
    with Receiver(status=500) as receiver:
        hooks(stack, {"url": receiver.url(TOKEN), "name": "incidents"})
        done = stack.run()
        assert len(receiver.requests) == 2
    assert done.returncode == 3 and stack.status["state"] == "failed" and stack.status["exit_code"] == 3
    assert "runner| notification to incidents failed after 2 attempt(s): HTTP 500 Internal Server Error" in stack.log
    assert TOKEN not in written(stack)


def test_a_refused_webhook_leaves_the_run_as_it_was(stack):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hooks(stack, {"url": f"http://127.0.0.1:{port}/hooks/{TOKEN}"}, timeout=1)
    done = stack.run()
    assert done.returncode == 3
    assert f"notification to http://127.0.0.1:{port}/… failed after 2 attempt(s): " in stack.log
    assert TOKEN not in written(stack)


def test_a_webhook_sent_only_the_events_it_wants(stack):
    with Receiver() as receiver:
        hooks(stack, {"url": receiver.url(TOKEN), "events": ["backup_failed", "deploy_failed"]})
        assert stack.run().returncode == 3
    assert receiver.requests == []


def test_missing_webhooks_file_is_a_line_in_the_log_not_a_failure(stack):
    done = stack.run()
    assert done.returncode == 3
    assert "runner| job_failed not notified: cannot read " in stack.log


def test_a_failed_backup_job_sends_backup_failed_with_the_modules_message(stack):
    result_writer = """
        import json, os, sys
        with open(os.environ["PYDEPLOY_JOB_RESULT"], "w") as handle:
            json.dump({"failed": True, "msg": "cannot reach S3 at http://127.0.0.1:1: connection refused"}, handle)
        sys.exit(1)
    """
    stack.job(host=True, command=python(result_writer))
    stack.config["notify"]["event"] = "backup_failed"
    with Receiver() as receiver:
        hooks(stack, {"url": receiver.url(TOKEN)})
        assert stack.run().returncode == 1
        [body] = receiver.wait(1, timeout=2)
    assert body["event"] == "backup_failed" and body["job"] == "fetch_prices"
    assert body["message"] == "backup job fetch_prices failed with exit code 1"
    assert body["cause"] == "cannot reach S3 at http://127.0.0.1:1: connection refused"


def test_a_recorded_failed_run_is_sent_too(stack):
    stack.config["notify"]["event"] = "backup_failed"
    with Receiver() as receiver:
        hooks(stack, {"url": receiver.url(TOKEN)})
        stack.write()
        made = {"state": "failed", "exit_code": 1, "by": "backup.yml", "result": {"msg": "bucket is gone"}}
        done = subprocess.run(
            [sys.executable, str(runner.__file__), str(stack.path), "fetch_prices", "--record"],
            input=json.dumps(made),
            capture_output=True,
            text=True,
            check=False,
        )
        [body] = receiver.wait(1, timeout=2)
    assert done.returncode == 0, done.stderr
    assert (
        body["event"] == "backup_failed" and body["cause"] == "bucket is gone" and body["details"]["by"] == "backup.yml"
    )


# --------------------------------------------------------------------------- the restart check, its rule


def container(cid="c1", count=0, created=0.0, oom=False, finished="", process="worker"):
    return {
        "id": cid,
        "name": f"fh-{process}-1",
        "process": process,
        "version": "v2",
        "restart_count": count,
        "oom_killed": oom,
        "finished_at": finished,
        "status": "restarting",
        "exit_code": 1,
        "created": created,
    }


NOW = 1_000_000.0


def test_a_new_container_restarting_more_than_n_times_is_due():
    findings, _ = runner.restart_findings([container(count=4, created=NOW - 60)], set(), {}, NOW, threshold=3)
    assert [(f["name"], f["process"], f["restarts"]) for f in findings] == [("fh-worker-1", "worker", 4)]
    findings, _ = runner.restart_findings([container(count=3, created=NOW - 60)], set(), {}, NOW, threshold=3)
    assert findings == []


def test_a_container_is_notified_of_once_per_window():
    state = {}
    sent = []
    for minute in range(0, 125, 5):  # a check every five minutes, the count climbing all along
        now = NOW + minute * 60
        findings, state = runner.restart_findings(
            [container(count=10 + minute, created=NOW - 60)], set(), state, now, threshold=3, window=HOUR
        )
        sent += [minute for _ in findings]
    assert sent == [0, 60, 120]


def test_restarts_before_the_window_do_not_count():
    old = NOW - 10 * HOUR
    state = {"containers": {"c1": {"samples": [[NOW - HOUR - 300, 50], [NOW - 600, 51]], "notified_at": None}}}
    findings, state = runner.restart_findings([container(count=53, created=old)], set(), state, NOW, threshold=3)
    assert findings == []  # 3 since the sample before the window
    findings, _ = runner.restart_findings([container(count=54, created=old)], set(), state, NOW + 60, threshold=3)
    assert [f["restarts"] for f in findings] == [4]


def test_an_old_container_first_seen_now_counts_from_now():
    findings, state = runner.restart_findings([container(count=40, created=NOW - 5 * HOUR)], set(), {}, NOW)
    assert findings == []
    findings, _ = runner.restart_findings([container(count=44, created=NOW - 5 * HOUR)], set(), state, NOW + 300)
    assert [f["restarts"] for f in findings] == [4]


def test_the_state_keeps_only_the_containers_there_and_bounded_samples():
    state = {"containers": {"gone": {"samples": [[NOW, 1]]}}}
    _, state = runner.restart_findings([container()], set(), state, NOW)
    assert list(state["containers"]) == ["c1"]
    for minute in range(1000):
        _, state = runner.restart_findings([container(count=minute)], set(), state, NOW + minute * 3, window=1e9)
    assert len(state["containers"]["c1"]["samples"]) == runner.RESTART_SAMPLES


def test_an_oom_kill_is_due_once_per_exit():
    oomed = container(oom=True, finished="2025-12-07T07:00:00.1Z", created=NOW - 5 * HOUR)
    findings, state = runner.restart_findings([oomed], set(), {}, NOW)
    assert [f["oom"] for f in findings] == [True]
    # The same exit, after the window: not again.
    findings, state = runner.restart_findings([oomed], set(), state, NOW + 2 * HOUR)
    assert findings == []
    # An oom event of the engine's since the last check (the container restarted since, its flag reset).
    findings, _ = runner.restart_findings([container(created=NOW - 5 * HOUR)], {"c1"}, state, NOW + 3 * HOUR)
    assert [f["oom"] for f in findings] == [True]


FAKE_ENGINE = """\
#!{python}
import json, sys
from pathlib import Path

here = Path(__file__).parent
args = sys.argv[1:]
with open(here / "engine-calls.jsonl", "a") as calls:
    calls.write(json.dumps(args) + "\\n")
world = json.loads((here / "world.json").read_text())
if args[0] == "ps":
    print("\\n".join(item["Id"] for item in world["containers"]))
elif args[0] == "inspect":
    print(json.dumps([item for item in world["containers"] if item["Id"] in args[1:]]))
elif args[0] == "events":
    for event in world.get("events", []):
        print(json.dumps(event))
"""


def inspected(cid, name, process, count, oom=False, created="2025-12-07T07:00:00.123456789Z"):
    return {
        "Id": cid,
        "Name": f"/{name}",
        "Created": created,
        "RestartCount": count,
        "State": {"Status": "restarting", "OOMKilled": oom, "ExitCode": 1, "FinishedAt": "2025-12-07T07:01:00Z"},
        "Config": {"Labels": {"pydeploy.stack": "fh", "pydeploy.process": process, "pydeploy.version": "v2"}},
    }


@pytest.fixture
def engine(tmp_path):
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(FAKE_ENGINE.format(python=sys.executable))
    docker.chmod(0o755)
    world = tmp_path / "bin" / "world.json"

    def check(receiver, containers, events=(), threshold=3):
        world.write_text(json.dumps({"containers": containers, "events": list(events)}))
        config = {
            "stack": "fh",
            "host": "web1",
            "webhooks": [{"url": receiver.url(TOKEN)}],
            "state_dir": str(tmp_path / "state"),
            "log_dir": str(tmp_path / "log"),
            "docker": str(docker),
            "restarts": {"threshold": threshold, "window": HOUR},
        }
        path = tmp_path / "notify.json"
        path.write_text(json.dumps(config))
        done = subprocess.run(
            [sys.executable, str(runner.__file__), str(path), "--check-restarts"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return check


def test_the_check_notifies_once_of_a_crashing_container_with_its_process(engine, tmp_path):
    created = runner.datetime.now(runner.UTC).strftime("%Y-%m-%dT%H:%M:%S.000000001Z")
    crashing = inspected("a" * 64, "fh-worker-1", "worker", 5, created=created)
    calm = inspected("b" * 64, "fh-web-1", "web", 0, created=created)
    with Receiver() as receiver:
        first = engine(receiver, [crashing, calm])
        second = engine(receiver, [crashing, calm])
        bodies = receiver.wait(1, timeout=2)
    assert first == {
        "containers": 2,
        "notified": [{"name": "fh-worker-1", "process": "worker", "restarts": 5, "oom": False}],
    }
    assert second["notified"] == []
    [body] = bodies
    assert body["event"] == "container_restarting" and body["process"] == "worker" and body["status"] == "restarting"
    assert body["message"] == "container fh-worker-1 of process worker restarted 5 times in the last 60 minutes"
    assert body["details"]["restart_count"] == 5 and body["details"]["threshold"] == 3 and body["host"] == "web1"
    log = (tmp_path / "log" / "check-restarts.log").read_text()
    assert "notified http://127.0.0.1:" in log and TOKEN not in log
    assert TOKEN not in (tmp_path / "state" / "check-restarts.json").read_text()


def test_the_check_names_an_oom_kill(engine):
    oomed = inspected("c" * 64, "fh-web-2", "web", 1, oom=True)
    with Receiver() as receiver:
        found = engine(receiver, [oomed])
        [body] = receiver.wait(1, timeout=2)
    assert found["notified"] == [{"name": "fh-web-2", "process": "web", "restarts": 0, "oom": True}]
    assert body["status"] == "oom_killed" and body["details"]["oom_killed"] is True
    assert body["message"] == "container fh-web-2 of process web was killed for lack of memory (OOM)"


def test_the_check_reads_oom_events_and_leaves_the_jobs_one_offs_out(engine, tmp_path):
    web = inspected("d" * 64, "fh-web-3", "web", 0)
    job = inspected("e" * 64, "fh-job-nightly-1", "job", 9, oom=True)
    with Receiver() as receiver:
        found = engine(receiver, [web, job], events=[{"id": "d" * 64, "status": "oom", "Action": "oom"}])
    assert found["containers"] == 1 and [n["name"] for n in found["notified"]] == ["fh-web-3"]
    calls = [json.loads(line) for line in (tmp_path / "bin" / "engine-calls.jsonl").read_text().splitlines()]
    events = next(call for call in calls if call[0] == "events")
    assert {"type=container", "event=oom", "label=pydeploy.stack=fh"} <= set(events)


def test_a_check_without_a_valid_config_fails_naming_it(tmp_path):
    path = tmp_path / "notify.json"
    path.write_text(json.dumps({"stack": "fh", "webhooks": []}))
    done = subprocess.run(
        [sys.executable, str(runner.__file__), str(path), "--check-restarts"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "lacks state_dir, log_dir" in done.stderr


def test_the_runner_source_names_no_module_beyond_the_standard_library():
    source = runner.__file__
    text = open(source).read()
    imports = {line.split()[1].split(".")[0] for line in text.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= set(sys.stdlib_module_names) | {"__future__"}, imports
    shared = textwrap.dedent(open(runner.notify_lib().__file__).read())
    assert "ansible" not in {
        line.split()[1].split(".")[0] for line in shared.splitlines() if line.startswith(("import ", "from "))
    }
