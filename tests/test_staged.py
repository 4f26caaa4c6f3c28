"""Staged tiling: the high-resolution parts tiled, the low-resolution part run whole.

Torch is the oracle: the staged result equals ``model(image)`` within round-off in float64,
and a margin one grid cell short (before or after, of the entries' tiles or of the tail's)
gives an error at least GAP times the bound. Hand-built networks check the plan itself: which
ops run whole, where the graph is cut, and margins computed by hand.
"""

import dataclasses
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from builders import assert_exact_and_wrong_ones_far_above, one_step_less_before, shrink
from torch import nn

from rfviz.field import FieldError, ReceptiveField
from rfviz.roundoff import ROUND_OFF, relative_error
from rfviz.staged import staged_forward, staged_plan
from rfviz.tiling import tile_margins, tiled_forward
from rfviz.unet import UNet


def staged_error(model, image, tile, plan, whole, **changes) -> float:
    """Relative error of the staged result, with the plan's fields ``changes`` replaced."""
    with torch.no_grad():
        result = staged_forward(model, image, tile, plan=dataclasses.replace(plan, **changes))
    return relative_error(result, whole)


def assert_staged_exact_and_short_margins_wrong(model, image, tile, plan) -> None:
    """Exact with the plan's margins; one grid cell less, before or after, of either stage's
    tiles is far above round-off. (An entry's missing pixel reaches the output through the
    low part, diluted: the smallest such error here, 2.5e-6 for rfviz's UNet of width 8, is
    still 2.5e6 times the bound; 1e-2 … 1e-3 for smp's U-Nets.)"""
    with torch.no_grad():
        whole = model(image)
    entry, tail = plan.entry_margins, plan.tail_margins
    assert_exact_and_wrong_ones_far_above(
        staged_error(model, image, tile, plan, whole),
        entry_one_cell_less_before=staged_error(model, image, tile, plan, whole,
                                                entry_margins=one_step_less_before(entry)),
        entry_one_cell_less_after=staged_error(model, image, tile, plan, whole,
                                               entry_margins=shrink(entry, after=entry.h.step)),
        tail_one_cell_less_before=staged_error(model, image, tile, plan, whole,
                                               tail_margins=one_step_less_before(tail)),
        tail_one_cell_less_after=staged_error(model, image, tile, plan, whole,
                                              tail_margins=shrink(tail, after=tail.h.step)))


# --- a hand-built network whose tail needs more context from the low part than from the image


class Hourglass(nn.Module):
    """Down by 4 in one step, a 3×3 convolution at a jump of 4, up by 2, a 5×5 convolution
    at a jump of 2, up by 2; beside it a 1×1 skip from the image; a 3×3 head on both."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 4, 4, stride=4)
        self.low = nn.Conv2d(4, 4, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.mid = nn.Conv2d(4, 2, 5, padding=2)
        self.skip = nn.Conv2d(1, 2, 1)
        self.head = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        y = F.interpolate(self.mid(self.up(self.low(self.down(x)))), scale_factor=2.0)
        return self.head(torch.cat([self.skip(x), y], 1))


def test_a_hand_built_plan_cuts_where_the_jump_reaches_low_from():
    plan = staged_plan(Hourglass(), (64, 48), low_from=4)
    assert [p.name for p in plan.entries] == ["down"]  # reads the image, jump 4
    assert plan.low_ops == ("low",)
    assert [(p.name, p.jump, p.shape) for p in plan.exits] == [("low", (4, 4), (4, 16, 12))]
    # The entries: a 4×4 window, stride 4, no padding: no context at all.
    assert (plan.entry_margins.before, plan.entry_margins.after) == ((0, 0), (0, 0))
    # The tail, by hand, for output pixels 4k … 4k+3 (a cell of the grid of 4). From the
    # image: the 1×1 skip and the 3×3 head read 1 pixel either side. From the exit: the head
    # reads pixel 4k-1, which the second upsampling takes from unit 2k-1 at a jump of 2, the
    # 5×5 convolution from 2k-3, the first upsampling from exit unit k-2: pixels from 4k-8,
    # 8 before. After: 4k+4 -> 2k+2 -> 2k+4 -> unit k+2, whose pixels end at 4k+11: 8 after.
    assert plan.tail_margins.before == (8, 8) and plan.tail_margins.after == (8, 8)
    assert plan.tail_margins.grid == (4, 4) and plan.tail_margins.stride == (1, 1)


def test_the_exits_margins_count_not_only_the_images():
    # The image alone would need 1 pixel of context; the exit needs 8 (two grid cells).
    model = Hourglass().double().eval()
    image = torch.randn(2, 1, 92, 52, dtype=torch.float64)  # 23 and 13 cells of 4
    plan = staged_plan(model, image.shape[2:], low_from=4)
    tile = (24, 20)
    with torch.no_grad():
        whole = model(image)
    tail = plan.tail_margins
    assert_exact_and_wrong_ones_far_above(
        staged_error(model, image, tile, plan, whole),
        one_cell_less_before=staged_error(model, image, tile, plan, whole,
                                          tail_margins=one_step_less_before(tail)),
        one_cell_less_after=staged_error(model, image, tile, plan, whole,
                                         tail_margins=shrink(tail, after=4)))


def test_walk_from_chosen_seeds_with_nodes_blocked():
    from rfviz.staged import _Traced
    from rfviz.tracing import _graph

    model = Hourglass()
    traced = _Traced(model, _graph(model), (64, 48))
    nodes = {n.name: n for n in traced.graph.nodes}
    out = nodes["head"]
    low = [nodes["down"], nodes["low"]]
    # From the image with the low part blocked: the skip and the head only (1 + 2).
    from_image = traced.walk([nodes["x"]], low).values[out].field
    assert from_image.axes == (ReceptiveField(3, 1, 1),) * 2
    # From the exit, in its own units: 4 output pixels per unit, each reading 3 or 4 units.
    from_exit = traced.walk([nodes["low"]], [nodes["down"]]).values[out].field
    assert from_exit.h.stride == pytest.approx(1 / 4)
    assert from_exit.h.span(8) == (0, 3) and from_exit.h.span(11) == (1, 4)  # see above


# --- U-Nets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_from, kept, tail", [
    (None, ["down.1.5"], 8),  # the exit's unit k - 2 (the module's docstring), or
    (4, [], 12),  # recomputed: level 1's skip (padding 6) and the decoder's 3×3s (4 + 2)
])
def test_rfviz_unet_plan_by_hand_and_staged_equals_whole(keep_from, kept, tail):
    torch.manual_seed(0)
    model = UNet(width=8, depth=3).double().eval()
    image = torch.randn(2, 3, 88, 56, dtype=torch.float64)  # 11 and 7 cells of 8
    plan = staged_plan(model, image.shape[2:], low_from=4, keep_from=keep_from)
    # the module's docstring derives these: the entries' field is 16 px, jump 4, padding 6
    assert [p.name for p in plan.entries] == ["pool@1"]
    assert plan.entry_margins.before == (6, 6) and plan.entry_margins.after == (6, 6)
    assert [p.name for p in plan.exits] == ["decode.0.5"]
    assert [p.name for p in plan.kept] == kept
    assert plan.tail_margins.before == (tail, tail) and plan.tail_margins.after == (tail, tail)
    assert_staged_exact_and_short_margins_wrong(model, image, (24, 16), plan)


@pytest.fixture(scope="module")
def smp():
    return pytest.importorskip("segmentation_models_pytorch")


def test_smp_unet_depth_3(smp):
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=2, encoder_depth=3,
                     decoder_channels=(32, 16, 8)).double().eval()
    image = torch.randn(2, 3, 184, 120, dtype=torch.float64)  # 23 and 15 cells of 8
    plan = staged_plan(model, image.shape[2:], low_from=8)
    assert [p.name for p in plan.entries] == ["encoder.layer2.0.conv1",
                                              "encoder.layer2.0.downsample.0"]
    assert [p.name for p in plan.exits] == ["decoder.center"]  # layer2's output, before it
    assert plan.tail_margins.grid == (8, 8)                    # is upsampled to a jump of 4
    assert [p.name for p in plan.kept] == ["encoder.layer1.1.relu@1"]  # the skip at jump 4
    assert_staged_exact_and_short_margins_wrong(model, image, (56, 48), plan)


@pytest.mark.parametrize("low_from", [8, 16])
def test_smp_unet_depth_5(smp, low_from):
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=1, encoder_depth=5,
                     decoder_channels=(32, 16, 8, 8, 8)).double().eval()
    image = torch.randn(2, 3, 224, 160, dtype=torch.float64)  # 7 and 5 cells of 32
    plan = staged_plan(model, image.shape[2:], low_from=low_from)
    assert all(p.jump == (low_from,) * 2 for p in (*plan.entries, *plan.exits))
    assert plan.tail_margins.grid == (low_from,) * 2
    tile = (112, 80) if low_from == 16 else (56, 48)
    assert_staged_exact_and_short_margins_wrong(model, image, tile, plan)


def test_a_small_image_is_measured_at_a_larger_size(smp):
    # At 64 × 64 the tail's spans (~160 px) are cut by the borders everywhere: the margins
    # come from a larger trace, the plan's shapes from the user's size.
    model = smp.Unet("resnet18", encoder_weights=None, classes=1, encoder_depth=5,
                     decoder_channels=(32, 16, 8, 8, 8)).eval()
    small = staged_plan(model, (64, 64), low_from=16)
    large = staged_plan(model, (512, 512), low_from=16)
    assert small.tail_margins == large.tail_margins
    assert small.entry_margins == large.entry_margins
    assert small.output.shape == (1, 64, 64)


# --- what cannot be staged, and invalid input ---------------------------------------------


class GlobalGate(nn.Module):
    """A U-shaped network whose output is gated by the image's mean: a global op in the
    tail, which reads the image at full resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 2, 4, stride=4)
        self.up = nn.Upsample(scale_factor=4)

    def forward(self, x):
        return self.up(self.down(x)) * x.mean((2, 3), keepdim=True)


class ResizeToInput(nn.Module):
    """Down by 8, then resized to the input's size (by 100 / 13 at 100 pixels); with
    ``skip``, added to a 1×1 convolution of the image."""

    def __init__(self, skip: bool = False) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 2, 3, stride=8, padding=1)
        self.skip = nn.Conv2d(1, 2, 1) if skip else None

    def forward(self, x):
        up = F.interpolate(self.down(x), size=x.shape[-2:], mode="bilinear")
        return up if self.skip is None else self.skip(x) + up


def test_a_global_op_in_the_tail_is_refused_naming_it():
    with pytest.raises(FieldError, match=r"'mul': the field is global from 'mean' \(mean\) on: "
                                         r"every unit depends on the whole map"):
        staged_plan(GlobalGate(), (64, 64), low_from=4)


def test_a_resize_to_the_images_size_runs_whole_at_any_size():
    # 100 -> 13 units -> 100 pixels: units 8 · 13/100 = 26/25 pixel apart on average, a
    # step no tile shares (tiled_forward refuses the size), so the resize runs whole with
    # the low part: no tail.
    model = ResizeToInput().double().eval()
    image = torch.randn(2, 1, 100, 76, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"image height=100 is not a multiple of the grid 8.*"
                                         r"runs at any size in rfviz.staged_forward"):
        tiled_forward(model, image, tile_margins(model, input_size=(100, 76)), (24, 16))
    plan = staged_plan(model, (100, 76), low_from=8)
    assert plan.tail_margins is None and plan.exits == (plan.output,)
    assert all(Fraction(jump).denominator != 1 for jump in plan.output.jump)
    with torch.no_grad():
        whole = model(image)
    entry = plan.entry_margins  # a 3×3 window at stride 8, padding 1: 1 before, none after
    assert (entry.before, entry.after) == ((1, 1), (0, 0))   # (3 - 8 - 1 < 0)
    assert_exact_and_wrong_ones_far_above(
        staged_error(model, image, (24, 16), plan, whole),
        entry_one_cell_less_before=staged_error(model, image, (24, 16), plan, whole,
                                                entry_margins=one_step_less_before(entry)))


def test_a_resize_mixed_with_the_image_is_refused():
    # With a skip from the image, the resized map must be cropped for the tail's tiles, and
    # its units are 26/25 pixel apart: no crop starts on one of them.
    with pytest.raises(FieldError, match=r"'interpolate': its units are \d+/\d+ × \d+/\d+ "
                                         r"pixel apart, not a whole number"):
        staged_plan(ResizeToInput(skip=True), (100, 76), low_from=8)


def test_fcn_resnet50_at_a_size_no_tile_shares():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None)
    model = model.double().eval()
    image = torch.randn(2, 3, 101, 77, dtype=torch.float64)  # 13 × 10 units at a jump of 8
    plan = staged_plan(model, image.shape[2:], low_from=8)
    assert [p.name for p in plan.entries] == ["backbone.layer2.0.conv2",
                                              "backbone.layer2.0.downsample.0"]
    assert plan.tail_margins is None and plan.output.name == "interpolate"
    with torch.no_grad():
        whole = model(image)["out"]
        result = staged_forward(model, image, (32, 24), plan=plan)  # the one tensor returned
    entry = plan.entry_margins
    assert_exact_and_wrong_ones_far_above(
        relative_error(result, whole),
        entry_one_cell_less_before=staged_error(model, image, (32, 24), plan, whole,
                                                entry_margins=one_step_less_before(entry)))


def test_a_network_without_a_low_part_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3, stride=2))
    with pytest.raises(ValueError, match=r"no op has a jump ≥ low_from=8 along every axis.*"
                                         r"valid: a smaller low_from"):
        staged_plan(net, (64, 64), low_from=8)


@pytest.mark.parametrize("low_from", [1, 8.0, True])
def test_low_from_must_be_an_int_of_at_least_2(low_from):
    with pytest.raises(ValueError, match=rf"low_from={low_from!r} is not valid"):
        staged_plan(Hourglass(), (64, 64), low_from=low_from)


def test_invalid_runs_say_what_would_do():
    model = Hourglass().eval()
    image = torch.zeros(1, 1, 64, 48)
    plan = staged_plan(model, (64, 48), low_from=4)
    with pytest.raises(ValueError, match=r"tile=18 is not a positive multiple of the grid 4 "
                                         r"of both stages; valid: e.g. 16 or 20"):
        staged_forward(model, image, (18, 16), plan=plan)
    with pytest.raises(ValueError, match=r"the plan is for a 64×48 input, the image is 64×64"):
        staged_forward(model, torch.zeros(1, 1, 64, 64), 16, plan=plan)
    with pytest.raises(ValueError, match=r"training mode.*valid: model.eval\(\) first"):
        staged_forward(model.train(), image, 16, plan=plan)
    with pytest.raises(ValueError, match=r"output='out': the model returns one tensor; "
                                         r"valid: None"):
        staged_plan(model, (64, 48), low_from=4, output="out")
    with pytest.raises(ValueError, match=r"tile=\(16,\) has 1 sizes, the image 2 spatial "
                                         r"axes; valid: one int, or 2 ints"):
        staged_forward(model.eval(), image, (16,), plan=plan)
    with pytest.raises(ValueError, match=r"output='aux', but the plan computes output=None"):
        staged_forward(model, image, 16, plan=plan, output="aux")


# --- in-place ops and sizes: what tiles would get wrong in silence -----------------------


class Sizes(nn.Module):
    """Down by 8 (three strided convolutions), back up by 8, beside the image; ``mode``:
    "scale" the image in place first, "relu_" the deep map in place after the tail has read
    it, "iadd" add it into another map in place, or "ramp" add a coordinate channel made from
    the image's height."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.down = nn.Sequential(*(nn.Conv2d(c, 4, 3, 2, 1) for c in (1, 4, 4)))
        self.deep = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(4 + 4 + 1, 1, 3, padding=1)

    def forward(self, x):
        if self.mode == "scale":
            x = x.mul_(2.0)
        e = self.down(x)
        read = F.interpolate(e, scale_factor=8.0)  # the tail reads e here
        if self.mode == "relu_":
            e = e.relu_()
        deep = self.deep(e)
        if self.mode == "iadd":
            deep += e  # writes into deep, only reads e
        deep = F.interpolate(deep, scale_factor=8.0)
        if self.mode == "ramp":
            h = x.shape[-2]
            x = x + torch.arange(h, dtype=x.dtype).view(1, 1, h, 1) / h
        return self.head(torch.cat([read, deep, x], 1))


def test_a_model_writing_into_its_input_gets_the_whole_images_result():
    # Each tile's crop is a copy: the op doubles the crop, not the caller's image (twice
    # where tiles overlap), as model(image) doubles its own image once.
    torch.manual_seed(0)
    model = Sizes("scale").double().eval()
    image = torch.randn(2, 1, 64, 48, dtype=torch.float64)
    with torch.no_grad():
        whole = model(image.clone())
        staged = staged_forward(model, image.clone(), 16, low_from=8, progress=False)
    assert relative_error(staged, whole) <= ROUND_OFF


def test_an_in_place_op_that_only_reads_what_the_tail_reads_is_staged():
    torch.manual_seed(0)
    model = Sizes("iadd").double().eval()
    image = torch.randn(1, 1, 64, 48, dtype=torch.float64)
    with torch.no_grad():
        whole = model(image)
        staged = staged_forward(model, image, 16, low_from=8, progress=False)
    assert relative_error(staged, whole) <= ROUND_OFF


def test_an_in_place_change_of_what_the_tail_reads_is_refused():
    with pytest.raises(ValueError, match=r"'relu_' \(relu_\) changes 'down.2' in place, "
                                         r"which the staged plan's tail reads"):
        staged_plan(Sizes("relu_"), (64, 48), low_from=8)


def test_a_tensor_made_from_a_tiles_size_is_refused():
    # torch.arange(x.shape[-2]) run on a tile counts the tile's rows, not the image's
    with pytest.raises(ValueError, match=r"'arange' makes a tensor from a spatial size"):
        staged_plan(Sizes("ramp"), (64, 48), low_from=8)
