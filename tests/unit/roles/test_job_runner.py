"""The cron role's job runner (roles/cron/files/pydeploy-job) against a fake docker executable:
the fake `docker run` becomes the job's command itself, `docker stop` and `docker rm -f` signal it."""

from __future__ import annotations

import fcntl
import importlib.machinery
import importlib.util
import itertools
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "cron" / "files" / "pydeploy-job"
IMAGE = "registry.test/pydeploy/flight-hunter:v2"
SECRET = "s3cr3t-db-password"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def load_runner():
    loader = importlib.machinery.SourceFileLoader("pydeploy_job", str(SCRIPT))
    spec = importlib.util.spec_from_loader("pydeploy_job", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


runner = load_runner()

FAKE_DOCKER = """\
#!{python}
import json, os, signal, sys, time
from pathlib import Path

here = Path(__file__).parent
args = sys.argv[1:]
with open(here / "docker-calls.jsonl", "a") as calls:
    calls.write(json.dumps(args) + "\\n")


def alive(pid):
    try:
        return Path(f"/proc/{{pid}}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def container(name):
    path = here / f"{{name}}.pid"
    return int(path.read_text()) if path.exists() else None


if args[0] == "run":
    image = next(arg for arg in args if arg.startswith("registry.test/"))
    if "missing" in image:
        print(f"Unable to find image '{{image}}' locally", file=sys.stderr)
        print("docker: Error response from daemon: No such image: " + image, file=sys.stderr)
        sys.exit(125)
    (here / f"{{args[args.index('--name') + 1]}}.pid").write_text(str(os.getpid()))
    command = args[args.index(image) + 1:]
    os.execvp(command[0], command)
elif args[0] == "stop":
    grace, pid = int(args[2]), container(args[3])
    if pid is None or not alive(pid):
        sys.exit(0)
    os.kill(pid, signal.SIGTERM)
    for _ in range(grace * 20):
        if not alive(pid):
            sys.exit(0)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
elif args[0] == "rm":
    pid = container(args[-1])
    if pid is not None and alive(pid):
        os.kill(pid, signal.SIGKILL)
"""


def python(code):
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.fixture
def stack(tmp_path):
    """A jobs.json whose docker is the fake; returns a helper to change it and run the runner."""
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    env_file = tmp_path / "app.env"
    env_file.write_text(f"DATABASE_PASSWORD={SECRET}\n")
    env_file.chmod(0o600)
    config = {
        "stack": "flight_hunter",
        "image": IMAGE,
        "version": "v2",
        "network": "flight_hunter",
        "env_file": str(env_file),
        "env": {"APP_ENV": "prod"},
        "state_dir": str(tmp_path / "state" / "jobs"),
        "log_dir": str(tmp_path / "log"),
        "log_max_bytes": 1048576,
        "log_backups": 5,
        "docker": str(docker),
        "jobs": {
            "fetch_prices": {
                "command": python("""
                    import sys
                    print("fetched 3 prices")
                    print("slow provider", file=sys.stderr)
                """),
                "timeout": 600,
                "memory": "",
                "cpus": 0,
                "stop_grace_period": 10,
            },
        },
    }
    return Stack(tmp_path, config)


class Stack:
    def __init__(self, root, config):
        self.root, self.config = root, config
        self.path = root / "jobs.json"

    def job(self, **settings):
        self.config["jobs"]["fetch_prices"].update(settings)
        return self

    def write(self):
        self.path.write_text(json.dumps(self.config))
        self.path.chmod(0o600)

    def start(self, *args):
        self.write()
        return subprocess.Popen(
            [sys.executable, str(SCRIPT), str(self.path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args, job="fetch_prices"):
        process = self.start(*([job] if job else []), *args)
        stdout, stderr = process.communicate(timeout=60)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    @property
    def log(self):
        return (self.root / "log" / "fetch_prices.log").read_text()

    @property
    def status(self):
        return json.loads((self.root / "state" / "jobs" / "fetch_prices.json").read_text())

    @property
    def docker_calls(self):
        calls = self.root / "bin" / "docker-calls.jsonl"
        return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


# Pure parts


def test_docker_run_arguments_carry_the_release_and_never_a_secret(stack):
    stack.job(memory="512m", cpus=1.5)
    argv = runner.docker_argv(stack.config, "fetch_prices", "flight_hunter-job-fetch_prices-20261125030000-a1b2")
    image_at = argv.index(IMAGE)
    options, command = argv[:image_at], argv[image_at + 1 :]
    assert options[:2] == [stack.config["docker"], "run"]
    assert {"--rm", "--init"} <= set(options)
    pairs = set(itertools.pairwise(options))
    assert {
        ("--pull", "never"),
        ("--name", "flight_hunter-job-fetch_prices-20261125030000-a1b2"),
        ("--network", "flight_hunter"),
        ("--env-file", stack.config["env_file"]),
        ("-e", "APP_ENV=prod"),
        ("-e", "PYDEPLOY_PROCESS=job:fetch_prices"),
        ("-e", "PYDEPLOY_VERSION=v2"),
        ("--label", "pydeploy.stack=flight_hunter"),
        ("--label", "pydeploy.process=job"),
        ("--label", "pydeploy.job=fetch_prices"),
        ("--label", "pydeploy.version=v2"),
        ("--log-driver", "none"),
        ("--memory", "512m"),
        ("--cpus", "1.5"),
    } <= pairs
    assert command == stack.config["jobs"]["fetch_prices"]["command"]
    assert not any(SECRET in arg for arg in argv)


def test_no_memory_or_cpu_limit_unless_set_and_a_string_command_is_split(stack):
    stack.job(command="python -m app.workers.fetch_prices --since '2 days'")
    argv = runner.docker_argv(stack.config, "fetch_prices", "c")
    assert "--memory" not in argv and "--cpus" not in argv
    assert argv[argv.index(IMAGE) + 1 :] == ["python", "-m", "app.workers.fetch_prices", "--since", "2 days"]


def test_a_job_runs_with_what_its_security_allows(stack):
    stack.job(
        security={
            "cap_drop": ["ALL"],
            "cap_add": ["NET_RAW"],
            "no_new_privileges": True,
            "pids_limit": 64,
            "read_only": True,
            "tmpfs": ["/tmp:size=16m"],
        }
    )
    argv = runner.docker_argv(stack.config, "fetch_prices", "c")
    pairs = set(itertools.pairwise(argv[: argv.index(IMAGE)]))
    assert {
        ("--cap-drop", "ALL"),
        ("--cap-add", "NET_RAW"),
        ("--security-opt", "no-new-privileges"),
        ("--pids-limit", "64"),
        ("--tmpfs", "/tmp:size=16m"),
    } <= pairs
    assert "--read-only" in argv
    stack.job(security={})
    assert not {"--cap-drop", "--security-opt", "--pids-limit", "--read-only"} & set(
        runner.docker_argv(stack.config, "fetch_prices", "c")
    )


def test_a_job_mounts_its_named_volumes(stack):
    stack.job(volumes=["flight_hunter-uploads:/app/uploads:rw", "flight_hunter-static:/app/static:ro"])
    argv = runner.docker_argv(stack.config, "fetch_prices", "c")
    options = argv[: argv.index(IMAGE)]
    assert {
        ("--volume", "flight_hunter-uploads:/app/uploads:rw"),
        ("--volume", "flight_hunter-static:/app/static:ro"),
    } <= set(itertools.pairwise(options))
    stack.job(volumes=[])
    assert "--volume" not in runner.docker_argv(stack.config, "fetch_prices", "c")


def test_container_names_are_unique_per_run():
    config = {"stack": "flight_hunter"}
    names = {runner.container_name(config, "fetch_prices") for _ in range(20)}
    assert all(re.fullmatch(r"flight_hunter-job-fetch_prices-\d{14}-[0-9a-f]{4}", name) for name in names)
    assert len(names) > 1


def test_rotation_shifts_the_backups_and_keeps_their_number(tmp_path):
    log = tmp_path / "job.log"
    for path, text in ((log, "current" * 10), (tmp_path / "job.log.1", "one"), (tmp_path / "job.log.2", "two")):
        path.write_text(text)
    runner.rotate(str(log), 50, 2)
    assert not log.exists()
    assert (tmp_path / "job.log.1").read_text() == "current" * 10
    assert (tmp_path / "job.log.2").read_text() == "one"
    assert not (tmp_path / "job.log.3").exists()


def test_no_rotation_at_or_below_the_limit_or_when_disabled(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("x" * 50)
    runner.rotate(str(log), 50, 5)
    runner.rotate(str(log), 0, 5)
    runner.rotate(str(tmp_path / "absent.log"), 10, 5)
    assert log.read_text() == "x" * 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log"]


def test_rotation_without_backups_starts_the_log_afresh(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("x" * 51)
    runner.rotate(str(log), 50, 0)
    assert list(tmp_path.iterdir()) == []


def test_status_is_written_whole_and_private(tmp_path):
    path = tmp_path / "job.json"
    runner.write_status(str(path), {"state": "running"})
    runner.write_status(str(path), {"state": "succeeded", "exit_code": 0})
    assert json.loads(path.read_text()) == {"state": "succeeded", "exit_code": 0}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]


def test_a_failed_status_write_keeps_the_previous_status(tmp_path, monkeypatch):
    path = tmp_path / "job.json"
    runner.write_status(str(path), {"state": "succeeded"})

    def broken_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner.os, "replace", broken_replace)
    with pytest.raises(OSError):
        runner.write_status(str(path), {"state": "running"})
    assert json.loads(path.read_text()) == {"state": "succeeded"}
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]


def test_a_corrupt_status_reads_as_none(tmp_path):
    path = tmp_path / "job.json"
    path.write_text("{not json")
    assert runner.read_status(str(path)) == {}
    assert runner.read_status(str(tmp_path / "absent.json")) == {}


def test_counters_count_runs_and_consecutive_failures():
    status = {"runs": 4, "failures": 2, "skipped": 1, "last_skipped_at": "2026-11-25T03:00:00Z"}
    kept = {"skipped": 1, "last_skipped_at": "2026-11-25T03:00:00Z"}
    assert runner.counters(status) == {**kept, "runs": 4, "failures": 2}
    assert runner.counters(status, "failed") == {**kept, "runs": 5, "failures": 3}
    assert runner.counters(status, "succeeded") == {**kept, "runs": 5, "failures": 0}
    assert runner.counters({}) == {"skipped": 0, "last_skipped_at": None, "runs": 0, "failures": 0}


# Runs against the fake docker


def test_a_successful_run_logs_both_streams_and_records_its_status(stack):
    result = stack.run()
    assert result.returncode == 0, result.stderr
    lines = stack.log.splitlines()
    assert re.fullmatch(
        rf"{STAMP} runner\| start fetch_prices: image {re.escape(IMAGE)}, "
        r"container flight_hunter-job-fetch_prices-\d{14}-[0-9a-f]{4}, command .+",
        lines[0],
    )
    assert re.fullmatch(rf"{STAMP} stdout\| fetched 3 prices", next(line for line in lines if "stdout|" in line))
    assert re.fullmatch(rf"{STAMP} stderr\| slow provider", next(line for line in lines if "stderr|" in line))
    assert re.fullmatch(rf"{STAMP} runner\| end fetch_prices: succeeded, exit code 0, [0-9.]+ s", lines[-1])
    status = stack.status
    assert status.pop("duration_seconds") >= 0
    assert re.fullmatch(STAMP, status.pop("started_at")) and re.fullmatch(STAMP, status.pop("ended_at"))
    assert re.fullmatch(r"flight_hunter-job-fetch_prices-\d{14}-[0-9a-f]{4}", status.pop("container"))
    assert status == {
        "job": "fetch_prices",
        "state": "succeeded",
        "exit_code": 0,
        "signal": None,
        "image": IMAGE,
        "version": "v2",
        "log": str(stack.root / "log" / "fetch_prices.log"),
        "runs": 1,
        "failures": 0,
        "skipped": 0,
        "last_skipped_at": None,
    }
    assert SECRET not in stack.log and SECRET not in json.dumps(stack.status)
    state_dir, log_file = stack.root / "state" / "jobs", stack.root / "log" / "fetch_prices.log"
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "fetch_prices.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o640
    assert stack.docker_calls[0][0] == "run" and len(stack.docker_calls) == 1


def test_the_exit_code_is_the_jobs_and_failures_count_until_a_success(stack):
    stack.job(command=python("import sys; print('provider down'); sys.exit(3)"))
    assert stack.run().returncode == 3
    assert stack.run().returncode == 3
    assert (stack.status["state"], stack.status["exit_code"], stack.status["runs"], stack.status["failures"]) == (
        "failed",
        3,
        2,
        2,
    )
    stack.job(command=python("pass"))
    assert stack.run().returncode == 0
    assert (stack.status["state"], stack.status["runs"], stack.status["failures"]) == ("succeeded", 3, 0)
    assert stack.log.count("runner| start fetch_prices") == 3


def test_a_missing_image_is_an_error_with_dockers_message(stack):
    stack.config["image"] = "registry.test/pydeploy/missing:v9"
    result = stack.run()
    assert result.returncode == 125
    assert (stack.status["state"], stack.status["exit_code"]) == ("error", 125)
    assert re.search(rf"{STAMP} stderr\| Unable to find image 'registry.test/pydeploy/missing:v9' locally", stack.log)
    assert "end fetch_prices: error, exit code 125" in stack.log


def test_a_missing_docker_executable_is_an_error(stack):
    stack.config["docker"] = str(stack.root / "bin" / "no-docker")
    assert stack.run().returncode == 125
    assert stack.status["state"] == "error"
    assert "cannot run" in stack.log and "No such file or directory" in stack.log


def test_a_job_past_its_timeout_is_stopped_with_its_grace_period(stack):
    stack.job(
        timeout=1, stop_grace_period=2, command=python("import time; print('working', flush=True); time.sleep(60)")
    )
    began = time.monotonic()
    result = stack.run()
    assert result.returncode == 124
    assert time.monotonic() - began < 20
    status = stack.status
    assert (status["state"], status["exit_code"], status["failures"]) == ("timed_out", 124, 1)
    calls = stack.docker_calls
    assert ["stop", "-t", "2", status["container"]] in calls
    assert ["rm", "-f", status["container"]] in calls
    assert "stdout| working" in stack.log
    assert f"runner| timeout (1 s): stopping {status['container']} (grace 2 s)" in stack.log
    assert "end fetch_prices: timed_out, exit code 124" in stack.log


def test_sigterm_stops_the_container_and_records_a_failure(stack):
    stack.job(command=python("import time; print('started', flush=True); time.sleep(60)"))
    process = stack.start("fetch_prices")
    wait_for(lambda: "stdout| started" in log_text(stack))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    status = stack.status
    assert (status["state"], status["exit_code"], status["signal"]) == ("failed", 143, "SIGTERM")
    assert ["stop", "-t", "10", status["container"]] in stack.docker_calls
    assert "runner| SIGTERM: stopping" in stack.log


def test_a_run_is_skipped_while_the_previous_one_holds_the_lock(stack):
    assert stack.run().returncode == 0
    finished = stack.status
    lock = stack.root / "state" / "jobs" / "fetch_prices.lock"
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert stack.run().returncode == 0
        assert stack.run().returncode == 0
    status = stack.status
    assert status.pop("skipped") == 2 and re.fullmatch(STAMP, status.pop("last_skipped_at"))
    assert status == {key: value for key, value in finished.items() if key not in ("skipped", "last_skipped_at")}
    assert stack.log.count("skipped: previous run") == 2
    assert len(stack.docker_calls) == 1
    assert stack.run().returncode == 0
    assert (stack.status["skipped"], stack.status["runs"]) == (2, 2)


def test_an_overlapping_run_names_the_run_it_skipped_for(stack):
    stack.job(command=python("import time; print('started', flush=True); time.sleep(3)"))
    first = stack.start("fetch_prices")
    wait_for(lambda: "stdout| started" in log_text(stack))
    second = stack.run()
    assert second.returncode == 0
    assert re.search(
        rf"{STAMP} runner\| skipped: previous run \(pid {first.pid}, started {STAMP}\) still running", stack.log
    )
    running = stack.status
    assert (running["state"], running["pid"], running["skipped"]) == ("running", first.pid, 1)
    assert stack.run("--status").stdout and json.loads(stack.run("--status").stdout)["state"] == "running"
    assert first.wait(timeout=30) == 0
    assert (stack.status["state"], stack.status["skipped"], stack.status["runs"]) == ("succeeded", 1, 1)


def test_the_log_is_rotated_before_a_run(stack):
    stack.config.update(log_max_bytes=100, log_backups=2)
    for _ in range(4):
        assert stack.run().returncode == 0
    logs = sorted(p.name for p in (stack.root / "log").iterdir())
    assert logs == ["fetch_prices.log", "fetch_prices.log.1", "fetch_prices.log.2"]
    assert stack.log.count("runner| start") == 1


# Command line


def test_status_and_list_print_json(stack):
    never = json.loads(stack.run("--status").stdout)
    assert never == {"job": "fetch_prices", "state": "never_run", "runs": 0, "failures": 0, "skipped": 0}
    stack.run()
    assert json.loads(stack.run("--status").stdout) == stack.status
    listed = stack.run("--list", job=None)
    assert listed.returncode == 0
    assert json.loads(listed.stdout) == {"fetch_prices": stack.status}


@pytest.mark.parametrize("lock_file", [True, False])
def test_a_run_killed_outright_shows_as_interrupted(stack, lock_file):
    state = stack.root / "state" / "jobs"
    state.mkdir(parents=True)
    (state / "fetch_prices.json").write_text(json.dumps({"job": "fetch_prices", "state": "running", "pid": 999999}))
    if lock_file:
        (state / "fetch_prices.lock").touch()
    assert json.loads(stack.run("--status").stdout)["state"] == "interrupted"
    assert stack.run().returncode == 0
    assert stack.status["state"] == "succeeded"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda s: s.path.unlink(), "cannot read"),
        (lambda s: s.path.write_text("{"), "is not valid JSON"),
        (lambda s: s.path.write_text("[]"), "does not hold a JSON object"),
        (lambda s: s.path.write_text(json.dumps({"stack": "x"})), "lacks image, version, state_dir, log_dir, jobs"),
        (
            lambda s: s.path.write_text(json.dumps({**s.config, "log_backups": "many"})),
            "log_max_bytes and log_backups must be numbers >= 0",
        ),
    ],
)
def test_a_missing_or_invalid_jobs_json_exits_2_with_one_line(stack, breakage, message):
    stack.write()
    breakage(stack)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(stack.path), "fetch_prices"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.startswith("pydeploy-job: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"command": []}, "needs a name of letters, digits, _.- and a command"),
        ({"command": ["true"], "timeout": "ten minutes"}, "timeout, stop_grace_period and cpus must be numbers >= 0"),
        ({"command": ["true"], "stop_grace_period": -1}, "timeout, stop_grace_period and cpus must be numbers >= 0"),
        ({"command": ["true"], "cpus": [1]}, "timeout, stop_grace_period and cpus must be numbers >= 0"),
    ],
)
def test_an_invalid_job_exits_2(stack, job, message):
    stack.config["jobs"]["broken"] = job
    result = stack.run()
    assert result.returncode == 2 and message in result.stderr


def test_an_unknown_job_exits_2_naming_the_known_ones(stack):
    result = stack.run(job="fetch_price")
    assert result.returncode == 2
    assert result.stderr == f"pydeploy-job: unknown job 'fetch_price' in {stack.path} (jobs: fetch_prices)\n"
    assert not (stack.root / "state").exists()


def test_numbers_may_come_as_strings(stack):
    stack.job(timeout="600", stop_grace_period="10", cpus="0.5")
    assert stack.run().returncode == 0
    assert ("--cpus", "0.5") in set(itertools.pairwise(stack.docker_calls[0]))


def test_the_script_runs_with_the_system_python():
    assert SCRIPT.read_text().startswith("#!/usr/bin/python3\n")
    assert os.access(SCRIPT, os.X_OK)


def log_text(stack):
    path = stack.root / "log" / "fetch_prices.log"
    return path.read_text() if path.exists() else ""


def wait_for(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


# Host jobs (the backups): the command runs on the host, not in a container.


def test_a_host_job_runs_its_command_and_keeps_the_result_it_writes(stack):
    stack.job(
        host=True,
        command=python("""
            import json, os
            print("backed up")
            with open(os.environ["PYDEPLOY_JOB_RESULT"], "w") as handle:
                json.dump({"key": "backups/db/db-1.dump.zst", "size": 42, "failed": False}, handle)
        """),
    )
    result = stack.run()
    assert result.returncode == 0, result.stderr
    assert stack.docker_calls == []
    status = stack.status
    assert (status["state"], status["exit_code"], status["host"]) == ("succeeded", 0, True)
    assert status["result"] == {"key": "backups/db/db-1.dump.zst", "size": 42, "failed": False}
    assert "image" not in status and "container" not in status
    assert "stdout| backed up" in stack.log
    assert "start fetch_prices: on the host" in stack.log


def test_a_host_job_without_a_result_keeps_none_and_an_old_result_is_not_reused(stack):
    stack.job(host=True, command=python("import sys; sys.exit(3)"))
    state = stack.root / "state" / "jobs"
    state.mkdir(parents=True, exist_ok=True)
    (state / "fetch_prices.result.json").write_text('{"key": "stale"}')
    result = stack.run()
    assert result.returncode == 3
    assert (stack.status["state"], stack.status["result"]) == ("failed", None)


def test_a_host_job_past_its_timeout_is_stopped_by_signal(stack):
    stack.job(
        host=True,
        timeout=1,
        stop_grace_period=2,
        command=python("import time; print('working', flush=True); time.sleep(60)"),
    )
    began = time.monotonic()
    result = stack.run()
    assert result.returncode == 124
    assert time.monotonic() - began < 20
    assert stack.status["state"] == "timed_out"
    assert stack.docker_calls == []
    assert "runner| timeout (1 s): stopping pid" in stack.log


def test_only_host_jobs_need_no_image(stack):
    for key in ("image", "version", "network", "env_file", "docker"):
        stack.config.pop(key)
    stack.job(host=True, command=python("print('ok')"))
    assert stack.run().returncode == 0
    stack.config["jobs"]["other"] = {"command": ["true"]}
    result = stack.run()
    assert result.returncode == 2 and "lacks image, version" in result.stderr


# Runs made elsewhere (a backup taken by backup.yml), recorded as the job's last run.


def record(stack, made, job="fetch_prices") -> subprocess.CompletedProcess:
    stack.write()
    argv = [sys.executable, str(SCRIPT), str(stack.path), job, "--record"]
    text = made if isinstance(made, str) else json.dumps(made)
    return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60, check=False)


def test_a_run_made_elsewhere_is_recorded_and_counted_like_the_runners_own(stack):
    stack.job(host=True, command=python("print('backed up on schedule')"))
    result = {"key": "backups/db/db-2.dump.zst", "size": 7, "verified": True, "failed": False}
    made = {"state": "succeeded", "exit_code": 0, "duration_seconds": 12.5, "by": "backup.yml", "result": result}
    done = record(stack, made)
    assert done.returncode == 0, done.stderr
    status = stack.status
    assert json.loads(done.stdout) == status
    assert (status["state"], status["exit_code"], status["by"], status["result"]) == (
        "succeeded",
        0,
        "backup.yml",
        result,
    )
    assert (status["runs"], status["failures"], status["host"], status["signal"]) == (1, 0, True, None)
    started, ended = (time.strptime(status[key], "%Y-%m-%dT%H:%M:%SZ") for key in ("started_at", "ended_at"))
    assert 12 <= time.mktime(ended) - time.mktime(started) <= 13
    assert re.search(
        rf"^{STAMP} runner\| recorded fetch_prices run by backup.yml: succeeded, exit code 0, 12.5 s,"
        r" key backups/db/db-2.dump.zst$",
        stack.log,
        re.M,
    ), stack.log
    assert (stack.root / "state" / "jobs" / "fetch_prices.json").stat().st_mode & 0o777 == 0o600

    failed = {"state": "failed", "exit_code": 1, "by": "backup.yml", "result": {"msg": "access denied", "failed": True}}
    assert record(stack, failed).returncode == 0
    assert (stack.status["state"], stack.status["runs"], stack.status["failures"]) == ("failed", 2, 1)
    assert stack.run().returncode == 0  # the scheduled run after it counts on
    assert (stack.status["state"], stack.status["runs"], stack.status["failures"]) == ("succeeded", 3, 0)
    assert "by" not in stack.status
    listed = json.loads(stack.run("--list", job=None).stdout)
    assert listed == {"fetch_prices": stack.status}


@pytest.mark.parametrize(
    ("made", "job", "message"),
    [
        ("not json", "fetch_prices", "cannot record a run of fetch_prices: "),
        ('["succeeded"]', "fetch_prices", "a recorded run is a JSON object on stdin"),
        ({"state": "running"}, "fetch_prices", "state must be succeeded or failed, not 'running'"),
        ({"state": "succeeded"}, "nightly", "unknown job 'nightly'"),
    ],
)
def test_a_recorded_run_must_be_described_and_of_a_known_job(stack, made, job, message):
    done = record(stack, made, job)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (stack.root / "state" / "jobs" / "fetch_prices.json").exists()
