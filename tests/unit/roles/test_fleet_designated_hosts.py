"""Which host of a fleet acts for the whole of it: the beat host (workers_singleton_host), the jobs' host (cron_host)
and the backups' host (backup_host), each the first of its group in inventory order within --limit; and the
fingerprints of the workers and cron roles, which change on a host that starts or stops acting (so that the fast path
skips neither the old host nor the new one) and stay as they were on the host that acts (a one-host inventory)."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml
from ansible.plugins.filter.core import FilterModule as CoreFilters
from jinja2.nativetypes import NativeEnvironment

ROLES = Path(__file__).resolve().parents[3] / "roles"
ENVIRONMENT = NativeEnvironment()
# Ansible's own filters that Jinja2 lacks (its versions of Jinja2's builtins need Ansible's templar).
ENVIRONMENT.filters.update({name: CoreFilters().filters()[name] for name in ("combine", "dict2items")})


def inventory_hostnames(groups: dict, limit: str) -> list[str]:
    """The hosts a --limit of group or host names (``a:b``) selects, as the inventory_hostnames lookup answers."""
    names = []
    for pattern in limit.split(":"):
        for host in groups["all"] if pattern == "all" else groups.get(pattern, [pattern]):
            if host not in names:
                names.append(host)
    return names


def context(groups: dict, host: str, limit: str | None = None, **variables) -> dict:
    groups = {**groups, "all": [h for names in groups.values() for h in names if h]}
    groups["all"] = list(dict.fromkeys(groups["all"]))

    def query(name: str, pattern: str) -> list[str]:
        assert name == "ansible.builtin.inventory_hostnames"
        return inventory_hostnames(groups, pattern)

    values = {"groups": groups, "inventory_hostname": host, "query": query, **variables}
    if limit is not None:
        values["ansible_limit"] = limit
    return values


def render(expression, values: dict):
    return ENVIRONMENT.from_string(expression).render(values) if isinstance(expression, str) else expression


def default(role: str, name: str, values: dict):
    return render(yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())[name], values)


def role_var(role: str, name: str, values: dict):
    return render(yaml.safe_load((ROLES / role / "vars" / "main.yml").read_text())[name], values)


STAGING_AND_PROD = {
    "web": ["s-web", "p-web"],
    "postgres": ["s-db", "p-db"],
    "staging": ["s-web", "s-db"],
    "prod": ["p-web", "p-db"],
}
FLEET = {"web": ["web1"], "worker": ["w1", "w2"], "beat": ["w1", "w2"], "cron": ["w1", "w2"], "postgres": ["db"]}


@pytest.mark.parametrize(
    ("groups", "limit", "expected"),
    [
        (FLEET, None, "w1"),
        ({**FLEET, "beat": ["w2", "w1"]}, None, "w2"),
        # The standby acts for a run that leaves the first host out.
        (FLEET, "web1:w2", "w2"),
        ({**FLEET, "beat": []}, None, "w1"),
        ({**FLEET, "beat": ["web1"]}, None, "web1"),
    ],
    ids=["first-of-beat", "swapped", "limited", "no-beat-group", "beat-outside-workers"],
)
def test_the_beat_host_is_the_first_of_the_beat_group_within_the_limit(groups, limit, expected):
    for host in ("web1", "w1", "w2"):
        assert default("workers", "workers_singleton_host", context(groups, host, limit)) == expected


@pytest.mark.parametrize(
    ("groups", "limit", "expected"),
    [
        (FLEET, None, "w1"),
        ({**FLEET, "cron": ["w2", "w1"]}, None, "w2"),
        (FLEET, "web1:w2", "w2"),
        ({**FLEET, "cron": []}, None, "web1"),
    ],
    ids=["first-of-cron", "swapped", "limited", "no-cron-group"],
)
def test_the_jobs_host_is_the_first_of_the_cron_group_within_the_limit(groups, limit, expected):
    for host in ("web1", "w1", "w2"):
        values = context(groups, host, limit)
        assert default("cron", "cron_host", values) == expected
        assert role_var("cron", "_cron_here", {**values, "cron_host": expected}) == (host == expected)


@pytest.mark.parametrize(
    ("groups", "limit", "expected"),
    [
        (FLEET, None, "db"),
        # One inventory holding staging and prod: the prod run backs up prod's database.
        (STAGING_AND_PROD, "prod", "p-db"),
        # The engine backed up is MongoDB's when the stack has one: its host, not PostgreSQL's.
        ({"web": ["web1"], "postgres": ["pg"], "mongodb": ["mongo"]}, None, "mongo"),
        ({"web": ["web1"]}, None, "web1"),
    ],
    ids=["database-host", "limited", "mongodb", "no-database-group"],
)
def test_the_backups_host_is_the_databases(groups, limit, expected):
    values = context(groups, "web1", limit)
    values["backup_engine"] = default("backup", "backup_engine", values)
    assert default("backup", "backup_host", values) == expected


def fast_path_values(role: str, task_file: str, values: dict) -> dict:
    """The values a role adds to its fingerprint (pydeploy_fast_path_values of ``task_file``'s first fast path)."""
    tasks = yaml.safe_load((ROLES / role / "tasks" / task_file).read_text())
    task = next(entry for entry in tasks if "pydeploy_fast_path_values" in entry.get("vars", {}))
    inner = {name: value for name, value in task["vars"].items() if name.startswith("_")}
    values = {**values, **{name: render(value, values) for name, value in inner.items()}}
    return render(task["vars"]["pydeploy_fast_path_values"], values)


BEAT = {"beat": {"command": "celery beat", "singleton": True}, "worker": {"command": "celery worker"}}


@pytest.mark.parametrize("processes", [BEAT, {"worker": {"command": "celery worker"}}], ids=["beat", "no-singleton"])
def test_the_workers_fingerprint_names_the_beat_host_on_the_other_hosts(processes):
    def fingerprint(groups: dict, host: str) -> dict:
        values = context(groups, host, hostvars=collections.defaultdict(dict), stack_processes=processes,
                         _workers_wanted=[], _workers_version="v1")  # fmt: skip
        values["workers_singleton_host"] = default("workers", "workers_singleton_host", values)
        values["_workers_singletons"] = role_var("workers", "_workers_singletons", values)
        return fast_path_values("workers", "fast_path.yml", values)

    swapped = {**FLEET, "beat": ["w2", "w1"]}
    one_host = {group: ["w1"] for group in FLEET}
    assert fingerprint(one_host, "w1") == {"version": "", "database": "", "redis": ""}
    # The host that acts fingerprints as a one-host inventory does; the others name it, so both hosts of a move
    # see their fingerprint change.
    assert fingerprint(FLEET, "w1") == fingerprint(swapped, "w2") == fingerprint(one_host, "w1")
    if "beat" in processes:
        assert fingerprint(FLEET, "w2")["singleton_host"] == "w1"
        assert fingerprint(swapped, "w1")["singleton_host"] == "w2"
    else:
        assert fingerprint(FLEET, "w2") == fingerprint(swapped, "w1") == fingerprint(one_host, "w1")


def test_the_cron_fingerprint_names_the_jobs_host_on_the_other_hosts():
    def fingerprint(groups: dict, host: str, jobs: dict) -> dict:
        values = context(groups, host, stack_jobs=jobs)
        values["cron_host"] = default("cron", "cron_host", values)
        values["_cron_here"] = role_var("cron", "_cron_here", values)
        values["_cron_jobs"] = [{"key": name, "value": job} for name, job in jobs.items()]
        tasks = yaml.safe_load((ROLES / "cron" / "tasks" / "main.yml").read_text())
        task = next(entry for entry in tasks if entry.get("vars", {}).get("pydeploy_fast_path_key") == "cron")
        return render(task["vars"]["pydeploy_fast_path_values"], values)

    jobs = {"report": {"schedule": "0 3 * * *", "command": "python -m report"}}
    swapped = {**FLEET, "cron": ["w2", "w1"]}
    assert fingerprint(FLEET, "w1", jobs) == fingerprint(swapped, "w2", jobs) == {}
    assert fingerprint(FLEET, "w2", jobs) == {"cron_host": "w1"}
    assert fingerprint(swapped, "w1", jobs) == {"cron_host": "w2"}
    assert fingerprint(FLEET, "web1", jobs) == {"cron_host": "w1"}
    assert fingerprint(FLEET, "w2", {}) == {}
