from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.pydeploy.stack.plugins.filter.fleet import (
    address_error,
    firewall_missing,
    firewall_present,
    firewall_rules,
    firewall_stale,
    fleet_firewall,
    fleet_service,
    fleet_service_errors,
    private_address,
    service_consumers,
)

WEB = {"stack_name": "shop", "stack_processes": {"web": {"port": 8000}}}
HOSTVARS = {
    "db-1": {"stack_name": "shop", "private_address": "10.0.0.5", "ansible_host": "203.0.113.5"},
    "web-1": {**WEB, "private_address": "10.0.0.11"},
    "web-2": {**WEB, "ansible_host": "10.0.0.12"},
    "edge-1": {"stack_name": "shop", "private_address": "10.0.0.2"},
}
FLEET = {
    "all": list(HOSTVARS),
    "postgres": ["db-1"],
    "redis": ["db-1"],
    "web": ["web-1", "web-2"],
    "worker": ["db-1", "web-2"],
    "cron": ["web-1"],
    "proxy": ["edge-1"],
}
ONE = {group: ["vm"] for group in ("postgres", "redis", "web", "worker", "cron", "proxy")}


def test_a_host_is_reached_at_its_private_address_else_its_ansible_host_else_its_name():
    assert private_address(HOSTVARS, "db-1") == "10.0.0.5"
    assert private_address(HOSTVARS, "web-2") == "10.0.0.12"
    assert private_address({"vm": {}}, "vm") == "vm"
    assert private_address({}, "unknown") == "unknown"


def test_the_consumers_of_a_data_service_are_the_app_hosts_and_of_web_the_proxies():
    assert service_consumers(FLEET, "postgres") == ["db-1", "web-1", "web-2"]
    assert service_consumers(FLEET, "web") == ["edge-1"]
    assert service_consumers(FLEET, "redis", ["db-1", "web-1"]) == ["db-1", "web-1"], "only the run's hosts"
    with pytest.raises(AnsibleFilterError, match="unknown service 'nginx'"):
        service_consumers(FLEET, "nginx")


def test_a_service_is_remote_when_a_consumer_is_on_another_host():
    postgres = fleet_service(HOSTVARS, FLEET, "postgres", "db-1")
    assert postgres == {
        "remote": True,
        "address": "10.0.0.5",
        "consumers": ["web-1", "web-2"],
        "consumer_addresses": {"web-1": "10.0.0.11", "web-2": "10.0.0.12"},
        "sources": ["10.0.0.11", "10.0.0.12"],
    }
    assert fleet_service({"vm": {}}, ONE, "postgres", "vm")["remote"] is False
    # Within a --limit that holds only the database's host, nobody else consumes it.
    assert fleet_service(HOSTVARS, FLEET, "postgres", "db-1", ["db-1"])["remote"] is False
    # Two names of the machine Ansible runs on are one host; two hosts behind one address (ports) are two.
    local = {"localhost": {"ansible_connection": "local"}, "twin": {"ansible_connection": "local"}}
    both = {"postgres": ["localhost"], "web": ["localhost"], "beat": ["twin"]}
    assert fleet_service(local, both, "postgres", "localhost")["remote"] is False
    forwarded = {"db": {"ansible_host": "127.0.0.1", "ansible_port": 2201}, "app": {"ansible_host": "127.0.0.1"}}
    assert fleet_service(forwarded, {"postgres": ["db"], "web": ["app"]}, "postgres", "db")["remote"] is True


def test_an_unusable_private_address_is_named_with_its_host():
    assert address_error("10.0.0.5", "db-1") == ""
    assert "db-1: private_address 127.0.0.1 is not reachable" in address_error("127.0.0.1", "db-1")
    assert "is not an IP address" in address_error("db-1.internal", "db-1")
    assert "is IPv6" in address_error("fd00::5", "db-1")
    assert "not reachable" in address_error("0.0.0.0", "db-1")  # noqa: S104


def test_a_remote_service_on_a_loopback_address_fails_naming_the_host_and_private_address():
    hostvars = {**HOSTVARS, "db-1": {"ansible_host": "127.0.0.1"}, "web-2": {"ansible_host": "127.0.0.1"}}
    errors = fleet_service_errors(fleet_service(hostvars, FLEET, "postgres", "db-1"), "postgres", "db-1")
    assert errors == [
        "postgres is remote for web-1, web-2: db-1: private_address 127.0.0.1 is not reachable from the other hosts"
        " (set the host var private_address to its IPv4 address on the network the hosts share)",
        "web-2 consumes postgres on db-1: web-2: private_address 127.0.0.1 is not reachable from the other hosts"
        " (set the host var private_address to its IPv4 address on the network the hosts share)",
    ]
    # On one host the address is never used.
    assert (
        fleet_service_errors(fleet_service({"vm": {"ansible_host": "127.0.0.1"}}, ONE, "redis", "vm"), "redis", "vm")
        == []
    )


def rule(service, port, source, jump):
    return {"stack": "shop", "service": service, "port": port, "source": source, "jump": jump}


def test_the_database_host_lets_in_the_stack_network_and_the_app_hosts_only():
    assert fleet_firewall(HOSTVARS, FLEET, "db-1") == [
        rule("postgres", 5432, "stack", "RETURN"),
        rule("postgres", 5432, "10.0.0.11", "RETURN"),
        rule("postgres", 5432, "10.0.0.12", "RETURN"),
        rule("postgres", 5432, "any", "DROP"),
        rule("redis", 6379, "stack", "RETURN"),
        rule("redis", 6379, "10.0.0.11", "RETURN"),
        rule("redis", 6379, "10.0.0.12", "RETURN"),
        rule("redis", 6379, "any", "DROP"),
    ]


def test_web_hosts_let_in_the_proxies_on_the_web_port_and_one_host_needs_no_rule():
    assert fleet_firewall(HOSTVARS, FLEET, "web-1") == [
        rule("web", 8000, "stack", "RETURN"),
        rule("web", 8000, "10.0.0.2", "RETURN"),
        rule("web", 8000, "any", "DROP"),
    ]
    assert fleet_firewall(HOSTVARS, FLEET, "edge-1") == []
    assert fleet_firewall({"vm": dict(WEB)}, ONE, "vm") == []


def test_an_external_service_needs_no_rule():
    hostvars = {**HOSTVARS, "db-1": {**HOSTVARS["db-1"], "postgres_external_url": "postgresql://x@db/x"}}
    assert {rule["service"] for rule in fleet_firewall(hostvars, FLEET, "db-1")} == {"redis"}


def test_rules_are_inserted_drop_first_so_that_the_returns_end_above_it():
    rules = firewall_rules(fleet_firewall(HOSTVARS, FLEET, "web-1"), "br-0123456789ab")
    assert rules == [
        {"chain": "DOCKER-USER", "protocol": "tcp", "out_interface": "br-0123456789ab", "destination_port": "8000",
         "jump": "DROP", "comment": "pydeploy.stack shop web 8000 br-0123456789ab any DROP"},
        {"chain": "DOCKER-USER", "protocol": "tcp", "out_interface": "br-0123456789ab", "destination_port": "8000",
         "jump": "RETURN", "comment": "pydeploy.stack shop web 8000 br-0123456789ab stack RETURN",
         "in_interface": "br-0123456789ab"},
        {"chain": "DOCKER-USER", "protocol": "tcp", "out_interface": "br-0123456789ab", "destination_port": "8000",
         "jump": "RETURN", "comment": "pydeploy.stack shop web 8000 br-0123456789ab 10.0.0.2 RETURN",
         "source": "10.0.0.2"},
    ]  # fmt: skip
    with pytest.raises(AnsibleFilterError, match="no bridge"):
        firewall_rules([], "")


LISTED = """\
-N DOCKER-USER
-A DOCKER-USER -s 10.0.0.2/32 -o br-0123456789ab -p tcp -m tcp --dport 8000 -m comment --comment "pydeploy.stack shop web 8000 br-0123456789ab 10.0.0.2 RETURN" -j RETURN
-A DOCKER-USER -s 10.0.0.9/32 -o br-0123456789ab -p tcp -m tcp --dport 8000 -m comment --comment "pydeploy.stack shop web 8000 br-0123456789ab 10.0.0.9 RETURN" -j RETURN
-A DOCKER-USER -o br-0123456789ab -p tcp -m tcp --dport 8000 -m comment --comment "pydeploy.stack shop web 8000 br-0123456789ab any DROP" -j DROP
-A DOCKER-USER -o br-ffffffffffff -p tcp -m tcp --dport 8000 -m comment --comment "pydeploy.stack other web 8000 br-ffffffffffff any DROP" -j DROP
-A DOCKER-USER -s 192.0.2.0/24 -m comment --comment "an operator's own" -j DROP
-A DOCKER-USER -j RETURN
"""  # noqa: E501


def test_only_the_stacks_own_rules_are_read_back_and_the_stale_ones_removed():
    present = firewall_present(LISTED.splitlines(), "shop")
    assert [(item["source"], item["jump"], item["bridge"]) for item in present] == [
        ("10.0.0.2", "RETURN", "br-0123456789ab"),
        ("10.0.0.9", "RETURN", "br-0123456789ab"),
        ("any", "DROP", "br-0123456789ab"),
    ]
    wanted = fleet_firewall(HOSTVARS, FLEET, "web-1")
    stale = firewall_stale(present, wanted, "br-0123456789ab")
    assert [item["comment"] for item in stale] == ["pydeploy.stack shop web 8000 br-0123456789ab 10.0.0.9 RETURN"]
    assert stale[0]["source"] == "10.0.0.9"
    # The same rules on a bridge that is no longer the stack network's are all stale.
    assert len(firewall_stale(present, wanted, "br-aaaaaaaaaaaa")) == 3


def test_the_preflight_finds_the_rules_that_went_missing():
    present = firewall_present(LISTED.splitlines(), "shop")
    wanted = fleet_firewall(HOSTVARS, FLEET, "web-1")
    assert firewall_missing(present, wanted) == [rule("web", 8000, "stack", "RETURN")]
    assert firewall_missing([], wanted) == wanted
    assert firewall_missing(firewall_present([], "shop"), []) == []
