"""An engine restart drops no request: Car API deployed with deploy.yml over SSH onto a bare Debian host of its own
(tests/integration/hosts.py: its own Docker engine, images pulled from the registry on the hosts' network), then
requests every 30 ms the way clients from outside arrive - from this machine (127.0.0.1:<published> to the host's
port 443, the host engine's NAT with userland-proxy off, nginx) and from a neighbour on the hosts' network - while
the host's dockerd is stopped for 15 s and started again: none fails, and every container keeps its ID and start
time (live-restore, containerd apart from dockerd). A second deploy over SSH changes nothing, and a job runs from
its cron line. The baseline: turned on, on a host where live-restore was just turned off, userland-proxy is applied
by an engine restart that keeps every container, and then a client on the host's own loopback loses requests while
the engine is down (its docker-proxy died with it)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playbook import REPO, run_playbook

STACK = "car_fleet"
GROUP_VARS = REPO / "tests" / "integration" / "inventories" / STACK / "group_vars"
GROUPS = ("proxy", "web", "cron", "postgres")
INTERVAL = 0.03
DOWN_SECONDS = 15
# A client's patience (a browser waits longer): a connection held while the engine rebuilds its NAT rules is
# retried by TCP after 1 s, then 2 s, 4 s... on a busy machine the rebuild takes seconds.
TIMEOUT = 30


def write_inventory(folder: Path, host) -> Path:
    """hosts.yml for one host, beside the committed group_vars (linked)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "group_vars").symlink_to(GROUP_VARS)
    inventory = {
        "all": {
            "vars": {"pydeploy_test_secrets": str(REPO / ".bed" / "secrets")},
            "hosts": {host.name: host.inventory_vars()},
            "children": {group: {"hosts": {host.name: {}}} for group in GROUPS},
        }
    }
    (folder / "hosts.yml").write_text(json.dumps(inventory, indent=2))
    return folder


@pytest.fixture(scope="module")
def deployed(fleet, tmp_path_factory):
    started = time.monotonic()
    host = fleet.start_host(ports=(443,))
    host_seconds = time.monotonic() - started
    inventory = write_inventory(tmp_path_factory.mktemp("car_fleet") / "inventory", host)
    started = time.monotonic()
    run = run_playbook("deploy.yml", str(inventory))
    assert run.rc == 0, run.explain()
    print(f"\nhost started in {host_seconds:.1f} s, deployed over SSH in {time.monotonic() - started:.0f} s")
    return host, inventory, run


def containers(host) -> dict[str, tuple[str, str]]:
    """The stack's containers on the host: name -> (ID, StartedAt)."""
    rc, output = host.exec(
        "sh", "-c", f"docker ps -q --no-trunc --filter label=pydeploy.stack={STACK} | xargs docker inspect "
        "--format '{{.Name}} {{.Id}} {{.State.StartedAt}}'",
    )  # fmt: skip
    assert rc == 0, output
    return {name.lstrip("/"): (cid, started) for name, cid, started in (line.split() for line in output.splitlines())}


@dataclass
class Load:
    """A client sending a new HTTPS request every INTERVAL, each on a new connection (clients come and go)."""

    port: int
    context: ssl.SSLContext
    results: list = field(default_factory=list)  # (monotonic start, status or 0, error)
    stop: threading.Event = field(default_factory=threading.Event)

    def request(self) -> tuple[int, str]:
        try:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=TIMEOUT, context=self.context)
            conn.sock = self.context.wrap_socket(raw, server_hostname="localhost")
            conn.request("GET", "/health_check", headers={"Host": "localhost"})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            ok = response.status == 200 and json.loads(body).get("status") == "ok"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return 0, repr(exc)
        return response.status, "" if ok else body[:200].decode("utf-8", "replace")

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            status, error = self.request()
            self.results.append((started, status, error, time.monotonic() - started))
            time.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))

    def failures(self) -> list:
        return [result for result in self.results if result[1] != 200 or result[2]]


def test_an_engine_restart_drops_no_request_and_keeps_the_containers(deployed, fleet, bed_image, tmp_path):
    host, _, _ = deployed
    python_image = bed_image("python")
    rc, pem = host.exec("cat", f"/etc/pydeploy/{STACK}/nginx/certs/fullchain.pem")
    assert rc == 0, pem
    context = ssl.create_default_context(cadata=pem)
    before = containers(host)
    assert {"car_fleet-nginx", "car_fleet-postgres"} <= set(before) and len(before) == 4, before
    rc, output = host.exec("pgrep", "-c", "docker-proxy")
    assert output.strip() == "0", "userland-proxy is off: no docker-proxy process"

    # A neighbour on the hosts' network too, to the host's own address.
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(pem)
    neighbour = fleet.run_client(
        python_image, ["python3", "-c", CLIENT, host.name, "443", "/ca.pem", "/tmp/load-stop"], {ca_file: "/ca.pem"}
    )
    load = Load(host.ports[443], context)
    client = threading.Thread(target=load.run, daemon=True)
    client.start()
    try:
        time.sleep(3)
        host.engine("stop")
        stopped = time.monotonic()
        assert host.exec("docker", "info")[0] != 0, "the engine is stopped"
        time.sleep(DOWN_SECONDS)
        starting = time.monotonic()
        host.engine("start")
        time.sleep(5)
    finally:
        load.stop.set()
        client.join(30)
        neighbour.exec_run(["touch", "/tmp/load-stop"])
        neighbour.wait(timeout=60)
    while_down = [result for result in load.results if stopped <= result[0] <= starting]
    slowest = max(result[3] for result in load.results)
    waited = sum(1 for result in load.results if result[3] > 1)
    sent, failed = map(int, neighbour.logs().decode().split())
    print(f"\nfrom this machine: {len(load.results)} requests, {len(while_down)} while the engine was down, "
          f"{len(load.failures())} failed, {waited} waited over 1 s, slowest {slowest:.2f} s; "
          f"from a neighbour: {sent} requests, {failed} failed")  # fmt: skip
    for result in sorted(load.results, key=lambda result: -result[3])[:3]:
        print(f"  a request {result[0] - stopped:+.1f} s from the engine's stop took {result[3]:.2f} s")
    assert not load.failures(), load.failures()[:5]
    assert failed == 0 and sent >= (3 + DOWN_SECONDS) / INTERVAL / 4
    assert len(while_down) >= DOWN_SECONDS / INTERVAL / 4, "the load ran while the engine was down"
    assert containers(host) == before, "same containers, never restarted"


def test_a_second_deploy_over_ssh_changes_nothing(deployed):
    host, inventory, _ = deployed
    run = run_playbook("deploy.yml", str(inventory))
    assert run.rc == 0, run.explain()
    assert run.changed(host.name) == 0, run.changed_tasks()


def test_a_job_runs_on_the_host_from_its_cron_line(deployed):
    """What cron runs on the host (no Ansible there): the runner starts a one-off container of the release."""
    host, _, _ = deployed
    rc, crontab = host.ssh(f"cat /etc/cron.d/pydeploy-{STACK}")
    assert rc == 0, crontab
    line = next(line for line in crontab.splitlines() if " count_cars " in line)
    command = line.split(" root ", 1)[1]
    rc, output = host.ssh(command, timeout=300)
    assert rc == 0, output
    rc, log = host.ssh(f"cat /var/log/pydeploy/{STACK}/count_cars.log")
    assert "count_cars ran, database True" in log, log


# A client run where the test cannot import anything (on the host, in a container): new connections to ADDRESS:PORT
# every 30 ms, verified against CAFILE, until the file STOPFILE exists, then one line: requests sent, failed.
CLIENT = """
import os, socket, ssl, sys, time
address, port, cafile, stopfile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=cafile)
sent = failed = 0
while not os.path.exists(stopfile):
    started = time.monotonic()
    sent += 1
    try:
        with socket.create_connection((address, port), timeout=30) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /health_check HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")
                if not tls.recv(64).startswith(b"HTTP/1.1 200"):
                    failed += 1
    except OSError:
        failed += 1
    time.sleep(max(0.0, 0.03 - (time.monotonic() - started)))
print(sent, failed, flush=True)
"""


def test_with_the_userland_proxy_an_engine_restart_loses_loopback_requests(deployed):
    """Also: an option that needs a restart, on a host where live-restore was off, keeps every container."""
    host, inventory, _ = deployed
    before = containers(host)
    run = run_playbook("deploy.yml", str(inventory), extra_vars={"docker_host_live_restore": False})
    assert run.rc == 0, run.explain()
    assert "Restart the engine for the options it cannot reload, without systemd" not in run.changed_tasks()
    assert "Live Restore Enabled: false" in host.exec("docker", "info")[1]
    run = run_playbook("deploy.yml", str(inventory), extra_vars={"docker_host_userland_proxy": True})
    assert run.rc == 0, run.explain()
    assert "Restart the engine for the options it cannot reload, without systemd" in run.changed_tasks()
    assert containers(host) == before, "the engine's restart kept every container: live-restore was on first"
    assert int(host.exec("pgrep", "-c", "docker-proxy")[1]) > 0

    host.exec("rm", "-f", "/tmp/load-stop")
    certificate = f"/etc/pydeploy/{STACK}/nginx/certs/fullchain.pem"
    client = subprocess.Popen(
        ["docker", "exec", host.name, "python3", "-c", CLIENT, "127.0.0.1", "443", certificate, "/tmp/load-stop"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)
        host.engine("stop")
        time.sleep(5)
        host.engine("start")
        time.sleep(3)
    finally:
        host.exec("touch", "/tmp/load-stop")
        output, _ = client.communicate(timeout=60)
    sent, failed = map(int, output.split())
    print(f"\nuserland-proxy on, a client on the host's loopback: {sent} requests, {failed} failed")
    assert failed > 0 and sent > failed
    assert containers(host) == before
