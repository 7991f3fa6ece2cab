"""Cover validation (bad bodies of every kind) and pHash agreement with imagehash."""

from __future__ import annotations

import io
import struct
import zlib

import imagehash
import numpy as np
import pytest
from PIL import Image

from equigen.core.images import (
    BadImage,
    _clean_jpeg_luma,
    _pillow_luma,
    hamming,
    inspect_image,
    phash_from_luma,
    phash_hex,
)
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


def test_phash_hex_is_imagehash_bit_for_bit_on_covers_of_every_size():
    """Pillow's LANCZOS as a matrix: equal to imagehash on real-looking covers, downscaled and upscaled."""
    world = World.build(WorldConfig(seed=5))
    mbids = [rg.mbid for rg in world.release_groups if rg.art == "ok"][:24]
    for i, mbid in enumerate(mbids):
        image = Image.open(io.BytesIO(world.cover_bytes(mbid, (500, 250, 64, 33)[i % 4])))
        if i % 3 == 0:
            image = image.crop((0, 0, image.width, image.height * 3 // 4))  # not square
        assert phash_hex(image) == str(imagehash.phash(image)), (mbid, image.size)


def test_matrix_resample_is_pillows_lanczos():
    """The validation path's hash (matrix products) on full-size pixels: imagehash's, but for float32 rounding."""
    world = World.build(WorldConfig(seed=5))
    mbids = [rg.mbid for rg in world.release_groups if rg.art == "ok"][:40]
    distances = []
    for i, mbid in enumerate(mbids):
        image = Image.open(io.BytesIO(world.cover_bytes(mbid, (500, 250, 125, 40)[i % 4])))
        ours = phash_from_luma(np.asarray(image.convert("L"), dtype=np.float32))
        distances.append(hamming(f"{ours:016x}", str(imagehash.phash(image))))
    assert np.mean(distances) <= 0.1 and max(distances) <= 2 and distances.count(0) >= 36, distances


def test_clean_jpeg_path_decodes_the_same_pixels_as_pillow():
    """A cover's hash must not depend on which decoder validated it."""
    for side in (40, 200, 500, 777):
        data = encoded("JPEG", side, quality=85)
        fast = _clean_jpeg_luma(data, 1 << 30, 32)
        assert fast is not None
        luma, width, height = fast
        slow, w2, h2, fmt = _pillow_luma(data, 1 << 30, 32)
        assert (width, height, w2, h2, fmt) == (side, side, side, side, "JPEG")
        assert np.array_equal(luma, slow) and min(luma.shape) >= min(64, side)
    # progressive (web-optimised) and grayscale JPEGs, both on the Cover Art Archive, take the same path
    gray = io.BytesIO()
    Image.open(io.BytesIO(encoded("PNG", 300))).convert("L").save(gray, "JPEG")
    for data in (encoded("JPEG", 300, progressive=True), gray.getvalue()):
        fast = _clean_jpeg_luma(data, 1 << 30, 32)
        assert fast is not None and np.array_equal(fast[0], _pillow_luma(data, 1 << 30, 32)[0])


def test_jpeg_that_libjpeg_warns_about_is_judged_by_pillow():
    """Stray bytes between segments: libjpeg warns (the fast path declines), Pillow decodes it, as before."""
    data = encoded("JPEG", 200)
    sos = data.index(b"\xff\xda")
    warned = data[:sos] + b"\x00\x00\x00" + data[sos:]
    assert _clean_jpeg_luma(warned, 1 << 30, 32) is None
    info = inspect_image(warned)
    assert (info.format, info.width) == ("JPEG", 200)
    assert info.phash == inspect_image(data).phash


def test_cmyk_jpeg_and_mpo_are_accepted_as_jpeg():
    rgb = Image.open(io.BytesIO(encoded("PNG", 120))).convert("RGB")
    buf = io.BytesIO()
    rgb.convert("CMYK").save(buf, "JPEG")
    assert inspect_image(buf.getvalue()).format == "JPEG"
    mpo = io.BytesIO()
    rgb.save(mpo, "MPO", save_all=True, append_images=[rgb.rotate(90)])
    info = inspect_image(mpo.getvalue())
    assert (info.format, info.ext) == ("JPEG", "jpg")
    assert Image.open(io.BytesIO(mpo.getvalue())).format == "MPO"


def test_truncated_jpeg_fails_at_any_cut():
    data = encoded("JPEG", 300, quality=90)
    for cut in (0.3, 0.6, 0.9, 0.99):
        with pytest.raises(BadImage, match="cannot decode"):
            inspect_image(data[: int(len(data) * cut)])


def test_agrees_with_imagehash_on_simulator_covers():
    world = World.build(WorldConfig(seed=3))
    mbids = [rg.mbid for rg in world.release_groups if rg.art == "ok"][:60:2]
    distances = []
    for mbid in mbids:
        data = world.cover_bytes(mbid, 500)
        ours = inspect_image(data).phash
        distances.append(hamming(ours, str(imagehash.phash(Image.open(io.BytesIO(data))))))
    assert np.mean(distances) <= 2 and max(distances) <= 6


def test_any_decoder_error_is_a_bad_image(monkeypatch):
    """Crafted files reach corners of Pillow's parsers that raise struct.error, IndexError...: a bad image."""
    import struct as struct_module

    def broken_load(self):
        raise struct_module.error("unpack requires a buffer of 4 bytes")

    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken_load)
    with pytest.raises(BadImage, match="cannot decode: error: unpack"):
        inspect_image(encoded("PNG", 100))
