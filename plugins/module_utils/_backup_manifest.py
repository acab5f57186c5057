# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup object names, manifests and compression codecs: pure helpers of the backup modules.

A backup set ``NAME`` lives under ``<prefix>NAME/``; each backup is one object

    <prefix>NAME/NAME-20251105T143022Z-1a2b3c.<format ext><compression ext>

(``.dump`` for pg_dump's custom format, ``.sql`` for plain SQL, ``.archive`` for a
mongodump archive; ``.zst``, ``.gz`` or nothing), and beside it the manifest
``<key>.manifest.json`` written once the upload completed.  Keys sort by time.
"""

from __future__ import annotations

import re
import secrets
import zlib
from datetime import UTC, datetime

try:
    import zstandard
except ImportError:
    HAS_ZSTANDARD = False
else:
    HAS_ZSTANDARD = True

# Level 1, not zstd's own default of 3: on dumps it is about twice as fast for a
# size within a few per cent (sometimes smaller), and a backup shares the
# database host's CPU with the database.
ZSTD_DEFAULT_LEVEL = 1
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1
FORMAT_EXT = {"custom": ".dump", "plain": ".sql", "archive": ".archive"}
COMPRESSION_EXT = {"zstd": ".zst", "gzip": ".gz", "none": ""}
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_KEY = re.compile(
    r"(?P<name>[^/]+)-(?P<time>\d{8}T\d{6}Z)-(?P<id>[0-9a-f]{6})"
    r"(?P<ext>\.(?:dump|sql|archive))(?P<comp>\.zst|\.gz)?$"
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class BackupError(Exception):
    """A failure of a backup module: ``msg`` plus extra result keys."""

    def __init__(self, msg: str, **result):
        super().__init__(msg)
        self.msg = msg
        self.result = result


# --------------------------------------------------------------------------- names


def check_name(name: str) -> str:
    if not name or not _NAME.match(name):
        raise BackupError(
            f"backup name {name!r} must start with a letter or digit and hold only letters, digits, '_', '.', '-'"
        )
    return name


def set_prefix(prefix: str, name: str) -> str:
    """Where the backups of set ``name`` live: ``<prefix><name>/``."""
    return f"{prefix or ''}{name}/"


def backup_key(prefix: str, name: str, fmt: str, compression: str, when: datetime, ident: str | None = None) -> str:
    ident = ident or secrets.token_hex(3)
    return (
        f"{set_prefix(prefix, name)}{name}-{when.astimezone(UTC).strftime(TIME_FORMAT)}-{ident}"
        f"{FORMAT_EXT[fmt]}{COMPRESSION_EXT[compression]}"
    )


def manifest_key(key: str) -> str:
    return key + MANIFEST_SUFFIX


def parse_key(key: str):
    """``{"name", "time", "id", "format_ext", "compression"}`` of a backup key, or None for any other key."""
    match = _KEY.search(key.rsplit("/", 1)[-1])
    if not match:
        return None
    comp = {".zst": "zstd", ".gz": "gzip", None: "none"}[match.group("comp")]
    return {
        "name": match.group("name"),
        "time": datetime.strptime(match.group("time"), TIME_FORMAT).replace(tzinfo=UTC),
        "id": match.group("id"),
        "format_ext": match.group("ext"),
        "compression": comp,
    }


def is_backup_key(key: str) -> bool:
    return not key.endswith(MANIFEST_SUFFIX) and parse_key(key) is not None


def iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime(ISO_FORMAT) if when else None


def parse_iso(text):
    if not text:
        return None
    try:
        return datetime.strptime(str(text), ISO_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        try:
            value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        except ValueError:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- manifest


def build_manifest(
    *,
    key: str,
    size: int,
    sha256: str,
    raw_size: int,
    engine: str,
    fmt: str,
    compression: str,
    database: str,
    server_version,
    tool_version,
    started: datetime,
    finished: datetime,
    counts: dict,
    counts_changed: dict | None = None,
    release=None,
    migration_revision=None,
    image=None,
    sse=None,
    storage_class=None,
) -> dict:
    """The manifest stored beside a backup (see the db_backup module's RETURN for each field)."""
    duration = max((finished - started).total_seconds(), 0.0)
    return {
        "manifest_version": MANIFEST_VERSION,
        "key": key,
        "size": size,
        "sha256": sha256,
        "raw_size": raw_size,
        "engine": engine,
        "format": fmt,
        "compression": compression,
        "database": database,
        "server_version": server_version,
        "tool_version": tool_version,
        "image": image,
        "release": release,
        "migration_revision": migration_revision,
        "started": iso(started),
        "finished": iso(finished),
        "duration": round(duration, 3),
        "throughput": round(size / duration) if duration > 0 else None,
        "counts": dict(sorted(counts.items())),
        "counts_changed": dict(sorted((counts_changed or {}).items())),
        "sse": sse,
        "storage_class": storage_class,
        "verified": None,
        "verified_at": None,
        "verification": None,
    }


def mark_verified(manifest: dict, ok: bool, when: datetime, checks: list) -> dict:
    updated = dict(manifest)
    updated.update(verified=bool(ok), verified_at=iso(when), verification={"checks": checks})
    return updated


def count_matches(name: str, actual: int, manifest: dict):
    """Whether a restored count agrees with the manifest: ``(ok, expected)``.

    A collection whose count moved while it was dumped (``counts_changed``:
    ``[before, after]``) agrees with any count between the two.
    """
    moved = (manifest.get("counts_changed") or {}).get(name)
    if moved:
        low, high = min(moved), max(moved)
        return low <= actual <= high, f"{low}..{high}"
    expected = (manifest.get("counts") or {}).get(name)
    return actual == expected, expected


# --------------------------------------------------------------------------- compression


class _Identity:
    def compress(self, data):
        return bytes(data)

    decompress = compress

    def flush(self):
        return b""


class _ZstdDecompressor:
    """A zstd stream decompressor that also knows whether the frame ended (a truncated object must fail)."""

    def __init__(self):
        self.obj = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, data):
        return self.obj.decompress(bytes(data))

    def flush(self):
        if not getattr(self.obj, "eof", True):
            raise ValueError("the zstd stream ended before its end mark (truncated)")
        return b""


class _GzipDecompressor:
    def __init__(self):
        self.obj = zlib.decompressobj(47)  # gzip or zlib header, detected

    def decompress(self, data):
        return self.obj.decompress(bytes(data))

    def flush(self):
        out = self.obj.flush()
        if not self.obj.eof:
            raise ValueError("the gzip stream ended before its end mark (truncated)")
        return out


def compression_available(compression: str) -> bool:
    return compression != "zstd" or HAS_ZSTANDARD


def compressor(compression: str, level=None):
    """An object with ``compress(bytes) -> bytes`` and ``flush() -> bytes``."""
    if compression == "gzip":
        return zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=ZSTD_DEFAULT_LEVEL if level is None else level).compressobj()
    return _Identity()


def decompressor(compression: str):
    """An object with ``decompress(bytes) -> bytes`` and ``flush() -> bytes`` that fails on a truncated stream."""
    if compression == "gzip":
        return _GzipDecompressor()
    if compression == "zstd":
        return _ZstdDecompressor()
    return _Identity()
