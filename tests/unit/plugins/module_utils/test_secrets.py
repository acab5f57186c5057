from __future__ import annotations

from ansible_collections.pydeploy.stack.plugins.module_utils._secrets import (
    MASK,
    MIN_SECRET_LENGTH,
    mask,
    mask_argv,
    redact_url,
)


def test_redact_url_hides_only_the_password():
    assert redact_url("postgresql://app:s3cret@db:5432/app?sslmode=require") == (
        f"postgresql://app:{MASK}@db:5432/app?sslmode=require"
    )
    assert redact_url("redis://:pw@[::1]:6379/0") == f"redis://:{MASK}@[::1]:6379/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_mask_replaces_known_values_longest_first():
    text = "token=abcd1234 and abcd1234-extended and x"
    assert mask(text, ["abcd1234", "abcd1234-extended", "x"]) == f"token={MASK} and {MASK} and x"


def test_mask_hides_passwords_inside_urls_in_free_text():
    text = 'connection to "postgresql://app:hunter22@db/app" failed'
    assert mask(text) == f'connection to "postgresql://app:{MASK}@db/app" failed'


def test_mask_argv():
    assert mask_argv(["psql", "--password=topsecret"], ["topsecret"]) == ["psql", f"--password={MASK}"]


def test_known_values_are_masked_from_four_characters_on():
    # shorter values would garble free text ("on", "1") without protecting anything
    assert MIN_SECRET_LENGTH == 4
    assert mask("pin=abc, abc again", ["abc"]) == "pin=abc, abc again"
    assert mask("pin=abcd, abcd again", ["abcd"]) == f"pin={MASK}, {MASK} again"
    assert mask_argv(["tool", "--pin=abc", "--key=wxyz"], ["abc", "wxyz"]) == ["tool", "--pin=abc", f"--key={MASK}"]


def test_a_short_password_inside_a_url_is_masked_all_the_same():
    assert mask("redis://:pw@cache:6379/0 refused", ["pw"]) == f"redis://:{MASK}@cache:6379/0 refused"
    assert mask("no secrets here", ["", None]) == "no secrets here"
    assert mask("", ["abcd"]) == ""


def test_a_secret_given_as_a_number_is_masked_as_its_text():
    assert mask("pin 482913 and 12", [482913, 12]) == f"pin {MASK} and 12"
