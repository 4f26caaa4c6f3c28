"""Stacked 1D pixel-index diagrams: the input at the bottom, one row of cells per layer.

Every cell sits above the centre of the input pixels it sees, so the picture is also a
map: stride spreads the upper rows apart, padding cells hang off the ends, and each
output cell is linked to the cells of its window in the row below. ``unit`` traces
one top unit down to the input.

The geometry (:func:`layout_pixels1d`) is plain Python and tested on its own; the
drawing uses matplotlib collections only, and draws index labels as glyph paths in one
collection, because a text artist per cell is too slow for a slider
(``benchmarks/bench_draw.py`` prints both side by side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path
from matplotlib.textpath import TextPath
from matplotlib.transforms import IdentityTransform, blended_transform_factory

from ..field import Layer, ReceptiveField, as_layer, layer_fields
from .colours import PALETTE

__all__ = ["Diagram1d", "Row", "draw_pixels1d", "layout_pixels1d"]

CELL_WIDTH = 0.84  # in input pixels; the gap shows the cell borders
CELL_HEIGHT = 1.0
ROW_PITCH = 2.4  # vertical distance between rows, room for the links
INCHES_PER_PIXEL = 0.24
MAX_WIDTH_INCHES = 13.0
LABEL_INCHES = 2.3  # left margin for the row labels
_AXES_LABEL = "rfviz.pixels1d"


@dataclass(frozen=True)
class Row:
    """One row of cells: the input (``layer is None``) or the output of ``layer``.

    ``cells`` are the indices drawn, padding included (``index < 0`` or ``≥ size``).
    """

    size: int
    field: ReceptiveField
    cells: range
    layer: Layer | None = None

    def is_padding(self, index: int) -> bool:
        return index < 0 or index >= self.size

    def x(self, index: int) -> float:
        """Where the cell sits: the centre of its field, in input pixels."""
        return self.field.center(index)


@dataclass(frozen=True)
class Diagram1d:
    """The geometry of a stacked diagram, independent of any drawing library.

    ``highlighted[r]`` holds the cells of row ``r`` that reach the traced unit (empty
    without a highlight). ``links`` are (row, cell, cell below) triples.
    """

    rows: tuple[Row, ...]
    highlighted: tuple[frozenset[int], ...]
    unit: int | None = None  # the traced unit of the top row

    def windows(self):
        """Yield ``(row, cell, cell_below)`` for every link from a real cell to its window."""
        for r, row in enumerate(self.rows[1:], start=1):
            for cell in range(row.size):
                for below in row.layer.window(cell):
                    yield r, cell, below

    @property
    def input_cells(self) -> frozenset[int]:
        """The real input pixels the highlighted unit reads (holes included where it skips)."""
        row = self.rows[0]
        return frozenset(i for i in self.highlighted[0] if not row.is_padding(i))


def layout_pixels1d(layers: Sequence[Layer | tuple | dict], size: int,
                    unit: int | None = None) -> Diagram1d:
    """Rows, cell positions and the traced field for ``layers`` applied to ``size`` pixels.

    Raises the arithmetic's ``ValueError`` (naming the layer) if a layer does not fit.

    >>> diagram = layout_pixels1d([(3, 2, 0)], size=7, unit=1)
    >>> [row.size for row in diagram.rows]                # 7 pixels -> (7 - 3) // 2 + 1 = 3
    [7, 3]
    >>> sorted(diagram.input_cells)                       # the tutorial's picture: 1-based [3 4 5]
    [2, 3, 4]
    """
    layers = [as_layer(layer) for layer in layers]
    sizes = [size]
    for number, layer in enumerate(layers, start=1):
        try:
            sizes.append(layer.output_size(sizes[-1]))
        except ValueError as error:
            raise ValueError(f"layer {number} ({layer.label}): {error}") from None
    fields = layer_fields(layers)

    rows = []
    for r, (n, field) in enumerate(zip(sizes, fields, strict=True)):
        above = layers[r] if r < len(layers) else None
        before, after = 0, 0
        if above is not None:
            before = above.padding
            last_read = ((sizes[r + 1] - 1) * above.stride - above.padding
                         + above.effective_kernel - 1)
            after = max(above.padding, last_read - n + 1)  # ceil_mode may read past the padding
        rows.append(Row(n, field, range(-before, n + after), layers[r - 1] if r else None))

    highlighted = [frozenset()] * len(rows)
    if unit is not None:
        top = sizes[-1]
        if not 0 <= unit < top:
            raise ValueError(f"unit={unit} is out of range: the top row has {top} "
                             f"units; valid: 0 ≤ unit ≤ {top - 1}")
        current = frozenset([unit])
        highlighted[-1] = current
        for r in range(len(rows) - 1, 0, -1):
            reals = (c for c in current if not rows[r].is_padding(c))
            current = frozenset(below for c in reals for below in rows[r].layer.window(c))
            highlighted[r - 1] = current
    return Diagram1d(tuple(rows), tuple(highlighted), unit)


# --- drawing --------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _glyphs(text: str) -> Path:
    """``text`` as a path of 1-point glyphs centred on (0, 0); scaled by the collection."""
    path = TextPath((0, 0), text, size=1, prop=FontProperties(family="DejaVu Sans"))
    (x0, y0), (x1, y1) = path.get_extents().get_points()
    return Path(path.vertices - [(x0 + x1) / 2, (y0 + y1) / 2], path.codes)


def _figure_size(diagram: Diagram1d) -> tuple[float, float]:
    xs = _x_limits(diagram)
    width = min(LABEL_INCHES + 0.3 + INCHES_PER_PIXEL * (xs[1] - xs[0]), MAX_WIDTH_INCHES)
    height = 0.62 + 0.58 * ROW_PITCH * len(diagram.rows) / 2.4
    return max(width, 6.0), height


def _x_limits(diagram: Diagram1d) -> tuple[float, float]:
    lows = [row.x(row.cells.start) for row in diagram.rows if len(row.cells)]
    highs = [row.x(row.cells.stop - 1) for row in diagram.rows if len(row.cells)]
    return min(lows) - 0.6, max(highs) + 0.6


def _cell_boxes(xs: np.ndarray, y: float) -> np.ndarray:
    half = CELL_WIDTH / 2
    boxes = np.empty((len(xs), 4, 2))
    boxes[:, :, 1] = [y, y, y + CELL_HEIGHT, y + CELL_HEIGHT]
    boxes[:, 0, 0] = boxes[:, 3, 0] = xs - half
    boxes[:, 1, 0] = boxes[:, 2, 0] = xs + half
    return boxes


def _label_step(points_per_pixel: float, longest: int) -> tuple[float, int]:
    """Font size for index labels, and every how many cells to label (1: all)."""
    fontsize = min(10.0, 0.8 * CELL_WIDTH * points_per_pixel / (0.64 * longest))
    if fontsize >= 5.5:
        return fontsize, 1
    fontsize = min(8.0, 0.8 * 5 * points_per_pixel / (0.64 * longest))
    return fontsize, 5


def draw_pixels1d(layers: Sequence[Layer | tuple | dict], size: int, unit: int | None = None,
                  ax=None, *, index_base: int = 0, fig: Figure | None = None) -> Figure:
    """Draw the stacked 1D diagram of ``layers`` over ``size`` input pixels.

    ``layers`` are :class:`~rfviz.field.Layer` objects or ``(kernel, stride, padding)``
    tuples. ``unit`` is a unit of the top row whose field is traced down to the input.
    Labels are 0-based; ``index_base=1`` shows 1-based labels as in many textbooks.

    Without ``ax`` a new pyplot figure is made (a notebook shows it once the cell ends);
    with ``fig`` that figure is cleared, resized and reused (for widgets).

    >>> fig = draw_pixels1d([(3, 2, 0), (2, 1, 0)], size=7, unit=0)   # the tutorial's
    >>> len(fig.axes)
    1
    """
    diagram = layout_pixels1d(layers, size, unit)
    if ax is None:
        ax = _diagram_axes(diagram, fig)
    _render(diagram, ax, index_base)
    return ax.figure


def _diagram_axes(diagram: Diagram1d, figure: Figure | None):
    """Axes sized for ``diagram``: new, or the one ``figure`` already holds, emptied.

    Reusing the axes saves most of a redraw: creating one costs more than drawing the cells.
    """
    width, height = _figure_size(diagram)
    left = LABEL_INCHES / width
    rect = (left, 0.04, 0.985 - left, 1 - 0.04 - 0.5 / height)
    if figure is None:
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=(width, height))
    figure.set_size_inches(width, height)
    reusable = [ax for ax in figure.axes if ax.get_label() == _AXES_LABEL]
    if reusable and len(figure.axes) == 1:
        ax = reusable[0]
        for artist in [*ax.collections, *ax.texts]:
            artist.remove()
        ax.set_position(rect)
        return ax
    figure.clear()
    return figure.add_axes(rect, label=_AXES_LABEL)


def _render(diagram: Diagram1d, ax, index_base: int) -> None:
    ax.set_axis_off()
    x_low, x_high = _x_limits(diagram)
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(-0.3, (len(diagram.rows) - 1) * ROW_PITCH + CELL_HEIGHT + 0.3)
    fig = ax.figure
    axes_inches = ax.get_position().width * fig.get_figwidth()
    points_per_pixel = 72 * axes_inches / (x_high - x_low)
    longest = len(str(max(row.cells.stop for row in diagram.rows) - 1 + index_base))
    fontsize, step = _label_step(points_per_pixel, max(longest, 2))

    boxes, faces, edges, styles = [], [], [], []
    label_xy, label_paths, label_colors = [], [], []
    for r, row in enumerate(diagram.rows):
        y = r * ROW_PITCH
        cells = np.array(row.cells)
        xs = row.x(cells)
        boxes.append(_cell_boxes(xs, y))
        lit = diagram.highlighted[r]
        for cell, x in zip(cells.tolist(), xs.tolist(), strict=True):
            padding = row.is_padding(cell)
            if cell in lit:
                faces.append(PALETTE["field_padding"] if padding else PALETTE["field"])
            else:
                faces.append(PALETTE["padding"] if padding else PALETTE["cell"])
            edges.append(PALETTE["padding_edge"] if padding else PALETTE["edge"])
            styles.append("--" if padding else "-")
            if not padding and (step == 1 or cell % step == 0 or cell in lit):
                label_xy.append((x, y + CELL_HEIGHT / 2))
                label_paths.append(_glyphs(str(cell + index_base)))
                label_colors.append("white" if cell in lit else PALETTE["text"])

    link_plain, link_lit = [], []
    for r, cell, below in diagram.windows():
        upper, lower = diagram.rows[r], diagram.rows[r - 1]
        segment = ((upper.x(cell), r * ROW_PITCH),
                   (lower.x(below), (r - 1) * ROW_PITCH + CELL_HEIGHT))
        lit = cell in diagram.highlighted[r] and below in diagram.highlighted[r - 1]
        (link_lit if lit else link_plain).append(segment)

    # autolim=False: the limits are set above; updating them per collection is wasted work.
    ax.add_collection(LineCollection(link_plain, colors=PALETTE["link"], linewidths=0.6),
                      autolim=False)
    ax.add_collection(LineCollection(link_lit, colors=PALETTE["field"], linewidths=1.6),
                      autolim=False)
    ax.add_collection(PolyCollection(np.concatenate(boxes), facecolors=faces, edgecolors=edges,
                                     linestyles=styles, linewidths=0.8), autolim=False)
    if label_paths:  # glyph paths in points, placed like scatter markers
        labels = PathCollection(label_paths, sizes=[fontsize**2], offsets=label_xy,
                                offset_transform=ax.transData, facecolors=label_colors,
                                edgecolors="none")
        labels.set_transform(IdentityTransform())
        ax.add_collection(labels, autolim=False)

    row_labels = blended_transform_factory(fig.transFigure, ax.transData)
    for r, row in enumerate(diagram.rows):
        name = f"input: {row.size}" if row.layer is None else f"{row.layer.label} → {row.size}"
        ax.text(0.012, r * ROW_PITCH + CELL_HEIGHT / 2, name, transform=row_labels, ha="left",
                va="center", fontsize=9, color=PALETTE["text"])
    # Not ax.set_title: placing a title measures the (hidden) tick labels on every draw.
    ax.text(0.012, 1, _title(diagram, index_base), ha="left", va="bottom", fontsize=10,
            transform=blended_transform_factory(fig.transFigure, ax.transAxes),
            color=PALETTE["text"])


def _title(diagram: Diagram1d, index_base: int) -> str:
    top = diagram.rows[-1]
    if diagram.unit is None:
        return f"field of one top unit: {top.field.size} px, jump {top.field.stride} px"
    first, last = top.field.span(diagram.unit)
    seen = sorted(diagram.input_cells)
    text = (f"top unit {diagram.unit + index_base} sees input "
            f"{first + index_base}…{last + index_base} ({top.field.size} px)")
    outside = (last - first + 1) - len(seen)
    if seen and outside:
        text = text[:-1] + f", {outside} in padding or between taps)"
    return text
