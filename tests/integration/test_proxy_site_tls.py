"""Sites with their own certificates, as clients see them over SNI: one stack (sitetls), three sites -

- sitetls.test (www.sitetls.test redirects to it): the stack's self-signed certificate (nginx_tls_mode);
- api.sitetls.test (old-api.sitetls.test redirects to it): a certificate and chain from a local CA made here,
  given as a vault would (nginx_sites[1].tls, mode provided; mode acme is refused);
- static.sitetls.test: a self-signed certificate of its own (nginx_sites[2].tls, mode selfsigned).

nginx on 127.0.0.1:11180 (HTTP) and 11543 (HTTPS), the backend tests/integration/sites_echo.py in the bed's
python image. One deploy, shared by every test; a bad certificate of a site fails before anything changes."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
from pathlib import Path

import pytest
from conftest import teardown_stack
from cryptography import x509
from cryptography.x509.oid import NameOID
from playbook import run_playbook as run_any_playbook
from tls_support import LocalCA, served_chain, verified_handshake

STACK = "sitetls"
INVENTORY = "tests/integration/inventories/sitetls"
HTTP_PORT, HTTPS_PORT = 11180, 11543
APEX, WWW = "sitetls.test", "www.sitetls.test"
API, OLD_API = "api.sitetls.test", "old-api.sitetls.test"
STATIC = "static.sitetls.test"
NGINX = Path(f"/etc/pydeploy/{STACK}/nginx")
SITE = NGINX / "conf.d" / "default.conf"
CERTS = NGINX / "certs"


def run_playbook(**kwargs):
    return run_any_playbook(inventory=INVENTORY, **kwargs)


def sites(api_tls: dict) -> list[dict]:
    return [
        {"names": [APEX], "redirect_from": [WWW]},
        {"names": [API], "redirect_from": [OLD_API], "tls": api_tls},
        {"names": [STATIC], "tls": {"mode": "selfsigned"}},
    ]


def provided(certificate: str, chain: str, private_key: str) -> dict:
    return {"mode": "provided", "certificate": certificate, "chain": chain, "private_key": private_key}


@pytest.fixture(scope="module")
def ca():
    return LocalCA(name="sitetls")


@pytest.fixture(scope="module")
def api_tls(ca):
    issued = ca.issue([API, OLD_API])
    return provided(issued.cert_pem, ca.intermediate.cert_pem, issued.key_pem)


@pytest.fixture(scope="module")
def stack(bed, docker_client, api_tls):
    teardown_stack(docker_client, STACK)
    run = run_playbook(extra_vars={"nginx_sites": sites(api_tls)})
    assert run.rc == 0, run.explain()
    yield run
    teardown_stack(docker_client, STACK)


def common_name(name: x509.Name) -> str:
    return name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def dns_names(cert: x509.Certificate) -> set[str]:
    return set(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    )


def get(host: str, path: str, cafile: Path | str) -> tuple[int, http.client.HTTPMessage, bytes]:
    """A GET over HTTPS to ``host`` (by SNI and Host), verified against ``cafile`` alone."""
    context = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("127.0.0.1", HTTPS_PORT, timeout=10, context=context)
    conn.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10), server_hostname=host
    )
    try:
        conn.request("GET", path, headers={"Host": f"{host}:{HTTPS_PORT}"})
        response = conn.getresponse()
        return response.status, response.msg, response.read()
    finally:
        conn.close()


def test_each_name_gets_the_certificate_of_its_site_over_sni(stack, ca, tmp_path):
    root = tmp_path / "root.pem"
    root.write_text(ca.root.cert_pem)
    # The api site and the name that redirects to it: the provided certificate and its chain, which verify
    # against the local CA's root alone.
    for name in (API, OLD_API):
        leaf, intermediate = served_chain(HTTPS_PORT, name)
        assert common_name(leaf.subject) == API and dns_names(leaf) == {API, OLD_API}
        assert common_name(leaf.issuer) == "sitetls intermediate" and intermediate == ca.intermediate.cert
        assert verified_handshake(HTTPS_PORT, name, root)["version"] in ("TLSv1.2", "TLSv1.3")
    # The apex and www: the stack's self-signed certificate, for their names only.
    for name in (APEX, WWW):
        (leaf,) = served_chain(HTTPS_PORT, name)
        assert leaf.issuer == leaf.subject and dns_names(leaf) == {APEX, WWW}
        verified_handshake(HTTPS_PORT, name, CERTS / "fullchain.pem")
    # The static site: its own self-signed certificate, no other name.
    (leaf,) = served_chain(HTTPS_PORT, STATIC)
    assert leaf.issuer == leaf.subject and dns_names(leaf) == {STATIC}
    verified_handshake(HTTPS_PORT, STATIC, CERTS / f"site-{STATIC}-fullchain.pem")
    # The stack's certificate is not the api's: a client trusting only the local CA refuses the apex.
    with pytest.raises(ssl.SSLCertVerificationError):
        verified_handshake(HTTPS_PORT, APEX, root)


def test_every_site_answers_and_the_redirects_use_their_sites_certificates(stack, ca, tmp_path):
    root = tmp_path / "root.pem"
    root.write_text(ca.root.cert_pem)
    status, _, body = get(API, "/hello", root)
    assert status == 200 and json.loads(body)["process"] == "backend"
    status, headers, _ = get(OLD_API, "/p?q=1", root)
    assert (status, headers["Location"]) == (301, f"https://{API}:{HTTPS_PORT}/p?q=1")
    status, headers, _ = get(WWW, "/x", CERTS / "fullchain.pem")
    assert (status, headers["Location"]) == (301, f"https://{APEX}:{HTTPS_PORT}/x")
    assert get(APEX, "/health", CERTS / "fullchain.pem")[0] == 200
    assert get(STATIC, "/health", CERTS / f"site-{STATIC}-fullchain.pem")[0] == 200


def test_each_certificate_is_in_its_own_files_the_keys_0600(stack, api_tls):
    for prefix in ("", f"site-{API}-", f"site-{STATIC}-"):
        assert (CERTS / f"{prefix}privkey.pem").stat().st_mode & 0o777 == 0o600, prefix
        assert (CERTS / f"{prefix}fullchain.pem").stat().st_mode & 0o777 == 0o644, prefix
    assert (CERTS / f"site-{API}-privkey.pem").read_text() == api_tls["private_key"].strip() + "\n"
    assert (CERTS / f"site-{API}-chain.pem").read_text().strip() == api_tls["chain"].strip()
    # The key is in no output of the deploy.
    assert api_tls["private_key"].splitlines()[1] not in json.dumps(stack.data)


@pytest.mark.parametrize("problem", ["mismatched-key", "expired", "acme"])
def test_a_bad_certificate_of_a_site_is_refused_before_anything_changes_naming_the_site(stack, ca, api_tls, problem):
    if problem == "mismatched-key":
        other = ca.issue([API, OLD_API])
        bad = provided(api_tls["certificate"], api_tls["chain"], other.key_pem)
        expected = "nginx_sites[1].tls: the private key does not match the certificate"
    elif problem == "acme":
        bad = {"mode": "acme"}
        expected = "nginx_sites[1].tls.mode: acme is for the stack's certificate only"
    else:
        old = ca.issue([API, OLD_API], days=2, start=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
        bad = provided(old.cert_pem, api_tls["chain"], old.key_pem)
        expected = "nginx_sites[1].tls: the certificate expired on "
    before, served = SITE.read_text(), (CERTS / f"site-{API}-fullchain.pem").read_text()
    run = run_playbook(extra_vars={"nginx_sites": sites(bad)})
    assert run.rc != 0
    assert run.changed() == 0, run.changed_tasks()
    assert expected in " ".join(run.failure_messages()), run.explain()
    assert SITE.read_text() == before and (CERTS / f"site-{API}-fullchain.pem").read_text() == served


def test_a_certificate_that_does_not_cover_a_name_of_its_site_is_refused(stack, ca, api_tls):
    narrow = ca.issue([API])
    run = run_playbook(extra_vars={"nginx_sites": sites(provided(narrow.cert_pem, api_tls["chain"], narrow.key_pem))})
    assert run.rc != 0 and run.changed() == 0, run.explain()
    assert f"nginx_sites[1].tls: the certificate does not cover {OLD_API}" in " ".join(run.failure_messages())


def test_a_second_deploy_changes_nothing_and_check_mode_says_so(stack, api_tls):
    before = SITE.read_text()
    extra_vars = {"nginx_sites": sites(api_tls), "pydeploy_fast_path": False}
    check = run_playbook(extra_vars=extra_vars, check=True, diff=True)
    assert check.rc == 0, check.explain()
    assert check.changed() == 0, check.changed_tasks()
    run = run_playbook(extra_vars=extra_vars)
    assert run.rc == 0, run.explain()
    assert run.changed() == 0, run.changed_tasks()
    assert SITE.read_text() == before
    # Neither shows the site's key.
    assert api_tls["private_key"].splitlines()[1] not in check.stdout + run.stdout
