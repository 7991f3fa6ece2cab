"""Content-addressed image store: images/<sha256[:2]>/<sha256>.<ext>, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from equigen.errors import EquigenError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def relative_image_path(sha256: str, ext: str) -> str:
    return f"images/{sha256[:2]}/{sha256}.{ext}"


def store_image(data_dir: Path, sha256: str, ext: str, data: bytes) -> str:
    """Write the bytes once under their hash; return the path relative to the data folder.

    Written to a temporary file and renamed, so a kill never leaves a partial image under the final name.
    """
    rel = relative_image_path(sha256, ext)
    target = data_dir / rel
    if target.exists() and target.stat().st_size == len(data):
        return rel
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; shared lab folders want the umask's choice
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rel


def ensure_writable(data_dir: Path) -> None:
    """Fail early, with one line, when the data folder cannot be written."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=data_dir, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EquigenError(f"data folder {data_dir} is not writable: {exc.strerror or exc}") from None
