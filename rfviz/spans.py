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
from fractions import Fraction
from functools import cached_property

import numpy as np

from .field import ReceptiveField

__all__ = ["Spans", "Window", "copied"]

# The units one output unit reads: a range (its step skips units, as a dilated window does),
# or (first, last) inclusive; None: it reads none.
Window = range | tuple[int, int] | None

_CELLS = 1 << 20  # window cells gathered at once (units × window length), bounding memory


class Spans:
    """The first and last input pixel (inclusive) of every output unit of one axis; ``None``
    for a unit that reads no input pixel (e.g. a dilated transposed convolution's gaps).

    >>> up = Spans.through(ReceptiveField(size=3, stride=2, padding=1),   # conv k3 s2 p1,
    ...                    [(o // 2, o // 2) for o in range(16)], 8)      # then nearest ×2
    >>> up.span(2), up.span(3), up.size, up.stride, up.period             # unit 1: -1+2 … 1+2
    ((1, 3), (1, 3), 3, Fraction(1, 1), 2)

    Held as numpy arrays (first, last, and whether the unit reads any pixel), so that an op
    costs a few array operations whatever the number of units: an HRNet traced at 1440 pixels
    has thousands of them per axis after every upsampling. Immutable, compared by value.
    """

    def __init__(self, pairs: Sequence[tuple[int, int] | None],
                 ratio: Fraction | None = None) -> None:
        """``pairs``: per unit, (first, last) or None; ``ratio``: input pixels per unit,
        from the sizes (see ``stride``)."""
        if not len(pairs):
            raise ValueError("Spans needs at least one unit")
        reads = np.fromiter((pair is not None for pair in pairs), bool, len(pairs))
        first = np.fromiter((pair[0] if pair else 0 for pair in pairs), np.int64, len(pairs))
        last = np.fromiter((pair[1] if pair else 0 for pair in pairs), np.int64, len(pairs))
        self._set(first, last, reads, ratio)

    @classmethod
    def _of(cls, first: np.ndarray, last: np.ndarray, reads: np.ndarray,
            ratio: Fraction | None) -> Spans:
        if not len(reads):
            raise ValueError("Spans needs at least one unit")
        spans = cls.__new__(cls)
        spans._set(first, last, reads, ratio)
        return spans

    def _set(self, first, last, reads, ratio) -> None:
        first, last = np.where(reads, first, 0), np.where(reads, last, 0)  # one value for "none"
        for array in (first, last, reads):
            array.flags.writeable = False
        object.__setattr__(self, "_first", first)
        object.__setattr__(self, "_last", last)
        object.__setattr__(self, "_reads", reads)
        object.__setattr__(self, "ratio", ratio)

    def __setattr__(self, name, value):
        raise AttributeError(f"Spans is immutable: cannot set {name!r}")

    def __repr__(self) -> str:
        return f"Spans(units={len(self)}, size≤{self.size}, jump={self.stride})"

    def __len__(self) -> int:
        return len(self._reads)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Spans):
            return NotImplemented
        return (self.ratio == other.ratio and np.array_equal(self._reads, other._reads)
                and np.array_equal(self._first, other._first)
                and np.array_equal(self._last, other._last))

    def __hash__(self) -> int:
        return hash((self._first.tobytes(), self._last.tobytes(), self._reads.tobytes(),
                     self.ratio))

    def __getstate__(self):
        return self._first, self._last, self._reads, self.ratio

    def __setstate__(self, state) -> None:
        self._set(*(np.array(a) for a in state[:3]), state[3])

    @cached_property
    def pairs(self) -> tuple[tuple[int, int] | None, ...]:
        """Per unit, (first, last) or None, as Python ints."""
        return tuple((first, last) if reads else None for first, last, reads in zip(
            self._first.tolist(), self._last.tolist(), self._reads.tolist(), strict=True))

    @classmethod
    def through(cls, below: ReceptiveField | Spans, windows: Sequence[Window],
                units_below: int) -> Spans:
        """The field after an op whose output unit ``o`` reads units ``windows[o]`` of a
        tensor whose field is ``below`` (``units_below`` long along this axis).

        Units of ``below`` outside ``0 … units_below-1`` are padding: a ``ReceptiveField``
        counts them in its span (as a convolution's field does), a ``Spans`` has none.
        """
        start, count, step = _windows(windows)
        return cls._reach(below, start, count, step, units_below)

    def then(self, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, *,
             units: int) -> Spans:
        """A convolution or pooling window over these units, giving ``units`` outputs."""
        start = np.arange(units, dtype=np.int64) * stride - padding
        return Spans._reach(self, start, np.full(units, kernel, np.int64),
                            np.full(units, dilation, np.int64), len(self))

    @classmethod
    def _reach(cls, below: ReceptiveField | Spans, start: np.ndarray, count: np.ndarray,
               step: np.ndarray, units_below: int) -> Spans:
        """Output unit ``o`` reads units ``start[o] + t*step[o]`` (``t < count[o]``) of
        ``below``: the input pixels they see, first to last."""
        below_jump = below.stride if isinstance(below, ReceptiveField) else below.ratio
        ratio = None if below_jump is None else below_jump * Fraction(units_below, len(start))
        if isinstance(below, ReceptiveField):  # its spans grow with the unit
            reads = count > 0
            first = start * below.stride - below.padding
            last = (start + (count - 1) * step) * below.stride - below.padding + below.size - 1
            return cls._of(first, last, reads, ratio)
        # every unit read: after a reflecting pad, the first need not see the first pixel
        n = min(units_below, len(below))
        big = np.iinfo(np.int64).max
        first = np.full(len(start), big, np.int64)
        last = np.full(len(start), -big, np.int64)
        longest = int(count.max(initial=0))
        rows = max(1, _CELLS // max(longest, 1))
        taps = np.arange(longest, dtype=np.int64)
        for lo in range(0, len(start), rows):  # bounded chunks of (units, taps)
            part = slice(lo, lo + rows)
            units = start[part, None] + taps[None, :] * step[part, None]
            valid = (taps[None, :] < count[part, None]) & (units >= 0) & (units < n)
            safe = np.where(valid, units, 0)
            valid &= below._reads[safe]
            first[part] = np.where(valid, below._first[safe], big).min(axis=1, initial=big)
            last[part] = np.where(valid, below._last[safe], -big).max(axis=1, initial=-big)
        return cls._of(first, last, first != big, ratio)

    @classmethod
    def union(cls, axes: Sequence[ReceptiveField | Spans], units: int) -> Spans:
        """Each of ``units`` units' span over all ``axes`` (the branches a residual addition
        or a concatenation merges; units that read nothing left out), the ratio the first's.

        >>> up = Spans.through(ReceptiveField(), [(o // 2, o // 2) for o in range(4)], 2)
        >>> up.pairs                                        # nearest ×2: unit o sees o // 2
        ((0, 0), (0, 0), (1, 1), (1, 1))
        >>> Spans.union([up, ReceptiveField(size=3, padding=1)], 4).pairs   # and o - 1 … o + 1
        ((-1, 1), (0, 2), (1, 3), (1, 4))
        """
        too_short = [axis for axis in axes if isinstance(axis, Spans) and len(axis) < units]
        if too_short:  # the first unit one of them lacks: as span() says
            min(too_short, key=len).span(min(map(len, too_short)))
        big = np.iinfo(np.int64).max
        first, last = np.full(units, big, np.int64), np.full(units, -big, np.int64)
        for axis in axes:
            if isinstance(axis, ReceptiveField):
                starts = np.arange(units, dtype=np.int64) * axis.stride - axis.padding
                first, last = np.minimum(first, starts), np.maximum(last, starts + axis.size - 1)
            else:
                reads = axis._reads[:units]
                first = np.where(reads, np.minimum(first, axis._first[:units]), first)
                last = np.where(reads, np.maximum(last, axis._last[:units]), last)
        ratio = axes[0].stride if isinstance(axes[0], ReceptiveField) else axes[0].ratio
        return cls._of(first, last, first != big, ratio)

    def span(self, unit: int) -> tuple[int, int] | None:
        """First and last input pixel of output ``unit`` (None if it reads none)."""
        pairs = self.pairs
        if not 0 <= unit < len(pairs):
            raise ValueError(f"unit={unit} is out of range: this axis has {len(pairs)} "
                             f"units at the traced size; valid: 0 ≤ unit ≤ {len(pairs) - 1}")
        return pairs[unit]

    def center(self, unit: int) -> float:
        """Input coordinate of the centre of ``unit``'s span (pixel ``k`` is centred on ``k``)."""
        span = self.span(unit)
        if span is None:
            raise ValueError(f"unit {unit} reads no input pixel: it has no centre")
        return (span[0] + span[1]) / 2

    @cached_property
    def size(self) -> int:
        """The largest span over all units ("up to" this many pixels)."""
        if not self._reads.any():
            raise ValueError("max() arg is an empty sequence")  # as the pairs' max() says
        return int((self._last - self._first + 1)[self._reads].max())

    @cached_property
    def _pattern(self) -> tuple[int | None, int]:
        return _period(self._first, self._last, self._reads)

    @property
    def period(self) -> int | None:
        """How many units the pattern of spans takes to repeat, away from the borders: 2 for
        a stride-2 transposed convolution; None if it does not repeat twice within the table."""
        return self._pattern[0]

    @property
    def shift(self) -> int | None:
        """How many input pixels the spans move over one period (None where no period
        shows): 1 for a stride-2 transposed convolution, 28 for a Swin block's windows of 7
        units 4 pixels apart. Tiles must start on a multiple of it to see the same pattern."""
        period, shift = self._pattern
        return None if period is None else shift

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
        known = np.flatnonzero(self._reads)
        o0, o1 = int(known[0]), int(known[-1])
        f0, f1 = int(self._first[o0]), int(self._first[o1])
        return Fraction(f1 - f0, o1 - o0) if o1 > o0 else Fraction(0)

    @property
    def padding(self) -> int:
        """How far left of pixel 0 unit 0's span starts (its effective padding)."""
        if not self._reads.any():
            raise StopIteration  # as next() over no pair says
        return -int(self._first[np.argmax(self._reads)])


def _windows(windows: Sequence[Window]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each window as (start, count, step): ``range(2, 9, 3)`` -> (2, 3, 3), ``(4, 6)`` ->
    (4, 3, 1), None -> (0, 0, 1)."""
    start = np.zeros(len(windows), np.int64)
    count = np.zeros(len(windows), np.int64)
    step = np.ones(len(windows), np.int64)
    for o, window in enumerate(windows):
        if window is None:
            continue
        if isinstance(window, range):
            if window:
                start[o], count[o], step[o] = window.start, len(window), window.step
        elif window[1] >= window[0]:
            start[o], count[o] = window[0], window[1] - window[0] + 1
    return start, count, step


def _period(first: np.ndarray, last: np.ndarray, reads: np.ndarray) -> tuple[int | None, int]:
    """The smallest period of the spans in the middle half of the table (borders left out:
    padding and clamping cut spans short there) and how far the spans move per period; the
    pattern must repeat at least twice. The smallest period of the steps from unit to unit
    (those of units that read nothing marked apart), tried shift by shift as whole arrays."""
    n = len(reads)
    middle = slice(n // 4, n - n // 4)
    first, last, reads = first[middle], last[middle], reads[middle]
    known = np.flatnonzero(reads)
    if len(reads) < 4 or len(known) < 2:
        return None, 0
    # per unit after the first that reads pixels: how far its span moved from the last one
    # that did; a unit that reads none gets a step no span can make
    previous = np.maximum.accumulate(np.where(reads, np.arange(len(reads)), -1))
    units = np.arange(known[0] + 1, len(reads))
    before = previous[units - 1]
    steps = np.stack([first[units] - first[before], last[units] - last[before]], axis=1)
    steps[~reads[units]] = np.iinfo(np.int64).min
    length = len(steps)
    for period in range(1, length // 2 + 1):
        if np.array_equal(steps[period:], steps[:-period]):
            moved = steps[:period, 0][reads[units[:period]]]
            shift = int(moved.sum())
            return (period, shift) if shift > 0 else (None, 0)
    return None, 0


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
