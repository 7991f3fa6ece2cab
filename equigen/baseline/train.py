"""Train and evaluate the baseline models, in one process or under torchrun (DDP).

The entry point is `equigen baseline`; for several GPUs, one process per GPU:

    torchrun --nproc_per_node=K -m equigen.cli baseline --data-dir ./equigen-data --models resnet50
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from equigen.baseline import BaselineConfig, BaselineResult
from equigen.baseline.data import Normalizer, Preprocessing, Splits, eval_loader, load_splits, train_loader
from equigen.baseline.models import (
    build_model,
    check_model_name,
    check_weights_file,
    count_params,
    fetch_pretrained,
    head_prefix,
    pretrained_weights,
)
from equigen.baseline.report import (
    compute_metrics,
    plot_confident_errors,
    plot_confusion,
    plot_learning_curves,
    read_confusion_csv,
    write_confusion_csv,
    write_json,
    write_report,
)
from equigen.baseline.summary import SeedRun, overfitting, summarize
from equigen.core.errors import EquigenError, first_line
from equigen.core.storage import atomic_output

DEFAULT_IMAGE_SIZE = 128  # from scratch; pretrained models default to their weights' crop size (224)
CONFIDENT_ERRORS_PER_GENRE = 4


@dataclass
class Dist:
    """This process's place in a torchrun job (world 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EquigenError(f"--device: unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EquigenError("--device cuda: no CUDA GPU is available to torch on this machine")
        return torch.device("cuda", local_rank if device.index is None else device.index)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EquigenError("--device mps: MPS is not available on this machine")
    return device


def setup(cfg: BaselineConfig) -> tuple[Dist, torch.device, bool]:
    """Device and, under torchrun, the process group. Returns whether we created the group."""
    env = os.environ
    d = Dist(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    device = resolve_device(cfg.device, d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    created = False
    if d.world > 1 and not dist.is_initialized():
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
        created = True
    return d, device, created


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """RNG states as tensors and plain Python values, so checkpoints load with weights_only=True."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "random": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["random"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj, path: Path) -> None:
    """torch.save that an interruption cannot turn into a broken checkpoint: the previous one stays."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR factor per optimizer step: linear warm-up to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_optimizer(model: nn.Module, cfg: BaselineConfig, backbone_scale: float) -> torch.optim.Optimizer:
    """Four parameter groups: (new head | backbone) x (decayed | not). The backbone learns at lr x backbone_scale:
    pretrained features need small steps, the fresh head large ones. Group "part" names which is which."""
    head = head_prefix(model)
    groups = []
    for part, scale in (("head", 1.0), ("backbone", backbone_scale)):
        params = [(n, p) for n, p in model.named_parameters() if n.startswith(head) == (part == "head")]
        # Weight decay on weights only: decaying BatchNorm scales and biases hurts small-data training.
        for decayed in (True, False):
            chosen = [p for _, p in params if (p.ndim > 1) == decayed]
            if chosen:
                groups.append(
                    {
                        "params": chosen,
                        "lr": cfg.lr * scale,
                        "weight_decay": cfg.weight_decay if decayed else 0.0,
                        "part": part,
                    }
                )
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factors(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, freeze_steps: int) -> list:
    """Per group LR factor: the head warms up then decays over the whole run; the backbone is held at 0 for the
    first freeze_steps (only the head learns), then gets its own warm-up and decay over the steps left."""
    head = warmup_cosine(warmup_steps, total_steps)
    rest = warmup_cosine(min(warmup_steps, max(1, total_steps - freeze_steps)), max(1, total_steps - freeze_steps))

    def backbone(step: int) -> float:
        return 0.0 if step < freeze_steps else rest(step - freeze_steps)

    return [head if g["part"] == "head" else backbone for g in optimizer.param_groups]


@dataclass
class Loaders:
    """One (model, seed)'s data: the shuffled train loader, the validation loader, and an epoch's steps."""

    train: DataLoader
    validation: DataLoader
    steps_per_epoch: int  # the train loader's batches, capped by --max-train-batches


def load_data(splits: Splits, cfg: BaselineConfig, seed: int, d: Dist, pin: bool) -> Loaders:
    """This rank's train loader (shuffled by `seed` anew each epoch) and validation loader."""
    train = train_loader(splits.train, cfg.batch_size, cfg.workers, seed, d.rank, d.world, pin)
    validation, _ = eval_loader(splits.validation, cfg.batch_size, cfg.workers, d.rank, d.world, pin)
    steps = min(len(train), cfg.max_train_batches) if cfg.max_train_batches else len(train)
    return Loaders(train, validation, steps)


@dataclass
class OnDevice:
    """How a batch reaches the model: uint8 images moved (a quarter of float32's bytes), normalised there, and
    run in mixed precision on CUDA (bf16 where supported, else fp16)."""

    device: torch.device
    normalize: Normalizer
    memory_format: torch.memory_format
    amp_dtype: torch.dtype | None

    @classmethod
    def of(cls, device: torch.device, cfg: BaselineConfig, prep: Preprocessing) -> OnDevice:
        cuda = device.type == "cuda"
        amp_dtype = None
        if cfg.amp and cuda:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        memory_format = torch.channels_last if cuda else torch.contiguous_format
        return cls(device, Normalizer(prep, device), memory_format, amp_dtype)

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return self.normalize(x), y.to(self.device, non_blocking=True)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    data: Loaders,
    epoch: int,
    on: OnDevice,
    d: Dist,
    advance: Callable[[], None] = lambda: None,
) -> dict:
    """One epoch over this rank's train batches (stepping the schedule per batch); loss, accuracy and speed over
    every rank."""
    model.train()
    data.train.dataset.set_epoch(epoch)
    # Accumulate on the device: a .item() per step would stall the GPU pipeline.
    sums = torch.zeros(3, device=on.device, dtype=torch.float64)  # loss * n, correct, n
    used = [g["lr"] for g in optimizer.param_groups]
    start = time.perf_counter()
    first = None  # seconds until the first batch arrived: the loader's ramp-up, part of train_seconds
    for step, (x, y) in enumerate(data.train):
        if step >= data.steps_per_epoch:
            break
        if first is None:
            first = time.perf_counter() - start
        x, y = on.batch(x, y)
        with on.autocast():
            logits = model(x)
            loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        used = [g["lr"] for g in optimizer.param_groups]  # this step's rates, before the schedule moves on
        scheduler.step()
        sums[0] += loss.detach() * len(y)
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += len(y)
        advance()
    if on.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if d.world > 1:
        dist.all_reduce(sums)
    loss_sum, correct, n = sums.tolist()
    return {
        "train_loss": loss_sum / n,
        "train_acc": correct / n,
        "train_images": int(n),
        "train_seconds": seconds,
        "train_first_batch_seconds": first or 0.0,
        "lr": used[0],  # the new head's, at the epoch's last step
        "backbone_lr": used[-1],
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    criterion: nn.Module,
    loader,
    labels: np.ndarray,
    num_classes: int,
    on: OnDevice,
    d: Dist,
    advance: Callable[[], None] = lambda: None,
) -> tuple[np.ndarray, float]:
    """Softmax scores for the whole split (gathered from every rank, in dataset order) and the mean loss.

    `model` unwrapped (ranks may run different batch counts here). Batches carry the split rows they hold, so
    scores land in place whatever order the workers deliver."""
    model.eval()
    scores, rows = [], []
    loss_sum = torch.zeros((), device=on.device, dtype=torch.float64)  # no .item() per batch: no stall
    for x, y, r in loader:
        rows.append(r.numpy())
        x, y = on.batch(x, y)
        with on.autocast():
            logits = model(x).float()
        loss_sum += criterion(logits, y) * len(y)
        scores.append(logits.softmax(1).cpu().numpy())
        advance()
    local = np.concatenate(scores) if scores else np.zeros((0, num_classes), np.float32)
    here = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    parts: list = [(here, local, float(loss_sum))]
    if d.world > 1:
        parts = [None] * d.world
        dist.all_gather_object(parts, (here, local, float(loss_sum)))
    order = np.concatenate([p[0] for p in parts])
    if len(order) != len(labels) or len(np.unique(order)) != len(labels):
        raise EquigenError(f"evaluation saw {len(order)} rows of a split of {len(labels)}")  # a loader bug
    full = np.empty((len(labels), num_classes), np.float32)
    full[order] = np.concatenate([p[1] for p in parts])
    return full, sum(p[2] for p in parts) / len(labels)


def validation_row(scores: np.ndarray, loss: float, labels: np.ndarray, num_classes: int) -> dict:
    """An epoch's validation numbers: loss, accuracy, macro-F1 (what early stopping and the best epoch follow)."""
    pred = scores.argmax(1)
    return {
        "val_loss": loss,
        "val_acc": float(accuracy_score(labels, pred)),
        "val_macro_f1": float(f1_score(labels, pred, labels=range(num_classes), average="macro", zero_division=0)),
    }


class Trainer:
    """One model trained with one seed: built, fitted with early stopping and checkpoints, tested."""

    def __init__(
        self,
        name: str,
        splits: Splits,
        cfg: BaselineConfig,
        seed: int,
        weights: Path | None,
        device: torch.device,
        d: Dist,
        model_dir: Path,
        bar: Progress | None,
        console: Console,
    ):
        self.name, self.splits, self.cfg, self.seed, self.device, self.d = name, splits, cfg, seed, device, d
        self.model_dir, self.bar, self.console = model_dir, bar, console
        self.label = name if len(cfg.seeds) == 1 else f"{name} seed {seed}"
        self.num_classes = len(splits.names)
        self.on = OnDevice.of(device, cfg, splits.train.prep)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.on.amp_dtype == torch.float16)

        seed_everything(seed)  # same init on every rank and independent of the model order
        self.model = build_model(name, self.num_classes, weights)
        self.params = count_params(self.model)
        self.model.to(device, memory_format=self.on.memory_format)
        self.optimizer = make_optimizer(self.model, cfg, cfg.backbone_scale(name))
        self.data = load_data(splits, cfg, seed, d, pin=device.type == "cuda")
        steps = self.data.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_factors(self.optimizer, round(cfg.warmup_epochs * steps), cfg.epochs * steps, cfg.freeze_epochs * steps),
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        self.history: list[dict] = []
        self.best_epoch, self.best_f1, self.best_state = 0, -1.0, None
        self.start_epoch = 1
        if cfg.resume:
            self._resume()
        self.ddp = None
        if d.world > 1:
            self.ddp = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)

    def close(self) -> None:
        """Stop the persistent DataLoader workers now.

        Left to the garbage collector (an error's traceback keeps them alive), each one's shutdown
        waits out a 5 s timeout.
        """
        for loader in (self.data.train, self.data.validation):
            if loader._iterator is not None:  # torch keeps persistent workers' iterator here
                loader._iterator._shutdown_workers()
                loader._iterator = None

    # -- checkpoints -----------------------------------------------------------------------------
    def _resume(self) -> None:
        last = self.model_dir / "last.pt"
        if not last.is_file():
            self.log(f"{self.label}: no {last} to resume from; training from the start")
            return
        try:
            ckpt = torch.load(last, map_location="cpu", weights_only=True)
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.scaler.load_state_dict(ckpt["scaler"])
            self.best_state = torch.load(self.model_dir / "best.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # a checkpoint from another model/genre set, or a truncated file
            raise EquigenError(f"cannot resume from {last}: {first_line(e)[:300]}") from None
        self.history, self.best_epoch, self.best_f1 = ckpt["history"], ckpt["best_epoch"], ckpt["best_f1"]
        self.start_epoch = ckpt["epoch"] + 1
        set_rng_state(ckpt["rng"])
        self.log(f"{self.label}: resuming after epoch {ckpt['epoch']} (best so far: epoch {self.best_epoch})")

    def _save(self, epoch: int) -> None:
        if not self.d.main:
            return
        save_atomic(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "epoch": epoch,
                "history": self.history,
                "best_epoch": self.best_epoch,
                "best_f1": self.best_f1,
                "rng": rng_state(),
                "config": self.cfg.as_dict(),
            },
            self.model_dir / "last.pt",
        )
        if self.best_epoch == epoch:
            save_atomic(self.best_state, self.model_dir / "best.pt")

    # -- progress --------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        if self.d.main:
            self.console.print(msg, soft_wrap=True)  # one line per message, also in captured logs

    @contextlib.contextmanager
    def _task(self, description: str, total: int):
        """A progress bar for one loop (nothing without --progress): yields the step that advances it."""
        if self.bar is None:
            yield lambda: None
            return
        task = self.bar.add_task(description, total=total)
        try:
            yield lambda: self.bar.update(task, advance=1)
        finally:
            self.bar.remove_task(task)

    # -- loops -----------------------------------------------------------------------------------
    def fit(self) -> None:
        """Train until cfg.epochs or early stopping; keeps the best weights by validation macro-F1."""
        cfg = self.cfg
        with self._task(f"{self.label} epochs", cfg.epochs) as epoch_done:
            for _ in range(self.start_epoch - 1):
                epoch_done()
            for epoch in range(self.start_epoch, cfg.epochs + 1):
                if cfg.patience and self.history and epoch - 1 - self.best_epoch >= cfg.patience:
                    self.log(f"{self.label}: no better validation macro-F1 for {cfg.patience} epochs; stopping early")
                    break
                self._epoch(epoch)
                epoch_done()

    def _epoch(self, epoch: int) -> None:
        """One epoch: train, validate, record the row, keep the best weights, checkpoint, one log line."""
        with self._task(f"epoch {epoch} train", self.data.steps_per_epoch) as advance:
            row = {"epoch": epoch, **self._train_one_epoch(epoch, advance)}
        labels = self.splits.validation.labels
        with self._task(f"epoch {epoch} validate", len(self.data.validation)) as advance:
            scores, val_loss = evaluate(
                self.model, self.criterion, self.data.validation, labels, self.num_classes, self.on, self.d, advance
            )
        row.update(validation_row(scores, val_loss, labels, self.num_classes))
        # Overfitting, measured: how far training runs ahead of validation this epoch.
        row.update(gap_acc=row["train_acc"] - row["val_acc"], gap_loss=val_loss - row["train_loss"])
        self.history.append(row)
        if row["val_macro_f1"] > self.best_f1:
            self.best_epoch, self.best_f1 = epoch, row["val_macro_f1"]
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self._save(epoch)
        self.log(
            f"{self.label} epoch {epoch}/{self.cfg.epochs}: train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.3f} | val loss {val_loss:.4f} acc {row['val_acc']:.3f} "
            f"macro-F1 {row['val_macro_f1']:.3f} | {row['train_images'] / row['train_seconds']:.0f} img/s"
        )

    def _train_one_epoch(self, epoch: int, advance) -> dict:
        return train_one_epoch(
            self.ddp or self.model,
            self.criterion,
            self.optimizer,
            self.scheduler,
            self.scaler,
            self.data,
            epoch,
            self.on,
            self.d,
            advance,
        )

    def test(self) -> tuple[dict, np.ndarray, np.ndarray]:
        """Best-epoch weights on the test split: metrics, confusion matrix and the softmax scores (n x K)."""
        self.close()  # training's and validation's workers go before the test's start: peak memory is one loader's
        self.model.load_state_dict(self.best_state)
        cfg, d = self.cfg, self.d
        loader, _ = eval_loader(
            self.splits.test, cfg.batch_size, cfg.workers, d.rank, d.world, self.device.type == "cuda", persistent=False
        )
        with self._task(f"{self.label} test", len(loader)) as advance:
            labels = self.splits.test.labels
            scores, _ = evaluate(self.model, self.criterion, loader, labels, self.num_classes, self.on, d, advance)
        metrics, cm = compute_metrics(self.splits.test.labels, scores, self.splits.names)
        return metrics, cm, scores


def resolve_run_dir(runs_dir: Path, cfg: BaselineConfig) -> Path:
    """The run folder: --name, the newest run when resuming without one, else a fresh timestamp."""
    if cfg.run_name:
        run_dir = runs_dir / cfg.run_name
        if run_dir.exists() and not cfg.resume and any(run_dir.iterdir()):
            raise EquigenError(f"run {run_dir} already exists; add --resume to continue it or pick another --name")
        return run_dir
    if cfg.resume:
        checkpoints = list(runs_dir.glob("*/*/seed-*/last.pt"))
        if not checkpoints:
            raise EquigenError(f"--resume: no run with a checkpoint in {runs_dir}; give --name")
        newest = max(checkpoints, key=lambda c: c.stat().st_mtime)
        return newest.parent.parent.parent
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir, n = runs_dir / stamp, 2
    while run_dir.exists():
        run_dir, n = runs_dir / f"{stamp}-{n}", n + 1
    return run_dir


def make_run_dir(runs_dir: Path, cfg: BaselineConfig) -> Path:
    run_dir = resolve_run_dir(runs_dir, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def on_rank0(d: Dist, fn):
    """fn() on rank 0 only, its result (or its EquigenError) shared with every rank.

    A rank-0-only error must reach the other ranks too, or they would wait for rank 0 forever.
    """
    try:
        box = [(fn(), None) if d.main else None]
    except EquigenError as e:
        box = [(None, str(e))]
    if d.world > 1:
        dist.broadcast_object_list(box, src=0)
    result, error = box[0]
    if error is not None:
        raise EquigenError(error)
    return result


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def resolve_weights(cfg: BaselineConfig) -> dict[str, Path | None]:
    """Per model, the ImageNet weights file it starts from: --weights, else torchvision's (cached, downloaded
    once), else None (from scratch). Runs before any folder is made, so an offline run fails first."""
    out: dict[str, Path | None] = {}
    for name in cfg.models:
        check_model_name(name)
        local = cfg.weights_for(name)
        if local is not None:
            check_weights_file(local)
        out[name] = local if local is not None else fetch_pretrained(name) if cfg.pretrained else None
    return out


def preprocessing_for(name: str, cfg: BaselineConfig, weights: Path | None) -> Preprocessing:
    """A pretrained model sees covers as its weights were trained to (resize/crop ratio, mean, std,
    interpolation); from scratch, our default at 128 px. --image-size overrides the size in both cases."""
    if weights is not None:
        return Preprocessing.of_weights(pretrained_weights(name), cfg.image_size)
    return Preprocessing(cfg.image_size or DEFAULT_IMAGE_SIZE)


def train_and_compare(dataset_dir: Path, runs_dir: Path, cfg: BaselineConfig, progress: bool = True) -> BaselineResult:
    """equigen.baseline.run_baseline's work (that entry point validates cfg first and imports this lazily): load
    the splits, train every (model, seed), then on rank 0 write the summaries and the report."""
    weights = resolve_weights(cfg)  # fail before any folder is made or data read
    d, device, created_group = setup(cfg)
    try:
        splits = load_splits(dataset_dir, cfg.image_size or DEFAULT_IMAGE_SIZE)
        run_dir = on_rank0(d, lambda: make_run_dir(runs_dir, cfg))
        context = run_context(dataset_dir, splits, cfg, weights, device, d)
        bar = _progress() if progress and d.main else None
        console = bar.console if bar else Console(stderr=True)
        if d.main:
            console.print(f"run folder: {run_dir}", soft_wrap=True)
        runs: dict[str, list[SeedRun]] = {}
        with bar or contextlib.nullcontext():
            for name in cfg.models:
                prep = preprocessing_for(name, cfg, weights[name])
                model_splits = splits.preprocessed(prep)
                runs[name] = [
                    train_seed(
                        name, seed, model_splits, cfg, weights[name], prep, context, run_dir, device, d, bar, console
                    )
                    for seed in cfg.seeds
                ]
        result = report_runs(run_dir, runs, splits, cfg, context) if d.main else _rank_result(run_dir, runs)
        d.barrier()
        return result
    except EquigenError as e:
        # Raised in a DataLoader worker, the message arrives wrapped in the worker's traceback.
        last = str(e).strip().splitlines()[-1]
        raise EquigenError(last.removeprefix(f"{EquigenError.__module__}.{EquigenError.__name__}: ")) from None
    finally:
        if created_group:
            dist.destroy_process_group()


def run_context(dataset_dir: Path, splits: Splits, cfg: BaselineConfig, weights, device, d: Dist) -> dict:
    """What the report says about the run before its results: data, sizes, device, epochs, seeds, starts."""
    return {
        "dataset": str(dataset_dir),
        "genres": len(splits.names),
        "chance": 1.0 / len(splits.names),
        "images": {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
        "device": str(device) if d.world == 1 else f"{d.world} x {device.type}",
        "epochs": cfg.epochs,
        "seeds": list(cfg.seeds),
        "start": {m: f"ImageNet weights {w.name}" if w else "from scratch" for m, w in weights.items()},
    }


def train_seed(
    name: str,
    seed: int,
    splits: Splits,
    cfg: BaselineConfig,
    weights: Path | None,
    prep: Preprocessing,
    context: dict,
    run_dir: Path,
    device: torch.device,
    d: Dist,
    bar: Progress | None,
    console: Console,
) -> SeedRun:
    """One (model, seed): fitted, tested on its best epoch, its outputs written (rank 0)."""
    seed_dir = run_dir / name / f"seed-{seed}"
    if d.main:
        seed_dir.mkdir(parents=True, exist_ok=True)
    d.barrier()
    trainer = Trainer(name, splits, cfg, seed, weights, device, d, seed_dir, bar, console)
    try:
        trainer.fit()
        metrics, cm, scores = trainer.test()
    finally:
        trainer.close()
    hist = trainer.history
    images = sum(h["train_images"] for h in hist)
    seconds = sum(h["train_seconds"] for h in hist)
    metrics.update(
        model=name,
        seed=seed,
        best_epoch=trainer.best_epoch,
        best_val_macro_f1=trainer.best_f1,
        epochs_run=len(hist),
        train_images_per_s=images / seconds if seconds else 0.0,
        params=trainer.params,
        chance=context["chance"],
        images=context["images"],
        device=context["device"],
        overfitting=overfitting(hist, trainer.best_epoch),
        preprocessing=prep.as_dict(),
        config=cfg.as_dict(),
    )
    if d.main:
        write_outputs(seed_dir, metrics, cm, hist, splits.names)
        np.save(seed_dir / "test_scores.npy", scores.astype(np.float32))
    return SeedRun(seed, metrics, scores, hist)


def report_runs(
    run_dir: Path, runs: dict[str, list[SeedRun]], splits: Splits, cfg: BaselineConfig, context: dict
) -> BaselineResult:
    """Rank 0: each model over its seeds, then the side-by-side report."""
    summary = summarize(runs, splits.names, splits.test.labels)
    for name in cfg.models:
        write_model_summary(run_dir / name, summary.models[name], *summary.ensemble[name], splits)
    report = write_report(run_dir, summary, splits.names, context)
    return BaselineResult(run_dir=run_dir, report=report, models=summary.models, comparison=summary.sentence)


def _rank_result(run_dir: Path, runs: dict[str, list[SeedRun]]) -> BaselineResult:
    """Other ranks write nothing: their result names rank 0's report."""
    models = {m: r[0].metrics for m, r in runs.items()}
    return BaselineResult(run_dir=run_dir, report=run_dir / "report.md", models=models, comparison=None)


def write_outputs(seed_dir: Path, metrics: dict, cm: np.ndarray, history: list[dict], names: list[str]) -> None:
    """One (model, seed): its metrics, history, confusion matrix and learning curves (with the overfitting gap)."""
    name = metrics["model"]
    write_json(seed_dir / "metrics.json", metrics)
    write_json(seed_dir / "history.json", history)
    write_confusion_csv(seed_dir / "confusion_matrix.csv", cm, names)
    title = f"{name} seed {metrics['seed']}"
    accuracy = f"test accuracy {metrics['accuracy']:.1%}"
    plot_confusion(seed_dir / "confusion_matrix.png", cm, names, f"{title}: {accuracy} (row-normalised)")
    plot_learning_curves(seed_dir / "learning_curves.png", history, metrics["best_epoch"], title)


def write_model_summary(model_dir: Path, model: dict, pred: np.ndarray, prob: np.ndarray, splits: Splits) -> None:
    """A model over its seeds: metrics.json (mean, sd, intervals), the seed ensemble's confusion matrix, and the
    grid of its most confidently wrong test covers per genre."""
    name, names, y_true = model["model"], splits.names, splits.test.labels
    write_json(model_dir / "metrics.json", model)
    cm = confusion_matrix(y_true, pred, labels=list(range(len(names))))
    write_confusion_csv(model_dir / "confusion_matrix.csv", cm, names)
    seeds = f"ensemble of {len(model['seeds'])} seeds" if len(model["seeds"]) > 1 else f"seed {model['seeds'][0]}"
    seed_dir = model_dir / f"seed-{model['seeds'][0]}"
    if len(model["seeds"]) == 1 and np.array_equal(cm, read_confusion_csv(seed_dir / "confusion_matrix.csv")):
        # One seed: its own plot is this matrix already (a plot costs ~1.5 s on 2 cores).
        shutil.copyfile(seed_dir / "confusion_matrix.png", model_dir / "confusion_matrix.png")
    else:
        title = f"{name} ({seeds}): accuracy {(pred == y_true).mean():.1%}"
        plot_confusion(model_dir / "confusion_matrix.png", cm, names, title)
    wrong = np.flatnonzero(pred != y_true)
    confidence = prob[np.arange(len(pred)), pred]
    # Only the covers the grid shows are decoded: per genre its most confident mistakes.
    shown: list[int] = []
    for label in range(len(names)):
        mine = wrong[y_true[wrong] == label]
        shown += mine[np.argsort(-confidence[mine], kind="stable")][:CONFIDENT_ERRORS_PER_GENRE].tolist()
    images = [splits.test.image_bytes(i) for i in shown]
    plot_confident_errors(
        model_dir / "confident_errors.png",
        images,
        y_true[shown],
        pred[shown],
        confidence[shown],
        names,
        per_genre=CONFIDENT_ERRORS_PER_GENRE,
        title=f"{name} ({seeds}): most confidently wrong test covers",
    )
