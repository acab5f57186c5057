"""AWX's way in, end to end, without an AWX server: the execution environment built (make ee, cached by
content), then deploy.yml, backup.yml, restore.yml, status.yml, run.yml and logs.yml against that release, a
second deploy and rollback.yml run as AWX jobs (awx_job.py: transmit | docker run -i EE ansible-runner worker |
process), reaching this machine over SSH as root (an sshd of the test's own on a
loopback port) with the job's inputs as AWX passes them: the inventory as AWX's import stores it (inline
ansible-vault values still encrypted), the survey's answers and AWX's own variables as extra vars, the
credential types of awx/credential_types.yml injected (registry, S3, vault password; AWX's own Vault
credential for the rollback). The stack awxdemo (Flight Hunter, nginx on 127.0.0.1:10880/10943) pulls its
images from a registry that requires the registry credential's login; it is removed at the end by teardown.yml,
run as a job too."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import ssl
import subprocess
import sys
import urllib.request
import uuid
import warnings
from pathlib import Path

import pytest
import yaml
from awx_job import Credential, imported_inventory, run_job
from conftest import REPO, free_port, stack_query, teardown_stack, wait_for
from registry_mirror import Mirror

STACK = "awxdemo"
HTTP_PORT, HTTPS_PORT = 10880, 10943
TYPES = yaml.safe_load((REPO / "awx" / "credential_types.yml").read_text())["credential_types"]
CREDENTIAL_TYPES = {kind["name"]: kind for kind in TYPES}
VAULT_TYPE = "pydeploy.stack vault password"
S3_TYPE = "pydeploy.stack S3 backups"
REGISTRY_TYPE = "pydeploy.stack container registry"


def render(template: str, inputs: dict) -> str:
    """An injector's template with a credential's inputs, as AWX renders it (a sandboxed Jinja of the inputs)."""
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment().from_string(template).render(**inputs)


def inject(type_name: str, inputs: dict) -> Credential:
    """A credential of one of our custom types: its injectors rendered with ``inputs``."""
    injectors = CREDENTIAL_TYPES[type_name]["injectors"]
    inputs = {**{field["id"]: "" for field in CREDENTIAL_TYPES[type_name]["inputs"]["fields"]}, **inputs}
    file = render(injectors["file"]["template"], inputs) if "file" in injectors else None
    namespace = {**inputs, "tower": {"filename": "{file}"}}
    return Credential(
        extra_vars={name: render(value, inputs) for name, value in injectors.get("extra_vars", {}).items()},
        env={name: render(value, namespace) for name, value in injectors.get("env", {}).items()},
        file=file,
    )


def load_ee_builder():
    if "pydeploy_ee" not in sys.modules:
        spec = importlib.util.spec_from_file_location("pydeploy_ee", REPO / "bed" / "ee.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["pydeploy_ee"] = module
        spec.loader.exec_module(module)
    return sys.modules["pydeploy_ee"]


def encrypt(value: str, name: str, password_file: Path) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-vault"), "encrypt_string", "--vault-password-file",
         str(password_file), value, "--name", name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout


def health(path: str = "/health") -> dict:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    request = urllib.request.Request(f"https://127.0.0.1:{HTTPS_PORT}{path}", headers={"Host": "localhost"})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310 - loopback
        return json.load(response)


def ledger() -> list[dict]:
    return json.loads(Path(f"/var/lib/pydeploy/{STACK}/releases.json").read_text())["releases"]


# --------------------------------------------------------------------------- the pieces


@pytest.fixture(scope="module")
def ee():
    """The execution environment, as `make ee` builds it: reused when its inputs did not change."""
    return load_ee_builder().build()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd of the test's own for this machine on a loopback port: root with a key generated here only."""
    folder = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pydeploy-awx-test", "-f",
                        str(folder / name)], check=True)  # fmt: skip
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
    process = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        stdout=open(folder / "sshd.log", "wb"),
        stderr=subprocess.STDOUT,
    )

    def listening():
        if process.poll() is not None:
            pytest.fail(f"sshd exited: {(folder / 'sshd.log').read_text()}")
        return subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout.strip()

    wait_for(listening, 20, what=f"sshd on 127.0.0.1:{port}")
    yield {"port": port, "key": (folder / "client_key").read_text()}
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The bed registry's images behind a login: a read-only mirror on a port of its own, with htpasswd."""
    folder = tmp_path_factory.mktemp("registry")
    user, password = "deploy", "reg-" + uuid.uuid4().hex
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated, but the only bcrypt at hand (libxcrypt's)

        # bcrypt, the only scheme the registry's htpasswd takes.
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))  # noqa: S324
    (folder / "htpasswd").write_text(f"{user}:{hashed}\n")
    mirror = Mirror(folder)
    text = mirror.config.read_text().replace(
        "http:\n", f"auth:\n  htpasswd:\n    realm: pydeploy-test\n    path: {folder / 'htpasswd'}\nhttp:\n"
    )
    mirror.config.write_text(text)
    process = subprocess.Popen(
        ["docker-registry", "serve", str(mirror.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    host = f"127.0.0.1:{mirror.port}"

    def asks_for_a_login():
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        return False

    wait_for(asks_for_a_login, 30, what=f"the registry on {host}")
    yield {"host": host, "username": user, "password": password}
    process.terminate()
    process.wait(timeout=30)
    # The hosts' login (docker_host_registry): this machine's docker client config.
    subprocess.run(["docker", "logout", host], capture_output=True, check=False)


@pytest.fixture(scope="module")
def secrets():
    """Canaries: every secret a job gets, none of which may appear in any event."""
    token = uuid.uuid4().hex[:12]
    return {
        "vault_password": f"vault-canary-{token}",
        "postgres_password": f"pgcanary{token}",
        "postgres_superuser_password": f"pgsucanary{token}",
        "redis_password": f"rediscanary{token}",
        "vault_stripe_secret_key": f"sk_canary_{token}",
    }


@pytest.fixture(scope="module")
def bench(tmp_path_factory, bed, sshd, registry, secrets, docker_client):
    """The stack's inventory (as AWX imports it) and the job's credentials; the stack removed at the end."""
    root = tmp_path_factory.mktemp("awx")
    source = root / "inventory"
    (source / "group_vars" / "all").mkdir(parents=True)
    password_file = root / "vault-password"
    password_file.write_text(secrets["vault_password"])
    groups = ["proxy", "web", "postgres", "redis"]
    (source / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        f"{STACK}-host": {
                            "ansible_host": "127.0.0.1",
                            "ansible_port": sshd["port"],
                            # The host's own Python, with the libraries docker_host_python_deps=apt installs.
                            "ansible_python_interpreter": "/usr/bin/python3",
                        }
                    },
                    "children": {group: {"hosts": {f"{STACK}-host": {}}} for group in groups},
                }
            }
        )
    )
    s3 = bed["s3"]
    description = {
        "stack_name": STACK,
        "stack_image": f"{registry['host']}/pydeploy/flight-hunter",
        "stack_version": "v1",
        "stack_env": {"APP_ENV": "staging"},
        "stack_secrets": {"STRIPE_SECRET_KEY": "{{ vault_stripe_secret_key }}"},
        "stack_processes": {
            "web": {"command": "uvicorn app.main:app --host 0.0.0.0 --port 8000", "port": 8000, "replicas": 1}
        },
        "stack_health": {"path": "/health", "expect": {"status": "ok"}},
        "stack_migrations": {"command": "alembic upgrade head"},
        "stack_domains": ["localhost"],
        # The S3 keys come from the S3 credential, under the names init.yml writes.
        "stack_backup": {
            "s3": {
                "endpoint_url": s3["endpoint"],
                "bucket": s3["bucket"],
                "prefix": f"{STACK}/",
                "access_key": "{{ vault_backup_s3_access_key }}",
                "secret_key": "{{ vault_backup_s3_secret_key }}",
            },
            "schedule": "",
            "drill_schedule": "",
        },
        "postgres_image": bed["images"]["postgres"]["ref"],
        "redis_image": bed["images"]["redis"]["ref"],
        "nginx_image": bed["images"]["nginx"]["ref"],
        "nginx_http_port": HTTP_PORT,
        "nginx_https_port": HTTPS_PORT,
        "nginx_bind_address": "127.0.0.1",
        "nginx_tls_mode": "selfsigned",
        "docker_host_python_deps": "none",
        "postgres_password": "{{ vault_postgres_password }}",
        "postgres_superuser_password": "{{ vault_postgres_superuser_password }}",
        "redis_password": "{{ vault_redis_password }}",
    }
    encrypted = "".join(
        encrypt(secrets[name], f"vault_{name}" if not name.startswith("vault_") else name, password_file)
        for name in ("postgres_password", "postgres_superuser_password", "redis_password", "vault_stripe_secret_key")
    )
    (source / "group_vars" / "all" / "stack.yml").write_text("---\n" + yaml.safe_dump(description))
    (source / "group_vars" / "all" / "vault.yml").write_text("---\n" + encrypted)
    inventory = imported_inventory(source)
    assert "__ansible_vault" in json.dumps(inventory), "the import keeps the vault's values encrypted"

    credentials = {
        "machine": Credential(ssh_key=sshd["key"], user="root"),
        "registry": inject(REGISTRY_TYPE, registry),
        "s3": inject(S3_TYPE, {"access_key": s3["access_key"], "secret_key": s3["secret_key"]}),
        "vault": inject(VAULT_TYPE, {"vault_password": secrets["vault_password"]}),
        "awx_vault": Credential(vault_password=secrets["vault_password"]),
    }
    canaries = {**secrets, "s3_secret_key": s3["secret_key"], "registry_password": registry["password"],
                "ssh_key": sshd["key"].splitlines()[2]}  # fmt: skip
    state = {"root": root, "inventory": inventory, "credentials": credentials, "canaries": canaries, "jobs": {}}
    yield state
    with contextlib.suppress(Exception):
        teardown_stack(docker_client, STACK)
    from backup_support import keys, s3_client

    with contextlib.suppress(Exception):
        client = s3_client(s3)
        for key in keys(client, s3["bucket"], f"{STACK}/"):
            client.delete_object(Bucket=s3["bucket"], Key=key)
    print("AWX-style jobs (s):", {job_id: round(result.seconds) for job_id, result in state["jobs"].items()})


def job(bench, ee, job_id: int, playbook: str, survey: dict, credentials: list[str], user: str = "ana"):
    result = run_job(
        bench["root"], job_id, playbook, ee["keyed"], bench["inventory"], survey,
        [bench["credentials"][name] for name in credentials], template=f"pydeploy {Path(playbook).stem}", user=user,
    )  # fmt: skip
    bench["jobs"][job_id] = result
    return result


@pytest.fixture(scope="module")
def deployed(bench, ee):
    result = job(bench, ee, 101, "deploy.yml", {"stack_version": "v1", "pydeploy_fast_path": "true",
                 "pydeploy_break_lock": "false"}, ["machine", "registry", "s3", "vault"])  # fmt: skip
    assert result.status == "successful", result.explain()
    return result


@pytest.fixture(scope="module")
def rolled_back(bench, ee, deployed):
    second = job(bench, ee, 102, "deploy.yml", {"stack_version": "v2", "pydeploy_fast_path": "true",
                 "pydeploy_break_lock": "false"}, ["machine", "registry", "s3", "vault"])  # fmt: skip
    assert second.status == "successful", second.explain()
    assert health()["version"] == "v2"
    # AWX's own Vault credential this time: the password answers ansible's prompt (env/passwords).
    back = job(bench, ee, 103, "rollback.yml", {"app_rollback_schema": "proceed", "pydeploy_break_lock": "false"},
               ["machine", "registry", "s3", "awx_vault"], user="bo")  # fmt: skip
    assert back.status == "successful", back.explain()
    return second, back


# --------------------------------------------------------------------------- tests


def test_the_execution_environment_is_built_once_for_its_inputs(ee):
    assert ee["mode"] == "bed", "built FROM the bed's local base"
    again = load_ee_builder().build()
    if again["key"] == ee["key"]:
        assert again["reused"], "an unchanged rerun reuses the image"
    else:  # the checkout changed in between (a shared work tree): only the collection's layers are rebuilt
        assert again["seconds"] < 120, again
    listed = subprocess.run(
        ["docker", "run", "--rm", ee["keyed"], "sh", "-c",
         "ansible-galaxy collection list pydeploy.stack 2>/dev/null | grep -c pydeploy.stack; "
         "python3 -c 'import docker, boto3, psycopg, redis, pymongo, zstandard, requests'; command -v ssh-agent"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[0] == "1" and listed.stdout.strip().endswith("ssh-agent")


def test_a_deploy_job_reports_the_release_as_an_artifact(deployed):
    release = deployed.artifact("pydeploy_release")
    assert release, deployed.explain()
    assert (release["stack"], release["version"], release["kind"]) == (STACK, "v1", "deploy")
    assert release["digest"].partition("@")[2].startswith("sha256:"), release["digest"]
    assert release["url"] == f"https://localhost:{HTTPS_PORT}/"
    assert release["health_ms"] and all(isinstance(ms, int | float) for ms in release["health_ms"])
    assert (release["deployed_by"], release["awx_job_id"]) == ("ana", "101")
    assert health() == {"status": "ok", "version": "v1"}


def test_the_credentials_reached_the_hosts(deployed, registry, secrets):
    # The vault credential opened the inventory's encrypted values: the app's secret is in its env file.
    assert secrets["vault_stripe_secret_key"] in Path(f"/etc/pydeploy/{STACK}/app.env").read_text()
    # The registry credential logged the host in (the images come from a registry that wants a login).
    config = json.loads(Path("/root/.docker/config.json").read_text())
    assert registry["host"] in config.get("auths", {})


def test_the_ledger_and_the_summary_name_the_awx_user_and_job(deployed):
    entry = ledger()[-1]
    assert (entry["version"], entry["deployed_by"], entry["awx_job_id"]) == ("v1", "ana", "101")
    assert "by        ana (AWX job 101)" in deployed.stdout


# --------------------------------------------------------------------------- the other templates, on the v1 stack
# One job per template, against the stack the deploy job left (before the rollback and the teardown), with the
# S3 credential injecting the backups' keys: what a user launching each from AWX reads in the job.

ALL_CREDENTIALS = ["machine", "registry", "s3", "vault"]


def task_result(result, task: str) -> dict:
    """What the task named ``task`` (its first word(s)) returned, from the job's events."""
    for event in result.events:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and str(data.get("task", "")).startswith(task):
            return data.get("res", {})
    raise AssertionError(f"no result of task {task!r} in job {result.job_id}: {result.explain()}")


def successful(result):
    assert (result.status, result.rc) == ("successful", 0), result.explain()
    return result


@pytest.fixture(scope="module")
def backed_up(bench, ee, deployed):
    return successful(job(bench, ee, 105, "backup.yml", {"backup_verify": "true"}, ALL_CREDENTIALS))


@pytest.fixture(scope="module")
def restored(bench, ee, backed_up):
    key = backed_up.artifact("pydeploy_backup")["key"]
    survey = {"restore_target": "scratch", "restore_mode": "verify", "restore_key": key, "restore_confirm": "false"}
    return successful(job(bench, ee, 106, "restore.yml", survey, ALL_CREDENTIALS, user="bo"))


def test_a_backup_job_reports_the_object_it_stored(backed_up, bed):
    from backup_support import manifest, s3_client

    report = backed_up.artifact("pydeploy_backup")
    assert report, backed_up.explain()
    bucket = bed["s3"]["bucket"]
    assert (report["stack"], report["bucket"]) == (STACK, bucket)
    assert report["key"].startswith(f"{STACK}/"), report
    stored = manifest(s3_client(bed["s3"]), bucket, report["key"])
    assert stored["sha256"] == report["sha256"] and int(report["size"]) == stored["size"] > 0
    assert report["verified"] is True and stored["verified"] is True
    summary = task_result(backed_up, "Summarise the backup")["msg"]
    assert f"backup    s3://{bucket}/{report['key']}" in summary, summary
    assert summary[-1].startswith("verified  yes: restored into a scratch database"), summary


def test_a_restore_job_verifies_the_backup_in_a_scratch_database(restored, backed_up, bed):
    from backup_support import manifest, s3_client

    key = backed_up.artifact("pydeploy_backup")["key"]
    report = restored.artifact("pydeploy_restore")
    assert report, restored.explain()
    assert (report["key"], report["mode"], report["target"]) == (key, "verify", "scratch")
    assert report["verified"] is True and report["into"] == "verified, dropped"
    # The rows counted in the scratch database, as the backup's manifest says they were.
    stored = manifest(s3_client(bed["s3"]), bed["s3"]["bucket"], key)
    assert report["counts"] == stored["counts"] and report["counts"], report
    summary = "\n".join(task_result(restored, "Summarise the restore")["msg"])
    assert re.search(r"^verified  yes: (\d+)/\1 checks against the manifest passed", summary, re.M), summary
    assert re.search(r"^rows      \S+ \d+", summary, re.M), summary
    scratch = stack_query_databases()
    assert scratch == {STACK}, f"the scratch database was not dropped: {scratch}"


def stack_query_databases() -> set[str]:
    rows = stack_query(STACK, "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{STACK}%",))
    return {row[0] for row in rows}


def test_a_status_job_reports_the_release_and_the_processes(bench, ee, backed_up):
    result = successful(job(bench, ee, 107, "status.yml", {}, ALL_CREDENTIALS))
    report = result.artifact("pydeploy_status")
    assert report, result.explain()
    state = report[f"{STACK}-host"]
    assert state["release"]["current"].startswith("v1 at "), state["release"]
    assert "by ana (AWX job 101)" in state["release"]["current"], state["release"]
    assert state["release"]["lock"] == "free"
    assert "web" in state["processes"], state["processes"]
    shown = task_result(result, "Show the state of this host")["msg"]
    assert shown["backups"]["backup"].startswith("succeeded, exit 0"), shown["backups"]
    assert backed_up.artifact("pydeploy_backup")["key"] in shown["backups"]["backup"], shown["backups"]


def test_a_run_job_shows_the_command_s_output(bench, ee, deployed):
    survey = {"cmd": "python -c \"import os; print('awx-run', os.environ['PYDEPLOY_VERSION'], 6 * 7)\""}
    result = successful(job(bench, ee, 108, "run.yml", survey, ALL_CREDENTIALS))
    assert int(result.artifact("run_rc")) == 0, result.explain()
    assert result.artifact("run_command")[:2] == ["python", "-c"], result.artifact("run_command")
    assert task_result(result, "Show the command's output")["msg"] == ["awx-run v1 42"]


def test_a_logs_job_shows_the_web_lines(bench, ee, deployed):
    marker = "awx-logs-" + uuid.uuid4().hex[:8]
    assert health(f"/health?{marker}=1") == {"status": "ok", "version": "v1"}
    result = successful(job(bench, ee, 109, "logs.yml", {"process": "web", "lines": 50, "follow": "false"},
                            ALL_CREDENTIALS))  # fmt: skip
    lines = task_result(result, "Show the lines of web")["msg"]
    assert 0 < len(lines) <= 50, lines
    assert all(line.startswith(f"{STACK}-host {STACK}-web-") for line in lines), lines[:3]
    assert any(marker in line for line in lines), lines[-10:]


def test_a_rollback_job_goes_back_to_the_previous_release(rolled_back):
    second, back = rolled_back
    assert second.artifact("pydeploy_release")["version"] == "v2"
    release = back.artifact("pydeploy_release")
    release_fields = ("v1", "rollback", "bo", "103")
    assert (release["version"], release["kind"], release["deployed_by"], release["awx_job_id"]) == release_fields
    assert health()["version"] == "v1"
    entry = ledger()[-1]
    assert (entry["version"], entry["kind"], entry["deployed_by"], entry["awx_job_id"]) == release_fields


def leaks(bench, result) -> list[str]:
    """The canaries found in a job's events or in any file of its artifacts."""
    texts = [json.dumps(result.events)]
    texts += [path.read_text(errors="replace") for path in result.artifacts_dir.rglob("*") if path.is_file()]
    return [name for name, secret in bench["canaries"].items() if any(secret in text for text in texts)]


def test_no_secret_is_in_any_event(bench, rolled_back):
    assert bench["jobs"], "no job ran"
    for job_id, result in bench["jobs"].items():
        assert result.events, f"job {job_id} has no events"
        leaked = leaks(bench, result)
        assert not leaked, f"job {job_id}'s events or artifacts show {leaked}"


def test_a_teardown_job_removes_the_stack(bench, ee, rolled_back, docker_client):
    result = job(bench, ee, 104, "teardown.yml", {"teardown_stack": STACK, "teardown_volumes": "true",
                 "teardown_backups": "false"}, ["machine", "registry", "s3", "vault"])  # fmt: skip
    assert result.status == "successful", result.explain()
    assert not docker_client.containers.list(all=True, filters={"label": f"pydeploy.stack={STACK}"})
    assert not Path(f"/etc/pydeploy/{STACK}").exists()
    leaked = leaks(bench, result)
    assert not leaked, f"the teardown's events or artifacts show {leaked}"
