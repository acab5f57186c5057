# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention of backups: which to delete (pure, see :func:`select_prunable`) and the listing behind it.

Rules, applied to the backups of one set, newest first:

- ``max_count``: the ``max_count`` newest are kept by count, older ones are candidates;
- ``max_age_days``: backups that finished more than that many days ago are candidates;
- a backup is deleted when any configured rule makes it a candidate, except
- the floor: the ``min_verified`` newest backups whose manifest says ``verified: true``
  are never deleted, whatever their age or rank, and
- the newest backup is never deleted (a schedule that stopped never ends with none).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from ansible_collections.pydeploy.stack.plugins.module_utils._backup_manifest import (
    BackupError,
    is_backup_key,
    manifest_key,
    parse_iso,
    parse_key,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._s3 import get_json, list_objects


def retention_argument_spec() -> dict:
    """The suboptions of the ``retention`` option (db_backup) and the options of backup_prune."""
    return {
        "max_age_days": {"type": "float"},
        "max_count": {"type": "int"},
        "min_verified": {"type": "int", "default": 1},
    }


def check_rules(max_age_days, max_count, min_verified) -> None:
    if max_age_days is None and max_count is None:
        raise BackupError("retention needs max_age_days, max_count or both")
    if max_age_days is not None and max_age_days <= 0:
        raise BackupError(f"max_age_days must be more than 0, got {max_age_days:g}")
    if max_count is not None and max_count < 1:
        raise BackupError(f"max_count must be at least 1, got {max_count}")
    if min_verified is not None and min_verified < 0:
        raise BackupError(f"min_verified must be at least 0, got {min_verified}")


def _newest_first(entries):
    return sorted(entries, key=lambda entry: (entry["time"], entry["key"]), reverse=True)


def select_prunable(entries, now: datetime, *, max_age_days=None, max_count=None, min_verified=1) -> list[dict]:
    """The backups to delete, newest first, each ``{"key", "time", "verified", "reasons"}``.

    ``entries`` are dicts with ``key``, ``time`` (an aware datetime: when the
    backup finished) and ``verified`` (True, False or None when never verified
    or unknown).  Pure: the same input always gives the same answer.
    """
    check_rules(max_age_days, max_count, min_verified)
    ordered = _newest_first(entries)
    protected = set()
    if ordered:
        protected.add(ordered[0]["key"])
    verified = [entry["key"] for entry in ordered if entry.get("verified") is True]
    protected.update(verified[: min_verified or 0])
    cutoff = now - timedelta(days=max_age_days) if max_age_days is not None else None

    selected = []
    for rank, entry in enumerate(ordered):
        reasons = []
        if max_count is not None and rank >= max_count:
            reasons.append(f"beyond the {max_count} newest")
        if cutoff is not None and entry["time"] < cutoff:
            reasons.append(f"older than {max_age_days:g} days")
        if reasons and entry["key"] not in protected:
            selected.append({**entry, "reasons": reasons})
    return selected


def collect_entries(client, bucket: str, prefix: str, workers: int = 8) -> tuple[list[dict], dict]:
    """The backups under ``prefix`` as retention entries, and every manifest key found (by backup key).

    The time of a backup is its manifest's ``finished``, else the time in its key;
    ``verified`` comes from the manifest (None without one).  Objects that are
    not backups or manifests of this module are ignored, never deleted.
    """
    backups = {}
    manifests = set()
    for obj in list_objects(client, bucket, prefix):
        key = obj["Key"]
        if is_backup_key(key):
            backups[key] = obj
        elif key.endswith(".manifest.json") and is_backup_key(key[: -len(".manifest.json")]):
            manifests.add(key)

    def read(key):
        if manifest_key(key) not in manifests:
            return key, None
        try:
            return key, get_json(client, bucket, manifest_key(key))
        except ValueError:
            return key, None  # unreadable: treated as never verified

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        documents = dict(pool.map(read, sorted(backups)))

    entries = []
    for key in backups:
        document = documents.get(key) or {}
        when = parse_iso(document.get("finished")) or parse_key(key)["time"]
        entries.append({"key": key, "time": when, "verified": document.get("verified")})
    found = {key: manifest_key(key) for key in backups if manifest_key(key) in manifests}
    return entries, found
