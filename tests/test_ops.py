"""Conv and pooling parameters read once (rfviz.tracing.ops.Window), against torch."""

import pytest
import torch
from torch import nn

from rfviz.tracing.ops import Window


@pytest.mark.parametrize("module", [
    nn.MaxPool2d(3, padding=1), nn.MaxPool2d((3, 2), stride=(2, 1), dilation=2, ceil_mode=True),
    nn.AvgPool2d(3, 2, 1, ceil_mode=True), nn.AvgPool1d(4), nn.MaxPool3d(2),
    nn.Conv2d(1, 1, 4, padding="same"), nn.Conv2d(1, 1, 3, padding="valid"),
    nn.Conv2d(1, 1, (1, 7), stride=(2, 1), padding=(0, 3), dilation=(1, 2)),
    nn.Conv1d(1, 1, 5, 3, 2), nn.Conv3d(1, 1, 3, padding=1),
])
@pytest.mark.parametrize("size", [9, 16])
@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_output_size_is_what_torch_gives(module, size):
    n = len(Window.from_module(module).kernel)
    x = torch.zeros((1, 1, *(size,) * n))
    assert Window.from_module(module).output_size((size,) * n) == tuple(module(x).shape[2:])


def test_a_subclass_of_a_pool_is_read_like_its_base():
    class Down(nn.AvgPool2d):
        pass

    assert Window.from_module(Down(2)) == Window.from_module(nn.AvgPool2d(2))


def test_a_transposed_convolution_has_no_plain_output_size():
    window = Window.from_module(nn.ConvTranspose2d(1, 1, 3))
    with pytest.raises(ValueError, match="output_padding: use rfviz.conv_transpose_output_size"):
        window.output_size((5, 5))
