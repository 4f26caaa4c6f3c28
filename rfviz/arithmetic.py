"""Output-size arithmetic for convolution and pooling, on plain ints (no torch).

Everything here works on one axis: pass the height and the width separately.
``padding`` is **per side**, as in PyTorch (``padding=1`` adds one pixel on the
left *and* one on the right). Every function computes exactly what torch computes,
and refuses what torch refuses, with a ``ValueError`` that names the parameter,
its value and the valid range.

>>> conv_output_size(224, kernel=7, stride=2, padding=3)   # resnet's conv1: (224+6-7)//2 + 1
112
"""

from __future__ import annotations

import operator

__all__ = [
    "conv_output_size",
    "conv_transpose_output_size",
    "check_output_padding",
    "effective_kernel",
    "explain_conv_transpose_output_size",
    "explain_output_size",
    "pool_output_size",
    "same_padding",
]


def _check_int(name: str, value: object, minimum: int | None) -> int:
    """Return ``value`` as an int, or raise naming ``name``, the value and the valid range
    (``minimum=None``: any int)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name}={number} is out of range: {name} must be ≥ {minimum}")
    return number


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Pixels one window covers: ``dilation * (kernel - 1) + 1``.

    >>> effective_kernel(3, dilation=2)   # taps at 0, 2, 4
    5
    """
    kernel = _check_int("kernel", kernel, 1)
    dilation = _check_int("dilation", dilation, 1)
    return dilation * (kernel - 1) + 1


def _kernel_words(kernel: int, dilation: int, span: int) -> str:
    if dilation == 1:
        return f"kernel={kernel} spans {span} pixels"
    return f"kernel={kernel} with dilation={dilation} spans {span} pixels"


def conv_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of a convolution (or pooling) along one axis, exactly as torch gives it.

        O = floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1

    With ``ceil_mode=True`` (pooling only) the floor becomes a ceiling, except that a
    last window that would *start* in the right padding is dropped. In that mode torch
    also accepts a window longer than the padded input.

    >>> conv_output_size(224, kernel=11)                       # 224 - 11 + 1
    214
    >>> conv_output_size(224, kernel=4, stride=4)              # (224 - 4) // 4 + 1
    56
    >>> conv_output_size(25, kernel=2, stride=2)               # the 25th column is never read
    12
    >>> conv_output_size(25, kernel=2, stride=2, ceil_mode=True)
    13
    >>> conv_output_size(3, kernel=7, padding=1)
    Traceback (most recent call last):
    ...
    ValueError: kernel=7 spans 7 pixels but the padded input has only 5 (size=3, padding=1); \
valid: kernel ≤ 5
    """
    size = _check_int("size", size, 1)
    stride = _check_int("stride", stride, 1)
    padding = _check_int("padding", padding, 0)
    span = effective_kernel(kernel, dilation)
    padded = size + 2 * padding
    if ceil_mode:
        out = -((span - padded) // stride) + 1  # ceil((padded - span) / stride) + 1
        if (out - 1) * stride >= size + padding:  # the last window starts in the right padding
            out -= 1
        longest = padded + stride - 1
    else:
        out = (padded - span) // stride + 1
        longest = padded
    if out < 1:
        biggest_kernel = (longest - 1) // dilation + 1
        mode = " with ceil_mode" if ceil_mode else ""
        raise ValueError(
            f"{_kernel_words(kernel, dilation, span)} but the padded input has only {padded} "
            f"(size={size}, padding={padding}); valid{mode}: kernel ≤ {biggest_kernel}"
        )
    return out


def pool_output_size(
    size: int,
    kernel: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of ``MaxPool`` / ``AvgPool`` along one axis.

    As :func:`conv_output_size`, with pooling's two differences: ``stride`` defaults to
    ``kernel``, and torch refuses ``padding`` larger than ``kernel // 2`` (its rule; with it,
    at least half of every window holds real pixels, as lesson 01 checks).

    >>> pool_output_size(112, kernel=3, stride=2, padding=1)   # resnet's maxpool
    56
    >>> pool_output_size(7, kernel=2)                          # stride defaults to the kernel
    3
    >>> pool_output_size(8, kernel=3, padding=2)
    Traceback (most recent call last):
    ...
    ValueError: padding=2 is out of range for kernel=3: valid for pooling: padding ≤ kernel // 2 = 1
    """
    kernel = _check_int("kernel", kernel, 1)
    stride = kernel if stride is None else stride
    padding = _check_int("padding", padding, 0)
    if padding > kernel // 2:
        raise ValueError(
            f"padding={padding} is out of range for kernel={kernel}: "
            f"valid for pooling: padding ≤ kernel // 2 = {kernel // 2}"
        )
    return conv_output_size(size, kernel, stride, padding, dilation, ceil_mode)


def conv_transpose_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    """Output length of ``ConvTranspose`` along one axis.

        O = (size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1

    Here ``padding`` *crops* the output on each side; it does not pad the input.
    ``output_padding`` adds pixels on one side and must be smaller than the stride
    or the dilation.

    >>> conv_transpose_output_size(7, kernel=4, stride=2, padding=1)   # 6*2 - 2 + 3 + 1: doubles
    14
    """
    size = _check_int("size", size, 1)
    stride = _check_int("stride", stride, 1)
    padding = _check_int("padding", padding, 0)
    output_padding = _check_int("output_padding", output_padding, 0)
    span = effective_kernel(kernel, dilation)
    check_output_padding(output_padding, stride, dilation)
    uncropped = (size - 1) * stride + span + output_padding
    out = uncropped - 2 * padding
    if out < 1:
        raise ValueError(
            f"padding={padding} crops {2 * padding} pixels from an output of {uncropped} "
            f"(size={size}, kernel={kernel}, stride={stride}); "
            f"valid: padding ≤ {(uncropped - 1) // 2}"
        )
    return out


def check_output_padding(output_padding: int, stride: int, dilation: int) -> int:
    """Return ``output_padding``, or raise as torch does unless it is smaller than the
    stride or the dilation (torch's rule for ``ConvTranspose``).

    >>> check_output_padding(2, stride=2, dilation=1)
    Traceback (most recent call last):
    ...
    ValueError: output_padding=2 is out of range: it must be smaller than stride=2 or \
dilation=1; valid: output_padding ≤ 1
    """
    output_padding = _check_int("output_padding", output_padding, 0)
    if output_padding >= max(stride, dilation):
        raise ValueError(
            f"output_padding={output_padding} is out of range: it must be smaller than "
            f"stride={stride} or dilation={dilation}; valid: output_padding ≤ "
            f"{max(stride, dilation) - 1}"
        )
    return output_padding


def same_padding(kernel: int, dilation: int = 1) -> tuple[int, int]:
    """Padding (left, right) that keeps the size at stride 1, as torch's ``padding='same'``.

    The total is ``dilation * (kernel - 1)``. An even kernel needs an odd total, so the
    two sides differ, and torch (like TensorFlow's SAME) puts the extra pixel on the right.
    An integer ``padding=`` is symmetric and cannot express that.

    >>> same_padding(3)
    (1, 1)
    >>> same_padding(4)      # total 3: one left, two right
    (1, 2)
    >>> same_padding(3, dilation=2)
    (2, 2)
    """
    total = effective_kernel(kernel, dilation) - 1
    return total // 2, total - total // 2


def explain_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> str:
    """The output-size formula with the numbers filled in, for a readout.

    >>> explain_output_size(7, kernel=3, stride=2, padding=1)
    'O = ⌊(7 + 2·1 − 1·(3−1) − 1) / 2⌋ + 1 = ⌊6 / 2⌋ + 1 = 4'
    >>> explain_output_size(25, kernel=2, stride=2, ceil_mode=True)
    'O = ⌈(25 + 2·0 − 1·(2−1) − 1) / 2⌉ + 1 = ⌈23 / 2⌉ + 1 = 13'
    """
    out = conv_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    numerator = size + 2 * padding - dilation * (kernel - 1) - 1
    left, right = ("⌈", "⌉") if ceil_mode else ("⌊", "⌋")
    text = (
        f"O = {left}({size} + 2·{padding} − {dilation}·({kernel}−1) − 1) / {stride}{right} + 1"
        f" = {left}{numerator} / {stride}{right} + 1"
    )
    plain = (-(-numerator // stride) if ceil_mode else numerator // stride) + 1
    if plain != out:
        return f"{text} = {plain}, but window {plain} would start in the right padding: O = {out}"
    return f"{text} = {out}"


def explain_conv_transpose_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> str:
    """The transposed convolution's output-size formula with the numbers filled in.

    >>> explain_conv_transpose_output_size(7, kernel=4, stride=2, padding=1)
    'O = (7−1)·2 − 2·1 + 1·(4−1) + 0 + 1 = 12 − 2 + 3 + 0 + 1 = 14'
    >>> explain_conv_transpose_output_size(3, kernel=3, stride=2, output_padding=1)
    'O = (3−1)·2 − 2·0 + 1·(3−1) + 1 + 1 = 4 − 0 + 2 + 1 + 1 = 8'
    """
    out = conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation)
    return (
        f"O = ({size}−1)·{stride} − 2·{padding} + {dilation}·({kernel}−1) + {output_padding} + 1"
        f" = {(size - 1) * stride} − {2 * padding} + {dilation * (kernel - 1)} + {output_padding}"
        f" + 1 = {out}"
    )
