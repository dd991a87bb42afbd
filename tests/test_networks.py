"""Tests of common/networks.py: every registered network, the name parser and the eval pools."""
import pytest
import torch
from torch import nn

from common.errors import UserError
from common.networks import (EVAL_MODES, ConvNet, get_eval_pool, get_network, list_networks)

NAMES = list_networks()
INPUTS = {"1x28x28": (1, (28, 28)), "3x32x32": (3, (32, 32))}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Batches of 2 gain nothing from intra-op threads, and one thread keeps this file fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(channel, im_size, n=2):
    return torch.randn(n, channel, *im_size, generator=torch.Generator().manual_seed(0))


def test_list_networks_has_every_legacy_name():
    legacy = (["ConvNet"] + [f"ConvNetD{d}" for d in range(1, 9)]
              + [f"ConvNetW{w}" for w in (32, 64, 128, 256, 512, 1024)]
              + ["ConvNetAS", "ConvNetAR", "ConvNetAL", "ConvNetNN", "ConvNetBN", "ConvNetLN", "ConvNetIN",
                 "ConvNetGN", "ConvNetNP", "ConvNetMP", "ConvNetAP", "MLP", "LeNet", "AlexNet", "AlexNetBN",
                 "VGG11", "VGG11BN", "ResNet18", "ResNet18BN", "ResNet18BN_AP", "ResNet18_AP"])
    assert sorted(NAMES) == sorted(legacy)
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("shape", INPUTS, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_forward_and_embed(name, shape):
    channel, im_size = INPUTS[shape]
    torch.manual_seed(0)
    model = get_network(name, channel, 10, im_size)
    assert isinstance(model.classifier, nn.Linear)
    x = _batch(channel, im_size)
    with torch.no_grad():
        logits = model(x)
        features = model.embed(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    assert features.shape == (2, model.classifier.in_features)
    torch.testing.assert_close(model.classifier(features), logits)


@pytest.mark.parametrize("name", NAMES)
def test_functional_call_matches_module(name):
    torch.manual_seed(0)
    model = get_network(name, 3, 10, (32, 32))
    x = _batch(3, (32, 32))
    with torch.no_grad():
        expected = model(x)
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    state = {**params, **{k: v.clone() for k, v in model.named_buffers()}}
    out = torch.func.functional_call(model, state, (x,))
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.sum(), list(params.values()), allow_unused=False)
    assert all(torch.isfinite(g).all() for g in grads)


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


@pytest.mark.parametrize("mode", EVAL_MODES)
def test_eval_pools_hold_valid_names(mode):
    for name in get_eval_pool(mode, "ConvNetBN"):
        get_network(name, 3, 10, (32, 32))


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
