"""Which certificate each site's server blocks use (nginx_sites[].tls), and what is wrong with a site's tls."""

from __future__ import annotations

import pytest
from ansible_collections.pydeploy.stack.plugins.filter.nginx import nginx_plan, nginx_site_errors, site_key

PROCESSES = {"web": {"command": "uvicorn app:app", "port": 8000}}
PROVIDED = {"mode": "provided", "certificate": "CERT", "private_key": "KEY"}


def plan(sites, **kwargs):
    return nginx_plan(sites, "shop", PROCESSES, {}, **kwargs)


def test_without_tls_every_site_shares_the_stacks_certificate_for_every_name():
    result = plan([{"names": ["shop.test"], "redirect_from": ["www.shop.test"]}, {"names": ["api.shop.test"]}])
    assert [(site["tls"], site["tls_key"]) for site in result["sites"]] == [("", ""), ("", "")]
    assert result["cert_names"] == result["names"] == ["shop.test", "www.shop.test", "api.shop.test"]
    assert result["tls_sites"] == [] and (result["check_tls"], result["check_key"]) == ("", "")


def test_the_legacy_site_of_the_server_names_has_the_stacks_certificate():
    result = plan([], server_names=["shop.test", "www.shop.test"])
    assert result["sites"][0]["tls"] == "" and result["cert_names"] == ["shop.test", "www.shop.test"]


def test_a_site_with_its_own_certificate_covers_its_names_and_redirects_the_stacks_the_others():
    result = plan(
        [
            {"names": ["shop.test"], "redirect_from": ["www.shop.test"]},
            {"names": ["api.shop.test"], "redirect_from": ["old-api.shop.test"], "tls": PROVIDED},
            {"names": ["*.static.test"], "tls": {"mode": "selfsigned"}},
        ]
    )
    assert [(site["tls"], site["tls_key"]) for site in result["sites"]] == [
        ("", ""),
        ("provided", "api.shop.test"),
        ("selfsigned", "_.static.test"),
    ]
    assert result["tls_sites"] == [
        {"index": 1, "key": "api.shop.test", "mode": "provided", "names": ["api.shop.test", "old-api.shop.test"]},
        {"index": 2, "key": "_.static.test", "mode": "selfsigned", "names": ["*.static.test"]},
    ]
    # The stack's certificate covers only the names of the sites without their own.
    assert result["cert_names"] == ["shop.test", "www.shop.test"]
    assert "old-api.shop.test" in result["names"]
    # The plan holds no secret of the site.
    assert "KEY" not in repr(result) and "CERT" not in repr(result)


def test_when_every_site_has_its_own_the_stacks_certificate_still_has_names():
    result = plan([{"names": ["api.shop.test"], "tls": {"mode": "selfsigned"}}])
    assert result["cert_names"] == ["api.shop.test"]
    assert (result["check_name"], result["check_tls"], result["check_key"]) == (
        "api.shop.test",
        "selfsigned",
        "api.shop.test",
    )


def test_the_checked_name_carries_its_sites_certificate():
    result = plan([{"names": ["api.shop.test"], "tls": PROVIDED}, {"names": ["shop.test"]}])
    assert (result["check_name"], result["check_tls"], result["check_key"]) == (
        "api.shop.test",
        "provided",
        "api.shop.test",
    )


def test_the_site_key_is_its_first_name_fit_for_a_file_name():
    assert site_key({"names": ["API.shop.test", "b.test"]}) == "API.shop.test"
    assert site_key({"names": ["*.shop.test"]}) == "_.shop.test"
    assert site_key({"names": []}) == ""


def test_good_tls_settings_have_no_errors():
    assert (
        nginx_site_errors(
            [
                {"names": ["a.test"], "tls": PROVIDED},
                {"names": ["b.test"], "tls": {**PROVIDED, "chain": "CHAIN"}},
                {"names": ["c.test"], "tls": {"mode": "selfsigned"}},
                {"names": ["d.test"], "tls": None},
            ],
            PROCESSES,
        )
        == []
    )


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"mode": "acme"}, "nginx_sites[1].tls.mode: acme is for the stack's certificate only"),
        ({"mode": "letsencrypt"}, "nginx_sites[1].tls.mode must be selfsigned or provided, not 'letsencrypt'"),
        ({"mode": "provided", "certificate": "CERT"}, "nginx_sites[1].tls.private_key is required with mode provided"),
        ({"mode": "provided", "private_key": "KEY"}, "nginx_sites[1].tls.certificate is required with mode provided"),
        ({"mode": "selfsigned", "certificate": "CERT"}, "nginx_sites[1].tls: certificate, chain and private_key are"),
        ({"mode": "selfsigned", "key": "x"}, "nginx_sites[1].tls: unknown key(s) key"),
        ("provided", "nginx_sites[1].tls must be a dict with mode"),
    ],
    ids=["acme", "mode", "no-key", "no-certificate", "selfsigned-with-pem", "unknown-key", "not-a-dict"],
)
def test_each_tls_problem_names_the_site(tls, message):
    errors = nginx_site_errors([{"names": ["a.test"]}, {"names": ["api.a.test"], "tls": tls}], PROCESSES)
    assert any(error.startswith(message) for error in errors), errors
    # No secret in a message.
    assert not any("KEY" in error or "CERT" in error for error in errors)
