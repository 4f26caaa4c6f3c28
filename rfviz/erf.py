"""Statistics of an effective receptive field: a map of |gradient| treated as a distribution.

Luo et al. (2016) found that the influence of input pixels on a unit is concentrated in a
roughly Gaussian centre whose width grows like √n with the depth n, while the theoretical
field grows like n. The statistics (:func:`spread`, :func:`mass_box`, :func:`erf_stats`) are
plain numpy, measured on maps from :func:`rfviz.probe.effective_field`; the small networks
lesson 6 measures them on (:func:`conv_stack`, :func:`small_networks`) are torch modules.

>>> import numpy as np
>>> erf = np.outer([1, 2, 1], [1, 2, 1]) / 16.0        # two taps of [1 1] convolved: binomial
>>> spread(erf)                                         # std per axis: sqrt(2 * 1/4)
(0.707..., 0.707...)
>>> mass_box(erf, 0.25), mass_box(erf, 0.5)              # the centre pixel alone holds 4/16
((1, 1, 1), (0, 0, 3))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .probe import effective_field

__all__ = ["ErfStats", "box_mass", "conv_stack", "erf_stats", "mass_box", "small_networks",
           "spread", "stack_erf"]


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


@dataclass(frozen=True)
class ErfStats:
    """What lesson 6's tables show of one map, along the rows (in pixels): the standard
    deviation, ``support`` = first to last row with a nonzero gradient (rows between may be
    zero: a dilated network skips some), and the widths of the smallest centred squares holding
    50% and 90% of its mass."""

    std: float
    support: int
    box50: int
    box90: int


def erf_stats(erf) -> ErfStats:
    """The :class:`ErfStats` of a map.

    >>> erf_stats(np.outer([0, 1, 6, 1, 0], [1, 6, 1]))   # rows 1…3; the centre holds 36/64
    ErfStats(std=0.5, support=3, box50=1, box90=3)
    """
    weights = _normalised(erf)
    rows = np.nonzero(weights.sum(axis=1))[0]
    return ErfStats(std=spread(weights)[0], support=int(rows[-1] - rows[0] + 1),
                    box50=mass_box(weights, 0.5)[2], box90=mass_box(weights, 0.9)[2])


def _whole(name: str, value, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise ValueError(f"{name}={value!r} is out of range: valid a whole number ≥ {least}")
    return int(value)


def conv_stack(n: int, channels: int = 1, uniform: bool = True, seed: int = 0) -> nn.Sequential:
    """``n`` convolutions of 3 × 3 (padding 1, no bias), ``channels`` in and out, in float64.

    ``uniform``: every weight 1, so that the gradient of a unit is the n-fold convolution of
    a 3 × 3 box; else torch's random initialisation, drawn with ``seed`` (torch's global random
    state is left as it was).

    >>> stack = conv_stack(2)
    >>> len(stack), stack[0].weight.sum().item()          # 3 * 3 weights of 1
    (2, 9.0)
    """
    n, channels = _whole("n", n), _whole("channels", channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(n)]
    for layer in layers:
        if uniform:
            nn.init.constant_(layer.weight, 1.0)
    return nn.Sequential(*layers).double()


def stack_erf(n: int, size: int | None = None, *, samples: int = 2, **stack) -> np.ndarray:
    """The effective receptive field of the centre unit of :func:`conv_stack` ``(n, **stack)``
    on a ``size`` × ``size`` input (default ``2n + 11``: the field, 2n + 1 pixels, and 5 pixels
    around it), averaged over ``samples`` random inputs (a stack of convolutions alone is
    linear: its gradient is the same for every input, so ``samples`` only matters once the
    stack has non-linear layers).

    >>> stack_erf(1)[5:8, 5:8].round(3)                      # one layer: 9 pixels, 1/9 each
    array([[0.111, 0.111, 0.111],
           [0.111, 0.111, 0.111],
           [0.111, 0.111, 0.111]])
    """
    n = _whole("n", n)
    size = 2 * n + 11 if size is None else size
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 2 * n + 1:
        raise ValueError(f"size={size!r} is out of range: valid a whole number ≥ {2 * n + 1}, "
                         f"the field of n={n} layers")
    return effective_field(conv_stack(n, **stack), None, (size, size), samples=samples,
                           unit=(size // 2, size // 2))


def small_networks(channels: int = 8, seed: int = 0) -> dict[str, nn.Sequential]:
    """Five small networks of four layers, for comparing what stride, pooling, dilation and
    large kernels do to the field and the ERF. Each starts with a 1 × 1 convolution from one
    input channel to ``channels``; all are float64 with torch's random initialisation, each
    network drawn with ``seed`` on its own (torch's global random state is left as it was).

    >>> nets = small_networks()
    >>> list(nets)
    ['plain 3×3', 'stride 2 in layer 2', 'max pool after layer 2', 'dilation 2', \
'7×7 depthwise + 1×1']
    >>> nets["dilation 2"][1]                            # a 3×3 kernel, taps 2 pixels apart
    Conv2d(8, 8, kernel_size=(3, 3), stride=(1, 1), padding=(2, 2), dilation=(2, 2))
    """
    c = _whole("channels", channels)

    def conv(kernel=3, padding=1, **kwargs):
        return nn.Conv2d(c, c, kernel, padding=padding, **kwargs)

    designs = {
        "plain 3×3": lambda: [conv(), conv(), conv(), conv()],
        "stride 2 in layer 2": lambda: [conv(), conv(stride=2), conv(), conv()],
        "max pool after layer 2": lambda: [conv(), conv(), nn.MaxPool2d(2), conv(), conv()],
        "dilation 2": lambda: [conv(padding=2, dilation=2) for _ in range(4)],
        "7×7 depthwise + 1×1": lambda: [conv(7, 3, groups=c), conv(1, 0),
                                        conv(7, 3, groups=c), conv(1, 0)],
    }
    networks = {}
    for name, layers in designs.items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            networks[name] = nn.Sequential(nn.Conv2d(1, c, 1), *layers()).double()
    return networks
