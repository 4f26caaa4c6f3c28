"""The table from an op to its rule: :data:`MODULE_RULES` by module class (looked up along
the class's MRO), :data:`FUNCTION_RULES` by function or method name.

>>> from torch import nn
>>> rule_for(nn.Conv2d(1, 1, 3)).__name__, rule_for(nn.ReLU()).__name__
('window', 'same')
>>> rule_for(nn.UpsamplingBilinear2d(scale_factor=2)).__name__        # a subclass of Upsample
'interpolate'
"""

from __future__ import annotations

import functools
import operator

import torch.nn.functional as F
from torch import nn

from .crops import getitem, pad
from .decoders import interpolate, pixel_shuffle, pixel_unshuffle, transposed
from .ops import (
    ADAPTIVE_POOL_FUNCTIONS,
    ADAPTIVE_POOLS,
    AVG_POOLS,
    CONCATENATING,
    CONSTANT_PADS,
    CONV_FUNCTIONS,
    CONVOLUTIONS,
    COPYING_PADS,
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_METHODS,
    ELEMENTWISE_MODULES,
    INTERPOLATING,
    MAX_POOLS,
    MERGING_FUNCTIONS,
    MERGING_METHODS,
    NORMALISING,
    NORMALISING_MODULES,
    NORMS,
    PERMUTING,
    PIXEL_SHUFFLES,
    PIXEL_UNSHUFFLES,
    POOL_FUNCTIONS,
    REDUCING,
    RESHAPING,
    SPATIAL_STATISTICS,
    TRANSPOSED,
)
from .rules import (
    Rule,
    adaptive,
    attention,
    concatenate,
    layer_norm,
    linear,
    merge,
    norm,
    normalise,
    permute,
    reduce,
    reshape,
    same,
    spatial_statistics,
    window,
)
from .swin import SWIN_RULES

__all__ = ["FUNCTION_RULES", "MODULE_RULES", "TOKEN_RULES", "rule_for"]


MODULE_RULES: dict[type, Rule] = {
    **dict.fromkeys(CONVOLUTIONS + MAX_POOLS + AVG_POOLS, window),
    **dict.fromkeys(TRANSPOSED, transposed),
    nn.Upsample: interpolate,
    nn.PixelShuffle: pixel_shuffle,
    nn.PixelUnshuffle: pixel_unshuffle,
    **dict.fromkeys(ADAPTIVE_POOLS, adaptive),
    **dict.fromkeys(ELEMENTWISE_MODULES, same),
    **dict.fromkeys(SPATIAL_STATISTICS, spatial_statistics),
    **dict.fromkeys(CONSTANT_PADS + COPYING_PADS, pad),
    nn.LayerNorm: layer_norm,
    **dict.fromkeys(NORMALISING_MODULES, normalise),
    nn.Flatten: reshape,
    nn.Linear: linear,
}

FUNCTION_RULES: dict[object, Rule] = {
    **dict.fromkeys(MERGING_FUNCTIONS | MERGING_METHODS, merge),
    **dict.fromkeys(ELEMENTWISE_FUNCTIONS | ELEMENTWISE_METHODS, same),
    **dict.fromkeys(CONCATENATING, concatenate),
    **dict.fromkeys(RESHAPING, reshape),
    **dict.fromkeys(PERMUTING, permute),
    **dict.fromkeys(REDUCING, reduce),
    **dict.fromkeys(NORMALISING, normalise),
    **dict.fromkeys(NORMS, norm),
    **dict.fromkeys(ADAPTIVE_POOL_FUNCTIONS, adaptive),
    **dict.fromkeys(set(POOL_FUNCTIONS) | CONV_FUNCTIONS, window),
    operator.getitem: getitem,
    F.layer_norm: layer_norm,
    F.group_norm: spatial_statistics,
    F.instance_norm: spatial_statistics,
    F.linear: linear,
    **dict.fromkeys(INTERPOLATING, interpolate),
    **dict.fromkeys(PIXEL_SHUFFLES, pixel_shuffle),
    **dict.fromkeys(PIXEL_UNSHUFFLES, pixel_unshuffle),
    F.pad: pad,
    F.scaled_dot_product_attention: attention,
    **SWIN_RULES,
}


# The rules that hold on tokens (see :class:`.rules.Value`): they keep the axis of tokens
# apart from what they change (channels, heads), or mix all of it (a mean over the tokens,
# attention). Any other op on tokens is unknown: a window along them, or a crop, would need
# each token's place.
TOKEN_RULES = frozenset({same, linear, layer_norm, merge, concatenate, permute, reshape,
                         reduce, attention, getitem})


def rule_for(op) -> Rule | None:
    """The rule for a module (by its class or the nearest base class in the table), or for a
    function or method name; None if rfviz has none."""
    if isinstance(op, nn.Module):
        return _module_rule(type(op))
    try:
        return FUNCTION_RULES.get(op)
    except TypeError:  # unhashable target
        return None


@functools.cache
def _module_rule(kind: type) -> Rule | None:
    # cached per class: MODULE_RULES is fixed once this module is imported
    return next((MODULE_RULES[c] for c in kind.__mro__ if c in MODULE_RULES), None)
