"""What each op is, for the tracer: families of ops, and conv/pool parameters read once.

Shapes (:mod:`.shapes`) and fields (:mod:`.rules`) both need a window's kernel, stride,
padding and dilation per spatial axis; :class:`Window` reads them from a module or a call in
one place, with torch's defaults: ``stride=None`` means the kernel, average pooling has no
dilation, ``padding="valid"`` is 0 and ``padding="same"`` is torch's left side
(:func:`rfviz.arithmetic.same_padding`).

>>> from torch import nn
>>> Window.from_module(nn.MaxPool2d(3, padding=1))
Window(kernel=(3, 3), stride=(3, 3), padding=(1, 1), dilation=(1, 1), kind='maxpool')
>>> Window.from_module(nn.Conv2d(1, 1, 4, padding="same")).padding   # total 3: 1 left, 2 right
(1, 1)
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import nn

from ..arithmetic import conv_output_size, pool_output_size, same_padding

__all__ = ["Window"]

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
ADAPTIVE_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                  nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
ELEMENTWISE_MODULES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.LocalResponseNorm,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.ChannelShuffle,
)
POOLS = MAX_POOLS + AVG_POOLS
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
CONCATENATING = {torch.cat, "cat"}
RESHAPING = {torch.flatten, torch.reshape, "view", "reshape", "flatten", "unflatten", "squeeze",
             "unsqueeze", torch.squeeze, torch.unsqueeze}
PERMUTING = {torch.permute, torch.transpose, "permute", "transpose"}
SPLITTING = {torch.chunk, torch.split, "chunk", "split"}
REDUCING = {torch.mean, torch.sum, torch.amax, "mean", "sum", "amax", "max"}
ADAPTIVE_POOL_FUNCTIONS = {F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d,
                           F.adaptive_max_pool2d}
POOL_FUNCTIONS = {F.max_pool1d: "maxpool", F.max_pool2d: "maxpool", F.max_pool3d: "maxpool",
                  F.avg_pool1d: "avgpool", F.avg_pool2d: "avgpool", F.avg_pool3d: "avgpool"}
CONV_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d}


_CONVOLUTIONS_AND_TRANSPOSED = CONVOLUTIONS + TRANSPOSED


def per_axis(value, n: int) -> tuple[int, ...]:
    """``3`` -> ``(3, 3)``; a tuple or list stays as it is."""
    return tuple(value) if isinstance(value, tuple | list) else (value,) * n


class Window(NamedTuple):
    """A convolution's or pooling's sliding window, per spatial axis, in torch's terms.

    ``padding`` is the left (top) side; ``same`` is True for ``padding="same"``, whose output
    keeps the input's size (its right side may be one more: an even total). (A named tuple:
    immutable like a frozen dataclass, and built twice per convolution per trace, cheaply.)
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    kind: str = "conv"  # "conv", "maxpool" or "avgpool"
    ceil_mode: bool = False
    same: bool = False

    def __repr__(self) -> str:
        extra = "".join(f", {name}={getattr(self, name)!r}" for name in ("ceil_mode", "same")
                        if getattr(self, name))
        return (f"Window(kernel={self.kernel}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, kind={self.kind!r}{extra})")

    @classmethod
    def of(cls, kernel, stride=None, padding=0, dilation=1, *, kind="conv", ceil_mode=False,
           n: int | None = None) -> Window:
        """Normalise torch's arguments: ints or tuples, ``stride=None``, "valid"/"same"."""
        kernel = per_axis(kernel, n or 1)
        n = len(kernel)
        dilation = per_axis(1 if kind == "avgpool" else dilation, n)
        same = padding == "same"
        if isinstance(padding, str):
            padding = tuple(same_padding(k, d)[0] if same else 0
                            for k, d in zip(kernel, dilation, strict=True))
        return cls(kernel, per_axis(stride or kernel, n), per_axis(padding, n), dilation, kind,
                   bool(ceil_mode), same)

    @classmethod
    def from_module(cls, module: nn.Module) -> Window:
        """From a ``Conv*d``, ``ConvTranspose*d``, ``MaxPool*d`` or ``AvgPool*d`` module."""
        if isinstance(module, _CONVOLUTIONS_AND_TRANSPOSED):
            if isinstance(module.padding, str):
                return cls.of(module.kernel_size, module.stride, module.padding, module.dilation)
            return cls(module.kernel_size, module.stride, module.padding, module.dilation)
        kind = "maxpool" if isinstance(module, MAX_POOLS) else "avgpool"
        n = int(type(module).__name__[-2])  # MaxPool2d -> 2
        return cls.of(module.kernel_size, module.stride, module.padding,
                      getattr(module, "dilation", 1), kind=kind, ceil_mode=module.ceil_mode, n=n)

    @classmethod
    def from_call(cls, target, arguments: dict, weight_shape=None) -> Window:
        """From ``F.conv*d`` (kernel from the weight's shape) or ``F.*_pool*d`` arguments."""
        if target in CONV_FUNCTIONS:
            return cls.of(tuple(weight_shape[2:]), arguments.get("stride", 1),
                          arguments.get("padding", 0), arguments.get("dilation", 1))
        n = int(target.__name__[-2])  # max_pool2d -> 2
        return cls.of(arguments["kernel_size"], arguments.get("stride"),
                      arguments.get("padding", 0), arguments.get("dilation", 1),
                      kind=POOL_FUNCTIONS[target], ceil_mode=arguments.get("ceil_mode", False),
                      n=n)

    def output_size(self, spatial) -> tuple[int, ...]:
        """Output length per axis, exactly as torch gives it (rfviz.arithmetic)."""
        if self.same:
            return tuple(spatial)
        size_of = conv_output_size if self.kind == "conv" else pool_output_size
        return tuple([size_of(n, k, s, p, d, self.ceil_mode) for n, k, s, p, d in zip(
            spatial, self.kernel, self.stride, self.padding, self.dilation, strict=True)])
