"""Colorizing one photo with colour hints, interactively: the model runs once, each hint costs one solve.

One path through it::

    photo = GuidedPhoto(colorizer, source)         # the model's own ab (once), the photo's lightness on a grid
    photo.suggest(x, y)                            # the colour the model puts at a pixel: what a picker opens on
    photo.ab(hints)                                # (2, h, w) on the grid: the model's ab (or the colouring the
                                                   #   hints choose among its own and its alternatives: choose)
                                                   #   + each hint's difference from it spread edge-aware
                                                   #   (zoo.propagate; a here hint's less far, an alike hint's
                                                   #   also to what the model coloured like it); exact at hints
    photo.image(hints) or photo.preview(hints, 1024)   # full resolution, or a quick rendering for a screen
    photo.tries(hints, hint, 480)                  # the hint being made, spread each way: a person picks one

Any model takes hints this way, automatic or not. A model whose generator takes hints itself (``guided-unet``)
is run again with them (its ab changes with every hint set, a forward pass at the working size), and the
differences that remain at the hints are spread the same way. A model whose registry entry names ``choices``
(the default) has k other colourings of each photo, trained so that one of them is close
(:mod:`zoo.objectives.choices`); the hints first choose among its own and those (:func:`choose`), which
recolours what no hint reaches when the hints say the model's colours were wrong. The grid is the photo at
short side ``PropagationSettings.grid`` (never more than the photo's own); its ab is resized to full resolution
as a model's ab always is (:class:`zoo.colorizer.AbResizer`), and the photo keeps its own lightness.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from zoo.color import AB_SCALE, L_SCALE, lab_normalized_to_rgb
from zoo.colorizer import Colorizer, lightness_at, render_image
from zoo.hints import SPREADS, Hint, HintError, check_inside, hex_colour, hint_cells, hint_channels, hint_from_record
from zoo.images import Source
from zoo.propagate import Propagation, PropagationSettings, grid_shape


@dataclass(frozen=True)
class Colour:
    """A colour the model proposes at a pixel: ``hex`` (sRGB, with the photo's own lightness there) and ``ab``
    (Lab units)."""

    hex: str
    ab: tuple[float, float]


def as_hints(hints: Iterable[Hint | Mapping[str, object]], where: str = "hints") -> list[Hint]:
    """:class:`Hint` objects from hints or hint-file records (``{"x": 1, "y": 2, "color": "#c0392b"}``)."""
    out = []
    for index, hint in enumerate(hints, 1):
        if isinstance(hint, Hint):
            out.append(hint)
            continue
        try:
            out.append(hint_from_record(dict(hint)))
        except (ValueError, TypeError) as err:
            raise HintError(f"{where}: hint {index}: {err}") from None
    return out


def choose(colourings: Tensor, hints: Sequence[Hint], photo_size: tuple[int, int], width: float) -> Tensor:
    """The colouring ``hints`` point to among ``colourings`` (M, 2, h, w), normalised ab on a grid over a photo of
    ``photo_size`` (w, h): the model's own first, then its alternatives (a ``choices`` model's). Each colouring m
    is weighted by exp(-E_m / 2 ``width``^2), E_m the sum over the hints of the squared a*b* distance (Lab units)
    between a hint's colour and m's mean over the hint's cells, and the weighted mean is returned (2, h, w). Hints
    marked ``here`` (true of a small thing only) do not choose; with none that do, the model's own colouring."""
    choosing = [hint for hint in hints if hint.spread != "here"]
    if not choosing:
        return colourings[0]
    energy = torch.zeros(len(colourings), dtype=torch.float64)
    for hint in choosing:
        rows, columns = hint_cells(hint, photo_size, tuple(colourings.shape[-2:]))
        at = colourings[:, :, rows, columns].double().mean(dim=(2, 3)) * AB_SCALE
        energy += (at - torch.tensor(hint.ab, dtype=torch.float64)).square().sum(1)
    weights = torch.softmax(-energy / (2 * width ** 2), 0).to(colourings.dtype)
    return (weights.view(-1, 1, 1, 1) * colourings).sum(0)


def spread_hints(ab: Tensor, hints: Sequence[Hint], photo_size: tuple[int, int],
                 propagation: Callable[[], Propagation]) -> Tensor:
    """Normalised ``ab`` (2, h, w) on a grid over a photo of ``photo_size`` (w, h) with each hint's difference
    from it spread by ``propagation()`` (asked for only when there are hints): an ``alike`` hint's first to the
    cells the model coloured like it, then every hint's edge-aware (:mod:`zoo.propagate`; a ``here`` hint's with
    the shorter reach), so that every hint's mean over its cells is then its colour."""
    if not hints:
        return ab
    spread = propagation()
    base = ab.double()
    cells = [hint_cells(hint, photo_size, tuple(ab.shape[-2:])) for hint in hints]
    wanted = [torch.tensor(hint.ab, dtype=torch.float64) / AB_SCALE for hint in hints]

    def differences(ab: Tensor) -> list[tuple[tuple[slice, slice], np.ndarray]]:  # each hint's, from ab
        return [((rows, columns), (colour - ab[:, rows, columns].mean(dim=(1, 2))).numpy())
                for (rows, columns), colour in zip(cells, wanted, strict=True)]

    if any(hint.spread == "alike" for hint in hints):
        alike = [target for target, hint in zip(differences(base), hints, strict=True) if hint.spread == "alike"]
        base = base + torch.from_numpy(spread.alike(alike, (base * AB_SCALE).numpy()))
    reaches = [spread.settings.here if hint.spread == "here" else spread.settings.reach for hint in hints]
    return (base + torch.from_numpy(spread.residual(differences(base), reaches))).to(ab.dtype)


class GuidedPhoto:
    """One decoded photo with its model colours cached, ready for hints (see the module docstring)."""

    def __init__(self, colorizer: Colorizer, source: Source, settings: PropagationSettings | None = None,
                 automatic: Tensor | None = None) -> None:
        """``automatic``: the model's ab without hints at the working size (2, h, w), if already predicted."""
        self.colorizer, self.source = colorizer, source
        self.size = source.image.size
        self.settings = settings or PropagationSettings()
        self.model_input = colorizer.model_input(source)
        self.grid = grid_shape(self.size, self.settings.grid)
        self._automatic = automatic
        self._alternatives: Tensor | None = None  # (k, 2, h, w) on the grid: a model's alternatives, on a first hint
        self._lightness: np.ndarray | None = None
        self._propagation: Propagation | None = None
        self._smaller: dict[int, Source] = {}  # the photo resized for previews, by longest side (a page uses two)

    @property
    def lightness(self) -> np.ndarray:
        """The photo's Lab lightness (0 .. 100) on the grid, (h, w) float64."""
        if self._lightness is None:
            normalized = lightness_at(self.source, (self.grid[1], self.grid[0]))
            self._lightness = ((normalized[0].double() + 1) * L_SCALE).numpy()
        return self._lightness

    @property
    def propagation(self) -> Propagation:
        """The factorised spreading system of this photo (built on the first hint)."""
        if self._propagation is None:
            self._propagation = Propagation(self.lightness, self.settings)
        return self._propagation

    def model_ab(self, hints: Sequence[Hint] = ()) -> Tensor:
        """The model's own ab (2, h, w) at the working size: with ``hints`` for a model that takes them."""
        if hints and self.colorizer.guided:
            channels = hint_channels(hints, self.size, tuple(self.model_input.shape[-2:]))
            return self.colorizer.predict(self.model_input.unsqueeze(0), channels.unsqueeze(0))[0]
        if self._automatic is None:
            self._automatic = self.colorizer.predict(self.model_input.unsqueeze(0))[0]
        return self._automatic

    def colourings(self, hints: Sequence[Hint] = ()) -> Tensor:
        """What the hints start from, (M, 2, h, w) on the grid: the model's own ab, then, for a model with
        alternative colourings (:meth:`zoo.colorizer.Colorizer.alternatives`), those (predicted once)."""
        colourings = self._on_grid(self.model_ab(hints)[None])
        if not self.colorizer.has_choices:
            return colourings
        if self._alternatives is None:
            self._alternatives = self._on_grid(self.colorizer.alternatives(self.model_input.unsqueeze(0))[0])
        return torch.cat([colourings, self._alternatives])

    def _on_grid(self, ab: Tensor) -> Tensor:
        """ab (M, 2, h, w) at the working size resized to the spreading grid."""
        return F.interpolate(ab, size=self.grid, mode="bilinear", align_corners=False, antialias=True)

    def ab(self, hints: Sequence[Hint] = ()) -> Tensor:
        """Normalised ab (2, h, w) on the grid: the model's (or the colouring the hints choose: :func:`choose`),
        then every hint's difference from it spread; with no hints, the model's own ab at its working size (what
        ``zoo colorize`` renders without hints)."""
        check_inside(hints, self.size, "hints")
        if not hints:
            return self.model_ab()
        base = choose(self.colourings(hints), hints, self.size, self.settings.choice)
        return spread_hints(base, hints, self.size, lambda: self.propagation)

    def suggest(self, x: int, y: int, hints: Sequence[Hint] = ()) -> Colour:
        """The colour at pixel (``x``, ``y``) of the upright photo with ``hints`` (none: the model's own)."""
        check_inside([Hint(x, y, (0.0, 0.0))], self.size, "suggest")
        ab = self.ab(hints)
        rows, columns = ab.shape[-2:]  # the grid, or the working size without hints
        row, column = min(rows - 1, y * rows // self.size[1]), min(columns - 1, x * columns // self.size[0])
        pixel = Source(self.source.image.crop((x, y, x + 1, y + 1)), self.source.format)
        lightness = lightness_at(pixel, (1, 1))
        value = ab[:, row, column].view(1, 2, 1, 1)
        rgb = lab_normalized_to_rgb(lightness.view(1, 1, 1, 1), value)[0, :, 0, 0]
        return Colour(hex_colour(rgb.tolist()), (float(value[0, 0]) * AB_SCALE, float(value[0, 1]) * AB_SCALE))

    def image(self, hints: Sequence[Hint] = ()) -> Image.Image:
        """The colour photo at full resolution (as ``zoo colorize`` writes it)."""
        return render_image(self.source, self.ab(hints))

    def tries(self, hints: Sequence[Hint], hint: Hint, longest: int = 480) -> dict[str, Image.Image]:
        """Previews of ``hints`` plus ``hint`` spread each way (``Hint.spread``, in ``SPREADS`` order): what a
        person compares before adding the hint. The spreads share the hint's solves; a first ``here`` factorises
        the shorter reach."""
        return {spread: self.preview([*hints, replace(hint, spread=spread)], longest) for spread in SPREADS}

    def preview(self, hints: Sequence[Hint] = (), longest: int = 1024) -> Image.Image:
        """The colour photo with its longer side at most ``longest`` pixels: what a page shows while hints change."""
        scale = longest / max(self.size)
        if scale >= 1:
            return self.image(hints)
        if longest not in self._smaller:  # resized once: each hint and each try renders on the same pixels
            small = self.source.image.resize((max(1, round(self.size[0] * scale)), max(1, round(self.size[1] * scale))),
                                             Image.Resampling.BILINEAR,
                                             reducing_gap=None if self.source.sixteen_bit else 2.0)
            self._smaller[longest] = Source(small, self.source.format)
        return render_image(self._smaller[longest], self.ab(hints))
