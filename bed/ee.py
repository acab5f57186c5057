#!/usr/bin/env python3
"""Build the execution environment of execution-environment.yml (``make ee``).

    ee.py build      build (or reuse) the image; print its reference
    ee.py key        print the content key the image would have

The collection's tarball is built from the checkout's files (those git
tracks or would track) into dist/ee/, then ansible-builder writes the build
context and the engine builds it.  The image is keyed by a hash of its inputs
(the definition, awx/ee/, the collection's files, the base image, the build
arguments, this script): an unchanged rerun builds nothing, and a change to
the collection alone rebuilds only its last layers.

On the test bed (``make bed`` ran here: .bed/bed.json exists) the image is
built FROM the bed's Debian Python image, with apt-get, the machine's CA
bundle for pip and, Galaxy being unreachable, the dependency collections
taken from the controller's ansible package.  Elsewhere it is built FROM the
definition's base, with the collections from Galaxy.  Environment:

    EE_TAG          tag of the image (default pydeploy-ee:latest)
    EE_BASE_IMAGE   base image (then EE_PYCMD, EE_PYPKG, EE_PKGMGR describe it)
    EE_CA_BUNDLE    an extra CA bundle for pip (on the bed: the machine's)
    EE_OFFLINE      1: dependency collections from the controller's ansible package
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bedctl  # the bed's helpers, beside this file
from bedctl import REPO, BedError, run

DEFINITION = REPO / "execution-environment.yml"
EE_FILES = REPO / "awx" / "ee"
DIST = REPO / "dist" / "ee"
TARBALL = DIST / "pydeploy-stack.tar.gz"
KEYED_PREFIX = "pydeploy-ee"
DEFAULT_TAG = "pydeploy-ee:latest"
# Keyed images of earlier inputs kept besides the current one.
KEEP_BUILDS = 2
# What a Debian base needs in place of the definition's (CentOS) defaults.
DEBIAN_ARGS = {"PKGMGR": "/usr/bin/apt-get", "PYCMD": "/usr/bin/python3", "PYPKG": "python3 python3-pip"}
CA_IN_IMAGE = "/etc/pki/pydeploy-ee/ca"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def say(message: str) -> None:
    print(f"ee: {message}", flush=True)


@dataclass
class Plan:
    """How to build: the base and its build arguments, and where collections come from."""

    base: str | None  # None: the definition's base
    build_args: dict = field(default_factory=dict)
    ca_bundle: Path | None = None
    offline: bool = False
    pull: bool = True
    mode: str = "default"


def plan_from_env(env: dict | None = None) -> Plan:
    env = dict(os.environ if env is None else env)
    bed_json = bedctl.STATE / "bed.json"
    base = env.get("EE_BASE_IMAGE") or None
    if base is None and bed_json.exists():
        description = json.loads(bed_json.read_text())
        try:
            base = description["images"]["python"]["ref"]
        except KeyError as exc:
            raise BedError(f"{bed_json} names no python image: rerun 'make bed'") from exc
        ca = Path(env["EE_CA_BUNDLE"]) if env.get("EE_CA_BUNDLE") else SYSTEM_CA_BUNDLE
        return Plan(
            base=base,
            build_args=dict(DEBIAN_ARGS),
            ca_bundle=ca if ca.is_file() else None,
            offline=env.get("EE_OFFLINE", "1") != "0",
            pull=False,
            mode="bed",
        )
    args = {}
    for name in ("PYCMD", "PYPKG", "PKGMGR"):
        if env.get(f"EE_{name}"):
            args[name] = env[f"EE_{name}"]
    ca = Path(env["EE_CA_BUNDLE"]) if env.get("EE_CA_BUNDLE") else None
    if ca is not None and not ca.is_file():
        raise BedError(f"EE_CA_BUNDLE={ca} is not a file")
    return Plan(base=base, build_args=args, ca_bundle=ca, offline=env.get("EE_OFFLINE", "0") == "1")


# --------------------------------------------------------------------------- the collection


def checkout_files() -> list[str]:
    """The files of the checkout: those git tracks or would track (new files too, not the ignored ones)."""
    listed = run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    return sorted({name for name in listed.stdout.split("\0") if name and (REPO / name).is_file()})


def build_collection(workdir: Path) -> tuple[Path, str]:
    """The collection's tarball (dist/ee/pydeploy-stack.tar.gz) from the checkout's files (galaxy.yml's
    build_ignore applies), and the hash of what it ships (its FILES.json checksums and MANIFEST.json)."""
    source = workdir / "src"
    for name in checkout_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    out = workdir / "out"
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    run([str(galaxy), "collection", "build", "--force", "--output-path", str(out), str(source)])
    built = next(out.glob("pydeploy-stack-*.tar.gz"))
    DIST.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, TARBALL)
    return TARBALL, collection_digest(TARBALL)


def collection_digest(tarball: Path) -> str:
    with tarfile.open(tarball) as tar:
        files = json.load(tar.extractfile("FILES.json"))["files"]
        manifest = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
    entries = sorted((f["name"], f.get("chksum_sha256") or "", f["ftype"]) for f in files)
    return hashlib.sha256(json.dumps([manifest, entries], sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- dependency collections, offline


def galaxy_requirements() -> list[dict]:
    import yaml

    data = yaml.safe_load((EE_FILES / "requirements.yml").read_text()) or {}
    return data.get("collections") or []


def installed_collection(name: str) -> Path:
    import ansible_collections

    namespace, collection = name.split(".")
    for root in ansible_collections.__path__:
        path = Path(root) / namespace / collection
        if (path / "MANIFEST.json").is_file():
            return path
    raise BedError(f"the collection {name} is not in the controller's ansible package: run 'make venv'")


def collection_closure(requirements: list[dict]) -> list[tuple[str, str, Path]]:
    """(name, version, installed path) of every required collection and its dependencies, checked against the
    versions awx/ee/requirements.yml pins."""
    found: dict[str, tuple[str, Path]] = {}
    queue = [(entry["name"], str(entry.get("version", "*"))) for entry in requirements]
    while queue:
        name, wanted = queue.pop(0)
        if name in found:
            continue
        path = installed_collection(name)
        info = json.loads((path / "MANIFEST.json").read_text())["collection_info"]
        if wanted not in ("*", info["version"]) and not wanted.startswith((">", "<", "!")):
            raise BedError(
                f"awx/ee/requirements.yml pins {name} {wanted}, the controller's ansible package has {info['version']}"
            )
        found[name] = (info["version"], path)
        queue.extend((dependency, "*") for dependency in info.get("dependencies") or {})
    return [(name, version, path) for name, (version, path) in sorted(found.items())]


def deterministic_tarball(source: Path, target: Path) -> None:
    """A collection artifact of an installed collection, byte-identical on every run: sorted entries, no times,
    no owners.  The ansible package leaves out some files of the artifact it was made from (.github, tests):
    FILES.json lists only what is there, and MANIFEST.json the checksum of that FILES.json."""
    files = json.loads((source / "FILES.json").read_text())
    files["files"] = [entry for entry in files["files"] if entry["name"] == "." or (source / entry["name"]).exists()]
    files_json = json.dumps(files, indent=4).encode()
    manifest = json.loads((source / "MANIFEST.json").read_text())
    manifest["file_manifest_file"]["chksum_sha256"] = hashlib.sha256(files_json).hexdigest()
    generated = {"FILES.json": files_json, "MANIFEST.json": json.dumps(manifest, indent=4).encode()}
    listed = {entry["name"] for entry in files["files"]}

    def entry(name: str, mode: int, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mode, info.type, info.size = mode, kind, size
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in generated.items():
            tar.addfile(entry(name, 0o644, size=len(data)), io.BytesIO(data))
        for name in sorted(listed - {"."}):
            path = source / name
            if path.is_dir():
                tar.addfile(entry(name, 0o755, tarfile.DIRTYPE))
            else:
                mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with open(path, "rb") as handle:
                    tar.addfile(entry(name, mode, size=path.stat().st_size), handle)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())


def offline_collections(context: Path) -> list[str]:
    """Put the dependency collections into the context as artifacts and point requirements.yml at them."""
    cache = bedctl.CACHE / "ee" / "collections"
    entries, names = [], []
    for name, version, path in collection_closure(galaxy_requirements()):
        artifact = f"{name.replace('.', '-')}-{version}.tar.gz"
        cached = cache / artifact
        if not cached.exists():
            deterministic_tarball(path, cached.with_suffix(".tmp"))
            cached.with_suffix(".tmp").rename(cached)
        shutil.copyfile(cached, context / "_build" / "collections" / artifact)
        entries.append(f"  - name: /build/collections/{artifact}\n    type: file\n")
        names.append(f"{name} {version}")
    (context / "_build" / "requirements.yml").write_text(
        "---\n# Offline: the dependency collections, from the controller's ansible package.\ncollections:\n"
        + "".join(entries)
    )
    return names


# --------------------------------------------------------------------------- the image


def image_key(plan: Plan, collection: str) -> str:
    base_id = bedctl.image_id(plan.base) if plan.base and bedctl.image_exists(plan.base) else (plan.base or "")
    inputs = {
        "definition": hashlib.sha256(DEFINITION.read_bytes()).hexdigest(),
        "ee_files": bedctl.tree_hash([EE_FILES]),
        "base": base_id,
        "args": plan.build_args,
        "ca": hashlib.sha256(plan.ca_bundle.read_bytes()).hexdigest() if plan.ca_bundle else "",
        "offline": plan.offline,
        "collection": collection,
        "builder": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def prune_keyed(keep: str, count: int = KEEP_BUILDS) -> list[str]:
    """Untag the keyed images of earlier inputs but the newest ``count`` (their layers are mostly shared); one a
    container still runs stays. The tags removed."""
    listed = run(["docker", "images", KEYED_PREFIX, "--format", "{{.Tag}}\t{{.CreatedAt}}"], check=False).stdout
    keyed = [line.split("\t") for line in listed.splitlines() if "\t" in line]
    keyed = sorted((created, tag) for tag, created in keyed if len(tag) == 12 and f"{KEYED_PREFIX}:{tag}" != keep)
    removed = []
    for _, tag in keyed[: max(0, len(keyed) - count)]:
        if run(["docker", "rmi", f"{KEYED_PREFIX}:{tag}"], check=False).returncode == 0:
            removed.append(tag)
    return removed


def builder() -> str:
    return str(Path(sys.executable).parent / "ansible-builder")


def build(plan: Plan | None = None, tag: str | None = None) -> dict:
    """Build the execution environment unless its keyed image exists; return what was built or reused."""
    plan = plan or plan_from_env()
    tag = tag or os.environ.get("EE_TAG") or DEFAULT_TAG
    bedctl.STATE.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(bedctl.STATE / "ee.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with tempfile.TemporaryDirectory(dir=bedctl.STATE, prefix="ee-") as tmp:
            _, collection = build_collection(Path(tmp))
            if plan.base and not plan.pull and not bedctl.image_exists(plan.base):
                run(["docker", "pull", plan.base])
            key = image_key(plan, collection)
            keyed = f"{KEYED_PREFIX}:{key}"
            reused = bedctl.image_exists(keyed)
            if not reused:
                _build_image(plan, keyed, Path(tmp))
        run(["docker", "tag", keyed, tag])
        prune_keyed(keep=keyed)
    elapsed = time.monotonic() - started
    say(f"execution environment {tag} ({keyed}) {'reused' if reused else 'built'} in {elapsed:.0f}s")
    return {"image": tag, "keyed": keyed, "key": key, "reused": reused, "seconds": round(elapsed, 1), "mode": plan.mode}


def _build_image(plan: Plan, keyed: str, workdir: Path) -> None:
    context = workdir / "context"
    say(f"building the execution environment {keyed} FROM {plan.base or 'the definition base'} ({plan.mode})")
    run([builder(), "create", "-f", str(DEFINITION), "-c", str(context), "--output-filename", "Dockerfile"])
    args = dict(plan.build_args)
    if plan.base:
        args["EE_BASE_IMAGE"] = plan.base
    if plan.ca_bundle:
        shutil.copyfile(plan.ca_bundle, context / "_build" / "ca" / "extra-ca.crt")
        args["PIP_CERT"] = f"{CA_IN_IMAGE}/extra-ca.crt"
    if plan.offline:
        names = offline_collections(context)
        args["ANSIBLE_GALAXY_CLI_COLLECTION_OPTS"] = "--offline"
        say(f"offline: {', '.join(names)} from the controller's ansible package")
    argv = ["docker", "build", "-t", keyed, "-f", str(context / "Dockerfile")]
    if not plan.pull:
        argv.append("--pull=false")
    for name, value in sorted(args.items()):
        argv += ["--build-arg", f"{name}={value}"]
    log = bedctl.STATE / "log" / "build-ee.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        result = subprocess.run(
            [*argv, str(context)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
    if result.returncode != 0:
        raise BedError(f"building the execution environment failed: {bedctl.last_line(log)} (log: {log})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build")
    sub.add_parser("key")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            result = build()
            print(result["image"])
        else:
            plan = plan_from_env()
            with tempfile.TemporaryDirectory(dir=bedctl.STATE, prefix="ee-") as tmp:
                _, collection = build_collection(Path(tmp))
            print(image_key(plan, collection))
    except BedError as exc:
        print(f"ee: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
