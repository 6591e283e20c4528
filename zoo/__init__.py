"""colorization-zoo: a model zoo and benchmarking harness for automatic image colorization.

A grayscale photo's L channel goes in, a generator predicts ab, L + ab is the colour photo.

Where things are: models are defined in ``zoo/models/`` (one file per architecture family, registered by
decorator in :mod:`zoo.registry`) and named in ``registry.toml`` (:mod:`zoo.spec`); losses are objectives in
``zoo/objectives/``; :mod:`zoo.train` trains, :mod:`zoo.colorizer` colorizes, ``zoo/harness/`` times and scores,
``zoo/cli/`` is the ``zoo`` command. The names below load their modules on first use (PEP 562), so that
``import zoo`` and ``zoo --help`` do not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "Colorizer": "zoo.colorizer",
    "colorize": "zoo.colorizer",
    "create_discriminator": "zoo.factory",
    "create_generator": "zoo.factory",
    "create_models": "zoo.factory",
    "create_predictor": "zoo.factory",
    "list_models": "zoo.factory",
    "Geometry": "zoo.registry",
    "list_architectures": "zoo.registry",
    "register_discriminator": "zoo.registry",
    "register_generator": "zoo.registry",
    "register_objective": "zoo.registry",
    "ModelSpec": "zoo.spec",
    "SpecError": "zoo.spec",
    "StageSpec": "zoo.spec",
    "get_spec": "zoo.spec",
    "Objective": "zoo.objectives",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
