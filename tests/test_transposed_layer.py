"""Layer(op="transposed"): sizes, windows and fields against torch's ConvTranspose1d."""

import itertools
import random

import pytest
import torch
from builders import fitting_cases, gradient_support, torch_stack_1d
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from torch import nn

from rfviz.draw.colours import PALETTE
from rfviz.draw.pixels1d import COUNTS_GID, _glyphs, draw_pixels1d, layout_pixels1d
from rfviz.field import Layer, ReceptiveField, layer_fields, layer_sizes

# (kernel, stride, padding, output_padding, dilation): every small combination, valid or not.
COMBOS = list(itertools.product(range(1, 6), range(1, 4), range(0, 4), range(0, 3),
                                range(1, 4)))
SIZES = range(1, 9)


def conv_transpose(kernel, stride, padding, output_padding, dilation) -> nn.ConvTranspose1d:
    """One channel, no bias, all weights 1, float64: a nonzero gradient is a real path."""
    module = nn.ConvTranspose1d(1, 1, kernel, stride, padding, output_padding, bias=False,
                                dilation=dilation, dtype=torch.float64)
    nn.init.ones_(module.weight)
    return module


def layer_or_none(kernel, stride, padding, output_padding, dilation) -> Layer | None:
    try:
        return Layer(kernel, stride, padding, dilation, op="transposed",
                     output_padding=output_padding)
    except ValueError as error:
        assert "output_padding=" in str(error) and "valid" in str(error)
        return None


def test_output_size_is_torchs_over_every_small_combination():
    disagreements = []
    for combo, size in itertools.product(COMBOS, SIZES):
        try:
            with torch.no_grad():
                expected = conv_transpose(*combo)(torch.zeros(1, 1, size, dtype=torch.float64))
            expected = expected.shape[-1]
        except RuntimeError:
            expected = None
        layer = layer_or_none(*combo)
        try:
            got = layer.output_size(size) if layer else None
        except ValueError:
            got = None
        if got != expected:
            disagreements.append((combo, size, expected, got))
    assert not disagreements, disagreements[:5]


def jacobian(module: nn.Module, size: int) -> torch.Tensor:
    """d output[o] / d input[i], by autograd: (outputs, inputs)."""
    x = torch.rand(size, dtype=torch.float64)
    return torch.autograd.functional.jacobian(lambda v: module(v[None, None])[0, 0], x)


def test_window_is_the_gradient_support_and_its_length_the_sum():
    checked = 0
    for combo in COMBOS:
        layer = layer_or_none(*combo)
        if layer is None:
            continue
        for size in (1, 2, 5, 8):
            try:
                n_out = layer.output_size(size)
            except ValueError:
                continue
            grad = jacobian(conv_transpose(*combo), size)
            assert grad.shape == (n_out, size)
            for unit in range(n_out):
                window = list(layer.window(unit))
                assert window == sorted(window)
                inside = [i for i in window if 0 <= i < size]
                support = torch.nonzero(grad[unit]).flatten().tolist()
                assert inside == support, (layer, size, unit)
                assert grad[unit].sum().item() == len(inside)  # each tap adds exactly once
                checked += 1
    assert checked > 5000


def test_the_checkerboard_of_kernel_3_stride_2():
    up = Layer(3, stride=2, op="transposed")
    summed = layout_pixels1d([up], 8).contributions(1)
    assert len(summed) == (8 - 1) * 2 + 3
    assert summed[1:-1] == (1, 2) * 7 + (1,)  # inside: 1, 2, 1, 2, …
    assert summed[0] == summed[-1] == 1  # the ends: one neighbour is missing


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"stride": 2, "output_padding": 2},
     r"output_padding=2 is out of range: it must be smaller than stride=2 or dilation=1; "
     r"valid: output_padding ≤ 1"),
    ({"output_padding": 1}, r"output_padding=1 is out of range: .* valid: output_padding ≤ 0"),
    ({"output_padding": -1}, r"output_padding=-1 is out of range: output_padding must be ≥ 0"),
    ({"ceil_mode": True}, r"ceil_mode=True is only for pooling; valid for op='transposed'"),
])
def test_invalid_transposed_layers_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Layer(3, op="transposed", **kwargs)


def test_output_padding_belongs_to_the_transposed_op():
    for op in ("conv", "maxpool", "avgpool"):
        with pytest.raises(ValueError, match=rf"output_padding=1 is only for op='transposed'; "
                                             rf"valid for op='{op}': output_padding=0"):
            Layer(3, stride=2, op=op, output_padding=1)


def test_label_and_repr_show_only_what_is_set():
    up = Layer(4, stride=2, padding=1, op="transposed", output_padding=1)
    assert up.label == "convT k=4 s=2 p=1 op=1"
    assert repr(up) == "Layer(kernel=4, stride=2, padding=1, op='transposed', output_padding=1)"
    assert Layer(3, op="transposed").label == "convT k=3 s=1 p=0"
    assert repr(Layer(3)) == "Layer(kernel=3)"


def test_sizes_of_a_decoder_stack():
    # 64 → conv s2 → 32 → convT k4 s2 p1 doubles → 64; with output_padding 1: 65
    layers = [Layer(3, 2, 1), Layer(4, 2, 1, op="transposed")]
    assert layer_sizes(layers, 64) == [64, (64 + 2 - 3) // 2 + 1, 31 * 2 - 2 + 3 + 1]
    assert layer_sizes([Layer(3, 2, 1, op="transposed", output_padding=1)], 32) == [32, 64]


# --- fields: exact at stride 1, refused beyond ------------------------------------------


@pytest.mark.parametrize(("kernel", "padding", "dilation"),
                         [(k, p, d) for k, p, d in itertools.product(range(1, 5), range(0, 4),
                                                                      range(1, 3))])
def test_stride_one_transposed_field_is_torchs(kernel, padding, dilation):
    """At stride 1 the field is a conv's with padding d·(k−1) − p (negative: a crop), after
    a conv too: every unit's span holds exactly its gradient support where the span is inside."""
    up = Layer(kernel, padding=padding, dilation=dilation, op="transposed")
    layers = [Layer(3, 2, 1), up]
    size = 12
    try:
        n_out = layer_sizes(layers, size)[-1]
    except ValueError:
        return
    field = ReceptiveField.of(layers)
    assert layer_fields([up])[-1] == ReceptiveField().then(kernel, 1, up.effective_kernel - 1
                                                           - padding, dilation)
    conv = nn.Conv1d(1, 1, 3, 2, 1, bias=False, dtype=torch.float64)
    nn.init.ones_(conv.weight)
    stack = nn.Sequential(conv, conv_transpose(kernel, 1, padding, 0, dilation))
    for unit in range(n_out):
        support = gradient_support(stack, size, unit, seeds=[0])
        first, last = field.span(unit)
        assert support <= set(range(first, last + 1)), unit
        if first >= 0 and last < size:
            assert (min(support), max(support)) == (first, last), unit
        assert layout_pixels1d(layers, size, unit).input_cells == support


def test_strided_transposed_layer_has_no_single_field():
    layers = [(3, 1, 1), Layer(4, stride=2, padding=1, op="transposed")]
    message = (r"layer 2 \(convT k=4 s=2 p=1\): with stride=2 the field of a transposed "
               r"convolution's output unit depends on its position modulo the stride.*"
               r"valid: stride=1")
    with pytest.raises(ValueError, match=message):
        layer_fields(layers)
    with pytest.raises(ValueError, match=message):
        ReceptiveField.of(layers)


# --- the diagram: traced through transposed layers, counts drawn ---------------------------


def random_decoder(rng: random.Random) -> list[Layer]:
    """One to four layers, convolutions and transposed convolutions mixed."""
    layers = []
    for _ in range(rng.randint(1, 4)):
        kernel, stride, dilation = rng.randint(1, 5), rng.randint(1, 3), rng.randint(1, 2)
        if rng.random() < 0.5:
            layers.append(Layer(kernel, stride, rng.randint(0, 2), dilation, op="transposed",
                                output_padding=rng.randint(0, max(stride, dilation) - 1)))
        else:
            layers.append(Layer(kernel, stride, rng.randint(0, 2), dilation))
    return layers


@pytest.mark.parametrize(("layers", "size"), list(fitting_cases(random_decoder, (1, 12), 40,
                                                               seed=11, max_output=80)))
def test_highlight_through_transposed_layers_is_the_gradient_support(layers, size):
    stack = torch_stack_1d(layers)
    n_out = layer_sizes(layers, size)[-1]
    for unit in range(0, n_out, max(1, n_out // 12)):
        support = gradient_support(stack, size, unit, seeds=[0])
        assert layout_pixels1d(layers, size, unit).input_cells == support, unit


def counts_drawn(fig) -> list[str]:
    """The count glyphs of the figure, read back as the strings they draw."""
    (counts,) = [c for c in fig.axes[0].collections
                 if isinstance(c, PathCollection) and c.get_gid() == COUNTS_GID]
    digits = {str(n): _glyphs(str(n)) for n in range(10)}
    found = []
    for path in counts.get_paths():
        (text,) = [t for t, glyph in digits.items()
                   if glyph.vertices.shape == path.vertices.shape
                   and (glyph.vertices == path.vertices).all()]
        found.append(text)
    return found


@pytest.mark.parametrize(("layers", "size"), [
    ([Layer(3, 2, op="transposed")], 8),
    ([Layer(2, 2, dilation=3, op="transposed")], 6),  # outputs that sum nothing
    ([Layer(3, 2, 1), Layer(4, 2, 1, op="transposed", output_padding=1)], 10),
    ([Layer(3, 2, 1, op="transposed", output_padding=1)] * 2, 5),
])
def test_the_count_drawn_is_the_number_of_inputs_summed(layers, size):
    fig = draw_pixels1d(layers, size, fig=Figure())
    diagram = layout_pixels1d(layers, size)
    expected = []
    for r, row in enumerate(diagram.rows[1:], start=1):
        if row.layer.op == "transposed":
            inputs = range(diagram.rows[r - 1].size)
            summed = [len(set(row.layer.window(cell)) & set(inputs)) for cell in range(row.size)]
            assert list(diagram.contributions(r)) == summed
            expected += [str(n) for n in summed]
    assert counts_drawn(fig) == expected
    # and the cells are shaded by the count: a cell that sums nothing is white
    faces = [tuple(f) for f in next(c for c in fig.axes[0].collections
                                    if isinstance(c, PolyCollection)).get_facecolors()]
    zeros = sum(n == "0" for n in expected)
    assert faces.count(to_rgba(PALETTE["padding"])) >= zeros


def test_cells_of_a_transposed_row_sit_over_what_they_read():
    # k=4 s=2 p=1 doubles: output o is centred on input (o + 1 - 1.5) / 2, so outputs 2i and
    # 2i+1 sit a quarter pixel either side of input i (as pixel centres do when upsampling ×2).
    diagram = layout_pixels1d([Layer(4, 2, 1, op="transposed")], 6)
    below, row = diagram.rows
    assert row.step == 0.5 and diagram.pitch == 0.5
    for i in range(below.size):
        assert (row.x(2 * i), row.x(2 * i + 1)) == (below.x(i) - 0.25, below.x(i) + 0.25)
    for cell in range(row.size):  # the middle of the kernel's taps, input-side
        taps = [(cell + 1 - t) / 2 for t in range(4)]
        assert row.x(cell) == sum(taps) / 4


def test_a_transposed_title_names_the_unit_and_its_inputs():
    fig = draw_pixels1d([Layer(3, 2, op="transposed")], 6, unit=4, fig=Figure())
    assert fig.axes[0].texts[-1].get_text() == "top unit 4 depends on input 1…2 (2 px)"
    fig = draw_pixels1d([Layer(1, 2, op="transposed")], 6, unit=1, fig=Figure())
    assert fig.axes[0].texts[-1].get_text() == "top unit 1 depends on no input pixel"
    fig = draw_pixels1d([Layer(3, 2, op="transposed")] * 2, 6, fig=Figure())
    assert fig.axes[0].texts[-1].get_text() == (
        "fields of the top units: up to 2 px (they depend on the unit)")
