#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_prune
short_description: Delete old backups of a set in S3, by age and count, never below the last verified ones
version_added: 0.2.0
description:
  - Lists every backup of a set written by M(pydeploy.stack.db_backup) (page by page, exactly, nothing
    sampled), reads each manifest, and deletes the backups the rules select, with their manifests, 1000
    objects per C(DeleteObjects) call.
  - "The rules, applied newest first: beyond the O(max_count) newest, or finished more than O(max_age_days)
    ago, a backup is deleted, except that the newest O(min_verified) backups whose manifest says
    C(verified: true) are always kept (the floor), and the newest backup of the set is always kept."
  - The time of a backup is its manifest's C(finished), else the time in its key. Objects under the prefix
    that are not backups of M(pydeploy.stack.db_backup) are never touched.
  - M(pydeploy.stack.db_backup) applies the same rules with its C(retention) option after each backup.
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pydeploy.stack.s3
attributes:
  check_mode:
    support: full
    details:
      - Lists and reads the manifests, returns what would be deleted, deletes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  name:
    description: The backup set, the folder under O(prefix) (the C(name) given to M(pydeploy.stack.db_backup)).
    type: str
    required: true
  max_age_days:
    description: Delete backups that finished more than this many days ago (fractions allowed).
    type: float
  max_count:
    description: Keep at most this many newest backups (at least 1).
    type: int
  min_verified:
    description:
      - The floor. The newest this many backups whose verification passed are never deleted, however old.
        V(0) disables it.
    type: int
    default: 1
notes:
  - At least one of O(max_age_days) and O(max_count) is required.
requirements:
  - boto3 on the managed host.
seealso:
  - module: pydeploy.stack.db_backup
  - module: pydeploy.stack.db_restore
"""

EXAMPLES = r"""
- name: Keep 30 days of CRM backups, and always the last two that passed a restore test
  pydeploy.stack.backup_prune:
    bucket: crm-backups
    name: conductor
    max_age_days: 30
    min_verified: 2
    access_key: "{{ vault_s3_access_key }}"
    secret_key: "{{ vault_s3_secret_key }}"

- name: Show what keeping the 10 newest would delete
  pydeploy.stack.backup_prune:
    bucket: acme-backups
    name: appdb
    max_count: 10
  check_mode: true
  register: plan
"""

RETURN = r"""
deleted:
  description:
    - The backup keys deleted, newest first (their manifests were deleted too).
    - In check mode, those that would be.
  returned: always
  type: list
  elements: str
  sample: [backups/appdb/appdb-20251001T030000Z-1a2b3c.dump.zst]
kept:
  description: How many backups of the set remain.
  returned: success
  type: int
errors:
  description: Objects the server refused to delete, with its code and message.
  returned: success and failure to delete
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._backup import run_prune
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_retention import retention_argument_spec
from ansible_collections.pydeploy.stack.plugins.module_utils._s3 import s3_argument_spec


def main():
    argument_spec = s3_argument_spec()
    argument_spec.update(retention_argument_spec())
    argument_spec.update(name={"type": "str", "required": True})
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_prune(module)


if __name__ == "__main__":
    main()
