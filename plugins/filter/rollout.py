# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxy's upstream across web hosts: what a switch writes while one host of the fleet moves its replicas,
the other hosts' replicas kept as they serve."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible_collections.pydeploy.stack.plugins.filter.fleet import private_address

_SERVER = re.compile(r"^\s*server\s+(\S+)", re.MULTILINE)


def upstream_file_servers(content) -> list[str]:
    """The servers an upstream file (roles/nginx/templates/upstream.conf.j2) lists, in order."""
    return _SERVER.findall(str(content or ""))


def _server_address(server: str) -> str:
    host = server.rsplit(":", 1)[0] if ":" in server else server
    return host.strip("[]")


def rollout_upstream(hosts, hostvars, proxies, current="", serving="app_serving"):
    """The upstream servers of the web hosts ``hosts``, each host's own: the servers it noted as serving in this
    run (its fact ``serving``), or else those of the proxy's ``current`` upstream file that are its own - the
    ones on its private address when it publishes (a proxy of ``proxies`` runs on another host), the ones
    named by container (no address of a publishing host) when it does not. A host that left the web group
    leaves the upstream; the order is the hosts' order."""
    if not isinstance(hostvars, Mapping):
        raise TypeError("rollout_upstream: hostvars must be a mapping of hosts to their variables")
    hosts = list(hosts or [])
    proxies = list(proxies or [])
    read = upstream_file_servers(current)
    publishing = {host: private_address(hostvars, host) for host in hosts if any(p != host for p in proxies)}
    addresses = set(publishing.values())
    servers = []
    for host in hosts:
        found = hostvars[host] if host in hostvars else {}
        noted = found.get(serving)
        if noted is not None:
            own = list(noted)
        elif host in publishing:
            own = [server for server in read if _server_address(server) == publishing[host]]
        else:
            own = [server for server in read if _server_address(server) not in addresses]
        servers.extend(server for server in own if server not in servers)
    return servers


def rollout_live_slot(content, stack: str, address: str = "", publish_port: int = 0) -> str:
    """The slot (``a`` or ``b``) of this host's replicas that an upstream file names, '' when none: by their
    container names, or, published on ``address``, by their ports (slot b from ``publish_port`` + 50)."""
    if not address:
        found = re.findall(re.escape(stack) + r"-web-([ab])-", str(content or ""))
        return found[0] if found else ""
    for server in upstream_file_servers(content):
        if _server_address(server) == address and ":" in server:
            port = server.rsplit(":", 1)[1]
            if port.isdigit():
                return "b" if int(port) - int(publish_port) > 50 else "a"
    return ""


class FilterModule:
    def filters(self):
        return {"rollout_upstream": rollout_upstream, "rollout_live_slot": rollout_live_slot}
