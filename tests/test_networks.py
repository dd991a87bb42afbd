"""Tests of common/networks.py: the architectures of the registered networks, the name parser and the eval pools
(the contract every network keeps -- logits, embed, functional calls, gradients -- is in test_registries.py)."""
import math

import pytest
import torch
from torch import nn

from common.errors import UserError
from common.networks import (EVAL_MODES, Conv3DNet, ConvNet, ConvNet3D, get_eval_pool, get_network,
                             list_networks)
from tests.helpers import network_kind

NAMES = list_networks()
VIDEO_NAMES = [n for n in NAMES if n.startswith("ConvNet3D")]  # clips (C, T, H, W): tested separately below
VOXEL_NAMES = [n for n in NAMES if n.startswith("Conv3DNet")]  # volumes (C, D, H, W): tested separately below
IMAGE_NAMES = [n for n in NAMES if n not in VIDEO_NAMES + VOXEL_NAMES]


pytestmark = pytest.mark.usefixtures("one_thread")  # one intra-op thread (tests/conftest.py)


def _batch(channel, im_size, n=2):
    return torch.randn(n, channel, *im_size, generator=torch.Generator().manual_seed(0))


def test_list_networks_has_every_legacy_name():
    legacy = (["ConvNet"] + [f"ConvNetD{d}" for d in range(1, 9)]
              + [f"ConvNetW{w}" for w in (32, 64, 128, 256, 512, 1024)]
              + ["ConvNetAS", "ConvNetAR", "ConvNetAL", "ConvNetNN", "ConvNetBN", "ConvNetLN", "ConvNetIN",
                 "ConvNetGN", "ConvNetNP", "ConvNetMP", "ConvNetAP", "MLP", "LeNet", "AlexNet", "AlexNetBN",
                 "VGG11", "VGG11BN", "ResNet18", "ResNet18BN", "ResNet18BN_AP", "ResNet18_AP"])
    assert sorted(IMAGE_NAMES) == sorted(legacy)
    assert VIDEO_NAMES == ["ConvNet3D", "ConvNet3DW32", "ConvNet3DW64", "ConvNet3DW128", "ConvNet3DW256",
                           "ConvNet3DD1", "ConvNet3DD2", "ConvNet3DD3", "ConvNet3DD4"]
    assert VOXEL_NAMES == ["Conv3DNet", "Conv3DNetW32", "Conv3DNetW64", "Conv3DNetW128", "Conv3DNetW256",
                           "Conv3DNetD1", "Conv3DNetD2", "Conv3DNetD3", "Conv3DNetD4",
                           "Conv3DNetNN", "Conv3DNetBN", "Conv3DNetIN", "Conv3DNetGN"]
    assert len(set(NAMES)) == len(NAMES)


# forward, embed, functional calls and gradients of every network (images at 1x28x28 and 3x32x32, clips,
# volumes): tests/test_registries.py::test_network_forward_embed_and_gradients


@pytest.mark.parametrize("name", ["ConvNet", "ConvNetBN", "LeNet", "AlexNetBN", "VGG11", "ResNet18BN_AP"])
def test_init_is_deterministic_under_seed(name):
    states = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        states.append(get_network(name, 3, 10, (32, 32)).state_dict())
    same = all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    differs = any(not torch.equal(states[0][k], states[2][k]) for k in states[0])
    assert same and differs


@pytest.mark.parametrize("name, size, feat", [("ConvNetD4", 64, 128 * 4 * 4), ("ConvNetD5", 128, 128 * 4 * 4),
                                              ("ConvNetNP", 32, 128 * 32 * 32), ("ConvNetD8", 32, 128)])
def test_convnet_feature_size(name, size, feat):
    model = get_network(name, 3, 10, (size, size))
    assert model.classifier.in_features == feat
    assert model(_batch(3, (size, size))).shape == (2, 10)


def test_convnet_mnist_padding_matches_cifar_features():
    gray = get_network("ConvNet", 1, 10, (28, 28))
    color = get_network("ConvNet", 3, 10, (32, 32))
    assert gray.embed(_batch(1, (28, 28))).shape == color.embed(_batch(3, (32, 32))).shape == (2, 2048)
    assert gray.features[0].padding == (3, 3) and color.features[0].padding == (1, 1)


def test_convnet_default_architecture():
    model = get_network("ConvNet", 3, 10, (32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert [c.out_channels for c in convs] == [128] * 3
    assert all(n.num_groups == n.num_channels == 128 and n.affine for n in norms) and len(norms) == 3
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.modules()) == 3
    assert sum(p.numel() for p in model.parameters()) == 320010


@pytest.mark.parametrize("name, module, count", [
    ("ConvNetBN", nn.BatchNorm2d, 3), ("ConvNetMP", nn.MaxPool2d, 3), ("ConvNetAS", nn.Sigmoid, 3),
    ("ConvNetAL", nn.LeakyReLU, 3), ("ConvNetNN", nn.GroupNorm, 0), ("ConvNet-4-BN", nn.BatchNorm2d, 4),
    ("ConvNet-2", nn.GroupNorm, 2), ("ConvNetW64", nn.Conv2d, 3), ("VGG11BN", nn.BatchNorm2d, 8),
    ("ResNet18BN_AP", nn.AvgPool2d, 6), ("ResNet18_AP", nn.BatchNorm2d, 0)])
def test_name_suffixes(name, module, count):
    model = get_network(name, 3, 10, (32, 32))
    assert sum(isinstance(m, module) for m in model.modules()) == count


def test_overrides_replace_parsed_arguments():
    model = get_network("ConvNetD4", 3, 10, (64, 64), norm="batchnorm", width=64)
    assert isinstance(model, ConvNet)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    assert model.classifier.in_features == 64 * 4 * 4


@pytest.mark.parametrize("name", ["ConvNetX", "convnet", "ConvNetD0", "ResNet50", "ConvNetBNAP", "ConvNet-3-XN", ""])
def test_unknown_name_lists_valid_names(name):
    with pytest.raises(ValueError) as info:
        get_network(name, 3, 10, (32, 32))
    assert isinstance(info.value, UserError)
    assert "ConvNetD4" in str(info.value) and "ResNet18BN_AP" in str(info.value)


def test_bad_override_values_are_errors():
    with pytest.raises(ValueError, match="instancenorm"):
        get_network("ConvNet", 3, 10, (32, 32), norm="bogus")
    with pytest.raises(ValueError, match="avgpooling"):
        get_network("ConvNet", 3, 10, (32, 32), pooling="bogus")


@pytest.mark.parametrize("mode, model, expected", [
    ("S", "ConvNetBN", ["ConvNet"]), ("S", "ConvNet", ["ConvNet"]), ("S", "ResNet18BN_AP", ["ResNet18_AP"]),
    ("S", "ConvNet-3-BN", ["ConvNet-3"]),
    ("M", "ConvNet", ["ConvNet", "AlexNet", "VGG11", "ResNet18"]),
    ("W", "ConvNet", ["ConvNetW32", "ConvNetW64", "ConvNetW128", "ConvNetW256"]),
    ("D", "ConvNet", ["ConvNetD1", "ConvNetD2", "ConvNetD3", "ConvNetD4"]),
    ("A", "ConvNet", ["ConvNetAS", "ConvNetAR", "ConvNetAL"]),
    ("P", "ConvNet", ["ConvNetNP", "ConvNetMP", "ConvNetAP"]),
    ("N", "ConvNet", ["ConvNetNN", "ConvNetBN", "ConvNetLN", "ConvNetIN", "ConvNetGN"]),
    ("C", "VGG11", ["VGG11", "ConvNet"]), ("C", "ConvNet", ["ConvNet"])])
def test_eval_pool(mode, model, expected):
    assert get_eval_pool(mode, model) == expected


# an input of each kind of network, and the network every eval mode C adds for that kind
KIND_INPUT = {"image": (3, (32, 32)), "clip": (3, (16, 112, 112)), "voxel": (1, (16, 16, 16))}
KIND_DEFAULT = {"image": "ConvNet", "clip": "ConvNet3D", "voxel": "Conv3DNet"}
ABLATED = {"W": "width", "D": "depth", "A": "act", "P": "pool", "N": "norm"}  # what each ablation mode varies
POOL_MODELS = ["ConvNetBN", "ResNet18BN_AP", "ConvNet3DW64", "Conv3DNetBN"]  # distillation models, one per family


def _describe(model) -> dict:
    """What tells networks apart: the class, and in the features the number of convs (depth), the channels of the
    last conv (width), and the kinds of activation, pooling and normalisation (GroupNorm with a group per channel
    is the code's instancenorm)."""
    mods = list(model.features.modules())
    convs = [m for m in mods if isinstance(m, (nn.Conv2d, nn.Conv3d))]

    def kinds(*types):
        return tuple(sorted({type(m).__name__ for m in mods if isinstance(m, types)}))

    norms = {("InstanceNorm" if m.num_groups == m.num_channels else f"GroupNorm{m.num_groups}")
             if isinstance(m, nn.GroupNorm) else type(m).__name__
             for m in mods if isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d, nn.BatchNorm3d))}
    return dict(family=type(model), depth=len(convs), width=convs[-1].out_channels,
                act=kinds(nn.ReLU, nn.Sigmoid, nn.LeakyReLU),
                pool=kinds(nn.AvgPool2d, nn.MaxPool2d, nn.AvgPool3d, nn.MaxPool3d), norm=tuple(sorted(norms)))


def _defined_modes(model):
    """The eval modes defined for `model` (the others are a UserError: see the *_undefined_modes tests)."""
    modes = []
    for mode in EVAL_MODES:
        try:
            get_eval_pool(mode, model)
        except UserError:
            continue
        modes.append(mode)
    return modes


@pytest.mark.parametrize("model, mode", [(m, mode) for m in POOL_MODELS for mode in _defined_modes(m)])
def test_eval_pools_hold_valid_names(model, mode):
    """Every pool holds canonical names of networks of the model's kind that build, and is what its mode means:
    S the model itself without batch norm; C the model then the kind's default network; M distinct architectures,
    the kind's default among them; W/D/A/P/N ablations of the kind's default network: one network per
    width/depth/activation/pooling/normalisation, the default's among them, alike in everything else."""
    pool = get_eval_pool(mode, model)
    kind = network_kind(model)
    channel, size = KIND_INPUT[kind]
    assert pool and len(set(pool)) == len(pool)
    assert set(pool) <= set(list_networks())
    assert all(network_kind(name) == kind for name in pool)
    built = [_describe(get_network(name, channel, 10, size)) for name in pool]
    if mode == "S":
        own = _describe(get_network(model, channel, 10, size))
        assert len(pool) == 1 and not any("BatchNorm" in n for n in built[0]["norm"])
        assert {k: v for k, v in built[0].items() if k != "norm"} == {k: v for k, v in own.items() if k != "norm"}
        if not any("BatchNorm" in n for n in own["norm"]):
            assert pool == [model]
    elif mode == "C":
        assert pool[0] == model and pool == list(dict.fromkeys([model, KIND_DEFAULT[kind]]))
    elif mode == "M":
        assert len(pool) >= 2 and len({d["family"] for d in built}) == len(pool)
        assert KIND_DEFAULT[kind] in pool
    else:
        varied, default = ABLATED[mode], _describe(get_network(KIND_DEFAULT[kind], channel, 10, size))
        assert len({d[varied] for d in built}) == len(pool) >= 2, (varied, built)
        assert default[varied] in {d[varied] for d in built}
        # the ConvNet3D depth ablation also changes the last conv's width (its first block is 64 wide)
        same = [k for k in default if k != varied and not (mode == "D" and k == "width")]
        assert all({k: d[k] for k in same} == {k: default[k] for k in same} for d in built), (same, built)


def test_eval_pool_errors():
    with pytest.raises(ValueError, match="valid choices: S, M, W"):
        get_eval_pool("X", "ConvNet")
    with pytest.raises(ValueError, match="ConvNetD4"):
        get_eval_pool("S", "ConvNetXYZ")


@pytest.mark.parametrize("norm", ["batchnorm", "instancenorm", "layernorm"])
@pytest.mark.parametrize("pooling", ["avgpooling", "maxpooling"])
def test_convnet_class_is_dimension_generic(norm, pooling):
    model = ConvNet(1, 10, (8, 16, 16), width=8, depth=2, norm=norm, pooling=pooling)
    assert any(isinstance(m, nn.Conv3d) for m in model.modules())
    assert model.classifier.in_features == 8 * 2 * 4 * 4
    assert model(torch.randn(2, 1, 8, 16, 16)).shape == (2, 10)


# ---- ConvNet3D (video: clips (B, C, T, H, W)) ----


def _clip(channel, size, n=2, seed=0):
    return torch.randn(n, channel, *size, generator=torch.Generator().manual_seed(seed))


def _convs(model):
    return [m for m in model.features.modules() if isinstance(m, nn.Conv3d)]


@pytest.mark.parametrize("channel, size, n, feat", [
    (3, (16, 112, 112), 1, 128 * 4 * 2 * 2), (1, (16, 64, 64), 2, 128 * 4 * 1 * 1), (3, (16, 64, 64), 2, 512),
    (1, (8, 48, 48), 2, 128 * 2 * 1 * 1)])
def test_convnet3d_output_shapes(channel, size, n, feat):
    torch.manual_seed(0)
    model = get_network("ConvNet3D", channel, 7, size).eval()
    x = _clip(channel, size, n)
    with torch.no_grad():
        features, logits = model.embed(x), model(x)
    assert features.shape == (n, feat) and logits.shape == (n, 7)
    assert torch.isfinite(logits).all()
    assert 128 * math.prod(model.feature_size) == feat


def test_convnet3d_default_architecture():
    model = get_network("ConvNet3D", 3, 10, (16, 112, 112))
    assert isinstance(model, ConvNet3D) and not isinstance(model, ConvNet)
    convs = _convs(model)
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 64), (64, 128), (128, 128)]
    assert all(c.kernel_size == (3, 7, 7) and c.stride == (1, 2, 2) and c.padding == (1, 3, 3) for c in convs)
    pools = [m for m in model.features if isinstance(m, nn.MaxPool3d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [((1, 2, 2), (1, 2, 2)), (2, 2), (2, 2)]
    assert sum(isinstance(m, nn.ReLU) for m in model.features) == 3
    norms = (nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm3d)
    assert not any(isinstance(m, norms + (nn.Linear,)) for m in model.modules())
    assert not hasattr(model, "classifier")
    head = [m for m in model.head if isinstance(m, nn.Conv3d)]
    assert len(head) == 1 and head[0].kernel_size == (1, 1, 1)
    assert (head[0].in_channels, head[0].out_channels) == (128, 10)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5]
    # convs (3*64 + 64*128 + 128*128) * 3*7*7 + biases 64 + 128 + 128, head 128*10 + 10
    assert sum(p.numel() for p in model.parameters()) == (3 * 64 + 64 * 128 + 128 * 128) * 147 + 320 + 1290


@pytest.mark.parametrize("size, kernel", [((16, 112, 112), (2, 2, 2)), ((8, 64, 64), (2, 1, 1)),
                                          ((16, 128, 128), (2, 2, 2)), ((8, 48, 48), (2, 1, 1))])
def test_convnet3d_head_is_the_originals(size, kernel):
    """Where the original's head works (features 2x2 above 64 px, 1x1 up to 64 px), the logits are its logits:
    AvgPool3d(kernel, stride 1) -- (2, 2, 2) when the side is above 64, else (2, 1, 1), so adjacent time steps
    are averaged -- then the 1x1x1 conv, squeeze H and W, and the max over the remaining time steps."""
    torch.manual_seed(0)
    model = get_network("ConvNet3D", 3, 7, size).eval()  # eval: dropout is the identity
    x = _clip(3, size, 2)
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape[3:] == ((2, 2) if size[1] > 64 else (1, 1))
        ref = model.head[2](nn.AvgPool3d(kernel, stride=1)(feats)).squeeze(3).squeeze(3)
        ref = torch.max(ref, 2)[0]
        torch.testing.assert_close(model(x), ref)


@pytest.mark.parametrize("size", [(16, 96, 96), (4, 64, 64), (8, 180, 180)])
def test_convnet3d_head_generalises_where_the_original_fails(size):
    """96 px (1x1 features under the original's 2x2 kernel), 4 frames (one time step left) and 180 px (3x3
    features): the mean over space and over adjacent time steps, then the max over time."""
    torch.manual_seed(0)
    model = get_network("ConvNet3D", 3, 5, size).eval()
    x = _clip(3, size, 2)
    with torch.no_grad():
        feats = model.features(x)
        pooled = feats.mean(dim=(3, 4))
        if pooled.shape[2] >= 2:
            pooled = (pooled[:, :, 1:] + pooled[:, :, :-1]) / 2
        conv = model.head[2]
        ref = torch.einsum("kc,bct->bkt", conv.weight.flatten(1), pooled) + conv.bias.view(1, -1, 1)
        torch.testing.assert_close(model(x), ref.amax(dim=2))


@pytest.mark.parametrize("name, widths", [
    ("ConvNet3D", (64, 128, 128)), ("ConvNet3DW32", (64, 32, 32)), ("ConvNet3DW64", (64, 64, 64)),
    ("ConvNet3DW128", (64, 128, 128)), ("ConvNet3DW256", (64, 256, 256)), ("ConvNet3DD1", (64,)),
    ("ConvNet3DD2", (64, 128)), ("ConvNet3DD3", (64, 128, 128)), ("ConvNet3DD4", (64, 128, 128, 128)),
    ("ConvNet3DD5", (64, 128, 128, 128, 128)), ("ConvNet3DW10", (64, 10, 10))])
def test_convnet3d_names(name, widths):
    """The first block is 64 wide whatever the width, as the original's ``64 if d == 0 else net_width``."""
    model = get_network(name, 1, 10, (32, 704, 704))  # large enough for depth 5; building is cheap
    assert isinstance(model, ConvNet3D)
    assert tuple(c.out_channels for c in _convs(model)) == widths
    assert model.head[2].in_channels == widths[-1]  # the head reads the last block (64 wide at depth 1)
    pools = [m for m in model.features if isinstance(m, nn.MaxPool3d)]
    assert [p.kernel_size for p in pools] == [(1, 2, 2)] + [2] * (len(widths) - 1)


def test_convnet_names_are_not_swallowed_by_either_family():
    for name in IMAGE_NAMES + ["ConvNet-3", "ConvNet-4-BN", "ConvNetD3", "ConvNetW3"]:
        if name.startswith("ConvNet"):
            assert isinstance(get_network(name, 3, 10, (32, 32)), ConvNet), name
    for name in VIDEO_NAMES:
        assert isinstance(get_network(name, 3, 10, (8, 200, 200)), ConvNet3D), name
    for name in VOXEL_NAMES + ["Conv3DNetD5", "Conv3DNetW8"]:
        assert isinstance(get_network(name, 1, 10, (32, 32, 32)), Conv3DNet), name


@pytest.mark.parametrize("name", ["ConvNet3d", "ConvNet3DD0", "ConvNet3DW0", "ConvNet3DW", "ConvNet3DBN",
                                  "ConvNet3DW64D2", "ConvNet3D-3", "ConvNet2D"])
def test_convnet3d_unknown_names(name):
    with pytest.raises(UserError, match="ConvNet3DD4"):
        get_network(name, 3, 10, (8, 64, 64))


def test_convnet3d_too_small_clip_is_a_user_error():
    with pytest.raises(UserError) as info:
        get_network("ConvNet3D", 3, 10, (16, 32, 32))
    message = str(info.value)
    assert "(16, 32, 32)" in message and "43" in message and "T >= 4" in message
    with pytest.raises(UserError, match=r"T >= 8 .* 171"):
        get_network("ConvNet3DD4", 3, 10, (4, 112, 112))


@pytest.mark.parametrize("depth, expected", [(1, (1, 3)), (2, (2, 11)), (3, (4, 43)), (4, (8, 171))])
def test_convnet3d_min_clip_size_is_exact(depth, expected):
    min_t, min_side = ConvNet3D.min_clip_size(depth)
    assert (min_t, min_side) == expected  # by hand: each block maps a side s to floor(ceil(s / 2) / 2)
    model = ConvNet3D(1, 3, (min_t, min_side, min_side), width=4, depth=depth)
    assert model.feature_size == (1, 1, 1)
    assert model(_clip(1, (min_t, min_side, min_side))).shape == (2, 3)
    features = model.embed(_clip(1, (min_t, min_side, min_side)))
    assert features.shape == (2, 64 if depth == 1 else 4)  # a single block is the 64-wide first block
    for size in [(min_t - 1, min_side, min_side), (min_t, min_side - 1, min_side), (min_t, min_side, min_side - 1)]:
        if min(size) >= 1:
            with pytest.raises(UserError, match=str(min_side)):
                ConvNet3D(1, 3, size, width=4, depth=depth)


@pytest.mark.parametrize("im_size", [(32, 32), (28, 28), (4, 8, 64, 64), (64,)])
def test_convnet3d_needs_clips(im_size):
    with pytest.raises(UserError, match=r"ConvNet3D is for clips \(C, T, H, W\)"):
        get_network("ConvNet3D", 3, 10, im_size)


def test_convnet3d_dropout_only_in_the_head():
    torch.manual_seed(0)
    model = get_network("ConvNet3DW32", 3, 10, (8, 48, 48))
    x = _clip(3, (8, 48, 48))
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x))
        torch.testing.assert_close(model.embed(x), model.embed(x), rtol=0, atol=0)
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    assert get_network("ConvNet3DW32", 3, 10, (8, 48, 48), dropout=0.0).head[1].p == 0.0


def test_convnet3d_width_variant_is_smaller():
    count = lambda name: sum(p.numel() for p in get_network(name, 3, 10, (16, 112, 112)).parameters())
    assert count("ConvNet3DW32") < count("ConvNet3DW64") < count("ConvNet3D") == count("ConvNet3DW128") \
        < count("ConvNet3DW256")
    assert count("ConvNet3DD1") < count("ConvNet3DD2") < count("ConvNet3D") == count("ConvNet3DD3")


@pytest.mark.parametrize("mode, model, expected", [
    ("S", "ConvNet3D", ["ConvNet3D"]), ("S", "ConvNet3DW64", ["ConvNet3DW64"]),
    ("C", "ConvNet3D", ["ConvNet3D"]), ("C", "ConvNet3DD2", ["ConvNet3DD2", "ConvNet3D"]),
    ("W", "ConvNet3D", ["ConvNet3DW32", "ConvNet3DW64", "ConvNet3DW128", "ConvNet3DW256"]),
    ("D", "ConvNet3DW32", ["ConvNet3DD1", "ConvNet3DD2", "ConvNet3DD3"])])
def test_convnet3d_eval_pool(mode, model, expected):
    assert get_eval_pool(mode, model) == expected
    for name in expected:
        assert isinstance(get_network(name, 3, 10, (16, 112, 112)), ConvNet3D)


@pytest.mark.parametrize("mode", ["M", "A", "P", "N"])
def test_convnet3d_eval_pool_undefined_modes(mode):
    with pytest.raises(UserError) as info:
        get_eval_pool(mode, "ConvNet3DW64")
    message = str(info.value)
    assert f"'{mode}'" in message and "ConvNet3DW64" in message and "S, W, D, C" in message
    assert get_eval_pool(mode, "ConvNet")  # still defined for the image networks


# ---- Conv3DNet (voxels: volumes (B, 1, D, H, W)) ----


def _volume_convs(model):
    return [m for m in model.features if isinstance(m, nn.Conv3d)]


@pytest.mark.parametrize("channel, size, side, feat", [
    (1, 32, 4, 8192),  # 32 -> 36 (padding 3) -> 18 -> 9 -> 4: 128 * 4^3
    (1, 16, 2, 1024),  # 16 -> 20 -> 10 -> 5 -> 2: 128 * 2^3
    (3, 32, 4, 8192),  # padding 1: 32 -> 16 -> 8 -> 4
    (3, 16, 2, 1024)])
def test_conv3dnet_output_shapes(channel, size, side, feat):
    torch.manual_seed(0)
    model = get_network("Conv3DNet", channel, 10, (size,) * 3)
    x = _clip(channel, (size,) * 3)
    with torch.no_grad():
        features, logits = model.embed(x), model(x)
    assert model.feature_size == (side,) * 3 and 128 * side ** 3 == feat
    assert features.shape == (2, feat) and logits.shape == (2, 10)
    assert model.classifier.in_features == feat and torch.isfinite(logits).all()
    torch.testing.assert_close(model.classifier(features), logits)


def test_conv3dnet_non_cubic_volume():
    model = get_network("Conv3DNetW32", 1, 4, (16, 32, 8))
    assert model.feature_size == (2, 4, 1)
    assert model.embed(_clip(1, (16, 32, 8))).shape == (2, 32 * 2 * 4 * 1)


def test_conv3dnet_default_architecture():
    model = get_network("Conv3DNet", 1, 10, (32, 32, 32))
    assert isinstance(model, Conv3DNet) and not isinstance(model, (ConvNet, ConvNet3D))
    convs = _volume_convs(model)
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 128), (128, 128), (128, 128)]
    assert all(c.kernel_size == (3, 3, 3) and c.stride == (1, 1, 1) for c in convs)
    assert [c.padding for c in convs] == [(3, 3, 3), (1, 1, 1), (1, 1, 1)]
    assert [c.padding for c in _volume_convs(get_network("Conv3DNet", 3, 10, (32, 32, 32)))] == [(1, 1, 1)] * 3
    kinds = [type(m) for m in model.features]
    assert kinds == [nn.Conv3d, nn.GroupNorm, nn.ReLU, nn.AvgPool3d] * 3
    norms = [m for m in model.features if isinstance(m, nn.GroupNorm)]
    assert all(n.num_groups == n.num_channels == 128 and n.affine for n in norms)  # ConvNet's instancenorm
    assert all(p.kernel_size == 2 and p.stride == 2 for p in model.features if isinstance(p, nn.AvgPool3d))
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 8192
    # convs (1*128 + 2 * 128*128) * 27 + biases 3*128, norms 3 * 2*128, classifier 8192*10 + 10
    assert sum(p.numel() for p in model.parameters()) == (128 + 2 * 128 * 128) * 27 + 384 + 768 + 81930


@pytest.mark.parametrize("name, width, depth, norm", [
    ("Conv3DNet", 128, 3, nn.GroupNorm), ("Conv3DNetW32", 32, 3, nn.GroupNorm),
    ("Conv3DNetW256", 256, 3, nn.GroupNorm), ("Conv3DNetD1", 128, 1, nn.GroupNorm),
    ("Conv3DNetD4", 128, 4, nn.GroupNorm), ("Conv3DNetD5", 128, 5, nn.GroupNorm), ("Conv3DNetW10", 10, 3, nn.GroupNorm),
    ("Conv3DNetNN", 128, 3, None), ("Conv3DNetBN", 128, 3, nn.BatchNorm3d), ("Conv3DNetIN", 128, 3, nn.GroupNorm),
    ("Conv3DNetGN", 128, 3, nn.GroupNorm)])
def test_conv3dnet_names(name, width, depth, norm):
    model = get_network(name, 1, 10, (64, 64, 64))  # large enough for depth 5; building is cheap
    assert isinstance(model, Conv3DNet)
    assert [c.out_channels for c in _volume_convs(model)] == [width] * depth
    norms = [m for m in model.features if isinstance(m, (nn.GroupNorm, nn.BatchNorm3d))]
    assert len(norms) == (0 if norm is None else depth) and all(type(n) is norm for n in norms)
    groups = {"Conv3DNetGN": 4}.get(name, width)
    assert all(n.num_groups == groups for n in norms if isinstance(n, nn.GroupNorm))
    assert sum(isinstance(m, nn.AvgPool3d) for m in model.features) == depth


def test_conv3dnet_too_small_volume_is_a_user_error():
    assert Conv3DNet.min_side(1, 3) == 4 and Conv3DNet.min_side(3, 3) == 8 and Conv3DNet.min_side(1, 4) == 12
    with pytest.raises(UserError) as info:
        get_network("Conv3DNet", 1, 10, (3, 16, 16))
    message = str(info.value)
    assert "(3, 16, 16)" in message and ">= 4" in message and "3 block(s)" in message
    with pytest.raises(UserError, match=r"\(16, 16, 7\).*>= 8"):
        get_network("Conv3DNet", 3, 10, (16, 16, 7))
    with pytest.raises(UserError, match=r">= 12"):
        get_network("Conv3DNetD4", 1, 10, (11, 11, 11))
    for channel, depth in [(1, 1), (1, 3), (3, 3), (1, 4), (3, 4)]:
        side = Conv3DNet.min_side(channel, depth)
        model = Conv3DNet(channel, 3, (side,) * 3, width=4, depth=depth)
        assert model(_clip(channel, (side,) * 3)).shape == (2, 3)
        if side > 1:  # (a single 1-channel block takes any side: 1 -> 5 -> 2)
            assert model.feature_size == (1, 1, 1)
            with pytest.raises(UserError, match=f">= {side}"):
                Conv3DNet(channel, 3, (side, side, side - 1), width=4, depth=depth)


@pytest.mark.parametrize("im_size", [(32, 32), (28, 28), (1, 16, 16, 16), (16,)])
def test_conv3dnet_needs_volumes(im_size):
    with pytest.raises(UserError, match=r"Conv3DNet is for volumes \(C, D, H, W\)"):
        get_network("Conv3DNet", 1, 10, im_size)


@pytest.mark.parametrize("name", ["Conv3Dnet", "Conv3DNetD0", "Conv3DNetW0", "Conv3DNetW", "Conv3DNetLN",
                                  "Conv3DNetW64D2", "Conv3DNet-3", "Conv3DNetAP", "Conv2DNet"])
def test_conv3dnet_unknown_names(name):
    with pytest.raises(UserError, match="Conv3DNetGN"):
        get_network(name, 1, 10, (16, 16, 16))


def test_conv3dnet_overrides_and_bad_values():
    model = get_network("Conv3DNetD2", 1, 10, (16, 16, 16), norm="batchnorm", width=16)
    assert sum(isinstance(m, nn.BatchNorm3d) for m in model.modules()) == 2
    assert model.classifier.in_features == 16 * 5 ** 3  # 16 -> 20 -> 10 -> 10 -> 5
    with pytest.raises(ValueError, match="instancenorm"):
        get_network("Conv3DNet", 1, 10, (16, 16, 16), norm="bogus")
    with pytest.raises(UserError, match="divisible by 4"):
        get_network("Conv3DNetGN", 1, 10, (16, 16, 16), width=10)


@pytest.mark.parametrize("mode, model, expected", [
    ("S", "Conv3DNet", ["Conv3DNet"]), ("S", "Conv3DNetBN", ["Conv3DNet"]), ("S", "Conv3DNetW64", ["Conv3DNetW64"]),
    ("C", "Conv3DNet", ["Conv3DNet"]), ("C", "Conv3DNetD2", ["Conv3DNetD2", "Conv3DNet"]),
    ("W", "Conv3DNet", ["Conv3DNetW32", "Conv3DNetW64", "Conv3DNetW128", "Conv3DNetW256"]),
    ("D", "Conv3DNetW32", ["Conv3DNetD1", "Conv3DNetD2", "Conv3DNetD3"]),
    ("N", "Conv3DNetBN", ["Conv3DNetNN", "Conv3DNetBN", "Conv3DNetIN", "Conv3DNetGN"])])
def test_conv3dnet_eval_pool(mode, model, expected):
    assert get_eval_pool(mode, model) == expected
    for name in expected:
        assert isinstance(get_network(name, 1, 10, (16, 16, 16)), Conv3DNet)


@pytest.mark.parametrize("mode", ["M", "A", "P"])
def test_conv3dnet_eval_pool_undefined_modes(mode):
    with pytest.raises(UserError) as info:
        get_eval_pool(mode, "Conv3DNetW64")
    message = str(info.value)
    assert f"'{mode}'" in message and "voxel network 'Conv3DNetW64'" in message and "S, W, D, N, C" in message
    assert get_eval_pool(mode, "ConvNet")  # still defined for the image networks


@pytest.mark.parametrize("model,shape", [("ConvNetW32", (1, 28, 28)), ("ConvNet3DW32", (1, 4, 48, 48)),
                                         ("Conv3DNetW32", (1, 8, 8, 8)), ("ConvNetBN", (1, 28, 28))])
def test_dm_embeds_the_real_batch_in_chunks_with_the_same_numbers(model, shape, monkeypatch):
    from common import dm
    torch.manual_seed(0)
    net = get_network(model, shape[0], 10, shape[1:]).train()
    x = torch.randn(150, *shape)
    with torch.no_grad():
        whole = net.embed(x).mean(0)
        seen = []
        monkeypatch.setattr(net, "embed", lambda part: seen.append(len(part)) or type(net).embed(net, part))
        chunked = dm.mean_real_embedding(net, x)
    assert torch.equal(whole, chunked)
    # a batch-norm network's instances see each other's statistics: it takes the batch whole
    assert seen == ([150] if model == "ConvNetBN" else [64, 64, 22])
