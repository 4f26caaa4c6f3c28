"""Slider panels for the notebooks: change a layer, watch the diagram and the formula follow.

The panel draws into one persistent, pyplot-free matplotlib figure and shows it as a PNG in
an ``ipywidgets.Image``: no flicker, no duplicated figures, and the image scales down to
the notebook's width. Every change goes through the panel's ``update``, so tests can
drive the sliders exactly as a person does, without a browser.

A combination torch would refuse never shows a traceback: pooling's padding range adapts
to the kernel, and a layer that does not fit (or a transposed layer's ``output_padding`` that
torch refuses) is named in one line under the sliders while the diagram shows the layers that do.

:class:`ConvPanel` repeats one layer; :class:`StackPanel` gives each layer of a small stack
its own kernel, stride and padding and reads out, layer by layer, how the field grows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
from dataclasses import dataclass, replace

import ipywidgets as widgets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .arithmetic import explain_conv_transpose_output_size, explain_output_size
from .draw.colours import PROBLEM_COLOR
from .draw.overlay2d import Overlay, photograph
from .draw.pixels1d import Diagram1d, draw_layout1d, layout_pixels1d
from .field import Layer, ReceptiveField, fit_layers, layer_fields

__all__ = ["ConvPanel", "FigurePanel", "OverlayPanel", "PanelState", "StackPanel", "StackState",
           "StackView", "conv_panel", "describe_stack"]

OPS = {"conv": "conv", "max pool": "maxpool", "avg pool": "avgpool", "transposed": "transposed"}
DPI = 100
MAX_DRAWN = 200  # cells in a row (more are a grey bar); transposed layers grow ×stride


@dataclass(frozen=True)
class PanelState:
    """What the sliders say, as plain values."""

    size: int = 16
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    layers: int = 1
    unit: int = 0
    op: str = "conv"
    ceil_mode: bool = False
    output_padding: int = 0

    def __repr__(self) -> str:
        """Every value, ``output_padding`` only for the op that has it (lesson 01 stores the
        repr of a conv panel)."""
        shown = [f"{name}={getattr(self, name)!r}" for name in self.__dataclass_fields__
                 if name != "output_padding" or self.op == "transposed"]
        return f"PanelState({', '.join(shown)})"

    @property
    def layer(self) -> Layer:
        """The layer the sliders describe; ceil_mode and output_padding count only for the
        ops that have them. Raises ValueError for an output_padding torch refuses."""
        transposed = self.op == "transposed"
        return Layer(self.kernel, self.stride, self.padding, self.dilation, op=self.op,
                     ceil_mode=self.ceil_mode and self.op in ("maxpool", "avgpool"),
                     output_padding=self.output_padding if transposed else 0)


@dataclass(frozen=True)
class PanelView:
    """What the panel shows for a state: the layers drawn, the top unit, the readout lines,
    and the diagram laid out (once, for the readout and the drawing)."""

    layers: tuple[Layer, ...]
    sizes: tuple[int, ...]
    unit: int | None
    lines: tuple[str, ...]
    problem: str | None = None
    diagram: Diagram1d | None = dataclasses.field(default=None, repr=False, compare=False)


def describe(state: PanelState) -> PanelView:
    """Work out, without drawing, what to show for ``state`` (pure; never raises ValueError).

    >>> view = describe(PanelState(size=7, kernel=3, stride=2))
    >>> view.sizes, view.lines[0]
    ((7, 3), 'O = ⌊(7 + 2·0 − 1·(3−1) − 1) / 2⌋ + 1 = ⌊4 / 2⌋ + 1 = 3')
    >>> describe(PanelState(size=4, kernel=3, stride=2, layers=2)).problem
    'layer 2 does not fit: kernel=3 spans 3 pixels but the padded input has only 1 \
(size=1, padding=0); valid: kernel ≤ 1'
    >>> view = describe(PanelState(size=4, kernel=3, stride=2, op="transposed", unit=3))
    >>> print("\\n".join(view.lines))                # the checkerboard
    O = (4−1)·2 − 2·0 + 1·(3−1) + 0 + 1 = 6 − 0 + 2 + 0 + 1 = 9
    inside, outputs sum 2, 1, 2, 1, … inputs (uneven: the checkerboard)
    top unit 3 depends on input pixel 1 (its field depends on the unit)
    >>> describe(PanelState(size=4, stride=2, op="transposed", output_padding=2)).problem
    'impossible layer: output_padding=2 is out of range: it must be smaller than stride=2 or \
dilation=1; valid: output_padding ≤ 1'
    """
    try:
        layer = state.layer
    except ValueError as error:
        return PanelView((), (state.size,), None, (), f"impossible layer: {error}",
                         layout_pixels1d((), state.size))
    fitted, sizes, problem = fit_layers([layer] * state.layers, state.size)
    if len(sizes) > 1 and max(sizes) > MAX_DRAWN:
        count = next(n for n, size in enumerate(sizes) if size > MAX_DRAWN)
        problem = (f"layer {count} is not drawn: its {sizes[count]} outputs are more than a "
                   f"picture can show ({MAX_DRAWN})")
        fitted, sizes = fitted[:count - 1], sizes[:count]
    if not fitted:
        return PanelView((), tuple(sizes), None, (), problem, layout_pixels1d((), state.size))
    if layer.op == "transposed":
        first = explain_conv_transpose_output_size(state.size, layer.kernel, layer.stride,
                                                   layer.padding, layer.output_padding,
                                                   layer.dilation)
    else:
        first = explain_output_size(state.size, layer.kernel, layer.stride, layer.padding,
                                    layer.dilation, layer.ceil_mode)
    lines = [first]
    if layer.op == "transposed":
        lines.append(_summed(layer))
    if len(fitted) > 1:
        lines.append("sizes layer by layer: " + " → ".join(map(str, sizes)))
    unit = min(state.unit, sizes[-1] - 1)
    diagram = layout_pixels1d(fitted, state.size, unit)
    if layer.op == "transposed" and layer.stride > 1:  # no single field: trace this unit
        seen = diagram.input_cells
        pixels = "no input pixel" if not seen else (
            f"input pixel{'s' * (len(seen) > 1)} {_cells(seen, state.size)}")
        lines.append(f"top unit {unit} depends on {pixels} (its field depends on the unit)")
    else:
        field = ReceptiveField.of(fitted)
        low, high = field.span(unit)
        lines.append(f"top unit {unit} sees input pixels {low}…{high}: field {field.size} px, "
                     f"jump {field.stride} px, effective padding {field.padding} px")
    return PanelView(tuple(fitted), tuple(sizes), unit, tuple(lines), problem, diagram)


def _summed(layer: Layer) -> str:
    """How many inputs a transposed layer's outputs sum away from the ends: one count per
    phase (output index modulo the stride); uneven counts are the checkerboard."""
    counts = [len(layer.window(phase)) for phase in range(layer.stride)]
    if len(set(counts)) == 1:
        return f"inside, every output sums {counts[0]} input{'s' * (counts[0] != 1)}"
    return (f"inside, outputs sum {', '.join(map(str, counts * 2))}, … inputs "
            "(uneven: the checkerboard)")


class _Panel:
    """Shown in a notebook as its widget, with ``repr`` as the plain-text form (what nbval
    compares, instead of a widget's random id). Every control calls :meth:`update`, which
    redraws (``_redraw``) unless controls are being moved together (:meth:`_quiet`), and shows
    a failure as one line in ``readout``: a widget never shows a traceback."""

    widget: widgets.Widget
    readout: widgets.HTML
    _updating = False

    def _repr_mimebundle_(self, **kwargs):
        return {**self.widget._repr_mimebundle_(**kwargs), "text/plain": repr(self)}

    @contextlib.contextmanager
    def _quiet(self):
        """Move several controls with no redraw per change (one :meth:`update` after)."""
        self._updating = True
        try:
            yield
        finally:
            self._updating = False

    def update(self, change=None) -> None:
        if self._updating:
            return
        with self._quiet():
            try:
                self._redraw(change)
            except Exception as error:  # a widget must never show a traceback
                self.readout.value = _failure(error)

    def _redraw(self, change) -> None:
        raise NotImplementedError


class _DiagramPanel(_Panel):
    """A panel of sliders over a stacked 1D diagram: readout lines, then the picture."""

    _preformatted = False  # readout lines in a fixed-width font (a table)

    def _show(self, view) -> None:
        unit = self.sliders["unit"]
        unit.max = max(view.sizes[-1] - 1, 0)
        unit.disabled = view.unit is None
        lines = [_line(html.escape(text), pre=self._preformatted) for text in view.lines]
        if view.problem:
            lines.append(_line(html.escape(view.problem), PROBLEM_COLOR))
        self.readout.value = "".join(lines)
        draw_layout1d(view.diagram, fig=self._figure, index_base=self.index_base)
        self.image.value = _encode(self._figure, "png")


def _canvas_figure(**kwargs) -> Figure:
    """A pyplot-free figure with its own Agg canvas (drawn to bytes, never to a window)."""
    figure = Figure(dpi=DPI, **kwargs)
    FigureCanvasAgg(figure)
    return figure


def _failure(error: Exception) -> str:
    """The one red line a panel shows instead of a traceback."""
    return _line(f"unexpected error ({type(error).__name__}: {error})", PROBLEM_COLOR)


class ConvPanel(_DiagramPanel):
    """Sliders for kernel, stride, padding, dilation and input size over a stacked diagram.

    ``layers`` repeats the same layer, to watch fields grow; ``unit`` picks the top unit
    whose field is traced. Display the panel by leaving it as a cell's last expression.
    The op buttons choose convolution, max or average pooling, or a transposed convolution
    (then the ``output_padding`` slider counts, and each output shows how many inputs it sums).

    >>> panel = ConvPanel(size=7, kernel=3, stride=2)
    >>> panel.sliders["stride"].value = 1          # as a person moving the slider would
    >>> panel.view.sizes
    (7, 5)
    """

    def __init__(self, *, index_base: int = 0, **values) -> None:
        state = PanelState(**values)
        self.index_base = index_base
        self._figure = _canvas_figure()
        style = {"description_width": "5.5em"}
        layout = widgets.Layout(width="20em")

        def slider(name: str, low: int, high: int, description: str) -> widgets.IntSlider:
            return widgets.IntSlider(value=getattr(state, name), min=low, max=high,
                                     description=description, style=style, layout=layout,
                                     continuous_update=True)

        self.sliders = {
            "size": slider("size", 1, 64, "input size"),
            "kernel": slider("kernel", 1, 9, "kernel"),
            "stride": slider("stride", 1, 5, "stride"),
            "padding": slider("padding", 0, 4, "padding"),
            "dilation": slider("dilation", 1, 3, "dilation"),
            "layers": slider("layers", 1, 4, "layers"),
            "unit": slider("unit", 0, 63, "top unit"),
            "output_padding": slider("output_padding", 0, 4, "output pad."),
        }
        self.op = widgets.ToggleButtons(
            options=list(OPS.items()), value=state.op, style={"button_width": "6.5em"})
        self.ceil_mode = widgets.Checkbox(value=state.ceil_mode, description="ceil_mode",
                                          indent=False)
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.readout = widgets.HTML()
        left = widgets.VBox([self.sliders[n] for n in ("size", "kernel", "stride", "padding")])
        right = widgets.VBox([*(self.sliders[n] for n in ("dilation", "output_padding",
                                                          "layers", "unit")), self.ceil_mode])
        self.widget = widgets.VBox([self.op, widgets.HBox([left, right]), self.readout,
                                    self.image])
        self.view: PanelView | None = None
        for control in [*self.sliders.values(), self.op, self.ceil_mode]:
            control.observe(self.update, names="value")
        self.update()

    @property
    def state(self) -> PanelState:
        values = {name: s.value for name, s in self.sliders.items()}
        return PanelState(**values, op=self.op.value, ceil_mode=self.ceil_mode.value)

    def set(self, **values) -> PanelView:
        """Move several controls at once (one redraw), e.g. ``panel.set(kernel=5, stride=2)``."""
        unknown = set(values) - set(PanelState.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; valid: "
                             f"{', '.join(PanelState.__dataclass_fields__)}")
        with self._quiet():
            self.sliders["unit"].max = 63  # the unit's real range is known only after the rest
            for name, value in values.items():
                control = {"op": self.op, "ceil_mode": self.ceil_mode}.get(name)
                (control or self.sliders[name]).value = value
        self.update()
        return self.view

    def _redraw(self, change) -> None:
        """Adapt the ranges to the state, then redraw."""
        self.view = describe(self._adapt_ranges(self.state))
        self._show(self.view)

    def _adapt_ranges(self, state: PanelState) -> PanelState:
        pooling = state.op in ("maxpool", "avgpool")
        self.ceil_mode.disabled = not pooling
        # torch's rule (output_padding < max(stride, dilation)) is left to the readout to say
        self.sliders["output_padding"].disabled = state.op != "transposed"
        padding = self.sliders["padding"]
        padding.max = state.kernel // 2 if pooling else 4  # torch: pooling padding ≤ kernel // 2
        dilation = self.sliders["dilation"]
        dilation.disabled = state.op == "avgpool"
        if dilation.disabled:
            dilation.value = 1
        return replace(self.state, ceil_mode=self.ceil_mode.value and pooling)

    def __repr__(self) -> str:
        return f"ConvPanel({self.state})"


def conv_panel(**values) -> ConvPanel:
    """A :class:`ConvPanel`, e.g. ``conv_panel(size=12, kernel=3, stride=2)``."""
    return ConvPanel(**values)


def _line(text: str, color: str = "inherit", *, pre: bool = False) -> str:
    """One line of the readout; ``pre`` keeps runs of spaces (aligned columns)."""
    space = "; white-space: pre" if pre else ""
    return f'<div style="font-family: monospace; color: {color}{space}">{text}</div>'


def _encode(figure: Figure, kind: str) -> bytes:
    """The figure as PNG (fast compression: it only crosses a local socket) or JPEG bytes."""
    canvas = figure.canvas
    canvas.draw()
    buffer = io.BytesIO()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba())
    if kind == "png":
        image.save(buffer, format="png", compress_level=1)
    else:
        image.convert("RGB").save(buffer, format="jpeg", quality=85)
    return buffer.getvalue()


class OverlayPanel(_Panel):
    """A slider over a model's layers showing one unit's field over a photograph.

    The field of each layer comes from :func:`rfviz.tracing.receptive_field` (the model is
    traced once); the unit sliders adapt to the layer's output size.
    """

    def __init__(self, model, layers: list[str], image=None, *, unit=None) -> None:
        from .tracing import trace  # torch: imported when a model is shown, not with widgets

        self.image = photograph((224, 224)) if image is None else image
        size = self.image.shape[:2]
        table = trace(model, size)
        self.rows = {name: table.find(name) for name in layers}
        self._figure = _canvas_figure(figsize=(5.0, 5.0))
        self._drawn = None  # (layer, Overlay) of the picture shown
        self.layer = widgets.SelectionSlider(options=layers, value=layers[0], description="layer",
                                             continuous_update=True,
                                             layout=widgets.Layout(width="28em"))
        self.unit_h = widgets.IntSlider(description="unit row", min=0, max=0)
        self.unit_w = widgets.IntSlider(description="unit col", min=0, max=0)
        self.picture = widgets.Image(format="jpeg", layout=widgets.Layout(max_width="100%"))
        self.readout = widgets.HTML()
        self.widget = widgets.VBox([self.layer, widgets.HBox([self.unit_h, self.unit_w]),
                                    self.readout, self.picture])
        self._adapt(center=True)
        if unit is not None:
            self.unit_h.value, self.unit_w.value = unit
        for control in (self.layer, self.unit_h, self.unit_w):
            control.observe(self.update, names="value")
        self.update()

    def _adapt(self, center: bool) -> None:
        """Unit ranges follow the layer's output size; keep the unit at the same place."""
        row = self.rows[self.layer.value]
        n_h, n_w = row.shape[-2:]
        for slider, n in ((self.unit_h, n_h), (self.unit_w, n_w)):
            fraction = (slider.value + 0.5) / (slider.max + 1)
            slider.max = n - 1
            slider.value = (n - 1) // 2 if center else min(int(fraction * n), n - 1)

    def _redraw(self, change) -> None:
        if change is not None and change["owner"] is self.layer:
            self._adapt(center=False)
        row = self.rows[self.layer.value]
        if self._drawn is None or self._drawn[0] != row.name:  # a unit step moves the box only
            self._drawn = None  # the figure is cleared: no drawing of it stays valid
            self._figure.clear()
            self._drawn = (row.name, Overlay(self._figure.add_subplot(), self.image, row.field,
                                             grid=row.shape[-2:]))
        self._drawn[1].show((self.unit_h.value, self.unit_w.value))
        self.readout.value = _line(html.escape(
            f"{row.name}: output {'×'.join(map(str, row.shape))}, field {row.field}"))
        self.picture.value = _encode(self._figure, "jpeg")  # a photograph: JPEG is 10x smaller

    def __repr__(self) -> str:
        return (f"OverlayPanel(layer={self.layer.value!r}, "
                f"unit=({self.unit_h.value}, {self.unit_w.value}))")


class FigurePanel(_Panel):
    """One control driving a drawing: ``draw(fig, value)`` redraws a persistent figure,
    shown as an image (no ``Output`` widget, so nothing leaks when no browser is attached).

    >>> slider = widgets.IntSlider(value=2, min=1, max=5)
    >>> panel = FigurePanel(slider, lambda fig, n: fig.add_subplot().plot(range(n)))
    >>> slider.value = 4
    >>> len(panel.fig.axes[0].lines[0].get_xdata())
    4
    """

    def __init__(self, control, draw, *, size=(6.0, 3.6), kind: str = "png") -> None:
        self.control, self.draw, self.kind = control, draw, kind
        self.fig = _canvas_figure(figsize=size)
        self.picture = widgets.Image(format=kind, layout=widgets.Layout(max_width="100%"))
        self.readout = widgets.HTML()
        self.widget = widgets.VBox([control, self.readout, self.picture])
        control.observe(self.update, names="value")
        self.update()

    def _redraw(self, change) -> None:
        self.fig.clear()
        self.draw(self.fig, self.control.value)
        self.picture.value = _encode(self.fig, self.kind)
        self.readout.value = ""

    def __repr__(self) -> str:
        return f"FigurePanel({self.control.description or 'value'}={self.control.value!r})"


# --- a stack of different layers ------------------------------------------------------------

STACK_RANGES = {"size": (1, 48), "layers": (1, 4), "kernel": (1, 7), "stride": (1, 3),
                "padding": (0, 3)}
UNIT_MAX = STACK_RANGES["size"][1] - 1
_SPEC = ("kernel", "stride", "padding")


def _in_range(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}={value!r} is not an integer; valid: {low} ≤ {name} ≤ {high}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is out of range; valid: {low} ≤ {name} ≤ {high}")
    return value


@dataclass(frozen=True)
class StackState:
    """What a :class:`StackPanel`'s sliders say: the input length, one ``(kernel, stride,
    padding)`` per layer (1 to 4 layers, first layer first) and the traced top unit.

    Values outside the sliders' ranges raise a ValueError naming the value and the range:

    >>> StackState(layers=[(3, 1, 0), (9, 1, 0)])
    Traceback (most recent call last):
    ...
    ValueError: kernel of layer 2=9 is out of range; valid: 1 ≤ kernel of layer 2 ≤ 7
    """

    size: int = 16
    layers: tuple[tuple[int, int, int], ...] = ((3, 1, 0), (3, 1, 0))
    unit: int = 0

    def __post_init__(self) -> None:
        _in_range("size", self.size, *STACK_RANGES["size"])
        _in_range("unit", self.unit, 0, UNIT_MAX)
        layers = self.layers
        if not isinstance(layers, tuple | list) or not (
                STACK_RANGES["layers"][0] <= len(layers) <= STACK_RANGES["layers"][1]):
            raise ValueError(f"layers={layers!r} must be a list of 1 to 4 (kernel, stride, "
                             "padding) tuples")
        specs = []
        for number, spec in enumerate(layers, start=1):
            if not isinstance(spec, tuple | list) or len(spec) != 3:
                raise ValueError(f"layer {number}={spec!r} must be a (kernel, stride, padding) "
                                 "tuple")
            specs.append(tuple(_in_range(f"{name} of layer {number}", value, *STACK_RANGES[name])
                               for name, value in zip(_SPEC, spec, strict=True)))
        object.__setattr__(self, "layers", tuple(specs))

    @property
    def stack(self) -> tuple[Layer, ...]:
        """The layers as :class:`~rfviz.field.Layer` objects (convolutions)."""
        return tuple(Layer(*spec) for spec in self.layers)


@dataclass(frozen=True)
class StackView:
    """What a :class:`StackPanel` shows for a state.

    ``layers`` are the layers that fit (all of them unless ``problem`` says which does not);
    ``sizes`` and ``fields`` hold the input's and each fitted layer's output length and field;
    ``traced[r]`` the cells of row ``r`` (0: the input) that the traced top unit depends on,
    padding cells included; ``lines`` the readout, a small table.
    """

    layers: tuple[Layer, ...]
    sizes: tuple[int, ...]
    fields: tuple[ReceptiveField, ...]
    unit: int | None
    traced: tuple[frozenset[int], ...]
    lines: tuple[str, ...]
    problem: str | None = None
    diagram: Diagram1d | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def seen(self) -> frozenset[int]:
        """The real input pixels (no padding) the traced top unit depends on."""
        return frozenset(i for i in self.traced[0] if 0 <= i < self.sizes[0])


def _cells(cells: frozenset[int], size: int) -> str:
    """``cells`` of a row of ``size`` as a short text: '2…6', '0…6 (3 of them: gaps)',
    '0…3 + 1 padding', 'padding only'."""
    real = sorted(i for i in cells if 0 <= i < size)
    padding = len(cells) - len(real)
    if not real:
        return "padding only" if padding else "none"
    text = str(real[0]) if len(real) == 1 else f"{real[0]}…{real[-1]}"
    if len(real) != real[-1] - real[0] + 1:
        text += f" ({len(real)} of them: gaps)"
    if padding:
        text += f" + {padding} padding"
    return text


def describe_stack(state: StackState) -> StackView:
    """Work out, without drawing, what a :class:`StackPanel` shows for ``state`` (pure; never
    raises): per layer the output length, the field's size, jump and effective padding, and
    the cells the traced top unit depends on.

    >>> view = describe_stack(StackState(size=15, layers=[(3, 2, 0), (2, 1, 0)], unit=1))
    >>> print("\\n".join(view.lines))                 # the Chinese tutorial's two filters
               k  s  p  length  field  jump  eff. padding  traced cells
    input                   15      1     1             0  2…6
    layer 1    3  2  0       7      3     2             0  1…2
    layer 2    2  1  0       6      5     2             0  1
    top unit 1 sees input pixels 2…6: its field spans 2…6 (5 px)
    >>> describe_stack(StackState(size=4, layers=[(3, 1, 0), (3, 1, 0)])).problem
    'layer 2 does not fit: kernel=3 spans 3 pixels but the padded input has only 2 \
(size=2, padding=0); valid: kernel ≤ 2'
    """
    fitted, sizes, problem = fit_layers(state.stack, state.size)
    fields = layer_fields(fitted)
    unit = min(state.unit, sizes[-1] - 1) if fitted else None
    diagram = layout_pixels1d(fitted, state.size, unit)
    traced = diagram.highlighted
    lines = [f"{'':9} {'k':>2} {'s':>2} {'p':>2}  length  field  jump  eff. padding  traced cells"]
    for r, (size, field) in enumerate(zip(sizes, fields, strict=True)):
        if r == 0:
            name, spec = "input", " " * 8
        else:
            layer = fitted[r - 1]
            name, spec = f"layer {r}", f"{layer.kernel:>2} {layer.stride:>2} {layer.padding:>2}"
        cells = _cells(traced[r], size) if unit is not None else ""
        lines.append(f"{name:9} {spec}  {size:>6}  {field.size:>5}  {field.stride:>4}  "
                     f"{field.padding:>12}  {cells}".rstrip())
    if unit is not None:
        low, high = fields[-1].span(unit)
        lines.append(f"top unit {unit} sees input pixels {_cells(traced[0], state.size)}: "
                     f"its field spans {low}…{high} ({fields[-1].size} px)")
    return StackView(tuple(fitted), tuple(sizes), tuple(fields), unit, tuple(traced),
                     tuple(lines), problem, diagram)


class StackPanel(_DiagramPanel):
    """Sliders for a stack of 1 to 4 convolutions, each with its own kernel, stride and
    padding, over the stacked diagram; the readout follows the field layer by layer.

    ``layers`` is a list of ``(kernel, stride, padding)`` tuples, first layer first; ``unit``
    is the top unit whose field is traced. A layer that does not fit is named in one line
    and the diagram shows the layers below it.

    >>> panel = StackPanel(size=15, layers=[(3, 2, 0), (2, 1, 0)])
    >>> panel.sliders["kernel 2"].value = 4          # as a person moving the slider would
    >>> panel.view.fields[-1].size                   # 3 + (4 - 1)·2
    9
    """

    _preformatted = True

    def __init__(self, *, size: int = 16, layers=((3, 1, 0), (3, 1, 0)), unit: int = 0,
                 index_base: int = 0) -> None:
        state = StackState(size, layers, unit)
        self.index_base = index_base
        self._figure = _canvas_figure()
        style = {"description_width": "4.5em"}

        def slider(value: int, low: int, high: int, description: str,
                   width: str = "15em") -> widgets.IntSlider:
            return widgets.IntSlider(value=value, min=low, max=high, description=description,
                                     style=style, layout=widgets.Layout(width=width),
                                     continuous_update=True)

        self.sliders = {
            "layers": slider(len(state.layers), *STACK_RANGES["layers"], "layers"),
            "size": slider(state.size, *STACK_RANGES["size"], "input size", "20em"),
            "unit": slider(state.unit, 0, UNIT_MAX, "top unit", "20em"),
        }
        self.rows = []
        for number in range(1, STACK_RANGES["layers"][1] + 1):
            spec = state.layers[number - 1] if number <= len(state.layers) else (3, 1, 0)
            for name, value in zip(_SPEC, spec, strict=True):
                self.sliders[f"{name} {number}"] = slider(value, *STACK_RANGES[name], name)
            label = widgets.Label(f"layer {number}", layout=widgets.Layout(width="4.5em"))
            self.rows.append(widgets.HBox(
                [label, *(self.sliders[f"{name} {number}"] for name in _SPEC)]))
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.readout = widgets.HTML()
        top = widgets.HBox([self.sliders[n] for n in ("layers", "size", "unit")])
        self.widget = widgets.VBox([top, *self.rows, self.readout, self.image])
        self.view: StackView | None = None
        for control in self.sliders.values():
            control.observe(self.update, names="value")
        self.update()

    @property
    def state(self) -> StackState:
        count = self.sliders["layers"].value
        layers = tuple(tuple(self.sliders[f"{name} {number}"].value for name in _SPEC)
                       for number in range(1, count + 1))
        return StackState(self.sliders["size"].value, layers, self.sliders["unit"].value)

    def set(self, *, size: int | None = None, layers=None, unit: int | None = None) -> StackView:
        """Move several controls at once (one redraw), e.g. ``panel.set(layers=[(3, 2, 1)])``.

        Values outside the sliders' ranges raise a ValueError naming them (a slider would
        silently clamp them)."""
        current = self.state
        wanted = StackState(current.size if size is None else size,
                            current.layers if layers is None else layers,
                            current.unit if unit is None else unit)
        with self._quiet():
            self.sliders["unit"].max = UNIT_MAX  # the real range is known only after the rest
            self.sliders["size"].value = wanted.size
            self.sliders["layers"].value = len(wanted.layers)
            for number, spec in enumerate(wanted.layers, start=1):
                for name, value in zip(_SPEC, spec, strict=True):
                    self.sliders[f"{name} {number}"].value = value
            self.sliders["unit"].value = wanted.unit
        self.update()
        return self.view

    def _redraw(self, change) -> None:
        """Show the rows of the layers in use, then redraw."""
        count = self.sliders["layers"].value
        for number, row in enumerate(self.rows, start=1):
            row.layout.display = None if number <= count else "none"
            for name in _SPEC:
                self.sliders[f"{name} {number}"].disabled = number > count
        self.view = describe_stack(self.state)
        self._show(self.view)

    def __repr__(self) -> str:
        state = self.state
        return f"StackPanel(size={state.size}, layers={list(state.layers)}, unit={state.unit})"
