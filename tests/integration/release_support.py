"""What the Car API release tests share: a stack of the Car API sample deployed
from tests/integration/inventories/car_api under a name and ports of its own,
its images from a registry of its own on loopback (serving the bed's registry
storage, read-only, so that a test can stop it), a steady request load through
its nginx, and what the tests read of the stack (the version that answers,
the web replicas, the proxy's upstream, the ledger).

Each test module makes one ``CarStack`` and the module fixtures ``mirror``,
``extra`` (the extra vars every run gets) and ``released`` (the stack deployed
at V1, removed after the module) from it with ``fixtures(car)``."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import teardown_stack
from playbook import run_playbook
from registry_mirror import Mirror

INVENTORY = "tests/integration/inventories/car_api"
V1, V2, V3 = "v20251101_090000", "v20251105_143022", "v20251110_120000"
WEB_PORT = 8000


@dataclass
class Load:
    """Requests through nginx from a few connections, each one recorded. Each connection pauses
    ``pause`` seconds between its requests: a gap in service longer than that is seen, and the
    load leaves CPU to the tests that run beside it (bench/rolling.py measures the full load)."""

    port: int
    cafile: Path
    path: str = "/health_check"
    concurrency: int = 4
    pause: float = 0.05
    ok: int = 0
    failures: list = field(default_factory=list)
    versions: list = field(default_factory=list)  # (time, version) of each answer, in order
    _stop: threading.Event = field(default_factory=threading.Event)

    async def one(self, context) -> None:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port, ssl=context, server_hostname="localhost"), timeout=10
            )
            writer.write(f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            response = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.failures.append((started, repr(exc)))
            return
        head, _, body = response.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1] if head else b"?"
        if status != b"200":
            self.failures.append((started, status.decode(errors="replace"), body[:200]))
            return
        self.ok += 1
        self.versions.append((started, json.loads(body)["version"]))

    async def loop(self) -> None:
        context = ssl.create_default_context(cafile=str(self.cafile))

        async def client():
            while not self._stop.is_set():
                await self.one(context)
                await asyncio.sleep(self.pause)

        await asyncio.gather(*(client() for _ in range(self.concurrency)))

    def __enter__(self):
        self.thread = threading.Thread(target=lambda: asyncio.run(self.loop()), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self._stop.set()
        self.thread.join(timeout=60)

    def serving(self) -> list[str]:
        """The versions that answered, each run of equal answers once, in order."""
        runs = []
        for _, version in self.versions:
            if not runs or runs[-1] != version:
                runs.append(version)
        return runs


class RunningWeb:
    """The most web replicas of the stack running at once, sampled while the block runs."""

    def __init__(self, docker_client, car: CarStack):
        self.client = docker_client
        self.car = car
        self.most = 0
        self.names = set()  # every web replica seen running
        self._stop = threading.Event()

    def sample(self) -> None:
        while not self._stop.is_set():
            # One listing call (no inspect of each container, which races with a replica being removed).
            running = self.client.api.containers(filters={"label": self.car.web_labels, "status": "running"})
            self.most = max(self.most, len(running))
            self.names.update(entry["Names"][0].lstrip("/") for entry in running)
            self._stop.wait(0.2)

    def __enter__(self):
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self._stop.set()
        self.thread.join(timeout=30)


@dataclass
class CarStack:
    """The Car API sample as the stack ``name``, its proxy on 127.0.0.1:``https_port``."""

    name: str
    http_port: int
    https_port: int

    @property
    def ledger(self) -> Path:
        return Path(f"/var/lib/pydeploy/{self.name}/releases.json")

    @property
    def proxy_ca(self) -> Path:
        return Path(f"/etc/pydeploy/{self.name}/nginx/certs/fullchain.pem")

    @property
    def upstream(self) -> Path:
        """The upstream of the web replicas that nginx serves (nginx_config_dir/conf.d, mounted into the proxy)."""
        return Path(f"/etc/pydeploy/{self.name}/nginx/conf.d/upstream.conf")

    @property
    def lock(self) -> Path:
        return Path(f"/var/lib/pydeploy/{self.name}/deploy.lock")

    def variables(self, mirror: Mirror) -> dict:
        """What every run of this stack is given beside the inventory."""
        return {
            "stack_image": f"127.0.0.1:{mirror.port}/pydeploy/car-api",
            "stack_name": self.name,
            "nginx_http_port": self.http_port,
            "nginx_https_port": self.https_port,
        }

    def deploy(self, extra: dict, version: str | None = None, playbook: str = "deploy.yml", **kwargs):
        variables = dict(extra)
        if version:
            variables["stack_version"] = version
        variables.update(kwargs.pop("more", {}))
        return run_playbook(playbook, inventory=INVENTORY, extra_vars=variables, **kwargs)

    def load(self, **kwargs) -> Load:
        return Load(self.https_port, self.proxy_ca, **kwargs)

    def running_web(self, docker_client) -> RunningWeb:
        return RunningWeb(docker_client, self)

    def serving_version(self) -> str:
        context = ssl.create_default_context(cafile=str(self.proxy_ca))
        conn = http.client.HTTPSConnection("127.0.0.1", self.https_port, timeout=10, context=context)
        conn.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", self.https_port)), server_hostname="localhost"
        )
        conn.request("GET", "/health_check", headers={"Host": "localhost"})
        body = json.loads(conn.getresponse().read())
        conn.close()
        return body["version"]

    @property
    def web_labels(self) -> list[str]:
        return [f"pydeploy.stack={self.name}", "pydeploy.process=web"]

    def web_containers(self, docker_client) -> list[tuple[str, str]]:
        """(name, version) of every web replica, running or not."""
        return sorted(
            (c.name, c.labels["pydeploy.version"])
            for c in docker_client.containers.list(all=True, filters={"label": self.web_labels})
        )

    def running_web_containers(self, docker_client) -> list:
        return docker_client.containers.list(filters={"label": self.web_labels, "status": "running"})

    def upstream_servers(self) -> list[str]:
        return sorted(re.findall(r"^\s*server\s+([^\s;]+)", self.upstream.read_text(), re.MULTILINE))

    def ledger_versions(self) -> list[str]:
        return [entry["version"] for entry in json.loads(self.ledger.read_text())["releases"]]


def fixtures(car: CarStack):
    """The module fixtures of a test module of ``car``: mirror, extra and released."""

    @pytest.fixture(scope="module")
    def mirror(tmp_path_factory):
        registry = Mirror(tmp_path_factory.mktemp("mirror"))
        registry.start()
        yield registry
        registry.stop()

    @pytest.fixture(scope="module")
    def extra(mirror):
        return car.variables(mirror)

    @pytest.fixture(scope="module")
    def released(bed, docker_client, extra):
        teardown_stack(docker_client, car.name)
        run = car.deploy(extra, V1)
        assert run.rc == 0, run.explain()
        yield run
        teardown_stack(docker_client, car.name)

    return mirror, extra, released
