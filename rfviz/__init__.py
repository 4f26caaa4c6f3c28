"""rfviz: see how convolutions change sizes and receptive fields.

The arithmetic (:mod:`rfviz.arithmetic`, :mod:`rfviz.field`) is plain Python and imports
at once. Drawing (matplotlib) and, later, model tracing (torch) load on first use, so
``import rfviz`` stays fast and never imports torch.

>>> from rfviz import conv_output_size, ReceptiveField
>>> conv_output_size(224, kernel=11)
214
>>> ReceptiveField().then(kernel=3, stride=2).then(kernel=2).size     # 3 + (2-1)*2
5
"""

from __future__ import annotations

import importlib

from .arithmetic import (
    conv_output_size,
    conv_transpose_output_size,
    effective_kernel,
    explain_output_size,
    pool_output_size,
    same_padding,
)
from .exercises import check
from .field import CannotFollow, Field, FieldError, Layer, ReceptiveField, layer_fields, layer_sizes
from .layer_table import LayerRow, LayerTable, RfvizWarning

__version__ = "0.1.0"

# Names whose modules import matplotlib or torch: loaded when first asked for.
_LAZY = {
    "draw_pixels1d": "rfviz.draw.pixels1d",
    "layout_pixels1d": "rfviz.draw.pixels1d",
    "conv_panel": "rfviz.widgets",
    "draw_overlay2d": "rfviz.draw.overlay2d",
    "photograph": "rfviz.draw.overlay2d",
    "trace": "rfviz.tracing",
    "receptive_field": "rfviz.tracing",
    "measured_field": "rfviz.probe",
    "effective_field": "rfviz.probe",
    "MeasuredField": "rfviz.probe",
    "tile_margins": "rfviz.tiling",
    "tiled_forward": "rfviz.tiling",
    "Margins": "rfviz.tiling",
    "staged_plan": "rfviz.staged",
    "staged_forward": "rfviz.staged",
}

__all__ = [
    "CannotFollow",
    "Field",
    "FieldError",
    "Layer",
    "LayerRow",
    "LayerTable",
    "ReceptiveField",
    "RfvizWarning",
    "check",
    "conv_output_size",
    "conv_transpose_output_size",
    "effective_kernel",
    "explain_output_size",
    "layer_fields",
    "layer_sizes",
    "pool_output_size",
    "same_padding",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rfviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
