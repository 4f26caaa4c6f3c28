"""Effective receptive fields for a live class: computing them, and one slider step.

Prints, for torchvision's resnet50 on a 224 x 224 photograph, the time of ``effective_field``
for each stage (float64 forward + backward, computed once and cached in notebook 06), and the
median time of one step of the stage slider once they are cached (draw + JPEG encode).
Target: a slider step ≤ 1 s.

Run: ``.venv/bin/python benchmarks/bench_erf.py``.
"""

from __future__ import annotations

import statistics
import time

import ipywidgets as widgets
import torch
import torchvision

from rfviz import draw_overlay2d, effective_field, photograph, receptive_field
from rfviz.widgets import FigurePanel

STAGES = ["layer1", "layer2", "layer3", "layer4"]


def main() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    image = photograph((224, 224))
    pixels = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)
    erfs = {}
    for stage in STAGES:
        start = time.perf_counter()
        erfs[stage] = effective_field(model, stage, pixels)
        print(f"effective_field({stage}): {time.perf_counter() - start:6.2f} s (once, then cached)")

    slider = widgets.SelectionSlider(options=STAGES, value=STAGES[0])

    def show(fig, name):
        field = receptive_field(model, name)
        draw_overlay2d(image, field, unit=(224 // field.h.stride // 2,) * 2, erf=erfs[name],
                       ax=fig.add_subplot())

    FigurePanel(slider, show, size=(5.0, 5.0), kind="jpeg")
    steps = []
    for name in STAGES * 3:
        start = time.perf_counter()
        slider.value = name if slider.value != name else STAGES[0]
        steps.append(time.perf_counter() - start)
    print(f"slider step with cached maps: median {statistics.median(steps) * 1000:.0f} ms, "
          f"max {max(steps) * 1000:.0f} ms   (target ≤ 1000 ms)")


if __name__ == "__main__":
    main()
