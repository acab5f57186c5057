# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which of the proxy's server names a certificate does not cover (its subject alternative names, as
community.crypto's x509_certificate_info gives them: ``DNS:www.example.com``, ``IP:192.0.2.1``)."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def _ip(text):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _dns_covers(pattern, name):
    """RFC 6125 6.4: a name matches itself (case-insensitive, no trailing dot); ``*`` matches exactly one
    whole left-most label, and a wildcard within a label or in another place matches nothing."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if "*" not in pattern:
        return pattern == name
    label, _dot, rest = pattern.partition(".")
    if label != "*" or not rest or "*" in rest:
        return False
    first, _dot, parent = name.partition(".")
    return bool(first) and parent == rest


def tls_uncovered_names(names, sans):
    """The entries of ``names`` (host names or IP addresses) that no entry of ``sans`` covers, in order."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise AnsibleFilterError("tls_uncovered_names: the names must be a list")
    dns, ips = [], []
    for san in sans or []:
        kind, _colon, value = str(san).partition(":")
        if kind == "DNS":
            dns.append(value)
        elif kind in ("IP", "IP Address"):
            ips.append(_ip(value.strip("[]")))
    uncovered = []
    for name in names:
        address = _ip(str(name))
        if address is not None:
            covered = address in ips
        else:
            covered = any(_dns_covers(pattern, str(name)) for pattern in dns)
        if not covered:
            uncovered.append(name)
    return uncovered


class FilterModule:
    def filters(self):
        return {"tls_uncovered_names": tls_uncovered_names}
