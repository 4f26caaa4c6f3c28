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

__all__ = ["Spans", "Window", "copied"]

# The units one output unit reads: a range (its step skips units, as a dilated window does),
# or (first, last) inclusive; None: it reads none.
Window = range | tuple[int, int] | None


@dataclass(frozen=True, repr=False, eq=True)
class Spans:
    """The first and last input pixel (inclusive) of every output unit of one axis; ``None``
    for a unit that reads no input pixel (e.g. a dilated transposed convolution's gaps).

    >>> up = Spans.through(ReceptiveField(size=3, stride=2, padding=1),   # conv k3 s2 p1,
    ...                    [(o // 2, o // 2) for o in range(16)], 8)      # then nearest ×2
    >>> up.span(2), up.span(3), up.size, up.stride, up.period             # unit 1: -1+2 … 1+2
    ((1, 3), (1, 3), 3, Fraction(1, 1), 2)
    """

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
        extent = dilation * (kernel - 1) + 1
        windows = [range(o * stride - padding, o * stride - padding + extent, dilation)
                   for o in range(units)]
        return Spans.through(self, windows, len(self))

    def span(self, unit: int) -> tuple[int, int] | None:
        """First and last input pixel of output ``unit`` (None if it reads none)."""
        if not 0 <= unit < len(self.pairs):
            raise ValueError(f"unit={unit} is out of range: this axis has {len(self.pairs)} "
                             f"units at the traced size; valid: 0 ≤ unit ≤ {len(self.pairs) - 1}")
        return self.pairs[unit]

    def center(self, unit: int) -> float:
        """Input coordinate of the centre of ``unit``'s span (pixel ``k`` is centred on ``k``)."""
        span = self.span(unit)
        if span is None:
            raise ValueError(f"unit {unit} reads no input pixel: it has no centre")
        return (span[0] + span[1]) / 2

    @cached_property
    def size(self) -> int:
        """The largest span over all units ("up to" this many pixels)."""
        return max(last - first + 1 for first, last in filter(None, self.pairs))

    @cached_property
    def _pattern(self) -> tuple[int | None, int]:
        return _period(self.pairs)

    @property
    def period(self) -> int | None:
        """How many units the pattern of spans takes to repeat, away from the borders: 2 for
        a stride-2 transposed convolution; None if it does not repeat twice within the table."""
        return self._pattern[0]

    @property
    def stride(self) -> Fraction:
        """The jump: input pixels per unit, a fraction where units share pixels in turns
        (1/2 after upsampling by 2): how far the spans move over one period, away from the
        borders. Where no period shows (a field wider than the traced image is cut by its
        borders everywhere), the ratio of the sizes: each op's input units per output unit,
        multiplied down the network."""
        period, shift = self._pattern
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
    units = window if isinstance(window, range) else range(window[0], window[1] + 1)
    if not units:
        return None
    if isinstance(below, ReceptiveField):  # its spans grow with the unit
        return below.span(units[0])[0], below.span(units[-1])[1]
    # every unit read: after a reflecting pad, the first need not see the first pixel
    spans = [below.pairs[u] for u in units if 0 <= u < units_below and below.pairs[u]]
    return (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None


def _period(pairs: tuple[Window, ...]) -> tuple[int | None, int]:
    """The smallest period of the spans in the middle half of the table (borders left out:
    padding and clamping cut spans short there) and how far the spans move per period; the
    pattern must repeat at least twice. Linear time: the smallest period of the steps from
    unit to unit, from the longest border of that sequence (Knuth–Morris–Pratt)."""
    middle = pairs[len(pairs) // 4:len(pairs) - len(pairs) // 4]
    known = [pair for pair in middle if pair]
    if len(middle) < 4 or len(known) < 2:
        return None, 0
    # per unit after the first that reads pixels: how far its span moved from the last one
    # that did (None: it reads none)
    start = middle.index(known[0])
    steps, previous = [], known[0]
    for pair in middle[start + 1:]:
        steps.append(pair and (pair[0] - previous[0], pair[1] - previous[1]))
        previous = pair or previous
    border = [0] * len(steps)
    for i in range(1, len(steps)):
        k = border[i - 1]
        while k and steps[i] != steps[k]:
            k = border[k - 1]
        border[i] = k + (steps[i] == steps[k])
    period = len(steps) - border[-1]
    shift = sum(step[0] for step in steps[:period] if step)
    if 2 * period > len(steps) or shift <= 0:  # shift 0: every span cut to the same borders
        return None, 0
    return period, shift


def copied(mode: str, index: int, n: int) -> int:
    """The input unit a copying pad puts at ``index`` (−1 is the first unit left of the input).

    >>> [copied("reflect", i, 4) for i in range(-2, 6)]
    [2, 1, 0, 1, 2, 3, 2, 1]
    """
    if mode == "replicate":
        return min(max(index, 0), n - 1)
    if mode == "circular":
        return index % n
    period = 2 * (n - 1)  # reflect: ... 2 1 [0 1 2 3] 2 1 0 1 ...
    index %= period
    return index if index < n else period - index
