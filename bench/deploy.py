#!/usr/bin/env python3
"""Deploy, no-op redeploy and offline rollback of the Flight Hunter sample
through `deploy.yml -i inventories/local`, as whole ansible-playbook runs,
against a baseline measured in the same run on the same machine: a playbook
of one trivial task on the same inventory (ansible-playbook's own start-up,
inventory and connection).  The stack's images come from a registry of its
own on loopback (the bed registry's storage, read-only), stopped for the
rollbacks.  Figures are seconds (min / median) and ratios to the baseline's
median, because these machines are shared and noisy; each run's module
executions on the host are counted from the JSON callback (tasks whose action
runs on the host, not on the controller).  Writes its table between markers
in docs/benchmarks.md.

    .venv/bin/python bench/deploy.py [--rounds 3] [--noop 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import docker  # noqa: E402
from _common import MachineWatch, task_profile, write_section  # noqa: E402
from conftest import teardown_stack  # noqa: E402
from playbook import run_playbook  # noqa: E402
from registry_mirror import Mirror  # noqa: E402

MARK_BEGIN = "<!-- bench:deploy:begin -->"
MARK_END = "<!-- bench:deploy:end -->"
STACK = "flight_hunter"
OLD, NEW = "v1", "v2"


def measure(playbook: str, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    run = run_playbook(playbook, **kwargs)
    elapsed = time.perf_counter() - started
    if run.rc != 0:
        raise SystemExit(f"{playbook} failed: {run.explain()}")
    return elapsed, run


def one_task_playbook(folder: Path) -> Path:
    playbook = folder / "one_task.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: One trivial task\n      ansible.builtin.command: /bin/true\n      changed_when: false\n"
    )
    return playbook


def stats(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="new-tag deploys and offline rollbacks (default 3)")
    parser.add_argument("--noop", type=int, default=5, help="no-op redeploys (default 5)")
    parser.add_argument("--baseline", type=int, default=5, help="runs of the one-task playbook (default 5)")
    args = parser.parse_args()
    client = docker.from_env()
    watch = MachineWatch()
    watch.start()

    with tempfile.TemporaryDirectory() as tmp:
        mirror = Mirror(Path(tmp))
        mirror.start()
        image = {"stack_image": f"127.0.0.1:{mirror.port}/pydeploy/flight-hunter"}
        try:
            one_task = one_task_playbook(Path(tmp))
            baseline = [measure(str(one_task), json_output=False)[0] for _ in range(args.baseline)]

            teardown_stack(client, STACK)

            def timed(playbook: str, **kwargs) -> tuple[float, object]:
                # The baseline is taken again right before each measured run, so that the ratios hold
                # while the shared machine's speed drifts during the benchmark.
                baseline.append(measure(str(one_task), json_output=False)[0])
                return measure(playbook, **kwargs)

            cold, cold_run = timed("deploy.yml", extra_vars={**image, "stack_version": OLD})
            runs: dict[str, list] = {"new tag": [], "no-op": [], "rollback, registry down": []}
            last: dict[str, object] = {}
            for number in range(args.rounds):
                elapsed, run = timed("deploy.yml", extra_vars={**image, "stack_version": NEW})
                runs["new tag"].append(elapsed)
                last["new tag"] = run
                if number == 0:
                    first_new = (elapsed, run)
                    for _ in range(args.noop):
                        elapsed, run = timed("deploy.yml", extra_vars={**image, "stack_version": NEW})
                        if run.changed() != 0:
                            raise SystemExit(f"the no-op redeploy changed something: {run.changed_tasks()}")
                        runs["no-op"].append(elapsed)
                        last["no-op"] = run
                mirror.stop()
                try:
                    elapsed, run = timed(
                        "rollback.yml", extra_vars={**image, "stack_version": NEW, "app_rollback_schema": "proceed"}
                    )
                finally:
                    mirror.start()
                runs["rollback, registry down"].append(elapsed)
                last["rollback, registry down"] = run
        finally:
            mirror.stop()
            teardown_stack(client, STACK)
    watch.stopping.set()
    watch.join()

    base = statistics.median(baseline)
    lines = [
        MARK_BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} on a 2-core machine ({watch.note()}); baseline: a playbook "
        f"of one trivial task on the same inventory, median {base:.2f} s of {len(baseline)} ({args.baseline} first, "
        "then one right before each measured run).",
        "",
        "| run | runs | min s | median s | median / one-task playbook | module executions on the host | changed |",
        "|---|---|---|---|---|---|---|",
        f"| one-task playbook | {len(baseline)} | {min(baseline):.2f} | {base:.2f} | 1.0 | 1 | 0 |",
        f"| cold deploy ({OLD}, images in the registry) | 1 | {cold:.1f} | {cold:.1f} | {cold / base:.1f} "
        f"| {cold_run.module_executions()} | {cold_run.changed()} |",
        f"| first deploy of a new tag ({OLD} -> {NEW}, one migration) | 1 | {first_new[0]:.1f} | {first_new[0]:.1f} "
        f"| {first_new[0] / base:.1f} | {first_new[1].module_executions()} | {first_new[1].changed()} |",
    ]
    for name, values in runs.items():
        low, mid = stats(values)
        run = last[name]
        lines.append(
            f"| {name} | {len(values)} | {low:.1f} | {mid:.1f} | {mid / base:.1f} "
            f"| {run.module_executions()} | {run.changed()} |"
        )
    for name in ("no-op", "new tag", "rollback, registry down"):
        _, top = task_profile(last[name])
        lines += ["", f"Slowest tasks of the last {name} run (s):", ""]
        lines += [f"- {task}: {seconds:.2f}" for task, seconds in top]
    lines.append(MARK_END)
    table = "\n".join(lines)
    print(table)
    write_section(
        REPO / "docs" / "benchmarks.md",
        table,
        MARK_BEGIN,
        MARK_END,
        "## Deploy: no-op, new tag, offline rollback (bench/deploy.py)",
    )
    print(json.dumps({"baseline": baseline, "cold": cold, **runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
