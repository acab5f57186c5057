#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fast_path
short_description: Whether a role of the stack can skip its tasks on a host (the deploy's fast path)
version_added: 0.3.0
description:
  - Runs on the controller. Makes the fingerprint of a role's inputs (as the C(pydeploy.stack.fingerprint)
    lookup does - the role's options, the variables named in O(names), O(values) and the code that runs it) or
    takes O(fingerprint), and compares it with the record the preflight's M(pydeploy.stack.host_state) read
    found on the host for O(key) (in C(pydeploy_host_state)).
  - Sets the facts C(pydeploy_fingerprints[key]) (recorded at the end of a run that went through) and
    C(pydeploy_unchanged[key]) - true when the fingerprint equals the recorded one, what the role manages is
    intact and O(enabled) is true.
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pydeploy.stack.fingerprint
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  key:
    description: The record's name (a role, or a part of one such as C(app_web)).
    type: str
    required: true
  role:
    description: The role of this collection whose options and code are inputs. Required without O(fingerprint).
    type: str
  fingerprint:
    description: A fingerprint made by the caller instead (such as the hash of a file's whole content).
    type: str
  enabled:
    description: False never skips (C(-e pydeploy_fast_path=false), or a run putting a previous release back).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Fingerprint the inputs of the postgres role
  pydeploy.stack.fast_path:
    key: postgres
    role: postgres
    names: [stack_name]

- name: Skip the role, its inputs and state on the host as recorded
  ansible.builtin.meta: end_role
  when: pydeploy_unchanged.postgres
"""

RETURN = r"""
fingerprint:
  description: The fingerprint of the inputs (16 hexadecimal digits).
  returned: always
  type: str
unchanged:
  description: Whether the role can skip its tasks on this host.
  returned: always
  type: bool
reason:
  description: Why it cannot (no record, an input changed, or what the host state read said), empty when it can.
  returned: always
  type: str
"""
