"""Hosts for fleet tests: containers of the bed's host image (``make bed`` builds it from bed/host), each a bare
Debian machine with its own Docker engine, cron and sshd, reached over SSH as a VM is.

They live on a network of their own (``pydeploy-hosts-<slot>``, 10.213.<77 + slot>.0/24), where a second registry
serves the bed registry's storage read-only under the name ``pydeploy-registry:5000`` (a network alias: the hosts'
engines pull from it as from a private registry, an ``insecure-registries`` entry their daemon.json gets from the
docker_host role).  Several fleets may run at once (test modules of parallel workers): each takes a free slot of
SLOTS (a file lock), its hosts named ``pydeploy-host-<slot>-<n>``.
Only sshd and the ports a test asks for are published, on 127.0.0.1 and nowhere else.  Everything is labelled
``pydeploy.test`` and removed by :meth:`Fleet.close`.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker

NETWORK = "pydeploy-hosts"
REGISTRY_NAME = "pydeploy-registry"
REGISTRY = f"{REGISTRY_NAME}:5000"
HOST_PREFIX = "pydeploy-host-"
CLIENT_PREFIX = "pydeploy-hosts-client-"
TEST_LABEL = "pydeploy.test"
SLOTS = 6
LOCKS = Path("/tmp")
# What DinD needs here without --privileged (which this engine refuses, as it does --cap-add ALL: SYS_RESOURCE is
# not in its own bounding set): the engine inside mounts overlays and cgroups and programs its NAT (SYS_ADMIN,
# NET_ADMIN), and may give its containers the capabilities beyond the default set that the roles' containers ask
# for (the data services' DAC_READ_SEARCH...).  /proc/sys is writable (systempaths=unconfined, which only the CLI
# turns into the engine's masked and read-only paths): the engine sets route_localnet on its bridges when
# userland-proxy is off.  Its data is a volume (overlay2 does not stack on overlay2); --init reaps what the
# engine script leaves.
HOST_CAPABILITIES = ("SYS_ADMIN", "NET_ADMIN", "DAC_READ_SEARCH", "SYS_NICE", "SYS_PTRACE", "IPC_LOCK")
HOST_RUN_OPTIONS = [
    *(f"--cap-add={cap}" for cap in HOST_CAPABILITIES),
    "--security-opt=seccomp=unconfined",
    "--security-opt=systempaths=unconfined",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--init",
]
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  maintenance:
    readonly:
      enabled: true
    uploadpurging:
      enabled: false
http:
  addr: ":5000"
"""


class FleetError(Exception):
    pass


@dataclass
class Host:
    name: str
    container: object
    ssh_port: int
    ports: dict  # container port (int) -> published port on 127.0.0.1
    key: str
    known_hosts: Path
    address: str = ""  # on the fleet's network: the host's private address

    def exec(self, *argv: str, timeout: float = 120) -> tuple[int, str]:
        """Run a command on the host (docker exec: the test's own view, not the deploy's)."""
        result = subprocess.run(
            ["docker", "exec", self.name, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        return result.returncode, result.stdout + result.stderr

    def ssh(self, command: str, timeout: float = 60) -> tuple[int, str]:
        result = subprocess.run(
            ["ssh", "-p", str(self.ssh_port), *self.ssh_options(), "root@127.0.0.1", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return result.returncode, result.stdout + result.stderr

    def ssh_options(self) -> list[str]:
        return ["-i", self.key, "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5"]  # fmt: skip

    def inventory_vars(self) -> dict:
        """How Ansible reaches the host: SSH as root with the bed's key, its own host key checked."""
        return {
            "ansible_connection": "ssh",
            "ansible_host": "127.0.0.1",
            "ansible_port": self.ssh_port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": self.key,
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes",
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def engine(self, action: str) -> str:
        """Stop, start or restart the host's Docker engine (bed/host/engine), containerd left running."""
        rc, output = self.exec("engine", action, timeout=120)
        if rc != 0:
            raise FleetError(f"engine {action} on {self.name} failed: {output.strip()}")
        return output


class Fleet:
    """The hosts a test starts, their network and their registry."""

    def __init__(self, client, bed: dict, workdir: Path):
        if "host" not in bed:
            raise FleetError("the bed has no host image: run 'make bed'")
        self.client = client
        self.bed = bed
        self.workdir = workdir
        self.hosts: list[Host] = []
        self.network = None
        self.registry = None
        self._lock = None
        self.slot: int | None = None
        self.clients: list = []

    @property
    def network_name(self) -> str:
        return f"{NETWORK}-{self.slot}"

    @property
    def subnet(self) -> str:
        return f"10.213.{77 + self.slot}.0/24"

    @property
    def registry_name(self) -> str:
        return f"{REGISTRY_NAME}-{self.slot}"

    @property
    def host_prefix(self) -> str:
        return f"{HOST_PREFIX}{self.slot}-"

    @property
    def client_prefix(self) -> str:
        return f"{CLIENT_PREFIX}{self.slot}-"

    # -------------------------------------------------------------- network and registry

    def _remove_leftovers(self) -> None:
        """What an interrupted run of these tests left in this slot: only its own, labelled containers and network."""
        for container in self.client.containers.list(all=True, filters={"label": TEST_LABEL}):
            if (
                container.name.startswith((self.host_prefix, self.client_prefix))
                or container.name == self.registry_name
            ):
                container.remove(force=True, v=True)
        for network in self.client.networks.list(names=[self.network_name], filters={"label": TEST_LABEL}):
            if network.name == self.network_name:
                network.remove()

    def _take_slot(self, timeout: float = 1800) -> None:
        """The first free slot (its lock held until close()); waits while every slot is taken."""
        deadline = time.monotonic() + timeout
        while True:
            for slot in range(SLOTS):
                lock = open(LOCKS / f"pydeploy-test-fleet-{slot}.lock", "a")
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    lock.close()
                    continue
                self._lock, self.slot = lock, slot
                return
            if time.monotonic() > deadline:
                raise FleetError(f"every one of the {SLOTS} fleet slots stayed taken for {timeout:.0f}s")
            time.sleep(2)

    def start_network(self) -> None:
        # Names are fixed per slot: what is left under them once the slot's lock is held is an interrupted run's.
        self._take_slot()
        self._remove_leftovers()
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=self.subnet)])
        self.network = self.client.networks.create(
            self.network_name, driver="bridge", ipam=ipam, labels={TEST_LABEL: "1"}
        )
        config = self.workdir / "registry.yml"
        config.write_text(REGISTRY_CONFIG)
        storage = Path(self.bed["state"]) / "registry"
        # The bed's own registry binary in the bed's Debian base: the same storage, read-only, served on this
        # network alone (nothing published).
        self.registry = self.client.containers.create(
            self.bed["host"].get("base", "pydeploy-bed/debian:bookworm"),
            ["/usr/bin/docker-registry", "serve", "/etc/registry.yml"],
            name=self.registry_name,
            network=self.network_name,
            labels={TEST_LABEL: "1"},
            volumes={
                "/usr/bin/docker-registry": {"bind": "/usr/bin/docker-registry", "mode": "ro"},
                str(storage): {"bind": "/var/lib/registry", "mode": "ro"},
                str(config): {"bind": "/etc/registry.yml", "mode": "ro"},
            },
        )
        # Known on the fleet's network by the registry's name (the one the hosts' daemon.json and images use).
        self.network.disconnect(self.registry)
        self.network.connect(self.registry, aliases=[REGISTRY_NAME])
        self.registry.start()

    # -------------------------------------------------------------- hosts

    def start_host(self, ports: tuple[int, ...] = ()) -> Host:
        """Start ``pydeploy-host-<n>``: sshd and ``ports`` published on 127.0.0.1 (free ports chosen by the
        engine); return once it answers over SSH, its host key pinned in a known_hosts file of the test's."""
        if self.network is None:
            self.start_network()
        name = f"{self.host_prefix}{len(self.hosts) + 1}"
        published = [22, *ports]
        argv = ["docker", "run", "--detach", f"--name={name}", f"--hostname={name}", f"--network={self.network_name}",
                f"--label={TEST_LABEL}=1", "--env=AUTHORIZED_KEY", *HOST_RUN_OPTIONS]  # fmt: skip
        argv += [f"--publish=127.0.0.1::{port}" for port in published]
        environment = {**os.environ, "AUTHORIZED_KEY": self.bed["host"]["ssh_public_key"]}
        started = subprocess.run(
            [*argv, self.bed["host"]["image"]], capture_output=True, text=True, env=environment, check=False
        )
        if started.returncode != 0:
            raise FleetError(f"cannot start {name}: {started.stderr.strip()}")
        container = self.client.containers.get(name)
        bindings = container.attrs["NetworkSettings"]["Ports"]
        mapped = {port: int(bindings[f"{port}/tcp"][0]["HostPort"]) for port in published}
        host = Host(
            name=name,
            container=container,
            ssh_port=mapped.pop(22),
            ports=mapped,
            key=self.bed["host"]["ssh_key"],
            known_hosts=self.workdir / f"known_hosts-{name}",
            address=container.attrs["NetworkSettings"]["Networks"][self.network_name]["IPAddress"],
        )
        self.hosts.append(host)
        self._pin_host_key(host)
        return host

    def _pin_host_key(self, host: Host, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        output = ""
        while time.monotonic() < deadline:
            rc, key = host.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub")
            if rc == 0 and key.startswith("ssh-ed25519 "):
                host.known_hosts.write_text(f"[127.0.0.1]:{host.ssh_port} {' '.join(key.split()[:2])}\n")
                rc, output = host.ssh("true", timeout=15)
                if rc == 0:
                    return
            time.sleep(0.3)
        raise FleetError(f"{host.name} did not answer over SSH within {timeout:.0f}s: {output.strip()}")

    def run_client(self, image: str, command: list[str], files: dict | None = None):
        """A container on the hosts' network (a client from another machine), ``files`` (local path -> path in it)
        mounted read-only; removed by close()."""
        container = self.client.containers.run(
            image,
            command,
            name=f"{self.client_prefix}{len(self.clients) + 1}",
            detach=True,
            network=self.network_name,
            labels={TEST_LABEL: "1"},
            volumes={str(local): {"bind": inside, "mode": "ro"} for local, inside in (files or {}).items()},
        )
        self.clients.append(container)
        return container

    # -------------------------------------------------------------- teardown

    def close(self) -> None:
        for container in self.clients:
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
        for host in self.hosts:
            try:
                host.container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
        if self.registry is not None:
            try:
                self.registry.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
        if self.network is not None:
            self.network.remove()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


# --------------------------------------------------------------------------- command line (molecule's create/destroy)
#
#   python tests/integration/hosts.py up --hosts 2 --publish 1:443 --state DIR/fleet.json
#   python tests/integration/hosts.py down --state DIR/fleet.json
#
# ``up`` starts a fleet as the fixture does and leaves it running: the slot's lock is handed to a small process of
# its own that holds it until ``down`` (or until the state file is gone), so that no other fleet takes the slot.
# The state file names the slot, the hosts (name, private address, SSH port, published ports, how Ansible reaches
# them) and the lock's holder; a ``known_hosts`` beside it pins every host's key.

HOLDER = """\
import os, sys, time  # pydeploy fleet slot holder
while os.path.exists(sys.argv[1]):
    time.sleep(2)
"""


def _bed_from_state() -> dict:
    import json

    state = Path(os.environ.get("BED_STATE", Path(__file__).resolve().parents[2] / ".bed")) / "bed.json"
    if not state.exists():
        raise FleetError(f"{state} is missing: run 'make bed' first")
    return json.loads(state.read_text())


def cli_up(count: int, publish: list[str], state: Path) -> dict:
    import json
    import sys

    ports: dict[int, list[int]] = {}
    for item in publish:
        number, _, port = item.partition(":")
        ports.setdefault(int(number), []).append(int(port))
    state = state.resolve()
    state.parent.mkdir(parents=True, exist_ok=True)
    cli_down(state)  # a fleet this state file still names is replaced
    fleet = Fleet(docker.from_env(timeout=120), _bed_from_state(), state.parent)
    try:
        fleet.start_network()
        for number in range(1, count + 1):
            fleet.start_host(ports=tuple(ports.get(number, ())))
    except BaseException:
        fleet.close()
        raise
    hosts = [
        {"name": host.name, "private_address": host.address, "ssh_port": host.ssh_port,
         "ports": {str(port): published for port, published in host.ports.items()},
         "inventory_vars": host.inventory_vars()}
        for host in fleet.hosts
    ]  # fmt: skip
    known_hosts = state.parent / "known_hosts"
    known_hosts.write_text("".join(host.known_hosts.read_text() for host in fleet.hosts))
    data = {"slot": fleet.slot, "network": fleet.network_name, "subnet": fleet.subnet,
            "known_hosts": str(known_hosts), "hosts": hosts}  # fmt: skip
    state.write_text(json.dumps(data, indent=2))
    # The slot's lock goes to a holder that outlives this command.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        pass_fds=(fleet._lock.fileno(),),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    data["holder"] = holder.pid
    state.write_text(json.dumps(data, indent=2))
    return data


def cli_down(state: Path) -> None:
    """Remove what ``up`` started (the slot's own labelled containers and network), then release the slot."""
    import json
    import signal

    if not state.exists():
        return
    data = json.loads(state.read_text())
    fleet = Fleet(docker.from_env(timeout=120), _bed_from_state(), state.parent)
    fleet.slot = data["slot"]
    fleet._remove_leftovers()
    state.unlink()
    holder = data.get("holder")
    if holder:
        try:
            with open(f"/proc/{holder}/cmdline", "rb") as handle:
                ours = b"pydeploy fleet slot holder" in handle.read()
        except OSError:
            ours = False
        if ours:
            os.kill(holder, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="hosts.py", description="Start or remove a fleet of test hosts.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a network, its registry and N hosts; write the state file")
    up.add_argument("--hosts", type=int, default=1, help="how many hosts (default 1)")
    up.add_argument("--publish", action="append", default=[], metavar="N:PORT",
                    help="publish PORT of host N (from 1) on 127.0.0.1 (sshd always is)")  # fmt: skip
    up.add_argument("--state", type=Path, required=True, help="the state file (JSON) to write")
    down = commands.add_parser("down", help="remove the fleet a state file names")
    down.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(json.dumps(cli_up(args.hosts, args.publish, args.state), indent=2))
        else:
            cli_down(args.state)
    except FleetError as exc:
        parser.exit(1, f"hosts.py: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
