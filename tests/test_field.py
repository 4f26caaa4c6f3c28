"""ReceptiveField on hand-worked stacks, and against torch's gradients."""

import random

import pytest
from builders import gradient_support, random_layers, torch_stack_1d

from rfviz.field import Layer, ReceptiveField, as_layer, layer_sizes


def test_identity_field_sees_one_pixel():
    field = ReceptiveField()
    assert tuple(field) == (1, 1, 0)
    assert field.span(5) == (5, 5)
    assert field.center(5) == 5


def test_the_tutorials_two_filters():
    # Filter 1: k=3, s=2 -> units see [0 1 2] and [2 3 4] (1-based: [1 2 3], [3 4 5]).
    # Filter 2: k=2, s=1 -> unit 0 sees their union [0 … 4]: 3 + (2-1)*2 = 5 pixels.
    first = ReceptiveField().then(3, stride=2)
    assert (first.span(0), first.span(1)) == ((0, 2), (2, 4))
    second = first.then(2)
    assert second.span(0) == (0, 4)
    assert second.span(1) == (2, 6)  # the tutorial: [3 4 5 6 7] in 1-based
    assert second.stride == 2


def test_recurrence_r_n_with_product_of_strides():
    # r_n = r_{n-1} + (k_n - 1) * s_1 * ... * s_{n-1}, worked by hand for k=3,s=2 x3, then k=3,s=1:
    # 1 + 2*1 = 3; 3 + 2*2 = 7; 7 + 2*4 = 15; 15 + 2*8 = 31.
    field = ReceptiveField.of([(3, 2, 0), (3, 2, 0), (3, 2, 0), (3, 1, 0)])
    assert (field.size, field.stride) == (31, 8)


def test_padding_accumulates_in_units_of_the_jump():
    # resnet stem: conv 7/2 pad 3, then maxpool 3/2 pad 1: padding 3 + 1*2 = 5, jump 4.
    field = ReceptiveField.of([Layer(7, 2, 3), Layer(3, 2, 1, op="maxpool")])
    assert tuple(field) == (11, 4, 5)
    assert field.span(0) == (-5, 5)
    assert field.span(1) == (-1, 9)


def test_dilation_widens_each_tap_spacing():
    # k=3, d=2 reads taps 0, 2, 4: span 5; a second such layer adds (5-1)*1.
    field = ReceptiveField.of([Layer(3, dilation=2), Layer(3, dilation=2)])
    assert field.size == 9


def test_even_field_centre_is_between_pixels():
    field = ReceptiveField.of([(2, 2, 0)])
    assert field.span(3) == (6, 7)
    assert field.center(3) == 6.5


def test_layer_accepts_tuples_and_dicts():
    assert as_layer((3, 2, 1)) == Layer(3, 2, 1)
    assert as_layer({"kernel": 3, "dilation": 2}) == Layer(3, dilation=2)
    with pytest.raises(TypeError, match="a layer must be"):
        as_layer("conv3x3")


def test_layer_rejects_bad_parameters():
    with pytest.raises(ValueError, match="stride=0 is out of range"):
        Layer(3, stride=0)
    with pytest.raises(ValueError, match="op='pool' is not known"):
        Layer(3, op="pool")
    with pytest.raises(ValueError, match="ceil_mode=True is only for pooling"):
        Layer(3, ceil_mode=True)


def test_layer_sizes_raise_at_the_layer_that_gets_too_small():
    assert layer_sizes([(3, 2, 0)] * 2, 7) == [7, 3, 1]
    with pytest.raises(ValueError, match="kernel=3 spans 3 pixels but the padded input has only 1"):
        layer_sizes([(3, 2, 0)] * 3, 7)


# --- torch as the oracle -------------------------------------------------------------


def gapless(layers: list[Layer]) -> bool:
    """No layer below the top skips pixels (stride ≤ kernel, no dilation): fields have no holes."""
    return all(layer.dilation == 1 for layer in layers) and all(
        layer.stride <= layer.kernel for layer in layers[:-1]
    )


def random_stacks(count: int, seed: int = 1, *, holes: bool = False):
    """Random small 1D stacks that fit their input; with `holes`, only ones whose fields skip."""
    rng = random.Random(seed)
    made = 0
    while made < count:
        layers = random_layers(rng, pool_share=0.25, dilation=False, ceil_mode=False)
        size = rng.randint(8, 48)
        try:
            sizes = layer_sizes(layers, size)
        except ValueError:
            continue
        if gapless(layers) == holes:
            continue
        made += 1
        yield layers, size, sizes[-1]


@pytest.mark.parametrize(("layers", "size", "out"), list(random_stacks(40)))
def test_span_is_the_gradient_support_of_a_conv_stack(layers, size, out):
    # Inside the image the span is exact. Where it reaches the border, paths through the
    # padding of an intermediate layer carry no gradient: the support can be smaller.
    stack = torch_stack_1d(layers)
    field = ReceptiveField.of(layers)
    for unit in range(out):
        first, last = field.span(unit)
        support = gradient_support(stack, size, unit)
        if first >= 0 and last < size:
            assert support == set(range(first, last + 1)), (layers, size, unit, field)
        else:
            assert support <= set(range(max(first, 0), min(last, size - 1) + 1))


@pytest.mark.parametrize(("layers", "size", "out"), list(random_stacks(15, holes=True)))
def test_span_bounds_the_gradient_support_of_a_stack_that_skips_pixels(layers, size, out):
    # A stride larger than the kernel skips pixels: the span is the bounding interval.
    stack = torch_stack_1d(layers)
    field = ReceptiveField.of(layers)
    for unit in {0, out // 2, out - 1}:
        first, last = field.span(unit)
        support = gradient_support(stack, size, unit)
        assert support <= set(range(first, last + 1))
        if first >= 0 and last < size:  # not clipped by the image border: the ends are taps
            assert (min(support), max(support)) == (first, last)


def test_dilated_span_bounds_the_gradient_support():
    layers = [Layer(3, 1, 2, dilation=2), Layer(3, 2, 0, dilation=3)]
    stack = torch_stack_1d(layers)
    field = ReceptiveField.of(layers)
    support = gradient_support(stack, 30, 4)
    assert (min(support), max(support)) == field.span(4)
