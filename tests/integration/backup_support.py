"""What the backup module tests share: running one module through ansible-playbook, the bed's S3, buckets."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from conftest import REPO

VENV_BIN = Path(sys.executable).parent


@dataclass
class Run:
    rc: int
    result: dict
    stdout: str
    stderr: str

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    def explain(self) -> str:
        result = json.dumps(self.result, indent=1, default=str)[:8000]
        return f"rc={self.rc}\nresult={result}\nstderr={self.stderr[-3000:]}"


class ModuleRun:
    """One task of a pydeploy.stack module in a playbook of its own, run by ansible-playbook on localhost."""

    counter = 0

    def __init__(self, tmp_path: Path, module: str, args: dict, *, check: bool = False):
        ModuleRun.counter += 1
        self.dir = tmp_path / f"{module}-{ModuleRun.counter}-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir()
        play = {
            "name": module,
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": str(VENV_BIN / "python")},
            "tasks": [{"name": module, f"pydeploy.stack.{module}": args, "check_mode": check}],
        }
        (self.dir / "playbook.yml").write_text(json.dumps([play], indent=1))
        (self.dir / "inventory.ini").write_text("localhost\n")
        self.proc = None

    def start(self) -> subprocess.Popen:
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        }
        argv = [
            str(VENV_BIN / "ansible-playbook"),
            str(self.dir / "playbook.yml"),
            "-i",
            str(self.dir / "inventory.ini"),
        ]
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        return self.proc

    def kill(self) -> None:
        """SIGKILL ansible-playbook and the module process (its whole session)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.communicate(timeout=60)

    def finish(self, timeout: float = 900) -> Run:
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"ansible-playbook ran past the {timeout:.0f} s safety timeout")
        try:
            data = json.loads(stdout[stdout.index("{") :])
            result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            pytest.fail(f"no task result in ansible-playbook output (rc={self.proc.returncode}):\n{stdout}\n{stderr}")
        return Run(self.proc.returncode, result, stdout, stderr)


def run_module(tmp_path, module: str, args: dict, *, check: bool = False, secrets=(), timeout: float = 900) -> Run:
    runner = ModuleRun(tmp_path, module, args, check=check)
    runner.start()
    outcome = runner.finish(timeout)
    for secret in secrets:
        assert secret not in outcome.stdout, f"a secret reached the output of {module}"
        assert secret not in outcome.stderr, f"a secret reached stderr of {module}"
    return outcome


def s3_client(conf: dict, endpoint: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=endpoint or conf["endpoint"],
        aws_access_key_id=conf["access_key"],
        aws_secret_access_key=conf["secret_key"],
        region_name=conf["region"],
        config=Config(retries={"total_max_attempts": 2}, s3={"addressing_style": "path"}),
    )


def s3_args(conf: dict, bucket: str, **extra) -> dict:
    """The module's S3 options for the bed's server and ``bucket``."""
    return {
        "endpoint_url": conf["endpoint"],
        "bucket": bucket,
        "prefix": "backups/",
        "region": conf["region"],
        "access_key": conf["access_key"],
        "secret_key": conf["secret_key"],
        **extra,
    }


def empty_bucket(client, name: str) -> None:
    for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    keys = [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name)
        for obj in page.get("Contents", [])
    ]
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=name, Delete={"Objects": [{"Key": key} for key in keys[start : start + 1000]]})


def keys(client, bucket: str, prefix: str = "") -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def uploads(client, bucket: str) -> list[dict]:
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def manifest(client, bucket: str, key: str) -> dict:
    return json.loads(client.get_object(Bucket=bucket, Key=key + ".manifest.json")["Body"].read())


def tools_containers(docker_client, lock_path: str) -> list:
    filters = {"label": ["pydeploy.oneoff", f"pydeploy.backup.lock={lock_path}"]}
    return docker_client.containers.list(all=True, filters=filters)


def cron_command(cron_file: Path, job: str) -> list[str]:
    """The command ``cron_file`` (a stack's /etc/cron.d file) runs for ``job``, without its schedule, user and
    redirection."""
    for line in cron_file.read_text().splitlines():
        fields = line.split()
        if len(fields) > 7 and not line.startswith("#") and fields[-3] == job:
            return shlex.split(line.split(" root ", 1)[1].split(" >>", 1)[0])
    raise AssertionError(f"no {job} line in {cron_file}:\n{cron_file.read_text()}")
