"""The receptive-field atlas (docs/atlas): the committed files against a fresh run of a sample
of networks (no drift), a random sample of rows against torch's gradients, and the pieces the
atlas adds to rfviz.trace (stage end-points, timm's SAME padding, the smallest input)."""

import copy
import json
import os
import random
import time
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from rfviz import atlas
from rfviz.__main__ import main
from rfviz.atlas import same, stages
from rfviz.probe import measured_field
from rfviz.tiling import tile_margins
from rfviz.tracing import receptive_field, trace

OUT = Path(__file__).parents[1] / "docs" / "atlas"

# One network of each kind; two more are drawn at random on every run.
FIXED = ["resnet50", "inception_v3", "efficientnet_b0", "fcn_resnet50", "r2plus1d_18",
         "fasterrcnn_resnet50_fpn", "ssd300_vgg16", "vit_b_16", "timm/resnet50d",
         "timm/tf_efficientnet_b0"]
SLOW = ("swin", "maxvit", "mvit", "inception_resnet", "inception_v4", "densenet", "hrnet",
        "regnet_y_128gf", "deeplabv3_resnet101", "fcn_resnet101")  # > 1.5 s each


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads((OUT / "atlas.json").read_text())


def rows_of(committed, model: str) -> list[dict]:
    return [row for row in committed["rows"] if row["model"] == model]


def test_the_committed_files_are_one_run_of_these_versions(committed):
    assert committed["versions"] == atlas.versions(), "regenerate: make atlas"
    rows = committed["rows"]
    assert (OUT / "atlas.csv").read_text() == atlas.to_csv(rows)
    assert (OUT / "README.md").read_text() == atlas.readme(rows, committed["versions"])
    assert {row["model"] for row in rows} >= {n.name for n in atlas.catalogue()}


def test_a_sample_of_networks_regenerates_without_drift(committed):
    rng = random.Random()
    pool = [n.name for n in atlas.catalogue()
            if n.name not in FIXED and not any(s in n.name for s in SLOW)]
    drawn = rng.sample(pool, 2)
    for name in FIXED + drawn:
        assert atlas.network_rows(name) == rows_of(committed, name), (
            f"{name}: docs/atlas differs from a fresh run (drawn this run: {drawn}); "
            "regenerate with `make atlas` if the change is intended")


def _size_for(row: dict, network, stage: str) -> int:
    """The smallest input (multiple of the jump) whose central unit and its neighbour see
    no border, so that the gradient shows the whole field."""
    model = atlas.build(network)
    n = max(row["field"]) + 2 * max(row["jump"])
    while True:
        try:
            out = trace(model, n).find(stage).shape[1:]
        except ValueError:  # too small for the rest of the network (SSD's extra layers)
            n += max(row["jump"])
            continue
        unit = [(k - 1) // 2 for k in out]
        spans = [(u * j - p, (u + 1) * j - p + f - 1) for u, j, p, f in zip(
            unit, row["jump"], row["padding"], row["field"], strict=True)]
        if all(first >= 1 and last <= n - 2 for first, last in spans):
            return n
        n += max(row["jump"])


def without_zero_weights(model: nn.Module) -> nn.Module:
    """Scales initialised to zero (timm's ``zero_init_last``: the last norm of a residual
    branch; NF-ResNet's last ``gain``) cut their path from the gradient, and the field is where
    generic weights reach: they get random positive values (biases stay)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.endswith("bias") and not param.any():
                param.uniform_(0.5, 1.5)
    return model


# Float64 grouped and depthwise convolutions take seconds each on the CPU: those families are
# measured when ATLAS_MEASURE_ALL=1 (every eligible row, ~10 min), not on every run.
GROUPED = ("regnet", "mobilenet", "mnasnet", "shufflenet", "efficientnet", "ghostnet", "rexnet",
           "resnext", "convnext", "ssd", "res2net", "resnest", "dpn", "xception41", "vovnet")


def measurable(row: dict) -> bool:
    """A row with numbers whose output is channels first (so a unit is (i, j); not Swin's
    channels-last patch embedding) and whose field fits a small input."""
    if row["status"] != "ok" or row["axes"] != "H×W" or max(row["field"]) > 160:
        return False
    spatial = row["output"][1:]
    return all(i - f <= o * j <= i + j for o, i, f, j in zip(
        spatial, row["input"], row["field"], row["jump"], strict=True)) and (
        row["parameters"] <= 30_000_000 and "SAME" not in row["note"])


@pytest.mark.filterwarnings("ignore::rfviz.RfvizWarning")  # the rest of a network may be unknown
def test_a_random_sample_of_rows_equals_the_measured_fields(committed):
    eligible = [row for row in committed["rows"] if measurable(row)]
    seed = time.time_ns() % 10_000
    if os.environ.get("ATLAS_MEASURE_ALL"):
        sample = eligible
    else:
        quick = [row for row in eligible if not any(g in row["model"] for g in GROUPED)]
        sample = random.Random(seed).sample(quick, 3)
    for row in sample:
        network = atlas.find(row["model"])
        prefix = f"{atlas.part(network)}." if atlas.part(network) else ""
        stage = row["stage"].removeprefix(prefix)
        size = _size_for(row, network, stage)
        torch.manual_seed(0)
        model = without_zero_weights(atlas.build(network, "cpu"))
        measured = measured_field(model, stage, (size, size), samples=4)
        where = f"{row['model']} {row['stage']} at {size} (seed {seed})"
        assert not any(measured.clipped), where
        assert measured.field.size == tuple(row["field"]), where
        assert measured.field.stride == tuple(row["jump"]), where
        assert measured.field.padding == tuple(row["padding"]), where


def test_tile_margins_agree_with_the_rows(committed):
    for row in rows_of(committed, "resnet50") + rows_of(committed, "fasterrcnn_resnet50_fpn"):
        network = atlas.find(row["model"])
        stage = row["stage"].removeprefix(f"{atlas.part(network)}.")
        margins = tile_margins(atlas.build(network), stage)
        assert list(margins.before) == row["margin_before"], row["stage"]
        assert list(margins.after) == row["margin_after"], row["stage"]


def test_resnet50_427_beside_the_published_483(committed):
    ours = {r["stage"]: r for r in rows_of(committed, "resnet50")}
    theirs = {r["stage"]: r for r in rows_of(committed, "tf-slim/resnet_v1_50")}
    assert ours["layer4"]["field"] == [427, 427]
    assert theirs["resnet_v1_50/block4"]["field"] == [483, 483]
    assert all(r["status"] == "reference" and "not computed" in r["note"]
               for r in theirs.values())
    # where the architectures agree, so do the numbers
    for model, stage, reference in (("inception_v3", "Mixed_7c", "tf-slim/inception_v3"),
                                    ("vgg16", "features.30", "tf-slim/vgg_16")):
        row = next(r for r in rows_of(committed, model) if r["stage"] == stage)
        published = rows_of(committed, reference)[0]
        assert [row[k] for k in ("field", "jump", "padding")] == [
            published[k] for k in ("field", "jump", "padding")], model


def test_global_and_unknown_rows_say_why(committed):
    for row in committed["rows"]:
        if row["status"] == "global":
            assert "global: " in row["note"], row
        if row["status"] == "unknown":
            assert "unknown: " in row["note"], row
        if row["status"] in ("global", "unknown"):
            assert row.get("field") is None and row.get("margin_before") is None, row
    se = rows_of(committed, "efficientnet_b0")[-1]
    assert se["status"] == "global" and "SqueezeExcitation" in se["note"]


@pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning")
@pytest.mark.parametrize(("name", "smallest"), [("squeezenet1_1", 17), ("googlenet", 15)])
def test_the_smallest_input_is_what_torch_accepts(committed, name, smallest):
    assert rows_of(committed, name)[0]["smallest_input"] == f"{smallest}×{smallest}"
    model = torchvision.models.get_model(name, weights=None).eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, smallest, smallest))
        with pytest.raises(RuntimeError):
            model(torch.zeros(1, 3, smallest - 1, smallest - 1))


def test_stage_end_points_of_a_hand_built_network():
    # jumps 1, 2, 4: the last module before each downsampling, up to the head
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.pool(self.features(x)).flatten(1))

    net = Net()
    ends = stages.stage_ends(trace(net, 32), set(dict(net.named_modules())), 2)
    assert ends == ["features.1", "features.4", "features.5"]


@pytest.mark.parametrize(("before", "after", "resampled"), [
    ((111, 111), (109, 109), False),  # an unpadded 3x3 convolution
    ((109, 109), (54, 54), True),
    ((28, 28), (56, 56), True),  # upsampling
    ((7, 7), None, True),  # the last one
])
def test_what_counts_as_a_downsampling(before, after, resampled):
    assert stages.resampled(before, after) is resampled


@pytest.mark.parametrize("size", [31, 32])
def test_same_padding_is_frozen_exactly_for_the_traced_size(size):
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.pool2d_same import MaxPool2dSame

    torch.manual_seed(0)
    net = nn.Sequential(Conv2dSame(1, 2, 3, stride=2), MaxPool2dSame(3, stride=2),
                        Conv2dSame(2, 1, 4, stride=2)).double()
    frozen = copy.deepcopy(net)
    assert same.freeze_same(frozen) == 3
    same.pad_for(frozen, (size, size))
    x = torch.randn(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    assert torch.equal(frozen(x), net(x))
    # torch is the oracle: where the central unit's gradient lands in the dynamic network
    out = net(x)
    unit = tuple((n - 1) // 2 for n in out.shape[2:])
    (grad,) = torch.autograd.grad(out[(0, 0, *unit)], x)
    hits = grad[0, 0].abs().sum(1).nonzero().flatten()
    field = receptive_field(frozen, input_size=(size, size))
    first, last = field.span(unit)[0]
    assert (max(first, 0), min(last, size - 1)) == (int(hits[0]), int(hits[-1]))


def test_same_padding_depends_on_the_input_size():
    from timm.layers.conv2d_same import Conv2dSame

    net = nn.Sequential(Conv2dSame(1, 1, 3, stride=2), Conv2dSame(1, 1, 3, stride=2))
    same.freeze_same(net)
    paddings = {}
    for size in (32, 33):
        same.pad_for(net, (size, size))
        paddings[size] = receptive_field(net, input_size=size).padding
    # TF's SAME pads k - 1 - (n - 1) % s in all, the odd pixel on the right: 32 -> 16 -> 8 pads
    # 0 left both times; 33 -> 17 -> 9 pads 1 left both times: 1 + 1 * 2 = 3
    assert paddings == {32: (0, 0), 33: (3, 3)}


def test_same_pads_are_right_after_a_size_they_cannot_be_set_for():
    from timm.layers.conv2d_same import Conv2dSame

    class Net(nn.Module):  # a plain 7 × 7 between two SAME convolutions: 9 px is too small
        def __init__(self):
            super().__init__()
            self.a, self.b = Conv2dSame(3, 4, 3, stride=2), nn.Conv2d(4, 4, 7)
            self.c = Conv2dSame(4, 4, 3, stride=2)

        def forward(self, x):
            return self.c(self.b(self.a(x)))

    torch.manual_seed(0)
    net = Net().eval().double()
    frozen = copy.deepcopy(net)
    same.freeze_same(frozen)
    same.pad_for(frozen, (40, 40))
    with pytest.raises(ValueError, match="too small"):
        same.pad_for(frozen, (9, 9))
    same.pad_for(frozen, (40, 40))  # set again, not taken as set
    x = torch.randn(1, 3, 40, 40, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(frozen(x), net(x))


def test_the_command_writes_and_merges(tmp_path, capsys):
    assert main(["atlas", "--only", "resnet18", "--out", str(tmp_path)]) == 0
    assert "5 rows of 1 network ->" in capsys.readouterr().out
    assert main(["atlas", "--only", "alexnet", "--out", str(tmp_path)]) == 0
    rows = atlas.read(tmp_path)
    assert [r["model"] for r in rows] == ["alexnet"] * 4 + ["resnet18"] * 5
    assert (tmp_path / "atlas.csv").read_text().count("\n") == 1 + len(rows)
    assert "### resnet (torchvision classification)" in (tmp_path / "README.md").read_text()


def test_a_pattern_that_matches_nothing_is_an_error(tmp_path, capsys):
    assert main(["atlas", "--only", "resnet_99", "--out", str(tmp_path)]) == 2
    assert "matches no network" in capsys.readouterr().err
    assert not (tmp_path / "atlas.json").exists()


# --- the package's parts, and what keeps one network's rows fast --------------------------------


def test_the_names_the_cli_the_tests_and_the_explorer_use():
    for name in ("read", "find", "build", "network_rows", "catalogue", "part", "generate",
                 "merge", "write", "to_csv", "readme", "versions", "COLUMNS", "TIMM"):
        assert name in atlas.__all__ and hasattr(atlas, name), name
    row = atlas.network_rows("alexnet", complete=False)[0]
    assert set(row) <= set(atlas.COLUMNS) and {"model", "stage", "field", "jump", "padding",
                                                "margin_before", "margin_after", "input",
                                                "output", "status", "note"} <= set(row)
    assert atlas.build("alexnet", device="cpu").features[0].weight.is_cpu


def test_every_network_builds_on_the_meta_device_and_leaves_the_default_device():
    for network in atlas.catalogue():
        model = atlas.build(network)
        off = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if not t.is_meta]
        assert not off, f"{network.name}: {off[:3]} not on the meta device"
    assert torch.empty(1).device.type == "cpu"


def _definition(model, base, default) -> str:
    """The smallest input as defined, by whole traces of every size from 1 up: the smallest
    size not too small; if refused for another reason, the smallest multiple of 32 (or the
    default size) accepted."""
    def error(n):
        try:
            atlas.networks.traced(model, (n, n))
        except ValueError as e:
            return str(e)
        return None

    low = next(n for n in range(1, 4097) if "input_size is too small" not in (error(n) or ""))
    if error(low) is None:
        return f"{low}×{low}"
    multiples = sorted({*range(-(-low // 32) * 32, default[-1], 32), default[-1]})
    n = next(n for n in multiples if error(n) is None)
    return f"{n}×{n} (the smallest multiple of 32 accepted; some other sizes from {low} are " \
           "refused)"


class EvenOnly(nn.Module):
    """A skip connection around a pool and an upsampling, concatenated: odd sizes do not fit
    (m units pool to ceil(m / 2), and come back as 2 · ceil(m / 2))."""

    def __init__(self, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel)
        self.pool, self.up = nn.MaxPool2d(3, 2, padding=1), nn.Upsample(scale_factor=2)

    def forward(self, x):
        x = self.conv(x)
        return torch.cat([x, self.up(self.pool(x))], 1)


@pytest.mark.parametrize(("build", "expected"), [
    # 7 + (3-1) + (5-1)*2 = 17: found by doubling and bisection
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 7), nn.MaxPool2d(3, 2), nn.Conv2d(4, 4, 5)),
     "17×17"),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2, ceil_mode=True)),
     "1×1"),
    # 5: the conv leaves 1 (odd, refused); 32 leaves 28
    (lambda: EvenOnly(5), "32×32 (the smallest multiple of 32 accepted; some other sizes from "
                          "5 are refused)"),
    # 6 leaves 1, 32 leaves 27, 64 leaves 59: all odd
    (lambda: EvenOnly(6), "unknown: refused at 6×6 and at every multiple of 32 up to 64"),
])
def test_the_smallest_input_search_finds_what_whole_traces_define(build, expected):
    model = build().eval()
    found = atlas.rows.smallest_input(model, (64, 64), (64, 64))
    assert found == expected
    if not found.startswith("unknown"):
        assert found == _definition(model, (64, 64), (64, 64))


def test_one_networks_rows_pause_the_collector_on_one_thread_and_restore_both(monkeypatch):
    import gc

    seen = []
    original = atlas.rows.stage_names

    def stage_names(*args):
        seen.append((gc.isenabled(), torch.get_num_threads()))
        return original(*args)

    monkeypatch.setattr(atlas.rows, "stage_names", stage_names)
    threads = torch.get_num_threads()
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            atlas.network_rows("resnet18", complete=False)
            assert gc.isenabled() is enabled and torch.get_num_threads() == threads
        finally:
            gc.enable()
    assert seen == [(False, 1), (False, 1)]


def test_same_pads_are_set_once_per_size():
    from timm.layers.conv2d_same import Conv2dSame

    net = nn.Sequential(Conv2dSame(1, 1, 3, stride=2), Conv2dSame(1, 1, 3, stride=2))
    same.freeze_same(net)
    calls = []
    net[0].pad.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[-1]))
    for size in (32, 32, 33, 33, 32):
        same.pad_for(net, (size, size))
    assert calls == [32, 33, 32]  # the sizes propagated once per change of size
    assert net[0].pad.padding == (0, 1, 0, 1)  # 32: 3 - 1 - 31 % 2 = 1 in all, on the right
