"""Builders the tests share: 1D torch stacks of rfviz layers, their gradient support (torch
as the oracle of a field), and random small stacks."""

from __future__ import annotations

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
