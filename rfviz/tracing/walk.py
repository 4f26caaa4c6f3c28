"""The walk: through the graph in execution order, one rule per op, one row per op.

The walk holds state only (the field of every tensor so far, the rows, the names); what an op
does to a field is in :mod:`.rules`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import torch.fx
from torch import nn

from ..field import CannotFollow, Field
from ..layer_table import LayerRow
from .ops import SPLITTING, UNBINDING
from .rules import Op, Step, Value, multihead_attention, tokens
from .shapes import gives_tensors, shape_of
from .table import TOKEN_RULES, rule_for

__all__ = ["RowNames", "Walk", "scopes"]


class RowNames:
    """Row names as users know them: ``layer1.0.conv1`` (``named_modules()`` paths); a
    function gets its module's path, ``layer1.0.add``; a second call of the same module or
    function in the same place gets ``@1``, as torch.fx does."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.names: dict[torch.fx.Node, str] = {}
        self.counts: Counter[str] = Counter()

    def op(self, node: torch.fx.Node) -> str:
        """What the row's op column shows: a module's type, a function's or method's name."""
        if node.op == "call_module":
            return type(self.modules[node.target]).__name__
        target = node.target
        return target if isinstance(target, str) else getattr(target, "__name__", str(target))

    def __call__(self, node: torch.fx.Node) -> str:
        if node not in self.names:
            if node.op == "call_module":
                base = node.target
            else:
                inside = scopes(node)
                base = f"{inside[-1]}.{self.op(node)}" if inside else self.op(node)
            count = self.counts[base]
            self.counts[base] += 1
            self.names[node] = base if count == 0 else f"{base}@{count}"
        return self.names[node]


def scopes(node: torch.fx.Node) -> tuple[str, ...]:
    """Every module path the op runs inside, outermost first."""
    found = node.meta.get("rfviz_scopes")  # the graph is walked again at other sizes
    if found is None:
        stack = node.meta.get("nn_module_stack") or {}
        found = node.meta["rfviz_scopes"] = tuple(dict.fromkeys(
            key.split("@")[0] for key in stack))
    return found


class Walk:
    """Fields relative to the ``seeds``: the graph's inputs by default, or chosen nodes, each
    a tensor whose units see themselves (fields then count that tensor's units, not pixels).
    ``blocked`` nodes are left out as if absent: an op sees only its other inputs, and an op
    with no input left gets no field (no row). :mod:`rfviz.staged` walks a network's
    high-resolution tail this way, from the image with the low-resolution part blocked, and
    from each tensor where the low-resolution part hands over.
    """

    def __init__(self, modules: dict[str, nn.Module], graph: torch.fx.Graph, spatial: int,
                 names: RowNames, *, seeds: Iterable[torch.fx.Node] | None = None,
                 blocked: Iterable[torch.fx.Node] = ()) -> None:
        self.graph = graph
        self.modules = modules
        self.spatial = spatial
        self.name = names
        self.seeds = None if seeds is None else frozenset(seeds)
        self.blocked = frozenset(blocked)
        self.values: dict[torch.fx.Node, Value] = {}
        self.rows: list[LayerRow] = []
        self.problems: list[tuple[int, CannotFollow]] = []  # (row index, the op not followed)

    def run(self) -> list[LayerRow]:
        for node in self.graph.nodes:
            shape = shape_of(node)
            if node in self.blocked:
                continue
            seeded = node.op == "placeholder" if self.seeds is None else node in self.seeds
            if seeded:
                if shape is not None and len(shape) >= 2 + self.spatial:
                    ndim = len(shape)
                    self.values[node] = Value(Field.identity(self.spatial),
                                              tuple(range(ndim - self.spatial, ndim)))
            elif node.op in ("call_module", "call_function", "call_method"):
                if node.target in SPLITTING or node.target in UNBINDING:  # a tuple of
                    # tensors, taken apart by getitem
                    self._split(node)
                elif gives_tensors(node):  # any other call giving several tensors
                    self._opaque(node)
                elif shape is not None:  # not sizes, tuples, ...
                    sources = tuple(a for a in node.all_input_nodes if a in self.values)
                    if sources:
                        self._step(node, sources)
        return self.rows

    def _opaque(self, node) -> None:
        """A call that gives a tuple of tensors rfviz has no rule for: the tensors taken
        from it have unknown fields, said once (never dropped in silence)."""
        source = next((a for a in node.all_input_nodes if a in self.values), None)
        if source is None:
            return
        module = self.modules[node.target] if node.op == "call_module" else None
        if isinstance(module, nn.MultiheadAttention):  # its output: the tuple's first item
            sources = tuple(a for a in node.all_input_nodes if a in self.values)
            step = Step(node, module, self.name.op(node), self.name(node),
                        tuple(self.values[a] for a in sources), shape_of(source),
                        shape_of(source), sources)
            result = self._said(step, multihead_attention(step))
            self.values[node] = Value(result.field, result.dims)
            return
        problem = CannotFollow(self.name.op(node), "it gives several tensors (a tuple) and "
                               "rfviz has no rule for it", self.name(node))
        self.problems.append((len(self.rows), problem))
        self.values[node] = Value(Field.unknown_after(problem), self.values[source].dims)

    def _split(self, node) -> None:
        """``chunk`` / ``split`` give a tuple of tensors, taken apart by ``getitem``: along the
        channels each piece keeps the field; along a spatial axis rfviz cannot follow."""
        source = next((a for a in node.all_input_nodes if a in self.values), None)
        if source is None:
            return
        value = self.values[source]
        unbind = node.target in UNBINDING
        position = 1 if unbind else 2
        dim = node.kwargs.get("dim", node.args[position] if len(node.args) > position else 0)
        dim %= len(shape_of(source))
        if value.dims and dim in value.dims:
            problem = CannotFollow(self.name.op(node), "split along a spatial axis",
                                   self.name(node))
            self.problems.append((len(self.rows), problem))
            value = Value(Field.unknown_after(problem), None if unbind else value.dims)
        elif unbind and value.dims:  # each piece lacks that dim
            value = Value(value.field, tuple(d - (d > dim) for d in value.dims), value.grid)
        self.values[node] = value

    def _said(self, step: Step, result: Op | CannotFollow) -> Op:
        """A rule's result; where it cannot follow the op, the problem is recorded (said once
        in the warnings) and the field after it is unknown: never a guess."""
        if not isinstance(result, CannotFollow):
            return result
        self.problems.append((len(self.rows), result))
        same_rank = len(step.in_shape) == len(step.out_shape)
        return Op(Field.unknown_after(result), step.value.dims if same_rank else None)

    def _input_shape(self, node) -> tuple[int, ...]:
        first = next(a for a in node.all_input_nodes if a in self.values)
        shape = shape_of(first)
        return shape if shape is not None else shape_of(node)  # a split's piece: as its output

    def _step(self, node, sources: tuple[torch.fx.Node, ...]) -> None:
        module = self.modules[node.target] if node.op == "call_module" else None
        inputs = tuple(self.values[a] for a in sources)
        step = Step(node, module, self.name.op(node), self.name(node), inputs,
                    self._input_shape(node), shape_of(node), sources)
        rule = rule_for(module if module is not None else node.target)
        if len(step.out_shape) == len(step.in_shape) and 0 in step.out_shape:
            result = step.cannot("its output has no unit along a spatial axis")
        elif rule not in TOKEN_RULES and any(
                tokens(v.dims) and not v.field.is_global for v in inputs):
            result = step.cannot("rfviz has no rule for it on tokens (the spatial axes "
                                 "flattened into one)")
        else:
            result = rule(step) if rule else step.cannot("rfviz has no rule for it")
        result = self._said(step, result)
        self.values[node] = Value(result.field, result.dims,
                                  result.grid if tokens(result.dims) else None)
        self.rows.append(LayerRow(
            name=step.where, op=step.op, shape=step.out_shape[1:], field=result.field,
            input_shape=step.in_shape[1:], scopes=scopes(node), node=node.name,
            **result.params))


Node = torch.fx.Node


def upstream(starts: Iterable[Node], edge: Callable[[Node], bool] = lambda n: False,
             ) -> tuple[set[Node], set[Node]]:
    """The nodes ``starts`` need, back to where ``edge`` holds: (those inside, the edge's
    nodes, which are read, not computed). A start on the edge is read as it is; with no edge,
    every node the starts are computed from, they included."""
    inside, reached, todo = set(), set(), list(starts)
    while todo:
        node = todo.pop()
        if node in inside or node in reached:
            continue
        if edge(node):
            reached.add(node)
        else:
            inside.add(node)
            todo.extend(node.all_input_nodes)
    return inside, reached
