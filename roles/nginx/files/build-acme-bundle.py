# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build pydeploy-acme.pyz on the controller: community.crypto's acme_certificate module, that collection's
module_utils and Ansible's own module_utils in one zip application that the host's Python runs without
Ansible, with acme-renew.py as its main.

    <Ansible's Python> build-acme-bundle.py <acme-renew.py> <output.pyz>

The role runs it with ansible_playbook_python: it packs the code of the Ansible and community.crypto that
run the play, the code a deploy's ACME tasks run. The zip is deterministic (sorted entries, fixed times):
the same code gives the same bytes, and copying it to a host reports no change.
"""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from pathlib import Path

import ansible.module_utils
import ansible_collections.community.crypto

EPOCH = (1980, 1, 1, 0, 0, 0)
CRYPTO = "ansible_collections/community/crypto"
PACKAGES = ("ansible_collections", "ansible_collections/community", CRYPTO, f"{CRYPTO}/plugins")
PACKAGES += (f"{CRYPTO}/plugins/modules",)


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def entries(main: Path) -> dict[str, bytes]:
    files = {"__main__.py": main.read_bytes(), "ansible/__init__.py": b""}
    utils = Path(ansible.module_utils.__file__).parent
    files.update({f"ansible/module_utils/{p.relative_to(utils)}": p.read_bytes() for p in python_files(utils)})
    files.update({f"{package}/__init__.py": b"" for package in PACKAGES})
    crypto = Path(next(iter(ansible_collections.community.crypto.__path__)))
    ours = crypto / "plugins" / "module_utils"
    files.update({f"{CRYPTO}/plugins/module_utils/{p.relative_to(ours)}": p.read_bytes() for p in python_files(ours)})
    files.setdefault(f"{CRYPTO}/plugins/module_utils/__init__.py", b"")
    module = crypto / "plugins" / "modules" / "acme_certificate.py"
    files[f"{CRYPTO}/plugins/modules/acme_certificate.py"] = module.read_bytes()
    # zipimport knows no namespace packages: every folder of the collection's code gets its __init__.py.
    for name in list(files):
        folder = os.path.dirname(name)
        while folder.startswith(CRYPTO + "/"):
            files.setdefault(f"{folder}/__init__.py", b"")
            folder = os.path.dirname(folder)
    return files


def main(argv: list[str]) -> int:
    main_py, output = Path(argv[0]), Path(argv[1])
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=output.parent, prefix=".", suffix=".pyz")
    os.close(fd)
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in sorted(entries(main_py).items()):
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
