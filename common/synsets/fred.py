"""FreD: instances stored as a few DCT coefficients (Shin et al., NeurIPS 2023).

Per class, only the ``msz_per_channel`` frequencies (per channel) whose coefficients vary most across
that class's real instances are kept; an instance is those coefficients, decoded by scattering them
into a zero spectrum and applying the orthonormal inverse DCT-II over every spatial axis.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import UserError
from .base import Flag, SynSet, sample_real


def dct_matrix(n: int, dtype=torch.float32, device=None) -> Tensor:
    """Orthonormal DCT-II matrix D (n, n): X = D @ x, x = D.T @ X."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.to(dtype=dtype, device=device)


def dctn(x: Tensor, mats: Sequence[Tensor], inverse: bool = False) -> Tensor:
    """(Inverse) orthonormal DCT-II over the last len(mats) axes of x."""
    first = x.dim() - len(mats)
    for axis, d in enumerate(mats, start=first):
        x = torch.movedim(torch.movedim(x, axis, -1) @ (d if inverse else d.T), -1, axis)
    return x


def top_variance_frequencies(coefs: Tensor, k: int) -> Tensor:
    """coefs (n, C, P) of one class -> (C, k) indices of the k frequencies per channel with the
    largest explained variance (variance of the coefficient across instances / total variance)."""
    var = coefs.var(dim=0, unbiased=coefs.shape[0] > 1)
    explained = var / var.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return explained.topk(k, dim=-1).indices


class FreD(SynSet):
    name = "fred"
    title = "FreD (frequency coefficients)"
    flags = (Flag("msz_per_channel", int, "coefficients kept per channel"), Flag("lr_freq", float),
             Flag("mom_freq", float))

    def __init__(self, num_classes: int, channel: int, im_size: Sequence[int], ipc: int, msz_per_channel: int = 64,
                 lr_freq: float = 1e3, mom_freq: float = 0.5):
        points = math.prod(im_size)
        if not 1 <= msz_per_channel <= points:
            raise UserError(f"--msz_per_channel must be in [1, {points}] for instances of size {tuple(im_size)}, "
                            f"got {msz_per_channel}")
        self.msz_per_channel, self.lr_freq, self.mom_freq = msz_per_channel, lr_freq, mom_freq
        super().__init__(num_classes, channel, im_size, ipc)
        self.coefs = nn.Parameter(torch.zeros(self.n_total, channel, msz_per_channel))
        self.register_buffer("freq_index", torch.zeros(num_classes, channel, msz_per_channel, dtype=torch.long))
        for i, n in enumerate(self.im_size):
            self.register_buffer(f"dct{i}", dct_matrix(n), persistent=False)

    @property
    def dct_mats(self) -> list[Tensor]:
        return [getattr(self, f"dct{i}") for i in range(len(self.im_size))]

    def _instances_per_class(self) -> int:
        n = self.ipc * math.prod(self.im_size) // self.msz_per_channel
        if n < 1:
            raise UserError(f"--msz_per_channel {self.msz_per_channel} exceeds the budget of ipc {self.ipc} "
                            f"x {math.prod(self.im_size)} coefficients per channel and class")
        return n

    def params_per_instance(self) -> int:
        return self.channel * self.msz_per_channel

    def config(self) -> dict:
        return dict(super().config(), msz_per_channel=self.msz_per_channel, lr_freq=self.lr_freq,
                    mom_freq=self.mom_freq)

    def decode(self, indices: Tensor, res=None) -> Tensor:
        index = self.freq_index[self.labels[indices]]  # (n, C, k)
        spectrum = torch.zeros(len(indices), self.channel, math.prod(self.im_size), device=self.coefs.device,
                               dtype=self.coefs.dtype).scatter(2, index, self.coefs[indices])
        return dctn(spectrum.view(len(indices), self.channel, *self.im_size), self.dct_mats, inverse=True)

    @torch.no_grad()
    def init_from_real(self, real, generator: torch.Generator, progress: bool = False) -> Tensor:
        """Per class: the top-variance frequency mask from all its real instances, and the kept
        coefficients of randomly chosen real instances."""
        chosen = []
        mats = [m.to(real.images_train.device) for m in self.dct_mats]
        for c in range(self.num_classes):
            imgs = real.images_train[real.indices_class[c]]
            coefs = dctn(imgs, mats).flatten(2)
            self.freq_index[c] = top_variance_frequencies(coefs, self.msz_per_channel).to(self.freq_index.device)
            pick = sample_real(real, c, self.n_per_class, generator)
            chosen.append(pick)
            spec = dctn(pick, mats).flatten(2).to(self.coefs.device)
            idx = self.class_indices(c)
            self.coefs[idx] = spec.gather(2, self.freq_index[c].expand(len(idx), -1, -1))
        return torch.cat(chosen)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.coefs], lr=self.lr_freq, momentum=self.mom_freq)
