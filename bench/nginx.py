#!/usr/bin/env python3
"""What the proxy's configuration costs: requests/s and p99 through the configuration the nginx role renders
(the two sites of tests/integration/inventories/sites, deployed as the stack `nginxbench`) against the same
nginx image with a bare `proxy_pass`, both in front of the same backend, in one run, rounds alternating
full, bare, full, bare ... so that the machine's noise falls on both alike; then TLS handshakes/s on the
full configuration with session resumption off (a full handshake each time) and on (the session cache),
TLS 1.2 (session ids; the configuration has no session tickets).

    full   the role's default.conf, as deployed (TLS profile, HSTS and security headers by map, X-Request-ID,
           rate limit zones, JSON access log, gzip), its upstream pointed at the backend below
    bare   `listen 443 ssl http2`, the same certificate, `location / { proxy_pass http://backend; }` with the
           same upstream block (kept-alive connections, HTTP/1.1), nginx's default access log
    backend  nginx answering a fixed 200 JSON document of ~250 bytes (its own cost is the same for both)

The load is `wrk` (Debian's package) when installed: --threads 2 --connections 32 for --seconds per round,
GET / of api.sites.test (proxied to the web upstream, not rate limited); otherwise a client of asyncio on 32
kept-alive connections. Handshakes are `openssl s_time -tls1_2 -new` (resumption off) and `-reuse` (on).

Writes its table between markers in docs/benchmarks.md. Needs the bed (`make bed`); touches only the stack
`nginxbench` and the containers it labels with it.

    .venv/bin/python bench/nginx.py [--rounds 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))
import docker  # noqa: E402
from _common import MachineWatch, write_section  # noqa: E402
from conftest import teardown_stack  # noqa: E402
from playbook import run_playbook  # noqa: E402

STACK = "nginxbench"
HTTP_PORT, HTTPS_PORT = 10690, 11053
FULL_PORT, BARE_PORT = 11054, 11055
IMAGE = "127.0.0.1:5000/library/nginx:1.22"
CONFIG = Path(f"/etc/pydeploy/{STACK}/nginx")
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:nginx:begin -->", "<!-- bench:nginx:end -->"
HOST = "api.sites.test"
CONNECTIONS = 32

BACKEND_CONF = """server {
    listen 80;
    access_log off;
    default_type application/json;
    location / { return 200 '{"status":"ok","process":"backend","filler":"%s"}'; }
}
""" % ("x" * 180)

UPSTREAM = """upstream nginxbench_web {
    server nginxbench-backend:80 max_fails=3 fail_timeout=10s;
    keepalive 32;
}
"""

BARE_CONF = """server {
    listen 443 ssl http2;
    ssl_certificate     /etc/nginx/certs/fullchain.pem;
    ssl_certificate_key /etc/nginx/certs/privkey.pem;
    location / {
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://nginxbench_web;
    }
}
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def deploy() -> None:
    extra = {"stack_name": STACK, "nginx_http_port": HTTP_PORT, "nginx_https_port": HTTPS_PORT}
    run = run_playbook(inventory="tests/integration/inventories/sites", extra_vars=extra)
    if run.rc != 0:
        raise SystemExit(run.explain())


def start(client, name: str, conf_dir: Path, port: int | None = None):
    mounts = [
        docker.types.Mount("/etc/nginx/conf.d", str(conf_dir), type="bind", read_only=True),
        docker.types.Mount("/etc/nginx/certs", str(CONFIG / "certs"), type="bind", read_only=True),
    ]
    container = client.containers.run(
        IMAGE,
        name=f"{STACK}-{name}",
        detach=True,
        network=STACK,
        mounts=mounts,
        labels={"pydeploy.stack": STACK, "pydeploy.bench": name},
        ports={"443/tcp": ("127.0.0.1", port)} if port else None,
        log_config=docker.types.LogConfig(type="json-file", config={"max-size": "10m", "max-file": "2"}),
    )
    return container


def wait_answering(port: int) -> None:
    context = ssl._create_unverified_context()  # noqa: S323 - the bench's own self-signed proxies
    for _ in range(100):
        try:
            with context.wrap_socket(__import__("socket").create_connection(("127.0.0.1", port), timeout=2)):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on 127.0.0.1:{port}")


def wrk(port: int, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", "--threads", "2", "--connections", str(CONNECTIONS), "--duration", f"{seconds}s", "--latency",
         "-H", f"Host: {HOST}", f"https://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([0-9.]+)(us|ms|s)", out).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0}


async def _asyncio_load(port: int, seconds: int) -> dict:
    context = ssl._create_unverified_context()  # noqa: S323 - the bench's own self-signed proxies
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    latencies, failures = [], 0
    deadline = time.perf_counter() + seconds

    async def client():
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=HOST)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            await reader.readexactly(length)
            if b" 200 " in head.split(b"\r\n", 1)[0]:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1
        writer.close()

    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "non_2xx": failures,
    }


def load(port: int, seconds: int) -> dict:
    if shutil.which("wrk"):
        return wrk(port, seconds)
    return asyncio.run(_asyncio_load(port, seconds))


def handshakes(port: int, seconds: int, reuse: bool) -> float:
    """Connections per second of one client, each a full TLS 1.2 handshake or one resuming the first session
    (TLS 1.2 session ids, from nginx's shared session cache: the configuration has no session tickets)."""
    out = subprocess.run(
        ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-reuse" if reuse else "-new",
         "-time", str(seconds)],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    count, real = re.search(r"(\d+) connections in (\d+) real seconds", out).groups()
    return int(count) / max(int(real), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()

    client = docker.from_env()
    watch = MachineWatch()
    watch.start()
    teardown_stack(client, STACK)
    work = Path(tempfile.mkdtemp(prefix="nginxbench-"))
    try:
        log(f"deploying the stack {STACK} (tests/integration/inventories/sites)")
        deploy()
        for name, files in {
            "backend": {"default.conf": BACKEND_CONF},
            "full": {"default.conf": (CONFIG / "conf.d" / "default.conf").read_text(), "upstream.conf": UPSTREAM},
            "bare": {"default.conf": BARE_CONF, "upstream.conf": UPSTREAM},
        }.items():
            (work / name).mkdir()
            for file, text in files.items():
                (work / name / file).write_text(text)
        start(client, "backend", work / "backend")
        start(client, "full", work / "full", FULL_PORT)
        start(client, "bare", work / "bare", BARE_PORT)
        for port in (FULL_PORT, BARE_PORT):
            wait_answering(port)
        tool = "wrk 2 threads" if shutil.which("wrk") else "an asyncio client"
        log(f"warm-up, then {args.rounds} rounds of {args.seconds} s each side ({tool}, {CONNECTIONS} connections)")
        load(FULL_PORT, 2), load(BARE_PORT, 2)
        rounds = {"full": [], "bare": []}
        for number in range(args.rounds):
            for side, port in (("full", FULL_PORT), ("bare", BARE_PORT)):
                result = load(port, args.seconds)
                rounds[side].append(result)
                log(f"round {number + 1} {side}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.2f} ms")
        shakes = {"new": [], "reuse": []}
        for number in range(args.rounds):
            for kind in ("new", "reuse"):
                shakes[kind].append(handshakes(FULL_PORT, max(args.seconds // 2, 3), kind == "reuse"))
                log(f"round {number + 1} handshakes {kind}: {shakes[kind][-1]:.0f}/s")
    finally:
        watch.stopping.set()
        teardown_stack(client, STACK)
        shutil.rmtree(work, ignore_errors=True)

    def median(side, key):
        return statistics.median(item[key] for item in rounds[side])

    ratio_rps = median("full", "rps") / median("bare", "rps")
    ratio_p99 = median("full", "p99_ms") / median("bare", "p99_ms")
    # Each round's full against the bare one right after it: the spread says how much the machine's noise moved.
    paired = sorted(full["rps"] / bare["rps"] for full, bare in zip(rounds["full"], rounds["bare"], strict=True))
    new, reuse = statistics.median(shakes["new"]), statistics.median(shakes["reuse"])
    table = "\n".join(
        [
            BEGIN,
            f"Measured {time.strftime('%Y-%m-%d')} on a 2-core machine ({watch.note()}); load: {tool}, "
            f"{CONNECTIONS} kept-alive HTTPS connections, {args.rounds} rounds of {args.seconds} s each side, "
            "alternating; medians of the rounds.",
            "",
            "| configuration | requests/s | p99 ms | non-2xx | / bare (medians) | full / bare, round by round |",
            "|---|---|---|---|---|---|",
            f"| full (the role's, two sites) | {median('full', 'rps'):.0f} | {median('full', 'p99_ms'):.2f} | "
            f"{sum(item['non_2xx'] for item in rounds['full'])} | {ratio_rps:.2f} req/s, {ratio_p99:.2f} p99 | "
            f"{' '.join(f'{value:.2f}' for value in paired)} |",
            f"| bare proxy_pass | {median('bare', 'rps'):.0f} | {median('bare', 'p99_ms'):.2f} | "
            f"{sum(item['non_2xx'] for item in rounds['bare'])} | 1.0 | |",
            "",
            "| TLS 1.2 handshakes on the full configuration (`openssl s_time -tls1_2`, one client) | per second |",
            "|---|---|",
            f"| full handshake each time (`-new`, resumption off) | {new:.0f} |",
            f"| session resumed from nginx's session cache (`-reuse`, resumption on) | {reuse:.0f} "
            f"({reuse / new:.1f} x) |",
            END,
        ]
    )
    print(table)
    if not args.no_write:
        write_section(
            DOC,
            table,
            BEGIN,
            END,
            "## The proxy's configuration against a bare proxy_pass (bench/nginx.py)",
            "`.venv/bin/python bench/nginx.py` deploys `tests/integration/inventories/sites` as the stack "
            "`nginxbench`, then runs the configuration the role rendered and a bare `proxy_pass` side by side "
            "(same nginx image, same certificate, same upstream block, one nginx backend answering a fixed JSON "
            "document), alternating rounds.",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
