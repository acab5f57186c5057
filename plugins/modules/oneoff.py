#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: oneoff
short_description: Run a one-off command in a new container of a release image and return its output
version_added: 0.1.0
description:
  - Runs a command in a new container of the release image, with the release's env file and network, waits
    for it and returns its combined output and exit code; the C(docker compose run --rm) or
    C(fly ssh console -C) of a stack deployed by this collection (a data fix, a seed script, a key rotation).
  - The command is never run through a shell; a string is split like a shell would split it.
    To use shell features, run a shell explicitly, for example V(["sh", "-c", "a && b"]).
  - The container is labelled C(pydeploy.oneoff=run) and removed when it ends, also on failure, timeout or
    when the module is interrupted.
  - Values from O(env_file) are treated as secrets and masked in the command, the output and every message the
    module returns; O(environment) holds plain settings.
  - A non-zero exit code fails the task; RV(rc) and RV(stdout) are still returned.
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pydeploy.stack.docker
  - pydeploy.stack.security
attributes:
  check_mode:
    support: full
    details:
      - Runs nothing and reports the command that would run as a change.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  image:
    description:
      - The image to run, for example the image of the running web containers of the stack.
      - Pulled when it is not on the host.
    type: str
    required: true
  command:
    description: The command, as an argv list or a string split like a shell would split it.
    type: raw
    required: true
  env_file:
    description:
      - Path on the managed host of the release's env file (C(KEY=VALUE) lines, as read by
        C(docker run --env-file)). Every value in it is masked in what the module returns.
    type: path
  environment:
    description: Plain variables, added to (and overriding) those of O(env_file). Not masked.
    type: dict
    aliases: [env]
  network:
    description: The Docker network to attach the container to, so that it reaches the stack's services by name.
    type: str
  user:
    description: User to run the command as, instead of the image's.
    type: str
  labels:
    description: Labels for the container, besides C(pydeploy.oneoff=run).
    type: dict
  volumes:
    description:
      - Mounts of the container, in Docker's short form C(source:/path), C(source:/path:rw) or C(source:/path:ro); a
        source that is not an absolute path is a named volume, created with O(volume_labels) when it does not exist.
      - The anonymous volumes of the image's C(VOLUME) paths left unmounted are removed with the container.
    type: list
    elements: str
    default: []
  volume_labels:
    description: Labels of the named volumes of O(volumes) this module creates.
    type: dict
    default: {}
  timeout:
    description: Seconds after which the container is killed and the task fails.
    type: int
    default: 900
"""

EXAMPLES = r"""
- name: Seed the database again
  pydeploy.stack.oneoff:
    image: registry.example.com/equivalence/api:v2
    command: python -m app.seed
    env_file: /etc/pydeploy/equivalence/app.env
    network: equivalence
  register: seed

- name: Run two commands through a shell
  pydeploy.stack.oneoff:
    image: registry.example.com/flow/web:v7
    command: ["sh", "-c", "python manage.py check && python manage.py showmigrations"]
    env_file: /etc/pydeploy/flow/app.env
    network: flow
"""

RETURN = r"""
rc:
  description: The command's exit code.
  returned: when the command ran to its end
  type: int
  sample: 0
stdout:
  description: stdout and stderr of the command together, secrets masked, its last 256 KiB.
  returned: when the command ran
  type: str
  sample: "seed: inserted 0 rows, 42 already present"
stdout_lines:
  description: RV(stdout) split into lines.
  returned: when the command ran
  type: list
  elements: str
command:
  description: The command as an argv list, secrets masked.
  returned: always
  type: list
  elements: str
  sample: ["python", "-m", "app.seed"]
image:
  description: The image the container ran.
  returned: always
  type: str
image_pulled:
  description: Whether the image had to be pulled first.
  returned: when the module got as far as checking the image
  type: bool
volumes_created:
  description: The named volumes of O(volumes) that did not exist and were created.
  returned: when the module got as far as the volumes
  type: list
  elements: str
duration:
  description: Seconds the command took, pull included.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    DOCKER_ERRORS,
    SECURITY_OPTIONS,
    EnvFileError,
    Interrupted,
    OneOffTimeout,
    build_environment,
    docker_argument_spec,
    ensure_image,
    ensure_volumes,
    get_client,
    parse_volume,
    run_oneoff,
    security_host_options,
    split_command,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._secrets import mask, mask_argv


def run_module(module: AnsibleModule) -> None:
    params = module.params
    started = time.monotonic()
    argv = split_command(params["command"])
    if not argv:
        module.fail_json(msg="command is empty")
    try:
        for entry in params["volumes"]:
            parse_volume(entry)
        security_host_options(params["security"] or {})
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        secrets = list(build_environment(params["env_file"]).values())
    except EnvFileError as exc:
        module.fail_json(msg=str(exc))
    result = {"changed": True, "command": mask_argv(argv, secrets), "image": params["image"]}

    def elapsed() -> float:
        return round(time.monotonic() - started, 3)

    if module.check_mode:
        module.exit_json(msg="would run the command in a new container of the image", duration=elapsed(), **result)

    client = get_client(module)
    try:
        result["volumes_created"] = ensure_volumes(client, params["volumes"], params["volume_labels"])
    except DOCKER_ERRORS as exc:
        module.fail_json(msg=f"cannot create the volumes: {exc}", duration=elapsed(), **result)
    labels = dict(params["labels"] or {})
    labels["pydeploy.oneoff"] = "run"
    try:
        result["image_pulled"] = ensure_image(client, params["image"])
        rc, output = run_oneoff(
            client,
            params["image"],
            argv,
            env_file=params["env_file"],
            environment=params["environment"],
            network=params["network"],
            labels=labels,
            user=params["user"],
            volumes=params["volumes"],
            security=params["security"],
            timeout=params["timeout"],
        )
    except OneOffTimeout as exc:
        text = mask(exc.output, secrets)
        module.fail_json(
            msg=f"the command timed out after {params['timeout']} s and was killed",
            stdout=text,
            stdout_lines=text.splitlines(),
            duration=elapsed(),
            **result,
        )
    except Interrupted:
        module.fail_json(msg="interrupted; the one-off container was removed", duration=elapsed(), **result)
    except (EnvFileError, *DOCKER_ERRORS) as exc:
        module.fail_json(msg=mask(f"cannot run the command: {exc}", secrets), duration=elapsed(), **result)

    text = mask(output, secrets)
    result.update(rc=rc, stdout=text, stdout_lines=text.splitlines(), duration=elapsed())
    if rc != 0:
        last = next((line for line in reversed(text.splitlines()) if line.strip()), "")
        module.fail_json(msg=f"the command exited with {rc}" + (f": {last.strip()}" if last else ""), **result)
    module.exit_json(**result)


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(
        image={"type": "str", "required": True},
        command={"type": "raw", "required": True},
        env_file={"type": "path"},
        environment={"type": "dict", "aliases": ["env"]},
        network={"type": "str"},
        user={"type": "str"},
        labels={"type": "dict"},
        volumes={"type": "list", "elements": "str", "default": []},
        volume_labels={"type": "dict", "default": {}},
        security={"type": "dict", "options": SECURITY_OPTIONS},
        timeout={"type": "int", "default": 900},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module)


if __name__ == "__main__":
    main()
