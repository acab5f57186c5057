# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files replaced whole, so that a crash or a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile


def replace_file(path: str, content: str, mode: int = 0o600, *, prefix: str = "", suffix: str = "") -> None:
    """Replace ``path`` with ``content``: written to a temporary file beside it (``prefix``, by default
    ``.<name>.``, and ``suffix`` name it so that no reader's pattern matches it), flushed to disk, given
    ``mode``, renamed over ``path``, and the directory flushed. All of it or none of it, even across a crash."""
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=prefix or f".{os.path.basename(path)}.", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
