# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a container the collection's modules create may do: capabilities, privileges, processes, root filesystem.

The options are ``SECURITY_OPTIONS`` in ``plugins/module_utils/_docker.py``; keep both in step.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  security:
    description:
      - What each container may do, beyond its user - the Linux capabilities it keeps, whether a process in it can
        gain privileges (setuid binaries), its number of processes and threads, and a read-only root filesystem.
      - Nothing is restricted unless set.
    type: dict
    suboptions:
      cap_drop:
        description: Capabilities dropped (V([ALL]) for none but those of O(security.cap_add)).
        type: list
        elements: str
      cap_add:
        description: Capabilities kept or added (V(NET_BIND_SERVICE), V(CHOWN)).
        type: list
        elements: str
      no_new_privileges:
        description: Set C(no-new-privileges), so that no process of the container gains privileges through a setuid
          binary or file capabilities.
        type: bool
      pids_limit:
        description: Most processes and threads at once in the container (a fork bomb stops there).
        type: int
      read_only:
        description: A read-only root filesystem; what the container writes goes to O(security.tmpfs) or volumes.
        type: bool
      tmpfs:
        description: Paths mounted as tmpfs (V(/tmp) or V(/tmp:size=64m)), writable with a read-only root.
        type: list
        elements: str
"""
