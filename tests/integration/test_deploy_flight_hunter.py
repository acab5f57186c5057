"""deploy.yml -i inventories/local: the Flight Hunter app behind nginx TLS,
checked the way a user would check it."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

import pytest
from conftest import stack_query
from playbook import run_playbook
from proxy import https_request

STACK = "flight_hunter"
ENV_FILE = Path(f"/etc/pydeploy/{STACK}/app.env")
HTTPS_PORT = 8443
HTTP_PORT = 8080


def https_get(path: str, host: str = "localhost") -> tuple[int, dict, bytes]:
    return https_request(STACK, HTTPS_PORT, path, host=host)


def psql(query: str) -> list[tuple]:
    return stack_query(STACK, query)


@pytest.fixture(scope="module")
def deployed(flight_hunter_deployed):
    """Every case four times, from nothing: check, real, check, real (conftest.flight_hunter_deployed)."""
    return flight_hunter_deployed


def test_second_real_run_changes_nothing(deployed):
    assert deployed["real2"].changed() == 0, deployed["real2"].changed_tasks()


def test_check_after_deploy_predicts_no_change(deployed):
    assert deployed["check2"].changed() == 0, deployed["check2"].changed_tasks()


def test_health_through_the_proxy_reports_the_version(deployed):
    status, headers, body = https_get("/health")
    assert status == 200
    document = json.loads(body)
    assert document["status"] == "ok"
    assert document["version"] == "v2"
    assert "max-age=" in headers["Strict-Transport-Security"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"


def test_readiness_touches_postgres_and_redis(deployed):
    status, _, body = https_get("/ready")
    assert status == 200, body
    document = json.loads(body)
    assert (document["database"], document["redis"]) == ("ok", "ok")


def test_tls_handshake_fails_for_a_name_the_certificate_does_not_cover(deployed):
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get("/health", host="wrong.example")


def test_http_redirects_to_https(deployed):
    conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=10)
    conn.request("GET", "/x?y=1", headers={"Host": "localhost"})
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://localhost:{HTTPS_PORT}/x?y=1"


def test_migrated_schema_is_there(deployed):
    tables = {row[0] for row in psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"price_cache", "alerts", "alembic_version"} <= tables
    assert psql("SELECT version_num FROM alembic_version") == [("0002",)]


def test_app_role_is_not_a_superuser_and_owns_only_its_database(deployed):
    assert psql("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user") == [
        (False, False, False)
    ]
    owned = psql("SELECT datname FROM pg_database d JOIN pg_roles r ON d.datdba = r.oid WHERE r.rolname = current_user")
    assert owned == [(STACK,)]


def test_env_file_is_private(deployed):
    stat = ENV_FILE.stat()
    assert (stat.st_mode & 0o777, stat.st_uid) == (0o600, 0)


def test_containers_are_labelled_and_only_the_proxy_publishes(deployed, docker_client):
    containers = docker_client.containers.list(filters={"label": f"pydeploy.stack={STACK}"})
    by_process = {}
    for container in containers:
        by_process.setdefault(container.labels["pydeploy.process"], []).append(container)
    assert len(by_process["web"]) == 2
    assert {c.labels["pydeploy.version"] for c in by_process["web"]} == {"v2"}
    for container in containers:
        ports = {p: b for p, b in (container.attrs["NetworkSettings"]["Ports"] or {}).items() if b}
        if container.labels["pydeploy.process"] == "proxy":
            assert {b[0]["HostIp"] for b in ports.values()} == {"127.0.0.1"}
        else:
            assert ports == {}, container.name


def test_check_mode_reports_exactly_one_changed_input_with_a_diff(deployed):
    run = run_playbook(check=True, diff=True, extra_vars={"stack_env": {"APP_ENV": "local", "FEATURE_X": "on"}})
    assert run.rc == 0, run.explain()
    changed = run.changed_tasks()
    assert "Describe the web process" in changed
    # A new set of web replicas beside the old ones, the proxy switched to them, the jobs pointed at them, the
    # worker replaced.
    assert set(changed) <= {
        "Describe the web process",
        "Run the background processes",
        "Start the new replicas beside the running ones",
        "Remember which slot takes traffic",
        "Retire the old replicas, record the release, prune old images, release the lock",
        "Write the upstream of the web replicas, checked by nginx -t first",
        "Point the jobs at the current release",
        "Point the jobs at the new release",
    }, changed
    assert "Start the new replicas beside the running ones" in changed
    describe = next(result for name, result in run.tasks() if name == "Describe the web process")
    diff = json.dumps(describe.get("diff"))
    assert "FEATURE_X" in diff
    # Nothing really changed.
    status, _, _ = https_get("/health")
    assert status == 200
    assert "FEATURE_X" not in Path(f"/etc/pydeploy/{STACK}/web.json").read_text()


# --------------------------------------------------------------------------- the fast path
# A role whose inputs and state on the host are as it recorded them skips its
# tasks (host_state); anything changed behind its back is noticed and a
# redeploy repairs exactly that.


def ran(run) -> set[str]:
    """Names of the tasks that ran (not skipped) on the host."""
    return {name for name, result in run.tasks() if not result.get("skipped")}


def redeploy(**kwargs):
    run = run_playbook(**kwargs)
    assert run.rc == 0, run.explain()
    return run


def test_a_noop_redeploy_runs_few_modules_on_the_host(deployed):
    run = deployed["real2"]
    assert run.changed() == 0
    assert run.module_executions() <= 15, sorted(ran(run))
    # Every role skipped: none of their tasks ran.
    assert not ran(run) & {"Start the server", "Run the proxy", "Create the stack network", "Describe the web process"}


def test_web_replicas_removed_by_hand_are_started_again_and_run_yml_works_meanwhile(deployed, docker_client):
    web = docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"]})
    for replica in web:
        replica.remove(force=True)
    # No web container: run.yml takes the release the inventory names, with the env file and network.
    command = run_playbook(
        "run.yml", extra_vars={"cmd": ["python", "-c", "import os; print(os.environ['PYDEPLOY_VERSION'], 'ran')"]}
    )
    assert command.rc == 0, command.explain()
    assert "v2 ran" in json.dumps(command.data), command.explain()
    run = redeploy()
    assert "Start the new replicas beside the running ones" in run.changed_tasks()
    assert "Start the server" not in ran(run)  # postgres and redis skipped
    replicas = docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"]})
    assert len(replicas) == 2 and {c.labels["pydeploy.version"] for c in replicas} == {"v2"}
    assert https_get("/health")[0] == 200
    assert redeploy().changed() == 0


def test_a_stopped_redis_is_started_again(deployed, docker_client):
    docker_client.containers.get(f"{STACK}-redis").stop(timeout=5)
    run = redeploy()
    assert "Start the server" in run.changed_tasks()
    assert "Create the application's role (login, not a superuser)" not in ran(run)  # postgres skipped
    assert docker_client.containers.get(f"{STACK}-redis").status == "running"
    assert json.loads(https_get("/ready")[2])["redis"] == "ok"


def test_a_managed_file_edited_on_the_host_is_put_back(deployed):
    config = Path(f"/etc/pydeploy/{STACK}/nginx/conf.d/default.conf")
    before = config.read_text()
    config.write_text(before + "\n# edited by hand\n")
    run = redeploy()
    assert "Write the proxy configuration, checked by nginx -t first" in run.changed_tasks()
    assert config.read_text() == before
    assert "Start the new replicas beside the running ones" not in ran(run)  # the web replicas skipped
    assert https_get("/health")[0] == 200


def test_one_changed_input_runs_only_the_roles_that_read_it(deployed, docker_client):
    run = redeploy(extra_vars={"stack_env": {"APP_ENV": "local", "FEATURE_X": "on"}})
    assert "Start the new replicas beside the running ones" in run.changed_tasks()
    assert not ran(run) & {"Start the server", "Run the proxy", "Create the stack network"}
    web = docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=web"]})
    assert all("FEATURE_X=on" in c.attrs["Config"]["Env"] for c in web)
    back = redeploy()
    assert "Start the new replicas beside the running ones" in back.changed_tasks()
    assert redeploy().changed() == 0
