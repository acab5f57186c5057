# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service bindings (``stack_bindings``): environment variables of the app bound
to a property of a service the stack runs or uses (its host, port, user,
password, database, a URL in a chosen scheme, a Redis database index).

A service is described by its parts (``postgres_service``, ``redis_service``,
``mongodb_service``, set by the roles' preflights); ``service_from_url`` makes them from a URL given
by the user (an external database).  ``binding_errors`` checks the bindings,
each message naming the variable; ``bind`` gives their values."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

from ansible.errors import AnsibleFilterError

# Each service's properties; the options a binding may give (scheme for a URL, db for Redis).
PROPERTIES = {
    "postgres": ("host", "port", "user", "password", "database", "url"),
    "redis": ("host", "port", "user", "password", "db", "url"),
    "mongodb": ("host", "port", "user", "password", "database", "url"),
}
OPTIONS = {"postgres": ("scheme",), "redis": ("scheme", "db"), "mongodb": ()}
SERVICE_NAMES = {"postgres": "PostgreSQL", "redis": "Redis", "mongodb": "MongoDB"}
WHERE = {
    "postgres": "a host in the postgres group, or postgres_external_url",
    "redis": "a host in the redis group, or redis_external_url",
    "mongodb": "a host in the mongodb group, or mongodb_external_url",
}
DEFAULT_PORTS = {"postgres": 5432, "redis": 6379, "mongodb": 27017}
# A DNS seed list (Atlas): one host name, no port, in the URL.
MONGODB_SRV = "mongodb+srv"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
REDIS_DATABASES = 16


def _parse(binding):
    """``(service, property, options)`` of a binding, or a message saying what is wrong with it."""
    if isinstance(binding, str):
        service, prop = binding.partition(".")[::2]
        if not prop:
            return f"'{binding}' is not service.property (such as postgres.host, redis.url or mongodb.url)"
        binding = {"service": service, "property": prop}
    if not isinstance(binding, dict):
        return "must be service.property (postgres.password, mongodb.url) or a dict with service, property and options"
    unknown = sorted(set(binding) - {"service", "property", "scheme", "db"})
    if unknown:
        return f"unknown key(s) {', '.join(map(str, unknown))} (known: service, property, scheme, db)"
    service, prop = binding.get("service"), binding.get("property")
    if service not in PROPERTIES:
        return f"unknown service {service!r} (known: {', '.join(PROPERTIES)})"
    if prop not in PROPERTIES[service]:
        return f"{service} has no property {prop!r} (it has {', '.join(PROPERTIES[service])})"
    options = {key: value for key, value in binding.items() if key in ("scheme", "db")}
    for option in options:
        if option not in OPTIONS[service]:
            return f"{option} does not apply to {service}"
    if "scheme" in options and (prop != "url" or not _SCHEME.match(str(options["scheme"]))):
        return "scheme applies to a url only, and is a URL scheme such as postgresql+psycopg"
    if "db" in options:
        db = options["db"]
        if prop not in ("url", "db"):
            return "db applies to a url or the db property only"
        if isinstance(db, bool) or not isinstance(db, int) or not 0 <= db < REDIS_DATABASES:
            return f"db must be a Redis database index from 0 to {REDIS_DATABASES - 1}"
    return service, prop, options


def binding_errors(bindings, services=None, taken=None):
    """One message per problem of ``bindings``, each naming the variable. With ``services`` (the parts of
    each service the stack has, by name), a binding to a service the stack does not have is one too.
    ``taken``: names already given by stack_env, stack_secrets or stack_generated_secrets."""
    if bindings is None:
        return []
    if not isinstance(bindings, dict):
        return ["stack_bindings must be a dict of NAME: service.property (such as POSTGRES_HOST: postgres.host)"]
    errors = []
    for name, binding in sorted(bindings.items(), key=lambda item: str(item[0])):
        where = f"stack_bindings.{name}"
        if not _NAME.match(str(name)):
            errors.append(f"{where}: not an environment variable name (letters, digits, '_')")
            continue
        if name in (taken or ()):
            errors.append(f"{where}: {name} is also in stack_env, stack_secrets or stack_generated_secrets; keep one")
        parsed = _parse(binding)
        if isinstance(parsed, str):
            errors.append(f"{where}: {parsed}")
            continue
        service = parsed[0]
        if services is not None and not (services or {}).get(service):
            errors.append(
                f"{where} is bound to {service}, but no {SERVICE_NAMES[service]} serves this stack ({WHERE[service]})"
            )
    return errors


def _url(service: str, parts: dict, options: dict, default_scheme: str) -> str:
    scheme = options.get("scheme") or (
        default_scheme if service == "postgres" and default_scheme else parts.get("scheme") or service
    )
    user = quote(str(parts.get("user") or ""), safe="")
    password = quote(str(parts.get("password") or ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(parts["host"])
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    # A MongoDB replica set's hosts as its URL gave them; a seed list's one host without a port.
    if parts.get("hosts"):
        address = parts["hosts"]
    elif scheme == MONGODB_SRV:
        address = host
    else:
        address = f"{host}:{parts['port']}"
    path = options.get("db", parts.get("db", 0)) if service == "redis" else quote(str(parts.get("database") or ""))
    query = f"?{parts['query']}" if parts.get("query") else ""
    return f"{scheme}://{credentials}{address}/{path}{query}"


def bind(bindings, services, default_scheme: str = ""):
    """The value of each binding, by variable name (all strings). ``default_scheme``: the scheme of a
    PostgreSQL URL a binding does not choose (app_database_url_scheme)."""
    errors = binding_errors(bindings, services)
    if errors:
        raise AnsibleFilterError("; ".join(errors))
    values = {}
    for name, binding in (bindings or {}).items():
        service, prop, options = _parse(binding)
        parts = services[service]
        if prop == "url":
            value = _url(service, parts, options, default_scheme)
        elif prop == "db":
            value = options.get("db", parts.get("db", 0))
        else:
            value = parts.get(prop)
        values[name] = "" if value is None else str(value)
    return values


def _mongodb_from_url(url) -> dict:
    """A MongoDB URL's parts: its hosts may be a list (h1:27017,h2:27017), which urlsplit cannot read."""
    scheme, sep, rest = str(url).partition("://")
    if not sep or scheme not in ("mongodb", MONGODB_SRV):
        raise AnsibleFilterError(
            "service_from_url: not a URL of mongodb: it must start with mongodb:// or mongodb+srv://"
        )
    rest, _mark, query = rest.partition("?")
    authority, _slash, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if not at:
        userinfo, hosts = "", authority
    user, _colon, password = userinfo.partition(":")
    first = hosts.split(",")[0]
    if not first:
        raise AnsibleFilterError("service_from_url: the URL of mongodb names no host")
    try:
        split = urlsplit(f"//{first}")
        port = split.port or DEFAULT_PORTS["mongodb"]
    except ValueError as exc:
        raise AnsibleFilterError(f"service_from_url: not a URL of mongodb: {exc}") from None
    if scheme == MONGODB_SRV and (split.port or "," in hosts):
        raise AnsibleFilterError("service_from_url: a mongodb+srv URL names one host and no port")
    return {
        "scheme": scheme,
        "host": split.hostname,
        "port": port,
        "user": unquote(user),
        "password": unquote(password),
        "database": unquote(path),
        "query": query,
        # Several hosts (a replica set) are kept as they are for the URL.
        "hosts": hosts if "," in hosts else "",
    }


def service_from_url(url, service: str):
    """The parts of ``service`` (postgres, redis or mongodb) at ``url``: scheme, host, port, user, password,
    database (PostgreSQL, MongoDB) or db (Redis), and the query string kept as it is."""
    if service not in PROPERTIES:
        raise AnsibleFilterError(f"service_from_url: unknown service {service!r} (known: {', '.join(PROPERTIES)})")
    if service == "mongodb":
        return _mongodb_from_url(url)
    try:
        split = urlsplit(str(url))
        port = split.port or DEFAULT_PORTS[service]
    except ValueError as exc:
        raise AnsibleFilterError(f"service_from_url: not a URL of {service}: {exc}") from None
    if not split.hostname:
        raise AnsibleFilterError(f"service_from_url: the URL of {service} names no host")
    parts = {
        "scheme": split.scheme,
        "host": split.hostname,
        "port": port,
        "user": unquote(split.username or ""),
        "password": unquote(split.password or ""),
        "query": split.query,
    }
    path = unquote(split.path.lstrip("/"))
    if service == "redis":
        try:
            parts["db"] = int(path or 0)
        except ValueError:
            raise AnsibleFilterError(f"service_from_url: the Redis database index {path!r} is not a number") from None
    else:
        parts["database"] = path
    return parts


class FilterModule:
    def filters(self):
        return {"binding_errors": binding_errors, "bind": bind, "service_from_url": service_from_url}
