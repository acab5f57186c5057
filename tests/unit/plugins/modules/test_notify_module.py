"""Unit tests of the notify module: its options, its result, warnings for a failing webhook, and the URL
never in its output (a receiver on loopback)."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.pydeploy.stack.plugins.modules import notify
from webhook_receiver import Receiver

TOKEN = "T0KEN-canary-module-5c2e"


def run_module(capsys, args: dict, check: bool = False) -> tuple[int, dict, str]:
    if check:
        args = {**args, "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(SystemExit) as caught:
        notify.main()
    out = capsys.readouterr().out
    return caught.value.code, json.loads(out), out


def test_a_deploy_that_landed_is_sent_with_its_summary(capsys):
    release = {"version": "v2", "kind": "deploy", "url": "https://localhost:8443/"}
    with Receiver() as receiver:
        args = {
            "webhooks": [{"url": receiver.url(TOKEN), "name": "chat"}, {"url": receiver.url(TOKEN), "format": "slack"}],
            "stack": "shop",
            "event": "deploy_succeeded",
            "host": "web1",
            "summary": "deploy of shop v2 succeeded",
            "release": release,
        }
        code, result, out = run_module(capsys, args)
        bodies = receiver.bodies()
    assert code == 0 and result["changed"] is False, result
    assert result["msg"] == "notified 2 of 2 webhook(s) of deploy_succeeded"
    assert [n["name"] for n in result["notifications"]] == ["chat", f"http://127.0.0.1:{receiver.port}/…"]
    assert bodies[0] == result["body"] and bodies[0]["release"] == release and bodies[0]["status"] == "succeeded"
    assert bodies[1]["text"].startswith(":white_check_mark: *shop* deploy of shop v2 succeeded on web1")
    assert TOKEN not in out and "warnings" not in result


def test_a_failing_webhook_is_a_warning_not_a_failure(capsys, monkeypatch):
    # Recorded here: where the controller's code is loaded too, Ansible shows a module's warnings itself.
    warned = []
    monkeypatch.setattr(notify.AnsibleModule, "warn", lambda _module, text: warned.append(text))
    with Receiver(status=500) as receiver:
        args = {"webhooks": [{"url": receiver.url(TOKEN)}], "stack": "shop", "event": "deploy_failed", "retries": 1}
        code, result, out = run_module(capsys, args)
        assert len(receiver.requests) == 2
    assert code == 0 and not result.get("failed")
    assert result["notifications"][0]["delivered"] is False
    [warning] = warned
    assert "after 2 attempt(s): HTTP 500 Internal Server Error (the run goes on)" in warning
    assert TOKEN not in out


def test_events_a_webhook_does_not_want_are_not_sent(capsys):
    with Receiver() as receiver:
        hooks = [{"url": receiver.url(TOKEN), "events": ["deploy_failed"]}]
        code, result, _ = run_module(capsys, {"webhooks": hooks, "stack": "shop", "event": "deploy_succeeded"})
        assert receiver.requests == []
    assert (
        code == 0
        and result["notifications"] == []
        and result["msg"] == "notified 0 of 0 webhook(s) of deploy_succeeded"
    )


def test_check_mode_sends_nothing(capsys):
    with Receiver() as receiver:
        args = {"webhooks": [{"url": receiver.url(TOKEN)}], "stack": "shop", "event": "rolled_back"}
        code, result, _ = run_module(capsys, args, check=True)
        assert receiver.requests == []
    assert code == 0 and result["msg"] == "would notify 1 webhook(s) of rolled_back"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"event": "deployed"}, "value of event must be one of"),
        (
            {"webhooks": [{"url": "https://e.example/h", "format": "xml"}]},
            "value of format must be one of: json, slack",
        ),
        ({"webhooks": [{"url": "https://e.example/h", "events": ["oops"]}]}, "value of events must be one or more of"),
        ({"webhooks": [{"url": f"gopher://e.example/{TOKEN}"}]}, "webhook 1: its url must be an http:// or https://"),
        ({"timeout": 0}, "timeout must be more than 0, got 0"),
        ({"retries": -1}, "retries must be at least 0, got -1"),
    ],
)
def test_bad_options_fail_naming_them_never_the_url(capsys, args, message):
    base = {"webhooks": [{"url": f"https://e.example/{TOKEN}"}], "stack": "shop", "event": "job_failed"}
    code, result, out = run_module(capsys, {**base, **args})
    assert code == 1 and message in result["msg"], result["msg"]
    assert TOKEN not in out
