#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_backup
short_description: Stream a PostgreSQL or MongoDB dump, compressed, into S3 with a checksum and a manifest
version_added: 0.2.0
description:
  - Dumps one database of a running database container with the server's own tools (C(pg_dump) or
    C(mongodump --archive)), run in a new container of the image that container runs, in that container's
    network namespace (the tool reaches the server through the loopback device).
  - The dump's output is compressed on the managed host and streamed straight into an S3 multipart
    upload, each part checked by S3 against its SHA-256 and sent by a thread while the next part fills. There is
    no temporary file, and memory stays bounded by two parts (O(part_size_mb)) plus a small buffer whatever the
    size of the database.
  - The SHA-256 of the stored object is computed on the way; once the upload completed, a manifest is stored
    beside the backup, as C(<key>.manifest.json), with the checksum, versions, counts taken at dump time and
    the verification state that M(pydeploy.stack.db_restore) with O(pydeploy.stack.db_restore#module:mode=verify)
    fills in.
  - "Keys are C(<prefix><name>/<name>-<YYYYmmddTHHMMSSZ>-<6 hex>.<ext>), with C(.dump) (pg_dump's custom format),
    C(.sql) (plain SQL) or C(.archive) (mongodump archive), followed by C(.zst) or C(.gz)."
  - On any failure the multipart upload is aborted and the tools container removed. A run killed outright
    leaves both behind; the next run removes the container (under the same O(lock_path)) and aborts the
    uploads under the set's prefix older than O(stale_upload_age).
  - With O(retention), backups of the set are pruned after a successful backup; see
    M(pydeploy.stack.backup_prune) for the rules.
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
      - Checks the bucket and the database container, then says what it would dump where, which unfinished
        uploads it would abort and which backups retention would delete. It starts no container and writes
        nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  name:
    description:
      - Name of the backup set, the folder under O(prefix) its backups go to. Defaults to O(database).
    type: str
  format:
    description:
      - For postgres, V(custom) (C(pg_dump -Fc), restored with C(pg_restore), in parallel with
        O(pydeploy.stack.db_restore#module:jobs)) or V(plain) (an SQL script, restored with C(psql)).
      - With compression, a custom-format dump is taken with C(--compress=0), so that it is compressed once.
      - Ignored for mongodb, whose backups are always C(mongodump --archive).
    type: str
    choices: [custom, plain]
    default: custom
  compression:
    description:
      - How the dump is compressed on the managed host. V(zstd) needs the C(zstandard) Python library
        (Debian's C(python3-zstandard), installed by the C(docker_host) role); V(gzip) gives an object that
        C(gunzip) reads (C(gunzip -c KEY.sql.gz | psql), C(gunzip -c KEY.archive.gz | mongorestore --archive)).
    type: str
    choices: [zstd, gzip, none]
    default: zstd
  compression_level:
    description:
      - The compression level (zstd 1-19, default 1; gzip 1-9, default 6).
      - zstd's level 1 is the default because on dumps it is about twice as fast as level 3 for a size within a
        few per cent, and the backup shares the database host's CPU with the database.
    type: int
  part_size_mb:
    description:
      - Size of each uploaded part in MiB, at least 5. Each full part is sent by a thread of its own while the
        next one fills, so memory use is about two parts.
      - The part size doubles every 2000 parts, so a dump of any size fits in S3's 10000 parts.
    type: int
    default: 8
  local_copy_dir:
    description:
      - Directory on the managed host where a copy of the stored object (and its manifest) is written
        while streaming, mode 0600, for those who also keep C(/backups). Removed when the backup fails.
    type: path
  release:
    description: The release tag deployed when the backup is taken, recorded in the manifest.
    type: str
  migration_revision:
    description:
      - The schema revision of the database (for example the Alembic head), recorded in the manifest and
        checked by a verifying restore.
    type: str
  stale_upload_age:
    description:
      - Unfinished multipart uploads under the set's prefix initiated more than this many seconds ago are
        aborted at the start (left by a run killed outright). V(0) aborts all of them; use it only when no
        other run writes to the same set at the same time.
    type: int
    default: 21600
  retention:
    description:
      - Prune the set after a successful backup. In check mode, reports what would be deleted.
      - The rules are those of M(pydeploy.stack.backup_prune).
    type: dict
    suboptions:
      max_age_days:
        description: Delete backups that finished more than this many days ago.
        type: float
      max_count:
        description: Keep at most this many newest backups.
        type: int
      min_verified:
        description: Never delete the newest this many backups whose verification passed.
        type: int
        default: 1
notes:
  - Counts are exact for postgres (taken in the same snapshot as the dump, C(pg_dump --snapshot)). MongoDB
    counts are taken before the dump; a collection whose count moved while it was dumped is recorded in
    C(counts_changed) with the counts before and after, and a verifying restore accepts any count between.
  - The module connects to the database container's address on O(network) from the managed host, so it
    runs on the host of the database container.
requirements:
  - boto3, the Docker SDK for Python, and psycopg 3 or pymongo on the managed host; zstandard for V(zstd).
seealso:
  - module: pydeploy.stack.db_restore
  - module: pydeploy.stack.backup_prune
"""

EXAMPLES = r"""
- name: Back up the Flight Hunter database before migrating
  pydeploy.stack.db_backup:
    engine: postgres
    container: flight_hunter-postgres
    endpoint_url: https://s3.eu-west-1.amazonaws.com
    bucket: acme-backups
    prefix: flight_hunter/
    access_key: "{{ vault_s3_access_key }}"
    secret_key: "{{ vault_s3_secret_key }}"
    sse: AES256
    release: "{{ stack_version }}"
    migration_revision: "{{ migrate_plan.revision_before }}"
  register: backup

- name: Car API, gzip SQL kept 7 days, and a local copy in /backups
  pydeploy.stack.db_backup:
    engine: postgres
    container: car_api-postgres
    format: plain
    compression: gzip
    local_copy_dir: /backups
    bucket: car-api-backups
    secret_key: "{{ vault_s3_secret_key }}"
    access_key: "{{ vault_s3_access_key }}"
    retention:
      max_age_days: 7
      min_verified: 1

- name: Conductor CRM, mongodump archive kept 30 days
  pydeploy.stack.db_backup:
    engine: mongodb
    container: conductor-mongodb
    database: conductor
    compression: gzip
    bucket: crm-backups
    endpoint_url: http://127.0.0.1:18333
    access_key: "{{ vault_s3_access_key }}"
    secret_key: "{{ vault_s3_secret_key }}"
    retention:
      max_age_days: 30
"""

RETURN = r"""
key:
  description: The key of the backup object (in check mode, the kind of key it would write).
  returned: when the module got as far as naming it
  type: str
  sample: backups/appdb/appdb-20251105T143022Z-1a2b3c.dump.zst
size:
  description: Bytes stored (compressed).
  returned: success, not in check mode
  type: int
  sample: 1048576
sha256:
  description: SHA-256 of the stored object, hex.
  returned: success, not in check mode
  type: str
duration:
  description: Seconds the dump and upload took.
  returned: success, not in check mode
  type: float
throughput:
  description: Bytes stored per second during the dump and upload.
  returned: success, not in check mode
  type: int
total_duration:
  description: Seconds the module ran, lock wait and checks included.
  returned: always
  type: float
manifest:
  description:
    - The manifest stored as C(<key>.manifest.json).
    - "Fields: C(manifest_version), C(key), C(size), C(sha256) (of the stored bytes), C(raw_size) (bytes the
      tool wrote), C(engine), C(format), C(compression), C(database), C(server_version), C(tool_version),
      C(image), C(release), C(migration_revision), C(started), C(finished) (UTC, C(YYYY-mm-ddTHH:MM:SSZ)),
      C(duration), C(throughput), C(raw_throughput), C(counts) (rows per C(schema.table) or documents per
      collection), C(counts_changed), C(indexes) (index names per table or collection), C(sse),
      C(storage_class), C(verified) (null until a verifying restore sets true or false), C(verified_at),
      C(verification) (the checks of that restore)."
  returned: success, not in check mode
  type: dict
local_copy:
  description: Path of the local copy.
  returned: with O(local_copy_dir), on success
  type: str
swept_uploads:
  description:
    - Unfinished uploads aborted at the start (in check mode, those that would be), with key, upload id and time.
  returned: always
  type: list
  elements: dict
removed_containers:
  description: Tools containers of a killed earlier run that were removed (in check mode, that would be).
  returned: always
  type: list
  elements: str
commands:
  description: The tool commands run in the tools container, as argv lists (no secret is ever on them).
  returned: always
  type: list
  elements: list
pruned:
  description:
    - With O(retention), C(deleted) (the backup keys deleted, their manifests went with them; in check mode,
      those that would be), C(kept) (how many remain) and C(errors).
  returned: with O(retention)
  type: dict
msg:
  description: In check mode, what would be done.
  returned: check mode
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._backup import DEFAULT_STALE_UPLOAD_AGE, run_backup
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_engines import database_argument_spec
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_retention import retention_argument_spec
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import docker_argument_spec
from ansible_collections.pydeploy.stack.plugins.module_utils._s3 import s3_argument_spec


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(s3_argument_spec())
    argument_spec.update(database_argument_spec())
    argument_spec.update(
        name={"type": "str"},
        format={"type": "str", "choices": ["custom", "plain"], "default": "custom"},
        compression={"type": "str", "choices": ["zstd", "gzip", "none"], "default": "zstd"},
        compression_level={"type": "int"},
        part_size_mb={"type": "int", "default": 8},
        local_copy_dir={"type": "path"},
        release={"type": "str"},
        migration_revision={"type": "str"},
        stale_upload_age={"type": "int", "default": DEFAULT_STALE_UPLOAD_AGE},
        retention={"type": "dict", "options": retention_argument_spec()},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_backup(module)


if __name__ == "__main__":
    main()
