"""Where the fields of the two units next to a cut reach: why tile margins are asymmetric.

Along one axis, cut an image at pixel ``cut`` (on the stride grid: units ``0 … k-1`` belong
to the first tile, ``k = cut / stride`` onwards to the second). Unit ``i``'s field is centred
on ``center(i)`` and reaches ``span(i)``. The first tile's last unit reaches past the cut by
``after`` pixels; the second tile's first unit reaches back before it by ``before`` pixels.
For ResNet-50's ``layer3`` (field 267, jump 16, padding 133) and a cut at 240, unit 14 is
centred on 224 and reaches 357 (118 past the cut); unit 15 is centred on 240, the cut itself,
and reaches back to 107 (133 before it).

>>> from rfviz.field import ReceptiveField
>>> margins_at_cut(ReceptiveField(267, 16, 133), 240)
CutMargins(cut=240, last_unit=14, first_unit=15, after=118, before=133)
"""

from __future__ import annotations

from typing import NamedTuple

from matplotlib.figure import Figure

from ..field import ReceptiveField
from .colours import PALETTE

__all__ = ["CutMargins", "draw_cut", "margins_at_cut"]


class CutMargins(NamedTuple):
    cut: int
    last_unit: int  # the first tile's last unit
    first_unit: int  # the second tile's first unit
    after: int  # pixels the first tile must read past the cut
    before: int  # pixels the second tile must read before the cut


def margins_at_cut(field: ReceptiveField, cut: int) -> CutMargins:
    """The pixels each side of a cut must read beyond it, from the two units next to it."""
    if cut <= 0 or cut % field.stride:
        low = max(field.stride, cut // field.stride * field.stride)
        raise ValueError(f"cut={cut} is not a positive multiple of the jump {field.stride}; "
                         f"valid: e.g. {low} or {low + field.stride}")
    first = cut // field.stride
    return CutMargins(cut, first - 1, first, field.span(first - 1)[1] - cut + 1,
                      cut - field.span(first)[0])


def draw_cut(field: ReceptiveField, cut: int, size: int, ax=None) -> Figure:
    """The fields of the units on both sides of ``cut`` over an axis of ``size`` pixels: each
    field's part beyond the cut is the margin that side needs."""
    m = margins_at_cut(field, cut)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(8.0, 2.6))
    rows = [(1, m.last_unit, "first tile's last unit"), (0, m.first_unit,
                                                         "second tile's first unit")]
    for y, unit, label in rows:
        first, last = field.span(unit)
        ax.barh(y, last - first + 1, left=first - 0.5, height=0.5, color=PALETTE["field"],
                alpha=0.35, edgecolor=PALETTE["field"])
        beyond = (cut, last) if y == 1 else (first, cut - 1)  # the part across the cut
        ax.barh(y, beyond[1] - beyond[0] + 1, left=beyond[0] - 0.5, height=0.5,
                color=PALETTE["field_padding"], edgecolor=PALETTE["field_padding"])
        reach = f"{m.after} past the cut" if y == 1 else f"{m.before} before the cut"
        ax.text((beyond[0] + beyond[1]) / 2, y, reach, ha="center", va="center", fontsize=8,
                color=PALETTE["text"])
        ax.plot([field.center(unit)], [y], marker="|", markersize=16, color=PALETTE["text"])
        ax.text(first - 1, y, f"unit {unit}: {first}…{last} ", ha="right", va="center",
                fontsize=9, color=PALETTE["text"])
        ax.text(size + 2, y, f" {label}", ha="left", va="center", fontsize=9,
                color=PALETTE["text"])
    ax.axvline(cut - 0.5, color=PALETTE["seam"], linestyle="--", linewidth=1.5)
    ax.axvspan(-0.5, size - 0.5, color=PALETTE["cell"], zorder=0)
    ax.set_xlim(min(-0.5, field.span(m.last_unit)[0] - 90), size + 120)
    ax.set_ylim(-0.6, 1.6)
    ax.set_yticks([])
    centres = [c for c in (field.center(i) for i in range(size // field.stride + 1)) if c < size]
    ax.set_xticks(centres, minor=True)  # the stride grid: every unit's centre
    ax.set_xlabel("image row (grey: the image; | this unit's centre; small ticks: every "
                  "unit's centre)", fontsize=9)
    ax.set_title(f"cut at {cut}: the first tile needs {m.after} rows past the cut, "
                 f"the second {m.before} before it", fontsize=10)
    return ax.figure
