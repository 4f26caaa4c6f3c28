"""Blended tiles: what segmentation toolkits do instead of exact tiles.

Windows of ``tile`` pixels overlap by a fraction ``overlap``; each window's output is
weighted by a Gaussian that is largest at the window's centre (sigma = ``sigma_scale`` ×
the window's size, the weight clamped from below at its smallest value or 1e-3), and every
output pixel is the weighted mean of the windows that cover it. This reproduces MONAI's
``sliding_window_inference(inputs, tile, 1, fn, overlap, mode="gaussian")``: the same
window positions (the last window of a row moved back to end on the image's edge), the same
weights (computed in float32 as MONAI does), summed in the same order.

It hides the seams but is not the whole image's result: a pixel near a window's edge was
computed without the context beyond that edge, and blending only lowers its weight.

>>> window_starts(100, tile=40, overlap=0.25)    # a step of int(40 * 0.75) = 30; 100 - 40 = 60
[0, 30, 60]
>>> w = gaussian_weights((5, 5))
>>> round(float(w[2, 2]), 3), round(float(w[0, 2]), 3)   # centre, edge: exp(-2**2 / (2 * 0.625**2))
(1.0, 0.006)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch

__all__ = ["blended_forward", "gaussian_weights", "window_starts"]


def window_starts(length: int, tile: int, overlap: float = 0.25) -> list[int]:
    """Where windows of ``tile`` pixels start along an axis of ``length`` pixels: every
    ``int(tile * (1 - overlap))`` pixels (at least 1), until one reaches the end; that one is
    moved back to end on the edge."""
    if tile == length:
        return [0]
    step = max(int(tile * (1 - overlap)), 1)
    starts = []
    for d in range(math.ceil(length / step)):
        starts.append(min(d * step, length - tile))
        if d * step + tile >= length:
            break
    return starts


def gaussian_weights(tile: tuple[int, int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Each window's weights (float32, like MONAI's ``compute_importance_map``): a Gaussian
    per axis with sigma ``sigma_scale * size``, their product, clamped from below."""
    weights = None
    for n in tile:
        x = torch.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=torch.float)
        axis = torch.exp(x**2 / (-2 * (n * sigma_scale) ** 2))
        weights = axis if weights is None else weights.unsqueeze(-1) * axis
    return weights.clamp(min=max(weights.min().item(), 1e-3))


def blended_forward(fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                    tile=(96, 96), overlap: float = 0.25, *,
                    sigma_scale: float = 0.125) -> torch.Tensor:
    """``fn`` on overlapping windows of ``image`` (N, C, H, W), blended with Gaussian weights.

    ``fn`` must give an output of its input's height and width (a U-Net). ``tile``: the
    window's (height, width), at most the image's; ``overlap``: 0 ≤ overlap < 1.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a 4D tensor (N, C, H, W), got {shape}")
    tile = (tile,) * 2 if isinstance(tile, int) else tuple(tile)
    size = tuple(image.shape[2:])
    if len(tile) != 2 or not all(isinstance(t, int) and 1 <= t <= n
                                 for t, n in zip(tile, size, strict=True)):
        raise ValueError(f"tile={tile} must be two integers from 1 to the image's "
                         f"height and width {size}; valid: e.g. {tuple(min(n, 96) for n in size)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap={overlap} is out of range; valid: 0 ≤ overlap < 1 "
                         "(a fraction of the tile)")
    if not sigma_scale > 0:
        raise ValueError(f"sigma_scale={sigma_scale} must be > 0 (sigma = sigma_scale × tile)")
    weights = gaussian_weights(tile, sigma_scale).to(image.device, image.dtype)
    total, weight_sum = None, torch.zeros(size, dtype=image.dtype, device=image.device)
    starts = [window_starts(n, t, overlap) for n, t in zip(size, tile, strict=True)]
    for top, left in itertools.product(*starts):
        window = (slice(top, top + tile[0]), slice(left, left + tile[1]))
        out = fn(image[(..., *window)])
        if tuple(out.shape[2:]) != tile:
            raise ValueError(f"fn must keep the height and width (as a U-Net does): a "
                             f"{tile} window gave {tuple(out.shape[2:])}")
        if total is None:
            total = out.new_zeros((*out.shape[:2], *size))
        total[(..., *window)] += out * weights
        weight_sum[window] += weights
    return total / weight_sum
