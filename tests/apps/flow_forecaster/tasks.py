"""The Celery tasks.  Each finished run is also recorded in the ``forecasts`` table."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import database
import forecast
from celery_app import celery_app

log = logging.getLogger("flow_forecaster.tasks")

SLEEP_STEP = 0.25
MAX_SLEEP = 300


@celery_app.task(bind=True, name="flow_forecaster.simulate")
def simulate(self, params: dict) -> dict:
    """The Monte Carlo forecast of ``params`` (already validated by the web process)."""
    started_at = datetime.now(UTC)
    params = forecast.validate(params)
    result = forecast.simulate(params)
    database.record(self.request.id, "forecast", params, result, self.request.hostname, started_at)
    log.info(
        "forecast %s: %d runs, %d periods at %.0f%% confidence",
        self.request.id,
        result["nSimulations"],
        result["periodsAtConfidence"],
        params["confidence"] * 100,
    )
    return result


@celery_app.task(bind=True, name="flow_forecaster.sleep")
def sleep(self, seconds: float) -> dict:
    """Sleep ``seconds`` in small steps, then record the run: for graceful-shutdown checks."""
    started_at = datetime.now(UTC)
    log.info("sleep %s: %s s started on %s", self.request.id, seconds, self.request.hostname)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(SLEEP_STEP, left))
    result = {"slept": seconds, "worker": self.request.hostname}
    database.record(self.request.id, "sleep", {"seconds": seconds}, result, self.request.hostname, started_at)
    log.info("sleep %s: done after %s s", self.request.id, seconds)
    return result


@celery_app.task(bind=True, name="flow_forecaster.tick")
def tick(self) -> dict:
    """Sent by beat every BEAT_TICK_SECONDS: one row per tick."""
    now = datetime.now(UTC)
    result = {"at": now.isoformat()}
    database.record(self.request.id, "tick", {}, result, self.request.hostname, now)
    return result
