"""Flow Forecaster (Flask + Gunicorn, Celery worker and beat on Redis, Postgres
created by init_db) deployed with web=2 worker=2, then scaled: a task
round-trips through Celery, the app's own health counts the workers that
answer, tasks in flight across a redeploy finish exactly once, and a release
whose workers fail after its web switch is put back everywhere. Exactly one
beat ticks after the deploy and a redeploy, whatever the number of hosts in
the beat group or their order. One stack, deployed once for every test."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import wait_for
from flow_support import INVENTORY, FlowStack

FLOW = FlowStack("flow_forecaster", http_port=9080, https_port=9443)
deployed = FLOW.fixture()


def test_second_run_changes_nothing_and_exactly_one_beat_ticks_before_and_after(deployed, docker_client):
    FLOW.assert_one_beat_ticking(docker_client)
    assert FLOW.deploy().changed() == 0
    FLOW.assert_one_beat_ticking(docker_client)


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
    if twin_first:
        run = FLOW.run(inventory=str(twin), args=["-i", INVENTORY])
    else:
        run = FLOW.run(args=["-i", str(twin)])
    assert run.rc == 0, run.explain()
    FLOW.assert_one_beat_ticking(docker_client, "beat-twin" if twin_first else "localhost")

    FLOW.deploy()
    FLOW.assert_one_beat_ticking(docker_client)


# What each container of the stack may do, as documented: the app's processes keep no capability; the data
# services and the proxy keep only those their images' entrypoints use as root. No privilege is gained in any
# of them, and none may hold more than 1024 processes and threads.
CAPABILITIES = {
    "web": [],
    "worker": [],
    "beat": [],
    "postgres": ["CHOWN", "DAC_READ_SEARCH", "FOWNER", "SETGID", "SETUID"],
    "redis": ["CHOWN", "DAC_READ_SEARCH", "SETGID", "SETUID"],
    "proxy": ["CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID"],
}


def test_every_container_runs_with_least_privilege(deployed, docker_client):
    seen = set()
    for container in docker_client.containers.list(filters={"label": f"pydeploy.stack={FLOW.name}"}):
        process = container.labels.get("pydeploy.process")
        if process not in CAPABILITIES:
            continue
        seen.add(process)
        host = container.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"], (container.name, host["CapDrop"])
        assert sorted(host["CapAdd"] or []) == CAPABILITIES[process], (container.name, host["CapAdd"])
        assert [opt.split(":")[0] for opt in host["SecurityOpt"] or []] == ["no-new-privileges"], container.name
        assert host["PidsLimit"] == 1024, container.name
        # What the kernel applies to the container's main process.
        status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
        assert "NoNewPrivs:\t1" in status, (container.name, status)
    assert seen == set(CAPABILITIES)


def test_health_reports_both_workers(deployed):
    body = FLOW.workers_answering(2)
    assert (body["status"], body["redis"], body["database"]) == ("healthy", "connected", "connected")


def test_a_forecast_round_trips_through_celery(deployed):
    params = {"targetOutcome": 100, "pBest": 10, "pWorst": 50, "pLikely": 25, "sCurveSize": 3, "nSimulations": 1000}
    status, _, body = FLOW.request("/api/async/simulate", method="POST", body={**params, "confidence": 0.85})
    assert status == 202, body
    task_id = json.loads(body)["task_id"]

    def finished():
        code, document = FLOW.get(f"/api/tasks/{task_id}")
        return document if code == 200 and document["status"] == "SUCCESS" else None

    document = wait_for(finished, timeout=90, interval=0.5, what="the forecast task")
    assert document["result"]


def test_scaling_changes_exactly_the_worker_count(deployed, docker_client):
    name = FLOW.name
    FLOW.deploy(workers=3)
    assert FLOW.workers_answering(3)["celery_workers"] == 3
    assert FLOW.worker_containers(docker_client) == [f"{name}-worker-{n}" for n in (1, 2, 3)]
    assert FLOW.beat_containers(docker_client) == [(f"{name}-beat-1", "localhost")]

    FLOW.deploy(workers=1)
    assert FLOW.workers_answering(1)["celery_workers"] == 1
    assert FLOW.worker_containers(docker_client) == [f"{name}-worker-1"]
    assert FLOW.beat_containers(docker_client) == [(f"{name}-beat-1", "localhost")]
    assert not FLOW.containers(docker_client, "worker", status="exited")

    FLOW.deploy()
    assert FLOW.workers_answering(2)["celery_workers"] == 2


def sleep_task(seconds: float) -> str:
    status, _, body = FLOW.request("/api/async/sleep", method="POST", body={"seconds": seconds})
    assert status == 202, body
    return json.loads(body)["task_id"]


def task_state(task_id: str) -> str:
    code, document = FLOW.get(f"/api/tasks/{task_id}")
    return document["status"] if code == 200 else f"HTTP {code}"


def test_tasks_in_flight_across_a_redeploy_finish_exactly_once(deployed, docker_client):
    """A 20 s task running when v2 is deployed, and short ones queued behind it:
    the old workers finish what they hold (warm shutdown), the new ones take the
    rest, and every task runs once."""
    long_task = sleep_task(20)
    wait_for(lambda: task_state(long_task) == "STARTED", timeout=60, interval=0.5, what="the long task to start")
    queued = [sleep_task(3) for _ in range(8)]

    FLOW.deploy(version="v2")
    assert {
        c.labels["pydeploy.version"]
        for c in docker_client.containers.list(
            filters={"label": [f"pydeploy.stack={FLOW.name}", "pydeploy.role=workers"]}
        )
    } == {"v2"}

    for task_id in [long_task, *queued]:
        wait_for(lambda t=task_id: task_state(t) == "SUCCESS", timeout=180, interval=1, what=f"task {task_id}")
    runs = dict(
        FLOW.query(
            "SELECT task_id, count(*) FROM forecasts WHERE task_id = ANY(%s) GROUP BY task_id",
            ([long_task, *queued],),
        )
    )
    assert runs == {task_id: 1 for task_id in [long_task, *queued]}
    FLOW.assert_one_beat_ticking(docker_client)


JOBS = {"nightly": {"schedule": "0 0 1 1 *", "command": "python -c 'print(1)'"}}


def release_versions(docker_client) -> dict[str, set[str]]:
    """Version labels of the running containers of each app process."""
    versions: dict[str, set[str]] = {}
    for container in docker_client.containers.list(filters={"label": f"pydeploy.stack={FLOW.name}"}):
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
    # The release before it is v2 (as the in-flight test left it, or deployed here when run alone). The
    # failing run also adds a job: the put-back schedules it on the release it puts back.
    if release_versions(docker_client) != {"web": {"v2"}, "worker": {"v2"}, "beat": {"v2"}}:
        assert FLOW.run({"stack_version": "v2"}).rc == 0
    base = {"stack_jobs": JOBS}
    run = FLOW.run({**base, "stack_version": "v-noworker"})
    assert run.rc != 0
    message = " ".join(run.failure_messages())
    assert "the background step failed on localhost" in message, message
    assert "the previous release v2 was put back" in message, message
    assert "Switch the upstream to the new replicas and check the app through the proxy" in run.changed_tasks()

    assert release_versions(docker_client) == {"web": {"v2"}, "worker": {"v2"}, "beat": {"v2"}}
    jobs = json.loads(Path(f"/etc/pydeploy/{FLOW.name}/jobs.json").read_text())
    assert jobs["version"] == "v2"
    assert FLOW.get("/health")[0] == 200
    FLOW.workers_answering(2)
    # The lock went back, and the next deploy runs the roles in full again.
    again = FLOW.run({**base, "stack_version": "v2"})
    assert again.rc == 0, again.explain()
    docker_client.images.remove(image.id, force=True)


def test_a_migration_tools_own_revision_is_recorded_and_guards_a_rollback(deployed):
    """stack_migrations.revision_command (a tool other than Alembic): each release's schema revision goes in
    the ledger, and a rollback to a release recorded at another revision stops before anything changes."""
    ledger = json.loads(Path(f"/var/lib/pydeploy/{FLOW.name}/releases.json").read_text())["releases"]
    revisions = {entry["version"]: entry.get("migration_after") for entry in ledger}
    assert revisions.get("v1") == "schema-v1" and revisions.get("v2") == "schema-v2", ledger
    assert ledger[-1]["version"] == "v2"
    refused = FLOW.run({"rollback_to": "v1"}, playbook="rollback.yml")
    assert refused.rc != 0 and refused.changed() == 0
    message = " ".join(refused.failure_messages())
    assert "v1 was released with the schema at revision schema-v1, the database is at schema-v2" in message, message
    assert "app_rollback_schema=proceed" in message
