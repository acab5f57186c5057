"""A registry on its own loopback port serving the bed registry's storage,
read-only: a stack's images come from it, and a test or a benchmark can stop
it to play "the registry is down" without touching the bed's registry."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from conftest import BED_STATE, free_port


class Mirror:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.config = folder / "registry.yml"
        self.config.write_text(
            "version: 0.1\nlog:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {BED_STATE / 'registry'}\n"
            "  maintenance:\n    readonly:\n      enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the mirror registry did not answer on 127.0.0.1:{self.port}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False
