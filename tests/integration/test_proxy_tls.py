"""The proxy's TLS, as clients and sslyze see it: Mozilla's intermediate profile, a self-signed certificate of
a year at most, a provided chain served as given (and a bad one refused before anything changes), and a
certificate from an ACME CA on loopback (Caddy), renewed without a dropped request by a deploy and by the host's
own schedule (its cron line's command run directly, not waited for).

Stack edge (tests/integration/inventories/edge): a web process only, behind nginx on 127.0.0.1:10280/10643;
the ACME tests publish HTTP on 127.0.0.1:80, where the CA asks for the HTTP-01 challenges. The tests run in
order on one deploy of the stack; the ACME ones start it again from nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import shlex
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import teardown_stack
from cryptography import x509
from playbook import run_playbook as run_any_playbook
from tls_support import LocalCA, caddy_acme_ca, served_chain, sslyze, verified_handshake

STACK = "edge"
INVENTORY = "tests/integration/inventories/edge"
HTTP_PORT, HTTPS_PORT = 10280, 10643
NAMES = ["edge.localhost", "www.edge.localhost"]
NGINX = Path(f"/etc/pydeploy/{STACK}/nginx")
CERTS = NGINX / "certs"
SITE = NGINX / "conf.d" / "default.conf"
HOST_STATE = Path(f"/var/lib/pydeploy/{STACK}/host_state.json")


def run_playbook(**kwargs):
    return run_any_playbook(inventory=INVENTORY, **kwargs)


def deploy(extra_vars: dict | None = None):
    run = run_playbook(extra_vars=extra_vars)
    assert run.rc == 0, run.explain()
    return run


def ran(run) -> set[str]:
    """Names of the tasks that ran (not skipped) on the host."""
    return {name for name, result in run.tasks() if not result.get("skipped")}


def served_leaf(port: int = HTTPS_PORT) -> x509.Certificate:
    return served_chain(port, NAMES[0])[0]


def cert_files() -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(CERTS.iterdir()) if path.is_file()
    }


def lifetime(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def https_response(cafile: Path, path: str = "/", host: str = NAMES[0]) -> http.client.HTTPResponse:
    context = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("127.0.0.1", HTTPS_PORT, timeout=10, context=context)
    conn.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10), server_hostname=host
    )
    conn.request("GET", path, headers={"Host": host})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


@pytest.fixture(scope="module")
def stack(bed, docker_client):
    teardown_stack(docker_client, STACK)
    run = deploy()
    yield run
    teardown_stack(docker_client, STACK)
    RENEW_CRON.unlink(missing_ok=True)  # the ACME tests' schedule (not among conftest's)


# --------------------------------------------------------------------------- selfsigned


def test_a_self_signed_certificate_is_valid_a_year_at_most(stack):
    leaf = served_leaf()
    assert leaf.issuer == leaf.subject
    assert lifetime(leaf) <= dt.timedelta(days=365)
    assert sorted(
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    ) == sorted(NAMES)
    # HTTP/2, TLS 1.3, and the default HSTS header.
    handshake = verified_handshake(HTTPS_PORT, NAMES[0], CERTS / "fullchain.pem")
    assert handshake["alpn"] == "h2" and handshake["version"] == "TLSv1.3"
    response = https_response(CERTS / "fullchain.pem")
    assert response.status == 200
    assert response.getheader("Strict-Transport-Security") == "max-age=63072000; includeSubDomains"
    # No OCSP stapling for a self-signed certificate.
    assert "ssl_stapling" not in SITE.read_text()


def test_sslyze_finds_mozilla_intermediate_but_the_path_of_a_self_signed_certificate(stack):
    verdict = sslyze(HTTPS_PORT, NAMES[0])
    assert set(verdict["issues"]) == {"certificate_path_validation"}, verdict["output"][-4000:]


def test_a_self_signed_certificate_is_made_again_when_due_and_kept_otherwise(stack):
    short = deploy({"nginx_tls_selfsigned_days": 20, "nginx_tls_renew_days": 10})
    assert "Sign the certificate" in short.changed_tasks()
    assert abs(lifetime(served_leaf()) - dt.timedelta(days=20)) < dt.timedelta(minutes=1)
    # 20 days left, 30 wanted: due, made again (for 40 days); then not due, kept.
    due = {"nginx_tls_selfsigned_days": 40, "nginx_tls_renew_days": 30}
    renewed = deploy(due)
    assert "Sign the certificate" in renewed.changed_tasks()
    first = served_leaf()
    assert abs(lifetime(first) - dt.timedelta(days=40)) < dt.timedelta(minutes=1)
    # Not due now: kept, by the fast path and by the role in full (the next test, whose record says it is due).


def test_the_first_deploy_after_the_recorded_expiry_became_due_runs_the_role(stack):
    due = {"nginx_tls_selfsigned_days": 40, "nginx_tls_renew_days": 30}
    serial = served_leaf().serial_number
    kept = deploy(due)
    assert "Read the current certificate" not in ran(kept)  # the fast path: nothing to do
    assert kept.changed() == 0 and served_leaf().serial_number == serial, kept.changed_tasks()
    # As if weeks passed: the expiry the last run recorded is 5 days ahead.
    record = json.loads(HOST_STATE.read_text())
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=5)
    record["roles"]["nginx"]["facts"]["tls_not_after"] = soon.strftime("%Y%m%d%H%M%SZ")
    HOST_STATE.write_text(json.dumps(record))
    run = deploy(due)
    # The role in full (not skipped by the fast path). The certificate itself has 40 days: kept. (That the role
    # in full changes nothing at all is test_a_rerun_when_not_due_changes_nothing's, in acme mode.) The record
    # takes its expiry, and the next deploy skips the role.
    assert "Read the current certificate" in ran(run)
    assert "Sign the certificate" not in run.changed_tasks()
    assert served_leaf().serial_number == serial
    after = deploy(due)
    assert "Read the current certificate" not in ran(after) and after.changed() == 0, after.changed_tasks()


@pytest.mark.parametrize(
    ("extra_vars", "named"),
    [
        # The role's argument spec reports every value of a wrong type or choice at once.
        pytest.param(
            {
                "nginx_tls_mode": "letsencrypt",
                "nginx_tls_renew_days": "soon",
                "nginx_hsts_preload": "maybe",
                "nginx_tls_profile": "old",
            },
            ["nginx_tls_mode", "nginx_tls_renew_days", "nginx_hsts_preload", "nginx_tls_profile"],
            id="types-and-choices",
        ),
        # The TLS checks report every problem at once, each naming its variable.
        pytest.param(
            {
                "nginx_tls_selfsigned_days": 400,
                "nginx_hsts_preload": True,
                "nginx_hsts_max_age": 3600,
                "nginx_tls_mode": "acme",
                "nginx_acme_directory": "http://ca.example/dir",
                "nginx_acme_renew_schedule": "daily at 3",
            },
            [
                "nginx_tls_selfsigned_days must be 2 to 365",
                "nginx_hsts_preload needs nginx_hsts_max_age",
                "nginx_tls_mode=acme needs nginx_acme_terms_agreed",
                "nginx_acme_directory must be an https:// URL",
                "nginx_acme_renew_schedule 'daily at 3': a schedule has 5 fields",
            ],
            id="tls-checks",
        ),
    ],
)
def test_a_bad_setting_fails_before_anything_changes_naming_it(stack, extra_vars, named):
    before = cert_files(), SITE.read_text()
    run = run_playbook(extra_vars=extra_vars)
    assert run.rc != 0
    assert run.changed() == 0, run.changed_tasks()
    failures = " ".join(run.failure_messages())
    assert [name for name in named if name not in failures] == [], run.explain()
    assert (cert_files(), SITE.read_text()) == before


# --------------------------------------------------------------------------- provided


@pytest.fixture(scope="module")
def ca():
    return LocalCA()


@pytest.fixture(scope="module")
def chain_files(ca, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ca")
    (folder / "root.pem").write_text(ca.root.cert_pem)
    return folder


@pytest.fixture(scope="module")
def provided(stack, ca):
    # The responder named is on the proxy container's own loopback: nothing answers, nginx staples nothing.
    issued = ca.issue(NAMES, days=90, ocsp="http://127.0.0.1:9/")
    settings = {
        "nginx_tls_mode": "provided",
        "nginx_tls_certificate": issued.cert_pem,
        "nginx_tls_chain": ca.intermediate.cert_pem,
        "nginx_tls_private_key": issued.key_pem,
        "nginx_hsts_preload": True,
    }
    run = deploy(settings)
    return {"run": run, "issued": issued, "settings": settings}


def test_the_provided_chain_is_served_and_its_key_kept_0600(provided, ca, chain_files):
    assert [cert.serial_number for cert in served_chain(HTTPS_PORT, NAMES[0])] == [
        provided["issued"].cert.serial_number,
        ca.intermediate.cert.serial_number,
    ]
    # The served chain verifies up to the root alone, for every name.
    for name in NAMES:
        verified_handshake(HTTPS_PORT, name, chain_files / "root.pem")
    assert (CERTS / "privkey.pem").stat().st_mode & 0o777 == 0o600
    assert provided["issued"].key_pem not in provided["run"].stdout
    site = SITE.read_text()
    assert "ssl_stapling on;" in site and "ssl_trusted_certificate /etc/nginx/certs/chain.pem;" in site
    response = https_response(chain_files / "root.pem")
    assert response.getheader("Strict-Transport-Security") == "max-age=63072000; includeSubDomains; preload"


def test_sslyze_finds_a_provided_chain_fully_compliant_with_mozilla_intermediate(provided, chain_files):
    verdict = sslyze(HTTPS_PORT, NAMES[0], ca_file=chain_files / "root.pem")
    assert verdict["compliant"], verdict["output"][-4000:]


def test_a_rerun_with_the_same_certificate_changes_nothing(provided):
    again = deploy(provided["settings"])
    assert again.changed() == 0, again.changed_tasks()


def _bad(ca: LocalCA, provided: dict, problems: str) -> tuple[dict, list[str]]:
    good = provided["settings"]
    now = dt.datetime.now(dt.UTC)
    if problems == "key-expired-chain-names":
        # Expired, for one of the two names, with another key pair's key and a chain of another CA.
        old = ca.issue(["edge.localhost"], days=30, start=now - dt.timedelta(days=40))
        settings = {
            **good,
            "nginx_tls_certificate": old.cert_pem,
            "nginx_tls_private_key": ca.issue(NAMES).key_pem,
            "nginx_tls_chain": LocalCA("another").intermediate.cert_pem,
        }
        return settings, [
            "nginx_tls_private_key does not match the certificate",
            "expired on",
            "the chain does not verify",
            "does not cover www.edge.localhost of nginx_server_names",
        ]
    assert problems == "not-yet-valid-key-in-certificate"
    new = ca.issue(NAMES, days=30, start=now + dt.timedelta(days=2))
    settings = {**good, "nginx_tls_certificate": new.cert_pem + new.key_pem, "nginx_tls_private_key": new.key_pem}
    return settings, ["not valid before", "something other than certificates"]


@pytest.mark.parametrize("problems", ["key-expired-chain-names", "not-yet-valid-key-in-certificate"])
def test_a_bad_provided_certificate_is_refused_before_anything_changes(provided, ca, problems):
    settings, messages = _bad(ca, provided, problems)
    before = cert_files(), SITE.read_text(), served_leaf().serial_number
    run = run_playbook(extra_vars=settings)
    assert run.rc != 0
    assert run.changed() == 0, run.changed_tasks()
    failures = " ".join(run.failure_messages())
    assert [message for message in messages if message not in failures] == [], run.explain()
    assert "PRIVATE KEY" not in run.stdout + run.stderr
    assert (cert_files(), SITE.read_text(), served_leaf().serial_number) == before


def test_the_modern_profile_serves_tls_1_3_only_and_sslyze_finds_it_compliant(provided, chain_files):
    run = deploy({**provided["settings"], "nginx_tls_profile": "modern"})
    assert "ssl_protocols TLSv1.3;" in SITE.read_text() and "ssl_ciphers" not in SITE.read_text()
    verdict = sslyze(HTTPS_PORT, NAMES[0], profile="modern", ca_file=chain_files / "root.pem")
    assert verdict["compliant"], verdict["output"][-4000:]
    assert run.changed() > 0


# --------------------------------------------------------------------------- acme


@pytest.fixture(scope="module")
def acme_ca(stack, docker_client, bed_image, tmp_path_factory):
    with caddy_acme_ca(docker_client, bed_image("python"), tmp_path_factory.mktemp("acme"), NAMES) as ca:
        yield ca


@pytest.fixture(scope="module")
def acme(acme_ca, docker_client):
    settings = {
        "nginx_tls_mode": "acme",
        "nginx_acme_directory": acme_ca.directory,
        "nginx_acme_terms_agreed": True,
        "nginx_acme_email": "ops@edge.localhost",
        "nginx_acme_ca_certificate": acme_ca.root.read_text(),
        # The CA asks http://<name>:80/.well-known/acme-challenge/...
        "nginx_http_port": 80,
    }
    # From nothing: the first deploy starts nginx with a temporary certificate, then obtains the real one.
    teardown_stack(docker_client, STACK)
    run = deploy(settings)
    return {"run": run, "settings": settings}


def acme_leaf_checks(acme_ca) -> x509.Certificate:
    leaf = served_leaf()
    assert "Caddy Local Authority" in leaf.issuer.rfc4514_string()
    for name in NAMES:
        verified_handshake(HTTPS_PORT, name, acme_ca.root)
    return leaf


def test_the_acme_certificate_is_obtained_on_a_first_deploy_and_served(acme, acme_ca):
    leaf = acme_leaf_checks(acme_ca)
    assert lifetime(leaf) > dt.timedelta(days=50)
    changed = acme["run"].changed_tasks()
    assert "Sign the certificate" in changed  # the temporary one nginx started with
    assert "Let the CA validate the challenges and fetch the certificate" in changed
    accounts = list((NGINX / "acme").glob("account-*.pem"))
    assert len(accounts) == 1 and accounts[0].stat().st_mode & 0o777 == 0o600
    assert (CERTS / "privkey.pem").stat().st_mode & 0o777 == 0o600
    assert not list((NGINX / "acme-challenge").rglob("*"))  # the challenge files are gone
    assert https_response(acme_ca.root).status == 200


def test_a_rerun_when_not_due_changes_nothing(acme, acme_ca):
    serial = served_leaf().serial_number
    # The role in full (not skipped by the fast path): the CA is not asked.
    again = deploy({**acme["settings"], "pydeploy_fast_path": False})
    assert "Read the current certificate" in ran(again)
    assert again.changed() == 0, again.changed_tasks()
    assert served_leaf().serial_number == serial


class Load:
    """HTTPS requests through the proxy, one after another, in a thread: every failure is kept."""

    def __init__(self, cafile: Path):
        self.cafile, self.ok, self.failures = cafile, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status = https_response(self.cafile).status
                if status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"status {status}")
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failures.append(repr(exc))
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


@pytest.mark.parametrize(
    "renewal",
    [
        pytest.param({"nginx_tls_renew_days": 61}, id="due"),  # 60 days left (Caddy's lifetime), 61 wanted
        pytest.param({"nginx_tls_force_renew": True}, id="forced"),
    ],
)
def test_a_renewal_replaces_the_certificate_without_a_dropped_request(acme, acme_ca, renewal):
    before = served_leaf()
    with Load(acme_ca.root) as load:
        time.sleep(0.5)
        run = deploy({**acme["settings"], **renewal})
        time.sleep(0.5)
    assert "Let the CA validate the challenges and fetch the certificate" in run.changed_tasks()
    after = acme_leaf_checks(acme_ca)
    assert after.serial_number != before.serial_number
    assert load.failures == [] and load.ok > 20, (load.ok, load.failures[:5])


# --------------------------------------------------------------------------- acme, renewed by the host on its own

RENEW_CRON = Path(f"/etc/cron.d/pydeploy-{STACK}-tls")


def scheduled_renewal(force: bool = False) -> dict:
    """Run the command of the renewal's cron line as cron would (its environment: PATH, SHELL), or with
    PYDEPLOY_ACME_FORCE=1; the job's status as the runner recorded it."""
    (line,) = [line for line in RENEW_CRON.read_text().splitlines() if line and line[0].isdigit()]
    fields = shlex.split(line)
    assert fields[5] == "root" and fields[2:5] == ["*", "*", "*"]
    argv = fields[6 : next(i for i, field in enumerate(fields) if field.startswith(">>"))]
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SHELL": "/bin/sh"}
    env.update(PYDEPLOY_ACME_FORCE="1" if force else "")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    asked = subprocess.run([*argv, "--status"], capture_output=True, text=True, timeout=60, check=True)
    status = json.loads(asked.stdout)
    log = Path(status.get("log") or "/nonexistent")
    tail = log.read_text().splitlines()[-15:] if log.exists() else []
    return {"rc": proc.returncode, "status": status, "result": status.get("result"), "log": tail}


def test_the_host_checks_the_acme_certificate_daily_and_changes_nothing_when_not_due(acme, acme_ca):
    text = RENEW_CRON.read_text()
    assert "pydeploy-job" in text and "renew-job.json tls-renew" in text
    before, serial = cert_files(), served_leaf().serial_number
    account = {path.name: path.read_bytes() for path in (NGINX / "acme").glob("account-*.pem")}
    run = scheduled_renewal()
    assert run["rc"] == 0, run
    status = run["status"]
    assert status["state"] == "succeeded" and status["result"]["renewed"] is False, status
    assert status["result"]["msg"].startswith("not due"), status
    assert cert_files() == before and served_leaf().serial_number == serial
    assert {path.name: path.read_bytes() for path in (NGINX / "acme").glob("account-*.pem")} == account


def test_a_scheduled_renewal_when_due_serves_a_new_certificate_without_a_dropped_request(acme, acme_ca):
    before = served_leaf()
    account = {path.name: path.read_bytes() for path in (NGINX / "acme").glob("account-*.pem")}
    key = (CERTS / "privkey.pem").read_bytes()
    with Load(acme_ca.root) as load:
        time.sleep(0.5)
        run = scheduled_renewal(force=True)
        time.sleep(1)
    assert run["rc"] == 0 and run["result"]["renewed"] is True, run
    after = acme_leaf_checks(acme_ca)
    assert after.serial_number != before.serial_number
    assert format(after.serial_number, "x") == run["status"]["result"]["serial"]
    assert load.failures == [] and load.ok > 20, (load.ok, load.failures[:5])
    # The same account and key; the challenge files gone.
    assert {path.name: path.read_bytes() for path in (NGINX / "acme").glob("account-*.pem")} == account
    assert (CERTS / "privkey.pem").read_bytes() == key
    assert not list((NGINX / "acme-challenge").rglob("*"))
    assert os.stat(CERTS / "fullchain.pem").st_mode & 0o777 == 0o644
    # The next deploy sees the certificate the host renewed: not due, kept, nothing changed.
    again = deploy(acme["settings"])
    assert again.changed() == 0, again.changed_tasks()
    assert served_leaf().serial_number == after.serial_number
