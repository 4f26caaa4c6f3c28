"""Staged tiling: tile a network's high-resolution parts, run its low-resolution part whole.

:func:`rfviz.tiling.tiled_forward` runs the whole network once per tile, on the tile and the
context its field needs. An encoder–decoder's field is hundreds of pixels wide (~530 for a
resnet18 U-Net), so every tile recomputes that much context through every layer, the deep ones
too. Yet the deep layers are cheap to run whole: at a jump of 8 their maps have 1/64 of the
image's pixels per channel. Staging cuts the torch.fx graph by the jump of each op:

- the *low* part: every op whose units are at least ``low_from`` pixels apart along every axis
  (the encoder's deep stages, the decoder's first blocks), run once on whole maps;
- its *entries*: low ops that read a high-resolution tensor (a ResNet's first strided
  convolution of ``layer2`` and its downsample branch). Their maps are computed tile by tile
  from the image: the sub-network from the image to them has a small field (tens of pixels),
  so its tiles need little context;
- its *exits*: low tensors the rest of the network reads (the decoder's map before it is
  upsampled to a jump of 4);
- the *tail*: everything from the image and the exits to the output (the decoder's last
  blocks, and the encoder's high-resolution maps they read). Each output tile reads a crop of
  the image and the same region of every exit in the exit's own units (image crop / jump),
  with margins walked through the tail's graph from each of them
  (:class:`rfviz.tracing.walk.Walk` with seeds and the low part blocked), per unit as for any
  decoder (:mod:`rfviz.spans`), and the most of them taken.

The tail needs the encoder's high-resolution maps too (a U-Net's skips). The entries' tiles
compute them on the way; those at a jump of ``keep_from`` or more (default ``low_from // 2``:
a quarter of the pixels at 2, 1/16 at 4) are kept whole, cropped for each tail tile like the
exits; the rest (the stem, at a jump of 2 for ``low_from=8``) are computed again per tile.

An op that reads only the low part and whose units are a fraction of a pixel apart (fcn's
final resize to the input's size, by 500/63 at 500 pixels) runs whole too: no tiles share
its factor, so :func:`rfviz.tiling.tiled_forward` refuses such a size, and staging computes
it. What cannot be staged raises and says why: an op with a global or unknown field in a
tiled part (naming it), a map the tail must crop whose units are not a whole number of
pixels apart, a field that depends on where the unit is (a resize by the image's size mixed
with the image itself), a model with no op at a jump of ``low_from``.

The plan is plain data, printed for a lesson. A small U-Net whose bottom has a jump of 8:

>>> import torch
>>> from rfviz.unet import UNet
>>> torch.manual_seed(0) and None
>>> net = UNet(width=4, depth=3).double().eval()
>>> plan = staged_plan(net, input_size=(96, 64), low_from=4)
>>> print(plan)
StagedPlan for a 96×64 input, the low part from a jump of 4:
  1. tiled  input → pool@1 (8×24×16, jump 4); keeps down.1.5 (8×48×32, jump 2)
            14 ops; margins 6 before (8 on the grid of 4), 6 after
  2. whole  21 ops at a jump ≥ 4 → decode.0.5 (16×24×16, jump 4)
  3. tiled  input + decode.0.5 + down.1.5 → head (1×96×64, jump 1)
            23 ops; margins 8 before (8 on the grid of 4), 8 after
>>> image = torch.randn(2, 3, 96, 64, dtype=torch.float64)
>>> with torch.no_grad():
...     error = (staged_forward(net, image, tile=32, plan=plan) - net(image)).abs().max()
>>> bool(error < 1e-12)
True

The entries' field: two 3×3 convolutions (5 px), a pool (6), two more at a jump of 2 (6 + 2·2·2
= 14), a pool (16 px, jump 4, padding 2 + 2·2 = 6): 6 pixels before a tile, 16 - 4 - 6 = 6
after. The tail: output pixel 4k (a tile's first) reads pixel 4k - 2 of ``up.2`` (two 3×3
convolutions), which copies unit 2k - 1 of ``decode.1``, whose two 3×3 convolutions read unit
2k - 3 of ``up.1``, a copy of the exit's unit k - 2: pixels 4k - 8 … 4k - 5, 8 before.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import torch
import torch.fx
from torch import nn
from tqdm.auto import tqdm

from .field import Field, FieldError, ReceptiveField
from .tiling import AXIS_WORDS, Margins, _release_freed_memory, computed_from_sizes, grid_step
from .tracing import _graph, _propagated
from .tracing.shapes import input_shape, shape_of
from .tracing.walk import RowNames, Walk, upstream

__all__ = ["Port", "StagedPlan", "staged_forward", "staged_plan"]

Node = torch.fx.Node


@dataclass(frozen=True)
class Port:
    """A tensor where the plan cuts the graph: its row name (as :func:`rfviz.trace` names
    it), its torch.fx node, its shape without the batch (channels, *spatial) at the planned
    size, and its jump per axis (image pixels per unit)."""

    name: str
    node: str
    shape: tuple[int, ...]
    jump: tuple[int, ...]

    def __str__(self) -> str:
        jump = "×".join(map(str, dict.fromkeys(self.jump)))
        return f"{self.name} ({'×'.join(map(str, self.shape))}, jump {jump})"


@dataclass(frozen=True)
class StagedPlan:
    """Where :func:`staged_forward` cuts a network, for one input size (see the module).

    ``entry_margins`` and ``tail_margins`` are in image pixels: context before and after the
    pixels a tile keeps, and the grid its crops start on (``stride``: the jump of the
    entries, of the output). ``kept``: high-resolution maps the tail reads (a U-Net's skips),
    computed by the entries' tiles and kept whole rather than computed again per tile.
    ``entry_ops``, ``low_ops``, ``tail_ops``: the row names of each stage's ops;
    ``constants``: sizes the low part reads from high-resolution tensors (e.g. ``x.shape``),
    fixed at the planned size.
    """

    input_size: tuple[int, ...]
    low_from: int
    input: str  # the image's placeholder in the torch.fx graph
    entries: tuple[Port, ...]
    exits: tuple[Port, ...]
    output: Port
    entry_margins: Margins
    tail_margins: Margins | None  # None: the output is the low part's, computed whole
    kept: tuple[Port, ...] = ()
    entry_ops: tuple[str, ...] = field(default=(), repr=False)
    low_ops: tuple[str, ...] = field(default=(), repr=False)
    tail_ops: tuple[str, ...] = field(default=(), repr=False)
    constants: tuple[tuple[str, object], ...] = field(default=(), repr=False)
    output_key: str | int | None = field(default=None, repr=False)
    tail_reads_input: bool = field(default=True, repr=False)

    def __str__(self) -> str:
        size = "×".join(map(str, self.input_size))
        reads = ["input"] * self.tail_reads_input + [port.name for port in
                                                     (*self.exits, *self.kept)]
        kept = f"; keeps {', '.join(map(str, self.kept))}" if self.kept else ""
        lines = [
            f"StagedPlan for a {size} input, the low part from a jump of {self.low_from}:",
            f"  1. tiled  input → {', '.join(map(str, self.entries))}{kept}",
            f"            {len(self.entry_ops)} ops; {_said(self.entry_margins)}",
            f"  2. whole  {len(self.low_ops)} ops at a jump ≥ {self.low_from} → "
            f"{', '.join(map(str, self.exits))}"]
        if self.tail_margins is None:
            return "\n".join([*lines, "  (the output is the low part's: no tail)"])
        return "\n".join([*lines, f"  3. tiled  {' + '.join(reads)} → {self.output}",
                          f"            {len(self.tail_ops)} ops; {_said(self.tail_margins)}"])


def _said(margins: Margins) -> str:
    def one(values):
        return "×".join(map(str, dict.fromkeys(values)))
    return (f"margins {one(margins.before)} before ({one(margins.before_aligned)} on the grid "
            f"of {one(margins.grid)}), {one(margins.after)} after")


# --- the plan ---------------------------------------------------------------------------------


def staged_plan(model: nn.Module, input_size, low_from: int = 8, *,
                keep_from: int | None = None, output: str | int | None = None) -> StagedPlan:
    """Cut ``model``'s graph at the jump ``low_from`` for an input of ``input_size``.

    Ops whose units are ``low_from`` or more pixels apart along every axis run whole; the
    rest runs in tiles whose margins come from the graph (see the module's docstring).
    ``keep_from``: the tail reads the high-resolution maps it needs at this jump or more
    (default ``low_from // 2``) from the entries' tiles, kept whole, instead of computing them
    again (``keep_from=low_from``: keep none). ``output``: the key (or index) of the tensor
    to compute where the model returns a dict (or a tuple) of several.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(low_from, int) or isinstance(low_from, bool) or low_from < 2:
        raise ValueError(f"low_from={low_from!r} is not valid: the low part starts at a jump "
                         "of at least 2 pixels; valid: an int ≥ 2, e.g. 8 or 16")
    keep_from = low_from // 2 if keep_from is None else keep_from
    if not isinstance(keep_from, int) or isinstance(keep_from, bool) or keep_from < 1:
        raise ValueError(f"keep_from={keep_from!r} is not valid; valid: an int ≥ 1, e.g. "
                         f"{low_from // 2}, or {low_from} to keep no map")
    graph = _graph(model)
    traced = _Traced(model, graph, input_size)
    cut = _Cut(traced, low_from, keep_from, output)
    for attempt in range(5):
        try:
            margins = cut.margins(traced)
            break
        except _TooSmall as small:  # every span is cut by the traced image's borders
            if attempt == 4:
                raise FieldError(f"{small}: margins cannot be measured") from None
            grid = _grid([row.field for row in traced.whole.rows], traced.spatial)
            traced = _Traced(model, graph, tuple(
                math.ceil(2 * n / g) * g for n, g in zip(traced.size, grid, strict=True)))
    return cut.plan(*margins)


class _TooSmall(Exception):
    """No whole grid cell of units lies inside the traced image."""


class _Traced:
    """Shapes and fields of every op at one input size. (The graph's meta holds the shapes
    of the size traced last: every walk at this size happens before the next trace.)"""

    def __init__(self, model: nn.Module, graph: torch.fx.Graph, input_size) -> None:
        shape = input_shape(model, input_size)
        self.graph, self.size, self.spatial = graph, tuple(shape[2:]), len(shape) - 2
        shapes = _propagated(model, graph, shape)
        self.modules = shapes.submodules
        self.names = RowNames(self.modules)
        self.whole = self.walk()

    def walk(self, seeds: Iterable[Node] | None = None, blocked: Iterable[Node] = ()) -> Walk:
        """Fields from ``seeds`` (the input by default), rows named as in the whole walk."""
        walk = Walk(self.modules, self.graph, self.spatial, self.names, seeds=seeds,
                    blocked=blocked)
        walk.run()
        return walk

    def name(self, node: Node) -> str:
        return "input" if node.op == "placeholder" else self.names(node)


class _Cut:
    """The parts of the graph, found at the user's size; then their margins at any size."""

    def __init__(self, traced: _Traced, low_from: int, keep_from: int,
                 output: str | int | None) -> None:
        self.traced, self.low_from, self.output_key = traced, low_from, output
        graph, values = traced.graph, traced.whole.values
        self.image = _the_input(graph, values)
        self.out = _output_node(graph, output)
        if self.out not in values:
            raise ValueError(f"the output {traced.name(self.out)!r} has no field: it does not "
                             "follow the input's spatial axes, so there is nothing to tile")
        low = {n for n, v in values.items() if _is_low(v.field, low_from)}
        if not low:
            raise ValueError(f"no op has a jump ≥ low_from={low_from} along every axis: there "
                             "is no low-resolution part to run whole; valid: a smaller "
                             "low_from, or rfviz.tiling.tiled_forward")
        self.low = frozenset(low | _resized_whole(graph, values, low))
        self.tail, self.tail_edge = upstream([self.out], lambda n: n in self.low or
                                              n.op == "placeholder")
        self._reads_only_the_image(self.tail_edge, "the tail")
        self.exits = _in_order(graph, self.tail_edge & self.low)
        if not self.exits:
            raise ValueError(f"no op of the low part (jump ≥ {low_from}) leads to the output "
                             f"{traced.name(self.out)!r}: there is nothing to run whole; "
                             "valid: a smaller low_from, or rfviz.tiling.tiled_forward")
        entry = lambda n: n in self.low and any(  # noqa: E731
            a in values and a not in self.low for a in n.all_input_nodes)
        constant = lambda n: n not in values and "rfviz_value" in n.meta  # noqa: E731
        self.inside, edge = upstream(self.exits, lambda n: entry(n) or constant(n)
                                      or n.op == "placeholder")
        self._reads_only_the_image(edge, "the low part", image=None)
        self.entries = _in_order(graph, {n for n in edge if entry(n)})
        self.constants = tuple((n.name, n.meta["rfviz_value"])
                               for n in _in_order(graph, {n for n in edge if constant(n)}))
        self.before, edge = upstream(self.entries, lambda n: n.op == "placeholder")
        self._reads_only_the_image(edge, "the entries")
        # maps the entries' tiles compute anyway, which the tail would compute again
        after_low = _downstream(graph, self.low)
        keepable = {n for n in self.before if n in values and n not in after_low
                    and _whole_jumps(values[n], keep_from, len(shape_of(n)))}
        self.tail, self.tail_edge = upstream([self.out], lambda n: n in self.low or
                                              n in keepable or n.op == "placeholder")
        self.kept = _in_order(graph, self.tail_edge & keepable)
        self.ports = {n: self._port(n) for n in (*self.entries, *self.exits, *self.kept,
                                                  self.out)}
        self._no_in_place_change_of_what_the_tail_reads(graph)
        self._no_tensor_from_a_tiles_size(graph, values)

    def _no_in_place_change_of_what_the_tail_reads(self, graph: torch.fx.Graph) -> None:
        """The tail reads the exits and the kept maps after the other stages have run to the
        end; an in-place op on one of them outside the tail would change what it reads."""
        shared = set(self.exits) | set(self.kept)
        for node in graph.nodes:
            if node in self.tail or not _in_place(node, self.traced.modules):
                continue
            changed = node.args[0] if node.args else None  # what the op writes into
            if isinstance(changed, Node) and changed in shared:
                raise ValueError(
                    f"{self.traced.name(node)!r} ({self.traced.names.op(node)}) changes "
                    f"{self.traced.name(changed)!r} in place, which the staged plan's tail "
                    "reads after that part has run whole; valid: a model without that "
                    "in-place op (e.g. inplace=False), or another low_from")

    def _no_tensor_from_a_tiles_size(self, graph: torch.fx.Graph, values) -> None:
        """A tensor made from a spatial size (``torch.arange(x.shape[-1])``: coordinates)
        in a tiled part would be made from each tile's size, not the image's."""
        sized = _from_spatial_sizes(graph, values)
        tiled = self.tail | self.before
        for node in graph.nodes:
            if node in tiled and node in sized and node not in values and isinstance(
                    shape_of(node), tuple):
                raise ValueError(
                    f"{self.traced.name(node)!r} makes a tensor from a spatial size, which "
                    "each tile would take from its own crop, not from the image; valid: a "
                    "model given such a tensor (coordinates) as an input, or run whole")

    def _reads_only_the_image(self, edge: set[Node], part: str, image: Node | None = ...) -> None:
        image = self.image if image is ... else image
        for node in edge:
            if node.op == "placeholder" and node is not image:
                what = ("the input itself, not through a strided op" if node is self.image
                        else f"the model's input {node.name!r} beside the image")
                raise ValueError(f"{part} of the staged plan reads {what}; valid: a model "
                                 "with one image input, reaching its low part only through "
                                 "ops that downsample")

    def _port(self, node: Node) -> Port:
        value, shape, name = self.traced.whole.values[node], shape_of(node), self.traced.name(node)
        _followed(self.traced.whole, node, upstream([node], lambda n: False)[0], repr(name))
        if len(shape) != 2 + self.traced.spatial or value.dims != tuple(
                range(2, len(shape))):
            raise ValueError(f"{name!r} has shape {tuple(shape)}, not (N, C, *spatial) with "
                             "its spatial axes last, so its crops cannot be cut; valid: a "
                             "network whose tensors at the cuts are (N, C, *spatial)")
        jumps = [Fraction(s) for s in value.field.stride]
        if node is self.out and node in self.low:  # computed whole, never cropped
            return Port(name, node.name, tuple(shape[1:]), tuple(jumps))
        if any(j.denominator != 1 for j in jumps):
            shown = " × ".join(map(str, jumps))
            raise FieldError(f"{name!r}: its units are {shown} pixel apart, not a whole number, "
                             "so tiles cannot keep whole units of it; valid: a low_from (or "
                             "an output) whose jumps are whole")
        return Port(name, node.name, tuple(shape[1:]), tuple(int(j) for j in jumps))

    def margins(self, traced: _Traced) -> tuple[Margins, Margins | None]:
        """Margins of the entries' tiles and of the tail's, from the fields at ``traced``'s
        size (the same graph: its nodes are this cut's)."""
        whole, ones = traced.whole, (1,) * traced.spatial
        spatial, seeds = traced.spatial, (*self.exits, *self.kept)
        grid = _grid([whole.values[n].field for n in self.before | set(self.entries)
                      if n in whole.values], spatial)
        entry_margins = self._margins(traced, [(whole, self.image, ones, e) for e in
                                               (*self.entries, *self.kept)], grid,
                                      "the entries", self.before)
        if self.out in self.low:  # computed whole: no tail
            return entry_margins, None
        blocked = self.low | set(self.kept)
        walks = [(traced.walk([self.image], blocked), self.image, ones)]
        walks += [(traced.walk([e], blocked - {e}), e, self.ports[e].jump) for e in seeds]
        grid = _grid([(walk.values[n].field, jump) for walk, _, jump in walks
                      for n in self.tail if n in walk.values], spatial,
                     [self.ports[e].jump for e in seeds])
        reads = [(walk, seed, jump, self.out) for walk, seed, jump in walks
                 if self.out in walk.values]  # an exit may be read for its shape only
        return entry_margins, self._margins(traced, reads, grid, "the tail", self.tail)

    def _margins(self, traced: _Traced, reads, grid: tuple[int, ...], part: str,
                 nodes: set[Node]) -> Margins:
        """The most context any output of ``reads`` (walk, seed, the seed's jump, output)
        needs before and after the pixels a tile keeps, in image pixels. Tiles start on the
        least common multiple of the grid and the outputs' jumps."""
        jumps = [self.ports[out].jump for *_, out in reads]
        step = tuple(math.lcm(g, *(j[a] for j in jumps)) for a, g in enumerate(grid))
        stride = tuple(math.lcm(*(j[a] for j in jumps)) for a in range(len(grid)))
        before, after = [0] * len(grid), [0] * len(grid)
        words = AXIS_WORDS.get(len(grid), AXIS_WORDS[3])
        for walk, seed, seed_jump, out in reads:
            where = f"{part}: {traced.name(out)!r} from {traced.name(seed)!r}"
            field_ = _followed(walk, out, nodes, where)
            port = self.ports[out]
            for a, axis in enumerate(field_.axes):
                b, f = _reach(axis, traced.size[a], seed_jump[a], port.jump[a], step[a],
                              f"{where} along the {words[a]}")
                before[a], after[a] = max(before[a], b), max(after[a], f)
        return Margins(tuple(before), tuple(after), stride, step)

    def plan(self, entry_margins: Margins, tail_margins: Margins | None) -> StagedPlan:
        rows = {row.node: row.name for row in self.traced.whole.rows}

        def names(nodes) -> tuple[str, ...]:
            return tuple(rows[n.name] for n in _in_order(self.traced.graph, nodes)
                         if n.name in rows)

        return StagedPlan(
            input_size=self.traced.size, low_from=self.low_from,
            input=self.image.name,
            entries=tuple(map(self.ports.get, self.entries)),
            exits=tuple(map(self.ports.get, self.exits)), output=self.ports[self.out],
            entry_margins=entry_margins, tail_margins=tail_margins,
            kept=tuple(map(self.ports.get, self.kept)),
            entry_ops=names(self.before | set(self.entries)), low_ops=names(self.inside),
            tail_ops=names(self.tail), constants=self.constants, output_key=self.output_key,
            tail_reads_input=self.image in self.tail_edge)


def _the_input(graph: torch.fx.Graph, values) -> Node:
    images = [n for n in graph.nodes if n.op == "placeholder" and n in values]
    if len(images) != 1:
        raise ValueError(f"the model takes {len(images)} inputs with spatial axes "
                         f"({', '.join(n.name for n in images)}); valid: exactly one image")
    return images[0]


def _output_node(graph: torch.fx.Graph, key: str | int | None) -> Node:
    """The tensor the model returns, or the one under ``key`` in a dict or tuple of them."""
    returned = next(n for n in graph.nodes if n.op == "output").args[0]
    if isinstance(returned, Node):
        if key is not None:
            raise ValueError(f"output={key!r}: the model returns one tensor; valid: None")
        return returned
    items = returned if isinstance(returned, dict) else dict(enumerate(returned))
    tensors = {k: v for k, v in items.items() if isinstance(v, Node)}
    if key is None and len(tensors) == 1:
        return next(iter(tensors.values()))
    if key not in tensors:
        raise ValueError(f"output={key!r} is not one of the model's outputs; valid: one of "
                         f"{', '.join(map(repr, tensors))}")
    return tensors[key]


def _is_low(field_: Field, low_from: int) -> bool:
    return field_.known and bool(field_.axes) and all(
        Fraction(s) >= low_from for s in field_.stride)


def _resized_whole(graph: torch.fx.Graph, values, low: set[Node]) -> set[Node]:
    """Ops that read only the low part and whose units are a fraction of a pixel apart
    (a resize to the input's size, by a factor such as 500/63): no tiles share that factor,
    so they run whole too, on a map of few channels (a segmentation's classes)."""
    resized: set[Node] = set()
    for node in graph.nodes:
        if node in low or node not in values or not values[node].field.known:
            continue
        inputs = [a for a in node.all_input_nodes if a in values]
        if inputs and all(a in low or a in resized for a in inputs) and any(
                Fraction(s).denominator != 1 for s in values[node].field.stride):
            resized.add(node)
    return resized


def _downstream(graph: torch.fx.Graph, nodes) -> set[Node]:
    """Every node computed from ``nodes`` (they included)."""
    after = set(nodes)
    for node in graph.nodes:
        if any(a in after for a in node.all_input_nodes):
            after.add(node)
    return after


def _whole_jumps(value, at_least: int, ndim: int) -> bool:
    """A map whose units are a whole number of pixels apart, ``at_least``, along every
    spatial axis, which are its last ones: it can be cropped on its units."""
    field_ = value.field
    return (field_.known and bool(field_.axes)
            and value.dims == tuple(range(ndim - len(field_.axes), ndim))
            and all(Fraction(s).denominator == 1 and s >= at_least for s in field_.stride))


def _in_order(graph: torch.fx.Graph, nodes) -> tuple[Node, ...]:
    return tuple(n for n in graph.nodes if n in nodes)


_IN_PLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv,
                       operator.ifloordiv, operator.imod, operator.ipow, operator.iand,
                       operator.ior, operator.ixor, operator.ilshift, operator.irshift}


def _in_place(node: Node, modules: dict[str, nn.Module]) -> bool:
    """Whether the op writes into its first input: ``x.relu_()``, ``x += y``,
    ``F.relu(x, inplace=True)``, ``nn.ReLU(inplace=True)``."""
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.startswith("_")
    if node.op == "call_function":
        return node.target in _IN_PLACE_FUNCTIONS or node.kwargs.get("inplace") is True
    if node.op == "call_module":
        return getattr(modules.get(node.target), "inplace", False) is True
    return False


def _from_spatial_sizes(graph: torch.fx.Graph, values) -> set[Node]:
    """Nodes computed from a spatial size of a tensor with a field (``x.shape[-2]``,
    ``x.size(3)``, ``x.shape[2:]``), through numbers, tuples and tensors without a field."""
    def spatial_index(tensor: Node, index) -> bool:
        dims = set(values[tensor].dims or ())
        ndim = len(shape_of(tensor) or ())
        if isinstance(index, int):
            return index % ndim in dims if ndim else False
        if isinstance(index, slice):
            return bool(dims & set(range(ndim)[index]))
        return True  # anything else: assume it may be

    def size_of(node: Node) -> Node | None:  # x.shape, x.size(): the tensor x
        if node.op == "call_function" and node.target is getattr and node.args[1] == "shape":
            return node.args[0]
        if node.op == "call_method" and node.target == "size" and len(node.args) == 1:
            return node.args[0]
        return None

    def reads_size(node: Node) -> bool:
        args = node.args
        if node.op == "call_method" and node.target == "size" and len(args) > 1:
            return args[0] in values and spatial_index(args[0], args[1])
        if node.op == "call_function" and node.target is operator.getitem and args:
            tensor = size_of(args[0]) if isinstance(args[0], Node) else None
            return tensor is not None and tensor in values and spatial_index(tensor, args[1])
        return False

    return set(computed_from_sizes(graph, reads_size, lambda n: n in values))


def _followed(walk: Walk, out: Node, nodes: set[Node], where: str) -> Field:
    """The output's field from the walk's seed, or why it has none in pixels, naming the op."""
    field_ = walk.values[out].field
    if field_.known:
        return field_
    names = {n.name for n in nodes}
    first = next((row for row in walk.rows if row.node in names and not row.field.known),
                 None)
    at = f" from {first.name!r} ({first.op}) on" if first is not None else ""
    if field_.unknown:
        raise FieldError(f"{where}: the field is unknown{at} ({field_.unknown}); margins "
                         "cannot be derived")
    raise FieldError(f"{where}: the field is global{at}: every unit depends on the whole map, "
                     "so no tile reproduces it (staging runs whole only what comes after the "
                     "jump reaches low_from, and reads nothing global from the image)")


def _grid(fields, spatial: int, jumps: Iterable[tuple[int, ...]] = ()) -> tuple[int, ...]:
    """Where tiles may start: the least common multiple, per axis, of every jump (its
    numerator where it is a fraction) of ``fields`` (or (field, the seed's jump in pixels)
    pairs), and of ``jumps``. Per-unit spans count only where they repeat."""
    grid = [1] * spatial
    for item in fields:
        field_, seed = item if isinstance(item, tuple) else (item, (1,) * spatial)
        if not field_.known or len(field_.axes) != spatial:
            continue
        for a, axis in enumerate(field_.axes):
            grid[a] = math.lcm(grid[a], grid_step(axis) * seed[a])
    for jump in jumps:
        grid = [math.lcm(g, j) for g, j in zip(grid, jump, strict=True)]
    return tuple(grid)


def _reach(axis, n: int, seed_jump: int, jump: int, step: int, where: str) -> tuple[int, int]:
    """(before, after) along one axis in image pixels: the most context a unit of the output
    (``jump`` pixels apart) reads before the grid cell it is in starts, and after it ends.
    ``axis``: the output's field in units of the seed, which are ``seed_jump`` pixels apart;
    a seed unit ``e`` stands for pixels ``e*seed_jump`` … ``(e+1)*seed_jump - 1``, which are
    cropped together with it."""
    if isinstance(axis, ReceptiveField):  # the same for every unit
        return axis.padding * seed_jump, (axis.size - axis.stride - axis.padding) * seed_jump
    cell = step // jump
    reach: dict[int, set] = {}  # place in the cell -> every (before, after) inside the image
    for u in range(len(axis)):
        span = axis.span(u)
        if span is None:
            continue
        first, last = span[0] * seed_jump, (span[1] + 1) * seed_jump - 1
        if first >= step and last <= n - 1 - step:
            reach.setdefault(u % cell, set()).add((u * jump - first, last + 1 - (u + 1) * jump))
    if len(reach) < cell:
        raise _TooSmall(f"{where}: no whole grid cell of {step} pixels lies inside a "
                        f"{n}-pixel image")
    if any(len(seen) > 1 for seen in reach.values()):
        raise FieldError(f"{where}: units in the same place of the grid read different context "
                         "in different parts of the image (an op resizes by a factor that "
                         "depends on the image's size), so no tiles reproduce the whole image")
    cells = {k: next(iter(seen)) for k, seen in reach.items()}
    return (max(b - k * jump for k, (b, _) in cells.items()),
            max(a - (cell - 1 - k) * jump for k, (_, a) in cells.items()))


# --- running it ---------------------------------------------------------------------------


def staged_forward(model: nn.Module, image: torch.Tensor, tile=(512, 512), *,
                   low_from: int = 8, plan: StagedPlan | None = None,
                   output: str | int | None = None, progress: bool | None = None) -> torch.Tensor:
    """``model(image)`` computed in stages: the entries of the low part tile by tile, the
    low part whole, the tail tile by tile. Equal to it up to float round-off.

    ``tile``: image pixels each tile keeps per axis, a multiple of both stages' grids;
    ``plan``: from :func:`staged_plan` (made here for ``image``'s size if None);
    ``output``: as in :func:`staged_plan`; ``progress``: a tqdm bar (default: 8+ tiles).
    The model must be in eval mode (batch norm in training mode mixes every pixel).
    """
    if not isinstance(image, torch.Tensor) or image.dim() < 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a tensor (N, C, *spatial), got {shape}")
    if isinstance(model, nn.Module) and model.training:
        raise ValueError("the model is in training mode: batch norm would use each tile's "
                         "statistics, not the image's; valid: model.eval() first")
    spatial = tuple(image.shape[2:])
    if plan is None:
        plan = staged_plan(model, spatial, low_from, output=output)
    elif not isinstance(plan, StagedPlan):
        raise TypeError(f"plan must be a StagedPlan from staged_plan(model, input_size), got "
                        f"{type(plan).__name__}")
    elif output is not None and output != plan.output_key:
        raise ValueError(f"output={output!r}, but the plan computes output="
                         f"{plan.output_key!r}; valid: output={plan.output_key!r} (or None), "
                         f"or staged_plan(model, {spatial}, output={output!r})")
    elif plan.input_size != spatial:
        raise ValueError(f"the plan is for a {'×'.join(map(str, plan.input_size))} input, the "
                         f"image is {'×'.join(map(str, spatial))}; valid: "
                         f"staged_plan(model, {spatial}) or plan=None")
    tile = (tile,) * len(spatial) if isinstance(tile, int) else tuple(tile)
    if len(tile) != len(spatial):
        raise ValueError(f"tile={tile!r} has {len(tile)} sizes, the image {len(spatial)} "
                         f"spatial axes; valid: one int, or {len(spatial)} ints")
    entry_tiles = _tiles(spatial, tile, plan.entry_margins, plan.tail_margins)
    tail_tiles = [] if plan.tail_margins is None else _tiles(spatial, tile, plan.tail_margins,
                                                             plan.entry_margins)
    stages = _Stages(model, plan)
    grad = torch.is_grad_enabled() and image.requires_grad
    count = len(entry_tiles) + len(tail_tiles)
    bar = tqdm(total=count, desc="tiles", disable=not (count >= 8 if progress is None
                                                        else progress))
    with torch.set_grad_enabled(grad), bar:
        maps = _tiled(stages.entry, [image], [], (*plan.entries, *plan.kept), entry_tiles,
                      spatial, bar)
        kept = maps[len(plan.entries):]
        del maps[len(plan.entries):]
        exits = list(_interpret(stages.low, maps))  # frees each entry after its last use
        _release_freed_memory()
        if plan.tail_margins is None:
            return exits[0]
        seeds = list(zip([*exits, *kept], (*plan.exits, *plan.kept), strict=True))
        del exits, kept
        (result,) = _tiled(stages.tail, [image] * plan.tail_reads_input, seeds, [plan.output],
                           tail_tiles, spatial, bar)
    return result


@dataclass(frozen=True)
class _AxisTile:
    read: slice  # image pixels the crop holds
    first: int  # the pixels it keeps: first … stop - 1
    stop: int


def _tiles(spatial, tile, margins: Margins,
           other: Margins | None) -> list[tuple[_AxisTile, ...]]:
    """Every tile, as one ``_AxisTile`` per axis: crops start and end on the grid (or at the
    image's borders) with the margins around the pixels kept."""
    per_axis = []
    for n, t, m, o in zip(spatial, tile, margins.axes, (other or margins).axes, strict=True):
        step = math.lcm(m.step, o.step)  # one tile size for both stages
        if not isinstance(t, int) or t < step or t % step:
            low = max(step, t // step * step) if isinstance(t, int) else step
            raise ValueError(f"tile={t!r} is not a positive multiple of the grid {step} of "
                             f"both stages; valid: e.g. {low} or {low + step}")
        axis = []
        for first in range(0, n, t):
            stop = min(first + t, n)
            end = min(math.ceil((stop + max(m.after, 0)) / m.step) * m.step, n)
            axis.append(_AxisTile(slice(max(first - m.before_aligned, 0), end), first, stop))
        per_axis.append(axis)
    return list(itertools.product(*per_axis))


def _tiled(stage: torch.fx.GraphModule, images: list[torch.Tensor], seeds, ports, tiles,
           spatial, bar) -> list[torch.Tensor]:
    """Run ``stage`` on each tile's crops (of the image, and of each (map, port) of
    ``seeds`` in the map's own units) and write the units each tile keeps of each output port
    into whole maps."""
    results: list[torch.Tensor | None] = [None] * len(ports)
    for combo in tiles:
        reads = tuple(t.read for t in combo)
        crops = [image[(slice(None), slice(None), *reads)].clone()  # in-place ops: a copy
                 for image in images]
        for tensor, port in seeds:  # a copy: an in-place op must not write into the map
            crops.append(tensor[(slice(None), slice(None), *(
                slice(r.start // j, None if r.stop == n else r.stop // j)
                for r, j, n in zip(reads, port.jump, spatial, strict=True)))].clone())
        outs = _interpret(stage, crops)
        for k, (port, out) in enumerate(zip(ports, outs, strict=True)):
            write, keep = [], []
            for t, j, units, n in zip(combo, port.jump, port.shape[1:], spatial, strict=True):
                low, high = min(t.first // j, units), units if t.stop == n else min(t.stop // j,
                                                                                    units)
                offset = t.read.start // j
                write.append(slice(low, high))
                keep.append(slice(low - offset, high - offset))
            if results[k] is None:
                results[k] = out.new_empty((*out.shape[:2], *port.shape[1:]))
            results[k][(slice(None), slice(None), *write)] = out[(slice(None), slice(None),
                                                                  *keep)]
        del outs, out
        _release_freed_memory()
        bar.update()
    return results


def _interpret(stage: torch.fx.GraphModule, inputs: list) -> tuple:
    """Run ``stage`` on ``inputs``, which it takes over (the list is emptied): each tensor is
    freed after its last use inside."""
    placeholders = [n for n in stage.graph.nodes if n.op == "placeholder"]
    env = dict(zip(placeholders, inputs, strict=True))
    inputs.clear()
    return torch.fx.Interpreter(stage).run(initial_env=env, enable_io_processing=False)


class _Stages:
    """The three runnable parts of the plan, as GraphModules sharing the model's modules."""

    def __init__(self, model: nn.Module, plan: StagedPlan) -> None:
        graph = _graph(model)
        nodes = {n.name: n for n in graph.nodes}
        wanted = [plan.input, *(p.node for p in (*plan.entries, *plan.exits, *plan.kept,
                                                 plan.output))]
        missing = [name for name in wanted if name not in nodes]
        if missing:
            raise ValueError(f"the plan names ops this model does not have ({', '.join(missing)})"
                             "; valid: staged_plan(model, ...) of this model")
        image = nodes[plan.input]
        entries = [nodes[p.node] for p in plan.entries]
        exits = [nodes[p.node] for p in plan.exits]
        kept = [nodes[p.node] for p in plan.kept]
        out = nodes[plan.output.node]
        constants = {nodes[name]: value for name, value in plan.constants}
        placeholder = lambda n: n.op == "placeholder"  # noqa: E731
        inside, _ = upstream(entries, placeholder)  # the kept maps are on the way
        self.entry = _subgraph(model, graph, [image], entries + kept, inside)
        inside, _ = upstream(exits, lambda n: n in entries or n in constants or placeholder(n))
        self.low = _subgraph(model, graph, entries, exits, inside, constants)
        seeds = exits + kept
        inside, _ = upstream([out], lambda n: n in seeds or placeholder(n))
        self.tail = _subgraph(model, graph, [image] * plan.tail_reads_input + seeds, [out],
                              inside)


def _subgraph(model: nn.Module, graph: torch.fx.Graph, inputs: Sequence[Node],
              outputs: Sequence[Node], inside: set[Node],
              constants: dict[Node, object] | None = None) -> torch.fx.GraphModule:
    """A GraphModule taking ``inputs`` and giving the tuple of ``outputs``, computing the
    ``inside`` nodes in the graph's order; ``constants`` are filled in as values."""
    sub = torch.fx.Graph()
    env: dict[Node, object] = dict(constants or {})
    for node in inputs:
        env[node] = sub.placeholder(node.name)
    for node in graph.nodes:
        if node in inside and node not in env:
            env[node] = sub.node_copy(node, env.__getitem__)
    sub.output(tuple(env[node] for node in outputs))
    return torch.fx.GraphModule(model, sub)
