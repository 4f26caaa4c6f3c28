"""Whole-image vs tiled inference: resnet50 up to layer3 on a 2048 x 2048 image.

Each run happens in its own subprocess, so that its peak resident memory (the high-water mark,
``ru_maxrss``) is its own. Prints the max abs difference of the two feature maps, the peak
memory of each and their ratio, the wall time of each, the plan's theoretical redundancy
(input pixels computed / image pixels) and the measured time ratio.
Targets: difference 0, memory ratio ≤ 0.35, time ratio ≤ 1.1 x the redundancy.

Run: ``.venv/bin/python benchmarks/bench_tiling.py [--size 2048] [--tile 512]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SIZE, TILE = 2048, 512
ONEDNN = False  # see run()


def run(mode: str, size: int, tile: int, out: str) -> None:
    """Child process: compute the feature map one way, save it, print time and peak memory."""
    import resource
    import time
    import warnings

    warnings.simplefilter("ignore")  # torch warns about TF32 when oneDNN flags are set

    import torch

    torch_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the import alone
    import torchvision
    from torchvision.models.feature_extraction import create_feature_extractor

    from rfviz.tiling import tile_margins, tiled_forward

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    extractor = create_feature_extractor(model, return_nodes=["layer3"])
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    margins = tile_margins(model, "layer3")
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch + model
    start = time.perf_counter()
    # oneDNN picks a convolution algorithm per tensor shape, so tiles and the whole image round
    # differently (~1e-6 relative); torch's own convolution does not: bit-identical results.
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=ONEDNN):
        if mode == "whole":
            result = extractor(image)["layer3"]
        else:
            result = tiled_forward(lambda x: extractor(x)["layer3"], image, margins,
                                   (tile, tile), progress=False)
    seconds = time.perf_counter() - start
    torch.save(result, out)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "baseline_mb": baseline_mb,
                      "torch_mb": torch_mb}))


def redundancy(size: int, tile: int) -> float:
    """Input pixels the tiles read, over the image's pixels (one axis squared)."""
    import torch
    import torchvision

    from rfviz.tiling import plan_axis, tile_margins
    from rfviz.tracing import trace

    with torch.device("meta"):  # margins and sizes need no weights
        model = torchvision.models.resnet50(weights=None)
    outputs = trace(model, size)["layer3"].shape[-1]
    axis = plan_axis(size, outputs, tile, tile_margins(model, "layer3").h)
    read = sum(t.read.stop - t.read.start for t in axis)
    return (read / size) ** 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--tile", type=int, default=TILE)
    parser.add_argument("--child", choices=["whole", "tiled"])
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        run(args.child, args.size, args.tile, args.out)
        return

    import torch

    results, maps = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("whole", "tiled"):
            out = str(Path(folder) / f"{mode}.pt")
            done = subprocess.run([sys.executable, __file__, "--child", mode, "--size",
                                   str(args.size), "--tile", str(args.tile), "--out", out],
                                  capture_output=True, text=True, check=True)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            maps[mode] = torch.load(out)
    difference = (maps["whole"] - maps["tiled"]).abs().max().item()
    whole, tiled = results["whole"], results["tiled"]
    theory = redundancy(args.size, args.tile)
    print(f"resnet50 up to layer3, {args.size}x{args.size} image, tiles of {args.tile} px, "
          f"float32, oneDNN {'on' if ONEDNN else 'off'}")
    print(f"max abs difference whole vs tiled: {difference:.3g}   (target 0)")
    print(f"peak memory: whole {whole['peak_mb']:.0f} MiB, tiled {tiled['peak_mb']:.0f} MiB, "
          f"ratio {tiled['peak_mb'] / whole['peak_mb']:.2f}   (target ≤ 0.35)")
    grown = {mode: r["peak_mb"] - r["baseline_mb"] for mode, r in results.items()}
    print(f"  of which before inference (torch, model, image): {whole['baseline_mb']:.0f} MiB; "
          f"growth during inference: whole {grown['whole']:.0f} MiB, tiled {grown['tiled']:.0f} "
          f"MiB, ratio {grown['tiled'] / grown['whole']:.2f}")
    print(f"  floor: no tiling can go below baseline / whole peak = "
          f"{whole['baseline_mb'] / whole['peak_mb']:.2f} here; `import torch` alone is "
          f"{whole['torch_mb']:.0f} MiB ({torch.__version__})")
    print(f"wall time: whole {whole['seconds']:.1f} s, tiled {tiled['seconds']:.1f} s, "
          f"ratio {tiled['seconds'] / whole['seconds']:.2f}")
    print(f"theoretical redundancy (input pixels read / image pixels): {theory:.2f}; "
          f"time ratio / redundancy = {tiled['seconds'] / whole['seconds'] / theory:.2f}   "
          "(target ≤ 1.1)")


if __name__ == "__main__":
    main()
