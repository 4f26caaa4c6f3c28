"""A small image with its zero padding written out, and the kernel at its first position.

PyTorch's ``padding=p`` adds ``p`` zeros on *each* side, so a 4 × 4 image with padding 1 is
6 × 6, and a 3 × 3 kernel's first window (top left) covers 5 border zeros and 4 pixels.
Cells are drawn as in :func:`~rfviz.draw.pixels1d.draw_pixels1d`: pixels grey with a solid
edge, padding white with a dashed one; the kernel's window blue on pixels, orange on padding.

>>> fig = draw_padded([[1, 2, 0, 3], [4, 1, 1, 0], [2, 0, 3, 1], [0, 1, 2, 2]], 1, 3)
>>> print(fig.axes[0].get_title())     # 6 = 4 + 2·1; 5 = 3·3 − 2·2 cells of the window on zeros
4×4 image, padding 1 → 6×6
3×3 kernel at its first position:
5 of its 9 cells on the padding
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .colours import PALETTE

__all__ = ["draw_padded"]

LARGEST = 40  # cells per side with every value written out


def _pair(name: str, value, low: int) -> tuple[int, int]:
    """``value`` as (height, width) integers, each at least ``low``."""
    values = value if isinstance(value, tuple | list) else (value, value)
    if len(values) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool)
                                   for v in values):
        raise ValueError(f"{name}={value!r} is not an integer or a (height, width) pair of "
                         f"integers; valid: e.g. {name}={low + 1}")
    if min(values) < low:
        raise ValueError(f"{name}={value!r} is out of range; valid: {name} ≥ {low}")
    return int(values[0]), int(values[1])


def _label(value: float, integers: bool) -> str:
    return f"{value:.0f}" if integers else f"{value:.2g}"


def draw_padded(image, padding, kernel, ax=None) -> Figure:
    """Draw ``image`` (a 2D array: height × width) zero-padded by ``padding`` per side, every
    value written in its cell, and a ``kernel``-sized window at its first position.

    ``padding`` and ``kernel`` are integers or (height, width) pairs, as in ``nn.Conv2d``.
    Returns the figure; pass ``ax`` to draw into existing axes.
    """
    values = np.asarray(image, dtype=float)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"image has shape {values.shape}; valid: a 2D array (height, width) "
                         f"of at least 1×1")
    pad = _pair("padding", padding, 0)
    window = _pair("kernel", kernel, 1)
    padded = np.pad(values, [(pad[0], pad[0]), (pad[1], pad[1])])
    for axis, name in enumerate(("height", "width")):
        if window[axis] > padded.shape[axis]:
            raise ValueError(f"kernel={kernel!r} spans {window[axis]} pixels but the padded "
                             f"image has only {padded.shape[axis]} ({name}={values.shape[axis]}, "
                             f"padding={pad[axis]}); valid: kernel ≤ {padded.shape[axis]}")
        if padded.shape[axis] > LARGEST:
            raise ValueError(f"the padded image is {padded.shape[axis]} cells in {name}, too many "
                             f"to write out ({name}={values.shape[axis]}, padding={pad[axis]}); "
                             f"valid: {name} + 2·padding ≤ {LARGEST}")
    if ax is None:
        import matplotlib.pyplot as plt

        height, width = padded.shape
        _, ax = plt.subplots(figsize=(max(2.5, 0.5 * width), max(2.5, 0.5 * height) + 0.8))
    integers = bool(np.all(values == np.round(values)))
    on_padding = 0
    for (row, col), value in np.ndenumerate(padded):
        is_padding = not (pad[0] <= row < pad[0] + values.shape[0]
                          and pad[1] <= col < pad[1] + values.shape[1])
        in_window = row < window[0] and col < window[1]
        on_padding += in_window and is_padding
        if in_window:
            face = PALETTE["field_padding"] if is_padding else PALETTE["field"]
        else:
            face = PALETTE["padding"] if is_padding else PALETTE["cell"]
        ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, facecolor=face,
                               edgecolor=PALETTE["padding_edge"] if is_padding else PALETTE["edge"],
                               linestyle="--" if is_padding else "-", linewidth=0.8))
        ax.text(col, row, _label(value, integers), ha="center", va="center", fontsize=10,
                color="white" if in_window and not is_padding else PALETTE["text"])
    ax.add_patch(Rectangle((-0.5, -0.5), window[1], window[0], fill=False,
                           edgecolor=PALETTE["field"], linewidth=2.5))
    ax.set_xlim(-0.6, padded.shape[1] - 0.4)
    ax.set_ylim(padded.shape[0] - 0.4, -0.6)  # row 0 at the top, as in an image
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    shape = f"{values.shape[0]}×{values.shape[1]}"
    pads = f"{pad[0]}" if pad[0] == pad[1] else f"{pad[0]} rows, {pad[1]} columns"
    ax.set_title(f"{shape} image, padding {pads} → {padded.shape[0]}×{padded.shape[1]}\n"
                 f"{window[0]}×{window[1]} kernel at its first position:\n{on_padding} of its "
                 f"{window[0] * window[1]} cells on the padding", fontsize=9)
    return ax.figure
