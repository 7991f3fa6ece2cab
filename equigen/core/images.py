"""Decode and validate cover bytes, and their 64-bit perceptual hash (pure functions on bytes).

The hash is imagehash.phash's definition (grayscale, LANCZOS to 32x32, 2-D DCT, top-left 8x8 > median). On
the validation path it is written as matrix products: Pillow's LANCZOS resample is linear, so each axis is one
precomputed matrix, and so is the DCT (benchmarks/bench_phash.py measures speed and distance to imagehash).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import simplejpeg
from PIL import Image

# MPO is a JPEG with extra frames after the first (phone and camera pictures); it is stored as a JPEG.
FORMAT_EXT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
STORED_FORMAT = {"MPO": "JPEG"}
HASH_SIDE = 32  # imagehash.phash: hash_size 8 x highfreq_factor 4
# JPEGs decode at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both sides >= 64 px: every coefficient is
# still entropy-decoded (truncation is caught), the full-size IDCT and colour conversion are skipped.
# 1/4 of a 500 px cover (125 px) is 0.06 bits from imagehash on average; 1/8 (63 px) is 1.9 bits.
DECODE_MIN_SIDE = 64
JPEG_MAGIC = b"\xff\xd8\xff"


class BadImage(ValueError):
    """The bytes are not a usable cover image (the reason is the message)."""


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    phash: str  # 16 hex digits
    width: int
    height: int
    format: str  # PIL format name, e.g. "JPEG"
    ext: str  # file extension for storage


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)


@lru_cache(maxsize=256)
def lanczos_matrix(n_in: int, n_out: int = HASH_SIDE) -> np.ndarray:
    """Pillow's LANCZOS resample of one axis, n_in -> n_out samples, as an (n_out, n_in) matrix: the support,
    centres and normalisation of its Resample.c precompute_coeffs, and its 22-bit fixed-point weights."""
    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = 3.0 * filter_scale
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        weights = _lanczos((np.arange(lo, hi) - center + 0.5) / filter_scale)
        matrix[i, lo:hi] = weights / weights.sum()
    matrix = np.trunc(matrix * (1 << 22) + np.copysign(0.5, matrix)) / (1 << 22)
    matrix.setflags(write=False)
    return matrix


@lru_cache(maxsize=256)
def _lanczos_matrix32(n_in: int) -> np.ndarray:
    # float32 halves the matmul; the 22-bit weights are exact in it
    matrix = lanczos_matrix(n_in).astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def _dct_rows(n: int = HASH_SIDE, keep: int = 8) -> np.ndarray:
    """The first `keep` rows of the unnormalised DCT-II (scipy's dct type 2): scaling cannot move a median."""
    k, x = np.arange(keep)[:, None], np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * x + 1) / (2 * n))


DCT8 = _dct_rows()


def _phash_of_32(small: np.ndarray) -> int:
    """imagehash's last steps on the 32x32 image: 2-D DCT, top-left 8x8, each coefficient > their median."""
    coeffs = (DCT8 @ small @ DCT8.T).ravel()
    low, high = np.partition(coeffs, (31, 32))[31:33]  # np.median of 64 values, without its overhead
    return int.from_bytes(np.packbits(coeffs > (low + high) / 2).tobytes(), "big")


def phash_from_luma(luma: np.ndarray) -> int:
    """imagehash.phash of a grayscale (h, w) float32 array of 0..255 values, resized by two matrix products as
    Pillow's LANCZOS does it (horizontal pass rounded to 8 bits, then the vertical pass rounded again). On
    draft-scale covers (~125 px) ~4x cheaper than Pillow's resize; a float32 sum may land a resampled pixel
    on the other side of a rounding edge, rarely moving one bit."""
    h, w = luma.shape
    rows = _round_to_8_bits(luma @ _lanczos_matrix32(w).T)
    small = _round_to_8_bits(_lanczos_matrix32(h) @ rows)
    return _phash_of_32(small.astype(np.float64))


def _round_to_8_bits(x: np.ndarray) -> np.ndarray:
    """Pillow's rounding of a resampled value to a pixel: halves up, clamped to 0..255 (in place: this is
    the validation path of every download)."""
    np.add(x, 0.5, out=x)
    np.floor(x, out=x)
    np.maximum(x, 0, out=x)
    return np.minimum(x, 255, out=x)


def phash_hex(image: Image.Image) -> str:
    """64-bit pHash as 16 hex digits, bit for bit imagehash.phash(image) (tests/test_images.py), with
    Pillow's own resize: at full size it beats a dense matrix."""
    small = image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    return f"{_phash_of_32(np.asarray(small, dtype=np.float64)):016x}"


def draft_scale(width: int, height: int) -> int:
    """The DCT scale-down (1, 2, 4 or 8) Pillow's JpegImageFile.draft picks for DECODE_MIN_SIDE: the fast path
    asks libjpeg-turbo for the same, so both decoders give the same pixels and the same hash."""
    ratio = min(width, height) // DECODE_MIN_SIDE
    return next((s for s in (8, 4, 2) if ratio >= s), 1)


def _check_size(width: int, height: int, max_pixels: int, min_side: int, max_side: int | None = None) -> None:
    """From the header, before a pixel is decoded (a 6300 x 6300 PNG under the pixel cap decodes to 687 MB)."""
    if width * height > max_pixels:
        raise BadImage(f"{width}x{height} exceeds the pixel cap of {max_pixels}")
    if max_side is not None and max(width, height) > max_side:
        raise BadImage(f"{width}x{height} is far larger than the thumbnail asked for")
    if min(width, height) < min_side:
        raise BadImage(f"{width}x{height} is smaller than the minimum side {min_side}")


def _clean_jpeg_luma(
    data: bytes, max_pixels: int, min_side: int, max_side: int | None = None
) -> tuple[np.ndarray, int, int] | None:
    """(luma, width, height) of a JPEG that libjpeg-turbo decodes without a single warning; None for
    anything else (truncated, corrupt, CMYK, not a JPEG), which Pillow then judges (_pillow_luma)."""
    if not data.startswith(JPEG_MAGIC):
        return None
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    _check_size(width, height, max_pixels, min_side, max_side)  # before any pixel is decoded
    scale = draft_scale(width, height)
    try:
        luma = simplejpeg.decode_jpeg(
            data, "GRAY", min_height=-(-height // scale), min_width=-(-width // scale), strict=True
        )
    except ValueError:  # strict: libjpeg warnings (premature end, corrupt data) are errors here
        return None
    return luma[:, :, 0].astype(np.float32), width, height


def _pillow_luma(
    data: bytes, max_pixels: int, min_side: int, max_side: int | None = None
) -> tuple[np.ndarray, int, int, str]:
    """Every format, and the JPEGs the clean path declined: decoded in full by Pillow (a JPEG at draft scale)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            _check_size(width, height, max_pixels, min_side, max_side)
            fmt = image.format or "?"
            if fmt not in FORMAT_EXT:
                raise BadImage(f"unsupported image format {fmt}")
            if fmt in ("JPEG", "MPO"):
                image.draft("L", (DECODE_MIN_SIDE, DECODE_MIN_SIDE))
            image.load()
            luma = np.asarray(image.convert("L"), dtype=np.float32)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImage(f"cannot decode: {exc}") from None
    except Exception as exc:  # crafted files reach corners of Pillow's parsers (struct.error, IndexError, ...)
        raise BadImage(f"cannot decode: {type(exc).__name__}: {exc}") from None
    return luma, width, height, STORED_FORMAT.get(fmt, fmt)


def inspect_image(
    data: bytes, max_pixels: int = 40_000_000, min_side: int = 32, max_side: int | None = None
) -> ImageInfo:
    """Validate cover bytes (every coefficient or pixel decoded) and hash them; raise BadImage with the reason.

    Sizes are judged from the header before decoding: over max_pixels, a side under min_side or over max_side
    (a cover far larger than the thumbnail asked for) is refused without decoding a pixel.

    Clean JPEGs (nearly every cover) take libjpeg-turbo's direct path (simplejpeg); anything it warns
    about goes to Pillow, whose verdict stands (a truncated file fails, a stray byte does not)."""
    if not data:
        raise BadImage("empty body")
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"{")):
        raise BadImage("body is HTML/text, not an image")
    clean = _clean_jpeg_luma(data, max_pixels, min_side, max_side)
    if clean is not None:
        luma, width, height = clean
        fmt = "JPEG"
    else:
        luma, width, height, fmt = _pillow_luma(data, max_pixels, min_side, max_side)
    return ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        phash=f"{phash_from_luma(luma):016x}",
        width=width,
        height=height,
        format=fmt,
        ext=FORMAT_EXT[fmt],
    )


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
