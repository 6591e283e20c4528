"""Checkpoints as single safetensors files: tensors plus a JSON header, written atomically, never unpickled.

Tensor keys are prefixed by what they belong to (``generator.``, ``decoder.``, ``discriminator.``,
``objective.<name>.``, ``optim.generator.`` ...); everything else (step, stage, optimiser hyper-parameters, the
resolved model spec) is JSON in the safetensors metadata under ``zoo``. A file holding the ``generator.*`` and
``decoder.*`` tensors of a :class:`zoo.factory.Predictor` is what inference needs.

Reading trusts nothing in the file: a header that is not the zoo's (no JSON object naming ``model`` and
``spec``), a spec that does not validate, tensors that do not fit the model or are not finite (one NaN
weight makes every output black) are each a :class:`CheckpointError` naming the file. The model is built
without the initial weights its spec names (``encoder_weights = "/path/x.pt"``), so loading a checkpoint
never opens a file the checkpoint names. A write that fails (disk full) is an ``OSError`` naming the file,
and the previous checkpoint stays as it was.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from zoo.errors import ZooError, one_line
from zoo.factory import Predictor, create_predictor
from zoo.files import atomic_write
from zoo.spec import ModelSpec, SpecError, building, get_spec, spec_from_dict

FORMAT = "colorization-zoo/1"
REQUIRED_KEYS = ("model", "spec")  # what every header names: the model and its resolved spec
_OS_ERROR_CODE = re.compile(r"(?:os error |code: )(\d+)")  # how safetensors reports an OS error


class CheckpointError(ZooError, ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def save(path: Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Write ``tensors`` and JSON ``meta`` to ``path`` atomically (:func:`zoo.files.atomic_write`); a failed
    write (disk full) is an ``OSError`` naming ``path``, which keeps its previous content."""
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_write(path) as tmp:
        try:
            save_file(contiguous, tmp, metadata={"format": FORMAT, "zoo": json.dumps(meta)})
        except SafetensorError as exc:
            code = _OS_ERROR_CODE.search(str(exc))
            if code is None:
                raise CheckpointError(f"{path}: cannot write the checkpoint: {one_line(exc)}") from None
            raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from None


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON header of the checkpoint at ``path``: an object naming at least the model and its spec."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({one_line(exc)})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a colorization-zoo checkpoint (format {header.get('format')!r})")
    try:
        meta = json.loads(header.get("zoo", ""))
    except ValueError as exc:
        raise CheckpointError(f"{path}: its zoo header is not JSON ({one_line(exc)})") from None
    if not isinstance(meta, dict) or any(key not in meta for key in REQUIRED_KEYS) or not isinstance(meta["model"], str):
        raise CheckpointError(f"{path}: its zoo header is not an object naming the {' and '.join(REQUIRED_KEYS)}")
    return meta


def load(path: Path, prefix: str = "", device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of ``path`` whose key starts with ``prefix``, with the prefix removed; refused when one
    holds a NaN or an infinity."""
    read_meta(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            tensors = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: cannot read its tensors ({one_line(exc)})") from None
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {prefix + key} holds NaN or infinite values")
    return tensors


def prefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with every key prefixed by ``prefix``."""
    return {prefix + k: v for k, v in tensors.items()}


def pack_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's state as flat tensors and its param groups (and scalar state) as JSON."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unpack_optimizer(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Restore what :func:`pack_optimizer` packed into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = flat.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def load_module(module: nn.Module, path: Path, prefix: str) -> None:
    """Load the ``prefix`` tensors of ``path`` into ``module`` strictly; mismatches name the file."""
    held = next(itertools.chain(module.parameters(), module.buffers()), None)
    tensors = load(path, prefix, device=held.device if held is not None else "cpu")
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit the model: {str(exc).splitlines()[0]}") from None


def load_generator(path: Path, model: str | None = None, device: str | torch.device = "cpu") -> tuple[ModelSpec, Predictor]:
    """The spec and the predictor (generator and decoder: L to ab) stored in checkpoint ``path``, in eval mode
    on ``device``. With ``model``, a checkpoint of another architecture is refused with a message naming both.
    """
    meta = read_meta(path)
    try:
        spec = spec_from_dict(meta["model"], meta["spec"])
    except SpecError as exc:
        raise CheckpointError(f"{path}: holds a spec that does not validate: {exc}") from None
    if model is not None and model != spec.name:
        wanted = get_spec(model)
        if wanted.generator != spec.generator:
            raise CheckpointError(
                f"{path}: holds a {spec.name!r} generator ({spec.generator.arch}), not one of model {model!r}"
                f" ({wanted.generator.arch})"
            )
    try:
        with building(spec):
            predictor = create_predictor(spec, pretrained=False).to(device)  # opens no file the checkpoint names
    except SpecError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    tensors = load(path, device=device)
    state = {k: v for k, v in tensors.items() if k.startswith(("generator.", "decoder."))}
    try:
        predictor.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit the model: {str(exc).splitlines()[0]}") from None
    return spec, predictor.eval()
