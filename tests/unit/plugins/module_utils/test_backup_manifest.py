"""Backup keys, manifests, codecs, and the restore source that hashes every stored byte."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from ansible_collections.pydeploy.stack.plugins.doc_fragments.backup_database import ModuleDocFragment
from ansible_collections.pydeploy.stack.plugins.module_utils import _backup_manifest as bm
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_engines import compare, database_argument_spec
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_restore import RestoreSource, scratch_name
from ansible_collections.pydeploy.stack.plugins.modules import backup_prune, db_backup, db_restore

WHEN = datetime(2025, 11, 5, 14, 30, 22, tzinfo=UTC)


def test_keys_sort_by_time_and_parse_back():
    key = bm.backup_key("backups/", "appdb", "custom", "zstd", WHEN, ident="1a2b3c")
    assert key == "backups/appdb/appdb-20251105T143022Z-1a2b3c.dump.zst"
    parsed = bm.parse_key(key)
    assert parsed == {"name": "appdb", "time": WHEN, "id": "1a2b3c", "format_ext": ".dump", "compression": "zstd"}
    assert bm.parse_key("backups/crm/crm-20251105T143022Z-000000.archive.gz")["compression"] == "gzip"
    assert bm.parse_key("backups/x/x-20251105T143022Z-000000.sql")["compression"] == "none"
    assert bm.is_backup_key(key) and not bm.is_backup_key(bm.manifest_key(key))
    assert not bm.is_backup_key("backups/appdb/notes.txt")
    later = bm.backup_key("backups/", "appdb", "custom", "zstd", WHEN + timedelta(seconds=1), ident="000000")
    assert sorted([later, key]) == [key, later]


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "ü"])
def test_bad_set_names(name):
    with pytest.raises(bm.BackupError):
        bm.check_name(name)


def test_manifest_fields():
    manifest = bm.build_manifest(
        key="k",
        size=1000,
        sha256="ab" * 32,
        raw_size=5000,
        engine="postgres",
        fmt="custom",
        compression="zstd",
        database="appdb",
        server_version="15.8",
        tool_version="pg_dump (PostgreSQL) 15.8",
        started=WHEN,
        finished=WHEN + timedelta(seconds=4),
        counts={"public.b": 2, "public.a": 1},
        release="v20251105_143022",
        migration_revision="0002",
    )
    assert manifest["started"] == "2025-11-05T14:30:22Z" and manifest["finished"] == "2025-11-05T14:30:26Z"
    assert (manifest["duration"], manifest["throughput"]) == (4.0, 250)
    assert list(manifest["counts"]) == ["public.a", "public.b"]
    assert manifest["verified"] is None and manifest["verified_at"] is None
    assert (manifest["release"], manifest["migration_revision"]) == ("v20251105_143022", "0002")
    marked = bm.mark_verified(manifest, True, WHEN + timedelta(days=1), [{"name": "sha256", "ok": True}])
    assert marked["verified"] is True and marked["verified_at"] == "2025-11-06T14:30:22Z"
    assert manifest["verified"] is None  # the original is left alone


def test_count_matches_accepts_moved_counts_within_their_range():
    manifest = {"counts": {"a": 5, "b": 7}, "counts_changed": {"b": [7, 9]}}
    assert bm.count_matches("a", 5, manifest) == (True, 5)
    assert bm.count_matches("a", 6, manifest) == (False, 5)
    assert bm.count_matches("b", 8, manifest) == (True, "7..9")
    assert bm.count_matches("b", 10, manifest)[0] is False
    assert bm.count_matches("c", 0, manifest) == (False, None)


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_codecs_round_trip_through_the_restore_source(compression):
    data = b"COPY public.cars (id, model) FROM stdin;\n" + os.urandom(300_000) + b"\\.\n" * 50_000
    packer = bm.compressor(compression)
    stored = b"".join(packer.compress(data[i : i + 65536]) for i in range(0, len(data), 65536)) + packer.flush()
    source = RestoreSource(io.BytesIO(stored), compression)
    assert b"".join(source.chunks()) == data
    assert source.error is None
    assert source.hexdigest == hashlib.sha256(stored).hexdigest()
    assert source.size == len(stored)


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_a_flipped_byte_still_hashes_the_whole_object(compression):
    data = os.urandom(200_000) * 3
    packer = bm.compressor(compression)
    stored = bytearray(packer.compress(data) + packer.flush())
    stored[len(stored) // 2] ^= 0x01
    source = RestoreSource(io.BytesIO(bytes(stored)), compression)
    restored = b"".join(source.chunks())
    assert source.size == len(stored)
    assert source.hexdigest == hashlib.sha256(bytes(stored)).hexdigest()
    assert source.error is not None or restored != data


def test_truncated_gzip_is_an_error():
    packer = bm.compressor("gzip")
    stored = packer.compress(os.urandom(100_000)) + packer.flush()
    source = RestoreSource(io.BytesIO(stored[:-20]), "gzip")
    list(source.chunks())
    assert "end mark" in source.error


def test_scratch_names_fit_postgres_identifiers():
    assert scratch_name("appdb", "1a2b3c4d") == "appdb_restore_1a2b3c4d"
    assert len(scratch_name("x" * 80, "1a2b3c4d")) == 63


def test_compare():
    assert compare(3, 3) and compare("3", 3) and compare(3.0, 3) and not compare(4, 3)
    assert compare(True, True) and not compare(1, True)
    assert compare("0002", "0002") and compare(None, None) and not compare(None, 0)


def options_of(module) -> dict:
    return yaml.safe_load(module.DOCUMENTATION)["options"]


def test_database_spec_and_doc_fragment_agree():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = database_argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default"), name
        assert documented[name].get("choices") == option.get("choices"), name
    assert spec["login_password"]["no_log"]


@pytest.mark.parametrize(
    ("module", "fragments"),
    [(db_backup, {"docker", "s3", "db"}), (db_restore, {"docker", "s3", "db"}), (backup_prune, {"s3"})],
)
def test_module_options_are_documented(module, fragments, monkeypatch):
    captured = {}

    class Stop(Exception):
        pass

    def fake_module(argument_spec, supports_check_mode):
        captured.update(argument_spec)
        raise Stop

    monkeypatch.setattr(module, "AnsibleModule", fake_module)
    with pytest.raises(Stop):
        module.main()
    from ansible_collections.pydeploy.stack.plugins.doc_fragments import docker, s3

    documented = dict(options_of(module))
    for fragment in fragments:
        source = {"docker": docker.ModuleDocFragment, "s3": s3.ModuleDocFragment, "db": ModuleDocFragment}[fragment]
        documented.update(yaml.safe_load(source.DOCUMENTATION)["options"])
    assert set(documented) == set(captured)
    for name, option in captured.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default"), name
        assert documented[name].get("choices") == option.get("choices"), name
        if name in {"secret_key", "session_token", "login_password"}:
            assert option["no_log"] is True
