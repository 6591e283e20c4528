"""Typed model specifications, read from ``registry.toml``: what a model is, checked, and where it is named.

    schema.py      the dataclasses (ModelSpec, StageSpec, OptimizerSpec, ArchSpec) with their fields' bounds
    validation.py  a table to a ModelSpec, every key, type and bound checked; settings against factories
    loading.py     registry files (extends, [defaults], every_stage, ensemble members by name), plugins, caches

Every problem is a :class:`SpecError` naming the model and the key (and the registry file).
"""

from zoo.spec.loading import (
    REGISTRIES_GROUP,
    RegistryContents,
    clear_cache,
    default_model,
    get_spec,
    load_registry_file,
    model_specs,
    read_registry_file,
    registry_contents,
    registry_path,
    resolve_tables,
    weights_path,
)
from zoo.spec.schema import (
    AB_SETTING_KEYS,
    INFERENCE_KEYS,
    MAX_CHROMA_KNEE,
    MAX_CHROMA_SCALE,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    ArchSpec,
    Bounds,
    ModelSpec,
    OptimizerSpec,
    SpecError,
    StageSpec,
    bounded,
)
from zoo.spec.validation import (
    adapt_to_image_size,
    arch_spec,
    building,
    check_settings,
    size_multiple,
    spec_from_dict,
)

__all__ = [
    "AB_SETTING_KEYS", "INFERENCE_KEYS", "MAX_CHROMA_KNEE", "MAX_CHROMA_SCALE", "MAX_IMAGE_SIZE", "MIN_IMAGE_SIZE",
    "REGISTRIES_GROUP", "ArchSpec", "Bounds", "ModelSpec", "OptimizerSpec", "RegistryContents", "SpecError",
    "StageSpec", "adapt_to_image_size", "arch_spec", "bounded", "building", "check_settings", "clear_cache",
    "default_model", "get_spec", "load_registry_file", "model_specs", "read_registry_file", "registry_contents",
    "registry_path", "resolve_tables", "size_multiple", "spec_from_dict", "weights_path",
]
