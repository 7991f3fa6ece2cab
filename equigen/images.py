"""Decode and validate cover bytes, and their 64-bit perceptual hash (pure functions on bytes)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.fft import dct

FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}


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


def phash_from_gray32(pixels: np.ndarray) -> int:
    """imagehash.phash's definition on a 32x32 grayscale array: 2-D DCT, top-left 8x8, > median."""
    coeffs = dct(dct(pixels.astype(np.float64), axis=0), axis=1)[:8, :8]
    bits = (coeffs > np.median(coeffs)).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def phash_hex(image: Image.Image) -> str:
    """64-bit pHash as 16 hex digits, equal to str(imagehash.phash(image))."""
    gray = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    return f"{phash_from_gray32(np.asarray(gray)):016x}"


def inspect_image(data: bytes, max_pixels: int = 40_000_000, min_side: int = 32) -> ImageInfo:
    """Validate cover bytes (fully decoded) and hash them; raise BadImage with the reason."""
    if not data:
        raise BadImage("empty body")
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"{")):
        raise BadImage("body is HTML/text, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise BadImage(f"{width}x{height} exceeds the pixel cap of {max_pixels}")
            if min(width, height) < min_side:
                raise BadImage(f"{width}x{height} is smaller than the minimum side {min_side}")
            fmt = image.format or "?"
            if fmt not in FORMAT_EXT:
                raise BadImage(f"unsupported image format {fmt}")
            if fmt == "JPEG":
                # DCT-domain downscaling: decodes every coefficient (so truncation is caught)
                # at 1/2..1/8 scale, skipping the full-size IDCT, colour conversion and resize.
                # >= 64 px (1/4 of a 500 px cover) keeps the LANCZOS step faithful: on 300 simulator
                # covers the hash is 0.03 bits from imagehash's on average (p99 2); 1/8 scale gives 1.8.
                image.draft("L", (64, 64))
            image.load()
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImage(f"cannot decode: {exc}") from None
    return ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        phash=phash_hex(image),
        width=width,
        height=height,
        format=fmt,
        ext=FORMAT_EXT[fmt],
    )


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
