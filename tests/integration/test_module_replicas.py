"""The replicas module on the bed's engine, through its own task as a user runs it: starting the replicas
of a step (check, real, check, real) with every setting a web replica gets and each one checked over HTTP,
a changed description replacing them, a replica that never answers failing the task by name, stopped ones
started as they were, and removal (check, real, check, real) sending every stop signal before waiting for
any container to exit."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from conftest import TEST_LABEL
from playbook import module_task

SERVER = """
import http.server, json, os, signal, sys, time
grace = float(os.environ.get('GRACE', '0'))
def stop(*_):
    time.sleep(grace)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({'status': 'ok', 'version': os.environ['VERSION']}).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(('0.0.0.0', 8000), Health).serve_forever()
"""


def replicas(tmp_path: Path, args: dict, *, check: bool = False, verbosity: str = "") -> tuple[int, dict, str]:
    return module_task(tmp_path, "replicas", args, check=check, verbosity=verbosity)


@pytest.fixture
def step(tmp_path, docker_client, bed_image):
    """A network, an env file holding a secret, and the description of two replicas."""
    tag = uuid.uuid4().hex[:8]
    network = docker_client.networks.create(f"pydeploy-test-{tag}", labels={TEST_LABEL: "1"})
    env_file = tmp_path / "app.env"
    env_file.write_text("# secrets\nAPI_TOKEN=canary-replicas-4d1f\n")
    env_file.chmod(0o600)
    args = {
        "names": [f"pydeploy-test-{tag}-1", f"pydeploy-test-{tag}-2"],
        "image": bed_image("python"),
        "command": ["python", "-c", SERVER],
        "env": {"VERSION": "v1"},
        "env_file": str(env_file),
        "network": network.name,
        "labels": {TEST_LABEL: "1", "pydeploy.spec": "spec-1"},
        "restart_policy": "unless-stopped",
        "stop_timeout": 7,
        "memory": "256m",
        "cpus": 0.5,
        "log_options": {"max-size": "5m", "max-file": "2"},
        "healthcheck": {"test": ["CMD", "true"], "interval": "5s", "timeout": "3s", "start_period": "1s", "retries": 2},
        "health": {"port": 8000, "path": "/health", "json": {"status": "ok"}, "timeout": 60},
    }
    yield args, network
    for container in docker_client.containers.list(all=True, filters={"network": network.name}):
        container.remove(force=True)
    network.remove()


def present(docker_client, names):
    # Filtered by name: an unfiltered list inspects every container on the engine
    # and fails when another test removes one of them in between.
    found = docker_client.containers.list(all=True, filters={"name": [f"^/{n}$" for n in names]})
    return {c.name: c for c in found if c.name in names}


def test_start_check_real_check_real(tmp_path, step, docker_client):
    args, network = step
    names = args["names"]

    rc, first, _ = replicas(tmp_path, args, check=True)
    assert (rc, first["changed"]) == (0, True), first
    assert [c["action"] for c in first["containers"]] == ["created", "created"]
    assert present(docker_client, names) == {}

    rc, real, _ = replicas(tmp_path, args)
    assert (rc, real["changed"]) == (0, True), real
    assert [c["action"] for c in real["containers"]] == ["created", "created"]
    # Each answered over HTTP on its address in the network before the task returned.
    assert [check["healthy"] for check in real["checks"]] == [True, True], real["checks"]
    assert {check["name"] for check in real["checks"]} == set(names)
    # The env file's secret reaches the containers, and nothing the task returns or logs at -vvvv.
    assert "canary-replicas-4d1f" not in json.dumps(real)
    rc, _, output = replicas(tmp_path, args, verbosity="-vvvv")
    assert rc == 0 and "canary-replicas-4d1f" not in output and "kept" in output
    running = present(docker_client, names)
    assert sorted(running) == sorted(names)
    for item in real["containers"]:
        container = running[item["name"]]
        attrs = container.attrs
        assert container.status == "running"
        assert item["id"] == container.id
        assert item["address"] == attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        assert list(attrs["NetworkSettings"]["Networks"]) == [network.name]
        assert "API_TOKEN=canary-replicas-4d1f" in attrs["Config"]["Env"] and "VERSION=v1" in attrs["Config"]["Env"]
        assert attrs["Config"]["Labels"]["pydeploy.spec"] == "spec-1"
        assert attrs["Config"]["StopTimeout"] == 7
        assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert attrs["HostConfig"]["Memory"] == 256 * 1024**2
        assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
        assert attrs["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "5m", "max-file": "2"}}
        assert attrs["Config"]["Healthcheck"]["Test"] == ["CMD", "true"]
        assert attrs["Config"]["Healthcheck"]["Interval"] == 5 * 10**9

    for check in (True, False):
        rc, again, _ = replicas(tmp_path, args, check=check)
        assert (rc, again["changed"]) == (0, False), again
        assert [c["action"] for c in again["containers"]] == ["kept", "kept"]
    assert {c.name: c.id for c in present(docker_client, names).values()} == {
        c["name"]: c["id"] for c in real["containers"]
    }

    # Another description (its fingerprint label) replaces them.
    changed = {**args, "env": {"VERSION": "v2"}, "labels": {**args["labels"], "pydeploy.spec": "spec-2"}}
    rc, replaced, _ = replicas(tmp_path, changed)
    assert (rc, replaced["changed"]) == (0, True), replaced
    assert [c["action"] for c in replaced["containers"]] == ["replaced", "replaced"]
    assert not {c["id"] for c in replaced["containers"]} & {c["id"] for c in real["containers"]}
    assert all("VERSION=v2" in c.attrs["Config"]["Env"] for c in present(docker_client, names).values())


def test_a_replica_that_never_answers_fails_the_task_naming_it(tmp_path, step, docker_client):
    args, _ = step
    silent = {**args, "command": ["sleep", "600"], "health": {**args["health"], "timeout": 2}}
    rc, result, _ = replicas(tmp_path, silent)
    assert rc != 0 and result.get("failed"), result
    assert "2 of 2 health check(s) not healthy" in result["msg"], result["msg"]
    for name in args["names"]:
        assert name in result["msg"]
    # They were started: what to do with them is the caller's (the rollout removes them).
    assert len(present(docker_client, args["names"])) == 2


def test_stopped_replicas_are_started_as_they_were(tmp_path, step, docker_client):
    args, _ = step
    rc, real, _ = replicas(tmp_path, args)
    assert rc == 0, real
    for container in present(docker_client, args["names"]).values():
        container.stop(timeout=1)
    again = {"names": args["names"], "network": args["network"], "health": args["health"]}
    rc, started, _ = replicas(tmp_path, again)
    assert (rc, started["changed"]) == (0, True), started
    assert [c["action"] for c in started["containers"]] == ["started", "started"]
    assert [c["id"] for c in started["containers"]] == [c["id"] for c in real["containers"]]
    # Without an image, a container that does not exist is an error, not a guess.
    rc, missing, _ = replicas(tmp_path, {**again, "names": [args["names"][0] + "-x"]})
    assert rc != 0 and "does not exist: give image to create it" in missing["msg"], missing


def test_an_image_not_on_the_host_fails_before_creating_anything(tmp_path, step, docker_client):
    args, _ = step
    rc, result, _ = replicas(tmp_path, {**args, "image": "127.0.0.1:5999/pydeploy/absent:v1"})
    assert rc != 0 and "is not on the host: pull it first" in result["msg"], result
    assert present(docker_client, args["names"]) == {}


def test_remove_check_real_check_real_signals_every_replica_first(tmp_path, step, docker_client):
    args, _ = step
    # Each replica takes 2 s to exit after its stop signal.
    rc, real, _ = replicas(tmp_path, {**args, "env": {"VERSION": "v1", "GRACE": "2"}})
    assert rc == 0, real
    names = args["names"]
    gone = {"names": names, "state": "absent", "stop_timeout": 20}

    rc, first, _ = replicas(tmp_path, gone, check=True)
    assert (rc, first["changed"]) == (0, True), first
    assert len(present(docker_client, names)) == 2

    since = int(time.time())
    rc, removed, _ = replicas(tmp_path, gone)
    assert (rc, removed["changed"]) == (0, True), removed
    assert [c["action"] for c in removed["containers"]] == ["removed", "removed"]
    assert present(docker_client, names) == {}

    # Every replica got its stop signal before any of them exited: they were stopped side by side.
    events = docker_client.events(
        decode=True, filters={"type": "container", "event": ["kill", "die"]}, since=since, until=int(time.time()) + 1
    )
    order = []
    for event in events:
        name = event.get("Actor", {}).get("Attributes", {}).get("name")
        if name in names:
            order.append((event["Action"].split(":")[0], name))
    kills = [index for index, (action, _) in enumerate(order) if action == "kill"]
    dies = [index for index, (action, _) in enumerate(order) if action == "die"]
    assert len(kills) >= 2 and len(dies) == 2, order
    assert max(kills) < min(dies), order

    for check in (True, False):
        rc, again, _ = replicas(tmp_path, gone, check=check)
        assert (rc, again["changed"]) == (0, False), again
        assert [c["action"] for c in again["containers"]] == ["absent", "absent"]


def test_containers_each_with_its_own_description_in_one_call(tmp_path, step, docker_client):
    """The background processes of a host: one call, each container described by the shared options and its
    own entry; a change to one entry replaces that container alone, stopped gracefully first."""
    args, _ = step
    shared = {key: value for key, value in args.items() if key not in ("names", "health", "memory", "cpus")}
    first, second = (f"{name}-p" for name in args["names"])
    entries = [
        {"name": first, "env": {"GRACE": "1"}, "labels": {"pydeploy.process": "worker"}, "stop_timeout": 20},
        {"name": second, "memory": "128m", "labels": {"pydeploy.process": "beat"}, "healthcheck": {"test": ["NONE"]}},
    ]
    task = {**shared, "containers": entries}
    for check, action in ((True, "created"), (False, "created"), (True, "kept"), (False, "kept")):
        rc, result, _ = replicas(tmp_path, task, check=check)
        assert (rc, result["changed"]) == (0, action != "kept"), result
        assert [c["action"] for c in result["containers"]] == [action, action], result
    running = present(docker_client, [first, second])
    worker, beat = running[first].attrs, running[second].attrs
    assert "GRACE=1" in worker["Config"]["Env"] and "GRACE=1" not in beat["Config"]["Env"]
    assert "API_TOKEN=canary-replicas-4d1f" in beat["Config"]["Env"]
    assert worker["Config"]["StopTimeout"] == 20 and beat["Config"]["StopTimeout"] == 7
    assert worker["HostConfig"]["Memory"] == 0 and beat["HostConfig"]["Memory"] == 128 * 1024**2
    assert worker["Config"]["Healthcheck"]["Test"] == ["CMD", "true"] and beat["Config"]["Healthcheck"]["Test"] == [
        "NONE"
    ]
    assert worker["Config"]["Labels"]["pydeploy.process"] == "worker" and worker["Config"]["Labels"][TEST_LABEL] == "1"

    # A changed command (no label says so: the module's digest of the description does) replaces that one
    # container: its stop signal first, then its grace, then the new container.
    since = int(time.time())
    changed = {**task, "containers": [{**entries[0], "command": ["python", "-u", "-c", SERVER]}, entries[1]]}
    rc, result, _ = replicas(tmp_path, changed)
    assert (rc, result["changed"]) == (0, True), result
    assert [c["action"] for c in result["containers"]] == ["replaced", "kept"], result
    events = docker_client.events(
        decode=True, filters={"type": "container", "event": ["kill", "die"]}, since=since, until=int(time.time()) + 1
    )
    old = [
        (event["Action"], event["Actor"]["Attributes"].get("signal"))
        for event in events
        if event["Actor"]["Attributes"].get("name") == first and event["id"] == running[first].id
    ]
    assert old and old[0] == ("kill", "15"), old

    # Bad entries are refused before anything changes.
    rc, refused, _ = replicas(tmp_path, {**task, "containers": [entries[0], entries[0]]})
    assert rc != 0 and f"{first} is given more than once" in refused["msg"], refused
    rc, refused, _ = replicas(tmp_path, {**task, "names": [first]})
    assert rc != 0 and "mutually exclusive" in refused["msg"], refused
    rc, refused, _ = replicas(tmp_path, {**task, "containers": [{"name": first, "healthcheck": {"tset": ["NONE"]}}]})
    assert rc != 0 and f"{first}: healthcheck takes test, interval" in refused["msg"] and "tset" in refused["msg"]


def test_an_overlapping_replacement_starts_first_and_the_old_one_stops_once_it_is_healthy(
    tmp_path, step, docker_client
):
    """overlap: the new container starts beside the old one (renamed meanwhile), and the old one gets its
    stop signal only once the new one is healthy - its check's command run by the module, not only at the
    engine's interval (30 s here, and its first check never comes before the kill); a replacement that
    turns unhealthy is removed and the old one keeps running under its name."""
    args, _ = step
    shared = {key: value for key, value in args.items() if key not in ("names", "health", "memory", "cpus")}
    name = f"{args['names'][0]}-o"
    answers = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/')"]
    entry = {
        "name": name,
        "overlap": True,
        "labels": {"pydeploy.process": "worker"},
        "healthcheck": {"test": answers, "interval": "30s", "timeout": "2s", "start_period": "30s", "retries": 3},
    }
    task = {**shared, "containers": [entry]}
    rc, result, _ = replicas(tmp_path, task)
    assert (rc, [c["action"] for c in result["containers"]]) == (0, ["created"]), result
    old = docker_client.containers.get(name)

    since = int(time.time())
    rc, result, _ = replicas(tmp_path, {**task, "env": {"VERSION": "v2"}})
    assert (rc, [c["action"] for c in result["containers"]]) == (0, ["replaced"]), result
    new = docker_client.containers.get(name)
    assert new.id != old.id and "VERSION=v2" in new.attrs["Config"]["Env"]
    events = docker_client.events(
        decode=True,
        filters={"type": "container", "event": ["start", "health_status", "kill", "exec_die"]},
        since=since,
        until=int(time.time()) + 1,
    )
    seen = [
        ("new" if event["id"] == new.id else "old", event["Action"], event["Actor"]["Attributes"].get("exitCode"))
        for event in events
        if event["id"] in (old.id, new.id)
    ]
    kill = next(index for index, event in enumerate(seen) if event[:2] == ("old", "kill"))
    started = seen.index(("new", "start", None))
    passed = [index for index, event in enumerate(seen) if event == ("new", "exec_die", "0")]
    assert passed and started < passed[0] < kill, seen
    assert ("new", "health_status: healthy", None) not in seen[:kill], seen

    broken = {**entry, "healthcheck": {"test": ["CMD", "false"], "interval": "1s", "timeout": "2s", "retries": 1}}
    rc, refused, _ = replicas(tmp_path, {**task, "containers": [broken]})
    assert rc != 0 and f"the replacement of {name} is unhealthy: {name} keeps running as it was" in refused["msg"]
    kept = docker_client.containers.get(name)
    assert kept.id == new.id and kept.status == "running"
    assert not docker_client.containers.list(all=True, filters={"name": f"{name}-old-"})


def test_named_volumes_are_created_labelled_and_shared_check_real_check_real(tmp_path, step, docker_client):
    """Two containers share a named volume, one read-only; the volume is created with its labels, once."""
    args, _network = step
    volume = f"{args['names'][0]}-shared"
    writer, reader = args["names"]
    wanted = {
        **{key: value for key, value in args.items() if key not in ("names", "health")},
        "containers": [
            {"name": writer, "command": ["sh", "-c", "echo written > /data/note && exec sleep 600"]},
            {"name": reader, "command": ["sleep", "600"], "volumes": [f"{volume}:/data:ro"]},
        ],
        "volumes": [f"{volume}:/data"],
        "volume_labels": {TEST_LABEL: "1", "pydeploy.stack": "replicas-test"},
        "healthcheck": {"test": ["NONE"]},
    }
    try:
        rc, first, _ = replicas(tmp_path, wanted, check=True)
        assert (rc, first["changed"], first["volumes_created"]) == (0, True, [volume]), first
        assert not docker_client.volumes.list(filters={"name": volume})

        rc, real, _ = replicas(tmp_path, wanted)
        assert (rc, real["changed"], real["volumes_created"]) == (0, True, [volume]), real
        assert docker_client.volumes.get(volume).attrs["Labels"] == {TEST_LABEL: "1", "pydeploy.stack": "replicas-test"}
        running = present(docker_client, args["names"])
        mounts = {name: running[name].attrs["Mounts"] for name in args["names"]}
        assert [(m["Name"], m["Destination"], m["RW"]) for m in mounts[writer]] == [(volume, "/data", True)]
        assert [(m["Name"], m["Destination"], m["RW"]) for m in mounts[reader]] == [(volume, "/data", False)]
        deadline = time.monotonic() + 30
        while running[reader].exec_run(["cat", "/data/note"]).output.strip() != b"written":
            assert time.monotonic() < deadline, "the reader never saw the writer's file"
            time.sleep(0.2)
        assert running[reader].exec_run(["touch", "/data/other"]).exit_code != 0  # read-only

        for check in (True, False):
            rc, again, _ = replicas(tmp_path, wanted, check=check)
            assert (rc, again["changed"], again["volumes_created"]) == (0, False, []), again
            assert [c["action"] for c in again["containers"]] == ["kept", "kept"]

        rc, bad, _ = replicas(tmp_path, {**wanted, "volumes": [f"{volume}:data"]})
        assert rc != 0 and "is not source:/path" in bad["msg"], bad
    finally:
        for container in present(docker_client, args["names"]).values():
            container.remove(force=True)
        for found in docker_client.volumes.list(filters={"name": volume}):
            found.remove(force=True)
