"""The training loader as it was before issue 26 (main at a9ddd69), kept for benchmarks/bench_loader.py only.

Every shard's image bytes read into memory at start (Arrow buffers), a DistributedSampler, one cover decoded
per item with Pillow (draft at image_size * 1.3, so a 500 px cover feeding 224 px decodes at full size), the
torchvision v2 transform (RandomResizedCrop, flip, float normalise) in the worker, float batches.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from equigen.baseline.data import transforms
from equigen.core.errors import EquigenError, first_line
from equigen.publish import shards

COLUMNS = ("image", "label")


def _read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise EquigenError(f"{path}: not a readable Parquet shard ({first_line(e)})") from None


def _read_shard(path: Path) -> tuple[pa.Array, np.ndarray]:
    problems = shards.schema_problems(_read_schema(path), columns=COLUMNS)
    if problems:
        raise EquigenError(f"{path}: wrong schema: {'; '.join(problems)}")
    shards.check_shard_size(path)  # a hostile footer must not make us allocate gigabytes
    try:
        table = pq.read_table(path, columns=list(COLUMNS))
    except (pa.ArrowException, OSError) as e:
        raise EquigenError(f"{path}: corrupt Parquet shard ({first_line(e)})") from None
    images = table.column("image").combine_chunks()
    if images.null_count or table.column("label").null_count:
        raise EquigenError(f"{path}: null image or label")
    return images.field("bytes"), table.column("label").to_numpy().astype(np.int64)


class CoverDataset(Dataset):
    """Encoded images of one split; each item is decoded and transformed on access.

    The bytes stay in Arrow buffers (one per shard) so forked DataLoader workers share them
    instead of copying millions of Python objects.
    """

    def __init__(self, paths: list[Path], chunks: list[pa.Array], labels: np.ndarray, transform, decode_size: int):
        self.paths = paths
        self.chunks = chunks
        self.offsets = np.cumsum([0] + [len(c) for c in chunks])
        self.labels = labels
        self.transform = transform
        self.decode_size = decode_size

    def __len__(self) -> int:
        return len(self.labels)

    def with_transform(self, transform, decode_size: int) -> CoverDataset:
        """The same covers (the Arrow buffers are shared, not copied) under another preprocessing."""
        return CoverDataset(self.paths, self.chunks, self.labels, transform, decode_size)

    def image_bytes(self, i: int) -> bytes:
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.chunks[k][i - int(self.offsets[k])].as_py()

    def __getitem__(self, i: int):
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        row = i - int(self.offsets[k])
        try:
            img = Image.open(io.BytesIO(self.chunks[k][row].as_py()))
            # JPEG can decode at 1/2, 1/4, 1/8 scale directly: far cheaper for large covers.
            img.draft("RGB", (self.decode_size, self.decode_size))
            img = img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            why = "unknown format" if isinstance(e, UnidentifiedImageError) else first_line(e)
            raise EquigenError(f"{self.paths[k]}: row {row} is not a decodable image ({why})") from None
        return self.transform(img), int(self.labels[i])


def load_split(dataset_dir: Path, split: str, image_size: int, num_classes: int) -> CoverDataset:
    paths, chunks, labels = shards.split_shards(dataset_dir, split), [], []
    for path in paths:
        images, lab = _read_shard(path)
        if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
            raise EquigenError(f"{path}: label out of range 0..{num_classes - 1}")
        chunks.append(images)
        labels.append(lab)
    all_labels = np.concatenate(labels)
    if not len(all_labels):
        raise EquigenError(f"{dataset_dir}: the {split} split is empty")
    return CoverDataset(paths, chunks, all_labels, transforms(image_size, split == "train"), int(image_size * 1.3))


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; numpy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def train_loader(
    ds: CoverDataset, batch_size: int, workers: int, seed: int, rank: int, world: int, pin_memory: bool
) -> DataLoader:
    """Shuffled per epoch (call sampler.set_epoch); the same code path with or without DDP."""
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    # A last batch of one image breaks BatchNorm in training mode; drop the ragged tail when we can.
    drop_last = len(sampler) >= batch_size
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed + rank),
    )
