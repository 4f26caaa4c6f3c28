"""rfviz's own U-Net: torch's shapes, every traced span against where torch's gradients land,
and margins whose tiles equal the whole image (and one grid cell less, or a start off the
grid, far from it)."""

from __future__ import annotations

import pytest
import torch
from builders import (
    GAP,
    assert_every_unit_exact,
    one_step_less_before,
    one_tile_error,
    positive,
    shrink,
    tiled_error,
)
from torch import nn

from rfviz import tile_margins, trace
from rfviz.roundoff import ROUND_OFF
from rfviz.unet import UNet


@pytest.mark.parametrize(("width", "depth", "size"), [
    (8, 3, (64, 48)), (4, 1, (6, 10)), (4, 2, (36, 20)), (2, 4, (32, 48))])
def test_every_traced_shape_is_torchs(width, depth, size):
    net = UNet(in_channels=2, classes=3, width=width, depth=depth).eval()
    shapes = {}  # a module's first call (the pool is called at every level: "pool", "pool@1")

    def record(name):
        def hook(module, inputs, out):
            shapes.setdefault(name, tuple(out.shape[1:]))  # returns None: the output stays
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in net.named_modules() if name]
    with torch.no_grad():
        out = net(torch.zeros(1, 2, *size))
    for hook in hooks:
        hook.remove()
    assert out.shape == (1, 3, *size)  # the input's size: padding 1 in every 3×3 conv
    rows = {row.name: row.shape for row in trace(net, size)}
    assert rows["head"] == (3, *size)
    assert {name: shape for name, shape in shapes.items() if name in rows} == {
        name: shape for name, shape in rows.items() if name in shapes}
    assert f"down.{depth}.0" in rows and f"up.{depth - 1}" in rows


@pytest.mark.parametrize(("depth", "size"), [(1, (24, 20)), (2, (64, 56)), (3, (128, 120))])
def test_every_units_span_is_where_the_gradient_lands(depth, size):
    net = UNet(in_channels=1, classes=1, width=2, depth=depth)
    net.pool = nn.AvgPool2d(2)  # a max pool's gradient would go to one winner per window
    field = assert_every_unit_exact(net, (1, 1, *size))  # a whole period of phases, in a row
    assert field.per_unit and field.h.period == field.w.period == 2**depth


def first_pixel_of_a_cells_first_unit(depth: int) -> int:
    """By hand: the decoder's two 3×3 convolutions per level reach 2 units back, each
    transposed convolution halves the unit index (floor); at the bottom the encoder's field
    starts ``2 * (1 + 2 + … + 2**depth)`` pixels before its unit (two 1-pixel convs per level)."""
    unit = 0
    for _ in range(depth):
        unit = (unit - 2) // 2
    return unit * 2**depth - 2 * (2 ** (depth + 1) - 1)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_margins_and_grid_by_hand(depth):
    margins = tile_margins(UNet(width=2, depth=depth), input_size=(2**depth * 16,) * 2)
    expected = -first_pixel_of_a_cells_first_unit(depth)  # 8, 22, 46, 94
    assert margins.grid == (2**depth,) * 2 and margins.stride == (1, 1)
    assert margins.before == margins.after == (expected, expected)  # the U-Net is symmetric


@pytest.fixture(scope="module")
def unet():
    """Positive weights, zero biases: with signed random weights the pixels at the edge of the
    margins (they reach the output only through the bottom level) weigh ~1e-8 of it, and a
    grid cell less margin would hide below GAP times the round-off."""
    torch.manual_seed(0)
    net = positive(UNet(width=4, depth=3))
    return net, tile_margins(net, input_size=(160, 160))


def test_tiles_equal_the_whole_image_and_one_grid_cell_less_does_not(unet):
    net, margins = unet
    image = torch.randn(2, 3, 160, 96, dtype=torch.float64)
    assert tiled_error(net, image, (48, 40), margins) <= ROUND_OFF
    for short in (one_step_less_before(margins), shrink(margins, after=margins.grid[0])):
        assert tiled_error(net, image, (48, 40), short) >= GAP * ROUND_OFF


def test_a_tile_off_the_grid_is_far_from_the_whole_image(unet):
    net, margins = unet
    image = torch.randn(1, 3, 192, 32, dtype=torch.float64)
    before, after = margins.h.before_aligned, margins.h.after
    # on the grid of 8, and 4 pixels off it
    assert one_tile_error(net, image, 16, 128, before, after) <= ROUND_OFF
    assert one_tile_error(net, image, 20, 128, before, after) >= GAP * ROUND_OFF


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"width": 0}, r"width must be a positive integer, got 0"),
    ({"depth": 2.0}, r"depth must be a positive integer, got 2.0"),
    ({"classes": True}, r"classes must be a positive integer, got True"),
])
def test_bad_arguments_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNet(**kwargs)
