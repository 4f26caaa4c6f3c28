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

import contextlib
import weakref
from contextvars import ContextVar

import torch
import torch.fx
from torch import nn

from ..field import Field
from ..layer_table import LayerRow, LayerTable, RfvizWarning
from .ops import ELEMENTWISE_MODULES
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
    the fingerprint notices. Within :func:`_remembering` (the model unchanged by contract) the
    graph is given back without taking the fingerprint again: the atlas asks for one network's
    graph once per stage, and a fingerprint walks every module.
    """
    remembered = _REMEMBERED.get()
    if remembered is not None and (id(model), "graph") in remembered:
        return remembered[id(model), "graph"][1]  # unchanged within the block: no fingerprint
    fingerprint = (type(model).forward, *((name, id(m)) for name, m in model.named_modules()))
    cached = _GRAPHS.get(model)
    if cached is not None and cached[0] == fingerprint:
        graph = cached[1]
    else:
        graph = _traced_graph(model)
        _GRAPHS[model] = (fingerprint, graph)
    if remembered is not None:
        remembered[id(model), "graph"] = (model, graph)
    return graph


def _traced_graph(model: nn.Module) -> torch.fx.Graph:
    try:  # tracing records calls; it changes nothing in the model
        return _Tracer().trace(model)
    except Exception as error:
        raise ValueError(f"torch.fx cannot trace {type(model).__name__}: "
                         f"{str(error).splitlines()[0]}") from None


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, finding a parameter or buffer the forward reads by identity.

    The stock tracer searches ``named_parameters()`` (then ``named_buffers()``) from the top
    each time a module reads one (``self.weight`` in timm's ``BatchNormAct2d``), so a trace
    costs time quadratic in the model's size (timm's densenet169: 70% of its trace). The
    names are the same: the first of ``named_parameters()``, as the stock tracer finds. The
    commonest arguments (a proxy, a number, a tuple of them) skip the stock tracer's checks
    for tensors, modules and constants, which none of them is.
    """

    def trace(self, root, concrete_args=None):
        self._named: tuple[dict[int, str], dict[int, str]] = ({}, {})
        if isinstance(root, nn.Module):
            self._named = _tensor_names(root)
        return super().trace(root, concrete_args)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        """torch.fx's leaves (torch's own modules), and timm's ``BatchNormAct2d`` where its
        children are element-wise: :func:`_norm_then_activation`."""
        return (super().is_leaf_module(m, module_qualified_name)
                or _norm_then_activation(m))

    def call_module(self, m, forward, args, kwargs):
        """torch.fx's ``call_module`` without its ``Scope`` bookkeeping (a copy of the scope per
        call, for ``node_name_to_scope``, which rfviz never reads); the module stack each node
        records (``nn_module_stack``, the row names' scopes) is kept as torch.fx keeps it."""
        path = self.path_of_module(m)
        calls = self.num_calls.get(path, 0)
        self.module_stack[f"{path}@{calls}" if calls else path] = (path, type(m))
        self.num_calls[path] = calls + 1
        try:
            if self.is_leaf_module(m, path):
                return self.create_proxy("call_module", path, args, kwargs)
            return forward(*args, **kwargs)
        finally:
            self.module_stack.popitem(last=True)

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        """A graph node with the module stack it was made in, as torch.fx records it (a
        dictionary's own copy: ``copy.copy`` goes the slow way through ``__reduce_ex__``)."""
        node = self.graph.create_node(kind, target, args, kwargs, name, type_expr)
        if self.module_stack:
            node.meta["nn_module_stack"] = self.module_stack.copy()
        return node

    def _name_of(self, value, buffers: bool = True) -> str | None:
        """The name of a parameter (or, if ``buffers``, of a buffer) of the traced model."""
        name = None
        if isinstance(value, nn.Parameter):
            name = self._named[0].get(id(value))
        if name is None and buffers and isinstance(value, torch.Tensor):
            name = self._named[1].get(id(value))
        return name

    def create_arg(self, a):
        kind = type(a)  # the arguments of nearly every call: what torch.fx makes of them
        if kind is torch.fx.Proxy:
            return a.node
        if kind in _PLAIN:
            return a
        if kind is tuple or kind is list:
            return kind([self.create_arg(item) for item in a])
        name = None  # a parameter is looked for among parameters only, as torch.fx does
        if isinstance(a, torch.Tensor):
            name = self._name_of(a, buffers=not isinstance(a, nn.Parameter))
        if name is not None:
            return self.create_node("get_attr", name, (), {})
        return super().create_arg(a)  # anything else, and the stock tracer's errors

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if not isinstance(attr_val, torch.Tensor):
            return attr_val
        name = self._name_of(attr_val, buffers=self.proxy_buffer_attributes)
        if name is None:
            return attr_val
        if name not in parameter_proxy_cache:
            factory = None if not self.param_shapes_constant else (
                lambda node: torch.fx.proxy.ParameterProxy(self, node, name, attr_val))
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {},
                                                            proxy_factory_fn=factory)
        return parameter_proxy_cache[name]


_PLAIN = (int, float, str, bool, type(None))  # arguments torch.fx records as they are


def _tensor_names(root: nn.Module) -> tuple[dict[int, str], dict[int, str]]:
    """Each parameter's and each buffer's name by identity, the first name
    ``named_parameters()`` / ``named_buffers()`` give it, in one walk over the modules (the
    two generators walk them twice, a third of a trace's fixed cost)."""
    parameters: dict[int, str] = {}
    buffers: dict[int, str] = {}
    for prefix, module in root.named_modules():
        for names, tensors in ((parameters, module._parameters), (buffers, module._buffers)):
            for name, tensor in tensors.items():
                if tensor is not None and id(tensor) not in names:
                    names[id(tensor)] = f"{prefix}.{name}" if prefix else name
    return parameters, buffers

# Modules whose forward is known to be a batch norm (torch's BatchNorm2d's, copied) followed by
# their children: timm's BatchNormAct2d (norm, dropout, activation). By module and class name,
# so that timm need not be imported.
_NORM_THEN_CHILDREN = {("timm.layers.norm_act", "BatchNormAct2d")}


def _norm_then_activation(module: nn.Module) -> bool:
    """Whether ``module`` is traced as one op: a batch norm followed by element-wise children
    (timm's ``BatchNormAct2d`` with a ReLU, SiLU, …), element-wise as a whole, as a
    ``BatchNorm2d`` is (its rule and its shape are a BatchNorm2d's, its base class). Traced
    into, it is eight nodes (a shape check, four reads of weights, the norm, the dropout, the
    activation): a third of timm's convolutional networks' nodes. Any other child (timm's own
    activation classes among them) and it is traced into, as before."""
    kind = type(module)
    return ((kind.__module__, kind.__name__) in _NORM_THEN_CHILDREN
            and isinstance(module, nn.BatchNorm2d)
            and all(isinstance(child, ELEMENTWISE_MODULES) for child in module.children()))


def _trace(model: nn.Module, input_size) -> LayerTable:
    graph, shape = _prepared(model, input_size)
    remembered = _REMEMBERED.get()
    if remembered is None:
        return _walked(model, graph, shape)
    key = (id(model), shape, "table")
    if key not in remembered:
        try:
            remembered[key] = (model, _walked(model, graph, shape))
        except ValueError as error:
            remembered[key] = (model, error)
    return _recalled(remembered[key][1])


def _shapes(model: nn.Module, input_size) -> None:
    """Shape propagation alone: raises the ValueError :func:`_trace` would raise for a shape
    that does not fit ("input_size is too small for this model: …"), without walking the
    fields (the costly part of a trace for a large network at a large size)."""
    graph, shape = _prepared(model, input_size)
    remembered = _REMEMBERED.get()
    if remembered is None:
        _propagated(model, graph, shape)
        return
    if isinstance(remembered.get((id(model), shape, "table"), (None, None))[1], LayerTable):
        return
    key = (id(model), shape, "shapes")
    if key not in remembered:
        try:
            _propagated(model, graph, shape)
            remembered[key] = (model, None)
        except ValueError as error:
            remembered[key] = (model, error)
    _recalled(remembered[key][1])


def _prepared(model: nn.Module, input_size) -> tuple[torch.fx.Graph, tuple[int, ...]]:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return _graph(model), input_shape(model, input_size)


def _propagated(model: nn.Module, graph: torch.fx.Graph, shape) -> MetaShapeProp:
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                 torch.get_default_dtype())
    shapes = MetaShapeProp(model, graph, RowNames)
    try:
        shapes.run(torch.empty(shape, device="meta", dtype=dtype))
    except ShapeError as error:
        raise ValueError(error.message) from None
    return shapes


def _walked(model: nn.Module, graph: torch.fx.Graph, shape) -> LayerTable:
    shapes = _propagated(model, graph, shape)
    walk = Walk(shapes.submodules, graph, len(shape) - 2, RowNames(shapes.submodules))
    rows = walk.run()
    return LayerTable(tuple(rows), shape[1:], tuple(walk.problems))


# Within ``_remembering()``: (id(model), input shape, "table" | "shapes") -> (the model, kept
# alive so that its id stays its own; the table, None, or the ValueError raised), and
# (id(model), "graph") -> (the model, its graph)
_REMEMBERED: ContextVar[dict | None] = ContextVar("rfviz_remembered_traces", default=None)


@contextlib.contextmanager
def _remembering():
    """Within the block, tracing a model again at a size it was traced at gives the same
    table (or raises the same error) at once. For callers that trace one model at a few sizes,
    several times each, and change nothing in it in between: the atlas's rows of a network
    trace it at 224 for the rows, for each stage's tile margins and in the search for the
    smallest input (HRNet: the same four sizes once per stage). Nested blocks share one memory.
    """
    token = _REMEMBERED.set({} if _REMEMBERED.get() is None else _REMEMBERED.get())
    try:
        yield
    finally:
        _REMEMBERED.reset(token)


def _recalled(result):
    if isinstance(result, ValueError):
        raise ValueError(str(result)) from None
    return result
