# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a backup module of pydeploy.stack on this host, the way Ansible runs it:

    python3 pydeploy-backup.pyz <db_backup|db_restore|backup_prune> <args.json>

args.json is {"ANSIBLE_MODULE_ARGS": {...}}, the module's options (mode 0600: it holds the S3 secret).
The module's JSON result is printed (secrets masked by the module); its key, size, checksum, duration
and outcome are also written to $PYDEPLOY_JOB_RESULT when the job runner sets it. The exit status is
the module's: 0 on success, 1 on failure.
"""

import contextlib
import io
import json
import os
import runpy
import sys

MODULES = ("db_backup", "db_restore", "backup_prune")
KEPT = ("key", "size", "sha256", "duration", "total_duration", "verified", "scratch_database", "msg", "changed")


def summary(output: str, code: int) -> dict:
    result = {}
    for line in reversed(output.strip().splitlines()):
        with contextlib.suppress(ValueError):
            result = json.loads(line)
            break
    kept = {key: result[key] for key in KEPT if key in result}
    kept["failed"] = bool(result.get("failed")) or code != 0
    if isinstance(result.get("pruned"), dict):
        kept["pruned"] = len(result["pruned"].get("deleted") or [])
    return kept


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in MODULES or not os.path.isfile(sys.argv[2]):
        print(f"usage: pydeploy-backup.pyz {{{'|'.join(MODULES)}}} ARGS.json", file=sys.stderr)
        return 2
    module, args = sys.argv[1], sys.argv[2]
    sys.argv = [module, args]
    captured, code = io.StringIO(), 0
    with contextlib.redirect_stdout(captured):
        try:
            runpy.run_module(f"ansible_collections.pydeploy.stack.plugins.modules.{module}", run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    output = captured.getvalue()
    sys.stdout.write(output)
    target = os.environ.get("PYDEPLOY_JOB_RESULT")
    if target:
        with open(target, "w", encoding="utf-8") as handle:
            json.dump(summary(output, code), handle, sort_keys=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
