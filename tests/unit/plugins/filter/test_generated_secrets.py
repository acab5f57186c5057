"""The generated-secret declaration checks of the app role's preflight."""

from __future__ import annotations

import pytest
from ansible_collections.pydeploy.stack.plugins.filter.secrets import generated_secret_errors


def test_valid_declarations_have_no_error():
    declared = {"API_KEY_SALT": {"length": 64, "alphabet": "hex"}, "SESSION_KEY": {}, "OTHER": None}
    assert generated_secret_errors(declared, {"STRIPE_KEY": "x"}) == []


def test_no_declaration_is_fine():
    assert generated_secret_errors(None) == []
    assert generated_secret_errors({}) == []


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ({"API_KEY_SALT": {"length": 8}}, "stack_generated_secrets.API_KEY_SALT.length must be a whole number"),
        ({"API_KEY_SALT": {"length": "64"}}, "API_KEY_SALT.length must be a whole number"),
        ({"API_KEY_SALT": {"length": True}}, "API_KEY_SALT.length must be a whole number"),
        ({"API_KEY_SALT": {"length": 5000}}, "from 16 to 4096"),
        ({"API_KEY_SALT": {"alphabet": "base64"}}, "alphabet must be one of hex, alnum, urlsafe, not 'base64'"),
        ({"API_KEY_SALT": {"lenght": 64}}, "unknown key(s) lenght (known: length, alphabet)"),
        ({"API-KEY": {}}, "API-KEY: not an environment variable name"),
        ({"API_KEY_SALT": "64"}, "API_KEY_SALT must be a dict"),
        ({"STRIPE_KEY": {}}, "STRIPE_KEY is also in stack_secrets"),
    ],
)
def test_each_mistake_is_named(declared, expected):
    errors = generated_secret_errors(declared, {"STRIPE_KEY": "sk_live_canary"})
    assert len(errors) == 1
    assert expected in errors[0]
    assert "sk_live_canary" not in errors[0]


def test_not_a_dict():
    assert generated_secret_errors(["API_KEY_SALT"]) == [
        "stack_generated_secrets must be a dict of NAME: {length, alphabet}"
    ]
