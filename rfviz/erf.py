"""Statistics of an effective receptive field: a map of |gradient| treated as a distribution.

Luo et al. (2016) found that the influence of input pixels on a unit is concentrated in a
roughly Gaussian centre whose width grows like √n with the depth n, while the theoretical
field grows like n. These functions measure that on maps from :func:`rfviz.probe.effective_field`.
Plain numpy; no torch.

>>> import numpy as np
>>> erf = np.outer([1, 2, 1], [1, 2, 1]) / 16.0        # two taps of [1 1] convolved: binomial
>>> spread(erf)                                         # std per axis: sqrt(2 * 1/4)
(0.707..., 0.707...)
>>> mass_box(erf, 0.25), mass_box(erf, 0.5)              # the centre pixel alone holds 4/16
((1, 1, 1), (0, 0, 3))
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_mass", "mass_box", "spread"]


def _normalised(erf) -> np.ndarray:
    weights = np.asarray(erf, dtype=np.float64)
    if weights.ndim != 2 or weights.min() < 0 or weights.sum() <= 0:
        raise ValueError(f"erf must be a 2D map of non-negative values with a positive sum, "
                         f"got shape {weights.shape}")
    return weights / weights.sum()


def spread(erf) -> tuple[float, float]:
    """Standard deviation (in pixels) of the map along rows and along columns."""
    weights = _normalised(erf)
    stds = []
    for axis in (1, 0):  # marginal over columns gives the row distribution, and vice versa
        marginal = weights.sum(axis=axis)
        positions = np.arange(len(marginal))
        mean = (marginal * positions).sum()
        stds.append(float(np.sqrt((marginal * (positions - mean) ** 2).sum())))
    return stds[0], stds[1]


def box_mass(erf, top: int, left: int, size: int) -> float:
    """Fraction of the map's mass inside the square ``size`` × ``size`` box at (top, left)."""
    weights = _normalised(erf)
    rows = slice(max(top, 0), max(top + size, 0))
    cols = slice(max(left, 0), max(left + size, 0))
    return float(weights[rows, cols].sum())


def mass_box(erf, fraction: float) -> tuple[int, int, int]:
    """The smallest odd square box centred on the map's peak holding ``fraction`` of its mass:
    ``(top, left, size)``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction} is out of range: valid 0 < fraction ≤ 1")
    weights = _normalised(erf)
    row, col = np.unravel_index(np.argmax(weights), weights.shape)
    for half in range(max(weights.shape)):
        size = 2 * half + 1
        if box_mass(weights, row - half, col - half, size) >= fraction - 1e-12:
            return int(row - half), int(col - half), size
    raise AssertionError("unreachable: the whole map holds all of its mass")
