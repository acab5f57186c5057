"""bed/ee.py's pure logic: which base and arguments a build uses, and the offline artifacts of the dependency
collections (byte-identical on every run, and installable by ansible-galaxy)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def ee(tmp_path, monkeypatch):
    monkeypatch.setenv("BED_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("BED_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(REPO / "bed"))
    for name in ("bedctl", "pydeploy_ee_under_test"):
        sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location("pydeploy_ee_under_test", REPO / "bed" / "ee.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pydeploy_ee_under_test"] = module
    spec.loader.exec_module(module)
    yield module
    for name in ("bedctl", "pydeploy_ee_under_test"):
        sys.modules.pop(name, None)


def test_on_the_bed_it_builds_from_the_local_python_image_offline(ee, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "bed.json").write_text(json.dumps({"images": {"python": {"ref": "127.0.0.1:5000/library/python:3.11"}}}))
    plan = ee.plan_from_env({})
    assert (plan.mode, plan.base, plan.offline, plan.pull) == ("bed", "127.0.0.1:5000/library/python:3.11", True, False)
    assert plan.build_args == ee.DEBIAN_ARGS
    assert ee.DEBIAN_ARGS == {"PKGMGR": "/usr/bin/apt-get", "PYCMD": "/usr/bin/python3", "PYPKG": "python3 python3-pip"}


def test_elsewhere_the_definition_base_unless_one_is_given(ee, tmp_path):
    plan = ee.plan_from_env({})
    assert (plan.mode, plan.base, plan.offline, plan.build_args, plan.ca_bundle) == ("default", None, False, {}, None)
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    plan = ee.plan_from_env({"EE_BASE_IMAGE": "debian:12", "EE_PKGMGR": "/usr/bin/apt-get", "EE_CA_BUNDLE": str(bundle),
                             "EE_OFFLINE": "1"})  # fmt: skip
    assert (plan.base, plan.build_args, plan.ca_bundle, plan.offline) == (
        "debian:12", {"PKGMGR": "/usr/bin/apt-get"}, bundle, True
    )  # fmt: skip
    with pytest.raises(ee.BedError, match="EE_CA_BUNDLE"):
        ee.plan_from_env({"EE_CA_BUNDLE": str(tmp_path / "missing.crt")})


def test_the_pinned_collections_are_the_controllers(ee):
    closure = {name: version for name, version, _ in ee.collection_closure(ee.galaxy_requirements())}
    for entry in ee.galaxy_requirements():
        assert closure[entry["name"]] == str(entry["version"])
    assert "community.library_inventory_filtering_v1" in closure, "a dependency's dependency comes along"
    with pytest.raises(ee.BedError, match=r"pins community\.docker 0\.0\.1"):
        ee.collection_closure([{"name": "community.docker", "version": "0.0.1"}])


def test_an_offline_artifact_is_byte_identical_and_installable(ee, tmp_path):
    (_, _, source), *_ = ee.collection_closure([{"name": "community.library_inventory_filtering_v1"}])
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    ee.deterministic_tarball(source, first)
    ee.deterministic_tarball(source, second)
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    with tarfile.open(first) as tar:
        files = json.load(tar.extractfile("FILES.json"))
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        names = set(tar.getnames())
    listed = {entry["name"] for entry in files["files"]} - {"."}
    assert listed <= names, "every file FILES.json lists is in the artifact"
    raw = tarfile.open(first).extractfile("FILES.json").read()
    assert manifest["file_manifest_file"]["chksum_sha256"] == hashlib.sha256(raw).hexdigest()
    installed = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-galaxy"), "collection", "install", "--offline", "-p",
         str(tmp_path / "collections"), str(first)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
