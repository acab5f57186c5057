# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build pydeploy-backup.pyz on the controller: the collection's backup modules, its module_utils and
Ansible's own module_utils in one zip application that the host's Python runs without Ansible.

    <Ansible's Python> build-bundle.py <collection root> <main.py> <output.pyz>

The role runs it with ansible_playbook_python: it packs the module_utils of the Ansible that runs the play.

This is what Ansible does for every module task (AnsiballZ), done once, so that a scheduled backup
runs the very code a playbook's db_backup task runs. The zip is deterministic (sorted entries, fixed
times): an unchanged collection gives the same bytes, and copying it to a host reports no change.
"""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from pathlib import Path

import ansible.module_utils

MODULES = ("db_backup", "db_restore", "backup_prune")
PACKAGES = ("ansible_collections", "ansible_collections/pydeploy", "ansible_collections/pydeploy/stack")
PACKAGES += ("ansible_collections/pydeploy/stack/plugins", "ansible_collections/pydeploy/stack/plugins/modules")
PLUGINS = "ansible_collections/pydeploy/stack/plugins"
EPOCH = (1980, 1, 1, 0, 0, 0)


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def entries(collection: Path, main: Path) -> dict[str, bytes]:
    files = {"__main__.py": main.read_bytes(), "ansible/__init__.py": b""}
    utils = Path(ansible.module_utils.__file__).parent
    files.update({f"ansible/module_utils/{p.relative_to(utils)}": p.read_bytes() for p in python_files(utils)})
    files.update({f"{package}/__init__.py": b"" for package in PACKAGES})
    ours = collection / "plugins" / "module_utils"
    files.update({f"{PLUGINS}/module_utils/{p.relative_to(ours)}": p.read_bytes() for p in python_files(ours)})
    files.setdefault(f"{PLUGINS}/module_utils/__init__.py", b"")
    for module in MODULES:
        files[f"{PLUGINS}/modules/{module}.py"] = (collection / "plugins" / "modules" / f"{module}.py").read_bytes()
    return files


def main(argv: list[str]) -> int:
    collection, main_py, output = Path(argv[0]), Path(argv[1]), Path(argv[2])
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=output.parent, prefix=".", suffix=".pyz")
    os.close(fd)
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in sorted(entries(collection, main_py).items()):
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
