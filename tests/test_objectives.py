"""Objectives against independent computations: the ab-bin classification of Zhang et al. (grid, soft encoding,
rebalancing, annealed mean, ONNX), the perceptual term, the adversarial modes and warm-up, spectral norm."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from skimage.color import deltaE_ciede2000, rgb2lab

import zoo
from zoo.color import AB_SCALE, denormalize_lab, lab_normalized_to_rgb, rgb_uint8_to_lab_normalized
from zoo.data import ColorizationDataset, resolve_source
from zoo.objectives import Batch, Critic
from zoo.objectives.adversarial import ConditionalGAN, gan_loss
from zoo.objectives.classification import AnnealedMean, ColorClassification, ab_bins
from zoo.objectives.colour_difference import CIEDE2000Loss
from zoo.objectives.confidence import Confidence
from zoo.objectives.perceptual import Perceptual
from zoo.registry import DISCRIMINATORS
from zoo.spec import load_registry_file, registry_path, spec_from_dict
from zoo.train import TrainOptions, train

PHOTOS = ("darknet--dog.jpg", "kphotoalbum--sunset.jpg", "opencv-doc--fruits.jpg")


@pytest.fixture(scope="module")
def photo_lab() -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised L (3, 1, 64, 64) and ab (3, 2, 64, 64) of three real sample photos (centre crops)."""
    paths = [p for p in resolve_source("sample") if p.name in PHOTOS]
    rgb = torch.stack([ColorizationDataset(paths, 64, train=False)[i] for i in range(len(paths))])
    return rgb_uint8_to_lab_normalized(rgb)


@pytest.fixture(scope="module")
def photo_ab(photo_lab) -> torch.Tensor:
    return photo_lab[1]


@pytest.fixture(scope="module")
def classification() -> ColorClassification:
    return ColorClassification()


# ------------------------------------------------------------------------------------------- the ab grid


def test_bins_are_the_grid_cells_that_srgb_colours_fall_in():
    """Independently: scikit-image's Lab of every 8-bit sRGB colour, ab rounded to the 10-unit grid."""
    levels = np.arange(256) / 255.0
    cells = set()
    for red in levels:
        g, b = np.meshgrid(levels, levels, indexing="ij")
        lab = rgb2lab(np.stack([np.full_like(g, red), g, b], axis=-1))
        cells |= set(map(tuple, np.unique(np.round(lab[..., 1:].reshape(-1, 2) / 10).astype(int), axis=0)))
    expected = np.array(sorted(cells)) * 10.0
    bins = ab_bins(10.0).numpy()
    assert len(bins) == 261  # Zhang et al. report 313 for their gamut; see zoo.objectives.classification
    np.testing.assert_array_equal(bins, expected)
    assert ColorClassification.output_channels() == 261 and ColorClassification.output_channels(grid=20.0) < 100


def test_reading_the_registry_computes_no_bins():
    """Validating every model (what each `zoo` command does first) asks which objective defines the output, not
    how many channels it makes: the bins, every sRGB colour's Lab, are computed when a model is built."""
    ab_bins.cache_clear()
    specs = load_registry_file(registry_path())
    assert specs["unet-effnet-lite0-classify"].output_objective == "classification"
    assert ab_bins.cache_info().currsize == 0
    assert specs["unet-effnet-lite0-classify"].output_channels == 261 and ab_bins.cache_info().currsize == 1


def test_a_model_with_the_classification_objective_outputs_logits_over_the_bins():
    spec = spec_from_dict("m", {
        "generator": {"arch": "simple-cnn", "width": 8, "depth": 2},
        "objectives": {"classification": {"temperature": 0.5}},
        "stages": [{"name": "s", "loss": {"classification": 1, "l1": 10}, "epochs": 1}],
    })
    assert (spec.output_objective, spec.output_channels) == ("classification", 261)
    predictor = zoo.create_predictor(spec).eval()
    assert predictor.generator(torch.zeros(1, 1, 8, 8)).shape == (1, 261, 8, 8)  # unbounded scores, no tanh
    assert isinstance(predictor.decoder, AnnealedMean) and predictor.decoder.temperature == 0.5
    assert predictor(torch.zeros(2, 1, 12, 20)).shape == (2, 2, 12, 20)  # decodes at any size


# ------------------------------------------------------------------------------------------- encoding


def test_soft_encoding_is_the_five_nearest_bins_with_gaussian_weights(classification, photo_ab):
    """Against brute force in numpy over all 261 bins, on real photo pixels."""
    index, weights = classification.soft_encode(photo_ab)
    points = photo_ab.permute(0, 2, 3, 1).reshape(-1, 2).double().numpy() * AB_SCALE
    centres = ab_bins(10.0).numpy()
    squared = ((points[:, None, :] - centres[None]) ** 2).sum(-1)
    nearest = np.argsort(squared, axis=1, kind="stable")[:, :5]
    expected_weights = np.exp(-np.take_along_axis(squared, nearest, 1) / (2 * 5.0**2))
    expected_weights /= expected_weights.sum(1, keepdims=True)
    got_index = index.permute(0, 2, 3, 1).reshape(-1, 5).numpy()
    got_weights = weights.permute(0, 2, 3, 1).reshape(-1, 5).double().numpy()
    ties = np.isclose(np.take_along_axis(squared, nearest, 1)[:, 3], np.take_along_axis(squared, nearest, 1)[:, 4])
    assert (got_index[~ties] == nearest[~ties]).all()  # the 5th neighbour may tie with the 6th at equal distance
    np.testing.assert_allclose(got_weights, expected_weights, atol=2e-6)  # float32 squared distances


def test_cross_entropy_term_matches_a_numpy_computation(classification, photo_ab):
    torch.manual_seed(0)
    logits = torch.randn(3, 261, 64, 64)
    prior = torch.rand(261, generator=torch.Generator().manual_seed(1)) ** 4
    classification.set_prior(prior / prior.sum())
    value = classification(Batch(torch.zeros(3, 1, 64, 64), photo_ab, logits))
    index, weights = classification.soft_encode(photo_ab)
    log_p = torch.log_softmax(logits.double(), 1).numpy()
    i, w = index.numpy(), weights.double().numpy()
    picked = np.take_along_axis(log_p, i, axis=1)
    per_pixel = -(w * picked).sum(1) * classification.class_weights.double().numpy()[i[:, 0]]
    assert float(value) == pytest.approx(per_pixel.mean(), rel=1e-5)
    classification.set_prior(torch.full((261,), 1 / 261))


def test_rebalancing_weights_follow_zhang_et_al(classification):
    """w = 1 / ((1 - lambda) smoothed prior + lambda / Q), normalised so that E_smoothed[w] = 1; the smoothing
    is a Gaussian of sigma 5 over the bin centres."""
    prior = np.zeros(261)
    prior[[10, 130, 131, 200]] = [0.7, 0.2, 0.05, 0.05]
    classification.set_prior(torch.tensor(prior))
    centres = ab_bins(10.0).numpy()
    kernel = np.exp(-((centres[:, None] - centres[None]) ** 2).sum(-1) / (2 * 25.0))
    smoothed = kernel @ prior
    smoothed /= smoothed.sum()
    weights = 1 / (0.5 * smoothed + 0.5 / 261)
    weights /= (smoothed * weights).sum()
    np.testing.assert_allclose(classification.class_weights.double().numpy(), weights, rtol=1e-5)
    assert classification.class_weights[10] < 1 < classification.class_weights[0]  # common colours count less
    classification.set_prior(torch.full((261,), 1 / 261))
    assert torch.allclose(ColorClassification(rebalance=1.0).class_weights, torch.ones(261))  # lambda 1: none
    unbalanced = ColorClassification(rebalance=1.0)
    unbalanced.set_prior(torch.tensor(prior))
    assert torch.allclose(unbalanced.class_weights, torch.ones(261), atol=1e-6)


# ------------------------------------------------------------------------------------------- decoding


def test_one_hot_at_a_bin_decodes_to_its_centre_as_temperature_goes_to_zero():
    """Logits 1 at bin q, 0 elsewhere: the annealed mean is within (Q - 1) e^(-1/T) max|c_r - c_q| of c_q (the
    other bins' softmax weights), plus float32 rounding of a 261-term sum of values up to 110."""
    centres = ab_bins(10.0)
    spread = float(torch.cdist(centres, centres).max())
    for q in (0, 97, 260):
        logits = torch.zeros(1, 261, 2, 3)
        logits[:, q] = 1.0
        for temperature in (0.1, 0.05, 0.02):
            ab = AnnealedMean(centres, temperature)(logits) * AB_SCALE
            error = float((ab - centres[q].float()[None, :, None, None]).abs().max())
            bound = 260 * math.exp(-1 / temperature) * spread + 261 * 110 * torch.finfo(torch.float32).eps
            assert error <= bound, (q, temperature, error, bound)
        assert error < 1e-3
    # T = 1 is the mean of the predicted distribution (independently, in numpy)
    logits = torch.randn(2, 261, 4, 5, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(logits.double(), 1).numpy()
    expected = np.einsum("bqhw,qc->bchw", p, centres.numpy()) / AB_SCALE
    np.testing.assert_allclose(AnnealedMean(centres, 1.0)(logits).numpy(), expected, atol=1e-6)


def test_classification_predictor_exports_to_onnx_and_matches_torch(tmp_path):
    from zoo.export import export_onnx

    spec = spec_from_dict("m", {
        "generator": {"arch": "simple-cnn", "width": 4, "depth": 2},
        "stages": [{"name": "s", "loss": {"classification": 1}, "epochs": 1, "image_size": 32}],
    })
    torch.manual_seed(0)
    predictor = zoo.create_predictor(spec).eval()
    torch.nn.init.normal_(predictor.generator.head[0].weight, std=0.5)  # a peaked distribution to decode
    report = export_onnx(spec, predictor, tmp_path / "m.onnx")
    assert report.max_abs_diff < 1e-4 and (tmp_path / "m.onnx").is_file()


# ------------------------------------------------------------------------------------------- confidence


def _confidence_output(photo_ab: torch.Tensor, log_error: float) -> torch.Tensor:
    """A (B, 3, H, W) confidence output: ab logits near the photos' (seeded noise added) and one log e."""
    torch.manual_seed(0)
    logits = torch.atanh(photo_ab.clamp(-0.95, 0.95)) + 0.3 * torch.randn_like(photo_ab)
    return torch.cat([logits, torch.full_like(photo_ab[:, :1], log_error)], dim=1).requires_grad_()


def test_confidence_error_channel_is_least_at_the_mean_error_distance(photo_ab):
    """The error term r / e + log e, r = ||ab - ab_pred||, is stationary at e = mean r (numpy) and larger on
    either side; and it sends ab no gradient: ab's is that of L1 alone (the error is learnt, ab is not pulled)."""
    objective = Confidence(error_weight=1.0)
    probe = _confidence_output(photo_ab, 0.0)
    ab_pred = np.tanh(probe[:, :2].detach().double().numpy())
    mean_distance = np.sqrt(((ab_pred - photo_ab.double().numpy()) ** 2).sum(axis=1)).mean()
    losses = {}
    for shift in (-0.1, 0.0, 0.1):
        output = _confidence_output(photo_ab, math.log(mean_distance) + shift)
        loss = objective(Batch(photo_ab[:, :1], photo_ab, output), None)
        loss.backward()
        losses[shift] = loss.item()
        if shift == 0.0:
            assert abs(output.grad[:, 2].sum().item()) < 1e-6  # d/dlog e of the mean: 1 - mean(r) / e = 0
            l1_only = output.detach().requires_grad_()
            F.l1_loss(torch.tanh(l1_only[:, :2]), photo_ab).backward()
            assert torch.allclose(output.grad[:, :2], l1_only.grad[:, :2], rtol=0, atol=1e-9)
    assert losses[-0.1] > losses[0.0] < losses[0.1]


@pytest.mark.parametrize("shrink", [0.0, 1.0, 4.0])
def test_confidence_decoder_shrinks_where_the_error_is_large_against_the_colour(photo_ab, shrink):
    """Decoded ab = tanh(ab logits) * c^2 / (c^2 + k e^2) (numpy); k = 0 keeps the prediction as it is."""
    torch.manual_seed(1)
    output = _confidence_output(photo_ab, 0.0).detach()
    output[:, 2] = torch.randn_like(output[:, 2]) - 2.0  # e from about 0.02 to 0.7 normalised units
    decoded = Confidence(shrink=shrink).decoder()(output).double().numpy()
    ab = np.tanh(output[:, :2].double().numpy())
    c2 = (ab**2).sum(axis=1, keepdims=True)
    e2 = np.exp(2 * output[:, 2:].double().numpy())
    assert np.allclose(decoded, ab * c2 / (c2 + shrink * e2), rtol=1e-5, atol=1e-7)


def test_a_model_with_the_confidence_objective_outputs_ab_and_its_error_and_exports_to_onnx(tmp_path):
    from zoo.export import export_onnx

    assert (zoo.get_spec("unet-effnet-lite2-confidence").output_objective,
            zoo.get_spec("unet-effnet-lite2-confidence").output_channels) == ("confidence", 3)
    spec = spec_from_dict("m", {
        "generator": {"arch": "simple-cnn", "width": 4, "depth": 2},
        "objectives": {"confidence": {"shrink": 2.0}},
        "stages": [{"name": "s", "loss": {"confidence": 1}, "epochs": 1, "image_size": 32}],
    })
    torch.manual_seed(0)
    predictor = zoo.create_predictor(spec).eval()
    assert predictor.generator(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)
    report = export_onnx(spec, predictor, tmp_path / "m.onnx")  # the shrinkage is in the graph
    assert report.max_abs_diff < 1e-4 and (tmp_path / "m.onnx").is_file()


# ------------------------------------------------------------------------------------------- the prior, trained


def test_training_computes_the_prior_from_the_training_photos_and_stores_it(tmp_path, photos_dir):
    data = tmp_path / "photos"
    data.mkdir()
    for name in PHOTOS + ("darknet--eagle.jpg", "darknet--giraffe.jpg"):
        (data / name).write_bytes((photos_dir / name).read_bytes())
    registry = tmp_path / "registry.toml"
    registry.write_text(
        '[models.c]\ngenerator = { arch = "simple-cnn", width = 8, depth = 2 }\n'
        "[[models.c.stages]]\nname = \"s\"\nloss = { classification = 1, l1 = 1 }\nepochs = 1\nimage_size = 32\n"
        "batch_size = 2\n"
    )
    import os

    from conftest import reset_discovery

    os.environ["ZOO_REGISTRY"] = str(registry)
    reset_discovery()
    try:
        summary = train("c", TrainOptions(data=str(data), out=tmp_path / "run", max_steps=1, workers=0,
                                          progress=False, val_fraction=0.2), echo=lambda s: None)
    finally:
        del os.environ["ZOO_REGISTRY"]
        reset_discovery()
    stored = load_file(Path(summary.generator))["objective.classification.prior"].double().numpy()
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    rgb = torch.stack([ColorizationDataset(split["train"], 32, train=False)[i] for i in range(len(split["train"]))])
    lab = rgb2lab(rgb.permute(0, 2, 3, 1).numpy() / 255.0).reshape(-1, 3)
    centres = ab_bins(10.0).numpy()
    nearest = (((lab[:, None, 1:] - centres[None]) ** 2).sum(-1)).argmin(1)
    expected = np.bincount(nearest, minlength=261) / len(nearest)
    np.testing.assert_allclose(stored, expected, atol=1.5 / len(nearest))  # a pixel on a bin boundary may tie
    assert math.isclose(stored.sum(), 1.0, rel_tol=1e-5)


# ------------------------------------------------------------------------------------------- ciede2000


def test_ciede2000_term_is_the_mean_skimage_difference_and_descends_towards_the_truth(photo_lab):
    """The term is scikit-image's mean CIEDE2000 between (L, predicted ab) and (L, true ab) of real photos (to the
    eps it adds: 3 sqrt(1e-4) a pixel at most); at the truth it is 0.03 at most with finite gradients (gray pixels
    and equal colours), and gradient steps from a wrong prediction (another photo's colours) halve it at least."""
    L, ab = photo_lab
    torch.manual_seed(2)
    wrong = (ab.roll(1, dims=0) * 0.8 + 0.05 * torch.randn_like(ab)).clamp(-1, 1)  # another photo's colours
    term = CIEDE2000Loss()

    def skimage_mean(pred_ab):
        as_hwc = lambda ab_: denormalize_lab(L, ab_).double().permute(0, 2, 3, 1).numpy()  # noqa: E731
        return deltaE_ciede2000(as_hwc(ab), as_hwc(pred_ab)).mean()

    assert float(term(Batch(L, ab, wrong))) == pytest.approx(skimage_mean(wrong), abs=0.03)
    exact = ab.clone().requires_grad_()
    value = term(Batch(L, ab, exact))
    value.backward()
    assert float(value) <= 0.03 and torch.isfinite(exact.grad).all()
    pred = wrong.clone().requires_grad_()
    optimizer = torch.optim.Adam([pred], lr=0.01)
    before = float(term(Batch(L, ab, pred)))
    for _ in range(20):
        optimizer.zero_grad()
        term(Batch(L, ab, pred)).backward()
        optimizer.step()
    assert skimage_mean(pred.detach()) < 0.5 * before


# ------------------------------------------------------------------------------------------- perceptual


def test_perceptual_term_is_zero_for_the_truth_and_pulls_towards_it(photo_ab):
    term = Perceptual(levels=(1, 2))
    L = torch.zeros(3, 1, 64, 64)
    assert float(term(Batch(L, photo_ab, photo_ab))) == 0.0
    ab = torch.zeros_like(photo_ab, requires_grad=True)
    value = term(Batch(L, photo_ab, ab))
    value.backward()
    assert value > 0 and ab.grad.abs().sum() > 0
    assert list(term.state_dict()) == []  # the frozen network is not part of any checkpoint
    with pytest.raises(ValueError, match="levels"):
        Perceptual(levels=(7,))


def test_perceptual_features_are_the_imagenet_networks(photo_ab):
    """The features are those of timm's tf_efficientnet_lite0 with the shipped weights, on RGB from Lab."""
    import timm

    from zoo.pretrained import efficientnet_lite_imagenet

    term = Perceptual(levels=(3,))
    L = torch.zeros(3, 1, 64, 64)
    rgb = lab_normalized_to_rgb(L, photo_ab)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    reference.load_state_dict(efficientnet_lite_imagenet(0))
    with torch.no_grad():
        expected = reference.eval().forward_intermediates((rgb - 0.5) / 0.5, indices=[3], intermediates_only=True)[0]
        assert torch.allclose(term.features(rgb)[0], expected)


# ------------------------------------------------------------------------------------------- adversarial


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge"])
def test_gan_losses_match_their_formulas(mode):
    logits = torch.tensor([[-2.0, 0.0], [0.5, 3.0]])
    x = logits.double()
    expected = {
        "vanilla": (F.softplus(-x).mean(), F.softplus(x).mean(), F.softplus(-x).mean()),
        "lsgan": (((x - 1) ** 2).mean(), (x**2).mean(), ((x - 1) ** 2).mean()),
        "hinge": (F.relu(1 - x).mean(), F.relu(1 + x).mean(), -x.mean()),
    }[mode]
    got = (gan_loss(logits, True, mode), gan_loss(logits, False, mode), gan_loss(logits, True, mode, for_discriminator=False))
    for g, e in zip(got, expected, strict=True):
        assert float(g) == pytest.approx(float(e), rel=1e-6)


def test_gan_warm_up_trains_the_discriminator_alone_first(photo_ab):
    torch.manual_seed(0)
    discriminator = DISCRIMINATORS.create("patchgan", ndf=8, n_layers=1, spectral_norm=True)
    critic = Critic(discriminator, torch.optim.Adam(discriminator.parameters(), 1e-3), torch.amp.GradScaler("cpu", enabled=False))
    gan = ConditionalGAN(mode="hinge", warmup_steps=2)
    L = torch.zeros(3, 1, 64, 64)
    values = []
    for _ in range(4):
        batch = Batch(L, photo_ab, torch.zeros_like(photo_ab, requires_grad=True))
        logs = gan.update(batch, critic)
        values.append(float(gan(batch, critic)))
        assert set(logs) == {"d_real", "d_fake"}
    assert values[:2] == [0.0, 0.0] and all(v != 0.0 for v in values[2:])
    assert int(gan.steps) == 4 and "steps" in gan.state_dict()  # the count resumes with the run


def test_spectral_norm_keeps_every_convolution_at_unit_spectral_norm():
    torch.manual_seed(0)
    model = DISCRIMINATORS.create("patchgan", ndf=8, n_layers=2, spectral_norm=True, norm="none")
    x = torch.randn(2, 3, 64, 64)
    for _ in range(30):  # one power iteration a forward pass in training mode
        model(x)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.out_channels, -1), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=0.02)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in DISCRIMINATORS.create("patchgan", norm="instance").modules()) == 3
