"""Choose dedup.DEFAULT_THRESHOLD: precision/recall of near-duplicate pairs vs the simulator's planted ones.

    python benchmarks/dedup_threshold.py [--seed 0] [--size 500] [--max-threshold 16]

Renders every cover of a default simulator world at `size` px, hashes it with images.inspect_image
(as `fetch` does), and for each threshold compares the pairs within that pHash distance (or with the
same sha256) against world.truth()["duplicates"] (re-encoded, resized, bordered, brightened copies).
"""

from __future__ import annotations

import argparse
import time
from itertools import combinations

import numpy as np
import pandas as pd

from equigen.core.dedup_rules import hashes_from_hex, near_pairs
from equigen.core.images import inspect_image
from equigen.simulator import World, WorldConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--max-threshold", type=int, default=16)
    args = parser.parse_args()

    started = time.perf_counter()
    world = World.build(WorldConfig(seed=args.seed))
    mbids = [rg.mbid for rg in world.release_groups if rg.art == "ok"]
    world.prerender(args.size, mbids)
    infos = [inspect_image(world.cover_bytes(m, args.size)) for m in mbids]
    print(f"{len(mbids)} covers rendered and hashed at {args.size} px in {time.perf_counter() - started:.0f} s")

    # A source may have several planted copies: every pair inside a group (source + its copies) is a
    # true duplicate pair; the transform is the copy's (copy-copy pairs: "copy+copy").
    index = {m: i for i, m in enumerate(mbids)}
    groups: dict[int, list[tuple[int, str]]] = {}
    for d in world.truth()["duplicates"]:
        groups.setdefault(index[d["source_mbid"]], []).append((index[d["mbid"]], d["transform"]))
    truth = {}
    for source, copies in groups.items():
        for copy, transform in copies:
            truth[tuple(sorted((source, copy)))] = transform
        for (a, _), (b, _) in combinations(copies, 2):
            truth[tuple(sorted((a, b)))] = "copy+copy"
    hashes = hashes_from_hex([info.phash for info in infos])
    sha = pd.Series([info.sha256 for info in infos])
    same_bytes = {tuple(p) for p in sha.groupby(sha).indices.values() if len(p) > 1 for p in [sorted(p)]}

    all_pairs = near_pairs(hashes, args.max_threshold)
    distance = np.bitwise_count(hashes[all_pairs[:, 0]] ^ hashes[all_pairs[:, 1]])
    rows = []
    for t in range(args.max_threshold + 1):
        found = {tuple(p) for p in all_pairs[distance <= t].tolist()} | same_bytes
        hits = found & truth.keys()
        by_transform = {
            tr: sum(1 for p in hits if truth[p] == tr) / max(1, sum(v == tr for v in truth.values()))
            for tr in sorted(set(truth.values()))
        }
        rows.append(
            {
                "threshold": t,
                "pairs": len(found),
                "true": len(hits),
                "false": len(found - hits),
                "precision": len(hits) / len(found) if found else 1.0,
                "recall": len(hits) / len(truth),
                **{f"recall_{k}": v for k, v in by_transform.items()},
            }
        )
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(f"{len(truth)} true duplicate pairs in {len(groups)} planted groups")
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
