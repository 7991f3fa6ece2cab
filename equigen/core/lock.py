"""One writer per data folder: an exclusive, advisory lock on `<data folder>/.equigen.lock`.

Two `equigen fetch` on one folder would page the same offsets (two MusicBrainz requests a second under
one contact) and download every cover twice; a `balance` during a `dedup` would read half a clustering.
The lock is an flock(2) held for the life of the verb: the kernel drops it when the process dies, even
by kill -9, so a stale lock file never blocks anyone. The file records the holder for the error message.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from equigen.core.errors import EquigenError

LOCK_NAME = ".equigen.lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock degrades to nothing rather than refusing to run
    fcntl = None  # type: ignore[assignment]


@contextmanager
def data_folder_lock(data_dir: Path, verb: str, create: bool = True) -> Iterator[None]:
    """Hold the folder's lock while the block runs; a second holder fails at once, naming the first.

    create=False: a missing folder is not made up (the verbs after fetch then report what is missing
    themselves, after checking their arguments); there is nothing to lock in it.
    """
    data_dir = Path(data_dir)
    if not create and not data_dir.is_dir():
        yield
        return
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = _open_lock_file(data_dir / LOCK_NAME)
    except OSError as exc:
        raise EquigenError(f"data folder {data_dir} is not writable: {exc.strerror or exc}") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EquigenError(
                    f"{data_dir} is in use by {_holder(handle)}: wait for it to finish or stop it "
                    "(one equigen command at a time per data folder)"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "verb": verb,
                    "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "argv": sys.argv[1:8],
                }
            )
        )
        handle.flush()
        yield
    finally:
        handle.close()  # releases the flock


def _open_lock_file(path: Path):
    """Open (or create) the lock file without following a link: a `.equigen.lock` planted as a symlink to someone
    else's file would otherwise be truncated and overwritten with our record. Anything but a regular file is refused."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise EquigenError(f"{path} is a symbolic link, not EquiGen's lock file: remove it and run again") from None
        raise exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise EquigenError(f"{path} is not a regular file (EquiGen's lock file): remove it and run again")
        return os.fdopen(fd, "r+", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def _holder(handle) -> str:
    try:
        handle.seek(0)
        info = json.loads(handle.read(4096) or "{}")
        return (
            f"`equigen {str(info.get('verb', '?'))[:20]}` (pid {int(info.get('pid', 0))} on "
            f"{str(info.get('host', '?'))[:60]}, since {str(info.get('since', '?'))[:20]})"
        )
    except (ValueError, TypeError, OSError):
        return "another equigen command"
