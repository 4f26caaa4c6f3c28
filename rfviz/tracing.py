"""Walk any ``nn.Module`` with torch.fx: every op's output shape and receptive field.

(The module is ``tracing``, not ``trace``: ``rfviz.trace`` is the function, and a submodule
of the same name would replace it as the package's attribute once imported.)

The model is traced symbolically (a ``torch.fx.Tracer`` records its calls and changes
nothing; the graph is kept per model), and shapes propagate on the *meta* device:
convolutions and pooling by rfviz's own arithmetic, anything else on a weightless copy of
that one module. No weight is read and nothing is computed. Fields are then composed op by op
along the real graph: residual additions and concatenations take the union of their branches'
spans, per axis.

>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3))
>>> field = receptive_field(net, input_size=(32, 32))
>>> field.size, field.stride, field.padding          # 3 + (3-1)*2 = 7
((7, 7), (2, 2), (1, 1))
"""

from __future__ import annotations

import copy
import difflib
import operator
import warnings
import weakref
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from math import prod

import torch
import torch.fx
import torch.nn.functional as F
import torchvision.ops
from torch import nn

from .arithmetic import conv_output_size, pool_output_size
from .field import PerAxis, ReceptiveField
from .table import Table

__all__ = ["Field", "LayerRow", "LayerTable", "RfvizWarning", "receptive_field", "trace"]

AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


class RfvizWarning(UserWarning):
    """An op rfviz cannot follow: the fields after it are unknown."""


@dataclass(frozen=True)
class Field(PerAxis):
    """A receptive field per spatial axis (H and W kept apart), or global, or unknown.

    ``axes`` holds one :class:`~rfviz.field.ReceptiveField` per spatial axis, in the
    tensor's order (H, W for images). ``is_global`` means every output depends on the whole
    input (after adaptive pooling to 1, flatten + linear, squeeze-excite, …).
    """

    axes: tuple[ReceptiveField, ...]
    is_global: bool = False
    unknown: str | None = None  # why, if rfviz could not follow an op

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(axis.size for axis in self.axes)

    @property
    def stride(self) -> tuple[int, ...]:
        return tuple(axis.stride for axis in self.axes)

    @property
    def padding(self) -> tuple[int, ...]:
        return tuple(axis.padding for axis in self.axes)

    def span(self, unit: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """First and last input pixel per axis seen by output ``unit`` (one index per axis)."""
        return tuple(axis.span(i) for axis, i in zip(self.axes, unit, strict=True))

    def __str__(self) -> str:
        if self.unknown:
            return "unknown"
        if self.is_global:
            return "global"
        return (f"{_by(self.size)} px, stride {_by(self.stride)}, "
                f"padding {_by(self.padding)}")


def _by(values: tuple[int, ...]) -> str:
    return "×".join(map(str, values)) if len(set(values)) > 1 else str(values[0])


@dataclass(frozen=True)
class LayerRow:
    """One op of the traced graph, in execution order."""

    name: str  # named_modules() path, or parent path + function name for functions
    op: str
    shape: tuple[int, ...]  # output shape without the batch dimension, e.g. (C, H, W)
    field: Field
    input_shape: tuple[int, ...] = ()  # shape of its (first) tensor input, without the batch
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    scopes: tuple[str, ...] = ()  # every module path this op runs inside
    node: str = ""  # the torch.fx node name, to cut the graph here (rfviz.probe)


@dataclass(frozen=True)
class LayerTable(Sequence):
    """Rows of :func:`trace`; index by position or by name, print as text, show as HTML."""

    rows: tuple[LayerRow, ...]
    input_shape: tuple[int, ...]
    problems: tuple[tuple[int, str], ...] = ()  # (row index, what rfviz could not follow)

    def warn(self, up_to: int | None = None) -> None:
        """Warn (once per kind of op) about the ops rfviz could not follow, up to a row."""
        said = set()
        for index, message in self.problems:
            kind = message.split(" at ")[0]
            if (up_to is None or index <= up_to) and kind not in said:
                warnings.warn(message, RfvizWarning, stacklevel=3)
                said.add(kind)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.find(key)
        return self.rows[key]

    def __iter__(self) -> Iterator[LayerRow]:
        return iter(self.rows)

    def only(self, *ops: str) -> LayerTable:
        """The rows whose op is one of ``ops`` (e.g. ``"Conv2d", "MaxPool2d"``)."""
        return replace(self, rows=tuple(row for row in self.rows if row.op in ops),
                       problems=())

    def names(self) -> list[str]:
        """Every name :meth:`find` accepts: row names and the module paths they run in."""
        names = dict.fromkeys(row.name for row in self.rows)
        for row in self.rows:
            names.update(dict.fromkeys(row.scopes))
        return list(names)

    def find(self, name: str) -> LayerRow:
        """The row of ``name``: an op, or the last op inside module ``name`` (its output)."""
        exact = [row for row in self.rows if row.name == name]
        if exact:
            return exact[0]
        inside = [row for row in self.rows if name in row.scopes]
        if inside:
            return inside[-1]
        close = difflib.get_close_matches(name, self.names(), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(repr(c) for c in close)}" if close else ""
        raise ValueError(f"layer={name!r} is not in the model{hint}")

    def table(self) -> Table:
        """The rows as a plain :class:`~rfviz.table.Table` (what ``str`` and notebooks show)."""
        header = ["layer", "op", "kernel", "stride", "padding", "dilation", "output", "field",
                  "jump", "eff. padding"]
        body = []
        for row in self.rows:
            known = not (row.field.unknown or row.field.is_global)
            body.append([
                row.name, row.op,
                *(_by(v) if v else "" for v in (row.kernel, row.stride, row.padding,
                                                 row.dilation)),
                "×".join(map(str, row.shape)),
                _by(row.field.size) if known else str(row.field),
                _by(row.field.stride) if known else "",
                _by(row.field.padding) if known else "",
            ])
        return Table(header, body)

    def __str__(self) -> str:
        return str(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __repr__(self) -> str:
        return f"<LayerTable: {len(self.rows)} ops, input {tuple(self.input_shape)}>\n{self}"


# --- per-op rules ----------------------------------------------------------------------


@dataclass
class _Value:
    """What the walk knows of one tensor: its field and where its spatial axes are."""

    field: Field
    dims: tuple[int, ...] | None  # tensor dim of each spatial axis; None once flattened away


@dataclass
class _Op:
    """The result of one rule: the new field, dims, and what the row shows."""

    field: Field
    dims: tuple[int, ...] | None
    params: dict = field(default_factory=dict)


def _tuple(value, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,) * n


def _window(value: _Value, kernel, stride, padding, dilation) -> _Op:
    """A sliding window (conv or pool) over the last len(kernel) axes."""
    n = len(value.field.axes)
    kernel, stride, dilation = (_tuple(v, n) for v in (kernel, stride, dilation))
    if isinstance(padding, str):  # 'valid' or 'same' (stride 1): torch pads left total // 2
        padding = tuple(0 if padding == "valid" else d * (k - 1) // 2
                        for k, d in zip(kernel, dilation, strict=True))
    padding = _tuple(padding, n)
    params = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
    if value.field.unknown or value.field.is_global:
        return _Op(value.field, value.dims, params)
    axes = tuple(axis.then(k, s, p, d) for axis, k, s, p, d
                 in zip(value.field.axes, kernel, stride, padding, dilation, strict=True))
    return _Op(replace(value.field, axes=axes), value.dims, params)


def _global(value: _Value, dims=...) -> _Op:
    """Every output now depends on the whole input: certain even if the field before was not."""
    field = replace(value.field, is_global=True, unknown=None)
    return _Op(field, value.dims if dims is ... else dims)


def _same(value: _Value) -> _Op:
    return _Op(value.field, value.dims)


def _adaptive(value: _Value, in_shape, out_shape) -> _Op | str:
    """Adaptive pooling: global where it pools an axis to 1, a plain window where sizes divide."""
    if value.field.unknown or value.field.is_global or value.dims is None:
        return _same(value)
    sizes_in = [in_shape[d] for d in value.dims]
    sizes_out = [out_shape[d] for d in value.dims]
    if all(o == 1 for o in sizes_out) and any(i > 1 for i in sizes_in):
        return _global(value)
    if all(i % o == 0 for i, o in zip(sizes_in, sizes_out, strict=True)):
        k = tuple(i // o for i, o in zip(sizes_in, sizes_out, strict=True))
        return _window(value, k, k, 0, 1)
    return (f"adaptive pooling from {sizes_in} to {sizes_out} uses windows of varying sizes")


ELEMENTWISE_MODULES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.LocalResponseNorm,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.ChannelShuffle,
)
SPATIAL_STATISTICS = (nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)

ELEMENTWISE_FUNCTIONS = {
    operator.neg, torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.sqrt, torch.abs,
    F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.dropout, F.leaky_relu, F.elu,
    torchvision.ops.stochastic_depth,  # drops whole samples (or nothing, in eval): no mixing
}
MERGING_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd,
                     operator.imul, torch.add, torch.sub, torch.mul, torch.div, torch.maximum,
                     torch.minimum}
ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "contiguous", "clone",
                       "float", "double", "to", "type_as", "detach", "exp", "neg", "abs"}
MERGING_METHODS = {"add", "add_", "mul", "mul_", "sub", "div", "div_"}
RESHAPING = {torch.flatten, torch.reshape, "view", "reshape", "flatten", "unflatten", "squeeze",
             "unsqueeze", torch.squeeze, torch.unsqueeze}
PERMUTING = {torch.permute, torch.transpose, "permute", "transpose"}
SPLITTING = {torch.chunk, torch.split, "chunk", "split"}
REDUCING = {torch.mean, torch.sum, torch.amax, "mean", "sum", "amax", "max"}


def _merge(values: list[_Value], where: str) -> Field:
    """Union of branch fields: same stride required per axis, span = union of spans."""
    fields = [v.field for v in values]
    unknown = next((f.unknown for f in fields if f.unknown), None)
    if unknown:
        return fields[0] if fields[0].unknown else replace(fields[0], unknown=unknown)
    if any(f.is_global for f in fields):
        return replace(fields[0], is_global=True)
    names = AXIS_NAMES.get(len(fields[0].axes), ())
    axes = []
    for a, branch_axes in enumerate(zip(*(f.axes for f in fields), strict=True)):
        strides = sorted({axis.stride for axis in branch_axes})
        if len(strides) > 1:
            axis_name = names[a] if a < len(names) else str(a)
            raise ValueError(f"branches merging at {where!r} disagree on the stride along "
                             f"{axis_name}: {' vs '.join(map(str, strides))}; their units do "
                             "not line up, so no single receptive field describes the result")
        padding = max(axis.padding for axis in branch_axes)
        last = max(axis.size - axis.padding for axis in branch_axes)
        axes.append(ReceptiveField(size=last + padding, stride=strides[0], padding=padding))
    return Field(tuple(axes))


def _transposed(value: _Value, module) -> _Op | str:
    """A transposed convolution. At stride 1 it is a convolution with the same kernel and
    padding ``dilation*(kernel-1) - padding`` (negative: it crops). With a larger stride an
    output unit's field depends on its position modulo the stride: no single field exists."""
    if any(s != 1 for s in module.stride):
        return (f"with stride {module.stride} the field of an output unit depends on its "
                "position modulo the stride, so no single (size, stride, padding) describes it")
    params = {"kernel": module.kernel_size, "stride": module.stride, "padding": module.padding,
              "dilation": module.dilation}
    if value.field.unknown or value.field.is_global:
        return _Op(value.field, value.dims, params)
    axes = tuple(
        ReceptiveField(size=axis.size + d * (k - 1) * axis.stride, stride=axis.stride,
                       padding=axis.padding + (d * (k - 1) - p) * axis.stride)
        for axis, k, p, d in zip(value.field.axes, module.kernel_size, module.padding,
                                 module.dilation, strict=True))
    return _Op(replace(value.field, axes=axes), value.dims, params)


def _linear(value: _Value, ndim: int) -> _Op:
    """A linear layer mixes its last axis: global if that axis is spatial or flattened."""
    if value.dims is None or ndim - 1 in value.dims:
        return _global(value, None)
    return _same(value)


def _reduce(value: _Value, node: torch.fx.Node, ndim: int) -> _Op:
    """mean / sum / amax over some dims: global if a spatial axis is reduced."""
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
    reduced = set(range(ndim)) if dim is None else {d % ndim for d in _tuple(dim, 1)}
    spatial = set(value.dims or ())
    if reduced & spatial:
        return _global(value, value.dims if keepdim else None)
    if keepdim or value.dims is None:
        return _same(value)
    return _Op(value.field, tuple(d - sum(r < d for r in reduced) for d in value.dims))


def _arguments(node: torch.fx.Node, names: tuple[str, ...]) -> dict:
    """A call's arguments by name (positional ones matched to ``names``)."""
    return {**dict(zip(names, node.args, strict=False)), **node.kwargs}


def _keeps_spatial(value: _Value, in_shape, out_shape) -> bool:
    if value.dims is None:
        return True
    return len(in_shape) == len(out_shape) and all(in_shape[d] == out_shape[d]
                                                   for d in value.dims)


def _permute(value: _Value, node: torch.fx.Node, ndim: int) -> _Op:
    """Permutes and transposes move the spatial axes; follow them."""
    args = node.args[1:] or tuple(node.kwargs.values())
    if node.target in (torch.transpose, "transpose"):
        a, b = (d % ndim for d in args[:2])
        order = list(range(ndim))
        order[a], order[b] = b, a
    else:
        order = [d % ndim for d in (args[0] if isinstance(args[0], tuple | list) else args)]
    if value.dims is None:
        return _same(value)
    return _Op(value.field, tuple(order.index(d) for d in value.dims))


def _reshape(value: _Value, in_shape, out_shape) -> _Op | str:
    """Reshapes that keep the spatial axes (channel shuffle, permutes) or flatten them away."""
    if value.dims is None:
        return _same(value)
    sizes = [in_shape[d] for d in value.dims]
    tail = list(out_shape[len(out_shape) - len(sizes):])
    if tail == sizes and len(out_shape) >= len(sizes) + 1:
        return _Op(value.field, tuple(range(len(out_shape) - len(sizes), len(out_shape))))
    if prod(out_shape) == prod(in_shape) and len(out_shape) <= 2:
        return _Op(value.field, None)  # flattened: spatial structure is gone
    return f"a reshape from {tuple(in_shape)} to {tuple(out_shape)} moves the spatial axes"


# --- the walk ----------------------------------------------------------------------------


class _Walk:
    def __init__(self, modules: dict[str, nn.Module], graph: torch.fx.Graph, spatial: int) -> None:
        self.graph = graph
        self.modules = modules
        self.values: dict[torch.fx.Node, _Value] = {}
        self.rows: list[LayerRow] = []
        self.spatial = spatial
        self.problems: list[tuple[int, str]] = []  # (row index, message)
        self.names: dict[torch.fx.Node, str] = {}
        self.name_counts: Counter[str] = Counter()

    def run(self) -> list[LayerRow]:
        for node in self.graph.nodes:
            shape = _shape_of(node)
            if node.op == "placeholder":
                if shape is None or len(shape) < 2 + self.spatial:
                    continue
                ndim = len(shape)
                identity = Field(tuple(ReceptiveField() for _ in range(self.spatial)))
                self.values[node] = _Value(identity, tuple(range(ndim - self.spatial, ndim)))
            elif node.op in ("call_module", "call_function", "call_method"):
                if node.target in SPLITTING:  # a tuple of tensors, taken apart by getitem
                    self._split(node)
                    continue
                if shape is None:  # sizes, tuples: not a tensor
                    continue
                inputs = [self.values[a] for a in node.all_input_nodes if a in self.values]
                if not inputs:
                    continue
                self._step(node, inputs)
        return self.rows

    def _split(self, node) -> None:
        source = next((a for a in node.all_input_nodes if a in self.values), None)
        if source is None:
            return
        value = self.values[source]
        dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
        dim %= len(_shape_of(source))
        if value.dims and dim in value.dims:
            self.values[node] = _Value(replace(value.field, unknown="split along a spatial axis"),
                                       value.dims)
        else:
            self.values[node] = value

    def _first_tensor_arg(self, node) -> torch.fx.Node:
        return next(a for a in node.all_input_nodes if a in self.values)

    def _input_shape_of(self, node) -> tuple[int, ...]:
        shape = _shape_of(self._first_tensor_arg(node))
        if shape is not None:
            return shape
        return _shape_of(node)  # the source is a split: its pieces look like the output

    def _step(self, node, inputs: list[_Value]) -> None:
        value = inputs[0]
        in_shape = self._input_shape_of(node)
        out_shape = _shape_of(node)
        op_name, result = self._rule(node, value, inputs, in_shape, out_shape)
        if isinstance(result, str):  # cannot follow: say so, never guess
            self.problems.append((len(self.rows), f"rfviz cannot follow {op_name} at "
                                  f"{self._name(node, op_name)!r}: {result}; fields after it "
                                  "are unknown"))
            result = _Op(replace(value.field, unknown=f"{op_name}: {result}"), value.dims)
        self.values[node] = _Value(result.field, result.dims)
        self.rows.append(LayerRow(
            name=self._name(node, op_name), op=op_name, shape=out_shape[1:], field=result.field,
            input_shape=in_shape[1:],
            scopes=self._scopes(node), node=node.name, **result.params))

    def _rule(self, node, value, inputs, in_shape, out_shape):
        if node.op == "call_module":
            module = self.modules[node.target]
            return type(module).__name__, self._module_rule(module, value, in_shape, out_shape)
        target = node.target
        name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        if target in MERGING_FUNCTIONS or target in MERGING_METHODS:
            return name, _Op(_merge(inputs, self._name(node, name)), value.dims)
        if target in ELEMENTWISE_FUNCTIONS or target in ELEMENTWISE_METHODS:
            return name, _same(value)
        if target is torch.cat or target == "cat":
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            dim %= len(out_shape)
            if value.dims and dim in value.dims:
                return name, "concatenation along a spatial axis"
            return name, _Op(_merge(inputs, self._name(node, name)), value.dims)
        if target in RESHAPING:
            return name, _reshape(value, in_shape, out_shape)
        if target in PERMUTING:
            return name, _permute(value, node, len(in_shape))
        if target is operator.getitem:
            return name, _same(value) if _keeps_spatial(value, in_shape, out_shape) else (
                "indexing that changes the spatial axes")
        if target is F.layer_norm:
            normalized = node.args[1] if len(node.args) > 1 else node.kwargs["normalized_shape"]
            dims = range(len(in_shape) - len(_tuple(normalized, 1)), len(in_shape))
            return name, _global(value) if set(value.dims or ()) & set(dims) else _same(value)
        if target in REDUCING:
            return name, _reduce(value, node, len(in_shape))
        if target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.adaptive_avg_pool1d):
            return name, _adaptive(value, in_shape, out_shape)
        if target in (F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d):
            kw = _arguments(node, ("input", "kernel_size", "stride", "padding", "dilation"))
            if target in (F.avg_pool1d, F.avg_pool2d):
                kw["dilation"] = 1  # avg_pool's 5th argument is ceil_mode
            return name, _window(value, kw["kernel_size"], kw.get("stride") or kw["kernel_size"],
                                 kw.get("padding", 0), kw.get("dilation", 1))
        if target in (F.conv1d, F.conv2d, F.conv3d):
            kw = _arguments(node, ("input", "weight", "bias", "stride", "padding", "dilation"))
            kernel = _shape_of(kw["weight"])[2:]
            return name, _window(value, kernel, kw.get("stride", 1), kw.get("padding", 0),
                                 kw.get("dilation", 1))
        if target is F.linear:
            return name, _linear(value, len(in_shape))
        return name, "rfviz has no rule for it"

    def _module_rule(self, module, value, in_shape, out_shape):
        if isinstance(module, nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d):
            return _transposed(value, module)
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return _window(value, module.kernel_size, module.stride, module.padding,
                           module.dilation)
        if isinstance(module, nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d):
            return _window(value, module.kernel_size, module.stride or module.kernel_size,
                           module.padding, module.dilation)
        if isinstance(module, nn.AvgPool1d | nn.AvgPool2d | nn.AvgPool3d):
            return _window(value, module.kernel_size, module.stride or module.kernel_size,
                           module.padding, 1)
        if isinstance(module, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool1d
                      | nn.AdaptiveMaxPool2d):
            return _adaptive(value, in_shape, out_shape)
        if isinstance(module, ELEMENTWISE_MODULES):
            return _same(value)
        if isinstance(module, SPATIAL_STATISTICS):
            return _global(value)
        if isinstance(module, nn.LayerNorm):
            normalized = range(len(in_shape) - len(module.normalized_shape), len(in_shape))
            return _global(value) if set(value.dims or ()) & set(normalized) else _same(value)
        if isinstance(module, nn.Flatten):
            return _reshape(value, in_shape, out_shape)
        if isinstance(module, nn.Linear):
            return _linear(value, len(in_shape))
        return "rfviz has no rule for it"

    def _scopes(self, node) -> tuple[str, ...]:
        stack = node.meta.get("nn_module_stack") or {}
        return tuple(dict.fromkeys(key.split("@")[0] for key in stack))

    def _name(self, node, op_name: str) -> str:
        """``layer1.0.conv1``; a function gets its module's path: ``layer1.0.add``; a second
        call of the same module or function in the same place gets ``@1``, as torch.fx does."""
        if node not in self.names:
            if node.op == "call_module":
                base = node.target
            else:
                scopes = self._scopes(node)
                base = f"{scopes[-1]}.{op_name}" if scopes else op_name
            count = self.name_counts[base]
            self.name_counts[base] += 1
            self.names[node] = base if count == 0 else f"{base}@{count}"
        return self.names[node]


def _meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy whose parameters and buffers live on the meta device (no data copied)."""
    memo = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        empty = torch.empty_like(tensor, device="meta")
        if isinstance(tensor, nn.Parameter):
            empty = nn.Parameter(empty, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = empty
    return copy.deepcopy(model, memo).eval()


class _TooSmall(Exception):
    """Raised inside the interpreter (which decorates messages); re-raised as ValueError."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_SHAPE = "rfviz_shape"


def _shape_of(node: torch.fx.Node) -> tuple[int, ...] | None:
    """The shape of the tensor ``node`` gives, after shape propagation; None if not a tensor."""
    return node.meta.get(_SHAPE)


class _MetaShapeProp(torch.fx.Interpreter):
    """Shape propagation on the meta device that never touches the model's weights.

    Convolutions and pooling get their output shape from :mod:`rfviz.arithmetic` (tested
    equal to torch), shape-preserving modules pass their input through, and anything else
    runs on a weightless meta copy of that one module. Each node that gives a tensor gets its
    shape in ``meta["rfviz_shape"]``. A failure names the layer, in the model's own names,
    and the shape that reached it.
    """

    def run_node(self, node):
        try:
            result = super().run_node(node)
        except Exception as error:
            shapes = [_shape_of(a)[1:] for a in node.all_input_nodes if _shape_of(a) is not None]
            where = node.target if node.op == "call_module" else node.name
            message = str(error).strip().splitlines()[0]
            raise _TooSmall(f"input_size is too small for this model: at {where!r} the input "
                            f"has shape {shapes[0] if shapes else '?'} (channels, *spatial): "
                            f"{message}") from None
        if isinstance(result, torch.Tensor):
            node.meta[_SHAPE] = tuple(result.shape)
        else:
            node.meta.pop(_SHAPE, None)
        return result

    def get_attr(self, target, args, kwargs):
        value = super().get_attr(target, args, kwargs)
        return torch.empty_like(value, device="meta") if isinstance(value, torch.Tensor) else value

    def call_function(self, target, args, kwargs):
        result = _broadcast(target in MERGING_FUNCTIONS, args, kwargs)
        return super().call_function(target, args, kwargs) if result is None else result

    def call_method(self, target, args, kwargs):
        result = _broadcast(target in MERGING_METHODS, args, kwargs)
        return super().call_method(target, args, kwargs) if result is None else result

    def call_module(self, target, args, kwargs):
        module = self.submodules[target]  # fetch_attr would walk the dotted path each time
        x = args[0]
        if isinstance(module, ELEMENTWISE_MODULES) and not kwargs and len(args) == 1:
            return x
        shape = _module_output_shape(module, tuple(x.shape)) if isinstance(
            x, torch.Tensor) else None
        if shape is not None:
            return torch.empty(shape, device="meta")
        return _meta_copy(module)(*args, **kwargs)


def _broadcast(arithmetic: bool, args, kwargs) -> torch.Tensor | None:
    """The result of ``x + y``-like arithmetic on floating meta tensors of one dtype (Python
    numbers beside them keep that dtype), by broadcasting their shapes: running torch's meta
    kernel for it costs a third of shape propagation. None where that shortcut does not apply."""
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    if (not arithmetic or not tensors or len({t.dtype for t in tensors}) != 1
            or not tensors[0].is_floating_point()):
        return None
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    return torch.empty(shape, device="meta", dtype=tensors[0].dtype)


def _module_output_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Output shape of a conv or pooling module by the arithmetic; None for anything else."""
    spatial = shape[2:]
    n = len(spatial)
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d) and len(spatial) == len(
            module.kernel_size):
        if shape[1] != module.in_channels:
            return None  # let torch say what is wrong
        padding = module.padding
        if padding == "same":
            return (shape[0], module.out_channels, *spatial)
        padding = (0,) * n if padding == "valid" else padding
        sizes = [conv_output_size(*a) for a in zip(spatial, module.kernel_size, module.stride,
                                                   padding, module.dilation, strict=True)]
        return (shape[0], module.out_channels, *sizes)
    pools = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
    if isinstance(module, pools) and not getattr(module, "return_indices", False):
        kernel = _tuple(module.kernel_size, n)
        stride = _tuple(module.stride or module.kernel_size, n)
        dilation = _tuple(getattr(module, "dilation", 1), n)
        padding = _tuple(module.padding, n)
        sizes = [pool_output_size(*a, ceil_mode=module.ceil_mode)
                 for a in zip(spatial, kernel, stride, padding, dilation, strict=True)]
        return (*shape[:2], *sizes)
    return None


def _input_shape(model: nn.Module, input_size) -> tuple[int, ...]:
    """(1, channels, *spatial) from the first convolution or linear layer."""
    first = next((m for m in model.modules()
                  if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)), None)
    if isinstance(first, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        spatial, channels = len(first.kernel_size), first.in_channels
    else:
        spatial, channels = 2, 3
    sizes = (input_size,) * spatial if isinstance(input_size, int) else tuple(input_size)
    if len(sizes) != spatial or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise ValueError(f"input_size={input_size!r} is not valid: give {spatial} positive "
                         f"int(s) ({', '.join(AXIS_NAMES[spatial])}) or one int for all axes")
    return (1, channels, *sizes)


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


_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _graph(model: nn.Module) -> torch.fx.Graph:
    """The torch.fx graph of ``model``, remembered while the model's module tree stays the same.

    Only the graph is kept: ``symbolic_trace`` would also wrap it in a ``GraphModule`` and
    generate and compile its Python code, a third of the cost, which rfviz never runs.
    Tracing costs most of a ``receptive_field`` call, and a notebook asks about the same
    model again and again. The graph records which modules are called, not their settings
    (those are read afresh on every call), so it stays valid until a submodule is replaced
    or ``forward`` changes, which the fingerprint notices.
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
    shape = _input_shape(model, input_size)
    try:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                     torch.get_default_dtype())
        shapes = _MetaShapeProp(model, graph=graph)
        shapes.run(torch.empty(shape, device="meta", dtype=dtype))
    except _TooSmall as error:
        raise ValueError(error.message) from None
    walk = _Walk(shapes.submodules, graph, spatial=len(shape) - 2)
    rows = walk.run()
    return LayerTable(tuple(rows), shape[1:], tuple(walk.problems))


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

