"""split_error_map: lesson 5's split-and-stitch experiment on tiny networks with known margins."""

import pytest
import torch
from torch import nn

from rfviz import tile_margins
from rfviz.roundoff import ROUND_OFF
from rfviz.split import split_error_map

WRONG = 1e6 * ROUND_OFF  # a missing pixel of margin: many orders of magnitude above round-off


def stride_one_net() -> nn.Sequential:
    # field 3 + (5 - 1) = 7 rows, effective padding 1: a feature row i sees image rows
    # i - 1 … i + 5, so the bottom tile needs 1 row above the cut and the top tile 5 below it
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 5)).double()


def stride_two_net() -> nn.Sequential:
    # field 3 + (3 - 1) * 2 = 7, stride 2, padding 1 + 1 * 2 = 3: 3 before, 7 - 2 - 3 = 2 after
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 3, 3, padding=1)).double()


def image(height=24, width=10) -> torch.Tensor:
    return torch.randn(1, 1, height, width, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(1))


def test_the_known_margins_are_what_tile_margins_gives():
    # torch's tracer and the hand computation above agree before the experiment relies on them
    one, two = (tile_margins(net, None, (24, 10)).h for net in (stride_one_net(), stride_two_net()))
    assert (one.before, one.after, one.stride) == (1, 5, 1)
    assert (two.before, two.after, two.stride, two.before_aligned) == (3, 2, 2, 4)


@pytest.mark.parametrize("cut", [6, 10, 13])
def test_exact_margins_give_round_off_and_one_less_gives_far_more(cut):
    net, x = stride_one_net(), image()
    exact = split_error_map(net, x, cut, margin_top=5, margin_bottom=1, stride=1)
    assert exact.shape == (24 - 4, 10 - 4)
    assert exact.max() < ROUND_OFF
    # one row short below the cut: only the top tile's last feature row is wrong
    short_top = split_error_map(net, x, cut, margin_top=4, margin_bottom=1, stride=1)
    assert short_top[cut - 1].max() > WRONG
    assert short_top[:cut - 1].max() < ROUND_OFF and short_top[cut:].max() < ROUND_OFF
    # no row above the cut: only the bottom tile's first feature row is wrong
    short_bottom = split_error_map(net, x, cut, margin_top=5, margin_bottom=0, stride=1)
    assert short_bottom[cut].max() > WRONG
    assert short_bottom[:cut].max() < ROUND_OFF and short_bottom[cut + 1:].max() < ROUND_OFF


def test_stride_two_the_bottom_margin_rounds_up_to_the_grid():
    net, x = stride_two_net(), image()
    cut = 12  # feature rows 0 … 5 from the top tile
    assert split_error_map(net, x, cut, margin_top=2, margin_bottom=4, stride=2).max() < ROUND_OFF
    assert split_error_map(net, x, cut, margin_top=1, margin_bottom=4, stride=2).max() > WRONG
    # 3 rows above the cut are needed, the grid allows 2 or 4: 2 is one step too few
    errors = split_error_map(net, x, cut, margin_top=2, margin_bottom=2, stride=2)
    assert errors[cut // 2].max() > WRONG and errors[:cut // 2].max() < ROUND_OFF


def test_a_precomputed_whole_gives_the_same_map():
    net, x = stride_one_net(), image()
    with torch.no_grad():
        whole = net(x)
    a = split_error_map(net, x, 10, 4, 1, stride=1)
    b = split_error_map(net, x, 10, 4, 1, stride=1, whole=whole)
    assert (a == b).all()


def test_a_zero_feature_map_gives_absolute_errors():
    zero = nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    nn.init.zeros_(zero.weight)
    assert split_error_map(zero, image(), 8, 0, 0, stride=1).max() <= ROUND_OFF  # not NaN


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(cut=7, margin_top=2, margin_bottom=4, stride=2), r"cut=7 is out of range: valid a "
                                                           r"multiple of stride=2"),
    (dict(cut=0, margin_top=2, margin_bottom=0, stride=1), r"cut=0 is out of range"),
    (dict(cut=24, margin_top=0, margin_bottom=2, stride=1), r"cut=24 is out of range"),
    (dict(cut=12, margin_top=13, margin_bottom=4, stride=2), r"margin_top=13 is out of range: "
                                                             r"valid 0 … 12"),
    (dict(cut=12, margin_top=-1, margin_bottom=4, stride=2), r"margin_top=-1 is out of range"),
    (dict(cut=12, margin_top=2, margin_bottom=3, stride=2), r"margin_bottom=3 is out of range: "
                                                            r"valid a multiple of stride=2"),
    (dict(cut=12, margin_top=2, margin_bottom=14, stride=2), r"margin_bottom=14 is out of range"),
    (dict(cut=12, margin_top=2, margin_bottom=4, stride=0), r"stride=0 is out of range"),
    (dict(cut=12, margin_top=2, margin_bottom=4, stride=1), r"stitched features have shape"),
])
def test_bad_input_names_the_parameter_and_the_valid_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_error_map(stride_two_net(), image(), **kwargs)


def test_an_image_without_a_batch_axis_is_refused():
    with pytest.raises(ValueError, match=r"image must have shape \(1, C, H, W\)"):
        split_error_map(stride_one_net(), image()[0], 10, 5, 1, stride=1)
