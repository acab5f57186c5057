# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fast path's decision for one record, on the controller (module pydeploy.stack.fast_path)."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.pydeploy.stack.plugins.lookup.fingerprint import fingerprint_of

ARGS = frozenset(("key", "role", "names", "values", "fingerprint", "enabled"))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = ARGS
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        key = args.get("key")
        if not isinstance(key, str) or not key:
            raise AnsibleActionFail("fast_path: key (the record's name) is required")
        names = args.get("names") or []
        if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
            raise AnsibleActionFail("fast_path: names must be a list of variable names")
        if args.get("fingerprint") not in (None, ""):
            fingerprint = str(args["fingerprint"])
        elif args.get("role"):
            fingerprint = fingerprint_of(self._templar, task_vars, str(args["role"]), names, args.get("values"))
        else:
            raise AnsibleActionFail(f"fast_path {key}: give the role whose inputs to fingerprint, or a fingerprint")
        recorded = (((task_vars.get("pydeploy_host_state") or {}).get("roles") or {}).get(key)) or {}
        enabled = self._bool(args.get("enabled", True))
        unchanged = enabled and recorded.get("fingerprint", "") == fingerprint and bool(recorded.get("intact", False))
        fingerprints = dict(task_vars.get("pydeploy_fingerprints") or {})
        fingerprints[key] = fingerprint
        decisions = dict(task_vars.get("pydeploy_unchanged") or {})
        decisions[key] = unchanged
        result.update(
            changed=False,
            fingerprint=fingerprint,
            unchanged=unchanged,
            reason="" if unchanged else self._reason(recorded, fingerprint, enabled),
            ansible_facts={"pydeploy_fingerprints": fingerprints, "pydeploy_unchanged": decisions},
        )
        return result

    @staticmethod
    def _bool(value) -> bool:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on", "y")
        return bool(value)

    @staticmethod
    def _reason(recorded: dict, fingerprint: str, enabled: bool) -> str:
        if not enabled:
            return "the fast path is off (pydeploy_fast_path=false, or a previous release is being put back)"
        if not recorded:
            return "no record on the host"
        if recorded.get("fingerprint", "") != fingerprint:
            return "an input changed"
        return recorded.get("reason") or "what the role manages is not as recorded"
