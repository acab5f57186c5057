# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tools container of the backup modules: the database's own image, commands run with ``docker exec``.

One container per run, created from the image of the running database
container (so ``pg_dump``/``mongodump`` match the server's version), idling
with ``sleep`` until the run's timeout.  It joins the database container's
network namespace: the tool reaches the server at the database's own address
through the loopback device instead of the network's bridge, which costs the
server and the tool a fifth less CPU for the same dump.  Each tool
runs in it through the exec API, argv only (no shell), credentials in the
exec's environment or in a 0600 file put into the container, never in argv.

Streams never go through the container's log.  When the engine is on this
host (a unix socket), a dump's stdout goes into a named pipe in a 0700
directory mounted into the container and is read here directly, a megabyte at
a time: several times faster than the exec's attached socket, through which
the engine relays every few kilobytes as a frame.  Otherwise it is read frame
by frame from that socket.  A restore's stdin is written chunk by chunk to
the socket.  Either way memory stays bounded whatever the size of the
database.  The container is labelled, killed
at the timeout, and removed whatever happens; one left by a run killed outright
is removed by the next run under the same lock.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import uuid

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
PIPE_MOUNT = "/pydeploy-stream"
PIPE_READ = 1024 * 1024
PIPE_BATCH = 256 * 1024  # the least handed on at once, but at the end
PIPE_PAUSE = 0.001  # after a short read: the pipe fills meanwhile
F_SETPIPE_SZ = 1031  # Linux: a larger pipe buffer, fewer wake-ups
F_GETPIPE_SZ = 1032
MAX_STDERR = 64 * 1024


def pipe_size(fd: int, wanted: int) -> int:
    """Ask for a pipe buffer of ``wanted`` bytes; the size the pipe has (the kernel may refuse a larger one)."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, wanted)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size without the privilege: the pipe keeps its size
    try:
        return fcntl.fcntl(fd, F_GETPIPE_SZ)
    except OSError:
        return 0


class ToolTimeout(Exception):
    """The tools container was killed at the run's timeout."""


def _raw(sock):
    """The real socket behind what docker-py returns for a hijacked connection."""
    return getattr(sock, "_sock", sock)


class ToolsContainer:
    def __init__(
        self,
        client,
        image: str,
        *,
        network,
        name: str,
        labels: dict,
        timeout: float,
        local_pipe: bool = False,
        netns_of: str | None = None,
    ):
        self.client = client
        self.local_pipe = local_pipe
        self.pipe_dir = None
        self.image = image
        self.network = network
        self.netns_of = netns_of
        self.name = name
        self.labels = labels
        self.timeout = timeout
        self.container = None
        self.timed_out = threading.Event()
        self.timer = None

    def __enter__(self):
        mounts = {}
        if self.local_pipe:
            # Under /run, not /tmp: a job run by a systemd unit may have a private /tmp
            # that the engine, mounting the path, would not see.
            base = "/run" if os.access("/run", os.W_OK) else None
            self.pipe_dir = tempfile.mkdtemp(prefix="pydeploy-stream-", dir=base)  # 0700
            mounts = {self.pipe_dir: {"bind": PIPE_MOUNT, "mode": "rw"}}
        if self.netns_of:
            place = {"network_mode": f"container:{self.netns_of}"}
        else:
            place = {"network": self.network}
        with _signals_held():  # a signal must not land between creating the container and knowing it
            self.container = self.client.containers.create(
                self.image,
                entrypoint=["sleep"],
                command=[str(int(self.timeout) + 60)],
                **place,
                labels=self.labels,
                name=self.name,
                user="0",
                stdin_open=False,
                tty=False,
                log_config={"type": "none", "config": {}},
                volumes=mounts or None,
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
        if self.pipe_dir is not None:
            shutil.rmtree(self.pipe_dir, ignore_errors=True)
        return False

    # ----------------------------------------------------------------- files

    def put_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Put a small file (a credentials file) into the container, owned by root."""
        directory, _slash, filename = path.rpartition("/")
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
        if self.pipe_dir is not None and on_stdout is not None:
            return self._run_through_pipe(argv, env, on_stdout)
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

    def _run_through_pipe(self, argv, env, on_stdout) -> tuple[int, str, str]:
        """``run`` with stdout redirected into a named pipe that this process reads.

        The shell in the container only opens the pipe and execs the tool
        (``exec "$@" > "$0"``: argv is never parsed by it).  When the command
        ends without ever opening the pipe (it could not start, the container
        was killed), the thread draining stderr opens and closes it once, so
        that the read here sees the end instead of waiting for a writer.
        """
        name = f"out-{uuid.uuid4().hex}"
        path = os.path.join(self.pipe_dir, name)
        os.mkfifo(path, 0o600)
        shell = ["sh", "-c", 'exec "$@" > "$0"', f"{PIPE_MOUNT}/{name}", *argv]
        exec_id, sock, _raw_socket = self._start(shell, env, stdin=False)
        err = _Tail(MAX_STDERR)

        def drain():
            try:
                for _stream, data in frames_iter(sock, tty=False):
                    err.write(data)
            except OSError:
                pass
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:  # ENXIO: nobody reads any more
                if exc.errno != errno.ENXIO:
                    raise

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                self._read_pipe(fd, on_stdout, pause=PIPE_PAUSE if pipe_size(fd, PIPE_READ) >= PIPE_READ else 0)
            finally:
                os.close(fd)  # a tool still writing gets EPIPE and stops
            reader.join(self.timeout + 60)
        finally:
            sock.close()
            os.unlink(path)
        self._check_timeout()
        return self._exit_code(exec_id), "", err.text()

    @staticmethod
    def _read_pipe(fd: int, on_stdout, pause: float = 0) -> None:
        """Hand what the pipe brings to ``on_stdout`` in chunks of at least PIPE_BATCH bytes (the last one aside).

        A dump tool writes a few kilobytes at a time; read as they come, each
        would cost a pass through compression, hashing and buffering in
        Python, tens of thousands of them per gigabyte.  The reads are
        gathered in one reused buffer instead, and with ``pause`` (only for a
        pipe of a megabyte, which a dump does not fill in a millisecond) a
        short read is followed by that pause, in which the pipe fills: fewer
        wake-ups too.  A small pipe gets no pause: the tool would wait on it.
        """
        chunk = bytearray(PIPE_READ)  # one buffer for every read: no megabyte allocated per read
        view = memoryview(chunk)
        filled = 0
        while True:
            count = os.readv(fd, [view[filled:]])
            filled += count
            if count and filled < PIPE_BATCH:
                if pause:
                    time.sleep(pause)
                continue
            if filled:
                on_stdout(view[:filled])
                filled = 0
            if not count:
                return

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
