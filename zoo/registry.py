"""Architecture registries: built-in factories registered by decorator, third-party ones by entry point.

A generator factory is called as ``factory(in_channels=1, out_channels=2, **settings)`` and returns a module
mapping L in [-1, 1] (B, 1, H, W) to ab in [-1, 1] (B, 2, H, W). A discriminator factory is called as
``factory(in_channels=3, **settings)`` and returns a module mapping cat(L, ab) to a map of patch logits
(B, 1, h, w).

Discovery follows xarray's backend plugins: entry points in the groups ``zoo.generators`` and
``zoo.discriminators`` are listed by name without importing them, loaded on first use, and cached. A plugin
that fails to load is a warning naming it and the error; a plugin whose name clashes with a built-in warns
and the built-in wins.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Literal

from torch import nn

Factory = Callable[..., nn.Module]
Kind = Literal["generator", "discriminator"]

# Modules whose import registers the built-in architectures.
_BUILTIN_MODULES = (
    "zoo.models.simple_cnn",
    "zoo.models.pix2pix",
    "zoo.models.patchgan",
    "zoo.models.smp_unet",
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


class ArchRegistry:
    """Factories of one kind of architecture, built-in and from entry points."""

    def __init__(self, kind: Kind, group: str) -> None:
        self.kind = kind
        self.group = group
        self._builtin: dict[str, Factory] = {}
        self._plugins: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, Factory] = {}

    def register(self, name: str) -> Callable[[Factory], Factory]:
        """Decorator registering ``factory`` under ``name`` as a built-in architecture."""

        def decorate(factory: Factory) -> Factory:
            if name in self._builtin and self._builtin[name] is not factory:
                raise ValueError(f"{self.kind} architecture {name!r} is registered twice")
            self._builtin[name] = factory
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
        """Sorted names of every architecture (built-in and plugin), optionally filtered by an fnmatch pattern."""
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
            raise unknown_name(f"{self.kind} architecture", name, self.names())
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
            raise unknown_name(f"{self.kind} architecture", name, self.names())
        try:
            factory = ep.load()
        except Exception as exc:  # a broken plugin must not take the zoo down
            warnings.warn(
                f"{self.kind} plugin {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            raise unknown_name(f"{self.kind} architecture", name, self.names()) from exc
        self._loaded[name] = factory
        return factory

    def create(self, name: str, **kwargs: object) -> nn.Module:
        """Call the factory registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def clear_cache(self) -> None:
        """Forget discovered entry points (after installing or removing a plugin at run time)."""
        self._plugins = None
        self._loaded.clear()


GENERATORS = ArchRegistry("generator", group="zoo.generators")
DISCRIMINATORS = ArchRegistry("discriminator", group="zoo.discriminators")
_REGISTRIES: dict[str, ArchRegistry] = {"generator": GENERATORS, "discriminator": DISCRIMINATORS}


def register_generator(name: str) -> Callable[[Factory], Factory]:
    """Register a generator factory: ``factory(in_channels=1, out_channels=2, **settings) -> nn.Module``."""
    return GENERATORS.register(name)


def register_discriminator(name: str) -> Callable[[Factory], Factory]:
    """Register a discriminator factory: ``factory(in_channels=3, **settings) -> nn.Module``."""
    return DISCRIMINATORS.register(name)


def architectures(kind: Kind) -> ArchRegistry:
    """The registry of ``kind`` (``generator`` or ``discriminator``)."""
    try:
        return _REGISTRIES[kind]
    except KeyError:
        raise ValueError(f"kind must be 'generator' or 'discriminator', not {kind!r}") from None


def list_architectures(kind: Kind, pattern: str | None = None) -> list[str]:
    """Names of the registered architectures of ``kind``, optionally filtered by an fnmatch pattern."""
    return architectures(kind).names(pattern)


_builtins_imported = False


def _import_builtins() -> None:
    global _builtins_imported
    if not _builtins_imported:
        _builtins_imported = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
