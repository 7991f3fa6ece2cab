"""Cover validation (bad bodies of every kind) and pHash agreement with imagehash."""

from __future__ import annotations

import io
import struct
import zlib

import imagehash
import numpy as np
import pytest
from PIL import Image

from equigen.images import BadImage, hamming, inspect_image, phash_hex
from equigen.simulator import World, WorldConfig


def encoded(fmt: str, side: int = 200, **kw) -> bytes:
    rng = np.random.default_rng(side)
    pixels = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR declares width x height (a decompression-bomb header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png")])
def test_valid_images(fmt, ext):
    data = encoded(fmt, 200)
    info = inspect_image(data)
    assert (info.width, info.height, info.format, info.ext) == (200, 200, fmt, ext)
    assert len(info.phash) == 16 and len(info.sha256) == 64
    assert hamming(info.phash, str(imagehash.phash(Image.open(io.BytesIO(data))))) <= 4


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><body>503 Service Unavailable</body></html>", "HTML"),
        (b"  <html><head></head></html>", "HTML"),
        (png_claiming(30000, 30000), "decompression bomb"),
        (encoded("JPEG", 20), "smaller than the minimum side"),
        (b"\x00\x01garbage" * 50, "cannot decode"),
    ],
)
def test_bad_bodies(body, reason):
    with pytest.raises(BadImage, match=reason):
        inspect_image(body)


def test_truncated_jpeg():
    data = encoded("JPEG", 400, quality=90)
    with pytest.raises(BadImage, match="cannot decode"):
        inspect_image(data[: len(data) * 2 // 5])


def test_bomb_under_pillow_limit_but_over_our_cap():
    with pytest.raises(BadImage, match="pixel cap"):
        inspect_image(png_claiming(5000, 5000), max_pixels=1_000_000)


def test_phash_hex_is_imagehash():
    image = Image.open(io.BytesIO(encoded("PNG", 300)))
    assert phash_hex(image) == str(imagehash.phash(image))


def test_agrees_with_imagehash_on_simulator_covers():
    world = World.build(WorldConfig(seed=3))
    mbids = [rg.mbid for rg in world.release_groups if rg.art == "ok"][:60:2]
    distances = []
    for mbid in mbids:
        data = world.cover_bytes(mbid, 500)
        ours = inspect_image(data).phash
        distances.append(hamming(ours, str(imagehash.phash(Image.open(io.BytesIO(data))))))
    assert np.mean(distances) <= 2 and max(distances) <= 6
