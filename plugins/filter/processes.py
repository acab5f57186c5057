# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which containers of the stack's processes run on a host."""

from __future__ import annotations

SETTINGS = ("stop_grace_period", "memory", "cpus", "healthcheck")


def process_containers(processes, stack, host, worker_hosts, singleton_host):
    containers = []
    for process, spec in sorted((processes or {}).items()):
        if process == "web":
            continue
        spec = spec if isinstance(spec, dict) else {"command": spec}
        if spec.get("singleton"):
            count = 1 if host == singleton_host else 0
        else:
            count = int(spec.get("replicas", 1)) if host in (worker_hosts or []) else 0
        for replica in range(1, count + 1):
            entry = {
                "name": f"{stack}-{process}-{replica}",
                "process": process,
                "replica": replica,
                "command": spec["command"],
            }
            entry.update({key: spec[key] for key in SETTINGS if key in spec})
            containers.append(entry)
    return containers


def process_surplus(running, wanted, host=None):
    """Running containers (docker_host_info's verbose list) not among ``wanted``:
    [{name, process}], for a graceful stop.

    With ``host``, containers labelled ``pydeploy.host`` with another inventory
    host are left alone: two inventory names may share one Docker engine.
    """
    keep = {entry["name"] for entry in wanted or []}
    surplus = []
    for container in running or []:
        labels = container.get("Labels") or {}
        if host is not None and labels.get("pydeploy.host", host) != host:
            continue
        name = (container.get("Names") or ["/"])[0].lstrip("/")
        if name and name not in keep:
            surplus.append({"name": name, "process": labels.get("pydeploy.process", "")})
    return sorted(surplus, key=lambda entry: entry["name"])


def process_counts(containers):
    """Containers of a stack (docker_host_info's verbose list) counted by process:
    {process: {"running": n, "other": m, "versions": [...]}}."""
    counts = {}
    for container in containers or []:
        labels = container.get("Labels") or {}
        process = labels.get("pydeploy.process")
        if not process or labels.get("pydeploy.oneoff"):
            continue
        entry = counts.setdefault(process, {"running": 0, "other": 0, "versions": []})
        entry["running" if container.get("State") == "running" else "other"] += 1
        version = labels.get("pydeploy.version")
        if version and version not in entry["versions"]:
            entry["versions"].append(version)
    for entry in counts.values():
        entry["versions"].sort()
    return dict(sorted(counts.items()))


class FilterModule:
    def filters(self):
        return {
            "process_containers": process_containers,
            "process_surplus": process_surplus,
            "process_counts": process_counts,
        }
