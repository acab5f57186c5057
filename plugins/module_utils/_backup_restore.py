# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work behind the ``db_restore`` module.

Nothing becomes visible before it is verified.  The object is read once: its
bytes are hashed (SHA-256) on their way from S3 through the decompressor into
the restore tool, which writes into a new scratch database
(``<database>_restore_<id>``).  When the stream ends, the hash and size are
compared with the manifest; on a mismatch (or a failing tool or check) the
scratch database is dropped and the run fails, so a damaged backup never
reaches the live database.  With ``jobs > 1`` (PostgreSQL custom format) the
stream goes into a file inside the tools container instead, its hash is checked
before ``pg_restore --jobs`` starts, and the file goes with the container.

``target: live`` then takes a fresh backup of the live database through the
backup code path and swaps: PostgreSQL renames the live database aside and the
scratch one into its place (connections to the live one are refused and
terminated first); MongoDB moves each restored collection into the live
database with ``renameCollection`` (``dropTarget``) and drops collections the
backup does not have.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from datetime import UTC, datetime

from ansible_collections.pydeploy.stack.plugins.module_utils import _s3
from ansible_collections.pydeploy.stack.plugins.module_utils._backup import (
    Context,
    backup_options,
    tail_lines,
    take_backup,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_engines import compare
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_manifest import (
    HAS_ZSTANDARD,
    BackupError,
    check_name,
    count_matches,
    is_backup_key,
    manifest_key,
    mark_verified,
    parse_key,
    set_prefix,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_stream import ToolTimeout
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    DOCKER_ERRORS,
    Interrupted,
    _signals_raise_interrupted,
)

if HAS_ZSTANDARD:
    import zstandard

    DECOMPRESSION_ERRORS = (zlib.error, ValueError, zstandard.ZstdError)
else:
    DECOMPRESSION_ERRORS = (zlib.error, ValueError)

READ_SIZE = 256 * 1024
OUT_SIZE = 1024 * 1024
# Inside the tools container, which goes with it.
RESTORE_FILE = "/tmp/pydeploy-restore.dump"  # noqa: S108
MAX_PG_NAME = 63


class HashingReader:
    """A file-like view of an S3 object body that hashes every byte read."""

    def __init__(self, body):
        self.body = body
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size=-1) -> bytes:
        data = self.body.read(size if size and size > 0 else READ_SIZE)
        if data:
            self.sha256.update(data)
            self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(READ_SIZE):
            pass


class RestoreSource:
    """Decompressed chunks of a stored backup; hashing covers the whole object even when decompression fails."""

    def __init__(self, body, compression: str):
        self.reader = HashingReader(body)
        self.compression = compression
        self.error = None

    def chunks(self):
        try:
            if self.compression == "gzip":
                yield from self._gzip()
            elif self.compression == "zstd":
                yield from self._zstd()
            else:
                while True:
                    data = self.reader.read(READ_SIZE)
                    if not data:
                        break
                    yield data
        except DECOMPRESSION_ERRORS as exc:
            self.error = f"cannot decompress ({self.compression}): {exc}"
        self.reader.drain()  # the hash covers every stored byte, whatever happened

    def _gzip(self):
        decompress = zlib.decompressobj(47)
        while True:
            data = self.reader.read(READ_SIZE)
            if not data:
                break
            while data:
                out = decompress.decompress(data, OUT_SIZE)
                if out:
                    yield out
                data = decompress.unconsumed_tail
        out = decompress.flush()
        if out:
            yield out
        if not decompress.eof:
            raise ValueError("the gzip stream ends before its end mark")

    def _zstd(self):
        stream = zstandard.ZstdDecompressor().stream_reader(self.reader, read_size=READ_SIZE)
        while True:
            out = stream.read(OUT_SIZE)
            if not out:
                break
            yield out

    @property
    def hexdigest(self) -> str:
        return self.reader.sha256.hexdigest()

    @property
    def size(self) -> int:
        return self.reader.size


def scratch_name(database: str, ident: str) -> str:
    suffix = f"_restore_{ident}"
    return database[: MAX_PG_NAME - len(suffix)] + suffix


def is_scratch_of(live: str, name: str) -> bool:
    """Whether ``name`` is a database a restore of ``live`` made: a scratch database (``<live>_restore_<id>``), or
    a replaced live database kept aside (``<live>_restore_old_<id>``), as scratch_name names them."""
    _head, sep, ident = name.rpartition("_restore_")
    return bool(sep and ident) and name != live and scratch_name(live, ident) == name


def drop_scratch(ctx: Context, result: dict) -> None:
    """``mode: drop``: the scratch database named, or every database restores of the live one left."""
    live = ctx.target.database
    named = ctx.params.get("scratch_database")
    if named and not is_scratch_of(live, named):
        raise BackupError(
            f"{named} is not a database a restore of {live} made (they are named {scratch_name(live, '<id>')}):"
            " nothing was dropped"
        )
    if named:
        names = [named] if ctx.engine.exists(named) else []
    else:
        names = sorted(name for name in ctx.engine.databases() if is_scratch_of(live, name))
    result.update(dropped=names, changed=bool(names))
    if not names:
        result["msg"] = f"{named} does not exist" if named else f"no database left by a restore of {live}"
        return
    if ctx.check_mode:
        result["msg"] = f"would drop {', '.join(names)}"
        return
    for name in names:
        ctx.engine.drop(name)
    result["msg"] = f"dropped {', '.join(names)}"


def resolve_key(ctx: Context, name: str) -> str:
    requested = ctx.params["key"]
    if requested and requested != "latest":
        return requested
    prefix = set_prefix(ctx.params["prefix"], name)
    keys = set()
    manifests = set()
    for obj in _s3.list_objects(ctx.s3, ctx.params["bucket"], prefix):
        if is_backup_key(obj["Key"]):
            keys.add(obj["Key"])
        elif obj["Key"].endswith(".manifest.json"):
            manifests.add(obj["Key"])
    complete = [key for key in keys if manifest_key(key) in manifests]
    if not complete:
        raise BackupError(f"no backup of set {name} under s3://{ctx.params['bucket']}/{prefix}")
    return max(complete, key=lambda key: (parse_key(key)["time"], key))


class Restore:
    def __init__(self, ctx: Context, result: dict):
        self.ctx = ctx
        self.params = ctx.params
        self.result = result
        self.checks: list[dict] = []

    # ----------------------------------------------------------------- steps

    def stream_into(self, tools, manifest: dict, scratch: str) -> RestoreSource:
        """Restore the object into ``scratch``; return the source (hash and size of what was read)."""
        ctx, params = self.ctx, self.params
        key = manifest["key"]
        body = ctx.s3.get_object(Bucket=params["bucket"], Key=key)["Body"]
        source = RestoreSource(body, manifest["compression"])
        env = ctx.engine.tool_env()
        jobs = params["jobs"]
        fmt = manifest["format"]
        try:
            if jobs > 1 and ctx.engine.allows_parallel(fmt):
                argv = ["dd", f"of={RESTORE_FILE}", "bs=1048576"]
                ctx.commands.append(argv)
                code, output, complete = tools.run_with_stdin(argv, source.chunks())
                self.check_hash(source, manifest)
                if code != 0 or not complete or source.error:
                    raise BackupError(
                        f"copying the dump into the tools container failed: {source.error or tail_lines(output)}"
                    )
                argv = ctx.engine.restore_argv(fmt, scratch, jobs, RESTORE_FILE)
                code, _out, err = ctx.run_tool(tools, argv, env=env)
                output = err
            else:
                argv = ctx.engine.restore_argv(fmt, scratch, 1)
                if ctx.target.engine == "mongodb":
                    argv = [arg.replace(f"={ctx.target.database}.*", f"={manifest['database']}.*") for arg in argv]
                ctx.commands.append(argv)
                code, output, complete = tools.run_with_stdin(argv, source.chunks(), env=env)
                self.check_hash(source, manifest)
        finally:
            body.close()
        if source.error:
            raise BackupError(f"restore of {key} failed: {source.error}")
        if code != 0:
            raise BackupError(f"{argv[0]} failed (exit {code}) restoring {key}: {tail_lines(output)}")
        return source

    def check_hash(self, source: RestoreSource, manifest: dict) -> None:
        self.result["sha256"] = source.hexdigest
        if source.hexdigest != manifest["sha256"] or source.size != manifest["size"]:
            self.checks.append(
                {"name": "sha256", "ok": False, "expected": manifest["sha256"], "actual": source.hexdigest}
            )
            raise BackupError(
                f"checksum mismatch for s3://{self.params['bucket']}/{manifest['key']}: the manifest says sha256"
                f" {manifest['sha256']} ({manifest['size']} bytes), the stored object hashes to {source.hexdigest}"
                f" ({source.size} bytes); nothing was restored"
            )
        self.checks.append({"name": "sha256", "ok": True, "expected": manifest["sha256"], "actual": source.hexdigest})

    def run_checks(self, manifest: dict, scratch: str) -> bool:
        ctx, params = self.ctx, self.params
        engine = ctx.engine
        if params["check_counts"]:
            counts, indexes = engine.observed(scratch)
            for name in sorted(set(manifest.get("counts") or {}) | set(counts)):
                ok, expected = count_matches(name, counts.get(name), manifest)
                self.checks.append(
                    {"name": f"count {name}", "ok": ok, "expected": expected, "actual": counts.get(name)}
                )
            for name, wanted in sorted((manifest.get("indexes") or {}).items()):
                have = indexes.get(name, [])
                missing = sorted(set(wanted) - set(have))
                self.checks.append(
                    {"name": f"indexes {name}", "ok": not missing, "expected": sorted(wanted), "actual": sorted(have)}
                )
            self.result["restored_counts"] = counts
        if manifest.get("migration_revision") and (ctx.target.engine == "postgres" or params.get("revision_query")):
            actual = engine.revision(scratch, params.get("revision_query"))
            self.checks.append(
                {
                    "name": "migration revision",
                    "ok": actual == manifest["migration_revision"],
                    "expected": manifest["migration_revision"],
                    "actual": actual,
                }
            )
        for check in params.get("checks") or []:
            value, error = engine.run_check(scratch, check["query"])
            entry = {
                "name": check["name"],
                "ok": error is None and compare(value, check.get("expect")),
                "expected": check.get("expect"),
                "actual": value,
            }
            if error:
                entry["error"] = error
            self.checks.append(entry)
        return all(check["ok"] for check in self.checks)

    def mark(self, manifest: dict, ok: bool) -> None:
        updated = mark_verified(manifest, ok, datetime.now(UTC), self.checks)
        _s3.put_json(
            self.ctx.s3,
            self.params["bucket"],
            manifest_key(manifest["key"]),
            updated,
            extra=_s3.write_args(self.params),
        )
        self.result["manifest"] = updated
        self.result["changed"] = True

    # ----------------------------------------------------------------- the run

    def run(self, name: str) -> None:
        ctx, params, result = self.ctx, self.params, self.result
        engine = ctx.engine
        key = resolve_key(ctx, name)
        result["key"] = key
        manifest = _s3.get_json(ctx.s3, params["bucket"], manifest_key(key))
        if manifest is None:
            if not _s3.object_exists(ctx.s3, params["bucket"], key):
                raise BackupError(f"s3://{params['bucket']}/{key} does not exist")
            raise BackupError(f"s3://{params['bucket']}/{manifest_key(key)} is missing: the backup cannot be verified")
        manifest = {**manifest, "key": key}
        if manifest.get("engine") != ctx.target.engine:
            raise BackupError(f"{key} is a {manifest.get('engine')} backup, not {ctx.target.engine}")
        result["manifest"] = manifest
        result["expected_sha256"] = manifest["sha256"]
        mode, target = params["mode"], params["target"]
        live = ctx.target.database
        scratch = params.get("scratch_database") or scratch_name(live, secrets.token_hex(4))
        result["scratch_database"] = scratch
        if ctx.check_mode:
            what = {
                "verify": f"verify {key} in a scratch database {scratch} and drop it",
                "scratch": f"restore {key} into a new database {scratch}",
                "live": f"back up database {live}, restore {key} into {scratch}, check it and swap it in as {live}",
            }["verify" if mode == "verify" else target]
            result.update(changed=True, msg=f"would {what}")
            return
        if engine.exists(scratch):
            raise BackupError(f"the scratch database {scratch} already exists")

        with ctx.tools("restore") as tools:
            engine.prepare_tools(tools)
            engine.create_scratch(scratch)
            result["changed"] = True
            keep_scratch = False
            marked = False
            try:
                self.stream_into(tools, manifest, scratch)
                ok = self.run_checks(manifest, scratch)
                if mode == "verify":
                    marked = True
                    self.mark(manifest, ok)
                    if not ok:
                        raise BackupError(self.failed_message(key))
                    result["verified"] = True
                    return
                if not ok:
                    raise BackupError(self.failed_message(key) + "; nothing was restored")
                if target == "scratch":
                    keep_scratch = True
                    return
                self.swap_live(manifest, scratch)
                keep_scratch = True  # renamed into live: nothing left under the scratch name
            except BackupError:
                if mode == "verify" and not marked:  # a damaged backup is a failed verification
                    result["verified"] = False
                    try:
                        self.mark(manifest, False)
                    except _s3.S3_ERRORS:
                        pass
                raise
            finally:
                result["checks"] = self.checks
                if not keep_scratch:
                    try:
                        engine.drop(scratch)
                        result["scratch_dropped"] = True
                    except Exception:  # noqa: BLE001 - the failure being reported matters more
                        result["scratch_dropped"] = False

    def failed_message(self, key: str) -> str:
        failed = [check["name"] for check in self.checks if not check["ok"]]
        return f"verification of {key} failed: {', '.join(failed)}"

    def swap_live(self, manifest: dict, scratch: str) -> None:
        ctx, params, result = self.ctx, self.params, self.result
        live = ctx.target.database
        if ctx.engine.exists(live):
            options = backup_options(
                {**params, "format": manifest["format"], "compression": manifest["compression"]}, ctx.target.engine
            )
            name = check_name(params.get("name") or live)
            backup_result = {}
            try:
                before = take_backup(ctx, name, options, backup_result)
            except BackupError as exc:
                raise BackupError(
                    f"the backup of {live} before the restore failed: {exc.msg}; nothing was restored"
                ) from None
            result["pre_restore_backup"] = {key: before[key] for key in ("key", "size", "sha256", "duration")}
        else:
            result["pre_restore_backup"] = None
        replaced = scratch_name(live, "old_" + secrets.token_hex(3))
        existed = ctx.engine.swap(scratch, live, replaced)
        if existed and ctx.target.engine == "postgres":
            if params["keep_replaced"]:
                result["replaced_database"] = replaced
            else:
                ctx.engine.drop(replaced)
        result["restored_into"] = live


def run_restore(module) -> None:
    """Entry point of ``db_restore``."""
    ctx = Context(module)
    params = ctx.params
    result = {"changed": False, "commands": ctx.commands, "checks": [], "removed_containers": []}
    try:
        if params["timeout"] < 1:
            raise BackupError(f"timeout must be at least 1, got {params['timeout']}")
        if params["jobs"] < 1:
            raise BackupError(f"jobs must be at least 1, got {params['jobs']}")
        if params["mode"] == "verify" and params["target"] == "live":
            raise BackupError("mode=verify restores into a scratch database only; it cannot have target=live")
        dropping = params["mode"] == "drop"
        if params["target"] == "live" and not params["confirm_live"] and not dropping:
            raise BackupError("target=live replaces the live database: set confirm_live: true to mean it")
        if not dropping:  # a drop reads nothing from S3
            ctx.connect_s3()
        ctx.connect_database()
        name = check_name(params.get("name") or ctx.target.database)
        result.update(
            name=name,
            engine=ctx.target.engine,
            database=ctx.target.database,
            mode=params["mode"],
            target=params["target"],
        )
        restore = Restore(ctx, result)
        # A drop waits for a restore under way (its scratch database is not left over).
        with _signals_raise_interrupted(), ctx.lock(f"db_restore of {ctx.target.database}"):
            if dropping:
                drop_scratch(ctx, result)
            else:
                result["removed_containers"] = ctx.remove_stale_containers()
                restore.run(name)
    except BackupError as exc:
        result.update(exc.result)
        result["duration"] = ctx.elapsed()
        module.fail_json(msg=ctx.mask(exc.msg), **ctx.mask(result))
    except ToolTimeout as exc:
        module.fail_json(msg=ctx.mask(f"the restore {exc}"), **ctx.mask(result))
    except _s3.S3_ERRORS as exc:
        module.fail_json(msg=ctx.mask(f"S3 {_s3.where(params)}: {_s3.describe(exc)}"), **ctx.mask(result))
    except DOCKER_ERRORS as exc:
        module.fail_json(msg=ctx.mask(f"Docker error: {exc}"), **ctx.mask(result))
    except Interrupted as exc:
        module.fail_json(msg=f"interrupted ({exc}); the scratch database was dropped", **ctx.mask(result))
    result["duration"] = ctx.elapsed()
    module.exit_json(**ctx.mask(result))
