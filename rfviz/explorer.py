"""The atlas explorer: any torchvision network of the atlas, any stage, any unit.

Choose a network and a stage from the atlas (``docs/atlas``) and a unit with the sliders; the
panel traces the network now (on the meta device: no weights, milliseconds) and draws that
unit's field on the photograph, with the atlas row beside it and a line saying whether the
trace done now agrees with the row. The button measures the unit by gradients: it builds the
network on the CPU (random weights, seeded), finds where the unit's gradient lands (its
support) and how strongly (the effective field, drawn as heat), with a progress bar.

Only torchvision's 2D networks are offered: the lessons do not need timm.

>>> rows = [{"group": "torchvision classification", "model": "resnet18", "stage": "layer1",
...          "input": [224, 224], "status": "ok", "parameters": 11689512}]
>>> sorted(explorable(rows))
['resnet18']
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np

from .draw.colours import PROBLEM_COLOR
from .draw.overlay2d import Overlay, photograph
from .field import Field
from .widgets import _canvas_figure, _encode, _line, _Panel

__all__ = ["AtlasExplorer", "Measurement", "explorable"]

GROUPS = ("torchvision classification", "torchvision segmentation", "torchvision detection")
MEASURE_LIMIT = 150_000_000  # parameters: their float32 weights (600 MB) and a float64 copy
# of the cut part must fit in a Binder kernel's ~2 GB
SAMPLES = 2  # random inputs for the gradient support (as rfviz.measured_field)
ERF_SAMPLES = 4  # and for the effective field's average


def explorable(rows: Iterable[dict]) -> dict[str, list[dict]]:
    """The atlas rows the explorer offers, per network, in the atlas's order: torchvision's 2D
    networks (built with torchvision alone), at the size the atlas traced them."""
    networks: dict[str, list[dict]] = {}
    for row in rows:
        if row["group"] in GROUPS:
            networks.setdefault(row["model"], []).append(row)
    return networks


@dataclass(frozen=True, repr=False)
class Measurement:
    """What the gradients said about one unit: where they land (``spans``, per axis), the box
    traced for it, and whether the two agree (the box clipped to the image: where a field
    hangs over the border, it reads padding there, which has no gradient).

    >>> Measurement((0, 5), ((0, 6), (3, 13)), ((-4, 6), (3, 13)), (32, 32))
    Measurement(unit=(0, 5), rows 0…6, columns 3…13 = the traced box within the image)
    """

    unit: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    box: tuple[tuple[int, int], ...]
    size: tuple[int, ...]
    erf: np.ndarray | None = None  # the effective field (|gradient|, sums to 1)

    @property
    def clipped_box(self) -> tuple[tuple[int, int], ...]:
        return tuple((max(first, 0), min(last, n - 1))
                     for (first, last), n in zip(self.box, self.size, strict=True))

    @property
    def agrees(self) -> bool:
        return tuple(self.spans) == self.clipped_box

    def __repr__(self) -> str:
        (top, bottom), (left, right) = self.spans
        inside = " within the image" if self.clipped_box != tuple(self.box) else ""
        verdict = (f"= the traced box{inside}" if self.agrees
                   else f"≠ the traced box{inside} {self.clipped_box}")
        return (f"Measurement(unit={self.unit}, rows {top}…{bottom}, columns {left}…{right} "
                f"{verdict})")


class AtlasExplorer(_Panel):
    """A network, a stage and a unit from the atlas: the unit's field on the photograph.

    ``rows``: the atlas's rows (``rfviz.atlas.read("docs/atlas")``). The stage slider offers
    the atlas's stages of the chosen network; the unit sliders follow the stage's output size.
    :meth:`measure` (the button) checks the box against the gradients.

    >>> from rfviz import atlas
    >>> explorer = AtlasExplorer(atlas.read("docs/atlas"), "resnet18", "layer2")  # doctest: +SKIP
    >>> explorer.stage.value = "layer3"     # as a person moving the slider would  # doctest: +SKIP
    """

    def __init__(self, rows: Sequence[dict], network: str = "resnet50", stage: str | None = None,
                 *, unit: tuple[int, int] | None = None) -> None:
        self.networks = explorable(rows)
        if network not in self.networks:
            raise ValueError(f"network={network!r} is not among the atlas's torchvision 2D "
                             f"networks; valid: {', '.join(sorted(self.networks))}")
        self.table = None
        self.erf = None  # the last measured effective field, while its unit is shown
        self._part = ""  # where the traced module sits in the network, as a name prefix
        self._cpu = (None, None)  # (network, model with weights): one at a time
        self._figure = _canvas_figure(figsize=(4.6, 4.6))
        self._drawn = None  # ((network, stage), heat, Overlay) of the picture shown
        wide = widgets.Layout(width="26em")
        self.network = widgets.Dropdown(options=sorted(self.networks), value=network,
                                        description="network", layout=wide)
        self.stage = widgets.SelectionSlider(options=[""], description="stage", layout=wide,
                                             continuous_update=True)
        self.unit_h = widgets.IntSlider(description="unit row", min=0, max=0)
        self.unit_w = widgets.IntSlider(description="unit col", min=0, max=0)
        self.picture = widgets.Image(format="jpeg", layout=widgets.Layout(max_width="100%"))
        self.row = widgets.HTML()
        self.readout = widgets.HTML()
        self.button = widgets.Button(description="measure by gradients", icon="crosshairs",
                                     layout=widgets.Layout(width="14em"))
        self.progress = widgets.Box()
        self.result = widgets.HTML()
        self.widget = widgets.VBox([
            self.network, self.stage, widgets.HBox([self.unit_h, self.unit_w]), self.readout,
            widgets.HBox([self.picture, self.row]),
            widgets.HBox([self.button, self.progress]), self.result])
        self.widget.add_class("rfviz-explorer")
        with self._quiet():
            self._load(stage)
            if unit is not None:
                self.unit_h.value, self.unit_w.value = unit
        for control in (self.network, self.stage, self.unit_h, self.unit_w):
            control.observe(self.update, names="value")
        self.button.on_click(lambda _: self._measure_safely())
        self.update()

    # --- state ----------------------------------------------------------------------------

    @property
    def atlas_row(self) -> dict:
        return next(r for r in self.networks[self.network.value] if r["stage"] == self.stage.value)

    @property
    def unit(self) -> tuple[int, int]:
        return self.unit_h.value, self.unit_w.value

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.atlas_row["input"])

    @property
    def layer(self) -> str:
        """The stage's name in the traced module: a detector's atlas stages are named in the
        whole model (``backbone.body.layer2``), and the atlas traces its backbone body."""
        return self.stage.value.removeprefix(self._part)

    @property
    def traced_row(self):
        return self.table.find(self.layer)

    @property
    def field(self) -> Field:
        return self.traced_row.field

    @property
    def drawable(self) -> bool:
        return self.atlas_row["status"] in ("ok", "per unit") and self.field.known

    def _load(self, stage: str | None) -> None:
        """Trace the chosen network at the atlas's size; stages from the atlas."""
        from . import atlas
        from .tracing import _trace

        name = self.network.value
        rows = self.networks[name]
        self.table = _trace(atlas.build(name, device="meta"), tuple(rows[0]["input"]))
        self._part = f"{atlas.part(name)}." if atlas.part(name) else ""
        stages = [r["stage"] for r in rows]
        if stage is not None and stage not in stages:
            raise ValueError(f"stage={stage!r} is not a stage of {name} in the atlas; "
                             f"valid: {', '.join(stages)}")
        keep = self.stage.value if self.stage.value in stages else stages[len(stages) // 2]
        self.stage.options = stages
        self.stage.value = stage or keep
        self.image = photograph(self.size)
        self._adapt(center=True)

    def _adapt(self, center: bool) -> None:
        """Unit ranges follow the stage's output size, keeping the unit at the same place."""
        n_h, n_w = self.traced_row.shape[-2:] if self.drawable else (1, 1)  # global: no units
        for slider, n in ((self.unit_h, n_h), (self.unit_w, n_w)):
            fraction = (slider.value + 0.5) / (slider.max + 1)
            slider.max = n - 1
            slider.value = (n - 1) // 2 if center else min(int(fraction * n), n - 1)
            slider.disabled = not self.drawable

    # --- drawing ---------------------------------------------------------------------------

    def _redraw(self, change) -> None:
        owner = change["owner"] if change is not None else None
        if owner is self.network:
            self._load(None)
        elif owner is self.stage:
            self._adapt(center=False)
        if owner is not None:  # a measurement belongs to the unit it was made for
            self.erf = None
            self.result.value = ""
        self.button.disabled = not self.drawable
        self.row.value = _row_table(self.atlas_row)
        self.readout.value = self._agreement()
        if self.drawable:
            self._overlay().show(self.unit)
        else:
            self._drawn = None
            ax = self._axes()
            ax.imshow(self.image)
            ax.set_axis_off()
            ax.set_title(f"{self.atlas_row['status']}: no box to draw", fontsize=10)
        self.picture.value = _encode(self._figure, "jpeg")

    def _overlay(self) -> Overlay:
        """The drawing of the shown stage (and heat), made anew when either changes: a unit
        step only moves its box (the photograph and the grid stay drawn)."""
        stage = (self.network.value, self.stage.value)
        if self._drawn is None or self._drawn[0] != stage or self._drawn[1] is not self.erf:
            self._drawn = None  # the axes are cleared: no drawing of them stays valid
            overlay = Overlay(self._axes(), self.image, self.field, erf=self.erf,
                              grid=self.traced_row.shape[-2:])
            self._drawn = (stage, self.erf, overlay)
        return self._drawn[2]

    def _axes(self):
        """The figure's one axes, cleared: clearing it costs half of a new one (a slider step
        in the browser ~20 ms less)."""
        if not self._figure.axes:
            self._figure.add_subplot()
        ax = self._figure.axes[0]
        ax.cla()
        return ax

    def _agreement(self) -> str:
        """One line: the field traced now, and whether the committed atlas row says the same."""
        row, field = self.atlas_row, self.field
        where = f"{self.network.value} {self.stage.value}"
        if row["status"] != "ok":
            return _line(html.escape(f"{where}: {row['note'] or row['status']}"))
        same = (list(field.size) == row["field"] and list(map(float, field.stride))
                == list(map(float, row["jump"])) and list(field.padding) == row["padding"])
        text = f"{where}: traced now {field} — "
        if same:
            return _line(html.escape(text + "the same as the atlas row"))
        return _line(html.escape(text + "NOT the atlas row: regenerate it (make atlas)"),
                     PROBLEM_COLOR)

    # --- measuring -------------------------------------------------------------------------

    def _measure_safely(self) -> None:
        try:
            self.measure()
        except Exception as error:  # a widget never shows a traceback
            self.result.value = _line(html.escape(f"could not measure: {error}"), PROBLEM_COLOR)

    def measure(self, samples: int = SAMPLES, erf_samples: int = ERF_SAMPLES) -> Measurement | None:
        """Measure the shown unit by gradients (the network built on the CPU, random weights,
        float64): its support, compared with the box, and its effective field, drawn as heat."""
        from tqdm.notebook import tqdm

        from .probe import effective_field, measured_field

        row = self.atlas_row
        if not self.drawable:
            self.result.value = _line(html.escape(f"{row['status']}: no box to measure"))
            return None
        if row["parameters"] > MEASURE_LIMIT:
            self.result.value = _line(html.escape(
                f"{self.network.value} has {row['parameters'] / 1e6:.0f} M parameters: more "
                f"than this panel builds ({MEASURE_LIMIT / 1e6:.0f} M, for a 2 GB kernel)"),
                PROBLEM_COLOR)
            return None
        bar = tqdm(total=samples + erf_samples, desc="gradients", display=False)
        self.progress.children = (bar.container,)
        model = self._cpu_model()

        def counted(steps: Iterable) -> Iterator:
            for step in steps:
                yield step
                bar.update(1)

        layer, unit = self.layer, self.unit
        measured = measured_field(model, layer, self.size, unit=unit, samples=samples,
                                  progress=counted)
        erf = effective_field(model, layer, self.size, unit=unit, samples=erf_samples,
                              progress=counted)
        bar.close()
        box = self.field.span(unit)
        measurement = Measurement(unit, measured.spans, box, self.size, erf)
        self.erf = erf
        self.result.value = _line(html.escape(f"gradient support: {measurement}"),
                                  "inherit" if measurement.agrees else PROBLEM_COLOR)
        with self._quiet():
            self._redraw(None)  # the heat on the photograph; keeps the result line
        return measurement

    def _cpu_model(self):
        """The chosen network with (random, seeded) weights; the last one is kept."""
        import torch

        from . import atlas

        name = self.network.value
        if self._cpu[0] != name:
            self._cpu = (None, None)  # free the last one before building the next
            torch.manual_seed(0)
            self._cpu = (name, atlas.build(name, device="cpu"))
        return self._cpu[1]

    def __repr__(self) -> str:
        return (f"AtlasExplorer(network={self.network.value!r}, stage={self.stage.value!r}, "
                f"unit={self.unit})")


def _cell(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, list):
        return "×".join(map(str, value))
    return str(value)


ROW_KEYS = (("stage", "stage"), ("output", "output C×H×W"), ("field", "field (px)"),
            ("jump", "jump (px)"), ("padding", "effective padding"),
            ("margin_before", "tile margin before"), ("margin_after", "tile margin after"),
            ("margin_grid", "tile grid"), ("smallest_input", "smallest input"),
            ("default_input", "default size"), ("default_field", "field there"),
            ("note", "note"))


def _row_table(row: dict) -> str:
    """The atlas row as a small two-column table."""
    cells = "".join(
        f"<tr><td style='padding-right: 1em'>{label}</td><td>{html.escape(_cell(row.get(key)))}"
        "</td></tr>" for key, label in ROW_KEYS if row.get(key) not in (None, ""))
    return (f"<div style='font-family: monospace; font-size: 90%'><b>atlas: "
            f"{html.escape(row['model'])}</b><table>{cells}</table></div>")
