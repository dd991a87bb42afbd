"""Network registry: every model name the distillation and evaluation scripts accept.

``get_network(name, channel, num_classes, im_size)`` builds a fresh, CPU-resident network (the caller
moves it to a device); ``list_networks()`` lists the canonical names; ``get_eval_pool(mode, model)``
lists the networks an ``--eval_mode`` letter evaluates on. Every network is an :class:`EmbedNet`:
``embed(x)`` gives the (B, F) features and ``forward(x)`` the (B, num_classes) logits. The image networks
end in a ``classifier`` (an ``nn.Linear``) that reads ``embed(x)``; the video network :class:`ConvNet3D`
(clips (B, C, T, H, W)) has no ``classifier``: its head is a 1x1x1 conv followed by a max over time. The voxel
network :class:`Conv3DNet` (occupancy grids (B, 1, D, H, W)) is a 3-D ConvNet with a ``classifier``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .errors import UserError, choice_error

# ---- building blocks, parametrised by the number of spatial dims (2: images; 3: video, voxels) ----

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOLS = {
    "avgpooling": {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d},
    "maxpooling": {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d},
}
_ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "leakyrelu": lambda: nn.LeakyReLU(0.01),
}
ACTIVATIONS = tuple(_ACTS)
NORMS = ("none", "batchnorm", "layernorm", "instancenorm", "groupnorm")
POOLINGS = ("none", *_POOLS)


def make_act(kind: str) -> nn.Module:
    if kind not in _ACTS:
        raise choice_error("activation", kind, ACTIVATIONS)
    return _ACTS[kind]()


def make_norm(kind: str, channels: int, ndim: int = 2, size: Sequence[int] | None = None) -> nn.Module:
    """Normalisation over a (B, channels, *spatial) map. `layernorm` is LayerNorm over (C, *spatial) with an
    elementwise affine, as in the original code, so it needs the map's spatial `size`; `instancenorm` is
    GroupNorm(channels, channels) and `groupnorm` GroupNorm(4, channels), both with a per-channel affine."""
    if kind == "none":
        return nn.Identity()
    if kind == "batchnorm":
        return _BATCHNORM[ndim](channels)
    if kind == "layernorm":
        if size is None:
            raise ValueError("layernorm needs the spatial size of the feature map it normalises")
        return nn.LayerNorm([channels, *size], elementwise_affine=True)
    groups = {"instancenorm": channels, "groupnorm": 4}
    if kind not in groups:
        raise choice_error("normalization", kind, NORMS)
    return nn.GroupNorm(groups[kind], channels, affine=True)


def make_pool(kind: str, ndim: int = 2) -> nn.Module:
    """2x2 (2x2x2 in 3-D) pooling with stride 2, or identity for `none`."""
    if kind == "none":
        return nn.Identity()
    if kind not in _POOLS:
        raise choice_error("pooling", kind, POOLINGS)
    return _POOLS[kind][ndim](kernel_size=2, stride=2)


def make_conv(in_channels: int, out_channels: int, ndim: int = 2, kernel_size: int = 3, padding: int = 1,
              stride: int = 1, bias: bool = True) -> nn.Module:
    return _CONV[ndim](in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)


def _conv_out(size: int, kernel_size: int, padding: int, stride: int = 1) -> int:
    return (size + 2 * padding - kernel_size) // stride + 1


def _is_mnist_like(channel: int, im_size: Sequence[int]) -> bool:
    """1-channel 28x28 input: the legacy networks pad their first conv more so that their features
    match those of a 32x32 input."""
    return channel == 1 and tuple(im_size) == (28, 28)


# ---- networks ----


class EmbedNet(nn.Module):
    """A network made of `features` (input -> features) and a linear `classifier` on their flattening
    (subclasses that override `forward`, such as ConvNet3D, may have no `classifier`)."""

    features: nn.Module
    classifier: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def conv_blocks(channel: int, im_size: Sequence[int], width: int, depth: int, act: str, norm: str, pooling: str,
                first_padding: int) -> tuple[nn.Sequential, list[int]]:
    """The ConvNet family's features: `depth` blocks of conv3x3 (the first padded by `first_padding`, the others
    by 1) -> norm -> act -> pool over len(im_size) spatial dims; a block skips its pooling once a side of the map
    is below 2. Returns the blocks and the spatial size of their output."""
    ndim, size = len(im_size), list(im_size)
    layers: list[nn.Module] = []
    in_channels = channel
    for d in range(depth):
        padding = first_padding if d == 0 else 1
        size = [_conv_out(s, 3, padding) for s in size]
        layers += [make_conv(in_channels, width, ndim, 3, padding), make_norm(norm, width, ndim, size),
                   make_act(act)]
        if pooling != "none" and min(size) >= 2:
            layers.append(make_pool(pooling, ndim))
            size = [s // 2 for s in size]
        in_channels = width
    return nn.Sequential(*layers), size


class ConvNet(EmbedNet):
    """`depth` blocks of conv3x3 -> norm -> act -> pool, then a Linear on the flattened features.

    Works for any number of spatial dims (len(im_size)). The first conv of a 1-channel 28x28 input
    uses padding 3 (its output is 32x32). A block skips pooling once a side of the map is below 2 (so
    deep nets such as ConvNetD8 still run on 32x32 inputs).
    """

    def __init__(self, channel: int, num_classes: int, im_size: Sequence[int], width: int = 128,
                 depth: int = 3, act: str = "relu", norm: str = "instancenorm", pooling: str = "avgpooling"):
        super().__init__()
        if depth < 1:
            raise ValueError(f"ConvNet depth must be >= 1, got {depth}")
        if pooling not in POOLINGS:
            raise choice_error("pooling", pooling, POOLINGS)
        first_padding = 3 if _is_mnist_like(channel, im_size) else 1
        self.features, size = conv_blocks(channel, im_size, width, depth, act, norm, pooling, first_padding)
        self.classifier = nn.Linear(width * math.prod(size), num_classes)


class MLP(EmbedNet):
    """flatten -> width -> ReLU -> width -> ReLU -> Linear."""

    def __init__(self, channel: int, num_classes: int, im_size: Sequence[int], width: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(channel * math.prod(im_size), width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU())
        self.classifier = nn.Linear(width, num_classes)


class LeNet(EmbedNet):
    """Two conv5x5 -> ReLU -> maxpool stages, fc 120 and 84 with ReLU, then Linear (1-channel 28x28: padding 2)."""

    def __init__(self, channel: int, num_classes: int, im_size: Sequence[int]):
        super().__init__()
        padding = 2 if _is_mnist_like(channel, im_size) else 0
        size = [_conv_out(_conv_out(s, 5, padding) // 2, 5, 0) // 2 for s in im_size]
        self.features = nn.Sequential(
            nn.Conv2d(channel, 6, 5, padding=padding), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * math.prod(size), 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.classifier = nn.Linear(84, num_classes)


class AlexNet(EmbedNet):
    """Small-image AlexNet of dataset distillation: five convs (the first 5x5, padding 4 for 1-channel
    28x28 inputs, else 2), three 2x2 max pools, then Linear. `norm` follows every conv (AlexNetBN: batchnorm)."""

    def __init__(self, channel: int, num_classes: int, im_size: Sequence[int], norm: str = "none"):
        super().__init__()
        padding = 4 if _is_mnist_like(channel, im_size) else 2
        # (in, out, kernel, padding, pool after)
        spec = [(channel, 128, 5, padding, True), (128, 192, 5, 2, True), (192, 256, 3, 1, False),
                (256, 192, 3, 1, False), (192, 192, 3, 1, True)]
        layers: list[nn.Module] = []
        size = list(im_size)
        for c_in, c_out, k, p, pool in spec:
            size = [_conv_out(s, k, p) for s in size]
            layers += [nn.Conv2d(c_in, c_out, k, padding=p), make_norm(norm, c_out, size=size), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
                size = [s // 2 for s in size]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(192 * math.prod(size), num_classes)


VGG11_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(EmbedNet):
    """VGG: conv3x3 -> norm -> ReLU per number in `cfg`, 2x2 max pool per 'M', then Linear.
    A 1-channel 28x28 input gets padding 3 in the first conv."""

    def __init__(self, channel: int, num_classes: int, im_size: Sequence[int],
                 cfg: Sequence[int | str] = VGG11_CFG, norm: str = "instancenorm"):
        super().__init__()
        layers: list[nn.Module] = []
        size, in_channels = list(im_size), channel
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                size = [s // 2 for s in size]
                continue
            padding = 3 if not layers and _is_mnist_like(channel, im_size) else 1
            size = [_conv_out(s, 3, padding) for s in size]
            layers += [nn.Conv2d(in_channels, int(v), 3, padding=padding), make_norm(norm, int(v), size=size),
                       nn.ReLU()]
            in_channels = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_channels * math.prod(size), num_classes)


class BasicBlock(nn.Module):
    """ResNet basic block. With `avgpool_downsample`, a stride-2 block uses stride-1 convs followed by
    2x2 average pooling (in the residual and the shortcut path) instead of stride-2 convs."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str, avgpool_downsample: bool = False):
        super().__init__()
        conv_stride = 1 if avgpool_downsample else stride
        pool = avgpool_downsample and stride != 1
        self.residual = nn.Sequential(
            nn.Conv2d(in_planes, planes, 3, stride=conv_stride, padding=1, bias=False),
            nn.AvgPool2d(2) if pool else nn.Identity(), make_norm(norm, planes), nn.ReLU(),
            nn.Conv2d(planes, planes, 3, padding=1, bias=False), make_norm(norm, planes))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=conv_stride, bias=False),
                nn.AvgPool2d(2) if pool else nn.Identity(), make_norm(norm, planes))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.residual(x) + self.shortcut(x))


class ResNet(EmbedNet):
    """CIFAR-style ResNet: 3x3 stride-1 stem (at every resolution), four stages of basic blocks (64, 128,
    256, 512 planes; stages 2-4 downsample by 2), global average pooling, Linear. `avgpool_downsample`
    (the *_AP names) downsamples by stride-1 conv + 2x2 average pooling instead of stride-2 convs."""

    def __init__(self, channel: int, num_classes: int, im_size: Sequence[int], blocks: Sequence[int] = (2, 2, 2, 2),
                 norm: str = "instancenorm", avgpool_downsample: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channel, 64, 3, padding=1, bias=False), make_norm(norm, 64), nn.ReLU()]
        in_planes = 64
        for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride, norm, avgpool_downsample))
                in_planes = planes
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_planes, num_classes)


class _ClipHeadPool(nn.Module):
    """ConvNet3D's head pooling: (B, C, T', H', W') -> (B, C, T' - 1, 1, 1), the mean over H', W' and over each
    pair of adjacent time steps (stride 1); a single time step is kept as it is.

    The original pools with AvgPool3d of kernel (2, 2, 2), stride 1, when the input side is above 64, else
    kernel (2, 1, 1), stride 1, and then squeezes H and W. At depth 3 that works for sides 43-64 (1x1 features)
    and 107-170 (2x2 features), 112 included, and there it equals this pooling. For sides 65-106 (1x1 features
    under a 2x2 kernel), 171 and above (3x3 and larger features) and clips with one time step left the
    original fails; this pooling keeps its rule there: average over space and over adjacent time steps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=(3, 4), keepdim=True)
        return nn.functional.avg_pool3d(x, (2, 1, 1), stride=1) if x.shape[2] >= 2 else x


class ConvNet3D(EmbedNet):
    """Video ConvNet of video distillation, for clips (B, C, T, H, W) with any number of channels C.

    `depth` blocks of Conv3d (kernel (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3)) -> ReLU -> MaxPool3d,
    no normalisation; the first block has 64 channels whatever `width` is (as the original's
    ``64 if d == 0 else net_width``) and pools H, W only (kernel and stride (1, 2, 2)); every later block has
    `width` channels and pools 2x2x2. The head (:class:`_ClipHeadPool`) averages over H, W and over each pair of
    adjacent time steps, applies Dropout(`dropout`) and a 1x1x1 conv to `num_classes`, then takes the max over
    the remaining time steps. `embed(x)` is the flattened output of the blocks (2048-d for 16x112x112 clips at
    the default width 128); there is no `classifier` attribute. A clip too small for `depth` blocks is a
    UserError.
    """

    FIRST_WIDTH = 64  # channels of the first block, whatever the width (the original's)

    # (kernel, padding, stride) of the block convs along T and along H, W
    _T_CONV, _HW_CONV = (3, 1, 1), (7, 3, 2)

    def __init__(self, channel: int, num_classes: int, im_size: Sequence[int], width: int = 128,
                 depth: int = 3, dropout: float = 0.5):
        super().__init__()
        if len(im_size) != 3:
            raise UserError(f"ConvNet3D is for clips (C, T, H, W): im_size must be (T, H, W), got {tuple(im_size)}")
        if depth < 1:
            raise UserError(f"ConvNet3D depth must be >= 1, got {depth}")
        if width < 1:
            raise UserError(f"ConvNet3D width must be >= 1, got {width}")
        out = self.output_size(im_size, depth)
        if min(out) < 1:
            min_t, min_side = self.min_clip_size(depth)
            raise UserError(
                f"clip (T, H, W) = {tuple(im_size)} is too small for ConvNet3D with {depth} block(s): it needs "
                f"T >= {min_t} frames and H, W >= {min_side} pixels")
        layers: list[nn.Module] = []
        in_channels = channel
        for d in range(depth):
            out_channels = self.FIRST_WIDTH if d == 0 else width
            (kt, pt, st), (ks, ps, ss) = self._T_CONV, self._HW_CONV
            layers += [nn.Conv3d(in_channels, out_channels, kernel_size=(kt, ks, ks), stride=(st, ss, ss),
                                 padding=(pt, ps, ps)), nn.ReLU()]
            layers.append(nn.MaxPool3d((1, 2, 2), (1, 2, 2)) if d == 0 else nn.MaxPool3d(2, 2))
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(_ClipHeadPool(), nn.Dropout(dropout),
                                  nn.Conv3d(in_channels, num_classes, kernel_size=1))
        self.feature_size = out  # (T, H, W) of the features; embed(x) has width * prod(out) entries

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten(2).amax(dim=2)  # (B, K, T' - 1, 1, 1) -> max over time

    @classmethod
    def _axis_size(cls, size: int, depth: int, temporal: bool) -> int:
        """Length of one axis of the features after `depth` blocks (< 1: the clip is too small)."""
        kernel, padding, stride = cls._T_CONV if temporal else cls._HW_CONV
        for d in range(depth):
            size = _conv_out(size, kernel, padding, stride)
            if size < 1:
                return size
            if d > 0 or not temporal:  # the first block does not pool over time
                size //= 2
        return size

    @classmethod
    def output_size(cls, im_size: Sequence[int], depth: int = 3) -> tuple[int, int, int]:
        """(T, H, W) of the features of a (T, H, W) clip after `depth` blocks."""
        t, h, w = im_size
        return (cls._axis_size(t, depth, True), cls._axis_size(h, depth, False), cls._axis_size(w, depth, False))

    @classmethod
    def min_clip_size(cls, depth: int = 3) -> tuple[int, int]:
        """(minimum T, minimum H and W side) of a clip that `depth` blocks accept, found by the same size
        computation as `output_size` (each axis is independent and its output grows with its input)."""
        def smallest(temporal: bool) -> int:
            hi = 1
            while cls._axis_size(hi, depth, temporal) < 1:
                hi *= 2
            lo = hi // 2  # invalid (or 0)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if cls._axis_size(mid, depth, temporal) >= 1:
                    hi = mid
                else:
                    lo = mid
            return hi

        return smallest(True), smallest(False)


class Conv3DNet(EmbedNet):
    """Voxel ConvNet of DDiF's 3D_Voxel experiments, for volumes (B, C, D, H, W) (occupancy grids: C = 1): the
    blocks of the 3-D :class:`ConvNet` (:func:`conv_blocks`) with ReLU and average pooling, the first conv padded
    by 3 for any 1-channel input.

    `depth` blocks of Conv3d (kernel 3; padding 3 in the first block of a 1-channel input, else 1) -> `norm`
    -> ReLU -> AvgPool3d(2), every block `width` channels, then a Linear on the flattened features. Norms
    follow ConvNet's convention (`instancenorm`: GroupNorm(width, width) with a per-channel affine). Every
    block pools, so `embed(x)` has width * prod(feature_size) entries: for a 1-channel 32^3 volume each side
    goes 32 -> 36 (padding 3) -> 18 -> 9 -> 4, 128 * 4^3 = 8192 features; at 16^3: 20 -> 10 -> 5 -> 2, 1024
    features (a 3-channel 32^3 volume: 32 -> 16 -> 8 -> 4, also 8192). A volume with a side that would pool
    down to 0 is a UserError naming the smallest side `min_side(channel, depth)` accepts (so no block ever
    skips its pooling, as a ConvNet block may).
    """

    def __init__(self, channel: int, num_classes: int, im_size: Sequence[int], width: int = 128,
                 depth: int = 3, norm: str = "instancenorm"):
        super().__init__()
        if len(im_size) != 3:
            raise UserError(f"Conv3DNet is for volumes (C, D, H, W): im_size must be (D, H, W), got {tuple(im_size)}")
        if depth < 1:
            raise UserError(f"Conv3DNet depth must be >= 1, got {depth}")
        if width < 1:
            raise UserError(f"Conv3DNet width must be >= 1, got {width}")
        if norm not in NORMS:
            raise choice_error("normalization", norm, NORMS)
        if norm == "groupnorm" and width % 4:
            raise UserError(f"Conv3DNet with groupnorm (4 groups) needs a width divisible by 4, got {width}")
        out = self.output_size(channel, im_size, depth)
        if min(out) < 1:
            raise UserError(
                f"volume (D, H, W) = {tuple(im_size)} is too small for Conv3DNet with {depth} block(s) on a "
                f"{channel}-channel input: every side must be >= {self.min_side(channel, depth)} voxels")
        self.features, _ = conv_blocks(channel, im_size, width, depth, "relu", norm, "avgpooling",
                                       self._padding(channel, 0))
        self.classifier = nn.Linear(width * math.prod(out), num_classes)
        self.feature_size = out  # (D, H, W) of the features

    @staticmethod
    def _padding(channel: int, block: int) -> int:
        return 3 if block == 0 and channel == 1 else 1

    @classmethod
    def _side(cls, size: int, channel: int, depth: int) -> int:
        """Length of one side of the features after `depth` blocks (< 1: the volume is too small)."""
        for d in range(depth):
            size = _conv_out(size, 3, cls._padding(channel, d)) // 2
            if size < 1:
                return size
        return size

    @classmethod
    def output_size(cls, channel: int, im_size: Sequence[int], depth: int = 3) -> tuple[int, int, int]:
        """(D, H, W) of the features of a (D, H, W) volume with `channel` channels after `depth` blocks."""
        d, h, w = im_size
        return cls._side(d, channel, depth), cls._side(h, channel, depth), cls._side(w, channel, depth)

    @classmethod
    def min_side(cls, channel: int = 1, depth: int = 3) -> int:
        """The smallest side `depth` blocks accept (a side's output grows with its input)."""
        side = 1
        while cls._side(side, channel, depth) < 1:
            side += 1
        return side


# ---- registry ----


@dataclass(frozen=True)
class _Family:
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    build: Callable[..., nn.Module]


_FAMILIES: list[_Family] = []


def register_network(pattern: str, *names: str):
    """Decorator registering `build(match, channel, num_classes, im_size, **overrides) -> nn.Module` for
    every name that fully matches the regex `pattern`; `names` are the canonical ones list_networks() shows."""
    compiled = re.compile(pattern)

    def decorator(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        for name in names:
            if not compiled.fullmatch(name):
                raise ValueError(f"canonical name {name!r} does not match its pattern {pattern!r}")
        _FAMILIES.append(_Family(compiled, names, build))
        return build

    return decorator


def list_networks() -> list[str]:
    """Every canonical network name (get_network also takes ConvNetD<n>/W<n>, ConvNet3DD<n>/W<n> and
    Conv3DNetD<n>/W<n> for any n, and 'ConvNet-3-BN')."""
    return [name for family in _FAMILIES for name in family.names]


def _lookup(name: str) -> tuple[_Family, re.Match[str]]:
    for family in _FAMILIES:
        match = family.pattern.fullmatch(name)
        if match:
            return family, match
    raise choice_error("model", name, list_networks())


def get_network(name: str, channel: int, num_classes: int, im_size: Sequence[int], **overrides) -> nn.Module:
    """A freshly initialised network; `overrides` replace constructor arguments parsed from the name
    (e.g. get_network('ConvNetD4', 3, 10, (64, 64), norm='batchnorm'))."""
    family, match = _lookup(name)
    return family.build(match, channel, num_classes, tuple(im_size), **overrides)


_ACT_CODES = {"S": "sigmoid", "R": "relu", "L": "leakyrelu"}
_NORM_CODES = {"N": "none", "B": "batchnorm", "L": "layernorm", "I": "instancenorm", "G": "groupnorm"}
_POOL_CODES = {"N": "none", "M": "maxpooling", "A": "avgpooling"}


@register_network(
    # legacy: one optional suffix D<depth>, W<width>, A<act>, <norm>N, <pool>P; DD-Ranking: ConvNet-<depth>[-<norm>N]
    r"ConvNet(?:D(?P<depth>[1-9]\d*)|W(?P<width>[1-9]\d*)|A(?P<act>[SRL])|(?P<norm>[NBLIG])N|(?P<pool>[NMA])P)?"
    r"|ConvNet-(?P<dd_depth>[1-9]\d*)(?:-(?P<dd_norm>[NBLIG])N)?",
    "ConvNet", *(f"ConvNetD{d}" for d in range(1, 9)), *(f"ConvNetW{w}" for w in (32, 64, 128, 256, 512, 1024)),
    *(f"ConvNetA{a}" for a in "SRL"), *(f"ConvNet{n}N" for n in "NBLIG"), *(f"ConvNet{p}P" for p in "NMA"))
def _convnet(m: re.Match[str], channel: int, num_classes: int, im_size: tuple[int, ...], **overrides) -> nn.Module:
    parsed: dict[str, object] = {}
    if depth := m["depth"] or m["dd_depth"]:
        parsed["depth"] = int(depth)
    if m["width"]:
        parsed["width"] = int(m["width"])
    if m["act"]:
        parsed["act"] = _ACT_CODES[m["act"]]
    if norm := m["norm"] or m["dd_norm"]:
        parsed["norm"] = _NORM_CODES[norm]
    if m["pool"]:
        parsed["pooling"] = _POOL_CODES[m["pool"]]
    return ConvNet(channel, num_classes, im_size, **{**parsed, **overrides})


@register_network("MLP", "MLP")
def _mlp(m: re.Match[str], channel: int, num_classes: int, im_size: tuple[int, ...], **overrides) -> nn.Module:
    return MLP(channel, num_classes, im_size, **overrides)


@register_network("LeNet", "LeNet")
def _lenet(m: re.Match[str], channel: int, num_classes: int, im_size: tuple[int, ...], **overrides) -> nn.Module:
    return LeNet(channel, num_classes, im_size, **overrides)


@register_network(r"AlexNet(?P<bn>BN)?", "AlexNet", "AlexNetBN")
def _alexnet(m: re.Match[str], channel: int, num_classes: int, im_size: tuple[int, ...], **overrides) -> nn.Module:
    return AlexNet(channel, num_classes, im_size, **{"norm": "batchnorm" if m["bn"] else "none", **overrides})


@register_network(r"VGG11(?P<bn>BN)?", "VGG11", "VGG11BN")
def _vgg11(m: re.Match[str], channel: int, num_classes: int, im_size: tuple[int, ...], **overrides) -> nn.Module:
    return VGG(channel, num_classes, im_size, VGG11_CFG,
               **{"norm": "batchnorm" if m["bn"] else "instancenorm", **overrides})


@register_network(r"ResNet18(?P<bn>BN)?(?P<ap>_AP)?", "ResNet18", "ResNet18BN", "ResNet18_AP", "ResNet18BN_AP")
def _resnet18(m: re.Match[str], channel: int, num_classes: int, im_size: tuple[int, ...], **overrides) -> nn.Module:
    parsed = {"norm": "batchnorm" if m["bn"] else "instancenorm", "avgpool_downsample": bool(m["ap"])}
    return ResNet(channel, num_classes, im_size, (2, 2, 2, 2), **{**parsed, **overrides})


@register_network(r"ConvNet3D(?:W(?P<width>[1-9]\d*)|D(?P<depth>[1-9]\d*))?",
                  "ConvNet3D", *(f"ConvNet3DW{w}" for w in (32, 64, 128, 256)),
                  *(f"ConvNet3DD{d}" for d in range(1, 5)))
def _convnet3d(m: re.Match[str], channel: int, num_classes: int, im_size: tuple[int, ...], **overrides) -> nn.Module:
    parsed = {k: int(v) for k, v in (("width", m["width"]), ("depth", m["depth"])) if v}
    return ConvNet3D(channel, num_classes, im_size, **{**parsed, **overrides})


@register_network(r"Conv3DNet(?:W(?P<width>[1-9]\d*)|D(?P<depth>[1-9]\d*)|(?P<norm>[NBIG])N)?",
                  "Conv3DNet", *(f"Conv3DNetW{w}" for w in (32, 64, 128, 256)),
                  *(f"Conv3DNetD{d}" for d in range(1, 5)), *(f"Conv3DNet{n}N" for n in "NBIG"))
def _conv3dnet(m: re.Match[str], channel: int, num_classes: int, im_size: tuple[int, ...], **overrides) -> nn.Module:
    parsed: dict[str, object] = {k: int(v) for k, v in (("width", m["width"]), ("depth", m["depth"])) if v}
    if m["norm"]:
        parsed["norm"] = _NORM_CODES[m["norm"]]
    return Conv3DNet(channel, num_classes, im_size, **{**parsed, **overrides})


# ---- evaluation pools ----

EVAL_MODES = ("S", "M", "W", "D", "A", "P", "N", "C")
_FIXED_POOLS = {
    "M": ("ConvNet", "AlexNet", "VGG11", "ResNet18"),
    "W": ("ConvNetW32", "ConvNetW64", "ConvNetW128", "ConvNetW256"),
    "D": ("ConvNetD1", "ConvNetD2", "ConvNetD3", "ConvNetD4"),
    "A": ("ConvNetAS", "ConvNetAR", "ConvNetAL"),
    "P": ("ConvNetNP", "ConvNetMP", "ConvNetAP"),
    "N": ("ConvNetNN", "ConvNetBN", "ConvNetLN", "ConvNetIN", "ConvNetGN"),
}


# the video networks (the ConvNet3D family) and the voxel networks (the Conv3DNet family) have their own pools;
# the other letters are undefined for them
_VIDEO_POOLS = {
    "W": ("ConvNet3DW32", "ConvNet3DW64", "ConvNet3DW128", "ConvNet3DW256"),
    "D": ("ConvNet3DD1", "ConvNet3DD2", "ConvNet3DD3"),
}
_VIDEO_MODES = ("S", "W", "D", "C")
_VOXEL_POOLS = {
    "W": ("Conv3DNetW32", "Conv3DNetW64", "Conv3DNetW128", "Conv3DNetW256"),
    "D": ("Conv3DNetD1", "Conv3DNetD2", "Conv3DNetD3"),
    "N": ("Conv3DNetNN", "Conv3DNetBN", "Conv3DNetIN", "Conv3DNetGN"),
}
_VOXEL_MODES = ("S", "W", "D", "N", "C")


@dataclass(frozen=True)
class _OwnPools:
    kind: str  # what the family's networks are for, as the error says it
    base: str  # the family's default network (the second one of C)
    pools: dict[str, tuple[str, ...]]
    modes: tuple[str, ...]


_FAMILY_POOLS = {
    _convnet3d: _OwnPools("video", "ConvNet3D", _VIDEO_POOLS, _VIDEO_MODES),
    _conv3dnet: _OwnPools("voxel", "Conv3DNet", _VOXEL_POOLS, _VOXEL_MODES),
}


def get_eval_pool(eval_mode: str, model: str) -> list[str]:
    """Networks to evaluate a synthetic set distilled with `model` on. S: `model` with 'BN' removed
    (ConvNetBN -> ConvNet, ResNet18BN_AP -> ResNet18_AP); M: architectures; W/D/A/P/N: ConvNet width/
    depth/activation/pooling/normalisation ablations; C: [model, 'ConvNet'].
    For a video network (ConvNet3D family): S: [model]; C: [model, 'ConvNet3D']; W/D: ConvNet3D width/depth
    ablations; M/A/P/N are a UserError.
    For a voxel network (Conv3DNet family): S: `model` with 'BN' removed (Conv3DNetBN -> Conv3DNet); C: [model,
    'Conv3DNet']; W/D/N: Conv3DNet width/depth/normalisation ablations; M/A/P are a UserError."""
    if eval_mode not in EVAL_MODES:
        raise choice_error("eval mode", eval_mode, EVAL_MODES)
    family, _ = _lookup(model)  # an unknown model is an error in every mode
    own = _FAMILY_POOLS.get(family.build)
    if own is not None and eval_mode not in own.modes:
        raise UserError(f"eval mode {eval_mode!r} is not defined for the {own.kind} network {model!r}; "
                        f"valid eval modes for it: {', '.join(own.modes)}")
    if eval_mode == "S":
        return [re.sub(r"-?BN", "", model)]
    if eval_mode == "C":
        return list(dict.fromkeys([model, own.base if own else "ConvNet"]))
    return list((own.pools if own else _FIXED_POOLS)[eval_mode])
