"""The proxy_upstream module against a real nginx (the bed's image) whose conf.d is a
directory of the test's own: traffic moves to the new upstream on a graceful reload,
a file nginx -t refuses is put back with nothing reloaded, a rerun changes nothing,
check mode writes nothing, a missing proxy is skipped, a switch with a drain
returns once the requests in flight through the old workers were answered (or at its timeout), and
a switch with a check through the proxy fails, saying traffic moved, when the app does not answer."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from conftest import wait_for
from playbook import module_task

SITE = """
server { listen 8081; location / { return 200 "blue\\n"; } }
server { listen 8082; location / { return 200 "green\\n"; } }
server { listen 8083; location / { return 503 "down\\n"; } }
server {
    listen 8080;
    location / { proxy_pass http://app; }
}
"""


def upstream(*servers: str) -> str:
    lines = "".join(f"    server {server};\n" for server in servers)
    return f"upstream app {{\n{lines}}}\n"


def switch(tmp_path: Path, args: dict, *, check: bool = False, diff: bool = False) -> tuple[int, dict]:
    rc, result, _ = module_task(tmp_path, "proxy_upstream", args, check=check, diff=diff)
    return rc, result


@pytest.fixture
def proxy(tmp_path, run_container, bed_image):
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "site.conf").write_text(SITE)
    (confd / "upstream.conf").write_text(upstream("127.0.0.1:8081"))
    container, ports = run_container(
        bed_image("nginx"),
        ports={"8080/tcp": None},
        volumes={str(confd): {"bind": "/etc/nginx/conf.d", "mode": "ro"}},
    )
    port = ports["8080/tcp"]

    def answer() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return response.read().decode().strip()

    wait_for(lambda: answer() == "blue", timeout=60, what="nginx to serve")
    return container, confd / "upstream.conf", answer


def test_traffic_moves_on_a_graceful_reload_and_a_rerun_changes_nothing(tmp_path, proxy):
    container, dest, answer = proxy
    args = {"dest": str(dest), "content": upstream("127.0.0.1:8082"), "container": container.name}

    rc, result = switch(tmp_path, args, check=True, diff=True)
    assert rc == 0 and result["changed"] and not result["reloaded"]
    assert "8082" in result["diff"]["after"] and "8081" in result["diff"]["before"]
    assert "8081" in dest.read_text() and answer() == "blue"

    rc, result = switch(tmp_path, args)
    assert rc == 0, result
    assert result["changed"] and result["reloaded"]
    assert set(result["timings"]) == {"write", "check", "reload"}
    assert dest.read_text() == args["content"]
    assert oct(dest.stat().st_mode & 0o777) == "0o644"
    wait_for(lambda: answer() == "green", timeout=30, interval=0.1, what="nginx to send traffic to the new upstream")
    container.reload()
    assert container.status == "running"
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".upstream-")] == []

    rc, again = switch(tmp_path, args)
    assert rc == 0 and not again["changed"] and not again["reloaded"]


def test_a_switch_checks_the_app_through_the_proxy_and_fails_saying_what_it_answered(tmp_path, proxy):
    container, dest, answer = proxy
    container.reload()
    port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    verify = {"url": f"http://127.0.0.1:{port}/", "status": 200, "timeout": 2, "interval": 0.1}
    args = {"dest": str(dest), "content": upstream("127.0.0.1:8082"), "container": container.name}

    rc, result = switch(tmp_path, {**args, "drain_timeout": 5, "verify": verify})
    assert rc == 0, result
    assert result["reloaded"] and result["checks"][0]["healthy"], result
    assert set(result["timings"]) == {"write", "check", "reload", "drain", "verify"}
    assert answer() == "green"

    rc, result = switch(tmp_path, {**args, "content": upstream("127.0.0.1:8083"), "verify": verify})
    assert rc != 0 and result["reloaded"], result
    assert "did not answer as expected through the proxy after the switch" in result["msg"], result["msg"]
    assert "expected status 200, got 503" in result["msg"], result["msg"]
    assert not result["checks"][0]["healthy"]


def test_a_file_nginx_refuses_is_put_back_and_nothing_reloads(tmp_path, proxy):
    container, dest, answer = proxy
    before = dest.read_text()
    bad = upstream("no-such-replica.invalid:8000")
    rc, result = switch(tmp_path, {"dest": str(dest), "content": bad, "container": container.name})
    assert rc != 0
    assert "nginx -t refused" in result["msg"] and "host not found" in result["msg"], result["msg"]
    assert "the previous file is back" in result["msg"]
    assert dest.read_text() == before
    assert answer() == "blue"
    # A later reload, for any reason, still finds a configuration that works.
    assert container.exec_run(["nginx", "-t", "-q"]).exit_code == 0


def test_no_running_proxy_is_skipped(tmp_path):
    dest = tmp_path / "upstream.conf"
    args = {"dest": str(dest), "content": upstream("127.0.0.1:8082"), "container": "pydeploy-test-no-such-proxy"}
    rc, result = switch(tmp_path, args)
    assert rc == 0 and not result["changed"]
    assert result["skipped_reason"] == "the proxy container pydeploy-test-no-such-proxy does not exist"
    assert not dest.exists()


SLOW_SERVER = """
import http.server, threading, time
released = threading.Event()
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print('received', self.path, flush=True)
        if self.path == '/release':
            released.set()
        elif self.path == '/hold':
            released.wait(120)
        else:
            time.sleep(float(self.path.strip('/') or 0))
        body = b'slow\\n'
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', 8090), Slow).serve_forever()
"""


@pytest.fixture
def slow_proxy(tmp_path, run_container, bed_image):
    """nginx in front of an upstream whose answer to /<seconds> takes that long (a Python server in the
    same network namespace, on 127.0.0.1:8090)."""
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "site.conf").write_text(SITE)
    (confd / "upstream.conf").write_text(upstream("127.0.0.1:8090"))
    slow, ports = run_container(bed_image("python"), ports={"8080/tcp": None}, command=["python", "-c", SLOW_SERVER])
    container, _ = run_container(
        bed_image("nginx"),
        network_mode=f"container:{slow.id}",
        volumes={str(confd): {"bind": "/etc/nginx/conf.d", "mode": "ro"}},
    )
    port = ports["8080/tcp"]

    def answer(path: str = "/", timeout: float = 10) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.read().decode().strip()

    wait_for(lambda: answer() == "slow", timeout=60, what="nginx to serve the slow upstream")

    def received(path: str) -> bool:
        return f"received {path}" in slow.logs().decode()

    def release() -> None:
        """Let a request to /hold be answered (asked from inside the upstream's own network namespace)."""
        code, output = slow.exec_run(
            ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8090/release').read()"]
        )
        assert code == 0, output

    return container, confd / "upstream.conf", answer, received, release


def test_a_switch_with_a_drain_returns_once_the_requests_in_flight_were_answered(tmp_path, slow_proxy):
    import threading
    import time

    container, dest, answer, received, release = slow_proxy
    answers: list = []

    def slow_request(path: str) -> threading.Thread:
        def request() -> None:
            started = time.monotonic()
            answers.append((answer(path, timeout=60), time.monotonic() - started, time.monotonic()))

        thread = threading.Thread(target=request)
        thread.start()
        # The request is in flight, held by a worker from before the switch.
        wait_for(lambda: received(path), timeout=30, interval=0.05, what="the request to reach the upstream")
        return thread

    # A request of 3 s in flight: the switch waits for it, and no longer.
    thread = slow_request("/3")
    started = time.monotonic()
    rc, result = switch(
        tmp_path,
        {"dest": str(dest), "content": upstream("127.0.0.1:8081"), "container": container.name, "drain_timeout": 30},
    )
    returned = time.monotonic()
    thread.join(10)
    assert rc == 0 and result["reloaded"] and result["drained"] is True, result
    assert answers and answers[0][0] == "slow", answers
    # The switch returned only once the request was answered (however long the module took to start).
    assert answers[0][2] <= returned + 0.2, (answers, returned)
    assert 0 < result["timings"]["drain"] < 10, result["timings"]
    assert returned - started < 15
    assert answer() == "blue"

    # A request held past the drain timeout (however long the module takes to start): the switch returns at the
    # timeout, saying so; the request is answered once released.
    rc, back = switch(tmp_path, {"dest": str(dest), "content": upstream("127.0.0.1:8090"), "container": container.name})
    assert rc == 0 and "drained" not in back and "drain" not in back["timings"]
    wait_for(lambda: answer() == "slow", timeout=30, interval=0.1, what="traffic back on the slow upstream")
    answers.clear()
    thread = slow_request("/hold")
    rc, result = switch(
        tmp_path,
        {"dest": str(dest), "content": upstream("127.0.0.1:8082"), "container": container.name, "drain_timeout": 1},
    )
    assert rc == 0 and result["drained"] is False, result
    assert 1 <= result["timings"]["drain"] < 2, result["timings"]
    assert not answers, answers
    release()
    thread.join(30)
    assert answers and answers[0][0] == "slow", answers
    assert answer() == "green"
