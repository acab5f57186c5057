"""The API: ``uvicorn conductor.main:app``.

Health under /api/v1/health, contacts under /api/v1/contacts, heartbeats under
/api/v1/heartbeats, and a websocket at /ws/events that echoes what it is sent
and relays the server's events (a contact created or deleted, a heartbeat) to
every client of every web process, through Redis pub/sub.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from datetime import UTC, datetime
from typing import Annotated

import redis
import redis.asyncio
from bson import ObjectId
from bson.errors import InvalidId
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo import DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from conductor.config import APP_NAME, VERSION, settings
from conductor.db import EVENTS_CHANNEL, database, publish, redis_client

SETTINGS = settings()
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HEALTH_PREFIX = "/api/v1/health"

logging.basicConfig(
    level=logging.DEBUG if SETTINGS.debug else logging.INFO, format="%(levelname)s %(name)s %(message)s"
)
log = logging.getLogger("conductor")


# ---------------------------------------------------------------------------- websockets


class Hub:
    """The websockets of this process; the events of every process reach them through Redis."""

    def __init__(self) -> None:
        self.sockets: set[WebSocket] = set()

    async def broadcast(self, message: str) -> None:
        for socket in list(self.sockets):
            try:
                await socket.send_text(message)
            except Exception:  # noqa: BLE001 - a client gone between two events
                self.sockets.discard(socket)

    async def relay(self) -> None:
        """Subscribe to the events channel for as long as the process runs; reconnect when Redis goes."""
        while True:
            client = redis.asyncio.from_url(SETTINGS.redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(EVENTS_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self.broadcast(message["data"].decode("utf-8", "replace"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down or restarting: try again
                log.warning("events relay: %s, retrying in 1 s", exc.__class__.__name__)
                await asyncio.sleep(1)
            finally:
                await client.aclose()


hub = Hub()


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI):
    relay = asyncio.create_task(hub.relay())
    log.info("%s %s (%s) started", APP_NAME, VERSION, SETTINGS.environment)
    try:
        yield
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay


app = FastAPI(title=APP_NAME, version=VERSION, lifespan=lifespan)
app.add_middleware(
    CORSMiddleware,
    allow_origins=SETTINGS.cors_origins,
    allow_credentials="*" not in SETTINGS.cors_origins,
    allow_methods=["*"],
    allow_headers=["*"],
)


@app.middleware("http")
async def hosts_and_version(request: Request, call_next):
    """ALLOWED_HOSTS (health checks excepted: they come by IP address), and X-App-Version on every answer."""
    if "*" not in SETTINGS.allowed_hosts and not request.url.path.startswith(HEALTH_PREFIX):
        host = request.headers.get("host", "").rsplit(":", 1)[0].lower()
        if host not in SETTINGS.allowed_hosts:
            return JSONResponse({"detail": "invalid host header"}, status_code=400, headers={"X-App-Version": VERSION})
    response = await call_next(request)
    response.headers["X-App-Version"] = VERSION
    return response


@app.exception_handler(PyMongoError)
async def database_unavailable(_request: Request, exc: PyMongoError):
    log.error("database error: %s", exc.__class__.__name__)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


# ---------------------------------------------------------------------------- health

health = APIRouter(prefix=HEALTH_PREFIX, tags=["health"])


@health.get("")
def health_check() -> dict:
    """MongoDB and Redis, each pinged; 200 with ``"status": "degraded"`` when one does not answer."""
    result = {"status": "healthy", "version": VERSION, "timestamp": datetime.now(UTC).isoformat(), "services": {}}
    checks = {"mongodb": lambda: database().command("ping"), "redis": lambda: redis_client().ping()}
    for name, check in checks.items():
        try:
            check()
            result["services"][name] = "healthy"
        except (PyMongoError, redis.RedisError) as exc:
            result["services"][name] = f"unhealthy: {exc.__class__.__name__}"
            result["status"] = "degraded"
    return result


@health.get("/simple")
def simple_health() -> dict:
    """The API alone, neither MongoDB nor Redis."""
    return {"status": "ok", "version": VERSION}


# ---------------------------------------------------------------------------- contacts


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    company: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    notes: str | None = Field(default=None, max_length=5000)

    @field_validator("email")
    @classmethod
    def valid_email(cls, value: str) -> str:
        if not EMAIL.match(value):
            raise ValueError("not an e-mail address")
        return value.lower()


class ContactPatch(ContactIn):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, min_length=3, max_length=254)


def out(document: dict) -> dict:
    document = dict(document)
    document["id"] = str(document.pop("_id"))
    for key in ("created_at", "updated_at"):
        if document.get(key):
            document[key] = document[key].isoformat()
    return document


def object_id(contact_id: str) -> ObjectId:
    try:
        return ObjectId(contact_id)
    except (InvalidId, TypeError):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"contact {contact_id} not found") from None


def duplicate(email: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, f"a contact with e-mail {email} exists already")


contacts = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])


@contacts.get("")
def list_contacts(
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    skip: Annotated[int, Query(ge=0)] = 0,
    email: str | None = None,
) -> dict:
    query = {"email": email.lower()} if email else {}
    collection = database().contacts
    found = collection.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).skip(skip).limit(limit)
    return {"count": collection.count_documents(query), "contacts": [out(d) for d in found]}


@contacts.post("", status_code=status.HTTP_201_CREATED)
def create_contact(contact: ContactIn) -> dict:
    now = datetime.now(UTC)
    document = {**contact.model_dump(), "created_at": now, "updated_at": now}
    try:
        database().contacts.insert_one(document)
    except DuplicateKeyError:
        raise duplicate(contact.email) from None
    created = out(document)
    publish({"type": "contact.created", "id": created["id"], "name": contact.name, "email": contact.email})
    return created


@contacts.get("/{contact_id}")
def get_contact(contact_id: str) -> dict:
    document = database().contacts.find_one({"_id": object_id(contact_id)})
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"contact {contact_id} not found")
    return out(document)


@contacts.patch("/{contact_id}")
def update_contact(contact_id: str, patch: ContactPatch) -> dict:
    changes = patch.model_dump(exclude_unset=True)
    if any(changes.get(key, "") is None for key in ("name", "email")):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "name and email cannot be null")
    changes["updated_at"] = datetime.now(UTC)
    try:
        document = database().contacts.find_one_and_update(
            {"_id": object_id(contact_id)}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )
    except DuplicateKeyError:
        raise duplicate(changes["email"]) from None
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"contact {contact_id} not found")
    return out(document)


@contacts.delete("/{contact_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_contact(contact_id: str) -> None:
    if database().contacts.delete_one({"_id": object_id(contact_id)}).deleted_count == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"contact {contact_id} not found")
    publish({"type": "contact.deleted", "id": contact_id})


# ---------------------------------------------------------------------------- heartbeats (written by the worker)

heartbeats = APIRouter(prefix="/api/v1/heartbeats", tags=["heartbeats"])


@heartbeats.get("")
def list_heartbeats() -> dict:
    collection = database().heartbeats
    latest = collection.find_one(sort=[("at", DESCENDING)])
    return {
        "count": collection.estimated_document_count(),
        "latest": {"at": latest["at"].isoformat(), "worker": latest["worker"]} if latest else None,
    }


app.include_router(health)
app.include_router(contacts)
app.include_router(heartbeats)


# ---------------------------------------------------------------------------- websocket


@app.websocket("/ws/events")
async def events(websocket: WebSocket) -> None:
    """``{"type": "welcome"}`` first; then every text sent comes back as ``{"type": "echo", "data": ...}``, and
    every server event (``contact.created``, ``contact.deleted``, ``heartbeat``) is sent as it happens."""
    origin = websocket.headers.get("origin")
    if origin and "*" not in SETTINGS.cors_origins and origin not in SETTINGS.cors_origins:
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    await websocket.accept()
    hub.sockets.add(websocket)
    try:
        await websocket.send_text(json.dumps({"type": "welcome", "version": VERSION}))
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(json.dumps({"type": "echo", "data": data}))
    except WebSocketDisconnect:
        pass
    finally:
        hub.sockets.discard(websocket)
