"""Create generators and discriminators from a model name (``registry.toml``) or an architecture name."""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from torch import nn

from zoo.registry import architectures, unknown_name
from zoo.spec import ArchSpec, ModelSpec, check_settings, model_specs

GENERATOR_CHANNELS = {"in_channels": 1, "out_channels": 2}  # L in, ab out
DISCRIMINATOR_CHANNELS = {"in_channels": 3}  # cat(L, ab)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the models in the registry, optionally filtered by an fnmatch pattern (``"*gan"``)."""
    return sorted(n for n in model_specs() if pattern is None or fnmatch.fnmatch(n, pattern))


def _resolve(kind: Literal["generator", "discriminator"], name: str, overrides: dict[str, Any]) -> tuple[str, ArchSpec]:
    specs = model_specs()
    if name in specs:
        arch = getattr(specs[name], kind)
        if arch is None:
            raise ValueError(f"model {name!r} has no {kind}")
        return name, ArchSpec(arch.arch, {**arch.settings, **overrides})
    if name in architectures(kind).names():
        return name, ArchSpec(name, overrides)
    raise unknown_name(f"model or {kind} architecture", name, [*specs, *architectures(kind).names()])


def build(kind: Literal["generator", "discriminator"], arch: ArchSpec, model: str) -> nn.Module:
    """Instantiate ``arch`` with the channel keywords of ``kind``; ``model`` names the spec in errors."""
    check_settings(kind, arch, model)
    channels = GENERATOR_CHANNELS if kind == "generator" else DISCRIMINATOR_CHANNELS
    return architectures(kind).create(arch.arch, **channels, **arch.settings)


def create_generator(name: str, **overrides: Any) -> nn.Module:
    """The generator of model ``name`` (or the architecture ``name``), settings overridden by ``overrides``."""
    model, arch = _resolve("generator", name, overrides)
    return build("generator", arch, model)


def create_discriminator(name: str, **overrides: Any) -> nn.Module:
    """The discriminator of model ``name`` (or the architecture ``name``), settings overridden by ``overrides``."""
    model, arch = _resolve("discriminator", name, overrides)
    return build("discriminator", arch, model)


def create_models(spec: ModelSpec) -> tuple[nn.Module, nn.Module | None]:
    """Generator and discriminator (None if the model has none) of ``spec``."""
    generator = build("generator", spec.generator, spec.name)
    discriminator = build("discriminator", spec.discriminator, spec.name) if spec.discriminator else None
    return generator, discriminator
