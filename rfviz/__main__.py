"""Command line: sizes and receptive fields of a torchvision model, layer by layer.

    python -m rfviz resnet50                         # the whole table
    python -m rfviz resnet50 --layer layer3          # one layer's shape and field
    python -m rfviz resnet18 --input-size 448 320    # H and W
    python -m rfviz --list                           # the model names
    python -m rfviz atlas [--out DIR] [--only PATTERN]   # the receptive-field atlas (docs/atlas)
"""

from __future__ import annotations

import argparse
import difflib
import sys
import warnings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rfviz",
        description="Print every layer's output shape and receptive field for a torchvision "
                    "model (weights=None: nothing is downloaded).",
        epilog="example: python -m rfviz resnet50 --layer layer3 --input-size 224. "
               "The atlas of every torchvision and timm network: python -m rfviz atlas --help")
    parser.add_argument("model", nargs="?", help="a torchvision model name, e.g. resnet50")
    parser.add_argument("--layer", help="a module path (layer3, features.30) or a row name; "
                                        "without it, the whole table")
    parser.add_argument("--input-size", type=int, nargs="+", default=[224], metavar="N",
                        help="input size: one number for a square, or H W (default 224)")
    parser.add_argument("--list", action="store_true", help="list the model names and exit")
    return parser


def _atlas_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rfviz atlas",
        description="Write the receptive-field atlas (README.md, atlas.csv, atlas.json): every "
                    "stage end-point of every torchvision network, the detection backbones and "
                    "timm's convolutional families, built on the meta device (weights=None: "
                    "nothing is downloaded).",
        epilog="example: python -m rfviz atlas --only 'resnet*'  (regenerates those networks' "
               "rows in the existing files)")
    parser.add_argument("--out", default="docs/atlas", metavar="DIR",
                        help="output directory (default: docs/atlas)")
    parser.add_argument("--only", metavar="PATTERN",
                        help="networks whose name matches this shell pattern ('resnet*', "
                             "'timm/*'); the other rows of DIR's atlas.json are kept")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="worker processes (default: the CPUs, at most 2)")
    return parser


def atlas(argv: list[str]) -> int:
    args = _atlas_parser().parse_args(argv)
    import time
    from pathlib import Path

    from . import atlas as atlas_

    start = time.perf_counter()
    try:
        rows = atlas_.generate(args.only, processes=args.processes)
    except ValueError as error:
        print(f"python -m rfviz atlas: error: {error}", file=sys.stderr)
        return 2
    if args.only and (Path(args.out) / "atlas.json").exists():
        rows = atlas_.merge(atlas_.read(args.out), rows, args.only)
    atlas_.write(rows, args.out)
    networks = len({row["model"] for row in rows})
    print(f"{len(rows)} rows of {networks} network{'s' * (networks != 1)} -> {args.out}/"
          f"README.md, atlas.csv, atlas.json ({time.perf_counter() - start:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["atlas"]:
        return atlas(argv[1:])
    args = _parser().parse_args(argv)
    import torchvision  # here, so that --help answers at once

    from .tracing import RfvizWarning, trace

    names = torchvision.models.list_models(module=torchvision.models)
    if args.list:
        print("\n".join(names))
        return 0
    if args.model is None:
        _parser().print_usage(sys.stderr)
        print("python -m rfviz: error: give a model name (see --list)", file=sys.stderr)
        return 2
    if args.model not in names:
        close = difflib.get_close_matches(args.model, names, n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        print(f"python -m rfviz: error: unknown model {args.model!r}.{hint} "
              f"Available: {', '.join(names)}", file=sys.stderr)
        return 2
    size = args.input_size[0] if len(args.input_size) == 1 else tuple(args.input_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RfvizWarning)
        try:
            model = torchvision.models.get_model(args.model, weights=None)
            table = trace(model, size)
            rows = [table.find(args.layer)] if args.layer else table.rows
        except ValueError as error:
            print(f"python -m rfviz: error: {error}", file=sys.stderr)
            return 2
    if args.layer:
        row = rows[0]
        print(f"{args.model} {args.layer} at input {size}: output {'×'.join(map(str, row.shape))}"
              f", receptive field {row.field}")
    else:
        print(table)
    for warning in caught:
        print(f"note: {warning.message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
