#!/usr/bin/env python3
"""Our taxonomy against seven public style -> genre hierarchies (Discogs, AllMusic, Last.fm, tagtraum, RYM, Apple,
eBay).

    python benchmarks/bench_taxonomy.py [PATH]      PATH: a folder holding external_hierarchies.tsv (or the file)
                                                     default ../shared/reference/; skipped with a message if absent

For every (source, style) whose parent corresponds to one of our 15 genres (manifests/sources/
hierarchy_correspondence.tsv, a reason per line) and that our taxonomy maps to a genre (as a tag would be matched):
agreement per source and overall, unweighted and weighted by the source's recording counts, and where the parent
is one of our 15 itself; the disagreements ranked by how many sources disagree and by recordings; the names the
sources place that we leave unmapped, and the names we do not know. Writes benchmarks/results/bench_taxonomy.json
(--smoke: benchmarks/work/smoke/), which make_results.py renders into RESULTS.md. No timing: nothing waits for a
quiet machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH.parent / "scripts"), str(BENCH)]

import hierarchies as H  # noqa: E402
from _common import row, write_results  # noqa: E402

from equigen.core.taxonomy import load_taxonomy, normalize_tag  # noqa: E402

GOAL_ALL, GOAL_DIRECT = 0.97, 0.96


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def reference_folder(arg: str | None) -> Path | None:
    path = Path(arg) if arg else H.REFERENCE
    if path.is_file():
        path = path.parent
    return path if (path / "external_hierarchies.tsv").is_file() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", help="folder with external_hierarchies.tsv (default ../shared/reference/)")
    ap.add_argument("--taxonomy", help="a genres.toml to measure (default: the shipped one)")
    ap.add_argument("--top", type=int, default=40, help="how many disagreements and unmapped names to print")
    ap.add_argument("--smoke", action="store_true", help="write under benchmarks/work/smoke/ (tests)")
    args = ap.parse_args(argv)
    folder = reference_folder(args.path)
    if folder is None:
        print(f"bench_taxonomy: skipped: no external_hierarchies.tsv at {args.path or H.REFERENCE}")
        return 0
    taxonomy = load_taxonomy(args.taxonomy)
    places = H.load(taxonomy, folder)

    print(f"{'source':<10} {'compared':>8} {'agree':>6} {'share':>8} {'weighted':>9}   direct: {'share':>8}")
    per_source = H.by_source(places)
    direct_per_source = {s: H.agreement((p for p in places if p.source == s), direct_only=True) for s in per_source}
    for s, a in per_source.items():
        d = direct_per_source[s]
        print(
            f"{s:<10} {a['compared']:>8} {a['agree']:>6} {pct(a['share']):>8} {pct(a['weighted_share']):>9}"
            f"   {d['compared']:>6} {pct(d['share']):>8}"
        )
    overall, direct = H.agreement(places), H.agreement(places, direct_only=True)
    ceiling = H.best_possible(places)
    print(
        f"{'overall':<10} {overall['compared']:>8} {overall['agree']:>6} {pct(overall['share']):>8} "
        f"{pct(overall['weighted_share']):>9}   {direct['compared']:>6} {pct(direct['share']):>8}"
    )
    share = pct(ceiling[0] / ceiling[1])
    print(f"ceiling: {ceiling[0]} of {ceiling[1]} ({share}) if every name took the genre most of its sources give it")
    if ceiling[0] / ceiling[1] < GOAL_ALL:
        # The sources contradict one another on these pairs: no choice of a genre per name agrees with all of them.
        print(
            f"  the goal of {GOAL_ALL:.0%} overall is above this ceiling: on {ceiling[1] - ceiling[0]} pairs the "
            "sources disagree with one another, so no labelling of names reaches it on this correspondence"
        )

    disagreements = H.by_name(places, H.DISAGREE)
    print(f"\nDisagreements ({len(disagreements)} names), by sources disagreeing, then recordings:")
    for d in disagreements[: args.top]:
        theirs = "; ".join(f"{s}: {'|'.join(g)}" for s, g in d["theirs"].items())
        print(f"  {d['sources']} vs {d['agreeing_sources']} agree  {d['name']!r:<28} ours {d['ours']:<14} {theirs}")
    unmapped = H.by_name(places, H.UNMAPPED)
    print(f"\nNames the sources place that we leave unmapped ({len(unmapped)}):")
    for d in unmapped[: args.top]:
        theirs = "; ".join(f"{s}: {'|'.join(g)}" for s, g in d["theirs"].items())
        print(f"  {d['sources']}  {d['name']!r:<28} {theirs}")
    unknown = [d for d in H.by_name(places, H.UNKNOWN) if d["sources"] >= 2]
    print(f"\nNames two or more sources place that the taxonomy does not know ({len(unknown)}):")
    print("  " + ", ".join(repr(d["name"]) for d in unknown[: args.top * 3]))

    contested = [d for d in disagreements if d["sources"] >= 2]
    reasons = {normalize_tag(k): v for k, v in H.contested_reasons().items()}
    unexplained = [d["name"] for d in contested if d["name"] not in reasons]
    print(f"\nNames two or more sources disagree on: {len(contested)}; without a reason in [contested]: {unexplained}")
    rows = [
        row(
            "Taxonomy vs 7 public genre hierarchies: (source, style) pairs whose parent is one of our 15 or "
            "corresponds to them",
            f"{pct(overall['share'])} agree ({overall['agree']} of {overall['compared']}; weighted by recordings "
            f"{pct(overall['weighted_share'])}); where the parent is one of the 15 itself {pct(direct['share'])} "
            f"({direct['agree']} of {direct['compared']})",
            "-",
            None,
            f">= {GOAL_ALL:.0%} overall, >= {GOAL_DIRECT:.0%} where the parent is one of the 15",
            bool((overall["share"] or 0) >= GOAL_ALL and (direct["share"] or 0) >= GOAL_DIRECT and not unexplained),
            notes=f"{len(contested)} names on which two or more sources disagree with us, "
            f"{len(contested) - len(unexplained)} with a written reason in genre_rules.toml [contested]; "
            f"ceiling (every name given the genre most of its sources give it) {pct(ceiling[0] / ceiling[1])}; "
            "per source: " + ", ".join(f"{s} {pct(a['share'])}" for s, a in per_source.items()),
        )
    ]
    write_results(
        "bench_taxonomy",
        rows,
        args,
        {
            "reference": str(folder.resolve().relative_to(BENCH.parent.parent, walk_up=True))
            if sys.version_info >= (3, 12)
            else "../shared/reference",
            "overall": overall,
            "direct": direct,
            "per_source": per_source,
            "per_source_direct": direct_per_source,
            "ceiling": {"agree": ceiling[0], "compared": ceiling[1]},
            "unexplained": unexplained,
            "disagreements": disagreements,
            "unmapped": unmapped,
            "unknown": unknown,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
