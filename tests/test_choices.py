"""A model's alternative colourings and hints that choose among them: the relaxed best-of-k CIEDE2000 against
scikit-image, a choices model grown from a plain one, the choice against a numpy posterior, and the shipped
default's alternatives on a held-out photo."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from skimage.color import deltaE_ciede2000

from zoo.checkpoint import CheckpointError, load_generator
from zoo.color import AB_SCALE, L_SCALE
from zoo.colorizer import Colorizer, shipped_choices
from zoo.data import resolve_source
from zoo.guided import GuidedPhoto, choose
from zoo.hints import Hint, hint_cells
from zoo.images import read_source
from zoo.objectives.base import Batch
from zoo.objectives.choices import START_SCALES, Choices, Each
from zoo.spec import SpecError, get_spec, weights_path

DEFAULT = "unet-effnet-lite0-ciede"


def test_the_choices_loss_is_the_relaxed_best_of_k_ciede2000_that_scikit_image_computes():
    generator = torch.Generator().manual_seed(0)
    batch, k, side = 3, 3, 6
    output = torch.randn(batch, 2 * k, side, side, generator=generator)
    L = torch.rand(batch, 1, side, side, generator=generator) * 1.6 - 0.8
    ab = torch.randn(batch, 2, side, side, generator=generator) * 0.3
    objective = Choices(k=k, relaxed=0.1)
    value = float(objective(Batch(L, ab, output)))

    lightness = (L[:, 0].double().numpy() + 1) * L_SCALE
    truth = np.stack([lightness, *(ab.double().numpy().transpose(1, 0, 2, 3) * AB_SCALE)], -1)
    each = np.empty((batch, k))
    for i in range(k):
        pred = np.tanh(output[:, 2 * i:2 * i + 2].double().numpy()) * AB_SCALE
        each[:, i] = deltaE_ciede2000(truth, np.stack([lightness, pred[:, 0], pred[:, 1]], -1)).mean(axis=(1, 2))
    weights = np.full((batch, k), 0.1 / (k - 1))
    weights[np.arange(batch), each.argmin(1)] = 0.9
    # the objective's eps (1e-4 squared Lab units under each square root) moves differences of these sizes by < 1e-4
    assert value == pytest.approx(float((weights * each).sum(1).mean()), abs=1e-3)
    assert Choices.output_channels(k=k) == 2 * k
    with pytest.raises(ValueError, match="choices k must be"):
        Choices(k=1)


def test_a_choices_model_starts_as_the_plain_model_at_each_strength(tmp_path):
    """A choices model started (`zoo train unet-effnet-lite0-choices --init`) from the shipped default: alternative
    i is tanh(START_SCALES[i] x the default's head before its tanh), so the first is the default's own output; a
    checkpoint of another architecture still cannot start it."""
    from zoo.runtime import setup_runtime
    from zoo.train import Trainer, TrainOptions, resolve_spec

    spec = resolve_spec("unet-effnet-lite0-choices", TrainOptions(), "cpu", echo=lambda s: None)
    trainer = Trainer(spec, TrainOptions(), tmp_path / "run", setup_runtime("cpu"))
    trainer.start_from(weights_path(DEFAULT))
    _, plain = load_generator(weights_path(DEFAULT))
    grown = trainer.model.generator.eval()
    L = torch.rand(1, 1, 64, 96, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        own = plain.generator(L).double()
        each = Each()(grown(L)).double()
    assert each.shape == (1, 2 * 4, 64, 96)
    for i in range(4):  # float32 through tanh and atanh of |ab| < 0.6: about 1e-7
        expected = torch.tanh(START_SCALES[i] * torch.atanh(own))
        torch.testing.assert_close(each[:, 2 * i:2 * i + 2], expected, atol=1e-5, rtol=0)
    with pytest.raises(CheckpointError, match="holds a guided-unet generator"):
        trainer.start_from(weights_path("unet-effnet-lite0-guided"))


def test_hints_choose_the_colouring_they_agree_with():
    generator = torch.Generator().manual_seed(2)
    colourings = torch.randn(3, 2, 20, 30, generator=generator) * 0.2
    size = (60, 40)  # the photo, twice the grid
    hints = [Hint(10, 8, (12.0, -30.0), 6), Hint(45, 30, (-5.0, 20.0), 4, spread="alike")]
    got = choose(colourings, hints, size, 5.0)
    energy = np.zeros(3)
    for hint in hints:
        rows, columns = hint_cells(hint, size, (20, 30))
        at = colourings[:, :, rows, columns].double().numpy().mean(axis=(2, 3)) * AB_SCALE
        energy += ((at - np.array(hint.ab)) ** 2).sum(1)
    weights = np.exp(-(energy - energy.min()) / (2 * 5.0 ** 2))
    weights /= weights.sum()
    np.testing.assert_allclose(got.numpy(), np.einsum("m,mchw->chw", weights, colourings.double().numpy()), atol=1e-6)
    assert torch.equal(choose(colourings, [], size, 5.0), colourings[0])
    assert torch.equal(choose(colourings, [Hint(10, 8, (12.0, -30.0), 6, spread="here")], size, 5.0), colourings[0])
    # a hint of the third colouring's colour, the others 20 a*b* units away there: the third, all but exactly
    rows, columns = hint_cells(Hint(30, 20, (0.0, 0.0), 6), size, (20, 30))
    colourings[1, :, rows, columns] = colourings[2, :, rows, columns] + 20 / AB_SCALE
    colourings[0, :, rows, columns] = colourings[2, :, rows, columns] - 20 / AB_SCALE
    colour = tuple((colourings[2, :, rows, columns].double().mean((1, 2)) * AB_SCALE).tolist())
    chosen = choose(colourings, [Hint(30, 20, colour, 6)], size, 5.0)
    torch.testing.assert_close(chosen, colourings[2], atol=1e-3, rtol=0)  # the others' weight: exp(-16) each


def test_only_a_models_shipped_weights_have_its_alternatives_and_a_registry_must_name_a_choices_model(tmp_path):
    assert get_spec(DEFAULT).choices == "unet-effnet-lite0-choices"
    assert shipped_choices(DEFAULT, weights_path(DEFAULT)) is not None
    copy = tmp_path / "mine.safetensors"
    copy.write_bytes(weights_path(DEFAULT).read_bytes())
    assert shipped_choices(DEFAULT, copy) is None  # the alternatives were trained from the shipped weights
    assert get_spec("unet-effnet-lite0-guided").choices is None  # extends the default, never takes its choices
    from zoo.spec import read_registry_file

    registry = tmp_path / "registry.toml"
    registry.write_text('[models.a]\ngenerator = { arch = "simple-cnn" }\nchoices = "b"\n'
                        'stages = [{ name = "s", loss = { mse = 1 }, epochs = 1 }]\n'
                        '[models.b]\ngenerator = { arch = "simple-cnn" }\n'
                        'stages = [{ name = "s", loss = { mse = 1 }, epochs = 1 }]\n')
    with pytest.raises(SpecError, match=r"\[models.a\]: choices 'b' is not a model of this file with the choices"):
        read_registry_file(registry)


def test_the_defaults_hint_chooses_an_alternative_that_recolours_beyond_its_reach():
    """The shipped default on a held-out photo: a hint with the colour that one of its alternatives puts at the
    photo's centre (the one furthest there from the default's own) changes the colours half the short side away
    or more as the colouring it chooses does, by more than an a*b* unit on average, and the hint's spread adds
    less than a fifth of that there; marked ``here`` it chooses nothing and moves them a fifth as much at most.
    The hint is exact."""
    colorizer = Colorizer.from_checkpoint(model=DEFAULT, device="cpu")
    photo = GuidedPhoto(colorizer, read_source(resolve_source("heldout")[0]))
    colourings = photo.colourings()
    assert colourings.shape[0] == 5
    width, height = photo.size
    rows, columns = hint_cells(Hint(width // 2, height // 2, (0.0, 0.0), 6), photo.size, tuple(colourings.shape[-2:]))
    at = colourings[:, :, rows, columns].double().mean((2, 3)) * AB_SCALE
    j = 1 + int((at[1:] - at[0]).norm(dim=1).argmax())
    hint = Hint(width // 2, height // 2, tuple(at[j].tolist()), 6)
    grid_rows, grid_columns = colourings.shape[-2:]
    y, x = torch.meshgrid(torch.arange(grid_rows) - grid_rows // 2, torch.arange(grid_columns) - grid_columns // 2,
                          indexing="ij")
    far = x.square() + y.square() >= (min(grid_rows, grid_columns) / 2) ** 2
    own = colourings[0]
    chosen = choose(colourings, [hint], photo.size, photo.settings.choice)

    def moved(ab: torch.Tensor, start: torch.Tensor) -> float:  # mean a*b* distance far from the hint
        return float(((ab - start) * AB_SCALE)[:, far].norm(dim=0).mean())

    assert moved(chosen, own) > 1.0
    assert moved(photo.ab([hint]), chosen) < 0.2 * moved(chosen, own)
    assert moved(photo.ab([replace(hint, spread="here")]), own) < 0.2 * moved(chosen, own)
    spread = photo.ab([hint])
    cells = hint_cells(hint, photo.size, tuple(spread.shape[-2:]))
    np.testing.assert_allclose(spread[:, cells[0], cells[1]].double().mean((1, 2)) * AB_SCALE, hint.ab, atol=1e-3)
