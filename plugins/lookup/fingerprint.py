# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fingerprint
short_description: The fingerprint of a role's inputs, for the deploy's fast path
version_added: 0.2.0
description:
  - Returns a short SHA-256 of everything that decides what a role of this collection does on a host - the
    value of each of the role's options (the options its C(meta/argument_specs.yml) declares, with the
    defaults of the role in scope), the stack description options named in O(names), the O(values) given,
    and the code that runs it (every file under the role and the collection's plugins), so a change to any
    input or to the collection changes the fingerprint.
  - A role records its fingerprint on the host (the C(pydeploy.stack.host_state) module) with what it
    manages; an equal fingerprint and intact state let it skip its tasks.
  - Secrets are part of the inputs; only their hash leaves the controller, in a file of mode 0600.
extends_documentation_fragment:
  - pydeploy.stack.fingerprint
options:
  _terms:
    description: The role's name (a role of this collection).
    required: true
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Fingerprint the inputs of the postgres role
  ansible.builtin.set_fact:
    _postgres_fingerprint: "{{ lookup('pydeploy.stack.fingerprint', 'postgres', names=['stack_name']) }}"
"""

RETURN = r"""
_raw:
  description: One string of 16 hexadecimal digits.
  type: list
  elements: str
"""

import hashlib
import json
from functools import cache
from pathlib import Path

import yaml
from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

COLLECTION = Path(__file__).resolve().parents[2]
ROLES = COLLECTION / "roles"


@cache
def role_options(role: str) -> tuple[str, ...]:
    """Names of the options every entry point of the role declares."""
    spec_file = ROLES / role / "meta" / "argument_specs.yml"
    try:
        specs = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise AnsibleError(f"fingerprint: no argument spec for role {role}: {exc}") from exc
    names: set[str] = set()
    for entry in (specs.get("argument_specs") or {}).values():
        names.update((entry or {}).get("options") or {})
    return tuple(sorted(names))


@cache
def role_code(role: str) -> str:
    """SHA-256 of every file under the role and of the collection's plugins, by relative path."""
    digest = hashlib.sha256()
    files = [*(ROLES / role).rglob("*"), *(COLLECTION / "plugins").rglob("*")]
    for path in sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"):
        digest.update(str(path.relative_to(COLLECTION)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _plain(value):
    """JSON-able, deterministic form of a rendered value."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def fingerprint_of(templar, variables: dict, role: str, names=(), values=None) -> str:
    """The fingerprint of ``role``'s inputs: its options and the variables ``names`` as ``variables``
    hold them (rendered by ``templar``), ``values`` as given, and the code that runs it."""
    inputs = {}
    for name in (*role_options(role), *names):
        if name in variables:
            inputs[name] = templar.template(variables[name])
    document = {"role": role, "code": role_code(role), "inputs": _plain(inputs), "values": _plain(values)}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        unknown = sorted(set(kwargs) - {"names", "values"})
        if unknown:
            raise AnsibleError(f"fingerprint: unknown option(s) {', '.join(unknown)} (known: names, values)")
        names = kwargs.get("names") or []
        if not isinstance(names, (list, tuple)):
            raise AnsibleError("fingerprint: names must be a list of variable names")
        variables = variables or {}
        return [fingerprint_of(self._templar, variables, role, names, kwargs.get("values")) for role in terms]
