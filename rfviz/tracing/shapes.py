"""Shapes on the meta device: every node's output shape, without reading a weight.

Convolutions and pooling get their output shape from :mod:`rfviz.arithmetic` (tested equal to
torch), linear layers, layer norms and adaptive pooling from their settings, shape-preserving
modules and functions (``relu``, ``F.batch_norm``) pass their input through, ``x + y``-like
arithmetic broadcasts shapes, and anything else runs on the meta device: the module itself
where it is already there and in eval mode (the atlas builds its networks so), else a
weightless meta copy of that one module. Each node that gives a tensor gets its shape in
``node.meta["rfviz_shape"]``.

The shortcuts are what makes a trace cheap: torch's meta kernels for element-wise ops run
its Python reference implementations (~0.5 ms per ``F.batch_norm``), and a copy of a module
costs a deep copy per call.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torchvision.models.swin_transformer import shifted_window_attention

from .ops import (
    AXIS_NAMES,
    CONVOLUTIONS,
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_METHODS,
    ELEMENTWISE_MODULES,
    MERGING_FUNCTIONS,
    MERGING_METHODS,
    POOLS,
    TRANSPOSED,
    Window,
)

_SHAPE = "rfviz_shape"
_VALUE = "rfviz_value"
_TENSORS = "rfviz_gives_tensors"
# What torch says when a window does not fit its input (modules run on a meta copy).
_TOO_SMALL = re.compile(r"too small|greater than actual input|smaller than", re.IGNORECASE)
# Element-wise functions and methods of one tensor that keep its shape and dtype (``float``,
# ``to``, ``type_as`` change the dtype: torch answers for those).
_SAME_SHAPE = (ELEMENTWISE_FUNCTIONS - {F.batch_norm}) | (
    ELEMENTWISE_METHODS - {"float", "double", "to", "type_as"})
_ADAPTIVE_AXES = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveMaxPool1d: 1, nn.AdaptiveAvgPool2d: 2,
                  nn.AdaptiveMaxPool2d: 2, nn.AdaptiveAvgPool3d: 3, nn.AdaptiveMaxPool3d: 3}


def _is_number(value) -> bool:
    if isinstance(value, tuple | list):
        return all(isinstance(v, int | float) for v in value)
    return isinstance(value, int | float) and not isinstance(value, bool)


def gives_tensors(node: torch.fx.Node) -> bool:
    """Whether ``node`` gave a tuple or list holding tensors (after shape propagation)."""
    return node.meta.get(_TENSORS, False)


def concrete(argument):
    """An op's argument with the numbers it was computed from filled in (a size read from
    ``x.shape`` becomes its value at the traced size); a node rfviz did not evaluate stays."""
    return torch.fx.node.map_arg(argument, lambda node: node.meta.get(_VALUE, node))


def shape_of(node: torch.fx.Node) -> tuple[int, ...] | None:
    """The shape of the tensor ``node`` gives, after shape propagation; None if not a tensor."""
    return node.meta.get(_SHAPE)


class ShapeError(Exception):
    """Raised inside the interpreter (which decorates messages); re-raised as ValueError."""

    def __init__(self, message: str, too_small: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_small = too_small


class MetaShapeProp(torch.fx.Interpreter):
    """Shape propagation on the meta device that never touches the model's weights.

    A failure names the op as :func:`rfviz.trace` names its row (``name_of(node)``) and the
    shape that reached it, and says "input_size is too small" only when a window did not fit.
    """

    def __init__(self, module: nn.Module, graph: torch.fx.Graph,
                 names: Callable[[dict], Callable[[torch.fx.Node], str]]) -> None:
        # values are meta tensors: none is freed early (torch.fx would find each one's last
        # use first, a pass over the graph)
        super().__init__(module, garbage_collect_values=False, graph=graph)
        self.name_of = names(self.submodules)

    def run_node(self, node):
        try:  # torch.fx's run_node, without the debug log and the node's meta set as current
            # (two context managers per node, for tracebacks rfviz writes itself)
            args, kwargs = self.fetch_args_kwargs_from_env(node)
            result = getattr(self, node.op)(node.target, args, kwargs)
        except ShapeError as error:
            raise self._failure(node, error.message, error.too_small) from None
        except Exception as error:
            message = str(error).strip().splitlines()[0]
            raise self._failure(node, message, bool(_TOO_SMALL.search(message))) from None
        if isinstance(result, torch.Tensor):
            node.meta[_SHAPE] = tuple(result.shape)
        else:
            node.meta.pop(_SHAPE, None)
            if _is_number(result):  # sizes read from a tensor, e.g. x.shape[-2:]
                node.meta[_VALUE] = tuple(result) if isinstance(result, tuple) else result
            node.meta[_TENSORS] = isinstance(result, tuple | list) and any(
                isinstance(item, torch.Tensor) for item in result)
        return result

    def _row_name(self, failing: torch.fx.Node) -> str:
        """The failing op's row name as trace() gives it: earlier ops of the same name count
        (``p@1``), so name, in graph order, every earlier op that gave a tensor."""
        for node in self.graph.nodes:
            if node is failing:
                return self.name_of(node)
            if node.op.startswith("call_") and shape_of(node) is not None:
                self.name_of(node)
        return self.name_of(failing)

    def _failure(self, node, message: str, too_small: bool) -> ShapeError:
        shapes = [shape_of(a)[1:] for a in node.all_input_nodes if shape_of(a) is not None]
        shown = " and ".join(map(str, shapes)) if shapes else "?"
        lead = "input_size is too small for this model: " if too_small else ""
        return ShapeError(f"{lead}at {self._row_name(node)!r} the input has shape {shown} "
                          f"(channels, *spatial): {message}", too_small)

    def get_attr(self, target, args, kwargs):
        value = super().get_attr(target, args, kwargs)
        if not isinstance(value, torch.Tensor):
            return value
        if value.is_meta:  # the atlas's: a new tensor object, so that an in-place op in
            return value.detach()  # forward changes nothing of the model's (0.5 µs; a copy,
        return torch.empty_like(value, device="meta")  # 40: BatchNormAct2d reads four)

    def call_function(self, target, args, kwargs):
        result = broadcast(target in MERGING_FUNCTIONS, args, kwargs)
        if result is None:
            result = same_shape(target, args, kwargs)
        if result is None and target in _FUNCTION_OUTPUTS:
            result = _FUNCTION_OUTPUTS[target](args, kwargs)
        return super().call_function(target, args, kwargs) if result is None else result

    def call_method(self, target, args, kwargs):
        result = broadcast(target in MERGING_METHODS, args, kwargs)
        if result is None:
            result = same_shape(target, args, kwargs)
        return super().call_method(target, args, kwargs) if result is None else result

    def call_module(self, target, args, kwargs):
        module = self.submodules[target]  # fetch_attr would walk the dotted path each time
        x = args[0]
        if (isinstance(module, ELEMENTWISE_MODULES) and not kwargs and len(args) == 1
                and _fits_norm(module, x)):
            return x
        if isinstance(module, nn.MultiheadAttention):
            result = _attention_output(module, args, kwargs)
            if result is not None:
                return result
        shape = module_output_shape(module, tuple(x.shape)) if isinstance(
            x, torch.Tensor) else None
        if shape is not None and _same_dtype(module, x.dtype):
            return torch.empty(shape, device="meta", dtype=x.dtype)
        copy_ = module if _runs_as_it_is(module) else meta_copy(module)
        try:
            return copy_(*args, **kwargs)
        except Exception as error:
            message = str(error).strip().splitlines()[0]
            raise ShapeError(message, too_small=_fits_larger(copy_, args, kwargs)) from None


def _by_name(names: tuple[str, ...], args, kwargs) -> dict:
    """A call's arguments by parameter name (``names`` in order), positional or given by name."""
    return {**dict(zip(names, args, strict=False)), **kwargs}


def _attention_output(module: nn.MultiheadAttention, args, kwargs) -> tuple | None:
    """``MultiheadAttention(query, key, value)``'s (output, weights) for batched floating
    inputs of the module's dtype with no mask: the output as the query with ``embed_dim``
    channels (laid out as torch does), the weights (N, L, S) averaged over heads or
    (N, heads, L, S), or None if not asked for. None where that shortcut does not apply (the
    module runs on meta: ~2 ms), keys made longer by ``add_bias_kv`` or ``add_zero_attn``
    among them."""
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
             "average_attn_weights", "is_causal")
    if module.bias_k is not None or module.add_zero_attn:  # keys one or two longer
        return None
    given = _by_name(names, args, kwargs)
    query, key, value = (given.get(name) for name in names[:3])
    tensors = (query, key, value)
    if (set(given) - set(names) or given.get("key_padding_mask") is not None
            or given.get("attn_mask") is not None or given.get("is_causal", False)
            or not all(isinstance(t, torch.Tensor) and t.dim() == 3 for t in tensors)
            or any(t.dtype != module.out_proj.weight.dtype for t in tensors)):
        return None
    batch, sequence = (0, 1) if module.batch_first else (1, 0)
    if (query.shape[-1] != module.embed_dim or key.shape[-1] != module.kdim
            or value.shape[-1] != module.vdim or key.shape[:2] != value.shape[:2]
            or query.shape[batch] != key.shape[batch]):
        return None
    n, length, source = query.shape[batch], query.shape[sequence], key.shape[sequence]
    # torch computes (L, N, E) and gives batch_first's (N, L, E) as its transposed view
    output = torch.empty((length, n, module.embed_dim), device="meta", dtype=query.dtype)
    output = output.transpose(0, 1) if module.batch_first else output
    if not given.get("need_weights", True):
        return output, None
    heads = () if given.get("average_attn_weights", True) else (module.num_heads,)
    return output, torch.empty((n, *heads, length, source), device="meta", dtype=query.dtype)


def _layer_norm_output(args, kwargs) -> torch.Tensor | None:
    """``F.layer_norm(x, normalized_shape, weight, bias, eps)``: x's shape and dtype, laid out
    contiguously as torch gives it (whatever x's layout), where the normalized shape is x's
    last dims and the weights fit it (timm's LayerNorm2d calls it on a permuted map: ~1 ms
    each on meta); None otherwise (torch says what is wrong)."""
    names = ("input", "normalized_shape", "weight", "bias")
    x, normalized, *weights = (_by_name(names, args, kwargs).get(n) for n in names)
    if (not isinstance(x, torch.Tensor) or not x.is_floating_point()
            or not isinstance(normalized, tuple | list)
            or not all(type(n) is int for n in normalized)):
        return None  # torch refuses a bare int
    normalized = tuple(normalized)
    if not normalized or tuple(x.shape[x.dim() - len(normalized):]) != normalized or any(
            w is not None and (not isinstance(w, torch.Tensor) or tuple(w.shape) != normalized
                               or w.dtype != x.dtype) for w in weights):
        return None
    return torch.empty(x.shape, device="meta", dtype=x.dtype)


def _cat_output(args, kwargs) -> torch.Tensor | None:
    """``torch.cat(tensors, dim)`` of floating tensors of one dtype and rank, each laid out
    plainly (:func:`_plain`), that agree but along ``dim``: their shape, ``dim`` summed (DenseNet
    concatenates at every layer: ~0.25 ms each on meta); None otherwise, ``axis=`` or ``out=``
    among them (torch says what is wrong, or lays the result out its own way)."""
    if set(kwargs) - {"tensors", "dim"} or len(args) > 2:
        return None
    tensors = kwargs.get("tensors", args[0] if args else None)
    dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
    if (not isinstance(tensors, tuple | list) or not tensors or type(dim) is not int
            or not all(isinstance(t, torch.Tensor) and _plain(t) for t in tensors)):
        return None
    first = tensors[0]
    if (not first.is_floating_point() or not -first.dim() <= dim < first.dim()
            or any(t.dtype != first.dtype or t.dim() != first.dim() for t in tensors)):
        return None
    dim %= first.dim()
    others = [d for d in range(first.dim()) if d != dim]
    if any(t.shape[d] != first.shape[d] for t in tensors for d in others):
        return None
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return torch.empty(shape, device="meta", dtype=first.dtype)


def _plain(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s strides are exactly those ``torch.empty`` gives its shape (a
    (N, 1, H, W) map laid out channels last is "contiguous" too, but torch keeps its layout
    in what it computes from it)."""
    stride, expected = 1, []
    for n in reversed(tensor.shape):
        expected.append(stride)
        stride *= n
    return tensor.stride() == tuple(reversed(expected))


def _window_attention_output(args, kwargs) -> torch.Tensor | None:
    """torchvision's ``shifted_window_attention(x, qkv_weight, proj_weight,
    relative_position_bias, window_size, num_heads, …)``: (B, H, W, C) in, the same out (it
    pads to whole windows and crops back, contiguous), where every weight fits C, the heads
    and the window, in x's dtype; None otherwise (torch says what is wrong). On meta its ~60
    ops cost ~4 ms a block, and the smallest-input search runs Swin-V2 at a dozen sizes."""
    names = ("input", "qkv_weight", "proj_weight", "relative_position_bias", "window_size",
             "num_heads", "shift_size", "attention_dropout", "dropout", "qkv_bias",
             "proj_bias", "logit_scale", "training")
    given = _by_name(names, args, kwargs)
    x, heads, window = given.get("input"), given.get("num_heads"), given.get("window_size")
    if (set(given) - set(names) or not isinstance(x, torch.Tensor) or x.dim() != 4
            or not x.is_floating_point() or 0 in x.shape or type(heads) is not int
            or heads < 1 or not isinstance(window, tuple | list) or len(window) != 2):
        return None
    channels, tokens = x.shape[-1], window[0] * window[1]
    shapes = {"qkv_weight": (3 * channels, channels), "proj_weight": (channels, channels),
              "relative_position_bias": (1, heads, tokens, tokens),
              "qkv_bias": (3 * channels,), "proj_bias": (channels,),
              "logit_scale": (heads, 1, 1)}
    for name, shape in shapes.items():
        tensor = given.get(name)
        if tensor is None and name in ("qkv_bias", "proj_bias", "logit_scale"):
            continue
        if (not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape
                or tensor.dtype != x.dtype):
            return None
    if channels % heads:
        return None
    return torch.empty(x.shape, device="meta", dtype=x.dtype)


# Functions whose output shape comes from their arguments (each None where it does not apply).
_FUNCTION_OUTPUTS = {shifted_window_attention: _window_attention_output,
                     F.layer_norm: _layer_norm_output, torch.cat: _cat_output}


def _fits_norm(module: nn.Module, x) -> bool:
    """True unless ``module`` is a batch norm that ``x`` does not fit (its rank, or its
    channels): then torch runs it, and says so."""
    if not isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[1] != module.num_features:
        return False
    try:
        module._check_input_dim(x)
    except ValueError:
        return False
    return True


def _same_dtype(module: nn.Module, dtype: torch.dtype) -> bool:
    """False for a linear layer or a layer norm whose weights' dtype is not the input's: torch
    refuses those (a convolution's shape has always come from the arithmetic alone)."""
    return not isinstance(module, nn.Linear | nn.LayerNorm) or all(
        p.dtype == dtype for p in module.parameters(recurse=False))


def _runs_as_it_is(module: nn.Module) -> bool:
    """Whether ``module`` can run on meta tensors without a copy: its weights are on the meta
    device already (nothing to read) and it is in eval mode (nothing to update, e.g. a batch
    norm's running statistics), all the way down."""
    return all(not m.training for m in module.modules()) and all(
        t.is_meta for t in itertools.chain(module.parameters(), module.buffers()))


def _fits_larger(module: nn.Module, args, kwargs) -> bool:
    """Whether ``module`` runs once its input is larger along every spatial axis: then the
    input was too small, and not something else wrong."""
    x = args[0]
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        return False
    larger = torch.empty((*x.shape[:2], *(n + 256 for n in x.shape[2:])), device="meta",
                         dtype=x.dtype)
    try:
        module(larger, *args[1:], **kwargs)
    except Exception:
        return False
    return True


def broadcast(arithmetic: bool, args, kwargs) -> torch.Tensor | None:
    """The result of ``x + y``-like arithmetic on floating meta tensors of one dtype (Python
    numbers beside them keep that dtype), by broadcasting their shapes. None where that
    shortcut does not apply (torch's meta kernel decides). Branches whose shapes do not
    broadcast are refused, saying so."""
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    if (not arithmetic or not tensors or len({t.dtype for t in tensors}) != 1
            or not tensors[0].is_floating_point()):
        return None
    try:
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    except RuntimeError:
        shown = " vs ".join(str(tuple(t.shape[1:])) for t in tensors)
        raise ShapeError(f"the branches merged here have shapes {shown}, which do not "
                         "broadcast") from None
    return torch.empty(shape, device="meta", dtype=tensors[0].dtype)


def same_shape(target, args, kwargs) -> torch.Tensor | None:
    """The result of an element-wise function or method of one contiguous floating tensor
    (``F.relu(x)``, ``F.gelu(x, approximate="tanh")``, ``x.sigmoid()``), or of ``F.batch_norm``
    whose statistics match the channels: a contiguous meta tensor of the input's shape and
    dtype, as torch gives. None where that shortcut does not apply (torch's meta kernel
    decides): other tensors among the arguments, a method with arguments, a tensor laid out
    otherwise (its strides decide whether a later ``view`` works)."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or not _plain(x):
        return None
    rest = (*args[1:], *kwargs.values())
    if target is F.batch_norm:
        others = [a for a in rest if isinstance(a, torch.Tensor)]
        if x.dim() < 2 or any(t.shape != (x.shape[1],) or t.dtype != x.dtype for t in others):
            return None
    elif target not in _SAME_SHAPE or (isinstance(target, str) and rest) or any(
            isinstance(a, torch.Tensor) for a in rest):
        return None
    return torch.empty(x.shape, device="meta", dtype=x.dtype)


def module_output_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Output shape of a conv, pooling, linear, layer-norm or adaptive-pooling module by the
    arithmetic; None for anything else, or where the input does not fit (torch says why)."""
    if isinstance(module, nn.Linear):
        fits = len(shape) >= 1 and shape[-1] == module.in_features
        return (*shape[:-1], module.out_features) if fits else None
    if isinstance(module, nn.LayerNorm):
        normalized = tuple(module.normalized_shape)
        return shape if shape[len(shape) - len(normalized):] == normalized else None
    if isinstance(module, tuple(_ADAPTIVE_AXES)) and not getattr(module, "return_indices", False):
        return _adaptive_output(module, shape)
    spatial = shape[2:]
    if isinstance(module, CONVOLUTIONS):
        if len(spatial) != len(module.kernel_size) or shape[1] != module.in_channels:
            return None  # let torch say what is wrong
        return (shape[0], module.out_channels, *_window_output(module, spatial))
    if isinstance(module, POOLS) and not getattr(module, "return_indices", False):
        window = Window.from_module(module)
        if len(spatial) != len(window.kernel):
            return None
        return (*shape[:2], *_window_output(module, spatial, window))
    return None


def _adaptive_output(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """``AdaptiveAvgPool2d(7)``: the last two axes become 7 × 7 (None in ``output_size``: that
    axis keeps its length), with or without a batch axis."""
    n = next(_ADAPTIVE_AXES[c] for c in type(module).__mro__ if c in _ADAPTIVE_AXES)
    if len(shape) not in (n + 1, n + 2) or 0 in shape[len(shape) - n:]:
        return None
    size = module.output_size
    size = (size,) * n if isinstance(size, int) or size is None else tuple(size)
    if len(size) != n:
        return None
    return (*shape[:len(shape) - n], *(s if o is None else o for s, o
                                       in zip(shape[len(shape) - n:], size, strict=True)))


def _window_output(module: nn.Module, spatial, window: Window | None = None) -> tuple[int, ...]:
    window = window or Window.from_module(module)
    try:
        return window.output_size(spatial)
    except ValueError as error:  # too small, unless the window fits no input at all
        large = tuple(n + 2 * max(window.kernel) * max(window.dilation) for n in spatial)
        try:
            window.output_size(large)
        except ValueError:
            raise ShapeError(str(error)) from None
        raise ShapeError(str(error), too_small=True) from None


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy whose parameters and buffers live on the meta device (no data copied)."""
    memo = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        empty = torch.empty_like(tensor, device="meta")
        if isinstance(tensor, nn.Parameter):
            empty = nn.Parameter(empty, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = empty
    return copy.deepcopy(model, memo).eval()


def input_shape(model: nn.Module, input_size) -> tuple[int, ...]:
    """(1, channels, *spatial) from the first convolution or linear layer."""
    first = next((m for m in model.modules()
                  if isinstance(m, CONVOLUTIONS + TRANSPOSED + (nn.Linear,))), None)
    if isinstance(first, CONVOLUTIONS + TRANSPOSED):
        spatial, channels = len(first.kernel_size), first.in_channels
    else:
        spatial, channels = 2, 3
    sizes = (input_size,) * spatial if isinstance(input_size, int) else tuple(input_size)
    if len(sizes) != spatial or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise ValueError(f"input_size={input_size!r} is not valid: give {spatial} positive "
                         f"int(s) ({', '.join(AXIS_NAMES[spatial])}) or one int for all axes")
    return (1, channels, *sizes)
