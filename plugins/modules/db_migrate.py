#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_migrate
short_description: Run database migrations in a one-off container of a release image
version_added: 0.1.0
description:
  - Runs the migration command of a release (by default C(alembic upgrade head)) in a one-off container of
    the release image, on the managed host's Docker engine, once, under a host-wide lock.
  - Reports the schema revision before and after, and the revisions the run applies.
    In check mode it reads the current revision and the pending revisions and stops there.
  - With O(tool=alembic), when no revision is pending and the command is C(alembic ... upgrade TARGET) alone,
    the upgrade is not run (it would change nothing); any other command runs every time.
  - With O(tool=alembic), the history and the current revision are read in two one-off containers run at once.
    After a successful C(alembic ... upgrade head) (one head) or C(upgrade heads) the database is at the heads
    and the revision is not read again; after any other command it is.
  - Every one-off container it starts is labelled C(pydeploy.oneoff=migrate) and removed when it ends,
    also on failure, timeout or when the module is interrupted. A container left behind by a run that was
    killed outright is removed by the next run under the same lock.
  - The image is pulled when it is not on the host yet (also in check mode, since the pending revisions can only
    be read from the image). A pull alone is not reported as a change; see RV(image_pulled).
  - Values from O(env_file) are treated as secrets and masked in every command, message and output the
    module returns; O(environment) holds plain settings.
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
      - Takes the lock and runs the read-only commands (history and current revision), never the migration.
  diff_mode:
    support: full
    details:
      - The diff is the revision before and the revision after (in check mode, the target revision).
  platform:
    platforms: posix
options:
  image:
    description:
      - The release image to run, for example V(registry.example.com/app/backend:v20251105_143022).
    type: str
    required: true
  tool:
    description:
      - V(alembic) reads revisions with Alembic, reports the pending ones and is changed only when the
        revision changes.
      - V(command) runs any migration command (Django C(migrate), a C(init_db()) script, ...). It cannot know
        what is pending, so it always reports a change; O(revision_command), when given, is still run before and
        after and its last output line reported as the revision.
    type: str
    choices: [alembic, command]
    default: alembic
  command:
    description:
      - The migration command, as an argv list or a string split like a shell would split it.
        It is never run through a shell; it is passed to the image's entrypoint.
      - With O(tool=alembic), a C(upgrade TARGET) argument other than C(head) or C(heads) that names a
        revision limits the pending revisions to that target.
    type: raw
    default: alembic upgrade head
  revision_command:
    description:
      - The command that prints the current revision.
      - Defaults to C(alembic current) with O(tool=alembic); with O(tool=command) no revision is read unless
        this is set.
    type: raw
  history_command:
    description:
      - With O(tool=alembic), the command listing every revision of the image, used to compute the pending
        revisions and the head. It must print C(alembic history) output (not C(--verbose)).
      - Change it together with O(command) when Alembic needs options such as C(-c path/to/alembic.ini).
    type: raw
    default: alembic history
  env_file:
    description:
      - Path on the managed host of an environment file for the one-off containers, as read by
        C(docker run --env-file), with C(KEY=VALUE) lines, values taken verbatim (no quotes removed),
        blank lines and lines starting with C(#) ignored.
      - Every value in it is masked in what the module returns.
    type: path
  environment:
    description:
      - Plain settings for the one-off containers; they override those of O(env_file).
      - These values are not masked; put secrets in O(env_file), whose values are.
    type: dict
    aliases: [env]
  network:
    description:
      - Docker network to attach the one-off containers to, typically the one the database is on.
    type: str
  user:
    description:
      - User (name or UID[:GID]) to run the one-off containers as, instead of the image's user.
    type: str
  labels:
    description:
      - Extra labels for the one-off containers. C(pydeploy.oneoff), C(pydeploy.stack) and
        C(pydeploy.migrate.lock) are always set by the module.
    type: dict
  record_path:
    description:
      - File recording the image id, commands, a fingerprint of the environment (never its values) and the
        resulting revision of the last successful migration.
      - When the image, commands and environment are the recorded ones, nothing can be pending, so the module
        reports no change without starting any container; a no-op redeploy then costs nothing.
      - Remove the file, or set O(force), after restoring the database from an older backup.
    type: path
  force:
    description: Run the migration even when O(record_path) says this image already migrated the database.
    type: bool
    default: false
  stack:
    description:
      - Name of the stack, used for the default O(lock_path) and for the names of the one-off containers.
      - Defaults to the last path component of the image repository (V(backend) for
        V(registry.example.com/app/backend:v1)).
    type: str
  lock_path:
    description:
      - File locked (C(flock)) for the whole run, so that two runs for the same stack on one host never
        migrate at the same time. While held it names its holder (pid, host, time, image).
      - Defaults to C(/var/lib/pydeploy/<stack>/migrate.lock); missing directories are created.
    type: path
  lock_timeout:
    description:
      - Seconds to wait for the lock before failing with a message naming its holder.
    type: int
    default: 300
  timeout:
    description:
      - Seconds each one-off container may run. Past it the container is killed and removed and
        the module fails.
    type: int
    default: 900
notes:
  - Run it once per deploy (C(run_once) when several hosts share a database); the lock is per host.
  - Take a backup first with the collection's C(db_backup) module when a migration is not reversible.
requirements:
  - Docker SDK for Python on the managed host.
seealso:
  - name: Alembic commands
    description: The C(current), C(history) and C(upgrade) commands the module runs by default.
    link: https://alembic.sqlalchemy.org/en/latest/api/commands.html
"""

EXAMPLES = r"""
- name: Show the pending migrations of the new release (changes nothing)
  pydeploy.stack.db_migrate:
    image: "{{ stack_image }}:{{ stack_version }}"
    env_file: /etc/pydeploy/flight_hunter/app.env
    network: flight_hunter
  check_mode: true
  register: migrate_plan

- name: Migrate the database with the new release, once for the whole fleet
  pydeploy.stack.db_migrate:
    image: "{{ stack_image }}:{{ stack_version }}"
    stack: "{{ stack_name }}"
    env_file: /etc/pydeploy/flight_hunter/app.env
    network: flight_hunter
    timeout: 1800
  run_once: true
  register: migrate

- name: Django, with the migration state read by a management command
  pydeploy.stack.db_migrate:
    image: registry.example.com/shop/web:v42
    tool: command
    command: [python, manage.py, migrate, --no-input]
    revision_command: python manage.py showmigrations --plan
    env_file: /etc/pydeploy/shop/app.env
    environment:
      DJANGO_SECRET_KEY: "{{ vault_django_secret_key }}"
    network: shop

- name: Alembic with its configuration somewhere else
  pydeploy.stack.db_migrate:
    image: registry.example.com/api/backend:v7
    command: alembic -c deploy/alembic.ini upgrade head
    revision_command: alembic -c deploy/alembic.ini current
    history_command: alembic -c deploy/alembic.ini history
    env_file: /etc/pydeploy/api/app.env
"""

RETURN = r"""
skipped_reason:
  description: Why no container was started, when O(record_path) showed this image already migrated the database.
  returned: when the record matched
  type: str
  sample: already migrated with image sha256:41add66f9069 at 2026-11-25T00:23:26Z
revision_before:
  description:
    - The revision before the run (several heads are joined with C(, )); null for an empty database or
      when no revision command is run.
  returned: success, and failures after it was read
  type: str
  sample: "0001"
revision_after:
  description:
    - The revision after the run. In check mode nothing changes, so it equals RV(revision_before).
  returned: success, and failures after the revision was read
  type: str
  sample: "0002"
head:
  description: With O(tool=alembic), the revision the migration command aims at (several joined with C(, )).
  returned: success, and failures after the history was read
  type: str
  sample: "0002"
pending:
  description:
    - With O(tool=alembic), the revisions between RV(revision_before) and RV(head), in the order they are
      applied; all revisions for an empty database. Empty with O(tool=command).
    - After a successful real run, the revisions the run applied.
  returned: always
  type: list
  elements: str
  sample: ["0001", "0002"]
commands:
  description: Every command run in a one-off container, in order, as argv lists with secrets masked.
  returned: always
  type: list
  elements: list
  sample: [["alembic", "history"], ["alembic", "current"], ["alembic", "upgrade", "head"]]
output:
  description:
    - stdout and stderr of the migration command (of the failing command on failure), secrets masked,
      truncated to its last 64 KiB. Empty in check mode.
  returned: always
  type: str
  sample: "INFO  [alembic.runtime.migration] Running upgrade 0001 -> 0002, add alerts.channel"
duration:
  description: Seconds the module ran, lock wait included.
  returned: always
  type: float
  sample: 4.213
image:
  description: The image the one-off containers ran.
  returned: always
  type: str
  sample: registry.example.com/app/backend:v2
image_pulled:
  description: Whether the image had to be pulled first.
  returned: when the module got as far as checking the image
  type: bool
  sample: false
lock_path:
  description: The lock file used.
  returned: always
  type: str
  sample: /var/lib/pydeploy/flight_hunter/migrate.lock
lock_holder:
  description: When the lock could not be taken, what its lock file says about the holder.
  returned: failure to take the lock
  type: dict
  sample: {"pid": 4242, "host": "web1", "since": "2025-11-05T14:30:22Z", "image": "registry.example.com/app/backend:v2"}
removed_containers:
  description: Names of one-off containers that a killed earlier run had left behind (removed unless in check mode).
  returned: always
  type: list
  elements: str
  sample: []
diff:
  description: The revision before and after (in check mode, the target), each followed by a newline.
  returned: with O(tool=alembic), or O(tool=command) and O(revision_command) after a real run
  type: dict
  sample: {"before": "0001\n", "after": "0002\n"}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import SECURITY_OPTIONS, docker_argument_spec
from ansible_collections.pydeploy.stack.plugins.module_utils._migrate import (
    ALEMBIC_HISTORY,
    ALEMBIC_UPGRADE,
    run_module,
)


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(
        image={"type": "str", "required": True},
        tool={"type": "str", "choices": ["alembic", "command"], "default": "alembic"},
        command={"type": "raw", "default": ALEMBIC_UPGRADE},
        revision_command={"type": "raw"},
        history_command={"type": "raw", "default": ALEMBIC_HISTORY},
        env_file={"type": "path"},
        environment={"type": "dict", "aliases": ["env"]},
        network={"type": "str"},
        user={"type": "str"},
        security={"type": "dict", "options": SECURITY_OPTIONS},
        labels={"type": "dict"},
        stack={"type": "str"},
        lock_path={"type": "path"},
        lock_timeout={"type": "int", "default": 300},
        record_path={"type": "path"},
        force={"type": "bool", "default": False},
        timeout={"type": "int", "default": 900},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module)


if __name__ == "__main__":
    main()
