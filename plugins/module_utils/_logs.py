# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Log lines as the Docker engine and the job runner write them: their times, and the times users give.

Times are kept as integer nanoseconds since the epoch (UTC), which the engine's RFC 3339 timestamps carry
exactly (a float would not), and shown as RFC 3339 with nine fractional digits, so that they sort as text too.
"""

from __future__ import annotations

import calendar
import re
import time

NS = 1_000_000_000

_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:?\d{2})$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A line of the job runner's log (roles/cron/files/pydeploy-job): "<UTC time> <stream>| <text>".
_JOB_LINE = re.compile(r"^(\S+) ([A-Za-z0-9_-]+)\| ?(.*)$")


def parse_time(text: str) -> int:
    """An RFC 3339 time (``2025-11-05T14:30:22Z``, ``2025-11-05T14:30:22.123456789+01:00``) in nanoseconds.

    >>> parse_time("1970-01-01T00:00:01.5Z")
    1500000000
    """
    match = _RFC3339.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2025-11-05T14:30:22Z")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise ValueError(f"{text!r} is not a valid time")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds * NS + int(fraction.ljust(9, "0") or 0)


def format_time(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 in UTC with nine fractional digits.

    >>> format_time(1500000000)
    '1970-01-01T00:00:01.500000000Z'
    """
    seconds, fraction = divmod(int(ns), NS)
    year, month, day, hour, minute, second = time.gmtime(seconds)[:6]
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{fraction:09d}Z"


def parse_duration(text: str) -> float:
    """``10m``, ``1h30m``, ``45s``, ``2d``, ``1w``, ``500ms`` in seconds; ValueError for anything else."""
    value = str(text).strip().lower()
    if not value or _DURATION_PART.sub("", value):
        raise ValueError(f"{text!r} is not a duration such as 45s, 10m, 1h30m or 2d")
    return sum(float(number) * _UNITS[unit] for number, unit in _DURATION_PART.findall(value))


def parse_moment(text, now_ns: int) -> int:
    """What a user means by ``since`` or ``until``, in nanoseconds: a duration back from ``now_ns`` (``10m``),
    an RFC 3339 time, or seconds since the epoch (``1762353022`` or ``1762353022.5``)."""
    value = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        whole, _dot, fraction = value.partition(".")
        return int(whole) * NS + int(fraction[:9].ljust(9, "0") or 0)
    if _RFC3339.match(value):
        return parse_time(value)
    try:
        return now_ns - int(parse_duration(value) * NS)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration back from now (45s, 10m, 1h30m, 2d), an RFC 3339 time"
            " (2025-11-05T14:30:22Z) nor seconds since the epoch"
        ) from None


def split_engine_line(line: str) -> tuple[int | None, str]:
    """A line of ``docker logs --timestamps`` as (nanoseconds, text); (None, line) without a timestamp."""
    stamp, _space, text = line.partition(" ")
    try:
        return parse_time(stamp), text
    except ValueError:
        return None, line


def split_job_line(line: str) -> tuple[int | None, str]:
    """A line of the job runner's log as (nanoseconds, ``<stream>| <text>``); (None, line) when it has no time."""
    match = _JOB_LINE.match(line)
    if not match:
        return None, line
    try:
        return parse_time(match.group(1)), f"{match.group(2)}| {match.group(3)}"
    except ValueError:
        return None, line


class LineSplitter:
    """Bytes in, complete lines out (decoded as UTF-8, bad bytes replaced); ``flush`` returns the rest."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        data = self.pending + chunk
        *lines, self.pending = data.split(b"\n")
        return [line.rstrip(b"\r").decode("utf-8", "replace") for line in lines]

    def flush(self) -> list[str]:
        rest, self.pending = self.pending, b""
        return [rest.rstrip(b"\r").decode("utf-8", "replace")] if rest else []
