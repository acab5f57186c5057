#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: replicas
short_description: Start the replicas of a process side by side and check each one, or stop and remove them, all at once
version_added: 0.2.0
description:
  - A release starts several identical containers of one process (the web replicas of a slot) and must know
    that each answers before any traffic moves to them; it later stops the ones it replaced. Done one container
    per task, each costs a whole module run and waits for the one before it. This module handles all the
    containers of one step in one call, concurrently, through the Docker engine's API.
  - With O(state=started), each container of O(names) is created from the same description (image, command,
    environment, network, labels, restart policy, stop timeout, resource limits, health check, logging) and
    started. With O(containers) instead, each container is described by the shared options, overridden by its
    own entry (the processes of one host, each with its own command and limits, in one call).
  - A container of that name which already has the O(image), every label of O(labels) and the same description
    (a digest of it is kept in its C(pydeploy.replicas.config) label) is kept (started if stopped); any other
    container of that name is replaced - stopped gracefully first (its stop signal, then its stop timeout), so
    that a worker finishes the task in hand.
  - With O(health), each started container is then asked for C(http://ADDRESS:PORT/PATH) on its address in
    O(network) until the answer has the expected status (and JSON fields), or O(health.timeout) runs out; the
    task fails naming each container that did not answer and what it answered.
  - With O(state=absent), every container of O(names) gets its stop signal, then O(stop_timeout) seconds (or
    the timeout it was created with) before it is killed, and is removed with its anonymous volumes; all at once.
  - Values read from O(env_file) are secrets; the module never returns a container's environment.
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pydeploy.stack.docker
  - pydeploy.stack.security
attributes:
  check_mode:
    support: full
    details:
      - Reports which containers would be created, started, replaced or removed, and changes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  names:
    description:
      - The containers' names, each described by the shared options.
      - One of O(names) and O(containers) is required.
    type: list
    elements: str
  containers:
    description:
      - The containers, each with what sets it apart from the shared options; its O(containers[].env) and
        O(containers[].labels) are added to (and override) the shared O(env) and O(labels).
      - One of O(names) and O(containers) is required.
    type: list
    elements: dict
    suboptions:
      name:
        description: The container's name.
        type: str
        required: true
      command:
        description: Its command, instead of O(command).
        type: raw
      env:
        description: Environment variables added to (and overriding) O(env).
        type: dict
        default: {}
      labels:
        description: Labels added to (and overriding) O(labels).
        type: dict
        default: {}
      stop_timeout:
        description: Its stop timeout, instead of O(stop_timeout).
        type: int
      memory:
        description: Its memory limit, instead of O(memory).
        type: str
      cpus:
        description: Its CPUs, instead of O(cpus).
        type: float
      healthcheck:
        description:
          - Its engine health check, instead of O(healthcheck), with the same keys (V(test) required).
        type: dict
      overlap:
        description: Whether its replacement starts before it stops, instead of O(overlap).
        type: bool
      volumes:
        description: Its mounts, instead of O(volumes).
        type: list
        elements: str
      security:
        description: What sets its O(security) apart, merged over the shared one (same keys).
        type: dict
      memory_reservation:
        description: Its memory reservation, instead of O(memory_reservation).
        type: str
      published_ports:
        description: Its published ports, instead of O(published_ports).
        type: list
        elements: str
  overlap:
    description:
      - When a container is replaced, start the new one first and only then stop the old one gracefully, so that
        the process never has no container (a Celery worker with one replica keeps consuming). The old container
        is renamed C(<name>-old-<id>) meanwhile; a new one that cannot be created or started puts it back under
        its name, still running.
      - When the new container has an engine health check (O(healthcheck), or its image's), the old one is stopped
        only once the new one is healthy - the check's command is run in it every half second until it succeeds
        or the engine finds it healthy, not only at the engine's interval; one that stops, turns unhealthy or is
        not healthy within O(overlap_timeout) is removed, the old one keeps running under its name, and the task
        fails naming it.
      - Leave it V(false) for a process that must never run twice at once (Celery beat, a scheduler).
    type: bool
    default: false
  overlap_timeout:
    description: Seconds a replacement started with O(overlap) is given to become healthy.
    type: float
    default: 120
  state:
    description: V(started) creates and starts them (and checks them with O(health)); V(absent) stops and removes them.
    type: str
    choices: [started, absent]
    default: started
  image:
    description:
      - The image, already on the host (it is never pulled here).
      - Without it, O(state=started) starts the containers of O(names) as they were created (stopped replicas
        of a release being put back); each must exist.
    type: str
  command:
    description: The command, as an argv list or a string split like a shell would split it; the image's when omitted.
    type: raw
  env:
    description: Plain environment variables, added to (and overriding) those of O(env_file).
    type: dict
    default: {}
  env_file:
    description: Path on the host of an env file (C(KEY=VALUE) lines, as C(docker run --env-file) reads them).
    type: path
  network:
    description: The Docker network the containers join (their only network); health checks use their address in it.
    type: str
  labels:
    description: Labels of every container; with O(image), what makes an existing container the one wanted.
    type: dict
    default: {}
  restart_policy:
    description: The engine's restart policy.
    type: str
    choices: ["no", on-failure, always, unless-stopped]
    default: unless-stopped
  stop_timeout:
    description:
      - Seconds between the stop signal and the kill. With O(state=started) it is stored in the container (and
        used by C(docker stop)); with O(state=absent) it overrides the one each container was created with.
    type: int
  memory:
    description: Memory limit, a number of bytes or a number with a unit (V(512m), V(1g)).
    type: str
  volumes:
    description:
      - Mounts of each container, in Docker's short form C(source:/path), C(source:/path:rw) or C(source:/path:ro);
        a source that is not an absolute path is a named volume, created with O(volume_labels) when it does not
        exist (in check mode, reported in RV(volumes_created) only).
      - Mounting a named volume where the image declares a C(VOLUME) keeps the engine from making an anonymous
        one there; the anonymous volumes of a container go with it when it is replaced or removed.
    type: list
    elements: str
    default: []
  volume_labels:
    description: Labels of the named volumes of O(volumes) this module creates (the stack's, for a teardown).
    type: dict
    default: {}
  memory_reservation:
    description: A soft memory limit the engine reclaims toward under memory pressure (V(256m)); below O(memory).
    type: str
  published_ports:
    description:
      - Ports published on the host, each C(ADDRESS:HOST_PORT:CONTAINER_PORT) (TCP), as C(docker run --publish)
        takes them; the address is required, so that a port is never published on every address by accident.
      - The web replicas of a host whose proxy runs on another host publish their port on the host's private
        address.
    type: list
    elements: str
    default: []
  cpus:
    description: CPUs the container may use (V(0.5) is half a CPU).
    type: float
  healthcheck:
    description: The engine's health check of each container.
    type: dict
    suboptions:
      test:
        description: The check, as Docker's C(HEALTHCHECK) takes it (V([CMD, ...]), V([CMD-SHELL, "..."]) or V([NONE])).
        type: list
        elements: str
        required: true
      interval:
        description: Time between checks (V(5s), V(500ms), V(1m)).
        type: str
      timeout:
        description: Time a check may take.
        type: str
      start_period:
        description: Time after start during which failures do not count.
        type: str
      retries:
        description: Failures in a row that make the container unhealthy.
        type: int
  log_driver:
    description: The logging driver.
    type: str
    default: json-file
  log_options:
    description: The logging driver's options (for json-file, C(max-size) and C(max-file)).
    type: dict
    default: {}
  health:
    description: An HTTP check of each started container, through its address in O(network).
    type: dict
    suboptions:
      port:
        description: The port the process listens on inside the container.
        type: int
        required: true
      path:
        description: The path asked for.
        type: str
        default: /health
      status:
        description: The expected status code, or a list of them.
        type: raw
        default: 200
      json:
        description: Fields the JSON answer must have, with their values (dotted names reach into objects).
        type: dict
        default: {}
      body:
        description:
          - A JSON value the whole answer must equal (V(true) for an endpoint that answers a bare C(true)); not
            checked when not set.
        type: raw
      contains:
        description: Text the answer must contain.
        type: str
      timeout:
        description:
          - Seconds each container is given to answer as expected, from its start.
          - A definitive wrong answer ends the wait at once, naming it - a redirect or a client error (an
            unexpected status from 300 to 499 other than 408, 425 and 429) three times in a row. Server errors
            and refused connections are waited out.
        type: float
        default: 60
      interval:
        description: Seconds between two attempts on a container that did not answer as expected yet.
        type: float
        default: 0.1
      request_timeout:
        description: Seconds one request may take.
        type: float
        default: 5
requirements:
  - docker (Python SDK) >= 5.0
seealso:
  - module: community.docker.docker_container
  - module: pydeploy.stack.health_check
"""

EXAMPLES = r"""
- name: Start the two replicas of the next slot and check each one before any traffic
  pydeploy.stack.replicas:
    names: [shop-web-b-1, shop-web-b-2]
    image: registry.example.com/team/shop:v20251105_143022
    command: gunicorn shop.wsgi -b 0.0.0.0:8000
    env_file: /etc/pydeploy/shop/app.env
    env: {DJANGO_SETTINGS_MODULE: shop.settings.production}
    network: shop
    labels: {pydeploy.stack: shop, pydeploy.process: web, pydeploy.spec: 3f2a9c0d1e7b4a55}
    stop_timeout: 30
    memory: 512m
    health: {port: 8000, path: /health, json: {status: ok}, timeout: 120}

- name: Run the background processes of this host, each replaced gracefully where its description changed
  pydeploy.stack.replicas:
    containers:
      - {name: shop-worker-1, command: celery -A shop worker, stop_timeout: 120, labels: {pydeploy.process: worker}}
      - {name: shop-worker-2, command: celery -A shop worker, stop_timeout: 120, labels: {pydeploy.process: worker}}
      - {name: shop-beat-1, command: celery -A shop beat, memory: 128m, labels: {pydeploy.process: beat}}
    image: registry.example.com/team/shop:v20251105_143022
    env_file: /etc/pydeploy/shop/app.env
    network: shop
    labels: {pydeploy.stack: shop, pydeploy.role: workers}

- name: Retire the old slot's replicas, all at once
  pydeploy.stack.replicas:
    names: [shop-web-a-1, shop-web-a-2]
    state: absent
    stop_timeout: 30
"""

RETURN = r"""
containers:
  description: Each container (never its environment), in the order of O(names) or O(containers).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The container's name.
      type: str
    id:
      description: The container's ID (empty in check mode for one not created yet).
      type: str
    address:
      description: Its IP address in O(network).
      type: str
    action:
      description:
        - What was done, V(created), V(started), V(replaced), V(kept) or V(removed) (V(absent) when there was
          nothing to remove).
      type: str
  sample: [{name: shop-web-b-1, id: 4c1d..., address: 172.18.0.7, action: created}]
checks:
  description: With O(health), the check of each container, as M(pydeploy.stack.health_check) returns them.
  returned: when O(health) was given and containers were started
  type: list
  elements: dict
volumes_created:
  description: The named volumes of O(volumes) that did not exist and were created (would be, in check mode).
  returned: with O(state=started)
  type: list
  elements: str
elapsed:
  description: Seconds the call took.
  returned: always
  type: float
"""

import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    DOCKER_ERRORS,
    SECURITY_OPTIONS,
    EnvFileError,
    NotFound,
    build_environment,
    docker_argument_spec,
    ensure_volumes,
    get_client,
    parse_volume,
    retire_container,
    security_host_options,
    split_command,
    stop_gracefully,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._health import (
    HttpCheck,
    failure_message,
    run_checks,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h)?\s*$")
_UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def duration_ns(value, option: str) -> int:
    """``5s``, ``500ms``, ``1m`` (or a number of seconds) as nanoseconds, the unit of the engine's API."""
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{option}: {value!r} is not a duration such as 5s, 500ms or 1m")
    return int(float(match.group(1)) * _UNITS[match.group(2) or "s"])


def healthcheck_config(spec) -> dict | None:
    if not spec:
        return None
    config = {"test": list(spec["test"])}
    for option in ("interval", "timeout", "start_period"):
        if spec.get(option):
            config[option] = duration_ns(spec[option], f"healthcheck.{option}")
    if spec.get("retries") is not None:
        config["retries"] = spec["retries"]
    return config


CONFIG_LABEL = "pydeploy.replicas.config"
SHARED = (
    "command",
    "stop_timeout",
    "memory",
    "cpus",
    "healthcheck",
    "overlap",
    "volumes",
    "memory_reservation",
    "published_ports",
)
_PUBLISHED = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d{1,5}):(\d{1,5})$")


def parse_published(entry: str) -> tuple[str, int, int]:
    """``ADDRESS:HOST_PORT:CONTAINER_PORT`` as (address, host port, container port)."""
    match = _PUBLISHED.match(str(entry).strip())
    if not match or not all(0 < int(port) < 65536 for port in match.group(2, 3)):
        raise ValueError(f"published_ports: {entry!r} is not ADDRESS:HOST_PORT:CONTAINER_PORT (an IP address)")
    return match.group(1).strip("[]"), int(match.group(2)), int(match.group(3))


def describe(params, entry: dict) -> dict:
    """One container's description: the shared options, overridden by its entry of O(containers)."""
    spec = {key: params[key] for key in SHARED}
    spec.update({key: entry[key] for key in SHARED if entry.get(key) is not None})
    spec["name"] = entry["name"]
    security = {**(params["security"] or {}), **(entry.get("security") or {})}
    spec["security"] = {key: value for key, value in security.items() if value not in (None, [], False)}
    spec["env"] = {**(params["env"] or {}), **(entry.get("env") or {})}
    spec["labels"] = {
        str(key): str(value) for key, value in {**(params["labels"] or {}), **(entry.get("labels") or {})}.items()
    }
    return spec


def health_test(container) -> list:
    """The argv of ``container``'s engine health check (its own or its image's), or [] when it has none."""
    test = ((container.attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    if test[:1] == ["CMD"]:
        return list(test[1:])
    if test[:1] == ["CMD-SHELL"] and len(test) > 1:
        return ["/bin/sh", "-c", test[1]]
    return []


def config_digest(params, spec: dict, image_id: str, environment: dict) -> str:
    """A digest of everything a container is created with: a change to any of it replaces the container."""
    described = {
        "image": image_id,
        "command": split_command(spec["command"]) or None,
        "environment": sorted(environment.items()),
        "labels": sorted(spec["labels"].items()),
        "network": params["network"],
        "restart_policy": params["restart_policy"],
        "stop_timeout": spec["stop_timeout"],
        "memory": spec["memory"],
        "cpus": spec["cpus"],
        "healthcheck": healthcheck_config(spec["healthcheck"]),
        "log": [params["log_driver"], sorted((str(k), str(v)) for k, v in params["log_options"].items())],
    }
    # Only when there are some: containers made before volumes existed keep their digest.
    if spec["volumes"]:
        described["volumes"] = sorted(spec["volumes"])
    if spec["security"]:
        described["security"] = spec["security"]
    if spec["memory_reservation"]:
        described["memory_reservation"] = spec["memory_reservation"]
    if spec["published_ports"]:
        described["published_ports"] = sorted(spec["published_ports"])
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]


def wanted(container, image_id: str, labels: dict) -> bool:
    """Whether an existing container is the one described: same image, every wanted label."""
    attrs = container.attrs
    have = (attrs.get("Config") or {}).get("Labels") or {}
    return attrs.get("Image") == image_id and all(have.get(key) == value for key, value in labels.items())


class Replicas:
    def __init__(self, module, client):
        self.module = module
        self.params = module.params
        self.client = client

    def find(self, name: str):
        try:
            return self.client.containers.get(name)
        except NotFound:
            return None

    def create(self, spec: dict, environment: dict, labels: dict):
        """Create the container through the engine's API (as ``docker create`` would) and return it."""
        params = self.params
        api = self.client.api
        host_options = {
            "log_config": {
                "Type": params["log_driver"],
                "Config": {str(key): str(value) for key, value in params["log_options"].items()},
            },
        }
        if params["restart_policy"] != "no":
            host_options["restart_policy"] = {"Name": params["restart_policy"]}
        if spec["memory"]:
            host_options["mem_limit"] = spec["memory"]
        if spec["cpus"]:
            host_options["nano_cpus"] = int(spec["cpus"] * 1e9)
        if spec["volumes"]:
            host_options["binds"] = list(spec["volumes"])
        if spec["memory_reservation"]:
            host_options["mem_reservation"] = spec["memory_reservation"]
        host_options.update(security_host_options(spec["security"]))
        published = [parse_published(entry) for entry in spec["published_ports"] or []]
        if published:
            host_options["port_bindings"] = {inside: (address, port) for address, port, inside in published}
        networking = None
        if params["network"]:
            host_options["network_mode"] = params["network"]
            networking = api.create_networking_config({params["network"]: api.create_endpoint_config()})
        created = api.create_container(
            params["image"],
            command=split_command(spec["command"]) or None,
            environment=environment,
            labels=labels,
            name=spec["name"],
            detach=True,
            host_config=api.create_host_config(**host_options),
            networking_config=networking,
            healthcheck=healthcheck_config(spec["healthcheck"]),
            stop_timeout=spec["stop_timeout"],
            ports=[inside for _address, _port, inside in published] or None,
        )
        return self.client.containers.get(created["Id"])

    def address(self, container) -> str:
        container.reload()
        networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        wanted_network = self.params["network"]
        network = networks.get(wanted_network) if wanted_network else next(iter(networks.values()), None)
        return (network or {}).get("IPAddress") or ""

    def start_one(self, spec: dict, image_id: str, base_environment: dict) -> dict:
        name = spec["name"]
        environment = {**base_environment, **{str(key): str(value) for key, value in spec["env"].items()}}
        labels = spec["labels"]
        if self.params["image"]:
            labels = {**labels, CONFIG_LABEL: config_digest(self.params, spec, image_id, environment)}
        existing = self.find(name)
        action = "created"
        if existing is None and not self.params["image"]:
            raise ValueError(f"{name} does not exist: give image to create it")
        if existing is not None:
            if not self.params["image"] or wanted(existing, image_id, labels):
                if existing.status == "running":
                    return {"name": name, "id": existing.id, "address": self.address(existing), "action": "kept"}
                if self.module.check_mode:
                    return {"name": name, "id": existing.id, "address": "", "action": "started"}
                existing.start()
                return {"name": name, "id": existing.id, "address": self.address(existing), "action": "started"}
            action = "replaced"
            if spec["overlap"] and existing.status == "running" and not self.module.check_mode:
                return self.replace_overlapping(existing, spec, environment, labels)
            if not self.module.check_mode:
                stop_gracefully(existing, spec["stop_timeout"])
                existing.remove(force=True, v=True)
        if self.module.check_mode:
            return {"name": name, "id": existing.id if existing is not None else "", "address": "", "action": action}
        container = self.create(spec, environment, labels)
        container.start()
        return {"name": name, "id": container.id, "address": self.address(container), "action": action}

    def replace_overlapping(self, existing, spec: dict, environment: dict, labels: dict) -> dict:
        """The new container first, under the name, the old one renamed meanwhile; then the old one stops
        gracefully. A new one that fails to start leaves the old one running under its name again."""
        name = spec["name"]
        existing.rename(f"{name}-old-{existing.id[:12]}")
        container = None
        try:
            container = self.create(spec, environment, labels)
            container.start()
            problem = self.wait_healthy(container)
        except DOCKER_ERRORS:
            self.put_back(existing, name, container)
            raise
        if problem:
            self.put_back(existing, name, container)
            raise ValueError(f"the replacement of {name} {problem}: {name} keeps running as it was")
        stop_gracefully(existing, spec["stop_timeout"])
        existing.remove(force=True, v=True)
        return {"name": name, "id": container.id, "address": self.address(container), "action": "replaced"}

    @staticmethod
    def put_back(existing, name: str, replacement) -> None:
        """A replacement that failed goes; the container it was to replace, still running, takes its name back."""
        if replacement is not None:
            replacement.remove(force=True, v=True)
        existing.rename(name)

    def wait_healthy(self, container) -> str:
        """With an engine health check, wait until ``container`` is healthy (at most O(overlap_timeout));
        '' when it is, or has no health check; else what went wrong.

        The engine runs its first check only an interval after the start (30 s by default): meanwhile the
        check's own command is run here in the container, every half second, and its first success counts
        as healthy - the old container is not kept waiting for the engine's clock."""
        deadline = time.monotonic() + self.params["overlap_timeout"]
        test = health_test(container)
        while True:
            container.reload()
            state = container.attrs.get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            if not state.get("Running"):
                return f"stopped (exit code {state.get('ExitCode')})"
            if health in (None, "healthy"):
                return ""
            if health == "unhealthy":
                return "is unhealthy"
            if test and self.passes(container, test):
                return ""
            if time.monotonic() >= deadline:
                return f"was not healthy after {self.params['overlap_timeout']:g} s"
            time.sleep(0.5)

    @staticmethod
    def passes(container, test: list) -> bool:
        """Whether the health check's command succeeds in ``container`` now."""
        try:
            return container.exec_run(test).exit_code == 0
        except DOCKER_ERRORS:
            return False  # not running yet, or stopping: the state above tells

    def remove_one(self, spec: dict) -> dict:
        name = spec["name"]
        found = retire_container(self.client, name, spec["stop_timeout"], dry_run=self.module.check_mode)
        if not found:
            return {"name": name, "id": "", "address": "", "action": "absent"}
        return {"name": name, "id": found, "address": "", "action": "removed"}

    def each(self, work, specs):
        """``work(spec)`` for every container at once; the first error is raised once all are done."""
        with ThreadPoolExecutor(max_workers=max(len(specs), 1)) as pool:
            futures = [pool.submit(work, spec) for spec in specs]
        return [future.result() for future in futures]


HEALTHCHECK_OPTIONS = {
    "test": {"type": "list", "elements": "str", "required": True},
    "interval": {"type": "str"},
    "timeout": {"type": "str"},
    "start_period": {"type": "str"},
    "retries": {"type": "int"},
}


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(
        names={"type": "list", "elements": "str"},
        containers={
            "type": "list",
            "elements": "dict",
            "options": {
                "name": {"type": "str", "required": True},
                "command": {"type": "raw"},
                "env": {"type": "dict", "default": {}},
                "labels": {"type": "dict", "default": {}},
                "stop_timeout": {"type": "int"},
                "memory": {"type": "str"},
                "cpus": {"type": "float"},
                "healthcheck": {"type": "dict"},
                "overlap": {"type": "bool"},
                "volumes": {"type": "list", "elements": "str"},
                "security": {"type": "dict"},
                "memory_reservation": {"type": "str"},
                "published_ports": {"type": "list", "elements": "str"},
            },
        },
        overlap={"type": "bool", "default": False},
        overlap_timeout={"type": "float", "default": 120},
        state={"type": "str", "choices": ["started", "absent"], "default": "started"},
        image={"type": "str"},
        command={"type": "raw"},
        env={"type": "dict", "default": {}},
        env_file={"type": "path"},
        network={"type": "str"},
        labels={"type": "dict", "default": {}},
        restart_policy={
            "type": "str",
            "choices": ["no", "on-failure", "always", "unless-stopped"],
            "default": "unless-stopped",
        },
        stop_timeout={"type": "int"},
        memory={"type": "str"},
        cpus={"type": "float"},
        volumes={"type": "list", "elements": "str", "default": []},
        volume_labels={"type": "dict", "default": {}},
        memory_reservation={"type": "str"},
        published_ports={"type": "list", "elements": "str", "default": []},
        security={"type": "dict", "options": SECURITY_OPTIONS},
        healthcheck={"type": "dict", "options": HEALTHCHECK_OPTIONS},
        log_driver={"type": "str", "default": "json-file"},
        log_options={"type": "dict", "default": {}},
        health={
            "type": "dict",
            "options": {
                "port": {"type": "int", "required": True},
                "path": {"type": "str", "default": "/health"},
                "status": {"type": "raw", "default": 200},
                "json": {"type": "dict", "default": {}},
                "body": {"type": "raw"},
                "contains": {"type": "str"},
                "timeout": {"type": "float", "default": 60},
                "interval": {"type": "float", "default": 0.1},
                "request_timeout": {"type": "float", "default": 5},
            },
        },
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_one_of=[("names", "containers")],
        mutually_exclusive=[("names", "containers")],
    )
    params = module.params
    started = time.monotonic()
    if params["containers"] is not None:
        specs = [describe(params, entry) for entry in params["containers"]]
    else:
        specs = [describe(params, {"name": name}) for name in dict.fromkeys(params["names"])]
    names = [spec["name"] for spec in specs]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        module.fail_json(msg=f"containers: each name once, but {', '.join(duplicated)} is given more than once")
    if not specs:
        module.exit_json(changed=False, containers=[], elapsed=0.0)
    for spec in specs:
        if spec["stop_timeout"] is not None and spec["stop_timeout"] < 0:
            module.fail_json(msg=f"{spec['name']}: stop_timeout must be at least 0, got {spec['stop_timeout']}")
        healthcheck = spec["healthcheck"]
        if healthcheck is not None:
            unknown = sorted(set(healthcheck) - set(HEALTHCHECK_OPTIONS))
            if unknown or not isinstance(healthcheck.get("test"), list):
                module.fail_json(
                    msg=f"{spec['name']}: healthcheck takes {', '.join(HEALTHCHECK_OPTIONS)} (test a list such as "
                    f"[CMD, ...] or [NONE]), not {', '.join(unknown) or 'test=' + repr(healthcheck.get('test'))}"
                )
        unknown = sorted(set(spec["security"]) - set(SECURITY_OPTIONS))
        if unknown:
            module.fail_json(
                msg=f"{spec['name']}: security takes {', '.join(SECURITY_OPTIONS)}, not {', '.join(unknown)}"
            )
        try:
            healthcheck_config(healthcheck)
            security_host_options(spec["security"])
            for entry in spec["volumes"] or []:
                parse_volume(entry)
            for entry in spec["published_ports"] or []:
                parse_published(entry)
        except ValueError as exc:
            module.fail_json(msg=f"{spec['name']}: {exc}")

    client = get_client(module)
    replicas = Replicas(module, client)
    result = {"changed": False, "containers": []}
    try:
        if params["state"] == "absent":
            result["containers"] = replicas.each(replicas.remove_one, specs)
        else:
            image_id = ""
            try:
                image_id = client.images.get(params["image"]).id if params["image"] else ""
            except NotFound:
                if not module.check_mode:  # check mode: the pull before this would have brought it
                    module.fail_json(msg=f"the image {params['image']} is not on the host: pull it first", **result)
            try:
                environment = build_environment(params["env_file"], params["env"])
            except EnvFileError as exc:
                module.fail_json(msg=str(exc), **result)
            module.no_log_values.update(
                value for key, value in build_environment(params["env_file"]).items() if len(value) >= 4
            )
            if params["image"]:
                wanted_volumes = sorted({entry for spec in specs for entry in spec["volumes"] or []})
                result["volumes_created"] = ensure_volumes(
                    client, wanted_volumes, params["volume_labels"], dry_run=module.check_mode
                )
            result["containers"] = replicas.each(lambda spec: replicas.start_one(spec, image_id, environment), specs)
    except ValueError as exc:
        module.fail_json(msg=str(exc), **result)
    except DOCKER_ERRORS as exc:
        module.fail_json(msg=f"Docker error: {exc}", elapsed=round(time.monotonic() - started, 3), **result)
    result["changed"] = bool(result.get("volumes_created")) or any(
        item["action"] not in ("kept", "absent") for item in result["containers"]
    )

    health = params["health"]
    if params["state"] == "started" and health and not module.check_mode:
        unaddressed = [item["name"] for item in result["containers"] if not item["address"]]
        if unaddressed:
            module.fail_json(
                msg=f"no address in network {params['network']} for {', '.join(unaddressed)}: cannot check them",
                **result,
            )
        checks = [
            HttpCheck(
                f"http://{item['address']}:{health['port']}{health['path']}",
                name=item["name"],
                status=health["status"],
                expected_json=health["json"] or None,
                contains=health["contains"],
                body=health["body"],
                request_timeout=health["request_timeout"],
            )
            for item in result["containers"]
        ]
        elapsed = run_checks(checks, timeout=health["timeout"], interval=health["interval"])
        result["checks"] = [check.result() for check in checks]
        if not all(check.healthy for check in checks):
            module.fail_json(
                msg=failure_message(checks, elapsed, health["timeout"]),
                elapsed=round(time.monotonic() - started, 3),
                **result,
            )
    result["elapsed"] = round(time.monotonic() - started, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
