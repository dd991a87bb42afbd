"""Every entry of the registries, through one contract each (the fast unit tier: tiny inputs, no end-to-end run):

* every network of ``common.networks.list_networks()`` on an input of its kind (image, clip or voxel grid: read from
  the class the registry builds, see tests.helpers.network_kind): logits, features, functional calls, gradients;
* every synthetic set of ``common.synsets.SYNSETS`` on image, clip and voxel sizes: decoded shapes and labels, the
  storage budget, an optimiser step, the payload and file round trips;
* every dataset of ``common.data.DATASETS``, in every on-disk layout its loader reads, from tiny files written by the
  domain's own test writers (tests/test_data.py, test_video_data.py, test_voxel_data.py), through ``get_dataset``.

The family-specific details (architectures, heads, name parsing, eval pools; DDiF/FreD internals; each layout's
pixel values) are tested in test_networks.py, test_synsets.py and the data test files.
"""
from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from common.data import DATASETS, RealData, get_dataset
from common.domains import domain_of
from common.errors import CheckpointError
from common.networks import Conv3DNet, ConvNet3D, get_network, list_networks
from common.synsets import SYNSETS, build_synset, load_synset, synset_from_payload
from tests import test_audio, test_data, test_video_data, test_voxel_data
from tests.helpers import network_kind
from tests.test_synsets import fake_real


pytestmark = pytest.mark.usefixtures("one_thread")  # one intra-op thread (tests/conftest.py)


# ---- networks ----------------------------------------------------------------------------------------------

NUM_CLASSES = 5
# CIFAR-like, then MNIST-like (the legacy networks pad their first conv more there): the gradients are checked at the
# first input of a network only (a backward pass of the widest ConvNet is most of this file's time)
IMAGE_INPUTS = [(3, (32, 32)), (1, (28, 28))]


def _depth(name: str) -> int:
    """The number of conv blocks in the features of the 3-D network `name` (built on the meta device)."""
    with torch.device("meta"):
        model = get_network(name, 1, 2, (16, 256, 256))
    return sum(isinstance(m, nn.Conv3d) for m in model.features.modules())


def network_inputs(name: str) -> list[tuple[int, tuple[int, ...]]]:
    """(channel, size) of the inputs network `name` is tested on: images at both IMAGE_INPUTS; clips and volumes
    of 1 channel, of a size its depth accepts (the smallest clip for ConvNet3D is 43 px at depth 3, 171 at 4)."""
    kind = network_kind(name)
    if kind == "image":
        return IMAGE_INPUTS
    if kind == "clip":
        min_t, min_side = ConvNet3D.min_clip_size(_depth(name))
        return [(1, (max(8, min_t), max(48, min_side), max(48, min_side)))]
    assert kind == "voxel", kind
    return [(1, (max(16, Conv3DNet.min_side(1, _depth(name))),) * 3)]


NETWORK_CASES = [pytest.param(name, channel, size, i == 0, id=f"{name}-{channel}x{'x'.join(map(str, size))}")
                 for name in list_networks() for i, (channel, size) in enumerate(network_inputs(name))]


def test_every_network_has_a_kind_and_an_input():
    kinds = {name: network_kind(name) for name in list_networks()}
    assert set(kinds.values()) == {"image", "clip", "voxel"}
    assert {case.values[0] for case in NETWORK_CASES} == set(kinds)
    for name, kind in kinds.items():  # the kind's input has the kind's number of axes
        assert all(len(size) == {"image": 2, "clip": 3, "voxel": 3}[kind] for _, size in network_inputs(name)), name


@pytest.mark.parametrize("name, channel, im_size, backward", NETWORK_CASES)
def test_network_forward_embed_and_gradients(name, channel, im_size, backward):
    """The contract every network keeps, in training mode (batch-norm statistics of the batch; ConvNet3D's head
    dropout, reseeded before each call so that the calls draw the same mask) and in eval mode: (B, K) finite logits;
    ``embed`` is (B, F) and, for a network with a ``classifier``, the classifier's Linear input (its output is the
    logits); ``torch.func.functional_call`` with the parameters rebuilt from one flat vector, as TM's trajectories
    store them, gives the module's logits; and (at a network's first input) every parameter gets a finite,
    non-zero gradient."""
    torch.manual_seed(0)
    model = get_network(name, channel, NUM_CLASSES, im_size)
    x = torch.randn(2, channel, *im_size, generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        torch.manual_seed(1)
        logits = model(x)
        features = model.embed(x)
    assert logits.shape == (2, NUM_CLASSES) and torch.isfinite(logits).all()
    assert features.dim() == 2 and features.shape[0] == 2 and torch.isfinite(features).all()
    # every network but the video ConvNet3D (a conv head) ends in a Linear classifier that reads embed(x)
    assert hasattr(model, "classifier") != isinstance(model, ConvNet3D)
    if hasattr(model, "classifier"):
        assert isinstance(model.classifier, nn.Linear) and features.shape[1] == model.classifier.in_features
        torch.testing.assert_close(model.classifier(features), logits)

    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    flat = torch.cat([p.reshape(-1) for p in params.values()])  # TM's flat vector, in named_parameters order
    rebuilt = {k: c.view_as(p) for (k, p), c in zip(params.items(), flat.split([p.numel() for p in params.values()]))}
    torch.manual_seed(1)
    out = torch.func.functional_call(model, {**buffers, **rebuilt}, (x,))
    torch.testing.assert_close(out, logits)
    if backward:  # a parameter the logits do not depend on would get an all-zero gradient
        grads = torch.autograd.grad(out.square().sum(), list(params.values()))
        for k, g in zip(params, grads):
            assert torch.isfinite(g).all() and g.abs().sum() > 0, k

    model.eval()
    with torch.no_grad():
        expected = model(x)
        detached = {k: v.detach() for k, v in rebuilt.items()}
        out = torch.func.functional_call(model, {**dict(model.named_buffers()), **detached}, (x,))
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(out, expected)


# ---- synthetic sets ----------------------------------------------------------------------------------------

# constructor arguments that keep each parameterisation tiny (a field of 4 units, 16 coefficients per channel)
SMALL = {"ddif": dict(layer_size=4, epochs_init=20, lr_nf_init=1e-2), "fred": dict(msz_per_channel=16), "pixel": {}}
SIZES = {"image": (8, 8), "clip": (4, 8, 8), "voxel": (8, 8, 8)}
CLASSES = 3


def test_every_synset_has_a_small_config():
    assert set(SMALL) == set(SYNSETS)


def _build(name: str, size, ipc: int = 1):
    return build_synset(name, num_classes=CLASSES, channel=1, im_size=list(size), ipc=ipc, **SMALL[name])


@pytest.mark.parametrize("domain", SIZES)
@pytest.mark.parametrize("name", sorted(SYNSETS))
def test_synset_contract(name, domain, tmp_path):
    size = SIZES[domain]
    s = _build(name, size)
    assert type(s) is SYNSETS[name] and s.name == name
    init_kw = {"progress": False} if "progress" in inspect.signature(s.init_from_real).parameters else {}
    s.init_from_real(fake_real(classes=CLASSES, size=size), torch.Generator().manual_seed(0), **init_kw)

    # decoded instances and labels, class by class
    with torch.no_grad():
        x, labels = s.get()
    assert s.n_total == CLASSES * s.n_per_class and s.n_per_class >= 1
    assert x.shape == (s.n_total, 1, *size) and torch.isfinite(x).all()
    assert labels.dtype == torch.int64
    assert labels.tolist() == [c for c in range(CLASSES) for _ in range(s.n_per_class)]
    for c in range(CLASSES):
        assert (labels[s.class_indices(c)] == c).all()

    # the storage budget: what is stored (the trainable numbers) is what the budget counts, within what is allowed
    b = s.budget()
    assert b["allowed"] == s.ipc * 1 * math.prod(size) * CLASSES
    assert b["used"] == s.n_total * s.params_per_instance() == sum(p.numel() for p in s.trainable())
    assert b["used"] <= b["allowed"] and b["ratio"] == b["used"] / b["allowed"]

    # an optimiser step on class 0's instances changes them, and only them
    opt = s.make_optimizer()
    idx, others = s.class_indices(0), torch.cat([s.class_indices(c) for c in range(1, CLASSES)])
    x0, _ = s.get(idx)
    target = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    opt.zero_grad(set_to_none=True)
    (x0 - target).square().mean().backward()
    opt.step()
    with torch.no_grad():
        after, _ = s.get()
    assert not torch.equal(after[idx], x[idx]) and torch.isfinite(after).all()
    assert torch.equal(after[others], x[others])

    # the payload rebuilds the same set: identical decoded tensors and labels
    rebuilt = synset_from_payload(s.payload())
    assert type(rebuilt) is type(s) and rebuilt.config() == s.config()
    with torch.no_grad():
        again, again_labels = rebuilt.get()
    assert torch.equal(again, after) and torch.equal(again_labels, labels)

    # ... and so does the file, written atomically; a corrupted file or another configuration is a CheckpointError
    path = tmp_path / "s.pt"
    s.save(str(path))
    loaded = load_synset(str(path))
    with torch.no_grad():
        torch.testing.assert_close(loaded.get()[0], after)
    assert not list(tmp_path.glob("*.tmp*"))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_synset(str(path))
    with pytest.raises(CheckpointError, match="another configuration"):
        _build(name, size, ipc=2).load_payload(s.payload())


# ---- datasets ----------------------------------------------------------------------------------------------

# layout id -> (dataset name, writer, the byte value of every pixel of train image 0 or None); the image writers
# make train image 0 a constant image
LAYOUTS = {**{k: (name, make, test_data.CONST) for k, (name, make) in test_data.LAYOUTS.items()},
           **{k: (name, make, None) for k, (name, make) in test_video_data.LAYOUTS.items()},
           **{k: (name, make, None) for k, (name, make) in test_voxel_data.LAYOUTS.items()},
           **{k: (name, make, None) for k, (name, make) in test_audio.LAYOUTS.items()}}


def test_every_dataset_has_a_layout():
    assert sorted({name for name, _, _ in LAYOUTS.values()}) == sorted(DATASETS)


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else x[:]  # a MappedArray (video, voxels) materialises with [:]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dataset_loads(layout, tmp_path):
    name, make, const = LAYOUTS[layout]
    want = make(tmp_path)
    d = get_dataset(name, str(tmp_path), **want["kwargs"])

    assert isinstance(d, RealData) and d.name == name
    assert d.domain == domain_of(name).name
    assert (d.channel, d.im_size, d.num_classes) == (want["channel"], want["size"], want["num_classes"])
    assert len(d.class_names) == d.num_classes and len(d.mean) == len(d.std) == d.channel
    assert d.images_train.shape == (want["n_train"], d.channel, *d.im_size)
    assert d.images_test.shape == (want["n_test"], d.channel, *d.im_size)
    for x in (d.images_train, d.images_test):
        x = _tensor(x)
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
    for y, n in ((d.labels_train, want["n_train"]), (d.labels_test, want["n_test"])):
        assert y.dtype == torch.int64 and len(y) == n and 0 <= y.min() and y.max() < d.num_classes
    assert set(d.labels_train.tolist()) == set(range(d.num_classes))  # every class has training data
    assert d.zca is None

    if const is not None:  # normalisation: train image 0 is a constant image
        expected = (const / 255 - torch.tensor(d.mean)) / torch.tensor(d.std)
        first = _tensor(d.images_train)[0]
        assert torch.allclose(first, expected.view(-1, *[1] * len(d.im_size)).expand_as(first), atol=1e-4)

    # indices_class partitions the train set by label
    assert len(d.indices_class) == d.num_classes
    assert sum(len(i) for i in d.indices_class) == len(d.labels_train)
    for c, idx in enumerate(d.indices_class):
        assert idx.dtype == torch.int64 and (d.labels_train[idx] == c).all()
