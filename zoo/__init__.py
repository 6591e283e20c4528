"""colorization-zoo: a model zoo and benchmarking harness for automatic image colorization.

A grayscale photo's L channel goes in, a generator predicts ab, L + ab is the colour photo.
"""

from zoo.colorizer import Colorizer, colorize
from zoo.factory import create_discriminator, create_generator, create_models, list_models
from zoo.registry import list_architectures, register_discriminator, register_generator
from zoo.spec import ModelSpec, SpecError, StageSpec, get_spec

__all__ = [
    "Colorizer",
    "ModelSpec",
    "SpecError",
    "StageSpec",
    "colorize",
    "create_discriminator",
    "create_generator",
    "create_models",
    "get_spec",
    "list_architectures",
    "list_models",
    "register_discriminator",
    "register_generator",
]
