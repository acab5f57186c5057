# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release ledger and the deploy lock of a stack on one host.

The ledger is a JSON file, ``releases.json``, that lists every deploy and
rollback in order.  It is only ever replaced whole: written to a temporary
file in the same directory, flushed to disk, renamed over the old one and the
directory flushed, so a crash at any point leaves either the old ledger or the
new one, never a torn file.

The deploy lock is a file created with ``O_EXCL``: its content names the
holder (who, from which controller, the process and its start time, which
release).  A run that finds it fails at once naming the holder.  A lock whose
holder process is known to be dead (same controller machine, process gone or
replaced) is stale and is broken, and the broken holder is reported; any
other lock is only broken when asked to.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime

from ansible_collections.pydeploy.stack.plugins.module_utils._docker import DOCKER_ERRORS
from ansible_collections.pydeploy.stack.plugins.module_utils._files import replace_file

LEDGER_NAME = "releases.json"
LOCK_NAME = "deploy.lock"
FORMAT = 1


class LedgerError(Exception):
    """The ledger or the lock cannot be read or written; the message says which file and why."""


class LockHeld(Exception):
    """The deploy lock belongs to another run."""

    def __init__(self, holder: dict):
        super().__init__(describe_holder(holder))
        self.holder = holder


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def holder_name(holder: dict) -> str:
    """Who runs the deploy: the user who launched the AWX job and its id, or the controller's user."""
    who = holder.get("awx_user_name") or holder.get("user") or "?"
    if holder.get("awx_job_id"):
        who += f" (AWX job {holder['awx_job_id']})"
    return who


def describe_holder(holder: dict) -> str:
    if not holder:
        return "an unknown run (the lock file is empty or unreadable)"
    who = holder_name(holder)
    where = holder.get("controller") or "?"
    return (
        f"{who} from {where}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')},"
        f" deploying {holder.get('version') or '?'}"
    )


def write_atomically(path: str, data, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` as JSON: all of it or none of it, even across a crash."""
    replace_file(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def process_start(pid: int, proc: str = "/proc"):
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        with open(f"{proc}/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def holder_is_dead(holder: dict, hostname: str, proc: str = "/proc") -> bool:
    """Whether the holder's process is known to be gone: only knowable on the holder's own controller."""
    if not holder or holder.get("controller") != hostname:
        return False
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    started = process_start(pid, proc)
    if started is None:
        return True
    recorded = holder.get("pid_start")
    return recorded is not None and str(recorded) != str(started)


class Ledger:
    """The ledger and the lock of one stack, in ``directory`` (created 0700)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, LEDGER_NAME)
        self.lock_path = os.path.join(directory, LOCK_NAME)

    def ensure_directory(self) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"cannot create {self.directory}: {exc.strerror}") from None

    # ------------------------------------------------------------------ ledger

    def releases(self) -> list[dict]:
        try:
            with open(self.path) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise LedgerError(f"cannot read the release ledger {self.path}: {exc}") from None
        releases = data.get("releases") if isinstance(data, dict) else None
        if not isinstance(releases, list):
            raise LedgerError(f"the release ledger {self.path} has no list of releases")
        return releases

    def record(self, entry: dict) -> dict:
        """Append ``entry`` (numbered, timed) and make it the current release."""
        self.ensure_directory()
        releases = self.releases()
        entry = {**entry, "id": (releases[-1]["id"] + 1) if releases else 1}
        entry.setdefault("deployed_at", now())
        try:
            write_atomically(self.path, {"format": FORMAT, "releases": [*releases, entry]})
        except OSError as exc:
            raise LedgerError(f"cannot write the release ledger {self.path}: {exc.strerror}") from None
        return entry

    @staticmethod
    def current(releases: list[dict]):
        return releases[-1] if releases else None

    @staticmethod
    def previous(releases: list[dict]):
        """The release before the current one that ran another version, if any."""
        if not releases:
            return None
        current = releases[-1]
        for entry in reversed(releases[:-1]):
            if entry.get("version") != current.get("version") or entry.get("image") != current.get("image"):
                return entry
        return None

    @classmethod
    def summary(cls, releases: list[dict]) -> dict:
        """The releases with the current and previous ones and the versions, as modules return them."""
        return {
            "releases": releases,
            "current": cls.current(releases),
            "previous": cls.previous(releases),
            "versions": cls.versions(releases),
        }

    @staticmethod
    def versions(releases: list[dict]) -> list[str]:
        """The recorded versions, newest first, each once."""
        seen = []
        for entry in reversed(releases):
            if entry.get("version") and entry["version"] not in seen:
                seen.append(entry["version"])
        return seen

    # ------------------------------------------------------------------ lock

    def holder(self):
        try:
            with open(self.lock_path) as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LedgerError(f"cannot read the deploy lock {self.lock_path}: {exc.strerror}") from None
        try:
            holder = json.loads(text)
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def acquire(self, holder: dict, *, hostname: str, break_lock: bool = False, dry_run: bool = False):
        """Take the lock for ``holder``; return ``(taken, broken)`` where ``broken`` is the holder of a
        lock that was broken (stale, or ``break_lock``), else None.  Raises :class:`LockHeld`."""
        self.ensure_directory()
        current = self.holder()
        broken = None
        if current is not None:
            if current.get("run_id") and current.get("run_id") == holder.get("run_id"):
                return False, None  # this very run holds it already
            if not (break_lock or holder_is_dead(current, hostname)):
                raise LockHeld(current)
            broken = current
            if dry_run:
                return True, broken
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                pass
        if dry_run:
            return True, broken
        try:
            fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            # Another run took it between our read and our create.
            raise LockHeld(self.holder() or {}) from None
        except OSError as exc:
            raise LedgerError(f"cannot create the deploy lock {self.lock_path}: {exc.strerror}") from None
        with os.fdopen(fd, "w") as handle:
            json.dump({**holder, "since": holder.get("since") or now()}, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        return True, broken

    def release(self, holder: dict, *, force: bool = False, dry_run: bool = False) -> bool:
        """Drop the lock if ``holder``'s run holds it (or ``force``); return whether it was dropped."""
        current = self.holder()
        if current is None:
            return False
        if not force and current.get("run_id") != holder.get("run_id"):
            raise LockHeld(current)
        if not dry_run:
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                return False
        return True


# ---------------------------------------------------------------------- a finished release

REVISION_LABELS = ("org.opencontainers.image.revision", "org.label-schema.vcs-ref")


def lock_held_message(stack: str, ledger: Ledger, exc: LockHeld) -> str:
    return (
        f"another deploy of {stack} is running: the lock {ledger.lock_path} is held by {exc};"
        " if that run is dead, rerun with -e pydeploy_break_lock=true"
    )


def lock_and_list(ledger: Ledger, client, holder: dict, labels: list, *, break_lock: bool, dry_run: bool):
    """Take the deploy lock for ``holder`` (``dry_run``: check it), then list the containers matching the
    label filters ``labels`` under it (none without a client or filters). Returns ``(broken, containers)``;
    a listing that fails releases the lock again and raises :class:`LedgerError`."""
    _taken, broken = ledger.acquire(holder, hostname=socket.gethostname(), break_lock=break_lock, dry_run=dry_run)
    if client is None or not labels:
        return broken, []
    try:
        return broken, client.api.containers(all=True, filters={"label": labels})
    except DOCKER_ERRORS as exc:
        ledger.release(holder, dry_run=dry_run)
        raise LedgerError(f"cannot list the containers {', '.join(labels)} under the lock: {exc}") from None


def image_facts(client, image: str) -> dict:
    """The ID, registry digest and revision label of ``image`` on the host (Docker errors propagate)."""
    found = client.images.get(image)
    labels = found.attrs.get("Config", {}).get("Labels") or {}
    return {
        "image_id": found.id,
        "digest": next(iter(found.attrs.get("RepoDigests") or []), None),
        "revision": next((labels[name] for name in REVISION_LABELS if labels.get(name)), None),
    }


def release_entry(release: dict, facts: dict, current) -> dict:
    """The ledger entry of ``release`` (version, image, kind, holder, backup_key, migration_before/after)."""
    holder = release.get("holder") or {}
    return {
        "version": release["version"],
        "image": release["image"],
        **facts,
        "kind": release.get("kind") or "deploy",
        # Run by AWX, the user who launched the job (the controller's user is the execution environment's).
        "deployed_by": holder.get("awx_user_name") or holder.get("user"),
        "awx_job_id": holder.get("awx_job_id") or None,
        "controller": holder.get("controller"),
        "backup_key": release.get("backup_key"),
        # No migration ran: the schema is where the current release left it.
        "migration_before": release.get("migration_before") or (current or {}).get("migration_after"),
        "migration_after": release.get("migration_after") or (current or {}).get("migration_after"),
    }


def record_release(ledger: Ledger, client, release: dict, dry_run: bool = False):
    """Append ``release`` to the ledger unless it is the current one (same version and image ID); the entry
    recorded (or that would be), or None. An image the engine cannot read raises :class:`LedgerError`."""
    current = Ledger.current(ledger.releases())
    try:
        facts = image_facts(client, release["image"])
    except DOCKER_ERRORS as exc:
        raise LedgerError(f"cannot read image {release['image']} on this host: {exc}") from None
    if current is not None and current.get("version") == release["version"]:
        if current.get("image_id") == facts["image_id"]:
            return None
    entry = release_entry(release, facts, current)
    return entry if dry_run else ledger.record(entry)


def prune_images(client, releases: list[dict], keep: int, dry_run: bool = False) -> list[str]:
    """Remove the images of releases older than the last ``keep`` versions, unless a container uses them;
    the references removed (or that would be). An engine error raises :class:`LedgerError`."""
    keep_versions = Ledger.versions(releases)[:keep]
    kept = [entry for entry in releases if entry.get("version") in keep_versions]
    keep_ids = {entry.get("image_id") for entry in kept}
    keep_refs = {entry.get("image") for entry in kept}
    old_refs = sorted({entry.get("image") for entry in releases if entry.get("image")} - keep_refs)
    if not old_refs:
        return []
    removed = []
    try:
        in_use = {container.attrs.get("Image") for container in client.containers.list(all=True)}
        for ref in old_refs:
            try:
                image = client.images.get(ref)
            except DOCKER_ERRORS:
                continue  # already gone
            if image.id in keep_ids or image.id in in_use:
                continue
            removed.append(ref)
            if not dry_run:
                client.images.remove(ref, noprune=False)
    except DOCKER_ERRORS as exc:
        raise LedgerError(f"cannot prune the images of old releases: {exc}") from None
    return removed


def summary_after(ledger: Ledger, recorded, dry_run: bool) -> dict:
    """The ledger's summary once ``recorded`` is in it (check mode: as it would be)."""
    releases = ledger.releases()
    if dry_run and recorded:
        releases = [*releases, recorded]
    return Ledger.summary(releases)
