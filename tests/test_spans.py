"""rfviz.spans: per-unit spans held as numpy arrays, against the plain per-unit definition
(written out below, as rfviz computed it before) and against torch's gradients."""

from __future__ import annotations

import copy
import pickle
import random
from fractions import Fraction

import pytest
import torch
from builders import assert_every_unit_exact
from torch import nn

from rfviz import receptive_field
from rfviz.field import ReceptiveField
from rfviz.spans import Spans

# --- the definition, one unit at a time ---------------------------------------------------------


def reach(below, window, units_below):
    """The first and last pixel that units ``window`` of ``below`` see (None: none)."""
    if window is None:
        return None
    units = window if isinstance(window, range) else range(window[0], window[1] + 1)
    if not units:
        return None
    if isinstance(below, ReceptiveField):
        return below.span(units[0])[0], below.span(units[-1])[1]
    spans = [below[u] for u in units if 0 <= u < units_below and below[u]]
    return (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None


def period(pairs):
    """The smallest period of the steps from unit to unit in the middle half (units that read
    nothing apart), if it repeats twice, and how far the spans move over it."""
    middle = pairs[len(pairs) // 4:len(pairs) - len(pairs) // 4]
    known = [pair for pair in middle if pair]
    if len(middle) < 4 or len(known) < 2:
        return None, 0
    steps, previous = [], known[0]
    for pair in middle[middle.index(known[0]) + 1:]:
        steps.append(pair and (pair[0] - previous[0], pair[1] - previous[1]))
        previous = pair or previous
    for p in range(1, len(steps) // 2 + 1):
        if steps[p:] == steps[:-p]:
            shift = sum(step[0] for step in steps[:p] if step)
            return (p, shift) if shift > 0 else (None, 0)
    return None, 0


def random_windows(rng, units, units_below):
    windows = []
    for _ in range(units):
        r, start = rng.random(), rng.randint(-3, units_below + 2)
        if r < 0.1:
            windows.append(None)
        elif r < 0.5:
            windows.append((start, start + rng.randint(-1, 4)))
        else:
            step = rng.choice([1, 1, 2, 3, -1])
            windows.append(range(start, start + step * rng.randint(0, 4), step))
    return windows


def upsampled(rng, units_below):
    factor = rng.choice([2, 3])
    return [(o // factor,) * 2 if rng.random() < 0.95 else None
            for o in range(units_below * factor)]


def assert_as_defined(spans: Spans, pairs: list, ratio) -> None:
    assert spans.pairs == tuple(pairs) and len(spans) == len(pairs) and spans.ratio == ratio
    assert [spans.span(u) for u in range(len(pairs))] == pairs
    known = [p for p in pairs if p]
    if known:
        assert spans.size == max(b - a + 1 for a, b in known)
        assert spans.padding == -known[0][0]
    p, shift = period(pairs)
    assert spans.period == p
    if p is not None:
        assert spans.stride == Fraction(shift, p)
    elif ratio is not None:
        assert spans.stride == ratio


def test_every_op_gives_each_units_span_as_defined():
    rng = random.Random(0)
    checked = 0
    for _ in range(1500):
        field = ReceptiveField(rng.randint(1, 9), rng.randint(1, 4), rng.randint(-2, 5))
        n = rng.randint(1, 40)
        windows = upsampled(rng, n) if rng.random() < 0.5 else random_windows(
            rng, rng.randint(1, 60), n)
        pairs = [reach(field, w, n) for w in windows]
        ratio = field.stride * Fraction(n, len(windows))
        spans = Spans.through(field, windows, n)
        assert_as_defined(spans, pairs, ratio)
        for _ in range(rng.randint(1, 4)):
            if not any(pairs):
                break
            if rng.random() < 0.5:  # a window of kernel k, stride s, padding p, dilation d
                k, s, p, d = (rng.randint(1, 5), rng.randint(1, 3), rng.randint(0, 3),
                              rng.randint(1, 2))
                units = max(1, (len(pairs) + 2 * p - d * (k - 1) - 1) // s + 1)
                windows = [range(o * s - p, o * s - p + d * (k - 1) + 1, d)
                           for o in range(units)]
                spans = spans.then(k, s, p, d, units=units)
            else:
                windows = random_windows(rng, rng.randint(1, 80), len(pairs))
                spans = Spans.through(spans, windows, len(pairs))
            ratio *= Fraction(len(pairs), len(windows))
            pairs = [reach(pairs, w, len(pairs)) for w in windows]
            assert_as_defined(spans, pairs, ratio)
            checked += 1
    assert checked > 3000


def test_the_union_of_branches_is_each_units_widest_span():
    rng = random.Random(1)
    for _ in range(500):
        units = rng.randint(1, 30)
        axes = []
        for _ in range(rng.randint(1, 4)):
            field = ReceptiveField(rng.randint(1, 9), rng.randint(1, 4), rng.randint(-2, 5))
            axes.append(field if rng.random() < 0.4 else Spans.through(
                field, random_windows(rng, units, 10), 10))
        pairs = []
        for o in range(units):
            spans = [s for axis in axes if (s := axis.span(o)) is not None]
            pairs.append((min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None)
        first = axes[0]
        ratio = first.stride if isinstance(first, ReceptiveField) else first.ratio
        assert Spans.union(axes, units) == Spans(pairs, ratio)


def test_a_branch_shorter_than_the_merge_is_refused_as_span_refuses():
    up = Spans.through(ReceptiveField(), [(o // 2, o // 2) for o in range(6)], 3)
    with pytest.raises(ValueError, match=r"unit=6 is out of range: this axis has 6 units"):
        Spans.union([ReceptiveField(), up], 8)


def test_equal_spans_are_equal_hash_alike_and_survive_copies():
    up = Spans.through(ReceptiveField(3, 2, 1), [(o // 2, o // 2) for o in range(16)], 8)
    again = Spans(list(up.pairs), up.ratio)
    assert up == again and hash(up) == hash(again)
    assert up != Spans(list(up.pairs), Fraction(1, 3))
    assert up != Spans([*up.pairs[:-1], None], up.ratio)
    for copied in (pickle.loads(pickle.dumps(up)), copy.deepcopy(up)):
        assert copied == up and copied.stride == up.stride
    with pytest.raises(AttributeError, match="immutable"):
        up.ratio = Fraction(2)
    with pytest.raises(ValueError, match="at least one unit"):
        Spans([])


def test_a_long_table_is_followed_in_whole_arrays():
    # nearest x2 of 100,000 units, then a 3-wide window: 200,000 spans, period 2
    up = Spans.through(ReceptiveField(3, 2, 1), [(o // 2,) * 2 for o in range(200_000)], 100_000)
    conv = up.then(3, padding=1, units=200_000)
    assert (conv.period, conv.stride, conv.size) == (2, Fraction(1), 5)
    # conv unit 100,001 reads up units 100,000 … 100,002: the field's units 50,000 and 50,001,
    # which see 2·50,000 − 1 … 2·50,001 − 1 + 3 − 1
    assert conv.span(100_001) == (99_999, 100_003)


# --- against torch's gradients ------------------------------------------------------------------


def random_decoder(rng) -> nn.Module:
    """Convolutions, pools, transposed convolutions, upsampling, copying pads and a skip
    connection around an upsampling branch, on one axis."""
    layers = []
    for _ in range(rng.randint(2, 5)):
        kind = rng.choice(["conv", "pool", "transposed", "nearest", "linear", "reflect"])
        if kind == "conv":
            k = rng.randint(1, 5)
            layers.append(nn.Conv1d(2, 2, k, rng.randint(1, 2), rng.randint(0, k // 2),
                                    rng.randint(1, 2)))
        elif kind == "pool":
            layers.append(nn.AvgPool1d(2, 2))
        elif kind == "transposed":
            k, s = rng.randint(1, 4), rng.randint(1, 3)
            layers.append(nn.ConvTranspose1d(2, 2, k, s, rng.randint(0, (k - 1) // 2)))
        elif kind == "nearest":
            layers.append(nn.Upsample(scale_factor=rng.choice([2, 3])))
        elif kind == "linear":
            layers.append(nn.Upsample(scale_factor=2, mode="linear", align_corners=False))
        else:
            layers.append(nn.ReflectionPad1d(rng.randint(1, 2)))
    return nn.Sequential(*layers, Skip())


class Skip(nn.Module):
    """x + up(pool(x)): each unit's union of two branches, one of them per unit."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool1d(2, 2)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, x):
        down = self.up(self.pool(x))
        return x[..., :down.shape[-1]] + down


@pytest.mark.filterwarnings("ignore::rfviz.RfvizWarning")
def test_random_decoders_every_unit_is_the_gradients():
    rng = random.Random(3)
    checked = 0
    while checked < 25:
        net = random_decoder(rng)
        try:  # long enough for a few units whose span lies inside the input
            field = receptive_field(net, None, (32,))
            size = 32 + 3 * field.size[0]
            with torch.no_grad():
                net(torch.zeros(1, 2, size))
        except (RuntimeError, ValueError):  # a random stack that does not fit
            continue
        if not field.per_unit or size > 300:
            continue
        assert_every_unit_exact(net, (1, 2, size))
        checked += 1
