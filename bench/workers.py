#!/usr/bin/env python3
"""Background processes of the Flow Forecaster sample (Celery worker x2 and beat),
deployed as the stack `flow_bench` from the integration inventory on ports
9280/9643, all figures from one run on the same machine:

1. tasks across N redeploys (stack_version v2 / v1 alternating, so every
   worker and beat container is replaced) under a steady load of short sleep
   tasks sent through the proxy: enqueued, enqueue failures, lost (never
   SUCCESS) and run twice (more than one row in `forecasts`);
2. time from the start of ansible-playbook until every worker and beat
   container runs the new tag, against the whole deploy's wall time and a
   no-op redeploy (same version, under the same load) as baseline;
3. start lateness of a `* * * * *` scheduled job fired by the host's cron
   daemon (runner's started_at, and the job container's start seen in docker
   events, minus the scheduled minute), with the time a bare
   `docker run --rm <image> sh -c "echo tick"` takes as baseline.

Writes its table between markers in docs/benchmarks.md.  Needs the bed
(`make bed`); touches only the stack `flow_bench`.

    .venv/bin/python bench/workers.py [--redeploys 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import docker  # noqa: E402
from _common import write_section  # noqa: E402
from conftest import stack_query, teardown_stack  # noqa: E402
from playbook import run_playbook  # noqa: E402
from proxy import https_request  # noqa: E402

MARK_BEGIN = "<!-- bench:workers:begin -->"
MARK_END = "<!-- bench:workers:end -->"
HEADING = "## Workers: tasks across redeploys, release switch, job start (bench/workers.py)"
INTRO = """\
`.venv/bin/python bench/workers.py` deploys the Flow Forecaster sample (web x2, Celery
worker x2 at concurrency 2, beat) as the stack `flow_bench`, redeploys it under a steady
load of sleep tasks sent through the proxy, and times a `* * * * *` job fired by cron.
Baselines (no-op redeploy, bare `docker run`) come from the same run; other stacks' jobs
start containers on the same minutes, so the job figures include that contention."""

STACK = "flow_bench"
INVENTORY = "tests/integration/inventories/flow_forecaster"
HTTP_PORT, HTTPS_PORT = 9280, 9643
JOB = "tick"
JOBS = {JOB: {"schedule": "* * * * *", "command": ["sh", "-c", "echo tick"]}}
JOB_STATUS = Path(f"/var/lib/pydeploy/{STACK}/jobs/{JOB}.json")
WORKER_CONTAINERS = 3  # worker x2 + beat, from the inventory's stack_processes
SLOTS = 4  # two workers, concurrency 2
INTERVAL = 0.25  # one task sent every INTERVAL seconds
SLEEPS = (0.5, 0.75, 1.0, 1.5, 0.5, 1.0)  # task lengths, cycled: 0.875 s on average
POLL = 0.2
VENV_STAMP = REPO / ".venv" / ".requirements.sha256"  # written last by bed/bootstrap.sh
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
CODE = ("roles", "plugins", "playbooks", "deploy.yml", INVENTORY)
DRAIN_TIMEOUT = 240  # after the load stops: a task not done by then counts as lost


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def extra_vars(version: str) -> dict:
    return {
        "stack_name": STACK,
        "nginx_http_port": HTTP_PORT,
        "nginx_https_port": HTTPS_PORT,
        "_test_secret": str(REPO / ".bed" / "secrets" / STACK),
        "stack_version": version,
        "stack_jobs": JOBS,
    }


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def fmt(values: list[float], digits: int = 1) -> str:
    if not values:
        return "- | - | -"
    return " | ".join(f"{value:.{digits}f}" for value in spread(values))


class ReleaseWatch(threading.Thread):
    """Polls the stack's worker and beat containers every POLL seconds from the start of a deploy:
    when the first of them stops being a running container of the previous tag, and when all of
    them are running containers of the new one."""

    def __init__(self, old: str, new: str, started: float) -> None:
        super().__init__(daemon=True)
        self.old, self.new, self.started = old, new, started
        self.api = docker.APIClient(timeout=30)
        self.stopping = threading.Event()
        self.first_change: float | None = None
        self.ready: float | None = None

    def snapshot(self) -> list[tuple[str, str]]:
        filters = {"label": [f"pydeploy.stack={STACK}", "pydeploy.role=workers"]}
        return [
            (c["State"], c["Labels"].get("pydeploy.version", ""))
            for c in self.api.containers(all=True, filters=filters)
        ]

    def run(self) -> None:
        while True:
            try:
                states = self.snapshot()
            except Exception:  # noqa: BLE001 - a missed poll; the next one counts
                states = None
            now = time.perf_counter() - self.started
            if states is not None:
                on = {
                    version: len(states) == WORKER_CONTAINERS and all(s == ("running", version) for s in states)
                    for version in (self.old, self.new)
                }
                if self.first_change is None and not on[self.old]:
                    self.first_change = now
                if on[self.new]:
                    self.ready = now
                    break
            if self.stopping.wait(POLL):
                break
        self.api.close()


class Load(threading.Thread):
    """Sends one sleep task every INTERVAL seconds through the proxy; keeps every task id and every failure."""

    def __init__(self, origin: float) -> None:
        super().__init__(daemon=True)
        self.origin = origin
        self.stopping = threading.Event()
        self.tasks: list[tuple[float, str]] = []
        self.failures: list[tuple[float, str]] = []

    def run(self) -> None:
        sent, next_at = 0, time.perf_counter()
        while not self.stopping.is_set():
            seconds = SLEEPS[sent % len(SLEEPS)]
            sent += 1
            at = time.perf_counter() - self.origin
            try:
                status, _, body = https_request(
                    STACK, HTTPS_PORT, "/api/async/sleep", method="POST", body={"seconds": seconds}
                )
                if status == 202:
                    self.tasks.append((at, json.loads(body)["task_id"]))
                else:
                    self.failures.append((at, f"HTTP {status}"))
            except Exception as exc:  # noqa: BLE001 - a failed enqueue is a figure, not an error
                self.failures.append((at, f"{type(exc).__name__}: {exc}"[:100]))
            next_at += INTERVAL
            delay = next_at - time.perf_counter()
            if delay > 0:
                self.stopping.wait(delay)
            else:  # behind (a slow answer): carry on at the pace, no burst to catch up
                next_at = time.perf_counter()


class JobWatch(threading.Thread):
    """Keeps every run of the job from its status file (polled), keyed by started_at."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.runs: dict[str, dict] = {}

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                status = json.loads(JOB_STATUS.read_text())
            except (OSError, ValueError):
                continue
            if status.get("started_at"):
                self.runs[status["started_at"]] = status


class JobStarts(threading.Thread):
    """The start of every job container of the stack, from docker events (nanosecond times)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.client = docker.from_env(timeout=None)
        filters = {"type": "container", "event": "start", "label": [f"pydeploy.stack={STACK}", "pydeploy.process=job"]}
        self.stream = self.client.events(decode=True, filters=filters)
        self.starts: list[datetime] = []

    def run(self) -> None:
        try:
            for event in self.stream:
                self.starts.append(datetime.fromtimestamp(event["timeNano"] / 1e9, UTC))
        except Exception:  # noqa: BLE001, S110 - the stream ends when closed
            pass

    def close(self) -> None:
        self.stream.close()
        self.client.close()


def utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def checkout_mark() -> tuple | None:
    """What a deploy runs: the virtualenv build (its requirements stamp, None while it is being rebuilt)
    and the newest change to the collection's files. A deploy that failed while this changed is run again."""
    try:
        stat = VENV_STAMP.stat()
    except FileNotFoundError:
        return None
    newest = max(
        (path.stat().st_mtime_ns for folder in CODE for path in (REPO / folder).rglob("*") if path.is_file()),
        default=0,
    )
    return stat.st_ino, stat.st_mtime_ns, newest


def venv_ready(timeout: float = 600) -> tuple:
    """Wait until the virtualenv is complete and ansible-playbook answers (`make venv` may rebuild it at any time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mark = checkout_mark()
        if mark is not None:
            check = subprocess.run([str(PLAYBOOK), "--version"], capture_output=True, check=False)
            if check.returncode == 0 and checkout_mark() == mark:
                return mark
        time.sleep(5)
    raise SystemExit(f"{VENV_STAMP.parent} not usable within {timeout:.0f} s")


def deploy(version: str, old: str | None = None) -> dict:
    """One deploy, timed; run again (and then not timed) when the checkout changed under a failed one."""
    repeated = 0
    while True:
        mark = venv_ready()
        started = time.perf_counter()
        watch = ReleaseWatch(old, version, started) if old else None
        if watch:
            watch.start()
        run = run_playbook(inventory=INVENTORY, extra_vars=extra_vars(version))
        wall = time.perf_counter() - started
        if watch:
            watch.join(timeout=5)  # the containers are up before the playbook returns; one more poll at most
            watch.stopping.set()
            watch.join()
        if run.rc == 0:
            break
        if checkout_mark() == mark or repeated == 2:
            raise SystemExit(f"deploy of {version} failed: {run.explain()}")
        repeated += 1
        log(f"  the checkout changed during the failed deploy ({run.failure_messages()[:1]}); deploying again")
    result = {"version": version, "wall": wall, "changed": run.changed(), "changed_tasks": run.changed_tasks()}
    result["repeated"] = repeated
    if watch:
        result.update(first_change=watch.first_change, ready=watch.ready)
    return result


def quiet_job_runs(jobs: JobWatch, after: datetime, count: int, timeout: float = 330) -> list[dict]:
    """The first `count` finished runs in consecutive minutes, scheduled after `after`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = sorted(
            (run for started, run in list(jobs.runs.items()) if utc(started) > after and run.get("state") != "running"),
            key=lambda run: run["started_at"],
        )
        for first in range(len(finished) - count + 1):
            window = finished[first : first + count]
            minutes = [minute_of(utc(run["started_at"])) for run in window]
            if all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(minutes)):
                return window
        time.sleep(1)
    raise SystemExit(f"no {count} consecutive runs of {JOB} within {timeout:.0f} s: {sorted(jobs.runs)}")


def bare_docker_runs(image: str, count: int) -> list[float]:
    """`docker run --rm <image> sh -c "echo tick"`, timed; started away from the minute's first seconds."""
    while not 8 <= datetime.now(UTC).second <= 40:
        time.sleep(0.5)
    times = []
    for n in range(count):
        argv = ["docker", "run", "--rm", "--name", f"{STACK}-baseline-{n}", image, "sh", "-c", "echo tick"]
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def drain(ids: list[str]) -> tuple[float, dict[str, int]]:
    """Seconds until every task has its row in forecasts (or DRAIN_TIMEOUT), and rows per task."""
    started = time.monotonic()
    query = "SELECT task_id, count(*) FROM forecasts WHERE task_id = ANY(%s) GROUP BY task_id"
    while True:
        rows = dict(stack_query(STACK, query, (ids,)))
        waited = time.monotonic() - started
        if len(rows) == len(ids) or waited > DRAIN_TIMEOUT:
            return waited, rows
        time.sleep(2)


def task_state(task_id: str) -> str:
    for _ in range(3):
        try:
            code, _, body = https_request(STACK, HTTPS_PORT, f"/api/tasks/{task_id}")
            return json.loads(body)["status"] if code == 200 else f"HTTP {code}"
        except Exception:  # noqa: BLE001 - asked again, then reported
            time.sleep(1)
    return "unreachable"


def workers_answering(expected: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            code, _, body = https_request(STACK, HTTPS_PORT, "/api/async/health")
            if code == 200 and json.loads(body)["celery_workers"] == expected:
                return
        except Exception as exc:  # noqa: BLE001 - keep asking
            log(f"  health: {type(exc).__name__}")
        time.sleep(1)
    raise SystemExit(f"{expected} Celery workers did not answer within {timeout:.0f} s")


def phase_of(at: float, windows: list[tuple[str, float, float]]) -> str:
    return next((label for label, start, end in windows if start <= at <= end), "between deploys")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redeploys", type=int, default=10, help="redeploys v2/v1 under load (default 10)")
    parser.add_argument("--noop", type=int, default=2, help="no-op redeploys under load, baseline (default 2)")
    parser.add_argument("--job-runs", type=int, default=3, help="consecutive quiet job runs (default 3)")
    parser.add_argument("--docker-runs", type=int, default=5, help="bare docker runs, baseline (default 5)")
    args = parser.parse_args()
    begun = time.perf_counter()
    client = docker.from_env(timeout=120)

    log(f"tearing down {STACK}")
    teardown_stack(client, STACK)
    jobs, starts = JobWatch(), JobStarts()
    jobs.start()
    starts.start()
    load = None
    try:
        log(f"cold deploy of {STACK} v1 (https://localhost:{HTTPS_PORT})")
        cold = deploy("v1")
        cold_end = datetime.now(UTC)
        log(f"  {cold['wall']:.1f} s; waiting for both Celery workers")
        workers_answering(2)

        # 3. Scheduled job, on a quiet stack.
        log(f"waiting for {args.job_runs} consecutive runs of the job '{JOB}' (cron, every minute)")
        first = quiet_job_runs(jobs, cold_end, 1)[0]
        log(f"  first run at {first['started_at']}; timing {args.docker_runs} bare docker runs of {first['image']}")
        bare = bare_docker_runs(first["image"], args.docker_runs)
        quiet = quiet_job_runs(jobs, cold_end, args.job_runs)
        log("  runs at " + ", ".join(run["started_at"] for run in quiet))

        # 1 and 2. Redeploys under load, no-op redeploys as baseline.
        origin = time.perf_counter()
        load_begin = datetime.now(UTC)
        load = Load(origin)
        load.start()
        time.sleep(5)
        # A no-op first, then v2 / v1 alternating, then the other no-ops.
        versions, current = ["v1"] if args.noop else [], "v1"
        for _ in range(args.redeploys):
            current = "v2" if current == "v1" else "v1"
            versions.append(current)
        versions += [current] * max(args.noop - 1, 0)
        windows, deploys, noops = [], [], []
        previous = "v1"
        for index, version in enumerate(versions, 1):
            kind = "no-op" if version == previous else f"{previous} -> {version}"
            log(f"deploy {index}/{len(versions)} ({kind}), {len(load.tasks)} tasks sent so far")
            start = time.perf_counter() - origin
            result = deploy(version, old=None if version == previous else previous)
            windows.append((f"deploy {index} ({kind})", start, time.perf_counter() - origin))
            if version == previous:
                noops.append(result)
                log(f"  {result['wall']:.1f} s, {result['changed']} tasks changed {result['changed_tasks']}")
            else:
                deploys.append(result)
                log(
                    f"  {result['wall']:.1f} s; workers: first replaced at {result['first_change'] or 0:.1f} s, "
                    f"all on {version} at {result['ready'] or float('nan'):.1f} s"
                )
            previous = version
        load.stopping.set()
        load.join()
        load_end = datetime.now(UTC)
        ids = [task_id for _, task_id in load.tasks]
        log(f"load stopped: {len(ids)} tasks enqueued, {len(load.failures)} failures; draining the queue")
        drained, rows = drain(ids)
        log(f"  {len(rows)}/{len(ids)} tasks recorded after {drained:.1f} s; asking each task's status")
        with ThreadPoolExecutor(4) as pool:
            states = dict(zip(ids, pool.map(task_state, ids), strict=True))
        rows = dict(
            stack_query(
                STACK, "SELECT task_id, count(*) FROM forecasts WHERE task_id = ANY(%s) GROUP BY task_id", (ids,)
            )
        )
        lost = [task_id for task_id in ids if states[task_id] != "SUCCESS"]
        twice = {task_id: count for task_id, count in rows.items() if count > 1}
        unrecorded = [task_id for task_id in ids if task_id not in rows]
        loaded_runs = sorted(
            (
                run
                for started, run in list(jobs.runs.items())
                if load_begin < utc(started) < load_end and run.get("state") != "running"
            ),
            key=lambda run: run["started_at"],
        )
    finally:
        if load:
            load.stopping.set()
        jobs.stopping.set()
        starts.close()
        log(f"tearing down {STACK}")
        teardown_stack(client, STACK)

    # Figures.
    def late(runs: list[dict]) -> list[float]:
        return [(utc(run["started_at"]) - minute_of(utc(run["started_at"]))).total_seconds() for run in runs]

    quiet_minutes = {minute_of(utc(run["started_at"])) for run in quiet}
    container_late = [
        (moment - minute_of(moment)).total_seconds() for moment in starts.starts if minute_of(moment) in quiet_minutes
    ]
    run_seconds = [float(run["duration_seconds"]) for run in quiet]
    timed = [d for d in deploys if not d["repeated"] and d["ready"] is not None]
    ready = [d["ready"] for d in timed]
    first_change = [d["first_change"] for d in timed if d["first_change"] is not None]
    walls = [d["wall"] for d in timed]
    ratios = [d["ready"] / d["wall"] for d in timed]
    noop_walls = [d["wall"] for d in noops if not d["repeated"]]
    repeated = sum(1 for d in deploys + noops if d["repeated"])
    noop_median = statistics.median(noop_walls) if noop_walls else float("nan")
    failure_phases = Counter(phase_of(at, windows) for at, _ in load.failures)
    failure_kinds = Counter(reason for _, reason in load.failures)
    lost_states = Counter(states[task_id] for task_id in lost)
    duration = time.perf_counter() - origin
    cores = len(os.sched_getaffinity(0))
    mean_sleep = sum(SLEEPS) / len(SLEEPS)

    def states_note(counter: Counter) -> str:
        return ", ".join(f"{count} {state}" for state, count in counter.most_common()) or "-"

    lines = [
        MARK_BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} on a {cores}-core machine (nproc), shared with other test runs; "
        f"whole run {(time.perf_counter() - begun) / 60:.1f} min.",
        "",
        f"Tasks across {len(deploys)} redeploys (v2 / v1 alternating, every worker and beat container replaced) "
        f"and {len(noops)} no-op redeploys, under a load of one sleep task every {INTERVAL} s "
        f"({min(SLEEPS)}-{max(SLEEPS)} s each, {mean_sleep / INTERVAL:.1f} of {SLOTS} worker slots busy on average) "
        f"for {duration / 60:.1f} min:",
        "",
        "| figure | count |",
        "|---|---|",
        f"| tasks enqueued (202) | {len(ids)} |",
        f"| enqueue failures (not 202) | {len(load.failures)} |",
        f"| lost: not SUCCESS {DRAIN_TIMEOUT} s after the load stopped | {len(lost)} |",
        f"| run twice: more than one row in `forecasts` | {len(twice)} |",
        f"| queue drained (every task recorded) after the load stopped, s | {drained:.1f} |",
    ]
    if load.failures:
        by_phase = ", ".join(f"{phase}: {n}" for phase, n in failure_phases.most_common())
        by_kind = ", ".join(f"{kind} x{n}" for kind, n in failure_kinds.most_common(3))
        lines += ["", f"Enqueue failures by phase: {by_phase}; by kind: {by_kind}."]
    if lost:
        lines += ["", f"Lost tasks by last status: {states_note(lost_states)}."]
    if repeated:
        lines += [
            "",
            f"{repeated} deploy(s) failed while the checkout (`.venv` or the collection's files) changed under "
            "them on this shared machine, and were run again; their times are left out below.",
        ]
    lines += [
        "",
        "Time from the start of ansible-playbook (polled every 0.2 s) until every worker and beat container "
        f"(3) runs the new tag, over {len(timed)} version redeploys:",
        "",
        "| figure | min | median | max | median / no-op redeploy |",
        "|---|---|---|---|---|",
        f"| deploy start -> all workers running the new tag, s | {fmt(ready)} "
        f"| {statistics.median(ready) / noop_median:.2f} |",
        f"| deploy start -> first old worker container gone, s | {fmt(first_change)} "
        f"| {statistics.median(first_change) / noop_median:.2f} |",
        f"| whole version redeploy (wall), s | {fmt(walls)} | {statistics.median(walls) / noop_median:.2f} |",
        f"| baseline: no-op redeploy under the same load (wall), s | {fmt(noop_walls)} | 1.00 |",
        f"| workers ready / whole deploy wall time | {fmt(ratios, 2)} | - |",
        "",
        f'Scheduled job `{JOB}` (`* * * * *`, `sh -c "echo tick"`), {len(quiet)} consecutive runs on the quiet '
        "stack, lateness = time - scheduled minute:",
        "",
        "| figure | min | median | max |",
        "|---|---|---|---|",
        f"| runner's `started_at` lateness (1 s resolution), s | {fmt(late(quiet), 0)} |",
        f"| job container start lateness (docker events), s | {fmt(container_late, 2)} |",
        f"| runner's run duration (`docker run` of the job), s | {fmt(run_seconds, 2)} |",
        f'| baseline: bare `docker run --rm <image> sh -c "echo tick"` ({len(bare)} runs), s | {fmt(bare, 2)} |',
        f"| `started_at` lateness of the {len(loaded_runs)} runs during the redeploys, s "
        f"| {fmt(late(loaded_runs), 0)} |",
        MARK_END,
    ]
    table = "\n".join(lines)
    print(table)

    write_section(REPO / "docs" / "benchmarks.md", table, MARK_BEGIN, MARK_END, HEADING, INTRO)
    print(
        json.dumps(
            {
                "deploys": deploys,
                "noops": noops,
                "cold": cold,
                "failures": load.failures,
                "lost": {task_id: states[task_id] for task_id in lost},
                "twice": twice,
                "unrecorded": unrecorded,
                "job_runs": quiet,
                "job_runs_under_load": loaded_runs,
                "bare_docker_run": bare,
            },
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
