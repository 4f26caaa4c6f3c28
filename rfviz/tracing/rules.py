"""The rules: how one op changes the receptive field of the tensor it is applied to.

The table in :mod:`.table` maps a module type or a function / method to a rule (the rules of
ops that upsample are in :mod:`.decoders`). A rule takes the :class:`Step` (the op,
its input fields and shapes) and returns an :class:`Op` (the new field, where the spatial axes
now are, what the row shows), or a :class:`~rfviz.field.CannotFollow` naming the op and why
no exact field exists: the walk then warns and marks the fields after it unknown.

"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import prod
from types import MappingProxyType
from typing import NamedTuple

import torch
import torch.fx
from torch import nn

from ..field import CannotFollow, Field, ReceptiveField
from ..spans import Spans, copied
from .ops import (
    AXIS_NAMES,
    CONV_FUNCTIONS,
    POOL_FUNCTIONS,
    SWAPPING,
    Window,
    per_axis,
)
from .shapes import shape_of

# Value, Op and Step are named tuples: immutable, and made for every op of every trace.


class Value(NamedTuple):
    """What the walk knows of one tensor: its field and where its spatial axes are.

    ``dims`` names the same tensor dim for every spatial axis once they are flattened into one
    axis of tokens (a ViT's ``x.flatten(2)``: (N, C, H, W) -> (N, C, H·W), dims (2, 2)): each
    token keeps its field, and ``grid`` the lengths of the axes flattened, (H, W), so that two
    branches of tokens merge only where token i is the same place in both (see :func:`tokens`).
    """

    field: Field
    dims: tuple[int, ...] | None  # tensor dim of each spatial axis; None once flattened away
    grid: tuple[int, ...] | None = None  # tokens: the spatial lengths flattened into them


class Op(NamedTuple):
    """What a rule found: the new field, where the spatial axes are, what the row shows."""

    field: Field
    dims: tuple[int, ...] | None
    params: Mapping = MappingProxyType({})
    grid: tuple[int, ...] | None = None  # tokens (see :class:`Value`)


class Step(NamedTuple):
    """One op as a rule sees it."""

    node: torch.fx.Node
    module: nn.Module | None
    op: str  # the row's op: a module's type name, a function's name
    where: str  # the row's name
    inputs: tuple[Value, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    sources: tuple[torch.fx.Node, ...] = ()  # the node each of ``inputs`` comes from

    @property
    def value(self) -> Value:
        return self.inputs[0]

    @property
    def ndim(self) -> int:
        return len(self.in_shape)

    def unchanged(self, dims=...) -> Op:
        dims = self.value.dims if dims is ... else dims
        return Op(self.value.field, dims, grid=self.value.grid if tokens(dims) else None)

    def value_of(self, argument) -> Value | None:
        """The value of an argument that is one of the inputs; None for anything else (a
        parameter, a constant: nothing computed from the input image)."""
        if isinstance(argument, torch.fx.Node) and argument in self.sources:
            return self.inputs[self.sources.index(argument)]
        return None

    def cannot(self, reason: str) -> CannotFollow:
        return CannotFollow(self.op, reason, self.where)

    def argument(self, position: int, name: str, default=None):
        """A call's argument, given by position (counting the tensor) or by name."""
        args = self.node.args
        return self.node.kwargs.get(name, args[position] if len(args) > position else default)


Rule = Callable[[Step], "Op | CannotFollow"]


def tokens(dims: tuple[int, ...] | None) -> bool:
    """Whether the spatial axes are flattened into one axis of tokens (see :class:`Value`)."""
    return dims is not None and len(dims) > 1 and len(set(dims)) == 1


# --- rules -------------------------------------------------------------------------------


def same(step: Step) -> Op | CannotFollow:
    """Element-wise (activations, batch norm, dropout): the field does not change. A channel
    shuffle or a local response norm works along dim 1: where a spatial axis or the tokens lie
    there (channels last), it moves or mixes them."""
    if isinstance(step.module, _ALONG_DIM_1) and 1 in (step.value.dims or ()):
        return step.cannot("it works along dim 1, which holds a spatial axis here")
    return step.unchanged()


_ALONG_DIM_1 = (nn.ChannelShuffle, nn.LocalResponseNorm)


def whole_input(step: Step, dims=...) -> Op:
    """Every output now depends on the whole input: certain even if the field before was not."""
    return Op(Field.whole_input(), step.value.dims if dims is ... else dims)


def slide(step: Step, window: Window, copies: str = "zeros") -> Op:
    """A window along every spatial axis; ``copies``: a convolution's ``padding_mode``
    (reflect, replicate, circular pad with copies of pixels, as the pads in :mod:`.crops`)."""
    params = {"kernel": window.kernel, "stride": window.stride, "padding": window.padding,
              "dilation": window.dilation}
    field, dims = step.value.field, step.value.dims
    if not field.known:
        return Op(field, dims, params)
    axes = []
    for axis, dim in zip(field.axes, dims, strict=True):
        k, s, p, d = (values[axis_of(step, dim, len(window.kernel))] for values in (
            window.kernel, window.stride, window.padding, window.dilation))
        if copies != "zeros" and p:
            n = step.in_shape[dim]
            axis = Spans.through(axis, [(copied(copies, u - p, n),) * 2
                                        for u in range(n + 2 * p)], n)
            p = 0
        axes.append(along(axis, step.out_shape[dim], k, s, p, d))
    return Op(Field(tuple(axes)), dims, params)


def axis_of(step: Step, dim: int, spatial: int) -> int:
    """Which of an op's per-axis parameters (kernel, stride, …: one per spatial dim, the
    tensor's last ``spatial`` dims) applies to tensor dim ``dim``: after a transpose the
    field's first axis may sit in the tensor's last dim."""
    return dim - (step.ndim - spatial)


def along(axis: ReceptiveField | Spans, units: int, kernel: int, stride: int = 1,
          padding: int = 0, dilation: int = 1) -> ReceptiveField | Spans:
    """One window more along an axis: the recurrence for a field, per unit for spans."""
    if isinstance(axis, ReceptiveField):
        return axis.then(kernel, stride, padding, dilation)
    return axis.then(kernel, stride, padding, dilation, units=units)


def window(step: Step) -> Op:
    """A convolution or pooling, module or function: r' = r + (k-1)·d·jump per axis."""
    if step.module is not None:
        return slide(step, Window.from_module(step.module),
                      getattr(step.module, "padding_mode", "zeros"))
    target = step.node.target
    names = (("input", "weight", "bias", "stride", "padding", "dilation") if target in
             CONV_FUNCTIONS else ("input", "kernel_size", "stride", "padding", "dilation",
                                  "ceil_mode"))
    if POOL_FUNCTIONS.get(target, ("",))[0] == "avgpool":  # avg_pool's 5th arg: ceil_mode
        names = ("input", "kernel_size", "stride", "padding", "ceil_mode")
    arguments = {**dict(zip(names, step.node.args, strict=False)), **step.node.kwargs}
    weight = shape_of(arguments["weight"]) if target in CONV_FUNCTIONS else None
    return slide(step, Window.from_call(target, arguments, weight))


def adaptive(step: Step) -> Op | CannotFollow:
    """Adaptive pooling: global where it pools an axis to 1, a plain window where sizes divide."""
    value = step.value
    if not value.field.known or value.dims is None:
        return step.unchanged()
    sizes_in = [step.in_shape[d] for d in value.dims]
    sizes_out = [step.out_shape[d] for d in value.dims]
    if all(o == 1 for o in sizes_out) and any(i > 1 for i in sizes_in):
        return whole_input(step)
    if all(i % o == 0 for i, o in zip(sizes_in, sizes_out, strict=True)):
        k = tuple(i // o for i, o in zip(sizes_in, sizes_out, strict=True))
        return slide(step, Window.of(k, k, 0, 1))
    return step.cannot(f"adaptive pooling from {sizes_in} to {sizes_out} uses windows of "
                       "varying sizes")


def _normalises_spatial(step: Step, normalized: int) -> bool:
    """Whether a norm over the last ``normalized`` dims covers a spatial axis."""
    dims = range(step.ndim - normalized, step.ndim)
    return bool(set(step.value.dims or ()) & set(dims))


def layer_norm(step: Step) -> Op:
    """LayerNorm: global if it normalises over a spatial axis, element-wise otherwise (e.g.
    ConvNeXt's channels-last LayerNorm)."""
    if step.module is not None:
        normalized = len(step.module.normalized_shape)
    else:
        normalized = len(per_axis(step.argument(1, "normalized_shape"), 1))
    return whole_input(step) if _normalises_spatial(step, normalized) else step.unchanged()


def spatial_statistics(step: Step) -> Op:
    """GroupNorm, InstanceNorm: statistics over the whole image make the field global."""
    return whole_input(step)


def linear(step: Step) -> Op:
    """A linear layer mixes its last axis: global if that axis is spatial or flattened. After
    an op rfviz could not follow, unknown stays unknown: nothing says what the last axis
    holds (a Swin window's 49 tokens × 96 channels: the channels)."""
    dims = step.value.dims
    if len(step.inputs) > 1:
        return step.cannot("its weight is computed from the input")
    if step.value.field.unknown:
        return step.unchanged()
    if dims is None or step.ndim - 1 in dims:
        return whole_input(step, None)
    return step.unchanged()


def reduce(step: Step) -> Op:
    """mean / sum / amax over some dims: global if a spatial axis is reduced."""
    return _reduced(step, step.argument(1, "dim"), step.argument(2, "keepdim", False))


def norm(step: Step) -> Op:
    """``x.norm(p, dim, keepdim)``, ``torch.linalg.vector_norm(x, ord, dim, keepdim)``: a
    reduction whose ``dim`` comes after the order (ConvNeXt-V2's global response norm)."""
    return _reduced(step, step.argument(2, "dim"), step.argument(3, "keepdim", False))


def _reduced(step: Step, dim, keepdim: bool) -> Op:
    reduced = set(range(step.ndim)) if dim is None else {d % step.ndim
                                                         for d in per_axis(dim, 1)}
    dims = step.value.dims
    if reduced & set(dims or ()):
        return whole_input(step, dims if keepdim else None)
    if keepdim or dims is None:
        return step.unchanged()
    return step.unchanged(tuple(d - sum(r < d for r in reduced) for d in dims))


def normalise(step: Step) -> Op:
    """softmax / log_softmax along ``dim``: each output reads the whole of ``dim``. Over the
    channels (ResNeSt's radix) the field is unchanged; over a spatial axis each unit reads
    every unit along that axis (per unit: near a border the padding is not read), and the
    other axes keep their field."""
    dim = step.module.dim if step.module is not None else step.argument(1, "dim")
    if dim is None:  # torch's implicit dim (deprecated): taken as every dim, never a guess
        return whole_input(step)
    dim %= step.ndim
    field, dims = step.value.field, step.value.dims
    if not dims or dim not in dims or not field.known:
        return step.unchanged()
    n = step.in_shape[dim]
    return Op(Field(tuple(Spans.through(axis, [(0, n - 1)] * n, n) if d == dim else axis
                          for axis, d in zip(field.axes, dims, strict=True))), dims)


def merge(step: Step) -> Op:
    """Residual additions, gating products: the union of the branches' spans, per axis."""
    dims = step.value.dims
    if any(tokens(v.dims) for v in step.inputs) and all(v.field.known for v in step.inputs):
        if any(v.dims != dims or v.grid != step.value.grid for v in step.inputs):
            return step.cannot("it merges tokens of different grids (or with a map): token i "
                               "is not the same place in both")
        return Op(merged_field(step.inputs, step.where), dims, grid=step.value.grid)
    units = tuple(step.out_shape[d] for d in dims) if dims else ()
    return Op(merged_field(step.inputs, step.where, units), dims)


def concatenate(step: Step) -> Op | CannotFollow:
    """``torch.cat`` along channels merges like an addition; along a spatial axis it tiles."""
    dim = step.argument(1, "dim", 0) % len(step.out_shape)
    if tokens(step.value.dims) and len(step.inputs) == 1:
        return step.unchanged()  # a ViT's class token before its patches: it reads no pixel
    if any(dim in (v.dims or ()) for v in step.inputs):
        return step.cannot("concatenation along a spatial axis")
    return merge(step)


def merged_field(values, where: str, units: tuple[int, ...] = ()) -> Field:
    """Union of branch fields, per axis: for three-number fields the same jump is required
    and the span is the union of spans; where a branch has per-unit spans (a decoder's
    upsampled map beside an encoder's skip connection), each unit's union.
    ``units``: the merged tensor's length along each axis."""
    fields = [v.field for v in values]
    if any(f.is_global for f in fields):  # a union with the whole input is the whole input
        return Field.whole_input()
    unknown = next((f for f in fields if f.unknown), None)
    if unknown:
        return unknown
    if any(f.per_unit for f in fields):
        return Field(tuple(Spans.union(branch_axes, n) for branch_axes, n in zip(
            zip(*(f.axes for f in fields), strict=True), units, strict=True)))
    names = AXIS_NAMES.get(len(fields[0].axes), ())
    axes = []
    for a, branch_axes in enumerate(zip(*(f.axes for f in fields), strict=True)):
        strides = sorted({axis.stride for axis in branch_axes})
        if len(strides) > 1:
            axis_name = names[a] if a < len(names) else str(a)
            raise ValueError(f"branches merging at {where!r} disagree on the jump along "
                             f"{axis_name}: {' vs '.join(map(str, strides))}; their units do "
                             "not line up, so no single receptive field describes the result")
        padding = max(axis.padding for axis in branch_axes)
        last = max(axis.size - axis.padding for axis in branch_axes)
        axes.append(ReceptiveField(size=last + padding, stride=strides[0], padding=padding))
    return Field(tuple(axes))


def attention(step: Step) -> Op | CannotFollow:
    """``F.scaled_dot_product_attention(q, k, v)``: each query reads every key and value of
    its sequence. Where the keys and values are tokens of the image (every spatial position,
    flattened into one axis: a ViT's patches), with no mask and no causal order, every output
    reads the whole input: global. A sequence of some positions only (a Swin window's tokens,
    cut out by a reshape rfviz cannot follow), keys not computed from the image, a mask or a
    causal order: unknown."""
    masked = (_given(step.argument(3, "attn_mask")) is not None
              or bool(_given(step.argument(5, "is_causal"))))
    return attends(step, step.ndim - 2, masked)


def multihead_attention(step: Step) -> Op | CannotFollow:
    """``nn.MultiheadAttention(query, key, value)`` (a tuple: the output, the weights), as
    :func:`attention`, along its sequence dim (1 if ``batch_first``, else 0)."""
    masked = any(_given(step.argument(i, name)) not in (None, False) for i, name in (
        (3, "key_padding_mask"), (5, "attn_mask"), (7, "is_causal")))
    return attends(step, 1 if step.module.batch_first else 0, masked)


def attends(step: Step, sequence: int, masked: bool) -> Op | CannotFollow:
    """Attention over tensor dim ``sequence`` whose keys and values are the call's second and
    third arguments (``key``, ``value``, as both functions name them): global where they are
    the image's tokens along that dim (or global already), unknown otherwise."""
    keys = [step.value_of(step.argument(i, name)) for i, name in ((1, "key"), (2, "value"))]
    if any(key is None for key in keys):
        return step.cannot("keys or values not computed from the input")
    unknown = next((key.field for key in keys if key.field.unknown), None)
    if unknown is not None:
        return Op(unknown, step.value.dims)
    if any(key.field.is_global for key in keys):
        return whole_input(step)
    if not all(tokens(key.dims) and key.dims[0] == sequence for key in keys):
        return step.cannot("attention over a sequence rfviz cannot tell is every position")
    if masked:
        return step.cannot("attention with a mask or in causal order")
    return whole_input(step)


def _given(argument):
    """An argument's value where the graph holds it: a placeholder's default (timm passes
    ``attn_mask=None`` down from ``forward``), a number, or the node itself (a tensor)."""
    if isinstance(argument, torch.fx.Node):
        if argument.op == "placeholder" and shape_of(argument) is None:
            return argument.args[0] if argument.args else None
        return argument
    return argument


def permute(step: Step) -> Op:
    """Permutes and transposes move the spatial axes; follow them."""
    node, ndim = step.node, step.ndim
    args = node.args[1:] or tuple(node.kwargs.values())
    if node.target in SWAPPING:
        a, b = (d % ndim for d in args[:2])
        order = list(range(ndim))
        order[a], order[b] = b, a
    else:
        order = [d % ndim for d in (args[0] if isinstance(args[0], tuple | list) else args)]
    if step.value.dims is None:
        return step.unchanged()
    return step.unchanged(tuple(order.index(d) for d in step.value.dims))


def reshape(step: Step) -> Op | CannotFollow:
    """Reshapes that keep the spatial axes (channel shuffle) or flatten them away."""
    dims, in_shape, out_shape = step.value.dims, step.in_shape, step.out_shape
    if dims is None:
        return step.unchanged()
    if step.value.field.is_global:  # every number reads the whole input, however arranged
        return step.unchanged(None)
    if tokens(dims):  # heads split off the channels, or joined again: the tokens stay
        if out_shape[:dims[0] + 1] == in_shape[:dims[0] + 1]:
            return step.unchanged()
        return step.cannot(f"a reshape from {tuple(in_shape)} to {tuple(out_shape)} changes "
                           "the axis of tokens (the flattened spatial axes)")
    sizes = [in_shape[d] for d in dims]
    first, last = dims[0], dims[-1]
    if (len(out_shape) > 2 and list(dims) == list(range(first, last + 1))
            and tuple(out_shape) == (*in_shape[:first], prod(sizes), *in_shape[last + 1:])):
        field = step.value.field
        if field.known and field.per_unit:  # spans per row and per column: none per token
            return step.cannot("per-unit spans flattened into tokens")
        return Op(step.value.field, (first,) * len(dims), grid=tuple(sizes))  # tokens, in order
    tail = list(out_shape[len(out_shape) - len(sizes):])
    if tail == sizes and len(out_shape) >= len(sizes) + 1:
        return step.unchanged(tuple(range(len(out_shape) - len(sizes), len(out_shape))))
    if prod(out_shape) == prod(in_shape) and len(out_shape) <= 2:
        return step.unchanged(None)  # flattened: spatial structure is gone
    return step.cannot(f"a reshape from {tuple(in_shape)} to {tuple(out_shape)} moves the "
                       "spatial axes")
