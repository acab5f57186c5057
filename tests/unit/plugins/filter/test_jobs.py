from __future__ import annotations

from ansible_collections.pydeploy.stack.plugins.filter.jobs import job_summary


def test_a_host_jobs_result_is_summarised_with_its_key_size_and_checksum():
    status = {
        "state": "succeeded",
        "exit_code": 0,
        "started_at": "2026-11-25T03:00:00Z",
        "duration_seconds": 12.5,
        "host": True,
        "result": {"key": "backups/db/db-1.dump.zst", "size": 2048, "sha256": "ab12", "failed": False},
        "runs": 3,
        "failures": 0,
        "skipped": 0,
    }
    assert job_summary(status) == (
        "succeeded, exit 0, started 2026-11-25T03:00:00Z (12.5 s), key backups/db/db-1.dump.zst, 2048 bytes,"
        " sha256 ab12, 3 runs, 0 failing in a row, 0 skipped"
    )


def test_a_failed_host_job_shows_its_message():
    status = {"state": "failed", "exit_code": 1, "result": {"failed": True, "msg": "S3 bucket b: access denied"}}
    assert "error: S3 bucket b: access denied" in job_summary(status)


def test_a_container_job_has_no_result_part():
    status = {"state": "succeeded", "exit_code": 0, "version": "v2", "runs": 1, "failures": 0, "skipped": 0}
    assert job_summary(status) == "succeeded, exit 0, v2, 1 runs, 0 failing in a row, 0 skipped"


def test_a_recorded_run_says_by_what_and_a_verified_backup_says_so():
    status = {
        "state": "succeeded",
        "exit_code": 0,
        "started_at": "2026-11-25T10:00:00Z",
        "duration_seconds": 4,
        "result": {"key": "backups/db/db-2.dump.zst", "size": 10, "verified": True, "failed": False},
        "by": "backup.yml",
        "runs": 4,
        "failures": 0,
        "skipped": 0,
    }
    assert job_summary(status) == (
        "succeeded, exit 0, started 2026-11-25T10:00:00Z (4 s), key backups/db/db-2.dump.zst, 10 bytes, verified,"
        " by backup.yml, 4 runs, 0 failing in a row, 0 skipped"
    )
    status["result"]["verified"] = False
    assert ", verification failed, by backup.yml," in job_summary(status)
