"""The loopback registry: serves pushes and pulls, and lists the stand-ins."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid

STAND_INS = {"library/postgres", "library/redis", "library/nginx", "library/mongo", "library/python"}


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback registry
        return json.load(response)


def test_catalog_lists_every_stand_in(bed):
    catalog = _get(f"http://{bed['registry']}/v2/_catalog")
    assert STAND_INS <= set(catalog["repositories"])


def test_stand_ins_are_pushed_under_official_names(bed):
    for name, image in bed["images"].items():
        repository, tag = image["ref"].split("/", 1)[1].rsplit(":", 1)
        if name in {"postgres", "redis", "nginx", "mongo", "python"}:
            assert repository == f"library/{name}"
        tags = _get(f"http://{bed['registry']}/v2/{repository}/tags/list")["tags"]
        assert tag in tags


def test_push_then_pull_round_trips_an_image(bed, docker_client):
    source = docker_client.images.get(bed["images"]["python"]["ref"])
    repository = f"{bed['registry']}/pydeploy-test/roundtrip"
    tag = uuid.uuid4().hex[:12]
    ref = f"{repository}:{tag}"
    source.tag(repository, tag)
    try:
        subprocess.run(["docker", "push", ref], check=True, capture_output=True, timeout=120)
        docker_client.images.remove(ref)
        pulled = docker_client.images.pull(repository, tag=tag)
        assert pulled.id == source.id
        tags = _get(f"http://{bed['registry']}/v2/pydeploy-test/roundtrip/tags/list")["tags"]
        assert tag in tags
    finally:
        docker_client.images.remove(ref, force=True)


def test_registry_listens_on_loopback_only(bed):
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    port = bed["registry"].rsplit(":", 1)[1]
    addresses = {
        line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines() if line.split()[3].endswith(f":{port}")
    }
    assert addresses == {"127.0.0.1"}
