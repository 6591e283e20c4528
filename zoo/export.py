"""ONNX export of a trained predictor (generator and decoder), checked against torch with onnxruntime.

The graph maps normalised L (``L / 50 - 1``, shape (B, 1, H, W)) to normalised ab (``ab / 110``, (B, 2, H, W)),
decoding included, with batch, height and width dynamic; H and W must be multiples of the generator's declared
size multiple, which the file's metadata states along with the normalisation and the working size. A model
whose generator takes colour hints has a second input, ``hints`` (B, 3, H, W): hint a and b (normalised, 0 where
no hint) and the mask (1 where a hint is), as :func:`zoo.hints.hint_channels` makes them; all zeros for none.

It uses torch's TorchScript-based exporter (``dynamo=False``): the torch.export-based one that torch 2.14 makes
the default needs the ``onnxscript`` package, which the zoo does not depend on, while the TorchScript exporter
ships with torch, handles every built-in architecture with ``dynamic_axes``, and its graphs are verified here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zoo.color import AB_SCALE, L_SCALE
from zoo.errors import ZooError
from zoo.files import atomic_write
from zoo.hints import HINT_CHANNELS
from zoo.spec import ModelSpec, size_multiple

DEFAULT_OPSET = 17  # ONNX 1.12 (2022): onnxruntime >= 1.12 and every current runtime load it
TOLERANCE = 1e-4  # largest |onnx - torch| accepted on normalised ab in [-1, 1]
_DYNAMIC = {0: "batch", 2: "height", 3: "width"}


class ExportError(ZooError, RuntimeError):
    """An export whose graph does not reproduce the torch generator (or cannot be checked)."""


@dataclass(frozen=True)
class ExportReport:
    """The written file and how closely onnxruntime reproduced torch on each checked input shape."""

    path: Path
    opset: int
    shapes: tuple[tuple[int, int, int, int], ...]
    max_abs_diff: float


def check_shapes(multiple: int) -> tuple[tuple[int, int, int, int], ...]:
    """Two input shapes with different batch sizes and spatial sizes, each side a multiple of ``multiple``."""
    side = multiple * math.ceil(64 / multiple)
    return (1, 1, side, 2 * side), (3, 1, 2 * side, side)


def export_onnx(
    spec: ModelSpec, predictor: nn.Module, out: Path, opset: int = DEFAULT_OPSET, tolerance: float = TOLERANCE
) -> ExportReport:
    """Write ``predictor`` (L to ab) as ONNX to ``out`` and check it with onnxruntime at two batch and spatial
    sizes.

    Raises :class:`ExportError` when onnxruntime is missing or an output differs from torch's by more than
    ``tolerance``; ``out`` is then not written.
    """
    try:
        import onnx
        import onnxruntime  # noqa: F401 (the check runs it)
    except ImportError as exc:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({exc}): pip install onnx onnxruntime") from None
    predictor = predictor.cpu().eval()
    multiple = size_multiple(spec)
    shapes = check_shapes(multiple)
    guided = getattr(predictor, "guided", False)
    example = (torch.zeros(1, 1, shapes[0][2], shapes[0][2]),)
    names = ["L"]
    if guided:
        example += (torch.zeros(1, HINT_CHANNELS, shapes[0][2], shapes[0][2]),)
        names.append("hints")
    with atomic_write(out) as tmp:
        with warnings.catch_warnings():
            # The TorchScript exporter's deprecation notice, and the tracer's note that size checks such as
            # ``if h % multiple`` are frozen: both expected (inputs must be multiples, as the metadata says).
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            torch.onnx.export(
                predictor, example, str(tmp), dynamo=False, opset_version=opset, input_names=names,
                output_names=["ab"], dynamic_axes={name: _DYNAMIC for name in [*names, "ab"]},
            )
        model = onnx.load(str(tmp))
        onnx.helper.set_model_props(model, {
            "zoo.model": spec.name,
            "zoo.generator": spec.generator.arch,
            "zoo.input": f"L / {L_SCALE:g} - 1, (B, 1, H, W), H and W multiples of {multiple}",
            "zoo.output": f"ab / {AB_SCALE:g}, (B, 2, H, W)",
            **({"zoo.hints": "(B, 3, H, W): hint a / 110, hint b / 110 (0 where no hint), mask (1 at hints)"}
               if guided else {}),
            "zoo.size_multiple": str(multiple),
            "zoo.image_size": str(spec.stages[-1].image_size),
        })
        onnx.save(model, str(tmp))
        worst = _worst_difference(predictor, str(tmp), shapes)
        if not worst <= tolerance:
            raise ExportError(f"ONNX output differs from torch's by up to {worst:.3g} (> {tolerance:g})")
    return ExportReport(Path(out), opset, shapes, worst)


def _worst_difference(predictor: nn.Module, onnx_path: str, shapes: tuple[tuple[int, int, int, int], ...]) -> float:
    """Largest |onnxruntime - torch| over random inputs of ``shapes`` (seeded)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    worst = 0.0
    draws = torch.Generator().manual_seed(0)
    for shape in shapes:
        inputs = {"L": torch.rand(shape, generator=draws) * 2 - 1}
        if getattr(predictor, "guided", False):  # a few hints: random colours where a sparse mask is 1
            mask = (torch.rand(shape, generator=draws) < 0.02).float()
            ab = (torch.rand(shape[0], 2, *shape[2:], generator=draws) * 2 - 1) * mask
            inputs["hints"] = torch.cat([ab, mask], dim=1)
        with torch.inference_mode():
            expected = predictor(*inputs.values()).numpy()
        got = session.run(["ab"], {name: value.numpy() for name, value in inputs.items()})[0]
        if got.shape != expected.shape:
            raise ExportError(f"ONNX output shape {got.shape} != torch's {expected.shape} for input {shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst
