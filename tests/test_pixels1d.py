"""The 1D diagram: its geometry against torch, and what it draws."""

import matplotlib
import pytest
from builders import fitting_cases, gradient_support, random_layers, torch_stack_1d
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from rfviz.draw.colours import PALETTE
from rfviz.draw.pixels1d import _label_step, draw_pixels1d, layout_pixels1d
from rfviz.field import Layer, layer_sizes

matplotlib.use("Agg")


def test_the_tutorials_picture():
    # k=3, s=2 over 7 pixels: unit 0 sees [0 1 2], unit 1 sees [2 3 4] (1-based [1 2 3], [3 4 5]).
    for unit, window in [(0, {0, 1, 2}), (1, {2, 3, 4})]:
        assert layout_pixels1d([(3, 2, 0)], 7, unit=unit).input_cells == window
    # Filter 2 (k=2, s=1) on top: its unit 0 sees the union [0 … 4].
    two = layout_pixels1d([(3, 2, 0), (2, 1, 0)], 7, unit=0)
    assert two.highlighted[1] == {0, 1}
    assert two.input_cells == {0, 1, 2, 3, 4}


def test_rows_hold_padding_cells_of_the_layer_above():
    diagram = layout_pixels1d([Layer(3, 2, 1), Layer(3, 1, 2)], 8)
    assert [row.size for row in diagram.rows] == [8, (8 + 2 - 3) // 2 + 1, 4 + 4 - 3 + 1]
    assert diagram.rows[0].cells == range(-1, 9)  # one padding cell per side
    assert diagram.rows[1].cells == range(-2, 6)
    assert diagram.rows[2].cells == range(0, 6)  # the top row is not padded
    assert [c for c in diagram.rows[0].cells if diagram.rows[0].is_padding(c)] == [-1, 8]


def test_ceil_mode_window_past_the_padding_is_drawn():
    # 5 pixels, max pool k=3 s=3 ceil_mode: 2 windows, the second reads 3, 4 and index 5 (past).
    diagram = layout_pixels1d([Layer(3, 3, 0, op="maxpool", ceil_mode=True)], 5, unit=1)
    assert diagram.rows[1].size == 2
    assert diagram.rows[0].cells == range(0, 6)
    assert diagram.highlighted[0] == {3, 4, 5}
    assert diagram.input_cells == {3, 4}


def test_cells_sit_above_the_centre_of_their_field():
    diagram = layout_pixels1d([(3, 2, 1), (2, 2, 0)], 9)
    top = diagram.rows[2]
    for unit in range(top.size):
        first, last = top.field.span(unit)
        assert top.x(unit) == (first + last) / 2


def test_errors_name_the_layer_and_the_range():
    with pytest.raises(ValueError, match=r"layer 3 \(conv k=3 s=2 p=0\): kernel=3 spans 3 pixels"):
        layout_pixels1d([(3, 2, 0)] * 3, 7)
    with pytest.raises(ValueError, match=r"unit=3 is out of range: .* 0 ≤ unit ≤ 2"):
        layout_pixels1d([(3, 2, 0)], 7, unit=3)


# --- torch as the oracle: the highlighted input cells are exactly the gradient support ----


@pytest.mark.parametrize(("layers", "size"),
                         list(fitting_cases(random_layers, (4, 40), 60, seed=3)))
def test_highlighted_input_is_the_gradient_support(layers, size):
    stack = torch_stack_1d(layers)
    for unit in range(layer_sizes(layers, size)[-1]):
        support = gradient_support(stack, size, unit, seeds=[0])
        assert layout_pixels1d(layers, size, unit=unit).input_cells == support


# --- drawing ------------------------------------------------------------------------


def collection(fig, kind):
    (found,) = [c for c in fig.axes[0].collections if isinstance(c, kind)]
    return found


def test_draws_one_box_per_cell_and_colours_the_field():
    layers = [Layer(3, 2, 1), Layer(3, 1, 1)]
    fig = draw_pixels1d(layers, 9, unit=1, fig=Figure())
    diagram = layout_pixels1d(layers, 9, unit=1)
    boxes = collection(fig, PolyCollection)
    assert len(boxes.get_paths()) == sum(len(row.cells) for row in diagram.rows)
    faces = [tuple(face) for face in boxes.get_facecolors()]
    lit_real = sum(1 for row, lit in zip(diagram.rows, diagram.highlighted, strict=True)
                   for cell in lit if not row.is_padding(cell))
    lit_padding = sum(len(lit) for lit in diagram.highlighted) - lit_real
    assert faces.count(to_rgba(PALETTE["field"])) == lit_real
    assert faces.count(to_rgba(PALETTE["field_padding"])) == lit_padding == 1  # cell -1 of input


def test_64_cells_per_row_stay_labelled_and_readable():
    layers = [Layer(3, 1, 1)] * 4
    fig = draw_pixels1d(layers, 64, unit=30, fig=Figure())
    labels = collection(fig, PathCollection)
    assert len(labels.get_offsets()) == 5 * 64  # every real cell has its index
    (size,) = labels.get_sizes()
    assert size**0.5 >= 5.5  # font size in points


@pytest.mark.parametrize("points_per_pixel", [2.0, 3.0, 6.0, 9.0, 16.0])
@pytest.mark.parametrize("longest", [1, 2, 3])
def test_labels_fit_in_the_cells_they_label(points_per_pixel, longest):
    fontsize, step = _label_step(points_per_pixel, longest)
    label_width = 0.64 * fontsize * longest  # DejaVu Sans digits are ~0.64 em wide
    assert label_width <= step * points_per_pixel * 0.85
    assert step == 1 or fontsize < 10


def test_index_base_one_shows_the_seed_labels():
    fig = draw_pixels1d([(3, 2, 0)], 7, unit=1, index_base=1, fig=Figure())
    title = fig.axes[0].texts[-1].get_text()
    assert title.startswith("top unit 2 sees input 3…5")


def test_reusing_a_figure_keeps_one_axes_and_changes_the_picture():
    fig = Figure()
    draw_pixels1d([(3, 1, 0)], 12, unit=0, fig=fig)
    before = len(collection(fig, PolyCollection).get_paths())
    draw_pixels1d([(5, 2, 1)], 12, unit=0, fig=fig)
    assert len(fig.axes) == 1
    assert len(collection(fig, PolyCollection).get_paths()) != before


def test_draws_into_a_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert draw_pixels1d([(3, 1, 1)], 5, ax=ax) is fig
    assert len(ax.collections) == 4  # links, lit links, cells, labels
