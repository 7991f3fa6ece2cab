"""Grouped, genre-stratified 70/15/15 split: split_rules vs scikit-learn StratifiedGroupKFold and GroupShuffleSplit.

    python benchmarks/bench_split.py [--items 100000] [--artists 10000] [--genres 15] [--smoke] [--ours-only]

Data: `items` covers by `artists` artists whose sizes are long-tailed (lognormal, sigma 1.3, capped at
60x the median weight: at 100k/10k most artists have a handful of covers, the largest several hundred);
each artist has a home genre (uneven genre popularity, ~1/rank^0.8) and 10% of covers are in another
genre; 0.5% of covers are near-duplicates of a cover by another artist (same cluster_id), which links the
two artists into one group; 2% are Various Artists compilations (each its own artist group).

All three methods get the same groups (equigen.publish.split_rules.group_ids: artist ∪ duplicate cluster) and the
same 70/15/15 target:
- ours: grouped_stratified_split(rows, (0.7, 0.15, 0.15), seed);
- StratifiedGroupKFold(20, shuffle=True), folds 0-13 -> train, 14-16 -> validation, 17-19 -> test;
- GroupShuffleSplit: train 70% of groups vs the rest, then the rest 50/50 by groups.
Measured: worst per-genre deviation from the target fraction in any split (pp; split_report's
worst_dev_pp), worst deviation of a genre's share of a split from its overall share (worst_share_dev_pp),
groups found in more than one split (leakage), and wall time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from equigen.core.defaults import SPLITS  # noqa: E402
from equigen.core.mbids import VARIOUS_ARTISTS  # noqa: E402
from equigen.publish.split_rules import group_ids, grouped_stratified_split, split_report  # noqa: E402

NAME = "bench_split"
RATIOS = (0.7, 0.15, 0.15)


def make_rows(n_items: int, n_artists: int, n_genres: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    genre_w = 1.0 / np.arange(1, n_genres + 1) ** 0.8  # uneven genre popularity
    genre_w /= genre_w.sum()
    artist_genre = rng.choice(n_genres, size=n_artists, p=genre_w)
    size_w = np.minimum(rng.lognormal(0.0, 1.3, size=n_artists), 60.0)  # long tail of artist sizes
    size_w /= size_w.sum()
    n_va = int(0.02 * n_items)
    n_main = n_items - n_va
    # every artist has at least one cover; the rest are drawn by the Zipf weights
    artist = np.concatenate([np.arange(n_artists), rng.choice(n_artists, size=n_main - n_artists, p=size_w)])
    genre = artist_genre[artist].copy()
    off = rng.random(n_main) < 0.10
    genre[off] = rng.choice(n_genres, size=int(off.sum()), p=genre_w)
    artist_ids = np.array([f"artist-{a:06d}" for a in artist], dtype=object)
    va_genre = rng.choice(n_genres, size=n_va, p=genre_w)
    artist_ids = np.concatenate([artist_ids, np.array([VARIOUS_ARTISTS] * n_va, dtype=object)])
    genre = np.concatenate([genre, va_genre])
    perm = rng.permutation(n_items)
    artist_ids, genre = artist_ids[perm], genre[perm]
    cluster = np.arange(n_items)
    n_dup = int(0.005 * n_items)
    src, dst = rng.choice(n_items, size=n_dup, replace=False), rng.choice(n_items, size=n_dup, replace=False)
    cluster[dst] = cluster[src]
    return pd.DataFrame(
        {
            "mbid": [f"rg-{i:07d}" for i in range(n_items)],
            "genre": [f"genre-{g:02d}" for g in genre],
            "artist_mbid": artist_ids,
            "cluster_id": cluster,
        }
    )


def evaluate(rows: pd.DataFrame, assignment: pd.Series, groups: np.ndarray) -> dict:
    rep = split_report(rows, assignment, RATIOS)
    split = rows["mbid"].map(assignment).to_numpy()
    per_group = pd.Series(split).groupby(groups).nunique()
    artists = rows["artist_mbid"].where(rows["artist_mbid"] != VARIOUS_ARTISTS)
    per_artist = pd.Series(split).groupby(artists.to_numpy()).nunique()
    per_cluster = pd.Series(split).groupby(rows["cluster_id"].to_numpy()).nunique()
    sizes = {s: int((split == s).sum()) for s in SPLITS}
    return {
        "worst_dev_pp": rep.worst_dev_pp,
        "worst_share_dev_pp": rep.worst_share_dev_pp,
        "leaked_groups": int((per_group > 1).sum()),
        "leaked_artists": int((per_artist > 1).sum()),
        "leaked_clusters": int((per_cluster > 1).sum()),
        "split_fractions": {s: round(v / len(rows), 4) for s, v in sizes.items()},
    }


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--artists", type=int, default=10_000)
    p.add_argument("--genres", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.smoke:
        args.items, args.artists = 4000, 400
    rows = make_rows(args.items, args.artists, args.genres, args.seed)
    groups_for_eval = group_ids(rows)
    details = {
        "items": len(rows),
        "artists": args.artists,
        "genres": args.genres,
        "groups": int(groups_for_eval.max()) + 1,
        "largest_group": int(np.bincount(groups_for_eval).max()),
    }

    t0 = time.perf_counter()
    ours = grouped_stratified_split(rows, RATIOS, seed=args.seed)
    t_ours = time.perf_counter() - t0
    ev_ours = evaluate(rows, ours, groups_for_eval)
    details["ours"] = {**ev_ours, "seconds": t_ours}
    ours_txt = (
        f"{ev_ours['worst_dev_pp']:.2f} pp (share {ev_ours['worst_share_dev_pp']:.2f} pp), "
        f"{ev_ours['leaked_groups']} leaked, {t_ours:.2f} s"
    )
    goal = "<= 0.5 pp, 0 leaked groups, <= 5 s"
    met = bool(
        max(ev_ours["worst_dev_pp"], ev_ours["worst_share_dev_pp"]) <= 0.5
        and ev_ours["leaked_groups"] == 0
        and t_ours <= 5
    )
    rows_out = []
    sk = None if args.ours_only else C.anchor("sklearn", "scikit-learn", install=not args.no_install)
    if sk is not None:
        from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

        # Same grouping as ours (so leakage is judged on the same rule), computed outside the timing.
        sorted_rows = rows.sort_values("mbid", kind="stable").reset_index(drop=True)
        groups = group_ids(sorted_rows)
        y = pd.factorize(sorted_rows["genre"], sort=True)[0]
        X = np.zeros((len(sorted_rows), 1))
        idx = sorted_rows["mbid"].to_numpy()

        t0 = time.perf_counter()
        sgkf = StratifiedGroupKFold(n_splits=20, shuffle=True, random_state=args.seed)
        fold = np.empty(len(sorted_rows), dtype=np.int64)
        for k, (_, test) in enumerate(sgkf.split(X, y, groups)):
            fold[test] = k
        names = np.where(fold < 14, "train", np.where(fold < 17, "validation", "test"))
        t_sgkf = time.perf_counter() - t0
        ev = evaluate(rows, pd.Series(names, index=idx), groups_for_eval)
        details["sklearn_StratifiedGroupKFold"] = {**ev, "seconds": t_sgkf}
        rows_out.append(
            C.row(
                f"Split {len(rows):,} items / {args.artists:,} artists / {args.genres} genres: "
                "vs StratifiedGroupKFold(20) 14/3/3",
                ours_txt,
                f"{ev['worst_dev_pp']:.2f} pp (share {ev['worst_share_dev_pp']:.2f} pp), "
                f"{ev['leaked_groups']} leaked, {t_sgkf:.2f} s (scikit-learn {C.version_of('scikit-learn')})",
                t_sgkf / t_ours,
                goal,
                met,
                f"ratio = time; split sizes ours {ev_ours['split_fractions']}, sklearn {ev['split_fractions']}",
            )
        )

        t0 = time.perf_counter()
        first = GroupShuffleSplit(n_splits=1, train_size=0.7, random_state=args.seed)
        train_i, rest_i = next(first.split(X, y, groups))
        second = GroupShuffleSplit(n_splits=1, train_size=0.5, random_state=args.seed)
        val_j, test_j = next(second.split(X[rest_i], y[rest_i], groups[rest_i]))
        names = np.empty(len(sorted_rows), dtype=object)
        names[train_i], names[rest_i[val_j]], names[rest_i[test_j]] = "train", "validation", "test"
        t_gss = time.perf_counter() - t0
        ev = evaluate(rows, pd.Series(names, index=idx), groups_for_eval)
        details["sklearn_GroupShuffleSplit"] = {**ev, "seconds": t_gss}
        rows_out.append(
            C.row(
                f"Split {len(rows):,} items / {args.artists:,} artists / {args.genres} genres: "
                "vs GroupShuffleSplit 70/15/15",
                ours_txt,
                f"{ev['worst_dev_pp']:.2f} pp (share {ev['worst_share_dev_pp']:.2f} pp), "
                f"{ev['leaked_groups']} leaked, {t_gss:.2f} s",
                t_gss / t_ours,
                goal,
                met,
                f"ratio = time; GroupShuffleSplit sizes {ev['split_fractions']} "
                "(it splits groups, not items, and does not stratify)",
            )
        )
    else:
        rows_out.append(C.row(f"Split {len(rows):,} items (ours only)", ours_txt, "-", None, goal, met))
    print(details)
    C.write_results(NAME, rows_out, args, details)


if __name__ == "__main__":
    main()
