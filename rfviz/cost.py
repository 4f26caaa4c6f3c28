"""What a network costs: convolution weights, and multiply-adds for one image.

A convolution has ``C_out · C_in/groups · k_h · k_w`` weights and does one multiply-add per
weight for each output pixel; a linear layer does ``C_in`` per output. BatchNorm, ReLU,
additions and pooling are left out: they are cheap next to these.

>>> from torch import nn

from .tracing.ops import CONVOLUTIONS, TRANSPOSED
>>> conv = nn.Conv2d(3, 8, kernel_size=3)
>>> conv_weights(conv)                          # 216 = 8 · 3 · 3·3
216
>>> multiply_adds(conv, torch.zeros(1, 3, 8, 8))   # 7776 = 216 weights · 6·6 outputs
7776
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .tracing.ops import CONVOLUTIONS, TRANSPOSED

__all__ = ["conv_weights", "multiply_adds"]

COUNTED = (*CONVOLUTIONS, nn.Linear)
NOT_COUNTED = TRANSPOSED


def _module(name: str, value) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise ValueError(f"{name}={type(value).__name__} is not a torch module; "
                         f"valid: an nn.Module such as nn.Conv2d or a whole network")
    return value


def conv_weights(block: nn.Module) -> int:
    """The weights of every convolution in ``block`` (itself included), biases left out.

    >>> from torchvision.models.resnet import BasicBlock
    >>> conv_weights(BasicBlock(64, 64))        # 73728 = 2 convolutions · 64 · 64 · 3·3
    73728
    >>> conv_weights(nn.Conv2d(8, 8, 3, groups=4))   # 144 = 8 · 8/4 · 3·3
    144
    """
    return sum(m.weight.numel() for m in _module("block", block).modules()
               if isinstance(m, CONVOLUTIONS))


def multiply_adds(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every convolution and linear layer for *one* image of the batch ``x``.

    Runs ``model(x)`` once in eval mode without gradients. A forward hook on each ``Conv1d``,
    ``Conv2d``, ``Conv3d`` and ``Linear`` multiplies the outputs for the first image,
    ``output[0].numel()``, by the weights behind each output, ``weight[0].numel()``
    (``C_in/groups · k_h · k_w`` for a convolution, ``C_in`` for a linear layer). A layer that
    runs twice counts twice. The model is left as found: the hooks are removed and every
    module's training flag restored, even if the forward pass fails.

    >>> multiply_adds(nn.Linear(10, 4), torch.zeros(2, 10))     # 40 = 4 outputs · 10 inputs
    40
    >>> multiply_adds(nn.Conv2d(8, 4, 1), torch.zeros(1, 8, 5, 5))   # 800 = 4·5·5 outputs · 8
    800
    """
    model = _module("model", model)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x={shape} is not a batch; valid: a tensor (N, C, ...) with N ≥ 1, "
                         f"e.g. torch.zeros(1, 3, 224, 224)")
    skipped = sorted({type(m).__name__ for m in model.modules() if isinstance(m, NOT_COUNTED)
                      or _has_own_weights(m) and not isinstance(m, COUNTED + CHEAP)})
    if skipped:
        warnings.warn(f"multiply_adds does not count {', '.join(skipped)}", stacklevel=2)
    counts: list[int] = []

    def count(module: nn.Module, inputs, output: torch.Tensor) -> None:
        if isinstance(module, CONVOLUTIONS) and output.dim() != len(module.kernel_size) + 2:
            raise ValueError(f"x has no batch axis at {type(module).__name__} (its output has "
                             f"shape {tuple(output.shape)}); valid: x of shape (N, C, ...), "
                             "e.g. x.unsqueeze(0)")
        counts.append(output[0].numel() * module.weight[0].numel())

    flags = {m: m.training for m in model.modules()}
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, COUNTED)]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for hook in hooks:
            hook.remove()
        for m, training in flags.items():
            m.training = training
    return sum(counts)


CHEAP = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.PReLU, nn.Embedding)


def _has_own_weights(module: nn.Module) -> bool:
    """Parameters of its own (not only its children's): work the hooks may not see."""
    return any(True for _ in module.parameters(recurse=False))
