# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Installs pip into a virtual environment of ``ansible-test sanity``, as get-pip.py would.

ansible-test creates the virtual environment of each sanity test without pip, then runs
``get_pip_<version>.py`` from ``~/.ansible/test/cache``, downloading it from
ci-files.testing.ansible.com when it is not there.  ``make sanity`` puts this file there
instead, so that a machine that reaches only the package index can run the tests: it installs
the pip that comes with Python (ensurepip), which installs the pip ansible-test asks for.

    python get_pip_<version>.py [pip install options and requirements] [--no-setuptools] [--no-wheel]
"""

from __future__ import annotations

import subprocess
import sys


def main():
    """Install pip, then what the arguments ask for, into the running Python's environment."""
    args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    python = [sys.executable, "-m"]
    subprocess.run([*python, "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*python, "pip", "install", "--quiet", *args], check=True)
    if "--no-setuptools" in sys.argv:
        # ensurepip of Python 3.11 installs setuptools too.
        subprocess.run([*python, "pip", "uninstall", "--quiet", "--yes", "setuptools"], check=False)


if __name__ == "__main__":
    main()
