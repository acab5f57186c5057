# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database container options of db_backup and db_restore.

The options are built by ``database_argument_spec()`` in
``plugins/module_utils/_backup_engines.py``; keep both in step.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  engine:
    description: The database server running in O(container).
    type: str
    choices: [postgres, mongodb]
    required: true
  container:
    description:
      - Name or id of the running database container on the managed host.
      - The tools (C(pg_dump), C(pg_restore), C(psql), C(mongodump), C(mongorestore)) run in a new container
        of the very image this container runs, so their version always matches the server's.
    type: str
    required: true
  network:
    description:
      - The Docker network on which the tools container reaches the database, and whose address of the
        database container the module itself connects to (for counts, scratch databases and checks).
      - Defaults to the first network of O(container), by name.
    type: str
  database:
    description:
      - The database to back up or restore.
      - Defaults to the container's E(POSTGRES_DB) (else the login user) for postgres and
        E(MONGO_INITDB_DATABASE) for mongodb.
    type: str
  login_user:
    description:
      - The user to log in as. Defaults to the container's E(POSTGRES_USER) (else V(postgres)), or
        E(MONGO_INITDB_ROOT_USERNAME) for mongodb.
      - It needs to read every table (a backup), and to create, rename and drop databases (a restore).
    type: str
    aliases: [db_user]
  login_password:
    description:
      - The password of O(login_user). Defaults to the container's E(POSTGRES_PASSWORD) or
        E(MONGO_INITDB_ROOT_PASSWORD).
      - Never logged nor returned. The tools get it through their environment (E(PGPASSWORD)) or, for the
        MongoDB tools, a 0600 file inside the tools container read with C(--config); never on a command line.
    type: str
    aliases: [db_password]
  auth_database:
    description: For mongodb, the database O(login_user) is defined in.
    type: str
    default: admin
  port:
    description: The port the server listens on inside its container.
    type: int
  lock_path:
    description:
      - File locked (C(flock)) for the whole run, so that backups and restores of one database never overlap
        on a host. Defaults to C(/var/lib/pydeploy/backup/<container>.lock).
      - Tools containers of a run killed outright are removed by the next run under the same lock.
    type: path
  lock_timeout:
    description: Seconds to wait for the lock before failing with a message naming its holder.
    type: int
    default: 600
  timeout:
    description:
      - Seconds the tools container may live. Past it the container is killed, the upload aborted
        (or the scratch database dropped) and the module fails.
    type: int
    default: 3600
requirements:
  - psycopg 3 (postgres) or pymongo (mongodb) on the managed host.
"""
