"""Spreading colour hints over a photo, on top of any model's own colours: edge-aware to what is near each hint
(``Hint.spread``: ``nearby``, or ``here`` for a small thing, which keeps it closer) and, for a hint that says so
(``alike``), to what looks like it to the model, wherever it is.

One path through it::

    spread = Propagation(lightness on a grid (h, w), PropagationSettings(reach, here, edge, alike))
    ab = model ab on the grid
    ab = ab + spread.alike([(cells of alike hint 1, its colour - ab there), ...], ab)  # alike hints only
    ab = ab + spread.residual([(cells of hint 1, its colour - ab there), ...], [reach of hint 1, ...])  # exact

**Alike** (hints that ask for it). A hint's difference d_i from the model is first carried to every cell whose model
colour is like the model's colour at the hint, however far: cell p moves by sum_i d_i k_ip / (sum_i k_ip + prior),
with k_ip = exp(-|Lab_p - Lab_i|^2 / 2 alike^2) over the model's Lab (the photo's lightness and the model's ab).
Where the model gave the hinted thing the wrong colour it usually gave the same wrong colour to the rest of that
thing and to things like it: a pinkish sky told to be blue turns blue also beyond the horizon's edge. ``prior`` is
the weight the model's own colour keeps: a cell exactly like a single hint takes 1 / (1 + prior) of its difference.
It is for hints true of everything like them; one meant for a single thing would also recolour what the model
coloured like it (docs/guided.md, "Alike").

**Edge-aware.** What differences remain at the hints then spread locally. The residual r is the smoothest field
that equals each hint's remaining difference at the hint, in the sense of Levin et al. (2004): it minimises sum
over neighbouring cells p, q of w_pq (r_p - r_q)^2 plus lambda sum r_p^2, where w_pq = exp(-(L_p - L_q)^2 / 2
edge^2) lets colour flow along similar lightness and stop at edges, and lambda pulls it back to the model's colour
away from the hints. With B = lambda I + the graph Laplacian of w, the solution under hard constraints u_i . r =
d_i (u_i: the mean over hint i's cells) is r = G (U^T G)^-1 d with G = B^-1 U: a sum of each hint's Green's
function (solved as least squares with a faint ridge, so hints asking the same cells for two colours average).
B is factorised once per photo (sparse LU), each new hint costs one triangular solve, and moving or
recolouring hints costs none, which is what makes a click interactive. ``reach`` sets lambda = 1 / (reach x short
side)^2: in a flat region a hint's influence at distance d falls as the screened Poisson equation's Green's
function, K0(d / (reach x short side)) (the modified Bessel function: about exp(-d / l) / sqrt(d) beyond l), so
reach is how far, as a fraction of the photo's short side, a hint holds most of its colour where no edge stops it.

**Only here.** Lightness edges do not stop colour between things of about the same lightness: a yellow stamen on a
white petal, an orange beak on a white head. A hint marked ``here`` spreads with the shorter reach ``here``: its
Green's function comes from B at that reach (factorised on the first such hint), the others' from B at ``reach``,
and the constraint system above, with each hint's own g_i, still makes every hint exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

Cells = tuple[slice, slice]  # (rows, columns) of the grid a hint covers
_CONFLICT = 1e-6  # the constraint system's ridge, relative to its diagonal: hints on the same cells average


@dataclass(frozen=True)
class PropagationSettings:
    """How far a hint reaches (its screening length, a fraction of the short side; ``here`` for a hint marked so),
    how strongly lightness edges stop it (Lab L units: a smaller edge stops colour at fainter edges), how alike
    (Lab units, the model's colours) a cell anywhere must be to a hint to take its difference and the weight its
    own colour keeps there, and the short side of the grid it is solved on."""

    reach: float = 0.5  # all chosen on sample-train's folds, random and person-like hints (docs/guided.md)
    here: float = 0.15  # a hint marked here (docs/guided.md, "Only here")
    edge: float = 5.0
    alike: float = 10.0  # Lab units, for hints that ask (Hint.spread == "alike")
    prior: float = 0.3
    choice: float = 5.0  # a*b* units: how sharply hints choose among a model's alternatives (zoo.guided.choose)
    grid: int = 256

    def __post_init__(self) -> None:
        for name, reach in (("reach", self.reach), ("here", self.here)):
            if not 0 < reach <= 100:
                raise ValueError(f"{name} must be in (0, 100], got {reach}")
        if not 0 < self.edge <= 100:
            raise ValueError(f"edge must be in (0, 100] Lab units, got {self.edge}")
        if not 0 < self.alike <= 100:
            raise ValueError(f"alike must be in (0, 100] Lab units, got {self.alike}")
        if not 0 < self.prior <= 100:
            raise ValueError(f"prior must be in (0, 100], got {self.prior}")
        if not 0 < self.choice <= 100:
            raise ValueError(f"choice must be in (0, 100] a*b* units, got {self.choice}")
        if not 8 <= self.grid <= 4096:
            raise ValueError(f"grid must be 8 to 4096 cells, got {self.grid}")


def grid_shape(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """(rows, columns) of the grid over a photo of ``size`` (w, h): short side ``short_side`` (never more than
    the photo's own), aspect ratio kept."""
    width, height = size
    scale = min(1.0, short_side / min(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def edge_weights(lightness: np.ndarray, edge: float) -> tuple[np.ndarray, np.ndarray]:
    """exp(-(L_p - L_q)^2 / 2 edge^2) between horizontal neighbours (h, w - 1) and vertical ones (h - 1, w)."""
    lightness = np.asarray(lightness, dtype=np.float64)
    scale = -0.5 / edge**2
    return np.exp(scale * np.diff(lightness, axis=1) ** 2), np.exp(scale * np.diff(lightness, axis=0) ** 2)


def system_matrix(lightness: np.ndarray, settings: PropagationSettings) -> sparse.csc_matrix:
    """B = lambda I + the weighted graph Laplacian of the 4-connected grid, (h w, h w)."""
    rows, columns = lightness.shape
    index = np.arange(rows * columns).reshape(rows, columns)
    across, down = edge_weights(lightness, settings.edge)
    first = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()])
    second = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()])
    weight = np.concatenate([across.ravel(), down.ravel()])
    pull = 1.0 / (settings.reach * min(rows, columns)) ** 2
    degree = np.bincount(first, weight, rows * columns) + np.bincount(second, weight, rows * columns)
    off_diagonal = sparse.coo_matrix((-weight, (first, second)), shape=(rows * columns,) * 2)
    return (off_diagonal + off_diagonal.T + sparse.diags(degree + pull)).tocsc()


class Propagation:
    """One photo's lightness on a grid, factorised for spreading hints (see the module docstring)."""

    def __init__(self, lightness: np.ndarray, settings: PropagationSettings = PropagationSettings()) -> None:
        self.shape = lightness.shape
        self.lightness = np.asarray(lightness, dtype=np.float64)
        self.settings = settings
        self._solves: dict[float, Callable[[np.ndarray], np.ndarray]] = {}
        self._green: dict[tuple[float, int, int, int, int], np.ndarray] = {}
        self._solver(settings.reach)  # factorised now: the first hint of a photo pays for it, later ones do not

    def _solver(self, reach: float) -> Callable[[np.ndarray], np.ndarray]:
        """B^-1 at ``reach``, a sparse LU factorised on first use."""
        if reach not in self._solves:
            matrix = system_matrix(self.lightness, replace(self.settings, reach=reach))
            self._solves[reach] = sparse_linalg.splu(matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                                     options={"SymmetricMode": True}).solve
        return self._solves[reach]

    def green(self, cells: Cells, reach: float | None = None) -> np.ndarray:
        """B^-1 u for the mean over ``cells`` (h w,) at ``reach`` (the settings' by default), computed once each."""
        reach = self.settings.reach if reach is None else reach
        rows, columns = cells
        key = (reach, rows.start, rows.stop, columns.start, columns.stop)
        if key not in self._green:
            u = np.zeros(self.shape)
            u[rows, columns] = 1.0 / ((rows.stop - rows.start) * (columns.stop - columns.start))
            self._green[key] = self._solver(reach)(u.ravel())
        return self._green[key]

    def residual(self, targets: Sequence[tuple[Cells, np.ndarray]],
                 reaches: Sequence[float] | None = None) -> np.ndarray:
        """(2, h, w): the field, a sum of the targets' Green's functions (each at its reach in ``reaches``; the
        settings' by default), whose mean over each target's cells is its difference (2,); with one reach for all,
        the smoothest such field."""
        if not targets:
            return np.zeros((2, *self.shape))
        reaches = [self.settings.reach] * len(targets) if reaches is None else reaches
        green = np.stack([self.green(cells, reach) for (cells, _), reach in zip(targets, reaches, strict=True)],
                         axis=1)  # (h w, k)
        means = np.stack([green.reshape(*self.shape, -1)[rows, columns].reshape(-1, len(targets)).mean(0)
                          for (rows, columns), _ in targets])  # (k, k): u_i . g_j
        wanted = np.stack([np.asarray(d, dtype=np.float64) for _, d in targets])  # (k, 2)
        # least squares with a faint ridge: exact for hints apart, the mean for hints that ask the same cells for
        # different colours, and no huge weights that cancel only where their Green's functions are alike
        ridge = (_CONFLICT * np.diag(means).mean()) ** 2 * np.eye(len(targets))
        weights = np.linalg.solve(means.T @ means + ridge, means.T @ wanted)  # (k, 2)
        return (green @ weights).T.reshape(2, *self.shape)

    def alike(self, targets: Sequence[tuple[Cells, np.ndarray]], ab: np.ndarray) -> np.ndarray:
        """(2, h, w): each target's difference (2,) carried to the cells whose model colour (this lightness and
        ``ab``, (2, h, w) in Lab units) is like the model's colour over the target's cells (the module docstring)."""
        if not targets:
            return np.zeros((2, *self.shape))
        lab = np.concatenate([self.lightness[None], np.asarray(ab, dtype=np.float64)])  # (3, h, w)
        scale = -0.5 / self.settings.alike**2
        moved, likeness = np.zeros((2, *self.shape)), np.zeros(self.shape)
        for (rows, columns), difference in targets:
            at_hint = lab[:, rows, columns].reshape(3, -1).mean(axis=1)
            kernel = np.exp(scale * ((lab - at_hint[:, None, None]) ** 2).sum(axis=0))
            moved += np.asarray(difference, dtype=np.float64)[:, None, None] * kernel
            likeness += kernel
        return moved / (likeness + self.settings.prior)
