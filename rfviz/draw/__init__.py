"""Drawings built on matplotlib's own artists: 1D pixel diagrams (2D overlays come later)."""

from .pixels1d import PALETTE, Diagram1d, draw_pixels1d, layout_pixels1d

__all__ = ["PALETTE", "Diagram1d", "draw_pixels1d", "layout_pixels1d"]
