# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inputs of a role's fingerprint beyond its own options, shared by the fingerprint lookup and the
fast_path module (both use ``fingerprint_of()`` in ``plugins/lookup/fingerprint.py``)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  names:
    description: Further variables, by name, whose values are inputs (for example C(stack_*) options).
    type: list
    elements: str
    default: []
  values:
    description: Further inputs, already rendered.
    type: raw
"""
