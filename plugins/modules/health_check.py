#!/usr/bin/python
# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: health_check
short_description: Wait until HTTP(S) endpoints, PostgreSQL and Redis are healthy
version_added: 0.1.0
description:
  - Polls a list of checks until every one of them is healthy, or fails when O(timeout) seconds have passed.
  - An C(http) check sends one request and compares the response with the expected status, JSON fields and
    body text. A C(postgres) check connects and runs a query in a read-only transaction. A C(redis) check
    sends C(PING).
  - Every round probes, one after the other, each check that is not healthy yet, then waits O(interval)
    seconds. A check is healthy once O(consecutive) attempts in a row succeeded; it is not probed again.
  - The module only reads, so it runs its checks in check mode too, and never reports a change.
  - Passwords never appear in what the module returns, in URLs, errors and bodies alike.
author:
  - pydeploy.stack contributors (!UNKNOWN)
requirements:
  - psycopg >= 3.1 on the target host, for O(postgres) checks.
  - redis (redis-py) >= 4.1 on the target host, for O(redis) checks.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs the checks as usual; they only read.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  http:
    description:
      - HTTP and HTTPS endpoints to check.
      - A redirect is not followed; list its status in O(http[].status) when it is what you expect.
      - Proxy settings in the environment are ignored; the module connects to the URL's host.
    type: list
    elements: dict
    default: []
    suboptions:
      url:
        description:
          - The URL to request, V(http://) or V(https://).
          - A user and password in it (V(https://user:pass@host/)) are sent as basic authentication. The
            password, and query parameters named like secrets (C(token), C(api_key), ...), are masked in the
            output.
        type: str
        required: true
      name:
        description:
          - What to call the check in results and messages.
          - Defaults to O(http[].url) with any password masked.
        type: str
      status:
        description:
          - The status code, or list of codes, that counts as healthy.
        type: raw
        default: 200
      json:
        description:
          - Fields the body must have, parsed as JSON. Values are compared exactly (V(true) is not V(1), V("1") is
            not V(1)).
          - A key that is not a top-level field is looked up as a dotted path, so V(checks.db) is the field
            C(db) of the object C(checks), and V(items.0.state) the field C(state) of the first element of
            C(items).
        type: dict
      contains:
        description:
          - Text the body must contain.
        type: str
      body:
        description:
          - A JSON value the whole body, parsed as JSON, must equal, compared exactly like the values of
            O(http[].json) - V(true) for an endpoint that answers a bare C(true), a list, a string, or an object
            with exactly these fields (O(http[].json) names some fields only).
          - A body of JSON C(null) cannot be asked for.
        type: raw
      fail_fast:
        description:
          - Whether a definitive wrong answer ends the wait at once, that is an unexpected status from 300 to 499
            (a redirect to a setup page, C(401), C(404)) other than C(408), C(425) and C(429), three times in a
            row. The module then fails with that answer, without waiting for O(timeout).
          - Server errors (C(500), C(502), C(503)), refused connections and a wrong body are waited out, as a
            process that is still starting gives them.
        type: bool
        default: true
      headers:
        description:
          - Request headers, for example C(Host) to ask a reverse proxy for one of its sites.
          - Values of credential headers (C(Authorization), C(Cookie), names containing C(token), C(secret),
            C(password) or C(api-key)) are masked in the output.
        type: dict
        default: {}
      method:
        description:
          - The HTTP method.
        type: str
        default: GET
      validate_certs:
        description:
          - Whether to verify the server's certificate and its name. Only set V(false) for throw-away
            test setups; prefer O(http[].ca_path).
        type: bool
        default: true
      ca_path:
        description:
          - A PEM file of CA certificates to verify the server's certificate against, B(instead of) the system's
            trust store. Use it for a private CA or a self-signed certificate.
        type: path
      tls_server_name:
        description:
          - The name sent as SNI and that the certificate must carry, when it is not the URL's host, for
            example when checking V(https://127.0.0.1/) before DNS points at the host.
          - Defaults to the host of the C(Host) header of O(http[].headers) when one is given, else to the URL's
            host.
        type: str
      request_timeout:
        description:
          - Seconds one attempt may take (connection and each read). Defaults to O(request_timeout).
        type: float
  postgres:
    description:
      - PostgreSQL servers to check, with psycopg 3.
      - The check connects, runs O(postgres[].query) in a read-only transaction and rolls it back.
    type: list
    elements: dict
    default: []
    suboptions:
      url:
        description:
          - A connection URI (V(postgresql://user:password@host:5432/dbname?sslmode=require)) or libpq
            C(key=value) string.
          - Declared C(no_log), as it may hold a password. In results and messages the module shows it with its
            password and secret parameters (C(sslpassword), names containing C(token) or C(secret)) masked; a
            URL without any of them is shown as is.
          - Mutually exclusive with O(postgres[].host), O(postgres[].port), O(postgres[].user) and
            O(postgres[].dbname); O(postgres[].password) can complete it.
        type: str
      host:
        description:
          - The server's host name, address, or socket directory.
          - One of O(postgres[].url) and O(postgres[].host) is required.
        type: str
      port:
        description:
          - The server's port. Defaults to libpq's (C(PGPORT), else 5432).
        type: int
      user:
        description:
          - The role to log in as. Defaults to libpq's (C(PGUSER), else the user the module runs as).
        type: str
      password:
        description:
          - The role's password.
        type: str
      dbname:
        description:
          - The database to connect to. Defaults to libpq's (C(PGDATABASE), else the user name).
        type: str
      query:
        description:
          - The query to run. The check fails when it errors, or when its first column of its first row is
            V(false) (so V(SELECT NOT pg_is_in_recovery()) checks for a primary).
        type: str
        default: SELECT 1
      name:
        description:
          - What to call the check in results and messages. Defaults to the connection URL without password.
        type: str
      request_timeout:
        description:
          - Seconds one attempt may take, as the connection timeout (at least 2, in whole seconds) and the
            query's C(statement_timeout). Defaults to O(request_timeout).
        type: float
  redis:
    description:
      - Redis servers to check with C(PING), with redis-py.
    type: list
    elements: dict
    default: []
    suboptions:
      url:
        description:
          - The server's URL, V(redis://[[user]:password@]host[:port][/db]), V(rediss://...) for TLS, or
            V(unix:///path/to/socket).
          - Options of redis-py may be added as query parameters, for example V(?protocol=3).
          - Declared C(no_log), as it may hold a password. In results and messages the module shows it with its
            password masked; a URL without password is shown as is.
        type: str
        required: true
      password:
        description:
          - The password, when O(redis[].url) has none.
        type: str
      name:
        description:
          - What to call the check in results and messages. Defaults to the URL without password.
        type: str
      request_timeout:
        description:
          - Seconds one attempt may take (connection and reply). Defaults to O(request_timeout).
        type: float
  timeout:
    description:
      - Seconds to wait for all checks to become healthy. V(0) tries each check once.
      - Each check is attempted at least once, and attempts are cut short so they end near the deadline, but
        each gets at least one second.
    type: float
    default: 60
  interval:
    description:
      - Seconds to wait between two rounds of attempts.
    type: float
    default: 1
  request_timeout:
    description:
      - Seconds one attempt of a check may take, unless the check sets its own.
    type: float
    default: 5
  consecutive:
    description:
      - How many attempts in a row must succeed for a check to be healthy. Use more than V(1) for a service
        that can answer once and crash afterwards.
    type: int
    default: 1
notes:
  - At least one check is required among O(http), O(postgres) and O(redis).
  - Checks run from the target host, so V(127.0.0.1) is the host being deployed.
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
"""

EXAMPLES = r"""
- name: Wait for the app behind nginx, its database and its cache
  pydeploy.stack.health_check:
    http:
      - url: https://127.0.0.1/health
        headers:
          Host: app.example.com
        json:
          status: ok
          checks.db: ok
    postgres:
      - url: "postgresql://app:{{ app_db_password }}@127.0.0.1:5432/app"
    redis:
      - url: "redis://:{{ redis_password }}@127.0.0.1:6379/0"
    timeout: 120

- name: Check a service with a self-signed certificate, reached by address
  pydeploy.stack.health_check:
    http:
      - name: api
        url: https://127.0.0.1:8443/health
        ca_path: /etc/pydeploy/tls/api.crt
        tls_server_name: api.internal
        status: [200, 204]
        contains: ready
    consecutive: 3
    interval: 2

- name: Wait for a replica, with the password kept out of the URL
  pydeploy.stack.health_check:
    postgres:
      - name: replica
        host: 10.0.0.12
        user: monitor
        password: "{{ monitor_password }}"
        dbname: postgres
        query: SELECT pg_is_in_recovery()

- name: Record the state without failing the play
  pydeploy.stack.health_check:
    http:
      - url: http://127.0.0.1:8000/health
    timeout: 0
  register: health
  failed_when: false

- name: Show what was wrong
  ansible.builtin.debug:
    msg: "{{ health.checks | rejectattr('healthy') | map(attribute='error') | list }}"
"""

RETURN = r"""
checks:
  description:
    - One entry per check, in the order O(http), O(postgres), O(redis). Returned on failure too.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name, by default its target.
      type: str
      sample: api
    kind:
      description: V(http), V(postgres) or V(redis).
      type: str
      sample: http
    target:
      description: The URL checked, with any password masked.
      type: str
      sample: postgresql://app:********@127.0.0.1:5432/app
    healthy:
      description: Whether the check reached O(consecutive) successful attempts in a row.
      type: bool
      sample: true
    attempts:
      description: How many attempts were made.
      type: int
      sample: 4
    latency_ms:
      description: How long the last successful attempt took, in milliseconds; V(null) if none succeeded.
      type: float
      sample: 3.2
    status:
      description: The HTTP status of the last attempt; V(null) for other kinds or when no response came.
      type: int
      sample: 200
    body:
      description:
        - For C(http), the body of the last response, decoded when it is JSON, else text cut at about 2 KB.
        - For C(postgres), the first column of the first row of the last query.
        - V(null) for C(redis) and when there was nothing to show.
      type: raw
      sample: {"status": "ok", "checks": {"db": "ok"}}
    error:
      description: What was wrong with the last attempt; V(null) when the check is healthy.
      type: str
      sample: "expected json status=ok, got status=degraded"
elapsed:
  description: Seconds spent checking.
  returned: always
  type: float
  sample: 3.21
msg:
  description: A summary; on failure, each failing check with the last problem it saw.
  returned: always
  type: str
  sample: "1 of 2 health check(s) not healthy after 60.0s (timeout 60s): http https://localhost:8443/health:
    expected status 200, got 503: {\"status\": \"starting\"}"
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.pydeploy.stack.plugins.module_utils._health import (
    HealthCheckError,
    MissingLibrary,
    all_secrets,
    build_checks,
    failure_message,
    public_urls,
    run_checks,
    success_message,
)


def argument_spec() -> dict:
    return dict(
        http=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                url=dict(type="str", required=True),
                name=dict(type="str"),
                status=dict(type="raw", default=200),
                json=dict(type="dict"),
                contains=dict(type="str"),
                body=dict(type="raw"),
                fail_fast=dict(type="bool", default=True),
                headers=dict(type="dict", default={}),
                method=dict(type="str", default="GET"),
                validate_certs=dict(type="bool", default=True),
                ca_path=dict(type="path"),
                tls_server_name=dict(type="str"),
                request_timeout=dict(type="float"),
            ),
        ),
        postgres=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                url=dict(type="str", no_log=True),
                host=dict(type="str"),
                port=dict(type="int"),
                user=dict(type="str"),
                password=dict(type="str", no_log=True),
                dbname=dict(type="str"),
                query=dict(type="str", default="SELECT 1"),
                name=dict(type="str"),
                request_timeout=dict(type="float"),
            ),
            mutually_exclusive=[("url", "host"), ("url", "port"), ("url", "user"), ("url", "dbname")],
            required_one_of=[("url", "host")],
        ),
        redis=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                url=dict(type="str", required=True, no_log=True),
                password=dict(type="str", no_log=True),
                name=dict(type="str"),
                request_timeout=dict(type="float"),
            ),
        ),
        timeout=dict(type="float", default=60),
        interval=dict(type="float", default=1),
        request_timeout=dict(type="float", default=5),
        consecutive=dict(type="int", default=1),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if not (params["http"] or params["postgres"] or params["redis"]):
        module.fail_json(msg="no check given: set at least one of http, postgres, redis")
    for option, minimum in (("timeout", 0), ("interval", 0), ("request_timeout", 0.001), ("consecutive", 1)):
        if params[option] < minimum:
            module.fail_json(msg=f"{option} must be at least {minimum:g}, got {params[option]:g}")

    try:
        checks = build_checks(params)
    except MissingLibrary as exc:
        module.fail_json(msg=missing_required_lib(exc.library), exception=exc.import_error)
    except HealthCheckError as exc:
        module.fail_json(msg=str(exc))
    # Passwords found inside URLs and credential headers: masked everywhere
    # in the result, the echoed module arguments included.
    module.no_log_values.update(all_secrets(checks))
    # A no_log URL without any password (say redis://127.0.0.1:6379/0) would
    # otherwise be shown as ******** in targets and messages.
    module.no_log_values.difference_update(public_urls(checks))

    elapsed = run_checks(
        checks,
        timeout=params["timeout"],
        interval=params["interval"],
        consecutive=params["consecutive"],
    )
    results = [check.result() for check in checks]
    elapsed = round(elapsed, 3)
    if all(check.healthy for check in checks):
        module.exit_json(changed=False, msg=success_message(checks, elapsed), checks=results, elapsed=elapsed)
    module.fail_json(
        msg=failure_message(checks, elapsed, params["timeout"]),
        checks=results,
        elapsed=elapsed,
    )


if __name__ == "__main__":
    main()
