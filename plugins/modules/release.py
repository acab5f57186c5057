#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release
short_description: The release ledger and the deploy lock of a stack on a host
version_added: 0.1.0
description:
  - Keeps, on the managed host, the ledger of a stack's releases (every deploy and rollback with its tag, image
    digest, revision label, time, who ran it, the pre-migration backup key and the migration revision before and
    after) and the deploy lock that keeps two deploys of the stack from running at once.
  - The ledger file is only ever replaced whole (temporary file, fsync, rename), so it survives a crash mid-write.
  - V(lock) fails at once when another run holds the lock, naming the holder (who, from where, since when, which
    release). A lock whose holder process is known to be dead (the holder ran on this very machine and its process
    is gone) is stale and is broken; any other lock only with O(break_lock). A broken lock is returned in
    RV(broken_lock).
  - V(record) appends a release when it differs from the current one (another version or image), so a rerun of
    the same release records nothing.
  - V(prune) removes the images of the releases in the ledger older than the last O(keep) versions, unless a
    container uses them; the images of the last O(keep) stay, so a rollback to any of them needs no registry.
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pydeploy.stack.docker
attributes:
  check_mode:
    support: full
    details:
      - V(lock) checks the lock without taking it; V(record) and V(prune) say what they would do.
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
      - V(query) reads the ledger and the lock; V(lock) and V(unlock) take and drop the deploy lock;
        V(record) records a release; V(prune) removes the images of releases older than the last O(keep).
    type: str
    choices: [query, lock, unlock, record, prune]
    default: query
  directory:
    description: Directory of the ledger and the lock on the host (created 0700).
    type: path
  holder:
    description:
      - Who runs the deploy, written in the lock and in each release it records; see the
        C(pydeploy.stack.deploy_holder) lookup. C(run_id) identifies the run.
    type: dict
    default: {}
  break_lock:
    description: With V(lock), take the lock even when another run holds it; the broken holder is returned.
    type: bool
    default: false
  version:
    description: With V(record), the release tag.
    type: str
  image:
    description: With V(record), the image reference (C(repository:tag)); its digest and revision label are read.
    type: str
  kind:
    description: With V(record), what made this release current.
    type: str
    choices: [deploy, rollback]
    default: deploy
  backup_key:
    description: With V(record), the key of the backup taken before the migration, if any.
    type: str
  migration_before:
    description: With V(record), the schema revision before the release's migration.
    type: str
  migration_after:
    description: With V(record), the schema revision after it.
    type: str
  keep:
    description: With V(prune) (or V(record) and O(prune)), how many of the latest versions keep their images.
    type: int
    default: 5
  prune:
    description: With V(record), also prune as V(prune) does, in the same call.
    type: bool
    default: false
  unlock:
    description: With V(record), also release the deploy lock of O(holder), in the same call, once recorded.
    type: bool
    default: false
  containers:
    description:
      - With V(lock), label filters, each C(key=value). Once the lock is held, the containers of this host (running
        or not) that carry all of them are read and returned in RV(containers), as the engine lists them. No
        other run changes them while the lock is held, so a release can plan from this read.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Take the deploy lock
  pydeploy.stack.release:
    stack: flight_hunter
    state: lock
    holder: "{{ lookup('pydeploy.stack.deploy_holder', version=stack_version) }}"

- name: Record the release
  pydeploy.stack.release:
    stack: flight_hunter
    state: record
    version: v20251105_143022
    image: registry.example.com/flight-hunter/backend:v20251105_143022
    migration_before: "0001"
    migration_after: "0002"

- name: Read the ledger
  pydeploy.stack.release:
    stack: flight_hunter
  register: ledger
"""

RETURN = r"""
releases:
  description: Every recorded release, oldest first.
  returned: always
  type: list
  elements: dict
current:
  description: The current release (the last recorded), or null.
  returned: always
  type: dict
previous:
  description: The latest release before the current one that ran another version or image, or null.
  returned: always
  type: dict
versions:
  description: The recorded versions, newest first, each once.
  returned: always
  type: list
  elements: str
lock:
  description: The holder of the deploy lock after the module ran, or null when it is free.
  returned: always
  type: dict
broken_lock:
  description: The holder of a lock that V(lock) broke (stale, or O(break_lock)), or null.
  returned: always
  type: dict
recorded:
  description: With V(record), the release recorded, or null when the current release is the same.
  returned: always
  type: dict
pruned:
  description: With V(prune), the image references removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
containers:
  description:
    - With V(lock) and O(containers), the matching containers as the engine lists them (C(Id), C(Names),
      C(Image), C(State), C(Status), C(Labels), ...), as M(community.docker.docker_host_info) returns them
      with C(verbose_output).
  returned: with V(lock) and O(containers)
  type: list
  elements: dict
"""


from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    docker_argument_spec,
    get_client,
)
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


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(
        stack={"type": "str", "required": True},
        state={"type": "str", "choices": ["query", "lock", "unlock", "record", "prune"], "default": "query"},
        directory={"type": "path"},
        holder={"type": "dict", "default": {}},
        break_lock={"type": "bool", "default": False},
        version={"type": "str"},
        image={"type": "str"},
        kind={"type": "str", "choices": ["deploy", "rollback"], "default": "deploy"},
        backup_key={"type": "str", "no_log": False},  # an S3 object key, not a secret
        migration_before={"type": "str"},
        migration_after={"type": "str"},
        keep={"type": "int", "default": 5},
        prune={"type": "bool", "default": False},
        unlock={"type": "bool", "default": False},
        containers={"type": "list", "elements": "str", "default": []},
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("state", "record", ("version", "image"))],
    )
    params = module.params
    ledger = Ledger(params["directory"] or f"/var/lib/pydeploy/{params['stack']}")
    result = {"changed": False, "broken_lock": None, "recorded": None, "pruned": []}
    try:
        state = params["state"]
        if state == "lock":
            # Connected before the lock is taken: an engine that does not answer leaves it free.
            client = get_client(module) if params["containers"] else None
            result["broken_lock"], containers = lock_and_list(
                ledger,
                client,
                params["holder"],
                params["containers"],
                break_lock=params["break_lock"],
                dry_run=module.check_mode,
            )
            if client is not None:
                result["containers"] = containers
        elif state == "unlock":
            ledger.release(params["holder"], force=params["break_lock"], dry_run=module.check_mode)
        elif state == "record":
            client = get_client(module)
            result["recorded"] = record_release(ledger, client, params, dry_run=module.check_mode)
            result["changed"] = result["recorded"] is not None
            if params["prune"]:
                result["pruned"] = prune_images(client, ledger.releases(), params["keep"], dry_run=module.check_mode)
                result["changed"] = result["changed"] or bool(result["pruned"])
            if params["unlock"]:
                ledger.release(params["holder"], force=params["break_lock"], dry_run=module.check_mode)
        elif state == "prune":
            releases = ledger.releases()
            result["pruned"] = prune_images(get_client(module), releases, params["keep"], dry_run=module.check_mode)
            result["changed"] = bool(result["pruned"])
        result.update(summary_after(ledger, result["recorded"], module.check_mode), lock=ledger.holder())
    except LockHeld as exc:
        module.fail_json(msg=lock_held_message(params["stack"], ledger, exc), lock=exc.holder, **result)
    except LedgerError as exc:
        module.fail_json(msg=str(exc), **result)
    if result["broken_lock"]:
        module.warn(f"broke the deploy lock of {describe_holder(result['broken_lock'])}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
