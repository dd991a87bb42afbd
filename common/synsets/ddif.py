"""DDiF: every synthetic instance is a small SIREN neural field (Shin et al., ICLR 2025).

All fields of a set are stored as stacked tensors -- layer l has a weight (N, out, in) and a bias
(N, out) -- and decoded together with batched matrix products, chunked over fields. The field maps
coordinates in [-1, 1]^dim_in (one axis per grid axis, 'ij' order) to dim_out values, so the same
class serves images (H, W), video (T, H, W) and voxels (D, H, W), and decodes at any resolution.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from ..errors import UserError
from ..optim import FieldAdam
from .base import SynSet, sample_real

# Decode at most this many hidden activations (fields x points x width) per chunk.
CHUNK_ELEMENTS = 1 << 20


def params_per_field(dim_in: int, num_layers: int, layer_size: int, dim_out: int) -> int:
    """Weights and biases of one SIREN: num_layers sine layers, then a linear output layer."""
    w = layer_size
    return (dim_in + 1) * w + (num_layers - 1) * (w + 1) * w + (w + 1) * dim_out


def coordinate_grid(size: Sequence[int], device=None) -> Tensor:
    """(prod(size), len(size)) coordinates, every axis spanning [-1, 1], the last axis fastest."""
    axes = [torch.linspace(-1, 1, n, device=device) for n in size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(size))


def siren_forward(xt: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor], w0_initial: float,
                  w0: float) -> Tensor:
    """Batched SIREN: coordinates xt (dim_in, P) shared by all fields -> (n, dim_out, P).

    Activations are laid out (n, width, P) so the long point axis is innermost, and the frequency w0
    is folded into the (small) weights instead of scaling the (large) activations.
    """
    h = xt.unsqueeze(0).expand(weights[0].shape[0], -1, -1)
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        if i == last:
            return torch.baddbmm(b.unsqueeze(2), w, h)
        s = w0_initial if i == 0 else w0
        h = torch.sin(torch.baddbmm((s * b).unsqueeze(2), s * w, h))
    raise AssertionError("unreachable")


class DDiF(SynSet):
    name = "ddif"
    any_resolution = True

    def __init__(self, num_classes: int, channel: int, im_size: Sequence[int], ipc: int, dipc: int = 0,
                 dim_in: Optional[int] = None, num_layers: int = 2, layer_size: int = 6, dim_out: Optional[int] = None,
                 w0_initial: float = 30.0, w0: float = 10.0, lr_nf: float = 1e-4, lr_nf_init: float = 5e-4,
                 epochs_init: int = 5000):
        dim_in = len(im_size) if dim_in is None else dim_in
        dim_out = channel if dim_out is None else dim_out
        if dim_in != len(im_size):
            raise UserError(f"--dim_in {dim_in} does not match the {len(im_size)}-D instance shape {tuple(im_size)}")
        if dim_out != channel:
            raise UserError(f"--dim_out {dim_out} does not match the dataset's {channel} channel(s)")
        if num_layers < 1 or layer_size < 1:
            raise UserError(f"--num_layers and --layer_size must be >= 1, got {num_layers}, {layer_size}")
        self.dipc, self.dim_in, self.num_layers, self.layer_size, self.dim_out = dipc, dim_in, num_layers, layer_size, dim_out
        self.w0_initial, self.w0, self.lr_nf, self.lr_nf_init, self.epochs_init = w0_initial, w0, lr_nf, lr_nf_init, epochs_init
        super().__init__(num_classes, channel, im_size, ipc)
        n, w = self.n_total, layer_size
        shapes = [(w, dim_in)] + [(w, w)] * (num_layers - 1) + [(dim_out, w)]
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(n, o, i)) for o, i in shapes])
        self.biases = nn.ParameterList([nn.Parameter(torch.empty(n, o)) for o, _ in shapes])
        self.register_buffer("coords", coordinate_grid(self.im_size).T.contiguous(), persistent=False)
        self.register_buffer("_touched", torch.zeros(n, dtype=torch.bool), persistent=False)
        self.reset_parameters()

    def _instances_per_class(self) -> int:
        ppf = self.params_per_instance()
        per_class_budget = self.ipc * self.channel * math.prod(self.im_size)
        fit = per_class_budget // ppf
        if self.dipc:
            if self.dipc > fit:
                raise UserError(f"--dipc {self.dipc} fields of {ppf} parameters need {self.dipc * ppf} numbers per "
                                f"class, more than the budget of {per_class_budget} (ipc {self.ipc}); at most {fit}")
            return self.dipc
        if fit < 1:
            raise UserError(f"a field of {ppf} parameters does not fit the budget of {per_class_budget} numbers per "
                            f"class (ipc {self.ipc}, shape {self.channel}x{self.im_size}); use a smaller "
                            f"--layer_size/--num_layers or a larger --ipc")
        return fit

    def params_per_instance(self) -> int:
        return params_per_field(self.dim_in, self.num_layers, self.layer_size, self.dim_out)

    def config(self) -> dict:
        return dict(super().config(), dipc=self.dipc, dim_in=self.dim_in, num_layers=self.num_layers,
                    layer_size=self.layer_size, dim_out=self.dim_out, w0_initial=self.w0_initial, w0=self.w0,
                    lr_nf=self.lr_nf, lr_nf_init=self.lr_nf_init, epochs_init=self.epochs_init)

    @torch.no_grad()
    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """SIREN init: first layer U(-1/dim_in, 1/dim_in); later layers U(-sqrt(6/fan_in)/w0, +)."""
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            bound = 1 / self.dim_in if i == 0 else math.sqrt(6 / w.shape[-1]) / self.w0
            for t in (w, b):
                t.copy_(torch.rand(t.shape, generator=generator) * 2 * bound - bound)

    # -- decoding -------------------------------------------------------------------------------
    def grid(self, res=None) -> Tensor:
        """Coordinates (dim_in, prod(size)) of the decoding grid."""
        size = self.output_size(res)
        return self.coords if size == self.im_size else coordinate_grid(size, self.coords.device).T.contiguous()

    def _mark_touched(self, indices: Tensor):
        def hook(grad):
            self._touched[indices] = True
        return hook

    def consume_touched(self) -> Tensor:
        """Fields that received a gradient since the last call (and clear the record)."""
        t = self._touched.clone()
        self._touched.zero_()
        return t

    def decode(self, indices: Tensor, res=None) -> Tensor:
        ws = [w[indices] for w in self.weights]
        bs = [b[indices] for b in self.biases]
        if ws[0].requires_grad:
            ws[0].register_hook(self._mark_touched(indices))
        x = self.grid(res)
        size = self.output_size(res)
        return self._decode_chunked(x, ws, bs).view(len(indices), self.dim_out, *size)

    def chunk_fields(self, points: int) -> int:
        return max(1, CHUNK_ELEMENTS // (points * self.layer_size))

    def _decode_chunked(self, x: Tensor, ws: list, bs: list) -> Tensor:
        n, chunk = ws[0].shape[0], self.chunk_fields(x.shape[1])
        fn = lambda *p: siren_forward(x, p[: len(ws)], p[len(ws):], self.w0_initial, self.w0)
        if n <= chunk:
            return fn(*ws, *bs)
        parts = []
        recompute = torch.is_grad_enabled() and ws[0].requires_grad
        for s in range(0, n, chunk):
            p = [t[s:s + chunk] for t in ws + bs]
            parts.append(checkpoint(fn, *p, use_reentrant=False) if recompute else fn(*p))
        return torch.cat(parts)

    # -- training -------------------------------------------------------------------------------
    def make_optimizer(self, lr: Optional[float] = None) -> FieldAdam:
        return FieldAdam(self.trainable(), lr=self.lr_nf if lr is None else lr, active=self.consume_touched)

    def init_from_real(self, real, generator: torch.Generator, progress: bool = True) -> Tensor:
        """Fit every field to one random real instance of its class (all fields at once)."""
        targets = torch.cat([sample_real(real, c, self.n_per_class, generator) for c in range(self.num_classes)])
        self.fit(targets.to(self.coords.device), self.epochs_init, self.lr_nf_init, generator, progress)
        return targets

    def fit(self, targets: Tensor, steps: int, lr: float, generator: Optional[torch.Generator] = None,
            progress: bool = True) -> float:
        """Fit field i to targets[i] by Adam on the per-field MSE, chunk by chunk (fields are independent)."""
        if targets.shape != (self.n_total, self.dim_out) + self.im_size:
            raise UserError(f"targets of shape {tuple(targets.shape)} do not match the set "
                            f"({self.n_total}, {self.dim_out}, {self.im_size})")
        self.reset_parameters(generator)
        opt = FieldAdam(self.trainable(), lr=lr)
        tgt = targets.flatten(2)  # (N, C, P)
        x, n, chunk = self.coords, self.n_total, self.chunk_fields(self.coords.shape[1])
        bar = tqdm(range(steps), desc="DDiF warm start", disable=not progress, mininterval=2)
        loss_total = float("nan")
        for step in bar:
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for s in range(0, n, chunk):
                out = siren_forward(x, [w[s:s + chunk] for w in self.weights], [b[s:s + chunk] for b in self.biases],
                                    self.w0_initial, self.w0)
                # sum over fields of each field's own mean squared error
                loss = (out - tgt[s:s + chunk]).square().mean(dim=(1, 2)).sum()
                loss.backward()
                total += loss.item() if step % 100 == 0 or step == steps - 1 else 0.0
            opt.step()
            if step % 100 == 0 or step == steps - 1:
                loss_total = total / n
                bar.set_postfix(mse=f"{loss_total:.4f}")
        return loss_total
