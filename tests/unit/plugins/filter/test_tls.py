from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.pydeploy.stack.plugins.filter.tls import tls_uncovered_names


def test_every_name_listed_is_covered():
    sans = ["DNS:example.com", "DNS:www.example.com"]
    assert tls_uncovered_names(["example.com", "www.example.com"], sans) == []


def test_names_compare_case_insensitively_and_without_the_trailing_dot():
    assert tls_uncovered_names(["WWW.Example.COM", "example.com."], ["DNS:www.example.com", "DNS:EXAMPLE.com"]) == []


def test_the_names_left_out_are_returned_in_order():
    assert tls_uncovered_names(["b.example", "a.example", "c.example"], ["DNS:a.example"]) == ["b.example", "c.example"]


@pytest.mark.parametrize(
    ("name", "covered"),
    [
        ("www.example.com", True),
        ("api.example.com", True),
        ("example.com", False),  # the wildcard needs a label
        ("a.b.example.com", False),  # and matches one label only
        ("www.example.org", False),
    ],
)
def test_a_wildcard_covers_exactly_one_left_most_label(name, covered):
    assert tls_uncovered_names([name], ["DNS:*.example.com"]) == ([] if covered else [name])


@pytest.mark.parametrize("pattern", ["DNS:w*.example.com", "DNS:www.*.com", "DNS:*", "DNS:*.*.example.com"])
def test_a_wildcard_elsewhere_covers_nothing(pattern):
    assert tls_uncovered_names(["www.example.com"], [pattern]) == ["www.example.com"]


def test_an_ip_address_is_covered_by_an_ip_entry_only():
    sans = ["DNS:192.0.2.1", "IP:192.0.2.2", "IP:2001:db8::1"]
    assert tls_uncovered_names(["192.0.2.1", "192.0.2.2", "2001:db8:0::1"], sans) == ["192.0.2.1"]


def test_a_certificate_without_names_covers_none():
    assert tls_uncovered_names(["example.com"], None) == ["example.com"]
    assert tls_uncovered_names([], []) == []


def test_names_must_be_a_list():
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        tls_uncovered_names("example.com", [])
