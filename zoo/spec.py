"""Typed model specifications, read from ``registry.toml``.

One frozen dataclass per level (as litgpt's ``Config``): a :class:`ModelSpec` names a generator and an optional
discriminator (:class:`ArchSpec`) and a training recipe of :class:`StageSpec` stages. ``[defaults]`` merge under
every model, model-level ``image_size``/``batch_size`` merge under every stage. Every key is checked: an unknown
key, a wrong type or an unknown architecture fails with a message naming the model and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import inspect
import os
import tomllib
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from zoo.registry import architectures, unknown_name

LossName = Literal["mse", "l1", "l1+gan"]
GanMode = Literal["vanilla", "lsgan"]


class SpecError(ValueError):
    """A malformed model specification; the message names the model and the key."""


@dataclass(frozen=True)
class ArchSpec:
    """An architecture name and the settings its factory is called with."""

    arch: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, **self.settings}


@dataclass(frozen=True)
class OptimizerSpec:
    """Adam settings (pix2pix's defaults)."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0


@dataclass(frozen=True)
class StageSpec:
    """One stage of a training recipe."""

    name: str
    loss: LossName
    epochs: int
    optimizer: OptimizerSpec = OptimizerSpec()
    d_optimizer: OptimizerSpec | None = None  # the discriminator's; None: same as ``optimizer``
    gan_mode: GanMode = "vanilla"
    lambda_l1: float = 100.0
    decay_epochs: int = 0  # pix2pix's "linear" policy: the last decay_epochs epochs take the lr linearly to 0
    image_size: int = 256
    batch_size: int = 16

    def lr_factor(self, epoch: int) -> float:
        """The multiplier of the base learning rates in ``epoch`` (0-based): 1, then linear decay towards 0."""
        decay = min(self.decay_epochs, self.epochs)  # --epochs may shorten a stage below its decay
        return 1.0 - max(0, epoch + 1 - (self.epochs - decay)) / (decay + 1)

    @property
    def uses_gan(self) -> bool:
        return self.loss == "l1+gan"

    @property
    def discriminator_optimizer(self) -> OptimizerSpec:
        return self.d_optimizer or self.optimizer


@dataclass(frozen=True)
class ModelSpec:
    """A named model: generator, optional discriminator and training recipe."""

    name: str
    generator: ArchSpec
    stages: tuple[StageSpec, ...]
    discriminator: ArchSpec | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON- and TOML-friendly dict that :func:`spec_from_dict` turns back into this spec."""
        out: dict[str, Any] = {"description": self.description, "generator": self.generator.to_dict()}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator.to_dict()
        out["stages"] = [_plain(dataclasses.asdict(stage)) for stage in self.stages]
        return out

    def with_overrides(
        self,
        generator: Mapping[str, Any] | None = None,
        discriminator: Mapping[str, Any] | None = None,
        **stage_fields: Any,
    ) -> ModelSpec:
        """A copy with generator/discriminator settings and stage fields (applied to every stage) replaced."""
        raw = self.to_dict()
        raw["generator"].update(generator or {})
        if discriminator:
            if "discriminator" not in raw:
                raise SpecError(f"model {self.name!r} has no discriminator to override")
            raw["discriminator"].update(discriminator)
        for stage in raw["stages"]:
            for key, value in stage_fields.items():
                if key == "lr":
                    stage["optimizer"]["lr"] = value
                else:
                    stage[key] = value
        return spec_from_dict(self.name, raw)


def _plain(value: Any) -> Any:
    """Dataclass-dict values made TOML/JSON friendly (tuples to lists, None dropped)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- parsing


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked (and, for tuples and floats, converted) against the type ``hint``."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(repr(a) for a in typing.get_args(hint))
            raise SpecError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _check_type(value, args[0], where)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise SpecError(f"{where}: expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise SpecError(f"{where}: expected a table, got {value!r}")
        return _build(hint, value, where)
    raise SpecError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__} {value!r}")


def _build(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``table``, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in table if k not in fields]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(fields)})"
        raise SpecError(f"{where}: unknown key {unknown[0]!r}{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in table:
            kwargs[name] = _check_type(table[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{where}: missing key {name!r}")
    return cls(**kwargs)


def _arch_spec(kind: Literal["generator", "discriminator"], raw: Any, where: str) -> ArchSpec:
    if isinstance(raw, str):
        raw = {"arch": raw}
    if not isinstance(raw, Mapping) or not isinstance(raw.get("arch"), str):
        raise SpecError(f"{where}: expected a table with a string 'arch', got {raw!r}")
    registry = architectures(kind)
    if raw["arch"] not in registry.names():
        raise SpecError(f"{where}.arch: {unknown_name(f'{kind} architecture', raw['arch'], registry.names())}")
    return ArchSpec(raw["arch"], {k: v for k, v in raw.items() if k != "arch"})


_MODEL_KEYS = {"description", "generator", "discriminator", "stages", "image_size", "batch_size"}
_STAGE_DEFAULT_KEYS = ("image_size", "batch_size")


def spec_from_dict(name: str, raw: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> ModelSpec:
    """Build and validate the :class:`ModelSpec` called ``name`` from its table (and ``[defaults]``)."""
    where = f"model {name!r}"
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a table, got {raw!r}")
    unknown = sorted(set(raw) - _MODEL_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_MODEL_KEYS))})")
    for key in ("generator", "stages"):
        if key not in raw:
            raise SpecError(f"{where}: missing key {key!r}")
    inherited = {k: v for k, v in {**(defaults or {}), **raw}.items() if k in _STAGE_DEFAULT_KEYS}
    if not isinstance(raw["stages"], list) or not raw["stages"]:
        raise SpecError(f"{where}.stages: expected a non-empty list of [[stages]] tables")
    stages = tuple(
        _check_type({**inherited, **stage} if isinstance(stage, Mapping) else stage, StageSpec, f"{where}.stages[{i}]")
        for i, stage in enumerate(raw["stages"])
    )
    discriminator = None
    if "discriminator" in raw:
        discriminator = _arch_spec("discriminator", raw["discriminator"], f"{where}.discriminator")
    needs_d = [s.name for s in stages if s.uses_gan]
    if needs_d and discriminator is None:
        raise SpecError(f"{where}: stage {needs_d[0]!r} uses a GAN loss but the model has no discriminator")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{where}.description: expected str, got {description!r}")
    return ModelSpec(
        name=name,
        generator=_arch_spec("generator", raw["generator"], f"{where}.generator"),
        discriminator=discriminator,
        stages=stages,
        description=description,
    )


def load_registry_file(path: Path) -> dict[str, ModelSpec]:
    """Every model in the ``registry.toml`` at ``path``, validated."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"defaults", "models"})
    if unknown:
        raise SpecError(f"{path}: unknown top-level table {unknown[0]!r} (expected [defaults] and [models.NAME])")
    defaults = data.get("defaults", {})
    bad = sorted(set(defaults) - set(_STAGE_DEFAULT_KEYS))
    if bad:
        raise SpecError(f"{path}: [defaults]: unknown key {bad[0]!r} (known: {', '.join(_STAGE_DEFAULT_KEYS)})")
    return {name: spec_from_dict(name, raw, defaults) for name, raw in data.get("models", {}).items()}


def registry_path() -> Path:
    """The registry in use: ``$ZOO_REGISTRY``, else the one installed with the package, else the checkout's."""
    if env := os.environ.get("ZOO_REGISTRY"):
        return Path(env)
    packaged = Path(__file__).with_name("registry.toml")
    return packaged if packaged.exists() else Path(__file__).resolve().parents[1] / "registry.toml"


REGISTRIES_GROUP = "zoo.registries"


def _plugin_registry_files() -> list[tuple[str, Path]]:
    """``registry.toml`` files shipped by plugin packages named in the ``zoo.registries`` entry-point group."""
    found = []
    for ep in entry_points(group=REGISTRIES_GROUP):
        try:
            path = Path(str(importlib.resources.files(ep.value) / "registry.toml"))
        except Exception as exc:  # a broken plugin must not take the zoo down
            warnings.warn(f"model registry plugin {ep.name!r} ({ep.value}) failed to load: {exc}", RuntimeWarning)
            continue
        found.append((f"{ep.name} ({ep.value})", path))
    return found


@cache
def model_specs() -> dict[str, ModelSpec]:
    """Every named model: the registry in use, then the models that plugins ship (built-in names win)."""
    specs = load_registry_file(registry_path())
    for plugin, path in _plugin_registry_files():
        try:
            extra = load_registry_file(path)
        except (OSError, SpecError) as exc:
            warnings.warn(f"model registry plugin {plugin} is broken: {exc}", RuntimeWarning)
            continue
        for name, spec in extra.items():
            if name in specs:
                warnings.warn(f"model registry plugin {plugin} redefines {name!r}; the first wins", RuntimeWarning)
            else:
                specs[name] = spec
    return specs


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` called ``name``; an unknown name fails listing the close matches."""
    specs = model_specs()
    if name not in specs:
        raise unknown_name("model", name, list(specs))
    return specs[name]


def check_settings(kind: Literal["generator", "discriminator"], arch: ArchSpec, model: str) -> None:
    """Fail with a :class:`SpecError` naming ``model`` and the key if ``arch``'s factory does not take a setting."""
    params = inspect.signature(architectures(kind).get(arch.arch)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in arch.settings:
        if key not in params or key in ("in_channels", "out_channels"):
            known = [p for p in params if p not in ("self", "in_channels", "out_channels")]
            raise SpecError(
                f"model {model!r}: {kind}.{key}: {arch.arch!r} has no setting {key!r} (settings: {', '.join(known)})"
            )


def _halvings(n: int) -> int:
    """How many times 2 divides ``n`` (n > 0)."""
    return (n & -n).bit_length() - 1


def adapt_to_image_size(spec: ModelSpec, image_size: int) -> tuple[ModelSpec, str | None]:
    """``spec`` with generator settings that fit ``image_size`` px, and a note saying what changed (or None).

    The one rule: a generator with a ``num_downs`` setting (pix2pix's U-Net) halves its input ``num_downs``
    times, so it gets ``min(num_downs, k)`` where 2**k is the largest power of two dividing ``image_size``
    (log2 of it for powers of two: 6 at 64 px, 7 at 128 px, the spec's 8 at 256 px).
    """
    params = inspect.signature(architectures("generator").get(spec.generator.arch)).parameters
    if "num_downs" not in params:
        return spec, None
    current = spec.generator.settings.get("num_downs", params["num_downs"].default)
    fits = _halvings(image_size)
    if current <= fits:
        return spec, None
    adapted = spec.with_overrides(generator={"num_downs": fits})
    return adapted, f"num_downs {current} -> {fits} for {image_size} px"
