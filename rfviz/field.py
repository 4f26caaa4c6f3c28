"""Receptive fields along one axis: which input pixels an output unit can see.

A field is three ints (the notation of Araujo et al., "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019):

- ``size``: how many input pixels one unit sees (first to last, inclusive),
- ``stride``: how far apart, in input pixels, two neighbouring units' fields start (the *jump*),
- ``padding``: how far left of pixel 0 the field of unit 0 starts (the *effective padding*).

Output unit ``i`` then sees input pixels ``i*stride - padding`` … ``i*stride - padding + size - 1``
(0-based; negative indices and indices past the end fall in the padding).

>>> first = ReceptiveField().then(kernel=3, stride=2)     # the tutorial's Filter 1
>>> first.span(0), first.span(1)                          # 1-based: [1 2 3] and [3 4 5]
((0, 2), (2, 4))
>>> first.then(kernel=2)                                  # Filter 2: r = 3 + (2-1)*2
ReceptiveField(size=5, stride=2, padding=0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from .arithmetic import (
    _check_int,
    check_output_padding,
    conv_output_size,
    conv_transpose_output_size,
    effective_kernel,
    pool_output_size,
)

if TYPE_CHECKING:
    from .spans import Spans

__all__ = ["CannotFollow", "Field", "FieldError", "Fit", "Layer", "ReceptiveField",
           "fit_layers", "layer_fields", "layer_sizes"]

OPS = ("conv", "maxpool", "avgpool", "transposed")


@dataclass(frozen=True)
class Layer:
    """One convolution, pooling or transposed convolution along one axis, in torch's terms
    (``padding`` per side).

    >>> Layer(3, stride=2, padding=1)
    Layer(kernel=3, stride=2, padding=1)
    >>> Layer(3, stride=2, padding=1).output_size(7)          # (7 + 2 - 3) // 2 + 1
    4

    ``op="transposed"`` is ``ConvTranspose1d``: each input pixel adds the kernel, scaled, to
    the output at ``i*stride - padding + t*dilation`` (tap ``t``). Its ``padding`` crops the
    output on each side and ``output_padding`` adds pixels on the right (torch: smaller than
    the stride or the dilation).

    >>> up = Layer(4, stride=2, padding=1, op="transposed")
    >>> up.label, up.output_size(7)                           # (7-1)*2 - 2 + 3 + 1: doubles
    ('convT k=4 s=2 p=1', 14)
    """

    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    op: str = "conv"
    ceil_mode: bool = False
    name: str = ""
    output_padding: int = 0  # transposed only: extra output pixels on the right

    def __post_init__(self) -> None:
        _check_int("kernel", self.kernel, 1)
        _check_int("stride", self.stride, 1)
        _check_int("padding", self.padding, 0)
        _check_int("dilation", self.dilation, 1)
        if self.op not in OPS:
            raise ValueError(f"op={self.op!r} is not known; valid: one of {', '.join(OPS)}")
        if self.op == "avgpool" and self.dilation != 1:
            raise ValueError(f"dilation={self.dilation} is out of range: avgpool has no dilation; "
                             "valid: dilation=1")
        if self.op in ("conv", "transposed") and self.ceil_mode:
            raise ValueError(f"ceil_mode=True is only for pooling; valid for op={self.op!r}: "
                             "False")
        if self.op == "transposed":
            check_output_padding(self.output_padding, self.stride, self.dilation)
        elif _check_int("output_padding", self.output_padding, 0):
            raise ValueError(f"output_padding={self.output_padding} is only for "
                             f"op='transposed'; valid for op={self.op!r}: output_padding=0")

    def __repr__(self) -> str:
        shown = [f"kernel={self.kernel}"]
        defaults = {"stride": 1, "padding": 0, "dilation": 1, "op": "conv", "ceil_mode": False,
                    "name": "", "output_padding": 0}
        for field_name, default in defaults.items():
            value = getattr(self, field_name)
            if value != default:
                shown.append(f"{field_name}={value!r}")
        return f"Layer({', '.join(shown)})"

    @property
    def effective_kernel(self) -> int:
        """Input pixels one window covers, dilation included: ``dilation * (kernel - 1) + 1``
        (for a transposed layer: output pixels one input pixel writes to)."""
        return effective_kernel(self.kernel, self.dilation)

    @property
    def label(self) -> str:
        """A short description such as ``'conv k=3 s=2 p=1'`` or ``'convT k=4 s=2 p=1 op=1'``."""
        op = "convT" if self.op == "transposed" else self.op
        parts = [self.name or op, f"k={self.kernel}", f"s={self.stride}", f"p={self.padding}"]
        if self.dilation != 1:
            parts.append(f"d={self.dilation}")
        if self.output_padding:
            parts.append(f"op={self.output_padding}")
        if self.ceil_mode:
            parts.append("ceil")
        return " ".join(parts)

    def output_size(self, size: int) -> int:
        """Output length for an input of ``size`` pixels (raises as torch would refuse)."""
        if self.op == "conv":
            return conv_output_size(size, self.kernel, self.stride, self.padding, self.dilation)
        if self.op == "transposed":
            return conv_transpose_output_size(size, self.kernel, self.stride, self.padding,
                                              self.output_padding, self.dilation)
        return pool_output_size(size, self.kernel, self.stride, self.padding, self.dilation,
                                self.ceil_mode)

    def window(self, unit: int) -> range:
        """Indices in this layer's input that output ``unit`` reads, ascending.

        For a convolution or pooling: its window, padding included (indices may be < 0 or
        past the input's end: those cells are padding).

        >>> list(Layer(3, stride=2, padding=1, dilation=2).window(1))
        [1, 3, 5]

        For a transposed layer: every ``i`` with ``unit = i*stride - padding + t*dilation``
        for a tap ``t`` in ``0 … kernel-1``. The layer does not know its input's length, so
        this may name inputs that do not exist (``i < 0`` or ``i ≥`` the input's length): a
        transposed convolution pads nothing, so callers drop those. The range may be empty
        (an output between the strided inputs that no tap reaches) and may skip indices.

        >>> up = Layer(3, stride=2, op="transposed")   # the checkerboard: even outputs sum 2
        >>> [list(up.window(o)) for o in range(5)]     # inputs, odd ones 1 (input -1: none)
        [[-1, 0], [0], [0, 1], [1], [1, 2]]
        >>> list(Layer(1, stride=2, op="transposed").window(1))  # no tap lands on output 1
        []
        """
        if self.op != "transposed":
            first = unit * self.stride - self.padding
            return range(first, first + self.effective_kernel, self.dilation)
        # unit + padding = i*stride + t*dilation: the taps that land on the grid form a
        # progression of t in steps of stride/g, so the inputs one of steps dilation/g.
        reach, g = unit + self.padding, math.gcd(self.stride, self.dilation)
        taps = [t for t in range(min(self.kernel, self.stride // g))
                if (reach - t * self.dilation) % self.stride == 0]
        if not taps:
            return range(0)
        first_tap, tap_step = taps[0], self.stride // g
        last_tap = first_tap + (self.kernel - 1 - first_tap) // tap_step * tap_step
        first = (reach - last_tap * self.dilation) // self.stride
        return range(first, (reach - first_tap * self.dilation) // self.stride + 1,
                     self.dilation // g)


def as_layer(spec: Layer | tuple | dict) -> Layer:
    """Accept a ``Layer``, a tuple ``(kernel, stride, padding[, dilation])`` or a dict."""
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, dict):
        return Layer(**spec)
    if isinstance(spec, tuple | list):
        return Layer(*spec)
    raise TypeError(f"a layer must be a Layer, a (kernel, stride, padding) tuple or a dict, "
                    f"got {spec!r}")


class Fit(NamedTuple):
    """The layers of a stack that fit its input, their lengths, and why the next does not."""

    layers: tuple[Layer, ...]
    sizes: tuple[int, ...]  # the input's and after each fitted layer
    problem: str | None  # "layer N does not fit: …", or None


def fit_layers(layers: Iterable[Layer | tuple | dict], size: int) -> Fit:
    """Stack ``layers`` on ``size`` pixels until one does not fit; never raises for that.

    >>> fit_layers([(3, 1, 0), (3, 1, 0)], 4)
    Fit(layers=(Layer(kernel=3),), sizes=(4, 2), problem='layer 2 does not fit: kernel=3 spans \
3 pixels but the padded input has only 2 (size=2, padding=0); valid: kernel ≤ 2')
    """
    fitted, sizes = [], [size]
    for number, layer in enumerate(map(as_layer, layers), start=1):
        try:
            sizes.append(layer.output_size(sizes[-1]))
        except ValueError as error:
            return Fit(tuple(fitted), tuple(sizes), f"layer {number} does not fit: {error}")
        fitted.append(layer)
    return Fit(tuple(fitted), tuple(sizes), None)


def layer_sizes(layers: Iterable[Layer | tuple | dict], size: int) -> list[int]:
    """Length of the input and after each layer.

    >>> layer_sizes([(11, 4, 0), (3, 2, 0)], 227)     # AlexNet's conv1 and pool1
    [227, 55, 27]
    """
    sizes = [_check_int("size", size, 1)]
    for layer in map(as_layer, layers):
        sizes.append(layer.output_size(sizes[-1]))
    return sizes


class PerAxis:
    """``.h`` and ``.w`` for anything that holds one value per spatial axis in ``axes``
    (H, W are the last two, as in a tensor)."""

    axes: tuple

    @property
    def h(self):
        return self.axes[-2]

    @property
    def w(self):
        return self.axes[-1]


def layer_fields(layers: Iterable[Layer | tuple | dict]) -> list[ReceptiveField]:
    """The field of the input (a pixel sees itself) and after each layer.

    >>> [field.size for field in layer_fields([(11, 4, 0), (3, 2, 0)])]   # 11 + (3-1)*4
    [1, 11, 19]

    A transposed layer of stride 1 is a convolution with padding ``dilation*(kernel-1) -
    padding`` (negative: a crop). With a larger stride its units' fields differ by phase
    (:mod:`rfviz.spans` follows them per unit), and no single field holds them:

    >>> layer_fields([Layer(3, padding=1, op="transposed")])[-1]   # padding 2 - 1 = 1
    ReceptiveField(size=3, stride=1, padding=1)
    >>> layer_fields([(3, 1, 1), Layer(4, stride=2, padding=1, op="transposed")])
    Traceback (most recent call last):
    ...
    ValueError: layer 2 (convT k=4 s=2 p=1): with stride=2 the field of a transposed \
convolution's output unit depends on its position modulo the stride, so no single (size, \
jump, padding) describes it; valid: stride=1
    """
    fields = [ReceptiveField()]
    for number, layer in enumerate(map(as_layer, layers), start=1):
        padding = layer.padding
        if layer.op == "transposed":
            if layer.stride != 1:
                raise ValueError(
                    f"layer {number} ({layer.label}): with stride={layer.stride} the field of a "
                    "transposed convolution's output unit depends on its position modulo the "
                    "stride, so no single (size, jump, padding) describes it; valid: stride=1")
            padding = layer.effective_kernel - 1 - layer.padding
        fields.append(fields[-1].then(layer.kernel, layer.stride, padding, layer.dilation))
    return fields


@dataclass(frozen=True)
class ReceptiveField:
    """The field of a unit along one axis; the default is the identity (a pixel sees itself).

    >>> size, stride, padding = ReceptiveField.of([(7, 2, 3), (3, 2, 1)])   # resnet's stem
    >>> size, stride, padding                                              # 7 + (3-1)*2 = 11
    (11, 4, 5)
    """

    size: int = 1
    stride: int = 1
    padding: int = 0

    def __iter__(self) -> Iterator[int]:
        return iter((self.size, self.stride, self.padding))

    def then(self, kernel: int, stride: int = 1, padding: int = 0,
             dilation: int = 1) -> ReceptiveField:
        """The field after one more layer: r' = r + (k-1)·d·jump, jump' = jump·s.

        ``padding`` may be negative: a crop, such as a stride-1 transposed convolution, which
        is a convolution with padding ``dilation*(kernel-1) - padding``.

        >>> ReceptiveField().then(3).then(3).then(3)        # three 3x3 convs see 7 pixels
        ReceptiveField(size=7, stride=1, padding=0)
        >>> ReceptiveField().then(3, padding=-1)            # ConvTranspose(k=3, padding=3)
        ReceptiveField(size=3, stride=1, padding=-1)
        """
        extent = effective_kernel(kernel, dilation)
        stride = _check_int("stride", stride, 1)
        padding = _check_int("padding", padding, None)
        return ReceptiveField(
            size=self.size + (extent - 1) * self.stride,
            stride=self.stride * stride,
            padding=self.padding + padding * self.stride,
        )

    @classmethod
    def of(cls, layers: Iterable[Layer | tuple | dict]) -> ReceptiveField:
        """The field of a stack of layers, first layer first."""
        return layer_fields(layers)[-1]

    def span(self, unit: int) -> tuple[int, int]:
        """First and last input pixel (0-based, inclusive) that output ``unit`` sees.

        >>> ReceptiveField(size=267, stride=16, padding=133).span(0)   # resnet50 layer3
        (-133, 133)
        """
        first = unit * self.stride - self.padding
        return first, first + self.size - 1

    def center(self, unit: int) -> float:
        """Input coordinate of the centre of ``unit``'s field (pixel ``k`` is centred on ``k``).

        >>> ReceptiveField(size=4, stride=2, padding=1).center(0)     # pixels -1 … 2
        0.5
        """
        first, last = self.span(unit)
        return (first + last) / 2


@dataclass(frozen=True)
class CannotFollow:
    """An op rfviz has no exact rule for: the fields after it are unknown, never guessed.

    >>> print(CannotFollow("Upsample", "rfviz has no rule for it", where="1"))
    rfviz cannot follow Upsample at '1': rfviz has no rule for it
    """

    op: str
    reason: str
    where: str = ""  # the row's name in trace(), once known

    def __str__(self) -> str:
        at = f" at {self.where!r}" if self.where else ""
        return f"rfviz cannot follow {self.op}{at}: {self.reason}"


class FieldError(ValueError):
    """Numbers were asked of a field that has none: unknown, or global."""


@dataclass(frozen=True)
class Field:
    """A receptive field per spatial axis (H and W kept apart), or global, or unknown.

    ``axes`` holds one :class:`ReceptiveField` per spatial axis, in the tensor's order (H, W
    for images), or, where units see different spans (after upsampling, a crop, a reflecting
    pad), a :class:`rfviz.spans.Spans` with every unit's span (``per_unit``). A *global*
    field (every output depends on the whole input: after adaptive pooling to 1, flatten +
    linear, squeeze-excite, …) and an *unknown* one (``unknown`` says which op rfviz could not
    follow) have no numbers: asking for them raises :class:`FieldError`.

    >>> field = Field((ReceptiveField(267, 16, 133), ReceptiveField(267, 16, 133)))
    >>> print(field)
    267 px, jump 16, padding 133
    >>> field.span((9, 0))                   # unit (9, 0): rows 144 ± 133, columns -133 … 133
    ((11, 277), (-133, 133))
    >>> Field.unknown_after(CannotFollow("Upsample", "no rule", where="1")).size
    Traceback (most recent call last):
    ...
    rfviz.field.FieldError: the field is unknown: rfviz cannot follow Upsample at '1': no rule
    """

    axes: tuple[ReceptiveField | Spans, ...]
    is_global: bool = False
    unknown: CannotFollow | None = None

    @classmethod
    def identity(cls, spatial: int) -> Field:
        """A pixel sees itself, along each of ``spatial`` axes."""
        return cls(tuple(ReceptiveField() for _ in range(spatial)))

    @classmethod
    def unknown_after(cls, problem: CannotFollow) -> Field:
        return cls((), unknown=problem)

    @classmethod
    def whole_input(cls) -> Field:
        """The global field: every output depends on every input pixel."""
        return cls((), is_global=True)

    @property
    def known(self) -> bool:
        """True when the field has numbers (neither global nor unknown)."""
        return not (self.is_global or self.unknown)

    def _numbers(self) -> tuple[ReceptiveField | Spans, ...]:
        if self.unknown:
            raise FieldError(f"the field is unknown: {self.unknown}")
        if self.is_global:
            raise FieldError("the field is global: every output depends on the whole input, "
                             "so it has no size, jump or padding")
        return self.axes

    @property
    def h(self) -> ReceptiveField | Spans:
        return self._numbers()[-2]

    @property
    def w(self) -> ReceptiveField | Spans:
        return self._numbers()[-1]

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(axis.size for axis in self._numbers())

    @property
    def stride(self) -> tuple[int, ...]:
        """The jump per axis: how far apart neighbouring units' fields start."""
        return tuple(axis.stride for axis in self._numbers())

    @property
    def padding(self) -> tuple[int, ...]:
        return tuple(axis.padding for axis in self._numbers())

    def span(self, unit: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """First and last input pixel per axis seen by output ``unit`` (one index per axis)."""
        return tuple(axis.span(i) for axis, i in zip(self._numbers(), unit, strict=True))

    def center(self, unit: Sequence[int]) -> tuple[float, ...]:
        """Input coordinate of the centre of ``unit``'s field, per axis."""
        return tuple(axis.center(i) for axis, i in zip(self._numbers(), unit, strict=True))

    @property
    def per_unit(self) -> bool:
        """True when units see different spans (after upsampling): ``size`` is then the
        largest over units, the jump may be a fraction, and ``span(unit)`` is exact per unit
        at the traced input size (see :mod:`rfviz.spans`)."""
        return any(not isinstance(axis, ReceptiveField) for axis in self._numbers())

    def __str__(self) -> str:
        if self.unknown:
            return "unknown"
        if self.is_global:
            return "global"
        if self.per_unit:
            return f"up to {by(self.size)} px, jump {by(self.stride)}, per unit"
        return f"{by(self.size)} px, jump {by(self.stride)}, padding {by(self.padding)}"


def by(values: tuple) -> str:
    """``'7'`` for (7, 7), ``'7×5'`` for (7, 5): one number where the axes agree (a jump may
    be a fraction: ``'1/2'``)."""
    return "×".join(map(str, values)) if len(set(values)) > 1 else str(values[0])
