"""Near-duplicate search over 64-bit hashes: equigen.core.dedup_rules.near_pairs vs faiss, pybktree and imagededup.

    python benchmarks/bench_near_dup.py [--sizes 150000 1000000] [--radius 10] [--smoke] [--ours-only]

Data: n uniformly random 64-bit hashes; 1% of them are replaced by near-duplicates of other items
(0..8 bits flipped). Task: all pairs (i < j) within Hamming distance `radius`.

Ground truth: faiss IndexBinaryFlat range search (exact brute force) over everything at the smaller size;
at 1,000,000 (10^12 distance computations, too slow on 2 cores) on a random subsample of query
items against all n, and ours is checked on exactly those items. Recall for each method is measured
against that truth (restricted to the same items where subsampled).

Anchors too slow to run whole (pybktree, imagededup's BK-tree and Cython brute force, all Python per
query) are timed on a subsample of queries against the full index and extrapolated linearly in the
number of queries (stated in the row). Their recall is then measured on that subsample.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from equigen.core.dedup_rules import near_pairs, popcount  # noqa: E402

NAME = "bench_near_dup"


def make_hashes(n: int, seed: int = 0, dup_fraction: float = 0.01, max_flip: int = 8) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2) + rng.integers(
        0, 2, size=n
    ).astype(np.uint64)
    k = int(n * dup_fraction)
    idx = rng.permutation(n)
    src, dst = idx[:k], idx[k : 2 * k]
    for s, d in zip(src, dst):
        flips = rng.choice(64, size=rng.integers(0, max_flip + 1), replace=False)
        mask = np.uint64(sum(1 << int(b) for b in flips))
        h[d] = h[s] ^ mask
    return h, k


def to_bytes(h: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(h.astype("<u8")).view(np.uint8).reshape(-1, 8)


def pair_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return set(map(tuple, np.asarray(pairs, dtype=np.int64).tolist()))


def faiss_range_pairs(index, queries: np.ndarray, q_ids: np.ndarray, radius: int) -> np.ndarray:
    """Pairs (min, max) from a faiss binary range search (faiss returns distance < r: ask for radius + 1)."""
    lims, dist, labels = index.range_search(queries, radius + 1)
    qi = np.repeat(np.asarray(q_ids, dtype=np.int64), np.diff(lims).astype(np.int64))
    keep = (labels != qi) & (dist <= radius)
    a, b = qi[keep], labels[keep].astype(np.int64)
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def touching(pairs: np.ndarray, items: np.ndarray) -> np.ndarray:
    mask = np.isin(pairs[:, 0], items) | np.isin(pairs[:, 1], items)
    return pairs[mask]


def recall_on(found: set, truth: set) -> float:
    return len(found & truth) / len(truth) if truth else 1.0


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[150_000, 1_000_000])
    p.add_argument("--radius", type=int, default=10)
    p.add_argument("--truth-queries", type=int, default=20_000, help="subsample for ground truth above 200k")
    p.add_argument("--exact-up-to", type=int, default=200_000, help="full brute-force truth up to this n")
    p.add_argument("--slow-queries", type=int, default=100, help="queries timed for the Python-per-query anchors")
    args = p.parse_args()
    if args.smoke:
        args.sizes, args.truth_queries, args.slow_queries, args.exact_up_to = [3000, 8000], 1000, 20, 5000
    install = not args.no_install
    faiss = None if args.ours_only else C.anchor("faiss", "faiss-cpu", install=install)
    pybktree = None if args.ours_only else C.anchor("pybktree", install=install)
    imagededup = None if args.ours_only else C.anchor("imagededup", install=install)
    if faiss is not None:
        faiss.omp_set_num_threads(C.os.cpu_count() or 1)
    r = args.radius
    rows, details = [], {}
    for n in args.sizes:
        h, planted = make_hashes(n)
        d: dict = {"n": n, "planted": planted}
        t0 = time.perf_counter()
        ours = near_pairs(h, r)
        d["ours_s"] = t_ours = time.perf_counter() - t0
        d["ours_pairs"] = len(ours)
        ours_set = pair_set(ours)
        # ours must report only true pairs
        xo = h[ours[:, 0]] ^ h[ours[:, 1]]
        assert (popcount(xo) <= r).all() and (ours[:, 0] < ours[:, 1]).all()
        rng = np.random.default_rng(1)
        subsample = n > args.exact_up_to or faiss is None
        q_items = np.sort(rng.choice(n, size=min(n, args.truth_queries), replace=False)) if subsample else np.arange(n)
        d["truth_on"] = "all items" if not subsample else f"{len(q_items)} random items vs all {n}"
        truth = None
        if faiss is not None:
            hb = to_bytes(h)
            t0 = time.perf_counter()
            flat = faiss.IndexBinaryFlat(64)
            flat.add(hb)
            flat_pairs = faiss_range_pairs(flat, hb[q_items], q_items, r)
            t_flat_measured = time.perf_counter() - t0
            t_flat = t_flat_measured * (n / len(q_items))
            d["faiss_flat_s"] = t_flat
            d["faiss_flat_measured_s"] = t_flat_measured
            truth = pair_set(flat_pairs)
        else:
            # No faiss: numpy brute force for the subsample's queries.
            found = []
            for i in q_items:
                x = popcount(h ^ h[i])
                js = np.flatnonzero(x <= r)
                js = js[js != i]
                found.append(np.stack([np.minimum(i, js), np.maximum(i, js)], axis=1))
            truth = pair_set(np.concatenate(found)) if found else set()
        ours_sub = pair_set(touching(ours, q_items)) if subsample else ours_set
        d["truth_pairs"] = len(truth)
        d["ours_recall"] = recall_on(ours_sub, truth)
        d["ours_precision"] = len(ours_sub & truth) / len(ours_sub) if ours_sub else 1.0
        goal_s = 2.0 if n <= 150_000 else 60.0
        exact = d["ours_recall"] == 1.0 and d["ours_precision"] == 1.0
        ours_txt = f"{t_ours:.2f} s, recall {d['ours_recall']:.4f}"
        if faiss is not None:
            flat_txt = f"{t_flat:.1f} s{' (extrapolated from ' + str(len(q_items)) + ' queries)' if subsample else ''}"
            rows.append(
                C.row(
                    f"Near-dup search n={n:,}, r={r}: vs faiss IndexBinaryFlat",
                    ours_txt,
                    f"faiss Flat {flat_txt}, recall 1.0",
                    t_flat / t_ours,
                    f"exact, <= {goal_s:.0f} s",
                    exact and t_ours <= goal_s,
                    f"ground truth: {d['truth_on']}; {len(truth)} true pairs there",
                )
            )
            t0 = time.perf_counter()
            mh = faiss.IndexBinaryMultiHash(64, 4, 16)
            mh.nflip = 1
            mh.add(hb)
            mh_pairs = faiss_range_pairs(mh, hb, np.arange(n), r)
            d["faiss_multihash_s"] = t_mh = time.perf_counter() - t0
            mh_set = pair_set(touching(mh_pairs, q_items)) if subsample else pair_set(mh_pairs)
            d["faiss_multihash_recall"] = recall_on(mh_set, truth)
            rows.append(
                C.row(
                    f"Near-dup search n={n:,}, r={r}: vs faiss IndexBinaryMultiHash(4x16, nflip 1)",
                    ours_txt,
                    f"{t_mh:.2f} s, recall {d['faiss_multihash_recall']:.4f}",
                    t_mh / t_ours,
                    f"exact, <= {goal_s:.0f} s",
                    exact and t_ours <= goal_s,
                    "MultiHash is approximate",
                )
            )
        if n <= args.exact_up_to:
            sq = np.sort(rng.choice(n, size=min(n, args.slow_queries), replace=False))
            sq_truth = (
                {pr for pr in truth if pr[0] in set(sq.tolist()) or pr[1] in set(sq.tolist())}
                if not subsample
                else None
            )
            if pybktree is not None:
                t0 = time.perf_counter()
                items = [(int(v), i) for i, v in enumerate(h.tolist())]
                tree = pybktree.BKTree(lambda a, b: (a[0] ^ b[0]).bit_count(), items)
                t_build = time.perf_counter() - t0
                t0 = time.perf_counter()
                found = set()
                for i in sq.tolist():
                    for _, (_, j) in tree.find(items[i], r):
                        if j != i:
                            found.add((min(i, j), max(i, j)))
                t_q = time.perf_counter() - t0
                t_bk = t_build + t_q * n / len(sq)
                d["pybktree_s_extrapolated"] = t_bk
                d["pybktree_build_s"] = t_build
                rec = recall_on(found, sq_truth) if sq_truth is not None else None
                d["pybktree_recall_subsample"] = rec
                rows.append(
                    C.row(
                        f"Near-dup search n={n:,}, r={r}: vs pybktree",
                        ours_txt,
                        f"{t_bk:.0f} s (build {t_build:.1f} s + {len(sq)} queries x {n // len(sq)}, "
                        f"extrapolated), recall {rec if rec is None else f'{rec:.3f}'}",
                        t_bk / t_ours,
                        f"exact, <= {goal_s:.0f} s",
                        exact and t_ours <= goal_s,
                        "single process, pure Python BK-tree",
                    )
                )
            if imagededup is not None:
                from imagededup.handlers.search.brute_force_cython import BruteForceCython
                from imagededup.methods.hashing import Hashing

                hexes = {str(i): f"{v:016x}" for i, v in enumerate(h.tolist())}
                bf = BruteForceCython(hexes, Hashing.hamming_distance)
                t0 = time.perf_counter()
                found = set()
                for i in sq.tolist():
                    for name, _dist in bf.search(hexes[str(i)], r):
                        j = int(name)
                        if j != i:
                            found.add((min(i, j), max(i, j)))
                t_q = time.perf_counter() - t0
                workers = C.os.cpu_count() or 1
                t_idd = t_q * n / len(sq) / workers
                d["imagededup_s_extrapolated"] = t_idd
                rec = recall_on(found, sq_truth) if sq_truth is not None else None
                d["imagededup_recall_subsample"] = rec
                rows.append(
                    C.row(
                        f"Near-dup search n={n:,}, r={r}: vs imagededup (brute_force_cython)",
                        ours_txt,
                        f"{t_idd:.0f} s ({len(sq)} queries timed, x n / {workers} workers, "
                        f"extrapolated), recall {rec if rec is None else f'{rec:.3f}'}",
                        t_idd / t_ours,
                        f"exact, <= {goal_s:.0f} s",
                        exact and t_ours <= goal_s,
                        "imagededup's default search_method; rebuilds Python lists of all n hashes per query",
                    )
                )
        if faiss is None:
            rows.append(
                C.row(
                    f"Near-dup search n={n:,}, r={r} (ours only)",
                    ours_txt,
                    "-",
                    None,
                    f"exact, <= {goal_s:.0f} s",
                    exact and t_ours <= goal_s,
                    d["truth_on"],
                )
            )
        details[str(n)] = d
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items()}, flush=True)
    C.write_results(NAME, rows, args, details)


if __name__ == "__main__":
    main()
