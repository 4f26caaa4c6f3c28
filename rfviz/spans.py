"""Fields that depend on the unit: the exact span of every output unit along one axis.

A convolution's units all see the same number of pixels, one jump apart: three numbers
(:class:`~rfviz.field.ReceptiveField`) describe every unit. After upsampling they do not. A
transposed convolution of kernel 3 and stride 2 gives its even outputs one input pixel and
its odd outputs two (the checkerboard); bilinear upsampling by 2 gives every output two pixels,
but neighbouring outputs share them in turns, so the field moves half a pixel per unit.
:class:`Spans` holds, for each output unit of one axis at the traced input size, the first and
last input pixel it sees:

>>> up = Spans.through(ReceptiveField(), [(o // 2, o // 2) for o in range(6)], 3)  # nearest ×2
>>> up.span(0), up.span(1), up.span(2), up.stride
((0, 0), (0, 0), (1, 1), Fraction(1, 2))
>>> conv = up.then(kernel=3, padding=1, units=6)       # a 3-wide conv after it sees 2 pixels
>>> [conv.span(o) for o in range(6)], conv.size
([(0, 0), (0, 1), (0, 1), (1, 2), (1, 2), (2, 2)], 2)

A unit at the border whose window reaches into padding sees fewer real pixels, so the size
of a table of spans is "up to": the largest over units. (A ``ReceptiveField`` counts padding
units as if the pattern went on; that is harmless while they map to pixels outside the
image, but not after a crop, which is why crops give spans too.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

from .field import ReceptiveField

__all__ = ["Spans", "Window"]

Window = tuple[int, int] | None  # first and last unit read (inclusive); None: reads none


@dataclass(frozen=True, repr=False, eq=True)
class Spans:
    """The first and last input pixel (inclusive) of every output unit of one axis; ``None``
    for a unit that reads no input pixel (e.g. a dilated transposed convolution's gaps)."""

    pairs: tuple[Window, ...]
    ratio: Fraction | None = None  # input pixels per unit, from the sizes (see ``stride``)

    def __post_init__(self) -> None:
        if not self.pairs:
            raise ValueError("Spans needs at least one unit")

    def __repr__(self) -> str:
        return f"Spans(units={len(self.pairs)}, size≤{self.size}, jump={self.stride})"

    def __len__(self) -> int:
        return len(self.pairs)

    @classmethod
    def through(cls, below: ReceptiveField | Spans, windows: Sequence[Window],
                units_below: int) -> Spans:
        """The field after an op whose output unit ``o`` reads units ``windows[o]`` of a
        tensor whose field is ``below`` (``units_below`` long along this axis).

        Units of ``below`` outside ``0 … units_below-1`` are padding: a ``ReceptiveField``
        counts them in its span (as a convolution's field does), a ``Spans`` has none.
        """
        below_jump = below.stride if isinstance(below, ReceptiveField) else below.ratio
        ratio = None if below_jump is None else below_jump * Fraction(units_below, len(windows))
        return cls(tuple(_reach(below, window, units_below) for window in windows), ratio)

    def then(self, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, *,
             units: int) -> Spans:
        """A convolution or pooling window over these units, giving ``units`` outputs."""
        reach = dilation * (kernel - 1)
        windows = [(o * stride - padding, o * stride - padding + reach) for o in range(units)]
        return Spans.through(self, windows, len(self))

    def span(self, unit: int) -> tuple[int, int] | None:
        """First and last input pixel of output ``unit`` (None if it reads none)."""
        if not 0 <= unit < len(self.pairs):
            raise ValueError(f"unit={unit} is out of range: this axis has {len(self.pairs)} "
                             f"units at the traced size; valid: 0 ≤ unit ≤ {len(self.pairs) - 1}")
        return self.pairs[unit]

    def center(self, unit: int) -> float:
        span = self.span(unit)
        if span is None:
            raise ValueError(f"unit {unit} reads no input pixel: it has no centre")
        return (span[0] + span[1]) / 2

    @cached_property
    def size(self) -> int:
        """The largest span over all units ("up to" this many pixels)."""
        return max(last - first + 1 for first, last in filter(None, self.pairs))

    @cached_property
    def period(self) -> int | None:
        """How many units the pattern of spans takes to repeat, away from the borders: 2 for
        a stride-2 transposed convolution; None if it does not repeat within the table."""
        return _period(self.pairs)[0]

    @cached_property
    def stride(self) -> Fraction:
        """The jump: input pixels per unit, a fraction where units share pixels in turns
        (1/2 after upsampling by 2): how far the spans move over one period, away from the
        borders. Where no period shows (a field wider than the traced image is cut by its
        borders everywhere), the ratio of the sizes: each op's input units per output unit,
        multiplied down the network."""
        period, shift = _period(self.pairs)
        if period is not None:
            return Fraction(shift, period)
        if self.ratio is not None:
            return self.ratio
        known = [(o, pair[0]) for o, pair in enumerate(self.pairs) if pair]
        (o0, f0), (o1, f1) = known[0], known[-1]
        return Fraction(f1 - f0, o1 - o0) if o1 > o0 else Fraction(0)

    @property
    def padding(self) -> int:
        """How far left of pixel 0 unit 0's span starts (its effective padding)."""
        first = next(pair for pair in self.pairs if pair)
        return -first[0]


def _reach(below: ReceptiveField | Spans, window: Window, units_below: int) -> Window:
    """The input pixels that units ``window`` of ``below`` see, first to last."""
    if window is None:
        return None
    low, high = window
    if isinstance(below, ReceptiveField):
        return below.span(low)[0], below.span(high)[1]
    # every unit of the window: after a reflecting pad, the first need not see the first pixel
    spans = [span for span in below.pairs[max(low, 0):min(high, units_below - 1) + 1] if span]
    return (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None


def _period(pairs: tuple[Window, ...]) -> tuple[int | None, int]:
    """The smallest period of the spans in the middle half of the table, and how far the
    spans move per period. Borders are left out: there, padding and clamping cut spans short."""
    n = len(pairs)
    middle = range(n // 4, n - n // 4)
    for period in range(1, len(middle) // 2 + 1):
        shifts = {_shift(pairs[o], pairs[o + period]) for o in middle
                  if o + period in middle and (pairs[o] or pairs[o + period])}
        if len(shifts) == 1 and None not in shifts:
            return period, shifts.pop()
    return None, 0


def _shift(a: Window, b: Window) -> int | None:
    if a is None or b is None:
        return None
    return b[0] - a[0] if b[1] - a[1] == b[0] - a[0] else None

