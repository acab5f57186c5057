# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database side of the backup modules: PostgreSQL and MongoDB.

Each engine knows the argv of its dump and restore tools (run in the tools
container of ``_backup_stream``), and talks to the server directly from the
managed host (psycopg, pymongo) at the database container's address on its
network, for what a tool cannot tell: versions, row or document counts,
indexes, scratch databases, the swap into live, checks.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from contextlib import contextmanager

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_manifest import BackupError

# Imported by engine_for, for the engine at hand only: a backup process holds
# the client library of one database (psycopg or pymongo), not both.
psycopg = sql = pymongo = None


def _import_driver(engine: str) -> None:
    global psycopg, sql, pymongo
    try:
        if engine == "postgres" and psycopg is None:
            import psycopg as _psycopg
            from psycopg import sql as _sql

            psycopg, sql = _psycopg, _sql
        elif engine == "mongodb" and pymongo is None:
            import pymongo as _pymongo

            pymongo = _pymongo
    except ImportError:
        library = "psycopg" if engine == "postgres" else "pymongo"
        raise BackupError(missing_required_lib(library), exception=traceback.format_exc()) from None


try:
    from docker.errors import NotFound as DOCKER_NOT_FOUND
except ImportError:  # reported by _docker.get_client
    DOCKER_NOT_FOUND = Exception

# Inside the tools container (0600, root), which goes with it.
TOOLS_CONFIG = "/tmp/pydeploy-mongo-tools.yaml"  # noqa: S108
DEFAULT_PORTS = {"postgres": 5432, "mongodb": 27017}


def database_argument_spec() -> dict:
    """Options naming the database container and how to log in (db_backup and db_restore)."""
    return {
        "engine": {"type": "str", "choices": ["postgres", "mongodb"], "required": True},
        "container": {"type": "str", "required": True},
        "network": {"type": "str"},
        "database": {"type": "str"},
        "login_user": {"type": "str", "aliases": ["db_user"]},
        "login_password": {"type": "str", "no_log": True, "aliases": ["db_password"]},
        "auth_database": {"type": "str", "default": "admin"},
        "port": {"type": "int"},
        "lock_path": {"type": "path"},
        "lock_timeout": {"type": "int", "default": 600},
        "timeout": {"type": "int", "default": 3600},
    }


class DatabaseTarget:
    """The running database container: its image, network, address and the login to use."""

    def __init__(self, client, params: dict):
        self.engine = params["engine"]
        name = params["container"]
        try:
            container = client.containers.get(name)
        except DOCKER_NOT_FOUND:
            raise BackupError(f"database container {name} does not exist on this host") from None
        if container.status != "running":
            raise BackupError(f"database container {name} is {container.status}, not running")
        attrs = container.attrs
        self.container = container
        self.container_name = container.name
        self.image = attrs["Image"]  # the exact image the server runs
        self.image_name = attrs.get("Config", {}).get("Image") or self.image
        networks = attrs.get("NetworkSettings", {}).get("Networks") or {}
        network = params.get("network") or next(iter(sorted(networks)), None)
        if not network or network not in networks:
            raise BackupError(
                f"database container {name} is not on network {network}; it is on: {', '.join(sorted(networks))}"
            )
        self.network = network
        self.host = networks[network].get("IPAddress")
        if not self.host:
            raise BackupError(f"database container {name} has no IP address on network {network}")
        self.port = params.get("port") or DEFAULT_PORTS[self.engine]
        env = dict(item.split("=", 1) for item in attrs.get("Config", {}).get("Env") or [] if "=" in item)
        if self.engine == "postgres":
            self.user = params.get("login_user") or env.get("POSTGRES_USER") or "postgres"
            self.password = params.get("login_password") or env.get("POSTGRES_PASSWORD")
            self.database = params.get("database") or env.get("POSTGRES_DB") or self.user
        else:
            self.user = params.get("login_user") or env.get("MONGO_INITDB_ROOT_USERNAME")
            self.password = params.get("login_password") or env.get("MONGO_INITDB_ROOT_PASSWORD")
            self.database = params.get("database") or env.get("MONGO_INITDB_DATABASE")
            if not self.database:
                raise BackupError("database is required for mongodb (the container does not set MONGO_INITDB_DATABASE)")
        self.auth_database = params.get("auth_database") or "admin"

    @property
    def secrets(self) -> list[str]:
        return [self.password] if self.password else []


def engine_for(target: DatabaseTarget):
    _import_driver(target.engine)
    if target.engine == "postgres":
        return Postgres(target)
    return MongoDB(target)


def compare(actual, expect) -> bool:
    """Whether a check's result matches ``expect``: numbers and booleans by value, anything else as text."""
    if isinstance(expect, bool):
        return isinstance(actual, bool) and actual == expect
    if actual is None or expect is None:
        return actual is expect
    if isinstance(expect, (int, float)):
        try:
            return float(actual) == float(expect)
        except (TypeError, ValueError):
            return False
    return str(actual) == str(expect)


# --------------------------------------------------------------------------- PostgreSQL


class Postgres:
    name = "postgres"
    formats = ("custom", "plain")

    def __init__(self, target: DatabaseTarget):
        self.t = target

    # ----------------------------------------------------------------- connections

    def connect(self, dbname=None, autocommit=True):
        try:
            return psycopg.connect(
                host=self.t.host,
                port=self.t.port,
                user=self.t.user,
                password=self.t.password or None,
                dbname=dbname or self.t.database,
                connect_timeout=10,
                autocommit=autocommit,
                application_name="pydeploy-backup",
            )
        except psycopg.Error as exc:
            raise BackupError(
                f"cannot connect to PostgreSQL database {dbname or self.t.database} in container"
                f" {self.t.container_name} as {self.t.user}: {str(exc).strip()}"
            ) from None

    def tool_env(self) -> dict:
        env = {"PGHOST": self.t.host, "PGPORT": str(self.t.port), "PGUSER": self.t.user, "PGCONNECT_TIMEOUT": "10"}
        if self.t.password:
            env["PGPASSWORD"] = self.t.password
        return env

    def prepare_tools(self, tools) -> None:
        pass

    def version_argv(self) -> list[str]:
        return ["pg_dump", "--version"]

    def server_version(self) -> str:
        with self.connect() as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def exists(self, dbname: str) -> bool:
        with self.connect("postgres") as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None

    def databases(self) -> list[str]:
        with self.connect("postgres") as conn:
            return [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")]

    # ----------------------------------------------------------------- dump

    @contextmanager
    def snapshot(self):
        """An open REPEATABLE READ transaction and its exported snapshot id: counts and dump see the same data."""
        conn = self.connect(autocommit=False)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            yield conn, snapshot
        finally:
            try:
                conn.rollback()
            finally:
                conn.close()

    @staticmethod
    def tables(conn) -> list[tuple[str, str]]:
        return conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' ORDER BY 1, 2"
        ).fetchall()

    def counts(self, conn, tables=None) -> dict[str, int]:
        counts = {}
        for schema, table in self.tables(conn) if tables is None else tables:
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            counts[f"{schema}.{table}"] = conn.execute(query).fetchone()[0]
        return counts

    @staticmethod
    def indexes(conn) -> dict[str, list[str]]:
        rows = conn.execute(
            "SELECT schemaname, tablename, indexname FROM pg_indexes"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3"
        ).fetchall()
        found: dict[str, list[str]] = {}
        for schema, table, index in rows:
            found.setdefault(f"{schema}.{table}", []).append(index)
        return found

    @contextmanager
    def dump(self, fmt: str, compressed_outside: bool):
        """``(argv, env, counts, indexes, changed)`` of a dump whose counts match it exactly (one snapshot).

        The rows are counted while the dump runs, by a thread in the transaction that exported the dump's
        snapshot (so they are the dump's rows); ``counts`` is filled when the context ends.
        """
        with self.snapshot() as (conn, snapshot):
            indexes = self.indexes(conn)
            tables = self.tables(conn)
            counts: dict[str, int] = {}
            failed: list = []

            def count():
                try:
                    counts.update(self.counts(conn, tables))
                except psycopg.Error as exc:
                    failed.append(exc)

            counter = threading.Thread(target=count, name="row-counts", daemon=True)
            counter.start()
            argv = ["pg_dump", f"--format={fmt}", "--no-password", f"--snapshot={snapshot}"]
            if fmt == "custom" and compressed_outside:
                argv.append("--compress=0")  # compressed once, by the module, not twice
            argv.append(f"--dbname={self.t.database}")
            try:
                yield argv, self.tool_env(), counts, indexes, {}
            except BaseException:
                # The dump failed: no need to finish counting (cancel_safe is psycopg 3.2+).
                getattr(conn, "cancel_safe", conn.cancel)()
                raise
            finally:
                counter.join()
            if failed:
                raise BackupError(f"cannot count the rows of {self.t.database}: {str(failed[0]).strip()}")

    # ----------------------------------------------------------------- restore

    def owner(self) -> str | None:
        with self.connect("postgres") as conn:
            row = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (self.t.database,)
            ).fetchone()
        return row[0] if row else None

    def create_scratch(self, scratch: str) -> None:
        owner = self.owner() or self.t.user
        with self.connect("postgres") as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                    sql.Identifier(scratch), sql.Identifier(owner)
                )
            )

    def drop(self, dbname: str) -> None:
        with self.connect("postgres") as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))

    def restore_argv(self, fmt: str, scratch: str, jobs: int, path=None) -> list[str]:
        if fmt == "plain":
            return ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--no-password", f"--dbname={scratch}"]
        argv = ["pg_restore", "--no-password", "--exit-on-error", f"--dbname={scratch}"]
        if path:
            argv += [f"--jobs={jobs}", path]
        return argv

    def allows_parallel(self, fmt: str) -> bool:
        return fmt == "custom"

    def observed(self, dbname: str) -> tuple[dict, dict]:
        with self.connect(dbname) as conn:
            return self.counts(conn), self.indexes(conn)

    def revision(self, dbname: str, query) -> str | None:
        with self.connect(dbname) as conn:
            try:
                rows = conn.execute(query or "SELECT version_num FROM alembic_version").fetchall()
            except psycopg.errors.UndefinedTable:
                return None
        return ", ".join(sorted(str(row[0]) for row in rows)) or None

    def run_check(self, dbname: str, query):
        if not isinstance(query, str):
            raise BackupError("a postgres check's query must be an SQL string")
        with self.connect(dbname) as conn:
            try:
                row = conn.execute(query).fetchone()
            except psycopg.Error as exc:
                return None, str(exc).strip()
        return (row[0] if row else None), None

    def swap(self, scratch: str, live: str, replaced: str) -> bool:
        """Make ``scratch`` the live database: live is renamed ``replaced``, scratch renamed to live."""
        with self.connect("postgres") as conn:
            live_exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (live,)).fetchone()
            if live_exists:
                conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(live)))
                for _attempt in range(20):
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = %s AND pid <> pg_backend_pid()",
                        (live,),
                    )
                    try:
                        conn.execute(
                            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                                sql.Identifier(live), sql.Identifier(replaced)
                            )
                        )
                        break
                    except psycopg.errors.ObjectInUse:
                        time.sleep(0.25)
                else:
                    conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(live)))
                    raise BackupError(f"database {live} stayed in use: could not rename it out of the way")
            try:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(scratch), sql.Identifier(live))
                )
            except psycopg.Error as exc:
                if live_exists:  # put the old database back
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(replaced), sql.Identifier(live))
                    )
                    conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(live)))
                raise BackupError(f"could not rename {scratch} to {live}: {str(exc).strip()}") from None
        return bool(live_exists)


# --------------------------------------------------------------------------- MongoDB


class MongoDB:
    name = "mongodb"
    formats = ("archive",)

    def __init__(self, target: DatabaseTarget):
        self.t = target

    def client(self):
        kwargs = {}
        if self.t.user:
            kwargs.update(username=self.t.user, password=self.t.password, authSource=self.t.auth_database)
        return pymongo.MongoClient(
            self.t.host,
            self.t.port,
            directConnection=True,
            serverSelectionTimeoutMS=10000,
            connectTimeoutMS=10000,
            **kwargs,
        )

    @contextmanager
    def session(self):
        client = self.client()
        try:
            yield client
        except pymongo.errors.PyMongoError as exc:
            raise BackupError(
                f"MongoDB in container {self.t.container_name} (database {self.t.database}): {exc}"
            ) from None
        finally:
            client.close()

    def tool_env(self) -> dict:
        return {}

    def prepare_tools(self, tools) -> None:
        """The password goes into a 0600 file in the tools container, read with ``--config`` (never argv)."""
        if self.t.password:
            tools.put_file(TOOLS_CONFIG, f"password: {json.dumps(self.t.password)}\n".encode())

    def connection_argv(self) -> list[str]:
        argv = ["--host", self.t.host, "--port", str(self.t.port)]
        if self.t.user:
            argv += ["--username", self.t.user, "--authenticationDatabase", self.t.auth_database]
        if self.t.password:
            argv.append(f"--config={TOOLS_CONFIG}")
        return argv

    def version_argv(self) -> list[str]:
        return ["mongodump", "--version"]

    def server_version(self) -> str:
        with self.session() as client:
            return client.server_info()["version"]

    def exists(self, dbname: str) -> bool:
        with self.session() as client:
            return dbname in client.list_database_names()

    def databases(self) -> list[str]:
        with self.session() as client:
            return list(client.list_database_names())

    @staticmethod
    def _collections(db) -> list[str]:
        return sorted(
            info["name"]
            for info in db.list_collections()
            if info.get("type", "collection") == "collection" and not info["name"].startswith("system.")
        )

    def _observe(self, client, dbname: str) -> tuple[dict, dict]:
        db = client[dbname]
        counts, indexes = {}, {}
        for name in self._collections(db):
            counts[name] = db[name].count_documents({})
            indexes[name] = sorted(db[name].index_information())
        return counts, indexes

    def observed(self, dbname: str) -> tuple[dict, dict]:
        with self.session() as client:
            return self._observe(client, dbname)

    @contextmanager
    def dump(self, fmt: str, compressed_outside: bool):
        """Counts before the dump; ``changed`` (filled once the dump ran) lists collections whose count moved."""
        with self.session() as client:
            counts, indexes = self._observe(client, self.t.database)
        changed: dict = {}
        argv = ["mongodump", *self.connection_argv(), f"--db={self.t.database}", "--archive"]
        yield argv, {}, counts, indexes, changed
        with self.session() as client:
            after, _indexes = self._observe(client, self.t.database)
        for name in set(counts) | set(after):
            if counts.get(name) != after.get(name):
                changed[name] = [counts.get(name, 0), after.get(name, 0)]

    def create_scratch(self, scratch: str) -> None:
        pass  # created by mongorestore

    def drop(self, dbname: str) -> None:
        with self.session() as client:
            client.drop_database(dbname)

    def restore_argv(self, fmt: str, scratch: str, jobs: int, path=None) -> list[str]:
        source = self.t.database
        return [
            "mongorestore",
            *self.connection_argv(),
            "--archive",
            "--stopOnError",
            f"--nsInclude={source}.*",
            f"--nsFrom={source}.*",
            f"--nsTo={scratch}.*",
            f"--numInsertionWorkersPerCollection={max(jobs, 1)}",
        ]

    def allows_parallel(self, fmt: str) -> bool:
        return False

    def revision(self, dbname: str, query) -> str | None:
        if not query:
            return None
        collection, field = query.get("collection"), query.get("field", "version_num")
        with self.session() as client:
            doc = client[dbname][collection].find_one(query.get("filter") or {})
        return None if doc is None else str(doc.get(field))

    def run_check(self, dbname: str, query):
        if not isinstance(query, dict) or not query.get("collection"):
            raise BackupError("a mongodb check's query must be a mapping with collection and an optional filter")
        try:
            with self.session() as client:
                return client[dbname][query["collection"]].count_documents(query.get("filter") or {}), None
        except BackupError as exc:
            return None, exc.msg

    def swap(self, scratch: str, live: str, replaced: str) -> bool:
        """Move every collection of ``scratch`` into ``live`` (renameCollection, dropTarget), drop the others."""
        with self.session() as client:
            existed = live in client.list_database_names()
            restored = self._collections(client[scratch])
            for name in restored:
                client.admin.command("renameCollection", f"{scratch}.{name}", to=f"{live}.{name}", dropTarget=True)
            for name in self._collections(client[live]):
                if name not in restored:
                    client[live].drop_collection(name)
            client.drop_database(scratch)
        return existed
