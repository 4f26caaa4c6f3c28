"""Command line: sizes and receptive fields of a torchvision model, layer by layer.

    python -m rfviz resnet50                         # the whole table
    python -m rfviz resnet50 --layer layer3          # one layer's shape and field
    python -m rfviz resnet18 --input-size 448 320    # H and W
    python -m rfviz --list                           # the model names
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
        epilog="example: python -m rfviz resnet50 --layer layer3 --input-size 224")
    parser.add_argument("model", nargs="?", help="a torchvision model name, e.g. resnet50")
    parser.add_argument("--layer", help="a module path (layer3, features.30) or a row name; "
                                        "without it, the whole table")
    parser.add_argument("--input-size", type=int, nargs="+", default=[224], metavar="N",
                        help="input size: one number for a square, or H W (default 224)")
    parser.add_argument("--list", action="store_true", help="list the model names and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
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
