"""The grouped stratified split on synthetic long-tailed worlds (pure, no I/O)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from equigen.core.defaults import SPLITS
from equigen.core.mbids import VARIOUS_ARTISTS
from equigen.publish.split_rules import group_ids, grouped_stratified_split, split_report


def synthetic_rows(
    n_genres: int = 15, per_genre: int = 4000, seed: int = 0, cap: int = 40, tail: float = 1.7
) -> pd.DataFrame:
    """A balanced selection with long-tailed artist sizes (<= cap per artist per genre), artists spanning
    genres, Various Artists and missing artist ids, and duplicate clusters that link different artists."""
    rng = np.random.default_rng(seed)
    rows, artists = [], []
    for g in range(n_genres):
        left = per_genre
        while left:
            size = min(int(rng.zipf(tail)), cap, left)
            if artists and rng.random() < 0.1:  # an artist already seen in another genre
                artist = artists[rng.integers(len(artists))]
            else:
                artist = f"artist-{len(artists):06d}"
                artists.append(artist)
            rows += [(f"genre-{g:02d}", artist)] * size
            left -= size
    frame = pd.DataFrame(rows, columns=["genre", "artist_mbid"])
    n = len(frame)
    frame.insert(0, "mbid", [f"rg-{i:07d}" for i in rng.permutation(n)])
    kind = rng.random(n)
    frame.loc[kind < 0.03, "artist_mbid"] = VARIOUS_ARTISTS
    frame.loc[(kind >= 0.03) & (kind < 0.04), "artist_mbid"] = None
    cluster = np.arange(n)
    pairs = rng.choice(n, size=(n // 200, 2), replace=False)
    cluster[pairs[:, 1]] = cluster[pairs[:, 0]]  # near-duplicates across artists
    frame["cluster_id"] = cluster
    return frame


def leaked(rows: pd.DataFrame, assignment: pd.Series, key: str, exclude=()) -> int:
    split = rows["mbid"].map(assignment)
    sub = rows.assign(split=split)[rows[key].notna() & ~rows[key].isin(exclude)]
    return int((sub.groupby(key)["split"].nunique() > 1).sum())


@pytest.fixture(scope="module")
def world() -> pd.DataFrame:
    return synthetic_rows()


@pytest.fixture(scope="module")
def world_split(world):
    return grouped_stratified_split(world, seed=0)


def test_every_item_gets_a_split(world, world_split):
    assert set(world_split.index) == set(world["mbid"])
    assert set(world_split.unique()) == set(SPLITS)


def test_no_artist_or_cluster_leakage(world, world_split):
    assert leaked(world, world_split, "artist_mbid", exclude=(VARIOUS_ARTISTS,)) == 0
    assert leaked(world, world_split, "cluster_id") == 0


def test_ratio_bound_at_60k(world, world_split):
    report = split_report(world, world_split)
    assert report.worst_dev_pp <= 0.5
    assert report.worst_share_dev_pp <= 0.5
    assert report.counts.to_numpy().sum() == len(world)
    assert sum(report.split_sizes.values()) == len(world) and set(report.split_sizes) == set(SPLITS)


def test_various_artists_is_not_one_group(world):
    groups = pd.Series(group_ids(world))
    va = world["artist_mbid"] == VARIOUS_ARTISTS
    assert va.sum() > 1000
    # VA covers only merge with others through duplicate clusters, never all together.
    assert groups[va].nunique() > 0.9 * va.sum()


def test_missing_artists_are_singletons_unless_clustered():
    rows = pd.DataFrame(
        {
            "mbid": ["a", "b", "c", "d"],
            "genre": ["x"] * 4,
            "artist_mbid": [None, None, VARIOUS_ARTISTS, VARIOUS_ARTISTS],
            "cluster_id": [1, 2, 3, 3],
        }
    )
    groups = group_ids(rows)
    assert len(set(groups[:2])) == 2 and groups[2] == groups[3]


def test_artist_and_cluster_links_are_transitive():
    rows = pd.DataFrame(
        {
            "mbid": list("abcde"),
            "genre": ["x", "y", "x", "y", "x"],
            "artist_mbid": ["A", "A", "B", "C", "D"],
            "cluster_id": [1, 2, 2, 3, 4],
        }
    )
    groups = group_ids(rows)
    assert groups[0] == groups[1] == groups[2] and len(set(groups)) == 3


def test_deterministic_and_order_independent(world, world_split):
    shuffled = world.sample(frac=1.0, random_state=7)
    again = grouped_stratified_split(shuffled, seed=0)
    assert again.sort_index().equals(world_split.sort_index())
    other = grouped_stratified_split(world, seed=1)
    assert not other.sort_index().equals(world_split.sort_index())


def test_tiny_inputs():
    rows = synthetic_rows(n_genres=3, per_genre=5, seed=3)
    assignment = grouped_stratified_split(rows, seed=0)
    assert len(assignment) == 15 and set(assignment) <= set(SPLITS)
    assert leaked(rows, assignment, "artist_mbid", exclude=(VARIOUS_ARTISTS,)) == 0
    empty = grouped_stratified_split(rows.iloc[:0])
    assert empty.empty


def test_bad_ratios():
    with pytest.raises(ValueError):
        grouped_stratified_split(synthetic_rows(2, 5), ratios=(0.5, 0.5, 0.5))


def test_speed_at_100k():
    rows = synthetic_rows(n_genres=20, per_genre=5000, seed=1)
    start = time.perf_counter()
    assignment = grouped_stratified_split(rows, seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    assert split_report(rows, assignment).worst_dev_pp <= 0.5


def test_missing_columns_are_named():
    rows = synthetic_rows(n_genres=2, per_genre=5).drop(columns=["genre", "artist_mbid"])
    with pytest.raises(ValueError, match=r"grouped_stratified_split needs columns \['genre', 'artist_mbid'\]"):
        grouped_stratified_split(rows)
    with pytest.raises(ValueError, match=r"group_ids needs columns \['artist_mbid'\]"):
        group_ids(rows)
    with pytest.raises(ValueError, match=r"split_report needs columns \['genre', 'artist_mbid'\]"):
        split_report(rows, pd.Series(dtype=object))


def test_cluster_id_is_optional():
    rows = synthetic_rows(n_genres=2, per_genre=5).drop(columns=["cluster_id"])
    assignment = grouped_stratified_split(rows, seed=0)
    assert split_report(rows, assignment).n_groups == len(set(group_ids(rows)))
