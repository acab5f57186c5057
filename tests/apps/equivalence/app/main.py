"""The HTTP API: ``uvicorn app.main:app --host 0.0.0.0 --port 8000``."""

from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager
from typing import Annotated

import redis
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.results import Result
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app import conversion, jobs, keys, logs
from app.config import ConfigError, get_settings
from app.db import categories, get_engine, units

logs.configure()
log = logging.getLogger("app")

try:
    settings = get_settings(require_salt=True)
    SALT = settings.salt()
except ConfigError as exc:
    log.error("configuration error: %s", exc)
    raise SystemExit(2) from None

JOB_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
UNIT_CODE = r"^[a-z0-9_]{1,32}$"


@asynccontextmanager
async def lifespan(_app: FastAPI):
    log.info(
        "equivalence %s starting: database %s, redis %s, queue %s",
        settings.version,
        "configured" if settings.database_url is not None else "NOT configured",
        "configured" if settings.redis_url else "NOT configured",
        jobs.QUEUE,
    )
    yield
    if settings.database_url is not None:
        get_engine().dispose()


app = FastAPI(title="Equivalence", version=settings.version, lifespan=lifespan)


@app.exception_handler(SQLAlchemyError)
async def database_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
    log.error("database error: %s", getattr(exc, "orig", None) or exc)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


@app.exception_handler(redis.RedisError)
async def queue_error(_request: Request, exc: redis.RedisError) -> JSONResponse:
    log.error("redis error: %s", exc)
    return JSONResponse({"detail": "job queue unavailable"}, status_code=503)


# ---------------------------------------------------------------------------- probes


@app.get("/health")
def health() -> dict:
    """Liveness: the process answers.  Touches nothing else."""
    return {"status": "ok", "version": settings.version}


def check_database() -> str:
    if settings.database_url is None:
        return "not configured"
    try:
        with get_engine().connect() as conn:
            migrated = conn.execute(text("SELECT to_regclass('api_keys')")).scalar() is not None
    except OperationalError as exc:
        log.warning("readiness: database unavailable: %s", exc.orig or exc)
        return "unavailable"
    except SQLAlchemyError as exc:
        log.warning("readiness: database error: %s", getattr(exc, "orig", None) or exc)
        return "error"
    return "ok" if migrated else "not migrated"


def check_redis() -> str:
    queue = jobs.queue()
    if queue is None:
        return "not configured"
    try:
        queue.connection.ping()
    except redis.AuthenticationError as exc:
        log.warning("readiness: redis refused the credentials: %s", exc)
        return "authentication failed"
    except redis.RedisError as exc:
        log.warning("readiness: redis unavailable: %s", exc)
        return "unavailable"
    return "ok"


@app.get("/ready")
def ready() -> JSONResponse:
    """Readiness: Postgres answers and is migrated, Redis answers; 503 names what is not."""
    database, redis_state = check_database(), check_redis()
    ok = database == "ok" and redis_state == "ok"
    body = {"status": "ready" if ok else "not ready", "database": database, "redis": redis_state}
    return JSONResponse(body, status_code=200 if ok else 503)


# ---------------------------------------------------------------------------- authentication


def api_key(x_api_key: Annotated[str | None, Header(description="an API key")] = None) -> dict:
    """401 without a key, 403 for a key that is unknown, wrong or revoked."""
    if not x_api_key:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"})
    with get_engine().connect() as conn:
        found = keys.verify(conn, SALT, x_api_key)
    if found is None:
        log.warning("request refused: invalid or revoked API key")
        raise HTTPException(403, "invalid or revoked API key")
    return found


Caller = Annotated[dict, Depends(api_key)]


# ---------------------------------------------------------------------------- reference data


@app.get("/api/categories")
def list_categories(_caller: Caller) -> dict:
    query = (
        select(categories.c.code, categories.c.name, units.c.code.label("unit"))
        .join(units, units.c.category_id == categories.c.id, isouter=True)
        .order_by(categories.c.code, units.c.id)
    )
    found: dict[str, dict] = {}
    with get_engine().connect() as conn:
        for row in conn.execute(query).mappings():
            entry = found.setdefault(row["code"], {"code": row["code"], "name": row["name"], "units": []})
            if row["unit"] is not None:
                entry["units"].append(row["unit"])
    return {"count": len(found), "categories": list(found.values())}


@app.get("/api/units")
def list_units(_caller: Caller, category: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None) -> dict:
    query = (
        select(units.c.code, units.c.name, categories.c.code.label("category"))
        .join(categories, categories.c.id == units.c.category_id)
        .order_by(categories.c.code, units.c.id)
    )
    if category is not None:
        query = query.where(categories.c.code == category)
    with get_engine().connect() as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    return {"count": len(rows), "units": rows}


# ---------------------------------------------------------------------------- jobs


class ConversionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    value: str | int | float
    from_unit: str = Field(alias="from", pattern=UNIT_CODE)
    to_unit: str = Field(alias="to", pattern=UNIT_CODE)


class SleepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(gt=0, le=jobs.MAX_SLEEP)


def queue_or_503():
    queue = jobs.queue()
    if queue is None:
        raise HTTPException(503, "job queue not configured")
    return queue


@app.post("/api/conversions", status_code=202)
def create_conversion(body: ConversionIn, caller: Caller) -> dict:
    """Check the units here (422), convert in the worker: 202 with the job's id."""
    try:
        value = conversion.parse_value(body.value)
        with get_engine().connect() as conn:
            conversion.check_units(conn, body.from_unit, body.to_unit)
    except conversion.ConversionError as exc:
        raise HTTPException(422, str(exc)) from None
    job = queue_or_503().enqueue(
        jobs.convert,
        str(value),
        body.from_unit,
        body.to_unit,
        job_timeout=jobs.CONVERSION_TIMEOUT,
        result_ttl=jobs.RESULT_TTL,
        failure_ttl=jobs.FAILURE_TTL,
    )
    log.info("conversion %s queued by key %r: %s -> %s", job.id, caller["name"], body.from_unit, body.to_unit)
    return {"job_id": job.id, "status": "queued"}


@app.post("/api/sleep", status_code=202)
def create_sleep(body: SleepIn, caller: Caller) -> dict:
    """A job that only sleeps: to check that a worker finishes its job when stopped."""
    job = queue_or_503().enqueue(
        jobs.sleep,
        body.seconds,
        job_timeout=int(body.seconds) + 60,
        result_ttl=jobs.RESULT_TTL,
        failure_ttl=jobs.FAILURE_TTL,
    )
    log.info("sleep %s queued by key %r: %s s", job.id, caller["name"], body.seconds)
    return {"job_id": job.id, "status": "queued"}


@app.get("/api/jobs/{job_id}")
def job_status(job_id: str, _caller: Caller) -> dict:
    """queued, started, finished (with the result), failed (with the error's last line), ...; 404 if unknown."""
    if not JOB_ID.match(job_id):
        raise HTTPException(404, "no such job")
    queue = queue_or_503()
    try:
        job = Job.fetch(job_id, connection=queue.connection, serializer=jobs.SERIALIZER)
    except NoSuchJobError:
        raise HTTPException(404, "no such job") from None
    status = job.get_status()
    body = {"job_id": job.id, "status": str(status.value if status else "unknown"), "result": None}
    latest = job.latest_result()
    if status == JobStatus.FINISHED and latest is not None and latest.type == Result.Type.SUCCESSFUL:
        body["result"] = latest.return_value
    elif status == JobStatus.FAILED and latest is not None and latest.exc_string:
        body["error"] = logs.redact(latest.exc_string.strip().splitlines()[-1])
    return body
