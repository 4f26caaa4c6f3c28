"""The receptive-field atlas: the whole of it, and one network's rows.

Prints, measured in one run:

1. the whole atlas as ``make atlas`` builds it (``python -m rfviz atlas``, a fresh process:
   imports, 2 worker processes, the files written to a temporary directory), wall-clock time;
   target ≤ 120 s on 2 cores; and the slowest networks (time inside the worker);
2. one network's rows after import (``network_rows(name, complete=False)``: build on the meta
   device, one trace at 224, every stage's numbers — no default size, no smallest-input
   search), median of 5 fresh builds, for resnet50 and, once each, for every network (median,
   90th percentile, slowest); target ≤ 50 ms;
3. where one network's time goes: resnet50's rows split into build, torch.fx's symbolic trace,
   shape propagation and the walk; and the complete rows of the slowest networks split into the
   same phases plus the smallest-input search and tile margins.

Run: ``.venv/bin/python benchmarks/bench_atlas.py``.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict

import torch

from rfviz import atlas, tracing
from rfviz.tracing import shapes, walk


def whole_atlas() -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "rfviz", "atlas", "--out", out],
                                capture_output=True, text=True, check=True)
        return time.perf_counter() - start, result.stdout.strip()


def slowest_in_workers() -> dict[str, float]:
    seconds = {}
    atlas.generate(progress=lambda name, s: seconds.__setitem__(name, s))
    return seconds


@contextlib.contextmanager
def phases():
    """Time spent in each phase, summed (outermost call only) while inside the block."""
    spent: dict[str, float] = defaultdict(float)
    targets = [(atlas, "_whole", "build on meta"), (tracing, "_graph", "torch.fx trace"),
               (shapes.MetaShapeProp, "run", "shape propagation"), (walk.Walk, "run", "walk"),
               (atlas, "_smallest_input", "smallest-input search"),
               (atlas, "tile_margins", "tile_margins (per-unit rows)")]
    originals = []
    depth = defaultdict(int)
    for owner, name, label in targets:
        original = getattr(owner, name)
        originals.append((owner, name, original))

        def timed(*args, _original=original, _label=label, **kwargs):
            depth[_label] += 1
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                depth[_label] -= 1
                if depth[_label] == 0:
                    spent[_label] += time.perf_counter() - start
        setattr(owner, name, timed)
    try:
        yield spent
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def median_ms(action, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    seconds, said = whole_atlas()
    print(f"\nwhole atlas, `python -m rfviz atlas` in a fresh process: {seconds:.1f} s "
          f"(target ≤ 120 s on 2 cores) -- {said}")
    in_workers = slowest_in_workers()
    print(f"  sum of the networks' times in the workers: {sum(in_workers.values()):.1f} s; "
          "slowest:")
    for name, s in sorted(in_workers.items(), key=lambda item: -item[1])[:8]:
        print(f"    {name:36} {s * 1000:7.0f} ms")

    atlas.network_rows("resnet18", complete=False)  # imports, caches
    one = median_ms(lambda: atlas.network_rows("resnet50", complete=False))
    print(f"\none network's rows after import (build + one trace at 224 + every stage):\n"
          f"  resnet50: {one:.0f} ms median of 5 (target ≤ 50 ms)")
    each = {}
    for network in atlas.catalogue():
        start = time.perf_counter()
        atlas.network_rows(network, complete=False)
        each[network.name] = (time.perf_counter() - start) * 1000
    ordered = sorted(each.values())
    print(f"  all {len(each)} networks once: median {statistics.median(ordered):.0f} ms, "
          f"90th percentile {ordered[int(0.9 * len(ordered))]:.0f} ms, "
          f"{sum(t <= 50 for t in ordered)} of {len(ordered)} within 50 ms; slowest: "
          + ", ".join(f"{n} {t:.0f} ms" for n, t in sorted(each.items(), key=lambda i: -i[1])[:5]))

    with phases() as spent:
        repeats = 5
        for _ in range(repeats):
            atlas.network_rows("resnet50", complete=False)
    print("\nwhere resnet50's rows spend their time (per call):")
    for label, s in spent.items():
        print(f"  {label:32} {s / repeats * 1000:6.1f} ms")

    slow = sorted(in_workers, key=lambda name: -in_workers[name])[:3]
    for name in slow:
        with phases() as spent:
            start = time.perf_counter()
            atlas.network_rows(name)
            total = time.perf_counter() - start
        parts = ", ".join(f"{label} {s * 1000:.0f} ms" for label, s in spent.items() if s)
        print(f"complete rows of {name}: {total * 1000:.0f} ms -- {parts}")


if __name__ == "__main__":
    main()
