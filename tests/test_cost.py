"""Weights and multiply-adds, against hand-computed arithmetic and torch's own FLOP counter."""

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.resnet import BasicBlock, Bottleneck

from rfviz.cost import conv_weights, multiply_adds


@pytest.mark.parametrize(("layer", "x", "expected"), [
    (nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 8, 8), (8 * 6 * 6) * (3 * 3 * 3)),
    (nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.zeros(1, 3, 8, 8), (8 * 4 * 4) * (3 * 3 * 3)),
    (nn.Conv2d(8, 12, 3, padding=1, groups=4), torch.zeros(1, 8, 10, 10),
     (12 * 10 * 10) * (8 // 4 * 3 * 3)),
    (nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.zeros(1, 8, 10, 10), (8 * 10 * 10) * 9),
    (nn.Conv2d(4, 6, (1, 7), padding=(0, 3)), torch.zeros(1, 4, 5, 9), (6 * 5 * 9) * (4 * 7)),
    (nn.Conv1d(2, 5, 3), torch.zeros(1, 2, 10), (5 * 8) * (2 * 3)),
    (nn.Conv3d(2, 3, 2), torch.zeros(1, 2, 4, 4, 4), (3 * 3 * 3 * 3) * (2 * 2 * 2 * 2)),
    (nn.Linear(10, 4), torch.zeros(3, 10), 4 * 10),  # one image of the batch of 3
    (nn.Linear(10, 4, bias=False), torch.zeros(1, 7, 10), 7 * 4 * 10),  # per token
])
def test_one_layer(layer, x, expected):
    assert multiply_adds(layer, x) == expected


def test_the_batch_does_not_change_the_count():
    conv = nn.Conv2d(3, 8, 3)
    one, five = torch.zeros(1, 3, 8, 8), torch.zeros(5, 3, 8, 8)
    assert multiply_adds(conv, five) == multiply_adds(conv, one)


def test_a_layer_that_runs_twice_counts_twice():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    assert multiply_adds(nn.Sequential(conv, nn.ReLU(), conv), torch.zeros(1, 4, 6, 6)) == (
        2 * (4 * 6 * 6) * (4 * 3 * 3))


def test_googlenet_5x5_branch_with_and_without_reduction():
    x = torch.zeros(1, 192, 28, 28)
    direct = nn.Conv2d(192, 32, 5, padding=2, bias=False)
    reduced = nn.Sequential(nn.Conv2d(192, 16, 1), nn.Conv2d(16, 32, 5, padding=2))
    assert multiply_adds(direct, x) == 28 * 28 * 32 * 192 * 25
    assert multiply_adds(reduced, x) == 28 * 28 * (16 * 192 + 32 * 16 * 25)


def resnet18_by_hand(n: int = 224) -> int:
    """conv1, then per stage: the first block (stride 2 from layer2 on, with a 1x1 projection),
    three more 3x3 convolutions, then fc."""
    total = (n // 2) ** 2 * 64 * 3 * 7 * 7
    size, channels_in = n // 4, 64
    for stage, channels in enumerate([64, 128, 256, 512]):
        if stage:
            size //= 2
            total += size**2 * channels * channels_in  # downsample.0: 1x1, stride 2
        total += size**2 * channels * channels_in * 9 + 3 * size**2 * channels * channels * 9
        channels_in = channels
    return total + 1000 * 512


def test_resnet18_at_224_by_hand_and_by_torchs_flop_counter():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    image = torch.zeros(1, 3, 224, 224)
    counted = multiply_adds(model, image)
    assert counted == resnet18_by_hand(224)
    assert f"{counted / 1e9:.2f}" == "1.81"
    with FlopCounterMode(display=False) as flops, torch.no_grad():
        model.eval()(image)
    assert counted == flops.get_total_flops() // 2  # torch counts a multiply-add as 2 FLOPs


def test_the_model_is_left_as_found():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(2, 3, 6, 6))  # materialise the lazy layer
    model.train()
    model[1].eval()  # mixed flags: each is restored, not just the top one
    multiply_adds(model, torch.zeros(1, 3, 6, 6))
    assert [m.training for m in model] == [True, False, True, True] and model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_and_flags_are_restored_when_the_forward_pass_fails():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(5, 4, 3))  # 4 channels into 5
    with pytest.raises(RuntimeError):
        multiply_adds(model, torch.zeros(1, 3, 8, 8))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_an_unbatched_input_is_refused_not_miscounted():
    with pytest.raises(ValueError, match=r"x has no batch axis at Conv2d .* x.unsqueeze\(0\)"):
        multiply_adds(nn.Conv2d(3, 8, 3), torch.zeros(3, 8, 8))


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)  # calls no Linear

    def forward(self, x):
        return self.attention(x, x, x)[0]


def test_layers_with_weights_it_cannot_see_are_named():
    with pytest.warns(UserWarning, match="does not count MultiheadAttention"):
        multiply_adds(SelfAttention(), torch.zeros(1, 4, 8))


def test_transposed_convolutions_are_named_as_not_counted():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 1, 3))
    with pytest.warns(UserWarning, match="does not count ConvTranspose2d"):
        assert multiply_adds(model, torch.zeros(1, 1, 5, 5)) == (2 * 3 * 3) * 9


@pytest.mark.parametrize(("block", "expected"), [
    (BasicBlock(64, 64), 2 * 64 * 64 * 3 * 3),
    (Bottleneck(256, 64), 256 * 64 + 64 * 64 * 3 * 3 + 64 * 256),
    (nn.Conv2d(8, 12, 3, groups=4, bias=True), 12 * 8 // 4 * 3 * 3),
    (nn.Sequential(nn.Conv1d(2, 3, 5), nn.Linear(4, 4)), 3 * 2 * 5),  # Linear is no conv
    (nn.ReLU(), 0),
])
def test_conv_weights(block, expected):
    assert conv_weights(block) == expected


def test_conv_weights_is_torchs_parameter_count_without_biases_and_batchnorm():
    model = torchvision.models.resnet18(weights=None)
    conv = [p.numel() for n, p in model.named_parameters()
            if p.dim() == 4 and n.endswith("weight")]
    assert conv_weights(model) == sum(conv)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: conv_weights("resnet18"), r"block=str is not a torch module; valid: an nn.Module"),
    (lambda: multiply_adds(None, torch.zeros(1, 3)), r"model=NoneType is not a torch module"),
    (lambda: multiply_adds(nn.Linear(3, 1), [1, 2, 3]), r"x=list is not a batch; valid: a tensor"),
    (lambda: multiply_adds(nn.Linear(3, 1), torch.zeros(3)),
     r"x=\(3,\) is not a batch; valid: a tensor \(N, C, \.\.\.\) with N ≥ 1"),
    (lambda: multiply_adds(nn.Linear(3, 1), torch.zeros(0, 3)), r"x=\(0, 3\) is not a batch"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
