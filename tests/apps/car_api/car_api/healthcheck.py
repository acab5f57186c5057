"""Docker HEALTHCHECK: ``python -m car_api.healthcheck`` (the image has no curl)."""

from __future__ import annotations

import json
import sys
import urllib.request

URL = "http://127.0.0.1:8000/health_check"


def main() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=3) as response:
            body = json.load(response)
    except (OSError, ValueError) as exc:  # a 503 is an HTTPError, an OSError
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if body.get("status") != "ok":
        print(f"unhealthy: {body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
