"""Read EquiGen Parquet shards into torch Datasets that decode JPEGs lazily."""

from __future__ import annotations

import io
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.transforms import v2

from equigen.errors import EquigenError

SPLITS = ("train", "validation", "test")
SHARD_RE = re.compile(r"^(?P<split>[a-z]+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def shard_paths(dataset_dir: Path, split: str) -> list[Path]:
    """The split's shards in order; every shard i of n must be present."""
    data = dataset_dir / "data"
    if not data.is_dir():
        raise EquigenError(f"no dataset at {dataset_dir}: {data} is missing (write one with `equigen split`)")
    found: dict[int, Path] = {}
    totals: set[int] = set()
    for p in data.glob(f"{split}-*.parquet"):
        m = SHARD_RE.match(p.name)
        if m and m["split"] == split:
            found[int(m["i"])] = p
            totals.add(int(m["n"]))
    if not found:
        raise EquigenError(f"no {split} shards in {data} (expected {split}-00000-of-NNNNN.parquet)")
    if len(totals) != 1:
        raise EquigenError(f"{split} shards in {data} disagree on the shard count: {sorted(totals)}")
    n = totals.pop()
    missing = [i for i in range(n) if i not in found]
    if missing:
        name = f"{split}-{missing[0]:05d}-of-{n:05d}.parquet"
        raise EquigenError(f"{data / name} is missing ({len(found)} of {n} {split} shards present)")
    if max(found) >= n:
        raise EquigenError(f"{found[max(found)]}: shard index beyond the split's count of {n}")
    return [found[i] for i in range(n)]


def _check_schema(path: Path, schema: pa.Schema) -> None:
    image = schema.field("image").type if "image" in schema.names else None
    image_bytes = None
    if isinstance(image, pa.StructType) and image.get_field_index("bytes") >= 0:
        image_bytes = image.field("bytes").type
    if image_bytes is None or not (pa.types.is_binary(image_bytes) or pa.types.is_large_binary(image_bytes)):
        raise EquigenError(f"{path}: wrong schema, expected column image: struct<bytes: binary, path: string>")
    if "label" not in schema.names or not pa.types.is_integer(schema.field("label").type):
        raise EquigenError(f"{path}: wrong schema, expected an integer column label")


def _read_shard(path: Path) -> tuple[pa.Array, np.ndarray]:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise EquigenError(f"{path}: not a readable Parquet shard ({one_line(e)})") from None
    _check_schema(path, schema)
    try:
        table = pq.read_table(path, columns=["image", "label"])
    except (pa.ArrowException, OSError) as e:
        raise EquigenError(f"{path}: corrupt Parquet shard ({one_line(e)})") from None
    images = table.column("image").combine_chunks()
    if images.null_count or table.column("label").null_count:
        raise EquigenError(f"{path}: null image or label")
    return images.field("bytes"), table.column("label").to_numpy().astype(np.int64)


def class_names(dataset_dir: Path) -> list[str]:
    """Genre names in label order, from the shards' Hugging Face ClassLabel metadata.

    Falls back to the (label, genre) pairs in the train split when the metadata is absent.
    """
    first = shard_paths(dataset_dir, "train")[0]
    try:
        schema = pq.read_schema(first)
    except (pa.ArrowException, OSError) as e:
        raise EquigenError(f"{first}: not a readable Parquet shard ({one_line(e)})") from None
    meta = (schema.metadata or {}).get(b"huggingface")
    if meta:
        try:
            names = json.loads(meta)["info"]["features"]["label"]["names"]
        except (ValueError, KeyError, TypeError):
            names = None
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return names
    if "genre" not in schema.names:
        raise EquigenError(f"{first}: no ClassLabel names in the huggingface metadata and no genre column")
    pairs: dict[int, str] = {}
    for path in shard_paths(dataset_dir, "train"):
        t = pq.read_table(path, columns=["label", "genre"])
        pairs.update(zip(t.column("label").to_pylist(), t.column("genre").to_pylist()))
    if sorted(pairs) != list(range(len(pairs))):
        raise EquigenError(f"{dataset_dir}: labels in the train split are not 0..N-1; cannot name the classes")
    return [pairs[i] for i in range(len(pairs))]


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

    def __getitem__(self, i: int):
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        row = i - int(self.offsets[k])
        try:
            img = Image.open(io.BytesIO(self.chunks[k][row].as_py()))
            # JPEG can decode at 1/2, 1/4, 1/8 scale directly: far cheaper for large covers.
            img.draft("RGB", (self.decode_size, self.decode_size))
            img = img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            why = "unknown format" if isinstance(e, UnidentifiedImageError) else one_line(e)
            raise EquigenError(f"{self.paths[k]}: row {row} is not a decodable image ({why})") from None
        return self.transform(img), int(self.labels[i])


def transforms(image_size: int, train: bool):
    common = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        return v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True),
                           v2.RandomHorizontalFlip(), *common])
    return v2.Compose([v2.PILToTensor(), v2.Resize(int(image_size * 1.14), antialias=True),
                       v2.CenterCrop(image_size), *common])


def load_split(dataset_dir: Path, split: str, image_size: int, num_classes: int) -> CoverDataset:
    paths, chunks, labels = shard_paths(dataset_dir, split), [], []
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


@dataclass
class Splits:
    names: list[str]
    train: CoverDataset
    validation: CoverDataset
    test: CoverDataset


def load_dataset(dataset_dir: Path, image_size: int) -> Splits:
    if not dataset_dir.is_dir():
        raise EquigenError(f"no dataset at {dataset_dir} (write one with `equigen split`)")
    names = class_names(dataset_dir)
    if len(names) < 2:
        raise EquigenError(f"{dataset_dir}: need at least 2 genres to train a classifier, found {len(names)}")
    return Splits(names, *(load_split(dataset_dir, s, image_size, len(names)) for s in SPLITS))


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; numpy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def train_loader(ds: CoverDataset, batch_size: int, workers: int, seed: int, rank: int, world: int,
                 pin_memory: bool) -> DataLoader:
    """Shuffled per epoch (call sampler.set_epoch); the same code path with or without DDP."""
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    # A last batch of one image breaks BatchNorm in training mode; drop the ragged tail when we can.
    drop_last = len(sampler) >= batch_size
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
                      pin_memory=pin_memory, persistent_workers=workers > 0, worker_init_fn=_seed_worker,
                      generator=torch.Generator().manual_seed(seed + rank))


def eval_loader(ds: CoverDataset, batch_size: int, workers: int, rank: int, world: int, pin_memory: bool,
                persistent: bool = True) -> tuple[DataLoader, np.ndarray]:
    """This rank's strided share of the split, unpadded, and the dataset indices it covers."""
    indices = np.arange(rank, len(ds), world)
    loader = DataLoader(Subset(ds, indices.tolist()), batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=pin_memory, persistent_workers=persistent and workers > 0)
    return loader, indices
