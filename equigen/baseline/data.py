"""Read EquiGen Parquet shards into torch Datasets that decode JPEGs lazily."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.transforms import v2

from equigen import shards
from equigen.errors import EquigenError, first_line
from equigen.split import SPLITS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COLUMNS = ("image", "label")  # all that training reads


@dataclass(frozen=True)
class Preprocessing:
    """How covers become tensors: a pretrained model's own recipe (its weights' transforms), or ours from scratch.

    Evaluation resizes to image_size * resize_ratio and centre-crops image_size (torchvision's recipe:
    e.g. 232 -> 224 for ResNet-50's V2 weights); training takes a random resized crop and a flip.
    """

    image_size: int
    resize_ratio: float = 1.14
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    @classmethod
    def of_weights(cls, weights, image_size: int | None = None) -> Preprocessing:
        """The preprocessing a torchvision WeightsEnum member was trained with, at `image_size` if given."""
        t = weights.transforms()
        crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
        return cls(
            image_size=image_size or crop,
            resize_ratio=resize / crop,
            mean=tuple(float(x) for x in t.mean),
            std=tuple(float(x) for x in t.std),
            interpolation=t.interpolation.value,
        )

    def as_dict(self) -> dict:
        return {
            "image_size": self.image_size,
            "resize": int(self.image_size * self.resize_ratio),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }


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


def class_names(dataset_dir: Path) -> list[str]:
    """Genre names in label order, from the shards' Hugging Face ClassLabel metadata.

    Falls back to the (label, genre) pairs in the train split when the metadata is absent.
    """
    train = shards.split_shards(dataset_dir, "train")
    first = train[0]
    schema = _read_schema(first)
    try:
        return shards.class_names(schema)
    except EquigenError:
        pass
    if "genre" not in schema.names:
        raise EquigenError(f"{first}: no ClassLabel names in the huggingface metadata and no genre column")
    pairs: dict[int, str] = {}
    for path in train:
        shards.check_shard_size(path)
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


def transforms(prep: Preprocessing | int, train: bool):
    if isinstance(prep, int):
        prep = Preprocessing(prep)
    size = prep.image_size
    mode = v2.InterpolationMode(prep.interpolation)
    common = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(prep.mean), list(prep.std))]
    if train:
        return v2.Compose(
            [
                v2.PILToTensor(),
                v2.RandomResizedCrop(size, scale=(0.6, 1.0), interpolation=mode, antialias=True),
                v2.RandomHorizontalFlip(),
                *common,
            ]
        )
    resize = int(size * prep.resize_ratio)
    return v2.Compose(
        [v2.PILToTensor(), v2.Resize(resize, interpolation=mode, antialias=True), v2.CenterCrop(size), *common]
    )


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


@dataclass
class Splits:
    names: list[str]
    train: CoverDataset
    validation: CoverDataset
    test: CoverDataset

    def preprocessed(self, prep: Preprocessing) -> Splits:
        """The same covers under `prep` (training augmentation for train only)."""
        decode = int(prep.image_size * max(1.3, prep.resize_ratio))
        return replace(
            self,
            train=self.train.with_transform(transforms(prep, True), decode),
            validation=self.validation.with_transform(transforms(prep, False), decode),
            test=self.test.with_transform(transforms(prep, False), decode),
        )


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


def eval_loader(
    ds: CoverDataset, batch_size: int, workers: int, rank: int, world: int, pin_memory: bool, persistent: bool = True
) -> tuple[DataLoader, np.ndarray]:
    """This rank's strided share of the split, unpadded, and the dataset indices it covers."""
    indices = np.arange(rank, len(ds), world)
    loader = DataLoader(
        Subset(ds, indices.tolist()),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=persistent and workers > 0,
    )
    return loader, indices
