"""How fast the 1D diagram draws, and how fast the slider panel answers.

Prints medians measured side by side in one run (machines are noisy; compare ratios):

- render: ``draw_pixels1d`` of 5 rows x 64 cells into a reused figure + an Agg draw.
  Target ≤ 40 ms.
- the same diagram with one ``Text`` artist per index label, the naive way, for comparison.
- update: one slider step of ``ConvPanel`` (layout, draw, PNG encode). Target ≤ 50 ms.
- the atlas explorer (lesson 8, resnet18 from layer1): a unit step that moves the box (the
  photograph and the grid stay drawn), side by side with one that draws the picture anew as
  it did before, and a stage step (drawn anew); each drawn with Agg and JPEG-encoded. The
  browser test adds the round trip and the browser's own drawing (target ≤ 150 ms in all).
- ``import rfviz`` in a fresh interpreter.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_draw.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from rfviz.draw.pixels1d import ROW_PITCH, draw_pixels1d, layout_pixels1d  # noqa: E402
from rfviz.field import Layer  # noqa: E402
from rfviz.widgets import ConvPanel  # noqa: E402

LAYERS = [Layer(3, 1, 1)] * 4  # 4 layers over 64 pixels: 5 rows of 64 cells
SIZE = 64
REPEATS = 25


def median_ms(action, repeats: int = REPEATS) -> float:
    action()  # warm caches (glyph paths, fonts)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def render(figure: Figure) -> None:
    draw_pixels1d(LAYERS, SIZE, unit=30, fig=figure)
    figure.canvas.draw()


def render_with_text_labels(figure: Figure) -> None:
    """The same picture, but each index label a Text artist (what we avoid)."""
    draw_pixels1d(LAYERS, SIZE, unit=30, fig=figure)
    ax = figure.axes[0]
    for collection in [c for c in ax.collections if isinstance(c, PathCollection)]:
        collection.remove()
    diagram = layout_pixels1d(LAYERS, SIZE, unit=30)
    for r, row in enumerate(diagram.rows):
        for cell in range(row.size):
            ax.text(row.x(cell), r * ROW_PITCH + 0.5, str(cell), ha="center", va="center",
                    fontsize=6)
    figure.canvas.draw()


def import_ms() -> float:
    code = "import time; t = time.perf_counter(); import rfviz; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(5)]
    return 1000 * statistics.median(runs)


def main() -> None:
    figure = Figure(dpi=100)
    FigureCanvasAgg(figure)
    ours = median_ms(lambda: render(figure))
    naive = median_ms(lambda: render_with_text_labels(figure), repeats=7)

    panel = ConvPanel(size=SIZE, kernel=3, stride=1, padding=1, layers=4, unit=30)
    kernels = iter([5, 3] * (REPEATS + 1))
    update = median_ms(lambda: setattr(panel.sliders["kernel"], "value", next(kernels)))
    units = iter(list(range(10, 50)) * 2)
    highlight = median_ms(lambda: setattr(panel.sliders["unit"], "value", next(units)))

    print(f"render 5x64 diagram, glyph-path labels : {ours:7.1f} ms   (target ≤ 40)")
    print(f"render 5x64 diagram, one Text per label: {naive:7.1f} ms   "
          f"({naive / ours:.1f}x slower)")
    print(f"panel update, kernel step (structure)  : {update:7.1f} ms   (target ≤ 50)")
    print(f"panel update, unit step (highlight)    : {highlight:7.1f} ms   (target ≤ 50)")
    moved, anew, stage = explorer_steps()
    print(f"explorer unit step, box moved          : {moved:7.1f} ms   "
          f"(picture drawn anew: {anew:.1f} ms, {anew / moved:.2f}x; stage step {stage:.1f} ms)")
    print(f"import rfviz (fresh interpreter)       : {import_ms():7.1f} ms")


def explorer_steps() -> tuple[float, float, float]:
    """Median ms of the explorer's steps, alternately: a unit step that moves the box (the
    photograph and the grid stay drawn), a unit step that draws the whole picture anew (as
    before), and a stage step (always drawn anew)."""
    from rfviz import atlas
    from rfviz.explorer import AtlasExplorer

    explorer = AtlasExplorer(atlas.read("docs/atlas"), "resnet18", "layer1")
    stages = list(explorer.stage.options)

    def unit_step():
        explorer.unit_h.value = (explorer.unit_h.value + 1) % (explorer.unit_h.max + 1)

    def unit_step_anew():
        explorer._drawn = None
        unit_step()

    def stage_step():
        explorer.stage.value = stages[(stages.index(explorer.stage.value) + 1) % len(stages)]

    times: dict = {step: [] for step in (unit_step, unit_step_anew, stage_step)}
    for _ in range(2 * REPEATS):
        for step, spent in times.items():
            start = time.perf_counter()
            step()
            spent.append(time.perf_counter() - start)
    return tuple(1000 * statistics.median(spent) for spent in times.values())


if __name__ == "__main__":
    main()
