"""The diagrams' colours keep their meaning for colour-blind students and on a washed-out projector.

Each colour is passed through Machado et al.'s (2009) simulation of full protanopia,
deuteranopia and tritanopia (colorspacious' ``sRGB1+CVD`` at severity 100) and compared in
CAM02-UCS, a space where a distance of about 1 is just noticeable. A pair that carries meaning
must stay at least ``APART`` apart under every simulation; the checker is shown to catch the
classic red/green pair, so it can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from colorspacious import cspace_convert, deltaE
from matplotlib import colormaps
from matplotlib.colors import to_rgb

from rfviz.draw.colours import ERROR_COLORMAP, HEAT_COLORMAP, PALETTE

VISIONS = [None, "protanomaly", "deuteranomaly", "tritanomaly"]  # None: typical vision
APART = 20.0  # CAM02-UCS distance: twenty just-noticeable steps, a different colour at a glance

# Pairs whose difference is the message: the field against the rest, its padding part against
# the field and the background. (Cell vs padding differ by their border, solid vs dashed.)
MEANINGFUL = [("field", "field_padding"), ("field", "cell"), ("field", "padding"),
              ("field_padding", "cell"), ("field_padding", "padding")]


def seen(colours, vision: str | None) -> np.ndarray:
    """sRGB colours (..., 3) in [0, 1] as someone with ``vision`` sees them (full severity)."""
    rgb = np.asarray(colours, dtype=float)
    if vision is None:
        return rgb
    cvd = {"name": "sRGB1+CVD", "cvd_type": vision, "severity": 100}
    return np.clip(cspace_convert(rgb, cvd, "sRGB1"), 0, 1)


def distance(a, b, vision: str | None) -> np.ndarray:
    return deltaE(seen(a, vision), seen(b, vision), input_space="sRGB1",
                  uniform_space="CAM02-UCS")


def lightness(colours) -> np.ndarray:
    """CAM02-UCS lightness J' of sRGB colours (what survives greyscale)."""
    return cspace_convert(np.asarray(colours, dtype=float), "sRGB1", "CAM02-UCS")[..., 0]


def wcag_contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two colours (4.5 is the floor for normal-size text)."""
    def luminance(colour: str) -> float:
        c = np.array(to_rgb(colour))
        linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(linear @ [0.2126, 0.7152, 0.0722])
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("vision", VISIONS)
@pytest.mark.parametrize(("first", "second"), MEANINGFUL)
def test_meaningful_pairs_stay_apart_for_every_colour_vision(first, second, vision):
    d = distance(to_rgb(PALETTE[first]), to_rgb(PALETTE[second]), vision)
    assert d >= APART, f"{first}/{second} only {d:.1f} apart for {vision or 'typical vision'}"


def test_the_check_catches_a_red_green_pair():
    red, green = to_rgb("#d62728"), to_rgb("#2ca02c")  # matplotlib's tab:red and tab:green
    assert distance(red, green, None) >= APART
    assert distance(red, green, "deuteranomaly") < APART / 2


def test_meaning_survives_greyscale():
    """A washed-out projector or a black-and-white print keeps only lightness."""
    for first, second in MEANINGFUL:
        gap = abs(lightness(to_rgb(PALETTE[first])) - lightness(to_rgb(PALETTE[second])))
        assert gap >= 15, f"{first}/{second}: lightness differs by only {gap:.1f}"


@pytest.mark.parametrize(("text", "ground"), [("white", PALETTE["field"]),
                                              (PALETTE["text"], PALETTE["cell"]),
                                              (PALETTE["text"], PALETTE["padding"])])
def test_labels_are_readable_on_their_cells(text, ground):
    assert wcag_contrast(text, ground) >= 4.5


@pytest.mark.parametrize("vision", VISIONS)
def test_the_tile_seam_shows_on_every_colour_of_the_error_map(vision):
    ramp = colormaps[ERROR_COLORMAP](np.linspace(0, 1, 64))[:, :3]
    seam = np.broadcast_to(to_rgb(PALETTE["seam"]), ramp.shape)
    assert distance(seam, ramp, vision).min() >= APART


@pytest.mark.parametrize("vision", VISIONS)
@pytest.mark.parametrize("name", [ERROR_COLORMAP, HEAT_COLORMAP])
def test_colormaps_keep_their_order_for_every_colour_vision(name, vision):
    """More error, more gradient: lighter, whatever colours the student sees."""
    ramp = seen(colormaps[name](np.linspace(0, 1, 32))[:, :3], vision)
    assert np.all(np.diff(lightness(ramp)) > 0)


def test_the_order_check_catches_jet():
    ramp = colormaps["jet"](np.linspace(0, 1, 32))[:, :3]
    assert not np.all(np.diff(lightness(ramp)) > 0)

