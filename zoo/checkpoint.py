"""Checkpoints as single safetensors files: tensors plus a JSON header, written atomically, never unpickled.

Tensor keys are prefixed by what they belong to (``generator.``, ``decoder.``, ``discriminator.``,
``objective.<name>.``, ``optim.generator.`` ...); everything else (step, stage, optimiser hyper-parameters, the
resolved model spec) is JSON in the safetensors metadata under ``zoo``. A file holding the ``generator.*`` and
``decoder.*`` tensors of a :class:`zoo.factory.Predictor` is what inference needs.

:func:`pack` writes the shipped form of such a file: float16, and without the generator tensors that building
the model with its named pretrained weights gives again (a frozen ImageNet encoder: 2.96M of the default's 5.24M
parameters). The header lists those under ``rebuilt`` with the SHA-256 of their values; loading builds them
from the same source and refuses the file if they differ.

Reading trusts nothing in the file: a header that is not the zoo's (no JSON object naming ``model`` and
``spec``), a spec that does not validate, tensors that do not fit the model or are not finite (one NaN
weight makes every output black) are each a :class:`CheckpointError` naming the file. The model is built
without the initial weights its spec names (``encoder_weights = "/path/x.pt"``), so loading a checkpoint
never opens a file the checkpoint names. A write that fails (disk full) is an ``OSError`` naming the file,
and the previous checkpoint stays as it was.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from zoo.errors import ZooError, one_line
from zoo.factory import Predictor, create_predictor, named_pretrained_weights
from zoo.files import atomic_write
from zoo.registry import OBJECTIVES
from zoo.spec import INFERENCE_KEYS, ModelSpec, SpecError, building, get_spec, model_specs, spec_from_dict

FORMAT = "colorization-zoo/1"
REQUIRED_KEYS = ("model", "spec")  # what every header names: the model and its resolved spec
REBUILT = "rebuilt"  # header key of a packed file: the generator tensors it leaves to the pretrained weights
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
    """The JSON header of the checkpoint at ``path``: an object naming at least the model and its spec. Read once
    per version of the file (a load or a resume asks for it from several places; checkpoints are only ever
    replaced whole, by rename, which changes what ``os.stat`` says)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({one_line(exc)})") from None
    return copy.deepcopy(_read_meta(str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _read_meta(path: str, inode: int, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        with safe_open(path, framework="pt") as f:
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


def load_module(module: nn.Module, path: Path, prefix: str,
                adapt: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> None:
    """Load the ``prefix`` tensors of ``path`` into ``module`` strictly; mismatches name the file. ``adapt``
    changes the tensors first (a head grown to more outputs)."""
    held = next(itertools.chain(module.parameters(), module.buffers()), None)
    tensors = load(path, prefix, device=held.device if held is not None else "cpu")
    if prefix == "generator.":  # a packed file's rebuilt tensors: the module's own, if they are the same
        tensors |= _rebuilt(path, read_meta(path), prefixed(prefix, module.state_dict()), prefix)
    if adapt is not None:
        tensors = adapt(tensors)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit the model: {str(exc).splitlines()[0]}") from None


def load_generator(path: Path, model: str | None = None, device: str | torch.device = "cpu") -> tuple[ModelSpec, Predictor]:
    """The spec and the predictor (generator and decoder: L to ab) stored in checkpoint ``path`` (or the Hub-layout
    folder ``path``: :func:`zoo.hub.folder_checkpoint`), in eval mode on ``device``. With ``model``, a checkpoint
    of another architecture is refused with a message naming both.
    """
    if Path(path).is_dir():
        from zoo.hub import folder_checkpoint

        path = folder_checkpoint(Path(path))
    meta = read_meta(path)
    try:
        spec = spec_from_dict(meta["model"], meta["spec"])
    except SpecError as exc:
        raise CheckpointError(f"{path}: holds a spec that does not validate: {exc}") from None
    spec = registry_settings(spec, path)
    if model is not None and model != spec.name:
        wanted = get_spec(model)
        if wanted.generator != spec.generator:
            raise CheckpointError(
                f"{path}: holds a {spec.name!r} generator ({spec.generator.arch}), not one of model {model!r}"
                f" ({wanted.generator.arch})"
            )
    packed = REBUILT in meta
    if packed and named_pretrained_weights(spec.generator) is None:
        raise CheckpointError(f"{path}: leaves tensors to the generator's pretrained weights, but its spec names"
                              f" none by name ({spec.generator.arch} settings {spec.generator.settings})")
    try:
        with building(spec), warnings.catch_warnings(record=packed) as caught:
            # Unpacked: no initial weights (the file holds them all). Packed: the named source's, never a path;
            # a warning on the way (no weights here) is kept for the message if the rebuilt tensors differ.
            predictor = create_predictor(spec, pretrained=packed)
    except SpecError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    state = {k: v for k, v in load(path).items() if k.startswith(("generator.", "decoder."))}
    if packed:
        state |= _rebuilt(path, meta, predictor.state_dict(), "", why=[str(w.message) for w in caught or []])
    predictor = predictor.to(device)
    try:
        predictor.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit the model: {str(exc).splitlines()[0]}") from None
    return spec, predictor.eval()


def registry_settings(header: ModelSpec, path: Path) -> ModelSpec:
    """The spec to run weights with: the header's, with the registry's inference settings (and its output
    objective's decoding settings) for a model it names with the same generator, the one source of those; the
    header's alone for a model the registry does not (or no longer) name, or a run of other generator settings.
    Where the registry's settings differ from the header's, a one-line warning names them."""
    named = model_specs().get(header.name)
    if named is None or (named.generator, named.output_channels) != (header.generator, header.output_channels):
        return header
    output = header.output_objective
    decoding = [key for key in (OBJECTIVES.get(output).decoding_settings if output else ())
                if key in named.objectives.get(output, {})]
    wanted = {key: getattr(named, key) for key in INFERENCE_KEYS} | {key: named.objectives[output][key]
                                                                      for key in decoding}
    held = {key: getattr(header, key) for key in INFERENCE_KEYS} | {key: header.objectives.get(output, {}).get(key)
                                                                     for key in decoding}
    differ = [f"{key} {held[key]!r} -> {wanted[key]!r}" for key in wanted if held[key] != wanted[key]]
    if not differ:
        return header
    warnings.warn(f"{path}: run with the registry's settings for {header.name}, not its header's ({', '.join(differ)})",
                  UserWarning, stacklevel=3)
    return header.with_inference(wanted)


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of ``tensors``' names and float32 values, in name order."""
    sha = hashlib.sha256()
    for key in sorted(tensors):
        sha.update(key.encode())
        sha.update(tensors[key].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return sha.hexdigest()


def _rebuilt(path: Path, meta: Mapping[str, Any], built: Mapping[str, torch.Tensor], prefix: str,
             why: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors a packed checkpoint leaves out, taken from ``built`` (a predictor's state, keys from
    ``generator.``), keyed without ``prefix``; refused unless their digest is the one :func:`pack` recorded."""
    entry = meta.get(REBUILT)
    if entry is None:
        return {}
    keys, want = (entry.get("tensors"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
    if not (isinstance(keys, list) and all(isinstance(k, str) and k.startswith("generator.") for k in keys)
            and isinstance(want, str)):
        raise CheckpointError(f"{path}: its {REBUILT!r} header is not a list of generator tensors and their SHA-256")
    absent = [k for k in keys if k not in built]
    if absent:
        raise CheckpointError(f"{path}: does not fit the model: it leaves {absent[0]!r} to be rebuilt, which the"
                              " model does not have")
    ours = {k: built[k] for k in keys}
    if _digest(ours) != want:
        reason = f" ({'; '.join(why)})" if why else ""
        raise CheckpointError(f"{path}: the {len(keys)} tensors it leaves to the pretrained weights"
                              f" ({entry.get('from', '?')}) come out different here{reason}")
    return {k[len(prefix):]: v for k, v in ours.items()}


@dataclass(frozen=True)
class Packed:
    """What :func:`pack` wrote: tensors stored and tensors left to the pretrained weights (with their sizes)."""

    path: Path
    stored: int
    rebuilt: int
    stored_values: int
    rebuilt_values: int


def pack(source: Path, target: Path, settings: Mapping[str, Any] | None = None) -> Packed:
    """Write the shipped form of inference checkpoint ``source`` to ``target``: its tensors in float16, less
    the generator tensors that the model's named pretrained weights give again (a frozen ImageNet encoder).

    A tensor is left out when building the model with its pretrained weights gives the same values in float16
    under two different seeds: so it came from the weights (or a fixed initialisation), not from the random
    draw, and training did not change it. Loading rebuilds them in float32 from the same source and checks
    the digest recorded here. With no named source, or none to be had here (offline, a warning), every
    tensor is stored. The header's spec holds the inference settings the weights run with (for a model the
    registry names, the registry's: :func:`registry_settings`), ``settings`` replacing them
    (:meth:`zoo.spec.ModelSpec.with_inference`: how the weights run, chosen after training). Refuses a
    ``target`` that is ``source``.
    """
    if Path(target).resolve() == Path(source).resolve():
        raise CheckpointError(f"{target}: is the checkpoint being packed; give another output path")
    meta = dict(read_meta(source))
    spec, predictor = load_generator(source)
    trained = predictor.state_dict()
    rebuilt: dict[str, torch.Tensor] = {}
    if named_pretrained_weights(spec.generator) is not None:
        builds = []
        for seed in (0, 1):
            with torch.random.fork_rng(), warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)  # no pretrained weights here: a random build, nothing to leave out
                torch.manual_seed(seed)
                try:
                    with building(spec):
                        builds.append(create_predictor(spec, pretrained=True).state_dict())
                except (Warning, SpecError) as exc:
                    warnings.warn(f"{source}: storing every tensor: {one_line(exc)}", UserWarning, stacklevel=2)
                    break
        if len(builds) == 2:
            first, second = builds
            rebuilt = {k: first[k] for k, v in trained.items()
                       if k.startswith("generator.") and v.is_floating_point() and torch.equal(first[k], second[k])
                       and torch.equal(v.half(), first[k].half())}
    meta.pop(REBUILT, None)
    # the settings the weights run with (the registry's for a model it names: load_generator applied them), so that
    # the shipped header agrees with the registry; ``settings`` over them
    meta["spec"] = spec.with_inference(settings or {}).to_dict()
    if rebuilt:
        meta[REBUILT] = {"from": named_pretrained_weights(spec.generator), "tensors": sorted(rebuilt),
                         "sha256": _digest(rebuilt)}
    stored = {k: v.half() if v.is_floating_point() else v for k, v in load(source).items() if k not in rebuilt}
    save(target, stored, meta)
    return Packed(Path(target), len(stored), len(rebuilt), sum(v.numel() for v in stored.values()),
                  sum(v.numel() for v in rebuilt.values()))
