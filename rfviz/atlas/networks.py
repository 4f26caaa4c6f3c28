"""The atlas's networks: which (:func:`catalogue`, :func:`find`), and how each is built and
traced (:func:`build`, :func:`traced`).

Every network is built with ``weights=None`` (timm: ``pretrained=False``) on PyTorch's *meta*
device: shapes without numbers, so nothing is downloaded and nothing initialised. What the atlas
traces is the model itself, a detector's backbone body (:func:`part`) or a timm model's trunk.

>>> find("timm/resnet50d")
Network('timm/resnet50d', timm / resnet)
>>> [n.name for n in catalogue()][:3]
['alexnet', 'convnext_base', 'convnext_large']
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from ..layer_table import LayerTable, RfvizWarning
from ..tracing import trace
from .same import freeze_same, pad_for

__all__ = ["FRAMES", "SIZE", "TIMM", "V1", "Network", "build", "catalogue", "find", "part",
           "part_of", "sizes", "traced", "versions", "whole"]

SIZE = 224
V1 = "variant/resnet50_v1"  # torchvision's resnet50, the stride on the first 1×1 (computed)
FRAMES = 16  # video clips of 16 frames (T × H × W)

# timm's convolutional families at default configurations (a few depths or widths each), and
# two transformers to show where a field becomes unknown or global.
TIMM = (
    "resnet18", "resnet50", "resnet101", "resnet50d", "resnext50_32x4d", "seresnet50",
    "resnetv2_50", "resnetv2_50x1_bit",
    "efficientnet_b0", "efficientnet_b3", "tf_efficientnet_b0", "efficientnetv2_rw_s",
    "mobilenetv2_100", "mnasnet_100",
    "mobilenetv3_large_100", "mobilenetv3_small_100", "tf_mobilenetv3_large_100",
    "convnext_tiny", "convnext_base", "convnextv2_tiny",
    "regnetx_002", "regnetx_032", "regnety_008", "regnety_032",
    "densenet121", "densenet169",
    "inception_v3", "inception_v4", "inception_resnet_v2",
    "vgg11", "vgg16", "vgg19_bn",
    "hrnet_w18_small", "hrnet_w32",
    "dla34", "dpn68", "cspdarknet53", "cspresnet50", "darknet53", "res2net50_26w_4s",
    "resnest50d", "ghostnet_100", "rexnet_100", "legacy_xception", "xception41",
    "ese_vovnet19b_dw", "repvgg_a2", "gernet_s", "nf_resnet50", "tresnet_m", "selecsls42b",
    "vit_base_patch16_224", "swin_tiny_patch4_window7_224",
)


@dataclass(frozen=True)
class Network:
    """One network of the atlas and how to build it (``weights=None``).

    >>> Network("resnet50", "torchvision classification", "resnet")
    Network('resnet50', torchvision classification / resnet)
    """

    name: str  # as the atlas lists it: "resnet50", "timm/resnet50"
    group: str  # "torchvision classification", …, "timm"
    family: str  # the module that defines it: "resnet", "efficientnet"

    def __repr__(self) -> str:
        return f"Network({self.name!r}, {self.group} / {self.family})"

    @property
    def spatial(self) -> int:
        return 3 if self.group == "torchvision video" else 2


@functools.cache
def catalogue() -> tuple[Network, ...]:
    """Every network of the atlas, in the order of the index."""
    import timm  # only the atlas needs it

    return (*_torchvision_networks(), *(
        Network(f"timm/{name}", "timm",
                timm.models.model_entrypoint(name).__module__.rsplit(".", 1)[-1])
        for name in TIMM))


@functools.cache
def _torchvision_networks() -> tuple[Network, ...]:
    """The atlas's torchvision networks and variants: found without importing timm, which
    the lessons (and Binder) do not have."""
    models = torchvision.models
    networks = []
    for group, module in (("torchvision classification", models),
                          ("torchvision segmentation", models.segmentation),
                          ("torchvision video", models.video),
                          ("torchvision detection", models.detection)):
        for name in models.list_models(module=module):
            family = models.get_model_builder(name).__module__.rsplit(".", 1)[-1]
            networks.append(Network(name, group, family))
    networks.append(Network(V1, "variant", "resnet"))
    return tuple(networks)


def versions() -> dict:
    """The versions of the libraries the networks come from (the atlas's files name them)."""
    import timm

    return {"torch": torch.__version__.split("+")[0], "torchvision":
            torchvision.__version__.split("+")[0], "timm": timm.__version__}


# --- building on the meta device -------------------------------------------------------------


@functools.cache
def _initialisers() -> frozenset:
    """``nn.init``'s functions and the in-place tensor methods initialisers call."""
    inits = {f for n, f in vars(nn.init).items() if n.endswith("_") and callable(f)}
    methods = {getattr(torch.Tensor, n) for n in (
        "normal_", "uniform_", "fill_", "zero_", "erfinv_", "mul_", "add_", "clamp_", "copy_",
        "sub_", "div_", "exponential_", "random_", "bernoulli_")}
    return frozenset(inits | methods)


class _NoInit(TorchFunctionMode):
    """Skips weight initialisation on meta tensors (there are no numbers to fill): on the meta
    device each ``normal_`` goes through torch's reference implementation, and initialising
    costs more than building (resnet50: ~55 ms to build, ~25 ms without).

    ``device``: tensors made without a device go there, as ``with torch.device(device)`` does
    (torch's own list of tensor constructors). One mode for both, since every torch call of a
    build passes through each mode on the stack: two cost a fifth more of the build."""

    def __init__(self, device: torch.device | None = None) -> None:
        super().__init__()
        self.device = device

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _initialisers():
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        elif (self.device is not None and func in _device_constructors()
              and func not in _VALUE_CONSTRUCTORS and kwargs.get("device") is None):
            kwargs["device"] = self.device
        return func(*args, **kwargs)


# Tensors made from numbers a builder may read back while building (torchvision's regnets
# take ``torch.arange(depth).tolist()`` for their widths): left on the CPU, where they have
# numbers; a parameter or buffer made from one moves to meta once the model is built.
_VALUE_CONSTRUCTORS = frozenset({
    torch.arange, torch.range, torch.linspace, torch.logspace, torch.tensor, torch.as_tensor,
    torch.asarray, torch.scalar_tensor, torch.tril_indices, torch.triu_indices})


@contextlib.contextmanager
def _parameters_on_meta():
    """Every parameter and buffer moves to the meta device as it is registered: where a
    builder cannot build on meta at all, and initialises its weights on the CPU."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module, name, param):
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module, name, tensor, persistent=True):
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter
        nn.Module.register_buffer = register_buffer


@contextlib.contextmanager
def _initialisers_skipped():
    """``nn.init``'s functions give a meta tensor back at once while a network is built:
    ``zeros_``, ``kaiming_normal_``, … would open a ``no_grad`` block and fill it, every call
    passing through :class:`_NoInit` (builds ~15% faster, measured side by side). Other
    initialisers (timm's ``trunc_normal_``) reach the tensor methods :class:`_NoInit` skips."""
    originals = {name: f for name, f in vars(nn.init).items()
                 if name.endswith("_") and not name.startswith("_") and callable(f)}

    def skipping(initialise):
        @functools.wraps(initialise)
        def on_meta(tensor, *args, **kwargs):
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
            return initialise(tensor, *args, **kwargs)
        return on_meta

    for name, initialise in originals.items():
        setattr(nn.init, name, skipping(initialise))
    try:
        yield
    finally:
        for name, initialise in originals.items():
            setattr(nn.init, name, initialise)


def _on_meta(make: Callable[[], nn.Module]) -> nn.Module:
    """``make()`` on the meta device, without initialising; where a builder refuses the meta
    device (none of the atlas's networks now), built with tensors on the CPU that move to meta
    as they are registered."""
    try:
        with _initialisers_skipped(), _NoInit(torch.device("meta")):
            model = make()
        return _moved_to_meta(model)  # outside the mode: its reads of tensors pass no mode
    except (NotImplementedError, RuntimeError) as error:
        if "meta" not in str(error):
            raise
    with _initialisers_skipped(), _parameters_on_meta(), _NoInit():
        return make()


def _moved_to_meta(model: nn.Module) -> nn.Module:
    """Parameters and buffers made from a tensor left on the CPU (:data:`_VALUE_CONSTRUCTORS`)
    moved to meta once the model is built, in one pass (as fast as moving each as it is
    registered, measured, and no class of torch is patched meanwhile). A parameter shared by
    two modules stays one parameter."""
    moved: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for name, tensor in tensors.items():
                if tensor is None or tensor.is_meta:
                    continue
                if id(tensor) not in moved:
                    meta = tensor.to("meta")
                    if isinstance(tensor, nn.Parameter):
                        meta = nn.Parameter(meta, requires_grad=tensor.requires_grad)
                    moved[id(tensor)] = meta
                tensors[name] = moved[id(tensor)]
    return model


def build(network: Network | str, device: str = "meta") -> nn.Module:
    """The module the atlas traces, in eval mode (inference graph: no auxiliary heads):
    the model itself, a detection model's backbone body (:func:`part`), or a timm model's
    trunk (``forward_features``). ``device="cpu"`` builds it with (random) weights, to measure.

    >>> build("fasterrcnn_resnet50_fpn").__class__.__name__
    'IntermediateLayerGetter'
    """
    network = find(network) if isinstance(network, str) else network
    return part_of(network, whole(network, device))


def whole(network: Network, device: str = "meta") -> nn.Module:
    """The whole model (a detector with its heads, a timm model with ``forward`` its trunk's),
    in eval mode: what :func:`build` takes its part of."""
    if network.name == V1:
        return _stride_on_first_1x1(whole(find("resnet50"), device))
    if network.group == "timm":
        import timm

        def make():
            return timm.create_model(network.name.removeprefix("timm/"), pretrained=False)
    else:
        extra = {} if network.group.endswith(("classification", "video")) else {
            "weights_backbone": None}

        def make():
            return torchvision.models.get_model(network.name, weights=None, **extra)

    with warnings.catch_warnings():  # torchvision: "the default weight initialization of
        warnings.simplefilter("ignore", FutureWarning)  # inception_v3 will be changed"
        model = (_on_meta(make) if device == "meta" else make()).eval()
    if network.group == "timm":
        freeze_same(model)
        model.__class__ = _trunk_class(type(model))
    return model


def part_of(network: Network, model: nn.Module) -> nn.Module:
    """The module the atlas traces, taken from the whole ``model`` (see :func:`part`)."""
    path = part(network)
    return model.get_submodule(path) if path else model


def part(network: Network | str) -> str:
    """Where in the model the traced module sits: ``"backbone.body"`` for the detectors with a
    feature pyramid (their backbone body is the classification trunk the FPN taps),
    ``"backbone"`` for SSD (VGG or MobileNet features and the extra layers), "" otherwise."""
    network = find(network) if isinstance(network, str) else network
    if network.group != "torchvision detection":
        return ""
    return "backbone" if network.name.startswith("ssd") else "backbone.body"


def _stride_on_first_1x1(model: nn.Module) -> nn.Module:
    """torchvision's resnet50 with each downsampling block's stride moved from its 3×3 to its
    first 1×1: ResNet v1 as published (and as Caffe ran it), torchvision's "v1.5" before."""
    for layer in (model.layer2, model.layer3, model.layer4):
        layer[0].conv1.stride, layer[0].conv2.stride = layer[0].conv2.stride, (1, 1)
    return model


@functools.cache
def _trunk_class(kind: type) -> type:
    """A subclass whose ``forward`` is ``forward_features``: the trunk, without the head."""
    return type(kind.__name__, (kind,), {"forward": kind.forward_features,
                                         "__module__": kind.__module__})


@functools.cache
def find(name: str) -> Network:
    """The atlas's network of that name.

    >>> find("timm/resnet50d")
    Network('timm/resnet50d', timm / resnet)
    """
    networks = catalogue() if name.startswith("timm/") else _torchvision_networks()
    found = next((n for n in networks if n.name == name), None)
    if found is None:
        raise ValueError(f"network {name!r} is not in the atlas; valid: a torchvision model "
                         "name (e.g. 'resnet50') or 'timm/<name>' for one of "
                         f"{', '.join(TIMM[:4])}, …")
    return found


# --- sizes and traces ------------------------------------------------------------------------


def sizes(network: Network, model: nn.Module) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The input at 224 and the network's default input: the size its published weights use
    (timm's ``pretrained_cfg``, torchvision's weights' crop), the short side a detector
    resizes images to, or the one size a ViT is built for."""
    square = (SIZE, SIZE)
    if network.group == "torchvision video":
        crop = _weights_transform(network.name).crop_size
        return (FRAMES, *square), (FRAMES, *crop)
    if network.group == "timm":
        return square, tuple(model.pretrained_cfg["input_size"][1:])
    if network.group == "torchvision detection":
        size = model.transform.min_size[-1]  # what it resizes to in eval mode
        return square, (size, size)
    if network.group == "variant":
        return square, square
    if hasattr(model, "image_size"):  # vit_*: built for one size
        return square, (model.image_size,) * 2
    transform = _weights_transform(network.name)
    size = getattr(transform, "crop_size", None) or transform.resize_size
    return square, (size[0], size[-1])


def _weights_transform(name: str):
    return torchvision.models.get_model_weights(name).DEFAULT.transforms()


def traced(model: nn.Module, input_size) -> LayerTable:
    """:func:`rfviz.trace`, its warnings kept for the rows; an error that is not rfviz's
    ValueError (a bug on the way) becomes one, so that the row says so and the atlas goes on."""
    pad_for(model, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RfvizWarning)
        try:
            return trace(model, input_size)
        except ValueError:
            raise
        except Exception as error:
            raise ValueError(f"rfviz.trace raised {type(error).__name__}: {error}") from None

