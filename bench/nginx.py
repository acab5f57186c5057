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

With --variants, more sides run in the same rounds: the full configuration with one thing changed each
(VARIANTS below: the access log unbuffered or off, no request id, no security headers ...), to find what
costs; their rows are printed, not written.

Writes its table between markers in docs/benchmarks.md. Needs the bed (`make bed`); touches only the stack
`nginxbench` and the containers it labels with it.

    .venv/bin/python bench/nginx.py [--rounds 5] [--seconds 10] [--variants log-off,no-request-id ...]
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


def _sub(pattern: str, replacement: str):
    """A change of the rendered configuration: ``pattern`` (a regular expression, multiline) replaced."""

    def change(conf: str) -> str:
        changed, count = re.subn(pattern, replacement, conf, flags=re.MULTILINE)
        if count == 0:
            raise SystemExit(f"the variant's pattern {pattern!r} is not in the rendered configuration")
        return changed

    return change


def _chain(*changes):
    def change(conf: str) -> str:
        for one in changes:
            conf = one(conf)
        return conf

    return change


# The full configuration with one thing changed, to see what that thing costs.
VARIANTS = {
    # The access log: written a line at a time (nginx's default, the bare side's), through a 64k buffer flushed
    # every second (a configuration without buffer), not at all, or in nginx's combined format.
    "log-unbuffered": _sub(r"access_log (\S+) (\w+) buffer=\S+ flush=\S+;", r"access_log \1 \2;"),
    "log-buffered": _sub(r"access_log (\S+) (\w+);", r"access_log \1 \2 buffer=64k flush=1s;"),
    "log-off": _sub(r"access_log (\S+) (\w+)( buffer=\S+ flush=\S+)?;", "access_log off;"),
    "log-combined": _sub(r"access_log (\S+) pydeploy_json", r"access_log \1 combined"),
    # No X-Request-ID: neither made, nor sent to the app, nor returned.
    "no-request-id": _sub(r"^\s*(add_header|proxy_set_header) X-Request-ID .*\n", ""),
    # No security headers (their maps stay, unused).
    "no-security-headers": _sub(r"^\s*add_header (Strict|X-Frame|X-Content|Referrer|Permissions).*\n", ""),
    # Only Host and Connection sent to the app (as the bare side).
    "few-proxy-headers": _sub(r"^\s*proxy_set_header (X-Real-IP|X-Forwarded-For|X-Forwarded-Proto|Upgrade) .*\n", ""),
    "no-gzip": _sub(r"^gzip on;", "gzip off;"),
    "no-real-ip": _sub(r"^(set_real_ip_from|real_ip_header|real_ip_recursive) .*\n", ""),
    "no-http2": _sub(r"^(\s*listen .*443 ssl) http2", r"\1"),
    "no-proxy-next-upstream": _sub(r"^\s*proxy_next_upstream .*\n", ""),
}
VARIANTS["lean"] = _chain(VARIANTS["no-request-id"], VARIANTS["no-security-headers"], VARIANTS["few-proxy-headers"])


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
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0, "requests": total}


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
        "requests": len(latencies) + failures,
    }


def cpu_ns(container) -> int:
    """CPU time the container's processes used so far (its cgroup's, v1 or v2), in ns."""
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{container.id}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text())
    for v2 in (Path(f"/sys/fs/cgroup/system.slice/docker-{container.id}.scope/cpu.stat"),
               Path(f"/sys/fs/cgroup/docker/{container.id}/cpu.stat")):  # fmt: skip
        if v2.exists():
            return 1000 * int(re.search(r"usage_usec (\d+)", v2.read_text()).group(1))
    return container.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"]


def load(port: int, seconds: int, container=None) -> dict:
    """One round against ``port``; with ``container``, also the CPU time its nginx spent per request (us):
    a figure other processes' load moves far less than requests/s, which a busy machine's share decides."""
    before = cpu_ns(container) if container is not None else 0
    result = wrk(port, seconds) if shutil.which("wrk") else asyncio.run(_asyncio_load(port, seconds))
    if container is not None:
        result["cpu_us"] = (cpu_ns(container) - before) / 1000 / max(result["requests"], 1)
    return result


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


def variant_table(rounds: dict, sides: list[str]) -> str:
    """Each side against the bare one and the full one: medians of the rounds."""

    def median(side, key):
        return statistics.median(item[key] for item in rounds[side])

    lines = [
        "| side | requests/s | p99 ms | nginx CPU us/request | / bare: req/s, p99, CPU | CPU / full's |",
        "|---|---|---|---|---|---|",
    ]
    for side in sides:
        lines.append(
            f"| {side} | {median(side, 'rps'):.0f} | {median(side, 'p99_ms'):.2f} | {median(side, 'cpu_us'):.1f} | "
            f"{median(side, 'rps') / median('bare', 'rps'):.2f}, "
            f"{median(side, 'p99_ms') / median('bare', 'p99_ms'):.2f}, "
            f"{median(side, 'cpu_us') / median('bare', 'cpu_us'):.2f} | "
            f"{median(side, 'cpu_us') / median('full', 'cpu_us'):.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--variants", default="", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--no-handshakes", action="store_true", help="leave out the TLS handshakes")
    parser.add_argument("--keep-config", help="copy the rendered configuration (and the variants') here")
    args = parser.parse_args()
    variants = [name for name in args.variants.split(",") if name]
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}: {', '.join(VARIANTS)}")
    ports = {"full": FULL_PORT, "bare": BARE_PORT} | {name: BARE_PORT + 1 + i for i, name in enumerate(variants)}

    client = docker.from_env()
    watch = MachineWatch()
    watch.start()
    teardown_stack(client, STACK)
    work = Path(tempfile.mkdtemp(prefix="nginxbench-"))
    try:
        log(f"deploying the stack {STACK} (tests/integration/inventories/sites)")
        deploy()
        rendered = (CONFIG / "conf.d" / "default.conf").read_text()
        sides = {
            "backend": {"default.conf": BACKEND_CONF},
            "full": {"default.conf": rendered, "upstream.conf": UPSTREAM},
            "bare": {"default.conf": BARE_CONF, "upstream.conf": UPSTREAM},
        } | {name: {"default.conf": VARIANTS[name](rendered), "upstream.conf": UPSTREAM} for name in variants}
        for name, files in sides.items():
            (work / name).mkdir()
            for file, text in files.items():
                (work / name / file).write_text(text)
        if args.keep_config:
            shutil.copytree(work, args.keep_config, dirs_exist_ok=True)
        start(client, "backend", work / "backend")
        containers = {name: start(client, name, work / name, port) for name, port in ports.items()}
        for port in ports.values():
            wait_answering(port)
        tool = "wrk 2 threads" if shutil.which("wrk") else "an asyncio client"
        log(f"warm-up, then {args.rounds} rounds of {args.seconds} s each side ({tool}, {CONNECTIONS} connections)")
        for port in ports.values():
            load(port, 2)
        rounds = {name: [] for name in ports}
        for number in range(args.rounds):
            for side, port in ports.items():
                result = load(port, args.seconds, containers[side])
                rounds[side].append(result)
                log(
                    f"round {number + 1} {side}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.2f} ms, "
                    f"nginx CPU {result['cpu_us']:.1f} us/request"
                )
        shakes = {"new": [], "reuse": []}
        for number in range(0 if args.no_handshakes else args.rounds):
            for kind in ("new", "reuse"):
                shakes[kind].append(handshakes(FULL_PORT, max(args.seconds // 2, 3), kind == "reuse"))
                log(f"round {number + 1} handshakes {kind}: {shakes[kind][-1]:.0f}/s")
    finally:
        watch.stopping.set()
        teardown_stack(client, STACK)
        shutil.rmtree(work, ignore_errors=True)

    def median(side, key):
        return statistics.median(item[key] for item in rounds[side])

    # Each round's full against the bare one right after it: the spread says how much the machine's noise moved.
    paired = sorted(full["rps"] / bare["rps"] for full, bare in zip(rounds["full"], rounds["bare"], strict=True))
    paired_cpu = sorted(
        bare["cpu_us"] / full["cpu_us"] for full, bare in zip(rounds["full"], rounds["bare"], strict=True)
    )
    non_2xx = {side: sum(item["non_2xx"] for item in rounds[side]) for side in rounds}
    lines = [
        BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} on a 2-core machine ({watch.note()}); load: {tool}, "
        f"{CONNECTIONS} kept-alive HTTPS connections, {args.rounds} rounds of {args.seconds} s each side, "
        "alternating; medians of the rounds. nginx CPU: the CPU time of the side's container (its cgroup) over the "
        "round, per request served.",
        "",
        variant_table(rounds, ["full", "bare", *variants]),
        "",
        f"Round by round, full / bare requests/s: {' '.join(f'{value:.2f}' for value in paired)}; "
        f"bare / full nginx CPU per request: {' '.join(f'{value:.2f}' for value in paired_cpu)}; "
        f"non-2xx answers: {', '.join(f'{side} {count}' for side, count in non_2xx.items())}.",
    ]
    if not args.no_handshakes:
        new, reuse = statistics.median(shakes["new"]), statistics.median(shakes["reuse"])
        lines += [
            "",
            "| TLS 1.2 handshakes on the full configuration (`openssl s_time -tls1_2`, one client) | per second |",
            "|---|---|",
            f"| full handshake each time (`-new`, resumption off) | {new:.0f} |",
            f"| session resumed from nginx's session cache (`-reuse`, resumption on) | {reuse:.0f} "
            f"({reuse / new:.1f} x) |",
        ]
    table = "\n".join([*lines, END])
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
