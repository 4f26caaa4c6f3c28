"""The receptive-field atlas: the whole of it, and one network's rows.

Prints, measured in one run:

1. the whole atlas as ``make atlas`` builds it (``python -m rfviz atlas``, a fresh process:
   imports, 2 worker processes, the files written to a temporary directory), wall-clock time;
   target ≤ 120 s on 2 cores; and the slowest networks (complete rows, time in the worker);
2. one network's rows after import (``network_rows(name, complete=False)``: build on the meta
   device, one trace at 224, every stage's numbers, tile margins of per-unit stages — no default
   size, no smallest-input search), median of 5 fresh builds for resnet50 and, once each, for
   every network: median, 90th percentile, slowest, how many within the target of 50 ms;
3. side by side, network by network in turn (so that other jobs on the machine weigh on all
   alike): the rows with each speed-up undone — torch.fx's stock tracer (it looks a parameter up
   among all of the model's on every read, copies a scope per module call), timm's
   BatchNormAct2d traced into, the garbage collector left running, torch on the
   threads the process has (2) rather than one, and for the slowest networks' complete rows,
   each size traced afresh every time it is asked for;
4. where one network's time goes: resnet50's rows split into build, torch.fx's symbolic trace,
   shape propagation and the walk; and the complete rows of the slowest networks split into the
   same phases plus the smallest-input search and tile margins.

Run: ``.venv/bin/python benchmarks/bench_atlas.py`` (about 3 minutes on 2 cores).
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
import torch.fx

from rfviz import atlas, tracing
from rfviz.atlas import rows
from rfviz.tracing import shapes, walk

TARGET_MS = 50


def whole_atlas() -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "rfviz", "atlas", "--out", out],
                                capture_output=True, text=True, check=True)
        return time.perf_counter() - start, result.stdout.strip()


def seconds_in_workers() -> dict[str, float]:
    seconds = {}
    atlas.generate(progress=lambda name, s: seconds.__setitem__(name, s))
    return seconds


@contextlib.contextmanager
def phases():
    """Time spent in each phase, summed (outermost call only) while inside the block."""
    spent: dict[str, float] = defaultdict(float)
    targets = [(rows, "whole", "build on meta"), (tracing, "_graph", "torch.fx trace"),
               (shapes.MetaShapeProp, "run", "shape propagation"), (walk.Walk, "run", "walk"),
               (rows, "smallest_input", "smallest-input search"),
               (rows, "tile_margins", "tile_margins (per-unit rows)")]
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


# --- each speed-up undone, for the side-by-side runs -------------------------------------------


@contextlib.contextmanager
def swapped(owner, name: str, value):
    """``owner.name`` is ``value`` inside the block."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


UNDONE = {  # label -> the block in which that speed-up is undone
    "now": contextlib.nullcontext,
    # torch.fx's own Tracer, as rfviz used before (no leaf of rfviz's, no lean bookkeeping)
    "stock torch.fx tracer": lambda: swapped(tracing, "_Tracer", torch.fx.Tracer),
    # timm's BatchNormAct2d traced into (eight nodes each) rather than one op
    "timm's norm+act traced into": lambda: swapped(tracing, "_norm_then_activation",
                                                   lambda module: False),
    # the garbage collector not paused during the rows
    "collector running": lambda: swapped(rows, "_collector_paused", contextlib.nullcontext),
    # torch on the threads the process has (2 here), not one
    "torch threads as set": lambda: swapped(rows, "_one_torch_thread", contextlib.nullcontext),
    # every trace done afresh, however often the rows ask for the same size
    "each size traced afresh": lambda: swapped(rows, "_remembering", contextlib.nullcontext),
}


def timed_ms(action) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def side_by_side(names: list[str], variants: dict, complete: bool = False) -> dict[str, list]:
    """Per variant, each network's time; the variants take turns on each network."""
    times: dict[str, list] = {label: [] for label in variants}
    for name in names:
        for label, variant in variants.items():
            with variant():
                start = time.perf_counter()
                atlas.network_rows(name, complete=complete)
                times[label].append((time.perf_counter() - start) * 1000)
    return times


def median_ms(action, repeats: int = 5) -> float:
    return statistics.median(timed_ms(action) for _ in range(repeats))


def main() -> None:
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    seconds, said = whole_atlas()
    print(f"\nwhole atlas, `python -m rfviz atlas` in a fresh process: {seconds:.1f} s "
          f"(target ≤ 120 s on 2 cores) -- {said}")
    in_workers = seconds_in_workers()
    print(f"  sum of the networks' complete rows in the workers: "
          f"{sum(in_workers.values()):.1f} s; slowest:")
    for name, s in sorted(in_workers.items(), key=lambda item: -item[1])[:6]:
        print(f"    {name:36} {s * 1000:7.0f} ms")

    atlas.network_rows("resnet18", complete=False)  # imports, caches
    one = median_ms(lambda: atlas.network_rows("resnet50", complete=False))
    print(f"\none network's rows after import (build + one trace at 224 + every stage):\n"
          f"  resnet50: {one:.0f} ms median of 5 (target ≤ {TARGET_MS} ms)")
    each = {network.name: timed_ms(lambda n=network: atlas.network_rows(n, complete=False))
            for network in atlas.catalogue()}
    ordered = sorted(each.values())
    slowest = sorted(each.items(), key=lambda item: -item[1])[:5]
    print(f"  all {len(each)} networks once: median {statistics.median(ordered):.0f} ms, "
          f"90th percentile {ordered[int(0.9 * len(ordered))]:.0f} ms, max {ordered[-1]:.0f} ms;"
          f" {sum(t <= TARGET_MS for t in ordered)} of {len(ordered)} within {TARGET_MS} ms; "
          "slowest: " + ", ".join(f"{n} {t:.0f} ms" for n, t in slowest))

    sample = [n.name for n in atlas.catalogue()][::4]
    times = side_by_side(sample, {label: UNDONE[label] for label in (
        "now", "stock torch.fx tracer", "timm's norm+act traced into", "collector running",
        "torch threads as set")})
    print(f"\nside by side, {len(sample)} networks (every 4th), each variant in turn on each:")
    now = times["now"]
    for label, values in times.items():
        ratio = statistics.median(v / n for v, n in zip(values, now, strict=True))
        print(f"  {label:24} median {statistics.median(values):6.0f} ms, sum "
              f"{sum(values) / 1000:5.1f} s; per network {ratio:.2f}× now (median)")

    slow = sorted(in_workers, key=lambda name: -in_workers[name])[:3]
    variants = {label: UNDONE[label] for label in (
        "now", "each size traced afresh", "torch threads as set")}
    times = side_by_side(slow, variants, complete=True)
    print("complete rows of the slowest networks, side by side:")
    for k, name in enumerate(slow):
        print(f"  {name:28} " + ", ".join(f"{label} {times[label][k]:.0f} ms"
                                           for label in variants))

    with phases() as spent:
        repeats = 5
        for _ in range(repeats):
            atlas.network_rows("resnet50", complete=False)
    print("\nwhere resnet50's rows spend their time (per call):")
    for label, s in spent.items():
        print(f"  {label:32} {s / repeats * 1000:6.1f} ms")
    for name in slow:
        with phases() as spent:
            start = time.perf_counter()
            atlas.network_rows(name)
            total = time.perf_counter() - start
        parts = ", ".join(f"{label} {s * 1000:.0f} ms" for label, s in spent.items() if s)
        print(f"complete rows of {name}: {total * 1000:.0f} ms -- {parts}")


if __name__ == "__main__":
    main()
