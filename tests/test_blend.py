"""Blended tiles: MONAI's own sliding_window_inference(mode="gaussian") is the oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rfviz.blend import blended_forward, gaussian_weights, window_starts
from rfviz.roundoff import ROUND_OFF, relative_error
from rfviz.unet import UNet

monai = pytest.importorskip("monai")
from monai.data.utils import compute_importance_map, dense_patch_slices  # noqa: E402
from monai.inferers import sliding_window_inference  # noqa: E402
from monai.inferers.utils import _get_scan_interval  # noqa: E402


@pytest.mark.parametrize(("length", "tile", "overlap"), [
    (100, 40, 0.25), (96, 32, 0.5), (64, 64, 0.25), (65, 64, 0.25), (10, 3, 0.0),
    (50, 7, 0.9), (33, 4, 0.99), (128, 96, 0.25)])
def test_window_starts_are_monais(length, tile, overlap):
    interval = _get_scan_interval((length,), (tile,), 1, (overlap,))
    monais = [s[0].start for s in dense_patch_slices((length,), (tile,), interval)]
    assert window_starts(length, tile, overlap) == monais


@pytest.mark.parametrize("tile", [(5, 5), (96, 96), (17, 40), (1, 8)])
@pytest.mark.parametrize("sigma_scale", [0.125, 0.3])
def test_weights_are_monais(tile, sigma_scale):
    expected = compute_importance_map(tile, mode="gaussian", sigma_scale=sigma_scale,
                                      dtype=torch.float32)
    assert torch.equal(gaussian_weights(tile, sigma_scale), expected)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet(in_channels=2, classes=3, width=4, depth=2).double().eval()


CASES = [  # image (N, C, H, W), tile, overlap
    ((1, 2, 64, 64), (32, 32), 0.25),
    ((2, 2, 80, 52), (48, 24), 0.5),  # the last window of a row moved back to the edge
    ((1, 2, 40, 72), (40, 32), 0.25),  # one window along the height
    ((1, 2, 48, 48), (16, 16), 0.0),
    ((1, 2, 36, 44), (12, 20), 0.8),
]


@pytest.mark.parametrize(("shape", "tile", "overlap"), CASES)
def test_equal_to_monais_sliding_window_inference(unet, shape, tile, overlap):
    image = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        ours = blended_forward(unet, image, tile, overlap)
        monais = sliding_window_inference(image, tile, 1, unet, overlap, mode="gaussian",
                                          sigma_scale=0.125)
    assert ours.shape == monais.shape == (shape[0], 3, *shape[2:])
    assert relative_error(ours, monais) <= ROUND_OFF


def test_a_square_tile_as_one_int():
    image = torch.randn(1, 1, 30, 30, dtype=torch.float64)
    net = nn.Conv2d(1, 1, 3, padding=1).double()
    with torch.no_grad():
        assert torch.equal(blended_forward(net, image, 12), blended_forward(net, image, (12, 12)))


def test_a_pixelwise_fn_is_reproduced_exactly():
    # the weights of every pixel sum to what it is divided by: blending alone changes nothing
    image = torch.randn(1, 3, 50, 38, dtype=torch.float64)
    assert relative_error(blended_forward(torch.tanh, image, (16, 24), 0.5),
                          torch.tanh(image)) <= ROUND_OFF


def test_a_unets_blended_result_is_not_the_whole_images(unet):
    # windows narrower than the field: pixels near a window's edge miss context
    image = torch.randn(1, 2, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        error = relative_error(blended_forward(unet, image, (32, 32)), unet(image))
    assert error >= 1e6 * ROUND_OFF


IMAGE = torch.zeros(1, 1, 20, 16)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"image": torch.zeros(20, 16)}, r"image must be a 4D tensor \(N, C, H, W\), got \(20, 16\)"),
    ({"image": [[0.0]]}, r"image must be a 4D tensor \(N, C, H, W\), got list"),
    ({"tile": (24, 8)}, r"tile=\(24, 8\) must be two integers from 1 to the image's height "
                        r"and width \(20, 16\); valid: e.g. \(20, 16\)"),
    ({"tile": (0, 8)}, r"tile=\(0, 8\) must be two integers"),
    ({"tile": (8.0, 8)}, r"tile=\(8.0, 8\) must be two integers"),
    ({"tile": (8, 8, 8)}, r"tile=\(8, 8, 8\) must be two integers"),
    ({"overlap": 1.0}, r"overlap=1.0 is out of range; valid: 0 ≤ overlap < 1"),
    ({"overlap": -0.1}, r"overlap=-0.1 is out of range"),
    ({"sigma_scale": 0}, r"sigma_scale=0 must be > 0"),
    ({"fn": nn.Conv2d(1, 1, 3)}, r"fn must keep the height and width \(as a U-Net does\): "
                                 r"a \(8, 8\) window gave \(6, 6\)"),
])
def test_bad_input_names_the_parameter(kwargs, message):
    arguments = {"fn": torch.tanh, "image": IMAGE, "tile": (8, 8), **kwargs}
    with pytest.raises(ValueError, match=message):
        blended_forward(**arguments)
