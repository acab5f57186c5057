"""A webhook receiver on 127.0.0.1 for the notification tests: a thread of http.server that records every
request (path, headers, body) and answers each with ``status`` (200, or 500 for a failing webhook), after
``delay`` seconds (longer than the sender's timeout for one that does not answer)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, status: int = 200, delay: float = 0.0):
        self.status, self.delay = status, delay
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": data})
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender gave up waiting
                    pass

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, token: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{token}"

    def bodies(self) -> list:
        """Each request's body, parsed as JSON."""
        with self._lock:
            return [json.loads(request["body"]) for request in self.requests]

    def wait(self, count: int, timeout: float = 30.0) -> list:
        """The bodies once at least ``count`` requests came (fewer after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.bodies()
