"""Data services on a host of their own: Flow Forecaster deployed with deploy.yml over SSH onto two bare Debian hosts
(tests/integration/hosts.py), PostgreSQL and Redis on the first, the proxy, web, the Celery worker and the jobs on the
second, each host given its ``private_address`` on the hosts' network.

What a user sees: a forecast asked through the proxy is computed by the worker (through Redis on the other host) and
its row is in PostgreSQL on the other host; the job run from its cron line reads it there too. PostgreSQL and Redis
are published on the database host's private address only; a client on the hosts' network that is not an app host
cannot even open a connection to them (the DOCKER-USER rules of the docker_host role), the app host can, and
pg_hba.conf names the app host's address alone. The rules stay through an engine restart; a second deploy changes
nothing. A database host with no usable private address is refused by the preflight, naming it."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time

import pytest
from conftest import wait_for
from playbook import REPO, run_playbook

STACK = "ff_fleet"
GROUP_VARS = REPO / "tests" / "integration" / "inventories" / STACK / "group_vars"
DB_GROUPS = ("postgres", "redis")
APP_GROUPS = ("proxy", "web", "worker", "cron")
PORTS = {"postgres": 5432, "redis": 6379}
# Two bare hosts install the modules' libraries from apt and pull every image before the first deploy ends: on a
# busy machine that takes far longer than a deploy (safety timeouts only).
pytestmark = pytest.mark.timeout(3600)
FIRST_DEPLOY_TIMEOUT = 2700


def write_inventory(folder, db, app, db_address=None):
    """hosts.yml for the two hosts (each at its private address), beside the committed group_vars (linked)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "group_vars").symlink_to(GROUP_VARS)
    hosts = {
        db.name: {**db.inventory_vars(), "private_address": db_address or db.address},
        app.name: {**app.inventory_vars(), "private_address": app.address},
    }
    children = {group: {"hosts": {db.name: {}}} for group in DB_GROUPS}
    children |= {group: {"hosts": {app.name: {}}} for group in APP_GROUPS}
    inventory = {
        "all": {
            "vars": {"pydeploy_test_secrets": str(REPO / ".bed" / "secrets")},
            "hosts": hosts,
            "children": children,
        }
    }
    (folder / "hosts.yml").write_text(json.dumps(inventory, indent=2))
    return folder


@pytest.fixture(scope="module")
def deployed(fleet, tmp_path_factory):
    started = time.monotonic()
    db = fleet.start_host()
    app = fleet.start_host(ports=(443,))
    host_seconds = time.monotonic() - started
    inventory = write_inventory(tmp_path_factory.mktemp(STACK) / "inventory", db, app)
    started = time.monotonic()
    run = run_playbook("deploy.yml", str(inventory), timeout=FIRST_DEPLOY_TIMEOUT)
    assert run.rc == 0, run.explain()
    print(f"\nhosts started in {host_seconds:.1f} s, deployed over SSH in {time.monotonic() - started:.0f} s")
    return db, app, inventory


def request(app, path, *, method="GET", body=None):
    """Through the proxy on the app host, as a browser would (its certificate checked for localhost)."""
    rc, pem = app.exec("cat", f"/etc/pydeploy/{STACK}/nginx/certs/fullchain.pem")
    assert rc == 0, pem
    context = ssl.create_default_context(cadata=pem)
    conn = http.client.HTTPSConnection("127.0.0.1", app.ports[443], timeout=15, context=context)
    conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", app.ports[443]), timeout=15),
                                    server_hostname="localhost")  # fmt: skip
    headers = {"Host": "localhost"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data)


def count_forecasts(db) -> int:
    sql = "SELECT count(*) FROM forecasts"
    rc, output = db.exec("docker", "exec", f"{STACK}-postgres", "psql", "-U", "postgres", "-d", STACK, "-tAc", sql)
    assert rc == 0, output
    return int(output.strip())


def test_a_forecast_through_the_proxy_is_computed_and_stored_on_the_database_host(deployed):
    db, app, _ = deployed
    status, health = request(app, "/api/async/health")
    assert status == 200, health
    assert (health["redis"], health["database"]) == ("connected", "connected")
    before = count_forecasts(db)
    params = {"targetOutcome": 100, "pBest": 10, "pWorst": 50, "pLikely": 25, "sCurveSize": 3, "nSimulations": 1000}
    status, body = request(app, "/api/async/simulate", method="POST", body={**params, "confidence": 0.85})
    assert status == 202, body

    def finished():
        code, document = request(app, f"/api/tasks/{body['task_id']}")
        return document if code == 200 and document["status"] == "SUCCESS" else None

    assert wait_for(finished, timeout=120, interval=1, what="the forecast task")["result"]
    assert count_forecasts(db) == before + 1, "the worker wrote its row in PostgreSQL on the database host"
    # Web, the worker and the jobs read the same URLs: the database host's private address and published ports.
    rc, env = app.exec("cat", f"/etc/pydeploy/{STACK}/app.env")
    assert rc == 0
    assert f"@{db.address}:5432/{STACK}" in env and f"@{db.address}:6379/0" in env, "the URLs name the database host"


def test_the_job_reads_the_database_on_the_other_host_from_its_cron_line(deployed):
    db, app, _ = deployed
    rc, crontab = app.ssh(f"cat /etc/cron.d/pydeploy-{STACK}")
    assert rc == 0, crontab
    command = next(line for line in crontab.splitlines() if " count_forecasts " in line).split(" root ", 1)[1]
    rc, output = app.ssh(command, timeout=300)
    assert rc == 0, output
    rc, log = app.ssh(f"cat /var/log/pydeploy/{STACK}/count_forecasts.log")
    assert f"forecasts {count_forecasts(db)}" in log, log


def test_the_data_services_are_published_on_the_private_address_only(deployed):
    db, app, _ = deployed
    for service, port in PORTS.items():
        rc, output = db.exec("docker", "port", f"{STACK}-{service}")
        assert rc == 0, output
        assert output.split() == [f"{port}/tcp", "->", f"{db.address}:{port}"], output
    rc, output = app.exec("docker", "ps", "--format", "{{.Names}} {{.Ports}}")
    assert f"{STACK}-postgres" not in output and f"{STACK}-redis" not in output
    # pg_hba.conf as the server reads it: loopback, the stack's network on its host, the app host.
    sql = (
        "SELECT type, coalesce(address, ''), coalesce(netmask, ''), auth_method"
        " FROM pg_hba_file_rules ORDER BY line_number"
    )
    rc, rules = db.exec(
        "docker", "exec", f"{STACK}-postgres", "psql", "-U", "postgres", "-d", "postgres", "-tA", "-F", " ", "-c", sql
    )  # fmt: skip
    assert rc == 0, rules
    assert rules.splitlines() == [
        "local   trust",
        "host 127.0.0.1 255.255.255.255 scram-sha-256",
        "host ::1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff scram-sha-256",
        "host samenet  scram-sha-256",
        f"host {app.address} 255.255.255.255 scram-sha-256",
    ], rules


# From the hosts' network: can a TCP connection to each address:port be opened (within 5 s)? One line of JSON.
PROBE = """
import json, socket, sys
result = {}
for target in sys.argv[1:]:
    address, port = target.rsplit(":", 1)
    try:
        socket.create_connection((address, int(port)), timeout=5).close()
        result[target] = "open"
    except OSError as exc:
        result[target] = type(exc).__name__
print(json.dumps(result), flush=True)
"""


def probe(fleet, bed_image, db) -> dict:
    """From a container on the hosts' network that is not one of the app hosts."""
    targets = [f"{db.address}:{port}" for port in PORTS.values()]
    client = fleet.run_client(bed_image("python"), ["python3", "-c", PROBE, *targets])
    client.wait(timeout=60)
    return json.loads(client.logs().decode().strip().splitlines()[-1])


def test_only_the_app_host_reaches_postgresql_and_redis(deployed, fleet, bed_image):
    db, app, _ = deployed
    outside = probe(fleet, bed_image, db)
    assert outside == {f"{db.address}:{port}": "TimeoutError" for port in PORTS.values()}, outside
    # From the app host itself (its own address), the servers answer: PostgreSQL asks for a password, Redis for AUTH.
    check = (
        "import socket, sys\n"
        f"s = socket.create_connection(('{db.address}', 6379), timeout=5)\n"
        "s.sendall(b'PING\\r\\n'); print(s.recv(64))\n"
        f"s = socket.create_connection(('{db.address}', 5432), timeout=5); print('postgres open')\n"
    )
    rc, output = app.exec("python3", "-c", check)
    assert rc == 0, output
    assert "NOAUTH" in output and "postgres open" in output, output


def test_the_rules_stay_through_an_engine_restart(deployed, fleet, bed_image):
    db, _, _ = deployed
    _, before = db.exec("iptables", "-S", "DOCKER-USER")
    ours = [line for line in before.splitlines() if f"pydeploy.stack {STACK} " in line]
    assert len(ours) == 6, before  # per service: the stack's network, the app host, then DROP
    db.engine("restart")
    _, after = db.exec("iptables", "-S", "DOCKER-USER")
    assert [line for line in after.splitlines() if f"pydeploy.stack {STACK} " in line] == ours, after
    assert set(probe(fleet, bed_image, db).values()) == {"TimeoutError"}


def test_a_second_deploy_changes_nothing(deployed):
    db, app, inventory = deployed
    run = run_playbook("deploy.yml", str(inventory))
    assert run.rc == 0, run.explain()
    assert (run.changed(db.name), run.changed(app.name)) == (0, 0), run.changed_tasks()


def test_a_database_host_without_a_usable_private_address_is_refused_before_anything_changes(deployed, tmp_path):
    db, app, _ = deployed
    inventory = write_inventory(tmp_path / "inventory", db, app, db_address="127.0.0.1")
    run = run_playbook("deploy.yml", str(inventory))
    assert run.rc != 0
    assert f"{db.name}: private_address 127.0.0.1 is not reachable from the other hosts" in run.stdout, run.explain()
    assert run.changed(db.name) == 0 and run.changed(app.name) == 0, run.changed_tasks()
