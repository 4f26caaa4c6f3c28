"""One network's atlas rows: per stage, the field, jump and effective padding per axis, the
tile margins, the numbers at the default size, and the smallest input the network accepts.

>>> [row["stage"] for row in network_rows("resnet18")]
['relu', 'layer1', 'layer2', 'layer3', 'layer4']
>>> row = network_rows("resnet18")[-1]
>>> row["field"], row["jump"], row["padding"], row["margin_after"]  # 435 - 32 - 217 = 186
([435, 435], [32, 32], [217, 217], [186, 186])
"""

from __future__ import annotations

import contextlib
import gc
import math
from fractions import Fraction

import torch
import torch.fx
from torch import nn

from ..field import Field, by
from ..layer_table import LayerTable
from ..tiling import tile_margins
from ..tracing import _graph, _remembering, _shapes
from ..tracing.shapes import gives_tensors
from ..tracing.walk import upstream
from .networks import SIZE, Network, find, part, part_of, sizes, traced, whole
from .same import FrozenSame, pad_for
from .stages import stage_names

__all__ = ["COLUMNS", "REFERENCE", "REFERENCE_URL", "network_rows", "reference_rows",
           "smallest_input"]

COLUMNS = ("group", "family", "model", "stage", "axes", "input", "output", "status", "field",
           "jump", "padding", "margin_before", "margin_after", "margin_grid", "default_input",
           "default_status", "default_field", "default_jump", "default_padding",
           "smallest_input", "parameters", "input_dependent", "note")

# google-research/receptive_field's published table (TF-slim models, input 224), for the rows
# whose numbers people quote beside torchvision's; copied, not computed.
REFERENCE_URL = ("https://github.com/google-research/receptive_field/blob/master/"
                 "receptive_field/RECEPTIVE_FIELD_TABLE.md")
REFERENCE = (  # (TF-slim network, end-point, field, jump, padding, torchvision counterpart)
    ("resnet_v1_50", "resnet_v1_50/block1", 35, 8, 15, "resnet50 layer1 (35, jump 4)"),
    ("resnet_v1_50", "resnet_v1_50/block2", 99, 16, 47, "resnet50 layer2 (91, jump 8)"),
    ("resnet_v1_50", "resnet_v1_50/block3", 291, 32, 143, "resnet50 layer3 (267, jump 16)"),
    ("resnet_v1_50", "resnet_v1_50/block4", 483, 32, 239, "resnet50 layer4 (427, jump 32)"),
    ("vgg_16", "vgg_16/pool5", 212, 32, 90, "vgg16 features.30"),
    ("inception_v3", "Mixed_7c", 1311, 32, 618, "inception_v3 Mixed_7c"),
)


def network_rows(network: Network | str, *, complete: bool = True) -> list[dict]:
    """The atlas rows of one network (see :data:`COLUMNS`). ``complete=False``: the numbers
    at 224 only — one build and one trace, no default size, no search for the smallest input.

    Each size is traced once, however often the rows, the tile margins and the search ask for
    it (:func:`rfviz.tracing._remembering`: the model does not change in between)."""
    network = find(network) if isinstance(network, str) else network
    with _collector_paused(), _one_torch_thread(), _remembering():
        return _rows(network, complete)


def _rows(network: Network, complete: bool) -> list[dict]:
    model_whole = whole(network)
    model = part_of(network, model_whole)
    base, default = sizes(network, model_whole)
    if not complete:
        default = base
    prefix = f"{part(network)}." if part(network) else ""
    common = {"group": network.group, "family": network.family, "model": network.name,
              "axes": "×".join("THW"[-network.spatial:]),
              "parameters": sum(p.numel() for p in model.parameters())}
    tables: dict[tuple[int, ...], LayerTable | str] = {}
    for size in dict.fromkeys((base, default)):
        try:
            tables[size] = traced(model, size)
        except ValueError as error:
            tables[size] = str(error)
    notes = []
    if isinstance(tables[base], str) and "too small" in tables[base] and default != base:
        notes.append(f"{by(base)} is too small for this network: {tables[base]}")
        base = default  # SSD300 at 300
    table = tables[base]
    if isinstance(table, str):
        return [{**common, "stage": "(whole network)", "input": list(base),
                 **_unknown(f"the network cannot be traced: {table}")}]
    same = sum(isinstance(m, FrozenSame) for m in model.modules())
    if same:
        notes.append(f"{same} TensorFlow-SAME ops (timm's Conv2dSame, …) padded for each "
                     "traced size")
    smallest = smallest_input(model, base, default) if complete else None
    rows = []
    for stage in stage_names(network, model, table):
        row = {**common, "stage": prefix + stage, "input": list(base),
               **_stage(model, table, stage, base, prefix)}
        if default != base:
            other = tables[default]
            at_default = (_unknown(other) if isinstance(other, str)
                          else _stage(model, other, stage, default, prefix, with_margins=False))
            row["default_input"] = list(default)
            row.update({f"default_{key}": at_default.get(key) for key in (
                "status", "field", "jump", "padding")})
        differs = row.get("default_status") == row["status"] == "ok" and any(
            row[k] != row[f"default_{k}"] for k in ("field", "jump", "padding"))
        row["input_dependent"] = bool(
            differs or row["status"] == "per unit" or (same and row["status"] != "unknown"))
        row["smallest_input"] = smallest
        row["note"] = "; ".join([*notes, row["note"]] if row.get("note") else notes)
        rows.append(row)
    return rows


@contextlib.contextmanager
def _one_torch_thread():
    """torch on one thread while one network's rows are worked out, and back as it was: the
    rows take many small ops (meta tensors, one-hot probes of an upsampling), for which
    threads cost more than they give, the more so beside other jobs (HRNet-W32's rows on a
    busy 2-core machine: 18.6 s on 2 threads, 4.4 s on 1). The atlas's worker processes run
    on one thread throughout."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _collector_paused():
    """Python's cyclic garbage collector paused while one network's rows are worked out, and
    resumed as it was: building and tracing allocate a few hundred thousand objects, and each
    full collection on the way walks every object the process holds (~430,000 once torch,
    torchvision and timm are imported): a fifth of the time of every network's rows, most of
    it in the large ones. The garbage of the rows (a graph is a cycle of nodes) is collected
    after, as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _unknown(reason: str) -> dict:
    return {"status": "unknown", "note": f"unknown: {reason}"}


def _stage(model: nn.Module, table: LayerTable, stage: str, size, prefix: str = "",
           with_margins: bool = True) -> dict:
    """One stage's numbers from a traced table (``with_margins=False``: without a per-unit
    field's tile margins, which trace the network again at larger sizes)."""
    try:
        row = table.find(stage)
    except ValueError as error:
        if stage in dict(model.named_modules()):
            return _unknown(f"{stage!r} is a module of the network, but rfviz.trace gives no "
                            f"row inside it ({len(table)} rows in all): the tensor was lost "
                            "before it, without a warning")
        return _unknown(str(error))
    field: Field = row.field
    found = {"output": list(row.shape)}
    if field.unknown:
        return {**found, **_unknown(str(field.unknown))}
    if field.is_global:
        cause = _global_cause(model, table, row, prefix)
        return {**found, "status": "global", "note": f"global: {cause}"}
    if field.per_unit:
        found.update({"status": "per unit", "field": list(field.size),
                      "jump": [_number(j) for j in field.stride], "padding": None})
        cause = _per_unit_cause(model, table, row, prefix)
        note = f"units see different spans from {cause} on: field is the largest"
        if 0 in found["jump"]:
            note += (f"; at {by(tuple(size))} every unit's span is the same (the field is wider "
                     "than the image), so the jump reads 0")
        if not with_margins:  # at the default size: only the status and the field are kept
            return {**found, "note": note}
        try:
            margins = tile_margins(model, stage, size)
        except Exception as error:  # a bug in tile_margins: say so in the row
            return {**found, "note": f"{note}; tile_margins failed: "
                                     f"{type(error).__name__}: {error}"}
        return {**found, "margin_before": list(margins.before),
                "margin_after": list(margins.after),
                "margin_grid": list(margins.grid) if margins.grid else None, "note": note}
    # tile_margins' rule for a three-number field, without tracing again (tests compare)
    return {**found, "status": "ok", "field": list(field.size), "jump": list(field.stride),
            "padding": list(field.padding), "margin_before": list(field.padding),
            "margin_after": [a.size - a.stride - a.padding for a in field.axes]}


def _number(value):
    value = Fraction(value)
    return int(value) if value.denominator == 1 else str(value)


def _global_cause(model: nn.Module, table: LayerTable, row, prefix: str = "") -> str:
    """The first op, on the paths into ``row``, after which the field is global."""
    return _first_op(model, table, row, lambda field: field.is_global, prefix)


def _per_unit_cause(model: nn.Module, table: LayerTable, row, prefix: str = "") -> str:
    """The first op, on the paths into ``row``, after which units see different spans (an
    upsampling, a transposed convolution, a window attention, a crop)."""
    return _first_op(model, table, row, lambda field: field.known and field.per_unit, prefix)


def _first_op(model: nn.Module, table: LayerTable, row, test, prefix: str = "") -> str:
    """The first op on the paths into ``row`` whose field passes ``test``, and the module
    it is in: "Linear at 'blocks.0.attn.qkv' (in Attention)"."""
    nodes = {n.name: n for n in _graph(model).nodes}
    before = {n.name for n in upstream([nodes[row.node]])[0]}
    first = next(r for r in table.rows if r.node in before and test(r.field))
    op, name = first.op, first.name
    taken = nodes[first.node].args[0] if first.op == "getitem" else None
    if isinstance(taken, torch.fx.Node) and taken.op == "call_module" and gives_tensors(taken):
        # a module giving a tuple has no row: its first item does (MultiheadAttention)
        op, name = type(model.get_submodule(taken.target)).__name__, taken.target
    owners = (type(model.get_submodule(scope)).__name__ for scope in reversed(first.scopes))
    owner = next((o for o in owners if o not in (first.op, op)), None)
    inside = f" (in {owner})" if owner else ""
    return f"{op} at {prefix + name!r}{inside}"


def smallest_input(model: nn.Module, base: tuple[int, ...], default: tuple[int, ...]) -> str:
    """The smallest square input (H = W; video at its default frames) the network accepts:
    a binary search on where shape propagation says "input_size is too small" (the fields are
    not walked: they cannot make an input too small), then a whole :func:`rfviz.trace` of the
    size found."""

    def at(n: int) -> tuple[int, ...]:
        return (*base[:-2], n, n)

    def too_small(n: int) -> bool:
        try:
            pad_for(model, at(n))
            _shapes(model, at(n))
        except ValueError as error:
            return "input_size is too small" in str(error)
        return False

    def accepted(n: int) -> bool:
        try:
            pad_for(model, at(n))
            _shapes(model, at(n))  # a size whose shapes are refused is not traced
            traced(model, at(n))
        except ValueError:
            return False
        return True

    if accepted(1):  # most networks: pooling, padding and ceil_mode keep 1 pixel
        return "×".join([*map(str, base[:-2]), "1", "1"])
    low, high = 2, base[-1]
    while too_small(high):
        low, high = high + 1, high * 2
        if high > 4096:
            return "unknown: too small even at 4096"
    while low < high:
        middle = (low + high) // 2
        if too_small(middle):
            low = middle + 1
        else:
            high = middle
    if accepted(low):
        return "×".join([*map(str, base[:-2]), str(low), str(low)])
    # Not too small at `low` but refused for another reason: a network whose sizes must divide
    # (windows, tree merges) or that is built for one size. The smallest multiple of 32 (the
    # usual deepest jump), or the default size, that it accepts.
    for n in sorted({*range(math.ceil(low / 32) * 32, default[-1], 32), default[-1]}):
        if accepted(n):
            return (f"{n}×{n} (the smallest multiple of 32 accepted; some other sizes from "
                    f"{low} are refused)")
    return f"unknown: refused at {low}×{low} and at every multiple of 32 up to {default[-1]}"


def reference_rows() -> list[dict]:
    """google-research/receptive_field's rows, labelled as copied from that table."""
    rows = []
    for model, stage, size, jump, padding, counterpart in REFERENCE:
        rows.append({
            "group": "reference", "family": "TF-slim (google-research/receptive_field)",
            "model": f"tf-slim/{model}", "stage": stage, "axes": "H×W", "input": [SIZE, SIZE],
            "status": "reference", "field": [size] * 2, "jump": [jump] * 2,
            "padding": [padding] * 2,
            "note": f"copied from google-research/receptive_field's table, not computed; "
                    f"compare torchvision {counterpart}"})
    return rows
