#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxy_upstream
short_description: Point a running nginx at other upstream servers, checked by nginx -t, with a graceful reload
description:
  - Replaces one file of a running nginx container's configuration (the upstream of the web replicas, in a
    directory bind-mounted into the container), has the running nginx check the whole configuration with
    C(nginx -t), and reloads it gracefully (SIGHUP to the master, whose new workers take new connections while the old
    ones finish the requests in flight).
  - The file is replaced atomically. When C(nginx -t) refuses the new configuration the previous file is put
    back before anything is reloaded, and the module fails with nginx's message; the proxy keeps serving as it was.
  - When the container does not exist or is not running, nothing is written (the proxy's own role writes the file
    when it creates the container) and RV(skipped_reason) says so.
  - This is what a release switch does; it takes one task, so that the time from new replicas found healthy
    to traffic moved to them is short.
  - With O(drain_timeout), the module also waits until the workers that nginx ran before the reload have
    exited, that is until every request they held (and so every request on its way to the old upstream servers)
    was answered, at most O(drain_timeout) seconds. The old upstream servers can then be stopped at once.
version_added: 0.1.0
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pydeploy.stack.docker
options:
  dest:
    description: The file on the host, inside the directory mounted into the container.
    type: path
    required: true
  content:
    description: The new content of O(dest).
    type: str
    required: true
  container:
    description: Name of the nginx container.
    type: str
    required: true
  mode:
    description: Mode of O(dest).
    type: raw
    default: "0644"
  validate:
    description: Check the configuration with C(nginx -t) in the running container before reloading.
    type: bool
    default: true
  reload:
    description: Reload nginx when the file changed.
    type: bool
    default: true
  drain_timeout:
    description:
      - After the reload, wait at most this many seconds for the workers from before the reload to exit (they
        finish the requests in flight, then exit). V(0) does not wait.
      - The workers are read from the container's process list (C(docker top)); where it cannot be read, the
        module waits the whole O(drain_timeout).
    type: float
    default: 0
  verify:
    description:
      - After the reload (and the drain), ask the app through the proxy, as a client would, until the answer has
        the expected status (and JSON fields) or O(verify.timeout) runs out; the task then fails with what the
        proxy answered, and RV(reloaded) says that traffic had moved.
      - Once the old workers are gone (RV(drained)) one answer is enough; otherwise three in a row are asked for,
        since a worker from before the reload may still answer with the old upstream.
    type: dict
    suboptions:
      url:
        description: The URL, on the proxy's own address (V(https://127.0.0.1:443/health)).
        type: str
        required: true
      headers:
        description: Request headers, such as the site's C(Host).
        type: dict
        default: {}
      tls_server_name:
        description: The name the proxy's certificate must carry (and the SNI sent).
        type: str
      validate_certs:
        description: Whether the proxy's certificate is checked.
        type: bool
        default: true
      ca_path:
        description: CA bundle that issued the proxy's certificate, when not a public one.
        type: path
      status:
        description: The expected status code, or a list of them.
        type: raw
        default: 200
      json:
        description: Fields the JSON answer must have, with their values.
        type: dict
        default: {}
      body:
        description:
          - A JSON value the whole answer must equal (V(true) for an endpoint that answers a bare C(true)); not
            checked when not set.
        type: raw
      contains:
        description: Text the answer must contain.
        type: str
      timeout:
        description:
          - Seconds the app is given to answer as expected through the proxy.
          - A definitive wrong answer ends the wait at once, naming it - a redirect or a client error (an
            unexpected status from 300 to 499 other than 408, 425 and 429) three times in a row.
        type: float
        default: 30
      interval:
        description: Seconds between two attempts.
        type: float
        default: 0.25
requirements:
  - docker (Python SDK) >= 5.0
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Send the traffic to the replicas of slot b
  pydeploy.stack.proxy_upstream:
    dest: /etc/pydeploy/car_api/nginx/conf.d/upstream.conf
    container: car_api-nginx
    content: |
      upstream car_api_web {
          server car_api-web-b-1:8000 max_fails=3 fail_timeout=10s;
          server car_api-web-b-2:8000 max_fails=3 fail_timeout=10s;
          keepalive 32;
      }
    # Return once the requests in flight to slot a were answered (at most 30 s).
    drain_timeout: 30
"""

RETURN = r"""
changed:
  description: Whether the file changed (and nginx was reloaded).
  returned: always
  type: bool
reloaded:
  description: Whether nginx was sent the reload signal.
  returned: always
  type: bool
skipped_reason:
  description: Why nothing was done, when the container is absent or stopped.
  returned: when the container is absent or stopped
  type: str
drained:
  description:
    - Whether every worker from before the reload had exited when the module returned.
    - V(false) when O(drain_timeout) passed first, or when the process list could not be read.
  returned: when nginx was reloaded with O(drain_timeout) above 0
  type: bool
timings:
  description:
    - Seconds spent writing, checking (C(nginx -t)), signalling, waiting for the old workers and verifying
      through the proxy.
  returned: always
  type: dict
  sample: {write: 0.001, check: 0.11, reload: 0.004, drain: 0.06, verify: 0.02}
checks:
  description: The check through the proxy, as M(pydeploy.stack.health_check) returns its checks.
  returned: when nginx was reloaded and O(verify) was given
  type: list
  elements: dict
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    DOCKER_ERRORS,
    NotFound,
    docker_argument_spec,
    get_client,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._files import replace_file
from ansible_collections.pydeploy.stack.plugins.module_utils._health import (
    HealthCheckError,
    HttpCheck,
    failure_message,
    run_checks,
)


def read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomically(module, path: str, content: str) -> None:
    """Write beside ``path`` under a name nginx's ``*.conf`` include does not match, then rename over it."""
    replace_file(path, content, module.params["mode"], prefix=".upstream-", suffix=".tmp")


WORKER_TITLE = "nginx: worker process"


def worker_pids(container) -> set[str] | None:
    """The PIDs of the nginx workers in the container, or None when its process list cannot be read."""
    try:
        listing = container.top(ps_args="-o pid,args")
    except DOCKER_ERRORS:
        return None
    return {str(row[0]) for row in listing.get("Processes") or [] if len(row) > 1 and WORKER_TITLE in row[1]}


def wait_for_old_workers(container, old: set[str] | None, timeout: float) -> bool:
    """Wait until none of the workers in ``old`` runs any more; False when ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    while old is not None:
        current = worker_pids(container)
        if current is None:
            break
        if not old & current and current:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    time.sleep(max(0.0, deadline - time.monotonic()))
    return False


def main() -> None:
    argument_spec = {
        "dest": {"type": "path", "required": True},
        "content": {"type": "str", "required": True},
        "container": {"type": "str", "required": True},
        "mode": {"type": "raw", "default": "0644"},
        "validate": {"type": "bool", "default": True},
        "reload": {"type": "bool", "default": True},
        "drain_timeout": {"type": "float", "default": 0},
        "verify": {
            "type": "dict",
            "options": {
                "url": {"type": "str", "required": True},
                "headers": {"type": "dict", "default": {}},
                "tls_server_name": {"type": "str"},
                "validate_certs": {"type": "bool", "default": True},
                "ca_path": {"type": "path"},
                "status": {"type": "raw", "default": 200},
                "json": {"type": "dict", "default": {}},
                "body": {"type": "raw"},
                "contains": {"type": "str"},
                "timeout": {"type": "float", "default": 30},
                "interval": {"type": "float", "default": 0.25},
            },
        },
        **docker_argument_spec(),
    }
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        params["mode"] = int(str(params["mode"]), 8)
    except ValueError:
        module.fail_json(msg=f"mode must be an octal mode such as 0644, not {params['mode']!r}")
    dest, content = params["dest"], params["content"]
    result = {"changed": False, "reloaded": False, "timings": {}}
    verify = params["verify"]
    client = get_client(module)
    try:
        container = client.containers.get(params["container"])
        running = container.status == "running"
    except NotFound:
        container, running = None, False
    except DOCKER_ERRORS as exc:
        module.fail_json(msg=f"cannot inspect the proxy container {params['container']}: {exc}")
    if not running:
        state = "does not exist" if container is None else f"is {container.status}"
        module.exit_json(**result, skipped_reason=f"the proxy container {params['container']} {state}")

    before = read(dest)
    if before == content:
        module.exit_json(**result)
    result["changed"] = True
    if module._diff:
        result["diff"] = {"before": before or "", "after": content, "before_header": dest, "after_header": dest}
    if module.check_mode:
        module.exit_json(**result)

    started = time.monotonic()
    try:
        write_atomically(module, dest, content)
    except OSError as exc:
        module.fail_json(msg=f"cannot write {dest}: {exc}")
    result["timings"]["write"] = round(time.monotonic() - started, 3)

    if params["validate"]:
        started = time.monotonic()
        try:
            code, output = container.exec_run(["nginx", "-t", "-q"], demux=False)
        except DOCKER_ERRORS as exc:
            code, output = None, str(exc).encode()
        result["timings"]["check"] = round(time.monotonic() - started, 3)
        if code != 0:
            # Put the running configuration's file back before anything reads the new one.
            try:
                if before is None:
                    os.unlink(dest)
                else:
                    write_atomically(module, dest, before)
            except OSError as exc:
                module.fail_json(msg=f"nginx -t refused {dest} and the previous file could not be put back: {exc}")
            message = (output or b"").decode(errors="replace").strip()
            module.fail_json(
                msg=f"nginx -t refused the new {dest} (the previous file is back, nothing was reloaded): {message}",
                **result,
            )

    if params["reload"]:
        draining = params["drain_timeout"] > 0
        old_workers = worker_pids(container) if draining else None
        started = time.monotonic()
        try:
            container.kill(signal="SIGHUP")
        except DOCKER_ERRORS as exc:
            module.fail_json(msg=f"cannot reload nginx in {params['container']}: {exc}", **result)
        result["reloaded"] = True
        result["timings"]["reload"] = round(time.monotonic() - started, 3)
        if draining:
            started = time.monotonic()
            result["drained"] = wait_for_old_workers(container, old_workers, params["drain_timeout"])
            result["timings"]["drain"] = round(time.monotonic() - started, 3)
        if verify:
            # Built here: a first deploy's proxy (and its certificate) does not exist before the switch.
            try:
                check = HttpCheck(
                    verify["url"],
                    name="proxy",
                    status=verify["status"],
                    expected_json=verify["json"] or None,
                    contains=verify["contains"],
                    body=verify["body"],
                    headers=verify["headers"],
                    validate_certs=verify["validate_certs"],
                    ca_path=verify["ca_path"],
                    tls_server_name=verify["tls_server_name"],
                )
            except HealthCheckError as exc:
                module.fail_json(msg=f"verify: {exc}", **result)
            elapsed = run_checks(
                [check],
                timeout=verify["timeout"],
                interval=verify["interval"],
                consecutive=1 if result.get("drained") else 3,
            )
            result["timings"]["verify"] = round(elapsed, 3)
            result["checks"] = [check.result()]
            if not check.healthy:
                module.fail_json(
                    msg=f"the app did not answer as expected through the proxy after the switch: "
                    f"{failure_message([check], elapsed, verify['timeout'])}",
                    **result,
                )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
