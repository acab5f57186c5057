"""Requests through a deployed stack's nginx, verified against the role's certificate."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from pathlib import Path


def https_request(
    stack: str,
    port: int,
    path: str,
    *,
    method: str = "GET",
    body: dict | None = None,
    host: str = "localhost",
    headers: dict | None = None,
) -> tuple[int, dict, bytes]:
    """Connect on loopback, verify the certificate for ``host`` (the name users type)."""
    context = ssl.create_default_context(cafile=str(Path(f"/etc/pydeploy/{stack}/nginx/certs/fullchain.pem")))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host)
    headers = {"Host": host, **(headers or {})}
    payload = None
    if body is not None:
        payload = json.dumps(body)
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data
