"""Reading the files a load names (the DAG file, a sub-DAG's, `dotenv:` files): regular
files only, and never more than a bounded number of bytes. A FIFO would block the open
or the read for ever, a device (`/dev/zero`) never end: both are refused at once."""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["read"]

_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read(path: str, limit: int) -> bytes:
    """At most `limit + 1` bytes of the regular file at `path` (one more than allowed,
    so the caller can tell a file that is too large); OSError, whose `strerror` says
    why, for anything else."""
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode):
            kind = next((k for test, k in _KINDS if test(mode)), "not a file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", path)
        with open(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)
