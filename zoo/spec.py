"""Typed model specifications, read from ``registry.toml``.

One frozen dataclass per level (as litgpt's ``Config``): a :class:`ModelSpec` names a generator and an optional
discriminator (:class:`ArchSpec`), the settings of its objectives, and a training recipe of :class:`StageSpec`
stages, each weighting objectives by name (``loss = { l1 = 100, gan = 1 }``). ``[defaults]`` merge under every
model, model-level ``image_size``/``batch_size`` merge under every stage. Every key is checked: an unknown key,
a wrong type, a value out of its range (``epochs = 0``, ``image_size = 100000``, ``time_share = 0``), an unknown
architecture or objective, or a setting its constructor does not take (or takes as another type, by its
annotations) fails with a :class:`SpecError` naming the model and the key (and the registry file).

The first landing's stage form, ``loss = "l1+gan"`` with ``lambda_l1`` and ``gan_mode``, still reads (so older
checkpoints load); it means ``loss = { l1 = lambda_l1, gan = 1 }`` and ``objectives.gan.mode = gan_mode``.
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import difflib
import importlib.resources
import inspect
import math
import os
import tomllib
import types
import typing
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from zoo.errors import ZooError, one_line
from zoo.registry import GENERATORS, OBJECTIVES, registry, unknown_name

Kind = Literal["generator", "discriminator", "objective"]
AB_CHANNELS = 2
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 4096  # a side of 4096 px is 16.8 megapixels a square image: beyond every recipe and benchmark
MAX_CHROMA_SCALE = 4.0  # well past useful: ab x 4 takes a pale colour (|ab| 25) to the edge of the +-110 range
MAX_CHROMA_KNEE = 200.0  # Lab chroma units; sRGB's most saturated colours have C about 130
_LEGACY_LOSSES = {"mse": {"mse": 1.0}, "l1": {"l1": 1.0}, "l1+gan": {"l1": None, "gan": 1.0}}  # None: lambda_l1


class SpecError(ZooError, ValueError):
    """A malformed model specification; the message names the model and the key."""


@dataclass(frozen=True)
class Bounds:
    """The finite values a number (or each number of a tuple) may take: from ``low`` to ``high``, each end
    excluded when ``open_low``/``open_high``; with ``ordered``, a tuple's numbers do not decrease."""

    low: float
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    ordered: bool = False

    def check(self, value: Any, where: str) -> None:
        numbers = value if isinstance(value, tuple) else (value,)
        for number in numbers:
            below = number < self.low or (self.open_low and number == self.low)
            above = self.high is not None and (number > self.high or (self.open_high and number == self.high))
            if not math.isfinite(number) or below or above:
                raise SpecError(f"{where}: expected {self}, got {value!r}")
        if self.ordered and list(numbers) != sorted(numbers):
            raise SpecError(f"{where}: expected numbers in increasing order, got {value!r}")

    def __str__(self) -> str:
        low = f"{'>' if self.open_low else '>='} {self.low:g}"
        high = "" if self.high is None else f" and {'<' if self.open_high else '<='} {self.high:g}"
        return f"a value {low}{high}"


def bounded(default: Any = dataclasses.MISSING, **bounds: Any) -> Any:
    """A dataclass field whose values :class:`Bounds` limits (checked when a spec is read)."""
    return field(default=default, metadata={"bounds": Bounds(**bounds)})


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

    lr: float = bounded(2e-4, low=0, open_low=True)
    betas: tuple[float, float] = bounded((0.5, 0.999), low=0, high=1, open_high=True)
    weight_decay: float = bounded(0.0, low=0)


@dataclass(frozen=True)
class StageSpec:
    """One stage of a training recipe: objectives by name with their weights, length and optimiser."""

    name: str
    loss: Mapping[str, float]  # objective name -> weight, in the order the stage lists them
    epochs: int = bounded(low=1)
    optimizer: OptimizerSpec = OptimizerSpec()
    d_optimizer: OptimizerSpec | None = None  # the discriminator's; None: same as ``optimizer``
    decay_epochs: int = bounded(0, low=0)  # pix2pix's "linear" policy: the last decay_epochs epochs take the lr to 0
    image_size: int = bounded(256, low=MIN_IMAGE_SIZE, high=MAX_IMAGE_SIZE)
    batch_size: int = bounded(16, low=1)
    # random-resized crops of this area fraction; None: pix2pix's
    crop_scale: tuple[float, float] | None = bounded(None, low=0, high=1, open_low=True, ordered=True)
    time_share: float = bounded(1.0, low=0, open_low=True)  # under --max-time, the stage's share of the budget
    frozen: tuple[str, ...] = ()  # generator submodules (by name, e.g. "encoder") this stage does not train
    # train the stage this many times from the weights it starts with (each branch its own data order), then
    # average the branches' weights: a model soup (Wortsman et al. 2022), less variance at no inference cost
    branches: int = bounded(1, low=1)

    def lr_factor(self, epoch: int) -> float:
        """The multiplier of the base learning rates in ``epoch`` (0-based): 1, then linear decay towards 0."""
        decay = min(self.decay_epochs, self.epochs)  # --epochs may shorten a stage below its decay
        return 1.0 - max(0, epoch + 1 - (self.epochs - decay)) / (decay + 1)

    @property
    def uses_discriminator(self) -> bool:
        """Whether one of the stage's objectives trains against the discriminator."""
        return any(OBJECTIVES.get(name).needs_discriminator for name in self.loss)

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
    objectives: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> constructor settings
    description: str = ""
    inference_size: int | None = None  # short side the model sees at inference; None: the last stage's image size
    weights: str | None = None  # shipped trained weights (see weights_path)
    cpu: Mapping[str, Any] = field(default_factory=dict)  # stage settings that replace the recipe's on a CPU
    # predicted ab times this at inference: below 1, colours shrunk toward gray where a model trained on few
    # photos is confidently wrong (chosen by cross-validation on training photos, never on held-out ones)
    chroma_scale: float = 1.0
    # a pixel's colour kept in proportion C / (C + chroma_knee), C its predicted chroma (Lab units), before the
    # chroma scale: 0 keeps every pixel alike; above 0, faint colours (those a model hedges on) go toward gray
    # more than strong ones
    chroma_knee: float = 0.0
    # average the prediction with that of the mirrored photo, mirrored back (test-time augmentation): a model
    # unsure of a colour predicts different ones for the two views, and the mean shrinks just those
    flip_average: bool = False
    val_fraction: float = 0.1  # photos `zoo train` holds out for validation; 0: trains on all (lengths chosen by CV)

    @property
    def working_size(self) -> int:
        """The short side ``zoo colorize`` and ``zoo score`` run the model at (ab is then resized to the photo)."""
        return self.inference_size or self.stages[-1].image_size

    @property
    def ab_settings(self) -> dict[str, Any]:
        """How predicted ab is averaged, faded and scaled: the keyword arguments of ``zoo.factory.inferred_ab``."""
        return {key: getattr(self, key) for key in AB_SETTING_KEYS}

    @property
    def objective_names(self) -> list[str]:
        """Every objective some stage weights, in order of first use."""
        return list(dict.fromkeys(name for stage in self.stages for name in stage.loss))

    @property
    def output_objective(self) -> str | None:
        """The objective that defines what the generator outputs (logits over ab bins ...); None: plain ab."""
        return next((n for n in self.objective_names if _defines_output(n)), None)

    @property
    def output_channels(self) -> int:
        """Channels the generator outputs: the output objective's, else 2 (ab)."""
        name = self.output_objective
        return AB_CHANNELS if name is None else OBJECTIVES.get(name).output_channels(**self.objectives.get(name, {}))

    def objective_settings(self, name: str) -> dict[str, Any]:
        return dict(self.objectives.get(name, {}))

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON- and TOML-friendly dict that :func:`spec_from_dict` turns back into this spec."""
        out: dict[str, Any] = {"description": self.description, "generator": self.generator.to_dict()}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator.to_dict()
        if self.objectives:
            out["objectives"] = {name: dict(settings) for name, settings in self.objectives.items()}
        for key in _OPTIONAL_KEYS:
            if getattr(self, key) != _default(key):
                out[key] = getattr(self, key)
        if self.cpu:
            out["cpu"] = _plain(dict(self.cpu))
        out["stages"] = [_plain(dataclasses.asdict(stage)) for stage in self.stages]
        return out

    def for_device(self, device_type: str) -> ModelSpec:
        """The recipe for ``device_type``: on ``cpu``, the ``cpu`` table's stage settings replace the recipe's
        (an image size and crops that buy the most quality per CPU minute); elsewhere the recipe as written."""
        if device_type != "cpu" or not self.cpu:
            return self
        return self.with_overrides(**self.cpu)

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

    def with_inference(self, settings: Mapping[str, Any]) -> ModelSpec:
        """A copy with inference settings replaced: what trained weights are run with, not what they are.

        Keys: :data:`INFERENCE_KEYS`, and the decoding settings of the output objective (its
        ``decoding_settings``: classification's ``temperature``, say). Any other key is a :class:`SpecError`
        naming the ones that are allowed (``zoo score --set`` scores variants of shipped weights this way).
        """
        raw = self.to_dict()
        output = self.output_objective
        decoding = OBJECTIVES.get(output).decoding_settings if output else ()
        for key, value in settings.items():
            if key in INFERENCE_KEYS:
                raw[key] = value
            elif key in decoding:
                raw.setdefault("objectives", {}).setdefault(output, {})[key] = value
            else:
                allowed = [*INFERENCE_KEYS, *decoding]
                close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(close)}?" if close else f"those of {self.name}: {', '.join(allowed)}"
                raise SpecError(f"model {self.name!r}: {key!r} is not an inference setting; {hint}")
        return spec_from_dict(self.name, raw)


def _plain(value: Any) -> Any:
    """Dataclass-dict values made TOML/JSON friendly (tuples to lists, None dropped)."""
    if isinstance(value, Mapping):
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
        if value is None or len(args) == 1:
            return None if value is None else _check_type(value, args[0], where)
        for arg in args:
            with contextlib.suppress(SpecError):
                return _check_type(value, arg, where)
        raise SpecError(f"{where}: expected {' or '.join(getattr(a, '__name__', str(a)) for a in args)},"
                        f" got {type(value).__name__} {value!r}")
    if origin in (dict, Mapping) or hint is Mapping:
        key_type, value_type = typing.get_args(hint) or (str, Any)
        if not isinstance(value, Mapping) or not value:
            raise SpecError(f"{where}: expected a non-empty table, got {value!r}")
        return {_check_type(k, key_type, where): _check_type(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if (origin is tuple and typing.get_args(hint)[-1] is Ellipsis) or origin in _SEQUENCES:  # any length
        if not isinstance(value, list | tuple):
            raise SpecError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return tuple(_check_type(v, typing.get_args(hint)[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise SpecError(f"{where}: expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise SpecError(f"{where}: expected a table, got {value!r}")
        return _build(hint, value, where)
    raise SpecError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__} {value!r}")


_SEQUENCES = (list, collections.abc.Sequence)


def _checkable(hint: Any) -> bool:
    """Whether :func:`_check_type` knows every part of the type ``hint`` (a setting annotated otherwise, with a
    class say, is left to its factory)."""
    if hint in (int, float, str, bool, type(None), Any):
        return True
    origin = typing.get_origin(hint)
    if origin is Literal:
        return True
    if origin in (types.UnionType, typing.Union, tuple, dict, Mapping, *_SEQUENCES):
        return all(_checkable(arg) for arg in typing.get_args(hint) if arg is not Ellipsis)
    return False


def _build(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``table``, rejecting unknown keys, wrong types and values out of
    their fields' :class:`Bounds`."""
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
            if "bounds" in f.metadata and kwargs[name] is not None:
                f.metadata["bounds"].check(kwargs[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{where}: missing key {name!r}")
    return cls(**kwargs)


def arch_spec(kind: Literal["generator", "discriminator"], raw: Any, where: str) -> ArchSpec:
    """The :class:`ArchSpec` of an architecture table (or a bare name) at ``where``: a known ``kind``
    architecture, its settings not yet checked (:func:`check_settings`)."""
    if isinstance(raw, str):
        raw = {"arch": raw}
    if not isinstance(raw, Mapping) or not isinstance(raw.get("arch"), str):
        raise SpecError(f"{where}: expected a table with a string 'arch', got {raw!r}")
    components = registry(kind)
    if raw["arch"] not in components.names():
        raise SpecError(f"{where}.arch: {unknown_name(f'{kind} architecture', raw['arch'], components.names())}")
    return ArchSpec(raw["arch"], {k: v for k, v in raw.items() if k != "arch"})


# what zoo.factory.inferred_ab does with a prediction (its keyword arguments)
AB_SETTING_KEYS = ("flip_average", "chroma_scale", "chroma_knee")
# change how weights run, not the weights
INFERENCE_KEYS = ("inference_size", *AB_SETTING_KEYS)
# absent: the default
_OPTIONAL_KEYS = ("inference_size", "weights", "chroma_scale", "chroma_knee", "flip_average", "val_fraction")


def _default(key: str) -> Any:
    """The value a model has for ``key`` when its registry entry does not say."""
    return ModelSpec.__dataclass_fields__[key].default


_MODEL_KEYS = {"description", "generator", "discriminator", "objectives", "stages", "image_size", "batch_size", "cpu",
               *_OPTIONAL_KEYS}
_CPU_KEYS = ("image_size", "batch_size", "crop_scale", "epochs", "decay_epochs", "frozen")
_STAGE_DEFAULT_KEYS = ("image_size", "batch_size")


def _stage_table(raw: Any, where: str) -> tuple[Any, str | None]:
    """A stage table in the current form, and the ``gan_mode`` its first-landing form named (or None)."""
    if not isinstance(raw, Mapping):
        return raw, None
    table = dict(raw)
    gan_mode = table.pop("gan_mode", None)
    lambda_l1 = table.pop("lambda_l1", 100.0)
    loss = table.get("loss")
    if isinstance(loss, str):
        if loss not in _LEGACY_LOSSES:
            known = OBJECTIVES.names() + ["l1+gan"]
            raise SpecError(f"{where}.loss: {unknown_name('objective', loss, known)}")
        table["loss"] = {name: lambda_l1 if weight is None else weight for name, weight in _LEGACY_LOSSES[loss].items()}
    elif gan_mode is not None or "lambda_l1" in raw:
        raise SpecError(f"{where}: gan_mode and lambda_l1 go with loss = \"l1+gan\"; write"
                        " loss = {{ l1 = 100, gan = 1 }} and objectives.gan.mode instead")
    return table, gan_mode


def _objectives(raw: Any, stages: tuple[StageSpec, ...], gan_modes: dict[str, str], where: str) -> dict[str, dict]:
    """The settings of the objectives the stages use, checked against their constructors."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, Mapping) for v in raw.values()):
        raise SpecError(f"{where}.objectives: expected a table of settings tables, got {raw!r}")
    used = list(dict.fromkeys(name for stage in stages for name in stage.loss))
    settings = {name: dict(table) for name, table in raw.items()}
    for name in settings:
        if name not in used:
            raise SpecError(f"{where}.objectives.{name}: no stage uses objective {name!r} (stages use {', '.join(used)})")
    if gan_modes:
        if len(set(gan_modes.values())) > 1:
            raise SpecError(f"{where}: stages {', '.join(gan_modes)} name different gan_mode values")
        settings.setdefault("gan", {}).setdefault("mode", next(iter(gan_modes.values())))
    for name in used:
        check_settings("objective", name, settings.get(name, {}), f"{where}.objectives.{name}")
    outputs = [name for name in used if _defines_output(name)]
    if len(outputs) > 1:
        raise SpecError(f"{where}: objectives {' and '.join(outputs)} both define the generator's output")
    return {name: settings[name] for name in used if name in settings}


def _defines_output(objective: str) -> bool:
    """Whether ``objective`` defines what the generator outputs: its class overrides ``output_channels``. Read
    from the class, not by calling it, so that validating a spec never computes a channel count (the
    classification objective's takes every sRGB colour)."""
    from zoo.objectives.base import Objective  # torch: imported when a spec has objectives to check, not before

    return OBJECTIVES.get(objective).output_channels.__func__ is not Objective.output_channels.__func__


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
    stages, gan_modes = [], {}
    for i, stage in enumerate(raw["stages"]):
        table, gan_mode = _stage_table(stage, f"{where}.stages[{i}]")
        if isinstance(table, Mapping):
            table = {**inherited, **table}
        parsed = _check_type(table, StageSpec, f"{where}.stages[{i}]")
        for objective in parsed.loss:
            if objective not in OBJECTIVES.names():
                raise SpecError(f"{where}.stages[{i}].loss: {unknown_name('objective', objective, OBJECTIVES.names())}")
        if gan_mode is not None:
            gan_modes[parsed.name] = gan_mode
        stages.append(parsed)
    stages = tuple(stages)
    objectives = _objectives(raw.get("objectives"), stages, gan_modes, where)
    discriminator = None
    if "discriminator" in raw:
        discriminator = arch_spec("discriminator", raw["discriminator"], f"{where}.discriminator")
    for stage in stages:
        needy = [n for n in stage.loss if OBJECTIVES.get(n).needs_discriminator]
        if needy and discriminator is None:
            raise SpecError(f"{where}: stage {stage.name!r} uses {needy[0]!r}, which needs a discriminator,"
                            " but the model has none")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{where}.description: expected str, got {description!r}")
    cpu = raw.get("cpu", {})
    if not isinstance(cpu, Mapping) or set(cpu) - set(_CPU_KEYS):
        raise SpecError(f"{where}.cpu: expected a table of stage settings ({', '.join(_CPU_KEYS)}), got {cpu!r}")
    for stage in stages:  # the CPU settings must make valid stages too
        _check_type({**_plain(dataclasses.asdict(stage)), **cpu}, StageSpec, f"{where}.cpu")
    inference_size = _check_type(raw.get("inference_size"), int | None, f"{where}.inference_size")
    if inference_size is not None:
        Bounds(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE).check(inference_size, f"{where}.inference_size")
    chroma_scale = _check_type(raw.get("chroma_scale", _default("chroma_scale")), float, f"{where}.chroma_scale")
    Bounds(0, MAX_CHROMA_SCALE, open_low=True).check(chroma_scale, f"{where}.chroma_scale")
    chroma_knee = _check_type(raw.get("chroma_knee", _default("chroma_knee")), float, f"{where}.chroma_knee")
    Bounds(0, MAX_CHROMA_KNEE).check(chroma_knee, f"{where}.chroma_knee")
    val_fraction = _check_type(raw.get("val_fraction", _default("val_fraction")), float, f"{where}.val_fraction")
    Bounds(0, 1, open_high=True).check(val_fraction, f"{where}.val_fraction")
    return ModelSpec(
        name=name,
        generator=arch_spec("generator", raw["generator"], f"{where}.generator"),
        discriminator=discriminator,
        objectives=objectives,
        stages=stages,
        description=description,
        inference_size=inference_size,
        weights=_check_type(raw.get("weights"), str | None, f"{where}.weights"),
        cpu=dict(cpu),
        chroma_scale=chroma_scale,
        chroma_knee=chroma_knee,
        flip_average=_check_type(raw.get("flip_average", _default("flip_average")), bool, f"{where}.flip_average"),
        val_fraction=val_fraction,
    )


def read_registry_file(path: Path) -> tuple[dict[str, ModelSpec], str | None]:
    """Every model in the ``registry.toml`` at ``path``, validated, and its ``default_model`` (or None). Every
    problem is a :class:`SpecError` naming the file."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such model registry file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read it as a model registry ({one_line(exc)})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"defaults", "models", "default_model"})
    if unknown:
        raise SpecError(f"{path}: unknown top-level table {unknown[0]!r} (expected default_model, [defaults] and"
                        " [models.NAME])")
    defaults, models = data.get("defaults", {}), data.get("models", {})
    for key, value in (("defaults", defaults), ("models", models)):
        if not isinstance(value, Mapping):
            raise SpecError(f"{path}: {key}: expected tables ([defaults], [models.NAME]), got {value!r}")
    bad = sorted(set(defaults) - set(_STAGE_DEFAULT_KEYS))
    if bad:
        raise SpecError(f"{path}: [defaults]: unknown key {bad[0]!r} (known: {', '.join(_STAGE_DEFAULT_KEYS)})")
    try:
        specs = {name: spec_from_dict(name, raw, defaults) for name, raw in models.items()}
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    default = data.get("default_model")
    if default is not None and default not in specs:
        raise SpecError(f"{path}: default_model {default!r} is not a model of this file")
    return specs, default


def load_registry_file(path: Path) -> dict[str, ModelSpec]:
    """Every model in the ``registry.toml`` at ``path``, validated."""
    return read_registry_file(path)[0]


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


@dataclass(frozen=True)
class Registry:
    """What the registry files name: the models, where each one's shipped ``weights`` are relative to, and the
    default model (the one ``zoo colorize`` uses when given no model or checkpoint)."""

    specs: dict[str, ModelSpec]
    weights_dirs: dict[str, Path]
    default_model: str | None


@cache
def registry_contents() -> Registry:
    """The registry in use, then the models that plugins ship (built-in names win). Shipped weights of the
    built-in registry live in the ``zoo`` package; a plugin's, or ``$ZOO_REGISTRY``'s, beside its file."""
    path = registry_path()
    specs, default = read_registry_file(path)
    home = Path(__file__).parent if "ZOO_REGISTRY" not in os.environ else path.parent
    dirs = dict.fromkeys(specs, home)
    for plugin, plugin_path in _plugin_registry_files():
        try:
            extra = load_registry_file(plugin_path)
        except (OSError, SpecError) as exc:
            warnings.warn(f"model registry plugin {plugin} is broken: {exc}", RuntimeWarning)
            continue
        for name, spec in extra.items():
            if name in specs:
                warnings.warn(f"model registry plugin {plugin} redefines {name!r}; the first wins", RuntimeWarning)
            else:
                specs[name], dirs[name] = spec, plugin_path.parent
    return Registry(specs, dirs, default)


def model_specs() -> dict[str, ModelSpec]:
    """Every named model (see :func:`registry_contents`)."""
    return registry_contents().specs


def clear_cache() -> None:
    """Read the registry files again on next use (after changing $ZOO_REGISTRY or the installed plugins)."""
    registry_contents.cache_clear()


def weights_path(name: str) -> Path | None:
    """The shipped trained weights of model ``name``, or None when it ships none."""
    contents = registry_contents()
    spec = contents.specs.get(name)
    if spec is None or spec.weights is None:
        return None
    return contents.weights_dirs[name] / spec.weights


def default_model() -> str | None:
    """The model ``zoo colorize`` and ``zoo.colorize`` use when given neither a model nor a checkpoint."""
    return registry_contents().default_model


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` called ``name``; an unknown name fails listing the close matches."""
    specs = model_specs()
    if name not in specs:
        raise unknown_name("model", name, list(specs))
    return specs[name]


def check_settings(kind: Kind, name: str, settings: Mapping[str, Any], where: str) -> None:
    """Fail with a :class:`SpecError` at ``where`` if the factory of ``name`` does not take a setting, or takes
    it as another type than its annotation says (``width = "wide"``, ``decoder_channels = 5``)."""
    factory = registry(kind).get(name)
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        for key in settings:
            if key not in params or key in ("in_channels", "out_channels"):
                known = [p for p in params if p not in ("self", "in_channels", "out_channels")]
                raise SpecError(f"{where}.{key}: {name!r} has no setting {key!r} (settings: {', '.join(known) or 'none'})")
    hints = _annotations(factory)
    for key, value in settings.items():
        if key in hints and _checkable(hints[key]):
            _check_type(value, hints[key], f"{where}.{key}")


def _annotations(factory: Any) -> dict[str, Any]:
    """The resolved annotations of a factory's parameters (of ``__init__`` for a class); {} when they do not
    resolve (a plugin's, say, that names types only under TYPE_CHECKING)."""
    try:
        return typing.get_type_hints(factory.__init__ if isinstance(factory, type) else factory)
    except Exception:  # noqa: BLE001 - any failure to resolve means: nothing to check against
        return {}


@contextlib.contextmanager
def building(spec: ModelSpec) -> Iterator[None]:
    """Report any failure to build ``spec``'s parts in the block as a :class:`SpecError` naming the model and
    its generator settings: a factory that refuses a value, runs out of memory, or cannot read a weights file
    the settings name (``--set encoder_weights=/etc/passwd``)."""
    try:
        yield
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the factory raised, the cause is the settings given
        settings = ", ".join(f"{k}={v!r}" for k, v in spec.generator.settings.items()) or "none"
        raise SpecError(f"model {spec.name!r}: cannot be built (generator settings: {settings}):"
                        f" {type(exc).__name__}: {one_line(exc)}") from exc


def adapt_to_image_size(spec: ModelSpec, image_size: int) -> tuple[ModelSpec, str | None]:
    """``spec`` with generator settings that fit ``image_size`` px, and a note saying what changed (or None).

    The generator's declared :class:`zoo.registry.Geometry` says what to change (pix2pix's U-Net: fewer
    levels, ``num_downs 8 -> 6 for 64 px``); architectures with nothing to adapt are returned as they are.
    """
    arch = spec.generator.arch
    settings = _full_generator_settings(spec)
    changes = {k: v for k, v in GENERATORS.geometry(arch).fit_settings(settings, image_size).items() if settings.get(k) != v}
    if not changes:
        return spec, None
    note = ", ".join(f"{key} {settings.get(key)} -> {value}" for key, value in changes.items())
    return spec.with_overrides(generator=changes), f"{note} for {image_size} px"


def size_multiple(spec: ModelSpec) -> int:
    """The side that the generator's input height and width must be multiples of (its declared geometry)."""
    return GENERATORS.geometry(spec.generator.arch).size_multiple(_full_generator_settings(spec))


def _full_generator_settings(spec: ModelSpec) -> dict[str, Any]:
    """The generator's settings, checked (:func:`check_settings`), with its factory's defaults for the rest."""
    arch = spec.generator.arch
    check_settings("generator", arch, spec.generator.settings, f"model {spec.name!r}: generator")
    return GENERATORS.full_settings(arch, spec.generator.settings)
