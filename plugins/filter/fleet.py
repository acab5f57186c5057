# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stack on several hosts: the address each host is reached at by the others, who consumes which service,
and the firewall rules (the engine's ``DOCKER-USER`` chain) that let only those consumers in.

A service is *remote* for a consumer on another host. Two inventory names of the machine Ansible runs on
(``ansible_connection: local``) are one host. The consumers of PostgreSQL, Redis and MongoDB are the
hosts of the ``web``, ``worker``, ``beat`` and ``cron`` groups; those of the web processes are the ``proxy``
hosts. A service with a consumer on another host publishes on its host's private address; on one host nothing
changes (the containers reach each other by name on the stack's network).
"""

from __future__ import annotations

import ipaddress
import shlex

from ansible.errors import AnsibleFilterError

APP_GROUPS = ("web", "worker", "beat", "cron")
CONSUMER_GROUPS = {"postgres": APP_GROUPS, "redis": APP_GROUPS, "mongodb": APP_GROUPS, "web": ("proxy",)}
# The port each data service listens on inside its container (what the engine's DOCKER-USER chain sees after
# the published port was translated).
CONTAINER_PORTS = {"postgres": 5432, "redis": 6379, "mongodb": 27017}
CHAIN = "DOCKER-USER"
TAG = "pydeploy.stack"


def _vars(hostvars, host) -> dict:
    try:
        return hostvars[host]
    except KeyError:
        return {}


def private_address(hostvars, host):
    """The address the other hosts of the fleet reach ``host`` at: its ``private_address``, else its
    ``ansible_host``, else its name."""
    host_vars = _vars(hostvars, host)
    for name in ("private_address", "ansible_host"):
        value = host_vars.get(name) if hasattr(host_vars, "get") else None
        if value not in (None, ""):
            return str(value)
    return str(host)


def _machine(hostvars, host):
    """What tells hosts apart: every name Ansible reaches locally is the controller's; others, their name (two
    names that share an address may still be two machines behind one address, each a port of its own)."""
    host_vars = _vars(hostvars, host)
    connection = host_vars.get("ansible_connection") if hasattr(host_vars, "get") else None
    return ("local",) if connection == "local" else ("host", str(host))


def service_consumers(groups, service, hosts=None):
    """The hosts that consume ``service`` (postgres, redis, mongodb or web): those of its consumer groups,
    within ``hosts`` (the run's hosts, such as the ``--limit``) when given; sorted, each once."""
    if service not in CONSUMER_GROUPS:
        raise AnsibleFilterError(
            f"service_consumers: unknown service {service!r} (known: {', '.join(CONSUMER_GROUPS)})"
        )
    found = set()
    for group in CONSUMER_GROUPS[service]:
        found.update(str(host) for host in (groups or {}).get(group) or [])
    if hosts is not None:
        found &= {str(host) for host in hosts}
    return sorted(found)


def fleet_service(hostvars, groups, service, host, hosts=None):
    """How ``service`` on ``host`` is reached: ``remote`` (a consumer is on another host), ``address`` (the
    host's private address), ``consumers`` (the consumers on other hosts, by name), ``consumer_addresses``
    (their private addresses by name) and ``sources`` (those addresses, sorted, each once)."""
    machine = _machine(hostvars, host)
    others = [
        consumer
        for consumer in service_consumers(groups, service, hosts)
        if consumer != str(host) and _machine(hostvars, consumer) != machine
    ]
    addresses = {consumer: private_address(hostvars, consumer) for consumer in others}
    return {
        "remote": bool(others),
        "address": private_address(hostvars, host),
        "consumers": others,
        "consumer_addresses": addresses,
        "sources": sorted(set(addresses.values())),
    }


HINT = "set the host var private_address to its IPv4 address on the network the hosts share"


def address_error(address, host):
    """Why ``address`` cannot be ``host``'s private address (an IPv4 address the other hosts reach), or ''."""
    try:
        parsed = ipaddress.ip_address(str(address))
    except ValueError:
        return f"{host}: private_address {address!r} is not an IP address ({HINT})"
    if parsed.version != 4:
        return f"{host}: private_address {address} is IPv6, which the fleet's firewall rules do not cover ({HINT})"
    if parsed.is_loopback or parsed.is_unspecified or parsed.is_multicast:
        return f"{host}: private_address {address} is not reachable from the other hosts ({HINT})"
    return ""


def fleet_service_errors(fleet, service, host):
    """One message per unusable address of a remote ``service`` (its host's, its consumers'), each naming
    the host and ``private_address``; empty when the service is not remote or all is well."""
    if not fleet.get("remote"):
        return []
    errors = []
    message = address_error(fleet.get("address"), host)
    if message:
        errors.append(f"{service} is remote for {', '.join(fleet.get('consumers') or [])}: {message}")
    for consumer, source in sorted((fleet.get("consumer_addresses") or {}).items()):
        message = address_error(source, consumer)
        if message:
            errors.append(f"{consumer} consumes {service} on {host}: {message}")
    return errors


def _rules(stack, service, port, sources):
    """The rules of one published service, bridge left blank: from the stack's own network, from each
    consumer, then a DROP for everybody else."""
    rules = [{"service": service, "port": int(port), "source": "stack", "jump": "RETURN"}]
    rules += [{"service": service, "port": int(port), "source": source, "jump": "RETURN"} for source in sources]
    rules.append({"service": service, "port": int(port), "source": "any", "jump": "DROP"})
    for rule in rules:
        rule["stack"] = str(stack)
    return rules


def fleet_firewall(hostvars, groups, host, hosts=None, stack=None):
    """The firewall rules ``host`` needs for what it publishes to other hosts of the fleet: for each data
    service it runs (no external URL) with consumers on other hosts, and for its web processes when a proxy is
    on another host, the container port open to the stack's own network and to the consumers' private
    addresses only, closed to everybody else. Empty on one host."""
    host = str(host)
    host_vars = _vars(hostvars, host)
    stack = stack if stack is not None else host_vars.get("stack_name", "")
    rules = []
    for service, port in CONTAINER_PORTS.items():
        if host not in [str(member) for member in (groups or {}).get(service) or []]:
            continue
        if hosts is not None and host not in [str(member) for member in hosts]:
            continue
        if host_vars.get(f"{service}_external_url") not in (None, ""):
            continue
        fleet = fleet_service(hostvars, groups, service, host, hosts)
        if fleet["remote"]:
            rules += _rules(stack, service, port, fleet["sources"])
    if host in [str(member) for member in (groups or {}).get("web") or []]:
        fleet = fleet_service(hostvars, groups, "web", host, hosts)
        web = ((host_vars.get("stack_processes") or {}).get("web") or {}) if hasattr(host_vars, "get") else {}
        if fleet["remote"] and web.get("port"):
            rules += _rules(stack, "web", web["port"], fleet["sources"])
    return rules


def _comment(rule, bridge):
    return f"{TAG} {rule['stack']} {rule['service']} {rule['port']} {bridge} {rule['source']} {rule['jump']}"


def firewall_rules(rules, bridge):
    """``rules`` as the parameters of ``ansible.builtin.iptables`` in ``DOCKER-USER`` for the stack's
    ``bridge``, in the order to insert them each at the top: the DROPs first, so that the RETURNs end above
    them. Each carries a comment that names it whole (what ``firewall_stale`` reads back)."""
    if not bridge:
        raise AnsibleFilterError("firewall_rules: no bridge given (the stack network's interface)")
    ordered = [rule for rule in rules if rule["jump"] == "DROP"] + [rule for rule in rules if rule["jump"] != "DROP"]
    return [_params(rule, bridge) for rule in ordered]


def _params(rule, bridge):
    params = {
        "chain": CHAIN,
        "protocol": "tcp",
        "out_interface": bridge,
        "destination_port": str(rule["port"]),
        "jump": rule["jump"],
        "comment": _comment(rule, bridge),
    }
    if rule["source"] == "stack":
        params["in_interface"] = bridge
    elif rule["source"] != "any":
        params["source"] = rule["source"]
    return params


def _parse_comment(comment, stack):
    parts = comment.split(" ")
    if len(parts) != 7 or parts[0] != TAG or parts[1] != str(stack):
        return None
    stack_name, service, port, bridge, source, jump = parts[1:]
    if not port.isdigit() or jump not in ("RETURN", "DROP"):
        return None
    return {"stack": stack_name, "service": service, "port": int(port), "source": source, "jump": jump}, bridge


def firewall_present(lines, stack):
    """The stack's rules found in ``iptables -S DOCKER-USER`` output (``lines``), as ``fleet_firewall`` gives
    them, each with its ``bridge`` and ``comment``; rules of other stacks and of anybody else are left out."""
    found = []
    for line in lines or []:
        try:
            words = shlex.split(str(line))
        except ValueError:
            continue
        if "--comment" not in words or words.index("--comment") + 1 >= len(words):
            continue
        comment = words[words.index("--comment") + 1]
        parsed = _parse_comment(comment, stack)
        if parsed is None:
            continue
        rule, bridge = parsed
        found.append({**rule, "bridge": bridge, "comment": comment})
    return found


def _key(rule):
    return (rule["service"], int(rule["port"]), rule["source"], rule["jump"])


def firewall_stale(present, wanted, bridge):
    """The stack's rules ``present`` (``firewall_present``) that ``wanted`` (``fleet_firewall``) no longer
    holds on ``bridge``, as ``ansible.builtin.iptables`` parameters (to remove)."""
    wanted_comments = {_comment(rule, bridge) for rule in wanted}
    return [_params(rule, rule["bridge"]) for rule in present if rule["comment"] not in wanted_comments]


def firewall_missing(present, wanted):
    """The ``wanted`` rules (``fleet_firewall``) that are not ``present`` on any bridge (the preflight's check
    that the rules are still there, such as after a reboot of the host)."""
    have = {_key(rule) for rule in present}
    return [rule for rule in wanted if _key(rule) not in have]


class FilterModule:
    def filters(self):
        return {
            "private_address": private_address,
            "service_consumers": service_consumers,
            "fleet_service": fleet_service,
            "fleet_service_errors": fleet_service_errors,
            "fleet_firewall": fleet_firewall,
            "firewall_rules": firewall_rules,
            "firewall_present": firewall_present,
            "firewall_stale": firewall_stale,
            "firewall_missing": firewall_missing,
        }
