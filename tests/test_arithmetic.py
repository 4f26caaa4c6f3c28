"""Output-size arithmetic against torch, the oracle, over every small combination."""

import itertools
import re

import pytest
import torch
from torch import nn

from rfviz.arithmetic import (
    conv_output_size,
    conv_transpose_output_size,
    effective_kernel,
    explain_conv_transpose_output_size,
    explain_output_size,
    pool_output_size,
    same_padding,
)

SIZES = range(1, 41)
KERNELS = range(1, 10)
STRIDES = range(1, 6)
PADDINGS = range(0, 5)
DILATIONS = range(1, 4)

# Every message must name a parameter with its value and say what is valid.
NAMES_PARAMETER = re.compile(r"\b(size|kernel|stride|padding|dilation|output_padding)=\d+")


def torch_length(module: nn.Module, size: int) -> int | None:
    """The length torch gives for a 1D input of `size`, or None where torch refuses."""
    try:
        with torch.no_grad():
            return module(torch.zeros(1, 1, size)).shape[-1]
    except RuntimeError:
        return None


def ours(fn, *args, **kwargs) -> int | None:
    try:
        return fn(*args, **kwargs)
    except ValueError as error:
        message = str(error)
        assert NAMES_PARAMETER.search(message), message
        assert "valid" in message, message
        return None


def assert_sweep_agrees(make_module, our_fn, combos):
    disagreements = []
    for params in combos:
        module = make_module(**params)
        for size in SIZES:
            expected = torch_length(module, size)
            got = ours(our_fn, size, **params)
            if got != expected:
                disagreements.append((size, params, expected, got))
    assert not disagreements, f"{len(disagreements)} disagreements, first: {disagreements[:5]}"


def grid(**axes):
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


def test_conv1d_sweep_matches_torch():
    combos = grid(kernel=KERNELS, stride=STRIDES, padding=PADDINGS, dilation=DILATIONS)
    assert_sweep_agrees(
        lambda **p: nn.Conv1d(1, 1, p["kernel"], p["stride"], p["padding"], p["dilation"]),
        conv_output_size,
        combos,
    )


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_maxpool1d_sweep_matches_torch(ceil_mode):
    combos = grid(
        kernel=KERNELS, stride=STRIDES, padding=PADDINGS, dilation=DILATIONS, ceil_mode=[ceil_mode]
    )
    assert_sweep_agrees(lambda **p: nn.MaxPool1d(**{"kernel_size": p.pop("kernel"), **p}),
                        pool_output_size, combos)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_avgpool1d_sweep_matches_torch(ceil_mode):
    combos = grid(kernel=KERNELS, stride=STRIDES, padding=PADDINGS, ceil_mode=[ceil_mode])
    assert_sweep_agrees(lambda **p: nn.AvgPool1d(**{"kernel_size": p.pop("kernel"), **p}),
                        pool_output_size, combos)


def test_conv_transpose1d_sweep_matches_torch():
    combos = grid(kernel=range(1, 6), stride=range(1, 4), padding=range(0, 4),
                  output_padding=range(0, 3), dilation=range(1, 3))
    assert_sweep_agrees(
        lambda **p: nn.ConvTranspose1d(1, 1, p["kernel"], p["stride"], p["padding"],
                                       p["output_padding"], dilation=p["dilation"]),
        conv_transpose_output_size,
        combos,
    )


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dilation", DILATIONS)
def test_same_padding_is_what_torch_does_for_padding_same(kernel, dilation):
    torch.manual_seed(0)
    x = torch.randn(1, 1, 20, dtype=torch.float64)
    same = nn.Conv1d(1, 1, kernel, padding="same", dilation=dilation, dtype=torch.float64)
    left, right = same_padding(kernel, dilation)
    padded = nn.functional.pad(x, (left, right))
    explicit = nn.functional.conv1d(padded, same.weight, same.bias, dilation=dilation)
    assert explicit.shape[-1] == x.shape[-1]
    assert torch.equal(same(x), explicit)


def test_seed_examples():
    assert conv_output_size(224, kernel=11, stride=1) == 224 - 11 + 1
    assert conv_output_size(224, kernel=4, stride=4) == (224 - 4) // 4 + 1


def test_ceil_mode_drops_a_window_that_would_start_in_the_padding():
    # Ceiling alone would give ceil((5 + 2 - 2) / 2) + 1 = 4, but the 4th window starts at
    # padded index 6 = the right padding; torch drops it.
    module = nn.MaxPool1d(2, stride=2, padding=1, ceil_mode=True)
    assert pool_output_size(5, kernel=2, stride=2, padding=1, ceil_mode=True) == torch_length(
        module, 5
    )
    assert torch_length(module, 5) == 3


def test_ceil_mode_accepts_a_window_longer_than_the_input():
    module = nn.MaxPool1d(4, stride=4, padding=1, ceil_mode=True)
    assert torch_length(module, 1) == 1
    assert pool_output_size(1, kernel=4, stride=4, padding=1, ceil_mode=True) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: conv_output_size(3, kernel=7, padding=1),
         r"kernel=7 spans 7 pixels but the padded input has only 5 \(size=3, padding=1\); "
         r"valid: kernel ≤ 5"),
        (lambda: conv_output_size(4, kernel=3, dilation=3),
         r"kernel=3 with dilation=3 spans 7 pixels .* valid: kernel ≤ 2"),
        (lambda: conv_output_size(0, kernel=3), r"size=0 is out of range: size must be ≥ 1"),
        (lambda: conv_output_size(8, kernel=0), r"kernel=0 is out of range: kernel must be ≥ 1"),
        (lambda: conv_output_size(8, kernel=3, stride=0), r"stride=0 .* must be ≥ 1"),
        (lambda: conv_output_size(8, kernel=3, padding=-1), r"padding=-1 .* must be ≥ 0"),
        (lambda: conv_output_size(8, kernel=3, dilation=0), r"dilation=0 .* must be ≥ 1"),
        (lambda: pool_output_size(8, kernel=3, padding=2),
         r"padding=2 is out of range for kernel=3: valid for pooling: padding ≤ kernel // 2 = 1"),
        (lambda: conv_transpose_output_size(3, kernel=3, output_padding=1),
         r"output_padding=1 is out of range: .* ≤ 0"),
        (lambda: conv_transpose_output_size(1, kernel=1, padding=1),
         r"padding=1 crops 2 pixels from an output of 1"),
    ],
)
def test_invalid_input_raises_a_value_error_that_teaches(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("bad", [2.5, "3", None, True])
def test_non_integers_are_a_type_error_naming_the_parameter(bad):
    with pytest.raises(TypeError, match=r"kernel must be an integer, got "):
        conv_output_size(8, kernel=bad)


def test_effective_kernel_matches_what_a_dilated_conv_reads():
    # A dilated conv over an input of exactly effective_kernel pixels gives one output.
    for kernel, dilation in itertools.product(KERNELS, DILATIONS):
        span = effective_kernel(kernel, dilation)
        conv = nn.Conv1d(1, 1, kernel, dilation=dilation)
        assert torch_length(conv, span) == 1
        assert torch_length(conv, span - 1) is None


@pytest.mark.parametrize("params", grid(size=[1, 7, 25], kernel=[1, 2, 3], stride=[1, 2, 3],
                                        padding=[0, 1], ceil_mode=[False, True]))
def test_explanation_ends_with_the_right_size(params):
    try:
        expected = conv_output_size(**params)
    except ValueError as error:
        with pytest.raises(ValueError, match=re.escape(str(error))):
            explain_output_size(**params)
    else:
        assert explain_output_size(**params).endswith(f"= {expected}")


@pytest.mark.parametrize("params", grid(size=[1, 4, 7], kernel=[1, 3, 4], stride=[1, 2, 3],
                                        padding=[0, 1, 3], output_padding=[0, 1, 2],
                                        dilation=[1, 2]))
def test_transposed_explanation_ends_with_torchs_size(params):
    module = nn.ConvTranspose1d(1, 1, params["kernel"], params["stride"], params["padding"],
                                params["output_padding"], dilation=params["dilation"])
    expected = torch_length(module, params["size"])
    if expected is None:
        with pytest.raises(ValueError, match=NAMES_PARAMETER):
            explain_conv_transpose_output_size(**params)
        return
    text = explain_conv_transpose_output_size(**params)
    assert text.endswith(f"= {expected}")
    # the formula and the sum under it each come to that size
    _, formula, terms, _ = text.split(" = ")
    for arithmetic in (formula, terms):
        assert eval(arithmetic.replace("−", "-").replace("·", "*")) == expected, text
