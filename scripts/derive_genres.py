#!/usr/bin/env python3
"""Derive manifests/genres.toml: every MusicBrainz genre name decided for one of the 15 genres or [unmapped].

Inputs (all in the repository, see manifests/sources/README.md for provenance):
  equigen/data/musicbrainz-genres.txt      MusicBrainz's genre list, one name a line (CC0)
  manifests/sources/beets-genres-tree.yaml beets' lastgenre genre tree (MIT): the hierarchy
  manifests/sources/genre_rules.toml       our hand-written rules: genres, broad names, anchors,
                                           the tree's branches, overrides, unmapped groups, aliases

Every name is compared through equigen.core.taxonomy.normalize_tag (case, dashes, "&"/"'n'"/"and",
trailing " music"), on both sides. Each MusicBrainz name is decided by the FIRST step that applies:

  1. override   genre_rules.toml [overrides]: name = "Genre" or "unmapped:<group>", each with a reason.
  2. anchor     the name is one of a genre's [anchors] (or of an unmapped group's anchors).
  3. head rule  THE FUSION RULE: a compound name belongs to the genre of its head, the longest
                trailing run of words that is an anchor ("blues rock" -> Rock, "folk metal" -> Metal,
                "jazz rap" -> Rap (hip hop), "post-punk" -> Punk; "post", "neo", "nu" ... are mere
                modifiers). A name written as one word counts the same when it ends in one of the
                [head] word_endings ("krautrock" -> Rock, "psytrance" -> Electronic). When no trailing
                run is an anchor, the longest LEADING run that has a head decides, for names formed
                head-first as in Spanish, Portuguese or Italian ("cumbia villera", "samba de roda",
                "opera buffa") or with a trailing qualifier ("garage rock revival").
  4. hierarchy  the nearest node of the beets tree, the name itself first and then its ancestors,
                that resolves: a node listed in [branches] takes that genre (or unmapped group),
                otherwise a node decided by steps 2-3 gives its genre ("grindcore" under heavy metal
                -> Metal, "trip hop" under electronic -> Electronic).
  5. unmapped   everything else: in the first unmapped group one of whose [unmapped.<group>] words
                occurs in the name, else in the catch-all group (regional and traditional styles
                and other names the sources do not place).

Usage: python scripts/derive_genres.py          write manifests/genres.toml
       python scripts/derive_genres.py --check  exit 1 if manifests/genres.toml is not what it would write
       python scripts/derive_genres.py --explain  print every name with its genre and deciding step
       python scripts/derive_genres.py --explain "country pop" "disco"   why, and what seven public hierarchies say
Output is deterministic (tags: broad names first, then the rest sorted by normalized name).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from equigen.core.taxonomy import normalize_tag  # noqa: E402

MB_LIST = ROOT / "equigen" / "data" / "musicbrainz-genres.txt"
TREE = ROOT / "manifests" / "sources" / "beets-genres-tree.yaml"
RULES = ROOT / "manifests" / "sources" / "genre_rules.toml"
OUTPUT = ROOT / "manifests" / "genres.toml"

UNMAPPED = "unmapped:"


# ---------------------------------------------------------------------------------------------
# Inputs


def read_mb_names(path: Path = MB_LIST) -> list[str]:
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [n for n in names if n and not n.startswith("#")]


def read_tree(path: Path = TREE) -> dict[str, str | None]:
    """The beets tree as {normalized node: normalized parent (None at the top)}.

    The file is a YAML list nesting ("- name:" opens a node, "- name" is a leaf, four spaces a
    level); it is read by indentation so that no YAML library is needed. When a name occurs twice,
    its first place wins.
    """
    parent: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []  # (indent, normalized name) of the open nodes
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        item = raw.strip()
        if not item.startswith("- "):
            raise SystemExit(f"{path}: cannot read line {raw!r}")
        item = item[2:].strip().rstrip(":").strip()
        if len(item) > 1 and item[0] == item[-1] and item[0] in "'\"":
            item = item[1:-1]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        up = stack[-1][1] if stack else None
        key = normalize_tag(item)
        parent.setdefault(key, up)
        stack.append((indent, key))
    return parent


def read_rules(path: Path = RULES) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Decision


class Deriver:
    def __init__(self, rules: dict, tree: dict[str, str | None]):
        self.rules = rules
        self.tree = tree
        self.genres: list[str] = list(rules["genres"])
        self.groups: dict[str, dict] = dict(rules["unmapped"])
        self.default_group: str = rules["unmapped_default"]
        targets = set(self.genres) | {UNMAPPED + g for g in self.groups}

        def target(value: str, where: str) -> str:
            if value not in targets:
                raise SystemExit(f"{RULES.name}: {where} points at {value!r}, which is no genre or unmapped group")
            return value

        self.anchor: dict[str, str] = {}
        misleading = rules["anchors"].get("misleading", {})
        for genre, names in [*((g, n) for g, n in rules["anchors"].items() if g != "misleading"), *misleading.items()]:
            target(genre, f"[anchors] {genre!r}")
            for name in names:
                self._add_anchor(name, genre)
        for group, body in self.groups.items():
            for name in body.get("anchors", []):
                self._add_anchor(name, UNMAPPED + group)
        self.override = {normalize_tag(k): target(v, f"[overrides] {k!r}") for k, v in rules["overrides"].items()}
        self.branch = {normalize_tag(k): target(v, f"[branches] {k!r}") for k, v in rules["branches"].items()}
        unknown = sorted(k for k in self.branch if k not in tree)
        if unknown:
            raise SystemExit(f"{RULES.name}: [branches] names nodes not in the beets tree: {unknown}")
        self.word_endings = sorted({normalize_tag(e) for e in rules["head"]["word_endings"]}, key=len, reverse=True)
        self.weak_heads = {target(g, "[head] weak_heads") for g in rules["head"].get("weak_heads", [])}
        taking = rules["head"].get("taking_modifiers", [])
        self.taking_modifiers = {target(g, "[head] taking_modifiers") for g in taking}

    def _add_anchor(self, name: str, genre: str) -> None:
        key = normalize_tag(name)
        if self.anchor.get(key, genre) != genre:
            raise SystemExit(f"{RULES.name}: anchor {name!r} is given to both {self.anchor[key]!r} and {genre!r}")
        self.anchor[key] = genre

    def tail_head(self, words: list[str]) -> str | None:
        """The anchor's genre of the longest trailing run of `words` (the whole run included), unless that head is
        weak and the words before it name a genre that takes its fusions ("country pop" -> Country)."""
        for i in range(len(words)):  # longest trailing run first
            tail = " ".join(words[i:])
            if tail in self.anchor:
                return self.modifier_genre(words[:i], self.anchor[tail])
        last = words[-1]
        for ending in self.word_endings:  # one-word compounds: "krautrock", "psytrance", "electropop"
            if len(last) > len(ending) + 1 and last.endswith(ending) and ending in self.anchor:
                return self.modifier_genre(words[:-1] + [last[: -len(ending)]], self.anchor[ending])
        return None

    def modifier_genre(self, modifier: list[str], head: str) -> str:
        """The refined fusion rule: a weak head (Pop, R&B, Reggae: styles that absorb others) yields to a modifier
        that is an anchor of a genre experts file fusions under (Country, Latin, Jazz, Electronic): "country pop",
        "latin pop", "jazz-funk", "electro-funk", "synth-pop", "ambient dub", "samba soul"."""
        if head not in self.weak_heads:
            return head
        genre = self.anchor.get(" ".join(modifier))  # the whole modifier: "third wave ska" stays Reggae
        return genre if genre in self.taking_modifiers else head

    def head(self, key: str) -> str | None:
        """Steps 2-3 for a normalized name: anchor, else the fusion (head) rule; None if neither."""
        words = key.split(" ")
        found = self.tail_head(words)
        if found:
            return found
        for i in range(len(words) - 1, 0, -1):  # head-first names: longest leading run that
            found = self.tail_head(words[:i])  # has a head ("cumbia villera", "garage rock revival")
            if found:
                return found
        return None

    def decide(self, name: str) -> tuple[str, str, str]:
        """(genre or "unmapped:<group>", step, detail) for one MusicBrainz name."""
        key = normalize_tag(name)
        if key in self.override:
            return self.override[key], "override", ""
        if key in self.anchor:
            return self.anchor[key], "anchor", ""
        found = self.head(key)
        if found:
            return found, "head", ""
        node, seen = (key if key in self.tree else None), set()
        while node is not None and node not in seen:
            seen.add(node)
            found = self.branch.get(node) or self.head(node)
            if found:
                return found, "hierarchy", node
            node = self.tree[node]
        words = set(key.split(" "))
        for group, body in self.groups.items():
            if any(
                normalize_tag(w) in words or (" " in normalize_tag(w) and normalize_tag(w) in key)
                for w in body.get("words", [])
            ):
                return UNMAPPED + group, "unmapped", "word"
        return UNMAPPED + self.default_group, "unmapped", ""


def derive(mb_names: list[str], rules: dict, tree: dict[str, str | None]):
    d = Deriver(rules, tree)
    return d, {name: d.decide(name) for name in mb_names}


# ---------------------------------------------------------------------------------------------
# Explanation


def _rule_comment(section: str, name: str) -> str:
    """The comment on `name`'s line in genre_rules.toml's [section] (the reason an override gives)."""
    current, key = None, normalize_tag(name)
    for line in RULES.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            current = line.strip("[] ")
        elif current == section and line.startswith('"') and "=" in line:
            left, _, right = line.partition("=")
            if normalize_tag(left.strip().strip('"')) == key:
                return right.partition("#")[2].strip()
    return ""


def explain(name: str, d: Deriver, rules: dict, reference: Path | None = None) -> str:
    """Which step decided `name` and why, and what the seven public hierarchies say about it."""
    genre, step, detail = d.decide(name)
    key = normalize_tag(name)
    lines = [f"{name}: {genre}"]
    if step == "override":
        lines.append(f"  decided by: override ({_rule_comment('overrides', name) or 'no reason written'})")
    elif step == "anchor":
        lines.append(f"  decided by: anchor (a defining name of {genre} in genre_rules.toml [anchors])")
    elif step == "head":
        words = key.split(" ")
        plain = next((" ".join(words[i:]) for i in range(len(words)) if " ".join(words[i:]) in d.anchor), None)
        if plain and d.anchor[plain] != genre:
            lines.append(
                f"  decided by: the refined fusion rule: its head {plain!r} is {d.anchor[plain]}, a weak head, and its "
                f"modifier names {genre}, which takes such fusions ([head] weak_heads, taking_modifiers)"
            )
        else:
            lines.append(f"  decided by: the fusion rule: its head {plain or key!r} is an anchor of {genre}")
    elif step == "hierarchy":
        lines.append(f"  decided by: the beets tree: its nearest node that resolves is {detail!r}")
    else:
        lines.append("  decided by: no rule places it: unmapped" + (" (a word of the group)" if detail else ""))
    reason = {normalize_tag(k): v for k, v in rules.get("contested", {}).items()}.get(key)
    if reason:
        lines.append(f"  contested: {reason}")
    sys.path.insert(0, str(ROOT / "scripts"))
    import hierarchies

    folder = reference or hierarchies.REFERENCE
    if not (folder / "external_hierarchies.tsv").is_file():
        lines.append(f"  sources: not available ({folder} has no external_hierarchies.tsv)")
        return "\n".join(lines)
    from equigen.core.taxonomy import load_taxonomy

    views = hierarchies.views_of(name, hierarchies.load(load_taxonomy(OUTPUT), folder))
    if not views:
        lines.append("  sources: none of the seven places it")
    for p in views:
        theirs = "|".join(sorted(p.theirs)) or "none of the 15"
        lines.append(f"  {p.source:<9} {' ; '.join(p.parents)} -> {theirs}: {p.verdict}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Output


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wrap(items: list[str], indent: str = "  ", width: int = 100) -> list[str]:
    lines, line = [], indent
    for item in items:
        piece = _q(item) + ","
        if len(line) + len(piece) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += piece + " "
    if line.strip():
        lines.append(line.rstrip())
    return lines


def render(mb_names: list[str], rules: dict, tree: dict[str, str | None]) -> str:
    d, decided = derive(mb_names, rules, tree)
    by_target: dict[str, list[str]] = {}
    for name, (tgt, _, _) in decided.items():
        by_target.setdefault(tgt, []).append(name)
    mb_keys = {normalize_tag(n): n for n in mb_names}
    steps = Counter(step for _, step, _ in decided.values())
    mapped = sum(1 for t, _, _ in decided.values() if not t.startswith(UNMAPPED))

    out: list[str] = []
    header = rules["header"].strip().splitlines()
    out += ["# " + line if line else "#" for line in header]
    out += [
        "#",
        f"# {len(mb_names)} MusicBrainz genre names: {mapped} mapped ({100 * mapped / len(mb_names):.1f} %), "
        f"{len(mb_names) - mapped} unmapped. Decided by: "
        + ", ".join(f"{s} {steps.get(s, 0)}" for s in ("override", "anchor", "head", "hierarchy", "unmapped"))
        + ".",
        "# DO NOT EDIT BY HAND: change manifests/sources/genre_rules.toml and run scripts/derive_genres.py.",
        "",
        "[resolution]",
        '# A release group\'s genre is the one with the most summed tag votes. It is "ambiguous" when the',
        "# runner-up's votes reach `ambiguity_ratio` of the winner's (0.8 = within 20 %); \"unlabelled\" when",
        "# no tag maps to any genre or the winner has fewer than `min_votes` votes.",
        f"ambiguity_ratio = {rules['resolution']['ambiguity_ratio']}",
        f"min_votes = {rules['resolution']['min_votes']}",
        "",
        "[aliases]",
        "# Common spellings that are not MusicBrainz names (nor equal to one after normalization)"
        " -> the name they mean.",
    ]
    for alias, goal in rules["aliases"].items():
        if normalize_tag(alias) in mb_keys:
            raise SystemExit(f"{RULES.name}: alias {alias!r} is itself a MusicBrainz name")
        if normalize_tag(goal) not in mb_keys:
            raise SystemExit(f"{RULES.name}: alias {alias!r} points at {goal!r}, which is no MusicBrainz name")
        out.append(f"{_q(alias)} = {_q(mb_keys[normalize_tag(goal)])}")

    for genre in d.genres:
        names = by_target.get(genre, [])
        broad = [mb_keys[normalize_tag(b)] for b in rules["genres"][genre]["broad"]]
        wrong = [b for b in broad if decided[b][0] != genre]
        if wrong:
            raise SystemExit(f"{RULES.name}: broad name(s) {wrong} of {genre!r} are decided for another genre")
        rest = sorted((n for n in names if n not in broad), key=lambda n: (normalize_tag(n), n))
        out += [
            "",
            f"[genres.{_q(genre) if not genre.replace('_', '').isalnum() else genre}]",
            f"# {len(names)} names",
            "broad = [" + ", ".join(_q(b) for b in broad) + "]",
            "tags = [",
        ]
        out += _wrap(broad + rest)
        out.append("]")

    out += ["", "[unmapped]", "# MusicBrainz genre names that belong to none of the 15 genres, by reason.", "tags = ["]
    for group, body in d.groups.items():
        names = sorted(by_target.get(UNMAPPED + group, []), key=lambda n: (normalize_tag(n), n))
        out.append(f"  # {body['title']} ({len(names)})")
        out += _wrap(names)
    out.append("]")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if manifests/genres.toml is out of date")
    ap.add_argument(
        "--explain",
        nargs="*",
        metavar="NAME",
        help="print each name's decision and step; with NAMEs, why each was decided so and what the seven public "
        "hierarchies say of it (read from --reference)",
    )
    ap.add_argument("--reference", help="folder of external_hierarchies.tsv (default ../shared/reference)")
    args = ap.parse_args(argv)
    mb, rules, tree = read_mb_names(), read_rules(), read_tree()
    if args.explain is not None:
        d, decided = derive(mb, rules, tree)
        if not args.explain:
            for name, (tgt, step, detail) in decided.items():
                print(f"{tgt}\t{step}\t{detail}\t{name}")
            return 0
        for name in args.explain:
            print(explain(name, d, rules, Path(args.reference) if args.reference else None))
        return 0
    text = render(mb, rules, tree)
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python scripts/derive_genres.py")
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
