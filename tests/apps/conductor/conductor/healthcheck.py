"""Docker HEALTHCHECK of the web process: ``python -m conductor.healthcheck`` (the image has no curl).

Asks /api/v1/health/simple, the API alone: a MongoDB or Redis outage must not
get the web containers restarted (/api/v1/health reports those)."""

from __future__ import annotations

import json
import os
import sys
import urllib.request

URL = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/api/v1/health/simple"


def main() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=3) as response:
            body = json.load(response)
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if body.get("status") != "ok":
        print(f"unhealthy: {body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
