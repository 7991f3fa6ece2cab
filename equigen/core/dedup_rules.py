"""Near-duplicate search over 64-bit pHashes and duplicate clustering (pure: numpy/pandas, no I/O).

`near_pairs` is exact (every pair within the radius, nothing else) and sub-quadratic: a
multi-index hash (Norouzi et al., "Fast search in Hamming space with multi-index hashing", 2012).
The 64 bits are cut into m chunks; if two hashes are within r bits, then with r = s*m + a
(0 <= a < m) one of the first a+1 chunks differs in at most s bits or one of the others in at
most s-1 bits (else the distance would be at least r+1). So, per chunk, each bucket is joined
with the buckets whose chunk value is within that chunk's radius, and only those candidate pairs
get a full 64-bit popcount. m is chosen per call by a small cost model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain, combinations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from equigen.core.records import require_columns
from equigen.core.taxonomy import NO_GENRE

_MAX_CHUNK_BITS = 22  # bucket tables have 2**bits entries
_BLOCK = 1 << 22  # candidate pairs verified per block (bounds memory)
# Relative costs, fitted to timings at 150k and 1M: per probed item per pattern, per candidate pair.
_COST_ITEM, _COST_PAIR = 1.0, 2.5


def hashes_from_hex(hexes: list[str]) -> np.ndarray:
    """16-hex-digit strings -> uint64 array (big-endian, as imagehash prints them)."""
    hexes = list(hexes)
    if any(len(h) != 16 for h in hexes):
        bad = next(h for h in hexes if len(h) != 16)
        raise ValueError(f"a pHash must be 16 hex digits, got {bad!r}")
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u8").astype(np.uint64)


if hasattr(np, "bitwise_count"):  # numpy >= 2.0

    def popcount(x: np.ndarray) -> np.ndarray:
        return np.bitwise_count(x)
else:
    _BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)

    def popcount(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.uint64)
        return _BYTE_BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


@dataclass(frozen=True)
class _Chunk:
    offset: int
    bits: int
    radius: int  # -1: this chunk is not probed

    def values(self, hashes: np.ndarray) -> np.ndarray:
        mask = np.uint64((1 << self.bits) - 1)
        return ((hashes >> np.uint64(self.offset)) & mask).astype(np.int64)

    def patterns(self) -> np.ndarray:
        """All chunk values with at most `radius` bits set (XOR masks to probe), ascending (so grouped by top bit)."""
        out = [sum(1 << b for b in bits) for t in range(self.radius + 1) for bits in combinations(range(self.bits), t)]
        return np.array(sorted(out), dtype=np.int64)


def _plan(m: int, radius: int) -> list[_Chunk]:
    """m chunks of 64 bits with the per-chunk probe radii of the pigeonhole argument above."""
    sizes = [64 // m + (1 if k >= m - 64 % m else 0) for k in range(m)]  # ascending; smaller chunks first
    s, a = divmod(radius, m)
    chunks, offset = [], 0
    for k, bits in enumerate(sizes):
        chunks.append(_Chunk(offset, bits, s if k <= a else s - 1))
        offset += bits
    return chunks


def _cost(chunks: list[_Chunk], n: int) -> float:
    """Estimated work: each probe pattern scans half the items and verifies n^2 / 2^(bits+1) candidates."""
    total = 0.0
    for c in chunks:
        if c.radius >= 0:
            probes = sum(math.comb(c.bits, t) for t in range(c.radius + 1))
            total += probes * (_COST_ITEM * n / 2 + _COST_PAIR * n * n / (1 << c.bits) / 2)
    return total


def _choose_plan(n: int, radius: int) -> list[_Chunk]:
    m_min = math.ceil(64 / _MAX_CHUNK_BITS)
    options = [_plan(m, radius) for m in range(m_min, max(m_min, min(64, radius + 1)) + 1)]
    return min(options, key=lambda chunks: _cost(chunks, n))


def _ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c), counts > 0, without a Python loop."""
    ends = np.cumsum(counts)
    steps = np.ones(int(ends[-1]), dtype=starts.dtype)
    steps[0] = starts[0]
    steps[ends[:-1]] = starts[1:] - (starts[:-1] + counts[:-1] - 1)
    return np.cumsum(steps, dtype=starts.dtype)


def _expand(pos: np.ndarray, starts: np.ndarray, counts: np.ndarray):
    """Blocks of the pairs (pos[t], q), q in [starts[t], starts[t] + counts[t]): yields (pos, counts, q) per block.

    pos is not repeated here: the caller repeats what it needs (hash values, not indices) and maps
    the few surviving pairs back to their pos with the block's counts.
    """
    keep = counts > 0
    pos, starts, counts = pos[keep], starts[keep], counts[keep]
    ends = np.cumsum(counts, dtype=np.int64)
    lo = 0
    while lo < len(counts):
        base = ends[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + _BLOCK, side="right")))
        yield pos[lo:hi], counts[lo:hi], _ragged_arange(starts[lo:hi], counts[lo:hi])
        lo = hi


def near_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    """All index pairs (i, j), i < j, with Hamming distance <= radius; shape (k, 2) int64, sorted."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    chunks = _choose_plan(n, min(radius, 64))
    found = []
    for k, chunk in enumerate(chunks):
        if chunk.radius < 0:
            continue
        # Work on positions in the order sorted by this chunk's value: a bucket is a slice.
        values = chunk.values(hashes)
        order = np.argsort(values, kind="stable")
        values, sorted_hashes = values[order], hashes[order]
        counts = np.bincount(values, minlength=1 << chunk.bits)
        starts = np.cumsum(counts) - counts
        occupied = counts > 0
        positions = np.arange(n)
        top_bit = -1
        for p in chunk.patterns():
            if p == 0:  # pairs inside one bucket: each position with the positions after it
                after = starts[values] + counts[values] - 1 - positions
                blocks = _expand(positions, positions + 1, after)
            else:
                # Each unordered pair once: probe from the item whose chunk value has p's top bit clear.
                if int(p).bit_length() - 1 != top_bit:
                    top_bit = int(p).bit_length() - 1
                    low = (values & (1 << top_bit)) == 0
                    low_pos, low_values = positions[low], values[low]
                target = low_values ^ p
                hit = np.flatnonzero(occupied[target])  # a byte table: stays in cache, unlike counts
                pos, target = low_pos[hit], target[hit]
                width = counts[target]
                # Most buckets hold one item: pair those without the ragged expansion.
                one = width == 1
                singles = (pos[one], width[one], starts[target[one]])
                blocks = chain([singles], _expand(pos[~one], starts[target[~one]], width[~one]))
            for pos, width, pj in blocks:
                x = np.repeat(sorted_hashes[pos], width) ^ sorted_hashes[pj]
                keep = np.flatnonzero(popcount(x) <= radius)  # few survive: index them, don't mask thrice
                pi = pos[np.searchsorted(np.cumsum(width), keep, side="right")]
                pj, x = pj[keep], x[keep]
                # A pair can qualify in several chunks: report it from the first one only.
                for earlier in chunks[:k]:
                    if earlier.radius >= 0 and len(x):
                        first = popcount(earlier.values(x)) > earlier.radius
                        pi, pj, x = pi[first], pj[first], x[first]
                if len(pi):
                    i, j = order[pi], order[pj]
                    found.append(np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def cluster_labels(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of n nodes joined by `pairs`; a cluster's label is its rank by smallest member."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[labels]


def _same_key_edges(keys: np.ndarray) -> np.ndarray:
    """Edges joining every row to the first row with the same key (NaN keys join nothing)."""
    codes, _ = pd.factorize(keys)
    rows = np.flatnonzero(codes >= 0)
    first = pd.Series(rows).groupby(codes[rows]).transform("min").to_numpy()
    keep = first != rows
    return np.stack([first[keep], rows[keep]], axis=1).astype(np.int64)


DEDUP_COLUMNS = ("mbid", "sha256", "phash", "width", "height", "genre", "first_release_date")


def dedup_rows(rows: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Cluster covers that are exact (same sha256) or near (pHash distance <= threshold) duplicates.

    Input columns: mbid, sha256, phash (16 hex digits), width, height, genre, first_release_date.
    Output, one row per input row, sorted by mbid: mbid, cluster_id, is_canonical, conflict, cluster_size.

    Duplicates chain: A~B and B~C put A, B and C in one cluster. cluster_id numbers clusters by
    their smallest mbid, so the result does not depend on the input row order.
    Canonical member (the one cover kept from a cluster): the largest pixel area, then the
    earliest first_release_date (missing dates last), then the smallest mbid.
    conflict: the members carry more than one genre, not counting 'ambiguous' and 'unlabelled'.
    """
    require_columns(rows, DEDUP_COLUMNS, "dedup_rows")
    df = rows.sort_values("mbid", kind="stable").reset_index(drop=True)
    n = len(df)
    edges = [_same_key_edges(df["sha256"].to_numpy(object)), _same_key_edges(df["phash"].to_numpy(object))]
    # Near pairs among distinct hashes only: identical hashes are already joined above, and a
    # blank cover repeated thousands of times would otherwise yield millions of pairs.
    has_hash = df["phash"].notna().to_numpy()
    distinct = df.loc[has_hash, "phash"].drop_duplicates()
    near = near_pairs(hashes_from_hex(distinct.tolist()), threshold)
    edges.append(distinct.index.to_numpy()[near])
    labels = cluster_labels(n, np.concatenate(edges))

    size = df[["width", "height"]].apply(pd.to_numeric, errors="coerce").fillna(0)
    area = (size["width"] * size["height"]).to_numpy()
    date = df["first_release_date"].fillna("").astype(str).to_numpy()
    no_date = date == ""
    # lexsort: last key is primary. Within a cluster: area desc, dated first, date asc, mbid asc (= row order).
    order = np.lexsort((np.arange(n), date, no_date, -area, labels))
    is_canonical = np.zeros(n, dtype=bool)
    first_of_cluster = np.r_[True, labels[order][1:] != labels[order][:-1]]
    is_canonical[order[first_of_cluster]] = True

    genre = df["genre"].where(~df["genre"].isin(list(NO_GENRE)))
    conflict = genre.groupby(labels).transform("nunique").to_numpy() > 1
    return pd.DataFrame(
        {
            "mbid": df["mbid"].to_numpy(),
            "cluster_id": labels,
            "is_canonical": is_canonical,
            "conflict": conflict,
            "cluster_size": np.bincount(labels)[labels],
        }
    )
