"""The atlas's Markdown index (``docs/atlas/README.md``): an introduction, how to read a row,
the ResNet-50 numbers people quote side by side, then one table per family.

>>> short([427, 427]), short([3, 7, 7]), short(None)
('427', '3×7×7', '—')
"""

from __future__ import annotations

from collections.abc import Sequence

from ..field import by
from .networks import V1, versions
from .rows import REFERENCE_URL

__all__ = ["GROUPS", "readme", "short"]


def short(values: Sequence | None) -> str:
    """Per-axis values as the tables show them: ``427`` where the axes agree, ``3×7×7``."""
    return "—" if values is None else by(tuple(values))


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
  embedding (Swin's windowed attention does not). One ViT and one Swin stay to show the patch
  embedding: rfviz follows the patches flattened into tokens, and the ViT's first attention
  block reads "global"; timm's Swin cuts its windows out of the tokens by a reshape rfviz
  cannot follow, so its first block reads "unknown" (torchvision's Swin, above, is followed
  window by window).
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
        f"(after an upsampling or a window attention), {counts['global']} global, "
        f"{counts['unknown']} unknown. "
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
        "different spans (the note names the op from which they do), or numbers that differ "
        "at the default size.",
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
