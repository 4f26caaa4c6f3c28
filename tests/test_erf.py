"""Effective-receptive-field statistics against closed forms and brute force."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from rfviz import receptive_field
from rfviz.erf import (
    box_mass,
    conv_stack,
    erf_stats,
    mass_box,
    small_networks,
    spread,
    stack_erf,
)
from rfviz.probe import effective_field, measured_field


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


def test_conv_stack_uniform_is_the_hand_built_stack():
    stack, hand = conv_stack(3), uniform_stack(3)
    x = torch.randn(1, 1, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(stack(x), hand(x))
    assert receptive_field(stack, input_size=9).h.size == 2 * 3 + 1


def test_conv_stack_random_is_reproducible_and_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = conv_stack(2, channels=4, uniform=False, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    b = conv_stack(2, channels=4, uniform=False, seed=1)
    c = conv_stack(2, channels=4, uniform=False, seed=2)
    assert torch.equal(a[1].weight, b[1].weight) and not torch.equal(a[1].weight, c[1].weight)
    assert a[0].weight.dtype == torch.float64 and a[0].bias is None


@pytest.mark.parametrize("n", [1, 3, 6])
def test_stack_erf_is_the_closed_form_at_any_input_size(n):
    default = stack_erf(n)
    assert default.shape == (2 * n + 11,) * 2
    assert spread(default) == pytest.approx((math.sqrt(2 * n / 3),) * 2, rel=1e-9)
    # on a larger input, the same map, padded by 3 pixels on each side
    larger = stack_erf(n, size=2 * n + 17)
    np.testing.assert_allclose(larger[3:-3, 3:-3], default, rtol=1e-12, atol=1e-15)
    assert larger[:3].sum() == larger[-3:].sum() == 0


def test_small_networks_fields_by_hand_by_tracing_and_by_gradient():
    # 1x1, then four layers; each 3x3 adds 2 * (product of the strides before it)
    by_hand = {
        "plain 3×3": 1 + 4 * 2,
        "stride 2 in layer 2": 1 + 2 + 2 + 2 * 2 + 2 * 2,
        "max pool after layer 2": 1 + 2 + 2 + (2 - 1) + 2 * 2 + 2 * 2,
        "dilation 2": 1 + 4 * 2 * 2,
        "7×7 depthwise + 1×1": 1 + 6 + 0 + 6 + 0,
    }
    networks = small_networks()
    assert list(networks) == list(by_hand)
    for name, net in networks.items():
        assert receptive_field(net, input_size=40).h.size == by_hand[name], name
        assert measured_field(net, input_size=(40, 40)).field.size == (by_hand[name],) * 2, name


def test_small_networks_are_reproducible_one_by_one():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a, b = small_networks(), small_networks()
    assert torch.equal(torch.get_rng_state(), before)
    for name in a:
        for p, q in zip(a[name].parameters(), b[name].parameters(), strict=True):
            assert torch.equal(p, q) and p.dtype == torch.float64
    # each network is drawn on its own: its first layer does not depend on the others
    assert torch.equal(a["plain 3×3"][0].weight, a["dilation 2"][0].weight)
    assert small_networks(channels=4)["7×7 depthwise + 1×1"][1].groups == 4


def test_erf_stats_of_four_uniform_layers_by_hand():
    # One axis of 4 uniform 3x3 layers: [1 1 1] convolved 4 times = (1,4,10,16,19,16,10,4,1)/81,
    # variance 4 * 2/3. Centred boxes: 3 rows hold 51/81, 5 hold 71/81, 7 hold 79/81 per axis,
    # so in 2D (51/81)^2 = 0.40 < 0.5 <= (71/81)^2 = 0.77 and (79/81)^2 = 0.95 >= 0.9.
    stats = erf_stats(stack_erf(4))
    assert math.isclose(stats.std, math.sqrt(8 / 3), rel_tol=1e-9)
    assert (stats.support, stats.box50, stats.box90) == (9, 5, 7)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: conv_stack(0), r"n=0 is out of range: valid a whole number ≥ 1"),
    (lambda: conv_stack(2.5), r"n=2.5 is out of range"),
    (lambda: conv_stack(2, channels=0), r"channels=0 is out of range"),
    (lambda: stack_erf(5, size=10), r"size=10 is out of range: valid a whole number ≥ 11"),
    (lambda: small_networks(channels=-1), r"channels=-1 is out of range"),
    (lambda: erf_stats(np.zeros((3, 3))), r"non-negative values with a positive sum"),
])
def test_bad_arguments_name_the_parameter_and_the_valid_range(call, message):
    with pytest.raises(ValueError, match=message):
        call()
