"""draw_error_maps: one panel per map, one colour scale for all, the seam where it was cut."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from rfviz.draw.colours import PALETTE
from rfviz.draw.errors import FLOOR, draw_error_maps


def maps():
    exact = np.full((8, 6), 3e-16)  # round-off: some machines give 0, others this
    wrong = np.zeros((8, 6))
    wrong[3:5] = [[1e-4], [1e-2]]  # rows 3 and 4 wrong: the rows next to the seam
    return {"exact": exact, "wrong": wrong}


def test_one_panel_per_map_sharing_one_scale():
    fig = draw_error_maps(maps(), fig=Figure())
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    assert {(im.norm.vmin, im.norm.vmax) for im in images} == {(FLOOR, 1e-2)}
    assert [ax.get_title() for ax in fig.axes[:2]] == ["exact: max 0 (round-off < 1e-12)",
                                                       "wrong: max 0.01"]


def test_round_off_and_zeros_are_drawn_at_the_floor_of_the_log_scale():
    zeros = {"zeros": np.zeros((8, 6))}
    for errors in (maps(), zeros):
        fig = draw_error_maps(errors, fig=Figure())
        exact = fig.axes[0].images[0].get_array()
        assert np.all(exact == FLOOR)  # the same picture on every machine; log(0): no hole


def test_the_seam_is_drawn_between_rows_on_every_panel():
    fig = draw_error_maps(maps(), cut=4, fig=Figure())
    for ax in fig.axes[:2]:
        (seam,) = ax.lines
        assert seam.get_ydata()[0] == 3.5  # between row 3 and row 4
        assert to_rgba(seam.get_color()) == to_rgba(PALETTE["seam"])
        assert seam.get_path_effects(), "the seam needs its white halo on dark cells"


def test_no_seam_without_a_cut():
    fig = draw_error_maps(maps(), fig=Figure())
    assert not any(ax.lines for ax in fig.axes)
