"""Shared fixtures for tests that run against the loopback test bed.

The bed (``make bed``) writes ``.bed/bed.json``: the registry address, the S3
endpoint and its credentials, and the image references it pushed.  Tests read
that file and never guess at addresses: everything they talk to is on
127.0.0.1 or inside containers they start themselves.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker
import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
BED_STATE = Path(os.environ.get("BED_STATE", REPO / ".bed"))
TEST_LABEL = "pydeploy.test"


def _load_bed() -> dict:
    path = BED_STATE / "bed.json"
    if not path.exists():
        pytest.exit(f"{path} is missing: run 'make bed' first", returncode=2)
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def bed() -> dict:
    """The bed's description, as written by ``bed/bedctl.py up``."""
    return _load_bed()


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def bed_image(bed):
    """Return the registry reference of a stand-in image, e.g. ``bed_image('postgres')``."""

    def resolve(name: str) -> str:
        try:
            return bed["images"][name]["ref"]
        except KeyError:
            pytest.fail(f"the bed has no image named {name!r}; known: {sorted(bed['images'])}")

    return resolve


# A process that allocates past its memory limit (64 MiB will do) on its first start, then idles: the marker file
# survives the restart the engine gives it after the kernel kills it.
OOM_HOG = """
import os, time
print('hog up', flush=True)
if not os.path.exists('/tmp/oom-once'):
    open('/tmp/oom-once', 'w').close()
    time.sleep(2)
    hoard = [bytearray(8 << 20) for _ in range(128)]
print('hog up again, idle', flush=True)
time.sleep(3600)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.5, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_error = exc
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last error: {last_error!r}")


@pytest.fixture
def run_container(docker_client):
    """Start throw-away containers labelled for the test run; all removed afterwards.

    ``run_container(image, ports={"5432/tcp": None}, environment={...}, ...)``
    publishes every listed port on 127.0.0.1 only and returns
    ``(container, {container_port: host_port})``.
    """
    started = []

    def start(image: str, ports: dict | None = None, **kwargs):
        published = {}
        bindings = {}
        for container_port in ports or {}:
            host_port = free_port()
            bindings[container_port] = ("127.0.0.1", host_port)
            published[container_port] = host_port
        labels = dict(kwargs.pop("labels", {}) or {})
        labels[TEST_LABEL] = "1"
        container = docker_client.containers.run(
            image,
            detach=True,
            name=kwargs.pop("name", f"pydeploy-test-{uuid.uuid4().hex[:10]}"),
            ports=bindings,
            labels=labels,
            **kwargs,
        )
        started.append(container)
        return container, published

    yield start
    for container in started:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def network(docker_client):
    """A Docker network of the test's own, removed with whatever is still on it."""
    net = docker_client.networks.create(f"pydeploy-test-{uuid.uuid4().hex[:10]}", labels={TEST_LABEL: "1"})
    yield net
    net.reload()
    for container in net.containers:  # normally gone already: run_container's teardown comes first
        if container.labels.get(TEST_LABEL) == "1":
            container.remove(force=True, v=True)
        else:
            net.disconnect(container, force=True)
    net.remove()


def built_image(docker_client, ref: str) -> str:
    """``ref`` when the bed built it (or its registry serves it); a failure naming 'make bed' otherwise."""
    try:
        docker_client.images.get(ref)
    except docker.errors.ImageNotFound:
        try:
            docker_client.images.pull(ref)
        except docker.errors.APIError as exc:
            pytest.fail(f"{ref} is neither on this host nor in the bed registry ({exc}): run 'make bed'")
    return ref


def container_logs(container) -> str:
    return container.logs().decode("utf-8", "replace")


def teardown_stack(client, stack: str) -> None:
    """Remove everything a deploy of ``stack`` made on this host: containers,
    volumes, network, configuration and state.  Images are kept."""
    import shutil

    # The schedules first, so that no job starts a container while the stack goes.
    Path(f"/etc/cron.d/pydeploy-{stack}").unlink(missing_ok=True)
    Path(f"/etc/cron.d/pydeploy-{stack}-backup").unlink(missing_ok=True)
    Path(f"/etc/cron.d/pydeploy-{stack}-restarts").unlink(missing_ok=True)
    remove_backup_units(stack)
    for _ in range(2):  # again: a job's container started just before its schedule went
        for container in client.containers.list(all=True, filters={"label": f"pydeploy.stack={stack}"}):
            remove_container_gone(client, container)
    for volume in client.volumes.list():
        if volume.name.startswith(f"{stack}-"):
            volume.remove(force=True)
    for network in client.networks.list(names=[stack]):
        network.remove()
    for path in (Path("/etc/pydeploy") / stack, Path("/var/lib/pydeploy") / stack, Path("/var/log/pydeploy") / stack):
        shutil.rmtree(path, ignore_errors=True)


def remove_container_gone(client, container, timeout: float = 60) -> None:
    """Remove ``container``; one already being removed (a job runner's own ``docker rm``, ``--rm``) is waited
    for instead of failing on the engine's 409."""
    try:
        container.remove(force=True, v=True)
        return
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if exc.status_code != 409 or "already in progress" not in str(exc):
            raise

    def gone():
        try:
            client.containers.get(container.id)
        except docker.errors.NotFound:
            return True
        return False

    wait_for(gone, timeout, what=f"removal of container {container.name}")


def remove_backup_units(stack: str) -> None:
    """Stop and remove the systemd timers and services of the backup role's jobs."""
    prefix = f"pydeploy-{stack.replace('_', '-')}-backup-"
    units = [
        Path("/etc/systemd/system") / f"{prefix}{job}.{kind}"
        for job in ("backup", "drill")
        for kind in ("timer", "service")
    ]
    present = [unit for unit in units if unit.exists()]
    systemd = Path("/run/systemd/system").is_dir()
    if systemd and present:
        timers = [unit.name for unit in present if unit.suffix == ".timer"]
        subprocess.run(["systemctl", "disable", "--now", *timers], capture_output=True, check=False)
    for unit in present:
        unit.unlink()
    if systemd and present:
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True, check=False)


def stack_query(stack: str, query: str, params=None) -> list[tuple]:
    """Run a query on a deployed stack's database as the app's own role (its DATABASE_URL)."""
    env_file = Path(f"/etc/pydeploy/{stack}/app.env")
    url = next(line.split("=", 1)[1] for line in env_file.read_text().splitlines() if line.startswith("DATABASE_URL="))
    ip = subprocess.run(
        ["docker", "inspect", "-f", f"{{{{.NetworkSettings.Networks.{stack}.IPAddress}}}}", f"{stack}-postgres"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    url = url.replace(f"@{stack}-postgres:", f"@{ip}:").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=10) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


# Modules that deploy the same stack share its containers, ports and files:
# under pytest-xdist one worker runs them, in order. Every other module is a
# unit of its own (its module fixtures start once), as with --dist loadfile.
SHARED_STACKS = {
    "test_deploy_flight_hunter": "flight_hunter",
    "test_deploy_safety": "flight_hunter",
    "test_make_demo": "flight_hunter",
    "test_bed_cli": "flight_hunter",
}


@pytest.fixture(scope="session")
def flight_hunter_deployed(bed, docker_client) -> dict:
    """The stack of inventories/local (flight_hunter), deployed from nothing four times, as community.docker
    tests a module: check, real, check, real (the runs by step). One deploy for every module of the
    flight_hunter stack above (one worker runs them, in order); each module leaves the stack as deployed."""
    from playbook import run_playbook

    teardown_stack(docker_client, "flight_hunter")
    runs = {}
    for step, check in (("check1", True), ("real1", False), ("check2", True), ("real2", False)):
        runs[step] = run_playbook(check=check)
        assert runs[step].rc == 0, f"{step}: {runs[step].explain()}"
    return runs


# What each unit of work (a module, or the modules of a shared stack) cost in the last full run on a
# 2-core machine with 3 workers, in seconds: its ansible-playbook time from the run's summary, plus what it
# waits for outside playbooks (a cron minute, a host's boot, an image build). pytest-xdist hands units out
# in this order, longest first: a long unit handed out last keeps one worker busy while the others idle.
# A module not listed counts as UNLISTED_SECONDS (tests/unit modules as 0, they take seconds): list a new
# module that runs for minutes with what its first runs cost.
UNIT_SECONDS = {
    "flight_hunter": 560,  # deploy_flight_hunter 316 + deploy_safety 175 + make_demo + bed_cli
    "test_deploy_flow_forecaster": 450,  # 337 + the beat's tests, now on the same stack (183 on a stack of their own)
    "test_proxy_tls": 464,
    "test_backup_flight_hunter": 430,  # 395 of playbooks + the scheduled backup and drill run as cron runs them
    "test_release_car_api_faults": 400,
    "test_app_conductor_stack": 330,  # 273 of playbooks + the idle websocket's minute
    "test_cron_jobs": 330,  # 173 of playbooks + the wait for cron's minute and the slow job
    "test_deploy_roles": 327,
    "test_app_gallery": 315,
    "test_engine_restart": 310,  # 172 of playbooks + the host's packages and images (135 s of setup)
    "test_release_car_api": 308,
    "test_deploy_mongodb": 260,
    "test_awx": 250,  # the execution environment's first build (131 s of setup)
    "test_notify": 230,
    "test_proxy_site_tls": 183,
    "test_deploy_equivalence": 126,
    "test_init": 112,
    "test_proxy_sites": 112,
    "test_module_host_state": 109,
    "test_module_db_migrate": 100,
    "test_app_car_api": 100,
    # Not measured in a full run yet: hosts of their own over SSH (boot, the images pulled by each host's
    # engine, deploys over SSH); half of what each took alone on a machine busy with other runs.
    "test_fleet_rollout": 1000,  # a proxy host and three web hosts, five whole-fleet runs
    "test_fleet_singletons": 600,
    "test_fleet_services": 320,
    "test_molecule": 350,
}
UNLISTED_SECONDS = 60


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its module, or the shared stack its module deploys."""
    path = nodeid.split("::", 1)[0]
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    return SHARED_STACKS.get(module, path)


def unit_seconds(unit: str) -> int:
    module = unit.rsplit("/", 1)[-1].removesuffix(".py")
    if module in UNIT_SECONDS:
        return UNIT_SECONDS[module]
    return 0 if unit.startswith("tests/unit/") else UNLISTED_SECONDS


KEEP_RUN_LOG = pytest.StashKey[bool]()


def pytest_configure(config):
    # The controller (not an xdist worker) names the log that every worker appends its runs to (kept
    # after the run when named beforehand in the environment).
    if not hasattr(config, "workerinput"):
        from playbook import RUN_LOG

        if os.environ.get(RUN_LOG):
            config.stash[KEEP_RUN_LOG] = True
            return
        fd, path = tempfile.mkstemp(prefix="pydeploy-test-runs-", suffix=".jsonl")
        os.close(fd)
        os.environ[RUN_LOG] = path


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Where the session's time went: ansible-playbook runs per test module."""
    from playbook import RUN_LOG

    path = os.environ.get(RUN_LOG)
    if hasattr(config, "workerinput") or not path or not os.path.exists(path):
        return
    per_module: dict[str, list[float]] = {}
    with open(path) as handle:
        for line in handle:
            run = json.loads(line)
            module = run["test"].split("::", 1)[0].rsplit("/", 1)[-1] or "(outside a test)"
            per_module.setdefault(module, []).append(run["s"])
    if not config.stash.get(KEEP_RUN_LOG, False):
        os.unlink(path)
    if not per_module:
        return
    total = sum(sum(times) for times in per_module.values())
    count = sum(len(times) for times in per_module.values())
    writer = terminalreporter
    writer.section(f"ansible-playbook runs: {count}, {total:.0f} s in all (summed over workers)")
    for module, times in sorted(per_module.items(), key=lambda kv: -sum(kv[1]))[:20]:
        writer.line(f"{sum(times):7.0f} s {len(times):4d} runs  {module}")


def pytest_collection_modifyitems(config, items):
    def cost(item) -> tuple[int, str]:
        unit = unit_of(item.nodeid)
        return -unit_seconds(unit), unit

    items.sort(key=cost)  # stable: a unit's tests keep their order


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    # Units in collection order (longest first, above), not reordered by how many tests each holds (xdist's
    # default, which started the long modules of few tests last).
    config.option.loadscopereorder = False

    class StackScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return StackScheduling(config, log)


# --------------------------------------------------------------------------- S3 (the bed's SeaweedFS)


@pytest.fixture(scope="module")
def s3conf(bed) -> dict:
    return bed["s3"]


@pytest.fixture(scope="module")
def s3(s3conf):
    from backup_support import s3_client

    return s3_client(s3conf)


@pytest.fixture
def bucket(s3):
    """A bucket of the test's own, emptied and deleted afterwards."""
    from backup_support import empty_bucket

    name = f"pydeploy-test-bk-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)


# --------------------------------------------------------------------------- fleet hosts (tests/integration/hosts.py)


@pytest.fixture(scope="module")
def fleet(bed, docker_client, tmp_path_factory):
    """Hosts of the module's own (``fleet.start_host(ports=(443,))``), each a Debian machine with its own Docker
    engine reached over SSH, on a network of their own with a registry serving the bed's images; all removed
    afterwards."""
    from hosts import Fleet

    hosts = Fleet(docker_client, bed, tmp_path_factory.mktemp("fleet"))
    try:
        hosts.start_network()
        yield hosts
    finally:
        hosts.close()
