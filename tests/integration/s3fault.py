"""A fault-injecting HTTP proxy for S3 on 127.0.0.1, for tests.

Requests are forwarded to the real server byte for byte (the Host header is kept,
so SigV4 signatures stay valid) except those the fault applies to:

- ``error``: answer 500 with an S3 ``InternalError`` body;
- ``cut``: read half the request body, then reset the connection;
- ``stall``: read the request and never answer (until :meth:`FaultProxy.stop`).

By default only UploadPart requests (``PUT ...?partNumber=``) fault, so that a
client can still abort its upload through the proxy; ``after`` lets that many
matching requests through first.  Every connection is closed after one answer.
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import struct
import threading
from urllib.parse import urlsplit

ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>injected fault</Message></Error>"
)
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def is_upload_part(method: str, target: str) -> bool:
    return method == "PUT" and "partNumber=" in target and "uploadId=" in target


class FaultProxy:
    def __init__(self, upstream: str, mode: str = "pass", match=is_upload_part, after: int = 0):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port or 80)
        self.mode = mode
        self.match = match
        self.after = after
        self.matched = 0
        self.faults = 0
        self.requests: list[tuple[str, str]] = []
        self.stalled = threading.Event()  # set once a request is being stalled
        self.released = threading.Event()
        self.lock = threading.Lock()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                proxy.handle(self.connection, self.rfile)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    # ----------------------------------------------------------------- one request

    def faulty(self, method: str, target: str) -> bool:
        with self.lock:
            self.requests.append((method, target))
            if self.mode == "pass" or not self.match(method, target):
                return False
            self.matched += 1
            if self.matched <= self.after:
                return False
            self.faults += 1
            return True

    def handle(self, conn, rfile):
        line = rfile.readline(65537).decode("latin-1").rstrip("\r\n")
        if not line:
            return
        method, target, _version = line.split(" ", 2)
        headers = []
        while True:
            raw = rfile.readline(65537).decode("latin-1").rstrip("\r\n")
            if not raw:
                break
            name, _, value = raw.partition(":")
            headers.append((name.strip(), value.strip()))
        lowered = {name.lower(): value for name, value in headers}
        length = int(lowered.get("content-length", "0") or 0)
        fault = self.faulty(method, target)

        if fault and self.mode == "cut":
            rfile.read(length // 2)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
            conn.close()
            return
        body = self.read_body(rfile, lowered, length)
        if fault and self.mode == "error":
            self.answer(conn, 500, "Internal Server Error", [("Content-Type", "application/xml")], ERROR_BODY)
            return
        if fault and self.mode == "stall":
            self.stalled.set()
            self.released.wait(600)
            return

        upstream = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            upstream.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in HOP_HEADERS:
                    upstream.putheader(name, value)
            upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            response = upstream.getresponse()
            data = response.read()
            head = method == "HEAD"  # its Content-Length is the object's, and it has no body
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in HOP_HEADERS or (head and k.lower() == "content-length")
            ]
            self.answer(conn, response.status, response.reason, kept, data, head=head)
        finally:
            upstream.close()

    @staticmethod
    def read_body(rfile, headers: dict, length: int) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(rfile.read(size))
                rfile.readline()
        return rfile.read(length) if length else b""

    @staticmethod
    def answer(conn, status: int, reason: str, headers, body: bytes, head: bool = False) -> None:
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if not head:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            conn.sendall(data + (b"" if head else body))
        except OSError:
            pass
