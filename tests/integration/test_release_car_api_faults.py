"""Car API releases that fail, under a steady request load through nginx: a
release failing its health checks or its migration never gets traffic, and one
failing after the switch is switched back with the proxy listing every old
replica; a release one replica at a time loses no request.  A stack of its own
(car_faults), so that these run beside test_release_car_api.py."""

from __future__ import annotations

import re
import time

import pytest
from release_support import V1, V2, WEB_PORT, CarStack, fixtures

CAR = CarStack("car_faults", http_port=9390, https_port=9753)
mirror, extra, released = fixtures(CAR)


def test_a_release_failing_its_health_check_never_gets_traffic(released, extra, docker_client):
    before = CAR.web_containers(docker_client)
    with CAR.load() as load:
        # Never healthy: the run fails once the time each replica is given runs out.
        run = CAR.deploy(extra, "v-unhealthy", more={"app_health_timeout": 10})
    assert run.rc != 0
    message = " ".join(run.failure_messages())
    assert "v-unhealthy was not released" in message and "health" in message.lower(), message
    assert load.failures == [] and set(load.serving()) == {V1}
    assert CAR.web_containers(docker_client) == before
    assert CAR.ledger_versions()[-1] == V1


def test_a_failing_migration_switches_nothing(released, extra, docker_client):
    before = CAR.web_containers(docker_client)
    run = CAR.deploy(extra, "v-badmigration")
    assert run.rc != 0
    assert "car_owners" in " ".join(run.failure_messages())
    assert CAR.web_containers(docker_client) == before
    assert CAR.serving_version() == V1


@pytest.mark.parametrize(
    "health",
    [
        {"path": "/no-such-health-path", "expect": {"status": "ok"}},
        # The liveness check passes; the readiness check (stack_health.ready) is the one answered 404.
        {"path": "/health_check", "expect": {"status": "ok"}, "ready": {"path": "/no-such-ready-path"}},
    ],
    ids=["health", "ready"],
)
def test_a_definitive_wrong_answer_fails_the_release_at_once_naming_it(released, extra, docker_client, health):
    """A health path the release answers 404 is an answer, not a start under way: the run gives up on it
    after three answers, not after app_health_timeout (300 s here), and names what came back."""
    before = CAR.web_containers(docker_client)
    run = CAR.deploy(extra, V2, more={"stack_health": health, "app_health_timeout": 300})
    assert run.rc != 0
    message = " ".join(run.failure_messages())
    assert "gave up on a definitive answer" in message and "expected status 200, got 404" in message, message
    waited = float(re.search(r"not healthy after ([0-9.]+)s", message).group(1))
    assert waited < 10, message
    assert CAR.web_containers(docker_client) == before
    assert CAR.serving_version() == V1


def test_a_release_one_replica_at_a_time_loses_no_request(released, extra, docker_client):
    start = CAR.serving_version()
    with CAR.load() as load, CAR.running_web(docker_client) as running:
        # Each replica is also asked for a page that needs the database before it takes traffic.
        health = {"path": "/health_check", "expect": {"status": "ok"}, "ready": {"path": "/api/cars?limit=1"}}
        run = CAR.deploy(extra, V2, more={"app_rollout_batch_size": 1, "stack_health": health})
        assert run.rc == 0, run.explain()
        time.sleep(2)
    assert load.failures == [], load.failures[:10]
    assert load.serving()[0] == start and load.serving()[-1] == V2
    # Three replicas serve throughout; one more at most while a step starts its replica.
    assert running.most == 4, running.most
    assert [version for _, version in CAR.web_containers(docker_client)] == [V2, V2, V2]
    steps = [name for name, _ in run.tasks() if name == "Start the new replicas beside the running ones"]
    assert len(steps) == 3, steps
    ready = [
        result
        for name, result in run.tasks()
        if name == "Check that each new replica is ready (stack_health.ready)" and not result.get("skipped")
    ]
    assert len(ready) == 3 and all(len(result["checks"]) == 1 for result in ready), ready
    assert CAR.ledger_versions()[-1] == V2


# All at once (0), nothing of the old release was stopped when the check fails: the proxy is
# switched back to the old replicas still running, and that switch alone must list them all.
@pytest.mark.parametrize("batch", [1, 0], ids=["one-at-a-time", "all-at-once"])
def test_a_release_failing_after_the_switch_is_switched_back(released, extra, docker_client, batch):
    """v-badproxy passes its direct checks and fails once nginx sends it traffic: the
    proxy goes back to the running release, old replicas an earlier step stopped are
    started again, and the run names the check and what it returned."""
    before = CAR.serving_version()
    old = [name for name, _ in CAR.web_containers(docker_client)]
    with CAR.running_web(docker_client) as seen:
        # The check through the proxy is given 8 s (30 by default): v-badproxy never passes it.
        run = CAR.deploy(extra, "v-badproxy", more={"app_rollout_batch_size": batch, "nginx_switch_check_timeout": 8})
    assert run.rc != 0
    message = " ".join(run.failure_messages())
    assert (
        "v-badproxy was not released (Switch the upstream to the new replicas and check the app through the proxy "
        "failed" in message
    ), message
    assert "did not answer as expected through the proxy after the switch" in message, message
    # What it returned: the replicas' 503, or nginx's 502 once it marked them all failed.
    assert "expected status 200, got 50" in message, message
    assert "keep serving" in message
    replicas = CAR.web_containers(docker_client)
    assert [version for _, version in replicas] == [before] * 3
    assert len(CAR.running_web_containers(docker_client)) == 3
    # The proxy's upstream lists every old replica again, and none of the release's own.
    assert CAR.upstream_servers() == sorted(f"{name}:{WEB_PORT}" for name in old), CAR.upstream.read_text()
    new = set(seen.names) - set(old)
    assert new, seen.names
    assert not [server for server in CAR.upstream_servers() if server.split(":")[0] in new]
    assert {CAR.serving_version() for _ in range(12)} == {before}
    assert CAR.ledger_versions()[-1] == before
