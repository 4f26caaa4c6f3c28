"""Whole-image vs rfviz's exact tiles vs MONAI's sliding window: a U-Net on a 4096 x 4096 image.

``segmentation_models_pytorch.Unet("resnet18", encoder_weights=None, classes=1)`` (depth 5,
``torch.manual_seed(0)``, eval, float32, no grad), three ways, each in its own subprocess so
that its peak resident memory (``ru_maxrss``) is its own:

- whole: ``model(image)``;
- tiled: ``rfviz.tiling.tiled_forward`` with ``tile_margins(model, input_size=(size, size))``
  (281 px before, 250 after, stride 1, grid 32: tiles start and end on multiples of 32);
- MONAI: ``sliding_window_inference(roi_size=(roi, roi), sw_batch_size=1, overlap=0.25,
  mode="gaussian")``, which blends overlapping windows instead of keeping each output once.

Prints per run the wall time (and CPU time, user + system), the peak memory growth during
inference (peak RSS minus the baseline after torch, the model, the image and the margins are
in memory) and the max abs difference from the whole image's output (also over the whole
output's max abs), then the ratios to whole, measured side by side in one run, and the plan's
redundancy (input pixels the windows read / image pixels).
Targets, tiled vs whole: memory growth ≤ 0.2 x, time ≤ 1.3 x, difference at float32
round-off (≤ 1e-5 relative); MONAI's difference is shown against the same bound.
At 4096² the first two cannot both hold: each tile reads ~540 px of context per axis, so k
tiles per axis read (4096 + (k-1) 540)² pixels, and CPU time follows that redundancy (tiles of
1024: CPU 1.95 x whole, redundancy 1.96, growth 0.18; tiles of 1376: 1.66, 1.60, 0.26).
Growth ≤ 0.2 needs k ≥ 4 (redundancy ≥ 1.96), time ≤ 1.3 needs k ≤ 2 (growth 0.33).

oneDNN: on by default, for all three runs. Off, torch's own convolution unfolds each input
with im2col: a 3x3 convolution of 32 channels on a 4096² map needs a 19 GB buffer, so the
whole U-Net does not fit in 24 GB (at 2048² it grows by 6.0 GB, and takes 2.3 x the time of
oneDNN on). On, oneDNN picks an algorithm per tensor shape, so tiles and whole differ at
round-off (~1e-6 relative). Unlike resnet50 in ``bench_tiling.py``, this U-Net's tiles are not
bit-identical with oneDNN off either (1024², tiles of 256: 4.6e-6 at 18% of the pixels); in
float64 the same tiles differ by 6.6e-15 relative, so it is round-off, not a missing margin.

Run: ``.venv/bin/python benchmarks/bench_decoder_tiling.py [--size 4096] [--tile 1024]
[--roi 1536] [--onednn on]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE, TILE, ROI = 4096, 1024, 1536
BOUND = 1e-5  # max abs difference / max abs of the whole output: float32 round-off
MODES = ("whole", "tiled", "monai")


def unet():
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(0)
    return smp.Unet("resnet18", encoder_weights=None, classes=1).eval()


def run(mode: str, args: argparse.Namespace) -> None:
    """Child process: compute the output one way, save it, print time and peak memory."""
    import resource
    import warnings

    warnings.simplefilter("ignore")  # torch warns about TF32 when oneDNN flags are set

    import torch

    from rfviz.tiling import Margins, tiled_forward

    if mode == "monai":
        from monai.inferers import sliding_window_inference

    model = unet()
    image = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    margins = Margins(**{k: tuple(v) for k, v in json.loads(args.margins).items()})
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu, start = usage.ru_utime + usage.ru_stime, time.perf_counter()
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=args.onednn == "on"):
        if mode == "whole":
            result = model(image)
        elif mode == "tiled":
            result = tiled_forward(model, image, margins, (args.tile, args.tile), progress=False)
        else:
            result = sliding_window_inference(image, roi_size=(args.roi, args.roi),
                                              sw_batch_size=1, predictor=model, overlap=0.25,
                                              mode="gaussian")
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu
    torch.save(torch.as_tensor(result).clone(), args.out)  # MONAI may return a MetaTensor
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mb": peak_mb,
                      "baseline_mb": baseline_mb}))


def reads(size: int, tile: int, margins) -> list[int]:
    """Input pixels each rfviz tile reads along one axis (H and W alike here)."""
    from rfviz.tiling import plan_axis

    return [t.read.stop - t.read.start for t in plan_axis(size, size, tile, margins.h)]


def windows(size: int, roi: int) -> int:
    """MONAI's windows along one axis: a step of roi * (1 - overlap), the last one flush."""
    import math

    step = int(roi * 0.75)
    return 1 if roi >= size else math.ceil((size - roi) / step) + 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--tile", type=int, default=TILE)
    parser.add_argument("--roi", type=int, default=ROI)
    parser.add_argument("--onednn", choices=["on", "off"], default="on")
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--margins")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        run(args.child, args)
        return

    import dataclasses

    import torch

    from rfviz.tiling import tile_margins

    start = time.perf_counter()  # in the parent, so that its tracing is in no child's peak
    margins = tile_margins(unet(), input_size=(args.size, args.size))
    trace_seconds = time.perf_counter() - start
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for mode in MODES:
            out = str(Path(folder) / f"{mode}.pt")
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--size", str(args.size),
                 "--tile", str(args.tile), "--roi", str(args.roi), "--onednn", args.onednn,
                 "--margins", json.dumps(dataclasses.asdict(margins)), "--out", out],
                capture_output=True, text=True, check=True)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            outputs[mode] = torch.load(out)
    scale = outputs["whole"].abs().max().item()
    for mode, r in results.items():
        r["grown"] = r["peak_mb"] - r["baseline_mb"]
        r["diff"] = (outputs[mode] - outputs["whole"]).abs().max().item()
        r["relative"] = r["diff"] / scale
    whole = results["whole"]
    axis = reads(args.size, args.tile, margins)
    n = windows(args.size, args.roi)
    redundancy = {"whole": 1.0, "tiled": (sum(axis) / args.size) ** 2,
                  "monai": (n * min(args.roi, args.size) / args.size) ** 2}
    largest = {"whole": 1.0, "tiled": (max(axis) / args.size) ** 2,
               "monai": (min(args.roi, args.size) / args.size) ** 2}

    print(f"smp Unet(resnet18), {args.size}x{args.size} RGB, float32, oneDNN {args.onednn} "
          f"(all runs), torch {torch.__version__}")
    print(f"rfviz: {margins!r} (traced in {trace_seconds:.1f} s, not timed below); "
          f"tile {args.tile}: reads {axis} px per axis")
    print(f"MONAI: roi {args.roi}, overlap 0.25, gaussian: {n} x {n} windows")
    print(f"{'run':6} {'time s':>7} {'x whole':>7} {'cpu s':>6} {'x whole':>7} "
          f"{'growth MiB':>10} {'x whole':>7} {'redund.':>7} {'largest':>7} {'max|diff|':>9} "
          f"{'relative':>9}")
    for mode, r in results.items():
        print(f"{mode:6} {r['seconds']:7.1f} {r['seconds'] / whole['seconds']:7.2f} "
              f"{r['cpu']:6.0f} {r['cpu'] / whole['cpu']:7.2f} "
              f"{r['grown']:10.0f} {r['grown'] / whole['grown']:7.2f} {redundancy[mode]:7.2f} "
              f"{largest[mode]:7.2f} {r['diff']:9.2g} {r['relative']:9.2g}")
    print("  time: wall clock; cpu: user + system, both cores (wall time suffers most from "
          "other processes);\n  redund. = input pixels read / image pixels; largest = largest "
          f"window's area / image's;\n  baseline before inference {whole['baseline_mb']:.0f} MiB, "
          f"max |whole| = {scale:.3g}")
    tiled, monai = results["tiled"], results["monai"]
    goals = [("tiled growth ≤ 0.2 x whole", tiled["grown"] / whole["grown"], 0.2),
             ("tiled time ≤ 1.3 x whole", tiled["seconds"] / whole["seconds"], 1.3),
             (f"tiled relative difference ≤ {BOUND:g}", tiled["relative"], BOUND)]
    for name, value, target in goals:
        print(f"{'PASS' if value <= target else 'FAIL'}  {name}: {value:.3g}")
    print(f"MONAI relative difference {monai['relative']:.3g} = "
          f"{monai['relative'] / BOUND:.3g} x the bound")
    print("rfviz tiles in theory (time ~ redundancy, growth ~ largest read's area):")
    for tile in sorted({512, 768, 1024, 1376, 1536, 2048, args.tile}):
        if tile <= args.size and tile % margins.h.step == 0:
            axis = reads(args.size, tile, margins)
            print(f"  tile {tile:5}: {len(axis)} x {len(axis)} tiles, redundancy "
                  f"{(sum(axis) / args.size) ** 2:.2f}, largest read {max(axis)} px = "
                  f"{(max(axis) / args.size) ** 2:.2f} of the image")


if __name__ == "__main__":
    main()
