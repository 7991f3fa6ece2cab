"""The genre taxonomy (manifests/genres.toml) and label resolution (a pure function)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping

from equigen.errors import EquigenError

AMBIGUOUS = "ambiguous"
UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class Taxonomy:
    genres: tuple[str, ...]                       # in file order; label ids follow this order
    tags: Mapping[str, tuple[str, ...]]           # genre -> its MusicBrainz tags (lower case)
    ambiguity_ratio: float = 0.8
    min_votes: int = 1
    tag_to_genre: Mapping[str, str] = field(default_factory=dict)

    def genre_of_tag(self, tag: str) -> str | None:
        return self.tag_to_genre.get(tag.strip().lower())

    def resolve(self, tags: Iterable[tuple[str, int]]) -> str:
        return resolve_genre(tags, self.tag_to_genre, self.ambiguity_ratio, self.min_votes)


def resolve_genre(
    tags: Iterable[tuple[str, int]],
    tag_to_genre: Mapping[str, str],
    ambiguity_ratio: float = 0.8,
    min_votes: int = 1,
) -> str:
    """One genre for a release group from its (tag, votes) pairs.

    Votes are summed per genre over the tags that map to it (tags with no genre are ignored,
    non-positive votes count as zero). The top genre wins unless the runner-up holds at least
    `ambiguity_ratio` of its votes -> AMBIGUOUS. No mapped votes, or fewer than `min_votes`
    for the winner -> UNLABELLED.
    """
    totals: dict[str, int] = {}
    for name, count in tags:
        genre = tag_to_genre.get(str(name).strip().lower())
        if genre is not None:
            totals[genre] = totals.get(genre, 0) + max(int(count or 0), 0)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    if not ranked or ranked[0][1] < max(min_votes, 1):
        return UNLABELLED
    if len(ranked) > 1 and ranked[1][1] >= ambiguity_ratio * ranked[0][1]:
        return AMBIGUOUS
    return ranked[0][0]


def default_taxonomy_path() -> Path:
    return Path(str(resources.files("equigen").joinpath("data/genres.toml")))


def load_taxonomy(path: Path | str | None = None) -> Taxonomy:
    """Load and validate a taxonomy file; every problem is a one-line EquigenError."""
    path = Path(path) if path is not None else default_taxonomy_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EquigenError(f"taxonomy file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EquigenError(f"taxonomy file {path} is not valid TOML: {str(exc).splitlines()[0]}") from None
    return parse_taxonomy(raw, str(path))


def parse_taxonomy(raw: Mapping, source: str = "taxonomy") -> Taxonomy:
    genres_raw = raw.get("genres")
    if not isinstance(genres_raw, Mapping) or not genres_raw:
        raise EquigenError(f"{source}: needs a [genres.<Name>] table for each genre")
    resolution = raw.get("resolution", {})
    if not isinstance(resolution, Mapping):
        raise EquigenError(f"{source}: [resolution] must be a table")
    ratio = resolution.get("ambiguity_ratio", 0.8)
    min_votes = resolution.get("min_votes", 1)
    if not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise EquigenError(f"{source}: resolution.ambiguity_ratio must be in (0, 1], got {ratio!r}")
    if not isinstance(min_votes, int) or min_votes < 1:
        raise EquigenError(f"{source}: resolution.min_votes must be a positive integer, got {min_votes!r}")
    tags: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for genre, body in genres_raw.items():
        if genre in (AMBIGUOUS, UNLABELLED) or not genre.strip():
            raise EquigenError(f"{source}: {genre!r} cannot be a genre name")
        genre_tags = body.get("tags") if isinstance(body, Mapping) else None
        if not isinstance(genre_tags, list) or not genre_tags:
            raise EquigenError(f"{source}: genre {genre!r} has no tags (expected tags = [\"...\", ...])")
        cleaned = []
        for tag in genre_tags:
            if not isinstance(tag, str) or not tag.strip():
                raise EquigenError(f"{source}: genre {genre!r} has an empty or non-text tag: {tag!r}")
            key = tag.strip().lower()
            if key in owner and owner[key] != genre:
                raise EquigenError(f"{source}: tag {key!r} is claimed by both {owner[key]!r} and {genre!r}")
            owner[key] = genre
            cleaned.append(key)
        tags[genre] = tuple(dict.fromkeys(cleaned))
    if len(tags) < 2:
        raise EquigenError(f"{source}: a taxonomy needs at least two genres")
    return Taxonomy(tuple(tags), tags, float(ratio), int(min_votes), owner)
