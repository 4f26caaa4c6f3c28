"""timm's TensorFlow-style SAME padding, frozen for one input size at a time.

TensorFlow's SAME padding depends on the size of each op's input, which timm's ``Conv2dSame``,
``MaxPool2dSame`` and ``AvgPool2dSame`` compute in their ``forward``: torch.fx cannot trace that
(it branches on the size). :func:`freeze_same` replaces each by a constant pad and the plain op,
and :func:`pad_for` sets the pads for the size about to be traced.
"""

from __future__ import annotations

import math

import torch
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
    """Set every :class:`FrozenSame` pad for ``input_size``, from the sizes that reach it in
    one forward pass on the meta device (TensorFlow's rule, as timm's ``pad_same``); nothing
    to do if they are set for that size already."""
    from timm.layers.padding import pad_same_arg

    input_size = tuple(input_size)
    frozen = [m for m in model.modules() if isinstance(m, FrozenSame)]
    if all(m.padded_for == input_size for m in frozen):
        return

    def two(value) -> tuple[int, int]:
        return (value, value) if isinstance(value, int) else tuple(value)

    def set_pad(module, args):
        op = module.op
        module.pad.padding = tuple(pad_same_arg(args[0].shape[-2:], two(op.kernel_size),
                                                two(op.stride), two(getattr(op, "dilation", 1))))

    hooks = [m.register_forward_pre_hook(set_pad) for m in frozen]
    weight = next(model.parameters())  # meta in the atlas; a real model runs once
    try:
        with torch.no_grad():
            model(torch.zeros((1, _channels(model), *input_size), device=weight.device,
                              dtype=weight.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    for module in frozen:
        module.padded_for = input_size


def _channels(model: nn.Module) -> int:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)), None)
    return first.in_channels if first is not None else 3
