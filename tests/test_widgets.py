"""The slider panel, driven programmatically as a person would drive it."""

import random
from dataclasses import replace

import pytest
import torch
from torch import nn

from rfviz.widgets import ConvPanel, PanelState, describe

OPS = ["conv", "maxpool", "avgpool"]


def torch_sizes(state: PanelState) -> list[int] | None:
    """Sizes through `state.layers` copies of the layer, by torch; None where torch refuses."""
    if state.op == "conv":
        module = nn.Conv1d(1, 1, state.kernel, state.stride, state.padding, state.dilation)
    elif state.op == "maxpool":
        module = nn.MaxPool1d(state.kernel, state.stride, state.padding, state.dilation,
                              ceil_mode=state.ceil_mode)
    else:
        module = nn.AvgPool1d(state.kernel, state.stride, state.padding, ceil_mode=state.ceil_mode)
    x, sizes = torch.zeros(1, 1, state.size), [state.size]
    with torch.no_grad():
        for _ in range(state.layers):
            try:
                x = module(x)
            except RuntimeError:
                return None
            sizes.append(x.shape[-1])
    return sizes


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
