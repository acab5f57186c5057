#!/usr/bin/env bash
# Installs what the bed, the collection and its tests need on a Debian 12
# machine, each only when missing:
#   - Debian packages (Docker engine, debootstrap, the registry, cron, ...);
#   - the project's virtualenv (.venv), rebuilt only when the pinned
#     requirements change.
# Every failure is one line naming the cause.
set -euo pipefail

cd "$(dirname "$0")/.."

die() { echo "bed: error: $*" >&2; exit 1; }

APT_PACKAGES=(
    docker.io          # the engine (dockerd, containerd, runc)
    iptables           # docker's networking
    debootstrap        # the local Debian base image
    docker-registry    # the loopback registry
    cron               # scheduled jobs on the local machine
    iproute2           # ss: who holds a port
    procps             # pgrep
    curl
    git
    zstd
    # The Python of scheduled backups on this machine (backup_python, the
    # host's /usr/bin/python3, not .venv, which a rebuild removes): S3, the
    # Docker SDK, PostgreSQL and zstd, as docker_host_python_deps=apt installs
    # them on a host; with the rest of that list, the interpreter of a run that
    # reaches this machine over SSH (the AWX job test).
    python3-boto3
    python3-docker
    python3-psycopg
    python3-zstandard
    python3-pymongo
    python3-redis
    python3-requests
    openssh-server     # sshd for that run: the execution environment reaches its host over SSH (see below)
)

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    [ "$(id -u)" = 0 ] || die "missing Debian packages (${missing[*]}) and not root: install them with sudo apt-get install ${missing[*]}"
    echo "bed: installing Debian packages: ${missing[*]}"
    log=$(mktemp /tmp/pydeploy-apt.XXXXXX)
    # Only openssh-server's scripts are kept from starting a service: the engine and cron may start as the
    # machine's init starts them (the bed starts them itself where none runs).
    policy=/usr/sbin/policy-rc.d
    own_policy=false
    if [[ " ${missing[*]} " == *" openssh-server "* ]] && [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# written by pydeploy bed/bootstrap.sh for one apt-get run\ncase "$1" in ssh|sshd) exit 101;; esac\nexit 0\n' >"$policy"
        chmod 755 "$policy"
        own_policy=true
    fi
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        ! $own_policy || rm -f "$policy"
        die "apt-get install ${missing[*]} failed: $(grep -E '^E:' "$log" | tail -1) (log: $log)"
    fi
    ! $own_policy || rm -f "$policy"
    rm -f "$log"
    # The AWX job test starts its own sshd on loopback: the package must not leave a system
    # sshd listening on every interface. policy-rc.d (Debian's switch for maintainer scripts)
    # keeps the install from starting the service; where systemd runs, it is not enabled either.
    if [[ " ${missing[*]} " == *" openssh-server "* ]] && command -v systemctl >/dev/null \
            && [ -d /run/systemd/system ]; then
        systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
    fi
fi

want=$(cat requirements.txt requirements-dev.txt bed/requirements-sslyze.txt | sha256sum | cut -d' ' -f1)
stamp=.venv/.requirements.sha256
# Two `make` runs at once: the second waits, then finds the venv built.
exec 9>.venv.lock
flock 9
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "bed: creating .venv from the pinned requirements"
    rm -rf .venv
    log=$(mktemp /tmp/pydeploy-pip.XXXXXX)
    # sslyze (the proxy's TLS tests) in a virtualenv of its own, .venv/sslyze: it
    # requires an older cryptography than the collection's.
    if ! { python3 -m venv .venv && .venv/bin/pip install -q --upgrade pip \
            && .venv/bin/pip install -q -r requirements-dev.txt \
            && python3 -m venv .venv/sslyze \
            && .venv/sslyze/bin/pip install -q -r bed/requirements-sslyze.txt; } >"$log" 2>&1; then
        rm -rf .venv
        die "installing the Python requirements failed: $(grep -iE 'error' "$log" | tail -1) (log: $log)"
    fi
    rm -f "$log"
    echo "$want" >"$stamp"
fi
flock -u 9

# The playbooks use the collection by its name (pydeploy.stack.*): ansible.cfg
# points collections_path at .collections, where the checkout is linked.
mkdir -p .collections/ansible_collections/pydeploy
ln -sfn ../../.. .collections/ansible_collections/pydeploy/stack
