"""Role behaviours a user relies on beyond the happy path: a broken proxy
configuration never goes live, engine settings apply without stopping
containers, a rotated superuser password is set on the running server, and
an external database replaces the container.  The Flight Hunter images
under a stack of their own (fh_roles), so that these run beside the other
Flight Hunter tests; the tests run in order, the external database last
(the stack is removed after it)."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import stack_query, teardown_stack, wait_for
from playbook import engine_settings_exclusive
from playbook import run_playbook as run_any_playbook
from proxy import https_request

STACK = "fh_roles"
INVENTORY = "tests/integration/inventories/flight_hunter_roles"
HTTPS_PORT = 9783
LIVE_CONF = Path(f"/etc/pydeploy/{STACK}/nginx/conf.d/default.conf")
DAEMON_JSON = Path("/etc/docker/daemon.json")


def run_playbook(**kwargs):
    return run_any_playbook(inventory=INVENTORY, **kwargs)


def https_get(path: str) -> tuple[int, dict, bytes]:
    return https_request(STACK, HTTPS_PORT, path)


@pytest.fixture(scope="module")
def stack_up(bed, docker_client):
    teardown_stack(docker_client, STACK)
    run = run_playbook()
    assert run.rc == 0, run.explain()
    yield run
    teardown_stack(docker_client, STACK)


def stack_containers(docker_client) -> dict[str, str]:
    return {c.name: c.id for c in docker_client.containers.list(filters={"label": f"pydeploy.stack={STACK}"})}


def test_a_configuration_nginx_rejects_never_goes_live(stack_up, docker_client):
    before = LIVE_CONF.read_text()
    containers = stack_containers(docker_client)
    run = run_playbook(extra_vars={"nginx_client_max_body_size": "ten megabytes"})
    assert run.rc != 0
    failure = " ".join(run.failure_messages())
    assert "failed to validate" in failure or "nginx" in failure, failure
    assert LIVE_CONF.read_text() == before
    assert stack_containers(docker_client) == containers
    status, _, _ = https_get("/health")
    assert status == 200
    assert not docker_client.containers.list(
        all=True, filters={"label": ["pydeploy.oneoff=nginx-check", f"pydeploy.stack={STACK}"]}
    )


def test_engine_settings_apply_without_stopping_containers(stack_up, docker_client):
    with engine_settings_exclusive():
        original = DAEMON_JSON.read_bytes()
        containers = stack_containers(docker_client)
        mine = {"label": f"pydeploy.stack={STACK}"}

        def start_times():
            return {c.name: c.attrs["State"]["StartedAt"] for c in docker_client.containers.list(filters=mine)}

        started = start_times()
        try:
            run = run_playbook(extra_vars={"docker_host_log_max_file": 4})
            assert run.rc == 0, run.explain()
            assert "Configure the engine (log rotation, live-restore)" in run.changed_tasks()
            assert json.loads(DAEMON_JSON.read_text())["log-opts"]["max-file"] == "4"
            assert stack_containers(docker_client) == containers
            assert start_times() == started
            again = run_playbook(extra_vars={"docker_host_log_max_file": 4})
            assert again.rc == 0, again.explain()
            assert again.changed() == 0, again.changed_tasks()
        finally:
            restored = run_playbook()
            assert restored.rc == 0, restored.explain()
            assert DAEMON_JSON.read_bytes() == original


def test_a_rotated_superuser_password_is_set_on_the_existing_server(stack_up):
    """The superuser password is rotated on the running server, and the superuser it now has creates the
    extensions the app's migrations need (its own role may not), once."""
    rotated = "rotated-" + uuid.uuid4().hex
    changes = {"postgres_superuser_password": rotated, "postgres_extensions": ["bloom", "pg_trgm"]}
    try:
        run = run_playbook(extra_vars=changes)
        assert run.rc == 0, run.explain()
        assert "Set the superuser password on the server" in run.changed_tasks()
        assert "Create the extensions the app needs in its database" in run.changed_tasks()
        assert rotated not in run.stdout
        # What a Django migration does (CreateExtension, then an index of its kind) works as the app's role.
        stack_query(STACK, "CREATE EXTENSION IF NOT EXISTS bloom")
        stack_query(STACK, "CREATE TABLE IF NOT EXISTS ext_probe (a int, b text)")
        stack_query(STACK, "CREATE INDEX IF NOT EXISTS ext_probe_bloom ON ext_probe USING bloom (a)")
        stack_query(STACK, "CREATE INDEX IF NOT EXISTS ext_probe_trgm ON ext_probe USING gin (b gin_trgm_ops)")
        assert {row[0] for row in stack_query(STACK, "SELECT extname FROM pg_extension")} >= {"bloom", "pg_trgm"}
        again = run_playbook(extra_vars=changes)
        assert again.rc == 0, again.explain()
        assert again.changed() == 0, again.changed_tasks()
    finally:
        restored = run_playbook()
        assert restored.rc == 0, restored.explain()
    assert "Set the superuser password on the server" in restored.changed_tasks()


def test_an_external_database_replaces_the_container(stack_up, docker_client, bed_image):
    name = f"pydeploy-test-extdb-{uuid.uuid4().hex[:6]}"
    password = uuid.uuid4().hex
    external = docker_client.containers.run(
        bed_image("postgres"),
        detach=True,
        name=name,
        network=STACK,
        environment={"POSTGRES_USER": "external", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "external"},
        labels={"pydeploy.test": "1"},
    )
    try:
        wait_for(
            lambda: external.exec_run(["pg_isready", "-h", "127.0.0.1", "-U", "external"]).exit_code == 0,
            timeout=120,
            what="the external database",
        )
        time.sleep(1)  # the entrypoint restarts the server once after initdb
        wait_for(
            lambda: external.exec_run(["pg_isready", "-h", "127.0.0.1", "-U", "external"]).exit_code == 0,
            timeout=120,
            what="the external database after initdb",
        )
        url = f"postgresql://external:{password}@{name}:5432/external"
        run = run_playbook(extra_vars={"postgres_external_url": url})
        assert run.rc == 0, run.explain()
        status, _, body = https_get("/ready")
        assert status == 200, body
        tables = external.exec_run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "external",
                "-d",
                "external",
                "-Atc",
                "SELECT version_num FROM alembic_version",
            ],
            environment={"PGPASSWORD": password},
        )
        assert tables.output.decode().strip() == "0002"
        assert password not in run.stdout
    finally:
        # The stack goes with the module (stack_up): no redeploy back to its own database.
        external.remove(force=True, v=True)


TWIN = f"{STACK}_twin"  # another stack whose name starts with this one's


@pytest.fixture
def twin_stack(docker_client, bed_image):
    """What a deploy of another stack, fh_roles_twin, leaves on the host: a container serving HTTP, a data
    volume, its configuration, a cron.d schedule and a systemd unit of its jobs."""
    volume = docker_client.volumes.create(f"{TWIN}-pgdata", labels={"pydeploy.test": "1"})
    container = docker_client.containers.run(
        bed_image("python"),
        ["python", "-m", "http.server", "8000"],
        detach=True,
        name=f"{TWIN}-web-a-1",
        labels={"pydeploy.stack": TWIN, "pydeploy.test": "1"},
        ports={"8000/tcp": ("127.0.0.1", None)},
        volumes={volume.name: {"bind": "/data", "mode": "rw"}},
    )
    files = [
        Path(f"/etc/pydeploy/{TWIN}/app.env"),
        Path(f"/var/lib/pydeploy/{TWIN}/releases.json"),
        Path(f"/etc/cron.d/pydeploy-{TWIN}"),
        Path("/etc/systemd/system/pydeploy-fh-roles-twin-nightly.service"),
    ]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"ExecStart=/usr/bin/python3 /usr/local/lib/pydeploy/pydeploy-job /etc/pydeploy/{TWIN}/jobs.json\n"
        )
    container.reload()
    port = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
    yield {"container": container, "volume": volume, "files": files, "port": int(port)}
    container.remove(force=True)
    volume.remove(force=True)
    for path in files:
        path.unlink(missing_ok=True)
    for folder in (Path(f"/etc/pydeploy/{TWIN}"), Path(f"/var/lib/pydeploy/{TWIN}")):
        shutil.rmtree(folder, ignore_errors=True)


def serves(port: int) -> bool:
    def answered():
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                return response.status == 200
        return False

    return bool(wait_for(answered, timeout=60, interval=0.5, what="the other stack's web container"))


def teardown_summary(run) -> dict:
    return next(result["msg"] for name, result in run.tasks() if name == "Summarise what was removed")


def test_teardown_removes_this_stack_only_and_its_data_only_when_told(stack_up, docker_client, twin_stack):
    """teardown.yml refuses without the stack's name; --check lists exactly what a real run removes; the
    data volumes go only when asked; another stack whose name starts with this one's keeps everything;
    a second run changes nothing."""
    mine = sorted(c.name for c in docker_client.containers.list(all=True, filters={"label": f"pydeploy.stack={STACK}"}))
    assert mine
    refused = run_playbook(playbook="teardown.yml")
    assert refused.rc != 0 and refused.changed() == 0
    assert f"confirm with -e teardown_stack={STACK}" in " ".join(refused.failure_messages())

    confirm = {"teardown_stack": STACK}
    planned = run_playbook(playbook="teardown.yml", extra_vars=confirm, check=True)
    assert planned.rc == 0, planned.explain()
    plan = teardown_summary(planned)["removed"]
    assert sorted(plan["containers"]) == mine and plan["network"] == [STACK] and plan["volumes"] == []
    schedules = [
        str(path) for path in (Path(f"/etc/cron.d/pydeploy-{STACK}"), Path(f"/etc/cron.d/pydeploy-{STACK}-backup"))
    ]
    assert f"/var/lib/pydeploy/{STACK}" in plan["files"] and f"/etc/pydeploy/{STACK}/app.env" in plan["files"]
    assert plan["schedules"] == [path for path in schedules if Path(path).exists()]
    assert (
        sorted(c.name for c in docker_client.containers.list(all=True, filters={"label": f"pydeploy.stack={STACK}"}))
        == mine
    )

    done = run_playbook(playbook="teardown.yml", extra_vars=confirm)
    assert done.rc == 0, done.explain()
    assert teardown_summary(done)["removed"] == {**plan}
    assert not docker_client.containers.list(all=True, filters={"label": f"pydeploy.stack={STACK}"})
    assert not docker_client.networks.list(names=[STACK])
    assert not Path(f"/var/lib/pydeploy/{STACK}").exists() and not any(Path(path).exists() for path in schedules)
    volumes = {f"{STACK}-pgdata", f"{STACK}-redisdata"}
    assert volumes <= {volume.name for volume in docker_client.volumes.list()}

    again = run_playbook(playbook="teardown.yml", extra_vars=confirm)
    assert again.rc == 0 and again.changed() == 0, again.changed_tasks()

    with_data = run_playbook(playbook="teardown.yml", extra_vars={**confirm, "teardown_volumes": True})
    assert with_data.rc == 0, with_data.explain()
    assert sorted(teardown_summary(with_data)["removed"]["volumes"]) == sorted(volumes)
    assert not volumes & {volume.name for volume in docker_client.volumes.list()}
    assert not Path(f"/etc/pydeploy/{STACK}").exists()

    # The other stack: untouched, and still serving.
    twin_stack["container"].reload()
    assert twin_stack["container"].status == "running" and serves(twin_stack["port"])
    assert all(path.exists() for path in twin_stack["files"])
    assert twin_stack["volume"].name in {volume.name for volume in docker_client.volumes.list()}
