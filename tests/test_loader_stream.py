"""The streaming loader (equigen.baseline.data): each cover once per epoch across workers and ranks, a new
seeded order per epoch, memory bounded by row groups held, and decoding at reduced scale."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from equigen.baseline.data import (  # noqa: E402
    CoverStream,
    Normalizer,
    Preprocessing,
    dct_divisor,
    decode_crop,
    delivery_order,
    eval_box,
    eval_loader,
    load_split,
    train_box,
    train_loader,
    train_plan,
    transforms,
)

GENRES = ["a", "b", "c"]


def jpeg(seed: int, side: int = 40, fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def write_shards(root: Path, n: int, shards: int = 3, group: int = 5, side: int = 40, split: str = "train") -> Path:
    """n covers over `shards` shards of row groups of `group` rows; each cover's label is its row number mod 3
    and its pixels are seeded by its row number."""
    features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": GENRES}}
    schema = pa.schema(
        [("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("label", pa.int64())]
    ).with_metadata({b"huggingface": json.dumps({"info": {"features": features}}).encode()})
    (root / "data").mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, n, shards + 1).astype(int)
    for s in range(shards):
        rows = range(bounds[s], bounds[s + 1])
        table = pa.Table.from_pylist(
            [{"image": {"bytes": jpeg(i, side), "path": f"{i}.jpg"}, "label": i % 3} for i in rows], schema=schema
        )
        pq.write_table(table, root / "data" / f"{split}-{s:05d}-of-{shards:05d}.parquet", row_group_size=group)
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("stream"), 67)  # 67: ragged row groups and batches


def split_of(root: Path, size: int = 32, name: str = "train"):
    return load_split(root, name, size, len(GENRES))


def flat(plan) -> np.ndarray:
    return np.concatenate([b for batches in plan for b in batches])


def test_the_split_is_metadata_and_labels_only(shards):
    split = split_of(shards)
    assert len(split) == 67 and split.labels.tolist() == [i % 3 for i in range(67)]
    assert split.pieces[:, 3].sum() == 67 and split.pieces[:, 3].max() == 5
    assert split.image_bytes(42) == jpeg(42)


@pytest.mark.parametrize("workers", [1, 3])
def test_every_cover_once_per_epoch_in_a_new_seeded_order(shards, workers):
    split = split_of(shards)
    plans = [
        train_plan(split, batch_size=8, seed=0, epoch=e, rank=0, world=1, workers=workers, drop_last=False)
        for e in range(3)
    ]
    for plan in plans:
        rows = flat(plan)
        assert sorted(rows.tolist()) == list(range(67))  # each exactly once across workers
        assert sum(len(b) < 8 for b in flat_batches(plan)) == 1  # one ragged batch in the whole epoch
    orders = [np.concatenate(delivery_order(p)) for p in plans]
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    again = train_plan(split, batch_size=8, seed=0, epoch=1, rank=0, world=1, workers=workers, drop_last=False)
    assert np.array_equal(np.concatenate(delivery_order(again)), orders[1])  # seeded: the same epoch again
    other = train_plan(split, batch_size=8, seed=1, epoch=1, rank=0, world=1, workers=workers, drop_last=False)
    assert not np.array_equal(np.concatenate(delivery_order(other)), orders[1])
    # shuffled within row groups too: consecutive rows of a row group rarely stay neighbours
    neighbours = np.mean(np.abs(np.diff(orders[0])) == 1)
    assert neighbours < 0.3


def flat_batches(plan):
    return [b for batches in plan for b in batches]


def test_drop_last_keeps_every_batch_full(shards):
    split = split_of(shards)
    plan = train_plan(split, batch_size=8, seed=0, epoch=0, rank=0, world=1, workers=3, drop_last=True)
    batches = flat_batches(plan)
    assert all(len(b) == 8 for b in batches) and len(batches) == 67 // 8
    assert len(set(flat(plan).tolist())) == len(flat(plan))


def test_ddp_ranks_read_disjoint_row_groups_and_run_the_same_steps(shards):
    split = split_of(shards)
    starts = split.starts
    per_rank = [train_plan(split, batch_size=4, seed=3, epoch=2, rank=r, world=2, workers=2) for r in range(2)]
    steps = [len(flat_batches(p)) for p in per_rank]
    assert steps[0] == steps[1] > 0
    rows = [set(flat(p).tolist()) for p in per_rank]
    assert not rows[0] & rows[1]
    assert len(rows[0] | rows[1]) >= 67 - 2 * 5 - 2 * 4  # at most a row group's difference and a ragged batch

    def groups(rs):
        return set((np.searchsorted(starts, sorted(rs), side="right") - 1).tolist())

    assert not groups(rows[0]) & groups(rows[1])  # each rank its own row groups


def test_a_dataloader_with_workers_delivers_the_plan(shards):
    """Two worker processes: the batches arrive in the planned round-robin order, each cover once, and a
    new epoch reaches the persistent workers."""
    split = split_of(shards)
    ds = CoverStream(split, 8, 2, shuffle=True, seed=5, drop_last=False, with_rows=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    seen = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        got = [(x, y, r) for x, y, r in loader]
        rows = torch.cat([r for _, _, r in got]).numpy()
        assert np.array_equal(rows, ds.rows())
        assert sorted(rows.tolist()) == list(range(67))
        for x, y, r in got:
            assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32)
            assert y.tolist() == [i % 3 for i in r.tolist()]
        seen.append(rows)
    assert not np.array_equal(seen[0], seen[1])


def test_memory_held_is_bounded_by_row_groups_not_by_the_split(tmp_path):
    """The bytes a worker holds at once stay the same when the split grows 4x."""
    peaks = []
    for n in (40, 160):
        root = write_shards(tmp_path / f"n{n}", n, shards=2 if n == 40 else 8, group=5)
        ds = CoverStream(split_of(root), 8, 1, shuffle=True, block=2, drop_last=False)
        assert sum(len(x) for x, _ in ds) == n
        peaks.append(ds.peak_bytes)
    one_group = 5 * max(len(jpeg(i)) for i in range(160)) + 1024
    assert peaks[0] <= 2 * one_group and peaks[1] <= 2 * one_group
    assert abs(peaks[1] - peaks[0]) <= one_group


def test_eval_loader_covers_the_split_in_order_and_train_loader_runs(shards):
    split = split_of(shards, name="train")
    loader, rows = eval_loader(split, 16, 0, rank=0, world=1, pin_memory=False)
    assert rows.tolist() == list(range(67))
    assert torch.cat([r for _, _, r in loader]).tolist() == list(range(67))
    parts = [eval_loader(split, 16, 0, rank=r, world=2, pin_memory=False)[1] for r in range(2)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(67))  # unpadded, nothing twice
    train = train_loader(split, 16, 0, seed=0, rank=0, world=1, pin_memory=False)
    assert len(train) == 67 // 16 and all(len(x) == 16 for x, _ in train)


def test_decode_at_reduced_scale_matches_a_full_decode():
    """A 500 px cover at 224 px decodes at 1/2 scale, and the eval crop is close to the full-decode pipeline."""
    yy, xx = np.mgrid[0:500, 0:500]
    smooth = np.stack([xx * 255 // 500, yy * 255 // 500, (xx + yy) * 255 // 1000], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, format="JPEG", quality=92)
    data = buf.getvalue()
    prep = Preprocessing(224)
    assert dct_divisor(500, 500, *eval_box(500, 500, prep)[2:], 224) == 2
    assert dct_divisor(500, 500, 500, 500, 64) == 8 and dct_divisor(500, 500, 500, 500, 128) == 4
    assert dct_divisor(500, 500, 400, 400, 600) == 1
    ours = decode_crop(data, 224, "bilinear", lambda w, h: eval_box(w, h, prep))
    assert ours.shape == (3, 224, 224) and ours.dtype == torch.uint8
    reference = transforms(prep, False)(Image.open(io.BytesIO(data)).convert("RGB"))  # normalised floats
    mine = Normalizer(prep)(ours[None])[0]
    assert (mine - reference).abs().mean() < 0.05  # ~3 grey levels of 255 on average


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGB"), ("JPEG", "CMYK"), ("JPEG", "L"), ("PNG", "RGBA")])
def test_formats_libjpeg_turbo_declines_go_through_pillow(fmt, mode):
    data = jpeg(1, 80, fmt, mode)
    rng = np.random.default_rng(0)
    out = decode_crop(data, 32, "bicubic", lambda w, h: train_box(w, h, rng), flip=True)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8


def test_train_box_stays_inside_and_in_range():
    rng = np.random.default_rng(0)
    for w, h in [(500, 500), (300, 700), (1200, 400), (33, 33)]:
        for _ in range(50):
            left, top, cw, ch = train_box(w, h, rng)
            assert 0 <= left and 0 <= top and left + cw <= w and top + ch <= h and cw > 0 and ch > 0
