#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_check
short_description: Check that an image tag exists, in its registry or on the host, without pulling it
description:
  - Asks the Docker engine to resolve an image reference against its registry (the engine's distribution
    endpoint, so the engine's registry credentials and mirror settings apply) and reports its digest.
  - Used in preflight, so that a tag absent from the registry, or an unreachable registry, fails the run
    before anything on a host changes, with one message naming the image and the cause.
  - Never pulls, never changes anything; runs the same in check mode.
version_added: 0.1.0
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pydeploy.stack.docker
options:
  name:
    description: Image reference with its tag, C(registry.example.com/team/app:v20251105_143022).
    type: str
    required: true
  source:
    description:
      - Where the image must be found.
      - C(registry) requires the registry to serve the tag.
      - C(local) requires the image on the host (rollbacks with the registry down).
      - C(any) accepts either, preferring the registry's answer.
    type: str
    choices: [registry, local, any]
    default: registry
  registry_username:
    description:
      - A user of the image's registry, when the engine holds no login for it yet (the preflight of a first
        deploy, before C(pydeploy.stack.docker_host) logs the host in). Empty uses the engine's stored logins.
    type: str
    default: ""
  registry_password:
    description: The password or token of O(registry_username).
    type: str
    default: ""
requirements:
  - docker (Python SDK) >= 5.0
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Fail early when the release tag was never pushed
  pydeploy.stack.image_check:
    name: "{{ stack_image }}:{{ stack_version }}"

- name: Check a private registry's tag before the host is logged in to it
  pydeploy.stack.image_check:
    name: "registry.example.com/team/app:v20251105_143022"
    registry_username: deploy
    registry_password: "{{ vault_registry_password }}"

- name: Accept a local copy when the registry is down
  pydeploy.stack.image_check:
    name: "registry.example.com/team/app:v20251101_090000"
    source: any
"""

RETURN = r"""
name:
  description: The reference checked.
  returned: always
  type: str
  sample: registry.example.com/team/app:v2
digest:
  description: Manifest digest the registry serves for the tag (empty when only found locally).
  returned: always
  type: str
  sample: sha256:4f0f7d2c0d6f...
in_registry:
  description: Whether the registry serves the tag.
  returned: always
  type: bool
local:
  description: Whether the image is present on the host.
  returned: always
  type: bool
local_id:
  description: Image id of the local copy, if any.
  returned: always
  type: str
registry_error:
  description: Why the registry did not confirm the tag, if it did not.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import docker_argument_spec, get_client
from ansible_collections.pydeploy.stack.plugins.module_utils._images import check_image


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(
        name={"type": "str", "required": True},
        source={"type": "str", "choices": ["registry", "local", "any"], "default": "registry"},
        registry_username={"type": "str", "default": ""},
        registry_password={"type": "str", "default": "", "no_log": True},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    client = get_client(module)
    params = module.params
    auth = (
        {"username": params["registry_username"], "password": params["registry_password"]}
        if params["registry_username"]
        else None
    )
    result, problem = check_image(client, params["name"], params["source"], auth=auth)
    result["changed"] = False
    if problem:
        module.fail_json(msg=problem, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
