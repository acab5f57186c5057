"""Contract tests for the bed's postgres:15 stand-in (``bed/images/postgres``).

Roles are written against the official ``postgres:15`` image; these tests pin
the parts of its contract that they rely on: the environment variables, the
first-start initialisation and ``/docker-entrypoint-initdb.d``, SCRAM
authentication from outside the container, persistence, and running the
client tools directly.
"""

from __future__ import annotations

import gzip
import lzma
import re

import psycopg
import pytest
from conftest import container_logs, wait_for

USER = "app"
PASSWORD = "s3cret 'pa55' $word"  # quotes and a dollar: must survive every layer
DB = "appdb"
PGDATA = "/var/lib/postgresql/data"
INITDB_DIR = "/docker-entrypoint-initdb.d"
START_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def image(bed_image) -> str:
    return bed_image("postgres")


def connect(port: int, user: str = USER, password: str | None = PASSWORD, dbname: str = DB):
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=5,
        autocommit=True,
    )


def fail_if_exited(container) -> None:
    container.reload()
    if container.status in ("exited", "dead"):
        pytest.fail(f"container {container.name} exited:\n{container_logs(container)}")


def wait_until_ready(container, port: int, **credentials) -> None:
    """Wait until the final server (not the socket-only init server) accepts us."""

    def ready() -> bool:
        fail_if_exited(container)
        with connect(port, **credentials) as conn:
            conn.execute("SELECT 1")
        return True

    wait_for(ready, timeout=START_TIMEOUT, what=f"postgres in {container.name} on port {port}")


def start_postgres(run_container, image: str, environment: dict, **kwargs):
    container, ports = run_container(image, ports={"5432/tcp": None}, environment=environment, **kwargs)
    return container, ports["5432/tcp"]


def run_to_completion(run_container, image: str, command, **kwargs) -> tuple[int, str]:
    container, _ = run_container(image, command=command, **kwargs)
    status = container.wait(timeout=START_TIMEOUT)["StatusCode"]
    return status, container_logs(container)


def scalar(conn, query: str, params=None):
    return conn.execute(query, params).fetchone()[0]


def test_image_metadata(docker_client, image):
    config = docker_client.images.get(image).attrs["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["Entrypoint"] == ["docker-entrypoint.sh"]
    assert config["Cmd"] == ["postgres"]
    assert "5432/tcp" in config["ExposedPorts"]
    assert config["StopSignal"] == "SIGINT"
    assert PGDATA in config["Volumes"]
    assert env["PGDATA"] == PGDATA
    assert "/usr/lib/postgresql/15/bin" in env["PATH"].split(":")
    assert env["LANG"].lower().replace("-", "") in ("en_us.utf8", "c.utf8")


def test_scram_login_from_outside(run_container, image):
    # A leading option gets "postgres" put in front of it, as upstream does.
    container, port = start_postgres(
        run_container,
        image,
        {"POSTGRES_USER": USER, "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": DB},
        command=["-c", "max_connections=42"],
    )
    wait_until_ready(container, port)

    with connect(port) as conn:
        assert scalar(conn, "SELECT current_database()") == DB
        assert scalar(conn, "SELECT current_user") == USER
        assert scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert scalar(conn, "SHOW server_version_num").startswith("15")
        assert scalar(conn, "SHOW server_encoding") == "UTF8"
        assert scalar(conn, "SHOW max_connections") == "42"
        assert scalar(conn, "SHOW listen_addresses") == "*"
        assert scalar(conn, "SHOW password_encryption") == "scram-sha-256"
        stored = scalar(conn, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (USER,))
        assert stored.startswith("SCRAM-SHA-256$")
        rules = conn.execute("SELECT type, database, user_name, address, auth_method FROM pg_hba_file_rules").fetchall()
        assert ("host", ["all"], ["all"], "all", "scram-sha-256") in rules

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(port, password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password"):
        connect(port, password=None)

    status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
    assert re.search(r"^Uid:\s+999\s", status, re.MULTILINE), "postgres must run as uid 999"
    assert container.exec_run(["stat", "-c", "%u:%g %a", PGDATA]).output.decode().strip() in (
        "999:999 700",
        "999:999 750",
    )


INIT_SQL = """\
CREATE TABLE init_runs (id serial PRIMARY KEY, source text NOT NULL);
INSERT INTO init_runs (source) VALUES ('sql');
"""

# Executed: runs in a child process, as the postgres user, with the env.
INIT_EXECUTABLE = """\
#!/bin/bash
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \\
    -c "INSERT INTO init_runs (source) VALUES ('sh-as-$(id -un)')"
echo "init-marker: executable script ran"
"""

# Sourced: "${psql[@]}" only exists inside the entrypoint (upstream's idiom).
INIT_SOURCED = """\
"${psql[@]}" -c "INSERT INTO init_runs (source) VALUES ('sourced')"
"""


def write_init_dir(path, run_container, image):
    path.mkdir(mode=0o755)
    path.chmod(0o755)  # the postgres user must be able to list it
    files = {
        "01-schema.sql": INIT_SQL.encode(),
        "02-executable.sh": INIT_EXECUTABLE.encode(),
        "03-sourced.sh": INIT_SOURCED.encode(),
        "04-data.sql.gz": gzip.compress(b"INSERT INTO init_runs (source) VALUES ('gz');\n"),
        "05-data.sql.xz": lzma.compress(b"INSERT INTO init_runs (source) VALUES ('xz');\n"),
        "06-data.sql": b"INSERT INTO init_runs (source) VALUES ('zst');\n",
        "07-readme.txt": b"not a script: ignored\n",
    }
    for name, content in files.items():
        (path / name).write_bytes(content)
        (path / name).chmod(0o755 if name == "02-executable.sh" else 0o644)
    # Python has no zstd in its standard library: compress with the image's own.
    status, logs = run_to_completion(
        run_container,
        image,
        ["zstd", "-q", "--rm", "/init/06-data.sql", "-o", "/init/06-data.sql.zst"],
        volumes={str(path): {"bind": "/init", "mode": "rw"}},
    )
    assert status == 0, logs
    (path / "06-data.sql.zst").chmod(0o644)


def test_init_scripts_run_once_and_data_persists(tmp_path, run_container, image):
    init_dir = tmp_path / "initdb.d"
    write_init_dir(init_dir, run_container, image)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    volumes = {
        str(init_dir): {"bind": INITDB_DIR, "mode": "ro"},
        str(data_dir): {"bind": PGDATA, "mode": "rw"},
    }
    env = {"POSTGRES_USER": USER, "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": DB}
    container, port = start_postgres(run_container, image, env, volumes=volumes)
    wait_until_ready(container, port)

    expected = ["sql", "sh-as-postgres", "sourced", "gz", "xz", "zst"]
    with connect(port) as conn:
        rows = conn.execute("SELECT source FROM init_runs ORDER BY id").fetchall()
        assert [source for (source,) in rows] == expected
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('written before the restart')")
    logs = container_logs(container)
    assert "07-readme.txt" in logs and "ignoring" in logs

    # Restart: the existing cluster is used as is.  Re-running 01-schema.sql
    # would fail (the table exists) and stop the container.
    container.restart(timeout=30)
    wait_until_ready(container, port)
    with connect(port) as conn:
        rows = conn.execute("SELECT source FROM init_runs ORDER BY id").fetchall()
        assert [source for (source,) in rows] == expected
        assert scalar(conn, "SELECT note FROM kept") == "written before the restart"
    logs = container_logs(container)  # covers both runs
    assert logs.count("init-marker: executable script ran") == 1
    assert logs.count("creating a cluster") == 1

    # A new container on the same data: no password is needed any more (the
    # check only guards initialisation), and the stored one still applies.
    container.stop(timeout=30)
    second, port = start_postgres(run_container, image, {"POSTGRES_USER": USER, "POSTGRES_DB": DB}, volumes=volumes)
    wait_until_ready(second, port)
    with connect(port) as conn:
        assert scalar(conn, "SELECT count(*) FROM init_runs") == len(expected)
        assert scalar(conn, "SELECT note FROM kept") == "written before the restart"
    assert "init-marker" not in container_logs(second)
    assert (data_dir / "PG_VERSION").read_text().strip() == "15"
    assert data_dir.stat().st_uid == 999


def test_secrets_from_files(tmp_path, run_container, image):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o755)
    secrets.chmod(0o755)
    # Secret files usually end with a newline; it is not part of the value.
    for name, value in {"password": PASSWORD, "user": "fileuser", "db": "filedb"}.items():
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o644)
    container, port = start_postgres(
        run_container,
        image,
        {
            "POSTGRES_PASSWORD_FILE": "/run/secrets/pg/password",
            "POSTGRES_USER_FILE": "/run/secrets/pg/user",
            "POSTGRES_DB_FILE": "/run/secrets/pg/db",
        },
        volumes={str(secrets): {"bind": "/run/secrets/pg", "mode": "ro"}},
    )
    wait_until_ready(container, port, user="fileuser", dbname="filedb")
    with connect(port, user="fileuser", dbname="filedb") as conn:
        assert scalar(conn, "SELECT current_user") == "fileuser"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(port, user="fileuser", password=PASSWORD + "\n", dbname="filedb")


def test_missing_password_is_refused(run_container, image):
    container, _ = run_container(image, environment={"POSTGRES_USER": USER})
    status = container.wait(timeout=START_TIMEOUT)["StatusCode"]
    logs = container_logs(container)
    assert status != 0, logs
    assert "POSTGRES_PASSWORD" in logs
    assert "POSTGRES_HOST_AUTH_METHOD=trust" in logs


def test_trust_needs_no_password(run_container, image):
    container, port = start_postgres(run_container, image, {"POSTGRES_HOST_AUTH_METHOD": "trust"})
    wait_until_ready(container, port, user="postgres", password=None, dbname="postgres")
    with connect(port, user="postgres", password=None, dbname="postgres") as conn:
        assert scalar(conn, "SELECT current_user") == "postgres"


def test_client_tools_run_directly(run_container, image):
    status, logs = run_to_completion(run_container, image, ["pg_dump", "--version"])
    assert status == 0, logs
    assert re.fullmatch(r"pg_dump \(PostgreSQL\) 15\.\d+( \(.*\))?", logs.strip()), logs

    script = (
        "set -e; for tool in postgres psql pg_restore pg_dumpall pg_isready; do"
        ' "$tool" --version; done; gzip --version | head -n1; zstd --version;'
        " id -u postgres; id -g postgres"
    )
    status, logs = run_to_completion(run_container, image, ["bash", "-c", script])
    assert status == 0, logs
    lines = logs.splitlines()
    for tool in ("postgres", "psql", "pg_restore", "pg_dumpall", "pg_isready"):
        assert any(re.match(rf"{tool} \(PostgreSQL\) 15\.", line) for line in lines), logs
    assert lines[-2:] == ["999", "999"]
