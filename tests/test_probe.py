"""The analytic fields of rfviz.tracing against fields measured from torch's gradients."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from rfviz.probe import effective_field, measured_field
from rfviz.tracing import receptive_field

# (model, its kwargs, layer, input size chosen so that the field fits around a central unit)
CASES = [
    ("resnet18", {}, "layer3", 288),
    ("resnet50", {}, "layer3", 320),
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
