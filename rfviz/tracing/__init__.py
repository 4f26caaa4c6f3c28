"""Walk any ``nn.Module`` with torch.fx: every op's output shape and receptive field.

(The package is ``tracing``, not ``trace``: ``rfviz.trace`` is the function, and a submodule
of the same name would replace it as the package's attribute once imported.)

Three steps, one module each:

1. the graph: a ``torch.fx.Tracer`` records the model's calls (it changes nothing in the
   model); the graph is kept per model (:func:`_graph`);
2. shapes (:mod:`.shapes`): every node's output shape on the *meta* device, no weight read;
3. the walk (:mod:`.walk`) applies one rule per op (:mod:`.rules`, parameters read by
   :mod:`.ops`) in execution order: residual additions and concatenations take the union of
   their branches' spans, per axis.

>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3))
>>> field = receptive_field(net, input_size=(32, 32))
>>> field.size, field.stride, field.padding          # 3 + (3-1)*2 = 7
((7, 7), (2, 2), (1, 1))
"""

from __future__ import annotations

import weakref

import torch
import torch.fx
from torch import nn

from ..field import Field
from ..layer_table import LayerRow, LayerTable, RfvizWarning
from .shapes import MetaShapeProp, ShapeError, input_shape
from .walk import RowNames, Walk

__all__ = ["Field", "LayerRow", "LayerTable", "RfvizWarning", "receptive_field", "trace"]


def trace(model: nn.Module, input_size=(224, 224)) -> LayerTable:
    """Every op of ``model`` in execution order with its output shape and receptive field.

    An op rfviz has no rule for gives an :class:`RfvizWarning` naming it, and unknown fields
    after it (never a guess).

    >>> from torch import nn
    >>> table = trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2)), input_size=8)
    >>> [(row.name, row.shape, row.field.size) for row in table]    # 8-3+1 = 6; 3 + (2-1)*1
    [('0', (4, 6, 6), (3, 3)), ('1', (4, 3, 3), (4, 4))]
    """
    table = _trace(model, input_size)
    table.warn()
    return table


def receptive_field(model: nn.Module, layer: str | None = None, input_size=(224, 224)) -> Field:
    """The receptive field at ``layer`` (a module path such as ``"layer3"``, or an op's row
    name); at the model's output if ``layer`` is None.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 1, (1, 7), padding=(0, 3)), nn.Conv2d(1, 1, (7, 1)))
    >>> receptive_field(net, input_size=(16, 16)).size        # H and W kept apart
    (7, 7)
    >>> receptive_field(net, "0", input_size=(16, 16)).size
    (1, 7)
    """
    table = _trace(model, input_size)
    if not table.rows:
        raise ValueError("the model has no op rfviz can follow")
    row = table.rows[-1] if layer is None else table.find(layer)
    table.warn(up_to=table.rows.index(row))
    return row.field


_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _graph(model: nn.Module) -> torch.fx.Graph:
    """The torch.fx graph of ``model``, remembered while the model's module tree stays the same.

    Only the graph is kept (``symbolic_trace`` would also generate a ``GraphModule``'s Python
    code, which rfviz never runs), since a notebook asks about the same model again and again.
    The graph records which modules are called, not their settings (those are read afresh on
    every call), so it stays valid until a submodule is replaced or ``forward`` changes, which
    the fingerprint notices.
    """
    fingerprint = (type(model).forward, *((name, id(m)) for name, m in model.named_modules()))
    cached = _GRAPHS.get(model)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    try:  # tracing records calls; it changes nothing in the model
        graph = torch.fx.Tracer().trace(model)
    except Exception as error:
        raise ValueError(f"torch.fx cannot trace {type(model).__name__}: "
                         f"{str(error).splitlines()[0]}") from None
    _GRAPHS[model] = (fingerprint, graph)
    return graph


def _trace(model: nn.Module, input_size) -> LayerTable:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    graph = _graph(model)
    shape = input_shape(model, input_size)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                 torch.get_default_dtype())
    shapes = MetaShapeProp(model, graph, RowNames)
    try:
        shapes.run(torch.empty(shape, device="meta", dtype=dtype))
    except ShapeError as error:
        raise ValueError(error.message) from None
    walk = Walk(shapes.submodules, graph, len(shape) - 2, RowNames(shapes.submodules))
    rows = walk.run()
    return LayerTable(tuple(rows), shape[1:], tuple(walk.problems))
