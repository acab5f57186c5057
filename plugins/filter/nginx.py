# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxy's sites (``nginx_sites``): what nginx serves under which names, and what is wrong with their
description. A stack without ``nginx_sites`` has one site, made of ``nginx_server_names``,
``nginx_rate_limits`` and the volumes it serves, which proxies everything else to the web process."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from ansible_collections.pydeploy.stack.plugins.filter.volumes import served_volumes, volume_name

HOST_NAME = re.compile(
    r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
PATH = re.compile(r"^/([A-Za-z0-9._~/-]*)$")
RATE = re.compile(r"^[1-9][0-9]*r/[sm]$")
SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
MIME_TYPE = re.compile(r"^[a-z0-9.+-]+/[a-z0-9.+*-]+$")
# Where the proxy's container mounts a volume a route serves.
ROUTE_ROOT = "/srv/pydeploy-routes"
ROUTE_KEYS = ("process", "volume")
# The modes of a site's own certificate (nginx_sites[].tls.mode); acme is the stack's only.
SITE_TLS_MODES = ("selfsigned", "provided")
SITE_TLS_KEYS = ("mode", "certificate", "chain", "private_key")


def _process_spec(value):
    return value if isinstance(value, Mapping) else {"command": value}


def _variable(process):
    return "pydeploy_up_" + re.sub(r"[^A-Za-z0-9_]", "_", process)


def _location(stack, processes, route, site, defaults):
    """One route as the template's location."""
    location = {
        "path": route["path"],
        "client_max_body_size": route.get("client_max_body_size") or site.get("client_max_body_size"),
        "read_timeout": route.get("read_timeout") or site.get("read_timeout") or defaults["read_timeout"],
        "connect_timeout": route.get("connect_timeout") or site.get("connect_timeout") or 5,
        "websocket": bool(route.get("websocket")),
        "rate_limit": None,
    }
    if route.get("websocket") and not (route.get("read_timeout") or site.get("read_timeout")):
        location["read_timeout"] = defaults["websocket_read_timeout"]
    if route.get("volume"):
        location.update(
            kind="volume",
            volume=route["volume"],
            root=f"{ROUTE_ROOT}/{route['volume']}/",
            max_age=int(route["max_age"] if route.get("max_age") is not None else defaults["static_max_age"]),
        )
        return location
    process = route.get("process") or "web"
    if process == "web":
        location.update(kind="web", process="web", proxy_pass=f"http://{stack}_web")
    else:
        spec = _process_spec(processes.get(process) or {})
        location.update(
            kind="process",
            process=process,
            variable=_variable(process),
            proxy_pass=f"http://${_variable(process)}:{spec.get('port')}",
        )
    return location


def _legacy_site(server_names, rate_limits):
    routes = [
        {"path": prefix, "process": "web", "rate_limit": dict(limit or {})}
        for prefix, limit in sorted((rate_limits or {}).items())
    ]
    return {"names": list(server_names or []), "routes": [*routes, {"path": "/", "process": "web"}]}


def site_key(site):
    """The stable name of a site's certificate files: its first name, ``*`` as ``_``."""
    names = list(site.get("names") or []) if isinstance(site, Mapping) else []
    return re.sub(r"[^A-Za-z0-9.-]", "_", str(names[0])) if names else ""


def _site_tls(site):
    tls = site.get("tls")
    return tls.get("mode") if isinstance(tls, Mapping) and tls.get("mode") else None


def nginx_plan(sites, stack, processes=None, volumes=None, server_names=None, rate_limits=None, defaults=None):
    """What the proxy's configuration is made of: the sites (each with its names, the names that redirect to
    it and its locations, longest path first), the rate limit zones, the processes other than web that a
    route reaches (each with the names of its containers), the mounts of the volumes the routes serve, every
    name, the names of the stack's certificate (those of the sites without their own ``tls``; every name when
    each site has its own), the sites with their own certificate (``tls_sites``: index, key, mode and names)
    and the name the deploy's checks through the proxy ask for, with the mode and key of its site's
    certificate (``check_tls``, ``check_key``; empty for the stack's)."""
    processes = processes or {}
    volumes = volumes or {}
    defaults = {"read_timeout": 60, "websocket_read_timeout": 3600, "static_max_age": 604800, **(defaults or {})}
    described = list(sites or []) or [_legacy_site(server_names, rate_limits)]
    served = served_volumes(volumes, stack, defaults["static_max_age"])
    plan = {
        "sites": [],
        "zones": [],
        "processes": [],
        "mounts": [],
        "names": [],
        "cert_names": [],
        "tls_sites": [],
        "check_name": "",
        "check_tls": "",
        "check_key": "",
    }
    upstreams, mounted = {}, set()
    for index, site in enumerate(described):
        locations = [_location(stack, processes, route, site, defaults) for route in site.get("routes") or []]
        if not any(location["path"] == "/" for location in locations):
            locations.append(_location(stack, processes, {"path": "/", "process": "web"}, site, defaults))
        paths = {location["path"] for location in locations}
        for route, location in zip(site.get("routes") or [], locations[: len(site.get("routes") or [])], strict=True):
            limit = route.get("rate_limit")
            if limit:
                zone = f"pydeploy_{len(plan['zones']) + 1}"
                plan["zones"].append({"name": zone, "rate": limit["rate"]})
                location["rate_limit"] = {"zone": zone, "burst": int(limit.get("burst", 20))}
        for location in locations:
            if location["kind"] == "process" and location["process"] not in upstreams:
                spec = _process_spec(processes.get(location["process"]) or {})
                replicas = max(int(spec.get("replicas", 1)), 1)
                upstreams[location["process"]] = {
                    "process": location["process"],
                    "variable": location["variable"],
                    "containers": [f"{stack}-{location['process']}-{replica}" for replica in range(1, replicas + 1)],
                }
            if location["kind"] == "volume" and location["volume"] not in mounted:
                mounted.add(location["volume"])
                plan["mounts"].append(
                    {
                        "type": "volume",
                        "source": volume_name(stack, location["volume"]),
                        "target": f"{ROUTE_ROOT}/{location['volume']}",
                        "read_only": True,
                    }
                )
        # The volumes the stack serves (stack_volumes with serve) are served on every site, under their prefix,
        # unless a route of the site takes that path.
        statics = [dict(item, kind="served") for item in served if item["prefix"] not in paths]
        locations.sort(key=lambda item: (-len(item["path"]), item["path"]))
        names = list(site.get("names") or [])
        tls = _site_tls(site)
        key = site_key(site) if tls else ""
        plan["sites"].append(
            {
                "names": names,
                "tls": tls or "",
                "tls_key": key,
                "redirect_from": list(site.get("redirect_from") or []),
                "default": index == 0,
                "hsts": site.get("hsts", True) is not False,
                "client_max_body_size": site.get("client_max_body_size") or defaults.get("client_max_body_size"),
                "statics": statics,
                "locations": locations,
            }
        )
        site_names = names + [name for name in site.get("redirect_from") or [] if name not in names]
        if tls:
            plan["tls_sites"].append({"index": index, "key": key, "mode": tls, "names": site_names})
        for name in site_names:
            if name not in plan["names"]:
                plan["names"].append(name)
            if not tls and name not in plan["cert_names"]:
                plan["cert_names"].append(name)
    if not plan["cert_names"]:
        plan["cert_names"] = list(plan["names"])
    plan["processes"] = [upstreams[name] for name in sorted(upstreams)]
    plan["check_name"] = _check_name(plan["sites"], defaults.get("health_path", "/health"))
    checked = next((site for site in plan["sites"] if plan["check_name"] in site["names"]), {})
    plan["check_tls"], plan["check_key"] = checked.get("tls", ""), checked.get("tls_key", "")
    return plan


def _check_name(sites, health_path):
    """The first name of the first site whose location of the health path proxies to the web process."""
    for site in sites:
        for location in site["locations"]:
            if health_path.startswith(location["path"]):
                if location["kind"] == "web" and site["names"]:
                    return site["names"][0]
                break
    return next((site["names"][0] for site in sites if site["names"]), "")


def _bad_network(value):
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return True
    return False


def _route_errors(where, route, processes, volumes, proxy_runs_workers):
    errors = []
    path = route.get("path")
    if not isinstance(path, str) or not PATH.match(path):
        errors.append(f"{where}.path must be a URL path starting with / (letters, digits, . _ ~ - /), not {path!r}")
    targets = [key for key in ROUTE_KEYS if route.get(key)]
    if len(targets) != 1:
        errors.append(f"{where}: a route goes to one process or one volume (give process or volume)")
    elif targets == ["process"]:
        process = route["process"]
        spec = processes.get(process)
        if spec is None:
            known = ", ".join(sorted(map(str, processes))) or "none"
            errors.append(f"{where}.process: no process {process!r} in stack_processes (known: {known})")
        else:
            spec = _process_spec(spec)
            if not spec.get("port"):
                errors.append(f"{where}.process: stack_processes.{process} has no port to proxy to")
            if process != "web" and spec.get("singleton"):
                errors.append(
                    f"{where}.process: stack_processes.{process} is a singleton; the proxy serves a process of replicas"
                )
            if process != "web" and not proxy_runs_workers:
                errors.append(
                    f"{where}.process: the proxy reaches {process} on its own host, which must be in the worker group"
                )
    else:
        if route["volume"] not in volumes:
            known = ", ".join(sorted(map(str, volumes))) or "none"
            errors.append(f"{where}.volume: no volume {route['volume']!r} in stack_volumes (known: {known})")
        if route.get("websocket") or route.get("rate_limit"):
            errors.append(f"{where}: websocket and rate_limit are for a route to a process")
    limit = route.get("rate_limit")
    if limit:
        errors += _limit_errors(f"{where}.rate_limit", limit)
    errors += _size_errors(f"{where}.client_max_body_size", route.get("client_max_body_size"))
    for key in ("read_timeout", "connect_timeout", "max_age"):
        errors += _seconds_errors(f"{where}.{key}", route.get(key))
    return errors


def _tls_errors(where, tls):
    """What is wrong with a site's own certificate settings (the certificate itself is read by the role)."""
    if tls is None:
        return []
    if not isinstance(tls, Mapping):
        return [f"{where} must be a dict with mode (selfsigned or provided)"]
    errors = []
    unknown = sorted(set(map(str, tls)) - set(SITE_TLS_KEYS))
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(unknown)} ({', '.join(SITE_TLS_KEYS)})")
    mode = tls.get("mode")
    if mode == "acme":
        errors.append(
            f"{where}.mode: acme is for the stack's certificate only (nginx_tls_mode=acme, shared by the sites "
            "without tls); give this site a provided or selfsigned certificate, or leave out its tls"
        )
    elif mode not in SITE_TLS_MODES:
        errors.append(f"{where}.mode must be selfsigned or provided, not {mode!r}")
    if mode == "provided":
        for key in ("certificate", "private_key"):
            if not str(tls.get(key) or "").strip():
                errors.append(f"{where}.{key} is required with mode provided")
    elif mode in SITE_TLS_MODES and any(tls.get(key) for key in ("certificate", "chain", "private_key")):
        errors.append(f"{where}: certificate, chain and private_key are for mode provided only")
    return errors


def _limit_errors(where, limit):
    errors = []
    if not isinstance(limit, Mapping):
        return [f"{where} must be a dict with rate and burst"]
    if not RATE.match(str(limit.get("rate", ""))):
        errors.append(
            f"{where}.rate must be requests per second or minute like 10r/s or 30r/m, not {limit.get('rate')!r}"
        )
    burst = limit.get("burst", 20)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        errors.append(f"{where}.burst must be a number of requests, 0 or more")
    unknown = sorted(set(map(str, limit)) - {"rate", "burst"})
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(unknown)} (rate, burst)")
    return errors


def _size_errors(where, value):
    if value is None or value == "":
        return []
    if not SIZE.match(str(value)):
        return [f"{where} must be a size like 10m, 512k or 0 (no limit), not {value!r}"]
    return []


def _seconds_errors(where, value):
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return [f"{where} must be seconds, 1 or more"]
    return []


def nginx_site_errors(sites, processes=None, volumes=None, rate_limits=None, settings=None):
    """One message per problem of ``nginx_sites`` and of the proxy's other options whose values a type
    cannot check, each naming the variable. ``settings`` holds ``proxy_runs_workers`` (whether the proxy's
    host is in the worker group), ``rate_limit_allow``, ``real_ip_from``, ``gzip_types`` and
    ``client_max_body_size``."""
    processes = processes if isinstance(processes, Mapping) else {}
    volumes = volumes if isinstance(volumes, Mapping) else {}
    settings = settings or {}
    errors = []
    seen = {}
    for index, site in enumerate(sites or []):
        where = f"nginx_sites[{index}]"
        if not isinstance(site, Mapping):
            errors.append(f"{where} must be a dict with names and routes")
            continue
        names = site.get("names") or []
        if not names:
            errors.append(f"{where}.names must name at least one host")
        for key in ("names", "redirect_from"):
            for name in site.get(key) or []:
                if not HOST_NAME.match(str(name)):
                    errors.append(f"{where}.{key}: {name!r} is not a host name")
                elif name in seen:
                    errors.append(f"{where}.{key}: {name} is also {seen[name]}'s")
                seen.setdefault(name, f"{where}.{key}")
        paths = set()
        for number, route in enumerate(site.get("routes") or []):
            route_where = f"{where}.routes[{number}]"
            if not isinstance(route, Mapping):
                errors.append(f"{route_where} must be a dict with path and process or volume")
                continue
            if route.get("path") in paths:
                errors.append(f"{route_where}.path {route.get('path')} is twice in {where}.routes")
            paths.add(route.get("path"))
            errors += _route_errors(route_where, route, processes, volumes, settings.get("proxy_runs_workers", True))
        # Its files are named by its first name, which no other site has (above).
        errors += _tls_errors(f"{where}.tls", site.get("tls"))
        errors += _size_errors(f"{where}.client_max_body_size", site.get("client_max_body_size"))
        for key in ("read_timeout", "connect_timeout"):
            errors += _seconds_errors(f"{where}.{key}", site.get(key))
    if sites and rate_limits:
        errors.append("nginx_rate_limits: with nginx_sites, give each route its rate_limit instead")
    for prefix, limit in sorted((rate_limits or {}).items()):
        if not isinstance(prefix, str) or not PATH.match(prefix):
            errors.append(f"nginx_rate_limits: {prefix!r} is not a URL path starting with /")
        errors += _limit_errors(f"nginx_rate_limits[{prefix!r}]", limit)
    for key in ("rate_limit_allow", "real_ip_from"):
        for value in settings.get(key) or []:
            if _bad_network(value):
                errors.append(f"nginx_{key}: {value!r} is not an address or a network (127.0.0.1, 10.0.0.0/8)")
    for value in settings.get("gzip_types") or []:
        if not MIME_TYPE.match(str(value)):
            errors.append(f"nginx_gzip_types: {value!r} is not a media type like text/css")
    errors += _size_errors("nginx_client_max_body_size", settings.get("client_max_body_size"))
    return errors


class FilterModule:
    def filters(self):
        return {"nginx_plan": nginx_plan, "nginx_site_errors": nginx_site_errors}
