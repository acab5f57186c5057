# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Webhook notifications of a pydeploy stack: the event's document, its body in each format, which webhooks
want it, and its delivery (a short timeout, one retry, never an exception).

Used by the module ``pydeploy.stack.notify`` on the controller and by the job runner on the hosts
(``roles/cron/files/pydeploy-job``), where the cron and backup roles install this file beside the runner as
``pydeploy_notify.py``: it imports the Python standard library only, never Ansible.

A webhook is a dict: ``url`` (it may hold a token: it is never written anywhere, messages name the webhook
by its ``name`` or by :func:`mask_url`), ``format`` (``json`` or ``slack``), ``events`` (the events it
wants, ``all`` by default) and an optional ``name``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from urllib.parse import urlsplit

SOURCE = "pydeploy.stack"
EVENTS = ("deploy_succeeded", "deploy_failed", "rolled_back", "job_failed", "backup_failed", "container_restarting")
ALL = "all"
FORMATS = ("json", "slack")
# The status an event has unless told otherwise.
STATUS = {
    "deploy_succeeded": "succeeded",
    "deploy_failed": "failed",
    "rolled_back": "rolled_back",
    "job_failed": "failed",
    "backup_failed": "failed",
    "container_restarting": "restarting",
}
TIMEOUT = 5.0
RETRIES = 1
RETRY_PAUSE = 0.5
# Lines of a job's log a notification carries, each cut to LINE_CHARS.
TAIL_LINES = 20
LINE_CHARS = 300
# What a Slack message may hold of free text (cause, log tail) before it is cut.
SLACK_CHARS = 3000
ICONS = {"succeeded": ":white_check_mark:", "rolled_back": ":leftwards_arrow_with_hook:", "restarting": ":warning:"}
FAILED_ICON = ":x:"


class NotifyError(ValueError):
    """A webhook or an event that cannot be sent: unknown event or format, a URL that is not http(s)."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mask_url(url: str) -> str:
    """The webhook's scheme and host only: its path and query often are the secret (Slack's, Teams').

    >>> mask_url("https://hooks.slack.com/services/T00/B00/XXXX")
    'https://hooks.slack.com/…'
    """
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "a webhook"
    if not parts.scheme or not host:
        return "a webhook"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}/…"


def webhook_name(webhook: dict, index: int = 0) -> str:
    """What messages call the webhook: its name, or its masked URL."""
    return str(webhook.get("name") or mask_url(webhook.get("url") or "") or f"webhook {index + 1}")


def check_webhook(webhook: dict, index: int = 0) -> list[str]:
    """What is wrong with a webhook, each problem naming it by its index (never by its URL)."""
    where = f"webhook {index + 1}"
    if not isinstance(webhook, dict):
        return [f"{where} is not a dict"]
    problems = []
    url = webhook.get("url")
    try:
        parts = urlsplit(str(url or ""))
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in str(url))
    except ValueError:
        valid = False
    if not url:
        problems.append(f"{where} has no url (is the vault loaded?)")
    elif not valid:
        problems.append(
            f"{where}: its url must be an http:// or https:// URL with a host (not shown: it may hold a secret)"
        )
    if (webhook.get("format") or "json") not in FORMATS:
        problems.append(f"{where}: format must be one of {', '.join(FORMATS)}, not {webhook.get('format')!r}")
    events = webhook.get("events")
    events = [ALL] if events in (None, "", []) else events
    if isinstance(events, str):
        events = [events]
    unknown = [str(event) for event in events if event not in (ALL, *EVENTS)]
    if unknown:
        problems.append(f"{where}: unknown event(s) {', '.join(unknown)} (known: {', '.join((ALL, *EVENTS))})")
    return problems


def wants(webhook: dict, event: str) -> bool:
    """Whether the webhook wants the event: its events, ``all`` by default."""
    events = webhook.get("events")
    if events in (None, "", []):
        return True
    if isinstance(events, str):
        events = [events]
    return ALL in events or event in events


def wanting(webhooks, event: str) -> list[tuple[int, dict]]:
    """(index, webhook) of every webhook that wants the event."""
    return [(index, hook) for index, hook in enumerate(webhooks or []) if isinstance(hook, dict) and wants(hook, event)]


def document(
    stack: str,
    event: str,
    host: str = "",
    message: str = "",
    *,
    status: str = "",
    process: str | None = None,
    job: str | None = None,
    cause: str | None = None,
    release: dict | None = None,
    details: dict | None = None,
    when: str | None = None,
) -> dict:
    """The event as the ``json`` format sends it (the body documented in the README and the module)."""
    if event not in EVENTS:
        raise NotifyError(f"unknown event {event!r} (known: {', '.join(EVENTS)})")
    return {
        "source": SOURCE,
        "stack": str(stack),
        "event": event,
        "status": status or STATUS[event],
        "host": str(host or ""),
        "process": process or None,
        "job": job or None,
        "message": message or f"{stack}: {event.replace('_', ' ')}",
        "cause": cause or None,
        "release": release or None,
        "details": details or {},
        "time": when or utc_now(),
    }


def _cut(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def tail(lines, count: int = TAIL_LINES, width: int = LINE_CHARS) -> list[str]:
    """The last ``count`` lines, each cut to ``width`` characters."""
    kept = list(lines)[-count:] if count > 0 else []
    return [line if len(line) <= width else line[: width - 1] + "…" for line in (str(item) for item in kept)]


def slack_text(doc: dict) -> str:
    """A Slack message (mrkdwn) saying what the document says."""
    status = doc.get("status") or ""
    icon = ICONS.get(status, FAILED_ICON)
    where = f" on {doc['host']}" if doc.get("host") else ""
    lines = [f"{icon} *{doc.get('stack')}* {doc.get('message')}{where}"]
    if doc.get("cause"):
        lines.append("> " + _cut(doc["cause"], SLACK_CHARS).replace("\n", "\n> "))
    release = doc.get("release") or {}
    if release:
        parts = [
            f"{key} {release[key]}"
            for key in ("version", "kind", "url", "digest", "migration", "deployed_by")
            if release.get(key)
        ]
        lines.append(" · ".join(parts))
    log_tail = (doc.get("details") or {}).get("log_tail")
    if log_tail:
        lines.append("```" + _cut("\n".join(str(line) for line in log_tail), SLACK_CHARS) + "```")
    return "\n".join(lines)


def body(doc: dict, fmt: str = "json") -> bytes:
    """The request's body in the webhook's format."""
    if fmt == "slack":
        return json.dumps({"text": slack_text(doc)}).encode()
    if fmt == "json":
        return json.dumps(doc, sort_keys=True, default=str).encode()
    raise NotifyError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def scrub(text: str, url: str) -> str:
    """``text`` without the URL, nor its path, query or credentials (an error message may quote them)."""
    text = str(text)
    try:
        parts = urlsplit(url)
        pieces = [url, parts.path, parts.query, parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""]
    except ValueError:
        pieces = [url]
    for piece in sorted({piece for piece in pieces if piece and len(piece) > 1}, key=len, reverse=True):
        text = text.replace(piece, "…")
    return text


def post(url: str, data: bytes, timeout: float) -> None:
    """POST the body; an exception for anything but a 2xx answer."""
    headers = {"Content-Type": "application/json", "User-Agent": SOURCE}
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)  # noqa: S310 - http(s), checked
    # The standard library's opener (the runner on the hosts has no Ansible): what its module-level
    # shortcut would build, with the environment's proxies.
    with urllib.request.build_opener().open(request, timeout=timeout) as response:
        response.read(65536)
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(url, response.status, response.reason, response.headers, None)


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason or ''}".strip()
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return getattr(reason, "strerror", None) or str(reason)
    return f"{type(exc).__name__}: {exc}"


def deliver(url: str, data: bytes, timeout: float = TIMEOUT, retries: int = RETRIES, send=post, pause=RETRY_PAUSE):
    """Send ``data`` to ``url``, again after a failure, ``retries`` times: (delivered, attempts, error).
    Never raises; the error never quotes the URL."""
    attempts, error = 0, ""
    for attempt in range(max(int(retries), 0) + 1):
        attempts = attempt + 1
        try:
            send(url, data, timeout)
            return True, attempts, ""
        except Exception as exc:  # noqa: BLE001 - a webhook never fails what notifies
            error = scrub(_reason(exc, timeout), url)
        if attempt < retries and pause:
            time.sleep(pause)
    return False, attempts, error


def notify(webhooks, doc: dict, timeout: float = TIMEOUT, retries: int = RETRIES, send=post, dry_run=False):
    """Send the document to every webhook that wants its event: one result per webhook that wants it,
    ``{name, format, delivered, attempts, error}`` (``sent: false`` with ``dry_run``)."""
    results = []
    for index, hook in wanting(webhooks, doc["event"]):
        fmt = hook.get("format") or "json"
        result = {"name": webhook_name(hook, index), "format": fmt, "delivered": False, "attempts": 0, "error": ""}
        problems = check_webhook(hook, index)
        if problems:
            result["error"] = "; ".join(problems)
        elif dry_run:
            result["sent"] = False
        else:
            delivered, attempts, error = deliver(hook["url"], body(doc, fmt), timeout, retries, send)
            result.update(delivered=delivered, attempts=attempts, error=error)
        results.append(result)
    return results


def failures(results) -> list[str]:
    """One line per webhook the document did not reach."""
    return [
        f"notification to {result['name']} failed after {result['attempts']} attempt(s): {result['error']}"
        if result["attempts"]
        else f"notification to {result['name']} not sent: {result['error']}"
        for result in results
        if not result["delivered"] and result.get("sent", True)
    ]
