"""The proxy's sites, as clients see them: two sites of one stack with their routes, www to the apex, HTTP to
HTTPS, a rate limited route with an allowlisted client, request ids, gzip, one copy of a header the app sets
itself, JSON access logs, and websockets that stay open while idle and across a reload.

Stack sites (tests/integration/inventories/sites): the backend (web) and a frontend process, both
tests/integration/sites_echo.py in the bed's python image; api.sites.test goes to the backend, sites.test to the
frontend, www.sites.test redirects to sites.test; nginx on 127.0.0.1:10680 (HTTP) and 11043 (HTTPS). One deploy,
shared by every test; the bad settings fail before anything changes.

What nginx sees as the client's address: ports published on 127.0.0.1 go through Docker's userland proxy, which
connects from the gateway of the stack's network, whatever the client's own address (127.0.0.2 included). The
inventory trusts that gateway's networks as it would a load balancer (nginx_real_ip_from), so a client is named
by the X-Forwarded-For it sends; the access log shows both."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import socket
import ssl
import struct
import time
from pathlib import Path

import pytest
from conftest import teardown_stack
from playbook import run_playbook as run_any_playbook

STACK = "sites"
INVENTORY = "tests/integration/inventories/sites"
HTTP_PORT, HTTPS_PORT = 10680, 11043
API, APEX, WWW = "api.sites.test", "sites.test", "www.sites.test"
NGINX = Path(f"/etc/pydeploy/{STACK}/nginx")
SITE = NGINX / "conf.d" / "default.conf"
CA = NGINX / "certs" / "fullchain.pem"


def run_playbook(**kwargs):
    return run_any_playbook(inventory=INVENTORY, **kwargs)


def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CA))


class Client:
    """One HTTP/1.1 connection (kept alive) to a name: HTTPS verified against the stack's certificate, or HTTP."""

    def __init__(self, host: str, *, tls: bool = True):
        self.host, self.tls = host, tls
        port = HTTPS_PORT if tls else HTTP_PORT
        if tls:
            context = tls_context()
            self.conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            self.conn.sock = context.wrap_socket(raw, server_hostname=host)
        else:
            self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.default_host = host if (tls and HTTPS_PORT == 443) or (not tls and HTTP_PORT == 80) else f"{host}:{port}"

    def get(self, path: str, headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        self.conn.request("GET", path, headers={"Host": self.default_host, **(headers or {})})
        response = self.conn.getresponse()
        return response.status, response.msg, response.read()

    def close(self):
        self.conn.close()


def get(host: str, path: str, *, tls: bool = True, headers: dict | None = None):
    client = Client(host, tls=tls)
    try:
        return client.get(path, headers)
    finally:
        client.close()


def nginx_log_lines(since: float) -> list[dict]:
    """The proxy's access log lines since ``since`` (epoch seconds), each parsed as JSON."""
    import docker

    container = docker.from_env().containers.get(f"{STACK}-nginx")
    lines = container.logs(stdout=True, stderr=False, since=int(since) - 1).decode().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture(scope="module")
def stack(bed, docker_client):
    teardown_stack(docker_client, STACK)
    run = run_playbook()
    assert run.rc == 0, run.explain()
    yield run
    teardown_stack(docker_client, STACK)


# --------------------------------------------------------------------------- names and redirects


def test_http_and_www_redirect_with_301_keeping_path_and_query(stack):
    # www over HTTP: straight to the apex over HTTPS, with the port that is not 443.
    status, headers, _ = get(WWW, "/p?q=1", tls=False)
    assert (status, headers["Location"]) == (301, f"https://{APEX}:{HTTPS_PORT}/p?q=1")
    status, headers, _ = get(APEX, "/p?q=1", tls=False)
    assert (status, headers["Location"]) == (301, f"https://{APEX}:{HTTPS_PORT}/p?q=1")
    status, headers, _ = get(API, "/a/b?c=d&e=f", tls=False)
    assert (status, headers["Location"]) == (301, f"https://{API}:{HTTPS_PORT}/a/b?c=d&e=f")
    # www over HTTPS (the certificate covers it): to the apex.
    status, headers, _ = get(WWW, "/x?y=2")
    assert (status, headers["Location"]) == (301, f"https://{APEX}:{HTTPS_PORT}/x?y=2")
    assert headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"


def test_each_name_reaches_its_process_with_the_host_and_its_port(stack):
    status, _, body = get(API, "/hello?x=1")
    seen = json.loads(body)
    assert status == 200 and seen["process"] == "backend" and seen["path"] == "/hello?x=1"
    assert seen["headers"]["Host"] == f"{API}:{HTTPS_PORT}"
    assert seen["headers"]["X-Forwarded-Proto"] == "https"
    status, _, body = get(APEX, "/")
    assert status == 200 and json.loads(body)["process"] == "frontend"
    # The apex's /api/ goes to the backend.
    status, _, body = get(APEX, "/api/items")
    assert status == 200 and json.loads(body)["process"] == "backend"
    # The websocket route of the api site, asked without an upgrade, is the backend too.
    assert json.loads(get(API, "/ws/")[2])["process"] == "backend"


def test_a_volume_route_is_served_by_nginx_with_long_cache_headers(stack):
    status, headers, body = get(APEX, "/files/hello.txt", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and gzip.decompress(body) == b"hello from a volume\n" * 40
    assert headers.get_all("Cache-Control") == ["public, max-age=31536000"]
    assert headers["Content-Encoding"] == "gzip" and headers["Content-Type"].startswith("text/plain")
    # The location's own headers do not lose the security headers or the request id.
    assert headers["X-Frame-Options"] == "DENY" and headers["Strict-Transport-Security"].startswith("max-age=")
    assert len(headers["X-Request-ID"]) == 32
    assert get(APEX, "/files/missing.txt")[0] == 404
    # Only the apex has the route: the api site sends /files/ to the backend.
    assert json.loads(get(API, "/files/hello.txt")[2])["process"] == "backend"


# --------------------------------------------------------------------------- rate limit


def burst(headers: dict | None = None, count: int = 60, seconds: float = 1.0) -> tuple[list[int], float]:
    """``count`` requests to the api's rate limited /api/ within ``seconds``, on one connection: their statuses,
    and the seconds they took."""
    client = Client(API)
    statuses = []
    start = time.monotonic()
    try:
        for number in range(count):
            time.sleep(max(0.0, start + number * seconds / count - time.monotonic()))
            statuses.append(client.get(f"/api/n{number}", headers)[0])
    finally:
        client.close()
    return statuses, time.monotonic() - start


def limited_as_expected(statuses: list[int], took: float) -> bool:
    """10 r/s with a burst of 20: the first 21 at once, then one every 100 ms, the rest 429."""
    return (
        set(statuses) <= {200, 429}
        and statuses[:21] == [200] * 21
        and 429 in statuses
        and statuses.count(200) <= 21 + 10 * took + 1
    )


def test_a_route_is_rate_limited_but_never_for_an_allowlisted_client(stack):
    time.sleep(2.5)  # the zone refilled (10 r/s, burst 20)
    since = time.time()
    statuses, took = burst()
    assert took < 2 and limited_as_expected(statuses, took), (took, statuses)
    # A client of nginx_rate_limit_allow (127.0.0.2/32, named through the trusted gateway) is never limited.
    allowed, _ = burst({"X-Forwarded-For": "127.0.0.2"})
    assert allowed == [200] * 60
    # Another address is limited on its own.
    other, took = burst({"X-Forwarded-For": "127.0.0.3"})
    assert limited_as_expected(other, took), (took, other)
    # What nginx saw: the gateway of the stack's network for the first client, then the named ones.
    time.sleep(0.5)
    seen = {}
    for line in nginx_log_lines(since):
        if line["host"] == API and line["uri"].startswith("/api/n"):
            seen.setdefault(line["remote_addr"], []).append(line["status"])
    assert seen["127.0.0.2"] == [200] * 60
    assert seen["127.0.0.3"].count(429) == other.count(429)
    (gateway,) = set(seen) - {"127.0.0.2", "127.0.0.3"}
    assert not gateway.startswith("127."), gateway
    assert seen[gateway].count(429) == statuses.count(429)


# --------------------------------------------------------------------------- headers, gzip, logs


def test_the_request_id_is_passed_or_made_sent_to_the_app_and_returned(stack):
    status, headers, body = get(API, "/echo", headers={"X-Request-ID": "req-42.abc"})
    assert status == 200 and headers["X-Request-ID"] == "req-42.abc"
    assert json.loads(body)["headers"]["X-Request-ID"] == "req-42.abc"
    status, headers, body = get(APEX, "/echo")
    made = headers["X-Request-ID"]
    assert len(made) == 32 and int(made, 16) >= 0
    assert json.loads(body)["headers"]["X-Request-ID"] == made
    # One that does not look like an id is replaced.
    _, headers, body = get(API, "/echo", headers={"X-Request-ID": "bad id <script>"})
    assert len(headers["X-Request-ID"]) == 32 and json.loads(body)["headers"]["X-Request-ID"] == headers["X-Request-ID"]


def test_a_header_the_app_sets_itself_is_sent_once_as_the_app_set_it(stack):
    _, headers, _ = get(API, "/echo")
    # The app sets X-Frame-Options: SAMEORIGIN; nginx would send DENY.
    assert headers.get_all("X-Frame-Options") == ["SAMEORIGIN"]
    assert headers.get_all("X-Request-ID") == [headers["X-Request-ID"]]
    assert headers.get_all("Strict-Transport-Security") == ["max-age=63072000; includeSubDomains"]
    assert headers.get_all("X-Content-Type-Options") == ["nosniff"]


def test_text_answers_are_compressed(stack):
    status, headers, body = get(APEX, "/big", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in headers["Vary"]
    document = json.loads(gzip.decompress(body))
    assert len(body) < len(json.dumps(document)) / 5
    # Not for a client that does not ask.
    _, headers, _ = get(APEX, "/big")
    assert "Content-Encoding" not in headers


def test_access_log_lines_are_json_with_request_and_upstream_times(stack):
    since = time.time()
    get(API, "/logged?x=1", headers={"X-Request-ID": "logged-1"})
    get(WWW, "/logged-redirect", tls=False)
    time.sleep(0.5)
    lines = nginx_log_lines(since)
    (proxied,) = [line for line in lines if line["request_id"] == "logged-1"]
    assert proxied["uri"] == "/logged?x=1" and proxied["status"] == 200 and proxied["host"] == API
    assert isinstance(proxied["request_time"], float) and float(proxied["upstream_response_time"]) >= 0
    assert proxied["upstream_addr"].endswith(":8000")
    (redirected,) = [line for line in lines if line["uri"] == "/logged-redirect"]
    assert redirected["status"] == 301 and redirected["upstream_response_time"] == ""


# --------------------------------------------------------------------------- websockets


class WebSocket:
    """A websocket client on a TLS socket: the upgrade by hand (RFC 6455), masked frames out."""

    def __init__(self, host: str, path: str):
        raw = socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10)
        self.sock = tls_context().wrap_socket(raw, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{HTTPS_PORT}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, f"closed during the upgrade: {head!r}"
            head += chunk
        self.status_line = head.split(b"\r\n", 1)[0].decode()

    def send(self, text: str):
        payload, mask = text.encode(), os.urandom(4)
        assert len(payload) < 126
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def receive(self) -> str:
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._exactly(2))[0]
        payload = self._exactly(length)
        assert first & 0x0F == 0x1, f"opcode {first & 0x0F}"
        return payload.decode()

    def closed_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self):
        self.sock.close()


def test_a_websocket_exchanges_messages_stays_open_while_idle_and_across_a_reload(stack, docker_client):
    ws = WebSocket(API, "/ws/")
    try:
        assert ws.status_line.startswith("HTTP/1.1 101"), ws.status_line
        ws.send("hello")
        assert ws.receive() == "hello"
        time.sleep(5)  # idle
        ws.send("still here")
        assert ws.receive() == "still here"
        # A graceful reload: the old worker keeps the connection it holds.
        docker_client.containers.get(f"{STACK}-nginx").exec_run(["nginx", "-s", "reload"])
        time.sleep(1)
        for number in range(3):
            ws.send(f"after reload {number}")
            assert ws.receive() == f"after reload {number}"
    finally:
        ws.close()
    # The route's read_timeout (600 s) is the websocket's, not nginx's default 60 s.
    api_site = SITE.read_text().split(f"server_name {API};", 1)[1]
    ws_location = api_site.split("location /ws/ {", 1)[1].split("}", 1)[0]
    assert "proxy_read_timeout 600s;" in ws_location and "proxy_send_timeout 600s;" in ws_location


def test_a_websocket_idle_longer_than_its_route_read_timeout_is_closed(stack):
    # /ws-short/ has read_timeout 2: idle 2 s, nginx closes it; /ws/ (600 s) stayed open through 5 s above.
    ws = WebSocket(API, "/ws-short/")
    try:
        assert ws.status_line.startswith("HTTP/1.1 101"), ws.status_line
        ws.send("ping")
        assert ws.receive() == "ping"
        started = time.monotonic()
        assert ws.closed_within(10)
        assert 1.5 <= time.monotonic() - started <= 6
    finally:
        ws.close()


# --------------------------------------------------------------------------- bad settings


SITES = [{"names": [API], "routes": [{"path": "/", "process": "web"}]}]


@pytest.mark.parametrize(
    ("extra_vars", "named"),
    [
        pytest.param(
            {"nginx_sites": [{"names": [API], "routes": [{"path": "/", "process": "worker"}]}]},
            "nginx_sites[0].routes[0].process",
            id="unknown-process",
        ),
        pytest.param(
            {
                "nginx_sites": [
                    {"names": [API], "routes": [{"path": "/a/", "process": "web", "rate_limit": {"rate": "10/s"}}]}
                ]
            },
            "nginx_sites[0].routes[0].rate_limit.rate",
            id="rate",
        ),
        pytest.param(
            {"nginx_sites": SITES, "nginx_rate_limit_allow": ["10.0.0.300/8"]}, "nginx_rate_limit_allow", id="allow"
        ),
        pytest.param(
            {"nginx_sites": [{"names": [API], "routes": [{"path": "/", "proces": "web"}]}]}, "proces", id="unknown-key"
        ),
    ],
)
def test_a_bad_site_fails_before_anything_changes_naming_it(stack, extra_vars, named):
    before = SITE.read_text()
    run = run_playbook(extra_vars=extra_vars)
    assert run.rc != 0
    assert run.changed() == 0, run.changed_tasks()
    assert named in " ".join(run.failure_messages()), run.explain()
    assert SITE.read_text() == before


def test_a_second_deploy_with_every_role_in_full_changes_nothing(stack):
    before = SITE.read_text()
    run = run_playbook(extra_vars={"pydeploy_fast_path": False})
    assert run.rc == 0, run.explain()
    assert run.changed() == 0, run.changed_tasks()
    assert SITE.read_text() == before


def test_a_process_reached_by_name_is_followed_to_its_new_address_without_a_reload(stack, docker_client):
    network = docker_client.networks.get(STACK)
    frontend = docker_client.containers.get(f"{STACK}-frontend-1")
    nginx = docker_client.containers.get(f"{STACK}-nginx")
    started = nginx.attrs["State"]["StartedAt"]
    before = frontend.attrs["NetworkSettings"]["Networks"][STACK]["IPAddress"]
    # The frontend leaves the network, another container takes its address, the frontend comes back elsewhere
    # (as a release's new container would).
    network.disconnect(frontend)
    holder = docker_client.containers.run(
        "127.0.0.1:5000/library/python:3.11-slim",
        ["sleep", "120"],
        detach=True,
        remove=True,
        network=STACK,
        labels={"pydeploy.stack": STACK},
    )
    try:
        network.connect(frontend)
        frontend.reload()
        after = frontend.attrs["NetworkSettings"]["Networks"][STACK]["IPAddress"]
        assert after != before
        time.sleep(6)  # nginx asks Docker's DNS again once its answer is 5 s old
        since = time.time()
        status, _, body = get(APEX, "/moved")
        assert status == 200 and json.loads(body)["process"] == "frontend"
        time.sleep(0.5)
        (line,) = [line for line in nginx_log_lines(since) if line["uri"] == "/moved"]
        assert line["upstream_addr"] == f"{after}:8000"
    finally:
        holder.remove(force=True)
    nginx.reload()
    assert nginx.attrs["State"]["StartedAt"] == started
