"""A stand-in for AWX's REST API (/api/v2/), as much of it as the awx.awx modules of
playbooks/awx_configure.yml use: lists filtered by field (name, organization, or__id/or__name),
objects created by POST, read and updated by PATCH at their url, a job template's credentials
associated and disassociated, its survey_spec posted and read. It keeps what it was sent, so a
test reads back exactly what the playbook would have configured. Loopback only, one bearer token."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PREFIX = "/api/v2/"
# The related lists a job template has, and the singular type of each resource.
TYPES = {
    "organizations": "organization",
    "credential_types": "credential_type",
    "credentials": "credential",
    "execution_environments": "execution_environment",
    "projects": "project",
    "inventories": "inventory",
    "inventory_sources": "inventory_source",
    "job_templates": "job_template",
}


class Controller:
    def __init__(self, token: str, version: str) -> None:
        self.token = token
        self.version = version
        self.objects: dict[str, dict[int, dict]] = {name: {} for name in TYPES}
        self.surveys: dict[int, dict] = {}
        self.associations: dict[int, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self.next_id = 1
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Controller:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, resource: str, **fields) -> dict:
        with self.lock:
            return self._create(resource, fields)

    def named(self, resource: str, name: str) -> dict | None:
        return next((obj for obj in self.objects[resource].values() if obj.get("name") == name), None)

    def _create(self, resource: str, fields: dict) -> dict:
        object_id = self.next_id
        self.next_id += 1
        url = f"{PREFIX}{resource}/{object_id}/"
        related = {}
        if resource == "job_templates":
            related = {"credentials": f"{url}credentials/", "survey_spec": f"{url}survey_spec/"}
            self.associations[object_id] = []
        if resource == "projects":
            fields = {"scm_revision": "", **fields}  # synced by the controller, later
        obj = {**fields, "id": object_id, "url": url, "type": TYPES[resource], "related": related, "summary_fields": {}}
        self.objects[resource][object_id] = obj
        return obj

    def _handler(self):
        controller = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body=None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-API-Product-Name", "AWX")
                self.send_header("X-API-Product-Version", controller.version)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str):
                controller.requests.append((method, self.path))
                if self.headers.get("Authorization") != f"Bearer {controller.token}":
                    return self._reply(401, {"detail": "Authentication credentials were not provided."})
                parts = urlsplit(self.path)
                if not parts.path.startswith(PREFIX):
                    return self._reply(404, {"detail": "Not found."})
                segments = parts.path[len(PREFIX) :].strip("/").split("/")
                length = int(self.headers.get("Content-Length") or 0)
                data = json.loads(self.rfile.read(length) or b"{}") if length else {}
                with controller.lock:
                    return self._dispatch(method, segments, parse_qs(parts.query), data)

            def _dispatch(self, method, segments, query, data):
                resource = segments[0]
                if resource not in TYPES:
                    return self._reply(404, {"detail": f"no resource {resource}"})
                store = controller.objects[resource]
                if len(segments) == 1:
                    if method == "GET":
                        return self._reply(200, self._list(store.values(), query))
                    if method == "POST":
                        return self._reply(201, controller._create(resource, data))
                object_id = int(segments[1]) if segments[1].isdigit() else None
                if object_id not in store:
                    return self._reply(404, {"detail": "Not found."})
                obj = store[object_id]
                if len(segments) == 2:
                    if method == "GET":
                        return self._reply(200, obj)
                    if method == "PATCH":
                        obj.update(data)
                        return self._reply(200, obj)
                if resource == "job_templates" and segments[2] == "survey_spec":
                    if method == "GET":
                        return self._reply(200, controller.surveys.get(object_id, {}))
                    if method == "POST":
                        controller.surveys[object_id] = data
                        return self._reply(200, data)
                    if method == "DELETE":  # AWX answers 200 here
                        controller.surveys.pop(object_id, None)
                        return self._reply(200, {})
                if resource == "job_templates" and segments[2] == "credentials":
                    linked = controller.associations[object_id]
                    if method == "GET":
                        items = [controller.objects["credentials"][cid] for cid in linked]
                        return self._reply(200, self._list(items, query))
                    if method == "POST":
                        if data.get("disassociate"):
                            linked.remove(data["id"])
                        elif data["id"] not in linked:
                            linked.append(data["id"])
                        return self._reply(204)
                return self._reply(405, {"detail": f"{method} not allowed"})

            @staticmethod
            def _list(items, query) -> dict:
                def wanted(obj) -> bool:
                    alternatives = [(key[4:], values[0]) for key, values in query.items() if key.startswith("or__")]
                    if alternatives and not any(str(obj.get(key)) == value for key, value in alternatives):
                        return False
                    for key, values in query.items():
                        if key.startswith("or__") or key in ("page", "page_size"):
                            continue
                        if str(obj.get(key)) != values[0]:
                            return False
                    return True

                results = [obj for obj in items if wanted(obj)]
                return {"count": len(results), "next": None, "previous": None, "results": results}

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_PATCH(self):
                self._route("PATCH")

            def do_DELETE(self):
                self._route("DELETE")

        return Handler
