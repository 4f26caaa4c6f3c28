"""Effective-receptive-field maps side by side, each with its unit's theoretical field drawn on it.

All panels share one linear colour scale (and one colour bar), so a wide, faint ERF looks
fainter than a narrow, bright one: each map sums to 1, and a wider map has lower values.

>>> import numpy as np
>>> from rfviz.field import ReceptiveField
>>> bump = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
>>> wider = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
>>> maps = {"one": np.pad(bump, 2), "two": np.pad(wider, 1)}          # both 7 x 7
>>> fields = {"one": ReceptiveField(3, 1, 1), "two": ReceptiveField(5, 1, 2)}
>>> fig = draw_erf_maps(maps, fields, unit=(3, 3))
>>> [ax.get_title() for ax in fig.axes[:2]]                 # the field: 2 * 1 + 1, 2 * 2 + 1
['one: field 3×3 px', 'two: field 5×5 px']
>>> fig.axes[1].patches[0].get_xy()                          # unit 3 sees pixels 3 - 2 … 3 + 2
(0.5, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib import patheffects
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from .colours import HEAT_COLORMAP, PALETTE
from .overlay2d import _axes_fields

__all__ = ["draw_erf_maps"]


def _units(unit, labels) -> dict:
    """One (row, column) unit per panel, from one pair for all or a dict per label."""
    if isinstance(unit, Mapping):
        if set(unit) != set(labels):
            raise ValueError(f"unit must name the same panels as maps, {sorted(labels)}; "
                             f"got {sorted(unit)}")
        return {label: tuple(unit[label]) for label in labels}
    if not isinstance(unit, tuple | list) or len(unit) != 2:
        raise ValueError(f"unit={unit!r} must be a (row, column) pair or a dict of them")
    return dict.fromkeys(labels, tuple(unit))


def draw_erf_maps(maps: Mapping[str, np.ndarray], fields: Mapping, unit, fig=None):
    """One panel per ERF map (e.g. :func:`rfviz.probe.effective_field`), ``label -> (H, W)``
    array, with the theoretical receptive field of output ``unit`` drawn as a box.

    ``fields`` maps the same labels to a :class:`~rfviz.field.ReceptiveField` (square), an
    ``(h, w)`` pair of them, or a traced :class:`~rfviz.field.Field`. ``unit`` is one
    ``(row, column)`` for every panel or a dict of them per label. All panels share one colour
    scale, from 0 to the largest value of all maps, shown by one colour bar.
    """
    if not maps:
        raise ValueError("maps is empty: give at least one label -> ERF map")
    if set(fields) != set(maps):
        raise ValueError(f"fields must name the same panels as maps, {sorted(maps)}; "
                         f"got {sorted(fields)}")
    arrays = {label: np.asarray(values, dtype=float) for label, values in maps.items()}
    for label, values in arrays.items():
        if values.ndim != 2 or values.size == 0 or values.min() < 0:
            raise ValueError(f"maps[{label!r}] must be a 2D map of non-negative values, "
                             f"got shape {values.shape}")
    units = _units(unit, list(arrays))
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(2.6 * len(arrays) + 1.2, 2.9), layout="constrained")
    axes = fig.subplots(1, len(arrays), squeeze=False)[0]
    norm = Normalize(vmin=0.0, vmax=max(float(a.max()) for a in arrays.values()) or 1.0)
    image = None
    for ax, (label, values) in zip(axes, arrays.items(), strict=True):
        field_h, field_w = _axes_fields(fields[label])
        row, col = units[label]
        (top, bottom), (left, right) = field_h.span(row), field_w.span(col)
        image = ax.imshow(values, cmap=HEAT_COLORMAP, norm=norm, interpolation="nearest")
        height, width = values.shape  # show the whole box, also where it leaves the map
        ax.set_xlim(min(-0.5, left - 1.5), max(width - 0.5, right + 1.5))
        ax.set_ylim(max(height - 0.5, bottom + 1.5), min(-0.5, top - 1.5))
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1,
                               facecolor="none", edgecolor=PALETTE["field"], linewidth=2,
                               path_effects=[patheffects.withStroke(linewidth=3,
                                                                    foreground="white")]))
        ax.set_title(f"{label}: field {field_h.size}×{field_w.size} px", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes), label="share of the gradient",
                 shrink=0.9)
    return fig
