"""Notifications (stack_notify) of a Flight Hunter stack of its own (fh_notify, https://localhost:10743), to
webhook receivers on loopback: a deploy that lands sends its summary once, and a receiver answering 500 does
not fail it (a warning says so); a scheduled job that fails, run as its cron.d line runs it, sends its name,
exit code and log tail once; the scheduled backup, its S3 endpoint stopped, sends backup_failed once; the
restart check sends a container that restarts more than 3 times (a crashing container of the test's own,
labelled as a process of the stack) with the process's name, and not again on the next run, and likewise a
process killed for lack of memory (64 MiB) and restarted; a deploy whose
migration fails sends one event naming the step. The webhooks' token never appears in the -vvvv output, the
returned JSON, nor in a file of the stack that is not 0600."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import OOM_HOG, teardown_stack, wait_for
from playbook import run_playbook
from s3fault import FaultProxy
from webhook_receiver import Receiver

STACK = "fh_notify"
INVENTORY = "tests/integration/inventories/flight_hunter_cron"
HTTP_PORT, HTTPS_PORT = 10380, 10743
TOKEN = "T0KEN-" + uuid.uuid4().hex
# February 31st: cron never fires these; the tests run them.
NEVER = "0 0 31 2 *"
CONFIG = Path(f"/etc/pydeploy/{STACK}")
LOGS = Path(f"/var/log/pydeploy/{STACK}")
JOBS = {"failing": {"schedule": NEVER, "command": ["sh", "-c", "echo starting; echo failing on purpose >&2; exit 3"]}}


@pytest.fixture(scope="module")
def receivers():
    with Receiver() as ok, Receiver(status=500) as failing:
        yield ok, failing


@pytest.fixture(scope="module")
def s3_proxy(bed, s3conf):
    """The bed's S3 behind a proxy of the test's own, which the backup test stops."""
    with FaultProxy(s3conf["endpoint"]) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def backup_bucket(s3):
    name = f"fh-notify-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    yield name
    from backup_support import empty_bucket

    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)


@pytest.fixture(scope="module")
def extra(receivers, s3_proxy, s3conf, backup_bucket):
    ok, failing = receivers
    return {
        "stack_name": STACK,
        "nginx_http_port": HTTP_PORT,
        "nginx_https_port": HTTPS_PORT,
        "stack_jobs": JOBS,
        "cron_restarts_schedule": NEVER,
        "stack_backup": {
            "s3": {
                "endpoint_url": s3_proxy.url,
                "bucket": backup_bucket,
                "region": s3conf["region"],
                "access_key": s3conf["access_key"],
                "secret_key": s3conf["secret_key"],
            },
            "schedule": NEVER,
            "drill_schedule": "",
            "compression": "gzip",
        },
        "stack_notify": [
            {"url": ok.url(TOKEN)},
            {"url": ok.url(TOKEN).replace("/hooks/", "/slack/"), "format": "slack", "events": ["deploy_failed"]},
            {"url": failing.url(TOKEN), "name": "failing receiver", "events": ["deploy_succeeded"]},
        ],
    }


@pytest.fixture(scope="module")
def deployed(bed, docker_client, receivers, extra):
    """The stack deployed at v1 with -vvvv: the run's text output, and what each receiver got."""
    teardown_stack(docker_client, STACK)
    run = run_playbook(inventory=INVENTORY, extra_vars={**extra, "stack_version": "v1"}, verbosity=4, json_output=False)
    ok, failing = receivers
    got = (ok.wait(1, timeout=10), failing.wait(2, timeout=10))
    yield run, got
    teardown_stack(docker_client, STACK)


def clear(*receivers: Receiver) -> None:
    for receiver in receivers:
        receiver.requests.clear()


def cron_line(path: Path, marker: str) -> list[str]:
    """The command of the cron.d line of ``path`` that holds ``marker``, as cron's shell runs it."""
    for line in path.read_text().splitlines():
        if marker in line and not line.startswith("#"):
            return ["/bin/sh", "-c", line.split(None, 6)[6]]
    raise AssertionError(f"no line with {marker} in {path}:\n{path.read_text()}")


def run_line(argv: list[str]) -> subprocess.CompletedProcess:
    env = {
        "HOME": "/root",
        "LOGNAME": "root",
        "SHELL": "/bin/sh",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)


def test_a_deploy_that_lands_sends_its_summary_once_and_a_failing_webhook_is_a_warning(deployed):
    run, (ok_bodies, failing_bodies) = deployed
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-3000:]
    [body] = ok_bodies
    assert body["event"] == "deploy_succeeded" and body["status"] == "succeeded" and body["stack"] == STACK
    assert body["message"] == f"deploy of {STACK} v1 succeeded (https://localhost:{HTTPS_PORT}/)"
    release = body["release"]
    assert (
        release["version"] == "v1"
        and release["kind"] == "deploy"
        and release["url"] == f"https://localhost:{HTTPS_PORT}/"
    )
    assert release["image"].endswith("/pydeploy/flight-hunter") and release["health_ms"], release
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["time"])
    # The receiver answering 500 was tried twice, and the run said so without failing.
    assert len(failing_bodies) == 2 and failing_bodies[0]["event"] == "deploy_succeeded"
    output = run.stdout + run.stderr
    assert re.search(r"notification to failing receiver failed after 2 attempt\(s\): HTTP 500", output), output[-3000:]


def test_the_token_is_never_in_the_verbose_output_nor_in_a_file_others_may_read(deployed):
    run, _ = deployed
    assert TOKEN not in run.stdout and TOKEN not in run.stderr
    notify_json = CONFIG / "notify.json"
    assert TOKEN in notify_json.read_text() and stat.S_IMODE(notify_json.stat().st_mode) == 0o600
    for root in (
        CONFIG,
        LOGS,
        Path(f"/var/lib/pydeploy/{STACK}"),
        Path("/etc/cron.d"),
        Path("/usr/local/lib/pydeploy"),
    ):
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and path != notify_json and path.stat().st_size < 10_000_000:
                assert TOKEN.encode() not in path.read_bytes(), path
    for path in Path("/etc/cron.d").glob(f"pydeploy-{STACK}*"):
        assert TOKEN not in path.read_text()
    jobs = json.loads((CONFIG / "jobs.json").read_text())
    assert jobs["notify"] == {"file": str(notify_json)}


def test_a_failing_job_sends_one_notification_with_its_cause(deployed, receivers):
    ok, failing = receivers
    clear(ok, failing)
    done = run_line(cron_line(Path(f"/etc/cron.d/pydeploy-{STACK}"), " failing "))
    assert done.returncode == 3, done.stderr
    time.sleep(1)
    [body] = ok.bodies()
    assert failing.requests == []
    assert body["event"] == "job_failed" and body["job"] == "failing" and body["status"] == "failed"
    assert body["message"] == "job failing failed with exit code 3" and body["cause"] == "failing on purpose"
    assert body["details"]["exit_code"] == 3 and "stderr| failing on purpose" in body["details"]["log_tail"]
    log = (LOGS / "failing.log").read_text()
    assert f"notified http://127.0.0.1:{ok.port}/… of job_failed (json)" in log and TOKEN not in log


def test_the_restart_check_notifies_once_of_a_crashing_process(deployed, receivers, run_container, bed_image):
    ok, _ = receivers
    clear(ok)
    crashing, _ = run_container(
        bed_image("python"),
        name=f"{STACK}-crashy-{uuid.uuid4().hex[:6]}",
        command=["sh", "-c", "echo crashing; exit 1"],
        restart_policy={"Name": "always"},
        labels={"pydeploy.stack": STACK, "pydeploy.process": "crashy"},
    )

    def restarted():
        crashing.reload()
        return crashing.attrs["RestartCount"] > 3

    wait_for(restarted, timeout=60, what="the crashing container's fourth restart")
    check = cron_line(Path(f"/etc/cron.d/pydeploy-{STACK}-restarts"), "--check-restarts")
    first = run_line([*check[:2], check[2].split(">>")[0]])
    second = run_line([*check[:2], check[2].split(">>")[0]])
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    found = json.loads(first.stdout)
    assert [(n["name"], n["process"]) for n in found["notified"]] == [(crashing.name, "crashy")], found
    assert json.loads(second.stdout)["notified"] == []
    time.sleep(1)
    [body] = ok.bodies()
    assert body["event"] == "container_restarting" and body["process"] == "crashy" and body["status"] == "restarting"
    assert body["message"].startswith(f"container {crashing.name} of process crashy restarted ")
    assert body["details"]["restarts"] > 3 and body["details"]["threshold"] == 3
    assert TOKEN not in (LOGS / "check-restarts.log").read_text()


def test_the_restart_check_notifies_once_of_an_oom_killed_process(deployed, receivers, run_container, bed_image):
    ok, _ = receivers
    clear(ok)
    hog, _ = run_container(
        bed_image("python"),
        name=f"{STACK}-hog-{uuid.uuid4().hex[:6]}",
        command=["python", "-c", OOM_HOG],
        mem_limit="64m",
        memswap_limit="64m",
        restart_policy={"Name": "unless-stopped"},
        labels={"pydeploy.stack": STACK, "pydeploy.process": "hog"},
    )

    def killed_and_restarted():
        hog.reload()
        return hog.attrs["State"]["OOMKilled"] and hog.attrs["RestartCount"] >= 1 and hog.attrs["State"]["Running"]

    wait_for(killed_and_restarted, timeout=60, what="the hog to be OOM-killed and restarted")
    check = cron_line(Path(f"/etc/cron.d/pydeploy-{STACK}-restarts"), "--check-restarts")
    first = run_line([*check[:2], check[2].split(">>")[0]])
    second = run_line([*check[:2], check[2].split(">>")[0]])
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    found = json.loads(first.stdout)
    assert [(n["name"], n["process"], n["oom"]) for n in found["notified"]] == [(hog.name, "hog", True)], found
    assert json.loads(second.stdout)["notified"] == []  # the same kill, not again
    time.sleep(1)
    [body] = ok.bodies()
    assert body["event"] == "container_restarting" and body["process"] == "hog", body
    assert body["status"] == "oom_killed" and body["details"]["oom_killed"] is True, body
    assert hog.name in body["message"], body


def test_a_failed_backup_sends_one_notification(deployed, receivers, s3_proxy):
    ok, _ = receivers
    clear(ok)
    s3_proxy.stop()  # the backups' S3 endpoint: a closed port from now on
    done = run_line(cron_line(Path(f"/etc/cron.d/pydeploy-{STACK}-backup"), " backup "))
    assert done.returncode != 0
    time.sleep(1)
    [body] = ok.bodies()
    assert body["event"] == "backup_failed" and body["job"] == "backup" and body["status"] == "failed"
    assert body["message"].startswith("backup job backup failed with exit code ")
    assert body["cause"], body
    log = (LOGS / "backup.log").read_text()
    assert "of backup_failed (json)" in log and TOKEN not in log


def test_a_failed_deploy_sends_one_notification_naming_the_step(deployed, receivers, extra, s3conf):
    ok, failing = receivers
    clear(ok, failing)
    failing_migration = {"command": "sh -c 'echo migration boom >&2; exit 1'", "tool": "command"}
    # The bed's S3 itself: the backup test stopped the proxy in front of it.
    backup = {**extra["stack_backup"], "s3": {**extra["stack_backup"]["s3"], "endpoint_url": s3conf["endpoint"]}}
    variables = {**extra, "stack_version": "v2", "stack_migrations": failing_migration, "stack_backup": backup}
    run = run_playbook(inventory=INVENTORY, extra_vars=variables)
    assert run.rc != 0
    assert TOKEN not in run.stdout and TOKEN not in run.stderr  # the returned JSON
    time.sleep(1)
    by_path = {request["path"].split("/")[1]: json.loads(request["body"]) for request in ok.requests}
    assert len(ok.requests) == 2 and failing.requests == [], ok.requests
    body = by_path["hooks"]
    assert body["event"] == "deploy_failed" and body["status"] == "failed"
    assert body["message"] == f"deploy of {STACK} v2 failed in the migrate step"
    assert body["details"]["step"] == "migrate" and body["release"]["version"] == "v2"
    assert body["cause"], body
    assert by_path["slack"]["text"].startswith(f":x: *{STACK}* deploy of {STACK} v2 failed in the migrate step on ")
    told = [result for name, result in run.tasks() if name.startswith("Tell the stack's webhooks")]
    assert told and all(TOKEN not in json.dumps(result) for result in told)
    [notified] = [result for result in told if "notifications" in result]
    assert [n["delivered"] for n in notified["notifications"]] == [True, True]
    assert notified["invocation"]["module_args"]["webhooks"][0]["url"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_a_bad_webhook_url_fails_the_preflight_without_showing_it(deployed, extra):
    bad = {**extra, "stack_version": "v1", "stack_notify": [{"url": f"ftp://127.0.0.1/{TOKEN}"}]}
    run = run_playbook(inventory=INVENTORY, extra_vars=bad, check=True)
    assert run.rc != 0
    message = " ".join(run.failure_messages())
    assert "stack_notify[0].url must be an http:// or https:// URL with a host" in message, message
    assert TOKEN not in run.stdout + run.stderr


def test_a_rollback_sends_rolled_back_with_the_release_summary(deployed, receivers, extra, s3conf):
    ok, failing = receivers
    backup = {**extra["stack_backup"], "s3": {**extra["stack_backup"]["s3"], "endpoint_url": s3conf["endpoint"]}}
    variables = {**extra, "stack_backup": backup}
    landed = run_playbook(inventory=INVENTORY, extra_vars={**variables, "stack_version": "v2"})
    assert landed.rc == 0, landed.explain()
    clear(ok, failing)
    # v2 migrated the schema further: its migrations are backward compatible.
    rollback = {**variables, "stack_version": "v2", "app_rollback_schema": "proceed"}
    run = run_playbook("rollback.yml", INVENTORY, extra_vars=rollback)
    assert run.rc == 0, run.explain()
    time.sleep(1)
    [body] = ok.bodies()
    assert failing.requests == []  # it wants deploy_succeeded only
    assert body["event"] == "rolled_back" and body["status"] == "rolled_back"
    assert body["message"] == f"rollback of {STACK} to v1 succeeded (https://localhost:{HTTPS_PORT}/)"
    assert body["release"]["version"] == "v1" and body["release"]["kind"] == "rollback"
    assert TOKEN not in run.stdout + run.stderr
