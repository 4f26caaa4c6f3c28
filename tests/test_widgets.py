"""The slider panel, driven programmatically as a person would drive it."""

import random
from dataclasses import replace

import pytest
import torch
from builders import gradient_support, torch_stack_1d
from torch import nn

from rfviz.draw.pixels1d import layout_pixels1d
from rfviz.field import Layer, ReceptiveField
from rfviz.widgets import (
    MAX_DRAWN,
    ConvPanel,
    PanelState,
    StackPanel,
    StackState,
    describe,
    describe_stack,
)

OPS = ["conv", "maxpool", "avgpool", "transposed"]


def lengths_through(modules, size: int) -> list[int] | None:
    """Lengths of a 1-channel signal through ``modules``, by torch; None where torch refuses."""
    x, sizes = torch.zeros(1, 1, size, dtype=torch.float64), [size]
    with torch.no_grad():
        for module in modules:
            try:
                x = module.double()(x)
            except RuntimeError:
                return None
            sizes.append(x.shape[-1])
    return sizes


def torch_sizes(state: PanelState) -> list[int] | None:
    """Sizes through `state.layers` copies of the layer, by torch; None where torch refuses."""
    if state.op == "conv":
        module = nn.Conv1d(1, 1, state.kernel, state.stride, state.padding, state.dilation)
    elif state.op == "transposed":
        module = nn.ConvTranspose1d(1, 1, state.kernel, state.stride, state.padding,
                                    state.output_padding, dilation=state.dilation)
    elif state.op == "maxpool":
        module = nn.MaxPool1d(state.kernel, state.stride, state.padding, state.dilation,
                              ceil_mode=state.ceil_mode)
    else:
        module = nn.AvgPool1d(state.kernel, state.stride, state.padding, ceil_mode=state.ceil_mode)
    return lengths_through([module] * state.layers, state.size)


def assert_panel_is_sane(panel: ConvPanel) -> None:
    assert "unexpected error" not in panel.readout.value
    assert bytes(panel.image.value[:4]) == b"\x89PNG"
    view, state = panel.view, panel.state
    assert view.problem or view.lines, state
    assert_view_agrees_with_torch(state, view)


def assert_view_agrees_with_torch(state: PanelState, view) -> None:
    """Sizes as torch gives them; a problem in one line, only where torch refuses (or a row
    would be too long to draw)."""
    expected = torch_sizes(state)
    if view.problem:
        assert "\n" not in view.problem
        if "is not drawn" in view.problem:  # torch runs it; the panel draws the rows before
            assert expected[:len(view.sizes)] == list(view.sizes), state
            assert max(view.sizes) <= MAX_DRAWN < expected[len(view.sizes)], state
        else:
            assert "does not fit" in view.problem or "impossible layer" in view.problem
            assert expected is None, state
    else:
        assert list(view.sizes) == expected, state
        assert 0 <= view.unit < view.sizes[-1]


@pytest.fixture
def panel():
    return ConvPanel(size=12, kernel=3, stride=1)


@pytest.mark.parametrize("op", OPS)
def test_every_slider_over_its_whole_range(panel, op):
    panel.set(op=op, ceil_mode=op in ("maxpool", "avgpool"))
    for slider in panel.sliders.values():
        start = slider.value
        for value in range(slider.min, slider.max + 1):
            slider.value = value
            assert_panel_is_sane(panel)
        slider.value = start


def test_500_random_combinations_never_raise_and_agree_with_torch(panel):
    rng = random.Random(0)
    for _ in range(500):
        state = PanelState(size=rng.randint(1, 64), kernel=rng.randint(1, 9),
                           stride=rng.randint(1, 5), padding=rng.randint(0, 4),
                           dilation=rng.randint(1, 3), layers=rng.randint(1, 4),
                           unit=rng.randint(0, 63), op=rng.choice(OPS),
                           ceil_mode=rng.random() < 0.5, output_padding=rng.randint(0, 4))
        adapted = state_for_panel(state)
        view = describe(adapted)
        assert_view_agrees_with_torch(adapted, view)
    # and a sample of them through the real panel, drawing included
    for _ in range(60):
        panel.set(size=rng.randint(1, 64), kernel=rng.randint(1, 9), stride=rng.randint(1, 5),
                  padding=rng.randint(0, 4), op=rng.choice(OPS), layers=rng.randint(1, 4),
                  ceil_mode=rng.random() < 0.5, unit=rng.randint(0, 63),
                  output_padding=rng.randint(0, 2))
        assert_panel_is_sane(panel)


def state_for_panel(state: PanelState) -> PanelState:
    """The state after the panel's adapting ranges: pooling padding ≤ kernel // 2, etc."""
    if state.op in ("conv", "transposed"):
        output_padding = state.output_padding if state.op == "transposed" else 0
        return replace(state, ceil_mode=False, output_padding=output_padding)
    padding = min(state.padding, state.kernel // 2)
    dilation = 1 if state.op == "avgpool" else state.dilation
    return replace(state, padding=padding, dilation=dilation)


def test_pooling_padding_range_follows_the_kernel(panel):
    panel.set(op="maxpool", kernel=5, padding=2)
    assert panel.sliders["padding"].max == 2
    panel.sliders["kernel"].value = 3
    assert panel.sliders["padding"].max == 1
    assert panel.sliders["padding"].value == 1
    panel.set(op="conv")
    assert panel.sliders["padding"].max == 4


def test_avgpool_has_no_dilation_and_conv_no_ceil_mode(panel):
    panel.set(op="maxpool", dilation=3)
    panel.set(op="avgpool")
    assert panel.sliders["dilation"].disabled and panel.sliders["dilation"].value == 1
    panel.set(op="conv")
    assert panel.ceil_mode.disabled


def test_a_kernel_step_changes_the_picture_and_the_readout(panel):
    before_image, before_text = panel.image.value, panel.readout.value
    panel.sliders["kernel"].value = 5
    assert panel.image.value != before_image
    assert panel.readout.value != before_text
    assert panel.view.sizes == (12, 12 - 5 + 1)
    assert panel.view.lines[0].endswith("= 8")


def test_impossible_combination_says_why_in_one_line(panel):
    panel.set(size=4, kernel=9)
    assert panel.view.problem == (
        "layer 1 does not fit: kernel=9 spans 9 pixels but the padded input has only 4 "
        "(size=4, padding=0); valid: kernel ≤ 4")
    assert panel.sliders["unit"].disabled
    panel.sliders["padding"].value = 3  # padded to 10: fits again
    assert panel.view.problem is None and not panel.sliders["unit"].disabled


def test_unknown_control_is_named(panel):
    with pytest.raises(ValueError, match=r"unknown control\(s\) \['kernal'\]"):
        panel.set(kernal=3)


def test_overlay_panel_over_every_layer_and_unit_range():
    import torchvision

    from rfviz.tracing import receptive_field
    from rfviz.widgets import OverlayPanel

    model = torchvision.models.resnet18(weights=None)
    layers = ["layer1", "layer2", "layer3", "layer4"]
    panel = OverlayPanel(model, layers)
    for name in layers:
        panel.layer.value = name
        assert "unexpected error" not in panel.readout.value
        expected = receptive_field(model, name)
        assert f"field {expected}" in panel.readout.value
        assert panel.unit_h.max + 1 == panel.rows[name].shape[-2]
        for value in (0, panel.unit_h.max):
            panel.unit_h.value = value
            assert f"unit ({value}, " in panel._figure.axes[0].get_title()


def test_overlay_panel_draws_a_layer_again_after_one_it_cannot_draw():
    from rfviz.draw.overlay2d import photograph
    from rfviz.widgets import OverlayPanel

    def model():
        return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.Conv2d(4, 4, 3, stride=2),
                             nn.AdaptiveAvgPool2d(1))

    image = photograph((64, 64))
    panel = OverlayPanel(model(), ["0", "1", "2"], image)
    for layer in ("1", "2", "1"):  # layer 2 is global: no box, said in the readout
        panel.layer.value = layer
    assert "global" not in panel.readout.value
    fresh = OverlayPanel(model(), ["0", "1", "2"], image)
    fresh.layer.value = "1"
    assert panel.picture.value == fresh.picture.value


# --- StackPanel: a stack of different layers ---------------------------------------------


def random_stack_state(rng: random.Random) -> StackState:
    layers = [(rng.randint(1, 7), rng.randint(1, 3), rng.randint(0, 3))
              for _ in range(rng.randint(1, 4))]
    return StackState(size=rng.randint(1, 48), layers=layers, unit=rng.randint(0, 47))


def torch_stack_sizes(layers, size: int) -> list[int] | None:
    """Lengths through the stack, by torch; None where torch refuses a layer."""
    return lengths_through(torch_stack_1d(list(layers)), size)


def assert_stack_view_is_right(state: StackState, view) -> None:
    """Sizes as torch gives them, fields as ReceptiveField.of gives them, both in the readout."""
    assert len(view.lines) == len(view.sizes) + 1 + (view.unit is not None)
    for number in range(len(view.layers) + 1):
        field = ReceptiveField.of(view.layers[:number])
        assert view.fields[number] == field
        columns = view.lines[1 + number].split()  # name (one or two words), k s p, numbers
        numbers = columns[1:5] if number == 0 else columns[5:9]
        assert numbers == [str(view.sizes[number]), str(field.size), str(field.stride),
                           str(field.padding)], (state, view.lines[1 + number])
    if view.problem:
        assert "does not fit" in view.problem and "\n" not in view.problem
        assert len(view.layers) < len(state.layers)
        assert torch_stack_sizes(state.stack[:len(view.layers) + 1], state.size) is None, state
        assert list(view.sizes) == torch_stack_sizes(view.layers, state.size), state
    else:
        assert list(view.sizes) == torch_stack_sizes(state.stack, state.size), state
    if view.layers:
        assert view.unit == min(state.unit, view.sizes[-1] - 1)
        low, high = view.fields[-1].span(view.unit)
        assert view.lines[-1].endswith(f"spans {low}…{high} ({view.fields[-1].size} px)")
    else:
        assert view.unit is None


def test_300_random_stacks_never_raise_and_agree_with_torch():
    rng = random.Random(4)
    for _ in range(300):
        state = random_stack_state(rng)
        view = describe_stack(state)
        assert_stack_view_is_right(state, view)
        if view.layers:  # the pixels the readout traces are those torch's gradient reaches
            stack = torch_stack_1d(list(view.layers))
            seen = gradient_support(stack, state.size, view.unit)
            assert view.seen == seen, state
            low, high = view.fields[-1].span(view.unit)  # the field, by torch, where it fits
            if seen and low >= 0 and high < state.size and not view.problem:
                assert (min(seen), max(seen)) == (low, high), state


def test_random_stacks_through_the_real_panel():
    rng = random.Random(5)
    panel = StackPanel()
    for _ in range(60):
        wanted = random_stack_state(rng)
        panel.set(size=wanted.size, layers=wanted.layers, unit=wanted.unit)
        assert "unexpected error" not in panel.readout.value
        assert bytes(panel.image.value[:4]) == b"\x89PNG"
        assert panel.state.layers == wanted.layers and panel.state.size == wanted.size
        assert_stack_view_is_right(panel.state, panel.view)
        assert panel.sliders["unit"].disabled == (panel.view.unit is None)
        if panel.view.unit is not None:
            assert panel.sliders["unit"].max == panel.view.sizes[-1] - 1


def test_every_stack_slider_over_its_whole_range():
    panel = StackPanel(size=12, layers=[(3, 2, 1), (3, 1, 0), (2, 2, 0), (3, 1, 1)])
    for name, slider in panel.sliders.items():
        start = slider.value
        for value in range(slider.min, slider.max + 1):
            slider.value = value
            assert "unexpected error" not in panel.readout.value, (name, value)
            assert_stack_view_is_right(panel.state, panel.view)
        slider.value = start


def test_the_tutorial_stack_reads_out_layer_by_layer():
    panel = StackPanel(size=15, layers=[(3, 2, 0), (2, 1, 0)], unit=1)
    assert panel.view.lines[1:] == (
        "input                   15      1     1             0  2…6",
        "layer 1    3  2  0       7      3     2             0  1…2",
        "layer 2    2  1  0       6      5     2             0  1",
        "top unit 1 sees input pixels 2…6: its field spans 2…6 (5 px)",
    )
    panel.sliders["padding 1"].value = 1  # one more cell each side of layer 1's input
    assert panel.view.fields[-1] == ReceptiveField(5, 2, 1)
    assert panel.view.lines[-1] == "top unit 1 sees input pixels 1…5: its field spans 1…5 (5 px)"


def test_the_layer_count_hides_and_restores_rows():
    panel = StackPanel(size=16, layers=[(3, 1, 0), (5, 2, 1)])
    assert [row.layout.display for row in panel.rows] == [None, None, "none", "none"]
    assert panel.sliders["kernel 3"].disabled and not panel.sliders["kernel 2"].disabled
    panel.sliders["layers"].value = 1
    assert panel.state.layers == ((3, 1, 0),) and panel.rows[1].layout.display == "none"
    panel.sliders["layers"].value = 2  # layer 2 comes back as it was
    assert panel.state.layers == ((3, 1, 0), (5, 2, 1))


def test_a_stack_that_does_not_fit_says_why_in_one_line():
    panel = StackPanel(size=5, layers=[(3, 1, 0), (7, 1, 0)])
    assert panel.view.problem == (
        "layer 2 does not fit: kernel=7 spans 7 pixels but the padded input has only 3 "
        "(size=3, padding=0); valid: kernel ≤ 3")
    assert len(panel.view.layers) == 1 and not panel.sliders["unit"].disabled
    panel.sliders["kernel 1"].value = 7  # now the first layer does not fit either
    assert panel.view.problem.startswith("layer 1 does not fit")
    assert panel.view.unit is None and panel.sliders["unit"].disabled
    panel.sliders["padding 1"].value = 1  # padded to 7: fits, a single unit
    assert panel.view.problem.startswith("layer 2") and panel.view.sizes == (5, 1)


def test_a_unit_that_reads_only_padding_sees_no_pixel():
    view = describe_stack(StackState(size=4, layers=[(1, 1, 0), (1, 1, 3)], unit=0))
    assert view.seen == frozenset()
    assert view.lines[-1].startswith("top unit 0 sees input pixels none")
    assert view.lines[2].endswith("padding only")


@pytest.mark.parametrize("values, message", [
    ({"size": 0}, r"size=0 is out of range; valid: 1 ≤ size ≤ 48"),
    ({"unit": -1}, r"unit=-1 is out of range; valid: 0 ≤ unit ≤ 47"),
    ({"layers": []}, r"layers=\[\] must be a list of 1 to 4"),
    ({"layers": [(3, 1)]}, r"layer 1=\(3, 1\) must be a \(kernel, stride, padding\) tuple"),
    ({"layers": [(3, 1, 0), (3, 4, 0)]},
     r"stride of layer 2=4 is out of range; valid: 1 ≤ stride of layer 2 ≤ 3"),
    ({"layers": [(3, 1, 2.5)]}, r"padding of layer 1=2.5 is not an integer"),
])
def test_values_outside_the_sliders_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        StackState(**values)
    with pytest.raises(ValueError, match=message):
        StackPanel().set(**values)


# --- the transposed op ------------------------------------------------------------------


def test_output_padding_is_for_the_transposed_op_only(panel):
    assert panel.sliders["output_padding"].disabled
    panel.set(op="transposed")
    assert not panel.sliders["output_padding"].disabled and panel.ceil_mode.disabled
    panel.set(op="maxpool")
    assert panel.sliders["output_padding"].disabled


def test_transposed_readout_fills_in_the_formula(panel):
    panel.set(op="transposed", size=7, kernel=4, stride=2, padding=1, output_padding=1)
    expected = (7 - 1) * 2 - 2 * 1 + 1 * (4 - 1) + 1 + 1
    assert panel.view.sizes == (7, expected)
    assert panel.view.lines[0] == (
        f"O = (7−1)·2 − 2·1 + 1·(4−1) + 1 + 1 = 12 − 2 + 3 + 1 + 1 = {expected}")
    assert panel.view.lines[1] == "inside, every output sums 2 inputs"


def test_the_checkerboard_is_read_out_and_traced(panel):
    panel.set(op="transposed", size=6, kernel=3, stride=2, padding=0, unit=5)
    assert panel.view.lines[1] == ("inside, outputs sum 2, 1, 2, 1, … inputs "
                                   "(uneven: the checkerboard)")
    assert panel.view.lines[-1] == ("top unit 5 depends on input pixel 2 "
                                    "(its field depends on the unit)")
    panel.sliders["unit"].value = 4  # 4 = 2·2 + 0 = 2·1 + 2
    assert panel.view.lines[-1].startswith("top unit 4 depends on input pixels 1…2")


def test_a_transposed_unit_between_the_taps_reads_nothing(panel):
    panel.set(op="transposed", size=5, kernel=1, stride=2, unit=1)
    assert panel.view.lines[-1] == ("top unit 1 depends on no input pixel "
                                    "(its field depends on the unit)")


def test_stride_one_transposed_has_a_field(panel):
    # A stride-1 transposed conv is a conv with padding d·(k−1) − p: field k, padding 2 − 1.
    panel.set(op="transposed", size=8, kernel=3, stride=1, padding=1, unit=0)
    assert panel.view.lines[-1] == ("top unit 0 sees input pixels -1…1: field 3 px, jump 1 px, "
                                    "effective padding 1 px")


def test_impossible_output_padding_says_why_in_one_line(panel):
    panel.set(op="transposed", size=5, kernel=3, stride=2, output_padding=2)
    assert panel.view.problem == (
        "impossible layer: output_padding=2 is out of range: it must be smaller than stride=2 "
        "or dilation=1; valid: output_padding ≤ 1")
    assert panel.sliders["unit"].disabled and "unexpected error" not in panel.readout.value
    assert torch_sizes(panel.state) is None  # torch refuses it too
    panel.sliders["dilation"].value = 3  # output_padding < max(stride, dilation) = 3: allowed
    assert panel.view.problem is None
    assert list(panel.view.sizes) == torch_sizes(panel.state)


def test_too_many_cells_are_not_drawn_but_said(panel):
    for size, layers in [(20, 3), (64, 1)]:  # 20 → 100 → 500: layer 2; 64 → 320: layer 1
        panel.set(op="transposed", size=size, kernel=5, stride=5, layers=layers)
        sizes = torch_sizes(panel.state)
        first = next(n for n, length in enumerate(sizes) if length > MAX_DRAWN)
        assert panel.view.sizes == tuple(sizes[:first])
        assert panel.view.problem == (f"layer {first} is not drawn: its {sizes[first]} outputs "
                                      f"are more than a picture can show ({MAX_DRAWN})")
        assert panel.sliders["unit"].disabled == (first == 1)
        assert bytes(panel.image.value[:4]) == b"\x89PNG"
        assert "unexpected error" not in panel.readout.value


def test_transposed_panel_traces_what_torch_sums():
    """The readout's traced pixels are the gradient support of the top unit, through a stack of
    identical ConvTranspose1d with all weights 1 (float64: nothing cancels)."""
    rng = random.Random(7)
    checked = 0
    while checked < 80:
        state = PanelState(size=rng.randint(1, 12), kernel=rng.randint(1, 5),
                           stride=rng.randint(2, 3), padding=rng.randint(0, 3),
                           dilation=rng.randint(1, 3), layers=rng.randint(1, 3),
                           unit=rng.randint(0, 63), op="transposed",
                           output_padding=rng.randint(0, 2))
        view = describe(state)
        if view.problem:
            continue
        checked += 1
        module = nn.ConvTranspose1d(1, 1, state.kernel, state.stride, state.padding,
                                    state.output_padding, dilation=state.dilation, bias=False,
                                    dtype=torch.float64)
        nn.init.ones_(module.weight)
        stack = nn.Sequential(*[module] * state.layers)
        support = gradient_support(stack, state.size, view.unit, seeds=[0])
        traced = layout_pixels1d(view.layers, state.size, view.unit).input_cells
        assert traced == support, state
        assert all(isinstance(layer, Layer) for layer in view.layers)


def test_the_panel_repr_shows_output_padding_for_the_transposed_op_only(panel):
    # lesson 01 stores a conv panel's repr: it stays as it was
    panel.set(size=12, kernel=3, stride=2, padding=1, output_padding=1)
    assert repr(panel) == ("ConvPanel(PanelState(size=12, kernel=3, stride=2, padding=1, "
                           "dilation=1, layers=1, unit=0, op='conv', ceil_mode=False))")
    panel.set(op="transposed")
    assert repr(panel).endswith("op='transposed', ceil_mode=False, output_padding=1))")


@pytest.mark.parametrize("make, move", [
    (lambda: ConvPanel(size=9, op="transposed", stride=2, kernel=3),
     lambda panel: panel.set(unit=3)),
    (lambda: StackPanel(size=15, layers=[(3, 2, 0), (2, 1, 0)]),
     lambda panel: panel.set(unit=2)),
])
def test_a_slider_step_lays_the_diagram_out_once(monkeypatch, make, move):
    """The readout and the drawing share one layout (a strided transposed layer's readout
    needs the traced cells; laying out twice cost a second walk on every step)."""
    import rfviz.draw.pixels1d
    import rfviz.widgets

    panel = make()
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return layout_pixels1d(*args, **kwargs)

    for module in (rfviz.widgets, rfviz.draw.pixels1d):  # the panel's and the drawing's
        monkeypatch.setattr(module, "layout_pixels1d", counted)
    move(panel)
    assert len(calls) == 1
