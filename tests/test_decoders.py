"""Fields through decoders (transposed convolution, interpolation, pixel shuffle, crops,
skip connections) against torch's gradients, for every output unit."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from builders import assert_every_unit_exact, inside
from torch import nn

from rfviz import RfvizWarning, receptive_field, trace
from rfviz.spans import Spans

# --- transposed convolution ---------------------------------------------------------------

TRANSPOSED = [  # kernel, stride, padding, output_padding, dilation, groups
    (3, 2, 1, 1, 1, 1),  # the checkerboard: 1, 2, 1, 2 inputs
    (4, 2, 1, 0, 1, 1),  # DCGAN's doubling
    (2, 2, 0, 0, 1, 1),  # U-Net's up-convolution: no overlap
    (3, 3, 0, 2, 1, 2),
    (5, 2, 2, 1, 1, 1),
    (3, 2, 0, 0, 2, 1),  # dilation 2, stride 2: odd outputs read nothing
    (1, 3, 0, 0, 1, 1),  # kernel < stride: gaps
    (7, 4, 3, 3, 1, 1),
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "output_padding", "dilation",
                          "groups"), TRANSPOSED)
def test_transposed_convolution_1d_every_unit(kernel, stride, padding, output_padding,
                                              dilation, groups):
    conv = nn.ConvTranspose1d(2, 2, kernel, stride, padding, output_padding, groups,
                              dilation=dilation)
    assert_every_unit_exact(nn.Sequential(conv), (1, 2, 9))


def test_random_stacks_of_transposed_and_plain_convolutions():
    rng = random.Random(7)
    for _ in range(25):
        layers, c = [], 1
        for _ in range(rng.randint(2, 4)):
            k, s = rng.randint(1, 5), rng.randint(1, 3)
            if rng.random() < 0.5:
                p = rng.randint(0, (k - 1) // 2)
                layers.append(nn.ConvTranspose1d(c, 2, k, s, p, rng.randint(0, s - 1)))
            else:
                layers.append(nn.Conv1d(c, 2, k, s, rng.randint(0, k // 2)))
            c = 2
        net = nn.Sequential(*layers)
        try:  # long enough for a few units whose field lies inside
            size = 24 + 3 * receptive_field(net, None, (24,)).size[0]
            net(torch.zeros(1, 1, size))
        except (RuntimeError, ValueError):  # a random stack that shrinks to nothing
            continue
        assert_every_unit_exact(net, (1, 1, size))


def test_transposed_2d_keeps_h_and_w_apart():
    net = nn.Sequential(nn.ConvTranspose2d(1, 2, (3, 4), (2, 1), (1, 0)))
    field = assert_every_unit_exact(net, (1, 1, 6, 5))
    assert isinstance(field.h, Spans) and field.w.size == 4  # W: stride 1, a plain field


def test_the_checkerboard_is_in_the_field():
    field = receptive_field(nn.Sequential(nn.ConvTranspose1d(1, 1, 3, 2, 1, 1)), None, (8,))
    (axis,) = field.axes
    assert [axis.span(o) for o in range(6)] == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2), (2, 3)]
    assert axis.size == 2 and axis.stride == 0.5 and axis.period == 2
    assert str(field) == "up to 2 px, jump 1/2, per unit"


# --- interpolation ------------------------------------------------------------------------

INTERPOLATIONS = [
    {"scale_factor": 2, "mode": "nearest"},
    {"scale_factor": 3, "mode": "nearest-exact"},
    {"scale_factor": 2, "mode": "bilinear", "align_corners": False},
    {"scale_factor": 3, "mode": "bilinear", "align_corners": False},
    {"scale_factor": 2, "mode": "bilinear", "align_corners": True},
    {"scale_factor": 2, "mode": "bicubic", "align_corners": False},
    {"scale_factor": 2, "mode": "bicubic", "align_corners": True},
    {"size": (13, 8), "mode": "bilinear", "align_corners": False},
    {"size": (13, 8), "mode": "nearest"},
    {"scale_factor": 1.5, "mode": "bilinear", "align_corners": False},
    {"scale_factor": (1.7, 2.5), "mode": "nearest", "recompute_scale_factor": True},
    {"scale_factor": 0.5, "mode": "bilinear", "antialias": True},
    {"size": (4, 3), "mode": "area"},
]


@pytest.mark.parametrize("kwargs", INTERPOLATIONS, ids=lambda k: "-".join(map(str, k.values())))
def test_upsample_every_unit(kwargs):
    antialias = kwargs.pop("antialias", False)
    if antialias:
        class Resize(nn.Module):
            def forward(self, x):
                return F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)
        net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Resize())
    else:
        net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Upsample(**kwargs))
    assert_every_unit_exact(net, (1, 1, 9, 7))


@pytest.mark.parametrize("kwargs", INTERPOLATIONS[2:9],
                         ids=lambda k: "-".join(map(str, k.values())))
def test_upsample_probed_in_small_chunks_is_still_exact(monkeypatch, kwargs):
    """The one-hot probe goes through torch a few inputs at a time (bounded memory): each
    output's first and last input, merged over chunks, are still the gradient's."""
    import rfviz.tracing.decoders

    monkeypatch.setattr(rfviz.tracing.decoders, "PROBE_ELEMENTS", 60)  # 1 or 2 inputs a chunk
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Upsample(**kwargs))
    assert_every_unit_exact(net, (1, 1, 9, 7))


def test_interpolate_to_a_size_read_from_another_tensor():
    class Head(nn.Module):  # fcn's and deeplab's head: back to the input's size
        def __init__(self):
            super().__init__()
            self.down = nn.Conv2d(1, 2, 3, stride=4, padding=1)

        def forward(self, x):
            size = x.shape[-2:]
            return F.interpolate(self.down(x), size=size, mode="bilinear", align_corners=False)

    assert_every_unit_exact(Head(), (1, 1, 17, 11))


def test_pixel_shuffle_and_unshuffle():
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.PixelShuffle(2), nn.Conv2d(2, 4, 3),
                        nn.PixelUnshuffle(2))
    assert_every_unit_exact(net, (1, 1, 8, 6))

    class Functional(nn.Module):
        def forward(self, x):
            return F.pixel_unshuffle(F.pixel_shuffle(x, 2), 2)

    assert_every_unit_exact(nn.Sequential(nn.Conv2d(1, 4, 3), Functional()), (1, 1, 7, 7))


def test_crops_by_slicing():
    class Crop(nn.Module):
        def forward(self, x):
            return x[:, :, 2:-1, 1::2]

    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Crop(), nn.Conv2d(2, 2, 3, padding=1))
    field = assert_every_unit_exact(net, (1, 1, 10, 9))
    assert field.h.span(0) == (1, 4) and field.w.span(0) == (0, 4)  # the crop's zeros: none


def test_unet_skip_connection_merges_each_units_spans():
    class TinyUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Conv2d(1, 2, 3, padding=1)
            self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1))
            self.up = nn.ConvTranspose2d(2, 2, 2, stride=2)
            self.dec = nn.Conv2d(4, 1, 3, padding=1)

        def forward(self, x):
            skip = self.enc(x)
            return self.dec(torch.cat([skip, self.up(self.down(skip))], dim=1))

    model = TinyUNet()
    model.down[0] = nn.AvgPool2d(2)  # a max pool's gradient goes to one winner per window
    assert_every_unit_exact(model, (1, 1, 24, 20))


def test_spatial_concatenation_is_refused():
    class Tile(nn.Module):
        def forward(self, x):
            return torch.cat([x, x], dim=-1)

    with pytest.warns(RfvizWarning, match="concatenation along a spatial axis"):
        table = trace(nn.Sequential(nn.Conv2d(1, 1, 3), Tile()), (8, 8))
    assert table[-1].field.unknown


def test_spans_refuse_units_outside_the_traced_size():
    field = receptive_field(nn.Sequential(nn.Upsample(scale_factor=2)), None, (4, 4))
    with pytest.raises(ValueError, match=r"unit=8 is out of range: .* valid: 0 ≤ unit ≤ 7"):
        field.span((8, 0))


# --- real networks ------------------------------------------------------------------------


def measured_spans(model: nn.Module, size, units, samples: int = 2) -> list[tuple]:
    """Per unit, the bounding box per axis of where its gradient lands (float64, eval mode,
    random inputs; one forward pass per sample, one backward pass per unit)."""
    from rfviz.probe import truncate

    cut, shape, _ = truncate(model, None, size)
    generator = torch.Generator().manual_seed(0)
    reached = [0] * len(units)
    for _ in range(samples):
        x = torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True)
        out = cut(x)[0]
        for k, unit in enumerate(units):
            (grad,) = torch.autograd.grad(out[(slice(None), *unit)].sum(), x, retain_graph=True)
            reached[k] = reached[k] + grad[0].abs().sum(0)
    spans = []
    for mask in reached:
        hits = [torch.nonzero(mask.ne(0).any(dim=1 - axis)).flatten() for axis in (0, 1)]
        spans.append(tuple((int(h[0]), int(h[-1])) for h in hits))
    return spans


def cut_to(span, size):
    return max(span[0], 0), min(span[1], size - 1)


def test_unet_with_a_resnet_encoder_every_phase():
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=1, encoder_depth=3,
                     decoder_channels=(64, 32, 16))
    size = (192, 192)
    field = receptive_field(model, None, size)
    assert field.per_unit and field.h.period == 8 and field.h.stride == 1
    units = [(88 + k, 88 + k) for k in range(8)]  # every phase of both axes
    for unit, spans in zip(units, measured_spans(model, size, units), strict=True):
        predicted = field.span(unit)
        assert all(inside(p, n) for p, n in zip(predicted, size, strict=True))
        assert predicted == spans, unit


def test_fcn_resnet50_every_phase_of_its_bilinear_head():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None)
    size = (480, 480)
    field = receptive_field(model, None, size)
    assert field.per_unit and field.h.period == 8 and field.h == field.w
    # H and W follow the same rule (square kernels and image): 4 units, one backward pass
    # each, give the 8 phases, 0-3 along one axis and 4-7 along the other
    units = [(240 + k, 244 + k) for k in range(4)]
    for unit, spans in zip(units, measured_spans(model, size, units, samples=1), strict=True):
        predicted = field.span(unit)
        assert all(inside(p, n) for p, n in zip(predicted, size, strict=True)), predicted
        assert predicted == spans, unit


@pytest.mark.parametrize("name", ["deeplabv3_resnet50", "lraspp_mobilenet_v3_large"])
def test_segmentation_heads_with_image_pooling_are_global(name):
    import torchvision

    model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    field = receptive_field(model, None, (224, 224))
    assert field.is_global and str(field) == "global"
    # the cause named: the first global op is a pooling to 1 × 1 (DeepLabV3's image-pooling
    # branch; in LR-ASPP, a squeeze-excite of its MobileNetV3 before its own pooling branch)
    first = next(row for row in trace(model, (224, 224)) if row.field.is_global)
    assert first.op == "AdaptiveAvgPool2d", first
    assert (first.name == "classifier.0.convs.4.0") == (name == "deeplabv3_resnet50"), first
    # torch agrees that far pixels reach a corner output: every input pixel has a gradient
    torch.manual_seed(0)
    model = model.double().eval()
    image = torch.randn(1, 3, 96, 96, dtype=torch.float64, requires_grad=True)
    model(image)["out"][0, :, 0, 0].sum().backward()
    assert bool(image.grad.abs().sum(1).ne(0).all())


@pytest.mark.parametrize("pad", [nn.ReflectionPad2d((2, 1, 3, 0)), nn.ReplicationPad2d(2),
                                 nn.CircularPad2d((1, 2, 0, 3)), nn.ZeroPad2d((2, -1, -2, 1))],
                         ids=lambda m: type(m).__name__)
def test_pads_that_copy_pixels_and_crops(pad):
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), pad, nn.Conv2d(2, 2, 3, stride=2))
    assert_every_unit_exact(net, (1, 1, 14, 11))


def test_a_reflecting_pad_shows_its_copies_in_the_border_units_span():
    net = nn.Sequential(nn.ReflectionPad1d(2), nn.Conv1d(1, 1, 3))
    field = receptive_field(net, None, (8,))
    # output 0 reads padded units 0..2 = input pixels 2, 1, 0: the first pixel twice over
    assert field.span((0,)) == ((0, 2),) and field.span((2,)) == ((0, 2),)


def test_functional_reflect_pad():
    class Reflect(nn.Module):
        def forward(self, x):
            return F.pad(x, (1, 3, 2, 2), mode="reflect")

    assert_every_unit_exact(nn.Sequential(nn.Conv2d(1, 2, 3), Reflect(), nn.Conv2d(2, 1, 3)),
                            (1, 1, 12, 13))


def test_transposed_3d_and_trilinear_keep_every_axis_apart():
    net = nn.Sequential(nn.ConvTranspose3d(1, 2, (3, 2, 4), (2, 2, 1), (1, 0, 1)),
                        nn.Upsample(scale_factor=(1, 2, 1), mode="trilinear"))
    field = assert_every_unit_exact(net, (1, 1, 5, 4, 6))
    assert field.per_unit and len(field.axes) == 3


def test_a_stride_one_transposed_conv_that_crops_then_a_padded_conv():
    # padding 3 > kernel - 1 = 2: it crops a pixel on each side, and the conv after it pads
    # with zeros where the crop removed pixels
    net = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.ConvTranspose1d(2, 2, 3, padding=3),
                        nn.Conv1d(2, 1, 3, padding=1))
    field = assert_every_unit_exact(net, (1, 1, 16))
    assert isinstance(field.axes[0], Spans)  # a crop: per-unit spans
    assert field.span((0,)) == ((0, 5),)     # conv unit -1 is a zero: units 0, 1 -> mid 1..4


# --- found in review: each once gave a wrong span, a crash or a silently wrong tiling ------


class Crop(nn.Module):
    def __init__(self, index):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x[self.index]


class Transposed(nn.Module):
    """H and W swapped: the field's first axis now sits in the tensor's last dim."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x.transpose(2, 3)).transpose(2, 3)


@pytest.mark.parametrize(("build", "shape"), [
    # a padding of 2 or more after per-unit spans (the window lay wholly in the padding)
    (lambda: nn.Sequential(nn.Upsample(scale_factor=2), nn.ConstantPad1d(2, 0.0),
                           nn.Conv1d(1, 1, 3)), (1, 1, 16)),
    # dilated windows over per-unit spans skip units
    (lambda: nn.Sequential(nn.ConvTranspose1d(1, 1, 1, stride=2),
                           nn.Conv1d(1, 1, 3, dilation=2, padding=2)), (1, 1, 8)),
    (lambda: nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv1d(1, 1, 3, dilation=3,
                                                                   padding=3)), (1, 1, 12)),
    (lambda: nn.Sequential(Crop((..., slice(1, None))), nn.Conv1d(1, 1, 3, dilation=2,
                                                                   padding=2)), (1, 1, 12)),
    # a convolution's own padding_mode copies pixels
    (lambda: nn.Sequential(nn.Upsample(scale_factor=0.7, mode="linear"),
                           nn.Conv1d(1, 1, 2, 2, 1, padding_mode="reflect")), (1, 1, 20)),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=2, padding_mode="circular"),
                           nn.Conv2d(2, 1, 3, padding=1, padding_mode="replicate")), (1, 1, 9, 8)),
    # H and W swapped before the op
    (lambda: Transposed(nn.Upsample(scale_factor=(2, 3))), (1, 1, 5, 4)),
    (lambda: Transposed(nn.ConvTranspose2d(1, 1, (1, 3), (1, 2))), (1, 1, 6, 5)),
    (lambda: Transposed(nn.Conv2d(1, 1, (1, 5), padding=(0, 2))), (1, 1, 9, 7)),
], ids=["pad-2-after-upsample", "dilated-after-transposed", "dilated-after-upsample",
        "dilated-after-crop", "reflect-padding-mode", "circular-replicate-padding-mode",
        "transposed-upsample", "transposed-convtranspose", "transposed-conv"])
def test_found_in_review(build, shape):
    assert_every_unit_exact(build(), shape)


def test_a_crop_that_leaves_nothing_is_not_followed():
    net = nn.Sequential(nn.Conv1d(1, 1, 3), Crop((..., slice(3, -1))))
    with pytest.warns(RfvizWarning, match="no unit along a spatial axis"):
        assert receptive_field(net, None, (6,)).unknown


def test_tiles_are_refused_where_the_resizing_depends_on_the_image_size():
    from rfviz.field import FieldError
    from rfviz.tiling import tile_margins

    class Corners(nn.Module):  # back to the input's size with align_corners=True
        def __init__(self):
            super().__init__()
            self.down = nn.Conv2d(1, 2, 4, stride=4)
            self.out = nn.Conv2d(3, 1, 3, padding=1)

        def forward(self, x):
            up = F.interpolate(self.down(x), size=x.shape[-2:], mode="bilinear",
                               align_corners=True)
            return self.out(torch.cat([x, up], dim=1))

    with pytest.raises(FieldError, match="read different context in different parts"):
        tile_margins(Corners(), input_size=(64, 64))


def test_a_unit_that_reads_nothing_has_no_box():
    from rfviz import draw_overlay2d

    field = receptive_field(nn.Sequential(nn.ConvTranspose2d(1, 1, 1, stride=2)), None, (4, 4))
    with pytest.raises(ValueError, match=r"unit=\(1, 1\) reads no input pixel"):
        draw_overlay2d(torch.zeros(8, 8).numpy(), field, (1, 1))
