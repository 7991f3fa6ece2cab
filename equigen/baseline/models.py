"""torchvision ResNet / EfficientNet classifiers, initialised from ImageNet weights (torchvision's weights API,
cached under $TORCH_HOME, or a local file) or from scratch."""

from __future__ import annotations

import logging
import re
import urllib.error
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from equigen.core.errors import EquigenError, first_line

logger = logging.getLogger(__name__)

_FAMILY = re.compile(r"^(resnet\d+|efficientnet_b\d+)$")
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.pth$")  # torchvision names its files <name>-<sha256 prefix>.pth


def model_names() -> list[str]:
    """The torchvision classifiers this baseline supports: resnet* and efficientnet_b*."""
    return sorted(n for n in torchvision.models.list_models(module=torchvision.models) if _FAMILY.match(n))


def check_model_name(name: str) -> None:
    valid = model_names()
    if name not in valid:
        raise EquigenError(f"unknown model {name!r}; choose from: {', '.join(valid)}")


def head_prefix(model: nn.Module) -> str:
    """State-dict prefix of the final Linear layer (replaced to fit the genre count)."""
    if isinstance(getattr(model, "fc", None), nn.Linear):
        return "fc."
    return f"classifier.{len(model.classifier) - 1}."


def pretrained_weights(name: str):
    """torchvision's recommended ImageNet weights for `name` (its `DEFAULT`, e.g. ResNet50_Weights.IMAGENET1K_V2)."""
    check_model_name(name)
    return torchvision.models.get_model_weights(name).DEFAULT


def cached_weights_path(name: str) -> Path:
    """Where torch.hub keeps the file ($TORCH_HOME/hub/checkpoints/<file>, as torchvision itself caches it)."""
    url = pretrained_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _download(url: str, path: Path) -> None:
    """The one network call: torch.hub's download, checking the sha256 prefix in the file name."""
    match = _HASH_PREFIX.search(path.name)
    torch.hub.download_url_to_file(url, str(path), hash_prefix=match.group(1) if match else None, progress=False)


def fetch_pretrained(name: str, download: Callable[[str, Path], None] | None = None) -> Path:
    """The cached ImageNet weights file of `name`, downloaded once if missing; a one-line error when offline."""
    weights = pretrained_weights(name)
    path = cached_weights_path(name)
    if path.is_file():
        return path
    logger.info("downloading %s weights %s to %s", name, weights.url, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        (download or _download)(weights.url, path)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        path.unlink(missing_ok=True)
        raise EquigenError(
            f"pretrained {name} weights ({weights}) are not cached and could not be downloaded "
            f"({first_line(e)[:120]}): put {path.name} from {weights.url} in {path.parent} (or set TORCH_HOME), "
            f"or pass --weights {name}=PATH, or --no-pretrained to train from scratch"
        ) from None
    return path


def check_weights_file(path: Path) -> None:
    if not Path(path).is_file():
        raise EquigenError(f"--weights file {path} does not exist")


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    check_weights_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file (pickle, zip, unsafe global)
        raise EquigenError(f"--weights file {path} is not a loadable torch state dict ({first_line(e)})") from None
    # Accept a bare state dict, or one wrapped the way common checkpoints wrap it.
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EquigenError(f"--weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def build_model(name: str, num_classes: int, weights: Path | None = None) -> nn.Module:
    """A randomly initialised `name` with `num_classes` outputs; backbone from `weights` if given.

    Nothing is downloaded: `weights` is a local file (e.g. torchvision's resnet50-*.pth).
    """
    check_model_name(name)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    # torchvision's EfficientNet head init scales with 1/sqrt(num_classes): meant for 1000 classes, for a
    # handful of genres it starts with logits ~10x too large and training diverges. Use nn.Linear's default.
    head = head_prefix(model)
    model.get_submodule(head.rstrip(".")).reset_parameters()
    if weights is None:
        return model
    state = _load_state_dict(Path(weights))
    backbone = {k: v for k, v in state.items() if not k.startswith(head)}
    own = model.state_dict()
    missing = [k for k in own if not k.startswith(head) and k not in backbone]
    unexpected = [k for k in backbone if k not in own]
    mismatched = [k for k in backbone if k in own and backbone[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        example = (missing or unexpected or mismatched)[0]
        raise EquigenError(
            f"--weights file {weights} does not fit {name}: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} wrongly shaped tensors (e.g. {example}); is it a torchvision {name} state dict?"
        )
    model.load_state_dict(backbone, strict=False)  # the head keeps its fresh num_classes-way init
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
