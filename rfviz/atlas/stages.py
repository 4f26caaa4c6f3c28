"""Stage end-points: the modules whose outputs the atlas describes.

A stage ends at the last module before each downsampling (torchvision's ``layer1`` …
``layer4``, ``features.N``), up to the head; timm's networks name theirs (``feature_info``), and
a few are named by hand (:data:`STAGES`). Segmentation networks keep their classification
backbone's stages, then the head and the output.

>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),
...                     nn.MaxPool2d(2))
>>> from rfviz import trace
>>> stage_ends(trace(net, 32), {"0", "1", "2", "3"}, 2)       # 32 -> 16 -> 14 -> 7
['0', '2', '3']
"""

from __future__ import annotations

import fnmatch
import functools

from torch import nn

from ..layer_table import LayerTable
from .networks import SIZE, Network, build, traced

__all__ = ["STAGES", "resampled", "stage_ends", "stage_names"]

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


def stage_names(network: Network, model: nn.Module, table: LayerTable) -> list[str]:
    """The stages of ``network`` (``model`` its traced module, ``table`` its trace at 224)."""
    for pattern, stages in STAGES.items():
        if fnmatch.fnmatchcase(network.name, pattern):
            return list(stages)
    if network.group == "timm":
        return list(dict.fromkeys(info["module"] for info in model.feature_info))
    if network.group == "torchvision segmentation":
        # the classification network's stages (dilation keeps later ones at jump 8)
        try:  # deeplabv3_resnet50 -> resnet50
            reference = _classification_stages(network.name.split("_", 1)[1])
            stages = [f"backbone.{s.removeprefix('features.')}" for s in reference]
        except ValueError:  # the classification network cannot be traced: this one's own
            stages = stage_ends(table, set(dict(model.named_modules())), 2)
        return [*dict.fromkeys([*stages, "classifier", table.rows[-1].name])]
    return stage_ends(table, set(dict(model.named_modules())), network.spatial)


@functools.cache
def _classification_stages(name: str) -> tuple[str, ...]:
    """A classification network's stage end-points, worked out once per process (the
    segmentation networks on the same backbone ask again: fcn_resnet50, deeplabv3_resnet50)."""
    backbone = build(name)
    return tuple(stage_ends(traced(backbone, (SIZE, SIZE)), set(dict(backbone.named_modules())),
                            2))


def stage_ends(table: LayerTable, modules: set[str], spatial: int) -> list[str]:
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
                                                      strict=True) if resampled(shape, after)]


def resampled(before, after) -> bool:
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
