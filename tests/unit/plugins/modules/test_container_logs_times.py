"""The times container_logs hands the Docker SDK: the engine reads the float's shortest form as seconds and
nanoseconds, so that form must hold the microseconds meant, rounded the way asked."""

from __future__ import annotations

import random

import pytest
from ansible_collections.pydeploy.stack.plugins.modules.container_logs import engine_seconds


def as_engine_reads_it(seconds: float) -> int:
    """Nanoseconds, as the engine parses the decimal the SDK sends (str of the float)."""
    whole, _, fraction = repr(seconds).partition(".")
    return int(whole) * 10**9 + int((fraction + "0" * 9)[:9])


def test_an_end_a_hair_after_a_line_is_not_sent_as_a_hair_before_it():
    # A line stamped .778524995: the end rounded up to .778525, where a float sum gave "…7785249".
    line = 1765107149_778524995
    assert repr(engine_seconds(line, up=True)) == "1765107149.778525"
    assert as_engine_reads_it(engine_seconds(line, up=True)) >= line


@pytest.mark.parametrize("seed", range(3))
def test_rounding_down_is_never_later_and_up_never_earlier(seed):
    rng = random.Random(seed)
    for _ in range(20000):
        ns = rng.randrange(1_700_000_000 * 10**9, 1_900_000_000 * 10**9)
        down, up = as_engine_reads_it(engine_seconds(ns)), as_engine_reads_it(engine_seconds(ns, up=True))
        assert ns - 1000 < down <= ns <= up < ns + 1000


def test_a_whole_microsecond_stays_itself_and_zero_is_not_sent():
    assert as_engine_reads_it(engine_seconds(1_765_107_149_778_525_000, up=True)) == 1_765_107_149_778_525_000
    assert engine_seconds(0) == 0.000001
