# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of the generated-secret declarations (``stack_generated_secrets``)."""

from __future__ import annotations

import re

ALPHABETS = ("hex", "alnum", "urlsafe")
KEYS = ("length", "alphabet")
MIN_LENGTH = 16
MAX_LENGTH = 4096
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def generated_secret_errors(declared, secrets=None):
    """One message per invalid declaration; never quotes a secret value."""
    if declared is None:
        return []
    if not isinstance(declared, dict):
        return ["stack_generated_secrets must be a dict of NAME: {length, alphabet}"]
    errors = []
    for name, spec in sorted(declared.items(), key=lambda item: str(item[0])):
        where = f"stack_generated_secrets.{name}"
        if not _NAME.match(str(name)):
            errors.append(f"{where}: not an environment variable name (letters, digits, '_')")
        if name in (secrets or {}):
            errors.append(f"{where}: {name} is also in stack_secrets; keep one")
        if spec is None:
            continue
        if not isinstance(spec, dict):
            errors.append(f"{where} must be a dict with length and alphabet")
            continue
        unknown = sorted(set(spec) - set(KEYS))
        if unknown:
            errors.append(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(KEYS)})")
        length = spec.get("length", 64)
        if isinstance(length, bool) or not isinstance(length, int) or not MIN_LENGTH <= length <= MAX_LENGTH:
            errors.append(f"{where}.length must be a whole number from {MIN_LENGTH} to {MAX_LENGTH}")
        alphabet = spec.get("alphabet", "hex")
        if alphabet not in ALPHABETS:
            errors.append(f"{where}.alphabet must be one of {', '.join(ALPHABETS)}, not {alphabet!r}")
    return errors


class FilterModule:
    def filters(self):
        return {"generated_secret_errors": generated_secret_errors}
