"""Near-duplicate search (exact vs brute force), clustering, and the dedup rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from equigen.core import dedup_rules as dedup
from equigen.core.dedup_rules import cluster_labels, dedup_rows, hashes_from_hex, near_pairs, popcount


def brute_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    i, j = np.triu_indices(len(hashes), 1)
    keep = popcount(hashes[i] ^ hashes[j]) <= radius
    return np.stack([i[keep], j[keep]], axis=1).astype(np.int64)


def planted(n: int, seed: int, high_bits: bool = False) -> np.ndarray:
    """Random hashes, a third of them copies of others with 0..8 bits flipped, and a few exact repeats."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    if high_bits:
        hashes |= np.uint64(1 << 63)
    for t in range(n // 3):
        value = hashes[rng.integers(0, n)]
        for bit in rng.choice(64, rng.integers(0, 9), replace=False):
            value ^= np.uint64(1) << np.uint64(bit)
        hashes[t] = value
    hashes[-3:] = hashes[-4]
    return hashes


@pytest.mark.parametrize("radius", [0, 1, 3, 6, 10, 16, 31])
@pytest.mark.parametrize("high_bits", [False, True])
def test_near_pairs_equals_brute_force(radius, high_bits):
    hashes = planted(900, seed=radius, high_bits=high_bits)
    got = near_pairs(hashes, radius)
    assert got.dtype == np.int64 and got.shape[1] == 2
    np.testing.assert_array_equal(got, brute_pairs(hashes, radius))


@pytest.mark.parametrize("chunks", [3, 4, 5, 8, 11])
@pytest.mark.parametrize("radius", [0, 4, 10])
def test_every_chunk_plan_is_exact(monkeypatch, chunks, radius):
    # The planner picks the chunk count by n; force each so small tests cover the plans big inputs use.
    monkeypatch.setattr(dedup, "_choose_plan", lambda n, r: dedup._plan(chunks, r))
    hashes = planted(1500, seed=chunks * 100 + radius, high_bits=True)
    np.testing.assert_array_equal(near_pairs(hashes, radius), brute_pairs(hashes, radius))


def test_near_pairs_blocks_big_buckets(monkeypatch):
    monkeypatch.setattr(dedup, "_BLOCK", 64)
    hashes = planted(600, seed=2)
    hashes[:200] = hashes[0]  # one bucket of 200 identical hashes: 19,900 pairs in many blocks
    np.testing.assert_array_equal(near_pairs(hashes, 6), brute_pairs(hashes, 6))


def test_near_pairs_edge_cases():
    assert near_pairs(np.array([], dtype=np.uint64), 5).shape == (0, 2)
    assert near_pairs(np.array([7], dtype=np.uint64), 5).shape == (0, 2)
    same = np.full(5, 2**64 - 1, dtype=np.uint64)
    assert len(near_pairs(same, 0)) == 10
    with pytest.raises(ValueError):
        near_pairs(same, -1)


def test_hashes_from_hex_keeps_high_bit():
    hashes = hashes_from_hex(["ffffffffffffffff", "8000000000000001", "0000000000000000"])
    assert hashes.dtype == np.uint64
    assert [int(h) for h in hashes] == [2**64 - 1, 2**63 + 1, 0]
    with pytest.raises(ValueError):
        hashes_from_hex(["abc"])


def test_cluster_labels_are_canonical():
    labels = cluster_labels(7, np.array([[5, 6], [1, 3], [3, 4]]))
    assert labels.tolist() == [0, 1, 2, 1, 1, 3, 3]
    assert cluster_labels(3, np.empty((0, 2), dtype=np.int64)).tolist() == [0, 1, 2]


def cover(mbid, phash, sha=None, w=500, h=500, genre="Rock", date="2000", artist="a"):
    return {
        "mbid": mbid,
        "sha256": sha or f"sha-{mbid}",
        "phash": phash,
        "width": w,
        "height": h,
        "genre": genre,
        "first_release_date": date,
        "artist_mbid": artist,
    }


def frame():
    base = 0x0123456789ABCDEF
    near = base ^ 0b1011  # 3 bits away
    far = base ^ ((1 << 40) - 1)  # 40 bits away
    return pd.DataFrame(
        [
            cover("m1", f"{base:016x}", w=250, h=250, date="1999"),
            cover("m2", f"{near:016x}", w=500, h=500, date="2005", genre="Jazz"),
            cover("m3", f"{near:016x}", w=500, h=500, date="2001"),
            cover("m4", f"{far:016x}"),
            # exact copies by bytes whose stored pHash differs (e.g. hashed by another version): still joined
            cover("m5", "ffffffffffffffff", sha="same", date=None),
            cover("m6", "0000000000000000", sha="same", date=None, genre="ambiguous"),
            cover("m7", "fffffffffffffff0", w=500, h=500, date=None, genre="unlabelled"),
        ]
    )


def test_dedup_rows_exact_near_canonical_conflict():
    out = dedup_rows(frame(), threshold=4).set_index("mbid")
    assert list(out.columns) == ["cluster_id", "is_canonical", "conflict", "cluster_size"]
    c = out["cluster_id"]
    assert c["m1"] == c["m2"] == c["m3"] and c["m4"] != c["m1"]
    assert c["m5"] == c["m6"] == c["m7"]  # m5~m6 exact, m5~m7 near (4 bits)
    # largest area, then earliest date: m3 (500 px, 2001) beats m2 (500 px, 2005) and m1 (250 px)
    assert out.loc[["m1", "m2", "m3"], "is_canonical"].tolist() == [False, False, True]
    assert out.loc["m4", "is_canonical"]
    assert out.groupby("cluster_id")["is_canonical"].sum().eq(1).all()
    assert out.loc["m1", "conflict"] and not out.loc["m4", "conflict"]
    assert not out.loc["m5", "conflict"]  # Rock + ambiguous + unlabelled is no conflict
    assert out.loc["m1", "cluster_size"] == 3 and out.loc["m4", "cluster_size"] == 1
    # clusters numbered by their smallest mbid
    assert sorted(out["cluster_id"].unique()) == list(range(3))
    assert c["m1"] == 0 and c["m4"] == 1 and c["m5"] == 2


def test_dedup_rows_dates_missing_last_then_mbid():
    rows = pd.DataFrame(
        [
            cover("b", "00000000000000ff", date=None),
            cover("c", "00000000000000ff", date="2010"),
            cover("a", "00000000000000ff", date=None),
        ]
    )
    out = dedup_rows(rows, threshold=0).set_index("mbid")
    assert out["is_canonical"].to_dict() == {"a": False, "b": False, "c": True}
    rows["first_release_date"] = None
    out = dedup_rows(rows, threshold=0).set_index("mbid")
    assert out["is_canonical"].to_dict() == {"a": True, "b": False, "c": False}


def test_dedup_rows_threshold_zero_keeps_near_apart():
    out = dedup_rows(frame(), threshold=0).set_index("mbid")
    assert out.loc["m1", "cluster_id"] != out.loc["m2", "cluster_id"]
    assert out.loc["m2", "cluster_id"] == out.loc["m3", "cluster_id"]  # identical pHash


def test_dedup_rows_independent_of_row_order():
    rng = np.random.default_rng(3)
    hashes = planted(400, seed=9)
    rows = pd.DataFrame(
        [
            cover(
                f"{k:04d}",
                f"{int(h):016x}",
                w=int(rng.integers(100, 600)),
                date=None if k % 5 == 0 else str(1960 + k % 50),
                genre=("Rock", "Jazz")[k % 2],
            )
            for k, h in enumerate(hashes)
        ]
    )
    first = dedup_rows(rows, threshold=8)
    for seed in range(3):
        shuffled = rows.sample(frac=1, random_state=seed)
        pd.testing.assert_frame_equal(dedup_rows(shuffled, threshold=8), first)
