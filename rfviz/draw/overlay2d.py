"""A unit's receptive field over an image: the box, the part that falls in the padding, the
stride grid of all units, and optionally an effective-receptive-field heatmap.

>>> from rfviz.field import ReceptiveField
>>> fig = draw_overlay2d(photograph((64, 64)), ReceptiveField(19, 4, 9), unit=(2, 3))
>>> print(fig.axes[0].get_title())     # 19 rows x 19 columns, row -1 is padding
unit (2, 3): rows -1…17, columns 3…21
19×19 px, 19 of them in the padding (hatched)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import cbook, colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from ..field import Field, FieldError, ReceptiveField
from ..spans import Spans
from .colours import HEAT_COLORMAP, PALETTE

__all__ = ["Overlay", "draw_overlay2d", "photograph"]


def photograph(size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """A real photograph that ships with matplotlib (Grace Hopper), as floats in [0, 1].

    Cropped to the aspect of ``size`` (H, W) around the centre, then resized.

    >>> photograph((32, 48)).shape
    (32, 48, 3)
    """
    height, width = size
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        w, h = image.size
        scale = min(w / width, h / height)
        crop_w, crop_h = round(width * scale), round(height * scale)
        left, top = (w - crop_w) // 2, (h - crop_h) // 2
        image = image.convert("RGB").crop((left, top, left + crop_w, top + crop_h))
        resized = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.float64) / 255


def _axes_fields(field) -> tuple[ReceptiveField, ReceptiveField]:
    """(H, W) fields from a ReceptiveField (square), a pair, or a traced :class:`Field`."""
    if isinstance(field, ReceptiveField):
        return field, field
    if isinstance(field, Field):
        if field.unknown:
            raise FieldError(f"field={field} has no box to draw: {field.unknown}")
        if field.is_global:
            raise FieldError(f"field={field} has no box to draw: it is global (every output "
                             "depends on the whole input)")
        return field.h, field.w
    if isinstance(field, Sequence) and len(field) == 2:
        return tuple(field)
    raise TypeError(f"field must be a ReceptiveField, a (h, w) pair or a traced Field, "
                    f"got {field!r}")


def _units(axis: ReceptiveField | Spans, pixels: int) -> int:
    """Units along an axis whose field centre lies inside ``pixels`` (per-unit spans: all)."""
    if isinstance(axis, Spans):
        return len(axis)
    count = 0
    while axis.center(count) <= pixels - 1:
        count += 1
    return count


def draw_overlay2d(image, field, unit: tuple[int, int] = (0, 0), erf: np.ndarray | None = None,
                   ax=None, *, grid: tuple[int, int] | None = None) -> Figure:
    """Draw output ``unit``'s receptive field over ``image`` (H, W[, 3] array).

    The box is drawn in full; where it leaves the image it covers padding, drawn hatched.
    Dots mark the field centres of all units (the stride grid; ``grid=(n_h, n_w)`` gives
    their number, else the units whose centre lies in the image). ``erf`` is a map of the
    image's size (e.g. :func:`rfviz.probe.effective_field`) shown as a heatmap.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.6, 4.6))
    Overlay(ax, image, field, erf=erf, grid=grid).show(unit)
    return ax.figure


class Overlay:
    """The artists of one :func:`draw_overlay2d` drawing: the image, the heat and the stride
    grid are drawn once; :meth:`show` moves the box, the marker, the title and the view to
    another unit (a slider step redraws no photograph and no grid).

    >>> from matplotlib.figure import Figure
    >>> from rfviz.field import ReceptiveField
    >>> overlay = Overlay(Figure().add_subplot(), photograph((64, 64)), ReceptiveField(19, 4, 9))
    >>> overlay.show((2, 3)).show((0, 0)).ax.get_title().splitlines()[0]
    'unit (0, 0): rows -9…9, columns -9…9'
    """

    def __init__(self, ax, image, field, *, erf: np.ndarray | None = None,
                 grid: tuple[int, int] | None = None) -> None:
        image = np.asarray(image)
        self.ax, self.size = ax, image.shape[:2]
        self.field_h, self.field_w = _axes_fields(field)
        height, width = self.size
        extent = (-0.5, width - 0.5, height - 0.5, -0.5)
        # hatched box under the image: only its part outside the image (the padding) shows
        self.padding = ax.add_patch(Rectangle((0, 0), 1, 1, facecolor="none", hatch="//",
                                              edgecolor=PALETTE["field_padding"], linewidth=0,
                                              zorder=0))
        ax.imshow(image, extent=extent, cmap="gray" if image.ndim == 2 else None, zorder=1)
        if erf is not None:  # opaque where the gradient is strong, transparent where it is not
            strength = np.asarray(erf, dtype=float) / max(float(np.max(erf)),
                                                          np.finfo(float).tiny)
            heat = colormaps[HEAT_COLORMAP](0.35 + 0.65 * strength)
            heat[..., 3] = 0.85 * strength**0.4
            ax.imshow(heat, extent=extent, zorder=2)
        self.box = ax.add_patch(Rectangle((0, 0), 1, 1, facecolor="none", linewidth=2.2,
                                          edgecolor=PALETTE["field"], zorder=4))
        n_h, n_w = grid or (_units(self.field_h, height), _units(self.field_w, width))
        rows, cols = np.meshgrid(_centres(self.field_h, n_h), _centres(self.field_w, n_w),
                                 indexing="ij")
        ax.scatter(cols.ravel(), rows.ravel(), s=6, color="white", edgecolors="black",
                   linewidths=0.4, zorder=3)
        self.marker = ax.scatter([0], [0], s=60, marker="+", color=PALETTE["field"],
                                 linewidths=2, zorder=5)
        ax.set_xticks([])
        ax.set_yticks([])

    def show(self, unit: tuple[int, int]) -> Overlay:
        """The box, marker, title and view of ``unit`` (row, column)."""
        spans = self.field_h.span(unit[0]), self.field_w.span(unit[1])
        if None in spans:
            raise ValueError(f"unit={tuple(unit)} reads no input pixel (a gap of a dilated "
                             "transposed convolution): there is no box to draw")
        (top, bottom), (left, right) = spans
        height, width = self.size
        self.ax.set_xlim(min(-0.5, left - 1.5), max(width - 0.5, right + 1.5))
        self.ax.set_ylim(max(height - 0.5, bottom + 1.5), min(-0.5, top - 1.5))
        for box in (self.padding, self.box):
            box.set_bounds(left - 0.5, top - 0.5, right - left + 1, bottom - top + 1)
        self.marker.set_offsets([[self.field_w.center(unit[1]), self.field_h.center(unit[0])]])
        self.ax.set_title(_title(unit, self.field_h, self.field_w, height, width), fontsize=10)
        return self


def _centres(axis: ReceptiveField | Spans, units: int) -> list[float]:
    """Field centres of the first ``units`` units (those that read no pixel have none)."""
    return [axis.center(i) for i in range(units) if axis.span(i) is not None]


def _title(unit, field_h, field_w, height, width) -> str:
    (top, bottom), (left, right) = field_h.span(unit[0]), field_w.span(unit[1])
    inside = (max(0, min(bottom, height - 1) - max(top, 0) + 1)
              * max(0, min(right, width - 1) - max(left, 0) + 1))
    rows, columns = bottom - top + 1, right - left + 1  # this unit's (spans differ per unit)
    total = rows * columns
    text = (f"unit {tuple(unit)}: rows {top}…{bottom}, columns {left}…{right}\n"
            f"{rows}×{columns} px")
    if inside < total:
        text += f", {total - inside} of them in the padding (hatched)"
    return text
