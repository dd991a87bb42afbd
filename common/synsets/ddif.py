"""DDiF: every synthetic instance is a small SIREN neural field (Shin et al., ICLR 2025).

All fields of a set are stored as stacked tensors -- layer l has a weight (N, out, in) and a bias
(N, out) -- and decoded together with batched matrix products, chunked over fields. The field maps
coordinates in [-1, 1]^dim_in (one axis per grid axis, 'ij' order) to dim_out values, so the same
class serves images (H, W), video (T, H, W) and voxels (D, H, W), and decodes at any resolution.
"""
from __future__ import annotations

import math
from typing import Iterator, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from tqdm.auto import tqdm

from .. import dist
from ..errors import UserError
from ..optim import FieldAdam
from .base import Flag, SynSet, sample_real

# Decode at most this many hidden activations (fields x points x width) per chunk: on a CPU small enough
# for the chunk's activations to stay in cache, on a GPU large enough to keep it busy.
CHUNK_ELEMENTS = 1 << 21
CHUNK_ELEMENTS_CUDA = 1 << 26
# The warm start uses chunks this many times smaller: as fast on a CPU, and its scratch memory stays below
# that of fitting the fields one by one.
FIT_CHUNK_DIVISOR = 4
# Part of the warm-start cache key: raise it when a change to the fitting code changes its result.
WARM_START_VERSION = 3


def params_per_field(dim_in: int, num_layers: int, layer_size: int, dim_out: int) -> int:
    """Weights and biases of one SIREN: num_layers sine layers, then a linear output layer."""
    w = layer_size
    return (dim_in + 1) * w + (num_layers - 1) * (w + 1) * w + (w + 1) * dim_out


def coordinate_grid(size: Sequence[int], device=None, dtype=None) -> Tensor:
    """(prod(size), len(size)) coordinates, every axis spanning [-1, 1], the last axis fastest."""
    axes = [torch.linspace(-1, 1, n, device=device, dtype=dtype) for n in size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(size))


def with_ones(coords: Tensor) -> Tensor:
    """(dim_in, P) coordinates -> (dim_in + 1, P) with a row of ones: one matmul with it gives the first layer's
    weight and bias gradients together (siren_backward)."""
    return torch.cat([coords, coords.new_ones(1, coords.shape[1])])


class Workspace:
    """Scratch tensors reused by every chunk of one decode or warm start, forward and backward: the large
    activations are allocated once instead of once per chunk (on a CPU every fresh large allocation costs
    page faults, as much as the arithmetic here)."""

    def __init__(self):
        self.buffers: dict = {}

    def get(self, name, shape, like: Tensor) -> Tensor:
        numel = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = self.buffers[name] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(shape)


def first_layer(axes: Sequence[Tensor], weight: Tensor, bias: Tensor, scale: float, work: Workspace,
                want_cos: bool):
    """sin and cos of the first layer, scale * (W x + b), over the product grid of ``axes`` -> (n, width, P).

    The grid is separable: the phase at point (u, v, ...) is a sum of one term per axis. With
    sin(a + b) = sin a cos b + cos a sin b, sines and cosines are evaluated per axis only (H + W values per
    unit instead of H * W) and each further axis is combined by a batched matmul with an inner dimension
    of 2. Returns (sin, cos), cos None when not wanted.
    """
    n, width = weight.shape[:2]
    sin = cos = None
    for a, u in enumerate(axes):
        phase = weight[..., a:a + 1] * (u * scale)
        if a == 0:
            phase = phase + (bias * scale).unsqueeze(-1)
        s_a, c_a = phase.sin(), phase.cos()  # (n, width, len(u))
        if sin is None:
            sin, cos = s_a, c_a
            continue
        m, k, last = sin.shape[-1], u.shape[0], a == len(axes) - 1
        right = torch.stack([c_a, s_a], dim=-2).view(n * width, 2, k)
        buf = lambda name: work.get(name, (n * width, m, k), weight) if last else None
        new_sin = torch.bmm(torch.stack([sin, cos], dim=-1).view(n * width, m, 2), right, out=buf(("sin", 0)))
        new_cos = None
        if want_cos or not last:  # cos(a + b) = cos a cos b - sin a sin b
            new_cos = torch.bmm(torch.stack([cos, -sin], dim=-1).view(n * width, m, 2), right, out=buf(("cos", 0)))
            new_cos = new_cos.view(n, width, m * k)
        sin, cos = new_sin.view(n, width, m * k), new_cos
    return sin, (cos if want_cos else None)


def siren_layers(axes: Sequence[Tensor], weights: Sequence[Tensor], biases: Sequence[Tensor],
                 scales: Sequence[float], keep: bool = False, work: Optional[Workspace] = None,
                 out: Optional[Tensor] = None, output: bool = True):
    """Batched SIREN forward over the product grid of ``axes`` (1-D coordinates per grid axis), shared by all
    n fields -> (n, dim_out, P), P the number of grid points (last axis fastest).

    Layer i computes sin(scales[i] * (W_i h + b_i)), the last layer W h + b. Activations are laid out (n, width, P)
    so the long point axis is innermost; the frequency is folded into the (small) weights, the first layer is
    evaluated separably (see first_layer) and later sines run in place. With ``keep`` it also returns, per hidden
    layer, the activation sin(z) and cos(z), which siren_backward needs; these live in ``work`` (valid until
    its next use). The output is written to ``out`` when given, and not computed when ``output`` is False.
    """
    work = Workspace() if work is None else work
    h, c = first_layer(axes, weights[0], biases[0], scales[0], work, want_cos=keep)
    hs, cs = ([h], [c]) if keep else ([], [])
    last = len(weights) - 1
    for i in range(1, last):
        z = torch.bmm(weights[i] * scales[i], h, out=work.get(("z", i), h.shape, h))
        z.add_((biases[i] * scales[i]).unsqueeze(-1))
        if keep:
            cs.append(torch.cos(z, out=work.get(("cos", i), z.shape, z)))
        h = z.sin_()
        if keep:
            hs.append(h)
    if not output:
        return None, hs, cs
    return torch.bmm(weights[last], h, out=out).add_(biases[last].unsqueeze(-1)), hs, cs


def siren_backward(g: Tensor, xa: Tensor, weights: Sequence[Tensor], scales: Sequence[float], hs: list, cs: list,
                   work: Optional[Workspace] = None):
    """Gradients of sum(g * out) with respect to the weights and biases, from siren_layers(..., keep=True)."""
    work = Workspace() if work is None else work
    last = len(weights) - 1
    gw, gb = [None] * (last + 1), [None] * (last + 1)
    gw[last], gb[last] = torch.bmm(g, hs[-1].transpose(1, 2)), g.sum(-1)
    gh = torch.bmm(weights[last].transpose(1, 2), g, out=work.get(("gh", last % 2), hs[-1].shape, g))
    for i in range(last - 1, -1, -1):
        gz = gh.mul_(cs[i])  # gradient at the sine's input scales[i] * (W_i h + b_i)
        if i == 0:
            n, width, p = gz.shape
            ga = torch.mm(gz.view(n * width, p), xa.T).view(n, width, -1).mul_(scales[0])
            gw[0], gb[0] = ga[..., :-1], ga[..., -1]
        else:
            gw[i] = torch.bmm(gz, hs[i - 1].transpose(1, 2)).mul_(scales[i])
            gb[i] = gz.sum(-1).mul_(scales[i])
            gh = torch.bmm(weights[i].transpose(1, 2) * scales[i], gz, out=work.get(("gh", i % 2), gz.shape, gz))
    return gw, gb


def point_blocks(size: Sequence[int], fields: int, width: int, limit: int) -> list[tuple[int, int]]:
    """Ranges of the first grid axis such that ``fields`` fields decoded over one range keep at most about
    ``limit`` hidden activations (at least one index of the axis per block). A range of the first axis is a
    contiguous block of the flattened points (the first axis is the slowest)."""
    rest = math.prod(size[1:]) if len(size) > 1 else 1
    step = max(1, limit // max(1, fields * width * rest))
    return [(a, min(a + step, size[0])) for a in range(0, size[0], step)]


class Piece(NamedTuple):
    """One chunk: the fields ``fields`` over the points ``points``, a block of the first grid axis whose
    per-axis coordinates are ``axes``; ``whole`` when the block is all the points."""
    fields: slice
    points: slice
    axes: tuple
    whole: bool


def pieces(n: int, chunk: int, blocks: Sequence[tuple[int, int]], axes: Sequence[Tensor]) -> Iterator[Piece]:
    """The chunks of a decode or warm start of n fields over the grid of ``axes``: ``chunk`` fields at a time,
    each group block by block (``blocks`` from point_blocks), the blocks of a group consecutively."""
    rest = math.prod(len(u) for u in axes[1:])
    whole = len(blocks) == 1
    for s in range(0, n, chunk):
        for a0, a1 in blocks:
            yield Piece(slice(s, s + chunk), slice(a0 * rest, a1 * rest),
                        axes if whole else (axes[0][a0:a1], *axes[1:]), whole)


class SirenDecode(torch.autograd.Function):
    """Decode fields chunk by chunk without storing activations: the backward recomputes each chunk's forward
    (keeping sin and cos of its hidden layers), so memory does not grow with the number of fields. A chunk is a
    group of fields and, when one field alone is too large (a 16x112x112 clip), a block of its points. One node
    for all chunks: the output and the gradients are written slice by slice into whole tensors."""

    @staticmethod
    def forward(ctx, xa, axes, scales, chunk, blocks, *params):
        half = len(params) // 2
        ws, bs = params[:half], params[half:]
        n, work = ws[0].shape[0], Workspace()
        out = xa.new_empty(n, ws[-1].shape[1], xa.shape[1])
        for p in pieces(n, chunk, blocks, axes):
            wc, bc = [w[p.fields] for w in ws], [b[p.fields] for b in bs]
            if p.whole:  # written in place; a block's slice of out is not contiguous, so it is copied in
                siren_layers(p.axes, wc, bc, scales, work=work, out=out[p.fields])
            else:
                out[p.fields, :, p.points] = siren_layers(p.axes, wc, bc, scales, work=work)[0]
        ctx.axes, ctx.scales, ctx.chunk, ctx.blocks = axes, scales, chunk, blocks
        ctx.save_for_backward(xa, *params)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        xa, *params = ctx.saved_tensors
        half = len(params) // 2
        ws, bs, chunk, g = params[:half], params[half:], ctx.chunk, g.contiguous()
        grads, work = [torch.zeros_like(t) for t in params], Workspace()
        for p in pieces(ws[0].shape[0], chunk, ctx.blocks, ctx.axes):
            wc, bc = [w[p.fields] for w in ws], [b[p.fields] for b in bs]
            _, hs, cs = siren_layers(p.axes, wc, bc, ctx.scales, keep=True, work=work, output=False)
            gc = g[p.fields] if p.whole else g[p.fields, :, p.points].contiguous()
            gw, gb = siren_backward(gc, xa[:, p.points], wc, ctx.scales, hs, cs, work)
            for full, part in zip(grads, gw + gb):
                full[p.fields] += part
        return (None, None, None, None, None, *grads)


class DDiF(SynSet):
    name = "ddif"
    title = "DDiF (neural fields)"
    flags = (Flag("dipc", int, "fields per class (0: as many as the budget buys)", 0), Flag("dim_in", int),
             Flag("num_layers", int), Flag("layer_size", int), Flag("dim_out", int), Flag("w0_initial", float),
             Flag("w0", float), Flag("lr_nf", float), Flag("epochs_init", int), Flag("lr_nf_init", float))
    any_resolution = True
    cached_init = True  # the warm start fits every field to a real instance

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
        self.register_buffer("coords", with_ones(coordinate_grid(self.im_size).T), persistent=False)
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
        """Coordinates of the decoding grid with a row of ones, (dim_in + 1, prod(size)), in the fields' dtype."""
        size, w = self.output_size(res), self.weights[0]
        if size == self.im_size and self.coords.dtype == w.dtype:
            return self.coords
        return with_ones(coordinate_grid(size, w.device, w.dtype).T)

    def grid_axes(self, size) -> tuple:
        """The 1-D coordinates of each grid axis, in [-1, 1], in the fields' dtype."""
        w = self.weights[0]
        return tuple(torch.linspace(-1, 1, k, device=w.device, dtype=w.dtype) for k in size)

    def scales(self) -> tuple:
        """The frequency each sine layer multiplies by: w0_initial, then w0."""
        return (float(self.w0_initial),) + (float(self.w0),) * (self.num_layers - 1)

    def _mark_touched(self, indices: Tensor):
        def hook(grad):
            self._touched[indices] = True
        return hook

    def sync_gradients(self) -> None:
        """Also the record of touched fields: a field another rank decoded takes its Adam step on every rank."""
        super().sync_gradients()
        if dist.world_size() > 1:
            touched = self._touched.float()
            dist.all_reduce_sum_([touched])
            self._touched.copy_(touched > 0)

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
        xa, size = self.grid(res), self.output_size(res)
        n, chunk, scales = len(indices), self.chunk_fields(xa.shape[1]), self.scales()
        blocks = point_blocks(size, chunk, self.layer_size, self.chunk_limit())
        return SirenDecode.apply(xa, self.grid_axes(size), scales, chunk, blocks, *ws, *bs).view(
            n, self.dim_out, *size)

    def chunk_limit(self) -> int:
        """Hidden activations (fields x points x width) decoded at once."""
        return CHUNK_ELEMENTS_CUDA if self.coords.is_cuda else CHUNK_ELEMENTS

    def chunk_fields(self, points: int) -> int:
        return max(1, self.chunk_limit() // (points * self.layer_size))

    # -- training -------------------------------------------------------------------------------
    def make_optimizer(self, lr: Optional[float] = None) -> FieldAdam:
        return FieldAdam(self.trainable(), lr=self.lr_nf if lr is None else lr, active=self.consume_touched)

    def init_targets(self, real, generator: torch.Generator) -> Tensor:
        """The real instances the warm start fits, one per field in field order (drawn from ``generator``)."""
        return torch.cat([sample_real(real, c, self.n_per_class, generator) for c in range(self.num_classes)])

    def init_from_real(self, real, generator: torch.Generator, progress: bool = True,
                       targets: Optional[Tensor] = None) -> Tensor:
        """Fit every field to one random real instance of its class (all fields at once); ``targets``: those
        :meth:`init_targets` drew already from ``generator``."""
        targets = self.init_targets(real, generator) if targets is None else targets
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
        xa, axes, n, scales = self.grid(), self.grid_axes(self.im_size), self.n_total, self.scales()
        chunk = max(1, self.chunk_fields(xa.shape[1]) // FIT_CHUNK_DIVISOR)
        # a field too large for one chunk (a 16x112x112 clip) is fitted block of points by block of points
        blocks = point_blocks(self.im_size, chunk, self.layer_size, self.chunk_limit() // FIT_CHUNK_DIVISOR)
        params, work = list(self.weights) + list(self.biases), Workspace()
        for t in params:
            t.grad = torch.zeros_like(t)
        bar = tqdm(range(steps), desc="DDiF warm start", disable=not progress, mininterval=2)
        loss_total = float("nan")
        with torch.no_grad():
            for step in bar:
                total = 0.0
                report = step % 100 == 0 or step == steps - 1
                for p in pieces(n, chunk, blocks, axes):
                    ws, bs = [w[p.fields] for w in self.weights], [b[p.fields] for b in self.biases]
                    out, hs, cs = siren_layers(p.axes, ws, bs, scales, keep=True, work=work)
                    diff = out.sub_(tgt[p.fields, :, p.points])
                    if report:
                        total += diff.square().sum().item() / (self.dim_out * xa.shape[1])
                    # the loss is the sum over fields of each field's own mean squared error
                    gw, gb = siren_backward(diff.mul_(2 / (self.dim_out * xa.shape[1])), xa[:, p.points], ws,
                                            scales, hs, cs, work)
                    for t, g in zip(params, gw + gb):
                        if p.points.start == 0:  # the first block of these fields replaces last step's gradient
                            t.grad[p.fields] = g
                        else:
                            t.grad[p.fields] += g
                opt.step()
                if report:
                    loss_total = total / n
                    bar.set_postfix(mse=f"{loss_total:.4f}")
        for t in params:
            t.grad = None
        return loss_total
