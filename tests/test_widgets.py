"""The slider panel, driven programmatically as a person would drive it."""

import random
from dataclasses import replace

import pytest
import torch
from builders import gradient_support, torch_stack_1d
from torch import nn

from rfviz.field import ReceptiveField
from rfviz.widgets import ConvPanel, PanelState, StackPanel, StackState, describe, describe_stack

OPS = ["conv", "maxpool", "avgpool"]


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
    if view.problem:  # one line, naming what is wrong
        assert "does not fit" in view.problem and "\n" not in view.problem
        assert torch_sizes(state) is None, state
    else:
        assert list(view.sizes) == torch_sizes(state), state
        assert 0 <= view.unit < view.sizes[-1]


@pytest.fixture
def panel():
    return ConvPanel(size=12, kernel=3, stride=1)


@pytest.mark.parametrize("op", OPS)
def test_every_slider_over_its_whole_range(panel, op):
    panel.set(op=op, ceil_mode=op != "conv")
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
                           ceil_mode=rng.random() < 0.5)
        adapted = state_for_panel(state)
        view, expected = describe(adapted), torch_sizes(adapted)
        if expected is None:
            assert view.problem
        else:
            assert list(view.sizes) == expected
    # and a sample of them through the real panel, drawing included
    for _ in range(60):
        panel.set(size=rng.randint(1, 64), kernel=rng.randint(1, 9), stride=rng.randint(1, 5),
                  padding=rng.randint(0, 4), op=rng.choice(OPS), layers=rng.randint(1, 4),
                  ceil_mode=rng.random() < 0.5, unit=rng.randint(0, 63))
        assert_panel_is_sane(panel)


def state_for_panel(state: PanelState) -> PanelState:
    """The state after the panel's adapting ranges: pooling padding ≤ kernel // 2, etc."""
    if state.op == "conv":
        return replace(state, ceil_mode=False)
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
