"""The receptive-field atlas: every torchvision network, the detection backbones and timm's
convolutional families, stage by stage (``python -m rfviz atlas`` writes ``docs/atlas/``).

Each network is built with ``weights=None`` on the meta device (shapes, no numbers: nothing is
downloaded, nothing initialised) and traced by :func:`rfviz.trace`. A *stage end-point* is the
output of the last module before each downsampling (torchvision's ``layer1`` … ``layer4``,
``features.N``; timm's ``feature_info``). Its row holds the field, jump and effective padding per
axis at 224 (and at the network's default size where that differs), the exact tile margins,
and the smallest input the network accepts; "global" or "unknown: <reason>" where that is
what rfviz finds.

>>> [row["stage"] for row in network_rows("resnet18")]
['relu', 'layer1', 'layer2', 'layer3', 'layer4']
>>> row = network_rows("resnet18")[-1]
>>> row["field"], row["jump"], row["padding"], row["margin_after"]  # 435 - 32 - 217 = 186
([435, 435], [32, 32], [217, 217], [186, 186])
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import functools
import io
import json
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
import torch.fx
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

from .field import Field, by
from .layer_table import LayerTable, RfvizWarning
from .tiling import tile_margins
from .tracing import _graph, trace

__all__ = ["COLUMNS", "REFERENCE", "Network", "build", "catalogue", "find", "generate",
           "merge", "network_rows", "part", "read", "readme", "to_csv", "write"]

SIZE = 224
V1 = "variant/resnet50_v1"  # torchvision's resnet50, the stride on the first 1×1 (computed)
FRAMES = 16  # video clips of 16 frames (T × H × W)

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

# timm's convolutional families at default configurations (a few depths or widths each), and
# two transformers to show where a field becomes unknown or global.
TIMM = (
    "resnet18", "resnet50", "resnet101", "resnet50d", "resnext50_32x4d", "seresnet50",
    "resnetv2_50", "resnetv2_50x1_bit",
    "efficientnet_b0", "efficientnet_b3", "tf_efficientnet_b0", "efficientnetv2_rw_s",
    "mobilenetv2_100", "mnasnet_100",
    "mobilenetv3_large_100", "mobilenetv3_small_100", "tf_mobilenetv3_large_100",
    "convnext_tiny", "convnext_base", "convnextv2_tiny",
    "regnetx_002", "regnetx_032", "regnety_008", "regnety_032",
    "densenet121", "densenet169",
    "inception_v3", "inception_v4", "inception_resnet_v2",
    "vgg11", "vgg16", "vgg19_bn",
    "hrnet_w18_small", "hrnet_w32",
    "dla34", "dpn68", "cspdarknet53", "cspresnet50", "darknet53", "res2net50_26w_4s",
    "resnest50d", "ghostnet_100", "rexnet_100", "legacy_xception", "xception41",
    "ese_vovnet19b_dw", "repvgg_a2", "gernet_s", "nf_resnet50", "tresnet_m", "selecsls42b",
    "vit_base_patch16_224", "swin_tiny_patch4_window7_224",
)

# Stages named by hand where "the last module before each downsampling" is not what a reader
# wants: transformers (the patch embedding, then the first block), and HRNet, whose timm
# feature_info names modules that exist only in its features_only variant.
STAGES = {
    "vit_*": ("conv_proj", "encoder.layers.encoder_layer_0"),
    "swin_[tsb]": ("features.0", "features.1.0"),
    "swin_v2_*": ("features.0", "features.1.0"),
    "mvit_*": ("conv_proj", "blocks.0"),
    "swin3d_*": ("patch_embed", "features.0.0"),
    "timm/vit_*": ("patch_embed.proj", "blocks.0"),
    "timm/swin_*": ("patch_embed", "layers.0.blocks.0"),
    "timm/hrnet_*": ("act1", "incre_modules.0", "incre_modules.1", "incre_modules.2",
                     "incre_modules.3"),
}


@dataclass(frozen=True)
class Network:
    """One network of the atlas and how to build it (``weights=None``).

    >>> Network("resnet50", "torchvision classification", "resnet")
    Network('resnet50', torchvision classification / resnet)
    """

    name: str  # as the atlas lists it: "resnet50", "timm/resnet50"
    group: str  # "torchvision classification", …, "timm"
    family: str  # the module that defines it: "resnet", "efficientnet"

    def __repr__(self) -> str:
        return f"Network({self.name!r}, {self.group} / {self.family})"

    @property
    def spatial(self) -> int:
        return 3 if self.group == "torchvision video" else 2


@functools.cache
def catalogue() -> tuple[Network, ...]:
    """Every network of the atlas, in the order of the index."""
    models = torchvision.models
    networks = []
    for group, module in (("torchvision classification", models),
                          ("torchvision segmentation", models.segmentation),
                          ("torchvision video", models.video),
                          ("torchvision detection", models.detection)):
        for name in models.list_models(module=module):
            family = models.get_model_builder(name).__module__.rsplit(".", 1)[-1]
            networks.append(Network(name, group, family))
    networks.append(Network(V1, "variant", "resnet"))
    import timm  # only the atlas needs it

    for name in TIMM:
        family = timm.models.model_entrypoint(name).__module__.rsplit(".", 1)[-1]
        networks.append(Network(f"timm/{name}", "timm", family))
    return tuple(networks)


# --- building on the meta device -------------------------------------------------------------


@functools.cache
def _initialisers() -> frozenset:
    """``nn.init``'s functions and the in-place tensor methods initialisers call."""
    inits = {f for n, f in vars(nn.init).items() if n.endswith("_") and callable(f)}
    methods = {getattr(torch.Tensor, n) for n in (
        "normal_", "uniform_", "fill_", "zero_", "erfinv_", "mul_", "add_", "clamp_", "copy_",
        "sub_", "div_", "exponential_", "random_", "bernoulli_")}
    return frozenset(inits | methods)


class _NoInit(TorchFunctionMode):
    """Skips weight initialisation on meta tensors (there are no numbers to fill): on the meta
    device each ``normal_`` goes through torch's reference implementation, and initialising
    costs more than building (resnet50: ~55 ms to build, ~25 ms without)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _initialisers():
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


@contextlib.contextmanager
def _parameters_on_meta():
    """Every parameter and buffer moves to the meta device as it is registered: for builders
    that compute with tensors while building (torchvision's regnets take ``.tolist()`` of a
    ``torch.arange``, which a meta tensor cannot give)."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module, name, param):
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module, name, tensor, persistent=True):
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter
        nn.Module.register_buffer = register_buffer


def _on_meta(make: Callable[[], nn.Module]) -> nn.Module:
    try:
        with torch.device("meta"), _NoInit():
            return make()
    except (NotImplementedError, RuntimeError) as error:
        if "meta" not in str(error):
            raise
    with _parameters_on_meta(), _NoInit():
        return make()


def build(network: Network | str, device: str = "meta") -> nn.Module:
    """The module the atlas traces, in eval mode (inference graph: no auxiliary heads):
    the model itself, a detection model's backbone body (:func:`part`), or a timm model's
    trunk (``forward_features``). ``device="cpu"`` builds it with (random) weights, to measure.

    >>> build("fasterrcnn_resnet50_fpn").__class__.__name__
    'IntermediateLayerGetter'
    """
    network = find(network) if isinstance(network, str) else network
    return _part(network, _whole(network, device))


def _whole(network: Network, device: str = "meta") -> nn.Module:
    if network.name == V1:
        return _stride_on_first_1x1(_whole(find("resnet50"), device))
    if network.group == "timm":
        import timm

        def make():
            return timm.create_model(network.name.removeprefix("timm/"), pretrained=False)
    else:
        extra = {} if network.group.endswith(("classification", "video")) else {
            "weights_backbone": None}

        def make():
            return torchvision.models.get_model(network.name, weights=None, **extra)

    with warnings.catch_warnings():  # torchvision: "the default weight initialization of
        warnings.simplefilter("ignore", FutureWarning)  # inception_v3 will be changed"
        model = (_on_meta(make) if device == "meta" else make()).eval()
    if network.group == "timm":
        _freeze_same(model)
        model.__class__ = _trunk_class(type(model))
    return model


def _part(network: Network, model: nn.Module) -> nn.Module:
    path = part(network)
    return model.get_submodule(path) if path else model


def part(network: Network | str) -> str:
    """Where in the model the traced module sits: ``"backbone.body"`` for the detectors with a
    feature pyramid (their backbone body is the classification trunk the FPN taps),
    ``"backbone"`` for SSD (VGG or MobileNet features and the extra layers), "" otherwise."""
    network = find(network) if isinstance(network, str) else network
    if network.group != "torchvision detection":
        return ""
    return "backbone" if network.name.startswith("ssd") else "backbone.body"


def _stride_on_first_1x1(model: nn.Module) -> nn.Module:
    """torchvision's resnet50 with each downsampling block's stride moved from its 3×3 to its
    first 1×1: ResNet v1 as published (and as Caffe ran it), torchvision's "v1.5" before."""
    for layer in (model.layer2, model.layer3, model.layer4):
        layer[0].conv1.stride, layer[0].conv2.stride = layer[0].conv2.stride, (1, 1)
    return model


@functools.cache
def _trunk_class(kind: type) -> type:
    """A subclass whose ``forward`` is ``forward_features``: the trunk, without the head."""
    return type(kind.__name__, (kind,), {"forward": kind.forward_features,
                                         "__module__": kind.__module__})


@functools.cache
def find(name: str) -> Network:
    """The atlas's network of that name.

    >>> find("timm/resnet50d")
    Network('timm/resnet50d', timm / resnet)
    """
    found = next((n for n in catalogue() if n.name == name), None)
    if found is None:
        raise ValueError(f"network {name!r} is not in the atlas; valid: a torchvision model "
                         "name (e.g. 'resnet50') or 'timm/<name>' for one of "
                         f"{', '.join(TIMM[:4])}, …")
    return found


# --- timm's "same" padding -----------------------------------------------------------------


class _FrozenSame(nn.Sequential):
    """timm's ``Conv2dSame`` / ``MaxPool2dSame`` / ``AvgPool2dSame`` as a constant pad and the
    plain op: TensorFlow's SAME padding depends on the size of the op's input, which torch.fx
    cannot trace (it branches on it). :func:`_pad_for` sets the pad for one input size."""


def _freeze_same(model: nn.Module) -> int:
    """Replace each dynamic "same" op by a :class:`_FrozenSame` sharing its parameters."""
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame

    count = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, Conv2dSame):
            op = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                           module.stride, 0, module.dilation, module.groups,
                           module.bias is not None, device="meta")
            op.weight, op.bias = module.weight, module.bias
            value = 0.0
        elif isinstance(module, MaxPool2dSame):
            op = nn.MaxPool2d(module.kernel_size, module.stride, 0, module.dilation,
                              ceil_mode=module.ceil_mode)
            value = -math.inf
        elif isinstance(module, AvgPool2dSame):
            op = nn.AvgPool2d(module.kernel_size, module.stride, 0, module.ceil_mode,
                              module.count_include_pad)
            value = 0.0
        else:
            continue
        frozen = _FrozenSame()
        frozen.add_module("pad", nn.ConstantPad2d(0, value))
        frozen.add_module("op", op)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, frozen)
        count += 1
    return count


def _pad_for(model: nn.Module, input_size: tuple[int, ...]) -> None:
    """Set every :class:`_FrozenSame` pad for ``input_size``, from the sizes that reach it in
    one forward pass on the meta device (TensorFlow's rule, as timm's ``pad_same``)."""
    from timm.layers.padding import pad_same_arg

    frozen = [m for m in model.modules() if isinstance(m, _FrozenSame)]
    if not frozen:
        return

    def two(value) -> tuple[int, int]:
        return (value, value) if isinstance(value, int) else tuple(value)

    def set_pad(module, args):
        op = module.op
        module.pad.padding = tuple(pad_same_arg(args[0].shape[-2:], two(op.kernel_size),
                                                two(op.stride), two(getattr(op, "dilation", 1))))

    hooks = [m.register_forward_pre_hook(set_pad) for m in frozen]
    weight = next(model.parameters())  # meta in the atlas; a real model runs once
    try:
        with torch.no_grad():
            model(torch.zeros((1, _channels(model), *input_size), device=weight.device,
                              dtype=weight.dtype))
    finally:
        for hook in hooks:
            hook.remove()


def _channels(model: nn.Module) -> int:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)), None)
    return first.in_channels if first is not None else 3


# --- one network's rows ------------------------------------------------------------------------


def _sizes(network: Network, whole: nn.Module) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The input at 224 and the network's default input: the size its published weights use
    (timm's ``pretrained_cfg``, torchvision's weights' crop), the short side a detector
    resizes images to, or the one size a ViT is built for."""
    square = (SIZE, SIZE)
    if network.group == "torchvision video":
        crop = _weights_transform(network.name).crop_size
        return (FRAMES, *square), (FRAMES, *crop)
    if network.group == "timm":
        return square, tuple(whole.pretrained_cfg["input_size"][1:])
    if network.group == "torchvision detection":
        size = whole.transform.min_size[-1]  # what it resizes to in eval mode
        return square, (size, size)
    if network.group == "variant":
        return square, square
    if hasattr(whole, "image_size"):  # vit_*: built for one size
        return square, (whole.image_size,) * 2
    transform = _weights_transform(network.name)
    size = getattr(transform, "crop_size", None) or transform.resize_size
    return square, (size[0], size[-1])


def _weights_transform(name: str):
    return torchvision.models.get_model_weights(name).DEFAULT.transforms()


def _quiet_trace(model: nn.Module, input_size) -> LayerTable:
    """:func:`rfviz.trace`, its warnings kept for the rows; an error that is not rfviz's
    ValueError (a bug on the way) becomes one, so that the row says so and the atlas goes on."""
    _pad_for(model, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RfvizWarning)
        try:
            return trace(model, input_size)
        except ValueError:
            raise
        except Exception as error:
            raise ValueError(f"rfviz.trace raised {type(error).__name__}: {error}") from None


def _stage_names(network: Network, model: nn.Module, table: LayerTable) -> list[str]:
    for pattern, stages in STAGES.items():
        if fnmatch.fnmatchcase(network.name, pattern):
            return list(stages)
    if network.group == "timm":
        return list(dict.fromkeys(info["module"] for info in model.feature_info))
    if network.group == "torchvision segmentation":
        # the classification network's stages (dilation keeps later ones at jump 8)
        backbone = build(network.name.split("_", 1)[1])  # deeplabv3_resnet50 -> resnet50
        try:
            reference = _stage_ends(_quiet_trace(backbone, (SIZE, SIZE)),
                                    set(dict(backbone.named_modules())), 2)
            stages = [f"backbone.{s.removeprefix('features.')}" for s in reference]
        except ValueError:  # the classification network cannot be traced: this one's own
            stages = _stage_ends(table, set(dict(model.named_modules())), 2)
        return [*dict.fromkeys([*stages, "classifier", table.rows[-1].name])]
    return _stage_ends(table, set(dict(model.named_modules())), network.spatial)


def _stage_ends(table: LayerTable, modules: set[str], spatial: int) -> list[str]:
    """The last module before each downsampling (or upsampling), up to the head.

    Modules are taken from the top of the tree, going down into a container that holds most
    of the network and downsamples to more than one size (``features`` → ``features.0``,
    ``features.1``, …); the head starts at the first adaptive pooling, or the first output that
    is not a feature map or is one unit wide.
    """
    trunk = []
    for name, row in _candidates(table.rows, modules):
        if ("daptive" in row.op or len(row.shape) != 1 + spatial
                or all(n == 1 for n in row.shape[1:])):
            break
        trunk.append((name, row.shape[1:]))
    return [name for (name, shape), (_, after) in zip(trunk, [*trunk[1:], (None, None)],
                                                      strict=True) if _resampled(shape, after)]


def _resampled(before, after) -> bool:
    """Whether a feature map of size ``after`` is ``before`` down- or upsampled (by 1.5 or
    more along an axis; an unpadded convolution, 111 -> 109, is not); True at the end."""
    return after is None or any(max(a, b) >= 1.5 * min(a, b)
                                for a, b in zip(before, after, strict=True))


def _candidates(rows, modules: set[str], depth: int = 0) -> list[tuple[str, object]]:
    """Modules at ``depth`` in execution order with their last row; a container that holds
    most of the rows and downsamples to more than one size (``features``) is opened instead."""
    groups: dict[str, list] = {}
    for row in rows:
        key = row.scopes[depth] if len(row.scopes) > depth else row.name
        groups.setdefault(key, []).append(row)
    found = []
    for key, inside in groups.items():
        strided = {r.shape[1:] for r in inside if r.stride and max(r.stride) > 1}
        if (len(inside) > len(rows) / 2 and any(len(r.scopes) > depth + 1 for r in inside)
                and len(strided) >= 2):
            found.extend(_candidates(inside, modules, depth + 1))
        elif key in modules:
            found.append((key, inside[-1]))
    return found


def network_rows(network: Network | str, *, complete: bool = True) -> list[dict]:
    """The atlas rows of one network (see :data:`COLUMNS`). ``complete=False``: the numbers
    at 224 only — one build and one trace, no default size, no search for the smallest input."""
    network = find(network) if isinstance(network, str) else network
    whole = _whole(network)
    model = _part(network, whole)
    base, default = _sizes(network, whole)
    if not complete:
        default = base
    prefix = f"{part(network)}." if part(network) else ""
    common = {"group": network.group, "family": network.family, "model": network.name,
              "axes": "×".join("THW"[-network.spatial:]),
              "parameters": sum(p.numel() for p in model.parameters())}
    tables: dict[tuple[int, ...], LayerTable | str] = {}
    for size in dict.fromkeys((base, default)):
        try:
            tables[size] = _quiet_trace(model, size)
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
    same = sum(isinstance(m, _FrozenSame) for m in model.modules())
    if same:
        notes.append(f"{same} TensorFlow-SAME ops (timm's Conv2dSame, …) padded for each "
                     "traced size")
    smallest = _smallest_input(model, base, default) if complete else None
    rows = []
    for stage in _stage_names(network, model, table):
        row = {**common, "stage": prefix + stage, "input": list(base),
               **_stage(model, table, stage, base, prefix)}
        if default != base:
            other = tables[default]
            at_default = (_unknown(other) if isinstance(other, str)
                          else _stage(model, other, stage, default, prefix))
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


def _unknown(reason: str) -> dict:
    return {"status": "unknown", "note": f"unknown: {reason}"}


def _stage(model: nn.Module, table: LayerTable, stage: str, size, prefix: str = "") -> dict:
    """One stage's numbers from a traced table."""
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
        note = "units see different spans (after upsampling): field is the largest"
        if 0 in found["jump"]:
            note += (f"; at {by(tuple(size))} every unit's span is the same (the field is wider "
                     "than the image), so the jump reads 0")
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
    nodes = {node.name: node for node in _graph(model).nodes}
    upstream, todo = set(), [nodes[row.node]]
    while todo:
        node = todo.pop()
        if node.name not in upstream:
            upstream.add(node.name)
            todo.extend(node.all_input_nodes)
    first = next(r for r in table.rows if r.node in upstream and r.field.is_global)
    owners = (type(model.get_submodule(scope)).__name__ for scope in reversed(first.scopes))
    owner = next((o for o in owners if o != first.op), None)
    inside = f" (in {owner})" if owner else ""
    return f"{first.op} at {prefix + first.name!r}{inside}"


def _smallest_input(model: nn.Module, base: tuple[int, ...], default: tuple[int, ...]) -> str:
    """The smallest square input (H = W; video at its default frames) the network accepts:
    a binary search on where :func:`rfviz.trace` says "input_size is too small"."""

    def attempt(n: int) -> str | None:
        size = (*base[:-2], n, n)
        try:
            _quiet_trace(model, size)
        except ValueError as error:
            return str(error)
        return None

    def too_small(error: str | None) -> bool:
        return error is not None and "input_size is too small" in error

    if attempt(1) is None:  # most networks: pooling, padding and ceil_mode keep 1 pixel
        return "×".join([*map(str, base[:-2]), "1", "1"])
    low, high = 2, base[-1]
    while too_small(attempt(high)):
        low, high = high + 1, high * 2
        if high > 4096:
            return "unknown: too small even at 4096"
    while low < high:
        middle = (low + high) // 2
        if too_small(attempt(middle)):
            low = middle + 1
        else:
            high = middle
    if attempt(low) is None:
        return "×".join([*map(str, base[:-2]), str(low), str(low)])
    # Not too small at `low` but refused for another reason: a network whose sizes must divide
    # (windows, tree merges) or that is built for one size. The smallest multiple of 32 (the
    # usual deepest jump), or the default size, that it accepts.
    for n in sorted({*range(math.ceil(low / 32) * 32, default[-1], 32), default[-1]}):
        if attempt(n) is None:
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


# --- the whole atlas ---------------------------------------------------------------------------

COLUMNS = ("group", "family", "model", "stage", "axes", "input", "output", "status", "field",
           "jump", "padding", "margin_before", "margin_after", "margin_grid", "default_input",
           "default_status", "default_field", "default_jump", "default_padding",
           "smallest_input", "parameters", "input_dependent", "note")


def generate(only: str | None = None, processes: int | None = None,
             progress: Callable[[str, float], None] | None = None) -> list[dict]:
    """Rows of every network whose name matches the pattern ``only`` (fnmatch, e.g.
    ``"resnet*"`` or ``"timm/*"``; all if None), in catalogue order, plus the reference rows.
    Networks are shared among ``processes`` worker processes (default: the CPUs, at most 2);
    ``progress(name, seconds)`` is called as each network is done."""
    networks = [n for n in catalogue() if only is None or fnmatch.fnmatchcase(n.name, only)]
    if only is not None and not networks:
        raise ValueError(f"--only {only!r} matches no network: the pattern matches network "
                         "names, e.g. 'resnet*', 'fcn_*', 'timm/*' (see docs/atlas)")
    processes = processes or min(2, os.cpu_count() or 1)
    results: dict[str, list[dict]] = {}
    if processes > 1 and len(networks) > 1:
        with multiprocessing.get_context("fork").Pool(processes, _worker_init) as pool:
            done = pool.imap_unordered(_timed_rows, [n.name for n in networks])
            for name, rows, seconds in done:
                results[name] = rows
                if progress:
                    progress(name, seconds)
    else:
        for network in networks:
            name, results[network.name], seconds = _timed_rows(network.name)
            if progress:
                progress(name, seconds)
    rows = [row for network in networks for row in results[network.name]]
    return rows + (reference_rows() if only is None else [])


def _worker_init() -> None:
    torch.set_num_threads(1)


def _timed_rows(name: str) -> tuple[str, list[dict], float]:
    start = time.perf_counter()
    rows = network_rows(name)
    return name, rows, time.perf_counter() - start


def merge(old: Sequence[dict], new: Sequence[dict], only: str) -> list[dict]:
    """``old`` with the rows of the networks matching ``only`` replaced by ``new``'s, in
    catalogue order (``--only`` regenerates part of the atlas)."""
    order = {n.name: i for i, n in enumerate(catalogue())}
    kept = [r for r in old if not fnmatch.fnmatchcase(r["model"], only)
            or r["group"] == "reference"]
    rows = kept + list(new)
    return sorted(rows, key=lambda r: (r["group"] == "reference", order.get(r["model"], 0)))


# --- files ------------------------------------------------------------------------------------


def versions() -> dict:
    import timm

    return {"torch": torch.__version__.split("+")[0], "torchvision":
            torchvision.__version__.split("+")[0], "timm": timm.__version__}


def write(rows: Sequence[dict], out: Path | str) -> None:
    """``README.md``, ``atlas.csv`` and ``atlas.json`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = versions()
    (out / "atlas.json").write_text(json.dumps({"versions": meta, "columns": list(COLUMNS),
                                                "rows": list(rows)}, indent=1,
                                               ensure_ascii=False) + "\n")
    (out / "atlas.csv").write_text(to_csv(rows))
    (out / "README.md").write_text(readme(rows, meta))


def read(out: Path | str) -> list[dict]:
    return json.loads((Path(out) / "atlas.json").read_text())["rows"]


def to_csv(rows: Iterable[dict]) -> str:
    """One line per row; per-axis values joined by "×" (H×W, or T×H×W)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in COLUMNS])
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "×".join(map(str, value))
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def short(values: Sequence | None) -> str:
    """Per-axis values as the tables show them: ``427`` where the axes agree, ``3×7×7``."""
    return "—" if values is None else by(tuple(values))


# --- the Markdown index ---------------------------------------------------------------------

GROUPS = ("torchvision classification", "torchvision segmentation", "torchvision video",
          "torchvision detection", "variant", "timm", "reference")

LEFT_OUT = """\
- **timm's other depths and widths of a family** (resnet26/34/152, efficientnet_b1…b8,
  convnext_small/large, the other regnets, …): the same stages with more or wider blocks; one or
  two per family are listed (`rfviz.atlas.TIMM`), and `rfviz.receptive_field(model, layer)`
  answers for any of them.
- **timm's transformer and hybrid families** (ViT, DeiT, BEiT, EVA, Swin, CaiT, CoaT, MaxViT,
  LeViT, EfficientFormer, MobileViT, …) and **MLP families** (MLP-Mixer, ResMLP, gMLP): global
  attention and token-mixing MLPs make every token depend on every other past the patch
  embedding (Swin's windowed attention does not, but its windows are not followed either). One
  ViT and one Swin stay to show the patch embedding; rfviz cannot yet follow the reshape into
  tokens, so the first block reads "unknown", not "global".
- **Pretrained tags and weight variants** (`.a1_in1k`, …): the same architecture, the same
  fields.
- **torchvision's quantized and optical-flow models**: the quantized ones are the
  classification architectures above, made quantizable (the same fields); RAFT compares every
  pixel with every other through its correlation volume (global).
- **Detection heads and FPN levels**: the rows are the backbone bodies the FPN taps (the
  detection section); an FPN level mixes in every coarser level through nearest upsampling, so
  its units see different spans.
"""


def readme(rows: Sequence[dict], meta: dict | None = None) -> str:
    """The Markdown index: an introduction, then one section per family."""
    meta = meta or versions()
    computed = [r for r in rows if r["group"] != "reference"]
    models = list(dict.fromkeys(r["model"] for r in computed))
    counts = {status: sum(r["status"] == status for r in computed)
              for status in ("ok", "per unit", "global", "unknown")}
    sections = {}
    for row in rows:
        sections.setdefault((row["group"], row["family"]), []).append(row)
    ordered = sorted(sections, key=lambda key: (GROUPS.index(key[0]), key[1]))
    lines = [
        "# Receptive-field atlas",
        "",
        f"Every stage end-point of {len(models)} networks — each torchvision classification, "
        "segmentation and video network, the backbone bodies of torchvision's detectors and "
        "timm's convolutional families — with its receptive field, jump and effective padding "
        "per axis, the exact tile margins and the smallest input the network accepts. "
        f"{len(computed)} rows: {counts['ok']} with numbers, {counts['per unit']} per unit "
        f"(after upsampling), {counts['global']} global, {counts['unknown']} unknown. "
        "Also as [atlas.csv](atlas.csv) and [atlas.json](atlas.json) (the same rows).",
        "",
        "Everything here is computed, nothing typed in (except the reference rows, labelled as "
        "such): each network is built with `weights=None` (timm: `pretrained=False`) on "
        "PyTorch's *meta* device — shapes without numbers, so nothing is downloaded or "
        "initialised — and traced by `rfviz.trace`. `tests/test_atlas.py` regenerates a sample "
        "of networks on every run and compares them with these files, and measures a random "
        "sample of rows by gradients (`rfviz.probe.measured_field`: where the gradient of one "
        "unit lands, on a real CPU model with random weights; `ATLAS_MEASURE_ALL=1` measures "
        "every row whose field fits a small input). Regenerate with `make atlas` "
        "(or `python -m rfviz atlas [--only PATTERN]`); versions: "
        + ", ".join(f"{k} {v}" for k, v in meta.items()) + ".",
        "",
        "## How to read a row",
        "",
        "- **stage**: the module (its `named_modules()` path) whose output the row describes: "
        "the last module before each downsampling — torchvision's `layer1` … `layer4`, "
        "`features.N`; for timm the modules of `model.feature_info`; for transformers the patch "
        "embedding and the first block.",
        "- **output**: the stage's output shape (channels × spatial) for the input in the "
        "section's heading (224 × 224; video 16 × 224 × 224).",
        "- **field**: how many input pixels one output unit sees, per axis (one number where H "
        "and W agree; video: T × H × W). **jump**: how far apart (in input pixels) neighbouring "
        "units' fields start — the product of the strides. **padding**: the effective padding: "
        "unit *i* sees pixels *i*·jump − padding … *i*·jump − padding + field − 1 (0-based; "
        "below 0 or past the end is padding).",
        "- **tile margins** before / after: the context a tile needs before the first unit it "
        "keeps and after the last, so that tiles give exactly the whole image's output "
        "(`rfviz.tiling.tile_margins`; a tile starts on the jump grid, so round *before* up to "
        "a multiple of the jump).",
        "- **at default size**: the same numbers at the size the network's published weights "
        "use (Inception 299, EfficientNet-B3 300, SSD 300, detectors 800, …), where that is not "
        "224: \"same\" when nothing changes.",
        "- **smallest input** (per network): the smallest square input the whole network "
        "(timm: its trunk, `forward_features`) accepts, from a binary search over sizes on "
        "where `rfviz.trace` says \"input_size is too small\".",
        "- **global**: every unit depends on the whole input (a squeeze-excite gate, global "
        "pooling, GroupNorm, attention): there is no field to give and no exact tiling; the "
        "note names the first op on the way that makes it so. **unknown: reason**: rfviz "
        "cannot follow an op on the way and says which (never a guess).",
        "- ✱ **input-dependent**: the numbers change with the input size — TensorFlow-style "
        "SAME padding (timm's `tf_*` models; padded here for the traced size), units that see "
        "different spans after upsampling, or numbers that differ at the default size.",
        "- 〃: the same note as the row above. [atlas.csv](atlas.csv) and "
        "[atlas.json](atlas.json) also give every axis apart, the input size, the number of "
        "`parameters` of the traced module and the input-dependence flag.",
        "",
        *_resnet50_story(rows),
        "",
        *_variants(rows),
        "",
        "## Contents",
        "",
    ]
    for group in GROUPS:
        keys = [key for key in ordered if key[0] == group]
        if keys:
            links = " · ".join(f"[{family}](#{_anchor(_heading(group, family))})"
                               for _, family in keys)
            lines.append(f"- **{group}**: {links}")
    lines += ["- [Left out, and why](#left-out-and-why)", ""]
    current = None
    for key in ordered:
        group, family = key
        if group != current:
            current = group
            lines += [f"## {group}", "", _GROUP_NOTES.get(group, ""), ""]
        lines += [f"### {_heading(group, family)}", "", *_family_table(sections[key]), ""]
    lines += ["## Left out, and why", "", LEFT_OUT]
    return "\n".join(line for i, line in enumerate(lines)
                     if line or (i and lines[i - 1])) + "\n"


VARIANTS = (  # (model, stage, what differs)
    ("resnet50", "layer4", "torchvision (v1.5): stride 2 on the 3×3 of the first block"),
    (V1, "layer4", "the same, stride 2 on the first 1×1 (ResNet v1 as published)"),
    ("tf-slim/resnet_v1_50", "resnet_v1_50/block4", "TF-slim v1, from the reference table"),
    ("timm/resnet50", "layer4", "timm's resnet50: the same layout as torchvision's"),
    ("timm/resnet50d", "layer4", "ResNet-D: three 3×3 convolutions in the stem"),
    ("fcn_resnet50", "backbone.layer4", "dilation instead of stride in layer3 and layer4"),
    ("resnet18", "layer4", "basic blocks: two 3×3 per block"),
    ("inception_v3", "Mixed_7c", "torchvision"),
    ("tf-slim/inception_v3", "Mixed_7c", "TF-slim, from the reference table"),
)


def _resnet50_story(rows: Sequence[dict]) -> list[str]:
    """Why tables disagree about ResNet-50, with the numbers read from the rows."""
    found = {(r["model"], r["stage"]): r for r in rows}
    v15, v1 = found.get(("resnet50", "layer4")), found.get((V1, "layer4"))
    slim = found.get(("tf-slim/resnet_v1_50", "resnet_v1_50/block4"))
    if not (v15 and v1 and slim and v15.get("field") and v1.get("field")):
        return []
    f15, f1, fslim = (short(r["field"]) for r in (v15, v1, slim))
    return [
        f"## ResNet-50: {f15} or {fslim}?", "",
        f"Both, for different networks. torchvision's `resnet50` is \"v1.5\": a downsampling "
        f"block strides in its 3×3 convolution, and `layer4`'s field is {f15} pixels. ResNet v1 "
        f"as published strides in the block's first 1×1, so every 3×3 after it works at the "
        f"coarser jump: the same network with the stride moved ([{V1}](#resnet-variant), "
        f"computed) sees {f1} pixels. google-research/receptive_field's table gives {fslim} for "
        "TF-slim's `resnet_v1_50/block4`, which subsamples in the *last* unit of each block "
        "instead — the same size by another route (its padding differs, "
        f"{short(slim['padding'])} against {short(v1['padding'])}: TF-slim's stem max-pool "
        "pads SAME, nothing on the left of an even input). The [reference rows](#reference) "
        "are copied from [that table]("
        f"{REFERENCE_URL}) (input 224), not computed; its `inception_v3` and `vgg_16` rows "
        "agree with torchvision's `inception_v3` `Mixed_7c` and `vgg16` `features.30` below.",
    ]


def _variants(rows: Sequence[dict]) -> list[str]:
    """A small table of the last stage of variants people compare, read from the rows."""
    found = {(r["model"], r["stage"]): r for r in rows}
    lines = ["Variants side by side (read from the rows below):", "",
             "| network | stage | field | jump | padding | what differs |",
             "|---|---|---|---|---|---|"]
    for model, stage, what in VARIANTS:
        row = found.get((model, stage))
        if row is not None and row.get("field"):
            lines.append(f"| `{model}` | `{stage}` | {short(row['field'])} | "
                         f"{short(row['jump'])} | {short(row['padding'])} | {what} |")
    return lines if len(lines) > 4 else []


_GROUP_NOTES = {
    "torchvision classification": "`torchvision.models.list_models(module=torchvision.models)`,"
    " in eval mode (Inception's and GoogLeNet's auxiliary heads are not part of inference).",
    "torchvision segmentation": "The backbone stages carry the classification network's "
    "names (layer3 and layer4 are dilated: jump 8), then the head (`classifier`) and the "
    "output, upsampled to the input size with `F.interpolate`.",
    "torchvision video": "Input: 16 frames (T × H × W); `smallest input` varies H = W at 16 "
    "frames.",
    "variant": "Not a torchvision model: torchvision's `resnet50` with each downsampling "
    "block's stride moved from its 3×3 to its first 1×1 — ResNet v1 as published (and as the "
    "original Caffe model ran), computed here beside torchvision's v1.5.",
    "torchvision detection": "The backbone body each detector taps (`backbone.body`, the "
    "classification trunk under the feature pyramid; SSD: its `backbone`, VGG or MobileNet "
    "features and the extra layers). Its fields are those of the pyramid's lateral inputs; "
    "the pyramid levels themselves mix coarser levels in through upsampling (left out). "
    "Default size: the short side the detector resizes images to.",
    "timm": "Default configurations (`pretrained=False`), the trunk (`forward_features`); stages "
    "are `model.feature_info` (HRNet: `act1` and the `incre_modules` its features_only "
    "variant returns). Many families read \"unknown\": timm's `BatchNormAct2d` calls "
    "`F.batch_norm`, which rfviz has no rule for yet (the note names the op).",
    "reference": f"Copied from google-research/receptive_field's [published table]("
    f"{REFERENCE_URL}) for TF-slim networks at input 224 — **not computed by rfviz**.",
}


def _heading(group: str, family: str) -> str:
    return family if group == "reference" else f"{family} ({group})"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return "".join(c for c in heading.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def _family_table(rows: Sequence[dict]) -> list[str]:
    """One table; consecutive networks whose rows read the same share one block."""
    header = ["model", "stage", "output", "field", "jump", "padding", "margins",
              "at default size", "smallest input", "note"]
    blocks: list[tuple[list[str], list[list[str]]]] = []
    for model in dict.fromkeys(r["model"] for r in rows):
        cells = [_cells(r) for r in rows if r["model"] == model]
        if blocks and blocks[-1][1] == cells:
            blocks[-1][0].append(model)
        else:
            blocks.append(([model], cells))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for names, cells in blocks:
        for i, row in enumerate(cells):
            first = ", ".join(f"`{n}`" for n in names) if i == 0 else ""
            smallest = row[-2] if i == 0 else ""
            note = "〃" if i and row[-1] and row[-1] == cells[i - 1][-1] else row[-1]
            lines.append("| " + " | ".join([first, *row[:-2], smallest, note]) + " |")
    return lines


def _cells(row: dict) -> list[str]:
    """A row's cells after the model's name (the smallest input second to last)."""
    status = row["status"]
    star = " ✱" if row.get("input_dependent") else ""
    output = "×".join(map(str, row["output"])) if row.get("output") else "—"
    if status in ("ok", "reference"):
        field = short(row["field"]) + star
    elif status == "per unit":
        field = f"≤ {short(row['field'])}{star}"
    else:
        field = status
    margins = "—"
    if row.get("margin_before") is not None:
        margins = f"{short(row['margin_before'])} / {short(row['margin_after'])}"
        if row.get("margin_grid"):
            margins += f" (grid {short(row['margin_grid'])})"
    default = "—"
    if row.get("default_input"):
        size = short(row["default_input"]) if len(set(row["default_input"])) == 1 else \
            "×".join(map(str, row["default_input"]))
        same = all(row.get(f"default_{k}") == row.get(k) for k in (
            "status", "field", "jump", "padding"))
        if same:
            default = f"same at {size}"
        elif row.get("default_status") in ("ok", "per unit"):
            default = (f"at {size}: {short(row['default_field'])}, jump "
                       f"{short(row['default_jump'])}, padding {short(row['default_padding'])}")
        else:
            default = f"at {size}: {row.get('default_status')}"
    note = (row.get("note") or "").replace("|", "\\|")
    stage = f"`{row['stage']}`"
    return [stage, output, field, short(row.get("jump")), short(row.get("padding")), margins,
            default, row.get("smallest_input", "—"), note]
