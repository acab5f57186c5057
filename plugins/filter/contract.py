# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entries of the stack description's maps (``stack_processes``, ``stack_jobs``) checked against
the shape of one entry, an entry point of roles/stack/meta/argument_specs.yml."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path

import yaml
from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import RequiredError, UnsupportedError

# plugins/filter/ -> the collection's root, where the stack role declares the description.
SPECS = Path(__file__).resolve().parents[2] / "roles" / "stack" / "meta" / "argument_specs.yml"
_ARGUMENT = re.compile(r"^argument '([^']+)' (.*)$", re.DOTALL)


@functools.cache
def _options(entry_point):
    entry_points = yaml.safe_load(SPECS.read_text())["argument_specs"]
    if entry_point not in entry_points or entry_point == "main":
        shapes = ", ".join(sorted(set(entry_points) - {"main"}))
        raise AnsibleFilterError(f"shape_errors: no shape {entry_point!r} in {SPECS.name} (known: {shapes})")
    return entry_points[entry_point].get("options") or {}


def _plain(value):
    """``value`` as plain Python types, so that a message names str or int, not the class of a templated value."""
    if isinstance(value, Mapping):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _entry_errors(where, value, options):
    # A key given as null is a key not given: a required one is missing, not an empty string.
    params = {key: item for key, item in _plain(value).items() if item is not None}
    result = ArgumentSpecValidator(options).validate(params)
    errors = []
    unknown = sorted(map(str, result.unsupported_parameters))
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(options)})")
    missing = [key for key, option in options.items() if option.get("required") and key not in params]
    if missing:
        errors.append(f"{where}: missing required key(s) {', '.join(missing)}")
    for error in result.errors:
        if isinstance(error, (UnsupportedError, RequiredError)):
            continue  # reported above, with the known keys
        argument = _ARGUMENT.match(error.msg)
        errors.append(f"{where}.{argument[1]} {argument[2]}" if argument else f"{where}: {error.msg}")
    return errors


def shape_errors(entries, shape, variable, shorthand=None):
    """One message per problem in ``entries`` (a dict of name: entry), each entry checked against the
    options of the entry point ``shape``; each message names the entry as ``<variable>.<name>``.

    An entry that is not a dict is the value of the key ``shorthand`` (a process given as its command),
    or without one a problem in itself."""
    if entries is None:
        return []
    options = _options(shape)
    if not isinstance(entries, Mapping):
        return [f"{variable} must be a dict ({shape} name: {shape})"]
    errors = []
    for name, value in sorted(entries.items(), key=lambda item: str(item[0])):
        where = f"{variable}.{name}"
        if not isinstance(value, Mapping):
            if shorthand is None:
                required = [key for key, option in options.items() if option.get("required")]
                errors.append(f"{where} must be a dict with {' and '.join(required) or 'its keys'}")
                continue
            value = {} if value is None else {shorthand: value}
        errors.extend(_entry_errors(where, value, options))
    return errors


def well_shaped(entries, shape, variable, shorthand=None):
    """The entries of ``entries`` that ``shape_errors`` finds nothing wrong with, so that later checks of
    their values report each problem of the others once."""
    if not isinstance(entries, Mapping):
        return {}
    return {
        name: value for name, value in entries.items() if not shape_errors({name: value}, shape, variable, shorthand)
    }


class FilterModule:
    def filters(self):
        return {"shape_errors": shape_errors, "well_shaped": well_shaped}
