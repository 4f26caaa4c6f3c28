"""rfviz.tracing on hand-built networks with hand-worked answers, and on torchvision models."""

import warnings

import pytest
import torch
import torchvision
from torch import nn

from rfviz.field import FieldError
from rfviz.probe import measured_field
from rfviz.tiling import tile_margins
from rfviz.tracing import RfvizWarning, receptive_field, trace


def conv(k, s=1, p=0, d=1, c_in=4, c_out=4, **kwargs):
    return nn.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, **kwargs)


class Residual(nn.Module):
    """x + body(x) with an optional strided 1x1 shortcut (ResNet's downsampling block)."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body, self.shortcut = body, shortcut or nn.Identity()

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class Concat(nn.Module):
    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def stem():
    return nn.Sequential(conv(3, c_in=3), nn.ReLU())


# --- sequential stacks: the recurrence, per axis --------------------------------------


def test_sequential_stack_matches_the_recurrence():
    # conv 7/2 p3, pool 3/2 p1, conv 3 p1: 7; 7 + 2*2 = 11; 11 + 2*4 = 19; padding 3 + 2 + 4
    net = nn.Sequential(conv(7, 2, 3, c_in=3), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(3, 2, 1), conv(3, 1, 1))
    field = receptive_field(net, input_size=64)
    assert (field.size, field.stride, field.padding) == ((19, 19), (4, 4), (9, 9))


def test_h_and_w_are_kept_apart():
    net = nn.Sequential(conv((1, 7), p=(0, 3), c_in=3), conv((7, 1), p=(3, 0)),
                        conv((3, 5), s=(1, 2)))
    field = receptive_field(net, input_size=(32, 48))
    # H: 1 -> 7 -> 7 + 2 = 9; W: 7 -> 7 -> 7 + 4 = 11, then stride 2 along W only.
    assert field.size == (9, 11)
    assert field.stride == (1, 2)
    assert receptive_field(net, "0", input_size=(32, 48)).size == (1, 7)


def test_dilation_groups_and_string_padding():
    net = nn.Sequential(conv(3, d=2, c_in=3, padding_mode="reflect"),
                        conv(3, p="same", d=3, groups=2), conv(5, p="valid", groups=4))
    field = receptive_field(net, input_size=40)
    assert field.size == (1 + 4 + 6 + 4,) * 2
    assert field.padding == (0 + 3 + 0,) * 2  # 'same' pads 3*(3-1)//2 on the left


def test_conv1d_models_have_one_axis():
    net = nn.Sequential(nn.Conv1d(2, 4, 5, stride=2), nn.Conv1d(4, 4, 3))
    field = receptive_field(net, input_size=50)
    assert (field.size, field.stride) == ((5 + 2 * 2,), (2,))


def test_activations_norms_dropout_are_identity_for_the_field():
    layers = [nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.GELU(),
              nn.Hardswish(), nn.Identity(), nn.SiLU()]
    net = nn.Sequential(conv(3, c_in=3), *layers)
    assert receptive_field(net, input_size=16).size == (3, 3)


# --- branches ---------------------------------------------------------------------------


def test_residual_add_takes_the_union_of_spans():
    # body: two 3x3 (field 5, padding 2); shortcut: identity (field 1, padding 0).
    # union: padding max(2, 0) = 2, last = max(5-2, 1-0) = 3 -> size 5.
    net = nn.Sequential(stem(), Residual(nn.Sequential(conv(3, p=1), conv(3, p=1))))
    field = receptive_field(net, input_size=16)
    assert field.size == (3 + 4, 3 + 4)


def test_union_of_branches_that_are_offset():
    # Both branches give 4 outputs from 16 pixels, but unit i of branch a sees 4i-2 … 4i+2 and
    # unit i of branch b sees 4i-1 … 4i+3: the sum sees 4i-2 … 4i+3, 6 pixels, padding 2.
    net = Concat(conv(5, s=4, p=2, c_in=3), conv(5, s=4, p=1, c_in=3))
    field = receptive_field(net, input_size=16)
    assert (field.size, field.stride, field.padding) == ((6, 6), (4, 4), (2, 2))
    assert field.h.span(1) == (4 - 2, 4 + 3)


def test_concatenation_merges_inception_style_branches():
    net = Concat(conv(1, c_in=3), conv(3, p=1, c_in=3), conv(5, p=2, c_in=3),
                 nn.Sequential(nn.MaxPool2d(3, 1, 1), conv(1, c_in=3)))
    assert receptive_field(net, input_size=16).size == (5, 5)


def test_misaligned_branches_raise_naming_the_axis():
    class Misaligned(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = conv((3, 3), s=(2, 1), p=1, c_in=3)  # 16x16 -> 8x16, stride 2 along H
            self.b = conv((9, 3), p=(0, 1), c_in=3)  # 16x16 -> 8x16 too, but stride 1

        def forward(self, x):
            return self.a(x) + self.b(x)

    with pytest.raises(ValueError, match=r"disagree on the jump along H: 1 vs 2"):
        trace(Misaligned(), input_size=(16, 16))


def test_channel_shuffle_and_split_keep_the_field():
    model = torchvision.models.shufflenet_v2_x0_5(weights=None)
    table = trace(model, input_size=224)
    assert not any(row.field.unknown for row in table)
    assert table["conv5"].field.size == receptive_field(model, "stage4", 224).size


# --- global context ---------------------------------------------------------------------


def test_adaptive_pool_to_one_and_flatten_linear_are_global():
    net = nn.Sequential(conv(3, c_in=3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    table = trace(net, input_size=16)
    assert [row.field.is_global for row in table] == [False, True, True, True]
    flat = nn.Sequential(conv(3, c_in=3), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    assert [row.field.is_global for row in trace(flat, 16)] == [False, False, True]


def test_adaptive_pool_that_divides_is_a_window():
    net = nn.Sequential(conv(3, c_in=3), nn.AdaptiveAvgPool2d(7))
    field = receptive_field(net, input_size=16)  # 14 -> 7: kernel 2, stride 2
    assert (field.size, field.stride) == ((4, 4), (2, 2))


def test_squeeze_excite_makes_the_field_global():
    model = torchvision.models.mobilenet_v3_small(weights=None)
    table = trace(model, input_size=224)
    first_se = next(i for i, row in enumerate(table) if "block.1" in row.name)
    assert not table[first_se - 1].field.is_global
    assert table["features.1"].field.is_global
    assert str(table["features.1"].field) == "global"


# --- never guess ------------------------------------------------------------------------


class Spectrum(nn.Module):
    """An op rfviz has no rule for (a 2D FFT mixes every pixel)."""

    def forward(self, x):
        return torch.fft.fft2(x).abs()


def test_unknown_op_warns_with_its_type_and_makes_fields_unknown():
    net = nn.Sequential(conv(3, c_in=3), Spectrum(), conv(3))
    with pytest.warns(RfvizWarning, match=r"cannot follow fft_fft2 at '1.fft_fft2'"):
        table = trace(net, input_size=16)
    assert [bool(row.field.unknown) for row in table] == [False, True, True, True]
    assert str(table[2].field) == "unknown"


def test_an_unknown_field_never_answers_with_numbers():
    # After a 2D FFT every output depends on every input; the field of the convolutions
    # alone would answer (-5, 3) for row 0. No numbers at all, then.
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), Spectrum(), nn.Conv2d(8, 4, 3, 1, 1))
    with pytest.warns(RfvizWarning):
        field = receptive_field(net, None, (96, 32))
    assert str(field) == "unknown" and not field.known
    asks = [lambda: field.size, lambda: field.stride, lambda: field.padding, lambda: field.h,
            lambda: field.span((48, 0)), lambda: field.center((48, 0))]
    for ask in asks:
        with pytest.raises(FieldError, match=r"unknown: rfviz cannot follow fft_fft2 at '1"):
            ask()
    with pytest.warns(RfvizWarning):
        table = trace(net, input_size=(96, 32))
    assert str(table).splitlines()[-1].split()[-1] == "unknown"  # no number in the table
    with pytest.warns(RfvizWarning), pytest.raises(ValueError, match="unknown field"):
        tile_margins(net, input_size=(96, 32))


def test_a_global_field_has_no_numbers_either():
    field = receptive_field(nn.Sequential(conv(3, c_in=3), nn.AdaptiveAvgPool2d(1)), None, 16)
    assert str(field) == "global"
    with pytest.raises(FieldError, match="the field is global"):
        field.span((0, 0))


def test_no_warning_for_ops_after_the_requested_layer():
    net = nn.Sequential(conv(3, c_in=3), Spectrum())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert receptive_field(net, "0", input_size=16).size == (3, 3)


# --- bad input ----------------------------------------------------------------------------


def test_non_module_is_refused():
    with pytest.raises(ValueError, match="model must be a torch.nn.Module, got str"):
        trace("resnet50")


def test_input_too_small_names_the_layer():
    # vgg16 halves 16 pixels four times to 1; pool5 then has nothing to pool.
    with pytest.raises(ValueError, match=r"input_size is too small .* at 'features.30' the "
                                         r"input has shape \(512, 1, 1\)"):
        trace(torchvision.models.vgg16(weights=None), input_size=16)


def test_invalid_pooling_is_not_called_a_too_small_input():
    net = nn.Sequential(conv(3, c_in=3), nn.MaxPool2d(3, padding=2))
    with pytest.raises(ValueError, match=r"^at '1' the input has shape \(4, 30, 30\) .*"
                                         r"padding=2 is out of range for kernel=3"):
        trace(net, input_size=32)


class Mismatch(nn.Module):
    """Two branches whose outputs differ in size (kernels 3 and 5, no padding), added."""

    def __init__(self):
        super().__init__()
        self.a, self.b = conv(3), conv(5)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_branches_of_different_shapes_say_so_naming_the_row():
    net = nn.Sequential(conv(1, c_in=3), Mismatch())
    with pytest.raises(ValueError, match=r"^at '1.add' the input has shape \(4, 6, 6\) and "
                                         r"\(4, 4, 4\) .*branches merged here .* do not "
                                         r"broadcast"):
        trace(net, input_size=8)


def test_unknown_layer_lists_the_closest_names():
    with pytest.raises(ValueError, match=r"layer='layer5' is not in the model; closest: 'layer"):
        receptive_field(torchvision.models.resnet18(weights=None), "layer5")


def test_bad_input_size_is_refused():
    with pytest.raises(ValueError, match=r"input_size=\(224, 224, 3\) is not valid: give 2"):
        trace(nn.Conv2d(3, 3, 3), input_size=(224, 224, 3))


def test_model_is_left_as_found():
    model = torchvision.models.resnet18(weights=None).train()
    before = {name: p.clone() for name, p in model.state_dict().items()}
    trace(model)
    assert model.training
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"


# --- torchvision models: names, shapes, known numbers ---------------------------------------


def test_resnet18_shapes_follow_the_paper_table():
    table = trace(torchvision.models.resnet18(weights=None), input_size=224)
    shapes = {name: table[name].shape for name in
              ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")}
    assert shapes == {"conv1": (64, 112, 112), "maxpool": (64, 56, 56),
                      "layer1": (64, 56, 56), "layer2": (128, 28, 28),
                      "layer3": (256, 14, 14), "layer4": (512, 7, 7),
                      "avgpool": (512, 1, 1), "fc": (1000,)}
    assert table["layer1.0.add"].op == "add"


def test_table_renders_as_text_and_html():
    table = trace(torchvision.models.resnet18(weights=None), input_size=224)
    text = str(table)
    assert text.splitlines()[0].split()[:3] == ["layer", "op", "kernel"]
    assert "layer4.1.conv2" in text and "global" in text
    assert table._repr_html_().count("<tr>") == len(table) + 1


@pytest.mark.parametrize(("name", "kwargs", "layer", "size", "stride"), [
    ("resnet50", {}, "layer3", 267, 16),
    ("resnet50", {}, "layer4", 427, 32),  # torchvision's v1.5; the paper's v1 gives 483
    ("resnet18", {}, "layer4", 435, 32),
    ("vgg16", {}, "features.29", 196, 16),  # conv5_3 (+ relu)
    ("vgg16", {}, "features.30", 212, 32),  # pool5
])
def test_known_field_sizes(name, kwargs, layer, size, stride):
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    field = receptive_field(model, layer)
    assert field.size == (size, size) and field.stride == (stride, stride)


@pytest.mark.filterwarnings("ignore:rfviz cannot follow AdaptiveAvgPool2d")
@pytest.mark.parametrize("name", ["resnet18", "alexnet", "googlenet", "shufflenet_v2_x0_5",
                                  "mobilenet_v3_small", "squeezenet1_1"])
def test_every_module_shape_equals_a_real_forward(name):
    # Shapes come from rfviz's arithmetic on the meta device; torch, run for real, is the oracle.
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    real, hooks = {}, []

    def record(path):
        def hook(module, inputs, output):  # returns None: the output stays as it is
            real.setdefault(path, tuple(output.shape[1:]))
        return hook

    for path, module in model.named_modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(record(path)))
    with torch.no_grad():
        model(torch.zeros(1, 3, 97, 131))  # odd sizes exercise the floors
    for hook in hooks:
        hook.remove()
    traced = {row.name: row.shape for row in trace(model, input_size=(97, 131))}
    assert {path: traced[path] for path in real} == real


def test_replacing_a_submodule_is_noticed_by_the_graph_cache():
    net = nn.Sequential(conv(3, c_in=3), conv(3))
    assert receptive_field(net, input_size=16).size == (5, 5)
    net[1] = conv(5)
    assert receptive_field(net, input_size=16).size == (7, 7)
    net[1].dilation = (2, 2)  # settings are read afresh on every call
    assert receptive_field(net, input_size=16).size == (3 + 8, 3 + 8)


def test_stride_one_transposed_conv_is_a_conv_with_complementary_padding():
    from rfviz.probe import measured_field

    net = nn.Sequential(conv(3, s=2, c_in=3),
                        nn.ConvTranspose2d(4, 4, 5, padding=1, dilation=2),  # pads 2*4-1 = 7
                        conv(3))
    analytic = receptive_field(net, input_size=40)
    measured = measured_field(net, input_size=(40, 40))
    assert measured.field == analytic
    assert analytic.padding == (0 + 7 * 2 + 0, 0 + 7 * 2 + 0)


def test_layer_norm_over_channels_after_a_permute_is_local():
    # ConvNeXt normalises channels in channels-last layout: permute, layer_norm, permute back.
    table = trace(torchvision.models.convnext_tiny(weights=None), input_size=64)
    assert not any(row.field.unknown for row in table)
    assert not table["features.1"].field.is_global
    over_space = nn.Sequential(conv(3, c_in=3), nn.LayerNorm([8, 8]))  # normalises H and W
    assert receptive_field(over_space, input_size=10).is_global


class Scaled(nn.Module):
    """Arithmetic whose result shape comes from broadcasting: a per-channel scale, a number, and
    a tensor built from an integer index (whose dtype changes when it is halved)."""

    def __init__(self):
        super().__init__()
        self.conv = conv(3, p=1)
        self.scale = nn.Parameter(torch.ones(1, 4, 1, 1))

    def forward(self, x):
        y = self.conv(x) * self.scale + 0.5
        rows = torch.arange(y.shape[2]).view(1, 1, -1, 1) / 2  # int64 / 2 -> float
        return y.mean(dim=(0, 1), keepdim=True) - rows


def test_arithmetic_shapes_and_dtypes_follow_broadcasting_as_torch_does():
    model = Scaled()
    table = trace(model, input_size=(9, 7))
    with torch.no_grad():
        real = model(torch.zeros(1, 4, 9, 7))
    assert table.rows[-1].shape == tuple(real.shape[1:]) == (1, 9, 7)


def test_arithmetic_on_shapes_that_do_not_broadcast_names_the_op():
    with pytest.raises(ValueError, match=r"at 'add'.*\(4, 6, 6\)"):
        trace(Mismatch(), input_size=8)


# --- found in review: repeated ops, splits, other windows, vision transformers -------------


def test_a_failing_op_called_twice_is_named_as_its_row():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.p = conv(3, c_in=3), nn.MaxPool2d(3)

        def forward(self, x):
            return self.p(self.p(self.c(x)))

    assert [row.name for row in trace(Twice(), input_size=12)] == ["c", "p", "p@1"]
    with pytest.raises(ValueError, match=r"input_size is too small .* at 'p@1' the input has "
                                         r"shape \(4, 2, 2\)"):
        trace(Twice(), input_size=8)


@pytest.mark.parametrize("module", [nn.ReflectionPad2d(5), nn.Unfold(5)])
def test_any_window_that_does_not_fit_is_a_too_small_input(module):
    with pytest.raises(ValueError, match=r"input_size is too small .* at '1' the input has "
                                         r"shape \(4, 4, 4\)"):
        trace(nn.Sequential(conv(3, c_in=3), module), input_size=6)


def test_a_split_along_a_spatial_axis_warns_naming_it():
    class Split(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = conv(3, c_in=3)

        def forward(self, x):
            a, b = torch.chunk(self.c(x), 2, dim=2)
            return a + b

    with pytest.warns(RfvizWarning, match=r"cannot follow chunk at 'chunk': split along a "
                                          r"spatial axis"):
        field = receptive_field(Split(), None, 12)
    assert not field.known


def test_three_d_pools_and_adaptive_pools_are_followed():
    net = nn.Sequential(nn.Conv3d(1, 2, 3), nn.MaxPool3d(2), nn.AdaptiveAvgPool3d(1))
    table = trace(net, input_size=(10, 10, 10))
    assert table[1].field.size == (4, 4, 4)  # 3 + (2-1)*1
    assert table[2].field.is_global


def test_vision_transformer_patch_field_then_global():
    vit = torchvision.models.vit_b_16(weights=None)
    table = trace(vit)  # patches flattened into tokens: followed (tests/test_tokens.py)
    assert str(table["conv_proj"].field) == "16 px, jump 16, padding 0"
    assert table.rows[-1].field.is_global
    first_block = [row for row in table if "encoder_layer_0" in row.name]
    assert first_block[-1].field.is_global  # attention: every token sees every token


# --- padding ops: a constant pad shifts every unit; a copying pad is refused ---------------


class PadThenConv(nn.Module):
    """conv 5 (padding 4) -> F.pad(amounts) -> conv 3: F.pad may crop (negative amounts)."""

    def __init__(self, amounts):
        super().__init__()
        self.amounts = amounts
        self.a, self.b = nn.Conv2d(1, 3, 5, padding=4), nn.Conv2d(3, 2, 3, stride=2)

    def forward(self, x):
        return self.b(torch.nn.functional.pad(self.a(x), self.amounts))


@pytest.mark.parametrize("build", [  # built in the test: its weights from the test's seed
    lambda: nn.Sequential(nn.ZeroPad2d((1, 2, 3, 0)), conv(3, c_in=1), conv(3, 2)),
    # an average pool: a max pool's gradient goes to one winner per window, weights decide
    lambda: nn.Sequential(nn.ConstantPad2d((0, 0, 2, 1), 0.5), conv(3, c_in=1), nn.AvgPool2d(2)),
    lambda: PadThenConv((2, 0, 1, 3)), lambda: PadThenConv((-2, -1, -3, 0)),
    lambda: PadThenConv((1, 1)),
], ids=["ZeroPad2d", "ConstantPad2d", "F.pad", "F.pad crop", "F.pad W only"])
def test_constant_padding_shifts_the_field_as_the_gradient_says(build):
    from rfviz.probe import measured_field

    torch.manual_seed(0)
    net = build()
    measured = measured_field(net.double(), None, (40, 36))
    assert not any(measured.clipped)
    field = receptive_field(net, None, (40, 36))  # a crop gives per-unit spans
    assert field.span(measured.unit) == measured.spans
    assert field.span(tuple(i + 1 for i in measured.unit)) == measured.neighbour_spans


def test_functional_batch_norm_is_per_channel_and_group_norm_global():
    class Norms(nn.Module):  # timm's BatchNormAct2d calls F.batch_norm itself
        def __init__(self, group):
            super().__init__()
            self.conv, self.group = conv(3, c_in=3), group
            self.register_buffer("mean", torch.zeros(4))
            self.register_buffer("var", torch.ones(4))

        def forward(self, x):
            x = torch.nn.functional.batch_norm(self.conv(x), self.mean, self.var)
            return torch.nn.functional.group_norm(x, 2) if self.group else x

    assert receptive_field(Norms(group=False), None, 16).size == (3, 3)
    assert receptive_field(Norms(group=True), None, 16).is_global


@torch.fx.wrap
def _twice_and_size(x):  # a wrapped helper: torch.fx records one call giving a tuple
    return x * 2, x.shape[-1]


def test_a_call_giving_a_tuple_of_tensors_is_said_not_dropped():
    class Tuple(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = conv(3, c_in=3), conv(3)

        def forward(self, x):
            y, _ = _twice_and_size(self.a(x))
            return self.b(y)

    with pytest.warns(RfvizWarning, match=r"cannot follow _twice_and_size .*gives several"):
        table = trace(Tuple(), input_size=16)
    assert table[-1].name == "b" and table[-1].field.unknown


class Softmaxed(nn.Module):
    def __init__(self, dim, functional=True):
        super().__init__()
        self.conv, self.dim = conv(3, c_in=3), dim
        self.softmax = None if functional else nn.Softmax(dim)
        self.mix = conv(1, c_out=2)  # a softmax's channels sum to 1: no gradient through it

    def forward(self, x):
        x = self.conv(x)
        return self.mix(x.softmax(self.dim) if self.softmax is None else self.softmax(x))


@pytest.mark.parametrize("functional", [True, False])
def test_softmax_over_channels_is_per_pixel_and_over_a_spatial_axis_reads_all_of_it(functional):
    """ResNeSt's split attention takes a softmax over the radix: per pixel. A softmax along
    W reads the whole row, and only the row. Torch's gradient agrees, unit by unit."""
    per_pixel = Softmaxed(1, functional)
    assert receptive_field(per_pixel, None, 12).size == (3, 3)
    assert measured_field(per_pixel, None, (12, 12), unit=(5, 5)).spans == ((5, 7), (5, 7))
    for dim, spans in [(-1, ((5, 7), (0, 11))), (2, ((0, 11), (5, 7)))]:
        across = Softmaxed(dim, functional)
        for unit in [(5, 5), (0, 9)]:
            measured = measured_field(across, None, (12, 12), unit=unit).spans
            assert receptive_field(across, None, 12).span(unit) == measured
        assert measured_field(across, None, (12, 12), unit=(5, 5)).spans == spans


def test_addcmul_takes_the_union_of_its_three_inputs():
    """ConvNeXt-V2's global response normalisation ends in an addcmul: a merge, like x + y·z."""
    class Three(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = conv(1, c_in=3), conv(3, c_in=3, p=1), conv(5, c_in=3, p=2)

        def forward(self, x):
            return torch.addcmul(self.a(x), self.b(x), self.c(x), value=0.5)

    field = receptive_field(Three(), None, 16)
    assert field.size == (5, 5)
    assert measured_field(Three(), None, (16, 16), unit=(8, 8)).spans == ((6, 10), (6, 10))


@pytest.mark.parametrize("dim, spans", [
    (1, ((5, 7), (5, 7))),  # over the channels: per pixel
    ((2, 3), ((0, 11), (0, 11))),  # over H and W: ConvNeXt-V2's global response norm
])
def test_a_norm_reduces_the_dims_after_its_order(dim, spans):
    class Normed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv(3, c_in=3)

        def forward(self, x):
            x = self.conv(x)
            return x * x.norm(p=2, dim=dim, keepdim=True)

    field = receptive_field(Normed(), None, 12)
    assert measured_field(Normed(), None, (12, 12), unit=(5, 5)).spans == spans
    assert field.is_global if spans[0] == (0, 11) else field.span((5, 5)) == spans


def test_a_global_field_stays_global_through_any_reshape():
    """ResNeSt's split attention reshapes its (globally pooled) 1 × 1 map into radix groups."""
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv(3, c_in=3)

        def forward(self, x):
            x = self.conv(x)
            attention = x.mean((2, 3), keepdim=True).view(1, 2, 2, 1).transpose(1, 2)
            return x * attention.reshape(1, 4, 1, 1)

    assert receptive_field(Pooled(), None, 12).is_global



def test_a_linear_layer_after_an_op_not_followed_stays_unknown():
    """Windows cut out by a view (as timm's Swin does): rfviz cannot follow the view, and a
    linear layer over the last axis (the channels, here) must not turn that into "global"."""
    class Windows(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.linear = conv(1, c_in=3, c_out=4), nn.Linear(4, 4)

        def forward(self, x):
            x = self.conv(x).permute(0, 2, 3, 1)  # N, H, W, C
            windows = x.view(1, 2, 4, 2, 4, 4).permute(0, 1, 3, 2, 4, 5).reshape(-1, 16, 4)
            return self.linear(windows)

    with pytest.warns(RfvizWarning, match="view.*moves the spatial axes"):
        field = receptive_field(Windows(), None, 8)
    assert field.unknown and not field.is_global, field
    # the truth: a token reads its own pixel (1×1 conv, linear over channels); the first
    # window's 16 tokens read its 4 × 4 pixels, not the image's 64
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    Windows()(x)[0].sum().backward()
    assert torch.count_nonzero(x.grad.abs().sum(1)) == 16


@pytest.mark.parametrize("swap", [lambda x: x.swapaxes(2, 3), lambda x: torch.swapdims(x, -1, -2),
                                  lambda x: x.transpose(3, 2)])
def test_swapping_two_axes_swaps_their_fields(swap):
    class Swapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.tall, self.wide = conv((5, 1), c_in=3), conv((1, 3))

        def forward(self, x):
            return self.wide(swap(self.tall(x)))  # the second conv's W is the input's H

    assert receptive_field(Swapped(), None, (16, 12)).size == (7, 1)
