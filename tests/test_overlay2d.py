"""The 2D overlay: the box sits on the unit's span, padding is counted, bad fields refused."""

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from rfviz.draw.overlay2d import draw_overlay2d, photograph
from rfviz.field import CannotFollow, Field, ReceptiveField

matplotlib.use("Agg")


def boxes(fig):
    return [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]


def test_box_covers_the_span_of_the_unit_per_axis():
    h, w = ReceptiveField(11, 4, 5), ReceptiveField(7, 2, 3)  # H and W differ
    fig = Figure()
    draw_overlay2d(np.zeros((40, 30)), Field((h, w)), unit=(3, 4), ax=fig.add_subplot())
    outline = boxes(fig)[-1]
    (top, bottom), (left, right) = h.span(3), w.span(4)
    assert outline.get_xy() == (left - 0.5, top - 0.5)
    assert (outline.get_width(), outline.get_height()) == (right - left + 1, bottom - top + 1)


def test_padding_part_is_counted_in_the_title():
    fig = Figure()
    # unit 0 of a 5-pixel field with padding 2: rows and columns -2…2, 9 of 25 inside.
    draw_overlay2d(np.zeros((8, 8, 3)), ReceptiveField(5, 1, 2), unit=(0, 0),
                   ax=fig.add_subplot())
    assert fig.axes[0].get_title().endswith(f"{25 - 9} of them in the padding (hatched)")


def test_stride_grid_has_one_dot_per_unit():
    fig = Figure()
    draw_overlay2d(np.zeros((32, 32)), ReceptiveField(3, 4, 1), unit=(1, 1),
                   ax=fig.add_subplot(), grid=(8, 6))
    dots = fig.axes[0].collections[0]
    assert len(dots.get_offsets()) == 8 * 6


def test_global_field_is_refused():
    with pytest.raises(ValueError, match="has no box to draw: it is global"):
        draw_overlay2d(np.zeros((8, 8)), Field.whole_input())


def test_unknown_field_is_refused_naming_the_op():
    unknown = Field.unknown_after(CannotFollow("Upsample", "rfviz has no rule for it", "1"))
    with pytest.raises(ValueError, match=r"no box to draw: rfviz cannot follow Upsample at '1'"):
        draw_overlay2d(np.zeros((8, 8)), unknown)


def test_photograph_is_real_and_resized():
    image = photograph((60, 40))
    assert image.shape == (60, 40, 3)
    assert 0 <= image.min() < image.max() <= 1
    assert image.std() > 0.1  # a picture, not a flat field


def test_a_per_unit_field_draws_each_units_own_span():
    from torch import nn

    from rfviz import receptive_field

    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Upsample(scale_factor=2),
                        nn.Conv2d(8, 4, 3, 1, 1))
    field = receptive_field(net, None, (48, 40))
    for unit in [(10, 20), (11, 20), (0, 0)]:
        (top, bottom), (left, right) = field.span(unit)
        title = draw_overlay2d(np.zeros((48, 40)), field, unit).axes[0].get_title()
        assert f"rows {top}…{bottom}, columns {left}…{right}" in title
        assert f"{bottom - top + 1}×{right - left + 1} px" in title


def rendered(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def test_moving_the_unit_draws_what_drawing_it_anew_draws():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from rfviz.draw.overlay2d import Overlay

    image, field = photograph((48, 40)), Field((ReceptiveField(11, 4, 5), ReceptiveField(7, 2, 3)))
    moved, anew = Figure(figsize=(3, 3)), Figure(figsize=(3, 3))
    FigureCanvasAgg(moved), FigureCanvasAgg(anew)
    overlay = Overlay(moved.add_subplot(), image, field)
    for unit in ((5, 9), (0, 0)):  # the last one reaches into the padding (hatched)
        overlay.show(unit)
        draw_overlay2d(image, field, unit, ax=anew.add_subplot())
        assert np.array_equal(rendered(moved), rendered(anew))
        anew.clear()
    assert not np.array_equal(rendered(moved), rendered(overlay.show((5, 9)).ax.figure))


def test_only_the_part_of_the_box_in_the_padding_is_hatched():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from rfviz.draw.overlay2d import Overlay

    fig = Figure(figsize=(3, 3))
    FigureCanvasAgg(fig)
    overlay = Overlay(fig.add_subplot(), photograph((48, 40)), ReceptiveField(11, 4, 5))
    for unit, hatched in (((0, 0), True), ((5, 4), False)):  # rows -5…5; rows 15…25
        overlay.show(unit)
        shown = rendered(fig)
        overlay.padding.set_visible(False)
        assert (not np.array_equal(shown, rendered(fig))) == hatched
        overlay.padding.set_visible(True)
