"""The atlas explorer, driven as a person would (slider values, the button), with torch as the
oracle: the unit sliders span the stage's real output, and the drawn box is where the unit's
gradient lands."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
from matplotlib.patches import Rectangle

from rfviz import atlas
from rfviz.draw.colours import PALETTE
from rfviz.explorer import MEASURE_LIMIT, AtlasExplorer, explorable

ROOT = Path(__file__).resolve().parent.parent
ROWS = atlas.read(ROOT / "docs" / "atlas")


def drawn_box(explorer) -> tuple[tuple[int, int], tuple[int, int]]:
    """The field box as drawn: (first row, last row), (first column, last column)."""
    (box,) = [p for p in explorer._figure.axes[0].patches if isinstance(p, Rectangle)
              and p.get_linewidth() > 0 and p.get_edgecolor()[:3] != (0, 0, 0)]
    left, top = box.get_x() + 0.5, box.get_y() + 0.5
    return ((round(top), round(top + box.get_height() - 1)),
            (round(left), round(left + box.get_width() - 1)))


def output_shape(model, layer: str, size) -> tuple[int, ...]:
    """The layer's output shape, from torch itself (a forward hook on the meta device)."""
    shapes = []
    handle = model.get_submodule(layer).register_forward_hook(
        lambda module, inputs, out: shapes.append(tuple(out.shape)))
    with torch.no_grad():
        model.to("meta")(torch.empty(1, 3, *size, device="meta"))
    handle.remove()
    return shapes[0]


def test_only_torchvision_2d_networks_are_offered():
    networks = explorable(ROWS)
    assert "resnet50" in networks and "fcn_resnet50" in networks
    assert "retinanet_resnet50_fpn" in networks
    assert not any(name.startswith(("timm/", "tf-slim/", "variant/")) for name in networks)
    assert not any(name.startswith(("r3d", "mc3", "s3d")) for name in networks)  # 3D video


@pytest.mark.parametrize("network, stages", [
    ("resnet18", ["layer1", "layer3", "layer4"]),
    ("mobilenet_v2", ["features.3", "features.13"]),
])
def test_unit_sliders_span_the_stage_output_torch_gives(network, stages):
    explorer = AtlasExplorer(ROWS, network, stages[0])
    model = torchvision.models.get_model(network, weights=None)
    for stage in stages:
        explorer.stage.value = stage  # as a person moving the slider
        height, width = output_shape(model, stage, explorer.size)[-2:]
        assert (explorer.unit_h.max + 1, explorer.unit_w.max + 1) == (height, width)
        assert explorer.unit_h.value <= explorer.unit_h.max


def test_the_drawn_box_is_the_field_the_atlas_row_states():
    explorer = AtlasExplorer(ROWS, "resnet50", "layer3", unit=(3, 11))
    row = explorer.atlas_row
    expected = tuple((i * jump - padding, i * jump - padding + size - 1) for i, size, jump, padding
                     in zip((3, 11), row["field"], row["jump"], row["padding"], strict=True))
    assert drawn_box(explorer) == expected
    assert "the same as the atlas row" in explorer.readout.value


def test_a_unit_step_shows_the_picture_a_fresh_explorer_draws():
    explorer = AtlasExplorer(ROWS, "resnet18", "layer2", unit=(1, 2))
    explorer.unit_h.value = 5  # the box moves; the photograph and grid stay drawn
    explorer.stage.value = "layer3"  # drawn anew
    explorer.unit_w.value = 0
    fresh = AtlasExplorer(ROWS, "resnet18", "layer3", unit=(explorer.unit_h.value, 0))
    assert explorer.picture.value == fresh.picture.value
    assert drawn_box(explorer) == drawn_box(fresh)


def test_a_row_that_disagrees_with_the_trace_is_said_in_red():
    rows = copy.deepcopy(ROWS)
    row = next(r for r in rows if r["model"] == "resnet18" and r["stage"] == "layer2")
    row["field"] = [f + 2 for f in row["field"]]
    explorer = AtlasExplorer(rows, "resnet18", "layer2")
    assert "NOT the atlas row" in explorer.readout.value
    assert PALETTE["field"] not in explorer.readout.value


@pytest.mark.parametrize("network, stage, unit", [
    ("resnet18", "layer2", (13, 13)),  # interior: the whole box
    ("resnet18", "layer2", (0, 27)),  # a corner: the box hangs over the border
    ("retinanet_resnet50_fpn", "backbone.body.layer1", (20, 30)),  # a detector's backbone
])
def test_measure_finds_the_gradient_where_the_box_is(network, stage, unit):
    explorer = AtlasExplorer(ROWS, network, stage, unit=unit)
    measurement = explorer.measure(samples=2, erf_samples=1)
    assert measurement.agrees, measurement
    bar = explorer.progress.children[0]
    assert bar.children[1].value == bar.children[1].max == 3  # the progress bar went through
    assert explorer.erf is not None and explorer.erf.shape == explorer.size
    # the box it was compared with is the one drawn, clipped to the image
    assert measurement.clipped_box == tuple(
        (max(a, 0), min(b, n - 1)) for (a, b), n in zip(drawn_box(explorer), explorer.size,
                                                         strict=True))


def test_a_measurement_that_misses_the_box_says_so():
    explorer = AtlasExplorer(ROWS, "resnet18", "layer1", unit=(20, 20))
    measurement = explorer.measure(samples=1, erf_samples=1)
    (top, bottom), columns = measurement.spans
    wrong = replace(measurement, spans=((top + 1, bottom), columns))  # a row short
    assert measurement.agrees and not wrong.agrees
    assert "≠ the traced box" in repr(wrong)


def test_moving_the_unit_forgets_the_measurement():
    explorer = AtlasExplorer(ROWS, "resnet18", "layer1", unit=(20, 20))
    explorer.measure(samples=1, erf_samples=1)
    assert explorer.result.value
    explorer.unit_w.value = 21
    assert explorer.erf is None and explorer.result.value == ""


def test_a_global_stage_draws_no_box_and_measures_nothing():
    explorer = AtlasExplorer(ROWS, "efficientnet_b0", "features.3")
    assert "global" in explorer.readout.value
    assert explorer.unit_h.disabled and explorer.unit_w.disabled and explorer.button.disabled
    assert not [p for p in explorer._figure.axes[0].patches if isinstance(p, Rectangle)]
    assert explorer.measure() is None and "global" in explorer.result.value


def test_a_network_too_large_to_build_here_is_refused_before_building(monkeypatch):
    big = next(r for r in ROWS if r["model"] == "regnet_y_128gf" and r["status"] == "ok")
    assert big["parameters"] > MEASURE_LIMIT
    explorer = AtlasExplorer(ROWS, "regnet_y_128gf", big["stage"])
    monkeypatch.setattr(atlas, "build", lambda *a, **k: pytest.fail("built a huge network"))
    assert explorer.measure() is None
    assert "M parameters" in explorer.result.value


def test_the_button_shows_a_failure_as_one_line_never_a_traceback(monkeypatch):
    explorer = AtlasExplorer(ROWS, "resnet18", "layer1")

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("rfviz.probe.measured_field", broken)
    explorer.button.click()
    assert "could not measure: out of memory" in explorer.result.value


def test_choosing_another_network_keeps_a_stage_of_that_network():
    explorer = AtlasExplorer(ROWS, "resnet18", "layer4")
    explorer.network.value = "resnet50"
    assert explorer.stage.value == "layer4"  # resnet50 has one: kept
    explorer.network.value = "vgg16"
    assert explorer.stage.value in [r["stage"] for r in explorable(ROWS)["vgg16"]]


@pytest.mark.parametrize("arguments, match", [
    (("resnet5",), "network='resnet5' is not among .* valid: .*resnet50"),
    (("timm/resnet50d",), "network='timm/resnet50d'"),
    (("resnet50", "layer9"), "stage='layer9' is not a stage of resnet50 .* valid: relu, layer1"),
])
def test_bad_choices_are_named_with_the_valid_ones(arguments, match):
    with pytest.raises(ValueError, match=match):
        AtlasExplorer(ROWS, *arguments)



def test_the_explorer_needs_no_timm():
    # Binder and the lessons have no timm: a torchvision network, a detector's backbone too,
    # is found, built and traced without it.
    code = ("import sys; sys.modules['timm'] = None\n"  # importing timm now fails
            "from rfviz import atlas; from rfviz.explorer import AtlasExplorer\n"
            f"e = AtlasExplorer(atlas.read({str(ROOT / 'docs' / 'atlas')!r}), 'resnet18')\n"
            "e.network.value = 'fasterrcnn_resnet50_fpn'\n"
            "print(e.readout.value)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the same as the atlas row" in result.stdout
