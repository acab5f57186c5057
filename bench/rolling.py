#!/usr/bin/env python3
"""Releases of the Car API sample under a steady request load, deployed as the
stack `car_bench` from the integration inventory on ports 9480/9843, its images
from a registry of its own on loopback (the bed registry's storage, read-only).
All figures from one run on the same machine:

1. steady state, no deploy, for at least as long as a warm deploy takes: the
   baseline for failures and p50/p99 latency;
2. (a) a rolling deploy of the other tag and (b) a rollback (rollback.yml),
   each under the same load: failed requests, p50/p99, p99 / steady p99;
3. (c) the usual hand-run way under the same load: each live web container
   stopped, removed and run again with the same name, network, env file,
   labels and command on the other tag (as `docker compose up -d` does);
4. time from the new replicas checked to traffic switched: end of "Check each
   new replica directly, before any traffic" to end of "Switch the upstream
   to the new replicas (nginx -t, graceful reload)", from the tasks' times in
   the JSON callback output, with the module's own timings of its steps;
5. warm deploy of a new tag (images on the host), wall time, against an
   ansible-playbook run of one trivial task;
6. rollback with the registry down (the mirror stopped), wall time.

Each load phase keeps the load running before and after its release until it
holds --requests-per-phase requests.  Writes its table between markers in
docs/benchmarks.md.  Needs the bed (`make bed`); touches only the stack
`car_bench` and the registry it starts.

    .venv/bin/python bench/rolling.py [--requests-per-phase 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import docker  # noqa: E402
from _common import MachineWatch, write_section  # noqa: E402
from conftest import teardown_stack  # noqa: E402
from playbook import run_playbook  # noqa: E402
from registry_mirror import Mirror  # noqa: E402

MARK_BEGIN = "<!-- bench:rolling:begin -->"
MARK_END = "<!-- bench:rolling:end -->"
HEADING = "## Rolling deploy and rollback under load (bench/rolling.py)"
INTRO = """\
`.venv/bin/python bench/rolling.py` deploys the Car API sample (web x3) as the
stack `car_bench` and sends a steady HTTPS load through nginx while it is idle,
during a rolling deploy, during `rollback.yml` and during a hand-run recreate of
the web containers in place. It also times the switch of traffic, a warm deploy
and a rollback with the registry down, against baselines taken in the same run."""

STACK = "car_bench"
INVENTORY = "tests/integration/inventories/car_api"
HTTP_PORT, HTTPS_PORT = 9480, 9843
TAG_A, TAG_B = "v20251105_143022", "v20251110_120000"  # same schema: no migration between them
PROXY_CA = Path(f"/etc/pydeploy/{STACK}/nginx/certs/fullchain.pem")
APP_ENV = Path(f"/etc/pydeploy/{STACK}/app.env")
PATH = "/health_check"
CONNECTIONS = 8
LEAD = 3.0  # seconds of load in a phase before its release starts
TAIL = 3.0  # and at least this long after it ends
CHECKED = "Start the new replicas beside the running ones"
SWITCHED = "Switch the upstream to the new replicas and check the app through the proxy"
REQUEST = f"GET {PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n".encode()
VERSION = re.compile(rb'"version"\s*:\s*"([^"]+)"')


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


# --------------------------------------------------------------------------- load


class Unanswered(Exception):
    """A kept-alive connection the server closed before sending any byte of the answer."""


class Load:
    """Requests through nginx, back to back on CONNECTIONS kept-alive connections; every
    latency and every failure recorded under the phase current when the request started.

    A request on a reused connection that the server closed before answering (nginx
    closes idle kept-alive connections when it reloads, and after keepalive_requests) is
    sent once more on a new connection, as HTTP clients do for idempotent requests; those
    are counted apart.  Anything else that is not a 200 is a failure."""

    def __init__(self) -> None:
        self.phase = "warm-up"
        self.latencies: dict[str, list[float]] = defaultdict(list)  # phase -> seconds, answered 200
        self.failures: dict[str, list[tuple[float, float, str]]] = defaultdict(list)  # (at, seconds, reason)
        self.retried: dict[str, list[tuple[float, str]]] = defaultdict(list)
        self.versions: list[tuple[float, str]] = []  # (at, version) whenever the answering version changes
        self.stopping = threading.Event()
        self.origin = time.perf_counter()
        self.thread: threading.Thread | None = None

    def count(self, phase: str) -> int:
        return len(self.latencies[phase]) + len(self.failures[phase])

    async def connect(self, context: ssl.SSLContext):
        return await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", HTTPS_PORT, ssl=context, server_hostname="localhost"), timeout=10
        )

    @staticmethod
    async def exchange(reader, writer, reused: bool) -> tuple[int, bool, bytes]:
        """One request: (status, the server closes the connection, body)."""
        try:
            writer.write(REQUEST)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        except asyncio.IncompleteReadError as exc:
            if reused and not exc.partial:
                raise Unanswered("closed before answering") from exc
            raise
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as exc:
            if reused:
                raise Unanswered(type(exc).__name__) from exc
            raise
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip().lower()
        if "chunked" in headers.get("transfer-encoding", ""):
            body = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout=30)
        return status, headers.get("connection") == "close", body

    async def client(self, context: ssl.SSLContext) -> None:
        conn = None
        while not self.stopping.is_set():
            phase = self.phase
            started = time.perf_counter()
            reason = None
            try:
                reused = conn is not None
                if conn is None:
                    conn = await self.connect(context)
                try:
                    status, closing, body = await self.exchange(*conn, reused)
                except Unanswered as exc:
                    self.retried[phase].append((started - self.origin, str(exc)))
                    conn[1].close()
                    conn = await self.connect(context)
                    status, closing, body = await self.exchange(*conn, False)
                if closing:
                    conn[1].close()
                    conn = None
                if status != 200:
                    reason = f"HTTP {status}"
                else:
                    found = VERSION.search(body)
                    version = found.group(1).decode() if found else "?"
                    if not self.versions or self.versions[-1][1] != version:
                        self.versions.append((started - self.origin, version))
            except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError, ValueError) as exc:
                reason = type(exc).__name__ + (f": {exc}"[:80] if str(exc) else "")
                if conn is not None:
                    conn[1].close()
                    conn = None
            elapsed = time.perf_counter() - started
            if reason is None:
                self.latencies[phase].append(elapsed)
            else:
                self.failures[phase].append((started - self.origin, elapsed, reason))
                await asyncio.sleep(0.001)  # a refused connection must not spin
        if conn is not None:
            conn[1].close()

    async def loop(self) -> None:
        context = ssl.create_default_context(cafile=str(PROXY_CA))
        await asyncio.gather(*(self.client(context) for _ in range(CONNECTIONS)))

    def start(self) -> None:
        self.thread = threading.Thread(target=lambda: asyncio.run(self.loop()), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout=60)

    def served(self, start: float, end: float) -> list[str]:
        """The versions that answered between two times (from origin), each run of equal answers once."""
        runs: list[str] = []
        last = next((version for at, version in reversed(self.versions) if at < start), None)
        if last:
            runs.append(last)
        for at, version in self.versions:
            if start <= at <= end and (not runs or runs[-1] != version):
                runs.append(version)
        return runs


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def serving_version() -> str:
    context = ssl.create_default_context(cafile=str(PROXY_CA))
    conn = http.client.HTTPSConnection("127.0.0.1", HTTPS_PORT, timeout=10, context=context)
    conn.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10), server_hostname="localhost"
    )
    conn.request("GET", PATH, headers={"Host": "localhost"})
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body["version"]


# --------------------------------------------------------------------------- releases


def extra_vars(image: str, version: str | None) -> dict:
    variables = {
        "stack_name": STACK,
        "stack_image": image,
        "nginx_http_port": HTTP_PORT,
        "nginx_https_port": HTTPS_PORT,
        "_test_secret": str(REPO / ".bed" / "secrets" / STACK),
    }
    if version:
        variables["stack_version"] = version
    return variables


def playbook(image: str, version: str | None = None, name: str = "deploy.yml") -> dict:
    """One run, timed, with its release switch from the tasks' times."""
    started = time.perf_counter()
    run = run_playbook(name, inventory=INVENTORY, extra_vars=extra_vars(image, version))
    wall = time.perf_counter() - started
    if run.rc != 0:
        raise SystemExit(f"{name} ({version or 'previous release'}) failed: {run.explain()}")
    return {"playbook": name, "wall": wall, **switch_times(run)}


def task_spans(run) -> list[tuple[str, datetime, datetime]]:
    """(task name, start, end) of every task that ran on the host, in order."""
    spans = []
    for play in (run.data or {}).get("plays", []):
        for task in play.get("tasks", []):
            results = list(task.get("hosts", {}).values())
            span = task["task"].get("duration", {})
            if not results or results[0].get("skipped") or not (span.get("start") and span.get("end")):
                continue
            name = task["task"]["name"].split(" : ", 1)[-1]
            spans.append((name, datetime.fromisoformat(span["start"]), datetime.fromisoformat(span["end"])))
    return spans


def switch_times(run) -> dict:
    spans = task_spans(run)
    checked = next((span for span in spans if span[0] == CHECKED), None)
    if checked is None:
        return {}
    after = [span for span in spans if span[1] >= checked[2]]
    switched = next((span for span in after if span[0] == SWITCHED), None)
    if not switched:
        return {}
    timings = next((result.get("timings", {}) for name, result in run.tasks() if name == SWITCHED), {})
    # The task returns once the old workers answered their requests (the drain) and the app answered
    # through the proxy (the verify): traffic moved before both.
    drain = timings.get("drain") or 0.0
    return {
        "switch": (switched[2] - checked[2]).total_seconds() - drain - (timings.get("verify") or 0.0),
        "check": (checked[2] - checked[1]).total_seconds(),
        "task": (switched[2] - switched[1]).total_seconds(),
        "nginx_t": timings.get("check"),
        "reload": timings.get("reload"),
        "drain": timings.get("drain"),
        "verify": timings.get("verify"),
    }


def trivial_runs(count: int) -> list[float]:
    """ansible-playbook with one trivial module task, on the same host and config."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trivial.yml"
        path.write_text(
            "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
            "    - name: Trivial\n      ansible.builtin.command: /bin/true\n      changed_when: false\n"
        )
        times = []
        for _ in range(count):
            started = time.perf_counter()
            run = run_playbook(str(path), json_output=False)
            times.append(time.perf_counter() - started)
            if run.rc != 0:
                raise SystemExit(f"the trivial playbook failed: {run.explain()}")
    return times


def web_containers(client) -> list:
    filters = {"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"], "status": "running"}
    return sorted(client.containers.list(filters=filters), key=lambda c: c.name)


def answers_directly(address: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}{PATH}", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def recreate_in_place(client, image: str, version: str) -> dict:
    """The hand-run way: for each live web container, docker stop, docker rm, docker run a new one with
    the same name, network, env file, environment, labels, restart policy and command on the other tag."""
    times = {"stopped": [], "ran": []}
    started = time.perf_counter()
    env_keys = {
        line.split("=", 1)[0] for line in APP_ENV.read_text().splitlines() if "=" in line and not line.startswith("#")
    }
    for container in web_containers(client):
        config, host = container.attrs["Config"], container.attrs["HostConfig"]
        image_env = {item.split("=", 1)[0] for item in client.images.get(config["Image"]).attrs["Config"]["Env"] or []}
        network = next(iter(container.attrs["NetworkSettings"]["Networks"]))
        argv = ["docker", "run", "-d", "--name", container.name, "--network", network, "--env-file", str(APP_ENV)]
        for item in config["Env"] or []:
            key = item.split("=", 1)[0]
            if key not in image_env and key not in env_keys:
                argv += ["-e", f"PYDEPLOY_VERSION={version}" if key == "PYDEPLOY_VERSION" else item]
        for key, value in sorted(config["Labels"].items()):
            argv += ["--label", f"{key}={version}" if key == "pydeploy.version" else f"{key}={value}"]
        policy = host.get("RestartPolicy") or {}
        if policy.get("Name"):
            argv += ["--restart", policy["Name"]]
        if config.get("StopTimeout"):
            argv += ["--stop-timeout", str(config["StopTimeout"])]
        argv += [f"{image}:{version}", *(config["Cmd"] or [])]
        subprocess.run(["docker", "stop", container.name], check=True, capture_output=True)
        times["stopped"].append(time.perf_counter() - started)
        subprocess.run(["docker", "rm", container.name], check=True, capture_output=True)
        subprocess.run(argv, check=True, capture_output=True)
        times["ran"].append(time.perf_counter() - started)
    port = 8000
    deadline = time.monotonic() + 120
    while True:
        addresses = [
            next(iter(c.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"] for c in web_containers(client)
        ]
        if addresses and all(answers_directly(address, port) for address in addresses):
            break
        if time.monotonic() > deadline:
            raise SystemExit("the recreated web containers did not answer within 120 s")
        time.sleep(0.2)
    times["answering"] = time.perf_counter() - started
    return times


# --------------------------------------------------------------------------- phases


def run_phase(
    load: Load, label: str, minimum: int, most_seconds: float, action=None, least_seconds: float = 0.0
) -> dict:
    """Label the load `label`; run `action` after LEAD seconds; keep the load on until the phase holds
    `minimum` requests, lasted `least_seconds` and TAIL seconds passed after the action (but no longer
    than `most_seconds` in all, unless the action itself takes longer)."""
    load.phase = label
    start = time.perf_counter()
    result = {}
    if action:
        time.sleep(LEAD)
        action_start = time.perf_counter()
        result = action()
        result["action"] = (action_start - load.origin, time.perf_counter() - load.origin)
        time.sleep(TAIL)
    while load.count(label) < minimum or time.perf_counter() - start < least_seconds:
        if time.perf_counter() - start >= most_seconds:
            break
        time.sleep(0.2)
    end = time.perf_counter()
    load.phase = "between"
    result.update(
        start=start - load.origin,
        end=end - load.origin,
        seconds=end - start,
        requests=load.count(label),
        failed=len(load.failures[label]),
        retried=len(load.retried[label]),
        p50=percentile(load.latencies[label], 50),
        p99=percentile(load.latencies[label], 99),
        p99_all=percentile(load.latencies[label] + [f[1] for f in load.failures[label]], 99),
        kinds=Counter(reason for _, _, reason in load.failures[label]).most_common(3),
        served=load.served(start - load.origin, end - load.origin),
    )
    log(
        f"  {label}: {result['requests']} requests in {result['seconds']:.1f} s, {result['failed']} failed, "
        f"{result['retried']} retried; p50 {result['p50'] * 1000:.1f} ms, p99 {result['p99'] * 1000:.1f} ms; "
        f"served {' -> '.join(result['served'])}"
    )
    return result


def fmt_s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--requests-per-phase", type=int, default=50_000, help="requests in each load phase (default 50000)"
    )
    parser.add_argument(
        "--max-phase-seconds", type=float, default=900, help="stop a load phase short after this (default 900)"
    )
    parser.add_argument("--baseline", type=int, default=3, help="runs of the trivial playbook (default 3)")
    args = parser.parse_args()
    begun = time.perf_counter()
    client = docker.from_env(timeout=120)
    load_start = os.getloadavg()
    cores = len(os.sched_getaffinity(0))
    others = [c.name for c in client.containers.list() if c.labels.get("pydeploy.stack") != STACK]
    machine = MachineWatch()
    machine.start()

    tmp = tempfile.TemporaryDirectory()
    mirror = Mirror(Path(tmp.name))
    image = f"127.0.0.1:{mirror.port}/pydeploy/car-api"
    load = None
    try:
        log(f"tearing down {STACK}; mirror registry on 127.0.0.1:{mirror.port}")
        teardown_stack(client, STACK)
        mirror.start()

        log(f"baseline: {args.baseline} runs of a one-task playbook")
        trivial = trivial_runs(args.baseline)
        log("  " + ", ".join(f"{t:.2f}" for t in trivial) + " s")

        log(f"cold deploy of {STACK} {TAG_A} (https://localhost:{HTTPS_PORT})")
        cold = playbook(image, TAG_A)
        log(f"  {cold['wall']:.1f} s; pulling {TAG_B} so that every later release finds its image on the host")
        subprocess.run(["docker", "pull", "-q", f"{image}:{TAG_B}"], check=True, capture_output=True)

        # 5 and 4: warm deploys of a new tag, no load.
        warm = []
        for version in (TAG_B, TAG_A):
            log(f"warm deploy of {version}, no load")
            warm.append(playbook(image, version))
            log(f"  {warm[-1]['wall']:.1f} s, switch {fmt_s(warm[-1].get('switch'))} s")
            if serving_version() != version:
                raise SystemExit(f"{version} is not served after its deploy")

        # 6: rollback with the registry down, no load.
        log("rollback with the mirror registry stopped, no load")
        mirror.stop()
        if mirror.answers():
            raise SystemExit("the mirror registry still answers")
        offline = playbook(image, name="rollback.yml")
        log(f"  {offline['wall']:.1f} s, switch {fmt_s(offline.get('switch'))} s")
        if serving_version() != TAG_B:
            raise SystemExit(f"{TAG_B} is not served after the rollback")
        mirror.start()

        # 1-3: the same load through every phase.
        log(f"load: {CONNECTIONS} kept-alive HTTPS connections to {PATH} through nginx")
        load = Load()
        load.start()
        time.sleep(2)
        least = statistics.median(w["wall"] for w in warm)
        n = args.requests_per_phase
        log(f"steady state: at least {least:.0f} s (a warm deploy) and {n} requests")
        most = args.max_phase_seconds
        steady = run_phase(load, "steady", n, most, least_seconds=least)
        log(f"(a) rolling deploy {TAG_B} -> {TAG_A} under load")
        rolling = run_phase(load, "deploy", n, most, lambda: playbook(image, TAG_A))
        log(f"(b) rollback.yml {TAG_A} -> {TAG_B} under load")
        rollback = run_phase(load, "rollback", n, most, lambda: playbook(image, name="rollback.yml"))
        log(f"(c) hand-run recreate in place {TAG_B} -> {TAG_A} under load")
        recreate = run_phase(load, "recreate", n, most, lambda: recreate_in_place(client, image, TAG_A))
        load.stop()
        window = recreate["action"]
        recreate["failed_during"] = sum(1 for at, _, _ in load.failures["recreate"] if at <= window[1])
        recreate["failed_after"] = recreate["failed"] - recreate["failed_during"]
    finally:
        if load:
            load.stop()
        log(f"tearing down {STACK}; stopping the mirror registry")
        try:
            teardown_stack(client, STACK)
        finally:
            mirror.stop()
            tmp.cleanup()

    machine.stopping.set()
    machine.join()

    # Figures.
    base_p99 = steady["p99"]
    trivial_min = min(trivial)
    phases = [
        ("steady state, no deploy", steady),
        (f"(a) rolling deploy `deploy.yml` {TAG_B} -> {TAG_A}", rolling),
        (f"(b) `rollback.yml` {TAG_A} -> {TAG_B}", rollback),
        (f"(c) hand-run recreate in place {TAG_B} -> {TAG_A}", recreate),
    ]
    switches = [
        (f"warm deploy {TAG_A} -> {TAG_B}, no load", warm[0]),
        (f"warm deploy {TAG_B} -> {TAG_A}, no load", warm[1]),
        ("rollback, registry down, no load", offline),
        ("(a) rolling deploy under load", rolling),
        ("(b) rollback under load", rollback),
    ]
    walls = [
        (f"baseline: one trivial task ({len(trivial)} runs, min)", trivial_min),
        (f"cold deploy {TAG_A} (first, migrations)", cold["wall"]),
        (f"warm deploy of a new tag {TAG_A} -> {TAG_B}, no load", warm[0]["wall"]),
        (f"warm deploy of a new tag {TAG_B} -> {TAG_A}, no load", warm[1]["wall"]),
        ("rollback with the registry down, no load", offline["wall"]),
        ("(a) rolling deploy under load", rolling["wall"]),
        ("(b) rollback under load (registry up)", rollback["wall"]),
    ]
    warm_best = min(w["wall"] for w in warm)
    switch_best = [s[1].get("switch") for s in switches if s[1].get("switch") is not None]

    def yes(ok: bool) -> str:
        return "met" if ok else "not met"

    lines = [
        MARK_BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} on a {cores}-core machine (nproc), load average "
        f"{load_start[0]:.1f} at start, shared ({len(others)} containers of other stacks running at start); "
        f"{machine.note()}; whole run {(time.perf_counter() - begun) / 60:.1f} min.",
        "",
        f"Load: {CONNECTIONS} connections kept alive, HTTPS through nginx (127.0.0.1:{HTTPS_PORT}, Host localhost), "
        f"`GET {PATH}` back to back; a request fails unless it gets a 200. A request on a kept-alive connection "
        "that nginx closed before answering (on reload, after 1000 requests) is sent again on a new connection, "
        "as HTTP clients do, and counted under *retried*; its latency includes the reconnect. "
        f"Each phase runs until it holds {args.requests_per_phase} requests or {args.max_phase_seconds:.0f} s "
        f"passed (deploys start {LEAD:.0f} s into theirs); latencies are of the answered requests.",
        "",
        "| phase | requests | failed | retried | s | req/s | p50 ms | p99 ms | p99 / steady p99 | versions served |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, phase in phases:
        lines.append(
            f"| {name} | {phase['requests']} | {phase['failed']} | {phase['retried']} | {phase['seconds']:.0f} "
            f"| {phase['requests'] / phase['seconds']:.0f} | {phase['p50'] * 1000:.1f} | {phase['p99'] * 1000:.1f} "
            f"| {phase['p99'] / base_p99:.2f} | {' -> '.join(phase['served'])} |"
        )
    for name, phase in phases:
        if phase["kinds"]:
            kinds = ", ".join(f"{kind} x{count}" for kind, count in phase["kinds"])
            lines.append(f"\nFailures of {name.split(' ', 1)[0]}: {kinds}.")
    lines += [
        "",
        f"(c): {recreate['failed_during']} failed while the containers were recreated "
        f"({recreate['action'][1] - recreate['action'][0]:.1f} s, until all three answered directly), "
        f"{recreate['failed_after']} after.",
        "",
        f'Release switch, from the JSON callback\'s task times: end of "{CHECKED}" to end of "{SWITCHED}" '
        "(one task: the upstream file replaced, `nginx -t` in the running proxy, SIGHUP, the wait until "
        "nginx's workers from before the reload answered the requests they held, then the app checked through "
        "the proxy; its own timings of the last four are given, and the drain and the check are not counted in "
        "checked -> switched, since traffic moved at the signal). Replicas s: the task that starts the new "
        "replicas all at once and checks each directly:",
        "",
        "| run | checked -> switched s | switch task s | nginx -t s | reload signal s | drain s | proxy check s "
        "| replicas s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in switches:
        lines.append(
            f"| {name} | {fmt_s(run.get('switch'))} | {fmt_s(run.get('task'))} | {fmt_s(run.get('nginx_t'))} "
            f"| {fmt_s(run.get('reload'))} | {fmt_s(run.get('drain'))} | {fmt_s(run.get('verify'))} "
            f"| {fmt_s(run.get('check'))} |"
        )
    lines += ["", "Wall times of whole ansible-playbook runs:", "", "| run | s | / trivial run |", "|---|---|---|"]
    lines += [f"| {name} | {wall:.1f} | {wall / trivial_min:.1f} |" for name, wall in walls]
    lines += [
        "",
        f"Goals: 0 failed requests in (a) and (b): {yes(rolling['failed'] == 0 and rollback['failed'] == 0)}; "
        f"p99 <= 2x steady: {yes(max(rolling['p99'], rollback['p99']) <= 2 * base_p99)} "
        f"({rolling['p99'] / base_p99:.2f}x, {rollback['p99'] / base_p99:.2f}x); "
        f"switch <= 1 s: {yes(bool(switch_best) and max(switch_best) <= 1)} "
        f"({fmt_s(min(switch_best) if switch_best else None)}-{fmt_s(max(switch_best) if switch_best else None)} s); "
        f"warm deploy <= 25 s: {yes(warm_best <= 25)} ({warm_best:.1f} s); "
        f"rollback with the registry down <= 10 s: {yes(offline['wall'] <= 10)} ({offline['wall']:.1f} s); "
        f">= {args.requests_per_phase} requests per phase: "
        f"{yes(all(p['requests'] >= args.requests_per_phase for _, p in phases))}.",
        MARK_END,
    ]
    table = "\n".join(lines)
    print(table)

    write_section(REPO / "docs" / "benchmarks.md", table, MARK_BEGIN, MARK_END, HEADING, INTRO)
    print(
        json.dumps(
            {
                "steady": steady,
                "rolling": rolling,
                "rollback": rollback,
                "recreate": recreate,
                "warm": warm,
                "offline": offline,
                "cold": cold,
                "trivial": trivial,
                "failures": {phase: items[:20] for phase, items in load.failures.items()},
                "retried": {phase: items[:20] for phase, items in load.retried.items()},
            },
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
