"""Tokens: a vision transformer flattens its patch grid into one axis, and attention over all of
it makes the field global. rfviz says so only where torch's gradient agrees, and says
"unknown" where a sequence holds some positions only (windows), a mask or a causal order
decides, or an op would need each token's place."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from rfviz.tracing import RfvizWarning, receptive_field, trace


def pixels_read(model: nn.Module, size: int, pick) -> int:
    """How many input pixels torch's gradient of ``pick(output)`` reaches (float64)."""
    x = torch.randn(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    pick(model.double()(x)).sum().backward()
    return int(torch.count_nonzero(x.grad.abs().sum(1)))


class Attend(nn.Module):
    """Patches (conv 4, stride 4) flattened into tokens, then attention over ``sequence``."""

    def __init__(self, sequence: str = "all", mask: bool = False, causal: bool = False):
        super().__init__()
        self.patches, self.qkv = nn.Conv2d(3, 8, 4, stride=4), nn.Linear(8, 24)
        self.sequence, self.mask, self.causal = sequence, mask, causal
        self.register_buffer("allowed", torch.ones(16, 16, dtype=torch.bool))  # 16 tokens

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)  # N, H·W, C
        if self.sequence == "windows":  # 2 tokens per sequence: rows of the 4 × 4 grid, halved
            tokens = tokens.reshape(-1, 2, 8)
        q, k, v = self.qkv(tokens).reshape(tokens.shape[0], -1, 3, 8).permute(2, 0, 1, 3).unbind(0)
        mask = self.allowed if self.mask else None  # allows all: a mask rfviz cannot read
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal)


def test_attention_over_every_patch_is_global_as_torch_says():
    model = Attend()
    assert receptive_field(model, None, 16).is_global
    assert pixels_read(model, 16, lambda out: out[0, 5]) == 16 * 16  # one token reads all
    table = trace(model, 16)
    assert str(table["qkv"].field) == "4 px, jump 4, padding 0"  # each token: its patch
    assert pixels_read(nn.Sequential(), 16, lambda x: x) == 256  # (the helper counts pixels)


@pytest.mark.parametrize("kind, match, read", [
    ({"sequence": "windows"}, "changes the axis of tokens", 2 * 16),  # 2 patches of 4 × 4
    ({"causal": True}, "causal", 16),  # token 0 reads token 0 only
    ({"mask": True}, "mask", None),
], ids=["windows", "causal", "mask"])
def test_attention_over_some_positions_is_unknown_not_global(kind, match, read):
    model = Attend(**kind)
    with pytest.warns(RfvizWarning, match=match):
        field = receptive_field(model, None, 16)
    assert field.unknown and not field.is_global
    if read is not None:  # the truth: far from global
        assert pixels_read(Attend(**kind), 16, lambda out: out[0, 0]) == read


def test_a_window_along_the_tokens_is_unknown():
    class TokenConv(nn.Module):  # a conv along the flattened axis: which token sits where?
        def __init__(self):
            super().__init__()
            self.patches, self.along = nn.Conv2d(3, 4, 2, stride=2), nn.Conv1d(4, 4, 3)

        def forward(self, x):
            return self.along(self.patches(x).flatten(2))

    with pytest.warns(RfvizWarning, match="on tokens"):
        assert receptive_field(TokenConv(), None, 8).unknown


@pytest.mark.parametrize("dim, known", [(1, True), (2, False)])
def test_unbind_keeps_the_field_unless_it_splits_a_spatial_axis(dim, known):
    class Unbound(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            return self.conv(x).unbind(dim)[0]

    if known:
        assert receptive_field(Unbound(), None, 8).size == (3, 3)
    else:
        with pytest.warns(RfvizWarning, match="split along a spatial axis"):
            assert receptive_field(Unbound(), None, 8).unknown


def test_torchvision_vit_tokens_keep_the_patch_field_until_attention():
    vit = torchvision.models.vit_b_16(weights=None)
    table = trace(vit)  # no warning: every op is followed
    assert not table.problems
    assert str(table["encoder.layers.encoder_layer_0.ln_1"].field) == "16 px, jump 16, padding 0"
    assert table["encoder.layers.encoder_layer_0"].field.is_global


def test_timm_vit_is_global_after_its_first_attention_block_as_torch_says():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2,
                            num_classes=0).eval()
    vit.forward = vit.forward_features
    table = trace(vit, 64)
    assert str(table["patch_embed.norm"].field) == "16 px, jump 16, padding 0"
    assert table["blocks.0"].field.is_global
    assert not any(row.field.unknown for row in table)
    patch = nn.Sequential(vit.patch_embed)  # token 5 (row 1, column 1 of the 4 × 4 grid)
    assert pixels_read(patch, 64, lambda tokens: tokens[0, 5]) == 16 * 16
    first = nn.Sequential(vit.patch_embed, vit.blocks[0])  # tokens without class token: same
    assert pixels_read(first, 64, lambda tokens: tokens[0, 5]) == 64 * 64


class Tokens(nn.Module):
    """Patches (conv 4, stride 4) as tokens (N, L, C), then ``mix(self, tokens)``."""

    def __init__(self, mix, pre=None):
        super().__init__()
        self.patches, self.mix, self.pre = nn.Conv2d(3, 8, 4, stride=4), mix, pre
        self.memory = nn.Parameter(torch.randn(1, 6, 8))
        self.along = nn.Conv1d(8, 8, 3, padding=1)
        self.shuffle = nn.ChannelShuffle(4)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.register_buffer("order", torch.randperm(16))
        self.register_buffer("later", torch.ones(16, 16, dtype=torch.bool).triu(1))

    def forward(self, x):
        x = self.pre(x) if self.pre is not None else x
        return self.mix(self, self.patches(x).flatten(2).transpose(1, 2))


def mean_token(m, t):
    return t.mean(1, keepdim=True)


@pytest.mark.parametrize("mix", [
    lambda m, t: F.scaled_dot_product_attention(t, mean_token(m, t), mean_token(m, t)),
    lambda m, t: m.attention(t, t, t)[0],
], ids=["keys global", "MultiheadAttention"])
def test_attention_to_keys_from_every_patch_is_global(mix):
    assert receptive_field(Tokens(mix), None, 16).is_global
    assert pixels_read(Tokens(mix), 16, lambda out: out[0, 5]) == 256


@pytest.mark.parametrize("mix, match, read", [
    (lambda m, t: F.scaled_dot_product_attention(t, m.memory, m.memory), "not computed", 16),
    (lambda m, t: F.scaled_dot_product_attention(
        t, *[m.along(t.transpose(1, 2)).transpose(1, 2)] * 2), "on tokens", None),
    (lambda m, t: m.attention(t, t, t, attn_mask=m.later)[0], "mask", None),
    (lambda m, t: torch.cat([t.mean(1, keepdim=True), t], 1), "concatenation", 16),
    (lambda m, t: t + t[:, m.order], "indexing the tokens", None),
    (lambda m, t: t + m.shuffle(t), "along dim 1", None),
], ids=["keys are parameters", "keys unknown", "MultiheadAttention masked",
        "class token from the image", "tokens reordered", "channel shuffle on tokens"])
def test_what_rfviz_cannot_be_sure_of_on_tokens_is_unknown(mix, match, read):
    with pytest.warns(RfvizWarning, match=match):
        field = receptive_field(Tokens(mix), None, 16)
    assert field.unknown and not field.is_global
    if read is not None:  # the truth at token 6: its own patch, not the image
        assert pixels_read(Tokens(mix), 16, lambda out: out[0, 6]) == read


@pytest.mark.parametrize("pre", [lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect"),
                                 lambda x: x[:, :, 2:, 2:]], ids=["reflect pad", "crop"])
def test_per_unit_spans_are_not_flattened_into_tokens(pre):
    with pytest.warns(RfvizWarning, match="per-unit spans flattened into tokens"):
        assert receptive_field(Tokens(lambda m, t: t + t, pre), None, 16).unknown


def test_tokens_of_two_grids_do_not_merge():
    class TwoGrids(nn.Module):  # on 16 × 32: a 4 × 4 grid and a 2 × 8 grid, 16 tokens each
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 4, stride=4, dilation=(1, 6))
            self.b = nn.Conv2d(3, 8, 4, stride=4, dilation=(3, 1))

        def forward(self, x):
            return self.a(x).flatten(2) + self.b(x).flatten(2)

    with pytest.warns(RfvizWarning, match="different grids"):
        assert receptive_field(TwoGrids(), None, (16, 32)).unknown


def test_an_unknown_field_flattened_into_tokens_stays_unknown():
    class Flipped(nn.Module):  # a flip has no rule: unknown, then flattened into tokens
        def __init__(self):
            super().__init__()
            self.patches = nn.Conv2d(3, 8, 4, stride=4)

        def forward(self, x):
            return torch.flip(self.patches(x), [2]).flatten(2)

    with pytest.warns(RfvizWarning, match="flip"):
        assert receptive_field(Flipped(), None, 16).unknown
