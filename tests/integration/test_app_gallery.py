"""The Gallery sample app (``tests/apps/gallery``: Django + Gunicorn, Celery worker and beat with
django-celery-beat's DatabaseScheduler, PostgreSQL with the bloom extension, Redis for the broker and the
cache) deployed whole from its example inventory (``inventories/examples/gallery``) as a user would write it
from the app's README: settings bound in parts (``stack_bindings``), the extension made by the superuser
(``postgres_extensions``), Django's migrations with their count as the revision, static files collected into
a volume that nginx serves, uploads in a volume that the web process writes and the worker reads.

One stack for the module: v1 deployed once for the read-only tests, then v2 (a Celery ping through nginx
answers all along, with one worker replica), a rerun, the rollback guard, a rollback, two more deploys; no
dangling volume is left by any of them, and teardown.yml removes the stack and its volumes."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path

import docker
import psycopg
import pytest
from conftest import teardown_stack, wait_for
from playbook import run_playbook

STACK = "gallery"
INVENTORY = "inventories/examples/gallery"
HTTPS_PORT = 10543  # nginx_https_port of the inventory
CAFILE = Path(f"/etc/pydeploy/{STACK}/nginx/certs/fullchain.pem")
LEDGER = Path(f"/var/lib/pydeploy/{STACK}/releases.json")
IMAGE = "pydeploy/gallery"
PING_INTERVAL = 0.5


# ---------------------------------------------------------------------------- talking to the stack


def https(method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of a request through the stack's nginx, its certificate checked for localhost."""
    context = ssl.create_default_context(cafile=str(CAFILE))
    conn = http.client.HTTPSConnection("127.0.0.1", HTTPS_PORT, timeout=10, context=context)
    conn.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10), server_hostname="localhost"
    )
    try:
        conn.request(method, path, body=body, headers={"Host": f"localhost:{HTTPS_PORT}", **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def get_json(path: str) -> tuple[int, dict]:
    status, _, body = https("GET", path)
    return status, json.loads(body)


def upload(name: str, content: bytes) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, _, answer = https("POST", "/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 202, answer[:500]
    return json.loads(answer)


def inspected(upload_id: int) -> dict:
    def done():
        status, body = get_json(f"/uploads/{upload_id}")
        return body if status == 200 and body["sha256"] else None

    return wait_for(done, timeout=60, interval=0.5, what=f"the worker to inspect upload {upload_id}")


def query(sql: str, params=None) -> list[tuple]:
    """A query as the app's own role, with the parts the bindings gave it (its env file)."""
    env_file = Path(f"/etc/pydeploy/{STACK}/app.env")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#")
    address = subprocess.run(
        ["docker", "inspect", "-f", f"{{{{.NetworkSettings.Networks.{STACK}.IPAddress}}}}", env["POSTGRES_HOST"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with psycopg.connect(
        host=address,
        port=int(env["POSTGRES_PORT"]),
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        dbname=env["POSTGRES_DB"],
        connect_timeout=10,
    ) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def deploy(version: str | None = None, playbook: str = "deploy.yml", **extra):
    variables = {**({"stack_version": version} if version else {}), **extra}
    return run_playbook(playbook, INVENTORY, extra_vars=variables or None)


def deployed_ok(version: str | None = None, **extra):
    run = deploy(version, **extra)
    assert run.rc == 0, run.explain()
    return run


def serving_version() -> str:
    return get_json("/health")[1]["version"]


def containers(docker_client, process: str) -> list:
    labels = [f"pydeploy.stack={STACK}", f"pydeploy.process={process}"]
    return docker_client.containers.list(filters={"label": labels})


def worker_node(docker_client) -> str:
    [worker] = containers(docker_client, "worker")
    return f"celery@{worker.attrs['Config']['Hostname']}"


def ledger() -> list[dict]:
    return json.loads(LEDGER.read_text())["releases"]


def applied_migrations() -> int:
    return query("SELECT count(*) FROM django_migrations")[0][0]


# ---------------------------------------------------------------------------- volumes the stack's containers mounted


class VolumeWatch:
    """Every volume mounted by a container of the Gallery image (web, workers, the one-off migration, fill and
    revision containers), read from the engine's events, so that volumes left by other tests running meanwhile
    are told apart."""

    def __init__(self, client):
        self.images: dict[str, str] = {}  # container id -> image
        self.mounts: list[tuple[str, str, str]] = []  # (volume, container id, destination)
        self.stream = client.events(decode=True, filters={"type": ["container", "volume"]})
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self) -> None:
        try:
            for event in self.stream:
                actor = event.get("Actor") or {}
                attributes = actor.get("Attributes") or {}
                if event.get("Type") == "container" and event.get("Action") == "create":
                    self.images[actor.get("ID", "")] = attributes.get("image", "")
                elif event.get("Type") == "volume" and event.get("Action") == "mount":
                    self.mounts.append(
                        (actor.get("ID", ""), attributes.get("container", ""), attributes.get("destination", ""))
                    )
        except Exception:  # noqa: BLE001, S110 - the stream ends when closed
            pass

    def ours(self) -> dict[str, set[str]]:
        """Volume -> the paths it was mounted at by a container of the app's image."""
        found: dict[str, set[str]] = {}
        for volume, container, destination in self.mounts:
            if IMAGE in self.images.get(container, ""):
                found.setdefault(volume, set()).add(destination)
        return found

    def close(self) -> None:
        self.stream.close()


def dangling(client) -> set[str]:
    return {volume.name for volume in client.volumes.list(filters={"dangling": True})}


# ---------------------------------------------------------------------------- the stack


@pytest.fixture(scope="module")
def watch(bed, docker_client):
    teardown_stack(docker_client, STACK)
    before = dangling(docker_client)
    volumes = VolumeWatch(docker_client)
    yield before, volumes
    volumes.close()
    teardown_stack(docker_client, STACK)


@pytest.fixture(scope="module")
def deployed(watch):
    """The stack at v1, as the example inventory says."""
    return deployed_ok()


def test_the_first_deploy_migrates_from_nothing(deployed):
    assert serving_version() == "v1"
    [entry] = ledger()
    assert (entry["version"], entry["migration_before"]) == ("v1", "0"), entry
    assert entry["migration_after"] == str(applied_migrations()), entry


def test_static_files_are_served_by_nginx_with_cache_control(deployed):
    status, _, page = https("GET", "/")
    assert status == 200, page[:500]
    # The page names the CSS by its hashed name (ManifestStaticFilesStorage): the fill ran before traffic.
    [css] = re.findall(rb'href="(/static/gallery/site\.[0-9a-f]{12}\.css)"', page)
    status, headers, body = https("GET", css.decode())
    assert status == 200, body[:300]
    assert headers["content-type"].startswith("text/css")
    assert b"font-family" in body
    assert re.fullmatch(r"max-age=\d+", headers.get("cache-control", "")), headers
    assert int(headers["cache-control"].split("=")[1]) > 0
    # The admin's files came with collectstatic too; a file that is not there is the proxy's 404.
    assert https("GET", "/static/admin/css/base.css")[0] == 200
    assert https("GET", "/static/gallery/nothing-here.css")[0] == 404


def test_an_upload_written_by_the_web_process_is_read_by_the_worker(deployed, docker_client):
    content = uuid.uuid4().bytes * 500 + b"\x89PNG"
    sent = upload("holiday.png", content)
    assert (sent["size"], sent["sha256"]) == (None, None)
    assert sent["url"].startswith("/images/uploads/")
    done = inspected(sent["id"])
    assert done["sha256"] == hashlib.sha256(content).hexdigest()
    assert done["size"] == len(content)
    assert done["inspected_by"] == worker_node(docker_client)
    # nginx serves the upload from the same volume, with a Cache-Control header.
    status, headers, body = https("GET", sent["url"])
    assert (status, body) == (200, content)
    assert headers.get("cache-control", "").startswith("max-age="), headers


def test_the_bloom_migration_ran_on_the_extension_the_superuser_made(deployed):
    assert query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(False,)]
    assert query("SELECT extname FROM pg_extension WHERE extname = 'bloom'") == [("bloom",)]
    assert query(
        "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE c.relname = 'photos_upload_bloom'"
    ) == [("bloom",)]
    assert query("SELECT name FROM django_migrations WHERE app = 'photos' ORDER BY name") == [
        ("0001_initial",),
        ("0002_upload_bloom_index",),
        ("0003_heartbeat_schedule",),
    ]


def test_beat_sends_the_schedule_it_reads_from_the_database(deployed, docker_client):
    assert query("SELECT task FROM django_celery_beat_periodictask WHERE name = 'Record a heartbeat'") == [
        ("photos.tasks.record_heartbeat",)
    ]
    [beat] = containers(docker_client, "beat")
    assert "DatabaseScheduler" in " ".join(beat.attrs["Config"]["Cmd"])
    start = get_json("/heartbeats")[1]["count"]
    # Every 10 s: two more within 30 s.
    latest = wait_for(
        lambda: (body := get_json("/heartbeats")[1])["count"] >= start + 2 and body,
        timeout=40,
        interval=1,
        what="two more heartbeats",
    )
    assert latest["latest"]["worker"] == worker_node(docker_client)
    assert query("SELECT count(*) FROM photos_heartbeat")[0][0] >= start + 2


class Pinger:
    """GET /celery/ping through nginx every PING_INTERVAL seconds from a thread: (time, status, workers)."""

    def __init__(self):
        self.samples: list[tuple[float, object, list]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, _, body = https("GET", "/celery/ping")
                workers = json.loads(body).get("workers", []) if status == 200 else [body[:200]]
                self.samples.append((started, status, workers))
            except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
                self.samples.append((started, repr(exc), []))
            self._stop.wait(PING_INTERVAL)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self._stop.set()
        self.thread.join(timeout=30)

    def failures(self) -> list:
        return [sample for sample in self.samples if sample[1] != 200]


def test_celery_answers_all_through_the_deploy_of_v2(deployed, docker_client):
    """One worker replica: v2's worker starts beside v1's and takes over once it answers a ping."""
    old_node = worker_node(docker_client)
    with Pinger() as pinger:
        time.sleep(2)
        started = time.monotonic()
        run = deployed_ok("v2")
        took = time.monotonic() - started
        time.sleep(2)
    assert pinger.failures() == [], pinger.failures()[:10]
    assert len(pinger.samples) >= took / (PING_INTERVAL + 2.5), (len(pinger.samples), took)
    new_node = worker_node(docker_client)
    assert new_node != old_node
    assert pinger.samples[0][2] == [old_node] and pinger.samples[-1][2] == [new_node]
    assert serving_version() == "v2"
    assert {
        c.labels["pydeploy.version"] for c in containers(docker_client, "worker") + containers(docker_client, "beat")
    } == {"v2"}
    assert "Fill the volumes from the release" in run.changed_tasks()


def test_a_second_run_changes_nothing(deployed):
    run = deployed_ok("v2")
    assert run.changed() == 0, run.changed_tasks()


def test_the_ledger_records_each_revision_and_a_rollback_stops_unless_told(deployed, docker_client):
    entries = ledger()
    revisions = {entry["version"]: entry["migration_after"] for entry in entries}
    assert int(revisions["v2"]) == int(revisions["v1"]) + 1 == applied_migrations(), entries
    assert entries[-1]["version"] == "v2"

    refused = deploy(playbook="rollback.yml")
    assert refused.rc != 0 and refused.changed() == 0, refused.explain()
    message = " ".join(refused.failure_messages())
    assert (
        f"v1 was released with the schema at revision {revisions['v1']}, the database is at {revisions['v2']}"
        in message
    ), message
    assert "app_rollback_schema=proceed" in message
    assert serving_version() == "v2"

    back = deploy(playbook="rollback.yml", app_rollback_schema="proceed")
    assert back.rc == 0, back.explain()
    assert serving_version() == "v1"
    assert ledger()[-1]["version"] == "v1" and ledger()[-1]["kind"] == "rollback"
    # v1's code on v2's schema: an upload still round-trips.
    content = b"after the rollback"
    assert inspected(upload("back.png", content)["id"])["sha256"] == hashlib.sha256(content).hexdigest()
    assert {c.labels["pydeploy.version"] for c in containers(docker_client, "worker")} == {"v1"}


def test_no_volume_is_left_dangling_across_five_deploys_and_a_rollback(deployed, watch, docker_client):
    """After v1, v2, a rerun, the rollback (above), v2 again and a release that only changes a setting."""
    before, volumes = watch
    deployed_ok("v2")
    deployed_ok(
        "v2",
        stack_env={
            "DJANGO_ALLOWED_HOSTS": "localhost",
            "CSRF_TRUSTED_ORIGINS": f"https://localhost:{HTTPS_PORT}",
            "DJANGO_LOG_LEVEL": "WARNING",
        },
    )
    assert serving_version() == "v2"
    ours = volumes.ours()
    assert {f"{STACK}-static", f"{STACK}-images"} <= set(ours), ours
    # The watch sees the anonymous volumes too: the image declares both paths a VOLUME, and the worker mounts
    # only the images volume, the migration none.
    assert any(re.fullmatch("[0-9a-f]{64}", volume) for volume in ours), ours
    new = dangling(docker_client) - before
    left = {volume: sorted(ours[volume]) for volume in new if volume in ours}
    assert left == {}, (
        f"dangling volumes of the app's containers: {left}; other new dangling volumes: {new - set(left)}"
    )
    # The named volumes kept what earlier releases put there: v1's upload is still served.
    [(first_url,)] = query("SELECT file FROM photos_upload WHERE name = 'holiday.png'")
    assert https("GET", f"/images/{first_url}")[0] == 200


def test_teardown_removes_the_stack_and_its_volumes(deployed, watch, docker_client):
    before, volumes = watch
    run = run_playbook("teardown.yml", INVENTORY, extra_vars={"teardown_stack": STACK, "teardown_volumes": True})
    assert run.rc == 0, run.explain()
    assert docker_client.containers.list(all=True, filters={"label": f"pydeploy.stack={STACK}"}) == []
    assert [v.name for v in docker_client.volumes.list() if v.name.startswith(f"{STACK}-")] == []
    ours = volumes.ours()
    left = (dangling(docker_client) - before) & set(ours)
    assert left == set(), {volume: sorted(ours[volume]) for volume in left}
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(STACK)
