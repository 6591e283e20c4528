"""Where model specs come from: registry files (the package's, ``$ZOO_REGISTRY``, plugins'), resolved and cached.

One path through it::

    registry_contents()  -> the registry in use (read_registry_file: extends, [defaults], every_stage and
                            ensemble members resolved, then every model validated), then plugins' registry.toml
    get_spec(name), model_specs(), weights_path(name), default_model()
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import os
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from zoo.errors import one_line
from zoo.registry import GENERATORS, unknown_name
from zoo.spec.schema import ModelSpec, SpecError
from zoo.spec.validation import MODEL_KEYS, spec_from_dict

PACKAGE = Path(__file__).parents[1]  # the zoo package: its registry.toml when installed, its shipped weights

def read_registry_file(path: Path) -> tuple[dict[str, ModelSpec], str | None]:
    """Every model in the ``registry.toml`` at ``path``, resolved (:func:`resolve_tables`) and validated, and its
    ``default_model`` (or None). Every problem is a :class:`SpecError` naming the file."""
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
    unknown = sorted(set(defaults) - {*MODEL_KEYS, "every_stage"})
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(MODEL_KEYS), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "a model's keys and every_stage"
        raise SpecError(f"{path}: [defaults]: unknown key {unknown[0]!r} ({hint})")
    try:
        tables = resolve_tables(models, defaults)
        specs = {name: spec_from_dict(name, table) for name, table in tables.items()}
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    default = data.get("default_model")
    if default is not None and default not in specs:
        raise SpecError(f"{path}: default_model {default!r} is not a model of this file")
    for name, spec in specs.items():  # what hints choose among: a model of this file that makes alternatives
        makes = spec.choices in specs and specs[spec.choices].output_objective == "choices"
        if spec.choices is not None and not makes:
            close = difflib.get_close_matches(spec.choices, sorted(specs), n=1)
            hint = f"; did you mean {close[0]!r}?" if close and close[0] != spec.choices else ""
            raise SpecError(f"{path}: [models.{name}]: choices {spec.choices!r} is not a model of this file with the"
                            f" choices objective{hint}")
    return specs, default


# ---------------------------------------------------------------------------------------------- resolution


def resolve_tables(models: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each model's table as :func:`zoo.spec.validation.spec_from_dict` reads it, from a registry file's:

    - ``[defaults]`` (any model key) merge under every model that extends no other;
    - ``extends = "other"``: the other model's table, less its ``weights`` and ``description``, merged under this
      one's: tables key by key (an architecture table naming another ``arch`` replaces the other's), stages by
      name (a stage of a new name comes after the other's, ``drop = true`` removes one, ``replace = true``
      replaces one), a stage's ``loss`` whole;
    - ``every_stage = { ... }`` (merged like the rest) merges under each of the model's stages;
    - an ensemble's ``members`` may name models: each becomes that model's generator table (less its pretrained
      setting, which the ensemble gives every member).
    """
    merged: dict[str, dict[str, Any]] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        if name in merged:
            return merged[name]
        raw = models[name]
        if not isinstance(raw, Mapping):
            raise SpecError(f"model {name!r}: expected a table, got {raw!r}")
        parent = raw.get("extends")
        if parent is None:
            base = copy.deepcopy(dict(defaults))
        elif not isinstance(parent, str) or parent not in models:
            raise SpecError(f"model {name!r}.extends: {unknown_name('model', str(parent), list(models))}")
        elif parent in chain:
            raise SpecError(f"model {name!r}.extends: {' -> '.join((*chain, name, parent))} goes round in a circle")
        else:
            base = {k: v for k, v in copy.deepcopy(resolve(parent, (*chain, name))).items() if k not in _NOT_INHERITED}
        merged[name] = _merged(base, {k: v for k, v in raw.items() if k != "extends"}, f"model {name!r}")
        return merged[name]

    tables = {name: _flattened(resolve(name, ()), f"model {name!r}") for name in models}
    for name, table in tables.items():
        generator = table.get("generator")
        if isinstance(generator, Mapping) and isinstance(generator.get("members"), list):
            generator["members"] = [_member(member, tables, f"model {name!r}.generator.members")
                                    for member in generator["members"]]
    return tables


_NOT_INHERITED = ("weights", "choices", "description")  # what a model never takes from the one it extends
_WHOLE = ("loss",)  # replaced, never merged: a stage's weighted objectives are one choice


def _merged(base: Mapping[str, Any], over: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``over`` merged onto ``base``: tables key by key (recursively; an architecture table of another ``arch``
    replaces), ``stages`` by name, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        old = base.get(key)
        if key == "stages" and isinstance(value, list) and isinstance(old, list):
            out[key] = _merged_stages(old, value, f"{where}.stages")
        elif (isinstance(value, Mapping) and isinstance(old, Mapping) and key not in _WHOLE
              and value.get("arch", old.get("arch")) == old.get("arch")):
            out[key] = _merged(old, value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merged_stages(base: list[Any], over: list[Any], where: str) -> list[Any]:
    """Stages of ``over`` merged into those of ``base`` with the same name (see :func:`resolve_tables`)."""
    stages = {stage.get("name"): dict(stage) for stage in base if isinstance(stage, Mapping)}
    order = list(stages)
    for stage in over:
        if not isinstance(stage, Mapping) or not isinstance(stage.get("name"), str):
            raise SpecError(f"{where}: a stage of a model that extends another needs a name, got {stage!r}")
        name, table = stage["name"], {k: v for k, v in stage.items() if k not in ("drop", "replace")}
        if stage.get("drop"):
            if name not in stages:
                raise SpecError(f"{where}: drops stage {name!r}, which the model it extends does not have")
            del stages[name]
            order.remove(name)
        elif stage.get("replace") or name not in stages:
            stages[name] = copy.deepcopy(table)
            order += [] if name in order else [name]
        else:
            stages[name] = _merged(stages[name], table, f"{where}.{name}")
    return [stages[name] for name in order]


def _flattened(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``table`` with its ``every_stage`` merged under each stage (and gone)."""
    out = copy.deepcopy(dict(table))
    every = out.pop("every_stage", {})
    if not isinstance(every, Mapping):
        raise SpecError(f"{where}.every_stage: expected a table of stage settings, got {every!r}")
    if isinstance(out.get("stages"), list):
        out["stages"] = [_merged(every, stage, f"{where}.stages") if isinstance(stage, Mapping) else stage
                         for stage in out["stages"]]
    return out


def _member(member: Any, tables: Mapping[str, Mapping[str, Any]], where: str) -> Any:
    """An ensemble member named by model: that model's generator table less its pretrained setting."""
    if not isinstance(member, str):
        return member
    if member not in tables:
        raise SpecError(f"{where}: {unknown_name('model', member, list(tables))}")
    generator = dict(tables[member]["generator"])
    setting = GENERATORS.pretrained_setting(generator.get("arch", ""))
    generator.pop(setting, None)
    return generator


def load_registry_file(path: Path) -> dict[str, ModelSpec]:
    """Every model in the ``registry.toml`` at ``path``, validated."""
    return read_registry_file(path)[0]


def registry_path() -> Path:
    """The registry in use: ``$ZOO_REGISTRY``, else the one installed with the package, else the checkout's."""
    if env := os.environ.get("ZOO_REGISTRY"):
        return Path(env)
    packaged = PACKAGE / "registry.toml"
    return packaged if packaged.exists() else PACKAGE.resolve().parent / "registry.toml"


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
class RegistryContents:
    """What the registry files name: the models, where each one's shipped ``weights`` are relative to, and the
    default model (the one ``zoo colorize`` uses when given no model or checkpoint)."""

    specs: dict[str, ModelSpec]
    weights_dirs: dict[str, Path]
    default_model: str | None


@cache
def registry_contents() -> RegistryContents:
    """The registry in use, then the models that plugins ship (built-in names win). Shipped weights of the
    built-in registry live in the ``zoo`` package; a plugin's, or ``$ZOO_REGISTRY``'s, beside its file."""
    path = registry_path()
    specs, default = read_registry_file(path)
    home = PACKAGE if "ZOO_REGISTRY" not in os.environ else path.parent
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
    return RegistryContents(specs, dirs, default)


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
