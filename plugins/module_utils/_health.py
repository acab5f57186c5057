# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health checks behind the ``pydeploy.stack.health_check`` module.

Three kinds of check (HTTP(S), PostgreSQL, Redis) share one polling loop:
every round probes each check that is not healthy yet, a check becomes healthy
after ``consecutive`` successful probes in a row, and the loop ends when all
are healthy or the time is up.  Everything a check reports (target, error,
body) goes through :func:`_secrets.mask` first.

Nothing here needs an ``AnsibleModule``: the module builds checks from its
parameters with :func:`build_checks`, runs :func:`run_checks` and reports
:func:`failure_message` on a timeout.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import re
import ssl
import time
import traceback
from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

from ansible_collections.pydeploy.stack.plugins.module_utils._secrets import (
    MASK,
    MIN_SECRET_LENGTH,
    mask,
    redact_url,
)

try:
    import psycopg
except ImportError:
    psycopg = None
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:
    redis = None
    REDIS_IMPORT_ERROR = traceback.format_exc()
else:
    REDIS_IMPORT_ERROR = None

KINDS = ("http", "postgres", "redis")
# How much of a body is returned, and how much of it goes into a message.
BODY_LIMIT = 2048
SNIPPET_LIMIT = 200
# How much of a response is read at most: enough for any health endpoint.
READ_LIMIT = 1024 * 1024
# An attempt is cut short so that it ends near the overall deadline, but never
# below this: a zero-second request cannot succeed.
MIN_ATTEMPT_TIMEOUT = 1.0
# An answer that waiting will not change (a redirect, a client error) ends an HTTP check once it came this
# many times in a row; a request timeout, too early and too many requests may pass, so they are waited out.
DEFINITIVE_REPEAT = 3
RETRIED_CLIENT_ERRORS = frozenset({408, 425, 429})
# libpq rounds connect_timeout down to whole seconds and treats 1 as 2.
MIN_PG_CONNECT_TIMEOUT = 2

SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# Names of headers, query parameters and libpq keywords that hold a secret.
_SECRET_WORDS = ("password", "passwd", "secret", "token", "apikey", "api-key", "api_key")
# One libpq ``key=value`` pair; the value may be quoted.
_CONNINFO_PAIR = re.compile(r"(\b(\w+)\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']*)")
# One ``key=value`` pair of a query string.
_QUERY_PAIR = re.compile(r"([^&;=]+)=([^&;]*)")


class HealthCheckError(ValueError):
    """A check is misconfigured: the module fails at once, without polling."""


class MissingLibrary(Exception):
    """A check needs a Python library that the target host lacks."""

    def __init__(self, library: str, import_error: str | None):
        super().__init__(library)
        self.library = library
        self.import_error = import_error


# --------------------------------------------------------------------------
# Pure helpers: comparing responses and formatting what is reported.
# --------------------------------------------------------------------------


def one_line(text: str) -> str:
    """Collapse whitespace (libpq errors span lines) so a message stays on one line."""
    return " ".join(str(text).split())


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def describe_error(exc: BaseException) -> str:
    """``ConnectionRefusedError: [Errno 111] Connection refused``, on one line."""
    detail = one_line(str(exc))
    name = type(exc).__name__
    return f"{name}: {detail}" if detail else name


def normalize_status(value) -> list[int]:
    """Expected HTTP statuses as a list of ints: ``200``, ``"204"``, ``"200,204"``, ``[200, 204]``."""
    if isinstance(value, str) and "," in value:
        value = value.split(",")
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise HealthCheckError("status must name at least one HTTP status code")
    statuses = []
    for item in values:
        if isinstance(item, bool):
            raise HealthCheckError(f"status must be an HTTP status code or a list of them, got {item!r}")
        try:
            code = int(str(item).strip())
        except ValueError:
            raise HealthCheckError(f"status must be an HTTP status code or a list of them, got {item!r}") from None
        if not 100 <= code <= 599:
            raise HealthCheckError(f"status {code} is not an HTTP status code (100-599)")
        statuses.append(code)
    return statuses


def same_value(expected, actual) -> bool:
    """Exact comparison, except that ``true`` never equals ``1`` (Python says it does)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(same_value(expected[k], actual[k]) for k in expected)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(same_value, expected, actual))
    return expected == actual


_MISSING = object()


def lookup(data, key: str):
    """Return the field ``key`` of a JSON document, or ``_MISSING``.

    A key that exists as is wins; otherwise dots walk into objects and arrays
    (``checks.db``, ``items.0.status``).
    """
    if isinstance(data, dict) and key in data:
        return data[key]
    current = data
    for part in key.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def show_value(value, other=_MISSING) -> str:
    """Render a JSON value for a message: strings bare unless that would hide a type difference."""
    as_json = json.dumps(value, sort_keys=True, default=str)
    if not isinstance(value, str):
        return as_json
    if other is not _MISSING and not isinstance(other, str) and str(other) == value:
        return as_json
    return value


def compare_json(expected: dict, document) -> list[str]:
    """Return one problem per expected field that the document does not have."""
    problems = []
    for key, want in expected.items():
        got = lookup(document, key)
        if got is _MISSING:
            problems.append(f"expected json {key}={show_value(want)}, got no field {key}")
        elif not same_value(want, got):
            problems.append(
                f"expected json {key}={show_value(want, got)}, got {key}={show_value(got, want)}",
            )
    return problems


def show_statuses(statuses: list[int]) -> str:
    if len(statuses) == 1:
        return str(statuses[0])
    return "one of " + ", ".join(str(s) for s in statuses)


def snippet(text: str) -> str:
    return truncate(one_line(text), SNIPPET_LIMIT)


def is_definitive(status: int, statuses: list[int]) -> bool:
    """Whether an unexpected ``status`` is an answer that waiting will not change: a redirect or a client
    error (``302`` to a setup page, ``404``), not a server error or a request timeout (``503``, ``408``)."""
    return status not in statuses and 300 <= status < 500 and status not in RETRIED_CLIENT_ERRORS


def evaluate_http(
    status: int,
    text: str,
    *,
    statuses: list[int],
    expected_json: dict | None = None,
    contains: str | None = None,
    body=None,
    location: str | None = None,
) -> str | None:
    """Judge one HTTP response: ``None`` when healthy, else what was wrong. ``body``: a JSON value the whole
    body must equal (None: not checked); ``location``: the redirect target, named in the problem."""
    if status not in statuses:
        problem = f"expected status {show_statuses(statuses)}, got {status}"
        if location:
            problem += f" (a redirect to {truncate(one_line(location), SNIPPET_LIMIT)})"
        text_snippet = snippet(text)
        return f"{problem}: {text_snippet}" if text_snippet else f"{problem} with an empty body"
    if expected_json or body is not None:
        try:
            document = json.loads(text)
        except ValueError:
            text_snippet = snippet(text)
            return (
                f"expected a JSON body, got: {text_snippet}"
                if text_snippet
                else "expected a JSON body, got an empty body"
            )
        if body is not None and not same_value(body, document):
            got = truncate(show_value(document, body), SNIPPET_LIMIT)
            return f"expected the JSON body {show_value(body, document)}, got {got}"
        problems = compare_json(expected_json or {}, document)
        if problems:
            return "; ".join(problems)
    if contains is not None and contains not in text:
        return f"expected the body to contain {contains!r}, got: {snippet(text)}"
    return None


def decode_body(raw: bytes | None, secrets=()):
    """What a check returns as ``body``: masked, JSON-decoded when it is JSON, else text cut at ~2 KB."""
    if raw is None:
        return None
    text = mask(raw.decode("utf-8", "replace"), secrets)
    if len(text) <= BODY_LIMIT:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return truncate(text, BODY_LIMIT)


def jsonable(value):
    """A query result as something JSON can carry."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def is_secret_name(name: str) -> bool:
    """Whether a header, query parameter or libpq keyword is named like a secret (``sslpassword``, ``token``)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact_target(url: str) -> str:
    """A URL or libpq ``key=value`` string without its password and secret query parameters."""
    if "://" not in url:
        return _CONNINFO_PAIR.sub(lambda m: m.group(1) + MASK if is_secret_name(m.group(2)) else m.group(0), url)
    redacted = redact_url(url)
    try:
        parts = urlsplit(redacted)
    except ValueError:
        return MASK
    query = _QUERY_PAIR.sub(
        lambda m: f"{m.group(1)}={MASK}" if is_secret_name(unquote_plus(m.group(1))) else m.group(0), parts.query
    )
    return redacted if query == parts.query else urlunsplit(parts._replace(query=query))


def url_secrets(url: str | None) -> list[str]:
    """Secrets inside a URL (password, secret query parameters) or libpq string, raw and decoded."""
    if not url:
        return []
    found = []
    if "://" not in url:
        for match in _CONNINFO_PAIR.finditer(url):
            if is_secret_name(match.group(2)) and match.group(3):
                found += [match.group(3), match.group(3).strip("'")]
        return found
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return found
    if password:
        found += [password, unquote(password)]
    for match in _QUERY_PAIR.finditer(parts.query):
        if is_secret_name(unquote_plus(match.group(1))) and match.group(2):
            found += [match.group(2), unquote_plus(match.group(2))]
    return found


def is_public_url(url: str | None) -> bool:
    """Whether a URL holds nothing secret, so that it may be shown as is.

    The ``url`` options of postgres and redis checks are ``no_log``: Ansible
    then masks their whole value wherever it appears, which would turn the
    target of a check without password into ``********``.
    """
    if not url or "://" not in url:
        return False
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError on a malformed URL
    except ValueError:
        return False
    return not url_secrets(url)


def is_sensitive_header(name: str) -> bool:
    return name.lower() in SENSITIVE_HEADERS or is_secret_name(name)


def header_secrets(headers: dict | None) -> list[str]:
    """Values of headers that carry credentials (Authorization, Cookie, *token*, ...)."""
    found = []
    for name, value in (headers or {}).items():
        if is_sensitive_header(str(name)) and value:
            value = str(value)
            found.append(value)
            # "Bearer abc": the credential alone may be echoed back as well.
            scheme, _space, credential = value.partition(" ")
            if credential and scheme.lower() in ("basic", "bearer", "token"):
                found.append(credential)
    return found


def maskable(secrets) -> list[str]:
    """The secrets worth masking in free text (see ``_secrets.MIN_SECRET_LENGTH``)."""
    return sorted({str(s) for s in secrets if s and len(str(s)) >= MIN_SECRET_LENGTH})


def host_header(headers: dict | None) -> str | None:
    for name, value in (headers or {}).items():
        if str(name).lower() == "host" and value:
            return str(value)
    return None


def hostname_of(host_value: str) -> str:
    """The name part of a ``Host`` header value: ``app.example.com:8443`` -> ``app.example.com``."""
    value = host_value.strip()
    if value.startswith("["):
        return value[1 : value.index("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def mask_result(value, secrets):
    """Mask every string inside a returned structure."""
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, list):
        return [mask_result(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: mask_result(item, secrets) for key, item in value.items()}
    return value


# --------------------------------------------------------------------------
# Checks.
# --------------------------------------------------------------------------


class Outcome:
    """What one attempt saw; ``definitive``: an answer that waiting would not change."""

    def __init__(self, healthy: bool, error=None, status=None, body=None, latency_ms=None, definitive=False):
        self.healthy = healthy
        self.error = error
        self.status = status
        self.body = body
        self.latency_ms = latency_ms
        self.definitive = definitive


class Check:
    kind = "check"

    def __init__(self, *, name: str | None, target: str, request_timeout: float, secrets=()):
        self.target = target
        self.name = name or target
        self.request_timeout = request_timeout
        self.secrets = maskable(secrets)
        self.attempts = 0
        self.streak = 0
        # Definitive answers in a row (Outcome.definitive); the check gives up at DEFINITIVE_REPEAT.
        self.definitive_streak = 0
        self.healthy = False
        self.last: Outcome | None = None
        self.latency_ms: float | None = None
        # Successes in a row that make the check healthy (set by run_checks).
        self.consecutive = 1

    @property
    def label(self) -> str:
        if self.name == self.target:
            return f"{self.kind} {self.target}"
        return f"{self.kind} {self.name} ({self.target})"

    def probe(self, timeout: float) -> Outcome:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def attempt(self, timeout: float) -> Outcome:
        self.attempts += 1
        started = time.monotonic()
        try:
            outcome = self.probe(timeout)
        except Exception as exc:  # noqa: BLE001 - any failure of a probe is the check's error, never a traceback
            outcome = Outcome(False, error=describe_error(exc))
        if outcome.latency_ms is None and outcome.healthy:
            outcome.latency_ms = (time.monotonic() - started) * 1000
        if outcome.error is not None:
            outcome.error = mask(outcome.error, self.secrets)
        self.last = outcome
        self.definitive_streak = self.definitive_streak + 1 if outcome.definitive else 0
        if outcome.healthy:
            self.streak += 1
            self.latency_ms = outcome.latency_ms
            self.healthy = self.streak >= self.consecutive
        else:
            self.streak = 0
        return outcome

    @property
    def gave_up(self) -> bool:
        """Whether the check got the same kind of definitive answer enough times to stop waiting."""
        return not self.healthy and self.definitive_streak >= DEFINITIVE_REPEAT

    def error(self) -> str | None:
        """The problem to report: the last attempt's, or too short a run of successes."""
        if self.last is None:
            return "not attempted"
        if self.healthy:
            return None
        if self.last.healthy:
            return f"{self.streak} consecutive successful attempt(s) of the {self.consecutive} required"
        if self.gave_up:
            return (
                f"{self.last.error} ({self.definitive_streak} times in a row: an answer, not a start still under way)"
            )
        return self.last.error

    def result(self) -> dict:
        last = self.last or Outcome(False)
        return mask_result(
            {
                "name": self.name,
                "kind": self.kind,
                "target": self.target,
                "healthy": self.healthy,
                "attempts": self.attempts,
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
                "status": last.status,
                "body": last.body,
                "error": self.error(),
            },
            self.secrets,
        )


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to one address while verifying (and sending SNI for) another name."""

    def __init__(self, host, port, *, server_name: str, context: ssl.SSLContext, timeout: float):
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_name = server_name
        self._tls_context = context

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=self._server_name)


def tls_context(validate_certs: bool = True, ca_path: str | None = None) -> ssl.SSLContext:
    if not validate_certs:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_path is not None:
        if not os.path.isfile(ca_path):
            raise HealthCheckError(f"ca_path {ca_path} is not a file")
        try:
            return ssl.create_default_context(cafile=ca_path)
        except (ssl.SSLError, OSError) as exc:
            raise HealthCheckError(f"ca_path {ca_path} holds no usable CA certificate: {describe_error(exc)}") from None
    return ssl.create_default_context()


class HttpCheck(Check):
    kind = "http"

    def __init__(
        self,
        url: str,
        *,
        name=None,
        status=200,
        expected_json=None,
        contains=None,
        body=None,
        fail_fast=True,
        headers=None,
        method="GET",
        validate_certs=True,
        ca_path=None,
        tls_server_name=None,
        request_timeout=5.0,
    ):
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise HealthCheckError(f"http check url {redact_target(url)} is not valid: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HealthCheckError(f"http check url must be http(s)://HOST/PATH, got {redact_target(url)}")
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}
        secrets = url_secrets(url) + header_secrets(self.headers)
        if (parts.username or parts.password) and not any(k.lower() == "authorization" for k in self.headers):
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode("ascii")
            secrets += header_secrets({"Authorization": self.headers["Authorization"]})
        super().__init__(name=name, target=redact_target(url), request_timeout=request_timeout, secrets=secrets)
        self.host = parts.hostname
        self.https = parts.scheme == "https"
        self.port = port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.method = (method or "GET").upper()
        self.statuses = normalize_status(status)
        self.expected_json = expected_json or None
        if self.expected_json is not None and not isinstance(self.expected_json, dict):
            raise HealthCheckError("json must be a dict of the fields the body must have (body: the whole body)")
        self.contains = contains
        self.body = body
        self.fail_fast = fail_fast
        self.context = tls_context(validate_certs, ca_path) if self.https else None
        # Which name the certificate must carry: the option, else the Host
        # header (the site asked for), else the URL's host.
        host = host_header(self.headers)
        self.server_name = tls_server_name or (hostname_of(host) if host else None) or self.host

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            return _TLSConnection(
                self.host, self.port, server_name=self.server_name, context=self.context, timeout=timeout
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, timeout: float) -> tuple[int, bytes, str | None]:
        """One request; returns the status, (up to READ_LIMIT bytes of) the body and the Location header."""
        conn = self.connection(timeout)
        try:
            conn.request(self.method, self.path, headers=self.headers)
            response = conn.getresponse()
            raw = response.read(READ_LIMIT)
            return response.status, raw, response.getheader("Location")
        finally:
            conn.close()

    def probe(self, timeout: float) -> Outcome:
        started = time.monotonic()
        status, raw, location = self.request(timeout)
        latency = (time.monotonic() - started) * 1000
        problem = evaluate_http(
            status,
            raw.decode("utf-8", "replace"),
            statuses=self.statuses,
            expected_json=self.expected_json,
            contains=self.contains,
            body=self.body,
            location=location,
        )
        body = decode_body(raw, self.secrets)
        definitive = self.fail_fast and is_definitive(status, self.statuses)
        return Outcome(
            problem is None, error=problem, status=status, body=body, latency_ms=latency, definitive=definitive
        )


def postgres_target(url=None, host=None, port=None, user=None, dbname=None) -> str:
    if url:
        return redact_target(url)
    netloc = (quote(user, safe="") + "@" if user else "") + (host or "") + (f":{port}" if port else "")
    return f"postgresql://{netloc}/{dbname or ''}"


class PostgresCheck(Check):
    kind = "postgres"

    def __init__(
        self,
        url=None,
        *,
        host=None,
        port=None,
        user=None,
        password=None,
        dbname=None,
        query="SELECT 1",
        name=None,
        request_timeout=5.0,
    ):
        if psycopg is None:
            raise MissingLibrary("psycopg", PSYCOPG_IMPORT_ERROR)
        if not url and not host:
            raise HealthCheckError("a postgres check needs url or host")
        secrets = url_secrets(url) + ([password] if password else [])
        target = postgres_target(url, host, port, user, dbname)
        super().__init__(name=name, target=target, request_timeout=request_timeout, secrets=secrets)
        self.url = url
        self.conninfo = url or ""
        self.params = {
            key: value
            for key, value in {"host": host, "port": port, "user": user, "password": password, "dbname": dbname}.items()
            if value is not None
        }
        self.query = query or "SELECT 1"

    def probe(self, timeout: float) -> Outcome:
        started = time.monotonic()
        connect_timeout = max(MIN_PG_CONNECT_TIMEOUT, math.ceil(timeout))
        conn = psycopg.connect(self.conninfo, connect_timeout=connect_timeout, **self.params)
        try:
            # The module only reads: a read-only transaction, rolled back.
            conn.read_only = True
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout * 1000)),))
            cursor = conn.execute(self.query)
            row = cursor.fetchone() if cursor.description else None
            conn.rollback()
        finally:
            conn.close()
        latency = (time.monotonic() - started) * 1000
        value = jsonable(row[0]) if row else None
        if value is False:
            return Outcome(False, error=f"query {self.query!r} returned false", body=value, latency_ms=latency)
        return Outcome(True, body=value, latency_ms=latency)


class RedisCheck(Check):
    kind = "redis"

    def __init__(self, url, *, password=None, name=None, request_timeout=5.0):
        if redis is None:
            raise MissingLibrary("redis", REDIS_IMPORT_ERROR)
        if "://" not in url:
            raise HealthCheckError(f"redis check url must be redis://, rediss:// or unix://, got {redact_target(url)}")
        secrets = url_secrets(url) + ([password] if password else [])
        super().__init__(name=name, target=redact_target(url), request_timeout=request_timeout, secrets=secrets)
        self.url = url
        self.password = password

    def probe(self, timeout: float) -> Outcome:
        started = time.monotonic()
        options = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # No retries inside redis-py (it retries with a backoff): the
            # polling loop is the retry.
            "retry": Retry(NoBackoff(), 0),
            # RESP2 unless the URL asks for protocol=3: every server speaks it.
            "protocol": 2,
        }
        if self.password is not None:
            options["password"] = self.password  # a password in the URL wins
        client = redis.Redis.from_url(self.url, **options)
        try:
            client.ping()
        finally:
            client.close()
        return Outcome(True, latency_ms=(time.monotonic() - started) * 1000)


def _without_none(spec: dict) -> dict:
    return {key: value for key, value in spec.items() if value is not None}


def build_checks(params: dict) -> list[Check]:
    """Turn the module's parameters into checks, in the order http, postgres, redis."""
    default_timeout = params.get("request_timeout") or 5.0
    checks: list[Check] = []
    for spec in params.get("http") or []:
        spec = _without_none(spec)
        spec.setdefault("request_timeout", default_timeout)
        if "json" in spec:
            spec["expected_json"] = spec.pop("json")
        url = spec.pop("url")
        checks.append(HttpCheck(url, **spec))
    for spec in params.get("postgres") or []:
        spec = _without_none(spec)
        spec.setdefault("request_timeout", default_timeout)
        checks.append(PostgresCheck(**spec))
    for spec in params.get("redis") or []:
        spec = _without_none(spec)
        spec.setdefault("request_timeout", default_timeout)
        url = spec.pop("url")
        checks.append(RedisCheck(url, **spec))
    return checks


def all_secrets(checks) -> list[str]:
    return maskable(secret for check in checks for secret in check.secrets)


def public_urls(checks) -> list[str]:
    """The ``url`` values of checks that hold no secret (see :func:`is_public_url`)."""
    return [check.url for check in checks if is_public_url(getattr(check, "url", None))]


def run_checks(checks, *, timeout=60.0, interval=1.0, consecutive=1, clock=time.monotonic, sleep=time.sleep) -> float:
    """Poll ``checks`` until each is healthy or ``timeout`` seconds have passed; return the time taken.

    Every check gets at least one attempt, even with ``timeout: 0``.  A check
    that reached ``consecutive`` successes in a row is done and not probed
    again; so is one that gave up (the same definitive answer, such as a
    redirect, DEFINITIVE_REPEAT times in a row): the wait ends as soon as every
    check is healthy or one gave up.  Attempts are cut short to end near the
    deadline, but get at least ``MIN_ATTEMPT_TIMEOUT`` seconds.
    """
    started = clock()
    deadline = started + timeout
    pending = list(checks)
    for check in pending:
        check.consecutive = consecutive
    while pending:
        for check in list(pending):
            remaining = deadline - clock()
            check.attempt(min(check.request_timeout, max(remaining, MIN_ATTEMPT_TIMEOUT)))
            if check.healthy:
                pending.remove(check)
        remaining = deadline - clock()
        if not pending or remaining <= 0 or any(check.gave_up for check in pending):
            break
        sleep(min(interval, remaining))
    return clock() - started


def failure_message(checks, elapsed: float, timeout: float) -> str:
    """``1 of 2 health checks failed after 60.0s: http https://...: expected status 200, got 503: {...}``."""
    failing = [check for check in checks if not check.healthy]
    details = "; ".join(f"{check.label}: {check.error()}" for check in failing)
    why = "gave up on a definitive answer" if any(check.gave_up for check in failing) else f"timeout {timeout:g}s"
    head = f"{len(failing)} of {len(checks)} health check(s) not healthy after {elapsed:.1f}s ({why})"
    return mask(f"{head}: {details}", all_secrets(checks))


def success_message(checks, elapsed: float) -> str:
    return f"{len(checks)} health check(s) healthy after {elapsed:.1f}s"
