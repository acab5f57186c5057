"""Retention selection over synthetic backups: age, count, the verified floor, the newest kept."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_manifest import BackupError, backup_key
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_retention import select_prunable

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FLOOR_INDEXES = (96, 193, 290)  # the verified backups, oldest ones among them deep beyond every rule


def synthetic(count: int = 1000) -> list[dict]:
    """Backup i finished i half-days ago. Every 97th from 96 on passed verification, every 5th failed it,
    the rest were never verified; shuffled, since listing order must not matter."""
    entries = []
    for i in range(count):
        when = NOW - timedelta(hours=12 * i, minutes=1)
        if i % 97 == 96:
            verified = True
        elif i % 5 == 0:
            verified = False
        else:
            verified = None
        key = backup_key("backups/", "appdb", "custom", "zstd", when, ident=f"{i:06x}")
        entries.append({"key": key, "time": when, "verified": verified, "i": i})
    random.Random(7).shuffle(entries)
    return entries


def indexes(selected) -> set[int]:
    return {entry["i"] for entry in selected}


def test_thousand_backups_age_and_count_with_floor():
    entries = synthetic()
    selected = select_prunable(entries, NOW, max_age_days=30, max_count=50, min_verified=3)
    # by count: ranks 50.. are beyond; by age: > 30 days is i > 60. Either rule deletes, the floor protects.
    expected = set(range(50, 1000)) - set(FLOOR_INDEXES)
    assert indexes(selected) == expected
    assert len(selected) == 947
    # newest first, each with its reasons
    assert [entry["i"] for entry in selected][:3] == [50, 51, 52]
    assert selected[0]["reasons"] == ["beyond the 50 newest"]
    assert selected[-1]["reasons"] == ["beyond the 50 newest", "older than 30 days"]


def test_floor_counts_only_passed_verifications_and_only_the_newest_n():
    entries = synthetic()
    selected = select_prunable(entries, NOW, max_count=10, min_verified=2)
    kept = set(range(1000)) - indexes(selected)
    assert kept == set(range(10)) | {96, 193}
    # a failed verification (i % 5 == 0) never protects anything
    assert 100 in indexes(selected)


def test_age_only():
    selected = select_prunable(synthetic(), NOW, max_age_days=7, min_verified=0)
    # i half-days plus a minute: i >= 14 is older than 7 days
    assert indexes(selected) == set(range(14, 1000))


def test_count_only_without_floor():
    selected = select_prunable(synthetic(), NOW, max_count=1000, min_verified=0)
    assert selected == []
    selected = select_prunable(synthetic(), NOW, max_count=999, min_verified=0)
    assert indexes(selected) == {999}


def test_floor_larger_than_the_verified_backups_keeps_them_all():
    selected = select_prunable(synthetic(), NOW, max_count=1, min_verified=50)
    verified = {i for i in range(1000) if i % 97 == 96}
    assert indexes(selected) == set(range(1, 1000)) - verified


def test_newest_is_kept_even_when_everything_is_too_old():
    old = [{"key": f"k{i}", "time": NOW - timedelta(days=100 + i), "verified": None, "i": i} for i in range(5)]
    selected = select_prunable(old, NOW, max_age_days=30, min_verified=0)
    assert indexes(selected) == {1, 2, 3, 4}


def test_same_time_orders_by_key():
    same = [{"key": f"k{i}", "time": NOW, "verified": None, "i": i} for i in range(3)]
    assert indexes(select_prunable(same, NOW, max_count=1, min_verified=0)) == {0, 1}


def test_empty_set():
    assert select_prunable([], NOW, max_count=3) == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({}, "retention needs max_age_days, max_count or both"),
        ({"max_count": 0}, "max_count must be at least 1, got 0"),
        ({"max_age_days": 0}, "max_age_days must be more than 0, got 0"),
        ({"max_count": 3, "min_verified": -1}, "min_verified must be at least 0, got -1"),
    ],
)
def test_invalid_rules(rules, message):
    with pytest.raises(BackupError) as excinfo:
        select_prunable(synthetic(10), NOW, **rules)
    assert str(excinfo.value) == message
