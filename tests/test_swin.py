"""torchvision's Swin: window attention and patch merging, every unit against torch's
Jacobian (attention is not linear, so the gradient oracle is autograd's Jacobian itself)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from builders import assert_exact_and_wrong_ones_far_above, tiled_error
from torch import nn
from torchvision.models.swin_transformer import (
    PatchMerging,
    ShiftedWindowAttention,
    ShiftedWindowAttentionV2,
)

from rfviz import receptive_field, tile_margins


class ChannelsLast(nn.Module):
    """A convolution, then ``body`` on N, H, W, C tensors (as torchvision's Swin), back to
    N, C, H, W."""

    def __init__(self, *body):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return self.body(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def jacobian_spans(model: nn.Module, size: tuple[int, int]) -> dict:
    """Every output unit's bounding box, per axis, of the input pixels with a nonzero
    derivative (float64, random input: every path active)."""
    model = model.double().eval()
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda t: model(t)[0], x)[..., 0, :, :, :]
    reach = jacobian.ne(0).any(0).any(-3)  # (out_h, out_w, in_h, in_w)
    spans = {}
    for unit in ((h, w) for h in range(reach.shape[0]) for w in range(reach.shape[1])):
        rows = torch.nonzero(reach[unit].any(1)).flatten()
        cols = torch.nonzero(reach[unit].any(0)).flatten()
        spans[unit] = ((int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1])))
    return spans


@pytest.mark.parametrize("attention", [ShiftedWindowAttention, ShiftedWindowAttentionV2])
@pytest.mark.parametrize("size, window, shift", [
    ((12, 12), [4, 4], [0, 0]),
    ((12, 12), [4, 4], [2, 2]),  # shifted: the last window wraps around to the first rows
    ((10, 7), [4, 4], [2, 2]),  # padded to whole windows; W: one window covers it, no shift
    ((9, 9), [3, 3], [1, 1]),
])
def test_window_attention_reads_its_whole_window_as_torch_says(attention, size, window,
                                                               shift):
    net = ChannelsLast(attention(8, window, shift, num_heads=2))
    field = receptive_field(net, None, size)
    assert field.per_unit
    for unit, spans in jacobian_spans(net, size).items():
        expected = field.span(unit)
        clipped = tuple((max(a, 0), min(b, n - 1)) for (a, b), n in zip(expected, size,
                                                                         strict=True))
        assert clipped == spans, f"unit {unit}: rfviz {expected}, torch {spans}"


@pytest.mark.parametrize("size", [(8, 8), (9, 7)])
def test_patch_merging_is_a_window_of_two_as_torch_says(size):
    net = ChannelsLast(ShiftedWindowAttention(8, [2, 2], [1, 1], num_heads=2), PatchMerging(8))
    field = receptive_field(net, None, size)
    for unit, spans in jacobian_spans(net, size).items():
        expected = field.span(unit)
        clipped = tuple((max(a, 0), min(b, n - 1)) for (a, b), n in zip(expected, size,
                                                                         strict=True))
        assert clipped == spans, f"unit {unit}: rfviz {expected}, torch {spans}"



def test_tiles_of_a_window_block_start_on_the_window_grid():
    # Windows of 4 units 1 pixel apart: a tile must hold whole windows, so the grid is 4 (the
    # spans' jump alone, 1, would let a tile cut a window). Torch is the oracle: tiled equals
    # whole within float64 round-off on the grid, far above it a pixel off the grid.
    torch.manual_seed(0)
    net = ChannelsLast(ShiftedWindowAttention(8, [4, 4], [0, 0], num_heads=2)).double().eval()
    size = (24, 24)
    margins = tile_margins(net, input_size=size)
    assert margins.grid == (4, 4)
    image = torch.randn(2, 2, *size, dtype=torch.float64)
    off_grid = dataclasses.replace(margins, grid=(1, 1))  # as if the jump were the grid
    assert_exact_and_wrong_ones_far_above(
        tiled_error(net, image, (8, 12), margins),
        off_grid=tiled_error(net, image, (9, 12), off_grid))
