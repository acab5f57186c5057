#!/usr/bin/env python3
"""Backups through db_backup / db_restore / backup_prune against the bed's SeaweedFS, all figures from one run:

1. PostgreSQL databases of about 1 and 5 GB (`pgbench -i -s N`, in a postgres
   container of the bed's image that this script starts on a network of its
   own): db_backup (defaults: custom format, zstd) run through ansible-playbook,
   its wall time and the module's own reported duration, against a raw
   `pg_dump -Fp > /dev/null` of the same database and `pg_dump -Fc` at its
   defaults (both run in the database container, same run);
2. peak RSS of the module process (the AnsiballZ python under ansible-playbook,
   with its children, sampled from /proc every 50 ms) and peak extra disk used
   on the host's filesystems (statvfs of the Docker data root, /tmp and the
   repository, minus the growth of SeaweedFS's own data directory);
3. the usual hand-run way beside it: `pg_dump > file; gzip file; upload`
   (boto3 upload_file), on time, disk and memory;
4. restore + verify of the first size's backup (db_restore mode=verify) against
   `pg_restore -j2` of a local `pg_dump -Fc` file;
5. a MongoDB database of a few hundred MB (three collections): db_backup
   against `mongodump --gzip --archive > file`;
6. backup_prune over 1,000 objects against a plain paged list of the bucket.

Writes its table between markers in docs/benchmarks.md.  Needs the bed
(`make bed`); uses a bucket, a network and containers of its own, removed at
the end.

    .venv/bin/python bench/backup.py [--sizes 1,5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import docker  # noqa: E402
import pymongo  # noqa: E402
from _common import MachineWatch, write_section  # noqa: E402
from backup_support import ModuleRun, empty_bucket, s3_args, s3_client  # noqa: E402

MARK_BEGIN = "<!-- bench:backup:begin -->"
MARK_END = "<!-- bench:backup:end -->"
HEADING = "## Backups: db_backup, db_restore, backup_prune against S3 (bench/backup.py)"
INTRO = """\
`.venv/bin/python bench/backup.py` backs up PostgreSQL databases generated with
`pgbench -i` and a MongoDB database through ansible-playbook into the bed's
SeaweedFS, beside the raw dump tools and the hand-run `pg_dump > file; gzip;
upload` way on the same databases in the same run. The S3 server here takes
uploads at about 70-100 MB/s at most, so with data that compresses little a
backup's throughput is bounded by the server, not by the module: that is why the
raw dump to /dev/null is measured in the same run and the figures are given as
ratios to it."""

SAMPLE = 0.05  # seconds between /proc and statvfs samples
MiB = 1024 * 1024
GB = 1000**3
DUMP_DIR = "/var/lib/postgresql"  # in the database container, beside its data directory
MB_PER_SCALE = 15.0  # pg_database_size grows by about this much per pgbench scale unit
WIDE_ROW_BYTES = 450  # pg_database_size grows by about this much per row of the wide table
WIDE_SHARE = 0.5  # of each database's size: the rest is pgbench's tables
WIDE_ROWS_SQL = (
    "INSERT INTO wide SELECT i, timestamptz '2026-01-01' - make_interval(secs => i),"
    " 'user' || i || '@example.test',"
    " initcap(substr(md5(i::text), 1, 8)) || ' ' || initcap(substr(md5((i + 1)::text), 1, 10)),"
    " (ARRAY['Lisboa','Porto','Braga','Coimbra','Faro','Recife','Curitiba'])[1 + i % 7],"
    " (i % 100000) / 3.0, ARRAY['t' || (i % 13), 't' || (i % 29)],"
    " md5(i::text) || ' ' || md5((i * 7)::text) || ' ' || repeat('lorem ipsum ', 1 + i % 5),"
    " jsonb_build_object('ip', (i % 255) || '.' || (i * 3 % 255) || '.1.' || (i % 97),"
    " 'agent', 'Mozilla/5.0 ' || (i % 50), 'score', (i % 1000) / 7.0,"
    " 'ref', encode(sha256(i::text::bytea), 'hex'))"
    " FROM generate_series(1, ROWS) i"
)
DB_USER = "bench"
MONGO_ROOT = "root"
MONGO_DB = "crm"
PRUNE_BACKUPS = 500  # each with its manifest: 1,000 objects
PRUNE_KEEP = 10
VENV_BIN = Path(sys.executable).parent


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


# --------------------------------------------------------------------------- sampling


def process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, rss bytes, CPU ticks used so far) of every process."""
    page = os.sysconf("SC_PAGE_SIZE")
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[21]) * page, int(fields[11]) + int(fields[12]))
    return table


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(table: dict[int, tuple[int, int, int]], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _rss, _ticks) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


def tree_usage(root: int, exclude: str | None = None) -> tuple[int, dict[int, int]]:
    """Summed RSS of ``root`` and its descendants, and the CPU ticks each has used; with ``exclude``, only the
    descendants whose command line does not contain it (the module process under ansible-playbook: not
    ansible-playbook nor its forks)."""
    table = process_table()
    pids = descendants(table, root)
    if exclude is None:
        pids.append(root)
    else:
        pids = [pid for pid in pids if exclude not in cmdline(pid)]
    pids = [pid for pid in pids if pid in table]
    return sum(table[pid][1] for pid in pids), {pid: table[pid][2] for pid in pids}


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores, anything but idle and iowait) since boot."""
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def dir_bytes(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                pass
    return total


class Disk:
    """Used bytes of the distinct filesystems holding the Docker data root, /tmp and the repository, minus
    the size of SeaweedFS's data directory (which grows by each stored object)."""

    def __init__(self, s3_dir: Path) -> None:
        self.s3_dir = s3_dir
        self.paths, seen = [], set()
        for path in ("/var/lib/docker", tempfile.gettempdir(), str(REPO)):
            if os.path.exists(path) and os.stat(path).st_dev not in seen:
                seen.add(os.stat(path).st_dev)
                self.paths.append(path)

    def used(self) -> int:
        total = 0
        for path in self.paths:
            st = os.statvfs(path)
            total += (st.f_blocks - st.f_bfree) * st.f_frsize
        return total - dir_bytes(self.s3_dir)


class Sampler(threading.Thread):
    """Every SAMPLE s: the RSS of a process tree and the extra disk used since the start; keeps the peaks."""

    def __init__(self, disk: Disk, root: int, exclude: str | None = None) -> None:
        super().__init__(daemon=True)
        self.disk, self.root, self.exclude = disk, root, exclude
        self.stopping = threading.Event()
        self.base = disk.used()
        self.rss = 0
        self.extra = 0
        self.ticks: dict[int, int] = {}  # the last CPU ticks seen of each process of the tree

    @property
    def cpu(self) -> float:
        """CPU seconds the sampled processes used (up to their last sample)."""
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        rss, ticks = tree_usage(self.root, self.exclude)
        self.rss = max(self.rss, rss)
        self.ticks.update(ticks)
        self.extra = max(self.extra, self.disk.used() - self.base)

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE):
            self.sample()

    def stop(self) -> None:
        self.stopping.set()
        self.join()


# --------------------------------------------------------------------------- running things


def run_cmd(argv, disk: Disk, stdout=subprocess.DEVNULL, env=None) -> dict:
    """Run ``argv``, sampling its process tree; its wall time, peak RSS and peak extra disk."""
    start, busy = time.perf_counter(), machine_busy()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env=env)
    sampler = Sampler(disk, proc.pid)
    sampler.start()
    _out, err = proc.communicate()
    seconds = time.perf_counter() - start
    busy = machine_busy() - busy
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    return {"seconds": seconds, "rss": sampler.rss, "disk": sampler.extra, "machine_cpu": busy}


def run_module(work: Path, module: str, args: dict, disk: Disk, check: bool = False) -> dict:
    """One task of ``module`` through ansible-playbook; its result, wall time and the module process's peaks."""
    runner = ModuleRun(work, module, args, check=check)
    start, busy = time.perf_counter(), machine_busy()
    proc = runner.start()
    sampler = Sampler(disk, proc.pid, exclude="ansible-playbook")
    sampler.start()
    outcome = runner.finish(timeout=3600)
    seconds = time.perf_counter() - start
    busy = machine_busy() - busy
    sampler.stop()
    if outcome.failed or outcome.rc != 0:
        raise RuntimeError(f"{module} failed: {outcome.explain()}")
    return {
        "seconds": seconds,
        "rss": sampler.rss,
        "disk": sampler.extra,
        "cpu": sampler.cpu,
        "machine_cpu": busy,
        "result": outcome.result,
    }


def trivial_playbook(work: Path) -> float:
    """Wall time of ansible-playbook running one trivial task the same way (the fixed cost of a run)."""
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": str(VENV_BIN / "python")},
            "tasks": [{"ansible.builtin.ping": {}}],
        }
    ]
    path = work / "trivial.yml"
    path.write_text(json.dumps(play))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), str(path), "-i", "localhost,"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - start)
    return min(times)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # not up yet
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


class Postgres:
    def __init__(self, client, image: str, network: str, tag: str) -> None:
        self.password = secrets.token_hex(12)
        self.name = f"pydeploy-bench-bkpg-{tag}"
        self.container = client.containers.run(
            image,
            name=self.name,
            network=network,
            detach=True,
            shm_size="256m",
            environment={"POSTGRES_USER": DB_USER, "POSTGRES_PASSWORD": self.password, "POSTGRES_DB": DB_USER},
            command=[
                "postgres",
                "-c",
                "max_wal_size=4GB",
                "-c",
                "checkpoint_timeout=30min",
                "-c",
                "maintenance_work_mem=256MB",
            ],
            labels={"pydeploy.bench": "backup"},
        )
        wait_for(lambda: self.sql(DB_USER, "SELECT 1") == "1", 120, "postgres")

    def exec(self, *argv: str) -> list[str]:
        return ["docker", "exec", "-e", f"PGPASSWORD={self.password}", self.name, *argv]

    def sql(self, db: str, query: str) -> str:
        out = subprocess.run(
            self.exec("psql", "-U", DB_USER, "-d", db, "-Atc", query), check=True, capture_output=True, text=True
        )
        return out.stdout.strip()

    def generate(self, db: str, scale: int, wide_rows: int) -> None:
        """``pgbench -i -s scale`` plus a wide table of ``wide_rows`` rows that compresses like application data.

        pgbench's own tables are mostly blank padding (a dump of them shrinks about 100x); the wide table
        (text, numbers, arrays, jsonb, hex digests) shrinks about 3-4x, as users' tables do.
        """
        self.sql(DB_USER, f"CREATE DATABASE {db}")
        subprocess.run(
            self.exec("pgbench", "-i", "-q", "-s", str(scale), "-I", "dtGvp", "-U", DB_USER, db),
            check=True,
            capture_output=True,
        )
        self.sql(
            db,
            "CREATE TABLE wide (id bigint PRIMARY KEY, created timestamptz, email text, name text, city text,"
            " amount numeric(12,2), tags text[], note text, payload jsonb)",
        )
        self.sql(db, WIDE_ROWS_SQL.replace("ROWS", str(int(wide_rows))))
        self.sql(db, "VACUUM ANALYZE wide")

    def size(self, db: str) -> int:
        return int(self.sql(DB_USER, f"SELECT pg_database_size('{db}')"))


class Mongo:
    def __init__(self, client, image: str, network: str, tag: str) -> None:
        self.password = secrets.token_hex(12)
        self.name = f"pydeploy-bench-bkmongo-{tag}"
        self.container = client.containers.run(
            image,
            name=self.name,
            network=network,
            detach=True,
            ports={"27017/tcp": ("127.0.0.1", None)},
            environment={"MONGO_INITDB_ROOT_USERNAME": MONGO_ROOT, "MONGO_INITDB_ROOT_PASSWORD": self.password},
            labels={"pydeploy.bench": "backup"},
        )

        def port():
            self.container.reload()
            return int(self.container.ports["27017/tcp"][0]["HostPort"])

        wait_for(port, 60, "mongo port")
        self.client = pymongo.MongoClient(
            "127.0.0.1",
            port(),
            username=MONGO_ROOT,
            password=self.password,
            authSource="admin",
            directConnection=True,
            serverSelectionTimeoutMS=3000,
        )
        wait_for(lambda: self.client.admin.command("ping")["ok"] == 1, 120, "mongo")

    def generate(self, factor: float) -> dict:
        """Three collections, about 330 MB of BSON at factor 1: customers, orders, events (random payloads)."""
        db = self.client[MONGO_DB]
        counts = {
            "customers": int(100_000 * factor),
            "orders": int(600_000 * factor),
            "events": int(1_000_000 * factor),
        }

        def batches(total, make, size=5000):
            for start in range(0, total, size):
                yield [make(i) for i in range(start, min(total, start + size))]

        for docs in batches(
            counts["customers"],
            lambda i: {"_id": i, "email": f"c{i}@example.test", "tier": i % 3, "address": os.urandom(48).hex()},
        ):
            db.customers.insert_many(docs, ordered=False)
        for docs in batches(
            counts["orders"],
            lambda i: {
                "_id": i,
                "customer": i % 100_000,
                "total": i * 1.5,
                "lines": [i, i + 1, i + 2],
                "note": "x" * 64,
            },
        ):
            db.orders.insert_many(docs, ordered=False)
        for docs in batches(
            counts["events"],
            lambda i: {"_id": i, "kind": ("login", "logout", "search")[i % 3], "n": i, "payload": os.urandom(48).hex()},
        ):
            db.events.insert_many(docs, ordered=False)
        db.customers.create_index("email", unique=True, name="email_unique")
        db.orders.create_index([("customer", 1), ("total", -1)], name="customer_total")
        db.events.create_index("kind", name="kind")
        stats = db.command("dbStats")
        return {"counts": counts, "data": stats["dataSize"], "storage": stats["storageSize"] + stats["indexSize"]}


# --------------------------------------------------------------------------- figures


def mb(value: float) -> str:
    return f"{value / MiB:.0f}"


def mbs(size: float, seconds: float) -> str:
    return f"{size / MiB / seconds:.0f}"


def pg_size(postgres: Postgres, db: str, disk: Disk, work: Path, s3conf: dict, bucket: str, fc: bool) -> dict:
    """Every PostgreSQL figure of one database."""
    out: dict = {"db_size": postgres.size(db)}
    log(f"{db}: {out['db_size'] / GB:.2f} GB; pg_dump -Fp > /dev/null")
    raw_argv = postgres.exec("sh", "-c", f"pg_dump -U {DB_USER} -Fp {db} > /dev/null")
    out["raw"] = run_cmd(raw_argv, disk)
    log(f"  raw {out['raw']['seconds']:.1f} s; pg_dump -Fc --compress=0 through docker exec to the host")
    out["exec"] = run_cmd(postgres.exec("pg_dump", "-U", DB_USER, "-Fc", "--compress=0", db), disk)
    log(f"  through docker exec {out['exec']['seconds']:.1f} s; db_backup through ansible-playbook")
    base = {
        "engine": "postgres",
        "container": postgres.name,
        "database": db,
        "lock_path": str(work / f"{db}.lock"),
        **s3_args(s3conf, bucket),
    }
    out["plan"] = run_module(work, "db_backup", base, disk, check=True)
    out["backup"] = run_module(work, "db_backup", base, disk)
    # Baseline and backup once more, in the other order: the figures are the means of the two.
    out["backup2"] = run_module(work, "db_backup", base, disk)
    out["raw2"] = run_cmd(raw_argv, disk)
    log(f"  raw again {out['raw2']['seconds']:.1f} s")
    result = out["backup"]["result"]
    log(
        f"  db_backup {out['backup']['seconds']:.1f} s (module {result['duration']:.1f} s; second run"
        f" {out['backup2']['result']['duration']:.1f} s), "
        f"rss {mb(out['backup']['rss'])} MiB, disk {mb(out['backup']['disk'])} MiB"
    )
    # the usual way: dump to a file, gzip it, upload it
    folder = Path(tempfile.mkdtemp(prefix="pydeploy-bench-bk-"))
    try:
        plain = folder / f"{db}.sql"
        with plain.open("wb") as handle:
            dump = run_cmd(postgres.exec("pg_dump", "-U", DB_USER, "-Fp", db), disk, stdout=handle)
        dump_size = plain.stat().st_size
        gz = run_cmd(["gzip", str(plain)], disk)
        gz_size = (folder / f"{db}.sql.gz").stat().st_size
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": s3conf["access_key"],
            "AWS_SECRET_ACCESS_KEY": s3conf["secret_key"],
        }
        code = (
            "import sys, boto3\n"
            "from botocore.config import Config\n"
            "c = boto3.client('s3', endpoint_url=sys.argv[1], region_name=sys.argv[2],"
            " config=Config(s3={'addressing_style': 'path'}))\n"
            "c.upload_file(sys.argv[3], sys.argv[4], sys.argv[5])\n"
        )
        up = run_cmd(
            [
                sys.executable,
                "-c",
                code,
                s3conf["endpoint"],
                s3conf["region"],
                str(folder / f"{db}.sql.gz"),
                bucket,
                f"seeds/{db}.sql.gz",
            ],
            disk,
            env=env,
        )
        # the file on disk during the upload counts too
        up["disk"] = max(up["disk"], gz_size)
        gz["disk"] = max(gz["disk"], dump_size)
        out["seeds"] = {"dump": dump, "gzip": gz, "upload": up, "dump_size": dump_size, "gz_size": gz_size}
        log(
            f"  seeds' way: dump {dump['seconds']:.1f} s, gzip {gz['seconds']:.1f} s, upload {up['seconds']:.1f} s "
            f"({mb(dump_size)} -> {mb(gz_size)} MiB)"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if fc:
        log("  pg_dump -Fc (defaults) to a file in the container")
        out["fc"] = run_cmd(postgres.exec("pg_dump", "-U", DB_USER, "-Fc", "-f", f"{DUMP_DIR}/{db}.dump", db), disk)
        log(f"  -Fc {out['fc']['seconds']:.1f} s")
    return out


def pg_restore_figures(postgres: Postgres, db: str, disk: Disk, work: Path, s3conf: dict, bucket: str) -> dict:
    out = {}
    log(f"{db}: db_restore mode=verify")
    args = {
        "engine": "postgres",
        "container": postgres.name,
        "database": db,
        "mode": "verify",
        "lock_path": str(work / f"{db}.lock"),
        **s3_args(s3conf, bucket),
    }
    out["verify"] = run_module(work, "db_restore", args, disk)
    log(f"  verify {out['verify']['seconds']:.1f} s, verified={out['verify']['result'].get('verified')}")
    log("  pg_restore -j2 of the local -Fc file")
    target = f"{db}_pgrestore"
    start = time.perf_counter()
    postgres.sql(DB_USER, f"CREATE DATABASE {target}")
    restore = run_cmd(postgres.exec("pg_restore", "-U", DB_USER, "-j2", "-d", target, f"{DUMP_DIR}/{db}.dump"), disk)
    restore["seconds"] = time.perf_counter() - start
    out["pg_restore"] = restore
    postgres.sql(DB_USER, f"DROP DATABASE {target}")
    log(f"  pg_restore -j2 {restore['seconds']:.1f} s")
    return out


def mongo_figures(mongo: Mongo, disk: Disk, work: Path, s3conf: dict, bucket: str) -> dict:
    out = {}
    creds = ["--username", MONGO_ROOT, "--password", mongo.password, "--authenticationDatabase", "admin"]
    log("mongo: mongodump --archive > /dev/null")
    dump = ["docker", "exec", mongo.name, "mongodump", "--quiet", "--db", MONGO_DB, *creds]
    out["raw"] = run_cmd([*dump, "--archive"], disk)
    folder = Path(tempfile.mkdtemp(prefix="pydeploy-bench-bk-"))
    try:
        log("mongo: mongodump --gzip --archive > file")
        with (folder / "crm.archive.gz").open("wb") as handle:
            out["gzip_file"] = run_cmd([*dump, "--gzip", "--archive"], disk, stdout=handle)
        out["gzip_file"]["size"] = (folder / "crm.archive.gz").stat().st_size
        out["gzip_file"]["disk"] = max(out["gzip_file"]["disk"], out["gzip_file"]["size"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base = {
        "engine": "mongodb",
        "container": mongo.name,
        "database": MONGO_DB,
        "lock_path": str(work / "mongo.lock"),
        **s3_args(s3conf, bucket),
    }
    for compression in ("zstd", "gzip"):
        log(f"mongo: db_backup compression={compression}")
        out[compression] = run_module(work, "db_backup", {**base, "compression": compression}, disk)
    return out


# What a backup process holds before it dumps anything, step by step: run by the interpreter the modules run
# with (a fresh process, so each step's growth is its own).
MEMORY_STEPS = r"""
import json, sys
def rss():
    with open("/proc/self/status") as handle:
        return int(handle.read().split("VmRSS:")[1].split()[0]) * 1024
steps = [("the Python interpreter", rss())]
import ansible.module_utils.basic
steps.append(("Ansible's module runtime (ansible.module_utils.basic)", rss()))
import zstandard
steps.append(("zstandard", rss()))
import docker
steps.append(("the Docker SDK", rss()))
import boto3
steps.append(("boto3", rss()))
boto3.session.Session().client("s3", region_name="us-east-1", endpoint_url=sys.argv[1])
steps.append(("an S3 client (botocore loads the S3 service model)", rss()))
import psycopg
steps.append(("psycopg (" + psycopg.pq.__impl__ + " implementation, with its libpq)", rss()))
print(json.dumps(steps))
"""


def memory_steps(s3conf: dict) -> list:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_STEPS, s3conf["endpoint"]], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def prune_figures(s3, disk: Disk, work: Path, s3conf: dict, bucket: str) -> dict:
    """PRUNE_BACKUPS backups with manifests (1,000 objects) in a set of their own; list, then prune."""
    name = "prunebench"
    now = datetime.now(UTC)

    def put(i):
        when = now - timedelta(hours=i + 1)
        key = f"backups/{name}/{name}-{when.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}.dump.zst"
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 64)
        manifest = {"key": key, "finished": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "verified": i % 2 == 0}
        s3.put_object(Bucket=bucket, Key=key + ".manifest.json", Body=json.dumps(manifest).encode())

    log(f"prune: putting {2 * PRUNE_BACKUPS} objects")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(PRUNE_BACKUPS)))

    def plain_list() -> tuple[float, int]:
        start = time.perf_counter()
        found = sum(
            len(page.get("Contents", []))
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"backups/{name}/")
        )
        return time.perf_counter() - start, found

    lists = [plain_list() for _ in range(5)]
    objects = lists[0][1]
    args = {"name": name, "max_count": PRUNE_KEEP, **s3_args(s3conf, bucket)}
    log("prune: backup_prune check mode, then for real")
    check_runner = ModuleRun(work, "backup_prune", args, check=True)
    start = time.perf_counter()
    check_runner.start()
    check = check_runner.finish(timeout=600)
    check_seconds = time.perf_counter() - start
    real = run_module(work, "backup_prune", args, disk)
    left = plain_list()[1]
    return {
        "objects": objects,
        "list": min(t for t, _ in lists),
        "list_median": statistics.median(t for t, _ in lists),
        "check": check_seconds,
        "check_deleted": len(check.result.get("deleted", [])),
        "real": real,
        "deleted": len(real["result"].get("deleted", [])),
        "left": left,
    }


# --------------------------------------------------------------------------- report


def ratio(base: float, value: float) -> str:
    return f"{base / value:.2f}x"


def report(args, run: dict) -> str:
    sizes = run["sizes"]
    trivial = run["trivial"]
    first = sizes[0]
    lines = [
        MARK_BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} on a {os.cpu_count()}-core machine (nproc), load average "
        f"{run['load_start']:.1f} at start, shared ({run['others']} containers of other stacks running at start); "
        f"{run['machine'].note()}; whole run {run['minutes']:.1f} min{' (--quick)' if args.quick else ''}.",
        "",
        "The S3 server here (SeaweedFS on loopback) caps uploads near 70-100 MB/s, so any backup is bounded by "
        "the server; the raw `pg_dump -Fp > /dev/null` of the same database, run in the database container in "
        "the same run, is the baseline, and throughput ratios are baseline time / measured time on the same "
        "database (1.00x = as fast as the raw dump). Each database is half pgbench's tables, which are mostly "
        "blank padding and shrink about 100x, and half a wide table of text, numbers, arrays, jsonb and hex "
        "digests, which shrinks about 3-4x as application data does. db_backup runs with its defaults "
        "(`pg_dump -Fc --compress=0` streamed through zstd level 1 into 8 MiB parts, each sent by a thread while "
        "the next fills) through ansible-playbook "
        f"(one trivial task takes {trivial:.1f} s the same way, included in the wall time); *module* is the "
        "duration the module reports (dump + compression + upload, without connecting and the tools container). "
        "The raw dump and db_backup each ran twice (raw, backup, backup, raw): their rows give the mean, the two "
        "runs in brackets. "
        "Memory: summed RSS of the module process (the python under ansible-playbook, sampled from /proc every "
        "50 ms); the dump tools run in containers in every column and are not counted. Extra disk: the peak growth "
        "of used blocks on the host filesystem (Docker data root, /tmp, the repository: one filesystem here) "
        "during the step, *excluding SeaweedFS's data directory*, which grows by the stored object; other work on "
        "the machine writes to the same filesystem, so a few MiB either way is noise.",
        "",
        "| database | step | s | MB/s of DB | / raw pg_dump -Fp | peak RSS MiB | peak extra disk MiB | bytes written |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _gb, fig in sizes:
        size = fig["db_size"]
        label = f"{size / GB:.2f} GB"
        raws = [fig["raw"]["seconds"], fig["raw2"]["seconds"]]
        raw = statistics.mean(raws)
        backups = [fig["backup"], fig["backup2"]]
        result = fig["backup"]["result"]
        walls = [run["seconds"] for run in backups]
        owns = [run["result"]["duration"] for run in backups]
        rows = [
            (
                f"raw `pg_dump -Fp > /dev/null` (baseline; {pair(raws)})",
                raw,
                "-",
                "-",
                f"{mb(fig['seeds']['dump_size'])} MiB SQL",
            ),
            (
                f"db_backup, ansible-playbook wall ({pair(walls)})",
                statistics.mean(walls),
                mb(max(run["rss"] for run in backups)),
                mb(max(run["disk"] for run in backups)),
                f"{mb(result['size'])} MiB object (raw {mb(result['manifest']['raw_size'])} MiB)",
            ),
            (f"db_backup, module's own duration ({pair(owns)})", statistics.mean(owns), "-", "-", ""),
            (
                "db_backup in check mode (connects, no dump), wall",
                fig["plan"]["seconds"],
                mb(fig["plan"]["rss"]),
                mb(fig["plan"]["disk"]),
                "",
            ),
            (
                "`pg_dump -Fc --compress=0` (the module's dump) through `docker exec` to the host's /dev/null",
                fig["exec"]["seconds"],
                mb(fig["exec"]["rss"]),
                "-",
                "",
            ),
        ]
        if "fc" in fig:
            rows.append(("`pg_dump -Fc` at defaults, to a file", fig["fc"]["seconds"], "-", mb(fig["fc"]["disk"]), ""))
        seeds = fig["seeds"]
        total = sum(seeds[s]["seconds"] for s in ("dump", "gzip", "upload"))
        rows += [
            (
                "hand-run: `pg_dump > file`",
                seeds["dump"]["seconds"],
                mb(seeds["dump"]["rss"]),
                mb(seeds["dump"]["disk"]),
                f"{mb(seeds['dump_size'])} MiB file",
            ),
            (
                "hand-run: `gzip file`",
                seeds["gzip"]["seconds"],
                mb(seeds["gzip"]["rss"]),
                mb(seeds["gzip"]["disk"]),
                f"{mb(seeds['gz_size'])} MiB file",
            ),
            (
                "hand-run: boto3 `upload_file`",
                seeds["upload"]["seconds"],
                mb(seeds["upload"]["rss"]),
                mb(seeds["upload"]["disk"]),
                f"{mb(seeds['gz_size'])} MiB object",
            ),
            (
                "hand-run: all three",
                total,
                mb(max(seeds[s]["rss"] for s in ("dump", "gzip", "upload"))),
                mb(max(seeds[s]["disk"] for s in ("dump", "gzip", "upload"))),
                "",
            ),
        ]
        for step, seconds, rss, disk, written in rows:
            rate = ("-", "-") if "check mode" in step else (mbs(size, seconds), ratio(raw, seconds))
            lines.append(f"| {label} | {step} | {seconds:.1f} | {rate[0]} | {rate[1]} | {rss} | {disk} | {written} |")
    lines += [
        "",
        f"{gb_list(sizes)}: pgbench scale factors {', '.join(str(f['scale']) for _, f in sizes)} and "
        f"{', '.join(str(f['wide_rows']) for _, f in sizes)} rows of the wide table.",
    ]

    rss = ", ".join(mb(max(fig["backup"]["rss"], fig["backup2"]["rss"])) + " MiB" for _, fig in sizes)
    at = ", ".join(f"{fig['db_size'] / GB:.2f} GB" for _, fig in sizes)
    plan_rss = ", ".join(mb(fig["plan"]["rss"]) + " MiB" for _, fig in sizes)
    lines += [
        "",
        f"Module process peak RSS: {rss} at {at}; in check mode (imports, connections, no dump): {plan_rss} "
        "(goal: at most 64 MiB + one 8 MiB part, the same at every size).",
    ]

    lines += [
        "",
        "Where the CPU goes: busy CPU seconds of the whole machine (both cores, from /proc/stat) during the raw "
        "dump and during db_backup, and the module process's own share (its CPU time, imports and connections "
        "included). A backup is not only the dump: the module compresses, hashes and sends, and SeaweedFS, on "
        "the same two cores, receives, hashes and stores what it is sent.",
        "",
        "| database | step | wall s | machine CPU s | module process CPU s | machine CPU / wall |",
        "|---|---|---|---|---|---|",
    ]
    for _gb, fig in sizes:
        label = f"{fig['db_size'] / GB:.2f} GB"
        for name, step in (("raw `pg_dump -Fp > /dev/null`", fig["raw"]), ("raw, again", fig["raw2"])):
            cpu = step["machine_cpu"]
            lines.append(f"| {label} | {name} | {step['seconds']:.1f} | {cpu:.1f} | - | {cpu / step['seconds']:.2f} |")
        for name, step in (("db_backup", fig["backup"]), ("db_backup, again", fig["backup2"])):
            cpu = step["machine_cpu"]
            lines.append(
                f"| {label} | {name} (wall of ansible-playbook) | {step['seconds']:.1f} | {cpu:.1f} "
                f"| {step['cpu']:.1f} | {cpu / step['seconds']:.2f} |"
            )

    steps = run.get("memory")
    if steps:
        lines += [
            "",
            "Where the check-mode figure comes from: the resident size of a fresh Python process of the same "
            "interpreter after each import, in the order a backup module makes them:",
            "",
            "| step | RSS MiB | added MiB |",
            "|---|---|---|",
        ]
        previous = 0
        for label, value in steps:
            lines.append(f"| {label} | {mb(value)} | {mb(value - previous)} |")
            previous = value
        backups = [fig[key]["rss"] for _, fig in sizes for key in ("backup", "backup2")]
        plans = [fig["plan"]["rss"] for _, fig in sizes]
        low, high = mb(min(backups) - max(plans)), mb(max(backups) - min(plans))
        lines += [
            "",
            f"The dump itself adds {low if low == high else f'{low}-{high}'} MiB to the "
            "module process: two 8 MiB part buffers (one filling, one on the wire, reused for every part), the "
            "1 MiB read buffer and zstd's context.",
        ]

    restore = run.get("restore")
    if restore:
        fig = first[1]
        verify = restore["verify"]
        base = restore["pg_restore"]["seconds"]
        lines += [
            "",
            f"Restore of the {fig['db_size'] / GB:.2f} GB database's backup:",
            "",
            "| step | s | / pg_restore -j2 | peak RSS MiB | peak extra disk MiB |",
            "|---|---|---|---|---|",
            f"| baseline: `pg_restore -j2` of the local `pg_dump -Fc` file into a new database | {base:.1f} | 1.00x "
            f"| - | {mb(restore['pg_restore']['disk'])} |",
            f"| db_restore mode=verify (stream from S3 into a scratch database, checksum, counts, drop), wall "
            f"| {verify['seconds']:.1f} | {ratio(base, verify['seconds'])} | {mb(verify['rss'])} "
            f"| {mb(verify['disk'])} |",
            f"| db_restore mode=verify, module's own duration | {verify['result'].get('duration', math.nan):.1f} "
            f"| {ratio(base, verify['result'].get('duration', math.nan))} | - | - |",
            "",
            f"Verified: {verify['result'].get('verified')}. The extra disk of both restores is the restored "
            "database itself (tables and indexes in the Docker data root).",
        ]

    mongo = run["mongo"]
    data = mongo["data"]
    raw = mongo["raw"]["seconds"]
    lines += [
        "",
        f"MongoDB 6.0, database `{MONGO_DB}` of {len(data['counts'])} collections "
        f"({', '.join(f'{k} {v}' for k, v in data['counts'].items())} documents; "
        f"{mb(data['data'])} MiB of BSON, {mb(data['storage'])} MiB on disk with indexes):",
        "",
        "| step | s | / raw mongodump | peak RSS MiB | peak extra disk MiB | bytes written |",
        "|---|---|---|---|---|---|",
        "| raw `mongodump --archive` through `docker exec` to the host's /dev/null (baseline) "
        f"| {raw:.1f} | 1.00x | - | - | - |",
        f"| hand-run: `mongodump --gzip --archive > file` | {mongo['gzip_file']['seconds']:.1f} "
        f"| {ratio(raw, mongo['gzip_file']['seconds'])} | {mb(mongo['gzip_file']['rss'])} "
        f"| {mb(mongo['gzip_file']['disk'])} | {mb(mongo['gzip_file']['size'])} MiB file (not uploaded) |",
    ]
    for compression in ("zstd", "gzip"):
        fig = mongo[compression]
        result = fig["result"]
        lines.append(
            f"| db_backup compression={compression}, wall (module's own: {result['duration']:.1f} s) "
            f"| {fig['seconds']:.1f} | {ratio(raw, fig['seconds'])} | {mb(fig['rss'])} | {mb(fig['disk'])} "
            f"| {mb(result['size'])} MiB object |"
        )

    prune = run["prune"]
    lines += [
        "",
        f"Retention: backup_prune with max_count={PRUNE_KEEP} over {prune['objects']} objects "
        f"({prune['objects'] // 2} backups with their manifests) in the set:",
        "",
        "| step | s | / plain list |",
        "|---|---|---|",
        f"| baseline: paged `list_objects_v2` of the set (boto3, 5 runs, min; median {prune['list_median']:.2f}) "
        f"| {prune['list']:.2f} | 1.0 |",
        f"| backup_prune check mode, wall ({prune['check_deleted']} backups would go) | {prune['check']:.1f} "
        f"| {prune['check'] / prune['list']:.0f} |",
        f"| backup_prune, wall ({prune['deleted']} backups and their manifests deleted, {prune['left']} objects "
        f"left) | {prune['real']['seconds']:.1f} | {prune['real']['seconds'] / prune['list']:.0f} |",
        f"| one trivial task through ansible-playbook, wall | {trivial:.1f} | {trivial / prune['list']:.0f} |",
        MARK_END,
    ]
    return "\n".join(lines)


def pair(values) -> str:
    return " and ".join(f"{value:.1f}" for value in values)


def gb_list(sizes) -> str:
    return "Databases " + ", ".join(f"{f['db_size'] / GB:.2f} GB" for _, f in sizes)


def write_doc(table: str) -> None:
    write_section(REPO / "docs" / "benchmarks.md", table, MARK_BEGIN, MARK_END, HEADING, INTRO)


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,5", help="PostgreSQL database sizes in GB, comma-separated (default 1,5)")
    parser.add_argument("--quick", action="store_true", help="development run: 0.1 GB, a small MongoDB database")
    parser.add_argument("--no-fc-after-first", action="store_true", help="time pg_dump -Fc at the first size only")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    sizes = [0.1] if args.quick else [float(s) for s in args.sizes.split(",")]

    begun = time.perf_counter()
    bed = json.loads((REPO / ".bed" / "bed.json").read_text())
    s3conf = bed["s3"]
    s3 = s3_client(s3conf)
    client = docker.from_env(timeout=600)
    disk = Disk(Path(bed["state"]) / "s3")
    load_start = os.getloadavg()[0]
    others = len(client.containers.list())
    machine = MachineWatch()
    machine.start()
    tag = uuid.uuid4().hex[:8]
    bucket = f"pydeploy-bench-bk-{tag}"
    network = client.networks.create(f"pydeploy-bench-bk-{tag}", labels={"pydeploy.bench": "backup"})
    work = Path(tempfile.mkdtemp(prefix="pydeploy-bench-backup-"))
    containers = []
    s3.create_bucket(Bucket=bucket)
    run: dict = {"load_start": load_start, "others": others, "machine": machine, "sizes": []}
    try:
        run["trivial"] = trivial_playbook(work)
        postgres = Postgres(client, bed["images"]["postgres"]["ref"], network.name, tag)
        containers.append(postgres.container)
        for index, gb in enumerate(sizes):
            db = f"bench{index + 1}"
            scale = max(1, round(gb * GB * (1 - WIDE_SHARE) / 1e6 / MB_PER_SCALE))
            wide_rows = round(gb * GB * WIDE_SHARE / WIDE_ROW_BYTES)
            log(f"generating {db}: pgbench -i -s {scale}, {wide_rows} rows of the wide table")
            started = time.perf_counter()
            postgres.generate(db, scale, wide_rows)
            log(f"  generated in {time.perf_counter() - started:.0f} s")
            fc = index == 0 or not args.no_fc_after_first
            fig = pg_size(postgres, db, disk, work, s3conf, bucket, fc)
            fig["scale"] = scale
            fig["wide_rows"] = wide_rows
            run["sizes"].append((gb, fig))
            if index == 0:
                run["restore"] = pg_restore_figures(postgres, db, disk, work, s3conf, bucket)
            subprocess.run(postgres.exec("rm", "-f", f"{DUMP_DIR}/{db}.dump"), check=True)
            postgres.sql(DB_USER, f"DROP DATABASE {db}")
            empty_bucket(s3, bucket)
        postgres.container.remove(force=True, v=True)
        containers.remove(postgres.container)

        mongo = Mongo(client, bed["images"]["mongo"]["ref"], network.name, tag)
        containers.append(mongo.container)
        log("generating the MongoDB database")
        data = mongo.generate(0.1 if args.quick else 1.0)
        run["mongo"] = {"data": data, **mongo_figures(mongo, disk, work, s3conf, bucket)}
        mongo.client.close()
        empty_bucket(s3, bucket)

        run["prune"] = prune_figures(s3, disk, work, s3conf, bucket)
        run["memory"] = memory_steps(s3conf)
    finally:
        machine.stopping.set()
        for container in containers:
            container.remove(force=True, v=True)
        network.remove()
        empty_bucket(s3, bucket)
        s3.delete_bucket(Bucket=bucket)
        shutil.rmtree(work, ignore_errors=True)
    machine.join()
    run["minutes"] = (time.perf_counter() - begun) / 60
    table = report(args, run)
    print(table)
    if not args.no_write:
        write_doc(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
