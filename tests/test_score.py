"""`zoo score`: the reference rows against an independent numpy/scikit-image computation, checkpoints, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from skimage.color import lab2rgb, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from zoo import checkpoint, get_spec
from zoo.cli.harness import score
from zoo.data import ColorizationDataset, resolve_source
from zoo.factory import create_models

SMALL_CNN = {"width": 8, "depth": 2}


def run_score(tmp_path: Path, *args: str, code: int = 0) -> tuple[str, dict | None]:
    """Run `zoo score ARGS` with results under tmp_path; returns the output and the results document."""
    results = tmp_path / "results"
    result = CliRunner(env={"COLUMNS": "200"}).invoke(score, [*args, "--results", str(results), "--workers", "0"])
    assert result.exit_code == code, result.output
    files = sorted(results.glob("score-*.json"))
    return result.output, json.loads(files[-1].read_text()) if files else None


def _cf(rgb01: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness of one (H, W, 3) image in [0, 1], on 0-255 values."""
    r, g, b = (rgb01 * 255.0).reshape(-1, 3).T
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def gray_oracle(size: int) -> dict[str, float]:
    """The gray row computed with numpy and scikit-image (float64) on the crops the protocol prescribes."""
    dataset = ColorizationDataset(resolve_source("sample"), size, train=False)
    psnr, ssim, cf, cf_truth = [], [], [], []
    for i in range(len(dataset)):
        truth = dataset[i].permute(1, 2, 0).numpy() / 255.0
        lab = rgb2lab(truth)
        lab[..., 1:] = 0.0
        gray = lab2rgb(lab)
        psnr.append(peak_signal_noise_ratio(truth, gray, data_range=1.0))
        ssim.append(structural_similarity(gray, truth, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False))
        cf.append(_cf(gray))
        cf_truth.append(_cf(truth))
    return {"images": len(dataset), "psnr": np.mean(psnr), "ssim": np.mean(ssim), "cf": np.mean(cf),
            "cf_truth": np.mean(cf_truth), "dcf": np.mean(np.abs(np.subtract(cf_truth, cf)))}


@pytest.mark.parametrize("size", [64, pytest.param(256, marks=pytest.mark.slow)])
def test_gray_reference_matches_numpy_and_skimage(tmp_path, size):
    """Acceptance: `zoo score gray --data sample` gives the PSNR/SSIM/CF of an independent computation to 1e-3."""
    _, doc = run_score(tmp_path, "gray", "--data", "sample", "--image-size", str(size))
    rows = {row["model"]: row for row in doc["rows"]}
    assert list(rows) == ["gray", "truth"]
    expected = gray_oracle(size)
    gray = rows["gray"]
    assert gray["error"] is None and gray["images"] == expected["images"] == 119
    for key in ("psnr", "ssim", "cf", "cf_truth", "dcf"):
        assert gray[key] == pytest.approx(expected[key], abs=1e-3), key
    assert gray["ciede2000"] > 1  # gray is visibly wrong
    truth = rows["truth"]
    assert truth["psnr"] is None  # infinite, written as null
    assert truth["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert truth["dcf"] == 0.0 and truth["ciede2000"] == 0.0
    assert truth["cf"] == truth["cf_truth"] == pytest.approx(expected["cf_truth"], abs=1e-3)
    assert doc["protocol"]["image_size"] == size and doc["protocol"]["images"] == 119
    assert set(doc) == {"kind", "created", "machine", "settings", "protocol", "rows", "samples"}
    assert doc["kind"] == "score"


def save_generator(path: Path, generator: torch.nn.Module, name: str = "simple-cnn", **settings: object) -> Path:
    """Write an inference checkpoint as `zoo train` does (generator tensors and the spec in the header)."""
    spec = get_spec(name).with_overrides(generator=settings)
    meta = {"model": spec.name, "spec": spec.to_dict()}
    checkpoint.save(path, checkpoint.prefixed("generator.", generator.state_dict()), meta)
    return path


def small_cnn(head_bias: tuple[float, float] | None = None) -> torch.nn.Module:
    """A small simple-cnn; with ``head_bias``, its head conv is zero but for that bias: ab = tanh(bias) everywhere."""
    generator, _ = create_models(get_spec("simple-cnn").with_overrides(generator=SMALL_CNN))
    if head_bias is not None:
        conv = generator.head[0]
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.copy_(torch.tensor(head_bias))
    return generator


@pytest.fixture
def few_photos(tmp_path) -> str:
    """A list file of 12 sample photos (a --data source for the tests that need no particular set)."""
    path = tmp_path / "photos.txt"
    path.write_text("\n".join(str(p) for p in resolve_source("sample")[::10]))
    return str(path)


def test_a_model_predicting_zero_ab_scores_as_gray(tmp_path, few_photos):
    """A checkpoint whose head outputs tanh(0) = 0 must reproduce the gray row; its grid is written."""
    run = tmp_path / "run"
    run.mkdir()
    save_generator(run / "generator.safetensors", small_cnn(head_bias=(0.0, 0.0)), **SMALL_CNN)
    out, doc = run_score(tmp_path, "simple-cnn", "--checkpoint", str(run), "--image-size", "64", "--data", few_photos)
    rows = {row["model"]: row for row in doc["rows"]}
    assert list(rows) == ["simple-cnn", "gray", "truth"]
    model, gray = rows["simple-cnn"], rows["gray"]
    assert model["checkpoint"] == str(run) and gray["checkpoint"] is None
    for key in ("psnr", "ssim", "cf", "dcf", "ciede2000"):
        assert model[key] == pytest.approx(gray[key], abs=1e-6), key
    grid = tmp_path / "results" / doc["samples"]["simple-cnn"]
    assert grid.is_file() and grid.stat().st_size > 0
    assert "simple-cnn" in out


def test_a_tinting_model_scores_its_tint(tmp_path, few_photos):
    """A model that paints every pixel one ab: its scores are those of the truth's L with that ab, by skimage."""
    bias = (0.3, -0.2)
    path = save_generator(tmp_path / "cnn.safetensors", small_cnn(head_bias=bias), **SMALL_CNN)
    _, doc = run_score(tmp_path, "simple-cnn", "--checkpoint", str(path), "--image-size", "64", "--data", few_photos)
    model = doc["rows"][0]
    assert model["error"] is None
    dataset = ColorizationDataset(Path(few_photos).read_text().split("\n"), 64, train=False)
    psnr, cf = [], []
    for i in range(len(dataset)):
        truth = dataset[i].permute(1, 2, 0).numpy() / 255.0
        lab = rgb2lab(truth)
        lab[..., 1:] = np.tanh(bias) * 110.0  # ab normalisation of the zoo: ab / 110
        tinted = lab2rgb(lab)
        psnr.append(peak_signal_noise_ratio(truth, tinted, data_range=1.0))
        cf.append(_cf(tinted))
    assert model["psnr"] == pytest.approx(np.mean(psnr), abs=1e-3)
    assert model["cf"] == pytest.approx(np.mean(cf), abs=1e-3)


def test_score_without_checkpoint_says_to_train_first(tmp_path):
    out, doc = run_score(tmp_path, "unet-resnet18", code=1)
    assert "zoo train unet-resnet18" in out and "--checkpoint" in out
    assert doc is None


def test_unknown_model_and_checkpoint_of_another_model_are_refused(tmp_path):
    out, _ = run_score(tmp_path, "unet-resnet81", code=1)
    assert "unknown model 'unet-resnet81'" in out
    path = save_generator(tmp_path / "cnn.safetensors", small_cnn(), **SMALL_CNN)
    out, _ = run_score(tmp_path, "unet-resnet18", "--checkpoint", str(path), code=1)
    assert "not one of model 'unet-resnet18'" in out
    out, _ = run_score(tmp_path, "gray", "--checkpoint", str(path), code=1)
    assert "takes no --checkpoint" in out


@pytest.mark.parametrize(("flag", "weights"), [("--fid", "weights-inception-2015-12-05-6726825d.pth"),
                                                ("--lpips", "alexnet-owt-7be5be79.pth")])
def test_fid_and_lpips_fail_clearly_without_their_weights(tmp_path, monkeypatch, flag, weights):
    torch_home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    out, doc = run_score(tmp_path, "gray", flag, code=1)
    assert weights in out and str(torch_home / "hub" / "checkpoints") in out and "TORCH_HOME" in out
    assert doc is None
