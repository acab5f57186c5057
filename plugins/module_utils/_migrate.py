# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work behind the ``db_migrate`` module.

Pure helpers first (names, the lock, Alembic output parsing), then
:class:`DbMigrate`, which runs the one-off containers under the lock.  The
module itself only declares its options and calls :func:`run_module`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    DOCKER_ERRORS,
    EnvFileError,
    Interrupted,
    OneOffTimeout,
    build_environment,
    ensure_image,
    get_client,
    remove_container,
    run_oneoff,
    security_host_options,
    split_command,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._secrets import mask, redact_url

LOCK_ROOT = "/var/lib/pydeploy"
ONEOFF_LABEL = "pydeploy.oneoff"
ONEOFF_KIND = "migrate"
LOCK_LABEL = "pydeploy.migrate.lock"
STACK_LABEL = "pydeploy.stack"
ALEMBIC_UPGRADE = "alembic upgrade head"
ALEMBIC_CURRENT = "alembic current"
ALEMBIC_HISTORY = "alembic history"
# How much of the migration output the module returns, and how many lines go into a failure message.
MAX_RETURNED_OUTPUT = 64 * 1024
FAILURE_LINES = 12


class MigrateError(Exception):
    """A failure of the module: ``msg`` plus extra result keys (both masked before they are returned)."""

    def __init__(self, msg: str, **result):
        super().__init__(msg)
        self.msg = msg
        self.result = result


class LockTimeout(MigrateError):
    """The migration lock stayed held by someone else for ``lock_timeout`` seconds."""


# --------------------------------------------------------------------------- names


def _clean_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip(".-")


def image_name(image: str) -> str:
    """The repository's last path component: ``reg:5000/team/app:v1`` -> ``app``."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def stack_name(stack, image: str) -> str:
    """A name safe for a path component and a container name, from ``stack`` or else the image."""
    name = _clean_name(stack if stack else image_name(image))
    if not name:
        raise MigrateError(f"cannot derive a stack name from {'stack ' + repr(stack) if stack else 'the image'}")
    return name


def default_lock_path(name: str) -> str:
    return os.path.join(LOCK_ROOT, name, "migrate.lock")


# --------------------------------------------------------------------------- the lock


def holder_record(image: str) -> dict:
    """What the lock file says about its holder while it is held."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "image": image,
    }


def parse_holder(text: str):
    """The holder record of a lock file's content, or None when it is empty or not ours."""
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def holder_message(path: str, holder, waited: float, label: str = "migration lock") -> str:
    if holder:
        # A migration names its image; other runs sharing the lock (backups) say what they do.
        doing = f"image {holder.get('image', '?')}" if "run" not in holder else holder["run"]
        since = holder.get("since", "?")
        who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {since} ({doing})"
    else:
        who = "a process that has not written its name yet"
    return f"{label} {path} is held by {who}; gave up after {waited:.0f} s (lock_timeout)"


class MigrationLock:
    """An exclusive ``flock`` on ``path``, waited for at most ``timeout`` seconds.

    While held, the file names the holder (:func:`holder_record`); it is
    emptied on release.  The kernel drops a ``flock`` when its holder dies, so
    a crashed run never leaves a stale lock, only a stale name that the next
    holder overwrites.
    """

    def __init__(self, path: str, timeout: float, holder: dict, poll: float = 0.5, label: str = "migration lock"):
        self.path = path
        self.timeout = timeout
        self.holder = holder
        self.poll = poll
        self.label = label
        self.fd = None

    def __enter__(self):
        directory = os.path.dirname(self.path)
        try:
            if directory:
                os.makedirs(directory, mode=0o750, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise MigrateError(f"cannot open the {self.label} {self.path}: {exc.strerror}") from None
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise MigrateError(f"cannot lock {self.path}: {exc.strerror}") from None
            waited = time.monotonic() - started
            if waited >= self.timeout:
                holder = parse_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
                os.close(fd)
                raise LockTimeout(holder_message(self.path, holder, waited, self.label), lock_holder=holder)
            time.sleep(min(self.poll, max(self.timeout - waited, 0.01)))
        self.fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(self.holder, sort_keys=True) + "\n").encode(), 0)
        os.fsync(fd)
        return self

    def __exit__(self, *exc_info):
        fd, self.fd = self.fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return False


# --------------------------------------------------------------------------- Alembic output

_REV = r"[^\s,()]+"
# "<down>[ (<deps>)] -> <rev>[ (flag)...][, <doc>]", as printed by 'alembic history' (not --verbose).
_HISTORY_LINE = re.compile(
    rf"^(?P<down><base>|{_REV}(?:, {_REV})*)(?: \((?P<deps>{_REV}(?:, {_REV})*)\))?"
    rf" -> (?P<rev>{_REV})(?P<flags>(?: \([^)]*\))*)(?:, (?P<doc>.*))?$"
)
# "<rev>[ (flag)...]", one line per current head, as printed by 'alembic current'.
_CURRENT_LINE = re.compile(rf"^(?P<rev>{_REV})(?: \([^)]*\))*$")


class RevisionGraph:
    """The revisions of an Alembic script directory, read from ``alembic history`` output."""

    def __init__(self, parents: dict, order: list):
        self.parents = parents  # revision -> its down revisions and dependencies
        self.order = order  # oldest first, as listed (reversed)

    @classmethod
    def parse(cls, text: str) -> RevisionGraph:
        parents: dict[str, list[str]] = {}
        listed: list[str] = []
        for line in text.splitlines():
            match = _HISTORY_LINE.match(line.strip())
            if not match:
                continue  # log lines, warnings, blank lines
            rev = match["rev"]
            ups = [] if match["down"] == "<base>" else match["down"].split(", ")
            if match["deps"]:
                ups += match["deps"].split(", ")
            parents[rev] = ups
            listed.append(rev)
        return cls(parents, list(reversed(listed)))

    def __contains__(self, revision) -> bool:
        return revision in self.parents

    def __len__(self) -> int:
        return len(self.parents)

    @property
    def heads(self) -> list[str]:
        children = {parent for ups in self.parents.values() for parent in ups}
        return [rev for rev in self.order if rev not in children]

    def ancestry(self, revisions) -> set:
        """``revisions`` and everything they stand on."""
        seen: set[str] = set()
        stack = list(revisions)
        while stack:
            rev = stack.pop()
            if rev in seen:
                continue
            seen.add(rev)
            stack.extend(self.parents.get(rev, ()))
        return seen

    def pending(self, current, targets=None) -> list[str]:
        """Revisions an upgrade from ``current`` to ``targets`` (default: every head) applies, in order."""
        wanted = self.ancestry(targets if targets else self.heads) - self.ancestry(current)
        position = {rev: index for index, rev in enumerate(self.order)}
        done: set[str] = set()
        ordered: list[str] = []
        remaining = sorted(wanted, key=lambda rev: position.get(rev, -1))
        while remaining:
            for rev in remaining:
                if all(parent in done or parent not in wanted for parent in self.parents.get(rev, ())):
                    break
            else:  # a cycle cannot come out of alembic; keep the listed order rather than loop
                rev = remaining[0]
            remaining.remove(rev)
            done.add(rev)
            ordered.append(rev)
        return ordered


def parse_current(text: str, graph: RevisionGraph | None = None) -> list[str]:
    """The revision(s) ``alembic current`` printed; with ``graph``, only revisions it knows count."""
    found = []
    for line in text.splitlines():
        match = _CURRENT_LINE.match(line.strip())
        if match and (graph is None or match["rev"] in graph) and match["rev"] not in found:
            found.append(match["rev"])
    return found


def upgrade_arguments(words: list) -> list:
    """The arguments of ``alembic ... upgrade`` in ``words`` (its target), without its options."""
    args = []
    rest = iter(words[words.index("upgrade") + 1 :])
    for word in rest:
        if word == "--tag":  # the one option of 'upgrade' that takes a value
            next(rest, None)
        elif not word.startswith("-"):
            args.append(word)
    return args


def upgrade_target(argv, graph: RevisionGraph):
    """The revisions ``alembic ... upgrade TARGET`` aims at: None for the heads or a target we cannot resolve."""
    words = list(argv)
    if "upgrade" not in words:
        return None
    args = upgrade_arguments(words)
    if not args or args[0] in ("head", "heads"):
        return None
    target = args[0]
    if target in graph:
        return [target]
    matches = [rev for rev in graph.order if rev.startswith(target)]
    return matches if len(matches) == 1 else None


def plain_upgrade(argv) -> bool:
    """Whether ``argv`` is ``alembic [options] upgrade TARGET`` and nothing else (no other program, no shell):
    with nothing pending it would change nothing, so it need not run."""
    words = list(argv)
    return bool(words) and words[0].rsplit("/", 1)[-1] == "alembic" and "upgrade" in words


def upgraded_to(argv, graph: RevisionGraph):
    """The revisions a database is at once ``argv`` succeeded, when that is certain: ``alembic [options]
    upgrade head`` (one head) or ``upgrade heads``, writing to the database (not --sql): every head.
    None otherwise (another program, a named or relative target, where other branches may stay where they
    were): then the revision is read back."""
    words = list(argv)
    if not plain_upgrade(words) or "--sql" in words:
        return None
    args = upgrade_arguments(words)
    if len(args) != 1:
        return None
    if args[0] == "heads" or (args[0] == "head" and len(graph.heads) == 1):
        return list(graph.heads)
    return None


_UNKNOWN_REVISION = re.compile(r"Can't locate revision identified by '([^']+)'")


def unknown_revision(text: str):
    """The database's revision that Alembic could not find in the release's scripts, or None."""
    match = _UNKNOWN_REVISION.search(text or "")
    return match.group(1) if match else None


def last_line(text: str):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def tail_lines(text: str, count: int = FAILURE_LINES) -> str:
    """The end of a tool's output, as it goes into a failure message.

    A Python traceback is reduced to what a reader needs: the last line the
    tool printed before it, and the exception at its end (its frames are in
    the returned ``output``).
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    headers = [index for index, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if headers:
        before = [line for line in lines[: headers[0]] if not line[:1].isspace()]
        after = lines[headers[-1] + 1 :]
        # Frames are indented; the exception starts at the first line that is not.
        start = next((index for index, line in enumerate(after) if not line[:1].isspace()), len(after))
        lines = before[-1:] + after[start:]
    return "\n".join(lines[-count:])


def truncate(text: str, limit: int = MAX_RETURNED_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters of earlier output dropped ...]\n{text[-limit:]}"


def revision_text(revisions) -> str | None:
    return ", ".join(revisions) if revisions else None


def secret_values(env: dict) -> tuple[list, dict]:
    """What to hide of an environment: every value, except that a URL only loses its password.

    Returns the values to mask and, for URL values, their redacted form
    (``postgresql://app:********@db/app``), so that a failure still says where it connected.
    """
    secrets, urls = [], {}
    for value in env.values():
        if not value:
            continue
        password = None
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
        if password:
            urls[value] = redact_url(value)
            secrets += [password, unquote(password)]
        else:
            secrets.append(value)
    return secrets, urls


# --------------------------------------------------------------------------- the run


class DbMigrate:
    """One run of the module: lock, read the revision, migrate, read it again."""

    def __init__(self, module, client=None):
        self.module = module
        self.client = client
        params = module.params
        self.params = params
        if params["timeout"] < 1:
            raise MigrateError(f"timeout must be at least 1, got {params['timeout']}")
        if params["lock_timeout"] < 0:
            raise MigrateError(f"lock_timeout must be at least 0, got {params['lock_timeout']}")
        try:
            security_host_options(params.get("security") or {})
        except ValueError as exc:
            raise MigrateError(str(exc)) from None
        self.image = params["image"]
        self.tool = params["tool"]
        self.name = stack_name(params["stack"], self.image)
        self.lock_path = params["lock_path"] or default_lock_path(self.name)
        self.env = build_environment(params["env_file"], params["environment"])
        # Only the env file carries secrets; plain settings stay readable.
        self.secrets, self.urls = secret_values(build_environment(params["env_file"], None))
        self.commands: list[list[str]] = []
        self.timeout = params["timeout"]
        self.labels = dict(params["labels"] or {})
        self.labels.update({ONEOFF_LABEL: ONEOFF_KIND, LOCK_LABEL: self.lock_path, STACK_LABEL: self.name})

        self.migrate_argv = split_command(params["command"])
        if not self.migrate_argv:
            raise MigrateError("command is empty")
        revision = params["revision_command"]
        if revision is None and self.tool == "alembic":
            revision = ALEMBIC_CURRENT
        self.revision_argv = split_command(revision)
        history = params["history_command"] if params["history_command"] is not None else ALEMBIC_HISTORY
        self.history_argv = split_command(history) if self.tool == "alembic" else []

    # ----------------------------------------------------------------- helpers

    def mask(self, text):
        if not isinstance(text, str):
            return text
        for url, redacted in self.urls.items():
            text = text.replace(url, redacted)
        return mask(text, self.secrets)

    def oneoff(self, argv, what: str):
        """Run ``argv``; return its output, or raise MigrateError naming ``what`` on a non-zero exit."""
        self.record_command(argv)
        return self._run(argv, what)

    def record_command(self, argv) -> None:
        """Note ``argv`` in the result's ``commands``, secrets masked, in the order the commands are given."""
        self.commands.append([self.mask(arg) for arg in argv])

    def _run(self, argv, what: str):
        try:
            code, output = run_oneoff(
                self.client,
                self.image,
                argv,
                environment=self.env,
                network=self.params["network"],
                labels=self.labels,
                name=f"{self.name}-{ONEOFF_KIND}-{uuid.uuid4().hex[:8]}",
                timeout=self.timeout,
                user=self.params["user"],
                security=self.params.get("security"),
            )
        except OneOffTimeout as exc:
            raise MigrateError(
                f"{what} timed out after {exc.timeout:g} s and was killed: {tail_lines(exc.output)}",
                output=truncate(exc.output),
            ) from None
        if code != 0:
            raise MigrateError(f"{what} failed (exit {code}): {tail_lines(output)}", output=truncate(output))
        return output

    def stale_containers(self):
        """One-off containers of this lock left by a run that was killed outright (SIGKILL, host crash)."""
        filters = {"label": [f"{ONEOFF_LABEL}={ONEOFF_KIND}", f"{LOCK_LABEL}={self.lock_path}"]}
        return self.client.containers.list(all=True, filters=filters)

    # ----------------------------------------------------------------- the run

    def run(self) -> dict:
        started = time.monotonic()
        check_mode = self.module.check_mode
        result = {
            "changed": False,
            "image": self.image,
            "lock_path": self.lock_path,
            "revision_before": None,
            "revision_after": None,
            "head": None,
            "pending": [],
            "commands": self.commands,
            "output": "",
            "removed_containers": [],
        }
        try:
            try:
                result["image_pulled"] = ensure_image(self.client, self.image)
            except DOCKER_ERRORS as exc:
                raise MigrateError(f"image {self.image} is not on this host and cannot be pulled: {exc}") from None
            record = self.read_record()
            if record:
                # This very image already migrated this database: nothing can be pending.
                result.update(
                    revision_before=record["revision"],
                    revision_after=record["revision"],
                    head=record["revision"],
                    skipped_reason=f"already migrated with image {record['image_id'][:19]} at {record['time']}",
                )
                return result
            with MigrationLock(self.lock_path, self.params["lock_timeout"], holder_record(self.image)):
                stale = self.stale_containers()
                result["removed_containers"] = sorted(container.name for container in stale)
                if not check_mode:
                    for container in stale:
                        remove_container(container)

                graph = None
                if self.tool == "alembic":
                    graph, before = self.read_history_and_revision()
                else:
                    before = self.read_revision(None)
                result["revision_before"] = revision_text(before) if graph is not None else before
                result["revision_after"] = result["revision_before"]
                if graph is not None:
                    targets = upgrade_target(self.migrate_argv, graph) or graph.heads
                    result["head"] = revision_text(targets)
                    result["pending"] = graph.pending(before, targets)
                    result["diff"] = {
                        "before": (result["revision_before"] or "") + "\n",
                        "after": result["head"] + "\n",
                    }
                would_change = bool(result["pending"]) if graph is not None else True
                result["changed"] = would_change or bool(stale)

                if check_mode:
                    return result
                if graph is not None and not would_change and plain_upgrade(self.migrate_argv):
                    # The database is at the target already: 'alembic upgrade' would only say so.
                    self.write_record(result["revision_after"])
                    return result

                try:
                    result["output"] = self.oneoff(self.migrate_argv, "migration")
                except MigrateError:
                    self.after_failure(graph, result, bool(stale))
                    raise
                reached = upgraded_to(self.migrate_argv, graph) if graph is not None else None
                # A successful 'alembic upgrade head' (one head) or 'upgrade heads' is at the heads: reading
                # them back would cost one more container of the release for nothing.
                after = reached if reached is not None else self.read_revision(graph)
                result["revision_after"] = revision_text(after) if graph is not None else after
                self.write_record(result["revision_after"])
                if graph is not None:
                    result["changed"] = result["revision_after"] != result["revision_before"] or bool(stale)
                    result["diff"]["after"] = (result["revision_after"] or "") + "\n"
                else:
                    result["changed"] = True
                    if self.revision_argv:
                        result["diff"] = {
                            "before": (result["revision_before"] or "") + "\n",
                            "after": (result["revision_after"] or "") + "\n",
                        }
                return result
        except MigrateError as exc:
            result["duration"] = round(time.monotonic() - started, 3)
            exc.result = {**result, **exc.result}
            raise
        except DOCKER_ERRORS as exc:
            result["duration"] = round(time.monotonic() - started, 3)
            raise MigrateError(f"Docker error: {exc}", **result) from None
        finally:
            result["duration"] = round(time.monotonic() - started, 3)

    def record_key(self) -> dict:
        """What makes two migrations the same: the image's id, the commands and the
        environment (a fingerprint only: another database URL is another database)."""
        environment = json.dumps(sorted(self.env.items())).encode()
        return {
            "image_id": self.client.images.get(self.image).id,
            "command": self.migrate_argv,
            "revision_command": self.revision_argv,
            "environment_sha256": hashlib.sha256(environment).hexdigest(),
        }

    def read_record(self) -> dict | None:
        """The record of the last successful migration, when it was made with this image and commands."""
        path = self.params.get("record_path")
        if not path or self.params.get("force"):
            return None
        try:
            with open(path) as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return None
        key = self.record_key()
        return record if all(record.get(name) == value for name, value in key.items()) else None

    def write_record(self, revision) -> None:
        path = self.params.get("record_path")
        if not path:
            return
        record = {
            **self.record_key(),
            "image": self.image,
            "revision": revision,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        temporary = f"{path}.tmp"
        with open(temporary, "w") as handle:
            json.dump(record, handle)
        os.replace(temporary, path)

    def after_failure(self, graph, result: dict, removed_stale: bool) -> None:
        """After a failed migration, say where the database was left (best effort) and whether that is a change."""
        if graph is None:
            result["changed"] = True  # the command ran: whatever it did is unknown
            return
        try:
            result["revision_after"] = revision_text(self.read_revision(graph))
        except (MigrateError, *DOCKER_ERRORS):
            result["revision_after"] = None
            result["changed"] = True  # unknown: do not claim nothing changed
            return
        result["changed"] = result["revision_after"] != result["revision_before"] or removed_stale

    def read_history_and_revision(self):
        """Alembic: the revision graph and the database's current revisions, from two one-off containers
        run at once (the history in a thread, the revision here, where stop signals are handled)."""
        self.record_command(self.history_argv)
        history: dict = {}

        def read_history() -> None:
            try:
                history["output"] = self._run(self.history_argv, "reading the migration history")
            except (MigrateError, *DOCKER_ERRORS) as exc:
                history["error"] = exc

        reader = threading.Thread(target=read_history, daemon=True)
        reader.start()
        current = failed = None
        try:
            current = self.revision_output() if self.revision_argv else None
        except (MigrateError, *DOCKER_ERRORS) as exc:
            failed = exc  # the history's own failure, when it has one, names the cause better
        finally:
            reader.join()
        if "error" in history:
            raise history["error"]
        if failed is not None:
            raise failed
        graph = RevisionGraph.parse(history["output"])
        if not len(graph):
            raise MigrateError(f"'{' '.join(self.history_argv)}' listed no revision: is this an Alembic project?")
        return graph, (parse_current(current, graph) if current is not None else None)

    def read_revision(self, graph):
        """Alembic: the list of current revisions. Other tools: the last line of revision_command, or None."""
        if not self.revision_argv:
            return None
        output = self.revision_output()
        if graph is None:
            return last_line(output)
        return parse_current(output, graph)

    def revision_output(self) -> str:
        """What the revision command printed; with Alembic, a database at a revision the image does not
        know fails naming it."""
        self.record_command(self.revision_argv)
        try:
            return self._run(self.revision_argv, "reading the current revision")
        except MigrateError as exc:
            revision = unknown_revision(exc.result.get("output", "")) if self.tool == "alembic" else None
            if revision is None:
                raise
            raise MigrateError(
                f"the database is at revision {revision}, which {self.image} does not know: a newer release "
                "migrated it. Deploy that release (or a newer one), or go back to this one with rollback.yml, "
                "which runs an older release on the schema as it is",
                output=exc.result.get("output", ""),
                revision_before=revision,
            ) from None

    def masked(self, value):
        """``value`` with every secret masked, through lists and dicts."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, list):
            return [self.masked(item) for item in value]
        if isinstance(value, dict):
            return {key: self.masked(item) for key, item in value.items()}
        return value


def run_module(module) -> None:
    """Entry point of the ``db_migrate`` module: exit_json or fail_json, never a traceback."""
    try:
        migration = DbMigrate(module)
    except (MigrateError, EnvFileError) as exc:
        module.fail_json(msg=str(exc))  # options only: no secret can be in these messages
    migration.client = get_client(module)
    try:
        result = migration.run()
    except MigrateError as exc:
        module.fail_json(msg=migration.masked(exc.msg), **migration.masked(exc.result))
    except DOCKER_ERRORS as exc:
        module.fail_json(msg=migration.masked(f"Docker error: {exc}"), commands=migration.commands)
    except Interrupted as exc:
        module.fail_json(msg=f"interrupted ({exc}); its one-off containers were removed", commands=migration.commands)
    finally:
        migration.client.close()
    module.exit_json(**migration.masked(result))
