"""Every colour rfviz draws with, in one place (``tests/test_colours.py`` checks them).

The palette is Okabe and Ito's, made to stay distinct under every common colour-vision
deficiency; the colormaps get lighter with the value for every colour vision, so they also
survive a greyscale projector.

>>> PALETTE["field"], PALETTE["field_padding"]          # blue, orange
('#0072B2', '#E69F00')
"""

__all__ = ["ERROR_COLORMAP", "HEAT_COLORMAP", "PALETTE", "PROBLEM_COLOR"]

PALETTE = {
    "cell": "#eeeeee",
    "edge": "#555555",
    "padding": "#ffffff",
    "padding_edge": "#999999",
    "link": "#c8c8c8",
    "field": "#0072B2",  # blue: the traced unit's field
    "field_padding": "#E69F00",  # orange: the part of the field that falls in the padding
    "text": "#222222",
    "seam": "#000000",  # black (with a white halo): the cut between tiles over a viridis map
}
PROBLEM_COLOR = "#D55E00"  # vermillion: a widget's one-line "impossible" message
HEAT_COLORMAP = "inferno"  # ERF heat: lightness rises with the gradient
ERROR_COLORMAP = "viridis"  # tile error maps: lightness rises with the error
