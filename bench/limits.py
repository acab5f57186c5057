#!/usr/bin/env python3
"""What least privilege and resource limits cost the app: the Car API sample
(web x3, tests/integration/inventories/car_api) deployed as the stack
`limitsbench` on ports 10980/11343, in one run, alternately

  A. with the defaults of every app container (no capability, no new
     privileges, at most 1024 processes) plus a memory and a CPU limit on each
     web replica (--memory, --cpus: 512m and 1.0 by default);
  P. with the defaults only (least privilege, no memory or CPU limit);
  B. with all of that relaxed (security: cap_drop [], no_new_privileges false,
     pids_limit 0; no memory or CPU limit),

each redeploy checked on the running containers (docker inspect), then the
same load as bench/rolling.py (kept-alive HTTPS connections through nginx,
GET /health_check back to back) for --seconds per round, the sides taking
turns (A P B, P B A, B A P, ...) so that the machine's noise and drift fall on
each alike.  Prints requests/s, p50, p99 and failures of each round and of each
side pooled, and the ratios A / B and P / B (pooled, and the median of each
cycle's own ratio).  Writes its table between markers in docs/benchmarks.md.  Needs the bed
(`make bed`); touches only the stack `limitsbench`.

    .venv/bin/python bench/limits.py [--rounds 3] [--seconds 30] [--memory 512m] [--cpus 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import ssl
import statistics
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import docker  # noqa: E402
import rolling  # noqa: E402 - its load client, against this stack's proxy
from _common import MachineWatch, write_section  # noqa: E402
from conftest import teardown_stack  # noqa: E402
from playbook import run_playbook  # noqa: E402

MARK_BEGIN = "<!-- bench:limits:begin -->"
MARK_END = "<!-- bench:limits:end -->"
HEADING = "## Least privilege and limits: what they cost (bench/limits.py)"
INTRO = """\
`.venv/bin/python bench/limits.py` deploys the Car API sample (web x3) as the
stack `limitsbench`, in turn (A) with the app containers' defaults (`cap_drop: [ALL]`,
`no-new-privileges`, `pids_limit: 1024`) plus a memory and a CPU limit on each web
replica, (P) with the defaults only, and (B) with all of that relaxed, and drives
the same HTTPS load through nginx against each, in rounds that take turns
(A P B, P B A, B A P, ...) on the same machine."""

STACK = "limitsbench"
INVENTORY = "tests/integration/inventories/car_api"
HTTP_PORT, HTTPS_PORT = 10980, 11343
PROXY_CA = Path(f"/etc/pydeploy/{STACK}/nginx/certs/fullchain.pem")
WARM_UP = 3.0  # seconds of load before a round's requests count
RELAXED = {"cap_drop": [], "no_new_privileges": False, "pids_limit": 0}


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


class Load(rolling.Load):
    """bench/rolling.py's load client, against this stack's proxy."""

    async def connect(self, context: ssl.SSLContext):
        return await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", HTTPS_PORT, ssl=context, server_hostname="localhost"), timeout=10
        )

    async def loop(self) -> None:
        context = ssl.create_default_context(cafile=str(PROXY_CA))
        await asyncio.gather(*(self.client(context) for _ in range(rolling.CONNECTIONS)))


SIDES = {
    "A": "limits and least privilege",
    "P": "least privilege only",
    "B": "relaxed",
}


def web(base: dict, side: str, memory: str, cpus: float) -> dict:
    """stack_processes with web as ``side`` runs it: A the defaults plus memory and cpus, P the defaults,
    B relaxed."""
    processes = copy.deepcopy(base)
    spec = processes["web"]
    for key in ("security", "memory", "cpus"):
        spec.pop(key, None)
    if side == "A":
        spec.update(memory=memory, cpus=cpus)
    elif side == "B":
        spec["security"] = dict(RELAXED)
    return processes


def deploy(processes: dict) -> float:
    extra = {
        "stack_name": STACK,
        "stack_processes": processes,
        "nginx_http_port": HTTP_PORT,
        "nginx_https_port": HTTPS_PORT,
        "_test_secret": str(REPO / ".bed" / "secrets" / STACK),
    }
    started = time.perf_counter()
    run = run_playbook("deploy.yml", inventory=INVENTORY, extra_vars=extra)
    if run.rc != 0:
        raise SystemExit(f"deploy.yml failed: {run.explain()}")
    return time.perf_counter() - started


def web_settings(client) -> list[dict]:
    """What the engine enforces on each running web replica."""
    filters = {"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"], "status": "running"}
    settings = []
    for container in client.containers.list(filters=filters):
        host = container.attrs["HostConfig"]
        settings.append(
            {
                "cap_drop": sorted(host.get("CapDrop") or []),
                "no_new_privileges": any(opt.startswith("no-new-privileges") for opt in host.get("SecurityOpt") or []),
                "pids_limit": host.get("PidsLimit") or 0,
                "memory": host.get("Memory") or 0,
                "nano_cpus": host.get("NanoCpus") or 0,
            }
        )
    return settings


def bytes_of(size: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    size = size.strip().lower().rstrip("b")
    return int(float(size[:-1]) * units[size[-1]]) if size[-1] in units else int(size)


def check_applied(client, side: str, memory: str, cpus: float, replicas: int) -> dict:
    settings = web_settings(client)
    wanted = (
        {"cap_drop": [], "no_new_privileges": False, "pids_limit": 0}
        if side == "B"
        else {"cap_drop": ["ALL"], "no_new_privileges": True, "pids_limit": 1024}
    )
    limited = side == "A"
    wanted.update(memory=bytes_of(memory) if limited else 0, nano_cpus=int(cpus * 1e9) if limited else 0)
    if len(settings) != replicas or any(setting != wanted for setting in settings):
        raise SystemExit(f"the web replicas do not run as wanted ({wanted}): {settings}")
    return wanted


def measure(label: str, seconds: float) -> dict:
    load = Load()
    load.start()
    time.sleep(WARM_UP)
    load.phase = label
    start = time.perf_counter()
    time.sleep(seconds)
    load.phase = "after"
    elapsed = time.perf_counter() - start
    load.stop()
    latencies = load.latencies[label]
    result = {
        "label": label,
        "seconds": elapsed,
        "requests": load.count(label),
        "failed": len(load.failures[label]),
        "retried": len(load.retried[label]),
        "latencies": latencies,
        "rps": load.count(label) / elapsed,
        "p50": rolling.percentile(latencies, 50),
        "p99": rolling.percentile(latencies, 99),
    }
    log(
        f"  {label}: {result['requests']} requests in {elapsed:.1f} s ({result['rps']:.0f}/s), {result['failed']} "
        f"failed; p50 {result['p50'] * 1000:.1f} ms, p99 {result['p99'] * 1000:.1f} ms"
    )
    return result


def pooled(rounds: list[dict]) -> dict:
    latencies = [latency for one in rounds for latency in one["latencies"]]
    seconds = sum(one["seconds"] for one in rounds)
    requests = sum(one["requests"] for one in rounds)
    return {
        "requests": requests,
        "failed": sum(one["failed"] for one in rounds),
        "seconds": seconds,
        "rps": requests / seconds,
        "rps_median": statistics.median(one["rps"] for one in rounds),
        "p50": rolling.percentile(latencies, 50),
        "p99": rolling.percentile(latencies, 99),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side (default 3)")
    parser.add_argument("--seconds", type=float, default=30, help="seconds of load per round (default 30)")
    parser.add_argument("--memory", default="512m", help="memory limit of each web replica in A (default 512m)")
    parser.add_argument("--cpus", type=float, default=1.0, help="CPU limit of each web replica in A (default 1.0)")
    args = parser.parse_args()
    begun = time.perf_counter()
    client = docker.from_env(timeout=120)
    load_start = os.getloadavg()
    cores = len(os.sched_getaffinity(0))
    others = [c.name for c in client.containers.list() if c.labels.get("pydeploy.stack") != STACK]
    base = yaml.safe_load((REPO / INVENTORY / "group_vars" / "all" / "stack.yml").read_text())["stack_processes"]
    replicas = int(base["web"]["replicas"])
    sides = {side: web(base, side, args.memory, args.cpus) for side in SIDES}
    order = list(SIDES)
    machine = MachineWatch()
    machine.start()
    rounds: dict[str, list[dict]] = {side: [] for side in SIDES}
    sequence: list[dict] = []
    deploys: list[float] = []
    try:
        log(f"tearing down {STACK}")
        teardown_stack(client, STACK)
        for number in range(1, args.rounds + 1):
            shift = (number - 1) % len(order)
            for side in order[shift:] + order[:shift]:  # A P B, P B A, B A P, ...
                log(f"round {number}, {side} ({SIDES[side]}): deploy")
                deploys.append(deploy(sides[side]))
                applied = check_applied(client, side, args.memory, args.cpus, replicas)
                log(f"  deployed in {deploys[-1]:.1f} s; web replicas run with {applied}")
                rounds[side].append(measure(f"{side}{number}", args.seconds))
                sequence.append(rounds[side][-1])
    finally:
        log(f"tearing down {STACK}")
        teardown_stack(client, STACK)
    machine.stopping.set()
    machine.join()

    pools = {side: pooled(rounds[side]) for side in SIDES}
    base_side = pools["B"]

    def cycle_ratio(side: str, key: str) -> float:
        """The median over the rounds of this side's figure over B's in the same round."""
        return statistics.median(one[key] / other[key] for one, other in zip(rounds[side], rounds["B"], strict=True))

    lines = [
        MARK_BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} on a {cores}-core machine (nproc), load average "
        f"{load_start[0]:.1f} at start, shared ({len(others)} containers of other stacks running at start); "
        f"{machine.note()}; whole run {(time.perf_counter() - begun) / 60:.1f} min, {len(deploys)} deploys "
        f"(median {statistics.median(deploys):.0f} s).",
        "",
        f"A: the defaults (`cap_drop: [ALL]`, `no_new_privileges`, `pids_limit: 1024`) and `memory: {args.memory}`, "
        f"`cpus: {args.cpus}` on each of the {replicas} web replicas. P: the defaults only. "
        f"B: `security: {json.dumps(RELAXED)}`, no memory or CPU limit. Each redeploy checked on the running "
        "replicas (`docker inspect`: CapDrop, SecurityOpt, PidsLimit, Memory, NanoCpus). Load: "
        f"{rolling.CONNECTIONS} connections kept alive, HTTPS through nginx (127.0.0.1:{HTTPS_PORT}), "
        f"`GET {rolling.PATH}` back to back, {args.seconds:.0f} s per round after {WARM_UP:.0f} s of warm-up, "
        "the sides taking turns (A P B, P B A, B A P, ...); a request fails unless it gets a 200.",
        "",
        "| round | requests | failed | req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for one in sequence:
        lines.append(
            f"| {one['label']} | {one['requests']} | {one['failed']} | {one['rps']:.0f} "
            f"| {one['p50'] * 1000:.2f} | {one['p99'] * 1000:.2f} |"
        )
    lines += [
        "",
        "| side | requests | failed | req/s | req/s / B | median of the rounds' req/s / B | p50 ms | p50 / B "
        "| p99 ms | p99 / B |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side, name in SIDES.items():
        one = pools[side]
        lines.append(
            f"| {side}, {name} | {one['requests']} | {one['failed']} | {one['rps']:.0f} "
            f"| {one['rps'] / base_side['rps']:.3f} | {cycle_ratio(side, 'rps'):.3f} "
            f"| {one['p50'] * 1000:.2f} | {one['p50'] / base_side['p50']:.3f} "
            f"| {one['p99'] * 1000:.2f} | {one['p99'] / base_side['p99']:.3f} |"
        )
    lines.append(MARK_END)
    table = "\n".join(lines)
    print(table)
    write_section(REPO / "docs" / "benchmarks.md", table, MARK_BEGIN, MARK_END, HEADING, INTRO)
    summary = [{key: value for key, value in one.items() if key != "latencies"} for one in sequence]
    print(json.dumps({"rounds": summary, "pooled": pools, "deploys": deploys}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
