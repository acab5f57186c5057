"""The HTTP API.

    uvicorn car_api.app:app --host 0.0.0.0 --port 8000 --timeout-graceful-shutdown 20

``app`` is the FastAPI application wrapped so that every response, errors
included, carries ``X-App-Version: <APP_VERSION>``: a load test can tell which
release served each request.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from contextlib import asynccontextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from car_api import logs, schema
from car_api.config import ConfigError, get_settings
from car_api.db import car_columns, cars, get_engine

logs.configure()
log = logging.getLogger("car_api")

try:
    settings = get_settings(require_secret_key=True)
except ConfigError as exc:
    log.error("configuration error: %s", exc)
    raise SystemExit(2) from None

EXPECTED_SCHEMA = schema.expected_revision()
MAX_SLOW_SECONDS = 30
CarId = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def wait_before_listening(delay: float) -> None:
    """Sleep ``delay`` seconds (uvicorn binds its socket after this), or less when asked to stop.

    uvicorn's SIGTERM handler is a method of its server: once it has set
    ``should_exit``, waiting on would only delay the exit.
    """
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    deadline = time.monotonic() + delay
    while (remaining := deadline - time.monotonic()) > 0:
        if getattr(server, "should_exit", False):
            log.info("asked to stop during the start-up delay")
            return
        await asyncio.sleep(min(0.2, remaining))


@asynccontextmanager
async def lifespan(_api: FastAPI):
    log.info(
        "car-api %s starting: schema revision %s, database %s",
        settings.version,
        EXPECTED_SCHEMA,
        "configured" if settings.database_url is not None else "NOT configured",
    )
    if settings.database_url is None:
        log.warning("DATABASE_URL is not set: /health_check will answer 503")
    if settings.health != "ok":
        log.warning("APP_HEALTH=%s: /health_check will answer 503", settings.health)
    if settings.startup_delay:
        log.info("STARTUP_DELAY=%g: waiting before listening on port 8000", settings.startup_delay)
        await wait_before_listening(settings.startup_delay)
    yield
    log.info("car-api %s stopping", settings.version)
    if settings.database_url is not None:
        get_engine().dispose()


api = FastAPI(title="Car API", version=settings.version, lifespan=lifespan)


class AppVersionHeader:
    """ASGI wrapper adding ``X-App-Version`` to every HTTP response, 500s included."""

    def __init__(self, inner, version: str) -> None:
        self.inner = inner
        self.header = (b"x-app-version", version.encode("latin-1", "replace"))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return

        async def send_with_version(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.inner(scope, receive, send_with_version)


app = AppVersionHeader(api, settings.version)


@api.exception_handler(SQLAlchemyError)
async def database_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
    log.error("database error: %s", " ".join(str(getattr(exc, "orig", None) or exc).split()))
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


# ---------------------------------------------------------------------------- probe


def database_problem() -> str | None:
    if settings.database_url is None:
        return "database not configured"
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("health check: database unavailable: %s", " ".join(str(getattr(exc, "orig", None) or exc).split()))
        return "database unavailable"
    return None


@api.get("/health_check")
def health_check(request: Request) -> JSONResponse:
    """200 ``{"status": "ok", "version", "schema"}`` when Postgres answers ``SELECT 1``; 503 otherwise.

    The ``badproxy`` build answers 503 to what came through a proxy (an
    ``X-Forwarded-For`` header), like an app whose allowed hosts leave out its
    public name: healthy when asked directly, failing once it takes traffic.
    """
    body = {"status": "ok", "version": settings.version, "schema": EXPECTED_SCHEMA}
    if settings.health == "unhealthy":
        problem = "unhealthy by build (APP_HEALTH=unhealthy)"
    elif settings.health == "badproxy" and "x-forwarded-for" in request.headers:
        problem = "refuses proxied requests by build (APP_HEALTH=badproxy)"
    else:
        problem = database_problem()
    if problem is not None:
        return JSONResponse({**body, "status": "unhealthy", "detail": problem}, status_code=503)
    return JSONResponse(body)


# ---------------------------------------------------------------------------- cars


class CarIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    brand: str = Field(min_length=1, max_length=100)
    model: str = Field(min_length=1, max_length=100)
    year: int = Field(ge=1886, le=2100)
    price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    color: str | None = Field(default=None, min_length=1, max_length=30)  # schema 2


@api.get("/api/cars")
def list_cars(
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict:
    query = select(*car_columns(settings)).order_by(cars.c.id).limit(limit).offset(offset)
    with get_engine().connect() as conn:
        rows = [jsonable(row) for row in conn.execute(query).mappings()]
    return {"count": len(rows), "cars": rows}


@api.post("/api/cars", status_code=201)
def create_car(car: CarIn) -> dict:
    values = car.model_dump()
    if settings.schema_level < 2:
        if car.color is not None:
            raise HTTPException(422, "this version does not store colors")
        del values["color"]
    with get_engine().begin() as conn:
        row = conn.execute(insert(cars).values(**values).returning(*car_columns(settings))).mappings().one()
    log.info("car %s created: %s %s %s", row["id"], row["brand"], row["model"], row["year"])
    return jsonable(row)


@api.get("/api/cars/{car_id}")
def get_car(car_id: CarId) -> dict:
    with get_engine().connect() as conn:
        row = conn.execute(select(*car_columns(settings)).where(cars.c.id == car_id)).mappings().first()
    if row is None:
        raise HTTPException(404, f"car {car_id} not found")
    return jsonable(row)


@api.delete("/api/cars/{car_id}", status_code=204)
def delete_car(car_id: CarId) -> Response:
    with get_engine().begin() as conn:
        deleted = conn.execute(delete(cars).where(cars.c.id == car_id).returning(cars.c.id)).first()
    if deleted is None:
        raise HTTPException(404, f"car {car_id} not found")
    log.info("car %s deleted", car_id)
    return Response(status_code=204)


# ---------------------------------------------------------------------------- graceful-shutdown checks


@api.get("/api/slow")
async def slow(seconds: Annotated[float, Query(gt=0, le=MAX_SLOW_SECONDS)] = 2.0) -> dict:
    """Answer after ``seconds``: a request to be in flight while the container is stopped (tests only)."""
    log.info("slow request: answering in %gs", seconds)
    await asyncio.sleep(seconds)
    return {"slept": seconds, "version": settings.version}
