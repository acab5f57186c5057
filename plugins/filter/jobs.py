# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack's scheduled jobs (``stack_jobs``): checks, and what the job runner reads."""

from __future__ import annotations

import re
import shlex

from ansible.errors import AnsibleFilterError
from ansible_collections.pydeploy.stack.plugins.filter.cron import cron_schedule_error
from ansible_collections.pydeploy.stack.plugins.filter.processes import process_security
from ansible_collections.pydeploy.stack.plugins.filter.volumes import volume_binds

KEYS = ("schedule", "command", "timeout", "stop_grace_period", "memory", "cpus", "security", "volumes", "enabled")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MEMORY = re.compile(r"^[0-9]+[bkmg]?$", re.IGNORECASE)


def _argv(command):
    if isinstance(command, (list, tuple)):
        return [str(arg) for arg in command]
    return shlex.split(str(command))


def cron_job_errors(jobs):
    """One message per problem in ``stack_jobs``, each naming the job; empty when all is well."""
    if jobs is None:
        return []
    if not isinstance(jobs, dict):
        return ["stack_jobs must be a dict of job name: {schedule, command, ...}"]
    errors = []
    for name, spec in sorted(jobs.items(), key=lambda item: str(item[0])):
        where = f"stack_jobs.{name}"
        if not NAME.match(str(name)):
            errors.append(f"{where}: a job name is lower-case letters, digits, '-' or '_' (at most 63)")
        if not isinstance(spec, dict):
            errors.append(f"{where} must be a dict with schedule and command")
            continue
        unknown = sorted(set(map(str, spec)) - set(KEYS))
        if unknown:
            errors.append(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
        if "schedule" not in spec:
            errors.append(f"{where}: no schedule")
        else:
            reason = cron_schedule_error(spec["schedule"])
            if reason:
                errors.append(f"{where}.schedule {spec['schedule']!r}: {reason}")
        command = spec.get("command")
        try:
            argv = _argv(command) if command is not None else []
        except ValueError as exc:
            errors.append(f"{where}.command cannot be split: {exc}")
        else:
            if not argv:
                errors.append(f"{where}: no command")
        for key in ("timeout", "stop_grace_period"):
            value = spec.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                errors.append(f"{where}.{key} must be a whole number of seconds, at least 1")
        memory = spec.get("memory")
        if memory not in (None, "") and not MEMORY.match(str(memory)):
            errors.append(f"{where}.memory must look like 512m or 1g")
        cpus = spec.get("cpus")
        if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus < 0):
            errors.append(f"{where}.cpus must be a number, 0 for no limit")
        if not isinstance(spec.get("enabled", True), bool):
            errors.append(f"{where}.enabled must be true or false")
    return errors


def cron_job(spec, timeout=3600, stop_grace_period=30, volumes=None, stack=""):
    """A job as the runner reads it: the command as argv, and every setting filled in; with the stack's
    ``volumes``, the mounts of those the job names (all of them when it names none)."""
    if not isinstance(spec, dict) or "command" not in spec:
        raise AnsibleFilterError("cron_job expects a job with a command")
    job = {
        "command": _argv(spec["command"]),
        "schedule": str(spec.get("schedule", "")),
        "timeout": int(spec.get("timeout") or timeout),
        "stop_grace_period": int(spec.get("stop_grace_period") or stop_grace_period),
        "memory": str(spec.get("memory") or ""),
        "cpus": float(spec.get("cpus") or 0),
        "security": process_security(spec.get("security")),
    }
    if volumes:
        job["volumes"] = volume_binds(spec.get("volumes"), volumes, stack)
    return job


def cron_enabled_jobs(jobs):
    """The jobs to schedule, by name, as ``dict2items`` would give them: those not marked ``enabled: false``."""
    return [
        {"key": name, "value": spec}
        for name, spec in sorted((jobs or {}).items(), key=lambda item: str(item[0]))
        if not (isinstance(spec, dict) and spec.get("enabled") is False)
    ]


def job_summary(status):
    """One line from a job's status file: its last run, and how many runs and skips so far."""
    if not isinstance(status, dict):
        return "unknown"
    state = status.get("state", "unknown")
    if state == "never_run":
        return "never run"
    parts = [state]
    if status.get("exit_code") is not None:
        parts.append(f"exit {status['exit_code']}")
    if status.get("started_at"):
        when = f"started {status['started_at']}"
        if status.get("duration_seconds") is not None:
            when += f" ({status['duration_seconds']:g} s)"
        parts.append(when)
    if status.get("version"):
        parts.append(str(status["version"]))
    result = status.get("result")
    if isinstance(result, dict):  # a host job's own result: a backup's key, size and checksum
        if result.get("key"):
            parts.append(f"key {result['key']}")
        if result.get("size") is not None:
            parts.append(f"{result['size']} bytes")
        if result.get("sha256"):
            parts.append(f"sha256 {result['sha256']}")
        if result.get("verified") is not None:  # checked by a restore into a scratch database
            parts.append("verified" if result["verified"] else "verification failed")
        if result.get("failed") and result.get("msg"):
            parts.append(f"error: {result['msg']}")
    if status.get("by"):  # a run made elsewhere and recorded (pydeploy-job --record)
        parts.append(f"by {status['by']}")
    runs, failures, skipped = (status.get(key, 0) for key in ("runs", "failures", "skipped"))
    parts.append(f"{runs} runs, {failures} failing in a row, {skipped} skipped")
    return ", ".join(parts)


def release_summary(entry):
    """One line about a release in the ledger."""
    if not isinstance(entry, dict):
        return "none"
    parts = [str(entry.get("version", "?"))]
    if entry.get("kind") == "rollback":
        parts.append("(rollback)")
    by = entry.get("deployed_by") or "?"
    if entry.get("awx_job_id"):
        by += f" (AWX job {entry['awx_job_id']})"
    parts.append(f"at {entry.get('deployed_at', '?')} by {by}")
    if entry.get("migration_after"):
        parts.append(f"schema {entry['migration_after']}")
    if entry.get("backup_key"):
        parts.append(f"backup {entry['backup_key']}")
    return " ".join(parts)


def _holder_name(holder: dict) -> str:
    """The user who launched the AWX job and its id, or the controller's user."""
    who = holder.get("awx_user_name") or holder.get("user") or "?"
    if holder.get("awx_job_id"):
        who += f" (AWX job {holder['awx_job_id']})"
    return who


def lock_summary(holder):
    """Who holds the deploy lock, in one line."""
    if not isinstance(holder, dict) or not holder:
        return "an unknown run"
    return (
        f"{_holder_name(holder)} from {holder.get('controller') or '?'} (pid {holder.get('pid', '?')})"
        f" since {holder.get('since', '?')}, deploying {holder.get('version') or '?'}"
    )


class FilterModule:
    def filters(self):
        return {
            "cron_job_errors": cron_job_errors,
            "cron_job": cron_job,
            "cron_enabled_jobs": cron_enabled_jobs,
            "job_summary": job_summary,
            "release_summary": release_summary,
            "lock_summary": lock_summary,
        }
