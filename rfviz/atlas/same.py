"""timm's TensorFlow-style SAME padding, frozen for one input size at a time.

TensorFlow's SAME padding depends on the size of each op's input, which timm's ``Conv2dSame``,
``MaxPool2dSame`` and ``AvgPool2dSame`` compute in their ``forward``: torch.fx cannot trace that
(it branches on the size). :func:`freeze_same` replaces each by a constant pad and the plain op,
and :func:`pad_for` sets the pads for the size about to be traced.
"""

from __future__ import annotations

import math

from torch import nn

__all__ = ["FrozenSame", "freeze_same", "pad_for"]


class FrozenSame(nn.Sequential):
    """timm's ``Conv2dSame`` / ``MaxPool2dSame`` / ``AvgPool2dSame`` as a constant pad and the
    plain op: TensorFlow's SAME padding depends on the size of the op's input, which torch.fx
    cannot trace (it branches on it). :func:`pad_for` sets the pad for one input size of the
    whole network (``padded_for``)."""

    padded_for: tuple[int, ...] | None = None


def freeze_same(model: nn.Module) -> int:
    """Replace each dynamic "same" op by a :class:`FrozenSame` sharing its parameters."""
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame

    count = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, Conv2dSame):
            op = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                           module.stride, 0, module.dilation, module.groups,
                           module.bias is not None, device="meta")
            op.weight, op.bias = module.weight, module.bias
            value = 0.0
        elif isinstance(module, MaxPool2dSame):
            op = nn.MaxPool2d(module.kernel_size, module.stride, 0, module.dilation,
                              ceil_mode=module.ceil_mode)
            value = -math.inf
        elif isinstance(module, AvgPool2dSame):
            op = nn.AvgPool2d(module.kernel_size, module.stride, 0, module.ceil_mode,
                              module.count_include_pad)
            value = 0.0
        else:
            continue
        frozen = FrozenSame()
        frozen.add_module("pad", nn.ConstantPad2d(0, value))
        frozen.add_module("op", op)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, frozen)
        count += 1
    return count


def pad_for(model: nn.Module, input_size: tuple[int, ...]) -> None:
    """Set every :class:`FrozenSame` pad for ``input_size``, from the size that reaches it
    (TensorFlow's rule, as timm's ``pad_same``), in execution order: rfviz's shape propagation
    of the traced graph, whose pads run as modules (a forward pass on the meta device would run
    torch's slow meta kernels: timm/tf_mobilenetv3_large_100, 90 ms against 5); nothing to do
    if they are set for that size already. A pad set on the way changes the sizes after it."""
    from timm.layers.padding import pad_same_arg

    from ..tracing import _graph, _propagated
    from ..tracing.shapes import input_shape

    input_size = tuple(input_size)
    frozen = [m for m in model.modules() if isinstance(m, FrozenSame)]
    if all(m.padded_for == input_size for m in frozen):
        return

    def two(value) -> tuple[int, int]:
        return (value, value) if isinstance(value, int) else tuple(value)

    def setter(same: FrozenSame):
        op = same.op

        def set_pad(pad, args):  # ``pad`` is same.pad, or the meta copy of it that runs
            same.pad.padding = pad.padding = tuple(pad_same_arg(
                args[0].shape[-2:], two(op.kernel_size), two(op.stride),
                two(getattr(op, "dilation", 1))))
        return set_pad

    for module in frozen:  # until every pad is set, none counts as set for any size
        module.padded_for = None
    hooks = [m.pad.register_forward_pre_hook(setter(m)) for m in frozen]
    try:
        _propagated(model, _graph(model), input_shape(model, input_size))
    finally:
        for hook in hooks:
            hook.remove()
    for module in frozen:
        module.padded_for = input_size
