"""Which databases a restore.yml -e restore_drop=... may drop: those restores of the live database made."""

from __future__ import annotations

import pytest
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_restore import is_scratch_of, scratch_name

LONG = "a" * 60  # PostgreSQL names have 63 bytes: a scratch name cuts the live one's


@pytest.mark.parametrize(
    ("live", "name"),
    [
        ("flight_hunter", "flight_hunter_restore_0a1b2c3d"),
        ("flight_hunter", "flight_hunter_restore_old_4e5f60"),
        (LONG, scratch_name(LONG, "0a1b2c3d")),
        (LONG, scratch_name(LONG, "old_4e5f60")),
        ("app_restore_x", "app_restore_x_restore_0a1b2c3d"),
    ],
)
def test_a_database_a_restore_made_may_be_dropped(live, name):
    assert is_scratch_of(live, name)


@pytest.mark.parametrize(
    ("live", "name"),
    [
        ("flight_hunter", "flight_hunter"),
        ("flight_hunter", "flight_hunter_copy"),
        ("flight_hunter", "flight_hunter_restored_0a1b"),
        ("flight_hunter", "flight_hunter_restore_"),
        ("flight_hunter", "fh_backup_restore_0a1b2c3d"),
        ("flight_hunter", "other_flight_hunter_restore_0a1b2c3d"),
        ("app_restore_x", "app_restore_x"),
        (LONG, LONG + "_restore_0a1b2c3d"),  # too long for PostgreSQL: never a name a restore gave
    ],
)
def test_anything_else_is_refused(live, name):
    assert not is_scratch_of(live, name)
