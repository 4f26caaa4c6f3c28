"""Equal up to round-off: how rfviz compares a tiled result with the whole image's.

A float sum depends on the order of its terms, and a convolution's order depends on the
tensor's size, the CPU and the number of threads. The same features computed from a tile
and from the whole image therefore agree in float64 to about 1e-16 of their size, bit for
bit on one machine and not on the next. So rfviz never asks for ``== 0``: a result is
*equal* when its relative error is below :data:`ROUND_OFF`, and a real mistake (a margin
one pixel short) sits many orders of magnitude above that.

>>> import numpy as np
>>> whole = np.array([[1.0, -4.0], [2.0, 0.5]])
>>> relative_error(whole + [[0.0, 0.5], [0.0, 0.0]], whole)  # 0.5 / 4
0.125
>>> describe_error(_)   # two significant digits
'0.12'
>>> describe_error(2.2e-16)   # what tiles with exact margins give on some machine
'0 (round-off < 1e-12)'
"""

from __future__ import annotations

__all__ = ["ROUND_OFF", "describe_error", "relative_error"]

ROUND_OFF = 1e-12
"""Relative errors below this are float64 round-off (~1e-16 per operation, summed over a
network's layers), never a missing pixel of margin (~1e-6 and more)."""


def relative_error(result, reference) -> float:
    """``max |result - reference| / max |reference|`` for numpy arrays or torch tensors."""
    scale = float(abs(reference).max())
    difference = float(abs(result - reference).max())
    return difference / scale if scale else difference


def describe_error(error: float, bound: float = ROUND_OFF) -> str:
    """A relative error as a student should read it: ``0 (round-off < 1e-12)`` below
    ``bound``, else two significant digits (stable on every machine)."""
    return f"0 (round-off < {bound:g})" if error < bound else f"{error:.2g}"
