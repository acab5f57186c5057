#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_user
short_description: Keep a MongoDB application user, logged in as the server's root user
version_added: 0.2.0
description:
  - Waits until the MongoDB server at O(login_host) answers a ping, then logs in as its root user O(login_user)
    with O(login_password); that login is the health check with authentication the role
    C(pydeploy.stack.mongodb) makes before anything uses the server.
  - A root password rotated in the vault is set on the server when the server still has one of
    O(previous_passwords) (the one last applied, which the role keeps in a 0600 file on the host).
  - Keeps the application's user O(name), defined in O(database), with the password O(password) and the
    role C(readWrite) on O(database) only; a user with other roles is given exactly that one.
  - The application user's password is checked by logging in with it, so an unchanged user is no change.
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Logs in and reads the user, changes nothing.
  diff_mode:
    support: full
    details:
      - The diff is whether the user exists and its roles, before and after.
  platform:
    platforms: posix
requirements:
  - pymongo on the managed host.
options:
  login_host:
    description: Address of the server, as the managed host reaches it (the container's address on its network).
    type: str
    required: true
  login_port:
    description: Port of the server.
    type: int
    default: 27017
  login_user:
    description: The root user, defined in the C(admin) database.
    type: str
    default: root
  login_password:
    description: The root user's password.
    type: str
    required: true
  previous_passwords:
    description:
      - Passwords the root user may still have on the server. When O(login_password) is refused and one of these
        is accepted, the root user's password is set to O(login_password).
    type: list
    elements: str
    default: []
  name:
    description: The application's user.
    type: str
    required: true
  password:
    description: The application user's password.
    type: str
    required: true
  database:
    description: The application's database, where its user is defined and the only one it may read and write.
    type: str
    required: true
  wait_timeout:
    description: Seconds to wait for the server to answer before failing.
    type: int
    default: 120
seealso:
  - module: community.mongodb.mongodb_user
"""

EXAMPLES = r"""
- name: Keep the app's user on the stack's MongoDB
  pydeploy.stack.mongodb_user:
    login_host: 172.18.0.5
    login_password: "{{ mongodb_root_password }}"
    previous_passwords: ["{{ recorded_root_password }}"]
    name: myapp
    password: "{{ mongodb_password }}"
    database: myapp
"""

RETURN = r"""
actions:
  description: What was done (in check mode, what would be), in words; empty when nothing was to do.
  returned: always
  type: list
  elements: str
  sample: ["create the user myapp in myapp with readWrite on myapp"]
server_version:
  description: The server's version.
  returned: when the server answered
  type: str
  sample: "6.0.5"
user:
  description: The application's user.
  returned: always
  type: str
database:
  description: The application's database.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._mongodb import run_module


def main():
    module = AnsibleModule(
        argument_spec={
            "login_host": {"type": "str", "required": True},
            "login_port": {"type": "int", "default": 27017},
            "login_user": {"type": "str", "default": "root"},
            "login_password": {"type": "str", "required": True, "no_log": True},
            "previous_passwords": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "name": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "database": {"type": "str", "required": True},
            "wait_timeout": {"type": "int", "default": 120},
        },
        supports_check_mode=True,
    )
    run_module(module)


if __name__ == "__main__":
    main()
