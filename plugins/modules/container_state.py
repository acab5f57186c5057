#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: container_state
short_description: A stack's containers as the Docker engine sees them, with their recent restarts and OOM kills
version_added: 0.3.0
description:
  - Returns, in one call, every container of a stack on the host (label C(pydeploy.stack)) as C(docker inspect)
    describes it, cut to what tells how it runs - its state (with C(OOMKilled), C(StartedAt), C(FinishedAt),
    C(ExitCode), its health), C(RestartCount), its limits (C(Memory), C(NanoCpus), C(CpuQuota), C(PidsLimit)),
    restart policy, log driver and labels - and the engine's C(die), C(start) and C(oom) events of those
    containers since O(events_since).
  - The engine remembers its last 256 events only, in memory (every health check counts three of them), so on a
    busy host they may not reach back to O(events_since); RV(events_complete) says whether they do and
    RV(events_oldest) how far they go.
  - The filter C(pydeploy.stack.process_status) turns the result into a line of figures per process.
  - Only reads; check mode reads the same way.
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pydeploy.stack.docker
attributes:
  check_mode:
    support: full
    details:
      - The module only reads; it reads in check mode too.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  stack:
    description: The stack, by its C(pydeploy.stack) label.
    type: str
    required: true
  labels:
    description: Further labels the containers must carry, with these values.
    type: dict
    default: {}
  host:
    description:
      - The inventory name of this host. Containers labelled C(pydeploy.host) with another name are left out (two
        inventory names sharing one Docker engine).
    type: str
  events_since:
    description:
      - How far back to read the engine's events - a duration back from now (V(1h), V(30m)), an RFC 3339 time or
        seconds since the epoch; V(0) reads none.
    type: str
    default: 1h
"""

EXAMPLES = r"""
- name: Read the stack's containers and their restarts in the last hour
  pydeploy.stack.container_state:
    stack: flight_hunter
    host: "{{ inventory_hostname }}"
  register: state

- name: Show them by process
  ansible.builtin.debug:
    msg: "{{ state | pydeploy.stack.process_status }}"
"""

RETURN = r"""
containers:
  description:
    - The containers, by name, each as C(docker inspect) returns it with these keys only - C(Id), C(Name),
      C(Created), C(RestartCount), C(State), C(Config.Labels), C(Config.Image), C(HostConfig.Memory),
      C(HostConfig.NanoCpus), C(HostConfig.CpuQuota), C(HostConfig.CpuPeriod), C(HostConfig.PidsLimit),
      C(HostConfig.RestartPolicy), C(HostConfig.LogConfig.Type).
  returned: always
  type: list
  elements: dict
events:
  description: The C(die), C(start) and C(oom) events of the stack's containers since O(events_since), oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    time:
      description: When, RFC 3339 with nine fractional digits, UTC.
      type: str
    action:
      description: V(die), V(start) or V(oom).
      type: str
    id:
      description: The container's ID.
      type: str
    name:
      description: The container's name.
      type: str
    exit_code:
      description: For V(die), the exit code.
      type: int
events_since:
  description: The start of the events' window (RFC 3339), empty when none were read.
  returned: always
  type: str
events_complete:
  description: Whether the engine still remembered every event of the window (fewer than 256 were held).
  returned: always
  type: bool
events_oldest:
  description: The time of the oldest event the engine still holds in the window, empty when it holds none.
  returned: always
  type: str
now:
  description: When the module read the state (the host's clock), RFC 3339.
  returned: always
  type: str
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    DOCKER_ERRORS,
    NotFound,
    docker_argument_spec,
    get_client,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._logs import NS, format_time, parse_moment

# The engine keeps this many events in memory (moby's daemon/events: eventsLimit).
ENGINE_EVENTS_KEPT = 256
EVENTS = ("die", "start", "oom")
HOST_CONFIG_KEYS = ("Memory", "NanoCpus", "CpuQuota", "CpuPeriod", "PidsLimit", "RestartPolicy")


def trimmed(attrs: dict) -> dict:
    """What ``docker inspect`` says of a container, cut to what the status report reads."""
    host_config = attrs.get("HostConfig") or {}
    config = attrs.get("Config") or {}
    kept = {key: host_config.get(key) for key in HOST_CONFIG_KEYS}
    kept["LogConfig"] = {"Type": (host_config.get("LogConfig") or {}).get("Type", "")}
    return {
        "Id": attrs.get("Id", ""),
        "Name": attrs.get("Name", "").lstrip("/"),
        "Created": attrs.get("Created", ""),
        "RestartCount": attrs.get("RestartCount", 0),
        "State": attrs.get("State") or {},
        "Config": {"Labels": config.get("Labels") or {}, "Image": config.get("Image", "")},
        "HostConfig": kept,
    }


def selected(labels: dict, params: dict) -> bool:
    if labels.get("pydeploy.stack") != params["stack"]:
        return False
    if params["host"] and labels.get("pydeploy.host", params["host"]) != params["host"]:
        return False
    return all(labels.get(str(key)) == str(value) for key, value in params["labels"].items())


def read_events(client, stack: str, since_ns: int, until_ns: int, ids: set) -> tuple[list, bool, str]:
    """The die, start and oom events of ``ids`` in the window, whether the engine held all of the window's events,
    and the time of the oldest one it held."""
    since, until = since_ns // NS, until_ns // NS + 1
    held = list(client.events(since=since, until=until, decode=True))
    oldest = min((int(event.get("timeNano") or 0) for event in held), default=0)
    found = []
    filters = {"type": "container", "event": list(EVENTS), "label": [f"pydeploy.stack={stack}"]}
    for event in client.events(since=since, until=until, filters=filters, decode=True):
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if actor.get("ID") not in ids or event.get("Action") not in EVENTS:
            continue
        stamp = int(event.get("timeNano") or int(event.get("time") or 0) * NS)
        if stamp < since_ns:
            continue
        entry = {
            "time": format_time(stamp),
            "action": event["Action"],
            "id": actor["ID"],
            "name": attributes.get("name", ""),
        }
        if event["Action"] == "die" and str(attributes.get("exitCode", "")).lstrip("-").isdigit():
            entry["exit_code"] = int(attributes["exitCode"])
        found.append(entry)
    found.sort(key=lambda entry: entry["time"])
    return found, len(held) < ENGINE_EVENTS_KEPT, format_time(oldest) if oldest else ""


def run_module(module: AnsibleModule) -> None:
    params = module.params
    now_ns = time.time_ns()
    if not params["stack"].strip():
        module.fail_json(msg="stack is empty")
    since_ns = None
    if str(params["events_since"]).strip() not in ("0", ""):
        try:
            since_ns = parse_moment(params["events_since"], now_ns)
        except ValueError as exc:
            module.fail_json(msg=f"events_since: {exc}")
        if since_ns > now_ns:
            module.fail_json(msg=f"events_since: {params['events_since']} is in the future")

    client = get_client(module)
    containers = []
    try:
        for listed in client.api.containers(all=True, filters={"label": [f"pydeploy.stack={params['stack']}"]}):
            if not selected(listed.get("Labels") or {}, params):
                continue
            try:
                containers.append(trimmed(client.api.inspect_container(listed["Id"])))
            except NotFound:
                continue  # removed since it was listed
        events, complete, oldest = [], True, ""
        if since_ns is not None:
            ids = {container["Id"] for container in containers}
            events, complete, oldest = read_events(client, params["stack"], since_ns, now_ns, ids)
    except DOCKER_ERRORS as exc:
        module.fail_json(msg=f"cannot read the containers of stack {params['stack']}: {exc}")
    module.exit_json(
        changed=False,
        containers=sorted(containers, key=lambda container: container["Name"]),
        events=events,
        events_since=format_time(since_ns) if since_ns is not None else "",
        events_complete=complete,
        events_oldest=oldest,
        now=format_time(now_ns),
    )


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(
        stack={"type": "str", "required": True},
        labels={"type": "dict", "default": {}},
        host={"type": "str"},
        events_since={"type": "str", "default": "1h"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module)


if __name__ == "__main__":
    main()
