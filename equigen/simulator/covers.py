"""Procedural album covers whose look correlates with genre (numpy + PIL, vectorised).

Every cover is drawn at a canonical resolution from its own seed and then resized, so the
250/500/1200 thumbnails of one cover are the same picture. Genre shows in palette, motif,
contrast and grain; artist hue shifts, random parameters, "off-genre" styles and a per-cover
low-frequency light field keep the task learnable but not trivial and every cover distinct.
"""

from __future__ import annotations

import colorsys
import io
import math
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

CANONICAL = 250  # drawing resolution: the 250 px thumbnail as is, 500 px by pixel doubling (fast)


@dataclass(frozen=True)
class GenreStyle:
    hue: float  # degrees
    hue_spread: float  # degrees of per-cover jitter
    sat: float
    val: float
    contrast: float  # spread of the palette's values
    grain: float  # std of per-pixel noise
    motifs: tuple[str, str]  # primary, secondary


MOTIFS = (
    "circles",
    "stripes",
    "grid",
    "noise",
    "gradient",
    "blobs",
    "diagonal",
    "textblocks",
    "rays",
    "dots",
    "checker",
    "waves",
)

# Keyed by the genre names of the default taxonomy; unknown genres get a style derived from their index.
GENRE_STYLES: dict[str, GenreStyle] = {
    "Blues": GenreStyle(215, 15, 0.55, 0.40, 0.6, 0.03, ("waves", "gradient")),
    "Classical": GenreStyle(40, 10, 0.25, 0.75, 0.35, 0.01, ("gradient", "textblocks")),
    "Country": GenreStyle(28, 12, 0.55, 0.60, 0.5, 0.04, ("stripes", "rays")),
    "Electronic": GenreStyle(285, 60, 0.90, 0.65, 0.9, 0.01, ("grid", "diagonal")),
    "Folk": GenreStyle(95, 20, 0.40, 0.55, 0.4, 0.04, ("blobs", "noise")),
    "Jazz": GenreStyle(195, 25, 0.50, 0.40, 0.7, 0.02, ("textblocks", "circles")),
    "Latin": GenreStyle(10, 20, 0.85, 0.80, 0.7, 0.02, ("rays", "dots")),
    "Metal": GenreStyle(0, 10, 0.30, 0.20, 1.0, 0.08, ("noise", "rays")),
    "New Age": GenreStyle(255, 25, 0.30, 0.85, 0.3, 0.0, ("circles", "blobs")),
    "Pop": GenreStyle(330, 25, 0.65, 0.85, 0.6, 0.01, ("dots", "blobs")),
    "Punk": GenreStyle(55, 20, 0.85, 0.60, 1.0, 0.06, ("diagonal", "checker")),
    "Rap (hip hop)": GenreStyle(45, 15, 0.60, 0.30, 0.8, 0.03, ("checker", "textblocks")),
    "R&B": GenreStyle(300, 20, 0.50, 0.45, 0.5, 0.02, ("gradient", "waves")),
    "Reggae": GenreStyle(120, 50, 0.85, 0.60, 0.7, 0.03, ("stripes", "circles")),
    "Rock": GenreStyle(15, 30, 0.45, 0.45, 0.7, 0.05, ("circles", "stripes")),
}


def style_for(genre: str, index: int) -> GenreStyle:
    if genre in GENRE_STYLES:
        return GENRE_STYLES[genre]
    return GenreStyle(
        (index * 67) % 360, 20, 0.6, 0.5, 0.6, 0.03, (MOTIFS[index % len(MOTIFS)], MOTIFS[(index + 5) % len(MOTIFS)])
    )


@dataclass(frozen=True)
class CoverSpec:
    """Everything needed to draw one cover; drawn identically from the same spec."""

    seed: int
    style: GenreStyle
    motif: str
    hue_shift: float


@lru_cache(maxsize=4)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    axis = (np.arange(n, dtype=np.float32) + 0.5) / n
    return axis[None, :].repeat(n, 0), axis[:, None].repeat(n, 1)


def _square(v: np.ndarray, sharp: float = 8.0) -> np.ndarray:
    """A softened square wave in [0, 1] from a sine phase."""
    return 0.5 + 0.5 * np.tanh(sharp * np.sin(v))


def _smooth_noise(rng: np.random.Generator, cells: int, n: int) -> np.ndarray:
    small = rng.random((cells, cells), dtype=np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((n, n), Image.BICUBIC))


def _motif(name: str, rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A float32 field in about [0, 1]; parameters are Python floats so nothing upcasts to float64."""

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    tau = 2 * math.pi
    if name == "circles":
        r = np.hypot(x - u(0.2, 0.8), y - u(0.2, 0.8))
        return 0.5 + 0.5 * np.sin(tau * u(3, 10) * r + u(0, tau))
    if name == "stripes":
        theta = (0.0 if rng.random() < 0.5 else math.pi / 2) + u(-0.15, 0.15)
        return _square(tau * u(3, 9) * (x * math.cos(theta) + y * math.sin(theta)) + u(0, tau))
    if name == "grid":
        f, w = u(4, 12), u(0.08, 0.25)
        return np.where(((x * f) % 1 < w) | ((y * f) % 1 < w), np.float32(1.0), np.float32(0.15))
    if name == "noise":
        return _smooth_noise(rng, int(rng.integers(12, 40)), x.shape[0])
    if name == "gradient":
        theta = u(0, tau)
        g = x * math.cos(theta) + y * math.sin(theta)
        g -= g.min()
        return (g / (g.max() + 1e-6)) ** u(0.6, 1.8)
    if name == "blobs":
        field = np.zeros_like(x)
        for _ in range(int(rng.integers(3, 8))):
            cx, cy, s = u(0, 1), u(0, 1), u(0.05, 0.2)
            field += np.exp((-1 / (2 * s * s)) * ((x - cx) ** 2 + (y - cy) ** 2))
        return field
    if name == "diagonal":
        theta = (math.pi / 4 if rng.random() < 0.5 else 3 * math.pi / 4) + u(-0.2, 0.2)
        return _square(tau * u(2, 7) * (x * math.cos(theta) + y * math.sin(theta)) + u(0, tau), sharp=20.0)
    if name == "textblocks":
        field = np.full_like(x, 0.1)
        n = x.shape[0]
        for _ in range(int(rng.integers(4, 11))):
            x0, y0 = int(u(0.05, 0.8) * n), int(u(0.05, 0.8) * n)
            field[y0 : y0 + int(u(0.02, 0.08) * n), x0 : x0 + int(u(0.1, 0.6) * n)] = u(0.6, 1.0)
        return field
    if name == "rays":
        angle = np.arctan2(y - u(0.3, 0.7), x - u(0.3, 0.7))
        return _square(int(rng.integers(5, 16)) * angle + u(0, tau), sharp=4.0)
    if name == "dots":
        f = u(5, 14)
        return _square(tau * f * x) * _square(tau * f * y + u(0, tau))
    if name == "checker":
        f = u(2, 7)
        return np.where(np.sin(tau * f * x) * np.sin(tau * f * y + u(0, tau)) > 0, np.float32(1), np.float32(0))
    if name == "waves":
        return 0.5 + 0.5 * np.sin(tau * u(3, 8) * y + u(1, 4) * np.sin(tau * u(1, 3) * x))
    raise ValueError(f"unknown motif {name!r}")


def _palette_lut(style: GenreStyle, hue_shift: float, rng: np.random.Generator) -> np.ndarray:
    """A 256-entry RGB ramp through three colours from the genre's palette family."""
    base = style.hue + hue_shift + float(rng.normal(0, style.hue_spread))
    colours = []
    for i in range(3):
        hue = ((base + (i - 1) * float(rng.uniform(10, 40))) % 360) / 360
        sat = float(np.clip(style.sat + rng.normal(0, 0.15), 0, 1))
        val = float(np.clip(style.val + (i - 1) * 0.4 * style.contrast + rng.normal(0, 0.1), 0.03, 1))
        colours.append(colorsys.hsv_to_rgb(hue, sat, val))
    ramp = np.linspace(0, 2, 256)
    return np.stack([np.interp(ramp, (0, 1, 2), [c[k] for c in colours]) for k in range(3)], 1).astype(np.float32)


def draw(spec: CoverSpec, side: int) -> Image.Image:
    """The cover as an RGB PIL image of side x side pixels."""
    rng = np.random.default_rng(spec.seed)
    x, y = _grid(CANONICAL)
    field = _motif(spec.motif, rng, x, y)
    img = _palette_lut(spec.style, spec.hue_shift, rng)[(np.clip(field, 0, 1) * 255).astype(np.uint8)]
    # A strong per-cover light field makes every cover's low frequencies (what pHash sees) unique.
    light = _smooth_noise(rng, 8, CANONICAL)
    light = (light - light.mean()) / (light.std() + 1e-6)
    gain = 1 + 0.4 * light
    if spec.style.grain:
        gain += rng.standard_normal((CANONICAL, CANONICAL), dtype=np.float32) * spec.style.grain
    img = img * gain[..., None] + (0.15 * light)[..., None]
    out = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")
    if side == CANONICAL:
        return out
    # Exact multiples by pixel repetition: several times faster than filtering, and just as smooth after JPEG.
    return out.resize((side, side), Image.NEAREST if side % CANONICAL == 0 else Image.BILINEAR)


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header declares width x height 8-bit grey pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 8, 9)  # a few rows; the header is the point
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>\n"
    b"<body><h1>Service Temporarily Unavailable</h1><p>The item is being processed; "
    b"please try again later.</p></body></html>\n"
)
