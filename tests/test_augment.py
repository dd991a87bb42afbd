"""Tests for common/augment.py: DSA (siamese and per-sample modes) and ZCA whitening."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.augment import DEFAULT_STRATEGY, DSA, DSA_OPS, DSAParams, zca_whiten
from common.errors import UserError

STRATEGIES = list(DSA_OPS) + [DEFAULT_STRATEGY]
MODES = ("siamese", "per_sample")


def _images(b: int, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _run(dsa: DSA, mode: str, x: torch.Tensor, seed: int) -> torch.Tensor:
    return getattr(dsa, mode)(x, seed)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("single_op", [True, False])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_output(strategy, single_op, mode):
    x = _images(8)
    dsa = DSA(strategy, single_op=single_op)
    assert torch.equal(_run(dsa, mode, x, 123), _run(dsa, mode, x, 123))


@pytest.mark.parametrize("single_op", [True, False])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_siamese_identical_images_in_identical_images_out(strategy, single_op):
    # the original's siamese mode: one set of parameters for the whole call
    x = _images(1).expand(64, 3, 16, 16).contiguous()
    dsa = DSA(strategy, single_op=single_op)
    for seed in range(5):
        out = dsa.siamese(x, seed)
        assert torch.allclose(out, out[:1].expand_as(out), atol=1e-6), (strategy, seed)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_siamese_real_batch_and_synthetic_batch_share_one_transform(strategy):
    # DM/DC: a real batch of 256 and a class's 11 synthetic instances, called with the same seed
    real = _images(256, seed=1)
    pick = torch.tensor([3, 17, 40, 99, 128, 129, 150, 200, 230, 254, 255])
    syn = real[pick].clone()
    dsa = DSA(strategy)
    for seed in (0, 7, 2024):
        assert torch.allclose(dsa.siamese(syn, seed), dsa.siamese(real, seed)[pick], atol=1e-6), (strategy, seed)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_per_sample_identical_images_get_different_transforms(strategy):
    x = _images(1).expand(64, 3, 16, 16).contiguous()
    dsa = DSA(strategy)
    for seed in range(3):
        out = dsa.per_sample(x, seed).flatten(1)
        distinct = torch.unique(out.round(decimals=5), dim=0)
        assert len(distinct) > 1, (strategy, seed)
        if strategy != "flip":  # a flip has only two outcomes
            assert len(distinct) > 16, (strategy, seed, len(distinct))


@pytest.mark.parametrize("single_op", [True, False])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_per_sample_prefix_independent_of_batch_size(strategy, single_op):
    # sample i's transform depends on (seed, i) only: a batch of 300 (crosses the 128-sample block boundary)
    # and batches of 10 / 130 sharing its prefix
    big = _images(300, seed=1)
    dsa = DSA(strategy, single_op=single_op)
    for seed in (0, 7, 2024):
        out_big = dsa.per_sample(big, seed)
        for k in (10, 130):
            small = big[:k].clone()
            assert torch.allclose(dsa.per_sample(small, seed), out_big[:k], atol=1e-6), (strategy, seed, k)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_siamese_is_sample_zero_of_per_sample(strategy):
    x = _images(1).expand(9, 3, 16, 16).contiguous()
    dsa = DSA(strategy)
    for seed in range(4):
        ref = dsa.per_sample(x, seed)[0]
        assert torch.allclose(dsa.siamese(x, seed), ref.expand_as(x), atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_different_seeds_differ(strategy, mode):
    x = _images(8)
    dsa = DSA(strategy)
    ref = _run(dsa, mode, x, 0)
    assert any(not torch.allclose(_run(dsa, mode, x, s), ref) for s in range(1, 8))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shape_and_finite(strategy):
    for shape in [(5, 3, 16, 16), (5, 1, 28, 28), (4, 3, 12, 20)]:
        x = torch.rand(shape)
        out = DSA(strategy, single_op=False).per_sample(x, 3)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert torch.isfinite(out).all()
        assert not torch.equal(out, x)  # it did transform, at square and non-square sizes


def test_flip_probability_one_is_torch_flip():
    x = _images(6)
    out = DSA("flip", DSAParams(flip=1.0)).per_sample(x, 5)
    assert torch.equal(out, torch.flip(x, dims=[3]))
    assert torch.equal(DSA("flip", DSAParams(flip=0.0)).per_sample(x, 5), x)


@pytest.mark.parametrize("strategy", ["none", ""])
def test_identity_strategy(strategy):
    x = _images(4)
    assert torch.equal(DSA(strategy).per_sample(x, 1), x)
    assert torch.equal(DSA(strategy).siamese(x, 1), x)


def test_crop_and_cutout_zero_fill():
    x = torch.ones(16, 1, 16, 16)
    crop = DSA("crop", DSAParams(crop=0.25)).per_sample(x, 0)
    assert set(crop.unique().tolist()) <= {0.0, 1.0}
    assert (crop == 0).any()  # some sample was shifted, zero padding came in
    cut = DSA("cutout").per_sample(x, 0)
    zeros = (cut == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 8 * 8).all()  # one square of side 0.5 * 16, clipped at the border


def _original_cutout_masks(h: int, w: int, ratio: float = 0.5) -> set:
    """Every mask the original DSA cutout can make on an h x w image, computed its way: the centre drawn by
    randint(0, size + (1 - side % 2)) per axis (high exclusive), the square's rows and columns clamped into the
    image, those pixels zeroed."""
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    masks = set()
    for cy in range(0, h + (1 - ch % 2)):
        for cx in range(0, w + (1 - cw % 2)):
            m = np.ones((h, w), dtype=np.uint8)
            rows = np.clip(np.arange(ch) + cy - ch // 2, 0, h - 1)
            cols = np.clip(np.arange(cw) + cx - cw // 2, 0, w - 1)
            m[np.ix_(rows, cols)] = 0
            masks.add(m.tobytes())
    return masks


@pytest.mark.parametrize("h, w", [(16, 16), (28, 28), (15, 20)])
def test_cutout_centres_cover_the_originals_range(h, w):
    """The square's centre is drawn from [0, size] for an even side (the original's randint(0, size + 1)), so
    the square clips as far at the bottom/right edge as at the top/left; odd sides from [0, size - 1]."""
    x = torch.ones(16384, 1, h, w)  # 29 x 29 centres at 28 x 28: every one is drawn
    cut = DSA("cutout").per_sample(x, 3)[:, 0]
    seen = {m.tobytes() for m in cut.to(torch.uint8).numpy()}
    assert seen == _original_cutout_masks(h, w)


def test_single_op_picks_one_group():
    x = _images(8)
    both = DSA("flip_cutout")
    only = {op: DSA(op) for op in ("flip", "cutout")}
    seen = set()
    for seed in range(20):
        out = both.per_sample(x, seed)
        matches = [op for op, d in only.items() if torch.equal(out, d.per_sample(x, seed))]
        assert matches, seed
        seen.update(matches)
    assert seen == {"flip", "cutout"}


def test_all_ops_applied_in_order():
    x = _images(8)
    seed = 11
    out = DSA("flip_cutout", single_op=False).per_sample(x, seed)
    assert torch.equal(out, DSA("cutout").per_sample(DSA("flip").per_sample(x, seed), seed))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gradients_flow(strategy, mode):
    x = _images(6).requires_grad_(True)
    weights = _images(6, seed=9)
    (_run(DSA(strategy, single_op=False), mode, x, 4) * weights).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("single_op", [True, False])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_video_same_transform_for_all_frames(strategy, single_op, mode):
    frames = _images(5, h=12, w=12)
    video = frames.unsqueeze(2).expand(5, 3, 4, 12, 12).contiguous()  # (B, C, T, H, W), identical frames
    dsa = DSA(strategy, single_op=single_op)
    out = _run(dsa, mode, video, 8)
    assert out.shape == video.shape
    for t in range(1, 4):
        assert torch.allclose(out[:, :, t], out[:, :, 0], atol=1e-6)
    # and it is the transform the same sample gets as an image
    assert torch.allclose(out[:, :, 0], _run(dsa, mode, frames, 8), atol=1e-5)


def test_video_gradients_and_siamese():
    big = torch.rand(20, 3, 3, 8, 8)
    dsa = DSA(single_op=False)
    small = big[:4].clone().requires_grad_(True)
    out = dsa.siamese(small, 2)
    assert torch.allclose(out, dsa.siamese(big, 2)[:4], atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(small.grad).all() and small.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 3, 4, 4, 4, 4), (16,)])
def test_bad_rank_is_user_error(shape):
    with pytest.raises(UserError, match=str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")):
        DSA().per_sample(torch.rand(shape), 0)


def test_global_rng_untouched():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    for strategy in STRATEGIES:
        DSA(strategy, single_op=False).per_sample(_images(4), 1)
        DSA(strategy, single_op=False).siamese(_images(4), 1)
    assert torch.equal(torch.get_rng_state(), state)


def test_unknown_op_lists_valid_ops():
    with pytest.raises(UserError) as info:
        DSA("color_blur")
    message = str(info.value)
    assert "blur" in message
    for op in DSA_OPS:
        assert op in message


@pytest.mark.parametrize("mode", MODES)
def test_device_matches_cpu(device, mode):
    if device.type == "cpu":
        pytest.skip("compares another device with the CPU (--device cuda)")
    x = _images(16)
    dsa = DSA(single_op=False)
    out = _run(dsa, mode, x.to(device), 3)
    assert out.device.type == device.type
    assert torch.allclose(out.cpu(), _run(dsa, mode, x, 3), atol=1e-4)


def test_zca_whiten():
    g = torch.Generator().manual_seed(0)
    n, d = 500, 3 * 4 * 4
    mixing = torch.randn(d, d, generator=g) * 2.0  # strongly correlated features, variances >> eps
    train = (torch.randn(n, d, generator=g) @ mixing + 0.5).reshape(n, 3, 4, 4)
    test = (torch.randn(50, d, generator=g) @ mixing + 0.5).reshape(50, 3, 4, 4)
    train_w, test_w, zca = zca_whiten(train, test, eps=0.1)
    assert train_w.shape == train.shape and test_w.shape == test.shape

    flat = train_w.reshape(n, -1)
    cov = torch.cov(flat.T)
    assert (cov - torch.eye(d)).abs().max() < 0.15
    raw_offdiag = torch.cov(train.reshape(n, -1).T).fill_diagonal_(0).abs().max()
    assert raw_offdiag > 1.0  # the input really was correlated

    recovered = zca.inverse_transform(train_w.reshape(n, -1)).reshape(train.shape)
    assert torch.allclose(recovered, train, atol=1e-2 * train.abs().max().item())
    assert torch.allclose(zca.inverse_transform(test_w.reshape(50, -1)).reshape(test.shape), test,
                          atol=1e-2 * test.abs().max().item())


def test_zca_shape_mismatch_is_user_error():
    with pytest.raises(UserError):
        zca_whiten(torch.rand(10, 3, 4, 4), torch.rand(5, 3, 4, 5), eps=0.1)
