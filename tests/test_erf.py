"""Effective-receptive-field statistics against closed forms and brute force."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from rfviz.erf import box_mass, mass_box, spread
from rfviz.probe import effective_field


def uniform_stack(n: int) -> nn.Sequential:
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(n)])
    for layer in stack:
        nn.init.constant_(layer.weight, 1.0)
    return stack.double()


@pytest.mark.parametrize("n", [1, 2, 4, 8, 12])
def test_uniform_stack_spread_is_sqrt_n_times_one_tap(n):
    # n uniform 3-taps: the gradient is the n-fold convolution of [1 1 1], whose variance is
    # n times that of one tap, 2/3. So std = sqrt(2n/3), while the field is 2n + 1 wide.
    size = 2 * n + 9
    erf = effective_field(uniform_stack(n), None, torch.ones(1, size, size, dtype=torch.float64),
                          unit=(size // 2, size // 2))
    assert spread(erf) == pytest.approx((math.sqrt(2 * n / 3),) * 2, rel=1e-9)
    assert int((erf.sum(axis=1) > 0).sum()) == 2 * n + 1


def test_spread_of_a_point_is_zero_and_of_two_points_is_half_their_distance():
    point = np.zeros((5, 5))
    point[2, 3] = 1
    assert spread(point) == (0.0, 0.0)
    pair = np.zeros((5, 9))
    pair[2, 0] = pair[2, 8] = 1
    assert spread(pair) == (0.0, 4.0)


def test_mass_box_against_brute_force():
    rng = np.random.default_rng(0)
    erf = np.outer(*(np.exp(-((np.arange(21) - 10) ** 2) / 18),) * 2) + 0.01 * rng.random((21, 21))
    for fraction in (0.5, 0.9, 0.99):
        top, left, size = mass_box(erf, fraction)
        assert box_mass(erf, top, left, size) >= fraction
        assert size == 1 or box_mass(erf, top + 1, left + 1, size - 2) < fraction
        # brute force: no smaller centred box reaches the fraction
        peak = np.unravel_index(np.argmax(erf), erf.shape)
        smallest = min(2 * h + 1 for h in range(11)
                       if erf[max(peak[0] - h, 0):peak[0] + h + 1,
                              max(peak[1] - h, 0):peak[1] + h + 1].sum() / erf.sum() >= fraction)
        assert size == smallest


def test_bad_maps_are_refused():
    with pytest.raises(ValueError, match="non-negative values with a positive sum"):
        spread(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"fraction=1.5 is out of range"):
        mass_box(np.ones((3, 3)), 1.5)
