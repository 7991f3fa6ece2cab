"""Compare the taxonomy with public style -> genre hierarchies: where do experts file a name, and do we agree?

The hierarchies are `external_hierarchies.tsv` (seven sources: Discogs, AllMusic, Last.fm, tagtraum, Rate Your
Music, Apple, eBay; `source<TAB>style<TAB>parent`) with recording counts in `external_hierarchies.counts.tsv`,
kept outside the repository (default `../shared/reference/`, see its README; the AllMusic rows are for
non-commercial research: we measure with them and ship none). How each source's top genres correspond to our 15
is written here, with a reason per line: `manifests/sources/hierarchy_correspondence.tsv`.

A (source, style) is *compared* when one of its parents corresponds to one of our genres and the taxonomy maps the
style (as a tag: normalize_tag, aliases and plurals) to one of the 15; it *agrees* when our genre
is among its parents' genres. Styles the sources place that we leave unmapped, and names we do not know at all,
are reported apart. Used by benchmarks/bench_taxonomy.py and scripts/derive_genres.py --explain.
"""

from __future__ import annotations

import csv
import tomllib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from equigen.core.taxonomy import Taxonomy, normalize_tag

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference"
CORRESPONDENCE = ROOT / "manifests" / "sources" / "hierarchy_correspondence.tsv"
RULES = ROOT / "manifests" / "sources" / "genre_rules.toml"
# Last.fm and tagtraum names lost their spaces at source ("alternativerock"): matched on a space-free key.
SQUASHED_SOURCES = frozenset({"lastfm", "tagtraum"})

AGREE, DISAGREE, UNMAPPED, UNKNOWN, NOT_COMPARED = "agree", "disagree", "unmapped", "unknown", "not compared"


@dataclass(frozen=True)
class Correspondence:
    source: str
    parent: str
    genres: tuple[str, ...]  # ours; () = none of the 15
    kind: str  # same | maps | spans | none
    reason: str


@dataclass
class Placement:
    """One style of one source, with all its parents there, and what our taxonomy says of it."""

    source: str
    style: str
    parents: list[str] = field(default_factory=list)
    theirs: set[str] = field(default_factory=set)  # our genres the parents correspond to
    direct: bool = False  # some parent is one of our 15 itself (kind "same")
    other_tops: frozenset[str] = frozenset()  # the source's other top genres (loose keys)
    recordings: int | None = None
    ours: str | None = None  # our genre, "unmapped", or None (a name we do not know)
    matched: str | None = None  # the taxonomy name it matched

    @property
    def contextual(self) -> bool:
        """Named after another of its source's top genres (Discogs Electronic > "Hip Hop", Apple Classical >
        "Electronic", AllMusic Classical > "Electronic/Computer Music"): that genre's crossover inside this one,
        so its name alone says nothing about where it belongs."""
        return any(_loose(n) in self.other_tops for n in (self.style, self.matched) if n)

    @property
    def verdict(self) -> str:
        if not self.theirs or self.contextual:
            return NOT_COMPARED
        if self.ours is None:
            return UNKNOWN
        if self.ours == UNMAPPED:
            return UNMAPPED
        return AGREE if self.ours in self.theirs else DISAGREE


def _rows(path: Path) -> Iterable[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.reader((line for line in fh if not line.startswith("#")), delimiter="\t"):
            if row and row[0] != "source":
                yield row


def contested_reasons(path: Path = RULES) -> dict[str, str]:
    """genre_rules.toml [contested]: name -> why we keep our choice where sources disagree."""
    return dict(tomllib.loads(path.read_text(encoding="utf-8")).get("contested", {}))


def read_correspondence(path: Path = CORRESPONDENCE) -> dict[tuple[str, str], Correspondence]:
    out = {}
    for row in _rows(path):
        source, parent, genres, kind, reason = (row + [""] * 5)[:5]
        out[(source, parent)] = Correspondence(source, parent, tuple(g for g in genres.split("|") if g), kind, reason)
    return out


def read_placements(reference: Path, correspondence: dict[tuple[str, str], Correspondence]) -> list[Placement]:
    """Every (source, style) of external_hierarchies.tsv with its parents' genres and recording counts."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    counts_path = reference / "external_hierarchies.counts.tsv"
    if counts_path.is_file():
        for source, style, _parent, n in _rows(counts_path):
            counts[(source, style)] += int(n)
    places: dict[tuple[str, str], Placement] = {}
    missing = set()
    for source, style, parent in _rows(reference / "external_hierarchies.tsv"):
        p = places.setdefault((source, style), Placement(source, style, recordings=counts.get((source, style))))
        p.parents.append(parent)
        corr = correspondence.get((source, parent))
        if corr is None:
            missing.add((source, parent))
            continue
        p.theirs.update(corr.genres)
        p.direct |= corr.kind == "same"
    if missing:
        raise SystemExit(f"{CORRESPONDENCE.name} has no line for {sorted(missing)[:5]} ({len(missing)} in all)")
    # A style named after one of its source's top genres but listed under another (Discogs Electronic > "Hip Hop",
    # Apple Classical > "Electronic") is that genre's crossover inside the other: its name alone says nothing of it.
    tops: dict[str, set[str]] = defaultdict(set)
    for source, parent in correspondence:
        tops[source].add(_loose(parent.split(" > ")[0]))
    for p in places.values():
        p.other_tops = frozenset(tops[p.source] - {_loose(x.split(" > ")[0]) for x in p.parents})
    return list(places.values())


def _loose(name: str) -> str:
    return normalize_tag(name).replace(" ", "").replace("music", "")


class Matcher:
    """A style name -> (our genre or UNMAPPED, the taxonomy name) the way a tag would be matched at run time."""

    def __init__(self, taxonomy: Taxonomy):
        self.place: dict[str, str] = dict(taxonomy.tag_to_genre)
        for key in map(normalize_tag, taxonomy.unmapped):
            self.place.setdefault(key, UNMAPPED)
        self.squashed: dict[str, str] = {}
        for key in self.place:
            self.squashed.setdefault(key.replace(" ", ""), key)

    def _lookup(self, name: str, squash: bool) -> str | None:
        key = normalize_tag(name)
        if key in self.place:
            return key
        if squash:
            return self.squashed.get(key.replace(" ", ""))
        return None

    def match(self, style: str, source: str) -> tuple[str | None, str | None]:
        squash = source in SQUASHED_SOURCES
        key = self._lookup(style, squash)
        if key is None and "/" in style:  # "2-Step/British Garage"; "Folk/Country Rock" = folk rock, country rock
            parts = [p.strip() for p in style.split("/")]
            tail = parts[-1].split(" ")[-1]
            for part in parts:
                forms = [part + " " + tail, part] if " " not in part and part != parts[-1] else [part]
                key = next((k for k in (self._lookup(f, squash) for f in forms) if k), None)
                if key is not None:
                    break
        return (self.place[key], key) if key is not None else (None, None)


def assess(placements: list[Placement], taxonomy: Taxonomy) -> list[Placement]:
    matcher = Matcher(taxonomy)
    for p in placements:
        p.ours, p.matched = matcher.match(p.style, p.source)
    return placements


def load(taxonomy: Taxonomy, reference: Path = REFERENCE) -> list[Placement]:
    return assess(read_placements(reference, read_correspondence()), taxonomy)


# ---------------------------------------------------------------------------------------------
# Summaries


def agreement(placements: Iterable[Placement], direct_only: bool = False) -> dict:
    """Agreement over compared placements: unweighted, and weighted by recordings where a source has counts."""
    agree = total = 0
    w_agree = w_total = 0
    for p in placements:
        if p.verdict not in (AGREE, DISAGREE) or (direct_only and not p.direct):
            continue
        total += 1
        agree += p.verdict == AGREE
        if p.recordings:
            w_total += p.recordings
            w_agree += p.recordings if p.verdict == AGREE else 0
    return {
        "compared": total,
        "agree": agree,
        "disagree": total - agree,
        "share": agree / total if total else None,
        "weighted_share": w_agree / w_total if w_total else None,
        "recordings": w_total,
    }


def by_source(placements: list[Placement]) -> dict[str, dict]:
    sources = sorted({p.source for p in placements})
    return {s: agreement(p for p in placements if p.source == s) for s in sources}


def by_name(placements: list[Placement], verdict: str) -> list[dict]:
    """Names (by the taxonomy name matched, else the normalized style) with `verdict` in some source, ranked by how
    many sources give that verdict and by recordings; with every source's view of the same name."""
    groups: dict[str, list[Placement]] = defaultdict(list)
    for p in placements:
        key = p.matched or normalize_tag(p.style)
        groups[key].append(p)
    out = []
    for key, ps in groups.items():
        hits = [p for p in ps if p.verdict == verdict]
        if not hits:
            continue
        out.append(
            {
                "name": key,
                "ours": ps[0].ours,
                "sources": len({p.source for p in hits}),
                "agreeing_sources": len({p.source for p in ps if p.verdict == AGREE}),
                "recordings": sum(p.recordings or 0 for p in hits),
                "theirs": {p.source: sorted(p.theirs) for p in ps if p.theirs},
                "parents": {p.source: p.parents for p in ps},
            }
        )
    out.sort(key=lambda d: (-d["sources"], -d["recordings"], d["name"]))
    return out


def views_of(name: str, placements: list[Placement]) -> list[Placement]:
    """Every source's placement of a name (matched as the taxonomy matches tags)."""
    key = normalize_tag(name)
    return [
        p
        for p in placements
        if key in (p.matched, normalize_tag(p.style))
        or (p.source in SQUASHED_SOURCES and normalize_tag(p.style).replace(" ", "") == key.replace(" ", ""))
    ]


def best_possible(placements: list[Placement]) -> tuple[int, int]:
    """(agreements, compared) if every compared name took the genre most of its sources give it: the ceiling."""
    groups: dict[str, list[Placement]] = defaultdict(list)
    for p in placements:
        if p.verdict in (AGREE, DISAGREE):
            groups[p.matched or ""].append(p)
    best = sum(max(sum(g in p.theirs for p in ps) for g in {g for p in ps for g in p.theirs}) for ps in groups.values())
    return best, sum(len(ps) for ps in groups.values())
