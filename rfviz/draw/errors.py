"""Where tiled and whole-image results differ: error maps side by side, with the seam marked.

The maps hold relative errors (|tiled − whole| / max |whole|). Values below round-off
(:data:`rfviz.roundoff.ROUND_OFF`) are drawn at the floor of the colour scale and titled as
round-off, so the picture is the same on every machine.

>>> import numpy as np
>>> fig = draw_error_maps({"margin 128": np.eye(4) * 0.002, "margin 144": np.eye(4) * 3e-16},
...                       cut=2)
>>> [ax.get_title() for ax in fig.axes[:2]]
['margin 128: max 0.002', 'margin 144: max 0 (round-off < 1e-12)']
"""

from __future__ import annotations

import numpy as np
from matplotlib import patheffects
from matplotlib.colors import LogNorm

from ..roundoff import ROUND_OFF, describe_error
from .colours import ERROR_COLORMAP, PALETTE

__all__ = ["draw_error_maps"]

FLOOR = ROUND_OFF  # errors below this (exact zeros included) are drawn as "equal"


def draw_error_maps(maps: dict[str, np.ndarray], cut: float | None = None, fig=None):
    """One panel per map of relative errors |tiled - whole| / max |whole| (rows x columns of
    feature-map units), log colour scale shared by all panels; ``cut`` draws the seam between
    tiles (in units, a row index)."""
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(3.1 * len(maps) + 0.8, 3.4))
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    arrays = {label: np.asarray(values, dtype=float) for label, values in maps.items()}
    top = max(FLOOR * 10, *(float(a.max()) for a in arrays.values()))
    norm = LogNorm(vmin=FLOOR, vmax=top)
    image = None
    for ax, (label, values) in zip(axes, arrays.items(), strict=True):
        image = ax.imshow(np.maximum(values, FLOOR), cmap=ERROR_COLORMAP, norm=norm,
                          interpolation="nearest")
        if cut is not None:
            ax.axhline(cut - 0.5, color=PALETTE["seam"], linewidth=1.5, linestyle="--",
                       path_effects=[patheffects.withStroke(linewidth=3, foreground="white")])
        ax.set_title(f"{label}: max {describe_error(values.max())}", fontsize=9)
        ax.set_xticks([])
    axes[0].set_ylabel("feature-map row", fontsize=8)  # shared: on every panel it overlaps
    fig.colorbar(image, ax=list(axes), label=f"relative error (< {FLOOR:g}: round-off)",
                 shrink=0.85)
    return fig
