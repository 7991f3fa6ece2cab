"""Files written atomically: content-addressed images (images/<sha256[:2]>/<sha256>.<ext>), reports,
shards and checkpoints. A kill never leaves a partial file under its final name."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from equigen.core.errors import EquigenError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_part_numbers = itertools.count()  # with the pid: a temporary name no other writer uses


def relative_image_path(sha256: str, ext: str) -> str:
    return f"images/{sha256[:2]}/{sha256}.{ext}"


def store_image(data_dir: Path, sha256: str, ext: str, data: bytes) -> str:
    """Write the bytes under their hash; return the path relative to the data folder.

    Written to a temporary file and renamed, so a kill never leaves a partial image under the final name.
    The hot path of every download: raw os calls, no exists/stat check (the same bytes written twice make
    the same file), the fan-out folder made on the first miss, the mode from the umask (os.open applies it).
    """
    rel = relative_image_path(sha256, ext)
    target = os.path.join(data_dir, rel)
    tmp = os.path.join(os.path.dirname(target), f".{sha256}.{os.getpid()}-{next(_part_numbers)}.part")
    try:
        fd = os.open(tmp, _NEW_FILE, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        fd = os.open(tmp, _NEW_FILE, 0o666)
    try:
        with memoryview(data) as view:
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return rel


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` (mode from the umask),
    on any error it is removed and `path` keeps its previous content."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; shared lab folders want the umask's choice
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write bytes (or UTF-8 text) to `path` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def ensure_writable(data_dir: Path) -> None:
    """Fail early, with one line, when the data folder cannot be written."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=data_dir, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EquigenError(f"data folder {data_dir} is not writable: {exc.strerror or exc}") from None
