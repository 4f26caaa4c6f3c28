"""Rules for the ops that make maps larger: transposed convolution, interpolation, pixel
shuffle. After them, units see spans that depend on their position (:mod:`rfviz.spans`).

Each rule finds, for every output unit along each axis, the first and last input unit it
reads (a *window*), and hands those to :meth:`rfviz.spans.Spans.through`. A transposed
convolution's windows follow from its arithmetic; an interpolation's come from torch itself,
run once on a one-hot probe at the traced size, so every mode, ``align_corners``, size and
scale factor rounds exactly as it will in the model.

>>> windows = transposed_windows(units=6, kernel=3, stride=2, padding=1, dilation=1)
>>> [list(w) for w in windows]            # outputs 0, 2, 4 read one input, 1, 3, 5 read two
[[0], [0, 1], [1], [1, 2], [2], [2, 3]]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..field import CannotFollow, Field, Layer
from ..spans import Spans, Window
from .ops import Window as ConvWindow
from .ops import per_axis
from .rules import Op, Step, axis_of, slide
from .shapes import concrete

__all__ = ["interpolate", "interpolation_windows", "pixel_shuffle", "pixel_unshuffle",
           "transposed", "transposed_windows"]


def transposed_windows(units: int, kernel: int, stride: int, padding: int,
                       dilation: int) -> list[Window]:
    """For each output unit of a transposed convolution, the input units it sums: input
    ``i`` reaches output ``i*stride - padding + t*dilation`` for tap ``t``, the same inputs
    as :meth:`rfviz.field.Layer.window` gives (a range: with dilation it may skip units).

    Inputs outside the tensor are included (the caller clips them): like a convolution's
    padding, they read nothing.
    """
    layer = Layer(kernel, stride, padding, dilation, op="transposed")
    return [window if (window := layer.window(unit)) else None for unit in range(units)]


def _through(step: Step, windows_per_axis, params) -> Op:
    """The new field from each axis's windows; global and unknown fields stay as they are."""
    value = step.value
    if not value.field.known or value.dims is None:
        return Op(value.field, value.dims, params)
    axes = tuple(Spans.through(axis, windows, step.in_shape[dim])
                 for axis, dim, windows in zip(value.field.axes, value.dims, windows_per_axis,
                                               strict=True))
    return Op(Field(axes), value.dims, params)


def transposed(step: Step) -> Op:
    """``ConvTranspose*d`` with any stride, padding, output_padding, dilation and groups.

    At stride 1 it is a convolution with the same kernel and padding
    ``dilation*(kernel-1) - padding``: the field keeps its three numbers (unless that padding
    is negative, a crop: then per-unit spans, as for any crop). With a larger stride, output
    units see spans that depend on their position modulo the stride (the checkerboard when
    the kernel is not a multiple of the stride).
    """
    module = step.module
    conv = ConvWindow.from_module(module)
    params = {"kernel": conv.kernel, "stride": conv.stride, "padding": conv.padding,
              "dilation": conv.dilation}
    pads = tuple(d * (k - 1) - p for k, p, d in zip(conv.kernel, conv.padding, conv.dilation,
                                                    strict=True))
    if all(s == 1 for s in conv.stride) and min(pads) >= 0:
        op = slide(step, conv._replace(padding=pads, kind="conv"))
        return op._replace(params=params)
    windows = []
    for dim in step.value.dims or ():
        a = axis_of(step, dim, len(conv.kernel))
        windows.append(transposed_windows(step.out_shape[dim], conv.kernel[a], conv.stride[a],
                                          conv.padding[a], conv.dilation[a]))
    return _through(step, windows, params)


# F.interpolate's arguments after the input, in order, with torch's defaults
_INTERPOLATE = (("size", None), ("scale_factor", None), ("mode", "nearest"),
                ("align_corners", None), ("recompute_scale_factor", None), ("antialias", False))
_SHORTHANDS = {F.upsample_nearest: {"mode": "nearest"},
               F.upsample_bilinear: {"mode": "bilinear", "align_corners": True}}


def _interpolation_arguments(step: Step) -> dict:
    if step.module is not None:
        m = step.module
        return {"size": m.size, "scale_factor": m.scale_factor, "mode": m.mode,
                "align_corners": m.align_corners,
                "recompute_scale_factor": m.recompute_scale_factor, "antialias": False}
    target = step.node.target
    names = _INTERPOLATE[:2] if target in _SHORTHANDS else _INTERPOLATE
    arguments = {name: step.argument(position, name, default)
                 for position, (name, default) in enumerate(names, start=1)}
    arguments.update(_SHORTHANDS.get(target, {}))
    arguments.setdefault("antialias", False)
    return {name: concrete(value) for name, value in arguments.items()}


PROBE_ELEMENTS = 1 << 22  # numbers in one probe chunk: 32 MB of float64, whatever the sizes


def interpolation_windows(units_in: int, units_out: int, axis: int, spatial: int,
                          arguments: dict) -> list[Window]:
    """For each output unit along ``axis``, the first and last input unit with a nonzero
    weight, found by running ``F.interpolate`` on a one-hot probe (float64).

    The probe has one channel per input unit along ``axis`` (a one at that unit, the same
    along the other axes) and length 2 along the other axes, kept at scale 1. (Not 1:
    torch's antialiased interpolation gives other weights when an axis has length 1.) The
    channels go through torch in chunks of about ``PROBE_ELEMENTS`` numbers, so the memory
    stays bounded however long the axis (all at once, 8192 → 16384 took 2.3 GB).

    >>> interpolation_windows(4, 8, 0, 1, {"scale_factor": 2.0, "mode": "linear",
    ...                                    "align_corners": False})
    [(0, 0), (0, 1), (0, 1), (1, 2), (1, 2), (2, 3), (2, 3), (3, 3)]
    """
    kwargs = dict(arguments)
    if kwargs.get("size") is not None:
        sizes = per_axis(kwargs["size"], spatial)
        kwargs["size"] = tuple(sizes[a] if a == axis else 2 for a in range(spatial))
    else:
        factors = per_axis(kwargs["scale_factor"], spatial)
        kwargs["scale_factor"] = tuple(float(factors[a]) if a == axis else 1.0
                                       for a in range(spatial))
    others = 2 ** (spatial - 1)  # the probe's length 2 along every other axis
    chunk = max(1, PROBE_ELEMENTS // ((units_in + units_out) * others))
    first = torch.full((units_out,), units_in)
    last = torch.full((units_out,), -1)
    for start in range(0, units_in, chunk):
        inputs = torch.arange(start, min(start + chunk, units_in))
        reached = _probe(inputs, units_in, units_out, axis, spatial, kwargs)  # (inputs, out)
        first = torch.minimum(first, torch.where(reached, inputs[:, None], units_in).amin(0))
        last = torch.maximum(last, torch.where(reached, inputs[:, None], -1).amax(0))
    return [(int(a), int(b)) if b >= 0 else None for a, b in zip(first, last, strict=True)]


def _probe(inputs: torch.Tensor, units_in: int, units_out: int, axis: int, spatial: int,
           kwargs: dict) -> torch.Tensor:
    """Which output units along ``axis`` each of the one-hot ``inputs`` reaches."""
    shape = [1, len(inputs)] + [units_in if a == axis else 1 for a in range(spatial)]
    one_hot = torch.zeros(len(inputs), units_in, dtype=torch.float64)
    one_hot[torch.arange(len(inputs)), inputs] = 1
    probe = one_hot.reshape(shape)
    probe = probe.expand(1, len(inputs), *(units_in if a == axis else 2
                                           for a in range(spatial))).contiguous()
    out = F.interpolate(probe, **kwargs)
    if out.shape[2 + axis] != units_out:
        raise ValueError(f"the probe gave {out.shape[2 + axis]} units, the model {units_out}")
    others = tuple(1 + a for a in range(spatial) if a != axis)
    return (out[0] != 0).any(dim=others) if others else out[0] != 0


def interpolate(step: Step) -> Op | CannotFollow:
    """``nn.Upsample`` / ``F.interpolate``: every mode, explicit sizes or scale factors."""
    arguments = _interpolation_arguments(step)
    value = step.value
    if not value.field.known or value.dims is None:
        return step.unchanged()
    unevaluated = []
    torch.fx.node.map_arg((arguments["size"], arguments["scale_factor"]), unevaluated.append)
    if unevaluated:
        return step.cannot("its output size is computed in a way rfviz could not evaluate")
    spatial = len(value.dims)
    try:
        windows = [interpolation_windows(step.in_shape[dim], step.out_shape[dim],
                                         axis_of(step, dim, spatial), spatial, arguments)
                   for dim in value.dims]
    except (ValueError, RuntimeError) as error:  # say which op, never a deep traceback
        return step.cannot(f"probing it with torch failed: {str(error).splitlines()[0]}")
    return _through(step, windows, {})


def _factor(step: Step, name: str) -> int:
    if step.module is not None:
        return getattr(step.module, name)
    return concrete(step.argument(1, name))


def pixel_shuffle(step: Step) -> Op:
    """``PixelShuffle(r)``: channels become an r × r block, so output ``o`` is input ``o // r``."""
    r = _factor(step, "upscale_factor")
    dims = step.value.dims or ()
    windows = [[(o // r, o // r) for o in range(step.out_shape[dim])] for dim in dims]
    return _through(step, windows, {})


def pixel_unshuffle(step: Step) -> Op:
    """``PixelUnshuffle(r)``: each r × r block becomes channels, a window of r with stride r."""
    r = _factor(step, "downscale_factor")
    n = len(step.value.dims or ())
    op = slide(step, ConvWindow.of(r, r, 0, 1, n=n))
    return op._replace(params={"kernel": op.params["kernel"], "stride": op.params["stride"]})

