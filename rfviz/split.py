"""Split an image in two at a row, run a network on each part, stitch, compare with the whole.

This is lesson 5's experiment as one function. The image is cut at row ``cut`` (a multiple of
the network's ``stride``, so that the cut falls between two feature rows). The *top tile* reads
the image down to ``cut + margin_top`` and keeps its first ``cut // stride`` feature rows; the
*bottom tile* reads from ``cut - margin_bottom`` and drops its first ``margin_bottom // stride``
feature rows, which belong to the top. Stitched together, the two must have the whole image's
shape; where their values differ from the whole image's, a margin was too small.

>>> import torch
>>> from torch import nn
>>> from rfviz.roundoff import ROUND_OFF
>>> _ = torch.manual_seed(0)
>>> net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 3, 5)).double()
>>> image = torch.randn(1, 1, 20, 12, dtype=torch.float64)
>>> # field 3 + (5-1) = 7 rows, effective padding 1: a feature needs 1 row above it, 5 below
>>> errors = split_error_map(net, image, cut=8, margin_top=5, margin_bottom=1, stride=1)
>>> errors.shape, bool(errors.max() < ROUND_OFF)          # 20 - 4 rows, 12 - 4 columns
((16, 8), True)
>>> short = split_error_map(net, image, cut=8, margin_top=4, margin_bottom=1, stride=1)
>>> [bool(row.max() > 1e-6) for row in short[6:9]]      # only the top tile's last row is wrong
[False, True, False]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .arithmetic import _check_int

__all__ = ["split_error_map"]


def split_error_map(features: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                    cut: int, margin_top: int, margin_bottom: int, stride: int, *,
                    whole: torch.Tensor | None = None) -> np.ndarray:
    """Relative error of the stitched features at every feature position, as an (H', W') array:
    ``|stitched - whole| / max |whole|``, the largest over channels.

    ``features`` maps an image (1, C, H, W) to features (1, C', H', W') with ``stride`` image
    rows per feature row; ``whole`` (optional) is ``features(image)``, computed once by the
    caller when many margins are compared. Rows ``:cut // stride`` of the result come from the
    top tile, the rest from the bottom tile. Values below :data:`rfviz.roundoff.ROUND_OFF` are
    float round-off.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must have shape (1, C, H, W), got shape {tuple(image.shape)}")
    height = image.shape[2]
    stride = _check_int("stride", stride, 1)
    cut, margin_top, margin_bottom = (_check_int(name, value, None) for name, value in
                                      [("cut", cut), ("margin_top", margin_top),
                                       ("margin_bottom", margin_bottom)])
    if cut % stride or not 0 < cut < height:
        raise ValueError(f"cut={cut} is out of range: valid a multiple of stride={stride} "
                         f"strictly between 0 and the image's height, {height}")
    if not 0 <= margin_top <= height - cut:
        raise ValueError(f"margin_top={margin_top} is out of range: valid 0 … {height - cut} "
                         f"(the rows below cut={cut} in an image {height} rows high)")
    if not 0 <= margin_bottom <= cut or margin_bottom % stride:
        raise ValueError(f"margin_bottom={margin_bottom} is out of range: valid a multiple of "
                         f"stride={stride} from 0 to cut={cut} (the bottom tile must start on "
                         "the stride grid)")
    with torch.no_grad():
        if whole is None:
            whole = features(image)
        top = features(image[:, :, :cut + margin_top])[:, :, :cut // stride]
        bottom = features(image[:, :, cut - margin_bottom:])[:, :, margin_bottom // stride:]
        stitched = torch.cat([top, bottom], dim=2)
        if stitched.shape != whole.shape:
            raise ValueError(f"the stitched features have shape {tuple(stitched.shape)}, the whole "
                             f"image's {tuple(whole.shape)}: is stride={stride} the features' "
                             f"stride, and margin_top={margin_top} enough for "
                             f"{cut // stride} feature rows?")
        errors = (stitched - whole).abs().amax(dim=1)[0]
        scale = float(whole.abs().max())
    return (errors / scale if scale else errors).numpy()
