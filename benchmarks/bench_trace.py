"""Analytic receptive field vs measuring it, on torchvision's resnet50 at 224 x 224.

Prints the median time of ``receptive_field(model, "layer3")`` (shape propagation on the meta
device + the field recurrence over the model's torch.fx graph, which is traced once per model
and cached), the time of ``measured_field`` on the same layer (float64 forward and backward
passes on random inputs, one at a time), and their ratio, measured in one run.
Targets: analytic ≤ 0.2 s and ≥ 100x faster than measuring, judged on the repeated call.

A model's first call also pays for torch.fx's symbolic trace; that is printed too, with the
trace's own time: the trace by itself takes more than a hundredth of a measurement.

Run: ``.venv/bin/python benchmarks/bench_trace.py``.
"""

from __future__ import annotations

import statistics
import time
import warnings

import torch
import torch.fx
import torchvision

from rfviz.probe import measured_field
from rfviz.tracing import receptive_field


def timed(action, repeats: int) -> tuple[float, object]:
    result, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    receptive_field(torchvision.models.resnet18(weights=None))  # warm-up: imports
    fresh = iter([torchvision.models.resnet50(weights=None) for _ in range(10)])
    cold, _ = timed(lambda: receptive_field(next(fresh), "layer3"), repeats=5)
    tracing, _ = timed(lambda: torch.fx.Tracer().trace(next(fresh)), repeats=5)
    receptive_field(model, "layer3")  # traced once; later calls reuse the graph
    analytic, field = timed(lambda: receptive_field(model, "layer3"), repeats=15)
    measured, probe = timed(lambda: measured_field(model, "layer3", (224, 224)), repeats=5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"receptive_field(resnet50, 'layer3'), first call on a model: {cold * 1000:8.1f} ms")
    print(f"receptive_field(resnet50, 'layer3'), again (graph reused):  {analytic * 1000:8.1f} ms"
          f"  -> {field}")
    label = "measured_field(resnet50, 'layer3')"
    print(f"{label:60}{measured * 1000:8.1f} ms  -> spans {probe.spans} "
          f"(clipped at 224: {probe.clipped})")
    print(f"ratio measured / analytic: {measured / analytic:.0f}x   (targets: analytic ≤ 200 ms, "
          f"ratio ≥ 100x); on a model's first call {measured / cold:.0f}x; "
          f"torch.fx's trace by itself takes {tracing * 1000:.1f} ms")


if __name__ == "__main__":
    main()
