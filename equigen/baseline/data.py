"""Stream EquiGen Parquet shards into torch batches, row group by row group, decoding JPEGs at reduced scale.

Memory does not grow with the dataset: a split is held as its Parquet metadata and its labels (8 bytes a
cover); cover bytes are read one row group at a time inside the loader workers, each worker holding at most
`ROW_GROUPS_PER_BLOCK` row groups. Training order is seeded and new every epoch: the split's row groups are
shuffled, dealt to the ranks (DDP), cut into blocks of `ROW_GROUPS_PER_BLOCK` row groups whose rows are
shuffled together, and each loader worker turns its blocks into batches (the few rows left at the end of
each worker's stream are pooled into shared batches, so every row is seen exactly once per epoch, bar the
ragged last batch when training).

Decoding reads a crop's worth: the crop box (a random resized crop when training, the centre crop
evaluation uses) is chosen from the JPEG header, libjpeg-turbo decodes at the smallest DCT scale (1/2,
1/4, 1/8) that keeps the crop at least 3/4 of `image_size` across (simplejpeg; Pillow's `draft` for
anything libjpeg-turbo declines), and torch's uint8 antialiased resize shrinks only the box. Batches
leave the workers as uint8 NCHW; `Normalizer` turns them into normalised floats on the training device.
"""

from __future__ import annotations

import io
import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import simplejpeg
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.transforms import v2

from equigen.core.defaults import SPLITS
from equigen.core.errors import EquigenError, first_line
from equigen.publish import shards

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COLUMNS = ("image", "label")  # all that training reads
ROW_GROUPS_PER_BLOCK = 8  # row groups shuffled together in training, and the most a loader worker holds
TRAIN_SCALE = (0.6, 1.0)  # RandomResizedCrop's area range (of the whole cover)
TRAIN_RATIO = (3 / 4, 4 / 3)
# Decode at 1/2, 1/4 or 1/8 scale while the crop keeps at least this share of the output's side: a 500 px
# cover's 224 px crops then decode at 250 px (at most 1.16x upscaled, like Pillow's draft to the output size),
# 2x faster than a full decode (benchmarks/RESULTS.md); 1.0 would never upscale.
DCT_MIN_SHARE = 0.75
MAX_PIXELS = 180_000_000  # Pillow's decompression-bomb error threshold, for the libjpeg-turbo path too
JPEG_MAGIC = b"\xff\xd8\xff"


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


class Normalizer:
    """uint8 NCHW batches -> float32, normalised by the preprocessing's mean and std, on `device`."""

    def __init__(self, prep: Preprocessing, device: torch.device | str = "cpu"):
        self.mean = torch.tensor([255.0 * m for m in prep.mean], device=device).view(1, -1, 1, 1)
        self.scale = torch.tensor([1.0 / (255.0 * s) for s in prep.std], device=device).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32).sub_(self.mean).mul_(self.scale)  # one allocation, not three


# ---- decoding -------------------------------------------------------------------------------------


def train_box(width: int, height: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A random resized crop (left, top, width, height), torchvision's RandomResizedCrop.get_params."""
    area = width * height
    log_ratio = (math.log(TRAIN_RATIO[0]), math.log(TRAIN_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*TRAIN_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return float(rng.integers(0, width - w + 1)), float(rng.integers(0, height - h + 1)), float(w), float(h)
    ratio = width / height  # fallback: the whole image, clamped to the ratio range
    if ratio < TRAIN_RATIO[0]:
        w, h = width, int(round(width / TRAIN_RATIO[0]))
    elif ratio > TRAIN_RATIO[1]:
        w, h = int(round(height * TRAIN_RATIO[1])), height
    else:
        w, h = width, height
    return (width - w) / 2, (height - h) / 2, float(w), float(h)


def eval_box(width: int, height: int, prep: Preprocessing) -> tuple[float, float, float, float]:
    """The centre crop of Resize(image_size * resize_ratio) + CenterCrop(image_size), in source pixels."""
    side = min(width, height) * prep.image_size / int(prep.image_size * prep.resize_ratio)
    side = min(side, width, height)
    return (width - side) / 2, (height - side) / 2, side, side


def image_size_of(data: bytes) -> tuple[int, int, bool]:
    """(width, height, clean JPEG header) without decoding pixels."""
    if data[:3] == JPEG_MAGIC:
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            return int(width), int(height), True
        except ValueError:
            pass
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
    return width, height, False


def dct_divisor(width: int, height: int, crop_w: float, crop_h: float, size: int) -> int:
    """The largest of 8, 4, 2, 1 that leaves the crop at least DCT_MIN_SHARE x `size` pixels both ways once the
    image is decoded at 1/divisor scale. Only these: libjpeg-turbo's other M/8 scales have no SIMD path and
    cost more than a full decode."""
    least = DCT_MIN_SHARE * size
    for d in (8, 4, 2):
        if crop_w / d >= least and crop_h / d >= least and min(width, height) >= d:
            return d
    return 1


def decode_crop(data: bytes, size: int, interpolation: str, box_of, flip: bool = False) -> torch.Tensor:
    """The crop `box_of(width, height)` of an encoded image, resized to a 3 x size x size RGB uint8 tensor.

    Decodes at the smallest DCT scale (1/2, 1/4, 1/8) that keeps the crop at least `size` pixels across
    (libjpeg-turbo through simplejpeg; Pillow's draft for anything libjpeg-turbo declines), so a 500 px cover
    feeding a 224 px model decodes a quarter of its pixels when the crop allows; then an antialiased resize
    of just the crop (torch's uint8 kernels)."""
    width, height, jpeg = image_size_of(data)
    if width * height > MAX_PIXELS or min(width, height) < 1:
        raise ValueError(f"{width}x{height} pixels is out of range")
    left, top, w, h = box_of(width, height)
    d = dct_divisor(width, height, w, h, size)
    arr = None
    if jpeg:
        try:
            arr = simplejpeg.decode_jpeg(data, "RGB", min_width=-(-width // d), min_height=-(-height // d))
        except ValueError:  # CMYK, corrupt or truncated data: Pillow's verdict decides
            arr = None
    if arr is None:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (-(-width // d), -(-height // d)))
            arr = np.array(img.convert("RGB"))  # writable: torch.from_numpy wants that
    fx, fy = arr.shape[1] / width, arr.shape[0] / height
    x0, y0 = int(round(left * fx)), int(round(top * fy))
    x1 = max(x0 + 1, min(arr.shape[1], int(round((left + w) * fx))))
    y1 = max(y0 + 1, min(arr.shape[0], int(round((top + h) * fy))))
    crop = torch.from_numpy(arr).permute(2, 0, 1)[:, y0:y1, x0:x1]  # CHW view, channels-last strides
    mode = v2.InterpolationMode(interpolation)
    out = v2.functional.resize(crop, [size, size], interpolation=mode, antialias=mode != v2.InterpolationMode.NEAREST)
    if flip:
        out = out.flip(-1)
    return out


# ---- a split: metadata and labels only -------------------------------------------------------------


def _read_schema(path: Path) -> pa.Schema:
    try:
        with open(path, "rb") as fh:  # a file object: pyarrow cannot open a path that is not UTF-8
            return pq.read_schema(fh)
    except (pa.ArrowException, OSError) as e:
        raise EquigenError(f"{path}: not a readable Parquet shard ({first_line(e)})") from None


@dataclass(frozen=True)
class CoverSplit:
    """One split of the shards as row groups ("pieces") and labels; cover bytes are read on demand.

    pieces: one row per row group, columns (shard index, row group index, first row within its shard,
    rows); a row group's rows are numbered consecutively across the split (`starts`)."""

    paths: tuple[Path, ...]
    pieces: np.ndarray  # int64 (n_pieces, 4): shard, group, shard_row, rows
    labels: np.ndarray  # int64, one per row of the split, in shard order
    prep: Preprocessing
    train: bool

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.pieces[:, 3])[:-1]]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def with_prep(self, prep: Preprocessing) -> CoverSplit:
        return replace(self, prep=prep)

    def read_piece(self, k: int) -> pa.Array:
        """The encoded images (a binary array) of row group k."""
        shard, group = int(self.pieces[k, 0]), int(self.pieces[k, 1])
        path = self.paths[shard]
        try:
            with open(path, "rb") as fh:
                table = pq.ParquetFile(fh).read_row_group(group, columns=["image"])
        except (pa.ArrowException, OSError) as e:
            raise EquigenError(f"{path}: corrupt Parquet shard ({first_line(e)})") from None
        images = table.column("image").combine_chunks()
        if images.null_count or images.field("bytes").null_count:
            raise EquigenError(f"{path}: null image in row group {group}")
        if len(images) != int(self.pieces[k, 3]):
            raise EquigenError(f"{path}: row group {group} holds {len(images)} rows, its footer says otherwise")
        return images.field("bytes")

    def locate(self, i: int) -> tuple[int, int]:
        """(piece, row within it) of split row i."""
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return k, i - int(self.starts[k])

    def image_bytes(self, i: int) -> bytes:
        k, row = self.locate(i)
        return self.read_piece(k)[row].as_py()

    def where(self, k: int, row: int) -> str:
        return f"{self.paths[int(self.pieces[k, 0])]}: row {int(self.pieces[k, 2]) + row}"


def _index_shard(path: Path, num_classes: int) -> tuple[list[tuple[int, int, int]], np.ndarray]:
    problems = shards.schema_problems(_read_schema(path), columns=COLUMNS)
    if problems:
        raise EquigenError(f"{path}: wrong schema: {'; '.join(problems)}")
    shards.check_shard_size(path)  # a hostile footer must not make us allocate gigabytes
    try:
        with open(path, "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
            labels = pq.read_table(fh, columns=["label"]).column("label")
    except (pa.ArrowException, OSError) as e:
        raise EquigenError(f"{path}: corrupt Parquet shard ({first_line(e)})") from None
    if labels.null_count:
        raise EquigenError(f"{path}: null image or label")
    lab = labels.to_numpy().astype(np.int64)
    if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
        raise EquigenError(f"{path}: label out of range 0..{num_classes - 1}")
    groups, row = [], 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if n:
            groups.append((g, row, n))
        row += n
    if row != len(lab):
        raise EquigenError(f"{path}: row groups hold {row} rows but {len(lab)} labels were read")
    return groups, lab


def load_split(dataset_dir: Path, split: str, image_size: int | Preprocessing, num_classes: int) -> CoverSplit:
    prep = image_size if isinstance(image_size, Preprocessing) else Preprocessing(image_size)
    paths = shards.split_shards(dataset_dir, split)
    pieces, labels = [], []
    for s, path in enumerate(paths):
        groups, lab = _index_shard(path, num_classes)
        pieces += [(s, g, row, n) for g, row, n in groups]
        labels.append(lab)
    all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    if not len(all_labels):
        raise EquigenError(f"{dataset_dir}: the {split} split is empty")
    return CoverSplit(tuple(paths), np.array(pieces, np.int64).reshape(-1, 4), all_labels, prep, split == "train")


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
        with open(path, "rb") as fh:
            t = pq.read_table(fh, columns=["label", "genre"])
        pairs.update(zip(t.column("label").to_pylist(), t.column("genre").to_pylist()))
    if sorted(pairs) != list(range(len(pairs))):
        raise EquigenError(f"{dataset_dir}: labels in the train split are not 0..N-1; cannot name the classes")
    return [pairs[i] for i in range(len(pairs))]


# ---- the epoch plan: which rows, in which batches, read by which worker -----------------------------


def _rows_of(pieces: np.ndarray, starts: np.ndarray, ks) -> np.ndarray:
    parts = [np.arange(starts[k], starts[k] + pieces[k, 3]) for k in ks]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def train_plan(
    split: CoverSplit,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int,
    world: int,
    workers: int,
    block: int = ROW_GROUPS_PER_BLOCK,
    drop_last: bool = True,
) -> list[list[np.ndarray]]:
    """Per loader worker, its batches (arrays of split rows) for this rank and epoch; pure and seeded.

    Row groups are shuffled and dealt to the ranks (rank r takes every world-th), each rank keeping as many
    rows as the smallest share so that every rank runs the same number of steps. A rank's row groups form
    blocks of `block`, each block's rows shuffled together; block j goes to worker j mod workers, which
    batches its blocks' rows in order. The rows left over at the end of each worker's stream are pooled
    and batched once more, those batches dealt round-robin too. `drop_last` drops a final partial batch
    (when there is at least one full one): a batch of one breaks BatchNorm."""
    pieces, starts = split.pieces, split.starts
    if len(pieces) < world:
        raise EquigenError(
            f"the train split has {len(pieces)} row group(s) and each of the {world} processes needs its own: "
            "train with fewer processes"
        )
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(pieces))
    shares = [order[r::world] for r in range(world)]
    keep = min(int(pieces[s, 3].sum()) for s in shares)
    mine = shares[rank]
    streams: list[list[np.ndarray]] = [[] for _ in range(workers)]
    left = keep
    for j in range(0, len(mine), block):
        rows = _rows_of(pieces, starts, mine[j : j + block])
        rows = np.random.default_rng([seed, epoch, rank, j]).permutation(rows)[:left]
        left -= len(rows)
        streams[(j // block) % workers].append(rows)
    plan: list[list[np.ndarray]] = [[] for _ in range(workers)]
    tails = []
    for w, parts in enumerate(streams):
        rows = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        full = len(rows) // batch_size * batch_size
        plan[w] = [rows[i : i + batch_size] for i in range(0, full, batch_size)]
        tails.append(rows[full:])
    tail = np.concatenate(tails)
    extra = [tail[i : i + batch_size] for i in range(0, len(tail), batch_size)]
    if extra and len(extra[-1]) < batch_size and drop_last and keep >= batch_size:
        extra.pop()
    for i, rows in enumerate(extra):
        plan[i % workers].append(rows)
    return plan


def eval_plan(split: CoverSplit, *, batch_size: int, rank: int, world: int, workers: int) -> list[list[np.ndarray]]:
    """Per worker, its batches: this rank's row groups (every world-th, in shard order) cut into batches,
    dealt round-robin; nothing dropped, nothing padded."""
    rows = _rows_of(split.pieces, split.starts, range(rank, len(split.pieces), world))
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    return [batches[w::workers] for w in range(workers)]


def delivery_order(plan: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The batches in the order a DataLoader delivers them: round-robin over workers, skipping exhausted ones."""
    out = []
    for k in range(max((len(p) for p in plan), default=0)):
        out += [p[k] for p in plan if k < len(p)]
    return out


# ---- the streaming dataset --------------------------------------------------------------------------


class CoverStream(IterableDataset):
    """Batches of (uint8 images N x 3 x S x S, labels[, split rows]) streamed from a CoverSplit's row groups.

    Each worker reads only the row groups its batches need, holding at most `block` of them (an LRU), so
    memory is bounded by workers x block row groups whatever the split's size. The epoch lives in shared
    memory, so set_epoch reaches persistent workers too."""

    def __init__(
        self,
        split: CoverSplit,
        batch_size: int,
        workers: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = True,
        with_rows: bool = False,
        block: int = ROW_GROUPS_PER_BLOCK,
    ):
        self.split, self.batch_size, self.workers = split, batch_size, max(1, workers)
        self.shuffle, self.seed, self.rank, self.world = shuffle, seed, rank, world
        self.drop_last, self.with_rows, self.block = drop_last, with_rows, block
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.peak_bytes = 0  # most cover bytes this process held at once (for tests and measurements)

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def plan(self, epoch: int | None = None) -> list[list[np.ndarray]]:
        if self.shuffle:
            return train_plan(
                self.split, batch_size=self.batch_size, seed=self.seed,
                epoch=self.epoch if epoch is None else epoch, rank=self.rank, world=self.world,
                workers=self.workers, block=self.block, drop_last=self.drop_last,
            )  # fmt: skip
        return eval_plan(self.split, batch_size=self.batch_size, rank=self.rank, world=self.world, workers=self.workers)

    def rows(self) -> np.ndarray:
        """This rank's split rows in delivery order (the epoch's, when shuffled)."""
        batches = delivery_order(self.plan())
        return np.concatenate(batches) if batches else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return sum(len(p) for p in self.plan())

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else None
        plan = self.plan()
        epoch = self.epoch
        batches = delivery_order(plan) if worker is None else plan[worker]
        cache: OrderedDict[int, pa.Array] = OrderedDict()
        starts = self.split.starts
        for n, rows in enumerate(batches):
            rng = np.random.default_rng([self.seed, epoch, self.rank, int(rows[0]), n])
            yield self._batch(rows, cache, starts, rng)

    def _piece(self, k: int, cache: OrderedDict) -> pa.Array:
        if k in cache:
            cache.move_to_end(k)
            return cache[k]
        while len(cache) >= self.block:
            cache.popitem(last=False)
        cache[k] = self.split.read_piece(k)
        held = sum(a.nbytes for a in cache.values())
        self.peak_bytes = max(self.peak_bytes, held)
        return cache[k]

    def _batch(self, rows: np.ndarray, cache: OrderedDict, starts: np.ndarray, rng: np.random.Generator):
        prep, size = self.split.prep, self.split.prep.image_size
        out = torch.empty((len(rows), 3, size, size), dtype=torch.uint8)
        pieces = np.searchsorted(starts, rows, side="right") - 1
        for i, (row, k) in enumerate(zip(rows.tolist(), pieces.tolist())):
            offset = row - int(starts[k])
            data = self._piece(k, cache)[offset].as_py()
            if self.split.train:
                flip = bool(rng.random() < 0.5)

                def box(width, height):
                    return train_box(width, height, rng)
            else:
                flip = False

                def box(width, height):
                    return eval_box(width, height, prep)

            try:
                out[i] = decode_crop(data, size, prep.interpolation, box, flip)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                why = "unknown format" if isinstance(e, UnidentifiedImageError) else first_line(e)
                raise EquigenError(f"{self.split.where(k, offset)} is not a decodable image ({why})") from None
        y = torch.from_numpy(self.split.labels[rows])
        return (out, y, torch.from_numpy(rows)) if self.with_rows else (out, y)


# ---- loaders ----------------------------------------------------------------------------------------


@dataclass
class Splits:
    names: list[str]
    train: CoverSplit
    validation: CoverSplit
    test: CoverSplit

    def preprocessed(self, prep: Preprocessing) -> Splits:
        """The same covers under `prep` (training augmentation for train only)."""
        return replace(
            self, train=self.train.with_prep(prep), validation=self.validation.with_prep(prep),
            test=self.test.with_prep(prep),
        )  # fmt: skip


def load_splits(dataset_dir: Path, image_size: int) -> Splits:
    """The dataset's train, validation and test shards, ready to stream (named so as not to shadow Hugging Face's
    `datasets.load_dataset`, which reads the same folder)."""
    if not dataset_dir.is_dir():
        raise EquigenError(f"no dataset at {dataset_dir} (write one with `equigen split`)")
    names = class_names(dataset_dir)
    if len(names) < 2:
        raise EquigenError(f"{dataset_dir}: need at least 2 genres to train a classifier, found {len(names)}")
    return Splits(names, *(load_split(dataset_dir, s, image_size, len(names)) for s in SPLITS))


def _loader(ds: CoverStream, workers: int, pin_memory: bool, persistent: bool) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=None,  # the dataset yields whole batches
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=persistent and workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def train_loader(
    split: CoverSplit, batch_size: int, workers: int, seed: int, rank: int, world: int, pin_memory: bool
) -> DataLoader:
    """Shuffled anew per epoch (call loader.dataset.set_epoch); the same code path with or without DDP."""
    ds = CoverStream(split, batch_size, workers, shuffle=True, seed=seed, rank=rank, world=world, drop_last=True)
    return _loader(ds, workers, pin_memory, persistent=True)


def eval_loader(
    split: CoverSplit, batch_size: int, workers: int, rank: int, world: int, pin_memory: bool, persistent: bool = True
) -> tuple[DataLoader, np.ndarray]:
    """This rank's share of the split (every world-th row group), unpadded; batches carry their split rows."""
    ds = CoverStream(split, batch_size, workers, shuffle=False, rank=rank, world=world, with_rows=True)
    return _loader(ds, workers, pin_memory, persistent), ds.rows()


def transforms(prep: Preprocessing | int, train: bool):
    """The torchvision v2 pipeline on decoded PIL images (what this loader replaced; benchmarks compare to it)."""
    if isinstance(prep, int):
        prep = Preprocessing(prep)
    size = prep.image_size
    mode = v2.InterpolationMode(prep.interpolation)
    common = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(prep.mean), list(prep.std))]
    if train:
        return v2.Compose(
            [
                v2.PILToTensor(),
                v2.RandomResizedCrop(size, scale=TRAIN_SCALE, interpolation=mode, antialias=True),
                v2.RandomHorizontalFlip(),
                *common,
            ]
        )
    resize = int(size * prep.resize_ratio)
    return v2.Compose(
        [v2.PILToTensor(), v2.Resize(resize, interpolation=mode, antialias=True), v2.CenterCrop(size), *common]
    )
