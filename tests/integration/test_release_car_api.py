"""Car API releases: a rolling deploy and a rollback under a steady request
load through nginx lose no request; a release that fails its checks or its
migration never gets traffic; deploys take a lock; a killed deploy's rerun
converges; a rollback works with the registry down and refuses unknown tags.

The stack's images come from a registry of its own on loopback (serving the
bed's registry storage, read-only), so this module can stop it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import teardown_stack, wait_for
from playbook import REPO, VENV_BIN, run_playbook
from registry_mirror import Mirror

STACK = "car_api"
INVENTORY = "tests/integration/inventories/car_api"
PORT = 9743
V1, V2, V3 = "v20251101_090000", "v20251105_143022", "v20251110_120000"
LEDGER = Path(f"/var/lib/pydeploy/{STACK}/releases.json")
PROXY_CA = Path(f"/etc/pydeploy/{STACK}/nginx/certs/fullchain.pem")
# The upstream of the web replicas that nginx serves (nginx_config_dir/conf.d, mounted into the proxy).
UPSTREAM = Path(f"/etc/pydeploy/{STACK}/nginx/conf.d/upstream.conf")
WEB_PORT = 8000


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    registry = Mirror(tmp_path_factory.mktemp("mirror"))
    registry.start()
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def extra(mirror):
    return {"stack_image": f"127.0.0.1:{mirror.port}/pydeploy/car-api"}


def deploy(extra, version=None, playbook="deploy.yml", **kwargs):
    variables = dict(extra)
    if version:
        variables["stack_version"] = version
    variables.update(kwargs.pop("more", {}))
    return run_playbook(playbook, inventory=INVENTORY, extra_vars=variables, **kwargs)


@pytest.fixture(scope="module")
def released(bed, docker_client, extra):
    teardown_stack(docker_client, STACK)
    run = deploy(extra, V1)
    assert run.rc == 0, run.explain()
    yield run
    teardown_stack(docker_client, STACK)


# --------------------------------------------------------------------------- load


@dataclass
class Load:
    """Requests through nginx, back to back from a few connections, each one recorded."""

    path: str = "/health_check"
    concurrency: int = 4
    ok: int = 0
    failures: list = field(default_factory=list)
    versions: list = field(default_factory=list)  # (time, version) of each answer, in order
    _stop: threading.Event = field(default_factory=threading.Event)

    async def one(self, context) -> None:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", PORT, ssl=context, server_hostname="localhost"), timeout=10
            )
            writer.write(f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            response = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.failures.append((started, repr(exc)))
            return
        head, _, body = response.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1] if head else b"?"
        if status != b"200":
            self.failures.append((started, status.decode(errors="replace"), body[:200]))
            return
        self.ok += 1
        self.versions.append((started, json.loads(body)["version"]))

    async def loop(self) -> None:
        context = ssl.create_default_context(cafile=str(PROXY_CA))

        async def client():
            while not self._stop.is_set():
                await self.one(context)

        await asyncio.gather(*(client() for _ in range(self.concurrency)))

    def __enter__(self):
        self.thread = threading.Thread(target=lambda: asyncio.run(self.loop()), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self._stop.set()
        self.thread.join(timeout=60)

    def serving(self) -> list[str]:
        """The versions that answered, each run of equal answers once, in order."""
        runs = []
        for _, version in self.versions:
            if not runs or runs[-1] != version:
                runs.append(version)
        return runs


def serving_version() -> str:
    import http.client

    context = ssl.create_default_context(cafile=str(PROXY_CA))
    conn = http.client.HTTPSConnection("127.0.0.1", PORT, timeout=10, context=context)
    conn.sock = context.wrap_socket(
        __import__("socket").create_connection(("127.0.0.1", PORT)), server_hostname="localhost"
    )
    conn.request("GET", "/health_check", headers={"Host": "localhost"})
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body["version"]


def web_containers(docker_client) -> list[tuple[str, str]]:
    return sorted(
        (c.name, c.labels["pydeploy.version"])
        for c in docker_client.containers.list(
            all=True, filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"]}
        )
    )


def upstream_servers() -> list[str]:
    return sorted(re.findall(r"^\s*server\s+([^\s;]+)", UPSTREAM.read_text(), re.MULTILINE))


def ledger_versions() -> list[str]:
    return [entry["version"] for entry in json.loads(LEDGER.read_text())["releases"]]


# --------------------------------------------------------------------------- tests


def test_deploy_and_rollback_under_load_lose_no_request(released, extra, docker_client):
    with Load() as load:
        time.sleep(2)
        assert serving_version() == V1
        run = deploy(extra, V2)
        assert run.rc == 0, run.explain()
        assert serving_version() == V2
        time.sleep(2)
        back = deploy(extra, playbook="rollback.yml", more={"app_rollback_schema": "proceed"})
        assert back.rc == 0, back.explain()
        assert serving_version() == V1
        time.sleep(2)
    assert load.failures == [], load.failures[:10]
    assert load.ok > 200
    # During each switch both releases answer for a moment (nginx's old workers finish theirs).
    assert load.serving()[0] == V1 and load.serving()[-1] == V1 and V2 in load.serving()
    replicas = web_containers(docker_client)
    assert [version for _, version in replicas] == [V1, V1, V1]
    assert len({name.rsplit("-", 2)[-2] for name, _ in replicas}) == 1, replicas  # one slot
    assert ledger_versions()[-3:] == [V1, V2, V1]
    assert json.loads(LEDGER.read_text())["releases"][-1]["kind"] == "rollback"


def test_a_second_run_changes_nothing(released, extra):
    """Rerunning the last run (the rollback to V1) changes nothing, check mode included."""
    again = {"rollback_to": V1, "app_rollback_schema": "proceed"}
    run = deploy(extra, playbook="rollback.yml", more=again)
    assert run.rc == 0, run.explain()
    assert run.changed() == 0, run.changed_tasks()
    check = deploy(extra, playbook="rollback.yml", more=again, check=True, diff=True)
    assert check.rc == 0, check.explain()
    assert check.changed() == 0, check.changed_tasks()


def test_a_release_failing_its_health_check_never_gets_traffic(released, extra, docker_client):
    before = web_containers(docker_client)
    with Load() as load:
        # Never healthy: the run fails once the time each replica is given runs out.
        run = deploy(extra, "v-unhealthy", more={"app_health_timeout": 15})
    assert run.rc != 0
    message = " ".join(run.failure_messages())
    assert "v-unhealthy was not released" in message and "health" in message.lower(), message
    assert load.failures == [] and set(load.serving()) == {V1}
    assert web_containers(docker_client) == before
    assert ledger_versions()[-1] == V1


def test_a_slow_starting_release_is_waited_for(released, extra):
    run = deploy(extra, "v-slowstart")
    assert run.rc == 0, run.explain()
    assert serving_version() == "v-slowstart"
    assert deploy(extra, V1, more={"stack_migrations": {}}).rc == 0


def test_a_failing_migration_switches_nothing(released, extra, docker_client):
    before = web_containers(docker_client)
    run = deploy(extra, "v-badmigration")
    assert run.rc != 0
    assert "car_owners" in " ".join(run.failure_messages())
    assert web_containers(docker_client) == before
    assert serving_version() == V1


def test_two_deploys_at_once_one_is_refused_naming_the_holder(released, extra):
    first = subprocess.Popen(
        [
            str(VENV_BIN / "ansible-playbook"),
            "deploy.yml",
            "-i",
            INVENTORY,
            "-e",
            json.dumps({**extra, "stack_version": V3}),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(
        lambda: Path(f"/var/lib/pydeploy/{STACK}/deploy.lock").exists(),
        timeout=120,
        interval=0.2,
        what="the first deploy to take the lock",
    )
    second = deploy(extra, V3)
    assert second.rc != 0
    message = " ".join(second.failure_messages())
    assert "another deploy of car_api is running" in message and "deploying v20251110_120000" in message, message
    output, _ = first.communicate(timeout=900)
    assert first.returncode == 0, output[-3000:]
    assert serving_version() == V3


def test_a_killed_deploy_converges_on_rerun(released, extra, docker_client):
    process = subprocess.Popen(
        [
            str(VENV_BIN / "ansible-playbook"),
            "deploy.yml",
            "-i",
            INVENTORY,
            "-e",
            json.dumps({**extra, "stack_version": V2}),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Kill it once the new replicas exist beside the old ones.
    wait_for(
        lambda: any(v == V2 for _, v in web_containers(docker_client)),
        timeout=300,
        interval=0.2,
        what="the new replicas to start",
    )
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    run = deploy(extra, V2)
    assert run.rc == 0, run.explain()
    assert any("broke the deploy lock" in str(w) for _, r in run.tasks() for w in r.get("warnings", [])), (
        "the stale lock of the killed run is reported"
    )
    assert {v for _, v in web_containers(docker_client)} == {V2}
    assert len(web_containers(docker_client)) == 3
    assert serving_version() == V2
    assert ledger_versions()[-1] == V2
    assert not Path(f"/var/lib/pydeploy/{STACK}/deploy.lock").exists()


def test_rollback_works_with_the_registry_down_and_refuses_unknown_tags(released, extra, mirror):
    mirror.stop()
    try:
        unknown = deploy(extra, playbook="rollback.yml", more={"rollback_to": "v20200101_000000"})
        assert unknown.rc != 0
        message = " ".join(unknown.failure_messages())
        assert "rollback_to=v20200101_000000 is not a recorded release of car_api; known: " in message
        assert V1 in message and V2 in message

        run = deploy(extra, playbook="rollback.yml", more={"rollback_to": V3})
        assert run.rc == 0, run.explain()
        assert serving_version() == V3
    finally:
        mirror.start()


def test_a_rollback_to_an_older_schema_stops_unless_told(released, extra):
    run = deploy(extra, playbook="rollback.yml", more={"rollback_to": V1})
    assert run.rc != 0
    message = " ".join(run.failure_messages())
    assert "released with the schema at revision 0001, the database is at 0002" in message, message
    assert "app_rollback_schema=proceed" in message


def test_a_killed_app_container_serves_again(released, extra, docker_client):
    victim = docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"]})[0]
    before = ledger_versions()
    # The app's main process dies (an out-of-memory kill, a crash): the restart policy brings it back.
    os.kill(victim.attrs["State"]["Pid"], signal.SIGKILL)
    wait_for(
        lambda: (
            docker_client.containers.get(victim.name).attrs["RestartCount"] > 0
            and docker_client.containers.get(victim.name).attrs["State"]["Health"]["Status"] == "healthy"
        ),
        timeout=60,
        interval=1,
        what="the killed replica to serve again",
    )
    assert serving_version()
    assert ledger_versions() == before


class RunningWeb:
    """The most web replicas of the stack running at once, sampled while the block runs."""

    def __init__(self, docker_client):
        self.client = docker_client
        self.most = 0
        self.names = set()  # every web replica seen running
        self._stop = threading.Event()

    def sample(self) -> None:
        while not self._stop.is_set():
            running = self.client.containers.list(
                filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"], "status": "running"}
            )
            self.most = max(self.most, len(running))
            self.names.update(container.name for container in running)
            self._stop.wait(0.2)

    def __enter__(self):
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self._stop.set()
        self.thread.join(timeout=30)


def test_a_release_one_replica_at_a_time_loses_no_request(released, extra, docker_client):
    start = serving_version()
    with Load() as load, RunningWeb(docker_client) as running:
        run = deploy(extra, V2, more={"app_rollout_batch_size": 1})
        assert run.rc == 0, run.explain()
        time.sleep(2)
    assert load.failures == [], load.failures[:10]
    assert load.serving()[0] == start and load.serving()[-1] == V2
    # Three replicas serve throughout; one more at most while a step starts its replica.
    assert running.most == 4, running.most
    assert [version for _, version in web_containers(docker_client)] == [V2, V2, V2]
    steps = [name for name, _ in run.tasks() if name == "Start the new replicas beside the running ones"]
    assert len(steps) == 3, steps
    assert ledger_versions()[-1] == V2


# All at once (0), nothing of the old release was stopped when the check fails: the proxy is
# switched back to the old replicas still running, and that switch alone must list them all.
@pytest.mark.parametrize("batch", [1, 0], ids=["one-at-a-time", "all-at-once"])
def test_a_release_failing_after_the_switch_is_switched_back(released, extra, docker_client, batch):
    """v-badproxy passes its direct checks and fails once nginx sends it traffic: the
    proxy goes back to the running release, old replicas an earlier step stopped are
    started again, and the run names the check and what it returned."""
    before = serving_version()
    old = [name for name, _ in web_containers(docker_client)]
    with RunningWeb(docker_client) as seen:
        run = deploy(extra, "v-badproxy", more={"app_rollout_batch_size": batch})
    assert run.rc != 0
    message = " ".join(run.failure_messages())
    assert "v-badproxy was not released (Check the app through the proxy failed" in message, message
    # What it returned: the replicas' 503, or nginx's 502 once it marked them all failed.
    assert "expected status 200, got 50" in message, message
    assert "keep serving" in message
    replicas = web_containers(docker_client)
    assert [version for _, version in replicas] == [before] * 3
    running = docker_client.containers.list(
        filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"], "status": "running"}
    )
    assert len(running) == 3
    # The proxy's upstream lists every old replica again, and none of the release's own.
    assert upstream_servers() == sorted(f"{name}:{WEB_PORT}" for name in old), UPSTREAM.read_text()
    new = set(seen.names) - set(old)
    assert new, seen.names
    assert not [server for server in upstream_servers() if server.split(":")[0] in new]
    assert {serving_version() for _ in range(12)} == {before}
    assert ledger_versions()[-1] == before
