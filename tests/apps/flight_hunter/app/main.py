"""The HTTP API: ``uvicorn app.main:app --host 0.0.0.0 --port 8000``."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

import redis
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import insert, select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app import cache, logs, schema
from app.config import ConfigError, get_settings
from app.db import alerts, columns, get_engine, price_cache

logs.configure()
log = logging.getLogger("app")

try:
    settings = get_settings()
except ConfigError as exc:
    log.error("configuration error: %s", exc)
    raise SystemExit(2) from None

IATA = r"^[A-Za-z]{3}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
Iata = Annotated[str, Query(pattern=IATA, description="IATA airport code, e.g. GRU")]


@asynccontextmanager
async def lifespan(_app: FastAPI):
    heads, _ = schema.script_revisions()
    log.info(
        "flight-hunter %s starting: env=%s, schema revision %s, providers configured: %s",
        settings.version,
        settings.app_env,
        ",".join(sorted(heads)),
        ", ".join(settings.providers) or "none",
    )
    if settings.database_url is None:
        log.warning("DATABASE_URL is not set: /ready will answer 503")
    if settings.redis_url is None:
        log.warning("REDIS_URL is not set: /ready will answer 503 and prices are not cached")
    yield
    if settings.database_url is not None:
        get_engine().dispose()


# No interactive API docs in production.
docs = {} if settings.app_env != "prod" else {"docs_url": None, "redoc_url": None, "openapi_url": None}
app = FastAPI(title="Flight Hunter", version=settings.version, lifespan=lifespan, **docs)


@app.exception_handler(SQLAlchemyError)
async def database_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
    log.error("database error: %s", exc.orig if getattr(exc, "orig", None) else exc)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


def jsonable(row) -> dict:
    out = {}
    for key, value in dict(row).items():
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, date | datetime):
            value = value.isoformat()
        out[key] = value
    return out


@app.get("/health")
def health() -> dict:
    """Liveness: the process answers.  Touches nothing else."""
    return {"status": "ok", "version": settings.version}


def check_database() -> tuple[str, str | None]:
    if settings.database_url is None:
        return "not configured", None
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
            current = schema.database_revisions(conn)
    except OperationalError as exc:
        log.warning("readiness: database unavailable: %s", exc.orig or exc)
        return "unavailable", None
    except SQLAlchemyError as exc:
        log.warning("readiness: database error: %s", exc)
        return "error", None
    return schema.compare(current), ",".join(sorted(current)) if current else None


def check_redis() -> str:
    client = cache.get_client()
    if client is None:
        return "not configured"
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        log.warning("readiness: redis refused the credentials: %s", exc)
        return "authentication failed"
    except redis.RedisError as exc:
        log.warning("readiness: redis unavailable: %s", exc)
        return "unavailable"
    return "ok"


@app.get("/ready")
def ready() -> JSONResponse:
    """Readiness: Postgres answers and is at this build's revision (or newer), Redis answers."""
    database, revision = check_database()
    redis_state = check_redis()
    ok = database == "ok" and redis_state == "ok"
    heads, _ = schema.script_revisions()
    body = {
        "status": "ready" if ok else "not ready",
        "database": database,
        "redis": redis_state,
        "revision": revision,
        "expected_revision": ",".join(sorted(heads)),
        "version": settings.version,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@app.get("/api/prices")
def prices(origin: Iata, destination: Iata, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """Cached prices of a route, newest fetch first."""
    origin, destination = origin.upper(), destination.upper()
    key = cache.prices_key(origin, destination, limit)
    hit = cache.get_json(key)
    if hit is not None:
        return {**hit, "cached": True}
    query = (
        select(*columns(price_cache))
        .where(price_cache.c.origin == origin, price_cache.c.destination == destination)
        .order_by(price_cache.c.fetched_at.desc(), price_cache.c.departure_date, price_cache.c.id)
        .limit(limit)
    )
    with get_engine().connect() as conn:
        rows = [jsonable(row) for row in conn.execute(query).mappings()]
    payload = {"origin": origin, "destination": destination, "count": len(rows), "prices": rows}
    cache.set_json(key, payload)
    return {**payload, "cached": False}


class AlertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    origin: str = Field(pattern=IATA)
    destination: str = Field(pattern=IATA)
    max_price: Decimal = Field(gt=0, max_digits=10, decimal_places=2)
    email: str = Field(max_length=254, pattern=EMAIL)
    channel: Literal["email", "telegram"] = "email"

    @model_validator(mode="after")
    def distinct_airports(self) -> AlertIn:
        self.origin, self.destination = self.origin.upper(), self.destination.upper()
        if self.origin == self.destination:
            raise ValueError("origin and destination must differ")
        return self


@app.post("/api/alerts", status_code=201)
def create_alert(alert: AlertIn) -> dict:
    values = alert.model_dump()
    if settings.schema_level < 2:
        if alert.channel != "email":
            raise HTTPException(422, "this version sends e-mail alerts only")
        del values["channel"]
    with get_engine().begin() as conn:
        row = conn.execute(insert(alerts).values(**values).returning(*columns(alerts))).mappings().one()
    log.info("alert %s created for %s-%s", row["id"], row["origin"], row["destination"])
    return jsonable(row)


@app.get("/api/alerts")
def list_alerts(limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    query = select(*columns(alerts)).order_by(alerts.c.id).limit(limit)
    with get_engine().connect() as conn:
        rows = [jsonable(row) for row in conn.execute(query).mappings()]
    return {"count": len(rows), "alerts": rows}
