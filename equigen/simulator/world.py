"""The seeded synthetic world behind the simulator: artists, release groups, tags, covers and faults.

Tags come from the taxonomy's MusicBrainz genre names with Zipf popularity (a genre's broad names
first), thin votes (mostly 1), spelling variants the taxonomy reads as the same name ("hip-hop",
"Hip Hop", "rnb"), and tags that name no genre ("seen live", "1994"). Cover Art Archive coverage
is set per genre; some genres can be made thin (few artists).

Pure data and rendering (no networking). Everything is a deterministic function of WorldConfig,
so two worlds built from the same config have identical release groups and identical cover bytes.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from PIL import Image, ImageOps

from equigen.core.errors import EquigenError
from equigen.core.mbids import VARIOUS_ARTISTS
from equigen.core.taxonomy import AMBIGUOUS, UNLABELLED, Taxonomy, load_taxonomy, normalize_tag
from equigen.simulator.covers import HTML_ERROR_PAGE, MOTIFS, CoverSpec, bomb_png, draw, encode_jpeg, style_for

BROKEN_KINDS = ("truncated", "html", "oversize", "bomb", "tiny")
TRANSFORMS = ("reencode", "resize", "border", "brightness")
REISSUE_TRANSFORMS = ("reencode", "resize", "border")  # the same art at another quality, size, or with a border
EXCLUDED_SECONDARY = frozenset({"Compilation", "Live", "Soundtrack"})  # what a harvesting client skips
FULL_SIZE = 1200  # the side served for the full-size "front" image
TINY_SIDE = 16

# Real MusicBrainz type ids, so the JSON looks like the service's.
PRIMARY_TYPE_IDS = {
    "Album": "f529b476-6e62-324f-b0aa-1f3e33d313fc",
    "Single": "d6038452-8ee0-3f68-affc-2de9a1ede0b9",
    "EP": "6d0c5bf6-7a33-3420-a519-44fc63eedebf",
}
SECONDARY_TYPE_IDS = {
    "Compilation": "dd2a21e1-0c00-3729-a7a0-de60b84eb5d1",
    "Live": "6fd474e2-6b58-3102-9d17-d6f7eb7da0a0",
    "Soundtrack": "22a628ad-c082-3c4f-b1b6-d41665107b88",
    "Remix": "0c60f497-ff81-3818-befd-abfc84a4858b",
}

# Uneven genre popularity (relative artist counts); genres not listed weigh 1.
DEFAULT_GENRE_WEIGHTS = {
    "Rock": 14,
    "Pop": 11,
    "Electronic": 11,
    "Rap (hip hop)": 8,
    "Metal": 8,
    "Jazz": 7,
    "R&B": 6,
    "Punk": 6,
    "Folk": 5,
    "Country": 5,
    "Classical": 5,
    "Latin": 4,
    "Reggae": 4,
    "Blues": 3,
    "New Age": 3,
}

# Tags real release groups carry that name no genre: places, languages, decades, listening habits.
# Most used first (they are drawn with Zipf weights); years like "1994" are added at build time.
# Any that the taxonomy or MusicBrainz's genre list knows is dropped when a world is built.
NOISE_TAGS = (
    "english",
    "seen live",
    "british",
    "american",
    "1990s",
    "2000s",
    "favorites",
    "1980s",
    "female vocalists",
    "male vocalists",
    "german",
    "offizielle charts",
    "1970s",
    "japanese",
    "usa",
    "uk",
    "90s",
    "80s",
    "2010s",
    "french",
    "swedish",
    "canadian",
    "favourite albums",
    "albums i own",
    "vinyl",
    "cover art",
    "beautiful",
    "awesome",
    "under 2000 listeners",
    "live recording",
    "deutsch",
    "español",
    "owned",
    "to listen",
    "1960s",
    "australian",
    "norwegian",
    "finnish",
    "italian",
    "love",
)
MUSICBRAINZ_GENRES_FILE = "data/musicbrainz-genres.txt"

_ADJ = (
    "Silent",
    "Electric",
    "Golden",
    "Broken",
    "Crimson",
    "Hollow",
    "Velvet",
    "Neon",
    "Wild",
    "Frozen",
    "Lonely",
    "Burning",
    "Distant",
    "Quiet",
    "Savage",
    "Lucky",
    "Midnight",
    "Paper",
    "Iron",
    "Blue",
    "Northern",
    "Secret",
    "Sleepy",
    "Restless",
    "Shining",
    "Tender",
    "Bitter",
    "Cosmic",
    "Little",
    "Final",
)
_NOUN = (
    "River",
    "Mirror",
    "Engine",
    "Garden",
    "Shadow",
    "Harbor",
    "Echo",
    "Satellite",
    "Lantern",
    "Valley",
    "Signal",
    "Horizon",
    "Window",
    "Machine",
    "Ocean",
    "Forest",
    "Ghost",
    "Parade",
    "Empire",
    "Tide",
    "Circle",
    "Kingdom",
    "Highway",
    "Season",
    "Thunder",
    "Canyon",
    "Harvest",
    "Orchard",
    "Comet",
    "Station",
)
_FIRST = (
    "Ada",
    "Ben",
    "Clara",
    "Dmitri",
    "Elena",
    "Felix",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kemi",
    "Luis",
    "Maya",
    "Nils",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Samir",
    "Tove",
    "Uma",
    "Victor",
    "Wen",
    "Yara",
)
_LAST = (
    "Abara",
    "Becker",
    "Costa",
    "Dahl",
    "Eriksen",
    "Fontaine",
    "Garcia",
    "Hale",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quist",
    "Rossi",
    "Sato",
    "Tanaka",
    "Underwood",
    "Vance",
    "Whitfield",
    "Young",
    "Zimmer",
)


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the synthetic world. The defaults hold enough for `--per-genre 40` in every genre."""

    seed: int = 0
    n_artists: int = 3000
    min_artists_per_genre: int = 110
    rg_per_artist_median: float = 2.5  # lognormal number of release groups per artist (long tail)
    rg_per_artist_sigma: float = 0.9
    max_rg_per_artist: int = 60
    n_various: int = 250  # release groups credited to Various Artists
    various_album_fraction: float = 0.2  # of those, plain albums (the rest are compilations)
    genre_weights: tuple[tuple[str, float], ...] | None = None  # None: DEFAULT_GENRE_WEIGHTS
    ep_fraction: float = 0.13
    single_fraction: float = 0.12
    compilation_fraction: float = 0.06
    live_fraction: float = 0.05
    soundtrack_fraction: float = 0.03
    remix_fraction: float = 0.03
    untagged_fraction: float = 0.05
    second_genre_fraction: float = 0.25
    ambiguous_fraction: float = 0.04  # of all release groups: a second genre within 20 % of the first
    off_genre_fraction: float = 0.03  # a release group in another genre than its artist's
    noise_tag_fraction: float = 0.4  # release groups with 1-2 non-genre tags ("seen live", "1994")
    unmapped_tag_fraction: float = 0.03  # ... with a MusicBrainz genre the taxonomy leaves unmapped
    zipf_s: float = 1.1  # tag popularity within a genre: weight 1/rank**s (broad names first)
    variant_fraction: float = 0.15  # genre tags spelled another way ("hip-hop", "Hip Hop", "rnb")
    off_style_fraction: float = 0.2  # covers drawn in another genre's style
    # Share of release groups with a front cover, per genre: None = spread evenly over
    # `coverage_spread` in a seeded genre order; a float = the same everywhere; or (genre, share) pairs.
    art_coverage: float | tuple[tuple[str, float], ...] | None = None
    coverage_spread: tuple[float, float] = (0.90, 0.45)
    thin_genres: tuple[str, ...] = ()  # genres with only `thin_artists` artists (a harvest falls short)
    thin_artists: int = 12
    broken_fraction: float = 0.002  # per broken kind; at least one of each
    flaky_fraction: float = 0.03
    duplicate_fraction: float = (
        0.05  # of findable release groups: copies, half by the same artist (about 2.5 % reissues)
    )
    # Of findable covers: reissues, remasters, deluxe editions -- separate release groups that re-encode another
    # cover of their genre (the artist's own when it has one), on top of duplicate_fraction. MusicBrainz's release
    # group guideline files such editions under the original's release group, so on the real archive these are the
    # exceptions (unmerged groups); no published share was found. 0 keeps the default world as it was: its
    # duplicate_fraction already makes 3.4 % of its covers copies of a cover of their genre (3.1 % the same
    # artist's; seed 0). The fetch benchmark plants 4 % and 15 % on top.
    reissue_fraction: float = 0.0
    cover_px: int | None = None  # serve every cover at this side (fast tests)
    jpeg_quality: int = 88
    oversize_bytes: int = 12_000_000
    cache_mb: int = 1024  # LRU of encoded cover bytes
    taxonomy_path: str | None = None

    @classmethod
    def small(cls, seed: int = 0, **overrides) -> WorldConfig:
        """A quick world for tests: tens of covers per genre (enough for per-genre ~8), 64 px covers."""
        base = dict(
            seed=seed, n_artists=360, min_artists_per_genre=30, n_various=30, cover_px=64, broken_fraction=0.001
        )
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True)
class Artist:
    mbid: str
    name: str
    sort_name: str
    genre: str
    hue_shift: float
    motif: str


@dataclass(slots=True)
class ReleaseGroup:
    """One release group with its ground truth (genre as resolved by the default taxonomy)."""

    mbid: str
    title: str
    primary_type: str
    secondary_types: tuple[str, ...]
    first_release_date: str | None
    artist: Artist
    tags: tuple[tuple[str, int], ...]
    release_mbid: str
    image_id: int
    genre: str  # resolved label: a genre, "ambiguous" or "unlabelled"
    cover: CoverSpec
    art: str = "ok"  # ok | none | truncated | html | oversize | bomb | tiny
    flaky: bool = False
    duplicate_of: str | None = None
    transform: str | None = None

    @property
    def findable(self) -> bool:
        """Found by a client searching primarytype:album and skipping compilations/live/soundtracks."""
        return self.primary_type == "Album" and not EXCLUDED_SECONDARY.intersection(self.secondary_types)


class _ByteLRU:
    """A thread-safe LRU of bytes bounded by total size (the server thread and prerender share it)."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.size = capacity, 0
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[str, int], value: bytes) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            self.size += len(value) - (len(old) if old is not None else 0)
            self._items[key] = value
            while self.size > self.capacity and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self.size -= len(dropped)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _artist_name(rng: random.Random) -> tuple[str, str]:
    form = rng.random()
    if form < 0.35:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        return f"{first} {last}", f"{last}, {first}"
    if form < 0.6:
        rest = f"{rng.choice(_ADJ)} {rng.choice(_NOUN)}s"
        return f"The {rest}", f"{rest}, The"
    name = f"{rng.choice(_NOUN)} {rng.choice(_NOUN)}" if form < 0.8 else f"{rng.choice(_ADJ)} {rng.choice(_NOUN)}"
    return name, name


def _title(rng: random.Random) -> str:
    form = rng.random()
    if form < 0.4:
        return f"{rng.choice(_ADJ)} {rng.choice(_NOUN)}"
    if form < 0.6:
        return f"The {rng.choice(_NOUN)} of {rng.choice(_NOUN)}s"
    if form < 0.8:
        return rng.choice(_NOUN) + ("s" if rng.random() < 0.5 else "")
    return f"{rng.choice(_NOUN)} {rng.randint(2, 99)}"


def _date(rng: random.Random) -> str | None:
    r, year = rng.random(), rng.randint(1958, 2024)
    if r < 0.05:
        return None
    if r < 0.20:
        return f"{year}"
    if r < 0.30:
        return f"{year}-{rng.randint(1, 12):02d}"
    return f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


@lru_cache(maxsize=1)
def musicbrainz_genre_keys() -> frozenset[str]:
    """normalize_tag of every name in MusicBrainz's genre list (equigen/data/musicbrainz-genres.txt)."""
    text = resources.files("equigen").joinpath(MUSICBRAINZ_GENRES_FILE).read_text(encoding="utf-8")
    return frozenset(normalize_tag(line) for line in text.splitlines() if line.strip())


def _votes(rng: random.Random) -> int:
    """Tag votes as thin as MusicBrainz's: mostly 1, sometimes 2-3, rarely up to 15."""
    r = rng.random()
    if r < 0.64:
        return 1
    if r < 0.82:
        return 2
    if r < 0.90:
        return 3
    return min(15, 4 + int(rng.expovariate(0.35)))


def _zipf(n: int, s: float) -> list[float]:
    """Cumulative weights 1/rank**s for ranks 1..n."""
    return list(itertools.accumulate(1.0 / rank**s for rank in range(1, n + 1)))


def _genre_name(name: str, genres: Sequence[str], what: str) -> str:
    """A genre of the taxonomy named exactly, or case- and spelling-insensitively."""
    if name in genres:
        return name
    for genre in genres:
        if normalize_tag(genre) == normalize_tag(name):
            return genre
    raise EquigenError(f"{what}: {name!r} is not a genre of the taxonomy (genres: {', '.join(genres)})")


def art_coverages(config: WorldConfig, genres: Sequence[str]) -> dict[str, float]:
    """Per genre, the share of release groups with a front cover on the Cover Art Archive."""
    high, low = config.coverage_spread
    order = list(genres)
    random.Random(f"{config.seed}:art-coverage").shuffle(order)
    step = (high - low) / max(1, len(order) - 1)
    coverage = {g: high - i * step for i, g in enumerate(order)}
    given = config.art_coverage
    if isinstance(given, (int, float)) and not isinstance(given, bool):
        coverage = {g: float(given) for g in genres}
    elif given is not None:
        for name, share in dict(given).items():
            coverage[_genre_name(name, genres, "art_coverage")] = float(share)
    for genre, share in coverage.items():
        if not 0.0 <= share <= 1.0:
            raise EquigenError(f"art coverage of {genre!r} must be between 0 and 1, got {share}")
    return {g: round(coverage[g], 6) for g in genres}


class _Vocabulary:
    """The tags a world draws: each genre's MusicBrainz names in a popularity order (Zipf weights),
    their spelling variants, and the non-genre tags."""

    def __init__(self, tax: Taxonomy, seed: int, s: float) -> None:
        self.tax = tax
        self.ranked: dict[str, list[str]] = {}
        self.cum: dict[str, list[float]] = {}
        for genre in tax.genres:
            names = list(tax.tags[genre])
            by_key = {normalize_tag(n): n for n in names}
            head = list(dict.fromkeys(by_key[k] for k in map(normalize_tag, tax.broad_names(genre)) if k in by_key))
            rest = [n for n in names if n not in head]
            random.Random(f"{seed}:{genre}:popularity").shuffle(rest)
            self.ranked[genre] = head + rest  # the first broad name is the most used
            self.cum[genre] = _zipf(len(self.ranked[genre]), s)
        self.aliases_of: dict[str, list[str]] = {}
        for alias, target in tax.aliases.items():
            self.aliases_of.setdefault(target, []).append(alias)
        self._variants: dict[str, list[str]] = {}
        ignored = musicbrainz_genre_keys() | set(tax.aliases) | {normalize_tag(n) for n in tax.unmapped}

        def plain(tag: str) -> bool:
            return tax.genre_of_tag(tag) is None and normalize_tag(tag) not in ignored

        self.noise_words = [t for t in dict.fromkeys(NOISE_TAGS) if plain(t)]
        self.noise_years = [str(y) for y in range(1960, 2025) if plain(str(y))]
        self.noise_cum = _zipf(len(self.noise_words), 1.0)

    @property
    def noise_tags(self) -> tuple[str, ...]:
        return tuple(self.noise_words + self.noise_years)

    def draw(self, rng: random.Random, genre: str, k: int) -> list[str]:
        """k distinct names of `genre`, by popularity."""
        ranked, cum = self.ranked[genre], self.cum[genre]
        chosen: list[str] = []
        while len(chosen) < min(k, len(ranked)):
            name = rng.choices(ranked, cum_weights=cum)[0]
            if name not in chosen:
                chosen.append(name)
        return chosen

    def noise(self, rng: random.Random) -> str | None:
        if self.noise_years and (not self.noise_words or rng.random() < 0.25):
            return rng.choice(self.noise_years)
        return rng.choices(self.noise_words, cum_weights=self.noise_cum)[0] if self.noise_words else None

    def variants(self, name: str) -> list[str]:
        """Other spellings the taxonomy reads as `name`: hyphen/space, case, "&"/"and"/"'n'",
        a trailing " music", and its [aliases] ("rnb" for "r&b")."""
        found = self._variants.get(name)
        if found is not None:
            return found
        key, genre = normalize_tag(name), self.tax.genre_of_tag(name)
        candidates = []
        if "-" in name:
            candidates.append(name.replace("-", " "))
        elif " " in name:
            candidates.append(name.replace(" ", "-"))
        candidates.append(name.title())  # "Hip Hop", "R&B"
        if " and " in name:
            candidates += [name.replace(" and ", " & "), name.replace(" and ", " 'n' ")]
        if "&" in name:
            candidates.append(name.replace(" & ", " and ").replace("&", " and "))
        if " 'n' " in name:
            candidates += [name.replace(" 'n' ", " and "), name.replace(" 'n' ", " & ")]
        if not name.endswith("music"):
            candidates.append(f"{name} music")  # "new age music"
        candidates += self.aliases_of.get(key, [])
        found = []
        for spelling in candidates:
            other = normalize_tag(spelling)
            if (
                spelling != name
                and spelling not in found
                and (other == key or self.tax.aliases.get(other) == key)
                and self.tax.genre_of_tag(spelling) == genre
            ):
                found.append(spelling)
        self._variants[name] = found
        return found


class World:
    """The synthetic MusicBrainz + Cover Art Archive catalogue; build with World.build(config)."""

    def __init__(
        self,
        config: WorldConfig,
        taxonomy: Taxonomy,
        artists: list[Artist],
        release_groups: list[ReleaseGroup],
        coverage: dict[str, float] | None = None,
        noise_tags: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.taxonomy = taxonomy
        self.artists = artists
        self.release_groups = release_groups
        self.coverage = coverage if coverage is not None else art_coverages(config, taxonomy.genres)
        self.noise_tags = tuple(noise_tags)  # the non-genre tags this world may emit
        self.by_mbid = {rg.mbid: rg for rg in release_groups}
        self.by_release = {rg.release_mbid: rg for rg in release_groups}
        self._cache = _ByteLRU(config.cache_mb * 1024 * 1024)

    # ---- building -------------------------------------------------------------------------------

    @classmethod
    def build(cls, config: WorldConfig | None = None) -> World:
        config = config or WorldConfig()
        tax = load_taxonomy(config.taxonomy_path)
        rng = random.Random(config.seed)
        genres = list(tax.genres)
        weights_map = dict(config.genre_weights) if config.genre_weights else DEFAULT_GENRE_WEIGHTS
        weights = [float(weights_map.get(g, 1.0)) for g in genres]
        styles = {g: style_for(g, i) for i, g in enumerate(genres)}
        thin = {_genre_name(g, genres, "thin_genres") for g in config.thin_genres}
        coverage = art_coverages(config, genres)
        vocab = _Vocabulary(tax, config.seed, config.zipf_s)
        # Other artists' records and Various Artists compilations stay out of thin genres.
        spread = [0.0 if g in thin else w for g, w in zip(genres, weights)]
        spread = spread if any(spread) else weights

        # Exact per-genre artist quotas so even the smallest genre has enough distinct artists.
        total_w = sum(weights)
        slots = [
            g
            for g, w in zip(genres, weights)
            for _ in range(
                config.thin_artists
                if g in thin
                else max(config.min_artists_per_genre, round(w / total_w * config.n_artists))
            )
        ]
        rng.shuffle(slots)

        artists: list[Artist] = []
        rgs: list[ReleaseGroup] = []
        home: dict[str, str] = {}  # release group -> the genre its tags were drawn for

        def make_rg(artist: Artist, tag_genre: str, primary: str, secondary: tuple[str, ...]) -> ReleaseGroup:
            tags = cls._tags(rng, config, tax, vocab, genres, weights, tag_genre)
            style_genre = rng.choice(genres) if rng.random() < config.off_style_fraction else tag_genre
            style = styles[style_genre]
            r = rng.random()
            motif = (
                artist.motif
                if r < 0.5 and style_genre == artist.genre
                else style.motifs[0]
                if r < 0.75
                else style.motifs[1]
                if r < 0.87
                else rng.choice(MOTIFS)
            )
            spec = CoverSpec(
                rng.getrandbits(63), style, motif, artist.hue_shift if style_genre == artist.genre else 0.0
            )
            rg = ReleaseGroup(
                mbid=_uuid(rng),
                title=_title(rng),
                primary_type=primary,
                secondary_types=secondary,
                first_release_date=_date(rng),
                artist=artist,
                tags=tags,
                release_mbid=_uuid(rng),
                image_id=rng.randrange(10**9, 4 * 10**10),
                genre=tax.resolve(tags),
                cover=spec,
            )
            home[rg.mbid] = tag_genre
            return rg

        mu = math.log(config.rg_per_artist_median)
        for genre in slots:
            name, sort_name = _artist_name(rng)
            style = styles[genre]
            artist = Artist(
                _uuid(rng),
                name,
                sort_name,
                genre,
                rng.gauss(0, 12),
                style.motifs[0] if rng.random() < 0.6 else style.motifs[1],
            )
            artists.append(artist)
            n = min(config.max_rg_per_artist, max(1, round(rng.lognormvariate(mu, config.rg_per_artist_sigma))))
            for _ in range(n):
                r = rng.random()
                primary = (
                    "EP"
                    if r < config.ep_fraction
                    else ("Single" if r < config.ep_fraction + config.single_fraction else "Album")
                )
                r = rng.random()
                secondary: tuple[str, ...] = ()
                for kind, frac in (
                    ("Compilation", config.compilation_fraction),
                    ("Live", config.live_fraction),
                    ("Soundtrack", config.soundtrack_fraction),
                    ("Remix", config.remix_fraction),
                ):
                    if r < frac:
                        secondary = (kind,)
                        break
                    r -= frac
                tag_genre = rng.choices(genres, spread)[0] if rng.random() < config.off_genre_fraction else genre
                rgs.append(make_rg(artist, tag_genre, primary, secondary))

        various = Artist(VARIOUS_ARTISTS, "Various Artists", "Various Artists", "", 0.0, "blobs")
        artists.append(various)
        for _ in range(config.n_various):
            secondary = () if rng.random() < config.various_album_fraction else ("Compilation",)
            rgs.append(make_rg(various, rng.choices(genres, spread)[0], "Album", secondary))

        cls._plant_faults(rng, config, genres, rgs, coverage, home)
        return cls(config, tax, artists, rgs, coverage, vocab.noise_tags)

    @staticmethod
    def _tags(
        rng: random.Random,
        config: WorldConfig,
        tax: Taxonomy,
        vocab: _Vocabulary,
        genres: list[str],
        weights: list[float],
        genre: str,
    ) -> tuple[tuple[str, int], ...]:
        """Thin, Zipf-distributed tags: 1-4 names of `genre`, maybe a second genre's name (clearly
        secondary, or within the ambiguity ratio for `ambiguous_fraction`), spelling variants, and
        tags that weigh nothing (an unmapped MusicBrainz genre, "seen live", "1994")."""
        if rng.random() < config.untagged_fraction:
            return ()
        chosen = vocab.draw(rng, genre, rng.choices((1, 2, 3, 4), (0.45, 0.3, 0.17, 0.08))[0])
        votes = [_votes(rng) for _ in chosen]
        tags = dict(zip(chosen, votes))
        if config.second_genre_fraction and rng.random() < config.second_genre_fraction:
            ratio = tax.ambiguity_ratio
            other = rng.choices([g for g in genres if g != genre], [w for g, w in zip(genres, weights) if g != genre])[
                0
            ]
            home = sum(votes)
            if rng.random() < config.ambiguous_fraction / config.second_genre_fraction:
                second = rng.randint(math.ceil(ratio * home), home)  # often a 1-vote tie
            else:
                second = _votes(rng)
                if second >= ratio * home:  # keep it clearly secondary: give the home genre more votes
                    tags[chosen[0]] += math.floor(second / ratio) + 1 - home
            tags[vocab.draw(rng, other, 1)[0]] = second
        if config.variant_fraction:
            spelled: dict[str, int] = {}
            for name, n in tags.items():
                options = vocab.variants(name) if rng.random() < config.variant_fraction else []
                spelling = rng.choice(options) if options else name
                spelled[name if spelling in tags or spelling in spelled else spelling] = n
            tags = spelled
        if tax.unmapped and rng.random() < config.unmapped_tag_fraction:
            tags.setdefault(rng.choice(tax.unmapped), _votes(rng))
        if rng.random() < config.noise_tag_fraction:
            for _ in range(rng.randint(1, 2)):
                noise = vocab.noise(rng)
                if noise is not None:
                    tags.setdefault(noise, _votes(rng))
        return tuple(sorted(tags.items(), key=lambda kv: (-kv[1], kv[0])))

    @staticmethod
    def _plant_faults(
        rng: random.Random,
        config: WorldConfig,
        genres: list[str],
        rgs: list[ReleaseGroup],
        coverage: dict[str, float],
        home: dict[str, str],
    ) -> None:
        """Broken covers, missing art, flaky images and near-duplicates, all from the seeded rng."""
        genre_set = set(genres)
        # Faults a harvesting client must meet: plant them among the release groups it will find.
        findable = [rg for rg in rgs if rg.findable and rg.genre in genre_set]
        rng.shuffle(findable)
        per_kind = max(1, round(config.broken_fraction * len(rgs)))
        for i, kind in enumerate(BROKEN_KINDS):
            for rg in findable[i * per_kind : (i + 1) * per_kind]:
                rg.art = kind
        for rg in rgs:  # missing art at the genre's coverage (ambiguous/unlabelled: the genre tagged for)
            share = coverage[rg.genre] if rg.genre in coverage else coverage[home[rg.mbid]]
            if rg.art == "ok" and rng.random() >= share:
                rg.art = "none"
        for rg in rgs:
            if rg.art == "ok" and rng.random() < config.flaky_fraction:
                rg.flaky = True

        sources_by_artist: dict[str, list[ReleaseGroup]] = {}
        for rg in rgs:
            if rg.art == "ok":
                sources_by_artist.setdefault(rg.artist.mbid, []).append(rg)
        with_art = [rg for rg in rgs if rg.art == "ok"]
        candidates = [rg for rg in findable if rg.art == "ok" and not rg.flaky]
        n_dups = round(config.duplicate_fraction * len(findable))
        used: set[str] = set()  # a cover is either a source or a copy, never both: no chains
        for i, dup in enumerate(candidates):
            if n_dups <= 0:
                break
            if dup.mbid in used:
                continue
            siblings = [
                s for s in sources_by_artist.get(dup.artist.mbid, []) if s.mbid != dup.mbid and s.duplicate_of is None
            ]
            # Half are reissues by the same artist, the rest re-use a cover across artists and genres.
            pool = siblings if siblings and rng.random() < 0.5 else with_art
            source = rng.choice(pool)
            if source.mbid == dup.mbid or source.duplicate_of is not None:
                continue
            dup.duplicate_of, dup.transform = source.mbid, TRANSFORMS[i % len(TRANSFORMS)]
            used.update((dup.mbid, source.mbid))
            n_dups -= 1
        if config.reissue_fraction > 0:
            World._plant_reissues(rng, config, findable, used)

    @staticmethod
    def _plant_reissues(rng: random.Random, config: WorldConfig, findable: list[ReleaseGroup], used: set[str]) -> None:
        """reissue_fraction of the findable covers become re-encoded copies of another findable cover of their
        genre: the same artist's when it has one (a remaster, a deluxe edition), else any of the genre. A source
        may have several reissues; a copy is never a source (no chains)."""
        with_art = [rg for rg in findable if rg.art == "ok"]
        by_genre: dict[str, list[ReleaseGroup]] = {}
        by_artist: dict[tuple[str, str], list[ReleaseGroup]] = {}
        for rg in with_art:
            if rg.duplicate_of is None:
                by_genre.setdefault(rg.genre, []).append(rg)
                by_artist.setdefault((rg.genre, rg.artist.mbid), []).append(rg)
        todo = round(config.reissue_fraction * len(with_art))
        for k, copy in enumerate(rg for rg in with_art if not rg.flaky):
            if todo <= 0:
                break
            if copy.mbid in used or copy.duplicate_of is not None:
                continue
            siblings = [
                s for s in by_artist[(copy.genre, copy.artist.mbid)] if s is not copy and s.duplicate_of is None
            ]
            source = rng.choice(siblings or by_genre[copy.genre])
            if source is copy or source.duplicate_of is not None:
                continue
            copy.duplicate_of, copy.transform = source.mbid, REISSUE_TRANSFORMS[k % len(REISSUE_TRANSFORMS)]
            used.update((copy.mbid, source.mbid))
            todo -= 1

    # ---- covers ---------------------------------------------------------------------------------

    def side(self, size: int) -> int:
        """The side actually rendered for a requested thumbnail size (0 = full size)."""
        return self.config.cover_px or (size or FULL_SIZE)

    def _image(self, rg: ReleaseGroup, side: int) -> Image.Image:
        if rg.duplicate_of is None:
            return draw(rg.cover, side)
        source = draw(self.by_mbid[rg.duplicate_of].cover, side)
        rnd = random.Random(rg.cover.seed)
        if rg.transform == "resize":
            scaled = max(8, round(side * rnd.uniform(0.5, 0.9)))
            return source.resize((scaled, scaled), Image.BILINEAR)
        if rg.transform == "border":
            colour = (245, 245, 240) if rnd.random() < 0.5 else (15, 15, 15)
            return ImageOps.expand(source, border=max(1, round(side * 0.02)), fill=colour)
        if rg.transform == "brightness":
            shift = rnd.choice((-1, 1)) * rnd.randint(12, 25)
            return source.point(lambda v: max(0, min(255, v + shift)))
        return source  # reencode: the quality drop happens in _encode

    def _encode(self, rg: ReleaseGroup, side: int) -> bytes:
        if rg.art == "html":
            return HTML_ERROR_PAGE
        if rg.art == "bomb":
            return bomb_png()
        if rg.art == "tiny":
            return encode_jpeg(draw(rg.cover, TINY_SIDE), self.config.jpeg_quality)
        quality = self.config.jpeg_quality
        if rg.transform == "reencode":
            quality = random.Random(rg.cover.seed).randint(30, 50)
        data = encode_jpeg(self._image(rg, side), quality)
        if rg.art == "truncated":
            return data[: len(data) * 2 // 5]
        return data  # for "oversize" this is the prefix; the rest is zero padding (see cover_bytes)

    def cached_cover(self, mbid: str, size: int) -> bytes | None:
        """The encoded cover if it is cached already (the server's fast path); oversize: its prefix."""
        return self._cache.get((mbid, self.side(size)))

    def cover_prefix(self, mbid: str, size: int) -> bytes:
        """Encoded bytes, cached; for an oversize cover only the real JPEG before the padding."""
        rg = self.by_mbid[mbid]
        if rg.art == "none":
            raise KeyError(f"{mbid} has no cover art")
        key = (mbid, self.side(size))
        data = self._cache.get(key)
        if data is None:
            data = self._encode(rg, key[1])
            self._cache.put(key, data)
        return data

    def render_cover(self, mbid: str, size: int) -> bytes:
        """What cover_prefix returns, drawn afresh and not cached (for a render process; see remember_cover)."""
        return self._encode(self.by_mbid[mbid], self.side(size))

    def remember_cover(self, mbid: str, size: int, data: bytes) -> None:
        """Cache bytes render_cover made elsewhere, so the next request takes the fast path."""
        self._cache.put((mbid, self.side(size)), data)

    def cover_bytes(self, mbid: str, size: int) -> bytes:
        """The exact bytes the CAA serves for this release group and thumbnail size (0 = full size)."""
        data = self.cover_prefix(mbid, size)
        if self.by_mbid[mbid].art == "oversize":
            return data + bytes(self.config.oversize_bytes - len(data))
        return data

    def prerender(self, size: int, mbids: Iterable[str] | None = None, workers: int | None = None) -> int:
        """Encode covers ahead of serving (PIL and numpy release the GIL, so threads help); returns the count."""
        todo = [m for m in (mbids if mbids is not None else self.by_mbid) if self.by_mbid[m].art != "none"]
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            for _ in pool.map(lambda m: self.cover_prefix(m, size), todo, chunksize=64):
                pass
        return len(todo)

    # ---- URLs -----------------------------------------------------------------------------------

    @staticmethod
    def image_file(rg: ReleaseGroup, size: int) -> str:
        suffix = f"_thumb{size}" if size else ""
        return f"mbid-{rg.release_mbid}-{rg.image_id}{suffix}.jpg"

    @staticmethod
    def storage_node(rg: ReleaseGroup) -> int:
        return 600 + rg.image_id % 300

    def image_url(self, base: str, mbid: str, size: int) -> str:
        """The final (post-redirect) URL that serves the cover bytes directly."""
        rg = self.by_mbid[mbid]
        return f"{base.rstrip('/')}/ia/{self.storage_node(rg)}/items/mbid-{rg.release_mbid}/{self.image_file(rg, size)}"

    # ---- ground truth ---------------------------------------------------------------------------

    def truth(self, artist_cap: int = 2) -> dict:
        """Per genre: findable album counts, losses, usable covers (and capped at `artist_cap` per artist),
        the configured art coverage and the measured one (share of its findable albums with a cover)."""
        thin = {
            g
            for g in self.taxonomy.genres
            if any(normalize_tag(g) == normalize_tag(t) for t in self.config.thin_genres)
        }
        per_genre = {
            g: {
                "total": 0,
                "no_art": 0,
                "broken": {k: 0 for k in BROKEN_KINDS},
                "flaky": 0,
                "duplicates": 0,
                "usable": 0,
                "usable_capped": 0,
                "artists": 0,
                "art_coverage": self.coverage[g],
                "thin": g in thin,
            }
            for g in self.taxonomy.genres
        }
        other = {AMBIGUOUS: 0, UNLABELLED: 0}
        usable_by_artist: dict[tuple[str, str], int] = {}
        for rg in self.release_groups:
            if not rg.findable:
                continue
            if rg.genre not in per_genre:
                other[rg.genre] += 1
                continue
            row = per_genre[rg.genre]
            row["total"] += 1
            if rg.art == "none":
                row["no_art"] += 1
            elif rg.art != "ok":
                row["broken"][rg.art] += 1
            else:
                row["flaky"] += rg.flaky
                row["duplicates"] += rg.duplicate_of is not None
                if rg.duplicate_of is None:
                    row["usable"] += 1
                    key = (rg.genre, rg.artist.mbid)
                    usable_by_artist[key] = usable_by_artist.get(key, 0) + 1
        for (genre, _), n in usable_by_artist.items():
            per_genre[genre]["usable_capped"] += min(artist_cap, n)
            per_genre[genre]["artists"] += 1
        for row in per_genre.values():
            row["measured_coverage"] = round(1 - row["no_art"] / row["total"], 4) if row["total"] else None
        return {
            "seed": self.config.seed,
            "n_artists": len(self.artists),
            "n_release_groups": len(self.release_groups),
            "various_artists_mbid": VARIOUS_ARTISTS,
            "artist_cap": artist_cap,
            "genres": per_genre,
            "findable_ambiguous": other[AMBIGUOUS],
            "findable_unlabelled": other[UNLABELLED],
            "duplicates": [
                {
                    "mbid": rg.mbid,
                    "source_mbid": rg.duplicate_of,
                    "transform": rg.transform,
                    "same_artist": rg.artist.mbid == self.by_mbid[rg.duplicate_of].artist.mbid,
                    "genre": rg.genre,
                    "source_genre": self.by_mbid[rg.duplicate_of].genre,
                }
                for rg in self.release_groups
                if rg.duplicate_of is not None
            ],
            "broken": {k: [rg.mbid for rg in self.release_groups if rg.art == k] for k in BROKEN_KINDS},
            "flaky": [rg.mbid for rg in self.release_groups if rg.flaky],
            "no_art": sum(rg.art == "none" for rg in self.release_groups),
            "art_coverage": dict(self.coverage),
            "thin_genres": sorted(thin),
        }
