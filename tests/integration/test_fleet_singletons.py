"""Exactly one beat and one runner of the scheduled jobs fleet-wide: Flow Forecaster deployed with deploy.yml over SSH
onto two bare Debian hosts of their own (tests/integration/hosts.py), web and the proxy on the first, a worker on each,
and beat and cron groups naming both (the first listed acts, the other is a standby).  PostgreSQL and Redis run beside
the hosts on their network (containers of the test's, the stack's external URLs).

Beat sends a tick every 2 s, and the workers write a row per tick: one beat ticks at that rate, two would tick twice
as often.  After the first deploy, after the groups' order is swapped (the other host acts: the old beat died on its
host before the new one started on the other, as the hosts' engines' events show), and after a new release and a
rollback, exactly one beat container exists on the hosts, the one whose log sends the ticks, and the ticks come at one
beat's rate.  The scheduled job's line is on the acting host only, and run there as cron runs it, it writes one row;
the standby has no line and no release to run."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import pytest
from conftest import wait_for
from playbook import REPO, run_playbook

STACK = "flow_fleet"
GROUP_VARS = REPO / "tests" / "integration" / "inventories" / STACK / "group_vars"
CRON_FILE = f"/etc/cron.d/pydeploy-{STACK}"
JOBS_FILE = f"/etc/pydeploy/{STACK}/jobs.json"
TICK_SECONDS = 2  # BEAT_TICK_SECONDS in the group_vars
WINDOW = 12
TICKS_IN_WINDOW = "SELECT count(*) FROM forecasts WHERE kind = 'tick' AND started_at > now() - interval '12 s'"
DATABASE = "flow"
# The first deploy installs the modules' libraries and pulls the release onto both hosts: on a busy machine, many
# minutes.
pytestmark = pytest.mark.timeout(3600)


class Fleet:
    """The two hosts, the data services beside them and the inventory the test rewrites."""

    def __init__(self, fleet, folder: Path, bed_image):
        self.fleet = fleet
        self.folder = folder
        self.password = secrets.token_hex(16)
        self.postgres = fleet.run_client(
            bed_image("postgres"),
            [
                "sh",
                "-c",
                f"POSTGRES_PASSWORD={self.password} POSTGRES_DB={DATABASE} exec docker-entrypoint.sh postgres",
            ],
        )
        self.redis = fleet.run_client(bed_image("redis"), ["redis-server", "--requirepass", self.password])
        self.hosts = [fleet.start_host() for _ in range(2)]
        self.first, self.second = self.hosts
        wait_for(lambda: self.postgres.exec_run(["pg_isready", "-U", "postgres", "-d", DATABASE]).exit_code == 0,
                 timeout=60, what="PostgreSQL beside the hosts")  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "group_vars").symlink_to(GROUP_VARS)

    def address(self, container) -> str:
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"][self.fleet.network_name]["IPAddress"]

    def write_inventory(self, acting, standby) -> str:
        """hosts.yml: web, proxy and the data services' URLs on the first host, workers on both, the beat and
        cron groups listing ``acting`` first."""
        web, workers, singles = [self.first.name], [self.first.name, self.second.name], [acting.name, standby.name]
        groups = {"proxy": web, "web": web, "postgres": web, "redis": web, "worker": workers, "beat": singles,
                  "cron": singles}  # fmt: skip
        inventory = {
            "all": {
                "vars": {
                    "postgres_external_url": f"postgresql://postgres:{self.password}@{self.address(self.postgres)}"
                    f":5432/{DATABASE}",
                    "redis_external_url": f"redis://:{self.password}@{self.address(self.redis)}:6379/0",
                },
                "hosts": {host.name: host.inventory_vars() for host in self.hosts},
                "children": {group: {"hosts": {name: {} for name in names}} for group, names in groups.items()},
            }
        }
        (self.folder / "hosts.yml").write_text(json.dumps(inventory, indent=2))
        return str(self.folder)

    def run(self, playbook: str, acting, standby, **extra):
        inventory = self.write_inventory(acting, standby)
        started = time.monotonic()
        run = run_playbook(playbook, inventory, extra_vars=extra or None, timeout=2400)
        assert run.rc == 0, run.explain()
        print(f"\n{playbook} {extra or ''} with {acting.name} acting: {time.monotonic() - started:.0f} s")
        return run

    # ------------------------------------------------------------------ what the hosts and the database show

    def query(self, sql: str) -> str:
        done = self.postgres.exec_run(["psql", "-U", "postgres", "-d", DATABASE, "-tAc", sql])
        assert done.exit_code == 0, done.output.decode()
        return done.output.decode().strip()

    def beats(self) -> dict[str, list[tuple[str, str, str]]]:
        """Every beat container of the stack on each host, running or not: (name, state, version)."""
        found = {}
        for host in self.hosts:
            rc, output = host.exec(
                "docker", "ps", "--all", "--filter", f"label=pydeploy.stack={STACK}",
                "--filter", "label=pydeploy.process=beat",
                "--format", '{{.Names}} {{.State}} {{.Label "pydeploy.version"}}',
            )  # fmt: skip
            assert rc == 0, output
            found[host.name] = [tuple(line.split()) for line in output.splitlines()]
        return found

    def ticks_in_a_window(self) -> int:
        """The ticks written during the next WINDOW seconds."""
        time.sleep(WINDOW)
        return int(self.query(TICKS_IN_WINDOW))

    def assert_one_beat(self, acting, version: str) -> None:
        """One beat container on the hosts, on ``acting``, running ``version``; the ticks are sent by its
        process and come at one beat's rate."""
        beats = self.beats()
        assert beats == {host.name: ([(f"{STACK}-beat-1", "running", version)] if host is acting else [])
                         for host in self.hosts}, beats  # fmt: skip
        # A started beat sends its first tick at once, then one every TICK_SECONDS.
        ticks = self.ticks_in_a_window()
        assert WINDOW / TICK_SECONDS - 2 <= ticks <= WINDOW / TICK_SECONDS + 2, f"{ticks} ticks in {WINDOW} s"
        rc, log = acting.exec("docker", "logs", "--since", f"{WINDOW + 5}s", f"{STACK}-beat-1")
        assert rc == 0 and "Sending due task tick" in log, log[-2000:]

    def beat_events(self, host, since: float, until: float) -> list[tuple[int, str]]:
        """(time in ns, action) of the stack's beat containers' starts and deaths on ``host`` in [since, until]."""
        rc, output = host.exec(
            "docker", "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
            "--filter", "type=container", "--filter", f"label=pydeploy.stack={STACK}",
            "--filter", "label=pydeploy.process=beat", "--filter", "event=start", "--filter", "event=die",
            "--format", "{{.TimeNano}} {{.Action}}",
        )  # fmt: skip
        assert rc == 0, output
        return [(int(time_ns), action) for time_ns, action in (line.split() for line in output.splitlines())]

    def jobs_run_by_cron(self, acting) -> None:
        """The job's line is on ``acting`` alone (the other hosts have no line and no jobs.json); run as cron runs
        it there, the job writes one row."""
        for host in self.hosts:
            present = {path: host.exec("test", "-e", path)[0] == 0 for path in (CRON_FILE, JOBS_FILE)}
            assert present == {CRON_FILE: host is acting, JOBS_FILE: host is acting}, (host.name, present)
        rc, crontab = acting.exec("cat", CRON_FILE)
        assert rc == 0, crontab
        line = next(line for line in crontab.splitlines() if re.search(r" record_run >>", line))
        before = int(self.query("SELECT count(*) FROM forecasts WHERE kind = 'job'"))
        rc, output = acting.exec("sh", "-c", line.split(" root ", 1)[1], timeout=300)
        assert rc == 0, output
        rc, status = acting.exec("cat", f"/var/lib/pydeploy/{STACK}/jobs/record_run.json")
        assert rc == 0 and json.loads(status)["exit_code"] == 0, status
        assert int(self.query("SELECT count(*) FROM forecasts WHERE kind = 'job'")) == before + 1


@pytest.fixture(scope="module")
def stack(fleet, bed_image, tmp_path_factory):
    started = time.monotonic()
    hosts = Fleet(fleet, tmp_path_factory.mktemp(STACK) / "inventory", bed_image)
    booted = time.monotonic() - started
    started = time.monotonic()
    hosts.run("deploy.yml", hosts.first, hosts.second)
    print(f"\n2 hosts started in {booted:.0f} s, deployed over SSH in {time.monotonic() - started:.0f} s")
    return hosts


def test_one_beat_and_one_job_runner_after_deploy(stack):
    stack.assert_one_beat(stack.first, "v1")
    stack.jobs_run_by_cron(stack.first)


def test_moving_the_groups_first_host_stops_the_old_beat_before_the_new_one_starts(stack):
    """Only the order of the beat and cron groups changes: both hosts notice (the fast path skips neither)."""
    since = time.time()
    stack.run("deploy.yml", stack.second, stack.first)
    until = time.time()
    print(f"\nmoved in {until - since:.0f} s")
    stack.assert_one_beat(stack.second, "v1")
    died = [at for at, action in stack.beat_events(stack.first, since, until) if action == "die"]
    started = [at for at, action in stack.beat_events(stack.second, since, until) if action == "start"]
    assert len(died) == 1 and len(started) == 1, (died, started)
    assert died[0] < started[0], f"the new beat started {(died[0] - started[0]) / 1e9:.2f} s before the old one died"
    stack.jobs_run_by_cron(stack.second)


def test_a_new_release_and_a_rollback_keep_exactly_one_beat(stack):
    stack.run("deploy.yml", stack.second, stack.first, stack_version="v2")
    stack.assert_one_beat(stack.second, "v2")
    # The sample's schema revision follows its release; v1's code runs on v2's schema.
    stack.run("rollback.yml", stack.second, stack.first, app_rollback_schema="proceed")
    stack.assert_one_beat(stack.second, "v1")
    stack.jobs_run_by_cron(stack.second)
