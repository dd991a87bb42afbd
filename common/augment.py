"""Differentiable Siamese Augmentation (DSA) and ZCA whitening.

DSA (Zhao & Bilen, 2021) is differentiable, so gradients reach the synthetic images. It has two modes, as in
the original code, each its own method:

    dsa = DSA()                                # 'color_crop_cutout_flip_scale_rotate', one op group per call
    real_aug = dsa.siamese(real, seed)         # DC/DM matching: ONE transform for the whole call, so the
    syn_aug = dsa.siamese(syn, seed)           # real batch and the class's synthetic batch get the same one
    x_aug = dsa.per_sample(x, seed)            # training batches: every sample its own transform

Randomness: every random number comes from local CPU generators seeded from ``seed``; the global RNG is never
touched. Each random parameter is a per-sample stream drawn in fixed-size blocks, each block from its own
generator seeded by (seed, parameter, block), so sample i's parameters depend only on (seed, i), never on the
batch size. Siamese mode gives every sample the parameters of sample 0 of that stream (the original draws
per-sample parameters and then copies the first sample's to all).

Inputs are images (B, C, H, W) or videos (B, C, T, H, W); a video sample gets one transform for all its frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import UserError, choice_error
from .utils import derive_seed

__all__ = ["DSAParams", "DSA", "DSA_OPS", "DEFAULT_STRATEGY", "IDENTITY_STRATEGIES", "zca_whiten"]


@dataclass(frozen=True)
class DSAParams:
    """Strengths of the DSA ops (defaults of the original DSA code)."""

    flip: float = 0.5  # probability of a horizontal flip
    scale: float = 1.2  # per-axis scale drawn from [1/scale, scale]
    rotate: float = 15.0  # angle drawn from [-rotate, rotate] degrees
    crop: float = 0.125  # translation by up to crop * size pixels, zero padded
    cutout: float = 0.5  # side of the zeroed square, as a fraction of the size
    brightness: float = 1.0  # add a value drawn from [-brightness/2, brightness/2]
    saturation: float = 2.0  # scale the deviation from the channel mean by a value in [0, saturation]
    contrast: float = 0.5  # scale the deviation from the sample mean by a value in [contrast, contrast + 1]


DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
DSA_OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
IDENTITY_STRATEGIES = ("", "none")

_BLOCK = 128  # samples per independently seeded block of a random stream


class _Draws:
    """Per-sample uniform random numbers in [0, 1) for one call, keyed by parameter name.

    ``uniform(name)`` returns shape (B * steps,) on the target device: B values of the stream `name`,
    each repeated `steps` times (all frames of a video share their sample's parameters). With ``shared``
    (siamese mode) all B values are the stream's first one.
    """

    def __init__(self, seed: int, batch: int, steps: int, device: torch.device, dtype: torch.dtype,
                 shared: bool):
        self.seed, self.batch, self.steps, self.shared = int(seed), batch, steps, shared
        self.device, self.dtype = device, dtype
        self._gen = torch.Generator(device="cpu")

    def _cpu(self, name: str, n: int) -> Tensor:
        blocks = []
        for b in range(max(1, math.ceil(n / _BLOCK))):
            self._gen.manual_seed(derive_seed("dsa", self.seed, name, b))
            blocks.append(torch.rand(_BLOCK, generator=self._gen, dtype=torch.float64))
        return torch.cat(blocks)[:n]

    def _per_row(self, name: str) -> Tensor:
        """(B * steps,) values of stream `name` on the CPU."""
        if self.shared:
            return self._cpu(name, 1).expand(self.batch * self.steps)
        u = self._cpu(name, self.batch)
        return u.repeat_interleave(self.steps) if self.steps > 1 else u

    def uniform(self, name: str) -> Tensor:
        return self._per_row(name).to(device=self.device, dtype=self.dtype)

    def integers(self, name: str, low: int, high: int) -> Tensor:
        """Per-sample integers in [low, high] (inclusive), as int64 on the target device."""
        k = (self._per_row(name) * (high - low + 1)).floor().long().clamp(max=high - low) + low
        return k.to(self.device)

    def choice(self, name: str, n: int) -> int:
        """One index in [0, n) for the whole batch."""
        return int(min(int(self._cpu(name, 1)[0].item() * n), n - 1))


class DSA:
    """Differentiable Siamese Augmentation.

    Args:
        strategy: '_'-separated op groups among :data:`DSA_OPS`; '' or 'none' is the identity.
        params: strengths of the ops.
        single_op: True (the original 'S' mode) applies one op group per call, picked at random from the
            seed; False applies every group in the order given.
    """

    def __init__(self, strategy: str = DEFAULT_STRATEGY, params: DSAParams = DSAParams(), single_op: bool = True):
        self.strategy = strategy
        self.params = params
        self.single_op = single_op
        if strategy in IDENTITY_STRATEGIES:
            self.ops: tuple[str, ...] = ()
        else:
            self.ops = tuple(strategy.split("_"))
            for op in self.ops:
                if op not in DSA_OPS:
                    raise choice_error("DSA op", op, DSA_OPS)

    def __repr__(self) -> str:
        return f"DSA(strategy={self.strategy!r}, params={self.params}, single_op={self.single_op})"

    def siamese(self, x: Tensor, seed: int) -> Tensor:
        """One transform, drawn from ``seed``, for every sample of ``x`` (DC and DM matching: the real batch and
        the synthetic batch of a class, called with the same seed, get the same transform)."""
        return self._apply(x, seed, shared=True)

    def per_sample(self, x: Tensor, seed: int) -> Tensor:
        """Every sample its own transform, drawn from (``seed``, its index) (training batches)."""
        return self._apply(x, seed, shared=False)

    def _apply(self, x: Tensor, seed: int, shared: bool) -> Tensor:
        if x.dim() not in (4, 5):
            raise UserError(
                f"DSA expects images (B, C, H, W) or videos (B, C, T, H, W); got a tensor of shape {tuple(x.shape)}"
            )
        if not self.ops:
            return x
        video = x.dim() == 5
        batch = x.shape[0]
        frames = x.shape[2] if video else 1
        if video:  # (B, C, T, H, W) -> (B*T, C, H, W), frames of a sample adjacent
            b, c, t, h, w = x.shape
            x4 = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        else:
            x4 = x
        draws = _Draws(seed, batch, frames, x.device, x.dtype if x.is_floating_point() else torch.float32, shared)
        ops = (self.ops[draws.choice("op", len(self.ops))],) if self.single_op else self.ops
        for op in ops:
            x4 = getattr(self, "_" + op)(x4, draws)
        if video:
            x4 = x4.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return x4

    # --- op groups on (N, C, H, W), N = B * frames -----------------------------------------------------------

    def _color(self, x: Tensor, d: _Draws) -> Tensor:
        p = self.params
        x = x + ((d.uniform("brightness") - 0.5) * p.brightness).view(-1, 1, 1, 1)
        mean_c = x.mean(dim=1, keepdim=True)
        x = (x - mean_c) * (d.uniform("saturation") * p.saturation).view(-1, 1, 1, 1) + mean_c
        # contrast: deviation from the mean of the whole sample (all frames of a video)
        mean_s = x.reshape(d.batch, -1).mean(dim=1).repeat_interleave(d.steps).view(-1, 1, 1, 1)
        return (x - mean_s) * (d.uniform("contrast") + p.contrast).view(-1, 1, 1, 1) + mean_s

    def _crop(self, x: Tensor, d: _Draws) -> Tensor:
        n, c, h, w = x.shape
        sy, sx = int(h * self.params.crop + 0.5), int(w * self.params.crop + 0.5)
        if sy == 0 and sx == 0:
            return x
        ty = d.integers("crop_y", -sy, sy)  # output row r reads input row r - ty
        tx = d.integers("crop_x", -sx, sx)
        padded = F.pad(x, (sx, sx, sy, sy))
        rows = torch.arange(h, device=x.device).view(1, h) + sy - ty.view(n, 1)  # (N, H)
        cols = torch.arange(w, device=x.device).view(1, w) + sx - tx.view(n, 1)  # (N, W)
        idx = torch.arange(n, device=x.device).view(n, 1, 1)
        out = padded[idx, :, rows.view(n, h, 1), cols.view(n, 1, w)]  # (N, H, W, C)
        return out.permute(0, 3, 1, 2)

    def _cutout(self, x: Tensor, d: _Draws) -> Tensor:
        n, c, h, w = x.shape
        ch, cw = int(h * self.params.cutout + 0.5), int(w * self.params.cutout + 0.5)
        if ch == 0 or cw == 0:
            return x
        # the square's centre, as the original: randint(0, size + (1 - side % 2)) per axis, i.e. [0, size] for an
        # even side (the square then clips at the far edge as far as at the near one), [0, size - 1] for an odd one
        top = d.integers("cutout_y", 0, h - ch % 2) - ch // 2
        left = d.integers("cutout_x", 0, w - cw % 2) - cw // 2
        r = torch.arange(h, device=x.device).view(1, h) - top.view(n, 1)
        k = torch.arange(w, device=x.device).view(1, w) - left.view(n, 1)
        inside = ((r >= 0) & (r < ch)).view(n, h, 1) & ((k >= 0) & (k < cw)).view(n, 1, w)
        return x * (~inside).unsqueeze(1).to(x.dtype)

    def _flip(self, x: Tensor, d: _Draws) -> Tensor:
        flip = (d.uniform("flip") < self.params.flip).view(-1, 1, 1, 1)
        return torch.where(flip, x.flip(-1), x)

    def _affine(self, x: Tensor, theta: Tensor) -> Tensor:
        grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def _scale(self, x: Tensor, d: _Draws) -> Tensor:
        lo, hi = 1.0 / self.params.scale, self.params.scale
        sx = d.uniform("scale_x") * (hi - lo) + lo
        sy = d.uniform("scale_y") * (hi - lo) + lo
        zero = torch.zeros_like(sx)
        theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
        return self._affine(x, theta)

    def _rotate(self, x: Tensor, d: _Draws) -> Tensor:
        n, c, h, w = x.shape
        angle = (d.uniform("rotate") * 2 - 1) * math.radians(self.params.rotate)
        cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
        # rotation in pixel space, written in the normalised coordinates of affine_grid (same as the
        # original for square images; keeps non-square images undistorted)
        theta = torch.stack(
            [torch.stack([cos, sin * (h / w), zero], 1), torch.stack([-sin * (w / h), cos, zero], 1)], 1
        )
        return self._affine(x, theta)


def zca_whiten(train: Tensor, test: Tensor, eps: float) -> tuple[Tensor, Tensor, object]:
    """ZCA-whiten `train` and `test` with a transform fitted on the flattened `train` images.

    Returns (whitened train, whitened test, fitted kornia ZCAWhitening); ``zca.inverse_transform(x)`` maps
    whitened images (any shape with the same per-sample size) back to image space.
    """
    from kornia.enhance import ZCAWhitening

    if train.shape[1:] != test.shape[1:]:
        raise UserError(
            f"zca_whiten: train and test samples differ in shape: {tuple(train.shape[1:])} vs {tuple(test.shape[1:])}"
        )
    if train.shape[0] < 2:
        raise UserError(f"zca_whiten needs at least 2 training samples, got {train.shape[0]}")
    zca = ZCAWhitening(eps=float(eps), compute_inv=True)
    with torch.no_grad():
        zca.fit(train.reshape(train.shape[0], -1))
        train_w = zca(train.reshape(train.shape[0], -1)).reshape(train.shape)
        test_w = zca(test.reshape(test.shape[0], -1)).reshape(test.shape)
    return train_w, test_w, zca
