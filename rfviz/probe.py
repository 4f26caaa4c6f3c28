"""Receptive fields measured from gradients: the check on :func:`rfviz.tracing.receptive_field`.

An input pixel is in a unit's field exactly when the unit's gradient with respect to that
pixel can be nonzero. We run the network in float64 on a few random inputs (``weights=None``
models have random weights; many channels make every path active somewhere), back-propagate
from one output unit and from its diagonal neighbour, and read off where the gradient lands.

The *effective* receptive field (Luo et al., 2016, "Understanding the Effective Receptive
Field in Deep Convolutional Neural Networks") is the same gradient's magnitude, as a map.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx
from torch import nn

from .field import Field, ReceptiveField
from .tracing import _trace, _Tracer

__all__ = ["MeasuredField", "effective_field", "measured_field", "truncate"]

Progress = Callable[[Iterable], Iterable]  # wraps a loop to show how far it got: tqdm


@dataclass(frozen=True)
class MeasuredField:
    """Where the gradient of ``unit`` (and of its neighbour ``unit + 1``) lands, per axis.

    ``field`` is derived from the two spans (size from the first, stride from their offset,
    padding from where the first starts); None for an axis whose span touches the border of
    the input (``clipped``), since the true field may extend beyond it.
    """

    unit: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    neighbour_spans: tuple[tuple[int, int], ...] | None
    input_size: tuple[int, ...]

    @property
    def clipped(self) -> tuple[bool, ...]:
        return tuple(first <= 0 or last >= size - 1 for (first, last), size
                     in zip(self.spans, self.input_size, strict=True))

    @property
    def field(self) -> Field | None:
        if any(self.clipped) or self.neighbour_spans is None:
            return None
        axes = []
        for (first, last), (next_first, _), unit in zip(self.spans, self.neighbour_spans,
                                                        self.unit, strict=True):
            stride = next_first - first
            axes.append(ReceptiveField(size=last - first + 1, stride=stride,
                                       padding=unit * stride - first))
        return Field(tuple(axes))


def truncate(model: nn.Module, layer: str | None, input_size
             ) -> tuple[nn.Module, tuple[int, ...], tuple[int, ...]]:
    """A float64 copy of ``model`` that stops at ``layer`` (the output if None), the input
    shape it takes, (1, C, *spatial), and that layer's output shape, (C', *spatial').

    >>> from torch import nn
    >>> cut, shape, out_shape = truncate(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(),
    ...                                                nn.Conv2d(4, 2, 3)), "0", 8)
    >>> shape, out_shape                                  # 8 - 3 + 1 = 6
    ((1, 3, 8, 8), (4, 6, 6))
    """
    table = _trace(model, input_size)
    row = table.rows[-1] if layer is None else table.find(layer)
    table.warn(up_to=table.rows.index(row))
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise ValueError("the model is on the meta device (shapes, no weights): measuring a "
                         "field runs it, so build it on the CPU; receptive_field needs no weights")
    # The GraphModule shares the model's modules (tracing changes nothing in the model); once
    # cut, it keeps only those it calls, and only they are copied to float64: a third of the
    # whole model for ResNet-50 cut at layer3.
    cut = torch.fx.GraphModule(model, _Tracer().trace(model))  # the trace's nodes, afresh
    graph = cut.graph
    target = next(node for node in graph.nodes if node.name == row.node)
    for node in list(graph.nodes):
        if node.op == "output":
            graph.erase_node(node)
    with graph.inserting_after(target):
        graph.output(target)
    graph.eliminate_dead_code()
    cut.delete_all_unused_submodules()
    cut.recompile()
    return copy.deepcopy(cut).double().eval(), (1, *table.input_shape), row.shape


def _support(grad: torch.Tensor) -> tuple[tuple[int, int], ...]:
    """Bounding box, per spatial axis, of where ``grad`` (C, *spatial) is nonzero."""
    mask = grad.abs().sum(0) > 0
    spans = []
    for axis in range(mask.dim()):
        others = tuple(d for d in range(mask.dim()) if d != axis)
        hits = torch.nonzero(mask.any(dim=others) if others else mask).flatten()
        if len(hits) == 0:
            raise ValueError("the unit's gradient is zero everywhere: is the layer after a "
                             "global op, or are all weights zero?")
        spans.append((int(hits[0]), int(hits[-1])))
    return tuple(spans)


def measured_field(model: nn.Module, layer: str | None = None, input_size=(224, 224), *,
                   unit: tuple[int, ...] | None = None, samples: int = 2,
                   seed: int = 0, progress: Progress | None = None) -> MeasuredField:
    """Measure the field at ``layer`` from gradients, for output ``unit`` (default: central).

    Choose ``input_size`` large enough that the field fits inside (``clipped`` tells).
    ``progress`` wraps the loop over samples (e.g. ``tqdm``), to show how far it got.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3))
    >>> measured_field(net, input_size=(24, 24)).field.size          # 3 + (3-1)*2
    (7, 7)
    """
    cut, shape, out_shape = truncate(model, layer, input_size)
    spatial_out = out_shape[1:]
    if unit is None:
        unit = tuple((n - 1) // 2 for n in spatial_out)  # central, with room for a neighbour
    neighbour = tuple(i + 1 for i in unit)
    has_neighbour = all(n < size for n, size in zip(neighbour, spatial_out, strict=True))
    generator = torch.Generator().manual_seed(seed)
    grad_unit = grad_neighbour = 0
    steps = range(samples)
    for _ in progress(steps) if progress else steps:  # one at a time: a batch would multiply
        # the memory autograd keeps
        x = torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True)
        out = cut(x)[0]
        (grad,) = torch.autograd.grad(out[(slice(None), *unit)].sum(), x,
                                      retain_graph=has_neighbour)
        grad_unit = grad_unit + grad[0].abs()
        if has_neighbour:  # the same forward pass, a second backward pass
            (grad,) = torch.autograd.grad(out[(slice(None), *neighbour)].sum(), x)
            grad_neighbour = grad_neighbour + grad[0].abs()
    return MeasuredField(
        unit=unit, spans=_support(grad_unit),
        neighbour_spans=_support(grad_neighbour) if has_neighbour else None,
        input_size=tuple(shape[2:]))


def effective_field(model: nn.Module, layer: str | None = None, image_or_size=(224, 224), *,
                    unit: tuple[int, ...] | None = None, samples: int = 4,
                    seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    """|gradient| of one output unit over the input, summed over channels, normalised to sum 1.

    ``image_or_size``: a (C, H, W) or (1, C, H, W) tensor, or a size for random inputs
    (``samples`` of them, averaged). Returns a float64 array of shape (H, W). ``progress``
    wraps the loop over inputs (e.g. ``tqdm``).

    >>> from torch import nn
    >>> erf = effective_field(nn.Conv2d(1, 1, 3, padding=1), None, (5, 5), unit=(2, 2))
    >>> erf.shape, round(float(erf.sum()), 6), int((erf > 0).sum())     # a 3x3 footprint
    ((5, 5), 1.0, 9)
    """
    if isinstance(image_or_size, torch.Tensor):
        image = image_or_size.detach().to(torch.float64)
        image = image.unsqueeze(0) if image.dim() == 3 else image
        size = tuple(image.shape[2:])
    else:
        image, size = None, image_or_size
    cut, shape, out_shape = truncate(model, layer, size)
    if unit is None:
        unit = tuple(n // 2 for n in out_shape[1:])
    if image is None:
        generator = torch.Generator().manual_seed(seed)
        image = torch.randn((samples, *shape[1:]), generator=generator, dtype=torch.float64)
    magnitude = 0
    ones = image.split(1)
    for one in progress(ones) if progress else ones:  # one at a time, as in measured_field
        x = one.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(cut(x)[(0, slice(None), *unit)].sum(), x)
        magnitude = magnitude + grad[0].abs().sum(0)
    magnitude = magnitude.numpy()
    return magnitude / magnitude.sum()
