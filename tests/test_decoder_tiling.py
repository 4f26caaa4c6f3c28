"""Exact tiles for networks whose output has the input's size (a U-Net, fcn_resnet50).

Their output stride is 1, but tiles must start on the grid of the deepest downsampling, or
the pooling windows inside fall elsewhere than in the whole image. As in test_tiling: exact
means within round-off in float64, and one pixel less margin, or a start off the grid, gives
an error at least GAP times larger.
"""

import pytest
import torch
import torchvision
from builders import (
    assert_exact_and_wrong_ones_far_above,
    one_step_less_before,
    one_tile_error,
    shrink,
    tiled_error,
)

from rfviz.roundoff import ROUND_OFF
from rfviz.tiling import tile_margins, tiled_forward


@pytest.fixture(scope="module")
def unet():
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=2, encoder_depth=3,
                     decoder_channels=(32, 16, 8))
    return model, model.double().eval()


def test_unet_margins_and_grid_come_from_the_graph(unet):
    model, _ = unet
    margins = tile_margins(model)
    assert margins.stride == (1, 1) and margins.grid == (8, 8)  # three stride-2 stages
    # a cell's first unit reads 65 pixels back, its last 58 ahead (the spans tell)
    assert margins.before == (65, 65) and margins.after == (58, 58)


def test_unet_tiles_equal_the_whole_image(unet):
    model, fn = unet
    image = torch.randn(2, 3, 216, 184, dtype=torch.float64)  # not multiples of the tile
    margins = tile_margins(model, input_size=(216, 184))
    tile = (48, 40)
    # Tiles start and end on the grid, so their margins count in grid cells: one cell less
    # before or after is wrong. (Each unit's span is checked to the pixel in test_decoders.)
    assert_exact_and_wrong_ones_far_above(
        tiled_error(fn, image, tile, margins),
        one_grid_cell_less_before=tiled_error(fn, image, tile, one_step_less_before(margins)),
        one_grid_cell_less_after=tiled_error(fn, image, tile, shrink(margins, after=8)))


def test_a_resnet_unet_of_depth_5_tiles_on_the_grid_of_32():
    # The default U-Net: five stride-2 stages, so tiles start and end on multiples of 32.
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=1,
                     decoder_channels=(32, 16, 8, 8, 8))
    fn = model.double().eval()
    size = (704, 64)  # 22 cells of 32 along the height: tiles of 4 cells, one across
    margins = tile_margins(model, input_size=size)
    assert margins.stride == (1, 1) and margins.grid == (32, 32)
    image = torch.randn(1, 3, *size, dtype=torch.float64)
    tile = (128, 64)
    assert_exact_and_wrong_ones_far_above(
        tiled_error(fn, image, tile, margins),
        one_grid_cell_less_before=tiled_error(fn, image, tile, one_step_less_before(margins)),
        one_grid_cell_less_after=tiled_error(fn, image, tile, shrink(margins, after=32)))


def test_unet_tiles_must_start_on_the_grid(unet):
    model, fn = unet
    image = torch.randn(1, 3, 240, 64, dtype=torch.float64)
    m = tile_margins(model, input_size=(240, 64)).h
    length, keep = 160, (m.before_aligned, 64)  # 160: the U-Net accepts multiples of 8
    assert_exact_and_wrong_ones_far_above(
        one_tile_error(fn, image, 48, length, *keep),
        four_pixels_off_the_grid=one_tile_error(fn, image, 52, length, *keep))


def test_an_image_off_the_grid_is_refused_with_what_would_do(unet):
    model, fn = unet
    margins = tile_margins(model)
    with pytest.raises(ValueError, match=r"image height=213 is not a multiple of the grid 8.*"
                                         r"valid: a multiple of 8, e.g. 208 or 216"):
        tiled_forward(fn, torch.zeros(1, 3, 213, 64, dtype=torch.float64), margins, (48, 64))
    with pytest.raises(ValueError, match=r"tile=36 is not a positive multiple of the grid 8; "
                                         r"valid: e.g. 32 or 40"):
        tiled_forward(fn, torch.zeros(1, 3, 208, 64, dtype=torch.float64), margins, (36, 64))


@pytest.fixture(scope="module")
def fcn():
    torch.manual_seed(0)
    model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None)
    model = model.double().eval()
    return model, lambda x: model(x)["out"]


def test_fcn_resnet50_tiles_equal_the_whole_image(fcn):
    # Tall and narrow to keep float64 affordable: tiles along the height, one along the width.
    model, fn = fcn
    margins = tile_margins(model, input_size=(640, 32))
    assert margins.grid == (8, 8) and margins.stride == (1, 1)
    image = torch.randn(1, 3, 640, 32, dtype=torch.float64)
    m = margins.h
    exact = tiled_error(fn, image, (128, 32), margins)
    assert_exact_and_wrong_ones_far_above(
        exact, four_pixels_off_the_grid=one_tile_error(fn, image, 44, 560, m.before, m.after))
    # In an untrained ResNet-50 the pixels at the edge of a 451-pixel field weigh about 1e-8
    # of the output: a grid cell less margin is 1e4 (not 1e6) times the round-off bound.
    for short in (one_step_less_before(margins), shrink(margins, after=8)):
        assert tiled_error(fn, image, (128, 32), short) >= 1e4 * ROUND_OFF


def test_a_layer_whose_units_are_a_fraction_of_a_pixel_apart_cannot_be_tiled():
    from torch import nn

    from rfviz.field import FieldError

    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Upsample(scale_factor=2))
    with pytest.raises(FieldError, match=r"along the height: its units are 1/2 pixel apart"):
        tile_margins(net, input_size=(32, 32))
