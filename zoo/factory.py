"""Create a model's parts by name: generator, discriminator, objectives, and the predictor used at inference.

The generator outputs what the model's output objective asks for (``ModelSpec.output_channels``: 2 for ab);
:class:`Predictor` puts the objective's decoder after it, so that colorize, export, scoring and sample grids
all see one module mapping L to normalised ab.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from zoo.color import AB_SCALE
from zoo.hints import HINT_CHANNELS
from zoo.registry import DISCRIMINATORS, GENERATORS, OBJECTIVES, registry, unknown_name
from zoo.spec import ArchSpec, ModelSpec, check_settings, model_specs

DISCRIMINATOR_CHANNELS = 3  # cat(L, ab)
_SOURCE_NAME = re.compile(r"[A-Za-z0-9_-]+")  # a named weights source (imagenet), not a path


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the models in the registry, optionally filtered by an fnmatch pattern (``"*gan"``)."""
    return sorted(n for n in model_specs() if pattern is None or fnmatch.fnmatch(n, pattern))


def _resolve(kind: Literal["generator", "discriminator"], name: str, overrides: dict[str, Any]) -> tuple[ModelSpec | None, ArchSpec]:
    specs = model_specs()
    if name in specs:
        arch = getattr(specs[name], kind)
        if arch is None:
            raise ValueError(f"model {name!r} has no {kind}")
        return specs[name], ArchSpec(arch.arch, {**arch.settings, **overrides})
    if name in registry(kind).names():
        return None, ArchSpec(name, overrides)
    raise unknown_name(f"model or {kind} architecture", name, [*specs, *registry(kind).names()])


def build_generator(arch: ArchSpec, out_channels: int = 2, model: str | None = None, pretrained: bool = True) -> nn.Module:
    """Instantiate generator ``arch`` mapping L (and, for one that takes hints, the hint channels) to
    ``out_channels``; ``model`` names the spec in errors.

    ``pretrained=False`` leaves out the initial weights its settings name (trained weights are loaded next).
    """
    check_settings("generator", arch.arch, arch.settings, f"model {model or arch.arch!r}: generator")
    settings = dict(arch.settings)
    if not pretrained and (setting := GENERATORS.pretrained_setting(arch.arch)) in settings:
        settings[setting] = None
    return GENERATORS.create(arch.arch, in_channels=input_channels(arch.arch), out_channels=out_channels, **settings)


def input_channels(arch: str) -> int:
    """Channels generator ``arch`` takes: L, and the three hint channels if it takes hints."""
    return 1 + HINT_CHANNELS if GENERATORS.takes_hints(arch) else 1


def named_pretrained_weights(arch: ArchSpec) -> str | None:
    """``setting=value`` when generator ``arch``'s initial weights are named by a source (``encoder_weights =
    "imagenet"``), not a file path and not none: weights that building it again gives again without opening a
    file its settings name (what :func:`zoo.checkpoint.pack` may leave out of a file). None otherwise."""
    setting = GENERATORS.pretrained_setting(arch.arch)
    value = arch.settings.get(setting) if setting is not None else None
    if not isinstance(value, str) or value.lower() == "none" or not _SOURCE_NAME.fullmatch(value):
        return None
    return f"{setting}={value!r}"


def build_discriminator(arch: ArchSpec, model: str | None = None) -> nn.Module:
    """Instantiate discriminator ``arch`` on cat(L, ab); ``model`` names the spec in errors."""
    check_settings("discriminator", arch.arch, arch.settings, f"model {model or arch.arch!r}: discriminator")
    return DISCRIMINATORS.create(arch.arch, in_channels=DISCRIMINATOR_CHANNELS, **arch.settings)


def create_generator(name: str, **overrides: Any) -> nn.Module:
    """The generator of model ``name`` (or the architecture ``name``), settings overridden by ``overrides``."""
    spec, arch = _resolve("generator", name, overrides)
    return build_generator(arch, 2 if spec is None else spec.output_channels, name)


def create_discriminator(name: str, **overrides: Any) -> nn.Module:
    """The discriminator of model ``name`` (or the architecture ``name``), settings overridden by ``overrides``."""
    _, arch = _resolve("discriminator", name, overrides)
    return build_discriminator(arch, name)


def create_models(spec: ModelSpec) -> tuple[nn.Module, nn.Module | None]:
    """Generator and discriminator (None if the model has none) of ``spec``."""
    generator = build_generator(spec.generator, spec.output_channels, spec.name)
    discriminator = build_discriminator(spec.discriminator, spec.name) if spec.discriminator else None
    return generator, discriminator


def create_objectives(spec: ModelSpec) -> nn.ModuleDict:
    """Every objective the stages of ``spec`` weight, built once with the model's settings for it."""
    return nn.ModuleDict({name: OBJECTIVES.create(name, **spec.objective_settings(name)) for name in spec.objective_names})


def decoder_of(spec: ModelSpec, objectives: nn.ModuleDict | None = None) -> nn.Module:
    """The module mapping the generator's output to ab: the output objective's decoder, else the identity."""
    name = spec.output_objective
    if name is None:
        return nn.Identity()
    objective = objectives[name] if objectives is not None else OBJECTIVES.create(name, **spec.objective_settings(name))
    return objective.decoder()


def inferred_ab(predict: Callable[[Tensor], Tensor], x: Tensor, *, chroma_scale: float = 1.0,
                flip_average: bool = False, chroma_knee: float = 0.0) -> Tensor:
    """ab for a generator input ``x`` (normalised L, and hint channels for a model that takes them) as a model's
    inference settings (:class:`zoo.spec.ModelSpec`) ask: ``predict(x)``, averaged with the prediction for the
    mirrored input mirrored back if ``flip_average`` (one batch of both); each pixel's ab times C / (C +
    ``chroma_knee``), C its chroma in Lab units, if the knee is above 0; times ``chroma_scale``. What
    :class:`Predictor` and :meth:`zoo.trainable.Trainable.predict` both return."""
    if flip_average:
        ab, mirrored = predict(torch.cat([x, x.flip(-1)])).chunk(2)  # chunk, not len(x): ONNX keeps the batch axis
        ab = (ab + mirrored.flip(-1)) / 2
    else:
        ab = predict(x)
    if chroma_knee > 0:
        chroma = ab.square().sum(dim=-3, keepdim=True).sqrt()  # normalised units: Lab chroma / AB_SCALE
        ab = ab * (chroma / (chroma + chroma_knee / AB_SCALE))
    return ab if chroma_scale == 1.0 else ab * chroma_scale


class Predictor(nn.Module):
    """A generator followed by its model's decoder: normalised L (B, 1, H, W) to normalised ab (B, 2, H, W),
    with the model's inference settings (``flip_average``, ``chroma_knee``, ``chroma_scale``:
    :func:`inferred_ab`). A generator that takes hints (``guided``) gets the hint channels (B, 3, H, W) too:
    none (zeros) unless given."""

    def __init__(self, generator: nn.Module, decoder: nn.Module | None = None, *, chroma_scale: float = 1.0,
                 flip_average: bool = False, chroma_knee: float = 0.0, guided: bool = False) -> None:
        super().__init__()
        self.generator = generator
        self.decoder = decoder if decoder is not None else nn.Identity()
        self.chroma_scale, self.flip_average, self.chroma_knee = chroma_scale, flip_average, chroma_knee
        self.guided = guided

    def forward(self, L: Tensor, hints: Tensor | None = None) -> Tensor:
        x = L
        if self.guided:
            x = torch.cat([L, hints if hints is not None else L.new_zeros(L.shape[0], HINT_CHANNELS, *L.shape[2:])], 1)
        return inferred_ab(lambda x: self.decoder(self.generator(x)), x, chroma_scale=self.chroma_scale,
                           flip_average=self.flip_average, chroma_knee=self.chroma_knee)

    @classmethod
    def of(cls, spec: ModelSpec, generator: nn.Module, decoder: nn.Module) -> Predictor:
        """``generator`` and ``decoder`` run with ``spec``'s inference settings."""
        return cls(generator, decoder, **spec.ab_settings, guided=GENERATORS.takes_hints(spec.generator.arch))


def create_predictor(spec: ModelSpec, pretrained: bool = True) -> Predictor:
    """A fresh :class:`Predictor` of ``spec``; ``pretrained=False`` for one that a checkpoint's weights fill."""
    generator = build_generator(spec.generator, spec.output_channels, spec.name, pretrained)
    return Predictor.of(spec, generator, decoder_of(spec))


def run_otherwise(spec: ModelSpec, predictor: Predictor, settings: Mapping[str, Any]) -> tuple[ModelSpec, Predictor]:
    """``spec`` and a trained ``predictor`` with inference ``settings`` replaced (:meth:`ModelSpec.with_inference`):
    the same generator, a decoder built for the new settings (holding the old one's state) and the new scale
    and flip average. Unchanged without settings."""
    if not settings:
        return spec, predictor
    spec = spec.with_inference(settings)
    decoder = decoder_of(spec)
    decoder.load_state_dict(predictor.decoder.state_dict())
    held = next(predictor.generator.parameters(), None)
    decoder = decoder.to(held.device) if held is not None else decoder
    return spec, Predictor.of(spec, predictor.generator, decoder).eval()
