#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_restore
short_description: Restore or verify a backup made by db_backup, through a scratch database
version_added: 0.2.0
description:
  - Reads a backup written by M(pydeploy.stack.db_backup) from S3 (O(key), or the newest of the set), and
    restores it with the server's own tools (C(pg_restore), C(psql) or C(mongorestore)) run in a new container
    of the image the database container runs.
  - Nothing becomes visible before it is verified. The object is read once and streamed, decompressed, into a
    new scratch database (C(<database>_restore_<id>); MongoDB with C(--nsFrom)/C(--nsTo)), its SHA-256 computed
    on the way. When the stream ends, the hash and size are compared with the manifest, then the row or document
    counts and index names the manifest recorded, the migration revision, and O(checks). On any mismatch the
    scratch database is dropped and the module fails, naming what failed (for the checksum, the key and both
    hashes).
  - O(target=scratch) keeps the verified scratch database and returns its name.
  - O(target=live) (with O(confirm_live=true)) first takes a fresh backup of the live database through the same
    code path as M(pydeploy.stack.db_backup) (returned as RV(pre_restore_backup)), then swaps. PostgreSQL -
    connections to the live database are refused and terminated, it is renamed aside (and dropped, unless
    O(keep_replaced)), and the scratch database renamed into its place. MongoDB - each restored collection is
    moved into the live database with C(renameCollection) (C(dropTarget)), and live collections the backup does
    not have are dropped; that swap is not atomic.
  - O(mode=verify) restores into scratch, runs the checks, drops the scratch database and records the outcome in
    the manifest (C(verified) true or false, C(verified_at), the checks), which the retention floor of
    M(pydeploy.stack.backup_prune) relies on. A failed verification fails the task.
  - O(mode=drop) drops what restores left, without reading S3 - the scratch database O(scratch_database) names,
    or without it every database named C(<database>_restore_<id>) (the scratch databases of O(target=scratch)
    and the replaced databases O(keep_replaced) kept). It refuses any other name, the live database's above all,
    and waits for a restore under way on the host, whose scratch database is not left over.
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pydeploy.stack.docker
  - pydeploy.stack.s3
  - pydeploy.stack.backup_database
attributes:
  check_mode:
    support: full
    details:
      - Checks the bucket and the database container, finds the key and reads its manifest, and says what it would
        do. It starts no container and writes nothing. With O(mode=drop), it lists what it would drop.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  name:
    description: The backup set (the C(name) given to M(pydeploy.stack.db_backup)). Defaults to O(database).
    type: str
  key:
    description: The key of the backup to restore, or V(latest) for the newest complete backup of the set.
    type: str
    default: latest
  mode:
    description:
      - V(restore) restores into O(target).
      - V(verify) restores into a scratch database, checks it, drops it and records the outcome in the manifest.
      - V(drop) drops the scratch database O(scratch_database), or every one restores of O(database) left.
    type: str
    choices: [restore, verify, drop]
    default: restore
  target:
    description: Where a restore ends. V(live) needs O(confirm_live).
    type: str
    choices: [scratch, live]
    default: scratch
  confirm_live:
    description: Must be V(true) for O(target=live), which replaces the live database.
    type: bool
    default: false
  keep_replaced:
    description:
      - With O(target=live) on postgres, keep the replaced database under the name returned in
        RV(replaced_database) instead of dropping it (the fresh backup exists either way).
    type: bool
    default: false
  scratch_database:
    description:
      - Name of the scratch database, instead of C(<database>_restore_<random id>). It must not exist.
      - With O(mode=drop), the one to drop, a name C(<database>_restore_<id>); none means all of them.
    type: str
  jobs:
    description:
      - With more than one, a postgres custom-format backup is streamed into a file inside the tools container
        (its checksum is then verified before anything is restored) and restored with C(pg_restore --jobs).
        This needs room for the uncompressed dump in the Docker data directory. Otherwise the dump is streamed
        to the tool's standard input and never stored.
      - For mongodb, the insertion workers per collection.
    type: int
    default: 1
  check_counts:
    description: Compare the row or document count of every table or collection, and the index names, with the manifest.
    type: bool
    default: true
  revision_query:
    description:
      - How to read the migration revision of the restored database, compared with the manifest's
        C(migration_revision) when it has one.
      - For postgres an SQL query whose rows are the revisions (default C(SELECT version_num FROM alembic_version)).
      - For mongodb a mapping with C(collection), C(filter) and C(field); without it the revision is not checked.
    type: raw
  checks:
    description:
      - Checks run in the restored scratch database, each reported with its outcome.
      - For postgres, O(checks[].query) is SQL and the first column of its first row is compared with
        O(checks[].expect).
        For mongodb, it is a mapping with C(collection) and an optional C(filter), and the number of matching
        documents is compared.
      - Numbers and booleans compare by value, anything else as text.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the check in RV(checks).
        type: str
        required: true
      query:
        description: The query, as described above.
        type: raw
        required: true
      expect:
        description: The expected value.
        type: raw
        required: true
notes:
  - The module connects to the database container's address on O(network) from the managed host, so it
    runs on the host of the database container.
requirements:
  - boto3, the Docker SDK for Python, and psycopg 3 or pymongo on the managed host; zstandard for V(zstd) backups.
seealso:
  - module: pydeploy.stack.db_backup
  - module: pydeploy.stack.backup_prune
"""

EXAMPLES = r"""
- name: Nightly restore drill of the newest backup
  pydeploy.stack.db_restore:
    engine: postgres
    container: flight_hunter-postgres
    mode: verify
    bucket: acme-backups
    prefix: flight_hunter/
    access_key: "{{ vault_s3_access_key }}"
    secret_key: "{{ vault_s3_secret_key }}"
    checks:
      - name: some prices were cached
        query: SELECT count(*) > 0 FROM price_cache
        expect: true

- name: Put a backup back into the live database (a fresh backup of it is taken first)
  pydeploy.stack.db_restore:
    engine: postgres
    container: car_api-postgres
    key: backups/cars/cars-20251105T030000Z-1a2b3c.sql.gz
    target: live
    confirm_live: true
    bucket: car-api-backups
    access_key: "{{ vault_s3_access_key }}"
    secret_key: "{{ vault_s3_secret_key }}"
  register: restored

- name: Drop the scratch databases restores of flight_hunter left
  pydeploy.stack.db_restore:
    engine: postgres
    container: flight_hunter-postgres
    mode: drop
    bucket: acme-backups
- name: Restore the newest CRM backup into a scratch database to look at it
  pydeploy.stack.db_restore:
    engine: mongodb
    container: conductor-mongodb
    database: conductor
    bucket: crm-backups
    checks:
      - name: admins exist
        query: {collection: users, filter: {role: admin}}
        expect: 2
"""

RETURN = r"""
key:
  description: The key restored.
  returned: when it was resolved
  type: str
sha256:
  description: SHA-256 of the object as read.
  returned: when the object was read
  type: str
expected_sha256:
  description: SHA-256 the manifest records.
  returned: when the manifest was read
  type: str
scratch_database:
  description:
    - The scratch database. It exists after the run only with O(target=scratch) and success.
  returned: when the manifest was read
  type: str
scratch_dropped:
  description: Whether the scratch database was dropped after a verification or a failure.
  returned: when a scratch database was created and had to go
  type: bool
checks:
  description:
    - Every check in order, each with C(name), C(ok), C(expected), C(actual) (and C(error) when a query failed).
      The first is always C(sha256).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "sha256", "ok": true, "expected": "9f86d0...", "actual": "9f86d0..."},
           {"name": "count public.cars", "ok": true, "expected": 120, "actual": 120}]
verified:
  description: With O(mode=verify), whether the verification passed (it fails the task otherwise).
  returned: success with O(mode=verify)
  type: bool
manifest:
  description: The manifest of the backup (with O(mode=verify), as updated).
  returned: when it was read
  type: dict
restored_counts:
  description: Rows or documents per table or collection in the restored database.
  returned: with O(check_counts), once restored
  type: dict
pre_restore_backup:
  description:
    - With O(target=live), the backup of the live database taken before the swap (C(key), C(size), C(sha256),
      C(duration)); null when there was no live database.
  returned: with O(target=live), once taken
  type: dict
replaced_database:
  description: With O(keep_replaced), the name the replaced live database was renamed to.
  returned: with O(target=live) and O(keep_replaced) on postgres
  type: str
restored_into:
  description: With O(target=live), the live database now holding the backup.
  returned: success with O(target=live)
  type: str
dropped:
  description: With O(mode=drop), the databases dropped (in check mode, those that would be).
  returned: success with O(mode=drop)
  type: list
  elements: str
commands:
  description: The tool commands run in the tools containers, as argv lists (no secret is ever on them).
  returned: always
  type: list
  elements: list
removed_containers:
  description: Tools containers of a killed earlier run that were removed.
  returned: always
  type: list
  elements: str
duration:
  description: Seconds the module ran.
  returned: always
  type: float
msg:
  description: In check mode, what would be done; with O(mode=drop), what was dropped.
  returned: check mode, and with O(mode=drop)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_engines import database_argument_spec
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_restore import run_restore
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import docker_argument_spec
from ansible_collections.pydeploy.stack.plugins.module_utils._s3 import s3_argument_spec


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(s3_argument_spec())
    argument_spec.update(database_argument_spec())
    argument_spec.update(
        name={"type": "str"},
        key={"type": "str", "default": "latest", "no_log": False},  # an S3 object key, not a secret
        mode={"type": "str", "choices": ["restore", "verify", "drop"], "default": "restore"},
        target={"type": "str", "choices": ["scratch", "live"], "default": "scratch"},
        confirm_live={"type": "bool", "default": False},
        keep_replaced={"type": "bool", "default": False},
        scratch_database={"type": "str"},
        jobs={"type": "int", "default": 1},
        check_counts={"type": "bool", "default": True},
        revision_query={"type": "raw"},
        checks={
            "type": "list",
            "elements": "dict",
            "options": {
                "name": {"type": "str", "required": True},
                "query": {"type": "raw", "required": True},
                "expect": {"type": "raw", "required": True},
            },
        },
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_restore(module)


if __name__ == "__main__":
    main()
