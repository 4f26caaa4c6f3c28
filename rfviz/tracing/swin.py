"""torchvision's Swin transformer, whose attention stays local: it attends within windows of
``window_size`` tokens per axis, shifted by ``shift_size`` every other block (a cyclic roll),
so a token reads every token of its window, and only those; between stages, patch merging
stacks each 2 × 2 patch of tokens into one (a window of 2, stride 2).

(Swin's mask, which keeps a shifted window's wrapped-around parts apart, adds -100 to the
logits rather than -inf, so the masked tokens still get a weight of about e^-100: nonzero.
The field is the whole window, as torch's gradient says.)
"""

from __future__ import annotations

from torchvision.models.swin_transformer import _patch_merging_pad, shifted_window_attention

from ..field import Field
from ..spans import Spans
from .rules import Op, Step

__all__ = ["SWIN_RULES", "patch_merging", "window_attention", "window_reads"]


def window_reads(units: int, window: int, shift: int) -> list[tuple[int, int]]:
    """First and last unit each unit reads along an axis of ``units`` tokens, windows of
    ``window``, shifted by ``shift`` (as torchvision: the axis is padded to whole windows,
    and not shifted when one window covers it). A window that wraps around reads both ends.

    >>> window_reads(8, 4, 0)                     # two windows: 0…3 and 4…7
    [(0, 3), (0, 3), (0, 3), (0, 3), (4, 7), (4, 7), (4, 7), (4, 7)]
    >>> window_reads(8, 4, 2)[:2], window_reads(8, 4, 2)[2]   # rolled by 2: 6 7 0 1 | 2 3 4 5
    ([(0, 7), (0, 7)], (2, 5))
    """
    padded = -(-units // window) * window
    shift = shift if window < padded else 0
    reads = []
    for unit in range(units):
        start = (unit - shift) % padded // window * window
        tokens = [(q + shift) % padded for q in range(start, start + window)]
        tokens = [t for t in tokens if t < units]  # the padding is zeros, not tokens
        reads.append((min(tokens), max(tokens)))
    return reads


def window_attention(step: Step) -> Op:
    """``shifted_window_attention(input[N, H, W, C], …, window_size, num_heads, shift_size,
    …)``: each axis by :func:`window_reads`, per unit."""
    window, shift = step.argument(4, "window_size"), step.argument(6, "shift_size")
    field, dims = step.value.field, step.value.dims
    if not field.known or not dims:
        return step.unchanged()
    axes = tuple(Spans.through(axis, window_reads(step.in_shape[dim], w, s), step.in_shape[dim])
                 for axis, dim, w, s in zip(field.axes, dims, window, shift, strict=True))
    return Op(Field(axes), dims)


def patch_merging(step: Step) -> Op:
    """``_patch_merging_pad``: tokens 2u and 2u + 1 of each axis (an odd axis padded with a
    zero token first) side by side in the channels: a window of 2, stride 2."""
    field, dims = step.value.field, step.value.dims
    if not field.known or not dims:
        return step.unchanged()
    axes = tuple(axis.then(2, 2, units=step.out_shape[dim]) if isinstance(axis, Spans)
                 else axis.then(2, 2) for axis, dim in zip(field.axes, dims, strict=True))
    return Op(Field(axes), dims, {"kernel": (2, 2), "stride": (2, 2)})


SWIN_RULES = {shifted_window_attention: window_attention, _patch_merging_pad: patch_merging}
