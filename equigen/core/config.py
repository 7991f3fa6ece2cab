"""Settings: flags, then environment (EQUIGEN_*), then defaults."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlparse

from equigen import __version__
from equigen.core.errors import EquigenError, check_number

DEFAULT_MUSICBRAINZ_URL = "https://musicbrainz.org"
DEFAULT_COVERART_URL = "https://coverartarchive.org"
THUMBNAIL_SIZES = (250, 500, 1200)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./equigen-data")
    musicbrainz_url: str = DEFAULT_MUSICBRAINZ_URL
    coverart_url: str = DEFAULT_COVERART_URL
    contact: str | None = None
    concurrency: int = 32  # simultaneous cover downloads
    per_host: int = 32  # simultaneous connections to one host
    thumbnail: int = 500  # Cover Art Archive thumbnail size
    mb_interval: float = 1.0  # seconds between MusicBrainz requests (their rule: 1/s)
    max_bytes: int = 10_000_000  # download cap per cover
    max_pixels: int = 40_000_000  # decompression-bomb guard
    min_side: int = 32  # smaller images are bad_image
    max_attempts: int = 4  # per cover per run, for 5xx / timeouts / resets
    timeout: float = 30.0  # seconds per HTTP request
    taxonomy_path: Path | None = None

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.sqlite"

    @property
    def dataset_dir(self) -> Path:
        return self.data_dir / "dataset"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def user_agent(self) -> str:
        contact = self.contact or "no contact given"
        return f"equigen/{__version__} ( {contact} )"

    def validated(self) -> Settings:
        """Checks that do not touch the network or the disk."""
        for name in ("musicbrainz_url", "coverart_url"):
            url = getattr(self, name)
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise EquigenError(f"--{name.replace('_', '-')} must be an http(s) URL, got {url!r}")
        if self.thumbnail not in THUMBNAIL_SIZES:
            raise EquigenError(f"--thumbnail must be one of {THUMBNAIL_SIZES}, got {self.thumbnail}")
        check_number("--concurrency", self.concurrency, 1, 4096, integer=True)
        check_number("per-host connections (EQUIGEN_PER_HOST)", self.per_host, 1, 4096, integer=True)
        check_number("--mb-interval", self.mb_interval, 0.0, 60.0)
        check_number("EQUIGEN_TIMEOUT", self.timeout, 0.1, 3600.0)
        check_number("EQUIGEN_MAX_BYTES", self.max_bytes, 1024, 1 << 31, integer=True)
        check_number("EQUIGEN_MAX_PIXELS", self.max_pixels, 1024, 1 << 31, integer=True)
        check_number("EQUIGEN_MIN_SIDE", self.min_side, 1, 10_000, integer=True)
        check_number("EQUIGEN_MAX_ATTEMPTS", self.max_attempts, 1, 100, integer=True)
        if self.contact and not re.fullmatch(r"[^\s()]+", self.contact):
            raise EquigenError(f"--contact must be an e-mail address or URL without spaces, got {self.contact!r}")
        return self

    def for_musicbrainz(self) -> Settings:
        """Extra checks for commands that talk to MusicBrainz (their rules for non-local clients)."""
        mb_host = urlparse(self.musicbrainz_url).hostname
        if mb_host not in LOOPBACK_HOSTS and not self.contact:
            raise EquigenError(
                "--contact (or EQUIGEN_CONTACT) is required for a non-local MusicBrainz: "
                "their rules ask for a User-Agent with an e-mail or URL"
            )
        if mb_host not in LOOPBACK_HOSTS and self.mb_interval < 1.0:
            raise EquigenError("--mb-interval below 1.0 s is only allowed against a local mirror")
        return self


PATH_FIELDS = ("data_dir", "taxonomy_path")


def _coerce(value: str, like):
    if isinstance(like, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    return value


def load_settings(**flags) -> Settings:
    """Build Settings: explicit (non-None) flags win, then EQUIGEN_<NAME> variables, then defaults."""
    base = Settings()
    values = {}
    for f in fields(Settings):
        flag = flags.get(f.name)
        if flag is not None:
            values[f.name] = Path(flag) if f.name in PATH_FIELDS else flag
            continue
        env = os.environ.get(f"EQUIGEN_{f.name.upper()}")
        if env is not None and env != "":
            default = getattr(base, f.name)
            try:
                values[f.name] = Path(env) if f.name in PATH_FIELDS else _coerce(env, default)
            except ValueError:
                raise EquigenError(
                    f"environment variable EQUIGEN_{f.name.upper()}={env!r} is not a valid value"
                ) from None
    unknown = set(flags) - {f.name for f in fields(Settings)}
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    return replace(base, **values).validated()
