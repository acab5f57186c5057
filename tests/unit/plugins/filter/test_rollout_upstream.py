from __future__ import annotations

import pytest
from ansible_collections.pydeploy.stack.plugins.filter.processes import rollout_batches, web_rollout
from ansible_collections.pydeploy.stack.plugins.filter.rollout import rollout_live_slot, rollout_upstream

HOSTVARS = {
    "proxy": {"ansible_host": "10.0.0.1"},
    "web1": {"ansible_host": "127.0.0.1", "private_address": "10.0.0.11"},
    "web2": {"ansible_host": "10.0.0.12"},
    "web3": {"private_address": "10.0.0.13"},
}
CURRENT = """
upstream ff_web {
    server 10.0.0.11:18001 max_fails=3 fail_timeout=10s;
    server 10.0.0.12:18051 max_fails=3 fail_timeout=10s;
    server 10.0.0.13:18001 max_fails=3 fail_timeout=10s;
    server 10.0.0.99:18001 max_fails=3 fail_timeout=10s;
    keepalive 32;
}
"""


def test_a_replica_publishes_on_the_private_address_by_slot_and_number():
    plan = web_rollout([], "ff", "", "s1", 2, 8000, 0, "10.0.0.11", 18000)
    assert plan["next_servers"] == ["10.0.0.11:18001", "10.0.0.11:18002"]
    assert plan["published"]["ff-web-a-2"] == {"name": "ff-web-a-2", "published_ports": ["10.0.0.11:18002:8000"]}
    running = [{"Names": [f"/ff-web-a-{n}"], "State": "running", "Labels": {"pydeploy.slot": "a"}} for n in (1, 2)]
    plan = web_rollout(running, "ff", "a", "s2", 2, 8000, 0, "10.0.0.11", 18000)
    assert plan["live_servers"] == ["10.0.0.11:18001", "10.0.0.11:18002"]
    assert plan["next_servers"] == ["10.0.0.11:18051", "10.0.0.11:18052"]
    assert plan["batches"][0]["retire_servers"] == ["10.0.0.11:18001", "10.0.0.11:18002"]
    # Without an address: names on the stack's network, nothing published (a one-host stack as before).
    plan = web_rollout(running, "ff", "a", "s2", 2, 8000)
    assert plan["next_servers"] == ["ff-web-b-1:8000", "ff-web-b-2:8000"]
    assert plan["published"]["ff-web-b-1"]["published_ports"] == []


def test_an_ipv6_private_address_is_bracketed():
    steps = rollout_batches(["ff-web-b-1"], ["ff-web-a-1"], 0, 8000, "fd00::5", 18000)
    assert steps[0]["servers"] == ["[fd00::5]:18051"] and steps[0]["retire_servers"] == ["[fd00::5]:18001"]


def test_a_switch_keeps_the_other_hosts_serving_replicas():
    hostvars = {**HOSTVARS, "web1": {**HOSTVARS["web1"], "app_serving": ["10.0.0.11:18051", "10.0.0.11:18052"]}}
    servers = rollout_upstream(["web1", "web2", "web3"], hostvars, ["proxy"], CURRENT)
    # web1's new replicas, web2 and web3 as the proxy serves them; a host no longer in the web group leaves.
    assert servers == ["10.0.0.11:18051", "10.0.0.11:18052", "10.0.0.12:18051", "10.0.0.13:18001"]


def test_what_a_host_noted_wins_over_the_file_and_no_file_is_no_server():
    hostvars = {name: dict(found) for name, found in HOSTVARS.items()}
    hostvars["web2"]["app_serving"] = ["10.0.0.12:18001"]
    assert rollout_upstream(["web1", "web2"], hostvars, ["proxy"], "") == ["10.0.0.12:18001"]
    assert rollout_upstream(["web1", "web2"], hostvars, ["proxy"], CURRENT) == ["10.0.0.11:18001", "10.0.0.12:18001"]


def test_a_web_host_with_the_only_proxy_keeps_its_replicas_by_name():
    current = "server ff-web-a-1:8000 max_fails=3;\nserver 10.0.0.12:18001 max_fails=3;\n"
    hostvars = {name: dict(found) for name, found in HOSTVARS.items()}
    hostvars["web2"]["app_serving"] = ["10.0.0.12:18051"]
    # The proxy runs on web1: web1 publishes nothing, web2 publishes.
    assert rollout_upstream(["web1", "web2"], hostvars, ["web1"], current) == ["ff-web-a-1:8000", "10.0.0.12:18051"]


def test_rollout_upstream_wants_hostvars():
    with pytest.raises(TypeError):
        rollout_upstream(["web1"], None, ["proxy"])


def test_the_live_slot_by_name_or_by_published_port():
    assert rollout_live_slot("server ff-web-b-1:8000 x;", "ff") == "b"
    assert rollout_live_slot("server other-web-a-1:8000 x;", "ff") == ""
    assert rollout_live_slot(CURRENT, "ff", "10.0.0.12", 18000) == "b"
    assert rollout_live_slot(CURRENT, "ff", "10.0.0.13", 18000) == "a"
    assert rollout_live_slot(CURRENT, "ff", "10.0.0.50", 18000) == ""
