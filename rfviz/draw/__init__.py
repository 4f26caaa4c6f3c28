"""Drawings built on matplotlib's own artists: 1D pixel diagrams and 2D field overlays."""

from .colours import PALETTE
from .cut import draw_cut, margins_at_cut
from .errors import draw_error_maps
from .overlay2d import draw_overlay2d, photograph
from .pixels1d import Diagram1d, draw_pixels1d, layout_pixels1d

__all__ = ["PALETTE", "Diagram1d", "draw_cut", "draw_error_maps", "draw_overlay2d", "draw_pixels1d",
           "layout_pixels1d", "margins_at_cut", "photograph"]
