"""What the Flow Forecaster deploy tests use: a stack of the Flow Forecaster
sample deployed from tests/integration/inventories/flow_forecaster under a name
and ports of its own, and what the tests read of it: its beat and worker
containers, the beat's ticks in the database, the app's own health through the
proxy.

A test module makes one ``FlowStack`` and its module fixture ``deployed`` with
``FlowStack.fixture()``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest
from conftest import stack_query, teardown_stack, wait_for
from playbook import run_playbook
from proxy import https_request

INVENTORY = "tests/integration/inventories/flow_forecaster"
PROCESSES = {
    "web": {
        "command": "gunicorn --bind 0.0.0.0:8080 --workers 2 --graceful-timeout 30 app:app",
        "port": 8080,
        "replicas": 2,
    },
    "worker": {"command": "celery -A celery_app worker --concurrency=2 --loglevel=INFO", "stop_grace_period": 60},
    "beat": {
        "command": "celery -A celery_app beat --schedule /tmp/celerybeat-schedule --loglevel=INFO",
        "singleton": True,
    },
}
TICK_SECONDS = 2  # BEAT_TICK_SECONDS in the inventory


@dataclass(frozen=True)
class FlowStack:
    name: str
    http_port: int
    https_port: int

    @property
    def variables(self) -> dict:
        """What every run of this stack is given beside the inventory."""
        return {"stack_name": self.name, "nginx_http_port": self.http_port, "nginx_https_port": self.https_port}

    def run(self, extra: dict | None = None, **kwargs):
        """One deploy.yml run on the inventory (and any further ones in ``args``)."""
        kwargs.setdefault("inventory", INVENTORY)
        return run_playbook(extra_vars={**self.variables, **(extra or {})}, **kwargs)

    def deploy(self, workers: int | None = None, version: str | None = None, extra: dict | None = None):
        variables = dict(extra or {})
        if workers is not None:
            variables["stack_processes"] = {**PROCESSES, "worker": {**PROCESSES["worker"], "replicas": workers}}
        if version is not None:
            variables["stack_version"] = version
        run = self.run(variables)
        assert run.rc == 0, run.explain()
        return run

    def fixture(self):
        """The module fixture ``deployed``: the stack deployed at the inventory's version, removed afterwards."""

        @pytest.fixture(scope="module")
        def deployed(bed, docker_client):
            teardown_stack(docker_client, self.name)
            first = self.deploy()
            yield first
            teardown_stack(docker_client, self.name)

        return deployed

    def containers(self, docker_client, process: str, *, every: bool = False, status: str | None = None) -> list:
        """The process's containers: running ones, every one (``every``), or those in ``status``."""
        filters = {"label": [f"pydeploy.stack={self.name}", f"pydeploy.process={process}"]}
        if status:
            filters["status"] = status
        return docker_client.containers.list(filters=filters, all=every or bool(status))

    def beat_containers(self, docker_client) -> list[tuple[str, str]]:
        """(name, inventory host) of every beat container, running or not."""
        return sorted(
            (c.name, c.labels.get("pydeploy.host", "")) for c in self.containers(docker_client, "beat", every=True)
        )

    def worker_containers(self, docker_client) -> list[str]:
        return sorted(c.name for c in self.containers(docker_client, "worker"))

    def query(self, sql: str, params=None) -> list[tuple]:
        return stack_query(self.name, sql, params)

    def ticks_in(self, seconds: float) -> int:
        """Beat ticks recorded during the next ``seconds`` (one per TICK_SECONDS from one beat)."""
        start = self.query("SELECT now()")[0][0]
        time.sleep(seconds)
        rows = self.query("SELECT count(*) FROM forecasts WHERE kind = 'tick' AND started_at > %s", (start,))
        return rows[0][0]

    def assert_one_beat_ticking(self, docker_client, host: str = "localhost") -> None:
        assert self.beat_containers(docker_client) == [(f"{self.name}-beat-1", host)]
        window = 12
        # One beat: about window / TICK_SECONDS ticks; two beats would make twice that.
        assert 3 <= self.ticks_in(window) <= window / TICK_SECONDS + 2

    def request(self, path: str, **kwargs) -> tuple[int, dict, bytes]:
        return https_request(self.name, self.https_port, path, **kwargs)

    def get(self, path: str) -> tuple[int, dict]:
        status, _, body = self.request(path)
        return status, json.loads(body)

    def workers_answering(self, expected: int) -> dict:
        def check():
            status, body = self.get("/api/async/health")
            return body if status == 200 and body["celery_workers"] == expected else None

        return wait_for(check, timeout=90, interval=1, what=f"{expected} Celery workers answering")
