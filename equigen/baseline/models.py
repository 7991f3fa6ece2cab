"""torchvision ResNet / EfficientNet classifiers, optionally initialised from a local ImageNet state dict."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torchvision
from torch import nn

from equigen.errors import EquigenError, first_line

_FAMILY = re.compile(r"^(resnet\d+|efficientnet_b\d+)$")


def model_names() -> list[str]:
    """The torchvision classifiers this baseline supports: resnet* and efficientnet_b*."""
    return sorted(n for n in torchvision.models.list_models(module=torchvision.models) if _FAMILY.match(n))


def check_model_name(name: str) -> None:
    valid = model_names()
    if name not in valid:
        raise EquigenError(f"unknown model {name!r}; choose from: {', '.join(valid)}")


def _head_prefix(model: nn.Module) -> str:
    """State-dict prefix of the final Linear layer (replaced to fit the genre count)."""
    if isinstance(getattr(model, "fc", None), nn.Linear):
        return "fc."
    return f"classifier.{len(model.classifier) - 1}."


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
    head = _head_prefix(model)
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
