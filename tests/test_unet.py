"""rfviz's own U-Net: torch's shapes, every traced span against where torch's gradients land,
and margins whose tiles equal the whole image (and one grid cell less, or a start off the
grid, far from it)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rfviz import receptive_field, tile_margins, trace
from rfviz.roundoff import ROUND_OFF, relative_error
from rfviz.tiling import Margins, tiled_forward
from rfviz.unet import UNet

GAP = 1e6


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


def linear(net: nn.Module) -> nn.Module:
    """float64, eval, positive weights, zero biases, average pools for the max pool: on
    inputs ≥ 0 every ReLU passes its input, so the network is linear there and its Jacobian
    has no cancelling paths (a max pool's gradient would go to one winner per window)."""
    net = net.double().eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.uniform_(0.1, 1.0) if name.endswith("weight") else p.zero_()
    net.pool = nn.AvgPool2d(2)
    return net


def gradient_spans(net: nn.Module, size: tuple[int, int]) -> list[list[tuple[int, int]]]:
    """Per axis and output unit, the first and last input row (column) the unit's gradient
    reaches. The network being linear on inputs ≥ 0, its output for an input that is 1 on
    row r and 0 elsewhere is the sum of the Jacobian's columns of that row: nonzero at a unit
    exactly when the unit's gradient reaches row r. One batched pass per axis."""
    spans = []
    for axis, n in enumerate(size):
        probes = torch.zeros(n, 1, *size, dtype=torch.float64)
        for r in range(n):
            probes[(r, 0, r) if axis == 0 else (r, 0, slice(None), r)] = 1.0
        with torch.no_grad():
            reached = net(probes).ne(0).any(1).any(2 - axis)  # (probe row, output unit)
        spans.append([(int(hits[0]), int(hits[-1])) for hits in
                      (torch.nonzero(reached[:, u]).flatten() for u in range(n))])
    return spans


@pytest.mark.parametrize(("depth", "size"), [(1, (24, 20)), (2, (64, 56)), (3, (128, 120))])
def test_every_units_span_is_where_the_gradient_lands(depth, size):
    net = linear(UNet(in_channels=1, classes=1, width=2, depth=depth))
    field = receptive_field(net, input_size=size)
    assert field.per_unit and field.h.period == field.w.period == 2**depth
    for axis, n, measured in zip(field.axes, size, gradient_spans(net, size), strict=True):
        inside = [u for u in range(n) if axis.span(u)[0] >= 0 and axis.span(u)[1] <= n - 1]
        for u in inside:
            assert axis.span(u) == measured[u], f"unit {u}"
        # at least one whole period of phases, in a row (the borders clip spans)
        assert len(inside) >= 2**depth and inside == list(range(inside[0], inside[-1] + 1))


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
    net = UNet(width=4, depth=3).double().eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.uniform_(0.1, 1.0) if name.endswith("weight") else p.zero_()
    return net, tile_margins(net, input_size=(160, 160))


def tiled_error(net, image, tile, margins) -> float:
    with torch.no_grad():
        return relative_error(tiled_forward(net, image, margins, tile), net(image))


def test_tiles_equal_the_whole_image_and_one_grid_cell_less_does_not(unet):
    net, margins = unet
    image = torch.randn(2, 3, 160, 96, dtype=torch.float64)
    exact = tiled_error(net, image, (48, 40), margins)
    assert exact <= ROUND_OFF
    g = margins.grid[0]
    less_before = Margins(tuple(b - g for b in margins.before_aligned), margins.after,
                          margins.stride, margins.grid)
    less_after = Margins(margins.before, tuple(a - g for a in margins.after), margins.stride,
                         margins.grid)
    for short in (less_before, less_after):
        assert tiled_error(net, image, (48, 40), short) >= GAP * ROUND_OFF


def test_a_tile_off_the_grid_is_far_from_the_whole_image(unet):
    net, margins = unet
    image = torch.randn(1, 3, 192, 32, dtype=torch.float64)
    before, after = margins.h.before_aligned, margins.h.after
    errors = []
    for start in (16, 20):  # on the grid of 8, and 4 pixels off it
        keep = slice(before, 128 - after)
        with torch.no_grad():
            tile = net(image[:, :, start:start + 128])[:, :, keep]
            whole = net(image)[:, :, start:start + 128][:, :, keep]
        errors.append(relative_error(tile, whole))
    assert errors[0] <= ROUND_OFF and errors[1] >= GAP * ROUND_OFF


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"width": 0}, r"width must be a positive integer, got 0"),
    ({"depth": 2.0}, r"depth must be a positive integer, got 2.0"),
    ({"classes": True}, r"classes must be a positive integer, got True"),
])
def test_bad_arguments_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNet(**kwargs)
