"""Run ansible-playbook the way a user does, and read its results as JSON."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# Actions that run on the controller: every other task that was not skipped
# executed a module on a host (or, delegated, on the controller).
CONTROLLER_ACTIONS = frozenset(
    f"{prefix}{name}"
    for prefix in ("", "ansible.builtin.", "ansible.legacy.")
    for name in (
        "set_fact", "assert", "debug", "fail", "meta", "include_role", "include_tasks", "import_role",
        "import_tasks", "validate_argument_spec", "set_stats", "add_host", "group_by", "include_vars", "pause",
    )
) | {"pydeploy.stack.fast_path"}  # the collection's own action that runs only on the controller  # fmt: skip


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    data: dict | None

    @property
    def stats(self) -> dict:
        return (self.data or {}).get("stats", {})

    def returned(self, name: str) -> dict:
        """What the run returned to AWX under ``name`` (its set_stats task's data)."""
        for _, result in self.tasks():
            data = (result.get("ansible_stats") or {}).get("data") or {}
            if name in data:
                return data[name]
        raise AssertionError(f"no set_stats of {name}: {self.explain()}")

    def changed(self, host: str = "localhost") -> int:
        return self.stats.get(host, {}).get("changed", -1)

    def failed(self, host: str = "localhost") -> int:
        stats = self.stats.get(host, {})
        return stats.get("failures", 0) + stats.get("unreachable", 0)

    def tasks(self) -> list[tuple[str, dict]]:
        """(task name, result) for every host result, in order."""
        out = []
        for play in (self.data or {}).get("plays", []):
            for task in play.get("tasks", []):
                for result in task.get("hosts", {}).values():
                    # "pydeploy.stack.app : Run the web replicas" -> "Run the web replicas"
                    out.append((task["task"]["name"].split(" : ", 1)[-1], result))
        return out

    def module_executions(self) -> int:
        """Host results of tasks that executed a module (skipped ones and controller-side actions excluded)."""
        count = 0
        for play in (self.data or {}).get("plays", []):
            for task in play.get("tasks", []):
                for result in task.get("hosts", {}).values():
                    if result.get("action", "") in CONTROLLER_ACTIONS or result.get("skipped"):
                        continue
                    items = result.get("results")
                    if isinstance(items, list):
                        count += sum(1 for item in items if not item.get("skipped"))
                    else:
                        count += 1
        return count

    def plays_with_results(self) -> list[str]:
        """Names of the plays in which at least one task ran on a host."""
        return [
            play["play"]["name"]
            for play in (self.data or {}).get("plays", [])
            if any(task.get("hosts") for task in play.get("tasks", []))
        ]

    def changed_tasks(self) -> list[str]:
        return [name for name, result in self.tasks() if result.get("changed")]

    def failure_messages(self) -> list[str]:
        """The message of every failed task, and of every failed item of a loop."""
        messages = []
        for _, result in self.tasks():
            if result.get("failed"):
                messages.append(str(result.get("msg", "")))
                messages += [str(item.get("msg", "")) for item in result.get("results", []) if item.get("failed")]
        return messages

    def explain(self) -> str:
        return f"rc={self.rc}\nfailures: {self.failure_messages()}\nstderr: {self.stderr[-3000:]}"


# Every deploy writes /etc/docker/daemon.json with the settings it was given.
# A test that changes engine settings takes this lock exclusively so that no
# deploy of another stack, running in another worker, rewrites the file
# between its runs; every other run holds it shared.
ENGINE_LOCK = Path("/tmp/pydeploy-test-engine-settings.lock")
# Whoever waits for the lock holds the gate, so that a stream of shared
# holders cannot starve the exclusive one.
ENGINE_GATE = Path("/tmp/pydeploy-test-engine-settings.gate")
_exclusive_held = False


@contextlib.contextmanager
def _engine_lock(mode: int):
    with open(ENGINE_GATE, "a") as gate, open(ENGINE_LOCK, "a") as handle:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(handle, mode)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def engine_settings_exclusive():
    """Hold the engine settings alone for the duration of the block."""
    global _exclusive_held
    with _engine_lock(fcntl.LOCK_EX):
        _exclusive_held = True
        try:
            yield
        finally:
            _exclusive_held = False


# Where every ansible-playbook run of the session is logged (set by conftest.py),
# so that the session's summary can say where its time went.
RUN_LOG = "PYDEPLOY_TEST_RUN_LOG"


def log_run(playbook: str, seconds: float, rc: int) -> None:
    path = os.environ.get(RUN_LOG)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    with open(path, "a") as handle:
        handle.write(json.dumps({"test": test, "playbook": playbook, "s": round(seconds, 2), "rc": rc}) + "\n")


def ansible_env(**settings: str) -> dict:
    """The environment of an ansible-playbook run: this checkout's ansible.cfg and virtualenv first on PATH."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        **settings,
    }


def run_playbook(
    playbook: str = "deploy.yml",
    inventory: str = "inventories/local",
    *,
    extra_vars: dict | None = None,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    json_output: bool = True,
    timeout: int = 1200,
    args: list[str] | None = None,
) -> Run:
    argv = [str(VENV_BIN / "ansible-playbook"), playbook, "-i", inventory]
    vars_file = None
    if extra_vars:
        # From a file, as a vault would provide them: never on the command line.
        fd, vars_file = tempfile.mkstemp(prefix="pydeploy-vars-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(extra_vars, handle)
        argv += ["-e", f"@{vars_file}"]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if verbosity:
        argv.append("-" + "v" * verbosity)
    argv += args or []
    env = ansible_env(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    shared = contextlib.nullcontext() if _exclusive_held else _engine_lock(fcntl.LOCK_SH)
    try:
        with shared:
            started = time.monotonic()
            proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
            log_run(playbook, time.monotonic() - started, proc.returncode)
    finally:
        if vars_file:
            os.unlink(vars_file)
    data = None
    if json_output:
        start = proc.stdout.find("{")
        if start >= 0:
            try:
                data = json.loads(proc.stdout[start:])
            except json.JSONDecodeError:
                data = None
    return Run(proc.returncode, proc.stdout, proc.stderr, data)


def module_task(
    tmp_path: Path, module: str, args: dict, *, check: bool = False, diff: bool = False, verbosity: str = ""
) -> tuple[int, dict, str]:
    """Run one task of ``pydeploy.stack.<module>`` on localhost as a user's playbook would: (rc, the task's
    result, the whole output). With ``verbosity`` (say ``-vvvv``) the output is the default callback's text
    and the result is empty."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{f"pydeploy.stack.{module}": args}]}]
    playbook = tmp_path / f"{module}.yml"
    playbook.write_text(json.dumps(play))
    argv = [str(VENV_BIN / "ansible-playbook"), str(playbook)]
    argv += (["--check"] if check else []) + (["--diff"] if diff else []) + ([verbosity] if verbosity else [])
    env = ansible_env(
        ANSIBLE_STDOUT_CALLBACK="default" if verbosity else "json",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
    )
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    log_run(f"task {module}", time.monotonic() - started, proc.returncode)
    output = proc.stdout + proc.stderr
    if verbosity:
        return proc.returncode, {}, output
    try:
        result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError(f"no task result (rc {proc.returncode}):\n{output}") from None
    return proc.returncode, result, output
