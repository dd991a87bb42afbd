"""Synthetic sets: DDiF fields, FreD coefficients, pixels."""
import math

import numpy as np
import pytest
import scipy.fft
import torch

from common.data import RealData
from common.errors import UserError
from common.optim import FieldAdam
from common.synsets import DDiF, FreD, Pixel
from common.synsets import ddif as ddif_mod
from common.synsets.ddif import coordinate_grid, params_per_field
from common.synsets.fred import dct_matrix, dctn, top_variance_frequencies


def fake_real(n_per_class=6, classes=3, channel=1, size=(8, 8), seed=0) -> RealData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_per_class * classes, channel, *size, generator=g)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return RealData(name="fake", channel=channel, im_size=size, num_classes=classes,
                    class_names=[str(c) for c in range(classes)], mean=[0.0] * channel, std=[1.0] * channel,
                    images_train=x, labels_train=y, images_test=x, labels_test=y,
                    indices_class=[torch.nonzero(y == c).squeeze(1) for c in range(classes)])


def reference_siren(coords_pd, weights, biases, w0_initial, w0):
    """Field by field, written independently of the batched code: (P, d) -> list of (P, C)."""
    outs = []
    for i in range(weights[0].shape[0]):
        h = coords_pd
        for l, (w, b) in enumerate(zip(weights, biases)):
            z = h @ w[i].T + b[i]
            if l == len(weights) - 1:
                h = z
            else:
                h = torch.sin((w0_initial if l == 0 else w0) * z)
        outs.append(h)
    return outs


# ---- DDiF -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size,channel,layers", [((7, 5), 3, 2), ((4, 6, 5), 1, 3)])
@pytest.mark.parametrize("fields_per_chunk", [100, 1, 3])  # one chunk / one field per chunk / a ragged last chunk
def test_batched_decode_matches_per_field_reference(monkeypatch, device, size, channel, layers, fields_per_chunk):
    for name in ("CHUNK_ELEMENTS", "CHUNK_ELEMENTS_CUDA"):
        monkeypatch.setattr(ddif_mod, name, fields_per_chunk * math.prod(size) * 5)
    s = DDiF(2, channel, size, ipc=4, dipc=3, num_layers=layers, layer_size=5, w0_initial=30, w0=10).to(device)
    idx = torch.tensor([0, 2, 3, 5], device=device)
    out = s.decode(idx)
    assert out.shape == (4, channel, *size)
    g_out = torch.randn_like(out)
    (out * g_out).sum().backward()
    grads = [w.grad.clone() for w in s.weights] + [b.grad.clone() for b in s.biases]

    ws = [w.detach().clone().requires_grad_() for w in s.weights]
    bs = [b.detach().clone().requires_grad_() for b in s.biases]
    coords = coordinate_grid(size, device)
    ref = reference_siren(coords, [w[idx] for w in ws], [b[idx] for b in bs], 30.0, 10.0)
    ref = torch.stack([r.T.reshape(channel, *size) for r in ref])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    (ref * g_out).sum().backward()
    for got, want in zip(grads, [w.grad for w in ws] + [b.grad for b in bs]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # fields not decoded got exactly zero gradient
    assert grads[0][[1, 4]].abs().sum() == 0


def test_siren_init_ranges():
    s = DDiF(10, 3, (32, 32), ipc=10, layer_size=6, num_layers=3, w0_initial=30, w0=10)
    first_bound = 1 / 2
    assert s.weights[0].abs().max() <= first_bound and s.biases[0].abs().max() <= first_bound
    assert s.weights[0].abs().max() > 0.95 * first_bound  # uniform over the whole range
    for w, b in zip(s.weights[1:], s.biases[1:]):
        bound = math.sqrt(6 / w.shape[-1]) / 10
        assert w.abs().max() <= bound and b.abs().max() <= bound
        assert w.abs().max() > 0.95 * bound
        assert abs(w.mean().item()) < 0.05 * bound


@pytest.mark.parametrize("cfg,ppf,per_class", [
    # (classes, channel, size, ipc, num_layers, width, dim_in)
    ((10, 3, (32, 32), 1, 2, 6), 81, 37), ((10, 3, (32, 32), 10, 2, 6), 81, 379), ((10, 3, (32, 32), 50, 2, 20), 543, 282),
    ((100, 3, (32, 32), 1, 2, 10), 173, 17), ((100, 3, (32, 32), 10, 2, 15), 333, 92),
    ((100, 3, (32, 32), 50, 2, 30), 1113, 138),
    ((10, 3, (128, 128), 1, 3, 20), 963, 51), ((10, 3, (128, 128), 50, 3, 40), 3523, 697),
    ((10, 1, (32, 32, 32), 1, 3, 20), 941, 34), ((10, 1, (28, 28), 1, 2, 6), 67, 11),
])
def test_budget_arithmetic(cfg, ppf, per_class):
    classes, channel, size, ipc, layers, width = cfg
    s = DDiF(classes, channel, size, ipc, num_layers=layers, layer_size=width)
    assert s.params_per_instance() == ppf
    assert s.n_per_class == per_class == ipc * channel * math.prod(size) // ppf
    b = s.budget()
    assert b["used"] == classes * per_class * ppf <= b["allowed"] == classes * ipc * channel * math.prod(size)
    assert sum(p.numel() for p in s.parameters()) == b["used"]


def test_video_field_size_and_dipc():
    assert params_per_field(3, 6, 40, 3) == 8483
    s = DDiF(2, 3, (4, 6, 6), ipc=1, dipc=1, num_layers=2, layer_size=4)
    assert s.n_per_class == 1
    assert s.get()[0].shape == (2, 3, 4, 6, 6)


def test_budget_errors():
    with pytest.raises(UserError, match="does not fit the budget"):
        DDiF(10, 1, (28, 28), ipc=1, layer_size=40)
    with pytest.raises(UserError, match="more than the budget"):
        DDiF(10, 1, (28, 28), ipc=1, layer_size=6, dipc=12)
    with pytest.raises(UserError, match="channel"):
        DDiF(10, 1, (28, 28), ipc=1, dim_out=3)
    with pytest.raises(UserError, match="dim_in"):
        DDiF(10, 1, (28, 28), ipc=1, dim_in=3)


def test_coordinate_grids_2d_and_3d():
    g2 = coordinate_grid((2, 3))
    assert g2.tolist() == [[-1, -1], [-1, 0], [-1, 1], [1, -1], [1, 0], [1, 1]]
    g3 = coordinate_grid((2, 2, 3))
    assert g3.shape == (12, 3)
    assert g3[:, 0].tolist() == [-1] * 6 + [1] * 6 and g3[:3, 2].tolist() == [-1, 0, 1]


def test_decode_at_another_resolution():
    s = DDiF(2, 1, (28, 28), ipc=1, layer_size=6)
    with torch.no_grad():
        native, _ = s.get()
        fine, _ = s.get(res=55)  # linspace(-1, 1, 55) holds every point of linspace(-1, 1, 28)
        big, _ = s.get(res=(64, 40))
    assert fine.shape == (s.n_total, 1, 55, 55) and big.shape == (s.n_total, 1, 64, 40)
    torch.testing.assert_close(fine[..., ::2, ::2], native, rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError):
        Pixel(2, 1, (28, 28), 1).get(res=56)


def test_field_adam_equals_adam_over_separate_modules():
    torch.manual_seed(1)
    n = 5
    stacked = [torch.randn(n, 3, 2, requires_grad=True), torch.randn(n, 3, requires_grad=True)]
    separate = [[stacked[0][i].detach().clone().requires_grad_(), stacked[1][i].detach().clone().requires_grad_()]
                for i in range(n)]
    active = {"mask": None}
    opt_b = FieldAdam(stacked, lr=0.01, active=lambda: active["mask"])
    opt_s = torch.optim.Adam([p for pair in separate for p in pair], lr=0.01)
    schedule = [[0, 1, 2, 3, 4], [1, 3], [0, 1], [4], [0, 1, 2, 3, 4], [2]]
    for fields in schedule:
        target = torch.randn(n, 3)
        mask = torch.zeros(n, dtype=torch.bool)
        mask[fields] = True
        active["mask"] = mask
        opt_b.zero_grad(set_to_none=True)
        opt_s.zero_grad(set_to_none=True)
        loss_b = sum(((stacked[0][i] @ torch.ones(2) + stacked[1][i] - target[i]) ** 2).sum() for i in fields)
        loss_b.backward()
        loss_s = sum(((separate[i][0] @ torch.ones(2) + separate[i][1] - target[i]) ** 2).sum() for i in fields)
        loss_s.backward()
        before = [p.detach().clone() for p in stacked]
        opt_b.step()
        opt_s.step()
        untouched = [i for i in range(n) if i not in fields]
        for p, b in zip(stacked, before):  # inactive fields do not move
            assert torch.equal(p[untouched], b[untouched])
        for i in range(n):
            torch.testing.assert_close(stacked[0][i], separate[i][0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(stacked[1][i], separate[i][1], rtol=1e-5, atol=1e-6)
    steps = opt_b.state[stacked[0]]["step"]
    assert steps.tolist() == [3, 4, 3, 3, 3]  # a step count per field


def test_ddif_untouched_fields_keep_weights_moments_and_steps():
    """DM steps on one class: other classes' fields get no gradient and must not move."""
    s = DDiF(3, 1, (8, 8), ipc=2, dipc=2, layer_size=4)
    opt = s.make_optimizer(lr=1e-2)
    for c in (0, 1, 2, 0):  # every class once, then class 0 again
        opt.zero_grad(set_to_none=True)
        before = [p.detach().clone() for p in s.parameters()]
        moments = [opt.state[p]["exp_avg"].clone() for p in s.parameters()] if opt.state else None
        x, _ = s.get(s.class_indices(c))
        x.square().mean().backward()
        opt.step()
        others = torch.cat([s.class_indices(k) for k in range(3) if k != c])
        for i, (p, b) in enumerate(zip(s.parameters(), before)):
            assert torch.equal(p[others], b[others])
            assert not torch.equal(p[s.class_indices(c)], b[s.class_indices(c)])
            if moments is not None:
                assert torch.equal(opt.state[p]["exp_avg"][others], moments[i][others])
    assert opt.state[s.weights[0]]["step"].tolist() == [2, 2, 1, 1, 1, 1]


def test_warm_start_fits_real_instances_like_separate_fits(monkeypatch):
    real = fake_real(size=(8, 8))
    s = DDiF(3, 1, (8, 8), ipc=4, dipc=2, layer_size=8, epochs_init=300, lr_nf_init=1e-2)
    targets = s.init_from_real(real, torch.Generator().manual_seed(0), progress=False)
    assert targets.shape == (6, 1, 8, 8)
    with torch.no_grad():
        mse = (s.get()[0] - targets).square().mean().item()
    assert mse < 0.5 * targets.square().mean().item()
    # field 0 fitted alone gives the same weights as in the batched fit
    solo = DDiF(1, 1, (8, 8), ipc=2, dipc=1, layer_size=8)
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        s.reset_parameters(g)
        for a, b in zip(solo.parameters(), s.parameters()):
            a.copy_(b[:1])
    monkeypatch.setattr(ddif_mod, "CHUNK_ELEMENTS", 64 * 8 * ddif_mod.FIT_CHUNK_DIVISOR)  # chunks of 1 field
    s.fit(targets, 20, 1e-2, generator=torch.Generator().manual_seed(5), progress=False)
    opt = torch.optim.Adam(solo.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        (solo.get()[0] - targets[:1]).square().mean().backward()
        opt.step()
    for a, b in zip(solo.parameters(), s.parameters()):
        torch.testing.assert_close(a, b[:1], rtol=1e-4, atol=1e-5)


# ---- FreD -------------------------------------------------------------------------------------------

def test_dct_matches_scipy_and_round_trips():
    x = torch.randn(3, 2, 8, 6, dtype=torch.float64)
    mats = [dct_matrix(8, torch.float64), dct_matrix(6, torch.float64)]
    X = dctn(x, mats)
    np.testing.assert_allclose(X.numpy(), scipy.fft.dctn(x.numpy(), axes=(2, 3), norm="ortho"), atol=1e-10)
    torch.testing.assert_close(dctn(X, mats, inverse=True), x)
    v = torch.randn(2, 1, 4, 5, 6, dtype=torch.float64)
    mats3 = [dct_matrix(n, torch.float64) for n in (4, 5, 6)]
    np.testing.assert_allclose(dctn(v, mats3).numpy(), scipy.fft.dctn(v.numpy(), axes=(2, 3, 4), norm="ortho"),
                               atol=1e-10)


def test_fred_mask_picks_top_variance_frequencies():
    g = torch.Generator().manual_seed(0)
    n, size = 200, (8, 8)
    spec = torch.zeros(n, 2, 64)
    strong = {0: [5, 17, 40], 1: [0, 63, 9]}
    for ch, freqs in strong.items():
        for rank, f in enumerate(freqs):
            spec[:, ch, f] = (3 - rank) * 5 * torch.randn(n, generator=g)
    spec += 0.01 * torch.randn(spec.shape, generator=g)
    assert [sorted(r) for r in top_variance_frequencies(spec, 3).tolist()] == [sorted(strong[0]), sorted(strong[1])]
    # through FreD.init_from_real on images whose DCT has that spectrum
    mats = [dct_matrix(8), dct_matrix(8)]
    images = dctn(spec.view(n, 2, *size), mats, inverse=True)
    y = torch.zeros(n, dtype=torch.long)
    real = RealData("fake", 2, size, 1, ["a"], [0, 0], [1, 1], images, y, images, y, [torch.arange(n)])
    f = FreD(1, 2, size, ipc=1, msz_per_channel=3)
    assert f.n_per_class == 64 // 3
    chosen = f.init_from_real(real, torch.Generator().manual_seed(0))
    assert [sorted(r) for r in f.freq_index[0].tolist()] == [sorted(strong[0]), sorted(strong[1])]
    # decoded instances are the real ones projected on the kept frequencies
    with torch.no_grad():
        decoded, labels = f.get()
    kept = torch.zeros(2, 64)
    kept.scatter_(1, f.freq_index[0], 1.0)
    proj = dctn(dctn(chosen, mats).flatten(2).mul(kept).view_as(chosen), mats, inverse=True)
    torch.testing.assert_close(decoded, proj, rtol=1e-4, atol=1e-4)
    assert f.budget()["used"] == f.n_total * 2 * 3


def test_fred_budget_error():
    with pytest.raises(UserError):
        FreD(10, 1, (28, 28), ipc=1, msz_per_channel=1000)


# ---- all synsets ------------------------------------------------------------------------------------

# building by name, decoded shapes and labels, the budget, an optimiser step and the payload/file round trips of
# every synthetic set on image, clip and voxel sizes: tests/test_registries.py::test_synset_contract


def test_pixel_init_takes_real_images():
    real = fake_real()
    p = Pixel(3, 1, (8, 8), ipc=2)
    chosen = p.init_from_real(real, torch.Generator().manual_seed(0))
    torch.testing.assert_close(p.get()[0].detach(), chosen)
    for c in range(3):
        for img in chosen[p.class_indices(c)]:
            assert any(torch.equal(img, r) for r in real.images_train[real.indices_class[c]])
