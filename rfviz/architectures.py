"""The papers' networks as plain data: the layers along the longest path, one axis.

Each is a tuple of :class:`~rfviz.field.Layer` with the names the papers use. Only what
moves the field is listed (convolutions and pooling; activations and normalisation do not).
For ResNets that is the main path of every block: the shortcut's field is contained in it.

Two ResNet-50s: ``RESNET50`` as in the paper (He et al. 2015, "v1": a block that downsamples
has its stride on the first 1x1 convolution) and ``RESNET50_V15`` as torchvision builds it
(stride on the 3x3). The field sizes differ, 483 vs 427 after the last block: a published
number belongs to one of the two.

>>> field_table(ALEXNET, 227).body[0]          # conv1: (227 - 11) // 4 + 1 = 55 outputs
['conv1', '55', '4', '11', '5.0']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .field import Layer, layer_fields, layer_sizes
from .table import Table

__all__ = ["ALEXNET", "RESNET18", "RESNET50", "RESNET50_V15", "VGG16", "article_step",
           "field_rows", "field_table"]

# The Chinese tutorial's list (Krizhevsky et al. 2012, as in the Caffe model), on a 227-pixel
# input; the fully connected layers as the equivalent convolutions.
ALEXNET = (
    Layer(11, 4, 0, name="conv1"), Layer(3, 2, 0, op="maxpool", name="pool1"),
    Layer(5, 1, 2, name="conv2"), Layer(3, 2, 0, op="maxpool", name="pool2"),
    Layer(3, 1, 1, name="conv3"), Layer(3, 1, 1, name="conv4"), Layer(3, 1, 1, name="conv5"),
    Layer(3, 2, 0, op="maxpool", name="pool5"),
    Layer(6, 1, 0, name="fc6-conv"), Layer(1, 1, 0, name="fc7-conv"),
)


def _vgg16() -> tuple[Layer, ...]:
    layers = []
    for stage, convs in enumerate([2, 2, 3, 3, 3], start=1):
        layers += [Layer(3, 1, 1, name=f"conv{stage}_{i}") for i in range(1, convs + 1)]
        layers.append(Layer(2, 2, 0, op="maxpool", name=f"pool{stage}"))
    return tuple(layers)


VGG16 = _vgg16()  # Simonyan & Zisserman 2014, configuration D

STEM = (Layer(7, 2, 3, name="conv1"), Layer(3, 2, 1, op="maxpool", name="pool1"))


def _basic_stages(blocks: Sequence[int]) -> tuple[Layer, ...]:
    layers = list(STEM)
    for stage, count in enumerate(blocks, start=2):
        for block in range(1, count + 1):
            stride = 2 if stage > 2 and block == 1 else 1
            layers += [Layer(3, stride, 1, name=f"conv{stage}_{block}a"),
                       Layer(3, 1, 1, name=f"conv{stage}_{block}b")]
    return tuple(layers)


def _bottleneck_stages(blocks: Sequence[int], stride_on_3x3: bool) -> tuple[Layer, ...]:
    layers = list(STEM)
    for stage, count in enumerate(blocks, start=2):
        for block in range(1, count + 1):
            stride = 2 if stage > 2 and block == 1 else 1
            first, middle = (1, stride) if stride_on_3x3 else (stride, 1)
            layers += [Layer(1, first, 0, name=f"conv{stage}_{block}a"),
                       Layer(3, middle, 1, name=f"conv{stage}_{block}b"),
                       Layer(1, 1, 0, name=f"conv{stage}_{block}c")]
    return tuple(layers)


RESNET18 = _basic_stages([2, 2, 2, 2])
RESNET50 = _bottleneck_stages([3, 4, 6, 3], stride_on_3x3=False)  # the paper, v1
RESNET50_V15 = _bottleneck_stages([3, 4, 6, 3], stride_on_3x3=True)  # torchvision


def field_rows(layers: Iterable[Layer], size: int):
    """Yield ``(layer, n, field)`` after each layer: output length and receptive field."""
    layers = list(layers)
    yield from zip(layers, layer_sizes(layers, size)[1:], layer_fields(layers)[1:], strict=True)


def field_table(layers: Iterable[Layer], size: int) -> Table:
    """The Chinese tutorial's table: output length n, jump, field size rf, and start.

    ``start`` is the centre of unit 0's field in 0-based input pixels (the tutorial's script
    starts at 0.5 instead, the centre of pixel 1 counted from the image's left edge: add 0.5).
    """
    rows = [[layer.name, n, field.stride, field.size, field.center(0)]
            for layer, n, field in field_rows(layers, size)]
    return Table(["layer", "n", "jump", "rf", "start"], rows)


def article_step(conv: tuple[int, int, int], layer_in: tuple) -> tuple:
    """One step of the receptive-field script in the Chinese tutorial this suite quotes
    (``computeReceptiveField.py``, Python 2), ported to Python 3 unchanged in substance.

    ``conv`` is ``(kernel, stride, padding)``, ``layer_in`` is ``(n, jump, rf, start)`` with
    ``start`` the centre of unit 0's field counted from the image's left *edge* (pixel 0's
    centre is 0.5). The script does not use ``padding`` for ``start``: it derives the padding
    actually used from the output size and splits it as TensorFlow's "SAME" does, the extra
    pixel on the right. Torch pads ``padding`` on both sides, so where that differs the
    script's centres are off:

    >>> layer = article_step((7, 2, 3), (224, 1, 1, 0.5))    # ResNet's conv1: 111*2 - 224 + 7
    >>> layer                                                # = 5 used: 2 left (torch: 3)
    (112, 2, 7, 1.5)
    >>> article_step((3, 2, 1), layer)                       # its max pool: 1 used, 0 left
    (56, 4, 11, 3.5)
    """
    n_in, j_in, r_in, start_in = layer_in
    k, s, p = conv
    n_out = math.floor((n_in - k + 2 * p) / s) + 1
    actual_p = (n_out - 1) * s - n_in + k
    p_left = math.floor(actual_p / 2)
    return n_out, j_in * s, r_in + (k - 1) * j_in, start_in + ((k - 1) / 2 - p_left) * j_in
