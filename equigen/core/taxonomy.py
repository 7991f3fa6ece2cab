"""The genre taxonomy (manifests/genres.toml) and label resolution (pure functions).

The taxonomy decides every MusicBrainz genre name: each belongs to exactly one of the genres'
`tags`, or to `[unmapped]`. Tags from the service are matched after `normalize_tag` (case,
Unicode dashes, hyphen vs space, "&"/"and"/"'n'", a trailing " music") and through `[aliases]`
for common spellings MusicBrainz does not list ("rnb", "hiphop", "synthpop"). Anything else
("seen live", "1990s", "english") is not a genre and weighs nothing.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

from equigen.core.errors import EquigenError, first_line

AMBIGUOUS = "ambiguous"
UNLABELLED = "unlabelled"
NO_GENRE = frozenset({AMBIGUOUS, UNLABELLED})

# Unicode hyphens and dashes (U+2010..U+2015, minus sign, small/full-width hyphen-minus) -> "-".
_DASHES = re.compile("[\u2010-\u2015\u2212\ufe58\ufe63\uff0d]")
_QUOTES = re.compile("[\u2018\u2019\u201b\u2032`\u00b4]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SEPARATORS = re.compile(r"[\s\-_/]+")
_AND_TOKENS = frozenset({"&", "and", "n", "'n'", "'n", "n'", "+n+"})


def normalize_tag(name: str) -> str:
    """The matching key of a tag or genre name (see _normalize_tag); cached: a dump of millions of release groups
    repeats a few thousand tag names."""
    return _normalize_cached(name) if isinstance(name, str) else _normalize_tag(name)


def _normalize_tag(name: str) -> str:
    """The matching key of a tag or genre name.

    NFKC + casefold; accents dropped ("reggaetón" = "reggaeton", "forró" = "forro": users type both);
    Unicode dashes and quotes folded; hyphens, underscores, slashes and runs of
    space become one space ("hip-hop" = "hip hop"); "&", "'n'", "n" between words become "and"
    ("r&b" = "r and b", "rock 'n' roll" = "rock and roll"); a trailing " music" is dropped
    ("new age music" = "new age"). Idempotent: normalize_tag(normalize_tag(x)) == normalize_tag(x).
    """
    text = unicodedata.normalize("NFKC", str(name)).casefold()
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        text = unicodedata.normalize("NFKC", text)
    text = _CONTROLS.sub(" ", text)
    text = _DASHES.sub("-", _QUOTES.sub("'", text))
    text = text.replace("&", " & ").replace("'n'", " 'n' ")
    tokens = [t for t in _SEPARATORS.split(text) if t]
    if len(tokens) > 2:  # "n" / "'n'" only joins two words; a lone "n" stays what it is
        tokens = [tokens[0]] + ["and" if t in _AND_TOKENS else t for t in tokens[1:-1]] + [tokens[-1]]
    tokens = ["and" if t == "&" else t for t in tokens]
    if len(tokens) > 1 and tokens[-1] == "music":
        tokens = tokens[:-1]
    return " ".join(tokens)


_normalize_cached = lru_cache(maxsize=1 << 16)(_normalize_tag)


def plurals(key: str) -> tuple[str, ...]:
    """English plural spellings of a normalized name's last word ("sea shanty" -> "sea shanties").

    Tags are free text and users pluralise ("sea shanties", "lullabies", "marches"); a plural counts as
    its name unless it is itself a name of the taxonomy (which then decides).
    """
    head, _, last = key.rpartition(" ")
    if not last.isalpha() or len(last) < 3:
        return ()
    prefix = head + " " if head else ""
    if last.endswith("y") and last[-2] not in "aeiou":
        forms = [last[:-1] + "ies"]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        forms = [last + "es"]
    else:
        forms = [last + "s"]
    return tuple(prefix + f for f in forms)


@dataclass(frozen=True)
class Label:
    """A release group's label and its evidence."""

    genre: str  # a genre name, AMBIGUOUS or UNLABELLED
    votes: int  # genre votes summed over every mapped tag (all genres)
    confidence: float  # the leading genre's share of `votes` (0.0 when there are none)


@dataclass(frozen=True)
class Taxonomy:
    genres: tuple[str, ...]  # in file order; label ids follow this order
    tags: Mapping[str, tuple[str, ...]]  # genre -> its MusicBrainz genre names, as spelled there
    ambiguity_ratio: float = 0.8
    min_votes: int = 1
    tag_to_genre: Mapping[str, str] = field(default_factory=dict)  # normalized name or alias -> genre
    broad: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # genre -> names searched first
    unmapped: tuple[str, ...] = ()  # MusicBrainz genre names that belong to no genre
    aliases: Mapping[str, str] = field(default_factory=dict)  # normalized alias -> normalized name
    alias_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # genre -> its aliases as spelled
    text: str = field(default="", compare=False, repr=False)  # the TOML it was read from (a catalog stores it)

    def fingerprint(self) -> str:
        """What decides labels (tag -> genre, resolution): equal fingerprints label every release group alike."""
        import hashlib
        import json

        payload = json.dumps([sorted(self.tag_to_genre.items()), self.ambiguity_ratio, self.min_votes])
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def unmapped_keys(self) -> frozenset[str]:
        return frozenset(normalize_tag(n) for n in self.unmapped)

    def genre_of_tag(self, tag: str) -> str | None:
        return self.tag_to_genre.get(normalize_tag(tag))

    def resolve(self, tags: Iterable[tuple[str, int]]) -> str:
        return self.label(tags).genre

    def label(self, tags: Iterable[tuple[str, int]]) -> Label:
        return resolve_label(tags, self.tag_to_genre, self.ambiguity_ratio, self.min_votes)

    def broad_names(self, genre: str) -> tuple[str, ...]:
        return self.broad.get(genre) or self.tags[genre][:1]

    def search_names(self, genre: str) -> tuple[str, ...]:
        """What discovery may search for a genre: its MusicBrainz names, then its aliases.

        Aliases are searched too because users tag with them ("rnb") and the search server does
        not equate them with the MusicBrainz name ("r&b").
        """
        return self.tags[genre] + self.alias_names.get(genre, ())


def genre_votes(tags: Iterable[tuple[str, int]], tag_to_genre: Mapping[str, str]) -> dict[str, int]:
    """Votes per genre: every tag's votes go to the genre its (normalized) name maps to.

    A fusion name has been given to one genre in the taxonomy (the rule in genres.toml), so it
    counts once, for that genre. Unknown tags count for nothing; non-positive votes count as zero.
    """
    totals: dict[str, int] = {}
    for name, count in tags:
        genre = tag_to_genre.get(normalize_tag(name))
        if genre is not None:
            try:
                votes = max(int(count or 0), 0)
            except (TypeError, ValueError):
                votes = 0
            totals[genre] = totals.get(genre, 0) + votes
    return totals


def resolve_label(
    tags: Iterable[tuple[str, int]],
    tag_to_genre: Mapping[str, str],
    ambiguity_ratio: float = 0.8,
    min_votes: int = 1,
) -> Label:
    """One genre for a release group from its (tag, votes) pairs, with its evidence.

    The genre with the most summed votes wins unless the runner-up holds at least
    `ambiguity_ratio` of its votes -> AMBIGUOUS. No mapped votes, or fewer than `min_votes`
    for the winner -> UNLABELLED. `votes` is the total over all genres and `confidence` the
    leader's share of it, for labelled and ambiguous release groups alike.
    """
    totals = genre_votes(tags, tag_to_genre)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(totals.values())
    if not ranked or ranked[0][1] < max(min_votes, 1):
        return Label(UNLABELLED, total, ranked[0][1] / total if total else 0.0)
    confidence = ranked[0][1] / total
    if len(ranked) > 1 and ranked[1][1] >= ambiguity_ratio * ranked[0][1]:
        return Label(AMBIGUOUS, total, confidence)
    return Label(ranked[0][0], total, confidence)


def default_taxonomy_path() -> Path:
    """manifests/genres.toml: in a source checkout read directly (even where git wrote the package's
    link as a plain file), in an installed wheel the copy the link became."""
    source = Path(__file__).resolve().parents[2] / "manifests" / "genres.toml"
    if source.is_file():
        return source
    return Path(str(resources.files("equigen").joinpath("data/genres.toml")))


MAX_TAXONOMY_BYTES = 4_000_000  # the shipped file is ~60 KB; a 50 MB TOML took 929 MB and 26 s to parse


def load_taxonomy(path: Path | str | None = None) -> Taxonomy:
    """Load and validate a taxonomy file; every problem is a one-line EquigenError.

    At most MAX_TAXONOMY_BYTES are read (`/dev/zero` or a huge file is refused before parsing), and a nesting
    deep enough to exhaust the parser's recursion is refused like any other invalid TOML.
    """
    path = Path(path) if path is not None else default_taxonomy_path()
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TAXONOMY_BYTES + 1)
        if len(data) > MAX_TAXONOMY_BYTES:
            raise EquigenError(f"taxonomy file {path} is larger than {MAX_TAXONOMY_BYTES:,} bytes: not a taxonomy")
        text = data.decode("utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise EquigenError(f"taxonomy file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EquigenError(f"taxonomy file {path} is not valid TOML: {first_line(exc)}") from None
    except RecursionError:
        raise EquigenError(f"taxonomy file {path} is not valid TOML: nested too deeply") from None
    except IsADirectoryError:
        raise EquigenError(f"taxonomy file {path} is a folder") from None
    except OSError as exc:
        raise EquigenError(f"cannot read taxonomy file {path}: {exc.strerror or exc}") from None
    try:
        return replace(parse_taxonomy(raw, str(path)), text=text)
    except RecursionError:
        raise EquigenError(f"taxonomy file {path}: nested too deeply") from None


def taxonomy_from_text(text: str, source: str) -> Taxonomy:
    """A taxonomy from TOML text stored elsewhere (a catalog's copy), checked like a file."""
    if len(text) > MAX_TAXONOMY_BYTES:
        raise EquigenError(f"{source} is larger than {MAX_TAXONOMY_BYTES:,} bytes: not a taxonomy")
    try:
        return replace(parse_taxonomy(tomllib.loads(text), source), text=text)
    except tomllib.TOMLDecodeError as exc:
        raise EquigenError(f"{source} is not valid TOML: {first_line(exc)}") from None
    except RecursionError:
        raise EquigenError(f"{source} is not valid TOML: nested too deeply") from None


def _names(value, what: str, source: str) -> list[str]:
    if not isinstance(value, list):
        raise EquigenError(f'{source}: {what} must be a list of names (expected ["...", ...])')
    for name in value:
        if not isinstance(name, str) or not normalize_tag(name):
            raise EquigenError(f"{source}: {what} has an empty or non-text name: {name!r}")
    return value


def parse_taxonomy(raw: Mapping, source: str = "taxonomy") -> Taxonomy:
    """A parsed taxonomy TOML checked and resolved, in named steps; every problem is a one-line EquigenError."""
    genres_raw = raw.get("genres")
    if not isinstance(genres_raw, Mapping) or not genres_raw:
        raise EquigenError(f"{source}: needs a [genres.<Name>] table for each genre")
    ratio, min_votes = _resolution(raw.get("resolution", {}), source)
    owners = _TagOwners(source)
    tags: dict[str, tuple[str, ...]] = {}
    broad: dict[str, tuple[str, ...]] = {}
    for genre, body in genres_raw.items():
        tags[genre], broad[genre] = _genre_tags(genre, body, owners, source)
    if len(tags) < 2:
        raise EquigenError(f"{source}: a taxonomy needs at least two genres")
    unmapped = _unmapped(raw.get("unmapped", {}), owners, source)
    aliases_raw = raw.get("aliases", {})
    aliases = _aliases(aliases_raw, owners.owner, source)
    tag_to_genre = _tag_to_genre(owners.owner, aliases)
    return Taxonomy(
        tuple(tags),
        tags,
        float(ratio),
        int(min_votes),
        tag_to_genre,
        broad,
        tuple(dict.fromkeys(unmapped)),
        aliases,
        _alias_names(aliases_raw, tag_to_genre, tags),
    )


def _resolution(resolution, source: str) -> tuple[float, int]:
    """[resolution]: ambiguity_ratio in (0, 1] and a positive min_votes."""
    if not isinstance(resolution, Mapping):
        raise EquigenError(f"{source}: [resolution] must be a table")
    ratio = resolution.get("ambiguity_ratio", 0.8)
    min_votes = resolution.get("min_votes", 1)
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 1:
        raise EquigenError(f"{source}: resolution.ambiguity_ratio must be in (0, 1], got {ratio!r}")
    if not isinstance(min_votes, int) or isinstance(min_votes, bool) or min_votes < 1:
        raise EquigenError(f"{source}: resolution.min_votes must be a positive integer, got {min_votes!r}")
    return ratio, min_votes


class _TagOwners:
    """Normalized tag name -> the genre (or "[unmapped]") that claims it; a name claimed twice is an error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.owner: dict[str, str] = {}

    def claim(self, name: str, genre: str) -> str:
        key = normalize_tag(name)
        if key in self.owner and self.owner[key] != genre:
            raise EquigenError(
                f"{self.source}: tag {name.strip().lower()!r} is claimed by both {self.owner[key]!r} and {genre!r}"
            )
        self.owner[key] = genre
        return key


def _check_genre_name(genre: str, source: str) -> None:
    if genre in NO_GENRE or not genre.strip() or len(genre) > 64 or _CONTROLS.search(genre):
        raise EquigenError(
            f"{source}: {genre[:64]!r} cannot be a genre name (1 to 64 characters, no control characters)"
        )


def _genre_tags(genre: str, body, owners: _TagOwners, source: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """One [genres.<Name>] table: its tags as spelled (each claimed for the genre), and its broad names, which
    must be among its tags."""
    _check_genre_name(genre, source)
    body = body if isinstance(body, Mapping) else {}
    genre_tags = body.get("tags")
    if not isinstance(genre_tags, list) or not genre_tags:
        raise EquigenError(f'{source}: genre {genre!r} has no tags (expected tags = ["...", ...])')
    spelled: dict[str, str] = {}
    for name in _names(genre_tags, f"genre {genre!r} tags", source):
        spelled.setdefault(owners.claim(name, genre), name.strip().lower())
    broad_names = [n.strip().lower() for n in _names(body.get("broad", []), f"genre {genre!r} broad", source)]
    outside = [n for n in broad_names if normalize_tag(n) not in spelled]
    if outside:
        raise EquigenError(f"{source}: genre {genre!r} lists broad name(s) {outside} that are not among its tags")
    broad = tuple(dict.fromkeys(spelled[normalize_tag(n)] for n in broad_names))  # as the tag is spelled
    return tuple(spelled.values()), broad


def _unmapped(unmapped_raw, owners: _TagOwners, source: str) -> list[str]:
    """[unmapped] tags: MusicBrainz genre names that belong to no genre (claimed, so no genre can take them)."""
    if not isinstance(unmapped_raw, Mapping):
        raise EquigenError(f"{source}: [unmapped] must be a table with tags = [...]")
    unmapped = [n.strip().lower() for n in _names(unmapped_raw.get("tags", []), "[unmapped] tags", source)]
    for name in unmapped:
        owners.claim(name, "[unmapped]")
    return unmapped


def _aliases(aliases_raw, owner: Mapping[str, str], source: str) -> dict[str, str]:
    """[aliases]: normalized spelling -> the normalized tag it stands for (a tag of the taxonomy)."""
    if not isinstance(aliases_raw, Mapping):
        raise EquigenError(f'{source}: [aliases] must be a table of "spelling" = "MusicBrainz name"')
    aliases: dict[str, str] = {}
    for alias, target in aliases_raw.items():
        if not isinstance(target, str) or normalize_tag(target) not in owner:
            raise EquigenError(f"{source}: alias {alias!r} points at {target!r}, which is no tag of the taxonomy")
        key, goal = normalize_tag(alias), normalize_tag(target)
        if not any(c.isalnum() for c in key):  # "" or "---": punctuation would vote as a genre
            raise EquigenError(f"{source}: alias {alias!r} has no letters or digits")
        if key in owner and owner[key] != owner[goal]:
            raise EquigenError(f"{source}: alias {alias!r} is already a tag of {owner[key]!r}")
        aliases[key] = goal
    return aliases


def _tag_to_genre(owner: Mapping[str, str], aliases: Mapping[str, str]) -> dict[str, str]:
    """Every name that votes for a genre: its tags, the aliases of its tags, and their plurals."""
    tag_to_genre = {k: g for k, g in owner.items() if g != "[unmapped]"}
    tag_to_genre.update({a: tag_to_genre[t] for a, t in aliases.items() if t in tag_to_genre})
    for key, genre in list(tag_to_genre.items()):  # "sea shanties", "lullabies": plurals vote like the name
        for plural in plurals(key):
            if plural not in owner and plural not in aliases:
                tag_to_genre.setdefault(plural, genre)
    return tag_to_genre


def _alias_names(
    aliases_raw: Mapping, tag_to_genre: Mapping[str, str], tags: Mapping[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """Genre -> its aliases as spelled in the file (those not already among its tags)."""
    alias_names: dict[str, tuple[str, ...]] = {}
    for alias, target in aliases_raw.items():
        genre = tag_to_genre.get(normalize_tag(target))
        spelled = alias.strip().lower()
        if genre is not None and spelled not in tags[genre]:
            alias_names[genre] = alias_names.get(genre, ()) + (spelled,)
    return alias_names
