# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack's named volumes (``stack_volumes``): which processes mount them where, which the proxy
serves, and what is wrong with their description."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
MODES = ("rw", "ro")
# Where the proxy's container mounts a volume it serves (read-only).
SERVED_ROOT = "/srv/pydeploy"


def _spec(value):
    """A volume given as a string is its path."""
    return value if isinstance(value, Mapping) else {"path": value}


def volume_name(stack, name):
    """The Docker volume of the stack's volume ``name``."""
    return f"{stack}-{name}"


def _entry(entry):
    """``name`` or ``name:ro`` of a process's or a job's ``volumes``: (name, mode)."""
    name, _sep, mode = str(entry).partition(":")
    return name, mode or "rw"


def volume_binds(wanted, volumes, stack):
    """The mounts of a process or a job as Docker's ``volume:path:mode`` list, sorted by path.

    ``wanted`` is its ``volumes`` (names, each optionally ``:ro``); ``None`` mounts every volume of the
    stack, read-write."""
    volumes = volumes or {}
    entries = [_entry(item) for item in wanted] if wanted is not None else [(name, "rw") for name in volumes]
    binds = []
    for name, mode in entries:
        if name not in volumes:
            raise AnsibleFilterError(f"volume_binds: no volume {name!r} in stack_volumes")
        binds.append(
            (_spec(volumes[name])["path"], f"{volume_name(stack, name)}:{_spec(volumes[name])['path']}:{mode}")
        )
    return [bind for _path, bind in sorted(binds)]


def served_volumes(volumes, stack, max_age=604800):
    """The volumes the proxy serves: [{prefix, volume, root, max_age}], longest prefix first."""
    served = []
    for name, value in (volumes or {}).items():
        spec = _spec(value)
        if spec.get("serve"):
            served.append(
                {
                    "name": name,
                    "prefix": spec["serve"],
                    "volume": volume_name(stack, name),
                    "root": f"{SERVED_ROOT}/{name}/",
                    "max_age": int(spec["max_age"] if spec.get("max_age") is not None else max_age),
                    "mount": {
                        "type": "volume",
                        "source": volume_name(stack, name),
                        "target": f"{SERVED_ROOT}/{name}",
                        "read_only": True,
                    },
                }
            )
    return sorted(served, key=lambda item: (-len(item["prefix"]), item["prefix"]))


def volume_fills(volumes, stack):
    """What fills each volume from a release: [{name, volume, path, command}], by name.

    ``fill`` runs with the volume at its path, as the image's user; ``copy`` copies a directory of the
    image into it as root (``user`` 0: owners, modes and times kept), the volume mounted elsewhere so that
    the image's own files stay visible."""
    fills = []
    for name, value in sorted((volumes or {}).items()):
        spec = _spec(value)
        path = spec["path"]
        if spec.get("fill"):
            fills.append({"name": name, "volume": volume_name(stack, name), "path": path, "command": spec["fill"]})
        elif spec.get("copy"):
            target = f"/.pydeploy-fill/{name}"
            fills.append(
                {
                    "name": name,
                    "volume": volume_name(stack, name),
                    "path": target,
                    "command": ["cp", "-a", spec["copy"].rstrip("/") + "/.", target + "/"],
                    "user": "0",
                }
            )
    return fills


def _check_path(where, path):
    if not isinstance(path, str) or not path.startswith("/") or path.rstrip("/") == "" or ":" in path:
        return [f"{where} must be an absolute path other than / (no ':')"]
    return []


def volume_errors(volumes, processes=None, jobs=None):
    """One message per problem of ``stack_volumes`` and of the ``volumes`` of each process and job,
    each naming the variable. The shape of each entry is checked by the stack role's spec."""
    errors = []
    volumes = volumes if isinstance(volumes, Mapping) else {}
    paths, prefixes = {}, {}
    for name, value in sorted(volumes.items(), key=lambda item: str(item[0])):
        where = f"stack_volumes.{name}"
        if not NAME.match(str(name)):
            errors.append(f"{where}: a volume name is lower-case letters, digits, '-' or '_' (at most 41)")
        spec = _spec(value)
        path = spec.get("path")
        errors += _check_path(f"{where}.path", path)
        if isinstance(path, str):
            if path.rstrip("/") in paths:
                errors.append(f"{where}.path {path} is also stack_volumes.{paths[path.rstrip('/')]}'s")
            paths.setdefault(path.rstrip("/"), name)
        serve = spec.get("serve")
        if serve is not None:
            if not isinstance(serve, str) or not re.match(r"^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]/$", serve):
                errors.append(f"{where}.serve must be a URL path prefix like /static/ (starting and ending with /)")
            elif serve in prefixes:
                errors.append(f"{where}.serve {serve} is also stack_volumes.{prefixes[serve]}'s")
            prefixes.setdefault(serve, name)
        if spec.get("fill") and spec.get("copy"):
            errors.append(f"{where}: fill and copy are two ways to fill a volume; give one")
        if spec.get("copy"):
            errors += _check_path(f"{where}.copy", spec["copy"])
        max_age = spec.get("max_age")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0):
            errors.append(f"{where}.max_age must be seconds, 0 or more")
    for variable, entries in (("stack_processes", processes), ("stack_jobs", jobs)):
        for owner, spec in sorted((entries or {}).items(), key=lambda item: str(item[0])):
            wanted = spec.get("volumes") if isinstance(spec, Mapping) else None
            if not isinstance(wanted, list):
                continue
            for item in wanted:
                name, mode = _entry(item)
                if name not in volumes:
                    known = ", ".join(sorted(map(str, volumes))) or "none"
                    errors.append(f"{variable}.{owner}.volumes: no volume {name!r} in stack_volumes (known: {known})")
                elif mode not in MODES:
                    errors.append(f"{variable}.{owner}.volumes: {item!r} - a volume is 'name' or 'name:ro'")
    return errors


class FilterModule:
    def filters(self):
        return {
            "volume_binds": volume_binds,
            "served_volumes": served_volumes,
            "volume_fills": volume_fills,
            "volume_errors": volume_errors,
        }
