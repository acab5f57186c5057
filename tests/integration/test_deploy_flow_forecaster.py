"""Flow Forecaster (Flask + Gunicorn, Celery worker and beat on Redis, Postgres
created by init_db) deployed with web=2 worker=2, then scaled: a task
round-trips through Celery, the app's own health counts the workers that
answer, exactly one beat ticks whatever the scale or the number of hosts in
the beat group, and tasks in flight across a redeploy finish exactly once."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from conftest import stack_query, teardown_stack, wait_for
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
    "beat": {
        "command": "celery -A celery_app beat --schedule /tmp/celerybeat-schedule --loglevel=INFO",
        "singleton": True,
    },
}
TICK_SECONDS = 2  # BEAT_TICK_SECONDS in the inventory


def deploy(workers: int | None = None, version: str | None = None, args: list[str] | None = None):
    extra = {}
    if workers is not None:
        extra["stack_processes"] = {**PROCESSES, "worker": {**PROCESSES["worker"], "replicas": workers}}
    if version is not None:
        extra["stack_version"] = version
    run = run_playbook(inventory=INVENTORY, extra_vars=extra or None, args=args)
    assert run.rc == 0, run.explain()
    return run


def beat_containers(docker_client) -> list[tuple[str, str]]:
    """(name, inventory host) of every beat container, running or not."""
    return sorted(
        (c.name, c.labels.get("pydeploy.host", ""))
        for c in docker_client.containers.list(
            all=True, filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=beat"]}
        )
    )


def ticks_in(seconds: float) -> int:
    """Beat ticks recorded during the next ``seconds`` (one per TICK_SECONDS from one beat)."""
    start = stack_query(STACK, "SELECT now()")[0][0]
    time.sleep(seconds)
    rows = stack_query(STACK, "SELECT count(*) FROM forecasts WHERE kind = 'tick' AND started_at > %s", (start,))
    return rows[0][0]


def assert_one_beat_ticking(docker_client, host: str = "localhost") -> None:
    assert beat_containers(docker_client) == [(f"{STACK}-beat-1", host)]
    window = 20
    # One beat: about window / TICK_SECONDS ticks; two beats would make twice that.
    assert 3 <= ticks_in(window) <= window / TICK_SECONDS + 2


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
    assert beat_containers(docker_client) == [(f"{STACK}-beat-1", "localhost")]

    deploy(workers=1)
    assert workers_answering(1)["celery_workers"] == 1
    assert worker_containers(docker_client) == [f"{STACK}-worker-1"]
    assert beat_containers(docker_client) == [(f"{STACK}-beat-1", "localhost")]
    assert not docker_client.containers.list(
        all=True, filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.process=worker"], "status": "exited"}
    )

    deploy()
    assert workers_answering(2)["celery_workers"] == 2


def test_exactly_one_beat_ticks_after_deploy_and_redeploy(deployed, docker_client):
    assert_one_beat_ticking(docker_client)
    deploy()
    assert_one_beat_ticking(docker_client)


@pytest.mark.parametrize("twin_first", [False, True], ids=["twin-second", "twin-first"])
def test_one_beat_with_two_hosts_in_the_beat_group(deployed, docker_client, tmp_path, twin_first):
    """A second inventory name for this same machine joins the beat group: still one beat,
    on the first host of the group, and moving it never runs two."""
    twin = tmp_path / "twin.yml"
    twin.write_text(
        "all:\n"
        "  hosts:\n"
        "    beat-twin:\n"
        "      ansible_connection: local\n"
        '      ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        "  children:\n"
        "    beat:\n"
        "      hosts:\n"
        "        beat-twin: {}\n"
    )
    # The group lists hosts in the order the inventory sources are read.
    args = ["-i", str(twin)]
    if twin_first:
        run = run_playbook(inventory=str(twin), args=["-i", INVENTORY])
    else:
        run = run_playbook(inventory=INVENTORY, args=args)
    assert run.rc == 0, run.explain()
    assert_one_beat_ticking(docker_client, "beat-twin" if twin_first else "localhost")

    deploy()
    assert_one_beat_ticking(docker_client)


def sleep_task(seconds: float) -> str:
    status, _, body = https_request(STACK, PORT, "/api/async/sleep", method="POST", body={"seconds": seconds})
    assert status == 202, body
    return json.loads(body)["task_id"]


def task_state(task_id: str) -> str:
    code, document = get(f"/api/tasks/{task_id}")
    return document["status"] if code == 200 else f"HTTP {code}"


def test_tasks_in_flight_across_a_redeploy_finish_exactly_once(deployed, docker_client):
    """A 20 s task running when v2 is deployed, and short ones queued behind it:
    the old workers finish what they hold (warm shutdown), the new ones take the
    rest, and every task runs once."""
    long_task = sleep_task(20)
    wait_for(lambda: task_state(long_task) == "STARTED", timeout=60, interval=0.5, what="the long task to start")
    queued = [sleep_task(3) for _ in range(8)]

    deploy(version="v2")
    assert {
        c.labels["pydeploy.version"]
        for c in docker_client.containers.list(filters={"label": [f"pydeploy.stack={STACK}", "pydeploy.role=workers"]})
    } == {"v2"}

    for task_id in [long_task, *queued]:
        wait_for(lambda t=task_id: task_state(t) == "SUCCESS", timeout=180, interval=1, what=f"task {task_id}")
    runs = dict(
        stack_query(
            STACK,
            "SELECT task_id, count(*) FROM forecasts WHERE task_id = ANY(%s) GROUP BY task_id",
            ([long_task, *queued],),
        )
    )
    assert runs == {task_id: 1 for task_id in [long_task, *queued]}
    assert_one_beat_ticking(docker_client)


JOBS = {"nightly": {"schedule": "0 0 1 1 *", "command": "python -c 'print(1)'"}}


def release_versions(docker_client) -> dict[str, set[str]]:
    """Version labels of the running containers of each app process."""
    versions: dict[str, set[str]] = {}
    for container in docker_client.containers.list(filters={"label": f"pydeploy.stack={STACK}"}):
        process = container.labels["pydeploy.process"]
        if process in ("web", "worker", "beat"):
            versions.setdefault(process, set()).add(container.labels["pydeploy.version"])
    return versions


def test_a_failed_background_step_after_the_switch_puts_the_previous_release_back(deployed, docker_client, bed):
    """A release whose workers cannot start (its image lacks celery) fails in the background step after its
    web replicas took the traffic: web, workers, beat and the jobs all go back to the previous release."""
    broken = "127.0.0.1:5000/pydeploy/flow-forecaster:v-noworker"
    user = docker_client.images.get("127.0.0.1:5000/pydeploy/flow-forecaster:v2").attrs["Config"].get("User") or "root"
    dockerfile = (
        f"FROM 127.0.0.1:5000/pydeploy/flow-forecaster:v2\nUSER root\nRUN rm /opt/venv/bin/celery\nUSER {user}\n"
    )
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()),
        tag=broken,
        pull=False,
        rm=True,
    )
    docker_client.images.push("127.0.0.1:5000/pydeploy/flow-forecaster", tag="v-noworker")
    base = {"stack_jobs": JOBS}
    assert run_playbook(inventory=INVENTORY, extra_vars={**base, "stack_version": "v2"}).rc == 0

    run = run_playbook(inventory=INVENTORY, extra_vars={**base, "stack_version": "v-noworker"})
    assert run.rc != 0
    message = " ".join(run.failure_messages())
    assert "the background step failed on localhost" in message, message
    assert "the previous release v2 was put back" in message, message
    assert "Switch the upstream to the new replicas (nginx -t, graceful reload)" in run.changed_tasks()

    assert release_versions(docker_client) == {"web": {"v2"}, "worker": {"v2"}, "beat": {"v2"}}
    jobs = json.loads(Path(f"/etc/pydeploy/{STACK}/jobs.json").read_text())
    assert jobs["version"] == "v2"
    assert get("/health")[0] == 200
    workers_answering(2)
    # The lock went back, and the next deploy runs the roles in full again.
    again = run_playbook(inventory=INVENTORY, extra_vars={**base, "stack_version": "v2"})
    assert again.rc == 0, again.explain()
    docker_client.images.remove(image.id, force=True)
