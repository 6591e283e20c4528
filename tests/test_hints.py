"""Colour hints: parsing against scikit-image's Lab, simulation against numpy means, the edge-aware spreading
against a dense KKT solve and the screened Poisson Green's function, and hints used as a person uses them
(zoo.colorize, `zoo colorize --hint`, the hint curve of `zoo score`) on real photos."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from scipy import stats
from scipy.special import k0
from skimage.color import rgb2lab

from zoo.cli.inference import colorize as colorize_command
from zoo.color import AB_SCALE
from zoo.colorizer import Colorizer
from zoo.data import resolve_source
from zoo.factory import inferred_ab
from zoo.guided import GuidedPhoto, spread_hints
from zoo.hints import (
    Hint,
    HintError,
    HintSampling,
    colour_ab,
    hint_cells,
    hint_channels,
    parse_hint,
    random_hint_channels,
    read_hints,
    simulated_hints,
    worst_hint,
    write_hints,
)
from zoo.images import read_source
from zoo.models.guided_unet import guided_unet
from zoo.propagate import Propagation, PropagationSettings, system_matrix

FAST = "unet-effnet-lite0-ciede"  # the fastest shipped model (the default)
LEARNED = "unet-effnet-lite0-guided"  # the shipped model whose network takes hints


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer.from_checkpoint(model=FAST, device="cpu")


def photo_lab(path: Path) -> np.ndarray:
    return rgb2lab(np.asarray(Image.open(path).convert("RGB")))


# ---------------------------------------------------------------------------------------------------- hints


@pytest.mark.parametrize("text", ["#c0392b", "#4A90D9", "00ff00", "#fff", "#808080"])
def test_a_colour_hint_takes_the_colours_a_star_b_star_as_scikit_image_computes_them(text):
    digits = text.lstrip("#")
    digits = "".join(d * 2 for d in digits) if len(digits) == 3 else digits
    rgb = np.array([[[int(digits[i:i + 2], 16) for i in (0, 2, 4)]]], dtype=np.uint8)
    expected = rgb2lab(rgb)[0, 0, 1:]
    assert colour_ab(text) == pytest.approx(tuple(expected), abs=1e-6)


def test_hints_parse_from_the_command_line_and_round_trip_through_a_file(tmp_path):
    hint = parse_hint("120, 80,#c0392b,7")
    assert (hint.x, hint.y, hint.size) == (120, 80, 7) and hint.ab == pytest.approx(colour_ab("#c0392b"))
    assert hint.box == (117, 77, 124, 84) and hint.spread == "nearby"
    assert parse_hint("120,80,#c0392b,7,alike") == Hint(120, 80, hint.ab, 7, spread="alike")
    assert parse_hint("120,80,#c0392b,here") == Hint(120, 80, hint.ab, 1, spread="here")
    assert parse_hint("120,80,#c0392b,9,Nearby") == Hint(120, 80, hint.ab, 9)
    path = tmp_path / "h.json"
    path.write_text(json.dumps([{"x": 3.7, "y": 4, "color": "#00ff00"},
                                {"x": 1, "y": 2, "ab": [10, -20.5], "size": 3, "frame": 12, "spread": "here"},
                                {"x": 5, "y": 6, "color": "#00ff00", "alike": True}]))  # alike's first spelling
    first, second, third = read_hints(path)
    assert (first.x, first.y, first.size, first.frame, first.spread) == (3, 4, 1, None, "nearby")  # inside pixel 3
    assert (second.ab, second.size, second.frame, second.spread) == ((10.0, -20.5), 3, 12, "here")
    assert third.spread == "alike"
    write_hints(tmp_path / "again.json", [first, second, third])
    assert read_hints(tmp_path / "again.json") == [Hint(3, 4, pytest.approx(first.ab, abs=1e-4)), second,
                                                   Hint(5, 6, pytest.approx(third.ab, abs=1e-4), spread="alike")]


@pytest.mark.parametrize(("content", "says"), [
    ("[{\"x\": 1", "not JSON (Expecting"),
    ("{\"x\": 1}", "expected a JSON list of hints"),
    ("[[1, 2]]", "hint 1: expected an object"),
    ("[{\"x\": 1, \"y\": 2}]", "hint 1: give its colour as either"),
    ("[{\"x\": 1, \"y\": 2, \"color\": \"#12\"}]", "hint 1: unreadable colour '#12'"),
    ("[{\"x\": 1, \"y\": 2, \"color\": 5}]", "hint 1: unreadable colour 5"),
    ("[{\"x\": 1, \"color\": \"#123456\"}]", "hint 1: no 'y'"),
    ("[{\"x\": \"a\", \"y\": 2, \"color\": \"#123456\"}]", "hint 1: x must be a number"),
    ("[{\"x\": 1, \"y\": 2, \"ab\": [200, 0]}]", "outside Lab's range"),
    ("[{\"x\": 1, \"y\": 2, \"ab\": [1]}]", "\"ab\" must be a list [a, b]"),
    ("[{\"x\": 1, \"y\": 2, \"color\": \"#123456\", \"size\": 2.5}]", "size must be a whole number"),
    ("[{\"x\": 1, \"y\": 2, \"color\": \"#123456\", \"colour\": 1}]", "unknown key 'colour'"),
    ("[{\"x\": 1, \"y\": 2, \"color\": \"#123456\", \"alike\": \"yes\"}]", "\"alike\" must be true or false"),
    ("[{\"x\": 1, \"y\": 2, \"color\": \"#123456\", \"spread\": \"far\"}]",
     "\"spread\" must be one of nearby, here, alike, got 'far'"),
    ("[{\"x\": 1, \"y\": 2, \"color\": \"#123456\", \"spread\": \"here\", \"alike\": true}]", "disagree"),
    ("[{\"x\": 1, \"y\": 2, \"color\": \"#123456\"}, {\"x\": 1, \"y\": 2, \"color\": \"#123456\", \"frame\": -1}]",
     "hint 2: frame must be 0 or more"),
])
def test_every_bad_hint_file_is_one_line_naming_the_file_and_the_hint(tmp_path, content, says):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(HintError) as caught:
        read_hints(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and says in message and "\n" not in message


def test_hint_cells_are_every_grid_cell_the_hints_pixels_touch():
    """Against a brute-force overlap test of each cell's pixel rectangle with the hint's square."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        width, height = int(rng.integers(5, 300)), int(rng.integers(5, 300))
        rows, columns = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        hint = Hint(int(rng.integers(0, width)), int(rng.integers(0, height)), (0.0, 0.0), int(rng.integers(1, 12)))
        left, top, right, bottom = hint.box
        left, top, right, bottom = max(0, left), max(0, top), min(width, right), min(height, bottom)
        touched = np.zeros((rows, columns), bool)
        for r in range(rows):
            for c in range(columns):  # cell (r, c) spans [c w / C, (c + 1) w / C) x [r h / R, (r + 1) h / R)
                touched[r, c] = (c * width / columns < right and (c + 1) * width / columns > left
                                 and r * height / rows < bottom and (r + 1) * height / rows > top)
        row_slice, column_slice = hint_cells(hint, (width, height), (rows, columns))
        got = np.zeros_like(touched)
        got[row_slice, column_slice] = True
        assert (got == touched).all(), (width, height, rows, columns, hint)


def test_simulated_hints_are_the_truths_patch_means_and_grow_by_adding():
    ab = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 40, 56)))
    hints = simulated_hints(ab, 20, 6, seed=7)
    assert simulated_hints(ab, 5, 6, seed=7) == hints[:5] and simulated_hints(ab, 20, 6, seed=8) != hints
    for hint in hints:
        left, top, right, bottom = hint.box
        assert 0 <= left and right <= 56 and 0 <= top and bottom <= 40 and hint.size == 6
        expected = ab[:, top:bottom, left:right].numpy().mean(axis=(1, 2)) * AB_SCALE
        assert hint.ab == pytest.approx(tuple(expected), abs=1e-9)


def test_simulated_hint_places_follow_zhang_et_als_centred_normal():
    # test_sweep.py of Zhang et al.: corner = floor(clip(N(span / 2, span / 4), 0, span - 1)) per axis, span the
    # number of possible corners. Against scipy's normal: P(clipped at either end) = 1 - Phi(2) each, and the
    # censored normal's mean and variance (floor adds -1/2 and +1/12). 20,000 draws, tolerances of 5 sd.
    height, width, patch, draws = 806, 406, 6, 20_000
    ab = torch.zeros(2, height, width, dtype=torch.float64)
    hints = simulated_hints(ab, draws, patch, seed=11)
    for corner, span in (([h.y - patch // 2 for h in hints], height - patch + 1),
                         ([h.x - patch // 2 for h in hints], width - patch + 1)):
        corner = np.asarray(corner, dtype=np.float64)
        sigma = span / 4
        tail = stats.norm.sf(2)
        for end in (0, span - 1):
            share = float(np.mean(corner == end))
            assert abs(share - tail) < 5 * np.sqrt(tail * (1 - tail) / draws), (span, end, share)
        inside = stats.norm.cdf(2) - stats.norm.cdf(-2)
        variance = sigma**2 * (inside - 4 * stats.norm.pdf(2) + 8 * tail) + 1 / 12
        mean = span / 2 - 0.5  # clipping at +-2 sd leaves the centre; flooring takes half a pixel
        assert abs(corner.mean() - mean) < 5 * np.sqrt(variance / draws) + 0.5 / draws, (span, corner.mean(), mean)
        assert corner.var() == pytest.approx(variance, rel=5 * np.sqrt(2 / draws) + 1 / span)


def test_the_worst_hint_is_on_the_square_numpy_finds_most_wrong():
    rng = np.random.default_rng(3)
    truth = rng.uniform(-0.5, 0.5, (2, 31, 47))
    now = truth + rng.normal(0, 0.05, truth.shape)
    now[:, 20:26, 9:15] += 0.3  # one clearly wrong square, among smaller errors everywhere
    for patch, current in ((6, now), (4, now), (6, rng.uniform(-0.5, 0.5, truth.shape)), (1, now)):
        error = ((current - truth) ** 2).sum(0)
        means = np.lib.stride_tricks.sliding_window_view(error, (patch, patch)).mean(axis=(2, 3))
        top, left = np.unravel_index(np.argmax(means), means.shape)
        hint = worst_hint(torch.from_numpy(current), torch.from_numpy(truth), patch)
        assert hint.box == (left, top, left + patch, top + patch) and hint.size == patch, (patch, hint)
        expected = truth[:, top:top + patch, left:left + patch].mean(axis=(1, 2)) * AB_SCALE
        assert hint.ab == pytest.approx(tuple(expected), abs=1e-9)
    assert worst_hint(torch.from_numpy(now), torch.from_numpy(truth), 6).box == (9, 20, 15, 26)


def test_training_hints_follow_zhang_et_als_simulation():
    rng = torch.Generator().manual_seed(0)
    ab = torch.rand(4000, 2, 12, 12, generator=rng) - 0.5
    channels = random_hint_channels(ab, torch.Generator().manual_seed(1))
    assert torch.equal(channels, random_hint_channels(ab, torch.Generator().manual_seed(1)))
    none = int((channels[:, 2].flatten(1).amax(1) == 0).sum())
    # geometric with stopping chance 1/8: P(no hint) = 1/8, binomial sd sqrt(4000 / 8 * 7 / 8) = 20.9: +-5 sd
    assert abs(none - 500) < 105
    assert set(channels[:, 2].unique().tolist()) == {0.0, 1.0} and channels[:, :2][channels[:, 2:].expand(-1, 2, -1, -1) == 0].abs().max() == 0
    # every hinted pixel's colour is the truth's mean over some square of side 1 .. 5 that holds it
    largest = HintSampling().largest
    for index in range(8):
        mask = channels[index, 2]
        for row, column in mask.nonzero().tolist():
            value = channels[index, :2, row, column]
            found = False
            for side in range(1, largest + 1):
                for top in range(max(0, row - side + 1), min(row, 12 - side) + 1):
                    for left in range(max(0, column - side + 1), min(column, 12 - side) + 1):
                        mean = ab[index, :, top:top + side, left:left + side].mean(dim=(1, 2))
                        found |= bool(torch.allclose(mean, value, atol=1e-6))
            assert found, (index, row, column)


def test_hint_channels_place_each_hint_on_the_grid():
    hints = [Hint(10, 5, (55.0, -22.0), 3), Hint(99, 49, (-11.0, 33.0))]
    channels = hint_channels(hints, (100, 50), (25, 50))
    rows, columns = hint_cells(hints[0], (100, 50), (25, 50))
    assert channels[2].sum() == (rows.stop - rows.start) * (columns.stop - columns.start) + 1
    assert channels[:2, rows, columns].flatten(1).unique(dim=1).squeeze(1).tolist() == pytest.approx([0.5, -0.2])
    assert channels[:, 24, 49].tolist() == pytest.approx([-0.1, 0.3, 1.0])


# ---------------------------------------------------------------------------------------------------- spreading


def test_the_spread_is_the_constrained_minimum_a_dense_kkt_solve_finds():
    """min r^T B r subject to each hint's mean over its cells equalling its difference: the KKT system."""
    rng = np.random.default_rng(5)
    lightness = rng.uniform(0, 100, (12, 15))
    settings = PropagationSettings(reach=0.3, edge=20.0)
    spread = Propagation(lightness, settings)
    targets = [((slice(2, 4), slice(3, 6)), np.array([0.3, -0.1])), ((slice(9, 10), slice(12, 13)), np.array([-0.2, 0.4]))]
    got = spread.residual(targets)
    B = system_matrix(lightness, settings).toarray()
    U = np.zeros((B.shape[0], len(targets)))
    for j, ((rows, columns), _) in enumerate(targets):
        u = np.zeros(lightness.shape)
        u[rows, columns] = 1 / u[rows, columns].size
        U[:, j] = u.ravel()
    kkt = np.block([[2 * B, U], [U.T, np.zeros((2, 2))]])
    for channel in range(2):
        rhs = np.concatenate([np.zeros(B.shape[0]), [d[channel] for _, d in targets]])
        expected = np.linalg.solve(kkt, rhs)[:B.shape[0]].reshape(lightness.shape)
        np.testing.assert_allclose(got[channel], expected, atol=1e-6)
    # the Laplacian part is the sum of w_pq (r_p - r_q)^2 over neighbours, with w from the lightness edges
    r = rng.normal(size=lightness.shape)
    w_across = np.exp(-np.diff(lightness, axis=1) ** 2 / (2 * 20.0**2))
    w_down = np.exp(-np.diff(lightness, axis=0) ** 2 / (2 * 20.0**2))
    energy = (w_across * np.diff(r, axis=1) ** 2).sum() + (w_down * np.diff(r, axis=0) ** 2).sum()
    pull = 1 / (0.3 * 12) ** 2
    assert r.ravel() @ B @ r.ravel() == pytest.approx(energy + pull * (r**2).sum(), rel=1e-12)


def test_a_hint_reaches_as_the_screened_poisson_greens_function_k0():
    side, length = 241, 24.0  # screening length 24 cells: lambda = 1 / 24^2
    spread = Propagation(np.full((side, side), 50.0), PropagationSettings(reach=length / side))
    centre = side // 2
    field = spread.residual([((slice(centre, centre + 1), slice(centre, centre + 1)), np.array([1.0, 0.0]))])[0]
    distances = np.arange(8, 61, 4)
    ratio = field[centre, centre + distances] / field[centre, centre + 8]
    expected = k0(distances / length) / k0(8 / length)
    np.testing.assert_allclose(ratio, expected, rtol=0.02)  # the lattice's Green's function, far from the boundary


def test_hints_of_two_reaches_are_exact_and_each_is_its_own_greens_function_as_dense_inverses_compute():
    """r = sum_j g_j w_j, g_j = B(reach_j)^-1 u_j, with w solving u_i . r = d_i: against numpy's dense inverses."""
    rng = np.random.default_rng(6)
    lightness = rng.uniform(0, 100, (12, 15))
    settings = PropagationSettings(reach=0.6, here=0.1, edge=20.0)
    targets = [((slice(2, 4), slice(3, 6)), np.array([0.3, -0.1])), ((slice(9, 10), slice(12, 13)), np.array([-0.2, 0.4])),
               ((slice(6, 7), slice(1, 3)), np.array([0.1, 0.1]))]
    reaches = [0.6, 0.1, 0.6]
    got = Propagation(lightness, settings).residual(targets, reaches)
    G = np.zeros((lightness.size, len(targets)))
    for j, (((rows, columns), _), reach) in enumerate(zip(targets, reaches)):
        u = np.zeros(lightness.shape)
        u[rows, columns] = 1 / u[rows, columns].size
        G[:, j] = np.linalg.inv(system_matrix(lightness, replace(settings, reach=reach)).toarray()) @ u.ravel()
    means = np.array([[G[:, j].reshape(lightness.shape)[rows, columns].mean() for j in range(3)]
                      for (rows, columns), _ in targets])
    expected = (G @ np.linalg.solve(means, np.stack([d for _, d in targets]))).T.reshape(2, *lightness.shape)
    np.testing.assert_allclose(got, expected, atol=1e-5)  # the solver's 1e-6 relative regularisation
    for (rows, columns), d in targets:
        np.testing.assert_allclose(got[:, rows, columns].mean(axis=(1, 2)), d, atol=1e-5)


@pytest.mark.parametrize("reaches", [(0.6, 0.6), (0.6, 0.1), (0.1, 0.6)])
def test_two_hints_on_the_same_cells_average_whatever_their_reaches(reaches):
    """A person adds a hint where one already is, of another colour and spread: the two are averaged there, and
    the field stays within the hints' differences (it once came out 1e5 times larger when the reaches differed)."""
    rng = np.random.default_rng(7)
    lightness = rng.uniform(0, 100, (12, 15))
    cells = (slice(4, 6), slice(5, 8))
    targets = [(cells, np.array([0.3, -0.1])), (cells, np.array([-0.1, 0.2])),
               ((slice(9, 10), slice(12, 13)), np.array([0.2, 0.2]))]
    got = Propagation(lightness, PropagationSettings(reach=0.6, here=0.1, edge=20.0)).residual(
        targets, [*reaches, 0.6])
    np.testing.assert_allclose(got[:, 4:6, 5:8].mean(axis=(1, 2)), [0.1, 0.05], atol=1e-6)
    np.testing.assert_allclose(got[:, 9, 12], [0.2, 0.2], atol=1e-6)
    assert np.abs(got).max() <= 0.3


def test_a_here_hint_keeps_its_colour_close_as_the_shorter_greens_function_k0():
    side = 241
    settings = PropagationSettings(reach=0.1, here=0.05)  # screening lengths 24 and 12 cells, far from the border
    flat = np.full((side, side), 50.0)
    ab = torch.zeros(2, side, side, dtype=torch.float64)
    centre = side // 2
    fields = {spread: spread_hints(ab, [Hint(centre, centre, (40.0, 0.0), 1, spread=spread)], (side, side),
                                   lambda: Propagation(flat, settings))[0].numpy() for spread in ("nearby", "here")}
    distances = np.arange(8, 41, 4)
    for spread, reach in (("nearby", 0.1), ("here", 0.05)):
        ratio = fields[spread][centre, centre + distances] / fields[spread][centre, centre + 8]
        np.testing.assert_allclose(ratio, k0(distances / (reach * side)) / k0(8 / (reach * side)), rtol=0.02)
        assert fields[spread][centre, centre] == pytest.approx(40.0 / AB_SCALE, abs=1e-6)


@pytest.mark.parametrize(("setting", "says"), [({"reach": 0.0}, "reach must be in (0, 100]"),
                                               ({"here": 0.0}, "here must be in (0, 100]"),
                                               ({"alike": 0.0}, "alike must be in (0, 100] Lab units"),
                                               ({"edge": 101.0}, "edge must be in (0, 100]")])
def test_spreading_settings_out_of_range_are_refused(setting, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        PropagationSettings(**setting)


def test_colour_stops_at_a_lightness_edge():
    lightness = np.full((40, 60), 30.0)
    lightness[:, 30:] = 70.0  # a 40-unit step: exp(-40^2 / 2 5^2) ~ 1e-14 across it at edge 5
    spread = Propagation(lightness, PropagationSettings(reach=1.0, edge=5.0))
    field = spread.residual([((slice(20, 21), slice(10, 11)), np.array([0.5, 0.0]))])[0]
    assert field[:, 29].min() > 0.3 and np.abs(field[:, 30:]).max() < 1e-6


def test_alike_carries_a_hint_to_cells_the_model_coloured_alike_as_a_direct_sum_computes():
    """Each cell p moves by sum_i d_i k_ip / (sum_i k_ip + prior), k_ip = exp(-|Lab_p - Lab_i|^2 / 2 alike^2) over
    the model's Lab (Lab_i: the mean over hint i's cells), recomputed cell by cell in plain Python."""
    rng = np.random.default_rng(8)
    lightness, ab = rng.uniform(20, 80, (7, 9)), rng.uniform(-30, 30, (2, 7, 9))
    settings = PropagationSettings(alike=12.0, prior=0.5)
    targets = [((slice(1, 3), slice(2, 4)), np.array([0.2, -0.3])), ((slice(5, 6), slice(7, 9)), np.array([-0.1, 0.4]))]
    got = Propagation(lightness, settings).alike(targets, ab)
    lab = np.concatenate([lightness[None], ab])
    for row in range(7):
        for column in range(9):
            moved, total = np.zeros(2), 0.0
            for (rows, columns), difference in targets:
                at_hint = lab[:, rows, columns].reshape(3, -1).mean(axis=1)
                k = math.exp(-sum((lab[c, row, column] - at_hint[c]) ** 2 for c in range(3)) / (2 * 12.0**2))
                moved, total = moved + difference * k, total + k
            np.testing.assert_allclose(got[:, row, column], moved / (total + 0.5), rtol=1e-12)


def test_an_alike_hint_recolours_what_the_model_coloured_like_it_beyond_an_edge_and_stays_exact():
    # two patches of the same lightness and model colour (a gray-blue), cut apart by a dark bar no edge-aware
    # spreading crosses, and a third patch the model coloured differently (an orange)
    lightness = np.full((40, 90), 60.0)
    lightness[:, 28:32] = 5.0
    lightness[:, 60:64] = 5.0
    model = np.zeros((2, 40, 90))
    model[:, :, :60] = np.array([-5.0, -10.0])[:, None, None]
    model[:, :, 64:] = np.array([25.0, 40.0])[:, None, None]
    model[:, :, 28:32] = model[:, :, 60:64] = 0.0
    ab = torch.from_numpy(model / AB_SCALE)
    hint = Hint(10, 20, (-20.0, 45.0), 3, spread="alike")  # "all this is green-yellow", on the left patch
    settings = PropagationSettings()
    spread = spread_hints(ab, [hint], (90, 40), lambda: Propagation(lightness, settings)).numpy() * AB_SCALE
    edge_only = spread_hints(ab, [replace(hint, spread="nearby")], (90, 40), lambda: Propagation(lightness, settings))
    edge_only = edge_only.numpy() * AB_SCALE
    # exact at the hint, up to the constraint system's 1e-6 relative regularisation of the remaining ~15 Lab units
    np.testing.assert_allclose(spread[:, 19:22, 9:12].mean(axis=(1, 2)), hint.ab, atol=1e-4)
    share = 1 / (1 + settings.prior)  # a cell exactly like a single hint's takes this of it
    wanted = np.array(hint.ab) - model[:, 20, 10]
    moved = spread[:, :, 40:56] - model[:, :, 40:56]
    np.testing.assert_allclose(moved, np.broadcast_to(wanted[:, None, None] * share, moved.shape), rtol=1e-6)
    assert np.abs(edge_only[:, :, 40:56] - model[:, :, 40:56]).max() < 1e-6  # a plain hint: the bar stops it
    assert np.abs(spread[:, :, 70:] - model[:, :, 70:]).max() < 1e-3  # the orange is not like the hinted colour


# ---------------------------------------------------------------------------------------------------- on photos


def test_no_hints_is_the_automatic_colorization_and_hints_set_their_colour(colorizer):
    path = resolve_source("heldout")[0]
    truth = photo_lab(path)
    source = read_source(path)
    photo = GuidedPhoto(colorizer, source)
    assert np.array_equal(np.asarray(photo.image([])), np.asarray(colorizer(path)))
    # a 6 x 6 hint with the truth's colour there (in gamut at the photo's lightness by construction)
    x, y = 180, 100
    hint = Hint(x, y, tuple(truth[y - 3:y + 3, x - 3:x + 3, 1:].reshape(-1, 2).mean(0)), 6)
    automatic = rgb2lab(np.asarray(colorizer(path)))[y - 3:y + 3, x - 3:x + 3, 1:].reshape(-1, 2).mean(0)
    guided_image = np.asarray(photo.image([hint]))
    guided = rgb2lab(guided_image)[y - 3:y + 3, x - 3:x + 3, 1:].reshape(-1, 2).mean(0)
    assert np.abs(guided - np.array(hint.ab)).max() < 1.5 < np.abs(automatic - np.array(hint.ab)).max()
    # the suggestion at a pixel is about the colour written there (the nearest grid cell's, not the resized ab)
    for image, hints in ((guided_image, [hint]), (np.asarray(colorizer(path)), [])):
        suggestion = photo.suggest(x, y, hints)
        rgb = np.array([int(suggestion.hex[i:i + 2], 16) for i in (1, 3, 5)])
        assert np.abs(rgb - image[y, x]).max() <= 3


def test_a_hints_tries_each_set_its_colour_and_spread_as_far_as_their_spread_says(colorizer):
    """The three previews a person compares before adding a hint (the app's tries): a sunset's sky told its own
    orange, a blue hint on the sea already placed. Each has the hint's colour at the hint; away from it only-here
    barely moves the colours, and everything-like-it spreads otherwise than nearby."""
    path = next(p for p in resolve_source("sample") if p.name == "gnome-control-center-data--surfer.jpg")
    photo = GuidedPhoto(colorizer, read_source(path))
    placed = [Hint(photo.size[0] // 2, photo.size[1] - 20, (-5.0, -20.0), 9)]  # the sea, blue
    x, y = photo.size[0] // 5, photo.size[1] // 6
    truth = photo_lab(path)  # the sky's own colour there: in gamut at its lightness by construction
    hint = Hint(x, y, tuple(truth[y - 4:y + 5, x - 4:x + 5, 1:].reshape(-1, 2).mean(0)), 9)
    tries = photo.tries(placed, hint, 480)
    assert list(tries) == ["nearby", "here", "alike"]
    shown = photo.preview(placed, 480)  # the photo before the hint, as the tries are rendered
    before = rgb2lab(np.asarray(shown))[..., 1:]
    scale = tries["nearby"].width / photo.size[0]
    x, y = round(x * scale), round(y * scale)
    rows, columns = np.mgrid[:before.shape[0], :before.shape[1]]
    far = np.hypot(rows - y, columns - x) > before.shape[1] / 4
    moved, tried = {}, {}
    for spread, image in tries.items():
        assert image.size == shown.size
        ab = tried[spread] = rgb2lab(np.asarray(image))[..., 1:]
        # at the hint: its colour, within what 8-bit sRGB and the 480 px rendering of the grid keep; the model's
        # own colour there is far from it
        tried_there, model_there = (np.abs(a[y - 1:y + 2, x - 1:x + 2].reshape(-1, 2).mean(0) - hint.ab).max()
                                    for a in (ab, before))
        assert tried_there < 3 and model_there > 10
        moved[spread] = np.abs(ab - before).sum(-1)[far].mean()  # a*b* units, over the photo's far part
    assert moved["here"] < min(moved["nearby"], moved["alike"]) / 4
    assert np.abs(tried["alike"] - tried["nearby"]).sum(-1)[far].mean() > 1


def test_a_hint_on_the_command_line_colours_the_output_there(tmp_path):
    path = resolve_source("heldout")[0]
    result = CliRunner().invoke(colorize_command, [str(path), "--model", FAST, "--out", str(tmp_path / "out"),
                                                   "--hint", "180,100,#2a6ad0,8", "--no-progress"])
    assert result.exit_code == 0, result.output
    out = rgb2lab(np.asarray(Image.open(tmp_path / "out" / path.name)))
    wanted = np.array(colour_ab("#2a6ad0"))
    assert np.abs(out[96:104, 176:184, 1:].reshape(-1, 2).mean(0) - wanted).max() < 3.0


def test_zoo_colorize_takes_hint_records_and_checks_them(colorizer):
    import zoo

    path = resolve_source("heldout")[2]
    plain = np.asarray(zoo.colorize(path, colorizer))
    hinted = np.asarray(zoo.colorize(path, colorizer, hints=[{"x": 20, "y": 30, "color": "#ff0000", "size": 5}]))
    assert not np.array_equal(plain, hinted)
    with pytest.raises(HintError, match=f"{path}: hint 1 at x=100000"):
        zoo.colorize(path, colorizer, hints=[{"x": 100000, "y": 3, "color": "#ff0000"}])


# ---------------------------------------------------------------------------------------------------- guided-unet


def test_guided_unet_without_hints_is_exactly_its_unet_and_hints_move_it():
    torch.manual_seed(0)
    model = guided_unet(encoder="tu-mobilenetv3_small_050", decoder_channels=[16, 8, 8, 8, 8]).eval()
    torch.nn.init.normal_(model.unet.segmentation_head[0].weight, std=0.1)  # the zoo's heads start at zero
    L = torch.rand(2, 1, 64, 96) * 2 - 1
    none = torch.zeros(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(torch.cat([L, none], 1)), model.unet(L))
        for conv in model.hint_convs:
            torch.nn.init.normal_(conv.weight, std=0.5)
        assert torch.equal(model(torch.cat([L, none], 1)), model.unet(L))  # no bias: zero hints add nothing
        hints = none.clone()
        hints[:, :, 30:34, 40:44] = torch.tensor([0.4, -0.3, 1.0]).view(1, 3, 1, 1)
        change = (model(torch.cat([L, hints], 1)) - model.unet(L)).abs().sum(1)
    assert change[:, 30:34, 40:44].mean() > 0.01 and change[:, 30:34, 40:44].mean() > 5 * change[:, :, :8].mean()


def test_the_shipped_learned_model_is_its_unet_without_hints_and_takes_a_hints_colour_where_it_is():
    """unet-effnet-lite0-guided as shipped, on a held-out photo, its own ab before any spreading: with no hints
    exactly its U-Net's as the inference settings run it; a 6 x 6 hint of a colour far from what it put at the
    photo's centre moves its colour there a third of the way or more toward the hint (these weights: two thirds),
    and the colour half the short side away or more ten times less on average (these weights: 32 times less).
    What remains at the hint is spread as for any model, so the hint's colour is then exact there."""
    colorizer = Colorizer.from_checkpoint(model=LEARNED, device="cpu")
    photo = GuidedPhoto(colorizer, read_source(resolve_source("heldout")[0]))
    automatic = photo.model_ab([])
    L = photo.model_input.unsqueeze(0)
    generator, decoder = colorizer.predictor.generator, colorizer.predictor.decoder
    unet = inferred_ab(lambda x: decoder(generator.unet(x)), L, **colorizer.spec.ab_settings)[0]
    assert torch.equal(automatic, unet)

    rows, columns = automatic.shape[-2:]
    middle = (slice(None), slice(rows // 2 - 1, rows // 2 + 2), slice(columns // 2 - 1, columns // 2 + 2))
    centre = automatic[middle].mean((1, 2)) * AB_SCALE
    hint_ab = max([(55.0, 40.0), (10.0, -45.0)], key=lambda ab: float(torch.dist(torch.tensor(ab), centre)))
    width, height = photo.size
    hint = Hint(width // 2, height // 2, hint_ab, 6)
    change = (photo.model_ab([hint]) - automatic) * AB_SCALE
    wanted = torch.tensor(hint_ab) - centre
    there = change[middle].mean((1, 2))
    assert float(there @ wanted) / float(wanted @ wanted) > 1 / 3
    y, x = torch.meshgrid(torch.arange(rows) - rows // 2, torch.arange(columns) - columns // 2, indexing="ij")
    far = change.norm(dim=0)[x.square() + y.square() >= (min(rows, columns) / 2) ** 2].mean()
    assert there.norm() > 10 * far
    spread = photo.ab([hint])
    cells = hint_cells(hint, photo.size, tuple(spread.shape[-2:]))
    exact = spread[:, cells[0], cells[1]].double().mean((1, 2)) * AB_SCALE  # float32 ab: about 1e-5 a*b* units
    np.testing.assert_allclose(exact, hint_ab, atol=1e-3)


# ---------------------------------------------------------------------------------------------------- hint curves


def test_the_hint_curve_starts_at_the_automatic_row_and_hints_help(tmp_path):
    from zoo.harness.report import build_report, load_results
    from zoo.harness.scoring import load_model, score_models
    from zoo.spec import weights_path

    photos = tmp_path / "photos.txt"
    photos.write_text("\n".join(str(p) for p in resolve_source("heldout")[:8]))
    model = load_model(FAST, weights_path(FAST), "cpu")
    rows = score_models({FAST: model}, data=str(photos), image_size=128, workers=0, hints=(0, 1, 5, 10), echo=lambda s: None).rows
    by = {(row["model"], row.get("hints")): row for row in rows}
    assert set(by) == {(FAST, None), ("gray", None), ("truth", None)} | {(m, n) for m in (FAST, "gray")
                                                                         for n in (0, 1, 5, 10)}
    for name in (FAST, "gray"):
        for key in ("psnr", "ssim", "ciede2000", "cf"):
            assert by[(name, 0)][key] == pytest.approx(by[(name, None)][key], rel=1e-5), (name, key)
        assert by[(name, 10)]["psnr"] > by[(name, 5)]["psnr"] > by[(name, 0)]["psnr"]
        assert by[(name, 10)]["ciede2000"] < by[(name, 5)]["ciede2000"] < by[(name, 0)]["ciede2000"]
    # the report keeps the curve's rows apart and draws it
    from zoo.cli import main

    result = CliRunner().invoke(main, ["score", FAST, "--data", str(photos), "--image-size", "64", "--hints", "0,2",
                                       "--results", str(tmp_path / "results"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    [path] = (tmp_path / "results").glob("score-*.json")
    assert (tmp_path / "results" / "plots" / f"{path.stem}-hints.png").is_file()
    page = build_report([load_results(path)])
    assert 'id="plot-hints"' in page and page.count(f">{FAST}<") >= 3


def test_the_worst_placement_puts_each_hint_where_the_colours_are_still_most_wrong(tmp_path):
    from zoo.color import L_SCALE, lab_normalized_to_rgb, rgb_uint8_to_lab_normalized
    from zoo.harness.protocols import ProtocolImages, get_protocol
    from zoo.harness.scoring import score_models

    photo = resolve_source("heldout")[3]
    scores = score_models({}, data=str(photo), image_size=96, workers=0, hints=(0, 1, 2), hint_placement="worst",
                          echo=lambda s: None)
    assert "most wrong" in scores.protocol["hints"]
    by = {row.get("hints"): row for row in scores.rows if row["model"] == "gray"}
    # by hand: the photo as the protocol prepares it; gray's colours (ab = 0), then each hint where they are
    # most wrong, spread before the next is placed; PSNR over the sRGB as numpy computes it
    [stack] = ProtocolImages([[photo]], get_protocol("zoo"), 96)
    L, ab = rgb_uint8_to_lab_normalized(stack[None, 0])
    grid = Propagation(((L[0, 0].double() + 1) * L_SCALE).numpy(), PropagationSettings())
    truth = stack[0].double().numpy() / 255
    now, hints = torch.zeros_like(ab[0]), []
    for count in (1, 2):
        hints.append(worst_hint(now, ab[0], 6))
        now = spread_hints(torch.zeros_like(ab[0]), hints, (96, 96), lambda: grid)
        rgb = lab_normalized_to_rgb(L.double(), now[None].double())[0].numpy()
        psnr = 10 * np.log10(1 / np.mean((rgb - truth) ** 2))
        assert by[count]["psnr"] == pytest.approx(psnr, abs=2e-3), count  # float32 RGB in the harness
    assert hints[0] != hints[1]
    with pytest.raises(ValueError, match="unknown hint placement 'random'"):
        score_models({}, data=str(photo), hints=(1,), hint_placement="random", echo=lambda s: None)


def test_a_guided_model_exports_to_onnx_with_its_hint_input(tmp_path):
    """export_onnx checks onnxruntime against torch with random sparse hints; here the graph's inputs and one more
    run with a hint, against the predictor."""
    import onnxruntime

    from zoo.export import export_onnx
    from zoo.factory import create_predictor
    from zoo.spec import get_spec

    spec = get_spec("unet-effnet-lite0-guided").with_overrides(generator={"encoder": "tu-mobilenetv3_small_050",
                                                                          "encoder_weights": None})
    predictor = create_predictor(spec).eval()
    for conv in predictor.generator.hint_convs:
        torch.nn.init.normal_(conv.weight, std=0.3)
    torch.nn.init.normal_(predictor.generator.unet.segmentation_head[0].weight, std=0.1)
    report = export_onnx(spec, predictor, tmp_path / "guided.onnx")
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["L", "hints"]
    L = torch.rand(1, 1, 64, 96) * 2 - 1
    hints = hint_channels([Hint(40, 30, (50.0, -20.0), 4)], (96, 64), (64, 96)).unsqueeze(0)
    with torch.inference_mode():
        expected = predictor(L, hints).numpy()
        automatic = predictor(L).numpy()
    got = session.run(["ab"], {"L": L.numpy(), "hints": hints.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4 and np.abs(expected - automatic).max() > 1e-3
