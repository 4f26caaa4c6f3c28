"""draw_erf_maps: one panel per ERF map, one shared colour scale and bar, the field's box."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from rfviz.draw.colours import HEAT_COLORMAP, PALETTE
from rfviz.draw.erf_maps import draw_erf_maps
from rfviz.erf import stack_erf
from rfviz.field import ReceptiveField


def maps_and_fields():
    # the uniform 3x3 stacks of lesson 6 on one 15 x 15 input: field 2n + 1, padding n
    maps = {f"n = {n}": stack_erf(n, size=15) for n in (1, 3, 6)}
    fields = {f"n = {n}": ReceptiveField(2 * n + 1, 1, n) for n in (1, 3, 6)}
    return maps, fields


def panels(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def test_one_panel_per_map_with_one_shared_scale_and_one_colour_bar():
    maps, fields = maps_and_fields()
    fig = draw_erf_maps(maps, fields, unit=(7, 7), fig=Figure())
    images = [ax.images[0] for ax in panels(fig)]
    assert len(images) == 3
    assert len({id(im.norm) for im in images}) == 1  # one norm object: one scale
    top = max(m.max() for m in maps.values())  # the narrowest map's peak (n = 1: 1/9)
    assert (images[0].norm.vmin, images[0].norm.vmax) == (0.0, top)
    assert all(im.get_cmap().name == HEAT_COLORMAP for im in images)
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1
    for im, values in zip(images, maps.values(), strict=True):
        np.testing.assert_array_equal(im.get_array(), values)


@pytest.mark.parametrize("unit", [(7, 7), (4, 9)])
def test_the_box_is_the_field_span_of_the_unit(unit):
    maps, fields = maps_and_fields()
    fig = draw_erf_maps(maps, fields, unit=unit, fig=Figure())
    for ax, (label, field) in zip(panels(fig), fields.items(), strict=True):
        (box,) = ax.patches
        (top, bottom), (left, right) = field.span(unit[0]), field.span(unit[1])
        assert box.get_xy() == (left - 0.5, top - 0.5)  # pixel edges around the span
        assert (box.get_width(), box.get_height()) == (right - left + 1, bottom - top + 1)
        assert box.get_width() == field.size
        assert to_rgba(box.get_edgecolor()) == to_rgba(PALETTE["field"])
        assert ax.get_title() == f"{label}: field {field.size}×{field.size} px"


def test_the_box_encloses_exactly_the_nonzero_gradient():
    # torch as the oracle: where the uniform stack's gradient is nonzero is the field
    maps, fields = maps_and_fields()
    fig = draw_erf_maps(maps, fields, unit=(7, 7), fig=Figure())
    for ax, values in zip(panels(fig), maps.values(), strict=True):
        (box,) = ax.patches
        rows, cols = np.nonzero(values)
        assert box.get_xy() == (cols.min() - 0.5, rows.min() - 0.5)
        assert box.get_height() == rows.max() - rows.min() + 1


def test_per_panel_units_and_fields_as_pairs():
    maps = {"a": np.ones((6, 8)), "b": np.ones((6, 8))}
    fields = {"a": (ReceptiveField(3, 1, 1), ReceptiveField(5, 1, 2)), "b": ReceptiveField(3)}
    fig = draw_erf_maps(maps, fields, unit={"a": (2, 3), "b": (0, 0)}, fig=Figure())
    a, b = (ax.patches[0] for ax in panels(fig))
    assert (a.get_xy(), a.get_width(), a.get_height()) == ((0.5, 0.5), 5, 3)
    assert b.get_xy() == (-0.5, -0.5)
    assert panels(fig)[0].get_title() == "a: field 3×5 px"


@pytest.mark.parametrize(("maps", "fields", "unit", "message"), [
    ({}, {}, (0, 0), r"maps is empty"),
    ({"a": np.ones((3, 3))}, {"b": ReceptiveField(3)}, (0, 0),
     r"fields must name the same panels as maps, \['a'\]; got \['b'\]"),
    ({"a": np.ones(3)}, {"a": ReceptiveField(3)}, (0, 0), r"maps\['a'\] must be a 2D map"),
    ({"a": -np.ones((3, 3))}, {"a": ReceptiveField(3)}, (0, 0), r"non-negative"),
    ({"a": np.ones((3, 3))}, {"a": ReceptiveField(3)}, (0, 0, 0), r"unit=\(0, 0, 0\) must be"),
    ({"a": np.ones((3, 3))}, {"a": ReceptiveField(3)}, {"b": (0, 0)},
     r"unit must name the same panels as maps"),
])
def test_bad_input_is_refused_with_the_parameter_named(maps, fields, unit, message):
    with pytest.raises(ValueError, match=message):
        draw_erf_maps(maps, fields, unit=unit, fig=Figure())
