"""The decisions of pydeploy.stack.mongodb_user on what it read from the server: which roles are exactly
readWrite on the app's database, and what is to be done (the module's ``actions``)."""

from __future__ import annotations

import pytest
from ansible_collections.pydeploy.stack.plugins.module_utils._mongodb import plan, same_roles, wanted_roles


def test_the_app_user_has_read_write_on_its_database_only():
    assert wanted_roles("shop") == [{"role": "readWrite", "db": "shop"}]
    assert same_roles([{"role": "readWrite", "db": "shop"}], "shop")
    assert not same_roles([], "shop")
    assert not same_roles([{"role": "read", "db": "shop"}], "shop")
    assert not same_roles([{"role": "readWrite", "db": "other"}], "shop")
    assert not same_roles([{"role": "readWrite", "db": "shop"}, {"role": "read", "db": "admin"}], "shop")


@pytest.mark.parametrize(
    ("rotated", "info", "password_ok", "actions"),
    [
        (False, {"roles": [{"role": "readWrite", "db": "shop"}]}, True, []),
        (False, None, False, ["create the user shop in shop with readWrite on shop"]),
        (True, None, False, ["set the password of root", "create the user shop in shop with readWrite on shop"]),
        (False, {"roles": [{"role": "readWrite", "db": "shop"}]}, False, ["set the password of shop"]),
        (
            False,
            {"roles": [{"role": "dbOwner", "db": "shop"}, {"role": "readAnyDatabase", "db": "admin"}]},
            True,
            ["give shop readWrite on shop only"],
        ),
        (True, {"roles": [{"role": "readWrite", "db": "shop"}]}, True, ["set the password of root"]),
    ],
    ids=["unchanged", "new-user", "root-rotated-new-user", "app-password", "too-many-roles", "root-rotated"],
)
def test_what_is_to_be_done(rotated, info, password_ok, actions):
    assert plan(rotated, info, password_ok, "shop", "root", "shop") == actions
