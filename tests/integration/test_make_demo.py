"""`make demo`, as the README says: it ends by printing the URL, and the URL
answers through nginx with the deployed version."""

from __future__ import annotations

import json
import os
import subprocess

from playbook import REPO
from test_deploy_flight_hunter import https_get


def test_make_demo_prints_the_url_that_serves_the_app(bed):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    result = subprocess.run(["make", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tail = result.stdout.strip().splitlines()[-15:]
    assert any("url       https://localhost:8443/" in line for line in tail), tail
    status, _, body = https_get("/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "version": "v2"}
