"""Unit tests of the health_check module: arguments, results, masking.  No network: transports are faked."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.pydeploy.stack.plugins.module_utils import _health
from ansible_collections.pydeploy.stack.plugins.modules import health_check

NO_LOG = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def run_module(capsys, args: dict) -> tuple[int, dict, str]:
    """Run main() as Ansible would; return the exit code, the parsed result and the raw output."""
    with patch_module_args(args), pytest.raises(SystemExit) as caught:
        health_check.main()
    out = capsys.readouterr().out
    return caught.value.code, json.loads(out), out


@pytest.fixture
def http_replies(monkeypatch):
    """Fake HttpCheck.request: each call returns the next (status, body); the last one repeats."""
    replies: list[tuple[int, bytes]] = []
    seen: list[dict] = []

    def request(self, timeout):
        seen.append({"url": self.target, "headers": dict(self.headers), "timeout": timeout})
        status, body = replies.pop(0) if len(replies) > 1 else replies[0]
        return status, body, None  # no Location header

    monkeypatch.setattr(_health.HttpCheck, "request", request)
    return replies, seen


def test_no_check_is_an_error(capsys):
    code, result, _ = run_module(capsys, {})
    assert code == 1
    assert result["failed"] is True
    assert result["msg"] == "no check given: set at least one of http, postgres, redis"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"timeout": -1}, "timeout must be at least 0, got -1"),
        ({"consecutive": 0}, "consecutive must be at least 1, got 0"),
        ({"request_timeout": 0}, "request_timeout must be at least 0.001, got 0"),
    ],
)
def test_numbers_are_checked(capsys, args, message):
    code, result, _ = run_module(capsys, {"http": [{"url": "http://127.0.0.1/"}], **args})
    assert code == 1
    assert result["msg"] == message


def test_bad_check_configuration_fails_at_once(capsys):
    code, result, _ = run_module(capsys, {"http": [{"url": "ftp://u:planted-pw@127.0.0.1/"}]})
    assert code == 1
    assert result["msg"] == "http check url must be http(s)://HOST/PATH, got ftp://u:********@127.0.0.1/"


def test_postgres_url_and_host_are_exclusive(capsys):
    code, result, out = run_module(
        capsys, {"postgres": [{"url": "postgresql://a:planted-pw@db/x", "host": "127.0.0.1"}]}
    )
    assert code == 1
    assert "mutually exclusive: url|host" in result["msg"]
    assert "planted-pw" not in out


def test_postgres_needs_url_or_host(capsys):
    code, result, _ = run_module(capsys, {"postgres": [{"user": "app"}]})
    assert code == 1
    assert "one of the following is required: url, host" in result["msg"]


@pytest.mark.parametrize(
    ("kind", "library", "check"),
    [("postgres", "psycopg", {"host": "db"}), ("redis", "redis", {"url": "redis://127.0.0.1:6379/0"})],
)
def test_missing_library_fails_cleanly(capsys, monkeypatch, kind, library, check):
    monkeypatch.setattr(_health, library, None)
    code, result, _ = run_module(capsys, {kind: [check]})
    assert code == 1
    assert result["msg"].startswith(f"Failed to import the required Python library ({library})")
    assert "Traceback" not in result["msg"]


def test_http_polls_until_healthy(capsys, http_replies):
    replies, seen = http_replies
    replies += [(503, b'{"status": "starting"}')] * 2 + [(200, b'{"status": "ok", "checks": {"db": "ok"}}')]
    code, result, _ = run_module(
        capsys,
        {
            "http": [
                {
                    "url": "http://127.0.0.1:8000/health",
                    "name": "app",
                    "json": {"status": "ok", "checks.db": "ok"},
                    "headers": {"Host": "app.example.com"},
                    "request_timeout": 2,
                }
            ],
            "interval": 0,
        },
    )
    assert code == 0, result
    assert result["changed"] is False
    assert result["msg"].startswith("1 health check(s) healthy after")
    (check,) = result["checks"]
    assert check == {
        "name": "app",
        "kind": "http",
        "target": "http://127.0.0.1:8000/health",
        "healthy": True,
        "attempts": 3,
        "latency_ms": check["latency_ms"],
        "status": 200,
        "body": {"status": "ok", "checks": {"db": "ok"}},
        "error": None,
    }
    assert isinstance(check["latency_ms"], float)
    assert isinstance(result["elapsed"], float)
    assert [s["headers"] for s in seen] == [{"Host": "app.example.com"}] * 3
    assert {s["timeout"] for s in seen} == {2.0}


def test_check_mode_runs_the_checks_too(capsys, http_replies):
    replies, seen = http_replies
    replies.append((200, b"ok"))
    code, result, _ = run_module(
        capsys, {"http": [{"url": "http://127.0.0.1/", "contains": "ok"}], "_ansible_check_mode": True}
    )
    assert code == 0
    assert result["changed"] is False
    assert result["checks"][0]["healthy"] is True
    assert len(seen) == 1


def test_timeout_fails_with_each_failing_check_and_returns_checks(capsys, http_replies):
    replies, _ = http_replies
    replies.append((200, b'{"status": "degraded"}'))
    code, result, _ = run_module(
        capsys,
        {"http": [{"url": "http://127.0.0.1:8000/health", "json": {"status": "ok"}}], "timeout": 0},
    )
    assert code == 1
    assert result["failed"] is True
    assert result["msg"].startswith("1 of 1 health check(s) not healthy after ")
    assert result["msg"].endswith(": http http://127.0.0.1:8000/health: expected json status=ok, got status=degraded")
    (check,) = result["checks"]
    assert check["healthy"] is False
    assert check["error"] == "expected json status=ok, got status=degraded"
    assert check["body"] == {"status": "degraded"}


def test_secrets_never_come_back(capsys, http_replies):
    """Passwords in URLs and credential headers are masked in results, messages and echoed arguments."""
    replies, seen = http_replies
    replies.append((503, b'{"error": "bad token tok-planted-123", "user": "planted-user-pw"}'))
    code, result, out = run_module(
        capsys,
        {
            "http": [
                {
                    "url": "http://admin:planted-user-pw@127.0.0.1:8000/health",
                    "headers": {"Authorization": "Bearer tok-planted-123", "X-Request-Id": "abc"},
                }
            ],
            "timeout": 0,
        },
    )
    assert code == 1
    assert "planted-user-pw" not in out
    assert "tok-planted-123" not in out
    assert result["checks"][0]["target"] == "http://admin:********@127.0.0.1:8000/health"
    assert result["checks"][0]["body"] == {"error": "bad token ********", "user": "********"}
    echoed = result["invocation"]["module_args"]["http"][0]
    assert echoed["headers"] == {"Authorization": NO_LOG, "X-Request-Id": "abc"}
    # The server did get the credentials, as basic authentication.
    assert seen[0]["headers"]["Authorization"] == "Bearer tok-planted-123"


class FakePsycopgError(Exception):
    pass


def test_postgres_errors_are_masked(capsys, monkeypatch):
    """A driver error that echoes the connection string does not leak its password."""

    class FakePsycopg:
        @staticmethod
        def connect(conninfo, **kwargs):
            raise FakePsycopgError(f"could not connect with {conninfo} password={kwargs.get('password')}")

    monkeypatch.setattr(_health, "psycopg", FakePsycopg)
    code, result, out = run_module(
        capsys,
        {
            "postgres": [
                {"url": "postgresql://app:planted-pg-pw@127.0.0.1:5432/app", "name": "db"},
                {"host": "127.0.0.1", "user": "app", "password": "planted-pw-2", "dbname": "app"},
            ],
            "timeout": 0,
        },
    )
    assert code == 1
    assert "planted-pg-pw" not in out
    assert "planted-pw-2" not in out
    first, second = result["checks"]
    assert first["target"] == "postgresql://app:********@127.0.0.1:5432/app"
    assert first["error"] == (
        "FakePsycopgError: could not connect with postgresql://app:********@127.0.0.1:5432/app password=None"
    )
    assert second["target"] == "postgresql://app@127.0.0.1/app"
    assert second["error"] == "FakePsycopgError: could not connect with password=********"
    assert "postgres db (postgresql://app:********@127.0.0.1:5432/app): FakePsycopgError" in result["msg"]
    echoed = result["invocation"]["module_args"]["postgres"]
    assert echoed[0]["url"] == NO_LOG
    assert echoed[1]["password"] == NO_LOG


def test_redis_url_is_no_log(capsys, monkeypatch):
    class FakeClient:
        def ping(self):
            return True

        def close(self):
            pass

    calls = []

    class FakeRedis:
        @staticmethod
        def from_url(url, **kwargs):
            calls.append((url, kwargs))
            return FakeClient()

    monkeypatch.setattr(_health.redis, "Redis", FakeRedis)
    code, result, out = run_module(
        capsys, {"redis": [{"url": "redis://:planted-redis-pw@127.0.0.1:6379/0"}], "request_timeout": 3}
    )
    assert code == 0, result
    assert "planted-redis-pw" not in out
    (check,) = result["checks"]
    assert check["target"] == "redis://:********@127.0.0.1:6379/0"
    assert check["healthy"] is True
    assert result["invocation"]["module_args"]["redis"][0]["url"] == NO_LOG
    url, options = calls[0]
    assert url == "redis://:planted-redis-pw@127.0.0.1:6379/0"
    assert options["socket_timeout"] == 3.0
    assert options["protocol"] == 2


def test_a_url_without_password_is_shown(capsys, monkeypatch):
    """no_log on url must not turn a harmless URL into ******** in targets and messages."""

    class FakeRedis:
        @staticmethod
        def from_url(url, **kwargs):
            raise _health.redis.ConnectionError(f"Error 111 connecting to {url}. Connection refused.")

    monkeypatch.setattr(_health.redis, "Redis", FakeRedis)
    code, result, out = run_module(
        capsys,
        {
            "redis": [
                {"url": "redis://127.0.0.1:6379/0", "password": "planted-pw-3"},
                {"url": "redis://:planted-pw-4@127.0.0.1:6380/0"},
            ],
            "timeout": 0,
        },
    )
    assert code == 1
    public, secret = result["checks"]
    assert public["target"] == "redis://127.0.0.1:6379/0"
    assert public["error"] == "ConnectionError: Error 111 connecting to redis://127.0.0.1:6379/0. Connection refused."
    assert secret["target"] == "redis://:********@127.0.0.1:6380/0"
    assert "redis redis://127.0.0.1:6379/0: ConnectionError" in result["msg"]
    echoed = result["invocation"]["module_args"]["redis"]
    assert echoed[0]["url"] == "redis://127.0.0.1:6379/0"
    assert echoed[0]["password"] == NO_LOG
    assert echoed[1]["url"] == NO_LOG
    assert "planted-pw-3" not in out
    assert "planted-pw-4" not in out
