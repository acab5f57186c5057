# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep secrets out of what modules return: commands, messages, URLs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "********"
# Values shorter than this are not masked inside free text: masking "1" or
# "on" everywhere would garble output without protecting anything.
MIN_SECRET_LENGTH = 4


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by the mask.

    >>> redact_url("postgresql://app:s3cret@db:5432/app")
    'postgresql://app:********@db:5432/app'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:{MASK}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_URL_WITH_PASSWORD = re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)(@)", re.IGNORECASE)


def mask(text: str, secrets=()) -> str:
    """Replace every known secret value, and any password inside a URL, by the mask."""
    if not text:
        return text
    # A secret may reach us as a number (a PIN in YAML): it is masked as its text.
    for secret in sorted({str(s) for s in secrets if s and len(str(s)) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL_WITH_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)


def mask_argv(argv, secrets=()) -> list:
    """Mask secrets inside each element of a command line."""
    return [mask(str(arg), secrets) for arg in argv]
