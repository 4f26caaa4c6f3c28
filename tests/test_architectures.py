"""The papers' layer lists against torchvision's models and the Chinese tutorial's script."""

import pytest
import torchvision

from rfviz.architectures import (
    ALEXNET,
    RESNET18,
    RESNET50,
    RESNET50_V15,
    VGG16,
    article_step,
    field_rows,
    field_table,
)
from rfviz.tracing import receptive_field


def test_alexnet_table_matches_the_tutorials_script():
    layer = (227, 1, 1, 0.5)
    expected = []
    for spec in ALEXNET:
        layer = article_step((spec.kernel, spec.stride, spec.padding), layer)
        expected.append([spec.name, *map(str, layer[:3]), str(layer[3] - 0.5)])
    assert field_table(ALEXNET, 227).body == expected


def by_name(layers, size):
    return {layer.name: field for layer, _, field in field_rows(layers, size)}


@pytest.mark.parametrize(("layers", "model", "pairs"), [
    (RESNET18, "resnet18", {"conv2_2b": "layer1", "conv3_2b": "layer2", "conv4_2b": "layer3",
                            "conv5_2b": "layer4"}),
    (RESNET50_V15, "resnet50", {"conv2_3c": "layer1", "conv3_4c": "layer2",
                                "conv4_6c": "layer3", "conv5_3c": "layer4"}),
    (VGG16, "vgg16", {"pool1": "features.4", "pool3": "features.16", "pool5": "features.30"}),
])
def test_layer_lists_agree_with_torchvision(layers, model, pairs):
    fields = by_name(layers, 224)
    net = torchvision.models.get_model(model, weights=None)
    for ours, theirs in pairs.items():
        traced = receptive_field(net, theirs)
        assert (fields[ours].size, fields[ours].stride) == (traced.h.size, traced.h.stride)
        assert fields[ours].padding == traced.h.padding


def test_resnet50_v1_and_v15_differ_where_the_stride_sits():
    v1, v15 = by_name(RESNET50, 224), by_name(RESNET50_V15, 224)
    assert (v1["conv5_3c"].size, v15["conv5_3c"].size) == (483, 427)
    assert v1["conv2_3c"] == v15["conv2_3c"]  # no downsampling block yet


def test_the_blog_posts_cumulative_column_is_padding_plus_one():
    # The Japanese blog post's "RF cumulative" after conv2_x … conv5_x: 18, 46, 134, 214.
    fields = by_name(RESNET50_V15, 224)
    ends = ["conv2_3c", "conv3_4c", "conv4_6c", "conv5_3c"]
    assert [fields[name].padding + 1 for name in ends] == [18, 46, 134, 214]
    assert [fields[name].size for name in ends] == [35, 91, 267, 427]
