"""FID-EffL0 (zoo.harness.fid): the shipped ImageNet network's features, the Frechet distance against numpy and
scipy on the same features, and its behaviour on known cases, offline, on the held-out photos."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.color import lab2rgb, rgb2lab

from zoo.data import resolve_source
from zoo.harness.fid import FEATURES, EfficientNetLite0Features, frechet_distance, frechet_distance_of
from zoo.harness.protocols import PROTOCOLS, ProtocolImages
from zoo.harness.scoring import score_models
from zoo.pretrained import efficientnet_lite_imagenet

# ImageNet-1k class indices
BALD_EAGLE, ORANGE = 22, 950
DOGS = range(151, 269)


def prepared(paths: list, side: int = 224) -> torch.Tensor:
    """Photos as the resize256 geometry prepares them, at ``side``: RGB in [0, 1] (B, 3, side, side)."""
    images = ProtocolImages([(p,) for p in paths], PROTOCOLS["resize256"], side)
    return torch.stack([images[i][0] for i in range(len(images))]).float() / 255


@pytest.fixture(scope="module")
def features() -> EfficientNetLite0Features:
    return EfficientNetLite0Features()


@pytest.fixture(scope="module")
def heldout() -> torch.Tensor:
    """The 50 held-out photos, 224 x 224 RGB in [0, 1]."""
    return prepared(resolve_source("heldout"))


def _hue_rotated(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """``images`` with every pixel's CIE Lab hue turned by ``degrees`` (L and chroma kept, out-of-gamut colours
    clipped), by scikit-image."""
    lab = rgb2lab(images.permute(0, 2, 3, 1).double().numpy())
    turn = np.deg2rad(degrees)
    a, b = lab[..., 1].copy(), lab[..., 2].copy()
    lab[..., 1], lab[..., 2] = a * np.cos(turn) - b * np.sin(turn), a * np.sin(turn) + b * np.cos(turn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "... negative Z values that have been clipped to zero"
        return torch.from_numpy(lab2rgb(lab)).permute(0, 3, 1, 2).float()


def _frechet_numpy(real: np.ndarray, fake: np.ndarray) -> float:
    """The Frechet distance of two feature sets (n, d) with numpy alone, from the centred features themselves:
    Tr (S1 S2)^(1/2) is the nuclear norm of A B^T / sqrt((n1 - 1)(n2 - 1)) for centred A, B (S1 = A^T A / (n1 - 1)),
    exact at any rank."""
    a, b = real - real.mean(0), fake - fake.mean(0)
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    return float(np.sum((real.mean(0) - fake.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross)


def _distance(features: EfficientNetLite0Features, real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = frechet_distance(features)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return metric.compute().item()


def test_the_features_are_the_imagenet_network_s(features):
    """The shipped weights, normalisation and input size are right: its own classifier, applied to the pooled
    features, names what real photos show."""
    names = ["darknet--dog.jpg", "darknet--eagle.jpg", "opencv-doc--orange.jpg"]
    photos = prepared([p for name in names for p in resolve_source("sample") if p.name == name])
    weights = efficientnet_lite_imagenet(0)
    with torch.inference_mode():
        pooled = features(photos)
    assert pooled.shape == (3, FEATURES)
    top = (pooled @ weights["classifier.weight"].T + weights["classifier.bias"]).argmax(dim=1).tolist()
    assert top[0] in DOGS and top[1:] == [BALD_EAGLE, ORANGE]
    features.train()  # a metric's .train() must not unfreeze it
    assert not features.training and not any(p.requires_grad for p in features.parameters())


def test_frechet_distance_matches_numpy_on_real_features(features, heldout):
    """Two halves of the held-out photos: torchmetrics' states and our trace term against the centred features."""
    with torch.inference_mode():
        real, fake = features(heldout[:10]).double().numpy(), features(heldout[10:]).double().numpy()
        got = _distance(features, heldout[:10], heldout[10:])
    expected = _frechet_numpy(real, fake)
    assert expected > 10  # two different sets of photos
    # float32 features, double statistics: the sums-of-products covariance loses ~1e-13 relative; the result
    # itself is rounded to float32 (torchmetrics returns the features' dtype): 6e-8 relative.
    assert got == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_matches_scipy_sqrtm_at_full_rank():
    """More images than features: the textbook formula with scipy's matrix square root of S1 S2."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12))
    fake = rng.normal(0.3, 1.0, size=(150, 12)) @ rng.normal(size=(12, 12))
    mu1, mu2, s1, s2 = real.mean(0), fake.mean(0), np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    got = frechet_distance_of(*(torch.from_numpy(x) for x in (mu1, s1, mu2, s2))).item()
    assert got == pytest.approx(expected, rel=1e-9)  # double precision, 12 x 12, well conditioned
    assert got == pytest.approx(_frechet_numpy(real, fake), rel=1e-9)


def test_identical_sets_give_zero(features, heldout):
    with torch.inference_mode():
        trace = np.trace(np.cov(features(heldout).double().numpy(), rowvar=False))
        distance = _distance(features, heldout, heldout)
    # Tr S1 + Tr S2 - 2 Tr (S1 S1)^(1/2) cancels to rounding of the traces (double, then float32 at the end).
    assert 0 <= distance <= 1e-6 * trace


def test_a_colour_shifted_set_is_further_than_the_original(features, heldout):
    """Half the photos against the other half, then against the same photos with their hues turned 120 degrees."""
    with torch.inference_mode():
        original = _distance(features, heldout[:10], heldout[10:])
        shifted = _distance(features, heldout[:10], _hue_rotated(heldout[10:], 120))
        shifted_self = _distance(features, heldout, _hue_rotated(heldout, 120))
    # Ten photos against ten others are far apart already (different scenes: about 356); wrong hues add to it
    # (about 375). The same photos with wrong hues are about 116 from themselves, where unchanged they give 0.
    assert shifted > original
    assert shifted_self > 10


class RandomColour(torch.nn.Module):
    """A colorizer that paints seeded random blotches: ab drawn uniformly on an 8 x 8 grid, upsampled."""

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        coarse = torch.empty(L.shape[0], 2, 8, 8).uniform_(-0.6, 0.6, generator=generator)
        return torch.nn.functional.interpolate(coarse, size=L.shape[-2:], mode="bilinear", align_corners=False)


def test_gray_scores_between_the_truth_and_random_colour(tmp_path):
    """FID-EffL0 through the scoring protocol, offline: truth (0) < gray < random colour."""
    scores = score_models({"random": RandomColour()}, data="heldout", image_size=128, workers=0, fid=True, echo=lambda line: None)
    rows = {row["model"]: row for row in scores.rows}
    assert rows["truth"]["fid_effl0"] < 1e-3 < rows["gray"]["fid_effl0"] < rows["random"]["fid_effl0"]
    assert rows["gray"]["fid"] is None  # Inception FID needs weights this machine does not have
    assert "NOT comparable with Inception FID" in scores.protocol["fid_effl0"]
