"""The fields at a cut: the margins each side needs, drawn where they are."""

import random

import matplotlib
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from rfviz.draw.colours import PALETTE
from rfviz.draw.cut import draw_cut, margins_at_cut
from rfviz.field import ReceptiveField

matplotlib.use("Agg")


def test_resnet50_layer3_at_the_seeds_cut():
    m = margins_at_cut(ReceptiveField(267, 16, 133), 240)
    assert (m.last_unit, m.first_unit) == (14, 15)
    assert (m.after, m.before) == (224 + 133 - 240 + 1, 133)  # unit 14 reaches 224 + 133


@pytest.mark.parametrize("seed", range(20))
def test_margins_are_the_same_at_every_cut_on_the_grid(seed):
    # after = size - stride - padding and before = padding, wherever the cut falls on the grid
    rng = random.Random(seed)
    stride = rng.randint(1, 16)
    padding = rng.randint(0, 60)
    field = ReceptiveField(rng.randint(stride, 200), stride, padding)
    for k in range(1, 12):
        m = margins_at_cut(field, k * stride)
        assert (m.after, m.before) == (field.size - stride - padding, padding)


def test_a_cut_off_the_grid_is_refused():
    with pytest.raises(ValueError, match=r"cut=250 is not a positive multiple of the jump 16; "
                                         r"valid: e.g. 240 or 256"):
        margins_at_cut(ReceptiveField(267, 16, 133), 250)


def test_the_orange_parts_are_the_margins():
    field = ReceptiveField(267, 16, 133)
    ax = Figure().add_subplot()
    draw_cut(field, 240, 500, ax=ax)
    orange = [p for p in ax.patches if p.get_facecolor() == to_rgba(PALETTE["field_padding"])]
    assert sorted(round(p.get_width()) for p in orange) == [118, 133]
    assert "118 rows past the cut, the second 133 before it" in ax.get_title()
