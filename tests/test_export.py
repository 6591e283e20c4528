"""`zoo export --format onnx`: every architecture family exports with dynamic batch and spatial axes and
onnxruntime reproduces torch; a graph that does not is refused, and so is a checkpoint of another model."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from zoo import checkpoint
from zoo.cli.inference import export as export_command
from zoo.export import ExportError, export_onnx
from zoo.factory import create_predictor
from zoo.spec import get_spec

# Small settings so that each export takes a second; the architectures are the real ones.
MODELS = {
    "simple-cnn": {"width": 8},
    "unet-resnet18": {},
    "pix2pix-unet-gan": {"ngf": 8, "num_downs": 6},
}


def write_checkpoint(path: Path, model: str) -> nn.Module:
    """An inference checkpoint as ``zoo train`` writes it (random weights: export does not care)."""
    spec = get_spec(model).with_overrides(generator=MODELS[model], image_size=64)
    torch.manual_seed(0)
    predictor = create_predictor(spec).eval()
    checkpoint.save(path, predictor.state_dict(), {"model": model, "spec": spec.to_dict()})
    return predictor


@pytest.mark.parametrize("model", sorted(MODELS))
def test_onnx_reproduces_torch_at_other_batch_and_spatial_sizes(tmp_path, model):
    weights = tmp_path / "generator.safetensors"
    generator = write_checkpoint(weights, model)
    result = CliRunner().invoke(export_command, [model, "--checkpoint", str(weights), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    reported = float(re.search(r"max abs diff (\S+)", result.output).group(1))
    assert reported < 1e-4
    path = tmp_path / "generator.onnx"  # beside the checkpoint by default
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version == 17
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["zoo.model"] == model and "L / 50 - 1" in meta["zoo.input"] and meta["zoo.output"].startswith("ab / 110")
    multiple = int(meta["zoo.size_multiple"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["L"] and [o.name for o in session.get_outputs()] == ["ab"]
    assert [d if isinstance(d, int) else "dynamic" for d in session.get_inputs()[0].shape] == ["dynamic", 1, "dynamic", "dynamic"]
    # A shape the export did not check: batch 2, 3 x 5 multiples.
    L = torch.rand(2, 1, 3 * multiple, 5 * multiple, generator=torch.Generator().manual_seed(3)) * 2 - 1  # noqa: N806
    with torch.inference_mode():
        expected = generator(L).numpy()
    got = session.run(None, {"L": L.numpy()})[0]
    assert got.shape == (2, 2, 3 * multiple, 5 * multiple)
    assert np.abs(got - expected).max() < 1e-4


def test_inference_settings_export_inside_the_graph(tmp_path):
    """A model that averages the mirrored view in and scales ab exports as one graph that onnxruntime runs to
    the torch predictor's ab at another batch size and shape."""
    spec = dataclasses.replace(get_spec("simple-cnn").with_overrides(generator=MODELS["simple-cnn"], image_size=64),
                               flip_average=True, chroma_scale=0.5)
    torch.manual_seed(0)
    predictor = create_predictor(spec).eval()
    out = tmp_path / "m.onnx"
    export_onnx(spec, predictor, out)
    L = torch.rand(3, 1, 32, 96, generator=torch.Generator().manual_seed(4)) * 2 - 1  # noqa: N806
    with torch.inference_mode():
        plain = dataclasses.replace(spec, flip_average=False, chroma_scale=1.0)
        unscaled = create_predictor(plain).eval()
        unscaled.load_state_dict(predictor.state_dict())
        expected = 0.5 * (unscaled(L) + unscaled(L.flip(-1)).flip(-1)) / 2
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"L": L.numpy()})[0] - expected.numpy()).max() < 1e-5


def test_opset_and_out_options(tmp_path):
    weights = tmp_path / "w.safetensors"
    write_checkpoint(weights, "simple-cnn")
    out = tmp_path / "exported" / "model.onnx"
    result = CliRunner().invoke(export_command, ["simple-cnn", "--checkpoint", str(weights), "--out", str(out), "--opset", "18"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "opset 18" in result.output
    assert onnx.load(str(out)).opset_import[0].version == 18


class _BatchDependent(nn.Module):
    """Python control flow on the batch size: tracing freezes the branch taken at export, so ONNX differs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sign = 1.0 if x.shape[0] == 1 else -1.0
        return torch.tanh(x).repeat(1, 2, 1, 1) * sign


def test_a_graph_that_differs_from_torch_is_refused(tmp_path):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="differs from torch's by up to"):
        export_onnx(get_spec("simple-cnn"), _BatchDependent(), out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_checkpoint_of_another_model_is_refused(tmp_path):
    weights = tmp_path / "generator.safetensors"
    write_checkpoint(weights, "simple-cnn")
    result = CliRunner().invoke(export_command, ["unet-resnet18", "--checkpoint", str(weights)])
    assert result.exit_code == 1
    assert "simple-cnn" in result.output and "unet-resnet18" in result.output
    assert not (tmp_path / "generator.onnx").exists()
