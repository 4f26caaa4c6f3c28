"""What makes a trace cheap, checked against what it replaces: rfviz's torch.fx tracer against
torch.fx's own, the shapes' shortcuts against torch's meta kernels, and the memory of traces
within ``_remembering()``."""

from __future__ import annotations

import copy
import itertools
import re

import pytest
import torch
import torch.fx
import torch.nn.functional as F
import torchvision
from torch import nn

from rfviz.tracing import _norm_then_activation, _remembering, _shapes, _trace, _Tracer, trace
from rfviz.tracing.shapes import module_output_shape, same_shape

# --- the tracer ---------------------------------------------------------------------------------


class ReadsItsWeights(nn.Module):
    """Reads its parameters and buffers in ``forward`` (as timm's BatchNormAct2d), and shares
    one parameter under two names."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(4))
        self.register_buffer("shift", torch.zeros(4))
        self.again = self.conv  # the same module (and its weight) under a second name
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        x = self.conv(x) * self.scale[:, None, None] + self.shift[:, None, None]
        x = F.batch_norm(x, self.norm.running_mean, self.norm.running_var, self.norm.weight,
                         self.norm.bias)
        return F.conv2d(x, self.again.weight[:, :4].expand(4, 4, 3, 3), padding=1)


def graph_text(graph: torch.fx.Graph) -> str:
    """The graph as text, constants numbered in order (torch.fx numbers them per model)."""
    return re.sub(r"_tensor_constant\d+", "constant", str(graph))


@pytest.mark.parametrize("build", [
    ReadsItsWeights,
    lambda: torchvision.models.resnet18(weights=None),
    lambda: torchvision.models.swin_t(weights=None),
    lambda: __import__("timm").create_model("efficientnet_b0", pretrained=False),
])
def test_the_tracer_records_what_torch_fxs_records(build):
    class Stock(torch.fx.Tracer):  # torch.fx's own, with rfviz's leaves (next test)
        def is_leaf_module(self, m, name):
            return super().is_leaf_module(m, name) or _norm_then_activation(m)

    model = build().eval()
    ours, stock = _Tracer().trace(model), Stock().trace(copy.deepcopy(model))
    assert graph_text(ours) == graph_text(stock)
    for a, b in zip(ours.nodes, stock.nodes, strict=True):
        assert a.meta.get("nn_module_stack") == b.meta.get("nn_module_stack"), a.name


@pytest.mark.parametrize("name", ["resnetv2_50", "mobilenetv3_large_100", "efficientnet_b0"])
def test_timms_norm_and_activation_as_one_op_give_the_fields_traced_into_it(name, monkeypatch):
    import rfviz.tracing

    timm = pytest.importorskip("timm")
    model = timm.create_model(name, pretrained=False).eval()
    whole = trace(model)
    monkeypatch.setattr(rfviz.tracing, "_norm_then_activation", lambda module: False)
    traced_into = trace(copy.deepcopy(model))
    assert len(whole) < len(traced_into)  # fewer rows: the point
    ops = {row.op for row in whole}
    assert "BatchNormAct2d" in ops and "batch_norm" not in ops
    for path, _ in model.named_children():  # every stage's field is the same
        assert str(whole[path].field) == str(traced_into[path].field), path


def test_a_norm_and_activation_as_one_op_is_measured_where_it_was_traced():
    from rfviz.probe import measured_field

    norm_act = pytest.importorskip("timm.layers.norm_act")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), norm_act.BatchNormAct2d(4, act_layer=nn.ReLU),
                          nn.Conv2d(4, 4, 3)).eval()
    assert trace(model, 16)["1"].op == "BatchNormAct2d"
    assert measured_field(model, "1", (16, 16)).field.size == (3, 3)  # cut at that op


def test_a_norm_with_a_child_rfviz_does_not_know_is_traced_into():
    norm_act = pytest.importorskip("timm.layers.norm_act")
    norm = norm_act.BatchNormAct2d(4, act_layer=nn.ReLU)
    assert _norm_then_activation(norm)
    norm.act = nn.Conv2d(4, 4, 3, padding=1)  # not element-wise: its forward must be read
    assert not _norm_then_activation(norm)
    assert trace(nn.Sequential(nn.Conv2d(3, 4, 1), norm), 8).rows[-1].field.size == (3, 3)


@pytest.mark.parametrize("build", [ReadsItsWeights, lambda: torchvision.models.densenet121()])
def test_each_tensor_is_named_as_named_parameters_and_named_buffers_name_it(build):
    from rfviz.tracing import _tensor_names

    model = build()
    assert _tensor_names(model) == ({id(p): n for n, p in model.named_parameters()},
                                    {id(b): n for n, b in model.named_buffers()})


def test_a_parameter_that_is_not_the_models_is_refused_as_torch_fx_refuses():
    stranger = nn.Parameter(torch.ones(1))

    class Net(nn.Module):
        def forward(self, x):
            return torch.add(x, stranger)

    for tracer in (torch.fx.Tracer(), _Tracer()):
        with pytest.raises(NameError, match="parameter is not a member of this module"):
            tracer.trace(Net())


# --- shapes without torch's meta kernels --------------------------------------------------------


MODULES = [nn.Linear(5, 3), nn.LayerNorm(5), nn.LayerNorm([4, 5]), nn.AdaptiveAvgPool2d(2),
           nn.AdaptiveAvgPool2d((None, 3)), nn.AdaptiveMaxPool1d(2), nn.AdaptiveAvgPool3d(1),
           nn.AdaptiveMaxPool2d((1, 2))]
SHAPES = [(5,), (4, 5), (2, 4, 5), (1, 3, 4, 5), (1, 2, 3, 4, 5), (1, 3, 0, 5), (1, 3, 4, 6)]


@pytest.mark.parametrize("module", MODULES, ids=repr)
def test_module_shapes_are_torchs_or_left_to_torch(module):
    for shape in SHAPES:
        try:
            expected = tuple(module(torch.zeros(shape)).shape)
        except (RuntimeError, ValueError, IndexError):  # torch refuses that input
            expected = None
        got = module_output_shape(module, shape)
        assert got is None or got == expected, (module, shape)  # None: torch answers
    batched = next(s for s in SHAPES if len(s) == module_axes(module) + 2)
    assert module_output_shape(module, batched) is not None  # the shortcut is taken


def module_axes(module: nn.Module) -> int:
    """Axes the module works on besides the batch and the channels: 1 for a linear layer."""
    if isinstance(module, nn.LayerNorm):
        return len(module.normalized_shape)
    return int(type(module).__name__[-2]) if type(module).__name__[-1] == "d" else 1


FUNCTIONS = [(F.relu, ()), (F.gelu, ()), (F.hardswish, ()), (torch.sigmoid, ()),
             (F.dropout, (0.1,)), (torchvision.ops.stochastic_depth, (0.1, "row", False)),
             ("contiguous", ()), ("sigmoid", ()), ("clone", ())]


@pytest.mark.parametrize(("target", "extra"), FUNCTIONS, ids=str)
def test_element_wise_ops_keep_shape_dtype_and_layout(target, extra):
    for dtype, layout in itertools.product((torch.float32, torch.float64), ("plain", "moved")):
        x = torch.empty(2, 3, 4, 5, device="meta", dtype=dtype)
        if layout == "moved":
            x = x.transpose(1, 3)
        expected = getattr(x, target)(*extra) if isinstance(target, str) else target(x, *extra)
        got = same_shape(target, (x, *extra), {})
        if got is None:
            assert not x.is_contiguous()  # torch answers for a tensor laid out otherwise
            continue
        assert (got.shape, got.dtype, got.stride()) == (expected.shape, expected.dtype,
                                                        expected.stride())


def test_batch_norm_keeps_the_shape_only_when_its_statistics_fit():
    x = torch.empty(1, 4, 6, 6, device="meta")
    fits, other = torch.empty(4, device="meta"), torch.empty(3, device="meta")
    assert same_shape(F.batch_norm, (x, fits, fits, fits, fits), {}).shape == x.shape
    assert same_shape(F.batch_norm, (x, other, other), {}) is None  # torch says what is wrong
    assert same_shape(F.relu, (x.transpose(1, 2),), {}) is None
    assert same_shape("relu", (x, 1), {}) is None  # a method with arguments: torch decides
    assert same_shape(F.relu, (torch.empty(3, device="meta", dtype=torch.int64),), {}) is None


@pytest.mark.parametrize("batch_first, need_weights, average, kdim", list(itertools.product(
    (True, False), (True, False, None), (True, False), (None, 6))))
def test_multihead_attention_shapes_are_torchs(batch_first, need_weights, average, kdim):
    from rfviz.tracing.shapes import _attention_output

    module = nn.MultiheadAttention(8, 2, batch_first=batch_first, kdim=kdim, vdim=kdim)
    module = module.to("meta").eval()
    query = torch.empty((3, 5, 8) if batch_first else (5, 3, 8), device="meta")
    key = torch.empty((3, 7, kdim or 8) if batch_first else (7, 3, kdim or 8), device="meta")
    kwargs = {"average_attn_weights": average}
    if need_weights is not None:
        kwargs["need_weights"] = need_weights
    def laid_out(results):
        return [None if t is None else (t.shape, t.stride()) for t in results]

    ours = _attention_output(module, (query, key, key), kwargs)
    assert laid_out(ours) == laid_out(module(query, key, key, **kwargs))
    mask = torch.zeros(5, 7, dtype=torch.bool, device="meta")  # masks: torch answers
    assert _attention_output(module, (query, key, key), {"attn_mask": mask}) is None


@pytest.mark.parametrize("extra", [{"add_bias_kv": True}, {"add_zero_attn": True}])
def test_multihead_attention_with_longer_keys_is_left_to_torch(extra):
    from rfviz.tracing.shapes import _attention_output

    module = nn.MultiheadAttention(8, 2, batch_first=True, **extra).to("meta").eval()
    query = torch.empty((3, 5, 8), device="meta")
    assert _attention_output(module, (query, query, query), {}) is None


@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("size", [(7, 7), (9, 5), (1, 3), (16, 16)])
def test_window_attention_shapes_are_torchs(v2, size, monkeypatch):
    from torchvision.models import swin_transformer as swin

    from rfviz.tracing.shapes import _window_attention_output

    kind = swin.ShiftedWindowAttentionV2 if v2 else swin.ShiftedWindowAttention
    block = kind(16, [4, 4], [2, 2], num_heads=2).eval()
    x = torch.randn(1, *size, 16)
    captured, attend = [], swin.shifted_window_attention

    def spy(*args, **kwargs):  # the block's own call, with its arguments
        captured.append((args, kwargs))
        return attend(*args, **kwargs)

    monkeypatch.setattr(swin, "shifted_window_attention", spy)
    expected = block(x).shape
    (args, kwargs), = captured
    assert _window_attention_output(args, kwargs).shape == expected
    assert _window_attention_output((x[0],) + args[1:], kwargs) is None  # 3-D: torch answers
    wrong_bias = args[3][:, :1]  # one head's bias for two heads
    assert _window_attention_output((*args[:3], wrong_bias, *args[4:]), kwargs) is None
    assert _window_attention_output(args[:5] + (3,) + args[6:], kwargs) is None  # 3 ∤ 16


def meta_result(function, *args, **kwargs):
    """What torch's meta kernel gives: shape, dtype, strides; or the error's type."""
    try:
        out = function(*args, **kwargs)
    except Exception as error:
        return type(error)
    return out.shape, out.dtype, out.stride()


def empty(*shape, dtype=torch.float32, permute=None):
    x = torch.empty(shape, device="meta", dtype=dtype)
    return x.permute(*permute) if permute else x


@pytest.mark.parametrize("args, applies", [
    ((empty(1, 4, 6, 8), (8,), empty(8), empty(8)), True),
    ((empty(1, 8, 4, 6, permute=(0, 2, 3, 1)), (8,), empty(8), empty(8)), True),  # LayerNorm2d
    ((empty(2, 5, 8), (5, 8), None, None), True),
    ((empty(2, 5, 8, dtype=torch.float64), (8,), empty(8), empty(8)), False),  # other dtypes
    ((empty(2, 5, 8), (5,), None, None), False),  # not the last dims: torch refuses
    ((empty(2, 5, 8), (8,), empty(7), None), False),
    ((empty(2, 5, 8), 8, None, None), False),  # a bare int: torch refuses
])
def test_layer_norm_shapes_are_torchs_or_left_to_torch(args, applies):
    from rfviz.tracing.shapes import _layer_norm_output

    ours = _layer_norm_output(args, {})
    if applies:
        assert (ours.shape, ours.dtype, ours.stride()) == meta_result(F.layer_norm, *args)
    else:
        assert ours is None


@pytest.mark.parametrize("tensors, dim, applies", [
    ([empty(1, 4, 8, 8), empty(1, 6, 8, 8)], 1, True),
    ([empty(1, 4, 8, 8), empty(1, 4, 8, 3)], -1, True),
    ([empty(1, 4, 8, 8)], 0, True),
    ([empty(1, 4, 8, 8), empty(1, 4, 7, 8)], 1, False),  # do not fit: torch says so
    ([empty(1, 4, 8, 8), empty(1, 4, 8, 8, dtype=torch.float64)], 1, False),  # promotes
    ([empty(1, 8, 4, 4, permute=(0, 2, 3, 1)), empty(1, 4, 4, 8)], 3, False),  # its layout
    ([empty(2, 1, 4, 4, permute=(0, 3, 1, 2))] * 2, 1, False),  # channels last, "contiguous"
    ([empty(1, 4, 8)] * 2, 3, False),  # out of range: torch raises
    ([empty(1, 4, 8)] * 2, True, False),
])
def test_cat_shapes_are_torchs_or_left_to_torch(tensors, dim, applies):
    from rfviz.tracing.shapes import _cat_output

    ours = _cat_output((tensors, dim), {})
    assert _cat_output((tensors,), {"axis": dim}) is None  # torch's other name: left to it
    if applies:
        assert (ours.shape, ours.dtype, ours.stride()) == meta_result(torch.cat, tensors, dim)
    else:
        assert ours is None


def test_a_concatenation_keeps_a_channels_last_layout_as_torch_does():
    class Last(nn.Module):  # (1, 1, H, W) computed channels last: "contiguous" both ways
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 1)

        def forward(self, x):
            y = self.fc(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            return torch.cat([y, y], 1).permute(0, 2, 3, 1).view(1, -1)  # torch: its layout

    expected = Last()(torch.zeros(1, 3, 18, 18)).shape
    assert trace(Last(), 18).rows[-1].shape == expected[1:]


def test_an_in_place_op_on_a_parameter_of_a_meta_model_changes_nothing():
    class Clamped(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.scale = nn.Parameter(torch.ones(8, 1, 1))

        def forward(self, x):
            with torch.no_grad():
                self.scale.clamp_(max=10.0)
            return self.conv(x) * self.scale

    model = Clamped().to("meta")
    assert trace(model, 16).rows[-1].shape == (8, 14, 14)
    assert model.scale.requires_grad and model.scale.shape == (8, 1, 1)


def test_a_batch_norm_that_does_not_fit_is_refused_as_torch_refuses():
    norm_act = pytest.importorskip("timm.layers.norm_act")
    model = nn.Sequential(nn.Conv2d(3, 8, 3), norm_act.BatchNormAct2d(5, act_layer=nn.ReLU))
    with pytest.raises(ValueError, match="running_mean should contain 8 elements"):
        trace(model.eval(), 16)


def test_a_view_after_a_transpose_and_contiguous_still_traces():
    # shufflenet's channel shuffle: the strides of contiguous() decide whether view() works
    model = torchvision.models.shufflenet_v2_x0_5(weights=None)
    assert not any(row.field.unknown for row in trace(model, 64))


@pytest.mark.filterwarnings("ignore::rfviz.RfvizWarning")  # after the flatten: unknown
@pytest.mark.parametrize(("device", "training", "copies"), [
    ("meta", False, 0),  # nothing to read, nothing to update: the module itself runs
    ("meta", True, 1),  # a batch norm in training mode would update its statistics
    ("cpu", False, 1),  # weights with numbers: a weightless copy runs
])
def test_a_module_runs_as_it_is_only_on_meta_and_in_eval_mode(monkeypatch, device, training,
                                                              copies):
    from rfviz.tracing import shapes

    made = []
    original = shapes.meta_copy
    monkeypatch.setattr(shapes, "meta_copy", lambda module: made.append(module) or original(
        module))
    norm = nn.InstanceNorm2d(4, affine=True, track_running_stats=True, device=device)

    class Net(nn.Module):  # an instance norm has no shape shortcut: it runs on meta
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 4, 3, device=device), norm

        def forward(self, x):
            return self.norm(self.conv(x))

    net = Net().train(training)
    before = {k: (v.device, v.shape) for k, v in net.state_dict().items()}
    trace(net, 12)
    assert made == [norm] * copies
    assert all(m.training is training for m in net.modules())
    assert {k: (v.device, v.shape) for k, v in net.state_dict().items()} == before


# --- the memory of traces -----------------------------------------------------------------------


def counted(monkeypatch) -> list:
    """Every walk run, counted."""
    from rfviz.tracing import walk

    runs = []
    original = walk.Walk.run

    def run(self):
        runs.append(self)
        return original(self)

    monkeypatch.setattr(walk.Walk, "run", run)
    return runs


def test_within_the_block_each_size_is_traced_once(monkeypatch):
    runs = counted(monkeypatch)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2))
    with _remembering():
        first = _trace(net, (16, 16))
        assert _trace(net, 16) is first and len(runs) == 1  # 16 and (16, 16): one shape
        assert _trace(net, (20, 20)) is not first and len(runs) == 2
        _shapes(net, (16, 16))  # the table says the shapes fit
        with _remembering():  # nested: the same memory
            assert _trace(net, (16, 16)) is first
    assert _trace(net, (16, 16)) is not first and len(runs) == 3  # outside: traced again


def test_within_the_block_a_graph_is_given_back_without_walking_the_modules(monkeypatch):
    from rfviz.tracing import _graph

    model = torchvision.models.resnet18(weights=None)
    walks = []
    original = model.named_modules
    monkeypatch.setattr(model, "named_modules", lambda *a, **k: walks.append(1) or original(
        *a, **k))
    with _remembering():
        first = _graph(model)
        fingerprints = len(walks)
        assert _graph(model) is first and _graph(model) is first
        assert len(walks) == fingerprints  # no module walked again
    assert _graph(model) is first and len(walks) > fingerprints  # outside: checked again


def test_an_error_is_remembered_and_raised_again(monkeypatch):
    from rfviz.tracing import shapes

    runs = []
    original = shapes.MetaShapeProp.run
    monkeypatch.setattr(shapes.MetaShapeProp, "run",
                        lambda self, *args: runs.append(1) or original(self, *args))
    net = nn.Sequential(nn.Conv2d(3, 4, 7))
    with _remembering():
        for _ in range(2):
            with pytest.raises(ValueError, match="input_size is too small for this model"):
                _trace(net, 5)
        assert len(runs) == 1
        with pytest.raises(ValueError, match="input_size is too small for this model"):
            _shapes(net, 5)
        with pytest.raises(ValueError, match="input_size is too small for this model"):
            _shapes(net, 5)
        assert len(runs) == 2  # shapes alone: remembered apart from the whole trace


def test_shapes_alone_say_too_small_as_a_trace_does():
    net = nn.Sequential(nn.Conv2d(3, 4, 7), nn.MaxPool2d(2))
    for size in range(1, 12):
        try:
            _trace(net, size)
            traced = None
        except ValueError as error:
            traced = str(error)
        try:
            _shapes(net, size)
            shaped = None
        except ValueError as error:
            shaped = str(error)
        assert shaped == traced, size
