"""Exact tiled inference: split an image, run a fully convolutional network on each tile with
just enough margin, stitch, and get exactly what the whole image gives.

Along one axis, a layer's units have a field of ``size`` pixels, ``stride`` apart, starting
``padding`` pixels before the unit's position ``i*stride``. A unit computed in a tile equals the
whole image's unit when its field lies inside the tile (or leaves it only where the image itself
ends, so both see the same padding), and the tile starts on the stride grid. Hence the margins:

- ``before = padding``: pixels of context needed before the first unit a tile keeps,
- ``after = size - stride - padding``: pixels needed after the last unit's position,
- ``before_aligned``: ``before`` rounded up to the stride, where a tile may actually start.

They differ in general: for torchvision's resnet50 up to ``layer3`` (field 267, stride 16,
padding 133) a tile needs 133 (aligned: 144) pixels above and 118 below.

>>> Margins(before=(133, 133), after=(118, 118), stride=(16, 16)).h
AxisMargins(before=133, after=118, stride=16)
>>> _.before_aligned
144
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn
from tqdm.auto import tqdm

from .field import FieldError, PerAxis, ReceptiveField
from .layer_table import LayerRow, LayerTable
from .tracing import _graph, _trace
from .tracing.walk import upstream

__all__ = ["AxisMargins", "AxisTile", "Margins", "Tile", "plan_axis", "tile_margins",
           "tile_plan", "tiled_forward"]


@dataclass(frozen=True)
class AxisMargins:
    """Margins along one axis (see the module's docstring). ``grid``, for networks that
    upsample again: tiles, and the image, start and end on multiples of it."""

    before: int
    after: int
    stride: int
    grid: int | None = None

    def __repr__(self) -> str:
        grid = f", grid={self.grid}" if self.grid is not None else ""
        return f"AxisMargins(before={self.before}, after={self.after}, stride={self.stride}{grid})"

    @property
    def step(self) -> int:
        """Where tiles may start: multiples of the grid, or of the stride."""
        return self.stride if self.grid is None else self.grid

    @property
    def before_aligned(self) -> int:
        return math.ceil(self.before / self.step) * self.step


@dataclass(frozen=True)
class Margins(PerAxis):
    """Per spatial axis (H, W for images): context before and after, and the stride grid.

    ``grid`` is set for an encoder–decoder (a U-Net): its output has stride 1, but its tiles
    must start on the grid of its deepest downsampling (32 for a ResNet encoder), or its
    pooling windows would fall elsewhere than in the whole image; the tiles' lengths and the
    image's must be multiples of it too, since the decoder's sizes follow the encoder's.
    """

    before: tuple[int, ...]
    after: tuple[int, ...]
    stride: tuple[int, ...]
    grid: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        grid = f", grid={self.grid}" if self.grid is not None else ""
        return (f"Margins(before={self.before}, after={self.after}, "
                f"stride={self.stride}{grid})")

    @property
    def axes(self) -> tuple[AxisMargins, ...]:
        grid = self.grid or (None,) * len(self.stride)
        return tuple(AxisMargins(*values) for values
                     in zip(self.before, self.after, self.stride, grid, strict=True))

    @property
    def before_aligned(self) -> tuple[int, ...]:
        return tuple(axis.before_aligned for axis in self.axes)


def tile_margins(model: nn.Module, layer: str | None = None, input_size=(224, 224)) -> Margins:
    """The smallest margins for which tiles give exactly the whole image's result at ``layer``.

    >>> import torchvision
    >>> tile_margins(torchvision.models.resnet50(weights=None), "layer3")
    Margins(before=(133, 133), after=(118, 118), stride=(16, 16))
    """
    table = _trace(model, input_size)
    row = table.rows[-1] if layer is None else table.find(layer)
    table.warn(up_to=table.rows.index(row))
    field = row.field
    _check_followed(field, layer)
    _check_no_tensor_from_a_size(model, table, row, layer)
    if field.per_unit:
        return _decoder_margins(model, layer, table, row)
    return Margins(before=field.padding,
                   after=tuple(a.size - a.stride - a.padding for a in field.axes),
                   stride=field.stride)


def _check_followed(field, layer) -> None:
    if field.is_global:
        raise FieldError(f"layer={layer!r} has a global field (every output depends on the "
                         "whole input, e.g. after adaptive pooling): no tiling is exact; "
                         "choose a layer of the convolutional trunk")
    if field.unknown:
        raise FieldError(f"layer={layer!r} has an unknown field ({field.unknown}); margins "
                         "cannot be derived")


def _check_no_tensor_from_a_size(model: nn.Module, table: LayerTable, row: LayerRow,
                                 layer) -> None:
    """Refuse a network that makes positions from a tensor's size on the way to ``layer``
    (``torch.arange(x.shape[-1])``: coordinates): a tile would count its crop's pixels, not
    the image's, and give another result where no field says so. (A call that resizes to a
    size, ``interpolate(y, size=x.shape[-2:])``, has a field and is checked by it; a tensor
    of zeros or a class token expanded to the batch is the same in every tile.)"""
    graph = _graph(model)
    followed = {r.node for r in table.rows} | {
        n.name for n in graph.nodes if n.op == "placeholder"}
    wanted = {n.name for n in upstream(n for n in graph.nodes if n.name == row.node)[0]}

    def reads_size(node) -> bool:  # x.shape, x.size(...) of a tensor with a field
        source = getattr(node.args[0], "name", None) if node.args else None
        return source in followed and (
            (node.op == "call_function" and node.target is getattr
             and node.args[1:2] == ("shape",)) or (
                node.op == "call_method" and node.target == "size"))

    for node in computed_from_sizes(graph, reads_size, lambda n: n.name not in wanted
                                    or n.name in followed):
        if node.op == "call_function" and node.target in _POSITIONS:
            raise FieldError(
                f"layer={layer!r}: {node.name!r} makes positions from a size (e.g. "
                "coordinates from x.shape), which each tile would take from its crop, "
                "not from the image: no tiles reproduce the whole image; valid: a model "
                "given such a tensor as an input, or a layer before it")


def computed_from_sizes(graph, reads_size, followed) -> list:
    """The nodes computed from a tensor's size, in the graph's order: those ``reads_size``
    picks (``x.shape``, ``x.size(3)``) and everything made from them through nodes that
    ``followed`` leaves (numbers, tuples, tensors without a field; a node ``followed`` picks,
    such as a resize to a size, has a field that says what it reads)."""
    found: dict = {}
    for node in graph.nodes:
        if not followed(node) and (reads_size(node) or any(
                a in found for a in node.all_input_nodes)):
            found[node] = None
    return list(found)


_POSITIONS = {torch.arange, torch.linspace, torch.logspace, torch.meshgrid, torch.tril_indices,
              torch.triu_indices}  # tensors whose values are positions


def _decoder_margins(model: nn.Module, layer: str | None, table: LayerTable,
                     row: LayerRow) -> Margins:
    """Margins of a field whose units see different spans (after upsampling), for tiles
    that keep whole grid cells, read from the spans at a size that holds a few whole fields
    (``table`` is the trace at the user's size, ``row`` the layer's)."""
    field, grid, sizes = _traced_large_enough(model, layer, table, row)
    names = AXIS_WORDS.get(len(sizes), AXIS_WORDS[3])
    axes = [_axis_margins(axis, n, g, f"layer={layer!r} along the {name}")
            for axis, n, g, name in zip(field.axes, sizes, grid, names, strict=True)]
    before, after, stride = zip(*axes, strict=True)
    return Margins(before, after, stride, grid)


AXIS_WORDS = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def _traced_large_enough(model, layer, table: LayerTable, row: LayerRow):
    """The field at ``layer``, its grid, and the size traced: a multiple of the grid with
    room for two fields and a few cells (a small image cuts every span at its borders)."""
    sizes = tuple(table.input_shape[1:])
    for attempt in range(5):
        field, grid = row.field, _grid(table, row)
        needed = tuple(math.ceil((2 * r + 4 * g) / g) * g for r, g
                       in zip(field.size, grid, strict=True))
        if attempt == 4 or all(n >= m for n, m in zip(sizes, needed, strict=True)):
            break
        sizes = tuple(max(n, m) for n, m in zip(sizes, needed, strict=True))
        table = _trace(model, sizes)
        row = table.rows[-1] if layer is None else table.find(layer)
    return field, grid, sizes


def _axis_margins(axis, n: int, grid: int, where: str) -> tuple[int, int, int]:
    """(before, after, jump) along one axis. Tiles keep whole grid cells: the first unit a
    tile keeps starts a cell, the last ends one, and (spans growing with the unit) those two
    need the most context. Units of one phase must read the same context everywhere inside
    the image, or no tiling reproduces the whole image."""
    jump = Fraction(axis.stride)
    if jump.denominator != 1 or jump < 1:
        raise FieldError(f"{where}: its units are {jump} pixel apart, not a whole number, so "
                         "tiles cannot keep whole units; choose a layer whose jump is whole "
                         "(e.g. the output)")
    j = int(jump)
    cell = grid // j
    reach: dict[int, set] = {}  # phase -> every (before, after) seen in the image's inside
    for u in range(len(axis)):
        span = axis.span(u)
        if span is not None and span[0] >= grid and span[1] <= n - 1 - grid:
            reach.setdefault(u % cell, set()).add((u * j - span[0], span[1] + 1 - (u + 1) * j))
    if len(reach) < cell:
        raise FieldError(f"{where}: no whole grid cell of units lies inside a {n}-pixel image; "
                         "margins cannot be measured")
    if any(len(seen) > 1 for seen in reach.values()):
        raise FieldError(f"{where}: units in the same place of the grid read different "
                         "context in different parts of the image (the network resizes by a "
                         "factor that depends on the image's size, e.g. interpolate with "
                         "align_corners=True), so no tiles reproduce the whole image")
    (before, _), = reach[0]
    (_, after), = reach[cell - 1]
    return before, after, j


def _grid(table: LayerTable, row: LayerRow) -> tuple[int, ...]:
    """The deepest downsampling up to ``row``, per axis: the least common multiple of every
    jump of the ops before it (a jump's numerator where it is a fraction: 3/2 needs a grid of
    3). Per-unit spans count only where they repeat, by the pixels they move per period (a
    window attention's windows: 7 units 4 pixels apart need a grid of 28)."""
    grid = [1] * len(row.field.axes)
    for earlier in table.rows[:table.rows.index(row) + 1]:
        if earlier.field.known and len(earlier.field.axes) == len(grid):
            for a, axis in enumerate(earlier.field.axes):
                grid[a] = math.lcm(grid[a], grid_step(axis))
    return tuple(grid)


def grid_step(axis) -> int:
    """Where tiles may start for one axis of one op's field, in its input's units: a multiple
    of its jump (of the numerator, for a fraction), and of how far per-unit spans move per
    period; 1 where spans do not repeat (they then say nothing about a grid)."""
    if isinstance(axis, ReceptiveField):
        return Fraction(axis.stride).numerator
    if axis.period is None:
        return 1
    return math.lcm(Fraction(axis.stride).numerator, axis.shift)


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis: input pixels it reads, output units it keeps (whole-image
    indices), and where they sit in the tile's own output."""

    read: slice
    write: slice
    keep: slice


@dataclass(frozen=True)
class Tile:
    read: tuple[slice, ...]
    write: tuple[slice, ...]
    keep: tuple[slice, ...]


def plan_axis(length: int, outputs: int, tile: int, margins: AxisMargins) -> list[AxisTile]:
    """Tiles covering output units ``0 … outputs-1`` of an axis of ``length`` pixels exactly once.

    Each tile keeps ``tile // stride`` units (the last one the rest) and reads from
    ``before_aligned`` pixels before its first unit to ``after`` pixels after its last,
    clipped to the image.

    >>> [(t.read, t.write) for t in plan_axis(64, 4, 32, AxisMargins(3, 2, 16))]
    [(slice(0, 34, None), slice(0, 2, None)), (slice(16, 64, None), slice(2, 4, None))]
    """
    stride, step = margins.stride, margins.step
    if tile < step or tile % step:
        low = max(step, tile // step * step)
        what = "grid" if margins.grid is not None else "stride"
        raise ValueError(f"tile={tile} is not a positive multiple of the {what} {step}; "
                         f"valid: e.g. {low} or {low + step}")
    units = tile // stride
    tiles = []
    for first in range(0, outputs, units):
        last = min(first + units, outputs)  # exclusive
        start = max(first * stride - margins.before_aligned, 0)
        stop = last * stride + max(margins.after, 0)
        if margins.grid is not None:  # a decoder's sizes follow its encoder's: whole cells
            stop = math.ceil(stop / step) * step
        stop = min(stop, length)
        offset = start // stride
        tiles.append(AxisTile(slice(start, stop), slice(first, last),
                              slice(first - offset, last - offset)))
    return tiles


def tile_plan(size: Sequence[int], outputs: Sequence[int], tile: Sequence[int],
              margins: Margins) -> list[Tile]:
    """The 2D (or nD) plan: every combination of the per-axis tiles, row by row."""
    per_axis = [plan_axis(n, o, t, m) for n, o, t, m
                in zip(size, outputs, tile, margins.axes, strict=True)]
    return [Tile(*(tuple(getattr(t, part) for t in combo) for part in ("read", "write", "keep")))
            for combo in itertools.product(*per_axis)]


def _output_size(fn, image: torch.Tensor, margins: Margins) -> tuple[int, ...]:
    """Output units per axis of the whole image, from one small tile at the image's far end.

    A tile that starts on the stride grid at pixel ``a`` and runs to the end of the image ends
    exactly like the whole image does, so the whole image has ``a / stride + n`` units.
    """
    spatial = image.shape[2:]
    field = [m.before + max(m.after, 0) + m.stride for m in margins.axes]  # pixels one unit sees
    starts = [max((n - f - m.step) // m.step * m.step, 0)
              for n, f, m in zip(spatial, field, margins.axes, strict=True)]
    corner = image[(slice(0, 1), slice(None), *(slice(a, None) for a in starts))].clone()
    out = fn(corner)
    return tuple(a // m.stride + n for a, m, n
                 in zip(starts, margins.axes, out.shape[2:], strict=True))


def tiled_forward(fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                  margins: Margins, tile=(256, 256), *,
                  progress: bool | None = None) -> torch.Tensor:
    """``fn(image)`` computed tile by tile: equal to it up to float round-off, with peak
    memory bounded by a tile.

    ``fn`` maps (N, C, H, W) to (N, C', H', W') with the receptive field described by
    ``margins`` (from :func:`tile_margins`). ``tile`` is the number of input pixels per tile
    and axis that yield kept outputs, a multiple of the stride. One extra small tile at the
    image's far end tells the output size. ``progress``: a tqdm bar (default: 8+ tiles).

    In float32 on the CPU, oneDNN picks a convolution algorithm per tensor shape, so tiles
    and the whole image round differently (~1e-6 relative). Under
    ``torch.backends.mkldnn.flags(enabled=False)`` resnet50's tiles round exactly like the
    whole image (``benchmarks/bench_tiling.py``), a U-Net's still do not
    (``benchmarks/bench_decoder_tiling.py``); compare in float64 to see only round-off
    (:mod:`rfviz.roundoff`).

    Each tile recomputes its whole field of context through every layer: for an
    encoder–decoder, hundreds of pixels through the deep layers too.
    :func:`rfviz.staged.staged_forward` tiles only the high-resolution parts and runs the
    low-resolution part whole (``benchmarks/bench_decoder_tiling.py`` compares them).
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a 4D tensor (N, C, H, W), got {shape}")
    if not isinstance(margins, Margins):
        raise TypeError(f"margins must be the Margins of fn's field, from "
                        f"tile_margins(model, layer); got {margins!r}")
    tile = (tile,) * 2 if isinstance(tile, int) else tuple(tile)
    for name, n, m in zip(("height", "width"), image.shape[2:], margins.axes, strict=True):
        if m.grid is not None and n % m.grid:
            low = n // m.grid * m.grid
            raise ValueError(
                f"image {name}={n} is not a multiple of the grid {m.grid}: this network "
                "downsamples and upsamples again, so its sizes inside depend on the image's and "
                f"no tiles reproduce it exactly; valid: a multiple of {m.grid}, e.g. "
                f"{low or m.grid} or {low + m.grid} (pad or crop the image first; a network "
                "that resizes back to the image's size, such as fcn_resnet50, runs at any size "
                "in rfviz.staged_forward)")
    grad = torch.is_grad_enabled() and image.requires_grad
    with torch.set_grad_enabled(grad):
        outputs = _output_size(fn, image, margins)
        plan = tile_plan(image.shape[2:], outputs, tile, margins)
        result = None
        bar = tqdm(plan, desc="tiles", disable=not (len(plan) >= 8 if progress is None
                                                     else progress))
        for piece in bar:
            out = fn(image[(slice(None), slice(None), *piece.read)].clone())  # fn may write in it
            if result is None:
                result = out.new_empty((*out.shape[:2], *outputs))
            result[(slice(None), slice(None), *piece.write)] = out[
                (slice(None), slice(None), *piece.keep)]
            del out
            _release_freed_memory()
    return result


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


def _release_freed_memory() -> None:
    """Give memory freed by the last tile back to the system.

    glibc keeps freed blocks for reuse; tiles of different shapes (the edge tiles) then add up
    instead of replacing each other, and the process grows towards the whole image's peak
    (``benchmarks/bench_tiling.py`` prints the peak memory of both runs).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
