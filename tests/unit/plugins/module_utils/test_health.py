"""Unit tests of the health-check logic: comparisons, messages, masking, polling.  No network."""

from __future__ import annotations

import base64
import json

import pytest
from ansible_collections.pydeploy.stack.plugins.module_utils import _health
from ansible_collections.pydeploy.stack.plugins.module_utils._health import (
    BODY_LIMIT,
    Check,
    HealthCheckError,
    HttpCheck,
    MissingLibrary,
    Outcome,
    build_checks,
    compare_json,
    decode_body,
    evaluate_http,
    failure_message,
    header_secrets,
    hostname_of,
    is_definitive,
    is_public_url,
    lookup,
    normalize_status,
    postgres_target,
    redact_target,
    run_checks,
    same_value,
    url_secrets,
)
from ansible_collections.pydeploy.stack.plugins.module_utils._secrets import MASK

# --- expected status -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(200, [200]), ("204", [204]), ("200, 204", [200, 204]), ([200, "301"], [200, 301]), ((503,), [503])],
)
def test_normalize_status(value, expected):
    assert normalize_status(value) == expected


@pytest.mark.parametrize("value", [[], "ok", 99, 600, True, [200, None]])
def test_normalize_status_refuses_what_is_no_status(value):
    with pytest.raises(HealthCheckError, match="status"):
        normalize_status(value)


# --- expected JSON ---------------------------------------------------------


def test_same_value_is_exact_and_keeps_bools_apart():
    assert same_value("ok", "ok")
    assert same_value(1, 1.0)
    assert same_value({"a": [1, True]}, {"a": [1, True]})
    assert not same_value(True, 1)
    assert not same_value(1, True)
    assert not same_value(False, 0)
    assert not same_value("1", 1)
    assert not same_value(None, "")
    assert not same_value({"a": 1}, {"a": 1, "b": 2})
    assert not same_value([1], [1, 1])


def test_lookup_top_level_dotted_and_indexed():
    doc = {"status": "ok", "checks": {"db": "ok", "cache": {"state": "down"}}, "items": [{"s": 1}], "a.b": "flat"}
    assert lookup(doc, "status") == "ok"
    assert lookup(doc, "checks.db") == "ok"
    assert lookup(doc, "checks.cache.state") == "down"
    assert lookup(doc, "items.0.s") == 1
    assert lookup(doc, "a.b") == "flat"  # a real key with a dot wins
    assert lookup(doc, "checks.nope") is _health._MISSING
    assert lookup(doc, "items.5.s") is _health._MISSING
    assert lookup(["x"], "status") is _health._MISSING


def test_compare_json_messages():
    doc = {"status": "degraded", "checks": {"db": "ok"}, "count": 1, "ready": True}
    assert compare_json({"status": "ok"}, doc) == ["expected json status=ok, got status=degraded"]
    assert compare_json({"checks.db": "ok", "ready": True, "count": 1}, doc) == []
    assert compare_json({"checks.cache": "ok"}, doc) == ["expected json checks.cache=ok, got no field checks.cache"]
    # A type difference is shown, not hidden behind identical renderings.
    assert compare_json({"count": "1"}, doc) == ['expected json count="1", got count=1']
    assert compare_json({"ready": 1}, doc) == ["expected json ready=1, got ready=true"]
    assert compare_json({"checks": {"db": "down"}}, doc) == [
        'expected json checks={"db": "down"}, got checks={"db": "ok"}'
    ]


# --- judging a response ----------------------------------------------------


def test_evaluate_http_healthy():
    body = json.dumps({"status": "ok", "checks": {"db": "ok"}, "version": "1.2.3"})
    assert evaluate_http(200, body, statuses=[200]) is None
    assert evaluate_http(200, body, statuses=[200], expected_json={"status": "ok", "checks.db": "ok"}) is None
    assert evaluate_http(204, "", statuses=[200, 204]) is None
    assert evaluate_http(200, body, statuses=[200], contains='"version"') is None


def test_evaluate_http_wrong_status_shows_the_body():
    problem = evaluate_http(503, '{"status": "starting"}\n', statuses=[200], expected_json={"status": "ok"})
    assert problem == 'expected status 200, got 503: {"status": "starting"}'
    assert evaluate_http(502, "", statuses=[200, 204]) == "expected status one of 200, 204, got 502 with an empty body"


def test_evaluate_http_cuts_long_bodies_in_messages():
    problem = evaluate_http(500, "x" * 5000, statuses=[200])
    assert problem.startswith("expected status 200, got 500: xxx")
    assert len(problem) < 300
    assert "more characters" in problem


def test_evaluate_http_json_problems():
    assert (
        evaluate_http(200, '{"status": "degraded"}', statuses=[200], expected_json={"status": "ok"})
        == "expected json status=ok, got status=degraded"
    )
    problem = evaluate_http(
        200,
        '{"status": "degraded", "checks": {}}',
        statuses=[200],
        expected_json={
            "status": "ok",
            "checks.db": "ok",
        },
    )
    assert problem == "expected json status=ok, got status=degraded; expected json checks.db=ok, got no field checks.db"
    assert (
        evaluate_http(200, "<html>ok</html>", statuses=[200], expected_json={"status": "ok"})
        == "expected a JSON body, got: <html>ok</html>"
    )
    assert evaluate_http(200, "", statuses=[200], expected_json={"a": 1}) == "expected a JSON body, got an empty body"


def test_evaluate_http_contains():
    assert evaluate_http(200, "all good", statuses=[200], contains="ready") == (
        "expected the body to contain 'ready', got: all good"
    )


# --- what is returned ------------------------------------------------------


def test_decode_body():
    assert decode_body(None) is None
    assert decode_body(b'{"status": "ok"}') == {"status": "ok"}
    assert decode_body(b"plain text") == "plain text"
    assert decode_body(b"\xff\xfe") == "\ufffd\ufffd"
    long = decode_body(b"a" * (BODY_LIMIT + 100))
    assert long.startswith("a" * BODY_LIMIT)
    assert long.endswith("... [100 more characters]")
    # A long JSON body is returned as (cut) text rather than a huge structure.
    big = json.dumps({"k": "v" * 3000}).encode()
    assert isinstance(decode_body(big), str)


def test_decode_body_masks_secrets_and_still_decodes():
    body = json.dumps({"dsn": "postgresql://app:hunter22@db/app", "token": "tok-123456"}).encode()
    assert decode_body(body, ["tok-123456"]) == {"dsn": f"postgresql://app:{MASK}@db/app", "token": MASK}


def test_redact_target_and_url_secrets():
    assert redact_target("postgresql://app:pw%40x@db:5432/app") == f"postgresql://app:{MASK}@db:5432/app"
    assert redact_target("host=db password=s3cret dbname=app") == f"host=db password={MASK} dbname=app"
    assert redact_target("host=db password='s3 cret' dbname=app") == f"host=db password={MASK} dbname=app"
    assert redact_target("host=db sslpassword=k3y sslmode=verify-full") == (
        f"host=db sslpassword={MASK} sslmode=verify-full"
    )
    assert redact_target("postgresql://db/app?sslmode=require&password=s3cret") == (
        f"postgresql://db/app?sslmode=require&password={MASK}"
    )
    assert redact_target("https://h/health?api_key=k3y&x=1") == f"https://h/health?api_key={MASK}&x=1"
    assert redact_target("redis://cache:6379/0?protocol=3") == "redis://cache:6379/0?protocol=3"
    assert url_secrets("postgresql://app:pw%40x@db/app") == ["pw%40x", "pw@x"]
    assert url_secrets("postgresql://db/app?password=a%2Bb") == ["a%2Bb", "a+b"]
    assert url_secrets("host=db password='s3 cret'") == ["'s3 cret'", "s3 cret"]
    assert url_secrets("host=db user=app") == []
    assert url_secrets("redis://cache:6379/0") == []
    assert url_secrets(None) == []


def test_is_public_url():
    assert is_public_url("redis://127.0.0.1:6379/0")
    assert is_public_url("postgresql://app@db:5432/app?sslmode=require")
    assert not is_public_url("redis://:pw@127.0.0.1:6379/0")
    assert not is_public_url("postgresql://db/app?password=x")
    assert not is_public_url("host=db user=app")  # not a URL: never shown
    assert not is_public_url("redis://127.0.0.1:notaport/0")
    assert not is_public_url(None)


def test_header_secrets():
    headers = {"Host": "app.example.com", "Authorization": "Bearer abc123456", "X-Upstream-Token": "t0ken-value"}
    assert header_secrets(headers) == ["Bearer abc123456", "abc123456", "t0ken-value"]
    assert header_secrets(None) == []
    assert header_secrets({"Cookie": "session=abcdef", "X-Api-Key": "k3y-123"}) == ["session=abcdef", "k3y-123"]


def test_hostname_of_host_header():
    assert hostname_of("app.example.com") == "app.example.com"
    assert hostname_of("app.example.com:8443") == "app.example.com"
    assert hostname_of("[::1]:8443") == "::1"
    assert hostname_of("[::1]") == "::1"


def test_postgres_target():
    assert postgres_target(host="db", port=5432, user="app", dbname="app") == "postgresql://app@db:5432/app"
    assert postgres_target(host="/run/postgresql") == "postgresql:///run/postgresql/"
    assert postgres_target(url="postgresql://a:b1234@db/x") == f"postgresql://a:{MASK}@db/x"


# --- building checks -------------------------------------------------------


def test_http_check_from_params():
    (check,) = build_checks(
        {
            "request_timeout": 7.0,
            "http": [
                {
                    "url": "https://admin:pa55word@127.0.0.1:8443/health?deep=1",
                    "status": [200, 204],
                    "json": {"status": "ok"},
                    "headers": {"Host": "app.example.com:8443"},
                    "name": None,
                    "ca_path": None,
                    "tls_server_name": None,
                    "request_timeout": None,
                }
            ],
        }
    )
    assert check.kind == "http"
    assert check.target == f"https://admin:{MASK}@127.0.0.1:8443/health?deep=1"
    assert check.name == check.target
    assert check.label == f"http {check.target}"
    assert (check.host, check.port, check.path) == ("127.0.0.1", 8443, "/health?deep=1")
    assert check.statuses == [200, 204]
    assert check.expected_json == {"status": "ok"}
    assert check.request_timeout == 7.0
    # The Host header names the site, so its certificate is checked for that name.
    assert check.server_name == "app.example.com"
    assert check.headers["Authorization"] == "Basic " + base64.b64encode(b"admin:pa55word").decode()
    assert "pa55word" in check.secrets
    assert check.headers["Authorization"] in check.secrets


def test_http_check_server_name_precedence(tmp_path):
    assert HttpCheck("https://127.0.0.1/").server_name == "127.0.0.1"
    assert HttpCheck("https://127.0.0.1/", headers={"host": "a.test"}).server_name == "a.test"
    assert HttpCheck("https://127.0.0.1/", headers={"Host": "a.test"}, tls_server_name="b.test").server_name == "b.test"
    assert HttpCheck("http://127.0.0.1/").context is None


def test_http_check_refuses_bad_configuration(tmp_path):
    with pytest.raises(HealthCheckError, match=r"http\(s\)://HOST/PATH, got ftp://u:\*{8}@h/"):
        HttpCheck("ftp://u:secret@h/")
    with pytest.raises(HealthCheckError, match="not valid"):
        HttpCheck("http://127.0.0.1:99999999/")
    with pytest.raises(HealthCheckError, match="is not a file"):
        HttpCheck("https://127.0.0.1/", ca_path=str(tmp_path / "missing.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(HealthCheckError, match="no usable CA certificate"):
        HttpCheck("https://127.0.0.1/", ca_path=str(garbage))
    with pytest.raises(HealthCheckError, match="status"):
        HttpCheck("http://127.0.0.1/", status="ok")


def test_missing_libraries_are_reported(monkeypatch):
    monkeypatch.setattr(_health, "psycopg", None)
    monkeypatch.setattr(_health, "redis", None)
    with pytest.raises(MissingLibrary) as caught:
        build_checks({"postgres": [{"host": "127.0.0.1"}]})
    assert caught.value.library == "psycopg"
    with pytest.raises(MissingLibrary) as caught:
        build_checks({"redis": [{"url": "redis://127.0.0.1"}]})
    assert caught.value.library == "redis"
    # Only checks that are asked for need their library.
    assert len(build_checks({"http": [{"url": "http://127.0.0.1/"}]})) == 1


# --- one HTTP attempt, with the transport faked ----------------------------


def test_http_probe_reports_status_body_and_masks(monkeypatch):
    check = HttpCheck("http://u:hunter22@127.0.0.1:8000/health", expected_json={"status": "ok"})
    replies = iter([(503, b'{"status": "starting", "echo": "hunter22"}', None), (200, b'{"status": "ok"}', None)])
    monkeypatch.setattr(check, "request", lambda timeout: next(replies))

    first = check.attempt(5.0)
    assert not first.healthy
    assert first.status == 503
    assert first.error == f'expected status 200, got 503: {{"status": "starting", "echo": "{MASK}"}}'
    assert first.body == {"status": "starting", "echo": MASK}

    second = check.attempt(5.0)
    assert second.healthy
    result = check.result()
    assert result["healthy"] is True
    assert result["attempts"] == 2
    assert result["status"] == 200
    assert result["body"] == {"status": "ok"}
    assert result["error"] is None
    assert result["latency_ms"] >= 0
    assert "hunter22" not in json.dumps(result)


def test_a_probe_that_raises_becomes_the_error_masked():
    class Exploding(Check):
        kind = "test"

        def probe(self, timeout):
            raise ConnectionRefusedError(111, "Connection refused for redis://:topsecret@x")

    check = Exploding(name=None, target="x", request_timeout=1, secrets=["topsecret"])
    outcome = check.attempt(1.0)
    assert outcome.error == f"ConnectionRefusedError: [Errno 111] Connection refused for redis://:{MASK}@x"
    assert check.result()["error"] == outcome.error


# --- polling ---------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Scripted(Check):
    """A check that answers from a script: True is healthy, a string an error."""

    kind = "fake"

    def __init__(self, script, clock, cost=0.0, request_timeout=5.0, name="fake"):
        super().__init__(name=name, target=f"fake://{name}", request_timeout=request_timeout)
        self.script = list(script)
        self.clock = clock
        self.cost = cost
        self.timeouts = []

    def probe(self, timeout):
        self.timeouts.append(timeout)
        self.clock.now += self.cost
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if answer is True:
            return Outcome(True, latency_ms=1.5)
        return Outcome(False, error=answer)


def run(checks, clock, **kwargs):
    return run_checks(checks, clock=clock, sleep=clock.sleep, **kwargs)


def test_polls_until_healthy_and_stops_probing_healthy_checks():
    clock = FakeClock()
    slow = Scripted(["down", "down", True], clock, name="slow")
    fast = Scripted([True], clock, name="fast")
    elapsed = run([slow, fast], clock, timeout=60, interval=2)
    assert (slow.healthy, fast.healthy) == (True, True)
    assert (slow.attempts, fast.attempts) == (3, 1)
    assert elapsed == 4.0
    assert slow.result()["latency_ms"] == 1.5


def test_consecutive_successes_reset_on_failure():
    clock = FakeClock()
    flappy = Scripted([True, "down", True, True, True], clock)
    run([flappy], clock, timeout=60, interval=1, consecutive=3)
    assert flappy.healthy
    assert flappy.attempts == 5


def test_timeout_reports_the_last_problem():
    clock = FakeClock()
    check = Scripted(["connection refused", "expected status 200, got 503: {}"], clock, name="api")
    elapsed = run([check], clock, timeout=3, interval=1)
    assert not check.healthy
    assert check.attempts == 4  # at 0, 1, 2 and 3 seconds
    assert elapsed == 3.0
    assert check.result()["error"] == "expected status 200, got 503: {}"
    assert check.result()["latency_ms"] is None


def test_timeout_zero_still_tries_once():
    clock = FakeClock()
    check = Scripted(["down"], clock)
    run([check], clock, timeout=0, interval=1)
    assert check.attempts == 1


def test_not_enough_consecutive_successes_is_an_error():
    clock = FakeClock()
    check = Scripted(["down", True], clock)
    run([check], clock, timeout=1, interval=1, consecutive=3)
    assert not check.healthy
    assert check.result()["error"] == "1 consecutive successful attempt(s) of the 3 required"


def test_attempts_are_cut_short_near_the_deadline():
    clock = FakeClock()
    check = Scripted(["down"], clock, cost=4.0, request_timeout=5.0)
    run([check], clock, timeout=10, interval=1)
    # 10 s left, then 5 s (after 4 s of attempt and 1 s of sleep), then 0:
    # the floor of one second applies.
    assert check.timeouts == [5.0, 5.0, 1.0]


def test_failure_message_names_each_failing_check():
    clock = FakeClock()
    healthy = Scripted([True], clock, name="ok")
    api = Scripted(["expected json status=ok, got status=degraded"], clock, name="api")
    db = Scripted(["OperationalError: password authentication failed for postgresql://a:pw-12345@db"], clock)
    db.target = db.name = "postgresql://a:********@db/app"
    db.secrets = ["pw-12345"]
    run([healthy, api, db], clock, timeout=1, interval=1)
    message = failure_message([healthy, api, db], 1.0, 1)
    assert message == (
        "2 of 3 health check(s) not healthy after 1.0s (timeout 1s): "
        "fake api (fake://api): expected json status=ok, got status=degraded; "
        "fake postgresql://a:********@db/app: OperationalError: password authentication failed for "
        "postgresql://a:********@db"
    )


# --- answers: a whole JSON body, and a definitive wrong answer ---------------


def test_a_bare_json_value_is_compared_whole():
    assert evaluate_http(200, "true", statuses=[200], body=True) is None
    assert evaluate_http(200, "1", statuses=[200], body=True) == "expected the JSON body true, got 1"
    assert evaluate_http(200, '["a", "b"]', statuses=[200], body=["a", "b"]) is None
    assert evaluate_http(200, '{"a": 1, "b": 2}', statuses=[200], body={"a": 1}) == (
        'expected the JSON body {"a": 1}, got {"a": 1, "b": 2}'
    )
    assert evaluate_http(200, "yes", statuses=[200], body=True) == "expected a JSON body, got: yes"
    with pytest.raises(HealthCheckError, match="json must be a dict"):
        HttpCheck("http://127.0.0.1/health", expected_json=[1])


def replying(check, monkeypatch, *replies):
    answers = iter(replies)
    monkeypatch.setattr(check, "request", lambda timeout: next(answers))


def test_a_redirect_ends_the_wait_after_three_answers_and_names_it(monkeypatch):
    clock = FakeClock()
    check = HttpCheck("http://127.0.0.1:8000/", name="web-1")
    replying(check, monkeypatch, *[(302, b"", "/setup")] * 10)
    elapsed = run([check], clock, timeout=300, interval=1)
    assert check.attempts == 3 and elapsed == 2.0
    assert check.gave_up and not check.healthy
    assert check.result()["error"] == (
        "expected status 200, got 302 (a redirect to /setup) with an empty body "
        "(3 times in a row: an answer, not a start still under way)"
    )
    assert failure_message([check], elapsed, 300).startswith(
        "1 of 1 health check(s) not healthy after 2.0s (gave up on a definitive answer): http web-1"
    )


def test_server_errors_and_passing_client_errors_are_waited_out(monkeypatch):
    clock = FakeClock()
    starting = HttpCheck("http://127.0.0.1:8000/health", name="starting")
    replying(starting, monkeypatch, *[(503, b"starting", None)] * 3, (429, b"", None), (200, b"ok", None))
    run([starting], clock, timeout=300, interval=1)
    assert starting.healthy and starting.attempts == 5
    # A definitive answer between others starts the count again; fail_fast off waits it out.
    flapping = HttpCheck("http://127.0.0.1:8000/health", name="flapping")
    replying(flapping, monkeypatch, (404, b"", None), (404, b"", None), (503, b"", None), *[(404, b"", None)] * 3)
    run([flapping], clock, timeout=300, interval=1)
    assert flapping.gave_up and flapping.attempts == 6
    patient = HttpCheck("http://127.0.0.1:8000/health", name="patient", fail_fast=False)
    replying(patient, monkeypatch, *[(404, b"", None)] * 5, (200, b"", None))
    run([patient], clock, timeout=300, interval=1)
    assert patient.healthy and patient.attempts == 6
    # An expected redirect is health.
    assert is_definitive(302, [200]) and not is_definitive(302, [200, 302]) and not is_definitive(503, [200])
