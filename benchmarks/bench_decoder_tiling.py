"""Whole-image vs rfviz's exact tiles vs staged tiles vs MONAI's sliding window: a U-Net on a
4096 x 4096 image.

``segmentation_models_pytorch.Unet("resnet18", encoder_weights=None, classes=1)`` (depth 5,
``torch.manual_seed(0)``, eval, float32, no grad), four ways, each in its own subprocess so
that its peak resident memory (``ru_maxrss``) is its own:

- whole: ``model(image)``;
- tiled: ``rfviz.tiling.tiled_forward`` with ``tile_margins(model, input_size=(size, size))``
  (281 px before, 250 after, stride 1, grid 32: tiles start and end on multiples of 32);
- staged: ``rfviz.staged.staged_forward`` with ``staged_plan(model, (size, size), low_from)``
  (planned in the parent, like the margins): the entries of the low part (``layer2``'s first
  strided convolutions) and the skip it keeps (``layer1``'s output) tile by tile, the ops at
  a jump ≥ 8 whole, then the decoder's last blocks tile by tile (32 + 24 px of context for
  the entries' tiles, 16 + 16 for the tail's, instead of 281 + 250);
- MONAI: ``sliding_window_inference(roi_size=(roi, roi), sw_batch_size=1, overlap=0.25,
  mode="gaussian")``, which blends overlapping windows instead of keeping each output once.

Prints per run the wall time (and CPU time, user + system), the peak memory growth during
inference (peak RSS minus the baseline after torch, the model, the image and the margins are
in memory) and the max abs difference from the whole image's output (also over the whole
output's max abs), then the ratios to whole, measured side by side in one run, and the plan's
redundancy (input pixels the windows read / image pixels). ``--repeat N`` runs the modes N
times, interleaved, and keeps each one's least time and most growth: other processes on a
2-core machine slow single runs by up to 2x (a staged run that got one core: 1.92 x whole in
wall time, 1.26 x in CPU time).
Targets vs whole: memory growth ≤ 0.2 x, time ≤ 1.3 x, difference at float32 round-off
(≤ 1e-5 relative); MONAI's difference is shown against the same bound.

Tiled cannot meet both at 4096²: each tile reads ~540 px of context per axis, so k tiles per
axis read (4096 + (k-1) 540)² pixels, and CPU time follows that redundancy (tiles of 1024: CPU
1.95 x whole, redundancy 1.96, growth 0.18; tiles of 1376: 1.66, 1.60, 0.26). Growth ≤ 0.2
needs k ≥ 4 (redundancy ≥ 1.96), time ≤ 1.3 needs k ≤ 2 (growth 0.33).

Staged meets both. Measured (``--repeat 3``, this machine, other jobs beside it): whole 22.5 s
(CPU 43 s, growth 7159 MiB); tiled 1.85 x the time, 1.90 x the CPU time, growth 0.19,
6.7e-6 relative; staged 1.11 x, 1.14 x, growth 0.17, difference 0 (bit-identical here); MONAI
2.16 x, 2.21 x, 0.18, 0.54 relative (an earlier ``--repeat 2``: staged 1.05 x, 1.13 x, 0.17).
Why: in multiply-adds (~1.38 T for the whole), the entries'
tiles do the stem, ``layer1`` and ``layer2``'s first convolutions (16%, read 1.08 x their
pixels), the low part runs whole (51%), the tail the decoder's last three blocks and the stem
again (37%, read 1.05 x): ~1.06 x the whole's work, on tiles that convolve a little less
efficiently. Growth: the low part's biggest moment, its decoder block at a jump of 8 (384
channels at 512², 384 MiB, beside its inputs), plus the kept ``layer1`` output (256 MiB).
Other settings (staged vs whole only, separate runs): keeping nothing (``--keep-from 8``: the
tail computes ``layer1`` again per tile) 1.43 x the time, 1.32 x CPU, growth 0.13; before
maps were kept, tiles of 512 cost 1.92 x CPU (growth 0.13), tiles of 2048 1.15 x CPU (growth
0.21, over the target), ``--low-from 16`` 1.49 x CPU (growth 0.12: ``layer2`` and a decoder
block more per tile, and float32 round-off 7.2e-6 instead of 0).

oneDNN: on by default, for all runs. Off, torch's own convolution unfolds each input
with im2col: a 3x3 convolution of 32 channels on a 4096² map needs a 19 GB buffer, so the
whole U-Net does not fit in 24 GB (at 2048² it grows by 6.0 GB, and takes 2.3 x the time of
oneDNN on). On, oneDNN picks an algorithm per tensor shape, so tiles and whole differ at
round-off (~1e-6 relative). Unlike resnet50 in ``bench_tiling.py``, this U-Net's tiles are not
bit-identical with oneDNN off either (1024², tiles of 256: 4.6e-6 at 18% of the pixels); in
float64 the same tiles differ by 6.6e-15 relative, so it is round-off, not a missing margin.

Run: ``.venv/bin/python benchmarks/bench_decoder_tiling.py [--size 4096] [--tile 1024]
[--roi 1536] [--stage-tile 1024] [--low-from 8] [--keep-from 4] [--onednn on] [--repeat 1]
[--modes whole,tiled,staged,monai]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE, TILE, ROI, STAGE_TILE, LOW_FROM = 4096, 1024, 1536, 1024, 8
BOUND = 1e-5  # max abs difference / max abs of the whole output: float32 round-off
MODES = ("whole", "tiled", "staged", "monai")


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

    from rfviz.staged import staged_forward
    from rfviz.tiling import Margins, tiled_forward

    if mode == "monai":
        from monai.inferers import sliding_window_inference

    model = unet()
    image = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    margins = Margins(**{k: tuple(v) for k, v in json.loads(args.margins).items()})
    plan = pickle.loads(Path(args.plan).read_bytes())  # planned in the parent, as the margins
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu, start = usage.ru_utime + usage.ru_stime, time.perf_counter()
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=args.onednn == "on"):
        if mode == "whole":
            result = model(image)
        elif mode == "tiled":
            result = tiled_forward(model, image, margins, (args.tile, args.tile), progress=False)
        elif mode == "staged":
            result = staged_forward(model, image, (args.stage_tile,) * 2, plan=plan,
                                    progress=False)
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


def staged_reads(size: int, tile: int, plan) -> tuple[list[int], list[int]]:
    """Input pixels each staged tile reads along one axis: the entries' tiles, the tail's."""
    from rfviz.staged import _tiles

    spatial, tiles = (size, size), (tile, tile)
    return tuple([t[0].read.stop - t[0].read.start for t in _tiles(spatial, tiles, m, o)
                  if t[1].first == 0]
                 for m, o in ((plan.entry_margins, plan.tail_margins),
                              (plan.tail_margins, plan.entry_margins)))


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
    parser.add_argument("--stage-tile", type=int, default=STAGE_TILE)
    parser.add_argument("--low-from", type=int, default=LOW_FROM)
    parser.add_argument("--keep-from", type=int, default=None,
                        help="staged: keep the tail's maps at this jump or more (default: "
                        "low_from // 2; low_from: keep none)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the modes this many times, interleaved; keep the least time "
                        "(and CPU time) and the most growth of each")
    parser.add_argument("--onednn", choices=["on", "off"], default="on")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated subset of " + ",".join(MODES) + " (whole always)")
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--margins")
    parser.add_argument("--plan")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        run(args.child, args)
        return

    import dataclasses

    import torch

    from rfviz.staged import staged_plan
    from rfviz.tiling import tile_margins

    modes = ["whole", *(m for m in MODES if m != "whole" and m in args.modes.split(","))]
    start = time.perf_counter()  # in the parent, so that its tracing is in no child's peak
    margins = tile_margins(unet(), input_size=(args.size, args.size))
    trace_seconds = time.perf_counter() - start
    start = time.perf_counter()
    plan = staged_plan(unet(), (args.size, args.size), args.low_from, keep_from=args.keep_from)
    plan_seconds = time.perf_counter() - start
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        planned = Path(folder) / "plan.pickle"
        planned.write_bytes(pickle.dumps(plan))
        for _, mode in itertools.product(range(args.repeat), modes):
            out = str(Path(folder) / f"{mode}.pt")
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--size", str(args.size),
                 "--tile", str(args.tile), "--roi", str(args.roi), "--onednn", args.onednn,
                 "--stage-tile", str(args.stage_tile), "--plan", str(planned),
                 "--margins", json.dumps(dataclasses.asdict(margins)), "--out", out],
                capture_output=True, text=True, check=True)
            run_ = json.loads(done.stdout.strip().splitlines()[-1])
            run_["grown"] = run_["peak_mb"] - run_["baseline_mb"]
            best = results.setdefault(mode, run_)
            best.update(seconds=min(best["seconds"], run_["seconds"]),
                        cpu=min(best["cpu"], run_["cpu"]), grown=max(best["grown"], run_["grown"]))
            outputs[mode] = torch.load(out)
    scale = outputs["whole"].abs().max().item()
    for mode, r in results.items():
        r["diff"] = (outputs[mode] - outputs["whole"]).abs().max().item()
        r["relative"] = r["diff"] / scale
    whole = results["whole"]
    axis = reads(args.size, args.tile, margins)
    entry_axis, tail_axis = staged_reads(args.size, args.stage_tile, plan)
    n = windows(args.size, args.roi)
    redundancy = {"whole": 1.0, "tiled": (sum(axis) / args.size) ** 2,
                  "staged": (sum(tail_axis) / args.size) ** 2,
                  "monai": (n * min(args.roi, args.size) / args.size) ** 2}
    largest = {"whole": 1.0, "tiled": (max(axis) / args.size) ** 2,
               "staged": (max(tail_axis) / args.size) ** 2,
               "monai": (min(args.roi, args.size) / args.size) ** 2}

    print(f"smp Unet(resnet18), {args.size}x{args.size} RGB, float32, oneDNN {args.onednn} "
          f"(all runs), torch {torch.__version__}; {args.repeat} run(s) per mode, interleaved")
    print(f"rfviz: {margins!r} (traced in {trace_seconds:.1f} s, not timed below); "
          f"tile {args.tile}: reads {axis} px per axis")
    print(f"staged: low_from {args.low_from}, tile {args.stage_tile} (planned in "
          f"{plan_seconds:.1f} s, not timed below); the entries' tiles read {entry_axis} px "
          f"per axis, the tail's {tail_axis}\n{plan}")
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
          "other processes);\n  redund. = input pixels read / image pixels (staged: by the "
          "tail's tiles); largest = largest\n  window's area / image's; baseline before "
          f"inference {whole['baseline_mb']:.0f} MiB, max |whole| = {scale:.3g}")
    for mode in ("tiled", "staged"):
        if mode in results:
            r = results[mode]
            goals = [(f"{mode} growth ≤ 0.2 x whole", r["grown"] / whole["grown"], 0.2),
                     (f"{mode} time ≤ 1.3 x whole", r["seconds"] / whole["seconds"], 1.3),
                     (f"{mode} relative difference ≤ {BOUND:g}", r["relative"], BOUND)]
            for name, value, target in goals:
                print(f"{'PASS' if value <= target else 'FAIL'}  {name}: {value:.3g}")
    if "monai" in results:
        monai = results["monai"]
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
