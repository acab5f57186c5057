"""The health_check module, run by ansible-playbook against real services on 127.0.0.1.

HTTP and HTTPS servers run in this process (threads); PostgreSQL and Redis
are the bed's stand-in images.  Each test writes a one-task playbook, runs
it with the json callback and reads the task's result; passwords planted in
the arguments must never appear in anything ansible-playbook prints.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import redis
from conftest import REPO, wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BIN = Path(sys.executable).parent
MASK = "********"
NO_LOG = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
START_TIMEOUT = 120


def ansible_env() -> dict:
    return {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.proc = proc
        self.output = proc.stdout + proc.stderr
        try:
            plays = json.loads(proc.stdout)["plays"]
            self.result = plays[0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            pytest.fail(f"no task result from ansible-playbook (rc {proc.returncode}):\n{self.output}")

    @property
    def checks(self) -> dict:
        return {check["name"]: check for check in self.result["checks"]}

    def assert_hides(self, *secrets: str) -> None:
        for secret in secrets:
            assert secret not in self.output, f"{secret!r} leaked into the output"


def health_check(tmp_path: Path, args: dict, *, check_mode: bool = False) -> Run:
    """Run the module once on localhost through ansible-playbook."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{"pydeploy.stack.health_check": args}]}]
    playbook = tmp_path / "health.yml"
    playbook.write_text(json.dumps(play, indent=2))  # JSON is YAML, and needs no quoting
    argv = [str(BIN / "ansible-playbook"), str(playbook)] + (["--check"] if check_mode else [])
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=600)
    run = Run(proc)
    assert (proc.returncode == 0) == (not run.result.get("failed")), run.output
    return run


# --- HTTP servers ----------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    server: JsonServer

    def do_GET(self):
        server = self.server
        with server.lock:
            server.requests.append(dict(self.headers))
            number = len(server.requests)
        status, document, *headers = server.respond(number)
        body = json.dumps(document).encode()
        self.send_response(status)
        for name, value in (headers[0] if headers else {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class JsonServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, respond, tls: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.respond = respond
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]


@pytest.fixture
def serve():
    """``serve(respond, tls=None)`` starts a server on 127.0.0.1; ``respond(n)`` answers request n."""
    servers = []

    def start(respond, tls=None) -> JsonServer:
        server = JsonServer(respond, tls)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def flipping(failures: int, healthy: dict, unhealthy: dict):
    """503 for the first ``failures`` requests, then 200."""
    return lambda n: (503, unhealthy) if n <= failures else (200, healthy)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` only (no IP address in it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "localhost.crt", directory / "localhost.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def https_server(serve, certificate):
    cert_path, key_path = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_path, key_path)
    return serve(lambda n: (200, {"status": "ok", "tls": True}), tls=tls)


# --- HTTP ------------------------------------------------------------------


def test_http_polls_until_healthy(tmp_path, serve):
    """503 three times, then 200: the module keeps asking, and needs two successes in a row."""
    server = serve(flipping(3, {"status": "ok", "checks": {"db": "ok"}}, {"status": "starting"}))
    url = f"http://127.0.0.1:{server.port}/health"
    run = health_check(
        tmp_path,
        {
            "http": [
                {
                    "name": "app",
                    "url": url,
                    "headers": {"Host": "app.example.test"},
                    "json": {"status": "ok", "checks.db": "ok"},
                    "contains": '"db"',
                }
            ],
            "interval": 0.2,
            "timeout": 30,
            "consecutive": 2,
        },
    )
    assert run.proc.returncode == 0, run.output
    assert run.result["changed"] is False
    check = run.checks["app"]
    assert check["kind"] == "http"
    assert check["target"] == url
    assert check["healthy"] is True
    assert check["attempts"] == 5
    assert check["status"] == 200
    assert check["body"] == {"status": "ok", "checks": {"db": "ok"}}
    assert check["error"] is None
    assert check["latency_ms"] > 0
    assert 0.8 <= run.result["elapsed"] < 30
    assert len(server.requests) == 5
    assert {request["Host"] for request in server.requests} == {"app.example.test"}


def test_http_timeout_names_each_check_and_its_last_response(tmp_path, serve):
    degraded = serve(lambda n: (200, {"status": "degraded", "n": n}))
    starting = serve(lambda n: (503, {"status": "starting"}))
    healthy = serve(lambda n: (200, {"status": "ok"}))
    password, token = "Pl@nted-basic-pw", "planted-token-5678"
    run = health_check(
        tmp_path,
        {
            "http": [
                {
                    "name": "api",
                    "url": f"http://admin:{quote(password, safe='')}@127.0.0.1:{degraded.port}/health",
                    "json": {"status": "ok"},
                },
                {
                    "url": f"http://127.0.0.1:{starting.port}/health",
                    "headers": {"Authorization": f"Bearer {token}"},
                },
                {"url": f"http://127.0.0.1:{healthy.port}/health", "name": "fine"},
            ],
            "timeout": 1.5,
            "interval": 0.5,
        },
    )
    assert run.proc.returncode != 0
    result = run.result
    message = result["msg"]
    assert message.startswith("2 of 3 health check(s) not healthy after ")
    assert f"http api (http://admin:{MASK}@127.0.0.1:{degraded.port}/health): expected json status=ok, got " in message
    assert "got status=degraded" in message
    assert (
        f'http http://127.0.0.1:{starting.port}/health: expected status 200, got 503: {{"status": "starting"}}'
        in message
    )
    assert "fine" not in message
    checks = run.checks
    assert checks["api"]["healthy"] is False
    assert checks["api"]["attempts"] >= 3
    assert checks["api"]["body"]["status"] == "degraded"
    assert checks["api"]["status"] == 200
    assert checks[f"http://127.0.0.1:{starting.port}/health"]["status"] == 503
    assert checks["fine"]["healthy"] is True
    assert checks["fine"]["attempts"] == 1
    # The credentials did reach the servers, and never came back.
    assert degraded.requests[0]["Authorization"].startswith("Basic ")
    assert starting.requests[0]["Authorization"] == f"Bearer {token}"
    run.assert_hides(password, quote(password, safe=""), token)


# --- HTTPS -----------------------------------------------------------------


def test_a_bare_json_body_a_redirect_and_a_503_each_behave_as_described(tmp_path, serve):
    """A body of JSON true is compared whole; a redirect (an answer waiting will not change) ends the wait
    after three attempts with the answer in the message, long before the timeout; a 503 is waited out."""
    bare = serve(lambda n: (200, True))
    setup = serve(lambda n: (302, {}, {"Location": "/setup"}))
    starting = serve(lambda n: (503, {"status": "starting"}))
    run = health_check(
        tmp_path,
        {
            "http": [
                {"name": "bare", "url": f"http://127.0.0.1:{bare.port}/health", "body": True},
                {"name": "setup", "url": f"http://127.0.0.1:{setup.port}/"},
            ],
            "timeout": 300,
            "interval": 1,
        },
    )
    assert run.result["failed"]
    assert run.checks["bare"]["healthy"] and run.checks["bare"]["body"] is True
    assert not run.checks["setup"]["healthy"] and run.checks["setup"]["attempts"] == 3
    assert run.result["elapsed"] < 10, run.result["elapsed"]
    message = run.result["msg"]
    assert "(gave up on a definitive answer)" in message, message
    assert "expected status 200, got 302 (a redirect to /setup)" in message, message

    waited = health_check(
        tmp_path,
        {"http": [{"name": "starting", "url": f"http://127.0.0.1:{starting.port}/"}], "timeout": 3, "interval": 1},
    )
    assert waited.result["failed"] and waited.checks["starting"]["attempts"] >= 3
    assert "(timeout 3s)" in waited.result["msg"] and "got 503" in waited.result["msg"], waited.result["msg"]


def test_https_with_a_self_signed_certificate(tmp_path, https_server, certificate):
    cert_path, _ = certificate
    port = https_server.port
    run = health_check(
        tmp_path,
        {
            "http": [
                # By address, with the name the certificate carries.
                {
                    "name": "by-address",
                    "url": f"https://127.0.0.1:{port}/health",
                    "ca_path": str(cert_path),
                    "tls_server_name": "localhost",
                },
                # By name: the name to verify is the URL's.
                {"name": "by-name", "url": f"https://localhost:{port}/health", "ca_path": str(cert_path)},
                # By address with a Host header: the header names the site.
                {
                    "name": "by-host-header",
                    "url": f"https://127.0.0.1:{port}/health",
                    "ca_path": str(cert_path),
                    "headers": {"Host": f"localhost:{port}"},
                    "json": {"tls": True},
                },
            ],
            "timeout": 20,
        },
    )
    assert run.proc.returncode == 0, run.output
    for name in ("by-address", "by-name", "by-host-header"):
        assert run.checks[name]["healthy"] is True, run.checks[name]
        assert run.checks[name]["body"] == {"status": "ok", "tls": True}


def test_https_refuses_what_it_cannot_verify(tmp_path, https_server, certificate):
    cert_path, _ = certificate
    url = f"https://127.0.0.1:{https_server.port}/health"
    run = health_check(
        tmp_path,
        {
            "http": [
                {"name": "system-store", "url": url, "tls_server_name": "localhost"},
                {"name": "wrong-name", "url": url, "ca_path": str(cert_path), "tls_server_name": "app.example.test"},
                {"name": "no-name", "url": url, "ca_path": str(cert_path)},
                {"name": "unverified", "url": url, "validate_certs": False},
            ],
            "timeout": 0,
        },
    )
    assert run.proc.returncode != 0
    checks = run.checks
    assert "CERTIFICATE_VERIFY_FAILED" in checks["system-store"]["error"]
    assert re.search(r"self.signed certificate", checks["system-store"]["error"])  # OpenSSL 1.1 has no dash
    assert "Hostname mismatch" in checks["wrong-name"]["error"]
    assert "app.example.test" in checks["wrong-name"]["error"]
    assert "IP address mismatch" in checks["no-name"]["error"]
    assert checks["unverified"]["healthy"] is True
    assert run.result["msg"].startswith("3 of 4 health check(s) not healthy")
    assert "http system-store (https://127.0.0.1:" in run.result["msg"]


# --- PostgreSQL and Redis --------------------------------------------------

PG_USER, PG_DB = "app", "appdb"
PG_PASSWORD = "Pl@nted:pg/s3cret"  # needs percent-encoding in a URL
REDIS_PASSWORD = "planted-r3dis-s3cret"


def start_services(run_container, bed_image) -> tuple[int, int]:
    """Start postgres and redis; return their host ports without waiting for them."""
    _, pg_ports = run_container(
        bed_image("postgres"),
        ports={"5432/tcp": None},
        environment={"POSTGRES_USER": PG_USER, "POSTGRES_PASSWORD": PG_PASSWORD, "POSTGRES_DB": PG_DB},
    )
    _, redis_ports = run_container(
        bed_image("redis"), ports={"6379/tcp": None}, command=["redis-server", "--requirepass", REDIS_PASSWORD]
    )
    return pg_ports["5432/tcp"], redis_ports["6379/tcp"]


def pg_url(port: int, password: str = PG_PASSWORD) -> str:
    return f"postgresql://{PG_USER}:{quote(password, safe='')}@127.0.0.1:{port}/{PG_DB}"


def redis_url(port: int, password: str = REDIS_PASSWORD) -> str:
    return f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0"


def test_postgres_and_redis_become_healthy(tmp_path, run_container, bed_image):
    """The module itself waits for freshly started containers, then check mode runs the same checks."""
    pg_port, redis_port = start_services(run_container, bed_image)
    args = {
        "postgres": [
            {"name": "pg-url", "url": pg_url(pg_port)},
            {
                "name": "pg-primary",
                "host": "127.0.0.1",
                "port": pg_port,
                "user": PG_USER,
                "password": PG_PASSWORD,
                "dbname": PG_DB,
                "query": "SELECT NOT pg_is_in_recovery()",
            },
        ],
        "redis": [{"name": "cache", "url": redis_url(redis_port)}],
        "timeout": START_TIMEOUT,
        "interval": 0.5,
    }
    for check_mode in (False, True):
        run = health_check(tmp_path, args, check_mode=check_mode)
        assert run.proc.returncode == 0, run.output
        assert run.result["changed"] is False
        checks = run.checks
        assert set(checks) == {"pg-url", "pg-primary", "cache"}
        assert all(check["healthy"] for check in checks.values()), checks
        assert checks["pg-url"]["kind"] == "postgres"
        assert checks["pg-url"]["target"] == f"postgresql://{PG_USER}:{MASK}@127.0.0.1:{pg_port}/{PG_DB}"
        assert checks["pg-url"]["body"] == 1
        assert checks["pg-primary"]["target"] == f"postgresql://{PG_USER}@127.0.0.1:{pg_port}/{PG_DB}"
        assert checks["pg-primary"]["body"] is True
        assert checks["cache"]["kind"] == "redis"
        assert checks["cache"]["target"] == f"redis://:{MASK}@127.0.0.1:{redis_port}/0"
        assert checks["cache"]["latency_ms"] > 0
        echoed = run.result["invocation"]["module_args"]
        assert echoed["postgres"][0]["url"] == NO_LOG
        assert echoed["postgres"][1]["password"] == NO_LOG
        assert echoed["redis"][0]["url"] == NO_LOG
        run.assert_hides(PG_PASSWORD, quote(PG_PASSWORD, safe=""), REDIS_PASSWORD)


def test_wrong_passwords_fail_without_showing_them(tmp_path, run_container, bed_image):
    pg_port, redis_port = start_services(run_container, bed_image)

    def ready() -> bool:
        with psycopg.connect(pg_url(pg_port), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return redis.Redis.from_url(redis_url(redis_port), protocol=2, socket_timeout=5).ping()

    wait_for(ready, timeout=START_TIMEOUT, what="postgres and redis")
    wrong_pg, wrong_redis = "wrong-pg-Pl4nted", "wrong-r3dis-Pl4nted"
    run = health_check(
        tmp_path,
        {
            "postgres": [{"url": pg_url(pg_port, wrong_pg)}],
            "redis": [{"url": redis_url(redis_port, wrong_redis)}, {"url": f"redis://127.0.0.1:{redis_port}/0"}],
            "timeout": 2,
            "interval": 0.5,
        },
    )
    assert run.proc.returncode != 0
    message = run.result["msg"]
    assert message.startswith("3 of 3 health check(s) not healthy")
    assert f"postgres postgresql://{PG_USER}:{MASK}@127.0.0.1:{pg_port}/{PG_DB}: OperationalError" in message
    assert "password authentication failed" in message
    assert f"redis redis://:{MASK}@127.0.0.1:{redis_port}/0: AuthenticationError" in message
    # A URL without password is no secret: it is shown as given.
    assert f"redis redis://127.0.0.1:{redis_port}/0: AuthenticationError: Authentication required" in message
    for check in run.result["checks"]:
        assert check["healthy"] is False
        assert check["attempts"] >= 2
        assert check["latency_ms"] is None
    run.assert_hides(wrong_pg, wrong_redis, PG_PASSWORD, REDIS_PASSWORD)


# --- documentation ---------------------------------------------------------


def test_ansible_doc():
    env = ansible_env()
    text = subprocess.run(
        [str(BIN / "ansible-doc"), "pydeploy.stack.health_check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert text.returncode == 0, text.stderr
    assert "pydeploy.stack.health_check" in text.stdout
    assert "tls_server_name" in text.stdout
    raw = subprocess.run(
        [str(BIN / "ansible-doc"), "--json", "pydeploy.stack.health_check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert raw.returncode == 0, raw.stderr
    doc = json.loads(raw.stdout)["pydeploy.stack.health_check"]
    options = doc["doc"]["options"]
    assert set(options) == {"http", "postgres", "redis", "timeout", "interval", "request_timeout", "consecutive"}
    assert options["postgres"]["suboptions"]["url"]["type"] == "str"
    assert set(doc["return"]["checks"]["contains"]) == {
        "name",
        "kind",
        "target",
        "healthy",
        "attempts",
        "latency_ms",
        "status",
        "body",
        "error",
    }
    assert "pydeploy.stack.health_check:" in doc["examples"]
