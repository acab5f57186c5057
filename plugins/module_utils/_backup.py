# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work behind the ``db_backup`` and ``backup_prune`` modules (``db_restore`` builds on it).

A backup, in order: S3 preflight (before anything starts), the database
container inspected, a host-wide lock per database container, tools containers
and multipart uploads left by a killed run removed, then one tools container
of the database's own image runs the dump tool; its stdout is compressed on
the managed host and streamed into an S3 multipart upload (and optionally a
local 0600 copy) with SHA-256 computed on the way.  No temporary file, and
memory bounded by two parts (one filling, one on the wire) plus a read
buffer.  Then the manifest, then retention.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from datetime import UTC, datetime

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.pydeploy.stack.plugins.module_utils import _s3
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_engines import (
    DatabaseTarget,
    engine_for,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_manifest import (
    BackupError,
    backup_key,
    build_manifest,
    check_name,
    compression_available,
    compressor,
    iso,
    manifest_key,
    set_prefix,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_retention import (
    check_rules,
    collect_entries,
    select_prunable,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_stream import ToolsContainer, ToolTimeout
from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    DOCKER_ERRORS,
    Interrupted,
    _signals_raise_interrupted,
    get_client,
    remove_container,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._migrate import MigrateError, MigrationLock
from ansible_collections.pydeploy.stack.plugins.module_utils._secrets import mask

LOCK_ROOT = "/var/lib/pydeploy/backup"
ONEOFF_LABEL = "pydeploy.oneoff"
LOCK_LABEL = "pydeploy.backup.lock"
DEFAULT_STALE_UPLOAD_AGE = 6 * 3600


def tail_lines(text: str, count: int = 8) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return "\n".join(lines[-count:])


# --------------------------------------------------------------------------- the lock


class RunLock(MigrationLock):
    """An exclusive ``flock`` per database container, so that backups and restores of one database never overlap.

    The migration lock's mechanism: while held the file names its holder; the kernel drops the lock when the
    holder dies.
    """

    def __init__(self, path: str, timeout: float, what: str):
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": iso(datetime.now(UTC)), "run": what}
        super().__init__(path, timeout, holder, label="lock")

    def __enter__(self):
        try:
            return super().__enter__()
        except MigrateError as exc:
            raise BackupError(str(exc)) from None


def default_lock_path(container: str) -> str:
    return os.path.join(LOCK_ROOT, re.sub(r"[^A-Za-z0-9_.-]+", "-", container) + ".lock")


# --------------------------------------------------------------------------- shared context


class Context:
    """What a backup or restore run shares: options, clients, the database target, the secrets to mask."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.started = time.monotonic()
        self.secrets = _s3.s3_secrets(self.params)
        if self.params.get("login_password"):
            self.secrets.append(self.params["login_password"])
        self.s3 = None
        self.docker = None
        self.target = None
        self.engine = None
        self.lock_path = None
        self.commands: list[list[str]] = []

    def mask(self, value):
        if isinstance(value, str):
            return mask(value, self.secrets)
        if isinstance(value, list):
            return [self.mask(item) for item in value]
        if isinstance(value, dict):
            return {key: self.mask(item) for key, item in value.items()}
        return value

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def connect_s3(self) -> None:
        try:
            self.s3 = _s3.get_client(self.params)
            _s3.preflight(self.s3, self.params)
        except _s3.S3Error as exc:
            raise BackupError(str(exc)) from None

    def connect_database(self) -> None:
        self.docker = get_client(self.module)
        self.target = DatabaseTarget(self.docker, self.params)
        self.secrets += self.target.secrets
        self.engine = engine_for(self.target)
        self.lock_path = self.params.get("lock_path") or default_lock_path(self.target.container_name)

    def lock(self, what: str) -> RunLock:
        return RunLock(self.lock_path, self.params["lock_timeout"], what)

    def stale_containers(self) -> list:
        filters = {"label": [ONEOFF_LABEL, f"{LOCK_LABEL}={self.lock_path}"]}
        return self.docker.containers.list(all=True, filters=filters)

    def remove_stale_containers(self) -> list[str]:
        stale = self.stale_containers()
        if not self.check_mode:
            for container in stale:
                remove_container(container)
        return sorted(container.name for container in stale)

    def tools(self, kind: str) -> ToolsContainer:
        return ToolsContainer(
            self.docker,
            self.target.image,
            network=self.target.network,
            netns_of=self.target.container.id,
            name=f"{self.target.container_name}-{kind}-{uuid.uuid4().hex[:8]}",
            labels={ONEOFF_LABEL: kind, LOCK_LABEL: self.lock_path, "pydeploy.backup.database": self.target.database},
            timeout=self.params["timeout"],
            # A pipe shared with the container only works where the engine runs.
            local_pipe=str(self.params.get("docker_host") or "").startswith("unix://"),
        )

    def run_tool(self, tools: ToolsContainer, argv, env=None, on_stdout=None):
        self.commands.append(list(argv))
        return tools.run(argv, env=env, on_stdout=on_stdout)

    def tool_version(self, tools: ToolsContainer) -> str | None:
        code, out, err = self.run_tool(tools, self.engine.version_argv())
        text = (out or err).strip().splitlines()
        return text[0].strip() if code == 0 and text else None


# --------------------------------------------------------------------------- backup


class LocalCopy:
    """A 0600 file written beside the upload, removed when the backup fails."""

    def __init__(self, directory, filename: str):
        self.path = os.path.join(directory, filename) if directory else None
        self.fd = None

    def __enter__(self):
        if self.path:
            try:
                os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise BackupError(f"cannot create the local copy {self.path}: {exc.strerror}") from None
        return self

    def write(self, data) -> None:
        if self.fd is not None:
            view = memoryview(data)
            while len(view):
                view = view[os.write(self.fd, view) :]

    def __exit__(self, exc_type, exc, tb):
        if self.fd is not None:
            if exc_type is None:
                os.fsync(self.fd)
            os.close(self.fd)
            if exc_type is not None:
                os.unlink(self.path)
        return False


def backup_options(params: dict, engine: str) -> dict:
    """The validated options of one backup (also used by db_restore for the backup it takes before a live restore)."""
    fmt = params.get("format") or ("custom" if engine == "postgres" else "archive")
    if engine == "mongodb":
        fmt = "archive"
    elif fmt not in ("custom", "plain"):
        raise BackupError(f"format {fmt} is not one of custom, plain for postgres")
    compression = params.get("compression") or "zstd"
    if not compression_available(compression):
        raise BackupError(missing_required_lib("zstandard") + " (or set compression: gzip)")
    part_size = int(params.get("part_size_mb") or 8) * _s3.MiB
    if part_size < _s3.MIN_PART_SIZE:
        raise BackupError(f"part_size_mb must be at least 5, got {params.get('part_size_mb')}")
    return {"format": fmt, "compression": compression, "part_size": part_size}


def take_backup(ctx: Context, name: str, options: dict, result: dict) -> dict:
    """Dump the target database into a new object of set ``name``; return its manifest.  Under the caller's lock."""
    params = ctx.params
    bucket, prefix = params["bucket"], params["prefix"]
    fmt, compression = options["format"], options["compression"]
    started = datetime.now(UTC)
    key = backup_key(prefix, name, fmt, compression, started)
    result["key"] = key
    extra = _s3.write_args(params)
    extra["Metadata"] = {"pydeploy-engine": ctx.target.engine, "pydeploy-database": ctx.target.database}
    raw_size = 0

    with ctx.tools("backup") as tools:
        ctx.engine.prepare_tools(tools)
        tool_version = ctx.tool_version(tools)
        server_version = ctx.engine.server_version()
        pack = compressor(compression, params.get("compression_level"))
        clock = time.monotonic()
        upload = _s3.MultipartWriter(ctx.s3, bucket, key, part_size=options["part_size"], extra=extra)
        try:
            with (
                upload,
                LocalCopy(params.get("local_copy_dir"), key.rsplit("/", 1)[-1]) as local,
                ctx.engine.dump(fmt, compression != "none") as (argv, env, counts, indexes, changed),
            ):

                def sink(data):
                    nonlocal raw_size
                    raw_size += len(data)
                    packed = pack.compress(data)
                    if packed:
                        upload.write(packed)
                        local.write(packed)

                code, _out, err = ctx.run_tool(tools, argv, env=env, on_stdout=sink)
                if code != 0:
                    raise BackupError(f"{argv[0]} failed (exit {code}): {tail_lines(err)}")
                rest = pack.flush()
                upload.write(rest)
                local.write(rest)
                upload.complete()
        except _s3.S3_ERRORS as exc:
            aborted = "aborted" if upload.aborted else f"NOT aborted ({upload.abort_error}); the next run sweeps it"
            raise BackupError(
                f"upload of s3://{bucket}/{key} failed after {upload.size} bytes: {_s3.describe(exc)}; the upload was"
                f" {aborted}"
            ) from None
        except ToolTimeout as exc:
            raise BackupError(f"the dump {exc}; the upload was aborted") from None
        duration = time.monotonic() - clock

    finished = datetime.now(UTC)
    manifest = build_manifest(
        key=key,
        size=upload.size,
        sha256=upload.hexdigest,
        raw_size=raw_size,
        engine=ctx.target.engine,
        fmt=fmt,
        compression=compression,
        database=ctx.target.database,
        server_version=server_version,
        tool_version=tool_version,
        started=started,
        finished=finished,
        counts=counts,
        counts_changed=changed,
        release=params.get("release"),
        migration_revision=params.get("migration_revision"),
        image=ctx.target.image_name,
        sse=None if params["sse"] == "none" else params["sse"],
        storage_class=params.get("storage_class"),
    )
    manifest["indexes"] = indexes
    manifest["duration"] = round(duration, 3)
    manifest["throughput"] = round(upload.size / duration) if duration > 0 else None
    manifest["raw_throughput"] = round(raw_size / duration) if duration > 0 else None
    _s3.put_json(ctx.s3, bucket, manifest_key(key), manifest, extra=_s3.write_args(params))
    if local.path:
        with open(
            os.open(local.path + ".manifest.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "w"
        ) as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
        result["local_copy"] = local.path
    return manifest


def prune(client, params: dict, name: str, rules: dict, check_mode: bool) -> dict:
    """Apply retention to set ``name``: delete the selected backups and their manifests."""
    check_rules(rules.get("max_age_days"), rules.get("max_count"), rules.get("min_verified"))
    prefix = set_prefix(params["prefix"], name)
    entries, manifests = collect_entries(client, params["bucket"], prefix)
    selected = select_prunable(
        entries,
        datetime.now(UTC),
        max_age_days=rules.get("max_age_days"),
        max_count=rules.get("max_count"),
        min_verified=rules.get("min_verified") or 0,
    )
    keys = [entry["key"] for entry in selected]
    objects = sorted(keys + [manifests[key] for key in keys if key in manifests])
    outcome = {"deleted": keys, "kept": len(entries) - len(keys), "errors": []}
    if objects and not check_mode:
        deleted, errors = _s3.delete_keys(client, params["bucket"], objects)
        outcome["errors"] = errors
        gone = set(deleted)
        outcome["deleted"] = [key for key in keys if key in gone]
    return outcome


def run_backup(module) -> None:
    """Entry point of ``db_backup``."""
    ctx = Context(module)
    params = ctx.params
    result = {"changed": False, "commands": ctx.commands, "swept_uploads": [], "removed_containers": []}
    try:
        if params["timeout"] < 1:
            raise BackupError(f"timeout must be at least 1, got {params['timeout']}")
        if params.get("stale_upload_age") is not None and params["stale_upload_age"] < 0:
            raise BackupError("stale_upload_age must be at least 0")
        options = backup_options(params, params["engine"])
        retention = params.get("retention")
        if retention:
            check_rules(retention.get("max_age_days"), retention.get("max_count"), retention.get("min_verified"))
        ctx.connect_s3()
        ctx.connect_database()
        name = check_name(params.get("name") or ctx.target.database)
        result.update(
            name=name,
            engine=ctx.target.engine,
            database=ctx.target.database,
            container=ctx.target.container_name,
            bucket=params["bucket"],
            format=options["format"],
            compression=options["compression"],
        )
        with _signals_raise_interrupted(), ctx.lock(f"db_backup of {ctx.target.database}"):
            result["removed_containers"] = ctx.remove_stale_containers()
            result["swept_uploads"] = _s3.sweep_uploads(
                ctx.s3,
                params["bucket"],
                set_prefix(params["prefix"], name),
                params["stale_upload_age"],
                dry_run=ctx.check_mode,
            )
            if ctx.check_mode:
                key = backup_key(params["prefix"], name, options["format"], options["compression"], datetime.now(UTC))
                result.update(
                    changed=True,
                    key=key,
                    msg=f"would dump {ctx.target.engine} database {ctx.target.database} of container"
                    f" {ctx.target.container_name} to s3://{params['bucket']}/{key}",
                )
            else:
                manifest = take_backup(ctx, name, options, result)
                result.update(
                    changed=True,
                    key=manifest["key"],
                    size=manifest["size"],
                    sha256=manifest["sha256"],
                    duration=manifest["duration"],
                    throughput=manifest["throughput"],
                    manifest=manifest,
                )
            if retention:
                result["pruned"] = prune(ctx.s3, params, name, retention, ctx.check_mode)
                result["changed"] = result["changed"] or bool(result["pruned"]["deleted"])
    except BackupError as exc:
        result.update(exc.result)
        result["total_duration"] = ctx.elapsed()
        module.fail_json(msg=ctx.mask(exc.msg), **ctx.mask(result))
    except _s3.S3_ERRORS as exc:
        module.fail_json(msg=ctx.mask(f"S3 {_s3.where(params)}: {_s3.describe(exc)}"), **ctx.mask(result))
    except DOCKER_ERRORS as exc:
        module.fail_json(msg=ctx.mask(f"Docker error: {exc}"), **ctx.mask(result))
    except Interrupted as exc:
        module.fail_json(
            msg=f"interrupted ({exc}); the upload was aborted and the tools container removed", **ctx.mask(result)
        )
    result["total_duration"] = ctx.elapsed()
    module.exit_json(**ctx.mask(result))


def run_prune(module) -> None:
    """Entry point of ``backup_prune``."""
    params = module.params
    secrets = _s3.s3_secrets(params)
    result = {"changed": False, "deleted": []}
    try:
        name = check_name(params["name"])
        rules = {key: params[key] for key in ("max_age_days", "max_count", "min_verified")}
        check_rules(**rules)
        client = _s3.get_client(params)
        _s3.preflight(client, params)
        outcome = prune(client, params, name, rules, module.check_mode)
    except (BackupError, _s3.S3Error) as exc:
        module.fail_json(msg=mask(str(exc), secrets), **result)
    except _s3.S3_ERRORS as exc:
        module.fail_json(msg=mask(f"S3 {_s3.where(params)}: {_s3.describe(exc)}", secrets), **result)
    result.update(outcome, changed=bool(outcome["deleted"]))
    if outcome["errors"]:
        module.fail_json(msg=f"{len(outcome['errors'])} objects could not be deleted", **result)
    module.exit_json(**result)
