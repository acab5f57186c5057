# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker engine connection options, shared by every module of the collection that talks to Docker.

The options are built by ``docker_argument_spec()`` in
``plugins/module_utils/_docker.py``; keep both in step.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - URL of the Docker engine API on the managed host, for example V(unix:///var/run/docker.sock)
        or V(tcp://127.0.0.1:2375).
      - When not set in the task, the E(DOCKER_HOST) environment variable of the module is used,
        and the default when that is not set either.
    type: str
    default: unix:///var/run/docker.sock
    aliases:
      - docker_url
  docker_timeout:
    description:
      - Seconds to wait for an answer from the Docker engine API.
      - This is the timeout of each API request, not of the work the module asks the engine to do;
        modules that run containers have their own O(ignore:timeout) option for that.
      - When not set in the task, the E(DOCKER_TIMEOUT) environment variable of the module is used,
        and the default when that is not set either.
    type: int
    default: 60
requirements:
  - Docker SDK for Python (the C(docker) package, 7.0 or newer) on the managed host.
"""
