"""Edge-aware spreading of colour hints over a photo, on top of any model's own colours.

One path through it::

    spread = Propagation(lightness on a grid (h, w), PropagationSettings(reach, edge))   # factorised once
    r = spread.residual([(cells of hint 1, hint ab - model ab there), ...])               # (2, h, w)
    ab = model ab on the grid + r                                                        # hints exact, the rest pulled

The residual r is the smoothest field that equals each hint's difference from the model at the hint, in the
sense of Levin et al. (2004): it minimises sum over neighbouring cells p, q of w_pq (r_p - r_q)^2 plus
lambda sum r_p^2, where w_pq = exp(-(L_p - L_q)^2 / 2 edge^2) lets colour flow along similar lightness and stop
at edges, and lambda pulls it back to the model's own colour away from the hints. With B = lambda I + the
graph Laplacian of w, the solution under hard constraints u_i . r = d_i (u_i: the mean over hint i's cells) is
r = G (U^T G)^-1 d with G = B^-1 U: a sum of each hint's Green's function. B is factorised once per photo
(sparse LU), each new hint costs one triangular solve, and moving or recolouring hints costs none, which is
what makes a click interactive. ``reach`` sets lambda = 1 / (reach x short side)^2: in a flat region a hint's
influence at distance d falls as the screened Poisson equation's Green's function, K0(d / (reach x short side))
(the modified Bessel function: about exp(-d / l) / sqrt(d) beyond l), so reach is how far, as a fraction of the
photo's short side, a hint holds most of its colour where no edge stops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

Cells = tuple[slice, slice]  # (rows, columns) of the grid a hint covers
_CONFLICT = 1e-6  # added to the constraint system's diagonal, relative to it: hints on the same cells average


@dataclass(frozen=True)
class PropagationSettings:
    """How far a hint reaches (its screening length, a fraction of the short side), how strongly lightness edges
    stop it (Lab L units: a smaller edge stops colour at fainter edges) and the short side of the grid it is
    solved on."""

    reach: float = 1.0  # both chosen on sample-train's fold 0 with simulated hints (docs/guided.md)
    edge: float = 5.0
    grid: int = 256

    def __post_init__(self) -> None:
        if not 0 < self.reach <= 100:
            raise ValueError(f"reach must be in (0, 100], got {self.reach}")
        if not 0 < self.edge <= 100:
            raise ValueError(f"edge must be in (0, 100] Lab units, got {self.edge}")
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
        self.settings = settings
        factor = sparse_linalg.splu(system_matrix(lightness, settings), permc_spec="MMD_AT_PLUS_A",
                                    diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        self._solve = factor.solve
        self._green: dict[tuple[int, int, int, int], np.ndarray] = {}

    def green(self, cells: Cells) -> np.ndarray:
        """B^-1 u for the mean over ``cells`` (h w,), computed once per set of cells."""
        rows, columns = cells
        key = (rows.start, rows.stop, columns.start, columns.stop)
        if key not in self._green:
            u = np.zeros(self.shape)
            u[rows, columns] = 1.0 / ((rows.stop - rows.start) * (columns.stop - columns.start))
            self._green[key] = self._solve(u.ravel())
        return self._green[key]

    def residual(self, targets: Sequence[tuple[Cells, np.ndarray]]) -> np.ndarray:
        """(2, h, w): the smoothest field whose mean over each target's cells is its difference (2,)."""
        if not targets:
            return np.zeros((2, *self.shape))
        green = np.stack([self.green(cells) for cells, _ in targets], axis=1)  # (h w, k)
        means = np.stack([green.reshape(*self.shape, -1)[rows, columns].reshape(-1, len(targets)).mean(0)
                          for (rows, columns), _ in targets])  # (k, k): u_i . g_j
        means += _CONFLICT * np.diag(np.diag(means))
        weights = np.linalg.solve(means, np.stack([np.asarray(d, dtype=np.float64) for _, d in targets]))  # (k, 2)
        return (green @ weights).T.reshape(2, *self.shape)
