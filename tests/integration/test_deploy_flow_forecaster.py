"""Flow Forecaster (Flask + Gunicorn, Celery worker on Redis, Postgres created
by init_db) deployed with web=2 worker=2, then scaled: a task round-trips
through Celery, and the app's own health counts the workers that answer."""

from __future__ import annotations

import json

import pytest
from conftest import teardown_stack, wait_for
from playbook import run_playbook
from proxy import https_request

STACK = "flow_forecaster"
INVENTORY = "tests/integration/inventories/flow_forecaster"
PORT = 9443
PROCESSES = {
    "web": {
        "command": "gunicorn --bind 0.0.0.0:8080 --workers 2 --graceful-timeout 30 app:app",
        "port": 8080,
        "replicas": 2,
    },
    "worker": {"command": "celery -A celery_app worker --concurrency=2 --loglevel=INFO", "stop_grace_period": 60},
}


def deploy(workers: int | None = None):
    extra = None
    if workers is not None:
        extra = {"stack_processes": {**PROCESSES, "worker": {**PROCESSES["worker"], "replicas": workers}}}
    run = run_playbook(inventory=INVENTORY, extra_vars=extra)
    assert run.rc == 0, run.explain()
    return run


def get(path: str) -> tuple[int, dict]:
    status, _, body = https_request(STACK, PORT, path)
    return status, json.loads(body)


def workers_answering(expected: int) -> dict:
    def check():
        status, body = get("/api/async/health")
        return body if status == 200 and body["celery_workers"] == expected else None

    return wait_for(check, timeout=90, interval=1, what=f"{expected} Celery workers answering")


def worker_containers(docker_client) -> list[str]:
    return sorted(
        c.name
        for c in docker_client.containers.list(
            filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=worker"]}
        )
    )


@pytest.fixture(scope="module")
def deployed(bed, docker_client):
    teardown_stack(docker_client, STACK)
    first = deploy()
    yield first
    teardown_stack(docker_client, STACK)


def test_second_run_changes_nothing(deployed):
    assert deploy().changed() == 0


def test_health_reports_both_workers(deployed):
    body = workers_answering(2)
    assert (body["status"], body["redis"], body["database"]) == ("healthy", "connected", "connected")


def test_a_forecast_round_trips_through_celery(deployed):
    params = {"targetOutcome": 100, "pBest": 10, "pWorst": 50, "pLikely": 25, "sCurveSize": 3, "nSimulations": 1000}
    status, _, body = https_request(
        STACK, PORT, "/api/async/simulate", method="POST", body={**params, "confidence": 0.85}
    )
    assert status == 202, body
    task_id = json.loads(body)["task_id"]

    def finished():
        code, document = get(f"/api/tasks/{task_id}")
        return document if code == 200 and document["status"] == "SUCCESS" else None

    document = wait_for(finished, timeout=90, interval=0.5, what="the forecast task")
    assert document["result"]


def test_scaling_changes_exactly_the_worker_count(deployed, docker_client):
    deploy(workers=3)
    assert workers_answering(3)["celery_workers"] == 3
    assert worker_containers(docker_client) == [f"{STACK}-worker-{n}" for n in (1, 2, 3)]

    deploy(workers=1)
    assert workers_answering(1)["celery_workers"] == 1
    assert worker_containers(docker_client) == [f"{STACK}-worker-1"]
    assert not docker_client.containers.list(
        all=True, filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=worker"], "status": "exited"}
    )

    deploy()
    assert workers_answering(2)["celery_workers"] == 2
