"""The colour metrics of zoo.harness.metrics against independent oracles: numpy, scikit-image and published data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import structural_similarity as sk_ssim
from torchmetrics.utilities.data import dim_zero_sum

from zoo.color import ciede2000
from zoo.data import ColorizationDataset, resolve_source
from zoo.harness.metrics import (
    CIEDE2000,
    Colorfulness,
    ColorfulnessGap,
    PerImageColorfulnessGap,
    StructuralSimilarity,
    colorfulness,
)

# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula", Table 1: L1 a1 b1 L2 a2 b2 dE00.
SHARMA = """
50.0000 2.6772 -79.7751 50.0000 0.0000 -82.7485 2.0425
50.0000 3.1571 -77.2803 50.0000 0.0000 -82.7485 2.8615
50.0000 2.8361 -74.0200 50.0000 0.0000 -82.7485 3.4412
50.0000 -1.3802 -84.2814 50.0000 0.0000 -82.7485 1.0000
50.0000 -1.1848 -84.8006 50.0000 0.0000 -82.7485 1.0000
50.0000 -0.9009 -85.5211 50.0000 0.0000 -82.7485 1.0000
50.0000 0.0000 0.0000 50.0000 -1.0000 2.0000 2.3669
50.0000 -1.0000 2.0000 50.0000 0.0000 0.0000 2.3669
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0009 7.1792
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0010 7.1792
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0011 7.2195
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0012 7.2195
50.0000 -0.0010 2.4900 50.0000 0.0009 -2.4900 4.8045
50.0000 -0.0010 2.4900 50.0000 0.0010 -2.4900 4.8045
50.0000 -0.0010 2.4900 50.0000 0.0011 -2.4900 4.7461
50.0000 2.5000 0.0000 50.0000 0.0000 -2.5000 4.3065
50.0000 2.5000 0.0000 73.0000 25.0000 -18.0000 27.1492
50.0000 2.5000 0.0000 61.0000 -5.0000 29.0000 22.8977
50.0000 2.5000 0.0000 56.0000 -27.0000 -3.0000 31.9030
50.0000 2.5000 0.0000 58.0000 24.0000 15.0000 19.4535
50.0000 2.5000 0.0000 50.0000 3.1736 0.5854 1.0000
50.0000 2.5000 0.0000 50.0000 3.2972 0.0000 1.0000
50.0000 2.5000 0.0000 50.0000 1.8634 0.5757 1.0000
50.0000 2.5000 0.0000 50.0000 3.2592 0.3350 1.0000
60.2574 -34.0099 36.2677 60.4626 -34.1751 39.4387 1.2644
63.0109 -31.0961 -5.8663 62.8187 -29.7946 -4.0864 1.2630
61.2901 3.7196 -5.3901 61.4292 2.2480 -4.9620 1.8731
35.0831 -44.1164 3.7933 35.0232 -40.0716 1.5901 1.8645
22.7233 20.0904 -46.6940 23.0331 14.9730 -42.5619 2.0373
36.4612 47.8580 18.3852 36.2715 50.5065 21.2231 1.4146
90.8027 -2.0831 1.4410 91.1528 -1.6435 0.0447 1.4441
90.9257 -0.5406 -0.9208 88.6381 -0.8985 -0.7239 1.5381
6.7747 -0.2908 -2.4247 5.8714 -0.0985 -2.2286 0.6377
2.0776 0.0795 -1.1350 0.9033 -0.0636 -0.5514 0.9082
"""


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Eight real photos (the shipped sample), 64 px centre crops, uint8 (8, 3, 64, 64)."""
    dataset = ColorizationDataset(resolve_source("sample")[::15][:8], 64, train=False)
    return torch.stack([dataset[i] for i in range(len(dataset))])


def _hwc(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] as float64 (B, H, W, 3)."""
    return images.permute(0, 2, 3, 1).double().numpy()


def _cf_numpy(rgb01: np.ndarray, signed: bool = False) -> float:
    """Colourfulness of one (H, W, 3) image in [0, 1], written out on 0-255 values as the published colorization
    code does it (absolute opponents, population std), or with Hasler & Suesstrunk's signed opponents."""
    r, g, b = (rgb01 * 255.0).reshape(-1, 3).T
    rg, yb = r - g, 0.5 * (r + g) - b
    if not signed:
        rg, yb = np.absolute(rg), np.absolute(yb)
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def _desaturated(images: torch.Tensor, keep: float) -> torch.Tensor:
    """Each pixel pulled towards its channel mean: ``keep`` 0 is gray, 1 the image itself."""
    gray = images.mean(dim=1, keepdim=True)
    return gray + keep * (images - gray)


@pytest.mark.parametrize("signed", [False, True])
def test_colorfulness_matches_the_formula_on_real_photos(photos, signed):
    images = photos.float() / 255
    expected = [_cf_numpy(image, signed) for image in _hwc(images)]
    # float32 sums over 64 x 64 pixels of values up to 255: relative rounding well under 1e-5
    np.testing.assert_allclose(colorfulness(images, signed).numpy(), expected, rtol=1e-5, atol=1e-4)
    assert min(expected) > 5  # real colour photos, not a degenerate case
    metric = Colorfulness(signed=signed)
    metric.update(images[:3])
    metric.update(images[3:])
    assert metric.compute().item() == pytest.approx(np.mean(expected), abs=1e-3)


def test_the_absolute_and_signed_forms_differ_on_real_photos(photos):
    """The published code's |rg|, |yb| fold opposite hues together: lower means, smaller spreads, another number."""
    images = photos.float() / 255
    absolute, signed = Colorfulness(), Colorfulness(signed=True)
    absolute.update(images)
    signed.update(images)
    assert abs(signed.compute().item() - absolute.compute().item()) > 1.0  # well above the 1e-3 agreement above


@pytest.mark.parametrize("signed", [False, True])
def test_colorfulness_of_gray_is_zero_and_scales_with_saturation(photos, signed):
    images = photos.float() / 255
    assert colorfulness(_desaturated(images, 0.0), signed).abs().max().item() < 1e-3
    # rg and yb are linear in the pixels' offsets from their gray (|k x| = k |x| for k >= 0), so pulling every
    # pixel halfway to its gray halves both of CF's terms: CF scales exactly.
    np.testing.assert_allclose(colorfulness(_desaturated(images, 0.5), signed).numpy(),
                               0.5 * colorfulness(images, signed).numpy(), rtol=1e-4)


def test_colorfulness_gaps_over_the_set_and_per_image(photos):
    truth = photos.float() / 255
    # Half the predictions too saturated, half too dull: per-image errors of opposite signs.
    preds = torch.cat([_desaturated(truth[:4], 1.5).clamp(0, 1), _desaturated(truth[4:], 0.3)])
    cf_truth = [_cf_numpy(x) for x in _hwc(truth)]
    cf_pred = [_cf_numpy(x) for x in _hwc(preds)]
    per_image, over_set = PerImageColorfulnessGap(), ColorfulnessGap()
    for metric in (per_image, over_set):
        metric.update(preds[:5], truth[:5])
        metric.update(preds[5:], truth[5:])
    assert over_set.compute().item() == pytest.approx(abs(np.mean(cf_truth) - np.mean(cf_pred)), abs=1e-3)
    assert per_image.compute().item() == pytest.approx(np.mean(np.abs(np.subtract(cf_truth, cf_pred))), abs=1e-3)
    assert per_image.compute().item() > over_set.compute().item() + 1  # the errors cancel in the set's means
    over_set.reset()
    over_set.update(truth, truth)
    assert over_set.compute().item() == 0.0


def test_ciede2000_reproduces_the_published_test_data():
    rows = [[float(v) for v in line.split()] for line in SHARMA.strip().splitlines()]
    table = torch.tensor(rows, dtype=torch.float64)
    assert table.shape == (34, 7)
    lab1, lab2, expected = table[:, :3], table[:, 3:6], table[:, 6]
    torch.testing.assert_close(ciede2000(lab1, lab2, dim=-1), expected, atol=5e-5, rtol=0)
    torch.testing.assert_close(ciede2000(lab2, lab1, dim=-1), expected, atol=5e-5, rtol=0)


def test_ciede2000_matches_skimage_on_random_lab_pairs():
    rng = np.random.default_rng(0)
    n = 20_000
    lab1 = np.column_stack([rng.uniform(0, 100, n), rng.uniform(-110, 110, n), rng.uniform(-110, 110, n)])
    lab2 = lab1 + rng.normal(0, 1, lab1.shape) * rng.choice([0.5, 5, 40], size=(n, 1))
    lab1[:100, 1:] = 0  # achromatic first colours: hue undefined
    turn = np.deg2rad(180 + rng.choice([-3.0, 3.0], size=100))  # nearly opposite hues: the 180 degree branches
    a, b = lab1[100:200, 1], lab1[100:200, 2]
    lab2[100:200, 1] = a * np.cos(turn) - b * np.sin(turn)
    lab2[100:200, 2] = a * np.sin(turn) + b * np.cos(turn)
    expected = deltaE_ciede2000(lab1, lab2)
    got = ciede2000(torch.from_numpy(lab1), torch.from_numpy(lab2), dim=-1).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    got32 = ciede2000(torch.from_numpy(lab1).float(), torch.from_numpy(lab2).float(), dim=-1).numpy()
    np.testing.assert_allclose(got32, expected, rtol=0, atol=2e-3)


def test_ciede2000_with_eps_is_a_loss_with_finite_exact_gradients():
    """With eps > 0 (training): within sqrt(eps) of the standard per colour pair, gradients finite where the
    standard's are not (equal colours, gray truths: sqrt and atan2 at 0) and equal to central differences
    (torch.autograd.gradcheck, float64) at random pairs, gray ones among them."""
    rng = np.random.default_rng(1)
    n = 400
    truth = np.column_stack([rng.uniform(5, 95, n), rng.normal(0, 30, n), rng.normal(0, 30, n)])
    truth[:100, 1:] = 0  # gray truths
    pred = truth + rng.normal(0, 1, truth.shape) * rng.choice([0.5, 5, 30], size=(n, 1))
    pred[:, 0] = truth[:, 0]  # the model predicts ab only
    pred[300:320] = truth[300:320]  # exact colours
    eps = 1e-4
    expected = deltaE_ciede2000(truth, pred)
    pred_t, truth_t = torch.from_numpy(pred).requires_grad_(), torch.from_numpy(truth)
    value = ciede2000(pred_t, truth_t, dim=-1, eps=eps)
    # sqrt(x + eps) - sqrt(x) <= sqrt(eps), at three square roots (chroma, their product, the result)
    np.testing.assert_allclose(value.detach().numpy(), expected, rtol=0, atol=3 * np.sqrt(eps))
    value.sum().backward()
    assert torch.isfinite(pred_t.grad).all()
    standard = torch.from_numpy(pred).requires_grad_()
    ciede2000(standard, truth_t, dim=-1).sum().backward()
    assert not torch.isfinite(standard.grad).all()  # what eps is for
    probe = torch.from_numpy(pred[80:120]).requires_grad_()  # 20 gray truths and 20 coloured
    assert torch.autograd.gradcheck(lambda p: ciede2000(p, truth_t[80:120], dim=-1, eps=eps), (probe,))


def test_ciede2000_metric_matches_skimage_on_real_photos(photos):
    truth = photos.float() / 255
    preds = torch.cat([_desaturated(truth[:4], 0.2), truth[4:].roll(1, dims=1)])  # dull, and channels swapped
    expected = [deltaE_ciede2000(rgb2lab(p), rgb2lab(t)).mean() for p, t in zip(_hwc(preds), _hwc(truth))]
    metric = CIEDE2000()
    metric.update(preds[:3], truth[:3])
    metric.update(preds[3:], truth[3:])
    assert metric.compute().item() == pytest.approx(np.mean(expected), abs=1e-3)
    metric.reset()
    metric.update(truth, truth)
    assert metric.compute().item() == 0.0


def test_ssim_matches_skimage_on_real_photos(photos):
    truth = photos.float() / 255
    noisy = (truth + 0.08 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    preds = torch.cat([noisy[:4], _desaturated(truth[4:], 0.0)])
    expected = [
        sk_ssim(p, t, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for p, t in zip(_hwc(preds), _hwc(truth))
    ]
    metric = StructuralSimilarity()
    metric.update(preds[:2], truth[:2])
    metric.update(preds[2:], truth[2:])
    assert metric.compute().item() == pytest.approx(np.mean(expected), abs=1e-5)


@pytest.mark.parametrize("metric_class", [Colorfulness, ColorfulnessGap, PerImageColorfulnessGap, CIEDE2000,
                                          StructuralSimilarity])
def test_states_sum_across_processes(photos, metric_class):
    """Two shards merged (what the ``sum`` reduction does across ranks) give the single-process value."""
    truth = photos.float() / 255
    preds = _desaturated(truth, 0.5)
    args = (lambda a, b: (a,)) if metric_class is Colorfulness else (lambda a, b: (a, b))
    whole, first, second = metric_class(), metric_class(), metric_class()
    whole.update(*args(preds, truth))
    first.update(*args(preds[:3], truth[:3]))
    second.update(*args(preds[3:], truth[3:]))
    assert set(first._reductions.values()) == {dim_zero_sum}  # noqa: SLF001 (the declared reductions)
    first.merge_state(second)
    assert first.compute().item() == pytest.approx(whole.compute().item(), rel=1e-6)


def test_pairs_of_different_shapes_are_refused(photos):
    images = photos.float() / 255
    with pytest.raises(ValueError, match="expected two"):
        CIEDE2000().update(images, images[:, :, :32])
    for gap in (ColorfulnessGap(), PerImageColorfulnessGap()):
        with pytest.raises(ValueError, match="expected two"):
            gap.update(images[:, :1], images[:, :1])
