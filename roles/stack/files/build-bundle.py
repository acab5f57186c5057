# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build a zip application on the controller that a host's Python runs without Ansible: some modules of
one or more collections, those collections' module_utils and Ansible's own module_utils, with a main of
the role's (what Ansible does for every module task, AnsiballZ, done once for a scheduled job).

    <Ansible's Python> build-bundle.py <main.py> <output.pyz> <namespace.name>[=<path>]:<module>[,<module>...] ...

A collection is read from <path> when given (the checkout that runs the play), else from where the
Python that runs this script imports it. The roles run it with ansible_playbook_python: the bundle holds
the code a playbook's tasks run (backup: pydeploy.stack's backup modules; nginx: community.crypto's
acme_certificate). The zip is deterministic (sorted entries, fixed times): the same code gives the same
bytes, and copying it to a host reports no change.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import ansible.module_utils

EPOCH = (1980, 1, 1, 0, 0, 0)


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def parse_source(argument: str) -> tuple[str, Path, list[str]]:
    """``ns.name[=path]:mod,mod`` -> (ns.name, the collection's root, modules)."""
    collection, _sep, modules = argument.partition(":")
    name, _sep, path = collection.partition("=")
    if name.count(".") != 1 or not modules:
        raise SystemExit(f"build-bundle.py: expected <namespace.name>[=<path>]:<module>[,...], got {argument!r}")
    root = Path(path) if path else Path(next(iter(importlib.import_module(f"ansible_collections.{name}").__path__)))
    return name, root, [module for module in modules.split(",") if module]


def entries(main: Path, sources: list[tuple[str, Path, list[str]]]) -> dict[str, bytes]:
    files = {"__main__.py": main.read_bytes(), "ansible/__init__.py": b""}
    utils = Path(ansible.module_utils.__file__).parent
    files.update({f"ansible/module_utils/{p.relative_to(utils)}": p.read_bytes() for p in python_files(utils)})
    for name, root, modules in sources:
        namespace, collection = name.split(".")
        prefix = f"ansible_collections/{namespace}/{collection}/plugins"
        ours = root / "plugins" / "module_utils"
        files.update({f"{prefix}/module_utils/{p.relative_to(ours)}": p.read_bytes() for p in python_files(ours)})
        for module in modules:
            files[f"{prefix}/modules/{module}.py"] = (root / "plugins" / "modules" / f"{module}.py").read_bytes()
    # zipimport knows no namespace packages: every folder of the collections' code gets its __init__.py.
    for name in list(files):
        folder = os.path.dirname(name)
        while folder.startswith("ansible_collections"):
            files.setdefault(f"{folder}/__init__.py", b"")
            folder = os.path.dirname(folder)
    return files


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    main_py, output = Path(argv[0]), Path(argv[1])
    sources = [parse_source(argument) for argument in argv[2:]]
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=output.parent, prefix=".", suffix=".pyz")
    os.close(fd)
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in sorted(entries(main_py, sources).items()):
            info = zipfile.ZipInfo(name, EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, output)  # concurrent builds write the same bytes
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
