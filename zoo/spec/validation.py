"""Validation of model specifications: every key, type and bound, and every setting against its factory.

One path through it::

    spec_from_dict(name, table)    -> ModelSpec: stages (and their legacy form), objectives, architectures,
                                      then every field by its type hint and Bounds (_build, as for stages)
    check_settings(kind, arch, settings, where)   -> a setting its factory does not take, or of another type
    building(spec)                 -> any failure to build the parts is a SpecError naming the model

Every problem is a :class:`zoo.spec.schema.SpecError` naming the model and the key: an unknown key (with a
did-you-mean), a wrong type, a value out of its range (``epochs = 0``, ``image_size = 100000``), an unknown
architecture or objective, a setting a constructor does not take. The first landing's stage form, ``loss =
"l1+gan"`` with ``lambda_l1`` and ``gan_mode``, still reads (so older checkpoints load).
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from zoo.errors import one_line
from zoo.registry import GENERATORS, OBJECTIVES, Kind, registry, unknown_name
from zoo.spec.schema import OPTIONAL_KEYS, ArchSpec, ModelSpec, SpecError, StageSpec, _plain

_LEGACY_LOSSES = {"mse": {"mse": 1.0}, "l1": {"l1": 1.0}, "l1+gan": {"l1": None, "gan": 1.0}}  # None: lambda_l1
STAGE_DEFAULT_KEYS = ("image_size", "batch_size")  # model-level keys that merge under every stage
CPU_KEYS = ("image_size", "batch_size", "crop_scale", "epochs", "decay_epochs", "frozen")
MODEL_KEYS = {"description", "generator", "discriminator", "objectives", "stages", "cpu", *STAGE_DEFAULT_KEYS,
              *OPTIONAL_KEYS}


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
        if isinstance(value, hint):  # built already (an ArchSpec made by arch_spec, a parsed stage)
            return value
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
    outputs = [name for name in used if defines_output(name)]
    if len(outputs) > 1:
        raise SpecError(f"{where}: objectives {' and '.join(outputs)} both define the generator's output")
    return {name: settings[name] for name in used if name in settings}


def defines_output(objective: str) -> bool:
    """Whether ``objective`` defines what the generator outputs: its class overrides ``output_channels``. Read
    from the class, not by calling it, so that validating a spec never computes a channel count (the
    classification objective's takes every sRGB colour)."""
    from zoo.objectives.base import Objective  # torch: imported when a spec has objectives to check, not before

    return OBJECTIVES.get(objective).output_channels.__func__ is not Objective.output_channels.__func__


def spec_from_dict(name: str, raw: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> ModelSpec:
    """Build and validate the :class:`ModelSpec` called ``name`` from its table (and ``defaults``, the stage
    keys of ``[defaults]``)."""
    where = f"model {name!r}"
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a table, got {raw!r}")
    unknown = sorted(set(raw) - MODEL_KEYS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(MODEL_KEYS), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(MODEL_KEYS))}"
        raise SpecError(f"{where}: unknown key {unknown[0]!r} ({hint})")
    for key in ("generator", "stages"):
        if key not in raw:
            raise SpecError(f"{where}: missing key {key!r}")
    inherited = {k: v for k, v in {**(defaults or {}), **raw}.items() if k in STAGE_DEFAULT_KEYS}
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
    discriminator = None
    if "discriminator" in raw:
        discriminator = arch_spec("discriminator", raw["discriminator"], f"{where}.discriminator")
    for stage in stages:
        needy = [n for n in stage.loss if OBJECTIVES.get(n).needs_discriminator]
        if needy and discriminator is None:
            raise SpecError(f"{where}: stage {stage.name!r} uses {needy[0]!r}, which needs a discriminator,"
                            " but the model has none")
    cpu = raw.get("cpu", {})
    if not isinstance(cpu, Mapping) or set(cpu) - set(CPU_KEYS):
        raise SpecError(f"{where}.cpu: expected a table of stage settings ({', '.join(CPU_KEYS)}), got {cpu!r}")
    for stage in stages:  # the CPU settings must make valid stages too
        _check_type({**_plain(dataclasses.asdict(stage)), **cpu}, StageSpec, f"{where}.cpu")
    parts: dict[str, Any] = {
        "name": name,
        "generator": arch_spec("generator", raw["generator"], f"{where}.generator"),
        "discriminator": discriminator,
        "stages": tuple(stages),
        **{key: raw[key] for key in ("description", *OPTIONAL_KEYS) if key in raw},
    }
    objectives = _objectives(raw.get("objectives"), parts["stages"], gan_modes, where)
    parts |= {key: value for key, value in (("objectives", objectives), ("cpu", dict(cpu))) if value}
    return _build(ModelSpec, parts, where)


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
