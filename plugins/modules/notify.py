#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: notify
short_description: Tell webhooks what happened to a stack (a deploy, a rollback, a job, a backup, a container)
version_added: 0.1.0
description:
  - Sends one event of a stack to every webhook of O(webhooks) that wants it, as a JSON document or as a
    Slack-compatible message, with a short timeout and one retry.
  - A webhook that fails (an HTTP error such as C(500), a refused connection, no answer in time) never fails
    the task; the module returns what happened to each webhook and warns about each failure.
  - The job runner of the collection's C(cron) and C(backup) roles sends the events of scheduled jobs,
    backups and the restart check from the hosts with the same code and the same bodies.
  - A webhook's URL often holds its secret (Slack's and Teams' do, in their path). It is declared C(no_log),
    never returned, and messages name a webhook by O(webhooks[].name), or by its scheme and host only.
  - 'The C(json) body is an object with the keys C(source) (V(pydeploy.stack)), C(stack), C(event), C(status),
    C(host), C(process), C(job), C(message), C(cause), C(release), C(details) and C(time) (UTC, ISO 8601): see
    RV(body). The C(slack) body is an object with one key, C(text), the same facts as one message.'
author:
  - pydeploy.stack contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Sends nothing; returns which webhooks want the event and the body they would get.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  webhooks:
    description:
      - The webhooks, the stack's C(stack_notify). An empty list sends nothing.
    type: list
    elements: dict
    required: true
    suboptions:
      url:
        description:
          - Where the event is posted, V(http://) or V(https://). Never logged nor returned.
        type: str
        required: true
      format:
        description:
          - V(json) posts the event's document; V(slack) posts an object with one key, C(text), which Slack's
            incoming webhooks and compatible chats (Mattermost, Rocket.Chat, Discord's C(/slack) endpoint) show.
        type: str
        choices: [json, slack]
        default: json
      events:
        description:
          - The events the webhook wants; V(all) for every one.
        type: list
        elements: str
        choices: [all, deploy_succeeded, deploy_failed, rolled_back, job_failed, backup_failed, container_restarting]
        default: [all]
      name:
        description:
          - What results and warnings call the webhook. By default its scheme and host (V(https://hooks.slack.com/…)).
        type: str
  stack:
    description: The stack's name.
    type: str
    required: true
  event:
    description:
      - What happened. V(deploy_succeeded), V(deploy_failed) (a deploy or a rollback that failed, naming the
        step), V(rolled_back) (C(rollback.yml) went through), V(job_failed) (a scheduled job failed or timed out),
        V(backup_failed) (a backup or a restore drill failed), V(container_restarting) (a container restarting
        too often, or killed for lack of memory).
    type: str
    required: true
    choices: [deploy_succeeded, deploy_failed, rolled_back, job_failed, backup_failed, container_restarting]
  status:
    description:
      - The outcome in one word (V(succeeded), V(failed), V(timed_out), V(rolled_back), V(restarting),
        V(oom_killed), ...). By default the event's own (V(failed) for V(deploy_failed)).
    type: str
  host:
    description: The host the event is about.
    type: str
    default: ""
  process:
    description: The process the event is about (V(web), V(worker)), for V(container_restarting).
    type: str
  job:
    description: The scheduled job the event is about, for V(job_failed) and V(backup_failed).
    type: str
  summary:
    description:
      - One line saying what happened, the body's C(message). By default the stack's name and the event's.
    type: str
  cause:
    description: Why it happened, such as the message of the task that failed.
    type: str
  release:
    description:
      - The release's summary for the deploy events, as C(set_stats) reports it as C(pydeploy_release) (image,
        version, kind, digest, url, health_ms, migration, backup_key, deployed_by, awx_job_id).
    type: dict
  details:
    description: Anything else the event carries (an exit code, a log's last lines, a restart count).
    type: dict
    default: {}
  timeout:
    description: Seconds one attempt to reach a webhook may take.
    type: float
    default: 5
  retries:
    description: How many times a failed attempt is made again.
    type: int
    default: 1
notes:
  - The module runs where the task runs; the deploy's finish step delegates it to the controller.
seealso:
  - module: ansible.builtin.uri
"""

EXAMPLES = r"""
- name: Tell the team's chat and the incident tool that a deploy failed
  pydeploy.stack.notify:
    webhooks:
      - name: team chat
        url: "{{ vault_slack_webhook_url }}"
        format: slack
      - name: incidents
        url: https://alerts.example.com/hooks/pydeploy
        events: [deploy_failed, job_failed, backup_failed, container_restarting]
    stack: shop
    event: deploy_failed
    host: web1
    summary: deploy of shop v20251105_143022 failed in the migrate step
    cause: "alembic upgrade head exited with 1: relation car_owners does not exist"
  delegate_to: localhost
  run_once: true

- name: Tell every webhook of the stack that a release landed
  pydeploy.stack.notify:
    webhooks: "{{ stack_notify }}"
    stack: "{{ stack_name }}"
    event: deploy_succeeded
    summary: "deploy of {{ stack_name }} {{ stack_version }} succeeded"
    release:
      image: registry.example.com/shop
      version: "{{ stack_version }}"
      url: https://shop.example.com/
  register: notified

- name: Show the webhooks that did not get it
  ansible.builtin.debug:
    msg: "{{ notified.notifications | rejectattr('delivered') | map(attribute='name') | list }}"
"""

RETURN = r"""
notifications:
  description: One entry per webhook that wants the event, in the order of O(webhooks).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The webhook's name, or its scheme and host.
      type: str
      sample: team chat
    format:
      description: The body's format.
      type: str
      sample: slack
    delivered:
      description: Whether the webhook answered with a 2xx status.
      type: bool
      sample: true
    attempts:
      description: How many requests were made (0 in check mode).
      type: int
      sample: 1
    error:
      description: What went wrong with the last attempt; empty when delivered.
      type: str
      sample: HTTP 500 Internal Server Error
body:
  description: The event's document, the body of the C(json) format.
  returned: always
  type: dict
  contains:
    source:
      description: Always V(pydeploy.stack).
      type: str
      sample: pydeploy.stack
    stack:
      description: The stack's name.
      type: str
      sample: shop
    event:
      description: O(event).
      type: str
      sample: deploy_failed
    status:
      description: O(status), or the event's own.
      type: str
      sample: failed
    host:
      description: O(host).
      type: str
      sample: web1
    process:
      description: O(process), or V(null).
      type: str
      sample: null
    job:
      description: O(job), or V(null).
      type: str
      sample: null
    message:
      description: O(summary).
      type: str
      sample: deploy of shop v20251105_143022 failed in the migrate step on web1
    cause:
      description: O(cause), or V(null).
      type: str
      sample: "alembic upgrade head exited with 1: relation car_owners does not exist"
    release:
      description: O(release), or V(null).
      type: dict
      sample: {"version": "v20251105_143022", "kind": "deploy", "url": "https://shop.example.com/"}
    details:
      description: O(details).
      type: dict
      sample: {"step": "migrate"}
    time:
      description: When the event was sent, UTC.
      type: str
      sample: "2025-11-05T14:31:02Z"
msg:
  description: How many webhooks got the event.
  returned: always
  type: str
  sample: notified 1 of 2 webhook(s) of deploy_failed
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pydeploy.stack.plugins.module_utils import _notify

EVENTS = list(_notify.EVENTS)


def argument_spec() -> dict:
    return dict(
        webhooks=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(
                url=dict(type="str", required=True, no_log=True),
                format=dict(type="str", choices=list(_notify.FORMATS), default="json"),
                events=dict(type="list", elements="str", choices=[_notify.ALL, *EVENTS], default=[_notify.ALL]),
                name=dict(type="str"),
            ),
        ),
        stack=dict(type="str", required=True),
        event=dict(type="str", required=True, choices=EVENTS),
        status=dict(type="str"),
        host=dict(type="str", default=""),
        process=dict(type="str"),
        job=dict(type="str"),
        summary=dict(type="str"),
        cause=dict(type="str"),
        release=dict(type="dict"),
        details=dict(type="dict", default={}),
        timeout=dict(type="float", default=_notify.TIMEOUT),
        retries=dict(type="int", default=_notify.RETRIES),
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be more than 0, got {params['timeout']:g}")
    if params["retries"] < 0:
        module.fail_json(msg=f"retries must be at least 0, got {params['retries']}")
    webhooks = params["webhooks"] or []
    problems = [problem for index, hook in enumerate(webhooks) for problem in _notify.check_webhook(hook, index)]
    if problems:
        module.fail_json(msg="; ".join(problems))
    doc = _notify.document(
        params["stack"],
        params["event"],
        params["host"],
        params["summary"] or "",
        status=params["status"] or "",
        process=params["process"],
        job=params["job"],
        cause=params["cause"],
        release=params["release"],
        details=params["details"],
    )
    results = _notify.notify(webhooks, doc, params["timeout"], params["retries"], dry_run=module.check_mode)
    for line in _notify.failures(results):
        module.warn(f"{line} (the run goes on)")
    delivered = sum(1 for result in results if result["delivered"])
    verb = "would notify" if module.check_mode else f"notified {delivered} of"
    module.exit_json(
        changed=False,
        notifications=results,
        body=doc,
        msg=f"{verb} {len(results)} webhook(s) of {params['event']}",
    )


if __name__ == "__main__":
    main()
