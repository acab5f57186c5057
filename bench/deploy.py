#!/usr/bin/env python3
"""Cold deploy and no-op redeploy of the Flight Hunter sample, as whole
`ansible-playbook deploy.yml -i inventories/local` runs, against baselines
measured in the same run on the same machine:

- startup:  an ansible-playbook run of one play with no task;
- per task: a run of 20 trivial module tasks, divided by 20.

Figures are reported as seconds (min / median) and as ratios to those
baselines, because these machines are shared and noisy.  Writes its table
between markers in docs/benchmarks.md.

    .venv/bin/python bench/deploy.py [--cold 3] [--noop 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import docker  # noqa: E402
from _common import write_section  # noqa: E402
from conftest import teardown_stack  # noqa: E402
from playbook import run_playbook  # noqa: E402

MARK_BEGIN = "<!-- bench:deploy:begin -->"
MARK_END = "<!-- bench:deploy:end -->"
STACK = "flight_hunter"


def timed(playbook: str, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    run = run_playbook(playbook, **kwargs)
    elapsed = time.perf_counter() - started
    if run.rc != 0:
        raise SystemExit(f"{playbook} failed: {run.explain()}")
    return elapsed, run


def baseline_playbooks(folder: Path) -> tuple[Path, Path]:
    empty = folder / "empty.yml"
    empty.write_text("- hosts: localhost\n  gather_facts: false\n  tasks: []\n")
    trivial = folder / "trivial.yml"
    tasks = "".join(
        f"    - name: Trivial {n}\n      ansible.builtin.command: /bin/true\n      changed_when: false\n"
        for n in range(20)
    )
    trivial.write_text(f"- hosts: localhost\n  gather_facts: false\n  tasks:\n{tasks}")
    return empty, trivial


def task_profile(run) -> tuple[int, list[tuple[str, float]]]:
    """Tasks that ran on the host, and the slowest ones by duration."""
    durations: Counter = Counter()
    count = 0
    for play in (run.data or {}).get("plays", []):
        for task in play.get("tasks", []):
            if not task.get("hosts"):
                continue
            result = next(iter(task["hosts"].values()))
            if result.get("skipped"):
                continue
            count += 1
            span = task["task"].get("duration", {})
            if span.get("start") and span.get("end"):
                seconds = (datetime.fromisoformat(span["end"]) - datetime.fromisoformat(span["start"])).total_seconds()
                durations[task["task"]["name"].split(" : ", 1)[-1]] += seconds
    return count, durations.most_common(6)


def stats(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=3, help="cold deploys (default 3)")
    parser.add_argument("--noop", type=int, default=5, help="no-op redeploys (default 5)")
    parser.add_argument("--baseline", type=int, default=3, help="runs of each baseline (default 3)")
    args = parser.parse_args()
    client = docker.from_env()

    with tempfile.TemporaryDirectory() as tmp:
        empty, trivial = baseline_playbooks(Path(tmp))
        startup = [timed(str(empty), json_output=False)[0] for _ in range(args.baseline)]
        twenty = [timed(str(trivial), json_output=False)[0] for _ in range(args.baseline)]
    startup_min = min(startup)
    per_task = max((min(twenty) - startup_min) / 20, 1e-3)

    cold, noop = [], []
    for _ in range(args.cold):
        teardown_stack(client, STACK)
        elapsed, cold_run = timed("deploy.yml")
        cold.append(elapsed)
    for _ in range(args.noop):
        elapsed, noop_run = timed("deploy.yml")
        if noop_run.changed() != 0:
            raise SystemExit(f"the no-op redeploy changed something: {noop_run.changed_tasks()}")
        noop.append(elapsed)

    cold_tasks, cold_top = task_profile(cold_run)
    noop_tasks, noop_top = task_profile(noop_run)
    rows = [
        ("startup (empty play)", startup, None),
        ("20 trivial module tasks", twenty, None),
        ("cold deploy", cold, cold_tasks),
        ("no-op redeploy", noop, noop_tasks),
    ]
    lines = [
        MARK_BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} on {REPO.name}'s machine kind (2 cores), "
        f"{args.cold} cold and {args.noop} no-op runs; per-task cost = (20 trivial tasks - startup) / 20 "
        f"= {per_task:.3f} s.",
        "",
        "| run | min s | median s | tasks run | min / startup | min / per-task cost |",
        "|---|---|---|---|---|---|",
    ]
    for name, values, tasks in rows:
        low, mid = stats(values)
        lines.append(
            f"| {name} | {low:.1f} | {mid:.1f} | {tasks if tasks is not None else '-'} "
            f"| {low / startup_min:.1f} | {low / per_task:.0f} |"
        )
    lines += ["", "Slowest tasks of the last cold deploy (s):", ""]
    lines += [f"- {name}: {seconds:.2f}" for name, seconds in cold_top]
    lines += ["", "Slowest tasks of the last no-op redeploy (s):", ""]
    lines += [f"- {name}: {seconds:.2f}" for name, seconds in noop_top]
    lines.append(MARK_END)
    table = "\n".join(lines)
    print(table)

    write_section(
        REPO / "docs" / "benchmarks.md", table, MARK_BEGIN, MARK_END, "## Deploy: cold and no-op (bench/deploy.py)"
    )
    print(json.dumps({"cold": cold, "noop": noop, "startup": startup, "twenty": twenty}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
