"""Stacked 1D pixel-index diagrams: the input at the bottom, one row of cells per layer.

Every cell sits above the centre of the input pixels it sees, so the picture is also a
map: stride spreads the upper rows apart, padding cells hang off the ends, and each
output cell is linked to the cells of its window in the row below. ``unit`` traces
one top unit down to the input.

A transposed convolution's output cell is linked to the input cells it sums (a transposed
convolution pads nothing: only inputs that exist), shaded by how many it sums and with that
count under its index: kernel 3 and stride 2 show the checkerboard (inside, outputs sum 2
and 1 inputs in turn). Its cells sit ``1/stride`` of a cell of the row below apart.

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
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path
from matplotlib.textpath import TextPath
from matplotlib.transforms import IdentityTransform, blended_transform_factory

from ..field import Layer, ReceptiveField, as_layer, layer_fields
from .colours import PALETTE

__all__ = ["Diagram1d", "Row", "draw_layout1d", "draw_pixels1d", "layout_pixels1d"]

CELL_WIDTH = 0.84  # of the cell pitch (an input pixel, less above a transposed layer)
COUNTS_GID = "inputs summed"  # the collection of a transposed layer's counts
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
    ``field`` is None from a transposed layer of stride > 1 on: its units' fields differ
    by phase, which no single :class:`~rfviz.field.ReceptiveField` holds. Cell ``i`` sits at
    ``origin + step * i``, in input pixels (see :func:`layout_pixels1d`).
    """

    size: int
    field: ReceptiveField | None
    cells: range
    layer: Layer | None = None
    origin: float = 0.0
    step: float = 1.0

    def is_padding(self, index: int) -> bool:
        return index < 0 or index >= self.size

    def x(self, index: int | np.ndarray) -> float | np.ndarray:
        """Where the cell (or an array of cells) sits, in input pixels."""
        return self.origin + self.step * index


@dataclass(frozen=True)
class Diagram1d:
    """The geometry of a stacked diagram, independent of any drawing library.

    ``highlighted[r]`` holds the cells of row ``r`` that reach the traced unit (empty
    without a highlight). ``links`` are (row, cell, cell below) triples.
    """

    rows: tuple[Row, ...]
    highlighted: tuple[frozenset[int], ...]
    unit: int | None = None  # the traced unit of the top row

    def reads(self, r: int, cell: int) -> range | list[int]:
        """The cells of row ``r - 1`` that ``cell`` of row ``r`` is linked to: its window,
        padding cells included, or for a transposed layer the inputs it sums."""
        return _reads(self.rows[r], cell, self.rows[r - 1])

    def windows(self):
        """Yield ``(row, cell, cell_below)`` for every link from a real cell to its window."""
        for r, row in enumerate(self.rows[1:], start=1):
            for cell in range(row.size):
                for below in self.reads(r, cell):
                    yield r, cell, below

    def contributions(self, r: int) -> tuple[int, ...]:
        """For each real cell of row ``r ≥ 1``, how many cells of the row below it reads
        (for a transposed layer: how many inputs it sums; the diagram shows that count)."""
        return tuple(len(self.reads(r, cell)) for cell in range(self.rows[r].size))

    @property
    def pitch(self) -> float:
        """The smallest distance between neighbouring cells, in input pixels: 1, or less
        above a transposed layer of stride > 1. Cells are drawn that wide (less a gap)."""
        return min(row.step for row in self.rows)

    @property
    def input_cells(self) -> frozenset[int]:
        """The real input pixels the highlighted unit reads (holes included where it skips)."""
        row = self.rows[0]
        return frozenset(i for i in self.highlighted[0] if not row.is_padding(i))


def _reads(row: Row, cell: int, below: Row) -> range | list[int]:
    """Cells of ``below`` that ``cell`` of ``row`` reads: a transposed layer's candidate
    inputs outside the row below do not exist (it pads nothing) and are dropped."""
    window = row.layer.window(cell)
    if row.layer.op != "transposed":
        return window
    return [i for i in window if 0 <= i < below.size]


def _fields(layers: list[Layer]) -> list[ReceptiveField | None]:
    """The field of each row, None from the first transposed layer of stride > 1 on."""
    known = next((r for r, layer in enumerate(layers)
                  if layer.op == "transposed" and layer.stride > 1), len(layers))
    return [*layer_fields(layers[:known]), *[None] * (len(layers) - known)]


def _placement(layer: Layer) -> tuple[float, float]:
    """Where output cell ``o`` of ``layer`` sits in the row below's index: ``a + b*o``.

    A window's cell sits over the middle of its window: ``o*stride - padding + (e-1)/2``
    (``e`` the effective kernel); composed row by row this is the field's centre. A transposed
    layer's output ``o`` gets input ``i`` through tap ``t`` where ``o = i*stride - padding +
    t*dilation``, so its middle tap ``t = (kernel-1)/2`` comes from ``i = (o + padding -
    (e-1)/2) / stride``: the cell sits over the centre of what it reads, taps that fall
    between inputs included, and a stride-``s`` layer puts ``s`` cells per cell below.
    """
    middle = (layer.effective_kernel - 1) / 2
    if layer.op == "transposed":
        return (layer.padding - middle) / layer.stride, 1 / layer.stride
    return middle - layer.padding, layer.stride


def layout_pixels1d(layers: Sequence[Layer | tuple | dict], size: int,
                    unit: int | None = None) -> Diagram1d:
    """Rows, cell positions and the traced field for ``layers`` applied to ``size`` pixels.

    Raises the arithmetic's ``ValueError`` (naming the layer) if a layer does not fit.
    Transposed layers (``op="transposed"``) are followed too: their units' windows are the
    inputs they sum, so the traced field is exact per unit.

    >>> diagram = layout_pixels1d([(3, 2, 0)], size=7, unit=1)
    >>> [row.size for row in diagram.rows]                # 7 pixels -> (7 - 3) // 2 + 1 = 3
    [7, 3]
    >>> sorted(diagram.input_cells)                       # the tutorial's picture: 1-based [3 4 5]
    [2, 3, 4]
    >>> up = layout_pixels1d([Layer(3, stride=2, op="transposed")], size=4)
    >>> up.rows[1].size, up.contributions(1)              # (4-1)*2 + 3 = 9: the checkerboard
    (9, (1, 1, 2, 1, 2, 1, 2, 1, 1))
    """
    layers = [as_layer(layer) for layer in layers]
    sizes = [size]
    for number, layer in enumerate(layers, start=1):
        try:
            sizes.append(layer.output_size(sizes[-1]))
        except ValueError as error:
            raise ValueError(f"layer {number} ({layer.label}): {error}") from None
    fields = _fields(layers)
    origins, steps = [0.0], [1.0]  # x of row r's cell i: origins[r] + steps[r] * i
    for layer in layers:
        offset, scale = _placement(layer)
        origins.append(origins[-1] + steps[-1] * offset)
        steps.append(steps[-1] * scale)

    rows = []
    for r, (n, field) in enumerate(zip(sizes, fields, strict=True)):
        above = layers[r] if r < len(layers) else None
        before, after = 0, 0
        if above is not None and above.op != "transposed":  # a transposed layer pads nothing
            before = above.padding
            last_read = ((sizes[r + 1] - 1) * above.stride - above.padding
                         + above.effective_kernel - 1)
            after = max(above.padding, last_read - n + 1)  # ceil_mode may read past the padding
        rows.append(Row(n, field, range(-before, n + after), layers[r - 1] if r else None,
                        origins[r], steps[r]))

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
            current = frozenset(below for c in reals for below in _reads(rows[r], c, rows[r - 1]))
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
    cells = (xs[1] - xs[0]) / diagram.pitch
    width = min(LABEL_INCHES + 0.3 + INCHES_PER_PIXEL * cells, MAX_WIDTH_INCHES)
    height = 0.62 + 0.58 * ROW_PITCH * len(diagram.rows) / 2.4
    return max(width, 6.0), height


def _x_limits(diagram: Diagram1d) -> tuple[float, float]:
    lows = [row.x(row.cells.start) for row in diagram.rows if len(row.cells)]
    highs = [row.x(row.cells.stop - 1) for row in diagram.rows if len(row.cells)]
    return min(lows) - 0.6 * diagram.pitch, max(highs) + 0.6 * diagram.pitch


def _cell_boxes(xs: np.ndarray, y: float, pitch: float = 1.0) -> np.ndarray:
    half = CELL_WIDTH * pitch / 2
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
    return draw_layout1d(layout_pixels1d(layers, size, unit), ax, index_base=index_base,
                         fig=fig)


def draw_layout1d(diagram: Diagram1d, ax=None, *, index_base: int = 0,
                  fig: Figure | None = None) -> Figure:
    """Draw a diagram already laid out by :func:`layout_pixels1d` (a panel that read the
    layout for its readout draws it without laying it out again); arguments as
    :func:`draw_pixels1d`.

    >>> diagram = layout_pixels1d([(3, 2, 0)], size=7, unit=1)
    >>> len(draw_layout1d(diagram).axes)
    1
    """
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
    pitch = diagram.pitch
    points_per_cell = 72 * axes_inches * pitch / (x_high - x_low)
    longest = len(str(max(row.cells.stop for row in diagram.rows) - 1 + index_base))
    fontsize, step = _label_step(points_per_cell, max(longest, 2))

    boxes, faces, edges, styles = [], [], [], []
    label_xy, label_paths, label_colors = [], [], []
    count_xy, count_paths, count_colors = [], [], []
    for r, row in enumerate(diagram.rows):
        y = r * ROW_PITCH
        cells = np.array(row.cells)
        xs = row.x(cells)
        boxes.append(_cell_boxes(xs, y, pitch))
        lit = diagram.highlighted[r]
        summed = diagram.contributions(r) if _is_transposed(row) else None
        shades = _count_shades(max(summed, default=0)) if summed else None
        for cell, x in zip(cells.tolist(), xs.tolist(), strict=True):
            padding = row.is_padding(cell)
            if cell in lit:
                faces.append(PALETTE["field_padding"] if padding else PALETTE["field"])
            elif shades and not padding:
                faces.append(shades[summed[cell]])
            else:
                faces.append(PALETTE["padding"] if padding else PALETTE["cell"])
            edges.append(PALETTE["padding_edge"] if padding else PALETTE["edge"])
            styles.append("--" if padding else "-")
            labelled = not padding and (step == 1 or cell % step == 0 or cell in lit)
            if labelled:
                high = 0.64 if summed else 0.5  # room for the count below the index
                label_xy.append((x, y + CELL_HEIGHT * high))
                label_paths.append(_glyphs(str(cell + index_base)))
                label_colors.append("white" if cell in lit else PALETTE["text"])
            if summed and labelled:
                count_xy.append((x, y + CELL_HEIGHT * 0.24))
                count_paths.append(_glyphs(str(summed[cell])))
                count_colors.append("white" if cell in lit else PALETTE["text"])

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
    if count_paths:  # a transposed layer's cells: how many inputs each sums, smaller
        counts = PathCollection(count_paths, sizes=[(0.7 * fontsize)**2], offsets=count_xy,
                                offset_transform=ax.transData, facecolors=count_colors,
                                edgecolors="none")
        counts.set_gid(COUNTS_GID)
        counts.set_transform(IdentityTransform())
        ax.add_collection(counts, autolim=False)

    row_labels = blended_transform_factory(fig.transFigure, ax.transData)
    for r, row in enumerate(diagram.rows):
        name = f"input: {row.size}" if row.layer is None else f"{row.layer.label} → {row.size}"
        if _is_transposed(row):
            name += "\nsmall digit: inputs summed"
        ax.text(0.012, r * ROW_PITCH + CELL_HEIGHT / 2, name, transform=row_labels, ha="left",
                va="center", fontsize=9, color=PALETTE["text"])
    # Not ax.set_title: placing a title measures the (hidden) tick labels on every draw.
    ax.text(0.012, 1, _title(diagram, index_base), ha="left", va="bottom", fontsize=10,
            transform=blended_transform_factory(fig.transFigure, ax.transAxes),
            color=PALETTE["text"])


def _is_transposed(row: Row) -> bool:
    return row.layer is not None and row.layer.op == "transposed"


def _count_shades(most: int) -> list[str]:
    """Face colours for 0 … ``most`` inputs summed: none white, then greys that darken with
    the count (the darkest still carries dark text well)."""
    light, dark = np.array(to_rgb(PALETTE["cell"])), np.array(to_rgb("#b0b0b0"))
    shades = [PALETTE["padding"]]
    for count in range(1, most + 1):
        mix = (count - 1) / max(most - 1, 1)
        shades.append(to_hex(light + (dark - light) * mix))
    return shades


def _reach(diagram: Diagram1d) -> list[tuple[int, int] | None]:
    """First and last real input pixel each top unit depends on (None: none), row by row."""
    rows = diagram.rows
    reach = [(i, i) for i in range(rows[0].size)]
    for r in range(1, len(rows)):
        below, reach = reach, []
        for cell in range(rows[r].size):
            parts = [below[i] for i in diagram.reads(r, cell)
                     if not rows[r - 1].is_padding(i) and below[i]]
            reach.append((min(p[0] for p in parts), max(p[1] for p in parts)) if parts else None)
    return reach


def _title(diagram: Diagram1d, index_base: int) -> str:
    top = diagram.rows[-1]
    if top.field is None:  # after a strided transposed layer: the field depends on the unit
        if diagram.unit is None:
            widest = max((last - first + 1 for first, last in filter(None, _reach(diagram))),
                         default=0)
            return f"fields of the top units: up to {widest} px (they depend on the unit)"
        seen = sorted(diagram.input_cells)
        if not seen:
            return f"top unit {diagram.unit + index_base} depends on no input pixel"
        first, last = seen[0] + index_base, seen[-1] + index_base
        gaps = ", with gaps" if len(seen) != seen[-1] - seen[0] + 1 else ""
        return (f"top unit {diagram.unit + index_base} depends on input {first}…{last} "
                f"({len(seen)} px{gaps})")
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
