"""What every benchmark here shares: the machine's load while it ran, and its
table written between its markers in docs/benchmarks.md."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path


class MachineWatch(threading.Thread):
    """Samples the load average every 5 s, and whether a test run (a pytest process) is active."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.samples: list[tuple[float, bool]] = []

    def run(self) -> None:
        while True:
            testing = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, check=False).returncode == 0
            self.samples.append((os.getloadavg()[0], testing))
            if self.stopping.wait(5):
                break

    def note(self) -> str:
        loads = [load for load, _ in self.samples] or [math.nan]
        testing = sum(1 for _, active in self.samples if active)
        during = (
            f"a test run (pytest) was active during {100 * testing / len(self.samples):.0f} % of the run"
            if testing
            else "no test run was active"
        )
        return (
            f"load average {statistics.mean(loads):.1f} on average, {max(loads):.1f} at most during the run; {during}"
        )


def write_section(doc: Path, table: str, begin: str, end: str, heading: str, intro: str = "") -> None:
    """Put ``table`` (which starts with ``begin`` and ends with ``end``) in ``doc``: in place of the
    previous one, or at the end under ``heading`` and ``intro``."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + table + text[text.index(end) + len(end) :]
    else:
        lead = f"\n\n{heading}\n\n" + (f"{intro}\n\n" if intro else "")
        text = text.rstrip("\n") + lead + table + "\n"
    doc.write_text(text)


def task_profile(run) -> tuple[int, list[tuple[str, float]]]:
    """Module executions on the host, and the slowest tasks by duration."""
    durations: Counter = Counter()
    for play in (run.data or {}).get("plays", []):
        for task in play.get("tasks", []):
            if not task.get("hosts"):
                continue
            span = task["task"].get("duration", {})
            if span.get("start") and span.get("end"):
                seconds = (datetime.fromisoformat(span["end"]) - datetime.fromisoformat(span["start"])).total_seconds()
                durations[task["task"]["name"].split(" : ", 1)[-1]] += seconds
    return run.module_executions(), durations.most_common(8)
