#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_state
short_description: What a stack's roles left on a host, read in one call (the deploy's fast path)
version_added: 0.2.0
description:
  - Each role of the collection, when it has run, records in a state file on the host the fingerprint of its
    inputs (a hash made on the controller) with what it manages there - the IDs of its containers and the
    SHA-256, mode and owner of its files. V(query) reads that record back and checks, in one call, that each
    role's containers still run with the same IDs (and are not unhealthy) and that each of its files is unchanged,
    so a role whose fingerprint is the same and whose state is intact can skip its tasks.
  - A container removed, stopped or replaced by hand, a managed file edited, removed or given another mode,
    or a network removed makes the role not intact, with the reason; the role then runs in full and repairs it.
  - V(query) also reports the Docker engine (does it answer, its version, its data root) and the free space
    under the data root, which the deploy's preflight checks.
  - V(record) writes the given roles' records (fingerprint and the current IDs and checksums of what they
    manage) over the earlier ones; V(forget) removes them. The file is replaced whole (temporary file, fsync,
    rename), mode 0600.
  - A deploy starts and ends on a host with one call each. V(query) with O(lock) first takes the stack's deploy
    lock (as M(pydeploy.stack.release) does with V(lock)) and reads everything else under it. V(record) with
    O(retire) and O(release) also stops and removes the replicas the release replaced, records the release in
    the ledger, prunes the images of older releases and releases the lock (as M(pydeploy.stack.release) does
    with V(record)).
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pydeploy.stack.docker
attributes:
  check_mode:
    support: full
    details:
      - V(record) and V(forget) report what they would change and write nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  stack:
    description: The stack's name.
    type: str
    required: true
  state:
    description:
      - V(query) reads the records and checks what they name; V(record) records roles; V(forget) drops the
        records of O(roles).
    type: str
    choices: [query, record, forget]
    default: query
  directory:
    description: Directory of the state file on the host (created 0700). Defaults to C(/var/lib/pydeploy/<stack>).
    type: path
  roles:
    description:
      - With V(record), each role to record, by name, as a mapping with C(fingerprint) (the hash of the role's
        inputs, made on the controller; required), C(containers) (names of the containers it manages on this
        host), C(files) (paths of its files), C(networks) (names of its Docker networks) and C(facts) (values
        the role's tasks would have set, returned by V(query) for the roles that skip).
      - With V(forget), the names of the roles whose records are dropped are what counts.
    type: dict
    default: {}
  refresh:
    description:
      - With V(record), roles whose records keep their fingerprint but take the current IDs and checksums of
        what they name (a role that skipped while another one changed a file it manages, as a web release
        changes the proxy's upstream).
    type: list
    elements: str
    default: []
  path:
    description: With V(query), the directory whose free space is reported when the engine does not answer.
    type: path
    default: /var/lib/docker
  files:
    description:
      - With V(record), small files a role's fast path leaves to the end of a successful run (such as the
        release the scheduled jobs run), by path, each a mapping with C(content) and C(mode) (default
        C(0600)). Each file whose content or mode differs is replaced (temporary file, fsync, rename), owned
        by the user the module runs as, before the roles' records are taken; RV(written) lists them.
      - Their content is kept out of logs (as M(ansible.builtin.copy) does with its content).
    type: dict
    default: {}
  images:
    description:
      - With V(query), image references (C(name:tag)) to look up on the host; RV(images) gives the ID of each
        one present. A deploy whose release image is already on the host needs neither its registry nor a pull.
      - A name without a tag stands for every tag of it on the host (a rollback chooses among them).
    type: list
    elements: str
    default: []
  ledger:
    description:
      - With V(query), also read the stack's release ledger in O(directory) (RV(ledger)), as
        M(pydeploy.stack.release) reads it, so that a rollback chooses its release in the same call.
    type: bool
    default: false
  lock:
    description:
      - With V(query), take the stack's deploy lock in O(directory) before reading anything else, or fail at once
        naming the run that holds it (a lock whose holder process is known to be dead is broken, and returned
        in RV(broken_lock)). RV(ledger) is returned too. In check mode the lock is checked, not taken.
    type: dict
    suboptions:
      holder:
        description: Who runs the deploy (see the C(pydeploy.stack.deploy_holder) lookup); C(run_id) identifies the run.
        type: dict
        required: true
      break_lock:
        description: Take the lock even when another run holds it.
        type: bool
        default: false
      check_only:
        description:
          - Check the lock without taking it, as check mode does (for a read that runs in check mode too, as the
            deploy's preflight does).
        type: bool
        default: false
      containers:
        description:
          - Label filters (C(name=value)) of containers to list once the lock is held (RV(containers)), such as the
            stack's web replicas a deploy plans its rollout from.
        type: list
        elements: str
        default: []
  retire:
    description:
      - With V(record), containers to stop and remove before the records are taken (the replicas a release
        replaced), all at once - each gets its stop signal, then O(retire.stop_timeout) seconds before the kill,
        and is removed with its anonymous volumes. A container already gone is fine. When one cannot be removed
        the rest of the call still goes through, then the module fails naming it.
    type: dict
    suboptions:
      names:
        description: The containers' names.
        type: list
        elements: str
        default: []
      stop_timeout:
        description: Seconds between the stop signal and the kill; by default each container's own.
        type: int
  release:
    description:
      - With V(record), after the roles' records, the release that went through - recorded in the stack's ledger
        in O(directory) unless it is the current one (same version and image ID), the images of releases older
        than the last O(release.keep) removed unless a container uses them, and the lock released.
    type: dict
    suboptions:
      version:
        description: The release's tag. Required with O(release.record).
        type: str
      image:
        description: The release's image (C(name:tag)) on this host. Required with O(release.record).
        type: str
      kind:
        description: A deploy or a rollback.
        type: str
        choices: [deploy, rollback]
        default: deploy
      holder:
        description: Who ran it (the lock's holder).
        type: dict
        default: {}
      backup_key:
        description: The S3 key of the backup taken before its migrations.
        type: str
      migration_before:
        description: The schema's revision before its migrations (by default where the current release left it).
        type: str
      migration_after:
        description: The schema's revision after its migrations (by default where the current release left it).
        type: str
      record:
        description: Record it in the ledger (false on the hosts that do not keep the ledger).
        type: bool
        default: true
      prune:
        description: Remove the images of releases older than the last O(release.keep) versions.
        type: bool
        default: true
      keep:
        description: How many releases' images to keep (a rollback to any of them needs no registry).
        type: int
        default: 5
      unlock:
        description: Release the deploy lock this run holds.
        type: bool
        default: true
"""

EXAMPLES = r"""
- name: Read what each role left on the host
  pydeploy.stack.host_state:
    stack: flight_hunter
  register: state

- name: Record what the postgres role manages
  pydeploy.stack.host_state:
    stack: flight_hunter
    state: record
    roles:
      postgres:
        fingerprint: 3f2a9c0d1e7b4a55
        containers: [flight_hunter-postgres]
        files: [/etc/pydeploy/flight_hunter/postgres/superuser_password]
"""

RETURN = r"""
roles:
  description:
    - By role, its recorded fingerprint, whether what it manages is intact, and why not.
  returned: always
  type: dict
  sample:
    postgres: {fingerprint: 3f2a9c0d1e7b4a55, intact: true, reason: "", facts: {}}
    app_web: {fingerprint: 9d1c33aa02e4f871, intact: false, reason: "container flight_hunter-web-a-1 is not running"}
engine:
  description: The Docker engine as seen from the host.
  returned: with O(state=query)
  type: dict
  contains:
    answers:
      description: Whether the engine answered.
      type: bool
    version:
      description: The engine's version.
      type: str
    root_dir:
      description: The engine's data root (O(path) when it does not answer).
      type: str
    free_bytes:
      description: Free bytes for an unprivileged writer under the data root (or its nearest existing parent).
      type: int
    error:
      description: Why the engine did not answer.
      type: str
path:
  description: The state file.
  returned: always
  type: str
written:
  description: With O(state=record), the paths of O(files) that were (or, in check mode, would be) replaced.
  returned: with O(state=record)
  type: list
  elements: str
  sample: [/etc/pydeploy/flight_hunter/jobs.json]
ledger:
  description:
    - With O(ledger) or O(lock), the stack's release ledger on this host, as M(pydeploy.stack.release) returns
      it (C(releases), C(current), C(previous), C(versions)); empty lists and nulls where there is none.
  returned: with O(ledger) or O(lock)
  type: dict
broken_lock:
  description: With O(lock), the holder of a lock that was broken (stale, or O(lock.break_lock)), or null.
  returned: with O(lock)
  type: dict
containers:
  description:
    - With O(lock), the containers matching O(lock.containers) as the engine lists them (C(Id), C(Names), C(Image),
      C(State), C(Labels), ...), read under the lock; empty when the engine does not answer.
  returned: with O(lock)
  type: list
  elements: dict
retired:
  description: With O(retire), the containers stopped and removed (or that would be, in check mode).
  returned: with O(state=record)
  type: list
  elements: str
release:
  description:
    - With O(release), C(recorded) (the entry recorded, or null when the release was the current one already),
      C(pruned) (the image references removed) and the ledger after it (C(releases), C(current), C(previous),
      C(versions)).
  returned: with O(release)
  type: dict
images:
  description:
    - With O(state=query), the ID of each image of O(images) on the host, empty when it is absent; a name
      given without a tag gives each of its tags on the host instead.
  returned: with O(state=query)
  type: dict
  sample: {"registry.example.com/team/app:v2": "sha256:9b1d0c..."}
"""

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    DOCKER_ERRORS,
    HAS_DOCKER,
    NotFound,
    docker_argument_spec,
    retire_container,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._files import replace_file
from ansible_collections.pydeploy.stack.plugins.module_utils._ledger import (
    Ledger,
    LedgerError,
    LockHeld,
    describe_holder,
    lock_and_list,
    lock_held_message,
    prune_images,
    record_release,
    summary_after,
)

try:
    import docker
except ImportError:  # reported as the engine not answering
    docker = None

STATE_FILE = "host_state.json"


def file_facts(path: str) -> dict | None:
    """SHA-256, mode and owner of a file; None when it is missing."""
    try:
        info = os.stat(path)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    mode = f"{info.st_mode & 0o7777:04o}"
    return {"sha256": digest.hexdigest(), "mode": mode, "uid": info.st_uid, "gid": info.st_gid}


def free_bytes(path: str) -> int:
    """Free bytes under path, or under its nearest existing parent."""
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    stats = os.statvfs(path or "/")
    return stats.f_bavail * stats.f_frsize


def container_problem(client, name: str, recorded_id: str) -> str:
    """Why a recorded container is not as recorded, or '' when it is."""
    try:
        attrs = client.api.inspect_container(name)
    except NotFound:
        return f"container {name} is missing"
    if attrs.get("Id") != recorded_id:
        return f"container {name} was replaced"
    state = attrs.get("State") or {}
    if not state.get("Running") or state.get("Paused") or state.get("Restarting"):
        return f"container {name} is not running ({state.get('Status', 'unknown')})"
    if (state.get("Health") or {}).get("Status") == "unhealthy":
        return f"container {name} is unhealthy"
    return ""


def role_problem(client, record: dict) -> str:
    """Why a role's recorded state is not intact, or '' when it is."""
    for path, facts in sorted((record.get("files") or {}).items()):
        now = file_facts(path)
        if now is None:
            return f"file {path} is missing"
        if now != facts:
            return f"file {path} changed"
    if client is None and (record.get("containers") or record.get("networks")):
        return "the Docker engine does not answer"
    for name, recorded_id in sorted((record.get("containers") or {}).items()):
        problem = container_problem(client, name, recorded_id)
        if problem:
            return problem
    for name in record.get("networks") or []:
        try:
            client.api.inspect_network(name)
        except NotFound:
            return f"network {name} is missing"
    return ""


class StateFile:
    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, STATE_FILE)

    def read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # An unreadable record proves nothing: every role runs in full and records anew.
            return {}
        return data.get("roles", {}) if isinstance(data, dict) else {}

    def write(self, roles: dict) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        replace_file(self.path, json.dumps({"version": 1, "roles": roles}, indent=2, sort_keys=True))


def connect(params: dict):
    """A client, and why there is none."""
    if not HAS_DOCKER or docker is None:
        return None, "the Docker SDK for Python is not installed on the host"
    try:
        client = docker.DockerClient(base_url=params["docker_host"], timeout=params["docker_timeout"])
        client.ping()
    except DOCKER_ERRORS as exc:
        return None, f"the Docker engine at {params['docker_host']} does not answer: {exc}"
    return client, ""


def engine_facts(client, error: str, path: str) -> dict:
    facts = {"answers": client is not None, "version": "", "root_dir": path, "error": error}
    if client is not None:
        try:
            info = client.info()
            facts.update(version=info.get("ServerVersion", ""), root_dir=info.get("DockerRootDir") or path)
        except DOCKER_ERRORS as exc:
            facts.update(answers=False, error=f"the Docker engine does not answer: {exc}")
    facts["free_bytes"] = free_bytes(facts["root_dir"])
    return facts


def has_tag(reference: str) -> bool:
    """Whether an image reference names a tag or a digest (a registry's port is not a tag)."""
    return "@" in reference or ":" in reference.rsplit("/", 1)[-1]


def local_images(client, references: list) -> dict:
    """The ID of each image reference present on the host ("" when absent or the engine does not answer);
    for a name without a tag, each of its tags present."""
    found = {}
    for reference in references:
        if not has_tag(reference):
            for image in client.api.images(name=reference) if client is not None else []:
                for tag in image.get("RepoTags") or []:
                    if tag.rsplit(":", 1)[0] == reference:
                        found[tag] = image["Id"]
            continue
        found[reference] = ""
        if client is not None:
            try:
                found[reference] = client.api.inspect_image(reference)["Id"]
            except NotFound:
                pass
    return found


def files_to_write(files: dict) -> list[tuple[str, str, int]]:
    """(path, content, mode) of each file whose content or mode differs from what is on the host."""
    pending = []
    for path, spec in sorted(files.items()):
        if not isinstance(spec, dict) or not isinstance(spec.get("content"), str):
            raise ValueError(f"files.{path} needs a content (a string)")
        try:
            mode = int(str(spec.get("mode") or "0600"), 8)
        except ValueError:
            raise ValueError(f"files.{path}: mode {spec.get('mode')!r} is not an octal mode") from None
        content = spec["content"]
        try:
            with open(path, encoding="utf-8") as handle:
                same = handle.read() == content and os.stat(path).st_mode & 0o7777 == mode
        except (OSError, ValueError):
            same = False
        if not same:
            pending.append((path, content, mode))
    return pending


def planned_facts(content: str, mode: int) -> dict:
    """What file_facts will say of a file this module writes (check mode records it unwritten)."""
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
    return {"sha256": digest, "mode": f"{mode:04o}", "uid": os.geteuid(), "gid": os.getegid()}


def record_role(client, spec: dict, planned: dict | None = None) -> dict:
    """The record of one role: its fingerprint and what it manages as it is now (or, for the files of
    ``planned``, as they will be)."""
    files = {}
    for path in spec.get("files") or []:
        facts = (planned or {}).get(path) or file_facts(path)
        if facts is None:
            raise ValueError(f"file {path} to record does not exist")
        files[path] = facts
    containers = {}
    for name in spec.get("containers") or []:
        if client is None:
            raise ValueError("the Docker engine does not answer")
        try:
            containers[name] = client.api.inspect_container(name)["Id"]
        except NotFound:
            raise ValueError(f"container {name} to record does not exist") from None
    return {
        "fingerprint": spec.get("fingerprint") or "",
        "files": files,
        "containers": containers,
        "networks": sorted(spec.get("networks") or []),
        "facts": spec.get("facts") or {},
    }


def refreshed(client, record: dict) -> dict:
    """A record with the current IDs and checksums of what it names."""
    spec = {**record, "files": list(record.get("files") or {}), "containers": list(record.get("containers") or {})}
    return record_role(client, spec)


def retire(module, client, spec: dict) -> tuple[list, str]:
    """Stop (signal, then the stop timeout) and remove each named container at once; the names removed,
    and what went wrong (empty when nothing did)."""
    names = spec["names"]
    with ThreadPoolExecutor(max_workers=max(len(names), 1)) as pool:
        futures = {
            name: pool.submit(retire_container, client, name, spec["stop_timeout"], module.check_mode) for name in names
        }
    removed, problems = [], []
    for name, future in futures.items():
        try:
            if future.result():
                removed.append(name)
        except DOCKER_ERRORS as exc:
            problems.append(f"{name}: {exc}")
    return removed, "; ".join(problems)


def finish_release(module, client, ledger: Ledger, release: dict, result: dict) -> None:
    """Record the release in the ledger, prune the images of older ones, release the lock."""
    done = {"recorded": None, "pruned": []}
    result["release"] = done
    if release["record"]:
        for name in ("version", "image"):
            if not release.get(name):
                module.fail_json(msg=f"release.{name} is required to record a release", **result)
        done["recorded"] = record_release(ledger, client, release, dry_run=module.check_mode)
    if release["prune"]:
        done["pruned"] = prune_images(client, ledger.releases(), release["keep"], dry_run=module.check_mode)
    if release["unlock"]:
        ledger.release(release.get("holder") or {}, dry_run=module.check_mode)
    done.update(summary_after(ledger, done["recorded"], module.check_mode))
    if done["recorded"] is not None or done["pruned"]:
        result["changed"] = True


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(
        stack={"type": "str", "required": True},
        state={"type": "str", "choices": ["query", "record", "forget"], "default": "query"},
        directory={"type": "path"},
        roles={"type": "dict", "default": {}},
        refresh={"type": "list", "elements": "str", "default": []},
        path={"type": "path", "default": "/var/lib/docker"},
        images={"type": "list", "elements": "str", "default": []},
        files={"type": "dict", "default": {}, "no_log": True},
        ledger={"type": "bool", "default": False},
        lock={
            "type": "dict",
            "options": {
                "holder": {"type": "dict", "required": True},
                "break_lock": {"type": "bool", "default": False},
                "check_only": {"type": "bool", "default": False},
                "containers": {"type": "list", "elements": "str", "default": []},
            },
        },
        retire={
            "type": "dict",
            "options": {
                "names": {"type": "list", "elements": "str", "default": []},
                "stop_timeout": {"type": "int"},
            },
        },
        release={
            "type": "dict",
            "options": {
                "version": {"type": "str"},
                "image": {"type": "str"},
                "kind": {"type": "str", "choices": ["deploy", "rollback"], "default": "deploy"},
                "holder": {"type": "dict", "default": {}},
                "backup_key": {"type": "str", "no_log": False},  # an S3 object key, not a secret
                "migration_before": {"type": "str"},
                "migration_after": {"type": "str"},
                "record": {"type": "bool", "default": True},
                "prune": {"type": "bool", "default": True},
                "keep": {"type": "int", "default": 5},
                "unlock": {"type": "bool", "default": True},
            },
        },
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    state_file = StateFile(params["directory"] or f"/var/lib/pydeploy/{params['stack']}")
    records = state_file.read()
    result = {"changed": False, "path": state_file.path}
    if params["state"] != "query" and params["lock"]:
        module.fail_json(msg="lock goes with state=query (the read that plans the run)")
    if params["state"] != "record" and (params["retire"] or params["release"]):
        module.fail_json(msg="retire and release go with state=record (the end of a run that went through)")
    ledger = Ledger(state_file.directory)
    retiring = (params["retire"] or {}).get("names") or []
    finishing = bool(retiring or params["release"])
    needs_engine = (
        params["state"] == "query"
        or finishing
        or any((spec or {}).get("containers") for spec in params["roles"].values())
        or any((records.get(name) or {}).get("containers") for name in params["refresh"])
    )
    client, error = connect(params) if needs_engine else (None, "")
    try:
        if params["state"] == "query":
            result["engine"] = engine_facts(client, error, params["path"])
            answering = client if result["engine"]["answers"] else None
            lock = params["lock"]
            if lock:
                # Everything else is read under the lock: what the run plans from stays as read.
                dry_run = module.check_mode or lock["check_only"]
                result["broken_lock"], result["containers"] = lock_and_list(
                    ledger,
                    answering,
                    lock["holder"],
                    lock["containers"],
                    break_lock=lock["break_lock"],
                    dry_run=dry_run,
                )
                result["lock"] = {"taken": not dry_run, "holder": lock["holder"]}
                records = state_file.read()
            result["images"] = local_images(answering, params["images"])
            if params["ledger"] or params["lock"]:
                result["ledger"] = Ledger.summary(ledger.releases())
        elif params["state"] == "record":
            if finishing and client is None:
                raise ValueError(error)
            retired, retire_problem = retire(module, client, params["retire"]) if retiring else ([], "")
            result["retired"] = retired
            result["changed"] = bool(retired)
            pending = files_to_write(params["files"])
            result["written"] = [entry[0] for entry in pending]
            if not module.check_mode:
                for path, content, mode in pending:
                    try:
                        replace_file(path, content, mode)
                    except OSError as exc:
                        raise ValueError(f"cannot write {path}: {exc}") from None
            planned = {path: planned_facts(content, mode) for path, content, mode in pending}
            updated = dict(records)
            for name, spec in sorted(params["roles"].items()):
                if not isinstance(spec, dict) or not spec.get("fingerprint"):
                    module.fail_json(msg=f"roles.{name} needs a fingerprint", **result)
                updated[name] = record_role(client, spec, planned)
            for name in params["refresh"]:
                if name in records and name not in params["roles"]:
                    updated[name] = refreshed(client, records[name])
            if updated != records:
                result["changed"] = True
                if not module.check_mode:
                    state_file.write(updated)
                records = updated
            if params["release"]:
                finish_release(module, client, ledger, params["release"], result)
            if retire_problem:
                raise ValueError(
                    f"the old containers could not all be removed ({retire_problem}); the rest of the run is "
                    "recorded: remove them by hand or run again"
                )
        else:
            updated = {name: record for name, record in records.items() if name not in params["roles"]}
            if updated != records:
                result["changed"] = True
                if not module.check_mode:
                    state_file.write(updated)
                records = updated
        roles = {}
        for name, record in sorted(records.items()):
            problem = role_problem(client, record) if params["state"] == "query" else ""
            roles[name] = {
                "fingerprint": record.get("fingerprint", ""),
                "intact": not problem,
                "reason": problem,
                "facts": record.get("facts") or {},
            }
        result["roles"] = roles
    except LockHeld as exc:
        module.fail_json(msg=lock_held_message(params["stack"], ledger, exc), lock=exc.holder, **result)
    except (ValueError, LedgerError) as exc:
        module.fail_json(msg=str(exc), **result)
    except DOCKER_ERRORS as exc:
        module.fail_json(msg=f"Docker error: {exc}", **result)
    except OSError as exc:
        module.fail_json(msg=f"cannot write {state_file.path}: {exc}", **result)
    if result.get("broken_lock"):
        module.warn(f"broke the deploy lock of {describe_holder(result['broken_lock'])}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
