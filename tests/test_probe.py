"""The analytic fields of rfviz.tracing against fields measured from torch's gradients."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from rfviz.probe import effective_field, measured_field, truncate
from rfviz.tracing import receptive_field

# (model, its kwargs, layer, input size chosen so that the field fits around a central unit)
CASES = [
    ("resnet18", {}, "layer3", 288),
    ("resnet50", {}, "layer3", 320),
    ("resnet50", {}, "layer4", 480),  # lesson 04 states 427 px but cannot afford measuring it
    ("vgg16", {}, "features.16", 160),
    ("alexnet", {}, "features", 320),
    ("mobilenet_v2", {}, "features.7", 256),
    ("densenet121", {}, "features.denseblock2", 320),
    ("resnet50", {"replace_stride_with_dilation": [False, True, True]}, "layer3.1", 256),
]


@pytest.mark.parametrize(("name", "kwargs", "layer", "size"), CASES,
                         ids=[f"{c[0]}{'-dilated' if c[1] else ''}-{c[2]}" for c in CASES])
def test_analytic_field_equals_the_measured_one(name, kwargs, layer, size):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    measured = measured_field(model, layer, (size, size))
    assert not any(measured.clipped), f"{size} px is too small to measure {name} {layer}"
    assert measured.field == receptive_field(model, layer, (size, size))


def test_a_clipped_measurement_is_flagged_not_trusted():
    model = nn.Sequential(nn.Conv2d(1, 2, 9, padding=4), nn.Conv2d(2, 2, 9, padding=4))
    measured = measured_field(model, input_size=(12, 12))  # field 17 > 12
    assert measured.clipped == (True, True)
    assert measured.field is None


def test_effective_field_of_one_conv_is_its_weights():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1.0, 10.0).reshape(1, 1, 3, 3))
    erf = effective_field(conv, None, torch.ones(1, 7, 7), unit=(3, 3))
    expected = np.zeros((7, 7))
    expected[2:5, 2:5] = np.arange(1.0, 10.0).reshape(3, 3)
    np.testing.assert_allclose(erf, expected / expected.sum())


def test_effective_field_of_a_uniform_stack_is_a_binomial_bump():
    # n uniform 1D-separable 3x3 convs: the gradient is the n-fold convolution of [1 1 1].
    n = 3
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(n)])
    for layer in stack:
        nn.init.constant_(layer.weight, 1.0)
    erf = effective_field(stack, None, torch.ones(1, 15, 15), unit=(7, 7))
    kernel = np.array([1.0])
    for _ in range(n):
        kernel = np.convolve(kernel, [1.0, 1.0, 1.0])
    expected = np.zeros((15, 15))
    expected[4:11, 4:11] = np.outer(kernel, kernel)
    np.testing.assert_allclose(erf, expected / expected.sum())


def test_measuring_leaves_the_model_as_found():
    model = torchvision.models.resnet18(weights=None).train()
    before = {name: p.clone() for name, p in model.state_dict().items()}
    names = [name for name, _ in model.named_modules()]
    measured_field(model, "layer2", (160, 160))
    effective_field(model, "layer1", (64, 64))
    assert model.training
    assert [name for name, _ in model.named_modules()] == names
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_the_float64_copy_holds_only_the_layers_up_to_the_cut():
    model = torchvision.models.resnet50(weights=None)
    cut, _, _ = truncate(model, "layer3", (224, 224))
    used = [model.conv1, model.bn1, model.layer1, model.layer2, model.layer3]
    assert sum(p.numel() for p in cut.parameters()) == sum(
        p.numel() for m in used for p in m.parameters())
    assert all(p.dtype == torch.float64 for p in cut.parameters())
    assert not any(p is q for p in cut.parameters() for q in model.parameters())


def test_a_model_without_weights_is_measured_nowhere_but_traced_anywhere():
    with torch.device("meta"):
        model = torchvision.models.resnet18(weights=None)
    assert receptive_field(model, "layer3") == receptive_field(
        torchvision.models.resnet18(weights=None), "layer3")
    with pytest.raises(ValueError, match="meta device"):
        measured_field(model, "layer3", (288, 288))


def test_measuring_one_sample_at_a_time_sees_the_union_over_samples():
    # Ones everywhere, then a ReLU: where an input's 3x3 sum is negative the path is dead, so
    # one random input can leave part of the field without gradient; several together do not.
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.ReLU(),
                          nn.Conv2d(1, 1, 3, padding=1, bias=False))
    for conv in (model[0], model[2]):
        nn.init.ones_(conv.weight)
    one = measured_field(model, input_size=(11, 11), samples=1).spans
    several = measured_field(model, input_size=(11, 11), samples=8).spans
    analytic = receptive_field(model, input_size=(11, 11))
    assert several == tuple(f.span(5) for f in analytic.axes) == ((3, 7), (3, 7))
    assert one != several  # seed 0's single input leaves column 3 dark
    assert all(s[0] <= o[0] and o[1] <= s[1] for o, s in zip(one, several, strict=True))
