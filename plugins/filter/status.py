# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""status.yml's view of each process: its containers, health, limits, restarts and OOM kills; logs.yml's merge of
the lines read on each host."""

from __future__ import annotations

import time

from ansible_collections.pydeploy.stack.plugins.module_utils._logs import NS, parse_time

HEALTH_ORDER = ("healthy", "unhealthy", "starting")


def _time(value) -> int | None:
    try:
        return parse_time(value) if value and not str(value).startswith("0001-") else None
    except ValueError:
        return None


def _short(ns: int) -> str:
    """A time to the second, RFC 3339 UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // NS))


def _span(seconds: float) -> str:
    """A length of time as a person says it: 45 s, 12 min, 3 h, 2 d."""
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _window(seconds: float) -> str:
    return {3600: "the last hour", 86400: "the last day"}.get(round(seconds), f"the last {_span(seconds)}")


def _bytes(count) -> str:
    count = int(count or 0)
    if count <= 0:
        return "unlimited"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{round(count / size, 1):g} {unit}"
    return f"{count} B"


def _cpus(host_config: dict) -> str:
    nano = int(host_config.get("NanoCpus") or 0)
    if nano > 0:
        return f"{nano / 1e9:g}"
    quota = int(host_config.get("CpuQuota") or 0)
    if quota > 0:
        return f"{quota / int(host_config.get('CpuPeriod') or 100000):g}"
    return "unlimited"


def _pids(host_config: dict) -> str:
    limit = host_config.get("PidsLimit")
    return str(limit) if isinstance(limit, int) and limit > 0 else "unlimited"


def _distinct(values) -> str:
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return " / ".join(seen)


def _restarts_seen(events) -> int:
    """Starts that followed a die of the same container within the events."""
    died, count = set(), 0
    for event in events:
        if event.get("action") == "die":
            died.add(event.get("id"))
        elif event.get("action") == "start" and event.get("id") in died:
            died.discard(event.get("id"))
            count += 1
    return count


def process_status(state):
    """What ``pydeploy.stack.container_state`` read on a host, by process (``pydeploy.process`` label; one-off
    containers left out): ``running``, ``other``, ``unhealthy`` and ``versions`` as before, then ``health``,
    ``limits`` (memory, cpus, pids), ``restarts`` and ``oom`` as lines of text, and the figures behind them:
    ``restart_count`` (the engine's RestartCount, summed), ``restarts_recent`` (restarts within the events'
    window, at least), ``oom_killed`` (a container whose last exit was an OOM kill) and ``last_oom_kill``."""
    state = state or {}
    now = _time(state.get("now"))
    since = _time(state.get("events_since"))
    oldest = _time(state.get("events_oldest"))
    complete = bool(state.get("events_complete", True))
    events_by_id = {}
    for event in sorted(state.get("events") or [], key=lambda e: str(e.get("time", ""))):
        events_by_id.setdefault(event.get("id"), []).append(event)
    window = _window((now - since) / NS) if now is not None and since is not None else ""
    if window and not complete and oldest is not None:
        remembered = f"the engine remembers its events of the last {_span((now - oldest) / NS)} only"
    elif window and not complete:
        remembered = "the engine remembers none of its events there"
    else:
        remembered = ""

    processes = {}
    for container in state.get("containers") or []:
        labels = (container.get("Config") or {}).get("Labels") or {}
        process = labels.get("pydeploy.process")
        if process and not labels.get("pydeploy.oneoff"):
            processes.setdefault(process, []).append(container)

    report = {}
    for process, containers in sorted(processes.items()):
        entry = {"running": 0, "other": 0, "unhealthy": 0, "versions": []}
        health = dict.fromkeys(HEALTH_ORDER, 0)
        health["none"] = 0
        restart_count, recent, last_restart = 0, 0, None
        oom_exits, oom_events, oom_seen = [], [], 0
        for container in containers:
            name = container.get("Name", "").lstrip("/")
            status = container.get("State") or {}
            events = events_by_id.get(container.get("Id"), [])
            running = status.get("Status") == "running"
            entry["running" if running else "other"] += 1
            check = (status.get("Health") or {}).get("Status")
            health[check if check in HEALTH_ORDER else "none"] += 1
            entry["unhealthy"] += check == "unhealthy"
            version = ((container.get("Config") or {}).get("Labels") or {}).get("pydeploy.version")
            if version and version not in entry["versions"]:
                entry["versions"].append(version)
            count = int(container.get("RestartCount") or 0)
            restart_count += count
            started = _time(status.get("StartedAt"))
            seen = _restarts_seen(events)
            # The last restart is its last start; one within the window counts even when its events are forgotten.
            if count and started is not None:
                last_restart = max(last_restart or started, started)
            recent += max(seen, 1 if count and started is not None and since is not None and started >= since else 0)
            if status.get("OOMKilled"):
                finished = _time(status.get("FinishedAt"))
                oom_exits.append((finished or 0, name))
            for event in events:
                if event.get("action") == "oom":
                    oom_seen += 1
                    oom_events.append((_time(event.get("time")) or 0, name))
        entry["versions"].sort()
        entry["health"] = (
            ", ".join(f"{health[key]} {key}" for key in HEALTH_ORDER if health[key])
            + (", " if health["none"] and any(health[key] for key in HEALTH_ORDER) else "")
            + (f"{health['none']} without a health check" if health["none"] else "")
        )
        host_configs = [container.get("HostConfig") or {} for container in containers]
        entry["limits"] = (
            f"memory {_distinct(_bytes(hc.get('Memory')) for hc in host_configs)},"
            f" cpus {_distinct(_cpus(hc) for hc in host_configs)},"
            f" pids {_distinct(_pids(hc) for hc in host_configs)}"
        )
        entry["restart_count"] = restart_count
        entry["restarts_recent"] = recent
        if restart_count == 0 and recent == 0:
            entry["restarts"] = "none"
        else:
            text = f"{restart_count} by the engine (RestartCount)"
            if window:
                text += f", {'at least ' if remembered else ''}{recent} in {window} (its die and start events"
                text += f"; {remembered})" if remembered else ")"
            if last_restart is not None:
                ago = f", {_span((now - last_restart) / NS)} ago" if now is not None else ""
                text += f", the last at {_short(last_restart)}{ago}"
            entry["restarts"] = text
        entry["oom_killed"] = bool(oom_exits)
        last = max(oom_exits + oom_events, default=None)
        entry["last_oom_kill"] = _short(last[0]) if last and last[0] else ""
        if not last:
            entry["oom"] = "none"
        else:
            stamp, name = last
            when = f"at {_short(stamp)}" if stamp else "at an unknown time"
            if (stamp, name) in oom_exits:
                text = f"OOM-killed {when} ({name}, its last exit)"
            else:
                text = f"an OOM kill in {name} {when} (the container kept running)"
            if window and oom_seen:
                text += f"; {oom_seen} OOM kill{'s' if oom_seen > 1 else ''} in {window}"
                text += f" ({remembered})" if remembered else ""
            entry["oom"] = text
        report[process] = entry
    return report


def log_merge(results):
    """The results of ``pydeploy.stack.container_logs`` by inventory host (``{host: result}``), merged: every line
    in the engine's time order as ``<host> <source> | <text>``, a container that two inventory names share read
    once (the first host's); with the sources read, those that could not be, and the processes seen."""
    rows, taken, unreadable, sources, processes, dropped = [], set(), [], [], set(), 0
    for order, (host, result) in enumerate((results or {}).items()):
        if not isinstance(result, dict) or result.get("skipped") or result.get("failed"):
            continue
        shared = set()
        for source in result.get("sources") or []:
            ident = source.get("id")
            if ident and ident in taken:
                shared.add(source.get("name"))
                continue
            if ident:
                taken.add(ident)
            if source.get("readable", True) and source.get("state") != "absent":
                sources.append(f"{host} {source.get('name')}")
        for problem in result.get("unreadable") or []:
            if problem.get("name") not in shared:
                unreadable.append(f"{host} {problem.get('name')}: {problem.get('reason')}")
        for sequence, entry in enumerate(result.get("entries") or []):
            if entry.get("source") in shared:
                continue
            rows.append((_time(entry.get("time")) or 0, order, sequence, host, entry.get("source"), entry.get("text")))
        processes.update(result.get("processes") or [])
        dropped += int(result.get("dropped") or 0)
    rows.sort()
    return {
        "lines": [f"{host} {source} | {text}" for _stamp, _order, _sequence, host, source, text in rows],
        "sources": sources,
        "unreadable": unreadable,
        "processes": sorted(processes),
        "dropped": dropped,
    }


class FilterModule:
    def filters(self):
        return {"process_status": process_status, "log_merge": log_merge}
