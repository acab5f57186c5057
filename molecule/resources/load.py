"""Requests through the proxy, one every INTERVAL on a new connection each (clients come and go), until a stop file
appears; then a summary as JSON on stdout: how many were sent, which failed (time, status or error) and which
versions answered (X-App-Version).

    python load.py URL CA_FILE STOP_FILE
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import time
from urllib.parse import urlsplit

INTERVAL = 0.05
TIMEOUT = 30


def main() -> int:
    url, ca_file, stop_file = sys.argv[1:4]
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=ca_file)
    sent, failures, versions = 0, [], {}
    started = time.monotonic()
    while not os.path.exists(stop_file):
        began = time.monotonic()
        sent += 1
        try:
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=TIMEOUT, context=context)
            conn.request("GET", parts.path or "/")
            response = conn.getresponse()
            response.read()
            conn.close()
            version = response.getheader("X-App-Version", "")
            versions[version] = versions.get(version, 0) + 1
            if response.status != 200:
                failures.append({"at": round(began - started, 2), "status": response.status})
        except (OSError, http.client.HTTPException) as exc:
            failures.append({"at": round(began - started, 2), "error": repr(exc)})
        time.sleep(max(0.0, INTERVAL - (time.monotonic() - began)))
    print(json.dumps({"sent": sent, "failed": len(failures), "failures": failures[:20], "versions": versions}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
