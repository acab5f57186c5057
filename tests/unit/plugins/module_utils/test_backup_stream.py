"""Reading a dump tool's output from its pipe: small writes are handed on in large chunks, nothing lost."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
from ansible_collections.pydeploy.stack.plugins.module_utils import _backup_stream
from ansible_collections.pydeploy.stack.plugins.module_utils._backup_stream import ToolsContainer

KiB = 1024


def feed(fd: int, data: bytes, write_size: int) -> threading.Thread:
    """Write ``data`` into ``fd`` ``write_size`` bytes at a time (as pg_dump's stdio does), then close it."""

    def run():
        with os.fdopen(fd, "wb", buffering=0) as pipe:
            for start in range(0, len(data), write_size):
                pipe.write(data[start : start + write_size])

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def read_all(data: bytes, write_size: int, pause: float = 0) -> list[bytes]:
    read_fd, write_fd = os.pipe()
    writer = feed(write_fd, data, write_size)
    chunks = []
    try:
        ToolsContainer._read_pipe(read_fd, lambda view: chunks.append(bytes(view)), pause=pause)
    finally:
        os.close(read_fd)
        writer.join()
    return chunks


@pytest.mark.parametrize("pause", [0, _backup_stream.PIPE_PAUSE])
def test_small_writes_reach_the_sink_in_large_chunks(pause):
    data = os.urandom(6 * 1024 * KiB + 123)
    chunks = read_all(data, 8 * KiB, pause)
    assert b"".join(chunks) == data
    assert all(len(chunk) >= _backup_stream.PIPE_BATCH for chunk in chunks[:-1])
    # a megabyte buffer at most: never more than the reader's buffer at once
    assert max(len(chunk) for chunk in chunks) <= _backup_stream.PIPE_READ
    assert len(chunks) <= len(data) // _backup_stream.PIPE_BATCH + 1


def test_a_short_stream_and_an_empty_one():
    assert read_all(b"", 8 * KiB) == []
    data = b"x" * 1000
    assert read_all(data, 10) == [data]


def test_the_sink_sees_every_byte_in_order_with_large_writes():
    data = os.urandom(3 * 1024 * KiB)
    seen = hashlib.sha256()
    for chunk in read_all(data, 700 * KiB):
        seen.update(chunk)
    assert seen.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_pipe_gets_the_size_asked_for_or_keeps_its_own():
    read_fd, write_fd = os.pipe()
    try:
        size = _backup_stream.pipe_size(read_fd, _backup_stream.PIPE_READ)
        # where the kernel refuses a megabyte (pipe-max-size), the pipe keeps its own size
        assert size == _backup_stream.PIPE_READ or 0 < size < _backup_stream.PIPE_READ
    finally:
        os.close(read_fd)
        os.close(write_fd)
