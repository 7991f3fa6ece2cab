"""Content-addressed image files: written whole or not at all, under the name their hash gives."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from equigen.core import storage
from equigen.core.storage import relative_image_path, store_image


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_store_writes_the_bytes_under_their_hash_and_again_is_harmless(tmp_path):
    data = os.urandom(50_000)
    sha = _sha(data)
    rel = store_image(tmp_path, sha, "jpg", data)
    assert rel == relative_image_path(sha, "jpg") == f"images/{sha[:2]}/{sha}.jpg"
    assert (tmp_path / rel).read_bytes() == data
    assert store_image(tmp_path, sha, "jpg", data) == rel  # a duplicate cover: same bytes, same file
    assert (tmp_path / rel).read_bytes() == data
    assert sorted(p.name for p in (tmp_path / rel).parent.iterdir()) == [f"{sha}.jpg"]  # no temporary left


def test_a_partial_file_left_by_a_kill_is_replaced_whole(tmp_path):
    data = os.urandom(10_000)
    sha = _sha(data)
    target = tmp_path / relative_image_path(sha, "png")
    target.parent.mkdir(parents=True)
    target.write_bytes(data[:100])  # what an older, non-atomic writer might have left
    store_image(tmp_path, sha, "png", data)
    assert target.read_bytes() == data


def test_disk_full_mid_write_leaves_neither_the_image_nor_a_temporary(tmp_path, monkeypatch):
    data = os.urandom(200_000)
    sha = _sha(data)
    real_write = os.write
    calls = []

    def write_then_fill_the_disk(fd, buf):
        calls.append(len(buf))
        if len(calls) == 1:
            return real_write(fd, bytes(buf[:4096]))  # a short write, as the kernel may give
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "write", write_then_fill_the_disk)
    with pytest.raises(OSError, match="No space left"):
        store_image(tmp_path, sha, "jpg", data)
    assert calls[1] == len(data) - 4096  # the short write was continued where it stopped
    folder = tmp_path / "images" / sha[:2]
    assert list(folder.iterdir()) == []
