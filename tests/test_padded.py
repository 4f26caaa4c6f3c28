"""The padded-image picture: the values torch's padding gives, the window where torch puts it."""

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from rfviz.draw.colours import PALETTE
from rfviz.draw.padded import draw_padded

matplotlib.use("Agg")

PIXELS = [[1, 2, 0, 3], [4, 1, 1, 0], [2, 0, 3, 1], [0, 1, 2, 2]]


def drawn(image, padding, kernel):
    ax = Figure().add_subplot()
    draw_padded(image, padding, kernel, ax=ax)
    return ax


def cells(ax, colour):
    return [p for p in ax.patches if p.get_fill() and p.get_facecolor() == to_rgba(colour)]


@pytest.mark.parametrize(("padding", "torch_pad"), [(1, (1, 1, 1, 1)), (0, (0, 0, 0, 0)),
                                                    ((1, 2), (2, 2, 1, 1))])
def test_the_written_values_are_torchs_padded_image(padding, torch_pad):
    ax = drawn(PIXELS, padding, 1)
    padded = torch.nn.functional.pad(torch.tensor(PIXELS), torch_pad)  # (left, right, top, bottom)
    height, width = padded.shape
    assert [t.get_text() for t in ax.texts] == [str(int(v)) for v in padded.flatten()]
    assert [t.get_position() for t in ax.texts] == [(c, r) for r in range(height)
                                                    for c in range(width)]


def test_the_window_is_the_first_one_torch_computes():
    # output (0, 0) of conv2d(padding=1) is the sum of the values under the blue/orange cells
    ax = drawn(PIXELS, 1, 3)
    window = cells(ax, PALETTE["field"]) + cells(ax, PALETTE["field_padding"])
    assert len(window) == 3 * 3
    under = {(round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in window}
    texts = {t.get_position(): int(t.get_text()) for t in ax.texts}
    first = torch.nn.functional.conv2d(torch.tensor(PIXELS)[None, None].float(),
                                       torch.ones(1, 1, 3, 3), padding=1)[0, 0, 0, 0]
    assert sum(texts[xy] for xy in under) == first


@pytest.mark.parametrize(("padding", "kernel", "on_padding"), [
    (1, 3, 3 * 3 - 2 * 2), (2, 3, 3 * 3 - 1), (0, 3, 0), (1, (2, 4), 2 * 4 - 1 * 3),
    ((0, 1), 3, 3),
])
def test_orange_cells_are_the_window_on_the_padding(padding, kernel, on_padding):
    ax = drawn(PIXELS, padding, kernel)
    assert len(cells(ax, PALETTE["field_padding"])) == on_padding
    assert f"\n{on_padding} of its" in ax.get_title()


def test_padding_cells_are_dashed_and_pixels_solid():
    ax = drawn(PIXELS, 2, 1)
    cell_patches = [p for p in ax.patches if p.get_fill()]
    dashed = [p for p in cell_patches if p.get_linestyle() == "--"]
    assert len(cell_patches) == 8 * 8 and len(dashed) == 8 * 8 - 4 * 4


def test_fractions_get_two_significant_digits():
    ax = drawn(np.array([[0.123456, 1.5]]), 0, 1)
    assert [t.get_text() for t in ax.texts] == ["0.12", "1.5"]


def test_a_figure_of_its_own_when_no_axes_are_given():
    fig = draw_padded(PIXELS, 1, 3)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 1
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize(("image", "padding", "kernel", "message"), [
    ([1, 2, 3], 1, 3, r"image has shape \(3,\); valid: a 2D array \(height, width\)"),
    (np.zeros((0, 3)), 1, 3, r"image has shape \(0, 3\); valid: a 2D array"),
    (PIXELS, -1, 3, r"padding=-1 is out of range; valid: padding ≥ 0"),
    (PIXELS, 1.5, 3, r"padding=1.5 is not an integer or a \(height, width\) pair"),
    (PIXELS, 1, 0, r"kernel=0 is out of range; valid: kernel ≥ 1"),
    (PIXELS, 1, (3, 3, 3), r"kernel=\(3, 3, 3\) is not an integer or a \(height, width\) pair"),
    (PIXELS, 1, True, r"kernel=True is not an integer"),
    (PIXELS, 1, 7, r"kernel=7 spans 7 pixels but the padded image has only 6 "
                   r"\(height=4, padding=1\); valid: kernel ≤ 6"),
    (PIXELS, (1, 0), (3, 5), r"kernel=\(3, 5\) spans 5 pixels but the padded image has only 4 "
                             r"\(width=4, padding=0\)"),
    (np.zeros((4, 39)), 1, 3, r"the padded image is 41 cells in width, too many to write out "
                              r"\(width=39, padding=1\); valid: width \+ 2·padding ≤ 40"),
])
def test_bad_input_is_named(image, padding, kernel, message):
    with pytest.raises(ValueError, match=message):
        draw_padded(image, padding, kernel, ax=Figure().add_subplot())
