#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: container_logs
short_description: Read the logs of one process of a stack from the Docker engine, secrets masked
version_added: 0.3.0
description:
  - Reads the log of every container of one process of a stack on the host, running or stopped - the containers
    labelled C(pydeploy.stack=<stack>) and C(pydeploy.process=<process>), one-off containers
    (C(pydeploy.oneoff)) left out - as C(docker logs --timestamps) would, and returns its lines with the engine's
    timestamps, oldest first, so that the lines of several hosts can be merged in time order (the C(logs.yml)
    playbook does).
  - Only reads; check mode reads the same way.
  - Every value of O(env_file) and of O(secrets), and any password inside a URL, is masked in every line returned.
  - With O(follow_seconds) it follows the logs for that many seconds (the engine's C(docker logs --follow
    --until)) and returns what came, then ends; run it again with O(resume) set to the RV(resume) it returned to
    go on where it stopped, without a line twice.
  - A container whose log driver keeps nothing the engine can read back (V(none), or C(syslog), C(fluentd),
    C(gelf), ... with the engine's local cache turned off by C(cache-disabled)) is not read; it is listed in
    RV(unreadable) with the reason.
  - O(files) reads log files of the collection's job runner (lines C(<UTC time> <stream>| <text>), as in
    C(/var/log/pydeploy/<stack>/<job>.log)) the same way; a scheduled job's containers log nowhere else.
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
  process:
    description:
      - The process, by its C(pydeploy.process) label (V(web), a name of C(stack_processes), V(proxy),
        V(postgres), V(redis)).
      - Without it, only O(files) are read.
    type: str
  labels:
    description: Further labels the containers must carry, with these values.
    type: dict
    default: {}
  host:
    description:
      - The inventory name of this host. Containers labelled C(pydeploy.host) with another name are left out, so
        that two inventory names sharing one Docker engine do not both return the same background process.
    type: str
  files:
    description: Log files of the job runner to read as well. A file that does not exist is skipped.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file's path on the host.
        type: path
        required: true
      name:
        description: How its lines are labelled. Defaults to the file's name without C(.log).
        type: str
  lines:
    description:
      - The last N lines of each container (and file).
      - Defaults to V(100) without O(since), and to every line since O(since) with it.
    type: int
  since:
    description:
      - Only lines from this time on - a duration back from now (V(45s), V(10m), V(1h30m), V(2d)), an RFC 3339
        time (V(2025-11-05T14:30:22Z)) or seconds since the epoch.
    type: str
  until:
    description: Only lines up to this time, in the forms of O(since).
    type: str
  follow_seconds:
    description:
      - Follow the logs for this many seconds (at most 3600) and return the lines that came, with those O(lines)
        or O(since) asked for first. V(0) reads what is there and ends.
    type: int
    default: 0
  resume:
    description:
      - Where an earlier call stopped, its RV(resume) - by container (or file) name, the time of the last line it
        returned, or for a file C(<inode>:<offset>). Those are read from just after that point; the others from
        O(since).
    type: dict
    default: {}
  env_file:
    description:
      - Path on the host of the app's env file (C(KEY=VALUE) lines); every value in it is masked in what the module
        returns. A file that does not exist masks nothing (no container on the host was started with it); one
        that cannot be read fails the module.
    type: path
  secrets:
    description: Further values to mask.
    type: list
    elements: str
    default: []
  max_lines:
    description: At most this many lines in all are returned, the latest; RV(dropped) counts the others.
    type: int
    default: 10000
"""

EXAMPLES = r"""
- name: The last 20 lines of each web replica
  pydeploy.stack.container_logs:
    stack: flight_hunter
    process: web
    lines: 20
    env_file: /etc/pydeploy/flight_hunter/app.env
  register: web_logs

- name: The worker's last ten minutes, then ten seconds of what comes
  pydeploy.stack.container_logs:
    stack: flight_hunter
    process: worker
    since: 10m
    follow_seconds: 10
    env_file: /etc/pydeploy/flight_hunter/app.env
  register: first

- name: The next ten seconds, from where the first call stopped
  pydeploy.stack.container_logs:
    stack: flight_hunter
    process: worker
    since: "{{ first.read_started }}"
    resume: "{{ first.resume }}"
    follow_seconds: 10
    env_file: /etc/pydeploy/flight_hunter/app.env

- name: A scheduled job's last runs, from the job runner's log
  pydeploy.stack.container_logs:
    stack: flight_hunter
    files:
      - path: /var/log/pydeploy/flight_hunter/fetch_prices.log
    lines: 50
    env_file: /etc/pydeploy/flight_hunter/app.env
"""

RETURN = r"""
entries:
  description: The lines, oldest first, each with the engine's time (RFC 3339, nine fractional digits, UTC).
  returned: always
  type: list
  elements: dict
  contains:
    time:
      description: When the engine (or the job runner) received the line.
      type: str
      sample: "2025-11-05T14:30:22.123456789Z"
    source:
      description: The container's name, or the file's O(files[].name).
      type: str
      sample: flight_hunter-web-a-1
    text:
      description: The line, secrets masked.
      type: str
lines:
  description: RV(entries) as C(<source> | <text>).
  returned: always
  type: list
  elements: str
  sample: ["flight_hunter-web-a-1 | INFO: 10.0.0.3 GET /health 200"]
sources:
  description: Every container (and file) of the selection, read or not.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Container name, or file name.
      type: str
    kind:
      description: V(container) or V(file).
      type: str
    id:
      description: The container's ID (empty for a file).
      type: str
    state:
      description: The container's state (V(running), V(exited), ...); for a file V(present) or V(absent).
      type: str
    log_driver:
      description: The container's log driver.
      type: str
    lines:
      description: Lines returned from it.
      type: int
    readable:
      description: Whether its log could be read.
      type: bool
unreadable:
  description: The containers whose log the engine cannot read back, with their log driver and the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "flight_hunter-web-a-1", "log_driver": "none", "reason": "the log driver none keeps no log"}]
processes:
  description: The processes of the stack that have containers on the host (their C(pydeploy.process) labels).
  returned: always
  type: list
  elements: str
  sample: [proxy, web, worker]
resume:
  description: By source, where this call stopped; give it as O(resume) to the next call.
  returned: always
  type: dict
read_started:
  description: When this call began to read (the host's clock), RFC 3339; the O(since) of a next call.
  returned: always
  type: str
dropped:
  description: Lines left out by O(max_lines).
  returned: always
  type: int
"""

import contextlib
import os
import threading
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    DOCKER_ERRORS,
    EnvFileError,
    docker_argument_spec,
    get_client,
    parse_env_file,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._logs import (
    NS,
    LineSplitter,
    format_time,
    parse_moment,
    parse_time,
    split_engine_line,
    split_job_line,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._secrets import mask

MAX_FOLLOW_SECONDS = 3600
DEFAULT_LINES = 100
# Of a job log file, at most its last this many bytes are read (a file is rotated at 10 MiB by default).
MAX_FILE_BYTES = 32 * 1024 * 1024
# Drivers whose logs the engine reads itself; the others only through its local cache ("dual logging").
READING_DRIVERS = ("json-file", "local", "journald")
FILE_POLL_SECONDS = 0.5


class Source:
    """One container or file: what the module reports about it, and the lines read from it."""

    def __init__(self, name: str, kind: str, **info):
        self.name = name
        self.kind = kind
        self.info = {"name": name, "kind": kind, "id": "", "state": "", "log_driver": "", "readable": True, **info}
        self.entries: list[tuple[int, str]] = []
        self.reason = ""
        self.cursor = ""

    def add(self, stamp: int | None, text: str) -> None:
        if stamp is None:  # a line without a time of its own: the time of the line before it
            stamp = self.entries[-1][0] if self.entries else 0
        self.entries.append((stamp, text))

    def report(self) -> dict:
        return {**self.info, "lines": len(self.entries)}


def fail_arguments(module: AnsibleModule, params: dict, now_ns: int) -> dict:
    """Check every argument before anything is read; return since, until and resume in nanoseconds."""
    errors = []
    if not str(params["stack"]).strip():
        errors.append("stack is empty")
    if params["process"] is not None and not params["process"].strip():
        errors.append("process is empty")
    if params["process"] is None and not params["files"]:
        errors.append("give the process whose containers to read, or files")
    if params["lines"] is not None and params["lines"] < 1:
        errors.append(f"lines must be at least 1, got {params['lines']}")
    if not 0 <= params["follow_seconds"] <= MAX_FOLLOW_SECONDS:
        errors.append(f"follow_seconds must be between 0 and {MAX_FOLLOW_SECONDS}, got {params['follow_seconds']}")
    if params["max_lines"] < 1:
        errors.append(f"max_lines must be at least 1, got {params['max_lines']}")
    moments = {}
    for key in ("since", "until"):
        if params[key] not in (None, ""):
            try:
                moments[key] = parse_moment(params[key], now_ns)
            except ValueError as exc:
                errors.append(f"{key}: {exc}")
    if "since" in moments and "until" in moments and moments["until"] < moments["since"]:
        errors.append(f"until ({params['until']}) is before since ({params['since']})")
    resume = {}
    for name, value in (params["resume"] or {}).items():
        value = str(value)
        try:
            if ":" in value and "T" not in value:
                inode, offset = (int(part) for part in value.split(":"))
                resume[str(name)] = (inode, offset)
            else:
                resume[str(name)] = parse_time(value)
        except ValueError:
            errors.append(f"resume[{name}]: {value!r} is neither an RFC 3339 time nor <inode>:<offset>")
    for index, entry in enumerate(params["files"]):
        if not str(entry.get("path") or "").strip():
            errors.append(f"files[{index}]: path is empty")
    if errors:
        module.fail_json(msg="; ".join(errors))
    return {"since": moments.get("since"), "until": moments.get("until"), "resume": resume}


def read_secrets(module: AnsibleModule, params: dict) -> list:
    secrets = [str(value) for value in params["secrets"] if value not in (None, "")]
    path = params["env_file"]
    if path and os.path.exists(path):
        try:
            secrets += list(parse_env_file(path).values())
        except EnvFileError as exc:
            module.fail_json(msg=f"cannot mask the env file's values: {exc}")
    return secrets


def select_containers(client, params: dict) -> tuple[list, list]:
    """The process's containers on this host, and every process of the stack there."""
    listed = client.api.containers(all=True, filters={"label": [f"pydeploy.stack={params['stack']}"]})
    wanted = {"pydeploy.process": params["process"], **{str(k): str(v) for k, v in params["labels"].items()}}
    processes, chosen = set(), []
    for container in listed:
        labels = container.get("Labels") or {}
        if labels.get("pydeploy.oneoff") or labels.get("pydeploy.stack") != params["stack"]:
            continue
        if params["host"] and labels.get("pydeploy.host", params["host"]) != params["host"]:
            continue
        if labels.get("pydeploy.process"):
            processes.add(labels["pydeploy.process"])
        if params["process"] is not None and all(labels.get(key) == value for key, value in wanted.items()):
            chosen.append(container)
    return chosen, sorted(processes)


def unreadable_reason(driver: str, options: dict) -> str:
    if driver == "none":
        return "its log driver is none: the engine keeps no log of it"
    if driver not in READING_DRIVERS and str(options.get("cache-disabled", "false")).lower() == "true":
        return (
            f"its log driver {driver} sends the log elsewhere and the engine keeps no copy (cache-disabled):"
            f" read it where {driver} delivers it"
        )
    return ""


def engine_seconds(ns: int, up: bool = False) -> float:
    """Nanoseconds as the float seconds the SDK passes on, rounded to the microsecond: down (never later), or up
    (never earlier).  One division of whole microseconds, so that the float's shortest form - what the SDK sends
    the engine - is those microseconds exactly (a float sum such as ``x + 0.000001`` may print as a hair less)."""
    micros = -(-ns // 1000) if up else ns // 1000
    return max(micros, 1) / 1_000_000


class ContainerReader:
    """Reads one container's log: at once, or following it until ``until``."""

    def __init__(self, client, source: Source, tail, since_ns, until_ns, after_ns, follow: bool):
        self.client = client
        self.source = source
        self.tail = tail
        self.since_ns = since_ns
        self.until_ns = until_ns
        self.after_ns = after_ns
        self.follow = follow
        self.stream = None
        self.thread = None

    def keep(self, line: str) -> None:
        stamp, text = split_engine_line(line)
        if stamp is not None:
            if self.after_ns is not None and stamp <= self.after_ns:
                return
            if self.since_ns is not None and stamp < self.since_ns:
                return
            if self.until_ns is not None and stamp > self.until_ns:
                return
        self.source.add(stamp, text)

    def arguments(self) -> dict:
        kwargs = {"stdout": True, "stderr": True, "timestamps": True, "tail": self.tail or "all"}
        start = self.after_ns if self.after_ns is not None else self.since_ns
        if start is not None:
            kwargs["since"] = engine_seconds(start)
        if self.until_ns is not None:
            kwargs["until"] = engine_seconds(self.until_ns, up=True)
        return kwargs

    def read(self) -> None:
        splitter = LineSplitter()
        try:
            if self.follow:
                self.stream = self.client.api.logs(self.source.info["id"], stream=True, follow=True, **self.arguments())
                for chunk in self.stream:
                    for line in splitter.feed(chunk):
                        self.keep(line)
            else:
                output = self.client.api.logs(self.source.info["id"], stream=False, follow=False, **self.arguments())
                for line in splitter.feed(output if isinstance(output, bytes) else b""):
                    self.keep(line)
        except DOCKER_ERRORS as exc:
            if not self.source.entries:
                driver = self.source.info["log_driver"]
                detail = getattr(exc, "explanation", None) or str(exc)
                self.source.reason = f"the engine cannot read its log back (log driver {driver}): {detail}"
        for line in splitter.flush():
            self.keep(line)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Close a follow stream that outlived its time (the engine normally ends it at ``until``)."""
        if self.stream is not None:
            with contextlib.suppress(Exception):  # a socket already gone
                self.stream.close()


def read_file_lines(source: Source, path: str, tail, since_ns, until_ns, resume, deadline):
    """The job runner's log file: its last lines (or those since a time), then what it gets until ``deadline``."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        source.info.update(state="absent", readable=False)
        return
    except OSError as exc:
        source.info["state"] = "present"
        source.reason = f"cannot read {path}: {exc.strerror}"
        return
    source.info["state"] = "present"
    with handle:
        stat = os.fstat(handle.fileno())
        inode, size = stat.st_ino, stat.st_size
        resumed = isinstance(resume, tuple) and resume[0] == inode and resume[1] <= size
        if resumed:
            offset = resume[1]
        else:
            offset = max(size - MAX_FILE_BYTES, 0)
            if offset:  # a file cut short: from its first whole line
                handle.seek(offset)
                offset += len(handle.readline())
        handle.seek(offset)
        data = handle.read(max(size - offset, 0))
        complete = data.rfind(b"\n") + 1
        found = []
        for line in LineSplitter().feed(data[:complete]):
            stamp, text = split_job_line(line)
            if stamp is None and found:
                stamp = found[-1][0]
            if not resumed and since_ns is not None and (stamp or 0) < since_ns:
                continue
            if until_ns is not None and (stamp or 0) > until_ns:
                continue
            found.append((stamp, text))
        if tail and not resumed:
            found = found[-tail:]
        for stamp, text in found:
            source.add(stamp, text)
        offset += complete
        while deadline is not None and time.time() < deadline:
            time.sleep(min(FILE_POLL_SECONDS, max(deadline - time.time(), 0)))
            try:
                if os.stat(path).st_ino != inode:  # rotated: the next call reads the new file from its start
                    break
            except OSError:
                break
            handle.seek(offset)
            data = handle.read()
            complete = data.rfind(b"\n") + 1
            for line in LineSplitter().feed(data[:complete]):
                source.add(*split_job_line(line))
            offset += complete
        source.cursor = f"{inode}:{offset}"


def run_module(module: AnsibleModule) -> None:
    params = module.params
    now_ns = time.time_ns()
    moments = fail_arguments(module, params, now_ns)
    secrets = read_secrets(module, params)
    tail = params["lines"] if params["lines"] is not None else (None if moments["since"] is not None else DEFAULT_LINES)
    follow = params["follow_seconds"] > 0
    deadline = time.time() + params["follow_seconds"] if follow else None
    until_ns = moments["until"]
    if follow and (until_ns is None or until_ns > int(deadline * NS)):
        until_ns = int(deadline * NS)

    client = get_client(module) if params["process"] is not None else None
    sources, readers, unreadable, processes = [], [], [], []
    if client is not None:
        try:
            containers, processes = select_containers(client, params)
            for container in sorted(containers, key=lambda c: (c.get("Names") or ["/"])[0]):
                attrs = client.api.inspect_container(container["Id"])
                log_config = (attrs.get("HostConfig") or {}).get("LogConfig") or {}
                driver = log_config.get("Type") or ""
                source = Source(
                    attrs.get("Name", "").lstrip("/"),
                    "container",
                    id=attrs["Id"],
                    state=(attrs.get("State") or {}).get("Status", ""),
                    log_driver=driver,
                )
                sources.append(source)
                reason = unreadable_reason(driver, log_config.get("Config") or {})
                if reason:
                    source.reason = reason
                    continue
                resume = moments["resume"].get(source.name)
                readers.append(
                    ContainerReader(
                        client,
                        source,
                        None if isinstance(resume, int) else tail,
                        moments["since"],
                        until_ns,
                        resume if isinstance(resume, int) else None,
                        follow,
                    )
                )
        except DOCKER_ERRORS as exc:
            module.fail_json(msg=f"cannot list the containers of stack {params['stack']}: {exc}")

    read_started = time.time_ns()
    for reader in readers:
        reader.start()
    file_threads = []
    for entry in params["files"]:
        name = entry.get("name") or os.path.basename(entry["path"]).removesuffix(".log")
        source = Source(name, "file")
        sources.append(source)
        args = (source, entry["path"], tail, moments["since"], until_ns, moments["resume"].get(name), deadline)
        thread = threading.Thread(target=read_file_lines, args=args, daemon=True)
        thread.start()
        file_threads.append(thread)
    grace = (deadline - time.time() if deadline else 0) + params["docker_timeout"]
    for reader in readers:
        reader.thread.join(timeout=max(grace, 1))
    for reader in readers:
        if reader.thread.is_alive():
            reader.stop()
            reader.thread.join(timeout=5)
    for thread in file_threads:
        thread.join(timeout=max(grace, 1))

    merged = []
    for order, source in enumerate(sources):
        if source.reason:
            source.info["readable"] = False
            unreadable.append({"name": source.name, "log_driver": source.info["log_driver"], "reason": source.reason})
        for sequence, (stamp, text) in enumerate(source.entries):
            merged.append((stamp, order, sequence, source.name, text))
    merged.sort()
    dropped = max(len(merged) - params["max_lines"], 0)
    merged = merged[dropped:]
    entries = [
        {"time": format_time(stamp), "source": name, "text": mask(text, secrets)}
        for stamp, _order, _sequence, name, text in merged
    ]

    resume = {}
    for source in sources:
        if source.kind == "file":
            if source.cursor:
                resume[source.name] = source.cursor
        elif source.info["readable"] and not source.reason:
            last = max((stamp for stamp, _text in source.entries), default=None)
            resume[source.name] = format_time(last if last is not None else read_started)
    module.exit_json(
        changed=False,
        entries=entries,
        lines=[f"{entry['source']} | {entry['text']}" for entry in entries],
        sources=[source.report() for source in sources],
        unreadable=unreadable,
        processes=processes,
        resume=resume,
        read_started=format_time(read_started),
        dropped=dropped,
    )


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(
        stack={"type": "str", "required": True},
        process={"type": "str"},
        labels={"type": "dict", "default": {}},
        host={"type": "str"},
        files={
            "type": "list",
            "elements": "dict",
            "default": [],
            "options": {"path": {"type": "path", "required": True}, "name": {"type": "str"}},
        },
        lines={"type": "int"},
        since={"type": "str"},
        until={"type": "str"},
        follow_seconds={"type": "int", "default": 0},
        resume={"type": "dict", "default": {}},
        env_file={"type": "path"},
        secrets={"type": "list", "elements": "str", "default": [], "no_log": True},
        max_lines={"type": "int", "default": 10000},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module)


if __name__ == "__main__":
    main()
