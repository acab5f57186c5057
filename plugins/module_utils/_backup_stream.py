# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tools container of the backup modules: the database's own image, commands run with ``docker exec``.

One container per run, created from the image of the running database
container (so ``pg_dump``/``mongodump`` match the server's version) on the
database's network, idling with ``sleep`` until the run's timeout.  Each tool
runs in it through the exec API, argv only (no shell), credentials in the
exec's environment or in a 0600 file put into the container, never in argv.

Streams go through the exec's attached socket, never through the container's
log: a dump's stdout is read frame by frame (32 KiB at most each) into a
callback, and a restore's stdin is written chunk by chunk, so memory stays
bounded whatever the size of the database.  The container is labelled, killed
at the timeout, and removed whatever happens; one left by a run killed outright
is removed by the next run under the same lock.
"""

from __future__ import annotations

import io
import socket
import tarfile
import threading
import time

from ansible_collections.pydeploy.stack.plugins.module_utils._docker import (
    DOCKER_ERRORS,
    _signals_held,
    _Tail,
    remove_container,
)

try:
    from docker.utils.socket import frames_iter
except ImportError:  # reported by _docker.get_client
    frames_iter = None

STDOUT, STDERR = 1, 2
MAX_STDERR = 64 * 1024


class ToolTimeout(Exception):
    """The tools container was killed at the run's timeout."""


def _raw(sock):
    """The real socket behind what docker-py returns for a hijacked connection."""
    return getattr(sock, "_sock", sock)


class ToolsContainer:
    def __init__(self, client, image: str, *, network, name: str, labels: dict, timeout: float):
        self.client = client
        self.image = image
        self.network = network
        self.name = name
        self.labels = labels
        self.timeout = timeout
        self.container = None
        self.timed_out = threading.Event()
        self.timer = None

    def __enter__(self):
        with _signals_held():  # a signal must not land between creating the container and knowing it
            self.container = self.client.containers.create(
                self.image,
                entrypoint=["sleep"],
                command=[str(int(self.timeout) + 60)],
                network=self.network,
                labels=self.labels,
                name=self.name,
                user="0",
                stdin_open=False,
                tty=False,
                log_config={"type": "none", "config": {}},
            )
        self.container.start()
        self.timer = threading.Timer(self.timeout, self._kill)
        self.timer.daemon = True
        self.timer.start()
        return self

    def _kill(self):
        self.timed_out.set()
        try:
            self.container.kill()
        except DOCKER_ERRORS:
            pass

    def __exit__(self, *exc_info):
        if self.timer is not None:
            self.timer.cancel()
        if self.container is not None:
            with _signals_held():
                remove_container(self.container)
        return False

    # ----------------------------------------------------------------- files

    def put_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Put a small file (a credentials file) into the container, owned by root."""
        directory, _, filename = path.rpartition("/")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(filename)
            info.size = len(data)
            info.mode = mode
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        self.container.put_archive(directory or "/", buffer.getvalue())

    # ----------------------------------------------------------------- commands

    def _start(self, argv, env, stdin: bool):
        api = self.client.api
        exec_id = api.exec_create(
            self.container.id, argv, stdout=True, stderr=True, stdin=stdin, environment=env or None, user="0"
        )["Id"]
        sock = api.exec_start(exec_id, socket=True)
        raw = _raw(sock)
        raw.settimeout(None)  # the run's timeout kills the container, which ends the stream
        return exec_id, sock, raw

    def _exit_code(self, exec_id) -> int:
        deadline = time.monotonic() + 30
        while True:
            info = self.client.api.exec_inspect(exec_id)
            if not info.get("Running") or time.monotonic() > deadline:
                code = info.get("ExitCode")
                return -1 if code is None else code
            time.sleep(0.05)

    def _check_timeout(self):
        if self.timed_out.is_set():
            raise ToolTimeout(f"timed out after {self.timeout:g} s and was killed")

    def run(self, argv, env=None, on_stdout=None) -> tuple[int, str, str]:
        """Run ``argv``; each stdout chunk goes to ``on_stdout`` (else is kept).

        Returns ``(exit_code, stdout_tail, stderr_tail)``.  An exception raised
        by ``on_stdout`` stops the command (the tools container is killed by the
        caller's context) and propagates.
        """
        exec_id, sock, _raw_socket = self._start(argv, env, stdin=False)
        out, err = _Tail(MAX_STDERR), _Tail(MAX_STDERR)
        try:
            for stream, data in frames_iter(sock, tty=False):
                if stream == STDOUT:
                    if on_stdout is not None:
                        on_stdout(data)
                    else:
                        out.write(data)
                else:
                    err.write(data)
        finally:
            sock.close()
        self._check_timeout()
        return self._exit_code(exec_id), out.text(), err.text()

    def run_with_stdin(self, argv, chunks, env=None) -> tuple[int, str, bool]:
        """Run ``argv`` with ``chunks`` (an iterable of bytes) as its stdin.

        Output (stdout and stderr) is drained by a thread into a bounded tail.
        When the command stops reading early, the rest of ``chunks`` is still
        consumed (so that a caller hashing the stream sees all of it) but no
        longer sent.  Returns ``(exit_code, output_tail, stdin_complete)``.
        """
        exec_id, sock, raw = self._start(argv, env, stdin=True)
        tail = _Tail(MAX_STDERR)
        failure = []

        def drain():
            try:
                for _stream, data in frames_iter(sock, tty=False):
                    tail.write(data)
            except OSError as exc:  # the socket closed under us: the command is gone
                failure.append(exc)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        complete = True
        try:
            for chunk in chunks:
                if complete and chunk:
                    try:
                        raw.sendall(chunk)
                    except OSError:
                        complete = False  # the command exited or closed its stdin
            try:
                raw.shutdown(socket.SHUT_WR)
            except OSError:
                complete = False
            reader.join(self.timeout + 60)
        finally:
            sock.close()
        self._check_timeout()
        return self._exit_code(exec_id), tail.text(), complete
