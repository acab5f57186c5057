# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker engine access shared by the collection's modules.

One argument spec (documented by the ``pydeploy.stack.docker`` doc fragment),
one way to get a client, and one way to run a one-off container: argv only
(never a shell), output collected with a bounded buffer, a hard timeout, and
the container removed whatever happens.
"""

from __future__ import annotations

import re
import shlex
import signal
import threading
import time
import traceback
from contextlib import contextmanager

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    import docker
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from requests.exceptions import RequestException
except ImportError:
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()

    # Stand-ins that keep this file importable without the SDK. docker_client() fails the module
    # before anything talks to the engine, so none of them is ever raised.
    class DockerException(Exception):
        pass

    class APIError(DockerException):
        pass

    class NotFound(APIError):
        pass

    class ImageNotFound(NotFound):
        pass

    class RequestException(OSError):
        pass

    # Errors a caller of this module can expect from the engine or its transport. Set in each
    # branch, so that a reader of the code without the SDK (pylint) sees the stand-ins here and
    # the SDK's classes below, never a mix of both in one tuple.
    DOCKER_ERRORS = (DockerException, RequestException, OSError)
else:
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
    DOCKER_ERRORS = (DockerException, RequestException, OSError)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_DOCKER_TIMEOUT = 60
DEFAULT_ONEOFF_TIMEOUT = 900
# Output kept from a one-off container: the tail, which is where tools put the error.
MAX_OUTPUT_BYTES = 256 * 1024

_ENV_NAME = re.compile(r"^[^\s=]+$")


class EnvFileError(ValueError):
    """An env file cannot be read or has a malformed line (the message never quotes a value)."""


class OneOffTimeout(Exception):
    """A one-off container ran past its timeout and was killed."""

    def __init__(self, timeout: float, output: str):
        super().__init__(f"timed out after {timeout:g} s")
        self.timeout = timeout
        self.output = output


class Interrupted(BaseException):
    """The module process was asked to stop (SIGTERM, SIGINT, SIGHUP) while a one-off ran."""


def docker_argument_spec() -> dict:
    """Connection options of every module talking to Docker (doc fragment ``pydeploy.stack.docker``)."""
    return {
        "docker_host": {
            "type": "str",
            "default": DEFAULT_DOCKER_HOST,
            "fallback": (env_fallback, ["DOCKER_HOST"]),
            "aliases": ["docker_url"],
        },
        "docker_timeout": {
            "type": "int",
            "default": DEFAULT_DOCKER_TIMEOUT,
            "fallback": (env_fallback, ["DOCKER_TIMEOUT"]),
        },
    }


def get_client(module):
    """Return a connected ``docker.DockerClient`` or fail the module with one clear message."""
    if not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker"), exception=DOCKER_IMPORT_ERROR)
    host = module.params["docker_host"]
    try:
        # version=None asks the engine for its API version, which also proves it answers.
        client = docker.DockerClient(base_url=host, version=None, timeout=module.params["docker_timeout"])
        client.ping()
    except DOCKER_ERRORS as exc:
        module.fail_json(msg=f"cannot reach the Docker engine at {host}: {exc}")
    return client


def split_command(command) -> list[str]:
    """Return ``command`` as an argv list: a list is taken as is, a string is split like a shell would (no shell)."""
    if command is None:
        return []
    if isinstance(command, (list, tuple)):
        return [str(arg) for arg in command]
    return shlex.split(str(command))


def parse_env_file_text(text: str, source: str = "env file") -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines as ``docker run --env-file`` does.

    Leading whitespace is ignored, blank lines and lines starting with ``#``
    are skipped, the value is everything after the first ``=`` taken verbatim
    (no quote removal, no variable expansion).  A line without ``=`` is an
    error: ``docker`` would copy that variable from its own environment, which
    for a module on a managed host is never what was meant.
    """
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip()
        if number == 1:
            line = line.lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise EnvFileError(f"{source}, line {number}: expected KEY=VALUE")
        if not _ENV_NAME.match(key):
            raise EnvFileError(f"{source}, line {number}: invalid variable name")
        env[key] = value
    return env


def parse_env_file(path: str) -> dict[str, str]:
    """Read and parse an env file on this host (see :func:`parse_env_file_text`)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvFileError(f"cannot read env file {path}: {exc}") from None
    return parse_env_file_text(text, source=path)


def build_environment(env_file=None, environment=None) -> dict[str, str]:
    """The environment of a one-off: the env file's variables, overridden by ``environment``."""
    env = parse_env_file(env_file) if env_file else {}
    for key, value in (environment or {}).items():
        env[str(key)] = "" if value is None else str(value)
    return env


def ensure_image(client, image: str) -> bool:
    """Make sure ``image`` is present locally, pulling it when missing; return whether it was pulled."""
    try:
        client.images.get(image)
        return False
    except ImageNotFound:
        client.images.pull(image)
        return True


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _signals_raise_interrupted():
    """Turn SIGTERM/SIGINT/SIGHUP into an exception so that ``finally`` blocks run."""
    if not _in_main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(f"received signal {signum}")

    previous = {signum: signal.signal(signum, handler) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def _signals_held():
    """Hold stop signals back (they are delivered afterwards) so that a cleanup is not cut short."""
    if not _in_main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _Tail:
    """Keep the last ``limit`` bytes written, and how many were dropped."""

    def __init__(self, limit: int):
        self.limit = limit
        self.buffer = bytearray()
        self.dropped = 0

    def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        excess = len(self.buffer) - self.limit
        if excess > 0:
            del self.buffer[:excess]
            self.dropped += excess

    def text(self) -> str:
        text = self.buffer.decode("utf-8", "replace")
        if self.dropped:
            text = f"[... {self.dropped} bytes of earlier output dropped ...]\n{text}"
        return text


def stop_gracefully(container, timeout) -> None:
    """Its stop signal, then ``timeout`` seconds (or the timeout it was created with) before the kill."""
    if container.status not in ("running", "restarting", "paused"):
        return
    if timeout is None:
        timeout = (container.attrs.get("Config") or {}).get("StopTimeout")
    container.stop(timeout=10 if timeout is None else timeout)


def retire_container(client, name: str, timeout, dry_run: bool = False) -> str:
    """Stop the container ``name`` gracefully and remove it with its anonymous volumes; its ID, or ""
    when there is no such container."""
    try:
        container = client.containers.get(name)
    except NotFound:
        return ""
    if not dry_run:
        stop_gracefully(container, timeout)
        try:
            container.remove(v=True, force=True)
        except NotFound:
            pass
    return container.id


def remove_container(container, attempts: int = 5) -> None:
    """Force-remove ``container`` and its anonymous volumes; a container already gone is fine."""
    for attempt in range(attempts):
        try:
            container.remove(force=True, v=True)
            return
        except NotFound:
            return
        except APIError:
            # e.g. 409 "removal already in progress": give the engine a moment.
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


SECURITY_OPTIONS = {
    "cap_drop": {"type": "list", "elements": "str"},
    "cap_add": {"type": "list", "elements": "str"},
    "no_new_privileges": {"type": "bool"},
    "pids_limit": {"type": "int"},
    "read_only": {"type": "bool"},
    "tmpfs": {"type": "list", "elements": "str"},
}


def security_host_options(security: dict) -> dict:
    """``security`` (the option of the ``pydeploy.stack.security`` doc fragment) as the engine's host
    configuration (the keyword arguments of ``create_host_config`` and of ``containers.create``)."""
    options = {}
    for key in ("cap_drop", "cap_add"):
        if security.get(key):
            if not all(isinstance(cap, str) and cap.replace("_", "").isalnum() for cap in security[key]):
                raise ValueError(f"security.{key}: {security[key]!r} is not a list of capability names")
            options[key] = [cap.upper().removeprefix("CAP_") for cap in security[key]]
    if security.get("no_new_privileges"):
        options["security_opt"] = ["no-new-privileges:true"]
    if security.get("pids_limit"):
        if int(security["pids_limit"]) < 1:
            raise ValueError(f"security.pids_limit must be at least 1, got {security['pids_limit']}")
        options["pids_limit"] = int(security["pids_limit"])
    if security.get("read_only"):
        options["read_only"] = True
    if security.get("tmpfs"):
        tmpfs = {}
        for entry in security["tmpfs"]:
            path, _sep, mount_options = str(entry).partition(":")
            if not path.startswith("/"):
                raise ValueError(f"security.tmpfs: {entry!r} is not an absolute path (with :options)")
            tmpfs[path] = mount_options
        options["tmpfs"] = tmpfs
    return options


def parse_volume(entry: str) -> tuple[str, str, str]:
    """``source:target[:mode]`` (Docker's short form, mode ``rw`` or ``ro``) as (source, target, mode)."""
    parts = str(entry).split(":")
    if (
        len(parts) not in (2, 3)
        or not parts[0]
        or not parts[1].startswith("/")
        or parts[2:] not in ([], ["rw"], ["ro"])
    ):
        raise ValueError(f"volume {entry!r} is not source:/path, source:/path:rw or source:/path:ro")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else "rw"


def ensure_volumes(client, volumes, labels=None, dry_run: bool = False) -> list:
    """Create the named volumes among ``volumes`` (``source:target[:mode]`` entries; a source that is an
    absolute path is a bind mount, left alone) that do not exist yet, with ``labels``; their names."""
    created = []
    for entry in volumes or []:
        source = parse_volume(entry)[0]
        if source.startswith("/") or source in created:
            continue
        try:
            client.volumes.get(source)
        except NotFound:
            if not dry_run:
                client.volumes.create(name=source, labels={str(k): str(v) for k, v in (labels or {}).items()})
            created.append(source)
    return created


def run_oneoff(
    client,
    image: str,
    command,
    *,
    env_file=None,
    environment=None,
    network=None,
    labels=None,
    name=None,
    timeout: float = DEFAULT_ONEOFF_TIMEOUT,
    user=None,
    volumes=None,
    security=None,
    max_output: int = MAX_OUTPUT_BYTES,
) -> tuple[int, str]:
    """Run ``command`` in a new container of ``image`` and return ``(exit_code, output)``.

    ``command`` is an argv list or a string split with :mod:`shlex`; it is
    passed to the image's entrypoint exactly as ``docker run IMAGE ARGS...``
    would, never through a shell.  stdout and stderr are collected together
    (the last ``max_output`` bytes).  Past ``timeout`` seconds the container is
    killed and :class:`OneOffTimeout` is raised, carrying the output so far.
    ``volumes`` are mounts in Docker's ``source:target[:mode]`` form; ``security`` what the container
    may do (see :func:`security_host_options`).
    The container is removed in every case (with its anonymous volumes),
    exceptions and signals included.
    """
    argv = split_command(command)
    env = build_environment(env_file, environment)
    tail = _Tail(max_output)
    timed_out = threading.Event()
    container = None

    with _signals_raise_interrupted():
        try:
            with _signals_held():  # a signal must not land between creating the container and knowing it
                container = client.containers.create(
                    image,
                    command=argv or None,
                    environment=env,
                    network=network,
                    labels={str(k): str(v) for k, v in (labels or {}).items()},
                    name=name,
                    user=user,
                    volumes=list(volumes or []) or None,
                    **security_host_options(security or {}),
                    stdin_open=False,
                    tty=False,
                )

            def kill() -> None:
                timed_out.set()
                try:
                    container.kill()
                except DOCKER_ERRORS:
                    pass  # already stopped: the wait below returns at once

            timer = threading.Timer(timeout, kill)
            timer.daemon = True
            deadline = time.monotonic() + timeout
            container.start()
            timer.start()
            try:
                # The stream ends when the container stops (normally or killed by the timer).
                for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                    tail.write(chunk)
                remaining = max(deadline - time.monotonic(), 0)
                exit_code = container.wait(timeout=remaining + 30)["StatusCode"]
                # A follow stream of a container that exits at once can miss its first
                # lines; once it has stopped, the engine's log is complete.
                complete = container.logs(stdout=True, stderr=True)
                if isinstance(complete, bytes) and len(complete) > len(tail.buffer) + tail.dropped:
                    tail = _Tail(max_output)
                    tail.write(complete)
            finally:
                timer.cancel()
        finally:
            if container is not None:
                with _signals_held():
                    remove_container(container)

    if timed_out.is_set():
        raise OneOffTimeout(timeout, tail.text())
    return exit_code, tail.text()
