"""Builders the tests share: 1D torch stacks of rfviz layers, their gradient support (torch
as the oracle of a field), random small stacks, every unit's span checked against the
gradients of a linear network, and tiled-vs-whole errors."""

from __future__ import annotations

import dataclasses
import itertools
import random

import torch
from torch import nn

from rfviz.field import Layer, layer_sizes


def torch_stack_1d(layers: list[Layer]) -> nn.Sequential:
    """The layers as torch modules on one channel, float64. Convolutions, transposed ones
    too, get positive weights (no cancellation to exactly zero); pools become average pools,
    which spread their gradient over the whole window."""
    modules = []
    for layer in layers:
        if layer.op == "conv":
            conv = nn.Conv1d(1, 1, layer.kernel, layer.stride, layer.padding, layer.dilation,
                             dtype=torch.float64)
            nn.init.uniform_(conv.weight, 0.1, 1.0)
            modules.append(conv)
        elif layer.op == "transposed":
            conv = nn.ConvTranspose1d(1, 1, layer.kernel, layer.stride, layer.padding,
                                      layer.output_padding, dilation=layer.dilation,
                                      dtype=torch.float64)
            nn.init.uniform_(conv.weight, 0.1, 1.0)
            modules.append(conv)
        else:
            modules.append(nn.AvgPool1d(layer.kernel, layer.stride, layer.padding,
                                        ceil_mode=layer.ceil_mode))
    return nn.Sequential(*modules)


def gradient_support(stack: nn.Module, size: int, unit: int, seeds=range(3)) -> set[int]:
    """Input pixels whose gradient for output ``unit`` is nonzero, over random inputs (and
    random positive weights) for each seed."""
    support: set[int] = set()
    for seed in seeds:
        torch.manual_seed(seed)
        for module in stack:
            if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
                nn.init.uniform_(module.weight, 0.1, 1.0)
        x = torch.rand(1, 1, size, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(stack(x)[0, 0, unit], x)
        support |= set(torch.nonzero(grad[0, 0]).flatten().tolist())
    return support


def random_layers(rng: random.Random, *, pool_share: float = 0.3, dilation: bool = True,
                  ceil_mode: bool = True) -> list[Layer]:
    """One to four random layers: convolutions (kernel 1–5, stride 1–3, padding 0–2, dilation
    1–3 if ``dilation``) and, with probability ``pool_share``, average pools (kernel 1–4,
    padding ≤ kernel // 2, ``ceil_mode`` at random if allowed)."""
    layers = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < pool_share:
            kernel = rng.randint(1, 4)
            layers.append(Layer(kernel, rng.randint(1, 3), rng.randint(0, kernel // 2),
                                op="avgpool", ceil_mode=ceil_mode and rng.random() < 0.5))
        else:
            layers.append(Layer(rng.randint(1, 5), rng.randint(1, 3), rng.randint(0, 2),
                                rng.randint(1, 3) if dilation else 1))
    return layers


def fitting_cases(make_layers, sizes: tuple[int, int], count: int, seed: int,
                  max_output: int | None = None):
    """``count`` (layers, size) pairs: random stacks from ``make_layers(rng)`` on a random
    size in ``sizes``, kept only where every layer fits (and the output is at most
    ``max_output`` long)."""
    rng = random.Random(seed)
    while count:
        layers, size = make_layers(rng), rng.randint(*sizes)
        try:
            out = layer_sizes(layers, size)[-1]
        except ValueError:
            continue
        if max_output is None or out <= max_output:
            count -= 1
            yield layers, size


# --- every unit's span against the gradients of a linear network ----------------------------


def positive(model: nn.Module) -> nn.Module:
    """float64, eval, weights positive and biases zero: on inputs ≥ 0 every ReLU passes its
    input, so the network is a linear map there in which no sum of paths cancels to zero."""
    model = model.double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.uniform_(0.1, 1.0) if name.endswith("weight") else p.zero_()
    return model


def gradient_spans(model: nn.Module, shape) -> dict[tuple[int, ...], tuple]:
    """Every output unit's bounding box, per spatial axis, of the input pixels its gradient
    reaches (None per axis where it reaches none).

    The model is linear on inputs ≥ 0, so its output for an input that is 1 on slab ``r``
    of an axis (row ``r``, for the height) and 0 elsewhere is the sum of the Jacobian's
    columns of that slab: nonzero at a unit exactly when the unit's gradient reaches the slab.
    One batched pass per axis.
    """
    spatial = tuple(shape[2:])
    per_axis = []
    for axis, n in enumerate(spatial):
        probes = torch.zeros(n, shape[1], *spatial, dtype=torch.float64)
        for r in range(n):
            probes[(r, slice(None), *(r if a == axis else slice(None)
                                      for a in range(len(spatial))))] = 1.0
        with torch.no_grad():
            reached = model(probes).ne(0).any(1)  # (slab, *out_spatial)
        first = reached.int().argmax(0)
        last = n - 1 - reached.flip(0).int().argmax(0)
        per_axis.append((reached.any(0), first, last))
    units = itertools.product(*map(range, per_axis[0][0].shape))
    return {unit: tuple((int(first[unit]), int(last[unit])) if any_[unit] else None
                        for any_, first, last in per_axis) for unit in units}


def inside(span, size) -> bool:
    return span is None or (span[0] >= 0 and span[1] <= size - 1)


def assert_every_unit_exact(model: nn.Module, shape, *, periods: int = 1):
    """The traced field's span of every output unit whose span lies inside the input is the
    gradient's, and those units include ``periods`` whole periods of every axis.

    (At the border a field's span may be longer than the gradient's: a field counts padding
    units as pixels, and a convolution may drop the image's last pixels, so padding past the
    end stands where pixels the field counts were never read.)
    """
    from rfviz import receptive_field

    model = positive(model)
    field = receptive_field(model, None, tuple(shape[2:]))
    measured = gradient_spans(model, shape)
    checked = [set() for _ in shape[2:]]
    for unit, spans in measured.items():
        predicted = tuple(axis.span(i) for axis, i in zip(field.axes, unit, strict=True))
        if not all(inside(p, n) for p, n in zip(predicted, shape[2:], strict=True)):
            continue
        assert predicted == spans, f"unit {unit}: rfviz {predicted}, gradient {spans}"
        for axis, i in enumerate(unit):
            checked[axis].add(i)
    for axis, units in zip(field.axes, checked, strict=True):
        period = getattr(axis, "period", 1) or len(units) or 1
        runs = _longest_run(units)
        assert runs >= periods * period, f"only {runs} consecutive units checked, period {period}"
    return field


def _longest_run(units: set[int]) -> int:
    best = run = 0
    for u in range(max(units, default=-1) + 2):
        run = run + 1 if u in units else 0
        best = max(best, run)
    return best


# --- tiles against the whole image ------------------------------------------------------------


def tiled_error(fn, image, tile, margins) -> float:
    """Relative error of the tiled result against the whole image's."""
    from rfviz.roundoff import relative_error
    from rfviz.tiling import tiled_forward

    with torch.no_grad():
        return relative_error(tiled_forward(fn, image, margins, tile), fn(image))


def shrink(margins, before=0, after=0):
    """The same margins, ``before`` and ``after`` pixels shorter."""
    return dataclasses.replace(margins, before=tuple(b - before for b in margins.before),
                               after=tuple(a - after for a in margins.after))


GAP = 1e6  # a margin error is at least this many times the round-off bound


def assert_exact_and_wrong_ones_far_above(exact: float, **wrong: float) -> None:
    from rfviz.roundoff import ROUND_OFF

    assert exact <= ROUND_OFF, f"exact margins gave {exact:.3g} > round-off {ROUND_OFF:g}"
    for name, value in wrong.items():
        assert value >= GAP * ROUND_OFF, f"{name}: {value:.3g} is not far above round-off"


def one_step_less_before(margins):
    """Tiles start one step of their grid (the stride, or a decoder's grid) later than the
    margin asks: 144 -> 128 for resnet50's layer3, 72 -> 64 for a U-Net's grid of 8."""
    return dataclasses.replace(margins, before=tuple(
        m.before_aligned - m.step for m in margins.axes))


def one_tile_error(fn, image, start: int, length: int, before: int, after: int) -> float:
    """One tile of rows ``start … start+length-1`` (the image's whole width): the error,
    against the whole image, of the rows with ``before`` rows of the tile above them and
    ``after`` below. With the margins that is exact; with one row less it is not."""
    from rfviz.roundoff import relative_error

    keep = slice(before, length - after)
    with torch.no_grad():
        whole = fn(image)[:, :, start:start + length][:, :, keep]
        tile = fn(image[:, :, start:start + length])[:, :, keep]
    return relative_error(tile, whole)
