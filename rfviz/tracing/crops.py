"""Padding and crops: a constant pad moves every unit by its left amount; a crop (slicing a
spatial axis, or padding by a negative amount) picks units, and a pad that copies pixels
(reflect, replicate, circular) puts copies at the border: both give per-unit spans.

>>> from torch import nn
>>> from rfviz import receptive_field
>>> net = nn.Sequential(nn.ZeroPad2d((2, 0, 1, 0)), nn.Conv2d(1, 1, 3))
>>> receptive_field(net, None, (8, 8)).span((0, 0))        # 1 row and 2 columns of zeros
((-1, 1), (-2, 0))
"""

from __future__ import annotations

import torch.fx

from ..field import CannotFollow, Field, ReceptiveField
from ..spans import Spans, copied
from .ops import COPY_MODES
from .rules import Op, Step, along, tokens
from .shapes import concrete, gives_tensors

__all__ = ["getitem", "pad"]


def pad(step: Step) -> Op:
    """Padding, module or ``F.pad``. With a constant (``ZeroPad2d``, ``ConstantPad*d``) every
    unit moves by the left (top) amount: a kernel-1 layer with that padding. A negative
    amount crops. Padding that copies pixels (reflect, replicate, circular) gives each new
    unit the pixel it copies: per-unit spans, the copies included."""
    if step.module is not None:
        amounts = step.module.padding
        mode = next((m for kind, m in COPY_MODES.items() if isinstance(step.module, kind)),
                    "constant")
    else:
        amounts, mode = concrete(step.argument(1, "pad")), step.argument(2, "mode", "constant")
    field, dims = step.value.field, step.value.dims
    if not field.known or dims is None:
        return step.unchanged()
    # F.pad's pairs run from the last tensor dim backwards: (left, right, top, bottom, ...);
    # modules hold one amount per side of each axis in the same order
    amounts = tuple(amounts) if isinstance(amounts, tuple | list) else (amounts,) * 2 * len(dims)
    before = {step.ndim - 1 - k: amounts[2 * k] for k in range(len(amounts) // 2)}
    after = {step.ndim - 1 - k: amounts[2 * k + 1] for k in range(len(amounts) // 2)}
    axes = []
    for axis, d in zip(field.axes, dims, strict=True):
        left, n = before.get(d, 0), step.in_shape[d]
        if mode != "constant" and (left or after.get(d, 0)):
            sources = [(copied(mode, o - left, n),) * 2 for o in range(step.out_shape[d])]
            axes.append(Spans.through(axis, sources, n))
        elif left < 0 or after.get(d, 0) < 0:
            axes.append(_crop(axis, n, step.out_shape[d], -left, 1))
        else:
            axes.append(along(axis, step.out_shape[d], 1, 1, left))
    return Op(Field(tuple(axes)), dims, {"padding": tuple(before.get(d, 0) for d in dims)})


def _crop(axis: ReceptiveField | Spans, units_in: int, units_out: int, start: int,
          every: int) -> Spans:
    """Unit ``o`` is the input's unit ``start + o*every``. Spans, even where three numbers
    would do: a padded layer after a crop reads zeros where the crop removed pixels, and a
    ``ReceptiveField`` would count those pixels."""
    return Spans.through(axis, [(start + o * every,) * 2 for o in range(units_out)], units_in)


def getitem(step: Step) -> Op | CannotFollow:
    """Indexing: channels or batch picked, and crops by slicing a spatial axis (``x[..., 2:-2,
    ::2]``: unit ``o`` is the input's unit ``start + o*step``)."""
    dims = step.value.dims
    source = step.node.args[0]
    if isinstance(source, torch.fx.Node) and gives_tensors(source):  # a tuple's item: a piece
        return step.unchanged()  # of a split, whose value the walk made already
    if tokens(dims):
        return _tokens_indexed(step)
    if dims is None or (len(step.in_shape) == len(step.out_shape) and all(
            step.in_shape[d] == step.out_shape[d] for d in dims)):
        return step.unchanged()
    items = _index_items(concrete(step.node.args[1]), step.ndim)
    if items is None:
        return step.cannot("indexing other than by integers and slices")
    moved, slices = _index_map(items)
    if any(d not in moved for d in dims):
        return step.cannot("indexing that drops a spatial axis")
    if any(isinstance(getattr(slices.get(d), name, 0), torch.fx.Node)
           for d in dims for name in ("start", "stop", "step")):
        return step.cannot("a slice computed in a way rfviz could not evaluate")
    field, new_dims = step.value.field, tuple(moved[d] for d in dims)
    if not field.known:
        return step.unchanged(new_dims)
    axes = []
    for axis, d, n in zip(field.axes, dims, new_dims, strict=True):
        start, _, every = slices.get(d, slice(None)).indices(step.in_shape[d])
        whole = step.in_shape[d] == step.out_shape[n]
        axes.append(axis if whole else _crop(axis, step.in_shape[d], step.out_shape[n], start,
                                             every))
    return Op(Field(tuple(axes)), new_dims)


def _tokens_indexed(step: Step) -> Op | CannotFollow:
    """Indexing tokens: the field stays where every token is kept in its order (heads or
    channels picked); a ViT's class token, ``x[:, 0]``, taken after attention is global."""
    if step.value.field.is_global:
        return step.unchanged(None)
    items = _index_items(concrete(step.node.args[1]), step.ndim)
    moved, slices = _index_map(items) if items is not None else ({}, {})
    d = step.value.dims[0]
    if d not in moved or slices[d] != slice(None):
        return step.cannot("indexing the tokens (the spatial axes flattened into one)")
    return step.unchanged((moved[d],) * len(step.value.dims))


def _index_items(index, ndim: int) -> list | None:
    """The index as one item per input dim or new axis, ``...`` expanded; None if it holds
    anything but integers, slices, ``None`` and ``...``."""
    items = list(index) if isinstance(index, tuple) else [index]
    if not all(item is None or item is Ellipsis or isinstance(item, int | slice)
               for item in items):
        return None
    taken = sum(item is not None and item is not Ellipsis for item in items)
    at = items.index(Ellipsis) if Ellipsis in items else len(items)
    fill = [slice(None)] * (ndim - taken)
    return [*items[:at], *fill, *items[at + 1:]]


def _index_map(items: list) -> tuple[dict[int, int], dict[int, slice]]:
    """Where each kept input dim ends up, and the slice taken along it."""
    moved, slices, d, out = {}, {}, 0, 0
    for item in items:
        if item is None:
            out += 1
            continue
        if isinstance(item, slice):
            moved[d], slices[d] = out, item
            out += 1
        d += 1
    return moved, slices
