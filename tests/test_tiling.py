"""Tiled inference against the whole image, run for real: exact margins, and one pixel less.

"Exact" means no margin error, only round-off: tiled vs whole in float64 is within ROUND_OFF
(relative), and one pixel less margin (before - 1, after - 1, one stride less) is at least
GAP times larger. Bit-for-bit equality is not asked for: a convolution's sums run in an order
that depends on the tensor's size, the CPU and the thread count.
"""

import pytest
import torch
import torchvision
from builders import (
    assert_exact_and_wrong_ones_far_above,
    one_step_less_before,
    shrink,
    tiled_error,
)
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from rfviz.field import FieldError, ReceptiveField
from rfviz.tiling import AxisMargins, Margins, plan_axis, tile_margins, tile_plan, tiled_forward
from rfviz.tracing import receptive_field


@pytest.fixture(scope="module")
def stride_one_net():
    # stride 1 and lopsided padding: field 5 + 2 = 7, padding 1 + 2 = 3, so 3 before, 3 after;
    # then kernel 4 padding 0: field 10, padding 3 -> before 3, after 10 - 1 - 3 = 6.
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 5, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=2),
                         nn.Tanh(), nn.Conv2d(4, 3, 4)).double().eval()


def test_margins_come_from_the_field(stride_one_net):
    margins = tile_margins(stride_one_net, input_size=32)
    assert margins == Margins(before=(3, 3), after=(6, 6), stride=(1, 1))


def test_stride_one_margins_are_exact_to_the_pixel(stride_one_net):
    image = torch.randn(2, 2, 45, 38, dtype=torch.float64)
    margins = tile_margins(stride_one_net, input_size=(45, 38))
    assert_exact_and_wrong_ones_far_above(
        tiled_error(stride_one_net, image, (8, 8), margins),
        before_minus_1=tiled_error(stride_one_net, image, (8, 8), shrink(margins, before=1)),
        after_minus_1=tiled_error(stride_one_net, image, (8, 8), shrink(margins, after=1)))


@pytest.fixture(scope="module")
def resnet50_layer3():
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    extractor = create_feature_extractor(model, return_nodes=["layer3"]).double()
    return model, lambda x: extractor(x)["layer3"]


def test_resnet50_layer3_margins_are_asymmetric_and_exact(resnet50_layer3):
    model, fn = resnet50_layer3
    margins = tile_margins(model, "layer3")
    field = receptive_field(model, "layer3")
    assert margins.h.before == field.h.padding and margins.h.stride == field.h.stride
    assert margins.h.after == field.h.size - field.h.stride - field.h.padding
    assert margins.h.before != margins.h.after  # 133 vs 118
    image = torch.rand(1, 3, 352, 288, dtype=torch.float64)
    assert_exact_and_wrong_ones_far_above(
        tiled_error(fn, image, (128, 96), margins),
        after_minus_1=tiled_error(fn, image, (128, 96), shrink(margins, after=1)),
        one_step_less_before=tiled_error(fn, image, (128, 96), one_step_less_before(margins)))


@pytest.mark.parametrize(("length", "outputs", "tile"), [(500, 32, 128), (97, 25, 8),
                                                         (16, 1, 64), (130, 33, 4)])
def test_plan_covers_every_output_once(length, outputs, tile):
    tiles = plan_axis(length, outputs, tile, AxisMargins(7, 5, 4))
    covered = [u for t in tiles for u in range(t.write.start, t.write.stop)]
    assert covered == list(range(outputs))
    for t in tiles:
        assert t.read.start % 4 == 0 and 0 <= t.read.start < t.read.stop <= length
        assert t.keep.stop - t.keep.start == t.write.stop - t.write.start


def test_2d_plan_writes_each_output_exactly_once():
    margins = Margins((5, 3), (4, 2), (4, 2))
    count = torch.zeros(13, 17, dtype=torch.int64)
    for piece in tile_plan((50, 33), (13, 17), (8, 6), margins):
        count[piece.write] += 1
    assert bool((count == 1).all())


def test_batches_and_sizes_that_are_not_multiples_of_the_tile():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                        nn.Conv2d(4, 5, 3, padding=1)).double().eval()
    image = torch.randn(3, 3, 97, 131, dtype=torch.float64)
    margins = tile_margins(net, input_size=(97, 131))
    assert_exact_and_wrong_ones_far_above(
        tiled_error(net, image, (16, 24), margins),
        after_minus_1=tiled_error(net, image, (16, 24), shrink(margins, after=1)),
        one_step_less_before=tiled_error(net, image, (16, 24), one_step_less_before(margins)))


def test_progress_bar_can_be_forced(capsys):
    net = nn.Conv2d(1, 1, 3, padding=1).double()
    image = torch.randn(1, 1, 20, 20, dtype=torch.float64)
    with torch.no_grad():
        tiled_forward(net, image, tile_margins(net, input_size=20), (4, 4), progress=True)
    assert "tiles" in capsys.readouterr().err


def test_bad_input_is_refused_with_what_is_needed():
    net = nn.Conv2d(1, 1, 3, stride=2, padding=1)
    margins = tile_margins(net, input_size=16)
    with pytest.raises(ValueError, match=r"must be a 4D tensor \(N, C, H, W\), got \(16, 16\)"):
        tiled_forward(net, torch.zeros(16, 16), margins, 8)
    with pytest.raises(ValueError, match=r"tile=5 is not a positive multiple of the stride 2; "
                                         r"valid: e.g. 4 or 6"):
        tiled_forward(net, torch.zeros(1, 1, 16, 16), margins, 5)
    with pytest.raises(TypeError, match=r"margins must be the Margins .* from "
                                        r"tile_margins\(model, layer\); got 8"):
        tiled_forward(net, torch.zeros(1, 1, 16, 16), 8)
    pooled = nn.Sequential(net, nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError, match=r"has a global field .* no tiling is exact"):
        tile_margins(pooled, "1", input_size=16)


def test_before_aligned_rounds_up_to_the_stride():
    assert AxisMargins(133, 118, 16).before_aligned == 144
    assert AxisMargins(128, 0, 16).before_aligned == 128
    assert ReceptiveField(267, 16, 133).span(9) == (144 - 133, 144 + 133)  # unit 9 at pixel 144


def test_a_model_writing_into_its_input_is_tiled_like_the_whole_image():
    # Each tile's crop is a copy: a model that scales its input in place scales the crop, not
    # the caller's image (twice where tiles overlap), as model(image) scales its own once.
    class Scaling(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 5, stride=2, padding=2)

        def forward(self, x):
            return self.conv(x.mul_(2.0))

    torch.manual_seed(0)
    model = Scaling().double().eval()
    image = torch.randn(2, 1, 40, 36, dtype=torch.float64)
    margins = tile_margins(model, input_size=(40, 36))
    with torch.no_grad():
        whole = model(image.clone())
        tiled = tiled_forward(model, image.clone(), margins, (8, 12))
    from rfviz.roundoff import ROUND_OFF, relative_error
    assert relative_error(tiled, whole) <= ROUND_OFF


def test_a_tensor_made_from_the_images_size_is_refused():
    # A coordinate channel from x.shape: a tile would count its own rows, not the image's.
    class Coordinates(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            h = x.shape[-2]
            return self.conv(x + torch.arange(h, dtype=x.dtype).view(1, 1, h, 1) / h)

    with pytest.raises(FieldError, match=r"layer=None: 'arange' makes positions from a size"):
        tile_margins(Coordinates(), input_size=(32, 24))
