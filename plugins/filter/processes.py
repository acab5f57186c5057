# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which containers of the stack's processes run on a host."""

from __future__ import annotations

from ansible_collections.pydeploy.stack.plugins.filter.volumes import volume_binds

SETTINGS = (
    "stop_grace_period",
    "memory",
    "cpus",
    "healthcheck",
    "overlap",
    "volumes",
    "memory_reservation",
    "security",
)
# What every container of the app gets unless its process says otherwise (stack_processes.<name>.security):
# no capability, no privilege gained through a setuid binary, at most this many processes and threads.
DEFAULT_SECURITY = {"cap_drop": ["ALL"], "cap_add": [], "no_new_privileges": True, "pids_limit": 1024}


def process_security(own):
    """The ``security`` of the replicas module for a process or a job, from the ``security`` of its entry
    of ``stack_processes`` or ``stack_jobs``: the defaults, overridden by what it sets."""
    own = own if isinstance(own, dict) else {}
    security = {**DEFAULT_SECURITY, **{key: value for key, value in own.items() if value is not None}}
    return {key: value for key, value in security.items() if value not in ([], False, None, 0)}


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
                "singleton": bool(spec.get("singleton")),
            }
            entry.update({key: spec[key] for key in SETTINGS if key in spec})
            containers.append(entry)
    return containers


def process_replicas(wanted, volumes=None, stack=""):
    """The entries of ``process_containers`` as the ``containers`` of the replicas module: what sets each
    container apart from the description its processes share (command, limits, health check, labels,
    and, with the stack's ``volumes``, the mounts of the volumes it names, or of all of them)."""
    entries = []
    for entry in wanted or []:
        replica = {
            "name": entry["name"],
            "command": entry["command"],
            "env": {"PYDEPLOY_PROCESS": entry["process"]},
            "labels": {"pydeploy.process": entry["process"], "pydeploy.replica": str(entry["replica"])},
        }
        if entry.get("stop_grace_period") is not None:
            replica["stop_timeout"] = int(entry["stop_grace_period"])
        for key in ("memory", "cpus", "memory_reservation"):
            if entry.get(key) not in (None, ""):
                replica[key] = entry[key]
        replica["security"] = process_security(entry.get("security") or {})
        if entry.get("healthcheck"):
            replica["healthcheck"] = {"test": list(entry["healthcheck"])}
        if volumes:
            replica["volumes"] = volume_binds(entry.get("volumes"), volumes, stack)
        # The replacement starts before the old container stops, unless told otherwise; never for a
        # singleton (a second Celery beat would send every task twice).
        replica["overlap"] = not entry.get("singleton") and entry.get("overlap") is not False
        entries.append(replica)
    return entries


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
    {process: {"running": n, "other": m, "unhealthy": u, "versions": [...]}}."""
    counts = {}
    for container in containers or []:
        labels = container.get("Labels") or {}
        process = labels.get("pydeploy.process")
        if not process or labels.get("pydeploy.oneoff"):
            continue
        entry = counts.setdefault(process, {"running": 0, "other": 0, "unhealthy": 0, "versions": []})
        entry["running" if container.get("State") == "running" else "other"] += 1
        if "(unhealthy)" in str(container.get("Status", "")):
            entry["unhealthy"] += 1
        version = labels.get("pydeploy.version")
        if version and version not in entry["versions"]:
            entry["versions"].append(version)
    for entry in counts.values():
        entry["versions"].sort()
    return dict(sorted(counts.items()))


def replica_server(name, port, address="", publish_port=0):
    """The upstream server of the web replica ``name``: ``name:port`` on the stack's network, or, published on
    ``address`` (another host's proxy reaches it there), ``address:P`` with P ``publish_port`` + its number in
    slot a, ``publish_port`` + 50 + its number in slot b."""
    if not address:
        return f"{name}:{port}"
    slot, _dash, number = name.rpartition("-web-")[2].partition("-")
    if not number.isdigit():
        slot, number = "a", slot
    published = int(publish_port) + (50 if slot == "b" else 0) + int(number or 0)
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{published}"


def rollout_batches(new, old, size, port, address="", publish_port=0):
    """The steps of a rollout of ``new`` replicas over ``old`` ones, ``size`` new at a time (0: all at once).

    Each step starts its new replicas, checks them, points the proxy at every
    new replica started so far plus the old ones still kept, and retires as
    many old replicas as it added new ones; the last step retires the rest.
    Returns [{start, servers, retire, retire_servers, last}] (servers as replica_server names them).
    """
    size = int(size or 0)
    if size <= 0 or size >= len(new):
        size = max(len(new), 1)
    steps = []
    kept = list(old)
    for first in range(0, max(len(new), 1), size):
        started = new[: first + size]
        last = first + size >= len(new)
        keep = 0 if last else max(len(old) - len(started), 0)
        retire, kept = kept[keep:], kept[:keep]
        steps.append(
            {
                "start": new[first : first + size],
                "servers": [replica_server(name, port, address, publish_port) for name in started + kept],
                "retire": retire,
                "retire_servers": [replica_server(name, port, address, publish_port) for name in retire],
                "last": last,
            }
        )
    return steps


def web_rollout(containers, stack, live_slot, spec, replicas, port, batch_size=0, address="", publish_port=0):
    """What a release does with the web containers of ``stack`` on a host.

    ``containers``: docker_host_info's verbose list of the stack's web containers;
    ``live_slot``: the slot that last took traffic (``a`` or ``b``; empty when
    unknown: then the slot of the running containers, or the unslotted ones of
    an older layout). Returns the live containers, whether they already run
    ``spec`` with ``replicas`` replicas (nothing to do), the slot and names of
    the next release, its steps (``batch_size`` new replicas at a time, see
    rollout_batches) and the containers that belong to neither (left by a run
    that was killed). With ``address``, the replicas publish their port there
    (replica_server) and the servers are the published addresses; ``published``
    maps each next replica's name to its entry of the replicas module's containers
    (its name and published_ports ``address:P:port``).
    """
    by_slot = {}
    for container in containers or []:
        labels = container.get("Labels") or {}
        name = (container.get("Names") or ["/"])[0].lstrip("/")
        by_slot.setdefault(labels.get("pydeploy.slot", ""), []).append((name, container, labels))
    if live_slot not in by_slot:
        running = [
            slot for slot, items in by_slot.items() if any(c.get("State") == "running" for _name, c, _labels in items)
        ]
        live_slot = sorted(running)[0] if running else (live_slot or "")
    live = sorted(by_slot.get(live_slot, []), key=lambda item: item[0])
    matches = len(live) == int(replicas) and all(
        c.get("State") == "running" and labels.get("pydeploy.spec") == spec for _name, c, labels in live
    )
    next_slot = "b" if live_slot == "a" else "a"
    names = [f"{stack}-web-{next_slot}-{n}" for n in range(1, int(replicas) + 1)]
    others = sorted(name for slot, items in by_slot.items() if slot != live_slot for name, _container, _labels in items)
    live_names = [name for name, _container, _labels in live]
    return {
        "live_slot": live_slot,
        "live": live_names,
        "live_servers": [replica_server(name, port, address, publish_port) for name in live_names],
        "up_to_date": matches,
        "next_slot": next_slot,
        "next": names,
        "next_servers": [replica_server(name, port, address, publish_port) for name in names],
        "published": {
            name: {
                "name": name,
                "published_ports": [f"{replica_server(name, port, address, publish_port)}:{port}"] if address else [],
            }
            for name in names
        },
        "batches": rollout_batches(names, live_names, batch_size, port, address, publish_port),
        "leftovers": others,
    }


class FilterModule:
    def filters(self):
        return {
            "process_containers": process_containers,
            "process_replicas": process_replicas,
            "process_security": process_security,
            "process_surplus": process_surplus,
            "process_counts": process_counts,
            "web_rollout": web_rollout,
        }
