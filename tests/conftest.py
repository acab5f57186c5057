"""Make the checkout importable as ``ansible_collections.pydeploy.stack``.

``make venv`` links the repository at .collections/ansible_collections/pydeploy/stack;
unit tests import the plugins through that name, exactly as Ansible does.
"""

from __future__ import annotations

import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[1] / ".collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
