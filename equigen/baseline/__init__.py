"""Baseline classifiers (ResNet / EfficientNet) trained and compared on an EquiGen dataset.

The command line is `equigen baseline` (under `torchrun --nproc_per_node=K -m equigen.cli baseline ...`
for several GPUs). This module stays light: torch and torchvision are imported only when `run_baseline` runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from equigen.core.defaults import MAX_SEED
from equigen.core.errors import EquigenError, check_number

__all__ = ["BaselineConfig", "BaselineResult", "run_baseline", "parse_seeds", "parse_weights_option"]

OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class BaselineConfig:
    models: tuple[str, ...] = ("resnet50", "efficientnet_b0")
    epochs: int = 10
    image_size: int | None = None  # None: the pretrained weights' crop size (224), or 128 from scratch
    batch_size: int = 64  # per process
    lr: float = 1e-3  # peak learning rate, reached after warm-up
    weight_decay: float = 0.05
    optimizer: str = "adamw"  # "adamw" or "sgd" (momentum 0.9, nesterov)
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    patience: int = 3  # epochs without a better validation macro-F1; 0 disables early stopping
    seeds: tuple[int, ...] = (0,)  # each model trains once per seed: mean ± sd and intervals over seeds
    pretrained: bool = True  # start from torchvision's ImageNet weights (cached under $TORCH_HOME)
    backbone_lr_scale: float | None = None  # backbone lr = lr x this; None: 0.1 when pretrained, else 1
    freeze_epochs: int = 0  # epochs that train only the new head (backbone lr 0) before fine-tuning all
    workers: int = 2  # DataLoader decoding processes per training process
    weights: Mapping[str, Path] | Path | None = None  # local torchvision ImageNet state dicts
    resume: bool = False  # continue <run_dir>/<model>/last.pt (latest run if run_name is None)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N", "mps"
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16); ignored on CPU
    run_name: str | None = None  # folder under runs_dir; default: a timestamp
    max_train_batches: int | None = None  # cap per epoch, for smoke runs

    def validated(self) -> BaselineConfig:
        """Checks that need neither torch nor the disk."""
        if not self.models:
            raise EquigenError("--models: give at least one model")
        if len(set(self.models)) != len(self.models):
            raise EquigenError(f"--models: each model once, got {', '.join(self.models)}")
        # Every number finite and in range before anything trains: a NaN learning rate or weight decay would
        # train NaN weights and write chance-level metrics as results.
        check_number("--epochs", self.epochs, 1, 100_000, integer=True)
        if self.image_size is not None:
            check_number("--image-size", self.image_size, 16, 4096, integer=True)
        check_number("--batch-size", self.batch_size, 1, 1 << 16, integer=True)
        check_number("--lr", self.lr, 1e-12, 10.0)
        check_number("--weight-decay", self.weight_decay, 0.0, 10.0)
        if self.optimizer not in OPTIMIZERS:
            raise EquigenError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        check_number("--warmup-epochs", self.warmup_epochs, 0.0, float(self.epochs))
        check_number("--label-smoothing", self.label_smoothing, 0.0, 0.999)
        check_number("--patience", self.patience, 0, 100_000, integer=True)
        check_number("--workers", self.workers, 0, 256, integer=True)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or len(self.seeds) > 1000:
            raise EquigenError(f"--seeds: give 1 to 1,000 distinct non-negative integers, got {len(self.seeds)}")
        for s in self.seeds:
            check_number("--seeds", s, 0, MAX_SEED, integer=True)
        if self.backbone_lr_scale is not None:
            check_number("--backbone-lr-scale", self.backbone_lr_scale, 1e-9, 10.0)
        check_number("--freeze-epochs (at most --epochs - 1)", self.freeze_epochs, 0, self.epochs - 1, integer=True)
        if self.max_train_batches is not None:
            check_number("--max-train-batches", self.max_train_batches, 1, 1 << 40, integer=True)
        if self.run_name is not None and (not self.run_name or "/" in self.run_name or self.run_name in (".", "..")):
            raise EquigenError(f"--name must be a plain folder name, got {self.run_name!r}")
        if isinstance(self.weights, Path) and len(self.models) > 1:
            raise EquigenError(
                f"one --weights file fits one architecture, but {len(self.models)} models were asked "
                f"for ({', '.join(self.models)}): train one model, or give MODEL=PATH for each"
            )
        if isinstance(self.weights, Mapping):
            unknown = sorted(set(self.weights) - set(self.models))
            if unknown:
                raise EquigenError(f"--weights names models not being trained: {', '.join(unknown)}")
        return self

    def weights_for(self, model: str) -> Path | None:
        """A local weights file given with --weights for `model` (None: torchvision's, or none)."""
        if isinstance(self.weights, Mapping):
            return self.weights.get(model)
        return self.weights

    def starts_pretrained(self, model: str) -> bool:
        return self.weights_for(model) is not None or self.pretrained

    def backbone_scale(self, model: str) -> float:
        if self.backbone_lr_scale is not None:
            return self.backbone_lr_scale
        return 0.1 if self.starts_pretrained(model) else 1.0

    def as_dict(self) -> dict:
        """JSON-ready copy (paths as strings)."""
        d = asdict(self)
        d["models"] = list(self.models)
        d["seeds"] = list(self.seeds)
        if isinstance(self.weights, Mapping):
            d["weights"] = {k: str(v) for k, v in self.weights.items()}
        elif self.weights is not None:
            d["weights"] = str(self.weights)
        return d


def parse_seeds(text: str) -> tuple[int, ...]:
    """`--seeds 0,1,2` as a tuple of distinct non-negative integers."""
    try:
        seeds = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise EquigenError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if not seeds:
        raise EquigenError("--seeds: give at least one seed")
    return seeds


def parse_weights_option(values: Sequence[str] | None) -> Mapping[str, Path] | Path | None:
    """`--weights` values as BaselineConfig.weights: one bare PATH, or any number of MODEL=PATH."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return Path(values[0])
    out: dict[str, Path] = {}
    for v in values:
        model, sep, path = v.partition("=")
        if not sep or not model or not path:
            raise EquigenError(f"--weights: expected MODEL=PATH when giving several, got {v!r}")
        out[model] = Path(path)
    return out


@dataclass(frozen=True)
class BaselineResult:
    """What a run produced: its folder, the side-by-side report, and each model's test metrics."""

    run_dir: Path
    report: Path  # <run_dir>/report.md (written by rank 0 only)
    models: dict[str, dict]  # model name -> metrics over its seeds, as in <run_dir>/<model>/metrics.json
    comparison: str | None = None  # the report's headline: the later model against the first, tested


def run_baseline(dataset_dir: Path, runs_dir: Path, cfg: BaselineConfig, progress: bool = True) -> BaselineResult:
    """Train, evaluate and compare `cfg.models`.

    Runs under torchrun unchanged (one process per GPU; only rank 0 writes and prints).
    """
    cfg = cfg.validated()  # before torch is imported: a bad flag fails in a fraction of a second
    try:
        from equigen.baseline.train import train_and_compare
    except ImportError as exc:  # a plain `pip install equigen` harvests and publishes; training needs the extra
        missing = (exc.name or "").split(".")[0]
        if missing not in ("torch", "torchvision", "sklearn"):
            raise
        raise EquigenError(
            f"equigen baseline needs torch, torchvision and scikit-learn ({missing} is missing): "
            "pip install 'equigen[baseline]' (README: Set-up)"
        ) from None

    return train_and_compare(Path(dataset_dir), Path(runs_dir), cfg, progress=progress)
