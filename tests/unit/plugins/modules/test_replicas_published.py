"""Unit tests of the replicas module's published ports: what it accepts, and that a container without any keeps
the description digest it had (no replacement of the replicas of a one-host stack)."""

from __future__ import annotations

import pytest
from ansible_collections.pydeploy.stack.plugins.modules import replicas


def params(**overrides):
    base = {key: None for key in replicas.SHARED}
    base.update(
        published_ports=[], volumes=[], env={}, labels={}, security={}, network="shop", restart_policy="no",
        log_driver="json-file", log_options={},
    )  # fmt: skip
    base.update(overrides)
    return base


def test_a_port_is_published_on_one_address():
    assert replicas.parse_published("10.0.0.5:18001:8000") == ("10.0.0.5", 18001, 8000)
    assert replicas.parse_published("[fd00::5]:18051:8000") == ("fd00::5", 18051, 8000)
    for wrong in ("18001:8000", "0.0.0.0:18001", "10.0.0.5:70000:8000", "host.example:18001:8000", ""):
        with pytest.raises(ValueError, match="ADDRESS:HOST_PORT:CONTAINER_PORT"):
            replicas.parse_published(wrong)


def test_the_digest_counts_published_ports_only_where_there_are_some():
    plain = params()
    spec = replicas.describe(plain, {"name": "shop-web-a-1"})
    published = replicas.describe(plain, {"name": "shop-web-a-1", "published_ports": ["10.0.0.5:18001:8000"]})
    assert spec["published_ports"] == [] and published["published_ports"] == ["10.0.0.5:18001:8000"]
    digest = replicas.config_digest(plain, spec, "sha256:1", {})
    assert digest == replicas.config_digest(
        params(published_ports=None), {**spec, "published_ports": None}, "sha256:1", {}
    )
    assert digest != replicas.config_digest(plain, published, "sha256:1", {})
