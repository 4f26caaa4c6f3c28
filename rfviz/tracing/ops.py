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

AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}

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
# spatial axes of each pooling class (subclasses: through their MRO)
POOL_AXES = {**dict(zip(MAX_POOLS, (1, 2, 3), strict=True)),
             **dict(zip(AVG_POOLS, (1, 2, 3), strict=True))}
CONSTANT_PADS = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
                 nn.ConstantPad3d)
# pads that copy pixels, by the mode F.pad calls them
COPY_MODES = {**dict.fromkeys((nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d),
                              "reflect"),
              **dict.fromkeys((nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d),
                              "replicate"),
              **dict.fromkeys((nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d),
                              "circular")}
COPYING_PADS = tuple(COPY_MODES)
SPATIAL_STATISTICS = (nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)

ELEMENTWISE_FUNCTIONS = {
    operator.neg, torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.sqrt, torch.abs,
    F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.dropout, F.leaky_relu, F.elu,
    torchvision.ops.stochastic_depth,  # drops whole samples (or nothing, in eval): no mixing
    F.batch_norm,  # as BatchNorm*d: per channel, with running statistics (eval mode)
}
MERGING_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd,
                     operator.imul, torch.add, torch.sub, torch.mul, torch.div, torch.maximum,
                     torch.minimum, torch.addcmul, torch.addcdiv, torch.where}
ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "contiguous", "clone",
                       "float", "double", "to", "type_as", "detach", "exp", "neg", "abs"}
MERGING_METHODS = {"add", "add_", "mul", "mul_", "sub", "div", "div_", "addcmul", "addcmul_",
                   "addcdiv", "addcdiv_"}
CONCATENATING = {torch.cat, "cat"}
RESHAPING = {torch.flatten, torch.reshape, "view", "reshape", "flatten", "unflatten", "squeeze",
             "unsqueeze", torch.squeeze, torch.unsqueeze}
SWAPPING = {torch.transpose, torch.swapaxes, torch.swapdims, "transpose", "swapaxes",
            "swapdims"}  # two dims trade places
PERMUTING = {torch.permute, "permute", *SWAPPING}
SPLITTING = {torch.chunk, torch.split, "chunk", "split"}
UNBINDING = {torch.unbind, "unbind"}  # a tuple of the slices along a dim, that dim removed
REDUCING = {torch.mean, torch.sum, torch.amax, "mean", "sum", "amax", "max"}
NORMS = {torch.norm, torch.linalg.vector_norm, "norm"}  # dim after the order p
# normalised along one dim: each output reads every input along it (softmax over the radix
# in ResNeSt's split attention is per pixel; over a spatial axis it is global)
NORMALISING = {F.softmax, torch.softmax, F.log_softmax, torch.log_softmax, "softmax",
               "log_softmax"}
NORMALISING_MODULES = (nn.Softmax, nn.LogSoftmax, nn.Softmin)
ADAPTIVE_POOL_FUNCTIONS = {F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d,
                           F.adaptive_max_pool2d}
POOL_FUNCTIONS = {F.max_pool1d: ("maxpool", 1), F.max_pool2d: ("maxpool", 2),
                  F.max_pool3d: ("maxpool", 3), F.avg_pool1d: ("avgpool", 1),
                  F.avg_pool2d: ("avgpool", 2), F.avg_pool3d: ("avgpool", 3)}
CONV_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d}
INTERPOLATING = {F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear}
PIXEL_SHUFFLES = {F.pixel_shuffle, torch.pixel_shuffle}
PIXEL_UNSHUFFLES = {F.pixel_unshuffle, torch.pixel_unshuffle}


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
    kind: str = "conv"  # "conv", "transposed", "maxpool" or "avgpool"
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
        stride = kernel if stride is None else stride
        return cls(kernel, per_axis(stride, n), per_axis(padding, n), dilation, kind,
                   bool(ceil_mode), same)

    @classmethod
    def from_module(cls, module: nn.Module) -> Window:
        """From a ``Conv*d``, ``ConvTranspose*d``, ``MaxPool*d`` or ``AvgPool*d`` module."""
        if isinstance(module, TRANSPOSED):
            return cls(module.kernel_size, module.stride, module.padding, module.dilation,
                       "transposed")
        if isinstance(module, CONVOLUTIONS):
            if isinstance(module.padding, str):
                return cls.of(module.kernel_size, module.stride, module.padding, module.dilation)
            return cls(module.kernel_size, module.stride, module.padding, module.dilation)
        kind = "maxpool" if isinstance(module, MAX_POOLS) else "avgpool"
        n = next(POOL_AXES[c] for c in type(module).__mro__ if c in POOL_AXES)
        return cls.of(module.kernel_size, module.stride, module.padding,
                      getattr(module, "dilation", 1), kind=kind, ceil_mode=module.ceil_mode, n=n)

    @classmethod
    def from_call(cls, target, arguments: dict, weight_shape=None) -> Window:
        """From ``F.conv*d`` (kernel from the weight's shape) or ``F.*_pool*d`` arguments."""
        if target in CONV_FUNCTIONS:
            return cls.of(tuple(weight_shape[2:]), arguments.get("stride", 1),
                          arguments.get("padding", 0), arguments.get("dilation", 1))
        kind, n = POOL_FUNCTIONS[target]
        return cls.of(arguments["kernel_size"], arguments.get("stride"),
                      arguments.get("padding", 0), arguments.get("dilation", 1),
                      kind=kind, ceil_mode=arguments.get("ceil_mode", False), n=n)

    def output_size(self, spatial) -> tuple[int, ...]:
        """Output length per axis, exactly as torch gives it (rfviz.arithmetic), for a
        convolution or a pooling."""
        if self.kind == "transposed":
            raise ValueError("a transposed convolution's output size also needs its "
                             "output_padding: use rfviz.conv_transpose_output_size")
        if self.same:
            return tuple(spatial)
        size_of = conv_output_size if self.kind == "conv" else pool_output_size
        return tuple([size_of(n, k, s, p, d, self.ceil_mode) for n, k, s, p, d in zip(
            spatial, self.kernel, self.stride, self.padding, self.dilation, strict=True)])
