"""The Car API on a fleet over SSH (tests/integration/hosts.py): a proxy host and three web hosts, each a bare
Debian host with its own Docker engine, the database a PostgreSQL of the test's own on the hosts' network.

Shown from what a user sees: every web host answers requests sent through the proxy (the replicas publish on their
host's private address, the proxy's upstream lists all six); a new release rolls out host batch by host batch
under load with no failed request and the ledgers of the web hosts agree; a release whose second batch fails (that
host's engine stopped mid-deploy) fails the run naming the host and the step, and leaves every host on the
previous release, ledgers agreeing; rollback.yml moves the whole fleet back, the registry unreachable.
One fleet for the module; the tests run in order, each from where the one before left it."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from playbook import REPO, run_playbook
from release_support import Load

STACK = "car_fleet_web"
GROUP_VARS = REPO / "tests" / "integration" / "inventories" / STACK / "group_vars"
V1, V2, V3 = "v20251101_090000", "v20251105_143022", "v20251110_120000"
PUBLISH = 18000
LEDGER = f"/var/lib/pydeploy/{STACK}/releases.json"
UPSTREAM = f"/etc/pydeploy/{STACK}/nginx/conf.d/upstream.conf"
DB_PASSWORD = "fleet-test-only-db-password-0123"
# A first deploy installs the hosts' Python libraries (apt) and pulls the images on four hosts: on a busy 2-core
# machine that alone may take over ten minutes.
pytestmark = pytest.mark.timeout(2400)


class FleetStack:
    def __init__(self, fleet, proxy, webs, inventory: Path, cafile: Path):
        self.fleet, self.proxy, self.webs, self.inventory, self.cafile = fleet, proxy, webs, inventory, cafile

    def deploy(self, playbook: str = "deploy.yml", **extra):
        return run_playbook(playbook, str(self.inventory), extra_vars=extra or None)

    def load(self, **kwargs) -> Load:
        return Load(self.proxy.ports[443], self.cafile, **kwargs)

    def upstream(self) -> list[str]:
        rc, text = self.proxy.exec("cat", UPSTREAM)
        assert rc == 0, text
        return re.findall(r"^\s*server\s+(\S+)", text, re.MULTILINE)

    def ledgers(self) -> dict[str, list[tuple]]:
        """Each web host's ledger: (id, version, kind, image) of each release."""
        found = {}
        for host in self.webs:
            rc, text = host.exec("cat", LEDGER)
            assert rc == 0, text
            found[host.name] = [(r["id"], r["version"], r["kind"], r["image"]) for r in json.loads(text)["releases"]]
        return found

    def web_versions(self, host) -> dict[str, str]:
        """The running web replicas of a host: name -> version."""
        rc, out = host.exec(
            "docker", "ps", "--filter", f"label=pydeploy.stack={STACK}", "--filter", "label=pydeploy.process=web",
            "--format", '{{.Names}} {{.Label "pydeploy.version"}}',
        )  # fmt: skip
        assert rc == 0, out
        return dict(line.split() for line in out.splitlines() if line.strip())

    def answered_through_proxy(self, host, marker: str) -> int:
        """Requests carrying ``marker`` that the web replicas of ``host`` answered (their access logs)."""
        count = 0
        for name in self.web_versions(host):
            _rc, out = host.exec("sh", "-c", f"docker logs {name} 2>&1 | grep -c 'probe={marker}' || true")
            count += int(out.strip().splitlines()[-1] or 0)
        return count


def write_inventory(folder: Path, proxy, webs, database_url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "group_vars").symlink_to(GROUP_VARS)
    hosts = {h.name: {**h.inventory_vars(), "private_address": h.address} for h in [proxy, *webs]}
    inventory = {
        "all": {
            "vars": {"pydeploy_test_database_url": database_url},
            "hosts": hosts,
            "children": {
                "proxy": {"hosts": {proxy.name: {}}},
                # An external database: its group names the host whose role composes the URL.
                "postgres": {"hosts": {proxy.name: {}}},
                "web": {"hosts": {h.name: {} for h in webs}},
            },
        }
    }
    (folder / "hosts.yml").write_text(json.dumps(inventory, indent=2))
    return folder


@pytest.fixture(scope="module")
def stack(fleet, bed_image, tmp_path_factory):
    started = time.monotonic()
    proxy = fleet.start_host(ports=(443,))
    webs = [fleet.start_host() for _ in range(3)]
    # The database, on the hosts' network: not one of the hosts.
    database = fleet.run_client(
        bed_image("postgres"),
        ["env", "POSTGRES_USER=car", f"POSTGRES_PASSWORD={DB_PASSWORD}", "POSTGRES_DB=car",
         "docker-entrypoint.sh", "postgres"],
    )  # fmt: skip
    database.reload()
    address = database.attrs["NetworkSettings"]["Networks"][fleet.network_name]["IPAddress"]
    deadline = time.monotonic() + 60
    while database.exec_run(["pg_isready", "-h", "127.0.0.1", "-U", "car"]).exit_code != 0:
        assert time.monotonic() < deadline, database.logs()[-2000:]
        time.sleep(1)
    workdir = tmp_path_factory.mktemp(STACK)
    inventory = write_inventory(
        workdir / "inventory", proxy, webs, f"postgresql://car:{DB_PASSWORD}@{address}:5432/car"
    )
    print(f"\n4 hosts and the database started in {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    run = run_playbook("deploy.yml", str(inventory))
    assert run.rc == 0, run.explain()
    print(f"v1 deployed over SSH to the fleet in {time.monotonic() - started:.0f} s")
    rc, pem = proxy.exec("cat", f"/etc/pydeploy/{STACK}/nginx/certs/fullchain.pem")
    assert rc == 0, pem
    cafile = workdir / "ca.pem"
    cafile.write_text(pem)
    return FleetStack(fleet, proxy, webs, inventory, cafile)


def test_every_web_host_answers_through_the_proxy(stack):
    """The replicas publish on their host's private address (nothing else), the proxy lists all six."""
    servers = stack.upstream()
    assert sorted(servers) == sorted(f"{h.address}:{PUBLISH + n}" for h in stack.webs for n in (1, 2)), servers
    for host in stack.webs:
        rc, out = host.exec("docker", "ps", "--filter", f"label=pydeploy.stack={STACK}", "--format", "{{.Ports}}")
        assert rc == 0, out
        published = sorted(p for line in out.splitlines() for p in line.split(", ") if p)
        assert published == [f"{host.address}:{PUBLISH + n}->8000/tcp" for n in (1, 2)], published
    with stack.load(path="/health_check?probe=v1", concurrency=2) as load:
        time.sleep(6)
    assert not load.failures and load.ok > 20 and set(load.serving()) == {V1}, load.failures[:3]
    answered = {host.name: stack.answered_through_proxy(host, "v1") for host in stack.webs}
    assert all(count > 0 for count in answered.values()), answered
    assert sum(answered.values()) >= load.ok
    ledgers = stack.ledgers()
    assert all(entries == [(1, V1, "deploy", f"pydeploy-registry:5000/pydeploy/car-api:{V1}")]
               for entries in ledgers.values()), ledgers  # fmt: skip


def test_bad_host_batches_stop_the_run_before_anything_changes(stack):
    run = stack.deploy(stack_version=V2, pydeploy_serial=[1, "half"])
    assert run.rc != 0
    assert any("pydeploy_serial must be a number of web hosts" in m for m in run.failure_messages()), run.explain()
    assert all(run.changed(host.name) == 0 for host in [stack.proxy, *stack.webs]), run.changed_tasks()
    rc, _out = stack.webs[0].exec("test", "-e", f"/var/lib/pydeploy/{STACK}/deploy.lock")
    assert rc != 0, "no lock left behind"


def test_a_new_release_rolls_out_host_by_host_under_load(stack):
    """One host first, then the others one at a time; no request fails; the ledgers agree."""
    started = time.monotonic()
    with stack.load(concurrency=4) as load:
        run = stack.deploy(stack_version=V2)
        time.sleep(1)
    print(f"\nv2 rolled out over the fleet in {time.monotonic() - started:.0f} s: {load.ok} requests")
    assert run.rc == 0, run.explain()
    assert load.failures == [], load.failures[:5]
    assert load.serving()[-1] == V2 and V1 in load.serving()
    # Batches of one host (a canary, then one at a time): each web play of the run had one host, in order.
    batches = [
        sorted({host for task in play.get("tasks", []) for host in task.get("hosts", {})})
        for play in run.data["plays"]
        if play["play"]["name"] == "Roll the web processes out"
    ]
    assert batches == [[host.name] for host in stack.webs], batches
    assert sorted(stack.upstream()) == sorted(f"{h.address}:{PUBLISH + 50 + n}" for h in stack.webs for n in (1, 2))
    for host in stack.webs:
        assert set(stack.web_versions(host).values()) == {V2}
    ledgers = stack.ledgers()
    assert len({tuple(entries) for entries in ledgers.values()}) == 1, ledgers
    assert [entry[1] for entry in ledgers[stack.webs[0].name]] == [V1, V2]


def test_a_release_that_fails_on_the_second_batch_leaves_the_whole_fleet_on_the_previous_one(stack):
    """The second web host's engine stops once the first host moved: the run fails naming that host and the web
    step, the first host is put back on v2, every host serves v2, the ledgers agree (v3 recorded nowhere)."""
    first, second = stack.webs[0], stack.webs[1]
    moved = threading.Event()
    stop = threading.Event()

    def stop_second_engine_once_first_moved():
        while not stop.is_set():
            rc, text = stack.proxy.exec("cat", UPSTREAM)
            if rc == 0 and f"{first.address}:{PUBLISH + 1} " in text:
                second.engine("stop")
                moved.set()
                return
            time.sleep(0.3)

    watcher = threading.Thread(target=stop_second_engine_once_first_moved, daemon=True)
    watcher.start()
    try:
        with stack.load(concurrency=4) as load:
            run = stack.deploy(stack_version=V3)
            time.sleep(1)
    finally:
        stop.set()
        watcher.join(30)
    try:
        assert moved.is_set(), "the first host moved to v3 before the second batch"
        assert run.rc != 0
        message = " ".join(run.failure_messages())
        assert f"the web step failed on {second.name}" in message, message
        assert f"the previous release {V2} was put back" in message, message
        print(f"\nv3 failed on the second batch: {load.ok} requests, {len(load.failures)} failed")
        assert load.failures == [], load.failures[:5]
        assert load.serving()[-1] == V2
        assert set(stack.web_versions(first).values()) == {V2}
    finally:
        if moved.is_set():
            second.engine("start")
    for host in stack.webs:
        assert set(stack.web_versions(host).values()) == {V2}, host.name
    with stack.load(path="/health_check?probe=v2", concurrency=2) as load:
        time.sleep(4)
    assert not load.failures and set(load.serving()) == {V2}
    assert all(stack.answered_through_proxy(host, "v2") > 0 for host in stack.webs)
    ledgers = stack.ledgers()
    assert len({tuple(entries) for entries in ledgers.values()}) == 1, ledgers
    assert [entry[1] for entry in ledgers[first.name]] == [V1, V2]
    rc, _out = first.exec("test", "-e", f"/var/lib/pydeploy/{STACK}/deploy.lock")
    assert rc != 0, "the lock was released"


def test_rollback_moves_the_whole_fleet_with_the_registry_down(stack):
    stack.fleet.registry.stop()
    try:
        with stack.load(concurrency=4) as load:
            run = stack.deploy("rollback.yml", app_rollback_schema="proceed")
            time.sleep(1)
    finally:
        stack.fleet.registry.start()
    assert run.rc == 0, run.explain()
    assert load.failures == [], load.failures[:5]
    assert load.serving()[-1] == V1
    for host in stack.webs:
        assert set(stack.web_versions(host).values()) == {V1}, host.name
    ledgers = stack.ledgers()
    assert len({tuple(entries) for entries in ledgers.values()}) == 1, ledgers
    assert [(entry[1], entry[2]) for entry in ledgers[stack.webs[0].name]][-1] == (V1, "rollback")
