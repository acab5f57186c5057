"""Backups of a deployed Flight Hunter database through the real playbooks
(a stack of its own, fh_backup, built from the Flight Hunter images, and a
bucket of its own on the bed's S3): backup.yml, verified at once and shown
by status.yml, then restore.yml into a scratch database with every table's
rows and content equal, dropped by restore.yml -e restore_drop; a dropped table
brought back by a confirmed live restore that first backed up what it
replaced; an unconfirmed live restore refused before S3 is asked; the
scheduled backup and drill in /etc/cron.d, run by the job runner, reported by
status.yml, with the host's own Python; a second run changing only what
moved, as --check --diff said (also about a switch to systemd timers), and a wrong S3
secret or a Python without the backups' libraries refused before anything
changes."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from backup_support import cron_command, empty_bucket, keys, manifest, s3_client
from conftest import REPO, stack_query, teardown_stack
from playbook import run_playbook
from psycopg import sql

STACK = "fh_backup"
INVENTORY = "tests/integration/inventories/flight_hunter_backup"
CRON_FILE = Path(f"/etc/cron.d/pydeploy-{STACK}-backup")
STATE = Path(f"/var/lib/pydeploy/{STACK}/backup")
SUPERUSER_PASSWORD = REPO / ".bed" / "secrets" / f"{STACK}_postgres_superuser_password"
TABLES = ("alembic_version", "alerts", "price_cache")
WRONG_SECRET = "wrong-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def s3(bed):
    client = s3_client(bed["s3"])
    bucket = f"fh-backup-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    yield client, bucket
    empty_bucket(client, bucket)
    client.delete_bucket(Bucket=bucket)


def description(bed, bucket: str, **changes) -> dict:
    conf = bed["s3"]
    s3 = {
        "endpoint_url": conf["endpoint"],
        "bucket": bucket,
        "prefix": "backups/",
        "region": conf["region"],
        "access_key": conf["access_key"],
        "secret_key": conf["secret_key"],
    }
    backup = {"s3": s3, "retention": {"max_count": 10, "min_verified": 1}, "compression": "gzip"}
    for key, value in changes.items():
        if key == "s3":
            s3.update(value)
        else:
            backup[key] = value
    return {"stack_backup": backup}


def playbook(name: str, bed, bucket: str, *, extra=None, changes=None, **kwargs):
    extra_vars = {**description(bed, bucket, **(changes or {})), **(extra or {})}
    return run_playbook(name, INVENTORY, extra_vars=extra_vars, **kwargs)


def superuser_query(database: str, query: str, params=None) -> list[tuple]:
    ip = subprocess.run(
        ["docker", "inspect", "-f", f"{{{{.NetworkSettings.Networks.{STACK}.IPAddress}}}}", f"{STACK}-postgres"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    password = SUPERUSER_PASSWORD.read_text().strip()
    url = f"postgresql://postgres:{password}@{ip}:5432/{database}"
    with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
        result = conn.execute(query, params)
        return result.fetchall() if result.description else []


def fingerprint(database: str) -> dict:
    """Every public table's row count and a checksum of its rows' text, ordered."""
    tables = [
        row[0]
        for row in superuser_query(
            database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
    ]
    out = {}
    for table in tables:
        query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t")
        (count, digest), *_ = superuser_query(database, query.format(sql.Identifier("public", table)))
        out[table] = (count, digest)
    return out


@pytest.fixture(scope="module")
def deployed(bed, docker_client, s3):
    _, bucket = s3
    teardown_stack(docker_client, STACK)
    CRON_FILE.unlink(missing_ok=True)
    run = playbook("deploy.yml", bed, bucket)
    assert run.rc == 0, run.explain()
    stack_query(STACK, "SELECT 1")
    superuser_query(
        STACK,
        "INSERT INTO price_cache (id, origin, destination, departure_date, price, currency)"
        " SELECT g, 'LIS', 'JFK', DATE '2026-01-01' + g, 100 + g, 'EUR' FROM generate_series(1, 250) g",
    )
    superuser_query(
        STACK,
        "INSERT INTO alerts (id, email, origin, destination, max_price)"
        " SELECT g, 'user' || g || '@example.com', 'OPO', 'GRU', 500 FROM generate_series(1, 40) g",
    )
    yield run
    teardown_stack(docker_client, STACK)
    CRON_FILE.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def backed_up(bed, s3, deployed):
    _, bucket = s3
    before = fingerprint(STACK)
    run = playbook("backup.yml", bed, bucket)
    assert run.rc == 0, run.explain()
    return before, run


def test_backup_yml_stores_the_database_and_reports_it(s3, backed_up):
    client, bucket = s3
    before, run = backed_up
    report = run.returned("pydeploy_backup")
    key = report["key"]
    assert key.startswith(f"backups/{STACK}/") and key.endswith(".dump.gz"), report
    assert {key, key + ".manifest.json"} <= keys(client, bucket)
    stored = manifest(client, bucket, key)
    assert stored["sha256"] == report["sha256"] and int(report["size"]) == stored["size"] > 0
    assert stored["counts"]["public.price_cache"] == 250 and stored["counts"]["public.alerts"] == 40
    assert before["price_cache"][0] == 250 and before["alerts"][0] == 40
    summary = next(result["msg"] for name, result in run.tasks() if name == "Summarise the backup")
    assert any(line.startswith("backup") and key in line for line in summary), summary
    # Verified at once, as a drill would: the outcome is in the manifest, the scratch database gone.
    assert re.fullmatch(
        r"verified  yes: restored into a scratch database, (\d+)/\1 checks passed, dropped", summary[-1]
    )
    assert stored["verified"] is True and report["verified"] is True
    assert databases_of_the_stack() == {STACK}


def test_status_shows_the_backup_backup_yml_took(backed_up):
    """Recorded as the backup job's last run, as a scheduled one is (status.yml said 'never run')."""
    _, backup = backed_up
    key = backup.returned("pydeploy_backup")["key"]
    recorded = json.loads((STATE / "backup.json").read_text())
    assert (recorded["state"], recorded["exit_code"], recorded["by"]) == ("succeeded", 0, "backup.yml")
    assert recorded["result"]["key"] == key and recorded["result"]["verified"] is True
    status = run_playbook("status.yml", INVENTORY)
    assert status.rc == 0, status.explain()
    shown = next(result["msg"] for name, result in status.tasks() if name == "Show the state of this host")
    line = shown["backups"]["backup"]
    assert line.startswith("succeeded, exit 0, started ") and f"key {key}, " in line, line
    assert ", verified, by backup.yml, " in line, line
    assert shown["backups"]["drill"] == "never run"
    assert (
        "recorded backup run by backup.yml: succeeded, exit code 0"
        in Path(f"/var/log/pydeploy/{STACK}/backup.log").read_text()
    )


def databases_of_the_stack() -> set[str]:
    return {
        row[0]
        for row in superuser_query("postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{STACK}%",))
    }


def test_restore_into_scratch_has_every_row_and_restore_drop_drops_it(bed, s3, backed_up):
    _, bucket = s3
    before, backup = backed_up
    key = backup.returned("pydeploy_backup")["key"]
    run = playbook("restore.yml", bed, bucket, extra={"restore_key": key, "restore_target": "scratch"})
    assert run.rc == 0, run.explain()
    report = run.returned("pydeploy_restore")
    scratch = report["into"]
    assert scratch.startswith(f"{STACK}_restore_"), report
    summary = next(result["msg"] for name, result in run.tasks() if name == "Summarise the restore")
    assert re.search(r"^verified  yes: (\d+)/\1 checks against the manifest passed", "\n".join(summary), re.M), summary
    # The scratch database stays for a look at it; the summary says how to drop it.
    assert f"drop it   ansible-playbook restore.yml -i {INVENTORY} -e restore_drop={scratch}" in summary, summary
    assert fingerprint(scratch) == before
    assert set(before) == set(TABLES)
    assert fingerprint(STACK) == before  # the live database untouched

    # Dropped as the summary says (no S3 needed: a secret S3 refuses), and only a database a restore made.
    wrong_s3 = {"s3": {"secret_key": WRONG_SECRET}}
    dropped = playbook("restore.yml", bed, bucket, changes=wrong_s3, extra={"restore_drop": scratch})
    assert dropped.rc == 0, dropped.explain()
    assert dropped.returned("pydeploy_restore")["dropped"] == [scratch]
    assert scratch not in databases_of_the_stack() and STACK in databases_of_the_stack()
    refused = playbook("restore.yml", bed, bucket, extra={"restore_drop": STACK})
    assert refused.rc != 0 and refused.changed() == 0
    assert any(
        message.startswith(f"{STACK} is not a database a restore of {STACK} made (they are named {STACK}_restore_<id>)")
        for message in refused.failure_messages()
    ), refused.explain()
    assert fingerprint(STACK) == before

    # all: every database restores left (a scratch one, a replaced one kept aside), nothing else.
    left = [f"{STACK}_restore_0a1b2c3d", f"{STACK}_restore_old_4e5f60"]
    for name in [*left, f"{STACK}_copy"]:
        superuser_query("postgres", sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        everything = playbook("restore.yml", bed, bucket, extra={"restore_drop": "all"})
        assert everything.rc == 0, everything.explain()
        assert everything.returned("pydeploy_restore")["dropped"] == sorted(left)
        assert databases_of_the_stack() == {STACK, f"{STACK}_copy"}
    finally:
        for name in [*left, f"{STACK}_copy"]:
            superuser_query("postgres", sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_live_restore_needs_confirmation_and_backs_up_what_it_replaces(bed, s3, backed_up):
    client, bucket = s3
    before, backup = backed_up
    key = backup.returned("pydeploy_backup")["key"]
    superuser_query(STACK, "DROP TABLE alerts")
    assert "alerts" not in fingerprint(STACK)

    refused = playbook("restore.yml", bed, bucket, extra={"restore_key": key, "restore_target": "live"})
    assert refused.rc != 0
    assert any("restore_confirm=true" in message for message in refused.failure_messages()), refused.explain()
    assert "alerts" not in fingerprint(STACK)

    run = playbook(
        "restore.yml", bed, bucket, extra={"restore_key": key, "restore_target": "live", "restore_confirm": True}
    )
    assert run.rc == 0, run.explain()
    assert fingerprint(STACK) == before
    assert stack_query(STACK, "SELECT count(*) FROM alerts") == [(40,)]  # the app's own role reads it again
    assert "Let only its owner connect to the database" in run.changed_tasks()
    replaced = run.returned("pydeploy_restore")["pre_restore_backup"]
    assert replaced and replaced != key
    taken_before = manifest(client, bucket, replaced)
    assert "public.alerts" not in taken_before["counts"]
    assert taken_before["counts"]["public.price_cache"] == 250


def test_an_unconfirmed_live_restore_is_refused_before_s3_is_asked(bed, s3):
    """The first task of restore.yml, with S3 credentials that S3 would refuse."""
    _, bucket = s3
    run = playbook(
        "restore.yml", bed, bucket, changes={"s3": {"secret_key": WRONG_SECRET}}, extra={"restore_target": "live"}
    )
    assert run.rc != 0
    assert run.failure_messages() == [
        f"restore_target=live replaces the live database {STACK}-postgres with latest: add -e restore_confirm=true"
        " to do it (a backup of the live database is taken first)"
    ], run.explain()
    ran = [name for name, _ in run.tasks()]  # the include, the role's argument check, the refusal: nothing else
    assert len(ran) == 3, ran
    assert ran[0] == "Check what the restore was asked to do", ran
    assert ran[1].startswith("Validating arguments against arg spec 'confirm'"), ran
    assert ran[2] == "Refuse a live restore that was not confirmed", ran
    assert run.changed() == 0
    assert WRONG_SECRET not in run.stdout + run.stderr


def test_scheduled_backup_and_drill_run_by_the_job_runner(bed, s3, deployed):
    client, bucket = s3
    schedule = CRON_FILE.read_text()
    # The inventory runs the modules with the controller's virtualenv; the schedule names the host's own Python,
    # to which the bed installed Debian's python3-boto3, python3-docker, python3-psycopg (as docker_host would).
    jobs = json.loads(Path(f"/etc/pydeploy/{STACK}/backup/jobs.json").read_text())["jobs"]
    for job in ("backup", "drill"):
        assert cron_command(CRON_FILE, job)[0] == jobs[job]["command"][0] == "/usr/bin/python3", schedule
    assert re.search(r"^0 3 \* \* \* root .* backup >>", schedule, re.M), schedule
    assert re.search(r"^30 4 \* \* 0 root .* drill >>", schedule, re.M), schedule
    assert CRON_FILE.stat().st_mode & 0o777 == 0o644
    assert (Path(f"/etc/pydeploy/{STACK}/backup/backup.json").stat().st_mode & 0o777) == 0o600

    for job in ("backup", "drill"):  # as cron would run them
        done = subprocess.run(cron_command(CRON_FILE, job), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (job, done.stdout[-2000:], done.stderr[-2000:])

    backup = json.loads((STATE / "backup.json").read_text())
    drill = json.loads((STATE / "drill.json").read_text())
    assert backup["state"] == "succeeded" and backup["exit_code"] == 0
    assert backup["result"]["key"] in keys(client, bucket) and backup["result"]["size"] > 0
    assert drill["state"] == "succeeded" and drill["result"]["verified"] is True
    assert drill["result"]["key"] == backup["result"]["key"]  # the drill verifies the newest
    assert manifest(client, bucket, backup["result"]["key"])["verified"] is True
    log = Path(f"/var/log/pydeploy/{STACK}/backup.log").read_text()
    assert bed["s3"]["secret_key"] not in log

    status = run_playbook("status.yml", INVENTORY)
    assert status.rc == 0, status.explain()
    shown = next(result["msg"] for name, result in status.tasks() if name == "Show the state of this host")
    assert "succeeded, exit 0" in shown["backups"]["backup"], shown
    assert backup["result"]["key"] in shown["backups"]["backup"], shown
    assert "succeeded, exit 0" in shown["backups"]["drill"], shown
    reported = status.returned("pydeploy_status")["localhost"]["backups"]
    assert reported["backup"]["result"]["sha256"] == backup["result"]["sha256"]


def test_check_diff_tells_the_switch_to_systemd_timers(bed, s3, deployed):
    """This host has no systemd as PID 1: only --check can say what backup_scheduler=systemd would do."""
    _, bucket = s3
    before = CRON_FILE.read_text()
    check = playbook("deploy.yml", bed, bucket, extra={"backup_scheduler": "systemd"}, check=True, diff=True)
    assert check.rc == 0, check.explain()
    assert set(check.changed_tasks()) == {
        "Remove the backup schedule where cron does not run the backups",
        "Write a service and a timer per job",
        "Enable and start the new timers",
    }
    assert CRON_FILE.read_text() == before
    prefix = f"pydeploy-{STACK.replace('_', '-')}-backup-"
    assert not list(Path("/etc/systemd/system").glob(f"{prefix}*"))
    written = next(result for name, result in check.tasks() if name == "Write a service and a timer per job")
    units = {item["item"][0]["key"] + "." + item["item"][1]: item["diff"][0]["after"] for item in written["results"]}
    assert set(units) == {f"{job}.{kind}" for job in ("backup", "drill") for kind in ("service", "timer")}
    for job in ("backup", "drill"):
        assert f"ExecStart={shlex.join(cron_command(CRON_FILE, job))}\n" in units[f"{job}.service"]
        assert "Type=oneshot\n" in units[f"{job}.service"]
        assert "Persistent=true\n" in units[f"{job}.timer"]
    assert "OnCalendar=*-*-* 03:00:00\n" in units["backup.timer"]
    enabled = next(result for name, result in check.tasks() if name == "Enable and start the new timers")
    assert enabled["msg"] == [f"{prefix}backup.timer", f"{prefix}drill.timer"]

    refused = playbook("deploy.yml", bed, bucket, extra={"backup_scheduler": "anacron"})
    assert refused.rc != 0 and refused.changed() == 0
    assert any("backup_scheduler must be one of" in message for message in refused.failure_messages()), (
        refused.explain()
    )
    assert CRON_FILE.read_text() == before


def test_second_run_unchanged_and_check_diff_truthful(bed, s3, deployed):
    """A second run that moves the drill changes only the two tasks that read its schedule, as --check --diff
    said: every other task of the stack is unchanged, after the live restore above too (restore.yml put back
    the database's own settings, who may connect, which a dump does not hold). That these two tasks change
    nothing on a second run of the same schedule is proven on the stack of inventories/local, which has
    backups too (test_deploy_flight_hunter.py, test_second_real_run_changes_nothing)."""
    _, bucket = s3
    moved = {"drill_schedule": "15 5 * * 6"}
    before = CRON_FILE.read_text()
    check = playbook("deploy.yml", bed, bucket, changes=moved, check=True, diff=True)
    assert check.rc == 0, check.explain()
    assert CRON_FILE.read_text() == before
    predicted = set(check.changed_tasks())
    assert predicted == {"Describe the backup jobs to the runner", "Schedule the backups and drills in /etc/cron.d"}
    diffs = [
        result.get("diff") for name, result in check.tasks() if name == "Schedule the backups and drills in /etc/cron.d"
    ]
    assert "15 5 * * 6" in json.dumps(diffs)

    real = playbook("deploy.yml", bed, bucket, changes=moved)
    assert real.rc == 0, real.explain()
    assert set(real.changed_tasks()) == predicted, real.changed_tasks()
    assert "15 5 * * 6 root" in CRON_FILE.read_text()


def test_wrong_secret_fails_before_any_change_without_naming_it(bed, s3, deployed):
    _, bucket = s3
    before = CRON_FILE.read_text()
    run = playbook(
        "deploy.yml",
        bed,
        bucket,
        changes={"s3": {"secret_key": WRONG_SECRET}, "schedule": "45 1 * * *"},
        args=["-v"],
    )
    assert run.rc != 0
    assert run.changed() == 0, run.changed_tasks()
    messages = " ".join(run.failure_messages())
    assert bucket in messages and bed["s3"]["endpoint"] in messages, run.explain()
    assert WRONG_SECRET not in run.stdout + run.stderr
    assert CRON_FILE.read_text() == before

    backup = playbook("backup.yml", bed, bucket, changes={"s3": {"secret_key": WRONG_SECRET}})
    assert backup.rc != 0 and WRONG_SECRET not in backup.stdout + backup.stderr
    assert any("access denied" in message for message in backup.failure_messages()), backup.explain()


def test_a_python_that_cannot_run_the_backups_fails_before_any_change(bed, s3, deployed, tmp_path):
    """backup_python without the libraries (a virtualenv of its own), or no Python at all: the preflight names
    it and what it lacks, and the schedule stays as it was."""
    _, bucket = s3
    bare = tmp_path / "bare"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    before = CRON_FILE.read_text()
    for python, said in (
        (f"{bare}/bin/python", "it lacks boto3, docker, psycopg."),
        (f"{tmp_path}/no-python", "it does not run: "),
    ):
        run = playbook("deploy.yml", bed, bucket, extra={"backup_python": python})
        assert run.rc != 0 and run.changed() == 0, run.explain()
        message = " ".join(run.failure_messages())
        assert f"backup_python {python} on localhost cannot run the scheduled backups: {said}" in message, message
        assert CRON_FILE.read_text() == before


def test_pending_migrations_are_backed_up_first_and_the_key_recorded(bed, s3, deployed):
    client, bucket = s3
    before = keys(client, bucket, f"backups/{STACK}/")
    migrations = {"command": "alembic upgrade head", "backup_first": True}
    run = playbook("deploy.yml", bed, bucket, extra={"stack_version": "v2", "stack_migrations": migrations})
    assert run.rc == 0, run.explain()
    added = {key for key in keys(client, bucket, f"backups/{STACK}/") - before if not key.endswith(".json")}
    assert len(added) == 1, added
    (key,) = added
    taken = manifest(client, bucket, key)
    assert taken["release"] == "v2" and taken["migration_revision"] == "0001"
    assert taken["counts"]["public.alerts"] == 40
    names = [name for name, _ in run.tasks()]
    assert names.index("Back up the database to S3") < names.index(
        "Migrate the database once, in a one-off container of the release"
    )
    summary = next(result["msg"] for name, result in run.tasks() if name == "Summarise the release")
    assert f"backup    {key}" in summary, summary
    assert run.returned("pydeploy_release")["backup_key"] == key
    recorded = json.loads((STATE / "backup.json").read_text())  # status.yml's last backup
    assert (recorded["state"], recorded["by"], recorded["result"]["key"]) == ("succeeded", "Migrate the database", key)


def test_teardown_removes_the_backups_only_when_told(bed, s3, deployed, docker_client):
    """The last test of the module: teardown.yml keeps the backups in S3 unless told; told, it lists them
    in check mode and then deletes every object of the stack's set, and nothing else in the bucket."""
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="backups/other_stack/keep-me.dump.gz", Body=b"another stack's backup")
    stored = keys(client, bucket, f"backups/{STACK}/")
    assert stored
    confirm = {"teardown_stack": STACK}
    kept = playbook("teardown.yml", bed, bucket, extra=confirm)
    assert kept.rc == 0, kept.explain()
    assert keys(client, bucket, f"backups/{STACK}/") == stored
    told = {**confirm, "teardown_backups": True, "teardown_volumes": True}
    planned = playbook("teardown.yml", bed, bucket, extra=told, check=True)
    assert planned.rc == 0, planned.explain()
    summary = next(result["msg"] for name, result in planned.tasks() if name == "Summarise what was removed")
    assert set(summary["removed"]["backups"]) == stored
    assert keys(client, bucket, f"backups/{STACK}/") == stored
    done = playbook("teardown.yml", bed, bucket, extra=told)
    assert done.rc == 0, done.explain()
    assert keys(client, bucket, f"backups/{STACK}/") == set()
    assert keys(client, bucket, "backups/other_stack/") == {"backups/other_stack/keep-me.dump.gz"}
    assert bed["s3"]["secret_key"] not in done.stdout
    assert not docker_client.containers.list(all=True, filters={"label": f"pydeploy.stack={STACK}"})
