"""The notifications' shared code (module_utils/_notify.py): the document, the json and slack bodies, which
webhooks want an event, masking, and delivery with its one retry against a receiver on loopback."""

from __future__ import annotations

import json
import socket
import time

import pytest
from ansible_collections.pydeploy.stack.plugins.module_utils import _notify
from webhook_receiver import Receiver

TOKEN = "T0KEN-canary-8f3a9c1e"
RELEASE = {
    "stack": "shop",
    "image": "registry.example.com/shop",
    "version": "v2",
    "kind": "deploy",
    "digest": "sha256:abc",
    "url": "https://shop.example.com/",
    "health_ms": [3.2],
    "migration": "0002",
    "backup_key": "",
    "deployed_by": "ana",
    "awx_job_id": "",
}


def doc(event="deploy_failed", **fields):
    return _notify.document("shop", event, "web1", fields.pop("message", "deploy of shop v2 failed"), **fields)


def test_the_document_has_every_documented_key_and_the_events_own_status():
    body = doc(cause="migrate step: exit 1", when="2025-11-05T14:31:02Z")
    keys = "source stack event status host process job message cause release details time"
    assert list(body) == keys.split()
    assert body["source"] == "pydeploy.stack" and body["status"] == "failed" and body["time"] == "2025-11-05T14:31:02Z"
    assert body["process"] is None and body["job"] is None and body["release"] is None and body["details"] == {}
    assert _notify.document("shop", "deploy_succeeded")["status"] == "succeeded"
    assert _notify.document("shop", "rolled_back")["status"] == "rolled_back"
    assert _notify.document("shop", "container_restarting", status="oom_killed")["status"] == "oom_killed"
    assert _notify.document("shop", "job_failed")["message"] == "shop: job failed"
    with pytest.raises(_notify.NotifyError, match="unknown event 'deployed'"):
        _notify.document("shop", "deployed")


def test_the_json_body_is_the_document():
    body = doc(release=RELEASE, details={"step": "migrate"})
    assert json.loads(_notify.body(body, "json")) == body


def test_the_slack_body_is_text_with_the_facts():
    failed = doc(cause="alembic upgrade head exited with 1\nrelation missing", details={"log_tail": ["stderr| boom"]})
    sent = json.loads(_notify.body(failed, "slack"))
    assert list(sent) == ["text"]
    text = sent["text"]
    assert text.startswith(":x: *shop* deploy of shop v2 failed on web1")
    assert "> alembic upgrade head exited with 1\n> relation missing" in text
    assert "```stderr| boom```" in text
    landed = json.loads(
        _notify.body(doc("deploy_succeeded", message="deploy of shop v2 succeeded", release=RELEASE), "slack")
    )
    assert landed["text"].startswith(":white_check_mark: *shop* deploy of shop v2 succeeded")
    assert "version v2 · kind deploy · url https://shop.example.com/ · digest sha256:abc" in landed["text"]
    assert json.loads(_notify.body(doc("rolled_back"), "slack"))["text"].startswith(":leftwards_arrow_with_hook:")
    with pytest.raises(_notify.NotifyError):
        _notify.body(failed, "xml")


def test_a_long_cause_or_log_is_cut_in_slack():
    text = json.loads(_notify.body(doc(cause="x" * 10000, details={"log_tail": ["y" * 10000]}), "slack"))["text"]
    assert len(text) < 2 * _notify.SLACK_CHARS + 200


@pytest.mark.parametrize(
    ("events", "wanted"),
    [
        (None, True),
        ([], True),
        (["all"], True),
        ("deploy_failed", True),
        (["deploy_failed", "job_failed"], True),
        (["deploy_succeeded"], False),
        (["container_restarting", "backup_failed"], False),
    ],
)
def test_a_webhook_wants_its_events_all_by_default(events, wanted):
    hook = {"url": "https://example.com/h"} if events is None else {"url": "https://example.com/h", "events": events}
    assert _notify.wants(hook, "deploy_failed") is wanted


def test_only_the_webhooks_that_want_the_event_are_sent_it():
    hooks = [
        {"url": "https://a.example/1", "events": ["deploy_succeeded"]},
        {"url": "https://b.example/2"},
        {"url": "https://c.example/3", "events": ["job_failed", "deploy_failed"]},
    ]
    sent = []
    results = _notify.notify(hooks, doc(), send=lambda url, data, timeout: sent.append(url))
    assert sent == ["https://b.example/2", "https://c.example/3"]
    assert [r["name"] for r in results] == ["https://b.example/…", "https://c.example/…"]
    assert all(r["delivered"] and r["attempts"] == 1 and r["error"] == "" for r in results)


def test_urls_are_masked_to_their_scheme_and_host():
    assert _notify.mask_url(f"https://hooks.slack.com/services/T00/B00/{TOKEN}") == "https://hooks.slack.com/…"
    assert _notify.mask_url(f"http://user:{TOKEN}@127.0.0.1:8080/x?token={TOKEN}") == "http://127.0.0.1:8080/…"
    assert _notify.mask_url("not a url") == "a webhook"
    assert _notify.webhook_name({"url": "https://h.example/x", "name": "team chat"}) == "team chat"


@pytest.mark.parametrize(
    ("hook", "problem"),
    [
        ({"url": ""}, "webhook 1 has no url (is the vault loaded?)"),
        ({"url": f"ftp://example.com/{TOKEN}"}, "webhook 1: its url must be an http:// or https:// URL with a host"),
        ({"url": f"https:///{TOKEN}"}, "webhook 1: its url must be an http:// or https:// URL with a host"),
        ({"url": "https://e.example/h", "format": "xml"}, "webhook 1: format must be one of json, slack, not 'xml'"),
        ({"url": "https://e.example/h", "events": ["deployed"]}, "webhook 1: unknown event(s) deployed"),
    ],
)
def test_bad_webhooks_are_named_by_their_index_never_their_url(hook, problem):
    problems = _notify.check_webhook(hook)
    assert len(problems) == 1 and problems[0].startswith(problem), problems
    assert TOKEN not in problems[0]


def test_a_delivered_event_is_posted_once_as_json():
    with Receiver() as receiver:
        results = _notify.notify([{"url": receiver.url(TOKEN)}], doc(release=RELEASE))
        assert results[0]["delivered"] and results[0]["attempts"] == 1
        assert len(receiver.requests) == 1
        request = receiver.requests[0]
        assert request["path"] == f"/hooks/{TOKEN}"
        assert request["headers"]["Content-Type"] == "application/json"
        assert json.loads(request["body"])["release"]["version"] == "v2"


def test_a_webhook_answering_500_is_tried_twice_and_reported_without_its_url():
    with Receiver(status=500) as receiver:
        results = _notify.notify([{"url": receiver.url(TOKEN)}], doc())
        assert len(receiver.requests) == 2
    assert results[0]["delivered"] is False and results[0]["attempts"] == 2
    assert results[0]["error"] == "HTTP 500 Internal Server Error"
    [line] = _notify.failures(results)
    assert line.startswith("notification to http://127.0.0.1:") and "after 2 attempt(s): HTTP 500" in line
    assert TOKEN not in line


def test_a_refused_webhook_fails_quietly():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    delivered, attempts, error = _notify.deliver(f"http://127.0.0.1:{port}/hooks/{TOKEN}", b"{}", 2, 1, pause=0)
    assert (delivered, attempts) == (False, 2)
    assert "refused" in error.lower() and TOKEN not in error


def test_a_webhook_that_does_not_answer_is_given_up_after_the_timeout():
    with Receiver(delay=3) as receiver:
        started = time.monotonic()
        delivered, attempts, error = _notify.deliver(receiver.url(TOKEN), b"{}", timeout=0.5, retries=1, pause=0)
        elapsed = time.monotonic() - started
    assert (delivered, attempts) == (False, 2)
    assert error == "no answer within 0.5 s"
    assert elapsed < 2.5


def test_an_error_quoting_the_url_is_scrubbed():
    url = f"https://user:pw-{TOKEN}@hooks.example.com/services/{TOKEN}?key={TOKEN}"

    def send(_url, _data, _timeout):
        raise ValueError(f"cannot reach {url} (/services/{TOKEN})")

    delivered, attempts, error = _notify.deliver(url, b"{}", send=send, pause=0)
    assert not delivered and attempts == 2
    assert TOKEN not in error and "cannot reach" in error


def test_a_bad_webhook_is_reported_not_sent():
    sent = []
    results = _notify.notify([{"url": f"file:///etc/{TOKEN}"}], doc(), send=lambda *a: sent.append(a))
    assert sent == [] and results[0]["attempts"] == 0 and TOKEN not in json.dumps(results)
    assert _notify.failures(results)[0].startswith("notification to a webhook not sent: webhook 1: its url")


def test_a_dry_run_sends_nothing_and_reports_no_failure():
    sent = []
    results = _notify.notify([{"url": "https://e.example/h"}], doc(), send=lambda *a: sent.append(a), dry_run=True)
    assert sent == [] and results[0]["sent"] is False and _notify.failures(results) == []


def test_the_tail_keeps_the_last_lines_each_cut():
    assert _notify.tail([str(n) for n in range(50)], 3) == ["47", "48", "49"]
    assert _notify.tail(["z" * 400], 5, 10) == ["z" * 9 + "…"]
