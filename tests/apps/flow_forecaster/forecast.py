"""A Monte Carlo delivery forecast: how many periods until ``targetOutcome`` items are done.

``pBest`` / ``pLikely`` / ``pWorst`` are a three-point estimate of the number
of periods the whole target takes at full speed.  Each simulated run draws a
full-speed rate from that estimate (triangular distribution), then walks
period by period with a random throughput around that rate; the first and the
last ``sCurveSize`` periods of a project run at half speed (the S-curve: ramp
up, ramp down).  Pure Python, seeded: the same parameters give the same
forecast on every worker.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter

LIMITS = {"targetOutcome": 100_000, "pWorst": 10_000, "sCurveSize": 1_000, "nSimulations": 100_000}
MAX_WORK = 5_000_000  # nSimulations x pWorst: keeps one task within seconds
DEFAULTS = {"sCurveSize": 0, "nSimulations": 1000, "confidence": 0.85}


def _number(payload: dict, name: str, integer: bool) -> float | int:
    if name not in payload:
        if name in DEFAULTS:
            return DEFAULTS[name]
        raise ValueError(f"{name} is required")
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if integer and value != int(value):
        raise ValueError(f"{name} must be a whole number")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite")
    return int(value) if integer else float(value)


def validate(payload: object) -> dict:
    """The forecast parameters from a request body; ValueError names the first bad one."""
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object")
    params = {
        "targetOutcome": _number(payload, "targetOutcome", integer=True),
        "pBest": _number(payload, "pBest", integer=False),
        "pLikely": _number(payload, "pLikely", integer=False),
        "pWorst": _number(payload, "pWorst", integer=False),
        "sCurveSize": _number(payload, "sCurveSize", integer=True),
        "nSimulations": _number(payload, "nSimulations", integer=True),
        "confidence": _number(payload, "confidence", integer=False),
    }
    if not 1 <= params["targetOutcome"] <= LIMITS["targetOutcome"]:
        raise ValueError(f"targetOutcome must be between 1 and {LIMITS['targetOutcome']}")
    if not 0 < params["pBest"] <= params["pLikely"] <= params["pWorst"] <= LIMITS["pWorst"]:
        raise ValueError(f"the estimate must satisfy 0 < pBest <= pLikely <= pWorst <= {LIMITS['pWorst']}")
    if not 0 <= params["sCurveSize"] <= LIMITS["sCurveSize"]:
        raise ValueError(f"sCurveSize must be between 0 and {LIMITS['sCurveSize']}")
    if not 1 <= params["nSimulations"] <= LIMITS["nSimulations"]:
        raise ValueError(f"nSimulations must be between 1 and {LIMITS['nSimulations']}")
    if params["nSimulations"] * params["pWorst"] > MAX_WORK:
        raise ValueError(f"nSimulations x pWorst must not exceed {MAX_WORK}")
    if not 0 < params["confidence"] < 1:
        raise ValueError("confidence must be between 0 and 1 (exclusive)")
    return params


def seed_of(params: dict) -> int:
    """48 bits: exact in any JSON client."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:6], "big")


def percentile(ordered: list[int], fraction: float) -> int:
    """Nearest rank: the smallest value with at least ``fraction`` of the runs at or below it."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def one_run(rng: random.Random, params: dict) -> int:
    target, ramp = params["targetOutcome"], params["sCurveSize"]
    rate = target / rng.triangular(params["pBest"], params["pWorst"], params["pLikely"])
    done, periods = 0.0, 0
    while done < target:
        periods += 1
        ramping = periods <= ramp or (target - done) <= rate * ramp / 2
        done += rate * rng.uniform(0.5, 1.5) * (0.5 if ramping else 1.0)
    return periods


def simulate(params: dict) -> dict:
    seed = seed_of(params)
    rng = random.Random(seed)
    runs = sorted(one_run(rng, params) for _ in range(params["nSimulations"]))
    return {
        "targetOutcome": params["targetOutcome"],
        "nSimulations": len(runs),
        "confidence": params["confidence"],
        "seed": seed,
        "periodsAtConfidence": percentile(runs, params["confidence"]),
        "periods": {
            "min": runs[0],
            "p50": percentile(runs, 0.5),
            "p85": percentile(runs, 0.85),
            "p95": percentile(runs, 0.95),
            "max": runs[-1],
            "mean": round(sum(runs) / len(runs), 2),
        },
        "histogram": sorted(Counter(runs).items()),
    }
