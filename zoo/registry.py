"""Registries of the zoo's components: generators, discriminators and objectives, built-in and from plugins.

A generator factory is called as ``factory(in_channels=1, out_channels=C, **settings)`` and returns a module
mapping L in [-1, 1] (B, 1, H, W) to the C channels its model's objectives ask for: C = 2 is ab in [-1, 1]
(a tanh output), any other C unbounded scores that the model's output objective decodes (logits over ab bins).
A discriminator factory is called as ``factory(in_channels=3, **settings)`` and returns a module mapping
cat(L, ab) to a map of patch logits (B, 1, h, w). An objective class (:mod:`zoo.objectives`) is called as
``cls(**settings)``.

Each generator declares its :class:`Geometry` when it registers (``@register_generator(name, geometry=...)``),
as timm's models declare their input size: the side its inputs must be a multiple of, and how its settings
change to fit an image size. Nothing is learned by running the model. A plugin declares the same as a
``geometry`` attribute of its factory; without one it gets :data:`DEFAULT_GEOMETRY`. A generator whose initial
weights come from a setting (``encoder_weights``) names it (``pretrained_setting``), so that loading a trained
checkpoint never reads or downloads what that setting names.

Discovery follows xarray's backend plugins: entry points in the groups ``zoo.generators``,
``zoo.discriminators`` and ``zoo.objectives`` are listed by name without importing them, loaded on first use,
and cached. A plugin that fails to load is a warning naming it and the error; a plugin whose name clashes with
a built-in warns and the built-in wins.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

Factory = Callable[..., Any]
Kind = Literal["generator", "discriminator", "objective"]
Settings = Mapping[str, Any]

# Modules whose import registers the built-in components.
_BUILTIN_MODULES = (
    "zoo.models.simple_cnn",
    "zoo.models.pix2pix",
    "zoo.models.patchgan",
    "zoo.models.smp_unet",
    "zoo.models.ensemble",
    "zoo.models.guided_unet",
    "zoo.objectives.regression",
    "zoo.objectives.adversarial",
    "zoo.objectives.classification",
    "zoo.objectives.perceptual",
    "zoo.objectives.confidence",
    "zoo.objectives.colour_difference",
    "zoo.objectives.choices",
)


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def unknown_name(what: str, name: str, known: list[str]) -> UnknownNameError:
    """Build the error for an unknown ``name``, naming close matches (or everything, if none are close)."""
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known)) or 'none'}"
    return UnknownNameError(f"unknown {what} {name!r}; {hint}")


@dataclass(frozen=True)
class Geometry:
    """The input sizes a generator architecture takes, as functions of its (complete) settings.

    ``multiple``: height and width must be multiples of it (an int, or a function of the settings).
    ``fit``: given the settings and a square image side, the settings to change so that the side fits (an
    empty dict when it fits as is); None when the architecture has nothing to adapt.
    """

    multiple: int | Callable[[Settings], int] = 32
    fit: Callable[[Settings, int], dict[str, Any]] | None = None

    def size_multiple(self, settings: Settings) -> int:
        return self.multiple(settings) if callable(self.multiple) else self.multiple

    def fit_settings(self, settings: Settings, image_size: int) -> dict[str, Any]:
        return {} if self.fit is None else self.fit(settings, image_size)


# A plugin generator that declares nothing: sides that are multiples of 32 suit any encoder of output stride
# up to 32 (ResNets, EfficientNets, ConvNeXts ...); the colorizer rounds its working size to it, which costs
# nothing in quality since ab is predicted at that size and resized to the photo's.
DEFAULT_GEOMETRY = Geometry()


class Registry:
    """The components of one kind, built-in and from entry points."""

    def __init__(self, kind: Kind, group: str) -> None:
        self.kind = kind
        self.group = group
        self._builtin: dict[str, Factory] = {}
        self._geometry: dict[str, Geometry] = {}
        self._pretrained_setting: dict[str, str] = {}
        self._takes_hints: set[str] = set()
        self._plugins: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, Factory] = {}

    def register(
        self, name: str, geometry: Geometry | None = None, pretrained_setting: str | None = None,
        takes_hints: bool = False,
    ) -> Callable[[Factory], Factory]:
        """Decorator registering ``factory`` under ``name`` as a built-in component (with its declarations)."""

        def decorate(factory: Factory) -> Factory:
            if name in self._builtin and self._builtin[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builtin[name] = factory
            if geometry is not None:
                self._geometry[name] = geometry
            if pretrained_setting is not None:
                self._pretrained_setting[name] = pretrained_setting
            if takes_hints:
                self._takes_hints.add(name)
            return factory

        return decorate

    def _entry_points(self) -> dict[str, EntryPoint]:
        if self._plugins is None:
            _import_builtins()
            found: dict[str, EntryPoint] = {}
            for ep in entry_points(group=self.group):
                if ep.name in found and found[ep.name].value != ep.value:
                    warnings.warn(
                        f"{self.kind} plugins {found[ep.name].value!r} and {ep.value!r} both claim {ep.name!r};"
                        f" using {found[ep.name].value!r}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    continue
                if ep.name in self._builtin:
                    warnings.warn(
                        f"{self.kind} plugin {ep.value!r} clashes with the built-in {ep.name!r}; the built-in wins",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    continue
                found.setdefault(ep.name, ep)
            self._plugins = found
        return self._plugins

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names of every component (built-in and plugin), optionally filtered by an fnmatch pattern."""
        plugins = self._entry_points()
        names = sorted(set(self._builtin) | set(plugins))
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def source(self, name: str) -> str:
        """Where ``name`` comes from: ``builtin`` or the entry point's ``module:attr``."""
        plugins = self._entry_points()
        if name in self._builtin:
            return "builtin"
        ep = plugins.get(name)
        if ep is None:
            raise unknown_name(self.kind, name, self.names())
        return ep.value

    def get(self, name: str) -> Factory:
        """The factory registered as ``name``; loads a plugin on first use."""
        plugins = self._entry_points()
        if name in self._builtin:
            return self._builtin[name]
        if name in self._loaded:
            return self._loaded[name]
        ep = plugins.get(name)
        if ep is None:
            raise unknown_name(self.kind, name, self.names())
        try:
            factory = ep.load()
        except Exception as exc:  # a broken plugin must not take the zoo down
            warnings.warn(
                f"{self.kind} plugin {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            raise unknown_name(self.kind, name, self.names()) from exc
        self._loaded[name] = factory
        return factory

    def create(self, name: str, **kwargs: object) -> Any:
        """Call the factory registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def geometry(self, name: str) -> Geometry:
        """The declared :class:`Geometry` of ``name`` (a plugin's ``geometry`` attribute, else the default)."""
        factory = self.get(name)
        declared = self._geometry.get(name, getattr(factory, "geometry", None))
        return declared if isinstance(declared, Geometry) else DEFAULT_GEOMETRY

    def pretrained_setting(self, name: str) -> str | None:
        """The setting of ``name`` that chooses its initial weights (a plugin's ``pretrained_setting``), if any."""
        declared = self._pretrained_setting.get(name, getattr(self.get(name), "pretrained_setting", None))
        return declared if isinstance(declared, str) else None

    def takes_hints(self, name: str) -> bool:
        """Whether generator ``name`` takes colour hints beside L (a plugin's ``takes_hints = True``): its input
        is then cat(L, hint a, hint b, hint mask), :func:`zoo.hints.hint_channels`."""
        return name in self._takes_hints or getattr(self.get(name), "takes_hints", False) is True

    def full_settings(self, name: str, settings: Settings) -> dict[str, Any]:
        """``settings`` with the factory's defaults for the settings not given (what geometry functions see)."""
        parameters = inspect.signature(self.get(name)).parameters.values()
        defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
        return {**defaults, **settings}

    def clear_cache(self) -> None:
        """Forget discovered entry points (after installing or removing a plugin at run time)."""
        self._plugins = None
        self._loaded.clear()


GENERATORS = Registry("generator", group="zoo.generators")
DISCRIMINATORS = Registry("discriminator", group="zoo.discriminators")
OBJECTIVES = Registry("objective", group="zoo.objectives")
_REGISTRIES: dict[str, Registry] = {"generator": GENERATORS, "discriminator": DISCRIMINATORS, "objective": OBJECTIVES}


def output_activation(out_channels: int) -> Callable[[], Any]:
    """The last layer's activation for ``out_channels``: tanh for ab (2 channels), none for scores."""
    from torch import nn

    return nn.Tanh if out_channels == 2 else nn.Identity


def register_generator(
    name: str, geometry: Geometry | None = None, pretrained_setting: str | None = None, takes_hints: bool = False
) -> Callable[[Factory], Factory]:
    """Register a generator factory ``factory(in_channels=1, out_channels=C, **settings)``, its geometry, the
    setting (if any) that chooses its initial weights, and whether it takes colour hints (then in_channels=4)."""
    return GENERATORS.register(name, geometry, pretrained_setting, takes_hints)


def register_discriminator(name: str) -> Callable[[Factory], Factory]:
    """Register a discriminator factory: ``factory(in_channels=3, **settings) -> nn.Module``."""
    return DISCRIMINATORS.register(name)


def register_objective(name: str) -> Callable[[Factory], Factory]:
    """Register an objective class (a :class:`zoo.objectives.Objective`), built as ``cls(**settings)``."""
    return OBJECTIVES.register(name)


def registry(kind: Kind) -> Registry:
    """The registry of ``kind``: ``generator``, ``discriminator`` or ``objective``."""
    try:
        return _REGISTRIES[kind]
    except KeyError:
        raise ValueError(f"kind must be one of {', '.join(_REGISTRIES)}, not {kind!r}") from None


def list_architectures(kind: Kind, pattern: str | None = None) -> list[str]:
    """Names of the registered components of ``kind``, optionally filtered by an fnmatch pattern."""
    return registry(kind).names(pattern)


def clear_caches() -> None:
    """Forget what every registry discovered (after a change of the installed plugins)."""
    for each in _REGISTRIES.values():
        each.clear_cache()


_builtins_imported = False


def _import_builtins() -> None:
    global _builtins_imported
    if not _builtins_imported:
        _builtins_imported = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
