"""Times of log lines: the engine's RFC 3339 timestamps, what users give as since/until, the job runner's lines."""

from __future__ import annotations

import pytest
from ansible_collections.pydeploy.stack.plugins.module_utils._logs import (
    NS,
    LineSplitter,
    format_time,
    parse_duration,
    parse_moment,
    parse_time,
    split_engine_line,
    split_job_line,
)

NOW = parse_time("2025-11-05T14:30:22Z")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01.5Z", 1_500_000_000),
        ("1970-01-01T00:00:00.000000001Z", 1),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1970-01-01T00:00:00-0130", 5400 * NS),
        ("2026-12-07T07:28:46.572295802Z", 1796628526 * NS + 572295802),
    ],
)
def test_engine_times_keep_every_nanosecond(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["", "2025-11-05", "2025-13-05T00:00:00Z", "yesterday", "2025-11-05T14:30:22"])
def test_a_time_without_zone_or_malformed_is_refused(text):
    with pytest.raises(ValueError, match="time"):
        parse_time(text)


def test_times_are_written_with_nine_digits_so_that_they_sort_as_text():
    assert format_time(1796628526 * NS + 5) == "2026-12-07T07:28:46.000000005Z"
    assert parse_time(format_time(123456789012345678)) == 123456789012345678
    early, late = format_time(NS + 9 * 10**8), format_time(2 * NS)
    assert early < late


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("10m", 600), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), ("500ms", 0.5), ("1.5h", 5400)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "10 minutes", "m10", "1h 30m", "-5m", "10x"])
def test_anything_else_is_not_a_duration(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_since_is_a_duration_back_from_now_a_time_or_epoch_seconds():
    assert parse_moment("10m", NOW) == NOW - 600 * NS
    assert parse_moment("2025-11-05T14:00:00Z", NOW) == NOW - 1822 * NS
    assert parse_moment("1762353022", NOW) == 1762353022 * NS
    assert parse_moment("1762353022.25", NOW) == 1762353022 * NS + 250_000_000
    with pytest.raises(ValueError, match="neither a duration back from now"):
        parse_moment("last tuesday", NOW)


def test_engine_lines_split_into_their_time_and_text():
    assert split_engine_line("2026-12-07T07:28:46.5Z hello world") == (1796628526 * NS + 500_000_000, "hello world")
    assert split_engine_line("2026-12-07T07:28:46.5Z ") == (1796628526 * NS + 500_000_000, "")
    assert split_engine_line("no time here") == (None, "no time here")


def test_job_runner_lines_keep_their_stream():
    line = "2026-12-07T07:14:55Z stdout| fetch_prices: inserted 70 rows"
    assert split_job_line(line) == (1796627695 * NS, "stdout| fetch_prices: inserted 70 rows")
    assert split_job_line("a line the runner did not write") == (None, "a line the runner did not write")


def test_the_splitter_returns_whole_lines_only_and_the_rest_at_the_end():
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed(b"o\r\nthr\xc3") == ["two"]
    assert splitter.feed(b"\xa9e\n") == ["thr\u00e9e"]
    assert splitter.feed(b"bad \xff") == []
    assert splitter.flush() == ["bad \ufffd"]
    assert splitter.flush() == []
