# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: deploy_holder
short_description: Who runs this playbook, for the deploy lock and the release ledger
version_added: 0.1.0
description:
  - Returns the user, the controller's host name, the C(ansible-playbook) process and its start time, and a
    C(run_id) that is the same for every task of one run and different for any other run.
  - The deploy lock stores this; a later run on the same controller can then tell that a lock's holder died.
  - Run by AWX or Automation Platform, also the job's id and the user who launched it, from the extra vars the
    controller sets (C(awx_job_id) and C(awx_user_name), or their C(tower_*) names), which the ledger records.
options:
  version:
    description: The release the run deploys.
    type: str
    default: ""
  awx_job_id:
    description:
      - The AWX or Automation Platform job id, when run from there.
      - Empty reads the controller's extra vars C(awx_job_id), then C(tower_job_id).
    type: str
    default: ""
  awx_user_name:
    description:
      - The AWX or Automation Platform user who launched the job (a schedule's or a workflow's owner).
      - Empty reads the controller's extra vars C(awx_user_name), then C(tower_user_name).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Take the deploy lock
  pydeploy.stack.release:
    stack: "{{ stack_name }}"
    state: lock
    holder: "{{ lookup('pydeploy.stack.deploy_holder', version=stack_version, awx_job_id=awx_job_id | default('')) }}"
"""

RETURN = r"""
_raw:
  description: >-
    One dict with C(user), C(controller), C(pid), C(pid_start), C(run_id), C(version), C(awx_job_id) and
    C(awx_user_name) (empty outside AWX).
  type: list
  elements: dict
"""

import getpass
import os
import socket

from ansible.plugins.lookup import LookupBase


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    try:
        return int(stat[stat.rfind(")") + 2 :].split()[1])
    except (IndexError, ValueError):
        return None


def _start(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
        return int(stat[stat.rfind(")") + 2 :].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def playbook_process() -> int:
    """The main ``ansible-playbook`` process: tasks run in workers forked from it, with the same command line."""
    pid = os.getpid()
    command = _cmdline(pid)
    while True:
        parent = _parent(pid)
        if not parent or parent <= 1 or _cmdline(parent) != command:
            return pid
        pid = parent


def _controller_var(variables, *names: str) -> str:
    """The first of ``names`` that AWX set (as extra vars) and is not empty, as text."""
    for name in names:
        value = (variables or {}).get(name)
        if value not in (None, ""):
            return str(value)
    return ""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        # A caller passing awx_job_id='' (its own default) leaves the choice to the controller's variables.
        job_id = str(self.get_option("awx_job_id") or "") or _controller_var(variables, "awx_job_id", "tower_job_id")
        launched_by = str(self.get_option("awx_user_name") or "") or _controller_var(
            variables, "awx_user_name", "tower_user_name"
        )
        pid = playbook_process()
        controller = socket.gethostname()
        start = _start(pid)
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return [
            {
                "user": user,
                "controller": controller,
                "pid": pid,
                "pid_start": start,
                "run_id": f"{controller}:{pid}:{start}",
                "version": self.get_option("version"),
                "awx_job_id": job_id,
                "awx_user_name": launched_by,
            }
        ]
