"""``smp-unet``: a segmentation_models_pytorch U-Net with any smp encoder (``tu-<name>`` for timm ones)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from safetensors.torch import load_file
from torch import nn

from zoo.downloads import DatasetError
from zoo.errors import one_line
from zoo.pretrained import imagenet_source
from zoo.registry import Geometry, register_generator

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
# Top-level modules of timm/torchvision/smp classifiers that an encoder does not have.
_CLASSIFIER_HEADS = frozenset({"fc", "classifier", "head", "last_linear"})
# What comes after the last feature stage of timm's EfficientNets (a 1x1 conv and its BatchNorm); not encoder.
_FEATURE_HEADS = frozenset({"conv_head", "bn2"})


# smp's U-Net halves its input five times (encoder_depth 5): its skips align at multiples of the encoder's output
# stride, 32 (at other sizes it resizes them, which smears the finest detail).
@register_generator("smp-unet", geometry=Geometry(multiple=32), pretrained_setting="encoder_weights")
def smp_unet(
    in_channels: int = 1,
    out_channels: int = 2,
    *,
    encoder: str = "resnet18",
    encoder_weights: str | None = None,
    decoder_channels: Sequence[int] | None = None,
    head_kernel: int = 3,
) -> smp.Unet:
    """An ``smp.Unet`` whose head starts at zero: ``encoder`` is any smp encoder name, timm ones as
    ``tu-<timm name>``.

    The head (a ``head_kernel`` x ``head_kernel`` convolution, then tanh for ab) has zero weights and bias, so
    the untrained model predicts ab = 0, the gray photo, and learns colour from there (smp's random head made
    a fresh model's ab wild: validation L1 0.44 against gray's 0.12 after 12 steps). ``head_kernel=1`` makes
    a head of many outputs (logits over ab bins) 9 times cheaper than smp's 3 x 3.

    ``encoder_weights`` is None (or ``"none"``) for a random encoder, ``"imagenet"`` for ImageNet weights (where
    :mod:`zoo.pretrained` has a source, from it; else downloaded by smp/timm; offline without them, a one-line
    warning and a random encoder), or the path of a local ``.safetensors``/``.pth``/``.pt`` encoder state dict
    (see :func:`load_encoder_weights`). The decoder keeps smp's default initialisation.
    """
    weights = None if encoder_weights is None or encoder_weights.lower() == "none" else encoder_weights
    if weights not in (None, "imagenet") and not _is_weights_path(weights):
        raise ValueError(
            f"smp-unet encoder_weights must be None, 'imagenet' or a path to a {'/'.join(_WEIGHT_SUFFIXES)} file,"
            f" got {encoder_weights!r}"
        )
    if head_kernel not in (1, 3, 5):
        raise ValueError(f"smp-unet head_kernel must be 1, 3 or 5, got {head_kernel}")
    build: dict[str, object] = dict(encoder_name=encoder, in_channels=in_channels, classes=out_channels,
                                    activation="tanh" if out_channels == 2 else None)
    if decoder_channels is not None:
        build["decoder_channels"] = tuple(decoder_channels)
    model = _imagenet_unet(encoder, build) if weights == "imagenet" else None
    if model is None:
        model = smp.Unet(encoder_weights=None, **build)
        if weights not in (None, "imagenet"):
            load_encoder_weights(model.encoder, weights)
    head = model.segmentation_head[0]
    model.segmentation_head[0] = nn.Conv2d(head.in_channels, out_channels, head_kernel, padding=head_kernel // 2)
    nn.init.zeros_(model.segmentation_head[0].weight)
    nn.init.zeros_(model.segmentation_head[0].bias)
    return model


def _imagenet_unet(encoder: str, build: dict[str, object]) -> smp.Unet | None:
    """A U-Net whose encoder starts from ImageNet: the zoo's own weights where it has them, else smp's or timm's
    download; None, after a one-line warning, when they cannot be had (then training starts from random)."""
    source = imagenet_source(encoder)
    try:
        if source is not None:
            state = source.load()
            model = smp.Unet(encoder_weights=None, **build)
            load_encoder_weights(model.encoder, state, where=f"ImageNet weights of {encoder} ({source.description})")
            return model
        # timm encoders take a flag (the pretrained tag is part of the name), smp ones the weights' name
        return smp.Unet(encoder_weights=True if encoder.startswith("tu-") else "imagenet", **build)
    except (DatasetError, OSError) as exc:  # offline: huggingface_hub, urllib and pooch failures
        reason = one_line(exc, 300)
        warnings.warn(f"no ImageNet weights for encoder {encoder!r} ({reason}); training it from random"
                      " initialisation (give a local file with --set encoder_weights=PATH)", UserWarning, stacklevel=3)
        return None


def _is_weights_path(value: str) -> bool:
    return value.endswith(_WEIGHT_SUFFIXES) or Path(value).is_file()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat state dict from ``.safetensors``, or ``.pth``/``.pt`` read with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file {str(path)!r} does not exist")
    source = load_file(path) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping) or not all(isinstance(v, torch.Tensor) for v in source.values()):
        raise ValueError(f"{str(path)!r} does not hold a flat state dict of tensors")
    return dict(source)


def load_encoder_weights(encoder: nn.Module, source: str | Path | Mapping[str, torch.Tensor], where: str = "") -> None:
    """Load a state dict (or the file holding one, see :func:`read_state_dict`) into an smp ``encoder`` in place.

    It holds either the keys of the smp encoder itself or a plain timm/torchvision model state dict; classifier
    keys are ignored. A 3-channel stem loaded into a 1-channel encoder gets its RGB filters summed, which is what
    a gray image (R = G = B) sees. Raises if no key matches; warns about encoder keys left unloaded and keys
    left unused. ``where`` names the source in messages.
    """
    if not isinstance(source, Mapping):
        source, where = read_state_dict(source), str(source)
    target = encoder.state_dict()
    by_canonical = _canonical_index(target, where)
    loaded: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for canonical, key in _canonical_index(source, where).items():
        if canonical in by_canonical:
            name = by_canonical[canonical]
            loaded[name] = _fit(source[key], target[name], key, where)
        elif key.split(".", 1)[0] not in _CLASSIFIER_HEADS | _FEATURE_HEADS:
            unused.append(key)
    if not loaded:
        raise ValueError(
            f"no key of {where!r} matches the encoder (file keys like {', '.join(list(source)[:3])};"
            f" encoder keys like {', '.join(list(target)[:3])})"
        )
    missing = [k for k in target if k not in loaded]
    notes = [f"{what}: {_preview(keys)}" for what, keys in (("kept initial", missing), ("unused", unused)) if keys]
    if notes:
        warnings.warn(
            f"loaded {len(loaded)} of {len(target)} encoder tensors from {where!r}; {'; '.join(notes)}",
            UserWarning,
            stacklevel=2,
        )
    encoder.load_state_dict({**target, **loaded})


def _canonical(key: str) -> str:
    """A key as both a plain timm model and smp's wrapped timm encoder name it.

    smp's ``tu-`` encoders hold the timm model as ``model``; timm's ``features_only`` wrapper flattens
    top-level Sequentials, naming ``stages.0`` as ``stages_0``.
    """
    key = key.removeprefix("model.")
    first, _, rest = key.partition(".")
    return f"{first.replace('_', '.')}.{rest}" if rest else key


def _canonical_index(keys: Mapping[str, torch.Tensor], where: str) -> dict[str, str]:
    """Map every canonical key to its key; raise when two keys of ``where`` collide."""
    index: dict[str, str] = {}
    for key in keys:
        other = index.setdefault(_canonical(key), key)
        if other != key:
            raise ValueError(f"keys {other!r} and {key!r} of {where} are ambiguous")
    return index


def _fit(value: torch.Tensor, like: torch.Tensor, key: str, where: str) -> torch.Tensor:
    """``value`` shaped like ``like``: as is, or a 3-channel stem summed over RGB for a 1-channel encoder."""
    if value.shape == like.shape:
        return value
    stem = value.dim() == 4 and value.shape[1] == 3 and like.shape[1] == 1
    if stem and value.shape[0] == like.shape[0] and value.shape[2:] == like.shape[2:]:
        return value.sum(dim=1, keepdim=True)
    raise ValueError(f"{key!r} of {where} has shape {tuple(value.shape)}, the encoder needs {tuple(like.shape)}")


def _preview(keys: list[str], count: int = 5) -> str:
    """Up to ``count`` keys, then how many more."""
    more = f" and {len(keys) - count} more" if len(keys) > count else ""
    return ", ".join(keys[:count]) + more
