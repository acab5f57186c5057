"""A job of AWX's, run here the way AWX runs it, without an AWX server.

AWX prepares a private data directory for each job (the project's checkout,
the inventory as a script that prints what AWX's database holds, the extra
vars, the command line, the environment, the passwords that answer prompts,
the Machine credential's SSH key, the files and extra vars the credentials
inject), streams it with ``ansible-runner transmit`` to an execution node,
where ``ansible-runner worker`` runs the playbook in the execution
environment, and reads the events back with ``ansible-runner process``
(receptor carries the stream between them).  Here the three are one pipe:

    ansible-runner transmit DIR -p PLAYBOOK | docker run -i EE ansible-runner worker | ansible-runner process OUT

The shapes follow AWX's RunJob (awx/main/tasks/jobs.py) and
CredentialType.inject_credential: extra vars written with every string
!unsafe (AWX's safe_dump), a credential's extra vars in a file of env/
passed with -e @file, a credential's files in env/ named by the env vars it
injects, the Machine user with -u, AWX's own Vault credential answered at
its prompt from env/passwords.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CONTAINER_ROOT = "/runner"


class Unsafe(str):
    """A string AWX writes as !unsafe: Ansible never templates it."""


yaml.SafeDumper.add_representer(Unsafe, lambda dumper, data: dumper.represent_scalar("!unsafe", str(data)))


def safe_dump(data: dict) -> str:
    """AWX's safe_dump: every string of the extra vars tagged !unsafe."""

    def mark(value):
        if isinstance(value, str):
            return Unsafe(value)
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mark(item) for item in value]
        return value

    return yaml.safe_dump(mark(data), default_flow_style=False)


def project_files() -> list[str]:
    """The project as AWX checks it out: the checkout's files (those git tracks or would track; no local
    wheel)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return sorted({name for name in listed if name and not name.endswith(".whl") and (REPO / name).is_file()})


def inventory_script(data: dict) -> str:
    """AWX's inventory file: a script printing the inventory its database holds (write_inventory_file)."""
    return f"#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint({json.dumps(data)!r})\n"


def imported_inventory(path: Path) -> dict:
    """What AWX's inventory import stores of an inventory source: ansible-inventory's export, the encrypted
    values still encrypted."""
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_CONFIG"}
    result = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", str(path), "--list", "--export"],
        capture_output=True,
        text=True,
        env=env,
        cwd=path,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ansible-inventory failed: {result.stderr}")
    return json.loads(result.stdout)


@dataclass
class Credential:
    """One credential of a job: a custom type's injectors (extra vars, env, a file) with the inputs rendered, or
    the Machine (ssh_key, user) or AWX's Vault credential (vault_password)."""

    extra_vars: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)  # values may name "{file}": the path of the injected file
    file: str | None = None
    ssh_key: str | None = None
    user: str | None = None
    vault_password: str | None = None


@dataclass
class JobResult:
    job_id: int
    rc: int
    status: str
    events: list[dict]
    stdout: str
    seconds: float
    artifacts_dir: Path

    def artifact(self, name: str):
        """What set_stats returned under ``name`` (AWX's job artifacts), or None."""
        for event in self.events:
            if event.get("event") == "playbook_on_stats":
                return (event.get("event_data", {}).get("artifact_data") or {}).get(name)
        return None

    def stats(self) -> dict:
        for event in self.events:
            if event.get("event") == "playbook_on_stats":
                data = event.get("event_data", {})
                return {key: data.get(key) for key in ("ok", "changed", "failures", "dark", "skipped")}
        return {}

    def explain(self) -> str:
        failed = [
            f"{event['event_data'].get('task')}: {event['event_data'].get('res', {}).get('msg')}"
            for event in self.events
            if event.get("event") in ("runner_on_failed", "runner_on_unreachable")
            and not event.get("event_data", {}).get("ignore_errors")
        ]
        return f"job {self.job_id} {self.status} rc={self.rc}; failed: {failed}; stdout tail:\n{self.stdout[-3000:]}"


def awx_meta_vars(job_id: int, template: str, user: str) -> dict:
    """The extra vars AWX adds to every job (Job.awx_meta_vars), under both names."""
    meta = {
        "job_id": job_id,
        "job_launch_type": "manual",
        "user_name": user,
        "user_email": f"{user}@example.com",
        "user_first_name": user.title(),
        "user_last_name": "",
        "user_id": 3,
        "inventory_id": 1,
        "inventory_name": "awxdemo",
        "project_revision": "0" * 40,
        "project_scm_branch": "main",
        "job_template_id": 10,
        "job_template_name": template,
        "execution_node": "localhost",
    }
    return {f"{prefix}_{key}": value for prefix in ("awx", "tower") for key, value in meta.items()}


def run_job(
    root: Path,
    job_id: int,
    playbook: str,
    image: str,
    inventory: dict,
    survey: dict,
    credentials: list[Credential],
    template: str,
    user: str = "ana",
    timeout: float = 1200,
) -> JobResult:
    """Run ``playbook`` as AWX job ``job_id`` of ``template`` launched by ``user``, in the execution
    environment ``image``; ``survey`` is the survey's answers."""
    private = root / f"awx_{job_id}"
    shutil.rmtree(private, ignore_errors=True)
    for sub in ("project", "inventory", "env"):
        (private / sub).mkdir(parents=True, mode=0o700)
    (private / "cp").mkdir(mode=0o700)  # SSH ControlPath sockets, one directory per job
    for name in project_files():
        target = private / "project" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    hosts = private / "inventory" / "hosts"
    hosts.write_text(inventory_script(inventory))
    hosts.chmod(0o700)

    env = {
        "ANSIBLE_FORCE_COLOR": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False",
        "AWX_PRIVATE_DATA_DIR": str(private),
        "JOB_ID": str(job_id),
        "INVENTORY_ID": "1",
        "PROJECT_REVISION": "0" * 40,
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "MAX_EVENT_RES": "700000",
        "AWX_HOST": "https://127.0.0.1:8043",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": f"{CONTAINER_ROOT}/cp",
        # The project's ansible.cfg paths, after AWX's own, as AWX composes them.
        "ANSIBLE_COLLECTIONS_PATH": f"{CONTAINER_ROOT}/requirements_collections:.collections:~/.ansible/collections"
        ":/usr/share/ansible/collections",
        "ANSIBLE_ROLES_PATH": f"{CONTAINER_ROOT}/requirements_roles:~/.ansible/roles:/usr/share/ansible/roles"
        ":/etc/ansible/roles",
    }
    (private / "env" / "extravars").write_text(safe_dump({**survey, **awx_meta_vars(job_id, template, user)}))
    (private / "env" / "extravars").chmod(0o600)
    args = ["-u", "root"]
    passwords: dict[str, str] = {}
    for index, credential in enumerate(credentials):
        if credential.user:
            args[1] = credential.user
        if credential.ssh_key is not None:
            key = private / "env" / "ssh_key"
            key.write_text(credential.ssh_key if credential.ssh_key.endswith("\n") else credential.ssh_key + "\n")
            key.chmod(0o600)
        if credential.vault_password is not None:
            args.append("--ask-vault-pass")
            passwords[r"Vault password:\s*?$"] = credential.vault_password
        path = None
        if credential.file is not None:
            path = private / "env" / f"tmpcred{index}file"
            path.write_text(credential.file)
            path.chmod(0o600)
        for name, value in credential.env.items():
            env[name] = value.replace("{file}", f"{CONTAINER_ROOT}/env/{path.name}" if path else "")
        if credential.extra_vars:
            extra = private / "env" / f"tmpcred{index}vars"
            extra.write_text(safe_dump(credential.extra_vars))
            extra.chmod(0o600)
            args += ["-e", f"@{CONTAINER_ROOT}/env/{extra.name}"]
    (private / "env" / "envvars").write_text(json.dumps(env))
    (private / "env" / "cmdline").write_text(" ".join(args))
    if passwords:
        (private / "env" / "passwords").write_text(json.dumps(passwords))
    (private / "env" / "settings").write_text(
        json.dumps({"job_timeout": 0, "suppress_ansible_output": True, "suppress_output_file": True})
    )

    out = root / f"awx_{job_id}_out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    runner = str(VENV_BIN / "ansible-runner")
    transmit = subprocess.Popen(
        [runner, "transmit", str(private), "-p", playbook, "--ident", str(job_id)], stdout=subprocess.PIPE
    )
    # No tty, stdin only: receptor's way of feeding the worker.
    worker = subprocess.Popen(
        ["docker", "run", "-i", "--rm", "--network", "host", "--name", f"awx_job_{job_id}_{os.getpid()}", image,
         "ansible-runner", "worker", f"--private-data-dir={CONTAINER_ROOT}"],
        stdin=transmit.stdout,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    transmit.stdout.close()
    process = subprocess.run(
        [runner, "process", str(out), "--ident", str(job_id)],
        stdin=worker.stdout,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    worker.wait(timeout=60)
    transmit.wait(timeout=60)
    seconds = time.monotonic() - started
    artifacts = out / "artifacts" / str(job_id)
    events = [json.loads(path.read_text()) for path in sorted((artifacts / "job_events").glob("*.json"))]
    events.sort(key=lambda event: event.get("counter", 0))
    status = (artifacts / "status").read_text().strip() if (artifacts / "status").exists() else "error"
    rc = int((artifacts / "rc").read_text()) if (artifacts / "rc").exists() else -1
    stdout = "".join(event.get("stdout", "") + "\n" for event in events)
    if status == "error" and not events:
        stdout += process.stdout + process.stderr
    return JobResult(job_id, rc, status, events, stdout, seconds, artifacts)
