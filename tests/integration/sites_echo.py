"""A small app of the stack ``sites`` (tests/integration/inventories/sites), standard library only: run by the
bed's python image as ``python -c "exec(<this file>)" <name>`` (the inventory reads it, base64 encoded).

Every answer is JSON naming the process (``backend``, ``frontend``) with the path and the request's headers as
the app received them, and carries an ``X-Frame-Options`` of the app's own. ``/health`` is the health check,
``/big`` a large JSON document (to be compressed), and a request with ``Upgrade: websocket`` becomes a
websocket that echoes each text or binary message back."""

import base64
import hashlib
import json
import socket
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1] if len(sys.argv) > 1 else "app"
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_frame(sock):
    first, second = read_exactly(sock, 2)
    opcode, length = first & 0x0F, second & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exactly(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exactly(sock, 8))[0]
    mask = read_exactly(sock, 4) if second & 0x80 else b"\0\0\0\0"
    payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(read_exactly(sock, length)))
    return opcode, payload


def send_frame(sock, opcode, payload):
    header = bytes([0x80 | opcode])
    if len(payload) < 126:
        header += bytes([len(payload)])
    elif len(payload) < 65536:
        header += bytes([126]) + struct.pack("!H", len(payload))
    else:
        header += bytes([127]) + struct.pack("!Q", len(payload))
    sock.sendall(header + payload)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without this, the second waits for the proxy's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        sys.stderr.write(f"{NAME} {self.address_string()} {format % args}\n")

    def answer(self, document, status=200):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.end_headers()
        self.wfile.write(body)

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        digest = hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()  # noqa: S324 - RFC 6455's accept key
        accept = base64.b64encode(digest).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        sock = self.connection
        sock.settimeout(None)
        self.close_connection = True
        try:
            while True:
                opcode, payload = read_frame(sock)
                if opcode == 0x8:
                    send_frame(sock, 0x8, payload[:2])
                    return
                if opcode == 0x9:
                    send_frame(sock, 0xA, payload)
                elif opcode in (0x1, 0x2):
                    send_frame(sock, opcode, payload)
        except (ConnectionError, OSError):
            return

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.websocket()
            return
        if self.path == "/health":
            self.answer({"status": "ok", "process": NAME})
            return
        document = {"process": NAME, "path": self.path, "headers": dict(self.headers.items())}
        if self.path.startswith("/big"):
            document["filler"] = ["text that compresses well"] * 400
        self.answer(document)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET


Server(("0.0.0.0", 8000), Handler).serve_forever()  # noqa: S104 - in its container
