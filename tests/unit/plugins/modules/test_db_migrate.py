"""Unit tests of the db_migrate module: options, results, check mode, masking.  No Docker: a fake engine
plays an Alembic project whose database revision lives in the fake."""

from __future__ import annotations

import json
import shlex
import types

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.pydeploy.stack.plugins.doc_fragments.docker import ModuleDocFragment
from ansible_collections.pydeploy.stack.plugins.doc_fragments.security import ModuleDocFragment as SecurityDocFragment
from ansible_collections.pydeploy.stack.plugins.module_utils import _docker, _migrate
from ansible_collections.pydeploy.stack.plugins.module_utils._secrets import MASK
from ansible_collections.pydeploy.stack.plugins.modules import db_migrate

SECRET = "pw-Zq81-very-secret"
TOKEN = "sk_live_abcdef123456"
HISTORY = "0001 -> 0002 (head), add channel\n<base> -> 0001, initial\n"
LOG = "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n"


class FakeContainer:
    def __init__(self, engine, argv, spec):
        self.engine = engine
        self.argv = argv
        self.spec = spec
        self.name = spec["name"]
        self.code, self.output = engine.execute(argv, spec["environment"])

    def start(self):
        pass

    def logs(self, **kwargs):
        yield self.output.encode()

    def wait(self, timeout=None):
        return {"StatusCode": self.code}

    def kill(self):
        pass

    def remove(self, force=False, v=False):
        self.engine.live.remove(self)


class FakeImages:
    """``client.images`` of the Docker SDK: which images are present, and pulls."""

    def __init__(self, present):
        self.present = set(present)
        self.pulled = []

    def get(self, image):
        if image not in self.present:
            raise _docker.ImageNotFound("no such image")
        return types.SimpleNamespace(id="sha256:" + image.encode().hex())

    def pull(self, image):
        self.pulled.append(image)
        self.present.add(image)


class FakeEngine:
    """Alembic in a box: history, current and upgrade against a revision held here."""

    def __init__(self, revision=None, history=HISTORY, bad_upgrade=False):
        self.revision = revision
        self.history = history
        self.bad_upgrade = bad_upgrade
        self.runs = []
        self.live = []
        self.stale = []
        self.images = FakeImages({"reg/app:v2"})
        self.containers = self
        self.closed = False

    def create(self, image, command, **spec):
        container = FakeContainer(self, command, spec)
        self.runs.append((image, command, spec))
        self.live.append(container)
        return container

    def list(self, all=False, filters=None):
        return list(self.stale)

    def close(self):
        self.closed = True

    def execute(self, argv, env):
        if argv == ["alembic", "history"]:
            return 0, self.history
        if argv == ["alembic", "current"]:
            if self.revision and self.revision not in self.history:
                message = f"Can't locate revision identified by '{self.revision}'"
                return 255, f"{LOG}ERROR [alembic.util.messaging] {message}\n  FAILED: {message}\n"
            return 0, LOG + (f"{self.revision} (head)\n" if self.revision else "")
        if argv == ["alembic", "upgrade", "head"]:
            if self.bad_upgrade:
                return 1, (
                    f"{LOG}Connecting to {env['DATABASE_URL']}\nTraceback (most recent call last):\n"
                    '  File "x.py", line 1\nRuntimeError: boom, token was ' + env.get("TOKEN", "") + "\n"
                )
            self.revision = "0002"
            return 0, f"{LOG}Running upgrade with {env['DATABASE_URL']}\n"
        return 0, shlex.join(argv)


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "app.env"
    path.write_text(f"# app settings\nDATABASE_URL=postgresql://app:{SECRET}@db:5432/app\nAPP_ENV=prod\n")
    return str(path)


def base_args(tmp_path, env_file, **extra):
    return {"image": "reg/app:v2", "env_file": env_file, "lock_path": str(tmp_path / "m.lock"), **extra}


def run(capsys, args: dict, check: bool = False) -> tuple[int, dict, str]:
    if check:
        args = {**args, "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(SystemExit) as caught:
        db_migrate.main()
    out = capsys.readouterr().out
    return caught.value.code, json.loads(out), out


@pytest.fixture
def client(monkeypatch):
    fake = FakeEngine()
    monkeypatch.setattr(_migrate, "get_client", lambda module: fake)
    return fake


# --------------------------------------------------------------------------- documentation and options


def test_documentation_matches_the_argument_spec(monkeypatch):
    captured = {}

    class Capture(Exception):
        pass

    def fake_module(argument_spec, supports_check_mode):
        captured.update(argument_spec)
        assert supports_check_mode
        raise Capture

    monkeypatch.setattr(db_migrate, "AnsibleModule", fake_module)
    with pytest.raises(Capture):
        db_migrate.main()

    options = yaml.safe_load(db_migrate.DOCUMENTATION)["options"]
    options.update(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"])
    options.update(yaml.safe_load(SecurityDocFragment.DOCUMENTATION)["options"])
    assert set(options) == set(captured)
    for name, spec in captured.items():
        doc = options[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("default") == spec.get("default"), name
        assert doc.get("choices") == spec.get("choices"), name
        assert bool(doc.get("required")) == bool(spec.get("required")), name
        assert sorted(doc.get("aliases", [])) == sorted(spec.get("aliases", [])), name
    # Plain settings: only the env file carries secrets.
    assert not captured["environment"].get("no_log")
    yaml.safe_load(db_migrate.EXAMPLES)
    yaml.safe_load(db_migrate.RETURN)


def test_missing_docker_sdk_is_one_clear_failure(capsys, monkeypatch, tmp_path, env_file):
    monkeypatch.setattr(_docker, "HAS_DOCKER", False)
    code, result, _ = run(capsys, base_args(tmp_path, env_file))
    assert code == 1
    assert "Failed to import the required Python library (docker)" in result["msg"]


def test_unreachable_engine_is_one_clear_failure(capsys, tmp_path, env_file):
    args = base_args(tmp_path, env_file, docker_host="unix:///nonexistent/docker.sock", docker_timeout=2)
    code, result, _ = run(capsys, args)
    assert code == 1
    assert result["msg"].startswith("cannot reach the Docker engine at unix:///nonexistent/docker.sock: ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"timeout": 0}, "timeout must be at least 1, got 0"),
        ({"lock_timeout": -1}, "lock_timeout must be at least 0, got -1"),
        ({"command": ""}, "command is empty"),
    ],
)
def test_bad_options_fail_before_docker(capsys, monkeypatch, tmp_path, env_file, extra, message):
    monkeypatch.setattr(_migrate, "get_client", lambda module: pytest.fail("reached Docker"))
    code, result, _ = run(capsys, base_args(tmp_path, env_file, **extra))
    assert (code, result["msg"]) == (1, message)


def test_bad_env_file_never_shows_its_content(capsys, client, tmp_path):
    path = tmp_path / "bad.env"
    path.write_text(f"OK=1\n{SECRET}\n")
    code, result, out = run(capsys, base_args(tmp_path, str(path)))
    assert code == 1
    assert result["msg"] == f"{path}, line 2: expected KEY=VALUE"
    assert SECRET not in out


# --------------------------------------------------------------------------- runs


def test_check_mode_lists_pending_and_runs_no_migration(capsys, client, tmp_path, env_file):
    code, result, out = run(capsys, base_args(tmp_path, env_file), check=True)
    assert code == 0, result
    assert result["changed"] is True
    assert result["pending"] == ["0001", "0002"]
    assert result["revision_before"] is None
    assert result["revision_after"] is None
    assert result["head"] == "0002"
    assert result["diff"] == {"before": "\n", "after": "0002\n"}
    assert result["commands"] == [["alembic", "history"], ["alembic", "current"]]
    assert client.revision is None
    assert client.live == []
    assert SECRET not in out


def test_real_run_then_second_run(capsys, client, tmp_path, env_file):
    code, result, out = run(capsys, base_args(tmp_path, env_file))
    assert code == 0, result
    assert result["changed"] is True
    assert (result["revision_before"], result["revision_after"]) == (None, "0002")
    assert result["pending"] == ["0001", "0002"]
    # The history and the revision are read at once; an 'upgrade head' that succeeded is not read back.
    assert result["commands"] == [
        ["alembic", "history"],
        ["alembic", "current"],
        ["alembic", "upgrade", "head"],
    ]
    assert f"postgresql://app:{MASK}@db:5432/app" in result["output"]
    assert SECRET not in out
    assert isinstance(result["duration"], float)
    assert client.live == []

    # every one-off carries the labels, the env file's variables and a name from the image
    for image, _, spec in client.runs:
        assert image == "reg/app:v2"
        assert spec["labels"]["pydeploy.oneoff"] == "migrate"
        assert spec["labels"]["pydeploy.stack"] == "app"
        assert spec["labels"]["pydeploy.migrate.lock"] == str(tmp_path / "m.lock")
        assert spec["environment"]["APP_ENV"] == "prod"
        assert spec["name"].startswith("app-migrate-")

    code, again, _ = run(capsys, base_args(tmp_path, env_file))
    assert code == 0
    assert again["changed"] is False
    assert again["pending"] == []
    assert (again["revision_before"], again["revision_after"]) == ("0002", "0002")
    # Nothing pending: the upgrade (and the read after it) is not run at all.
    assert again["commands"] == [["alembic", "history"], ["alembic", "current"]]

    code, check_again, _ = run(capsys, base_args(tmp_path, env_file), check=True)
    assert (code, check_again["changed"], check_again["pending"]) == (0, False, [])


def test_failed_migration_is_masked_and_reports_where_the_database_is(capsys, client, tmp_path, env_file):
    client.revision = "0001"
    client.bad_upgrade = True
    with open(env_file, "a") as handle:
        handle.write(f"TOKEN={TOKEN}\n")
    args = base_args(tmp_path, env_file)
    code, result, out = run(capsys, args)
    assert code == 1
    assert result["msg"] == f"migration failed (exit 1): Connecting to postgresql://app:{MASK}@db:5432/app\n" + (
        f"RuntimeError: boom, token was {MASK}"
    )
    assert result["changed"] is False
    assert (result["revision_before"], result["revision_after"]) == ("0001", "0001")
    assert result["pending"] == ["0002"]
    assert "Traceback" in result["output"]
    assert SECRET not in out
    assert TOKEN not in out
    assert client.live == []


def test_tool_command_always_changes_and_reads_its_revision(capsys, client, tmp_path, env_file):
    args = base_args(
        tmp_path,
        env_file,
        tool="command",
        command=["python", "manage.py", "migrate"],
        revision_command="echo rev-7",
        stack="shop",
    )
    code, result, _ = run(capsys, args, check=True)
    assert code == 0, result
    assert result["changed"] is True
    assert result["pending"] == []
    assert result["commands"] == [["echo", "rev-7"]]

    code, result, _ = run(capsys, args)
    assert code == 0, result
    assert result["changed"] is True
    assert result["revision_before"] == result["revision_after"] == "echo rev-7"
    assert result["commands"] == [["echo", "rev-7"], ["python", "manage.py", "migrate"], ["echo", "rev-7"]]
    assert result["output"] == "python manage.py migrate"
    assert client.runs[-1][2]["name"].startswith("shop-migrate-")


def test_missing_image_is_pulled(capsys, client, tmp_path, env_file):
    client.images.present.clear()
    code, result, _ = run(capsys, base_args(tmp_path, env_file), check=True)
    assert code == 0, result
    assert result["image_pulled"] is True
    assert client.images.pulled == ["reg/app:v2"]


def test_stale_oneoffs_are_removed_under_the_lock(capsys, client, tmp_path, env_file):
    client.revision = "0002"
    leftover = FakeContainer(client, ["alembic", "current"], {"name": "app-migrate-dead", "environment": {}})
    client.live.append(leftover)
    client.stale = [leftover]

    code, result, _ = run(capsys, base_args(tmp_path, env_file), check=True)
    assert (code, result["changed"], result["removed_containers"]) == (0, True, ["app-migrate-dead"])
    assert leftover in client.live  # check mode removes nothing

    code, result, _ = run(capsys, base_args(tmp_path, env_file))
    assert (code, result["changed"], result["removed_containers"]) == (0, True, ["app-migrate-dead"])
    assert client.live == []


def test_lock_held_fails_naming_the_holder(capsys, client, tmp_path, env_file):
    holder = {"pid": 999, "host": "web7", "since": "2025-11-05T14:30:22Z", "image": "reg/app:v1"}
    with _migrate.MigrationLock(str(tmp_path / "m.lock"), 0, holder):
        code, result, _ = run(capsys, base_args(tmp_path, env_file, lock_timeout=0))
    assert code == 1
    assert "is held by pid 999 on host web7 since 2025-11-05T14:30:22Z (image reg/app:v1)" in result["msg"]
    assert result["lock_holder"] == holder
    assert result["changed"] is False
    assert client.runs == []


def test_history_failure_is_reported(capsys, client, tmp_path, env_file):
    client.history = "FAILED: No 'script_location' key found in configuration.\n"
    client.execute = lambda argv, env: (255, client.history)
    code, result, _ = run(capsys, base_args(tmp_path, env_file))
    assert code == 1
    assert result["msg"] == (
        "reading the migration history failed (exit 255): FAILED: No 'script_location' key found in configuration."
    )


def test_empty_history_is_not_taken_for_an_alembic_project(capsys, client, tmp_path, env_file):
    client.history = "\n"
    code, result, _ = run(capsys, base_args(tmp_path, env_file))
    assert code == 1
    assert result["msg"] == "'alembic history' listed no revision: is this an Alembic project?"


def test_record_skips_a_migration_this_image_already_made(capsys, client, tmp_path, env_file):
    args = base_args(tmp_path, env_file, record_path=str(tmp_path / "state" / "migrated.json"))
    code, first, _ = run(capsys, args)
    assert (code, first["changed"], first["revision_after"]) == (0, True, "0002")
    runs = len(client.runs)

    for check in (True, False):
        code, again, _ = run(capsys, args, check=check)
        assert (code, again["changed"], again["revision_after"], again["pending"]) == (0, False, "0002", [])
        assert "already migrated" in again["skipped_reason"]
    assert len(client.runs) == runs  # no container started

    code, forced, _ = run(capsys, {**args, "force": True})
    assert code == 0
    assert "skipped_reason" not in forced
    assert len(client.runs) > runs

    # Another database (another environment) is migrated again.
    code, elsewhere, _ = run(capsys, {**args, "environment": {"PGHOST": "replica"}})
    assert code == 0
    assert "skipped_reason" not in elsewhere

    # Another image is never taken for the recorded one.
    client.images.present.add("reg/app:v3")
    code, other, _ = run(capsys, {**args, "image": "reg/app:v3"})
    assert code == 0
    assert "skipped_reason" not in other


def test_only_alembic_upgrade_alone_is_left_out_when_nothing_is_pending():
    assert not _migrate.plain_upgrade(shlex.split("sh -c 'alembic upgrade head && python seed.py'"))
    assert _migrate.plain_upgrade(["/opt/venv/bin/alembic", "-c", "deploy/alembic.ini", "upgrade", "head"])
    assert not _migrate.plain_upgrade(["alembic", "current"])


def test_a_database_migrated_by_a_newer_release_is_named_with_what_to_do(capsys, client, tmp_path, env_file):
    client.revision = "0003"  # written by a release whose scripts this image does not have
    for check in (True, False):
        code, result, out = run(capsys, base_args(tmp_path, env_file), check=check)
        assert code == 1 and result["changed"] is False, result
        assert result["msg"].startswith("the database is at revision 0003, which reg/app:v2 does not know"), result
        assert "rollback.yml" in result["msg"]
        assert result["revision_before"] == "0003"
        assert "Can't locate revision" in result["output"]
        assert SECRET not in out
    assert ["alembic", "upgrade", "head"] not in [argv for _, argv, _ in client.runs]
