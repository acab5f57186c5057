"""Pure logic of the bed controller: content keys, daemon.json merging and
pidfile-tracked daemons (with a real, harmless process)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def bedctl(tmp_path, monkeypatch):
    monkeypatch.setenv("BED_STATE", str(tmp_path / "state"))
    spec = importlib.util.spec_from_file_location("bedctl", REPO / "bed" / "bedctl.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bedctl"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bedctl", None)


def _tree(root: Path, files: dict) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def test_tree_hash_is_stable_and_content_keyed(bedctl, tmp_path):
    a = _tree(tmp_path / "a" / "img", {"Dockerfile": "FROM x\n", "conf/x.conf": "1"})
    b = _tree(tmp_path / "b" / "img", {"conf/x.conf": "1", "Dockerfile": "FROM x\n"})
    assert bedctl.tree_hash([a]) == bedctl.tree_hash([b])
    (b / "conf" / "x.conf").write_text("2")
    assert bedctl.tree_hash([a]) != bedctl.tree_hash([b])


def test_tree_hash_sees_modes_names_and_parent(bedctl, tmp_path):
    a = _tree(tmp_path / "img", {"entry.sh": "echo\n"})
    before = bedctl.tree_hash([a])
    (a / "entry.sh").chmod(0o755)
    assert bedctl.tree_hash([a]) != before
    assert bedctl.tree_hash([a], extra="base1") != bedctl.tree_hash([a], extra="base2")
    (a / "entry.sh").rename(a / "other.sh")
    assert bedctl.tree_hash([a], extra="base1") != bedctl.tree_hash([a], extra="base2")


def test_tree_hash_ignores_bytecode(bedctl, tmp_path):
    a = _tree(tmp_path / "img", {"app.py": "x = 1\n"})
    before = bedctl.tree_hash([a])
    _tree(a, {"__pycache__/app.cpython-311.pyc": "junk"})
    assert bedctl.tree_hash([a]) == before


def test_daemon_json_keeps_user_keys_and_adds_rotation(bedctl, tmp_path, monkeypatch):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-opts": {"max-size": "50m"}, "data-root": "/srv/docker"}))
    monkeypatch.setattr(bedctl, "DAEMON_JSON", path)
    bedctl.ensure_daemon_json()
    written = json.loads(path.read_text())
    assert written["data-root"] == "/srv/docker"
    assert written["log-opts"] == {"max-size": "50m"}
    assert written["live-restore"] is True
    assert written["log-driver"] == "json-file"
    mtime = path.stat().st_mtime_ns
    bedctl.ensure_daemon_json()
    assert path.stat().st_mtime_ns == mtime


def test_daemon_json_invalid_is_reported(bedctl, tmp_path, monkeypatch):
    path = tmp_path / "daemon.json"
    path.write_text("{not json")
    monkeypatch.setattr(bedctl, "DAEMON_JSON", path)
    with pytest.raises(bedctl.BedError, match="not valid JSON"):
        bedctl.ensure_daemon_json()


def test_daemon_start_stop_and_stale_pidfile(bedctl):
    daemon = bedctl.Daemon(name="sleeper", argv=["sleep", "120"], ports=[], binary="sleep")
    assert daemon.start(lambda: True) is True
    pid = daemon.pid()
    assert pid
    assert daemon.start(lambda: True) is False  # already running: reused
    assert daemon.stop() is True
    assert daemon.pid() is None
    # A pidfile naming a process that is not ours is stale and ignored.
    daemon.pidfile.write_text("1")
    assert daemon.pid() is None
    assert not daemon.pidfile.exists()


def test_daemon_that_exits_at_start_reports_its_log(bedctl):
    daemon = bedctl.Daemon(name="broken", argv=["sh", "-c", "echo cannot bind >&2; exit 3"], ports=[], binary="sh")
    with pytest.raises(bedctl.BedError, match="exited at start: cannot bind"):
        daemon.start(lambda: False, timeout=10)
    assert not daemon.pidfile.exists()


def test_daemon_missing_binary_is_one_clear_error(bedctl):
    daemon = bedctl.Daemon(name="ghost", argv=["/nonexistent/ghostd"], ports=[], binary="ghostd")
    with pytest.raises(bedctl.BedError, match="cannot start the ghost"):
        daemon.start(lambda: True)


def test_image_spec_loading(bedctl, tmp_path):
    folder = _tree(
        tmp_path / "car_api", {"image.json": json.dumps({"repository": "pydeploy/car-api", "tags": ["v1", "v2"]})}
    )
    image = bedctl.Image.load(folder)
    assert image.refs() == ["127.0.0.1:5000/pydeploy/car-api:v1", "127.0.0.1:5000/pydeploy/car-api:v2"]


def test_app_image_with_a_build_per_tag(bedctl, tmp_path):
    spec = {
        "repository": "pydeploy/app",
        "wheels": "requirements.txt",
        "build_args": {"PYTHON_IMAGE": ""},
        "tags": {"v1": {"APP_VERSION": "v1"}, "v2": {"APP_VERSION": "v2"}},
    }
    image = bedctl.Image.load(_tree(tmp_path / "app", {"image.json": json.dumps(spec)}))
    assert image.variants == {"v1": {"APP_VERSION": "v1"}, "v2": {"APP_VERSION": "v2"}}
    assert image.wheels == "requirements.txt"
    assert image.ref("v2") == "127.0.0.1:5000/pydeploy/app:v2"
