"""Dataset condensation with gradient matching (DC; Zhao, Mopuri & Bilen, ICLR 2021).

Each iteration draws a freshly initialised network and runs ``outer_loop`` outer steps. In an outer step,
for every class, the gradient of the cross-entropy on a real batch and the gradient on that class's
synthetic instances (both augmented by the same DSA transform) are compared layer by layer
(:func:`gradient_distance`); the distances are back-propagated into the synthetic set, which then takes
one optimiser step. Between outer steps the network is trained ``inner_loop`` epochs on the (detached,
augmented) synthetic set, so later outer steps match gradients of a partly trained network.

As in the original code:
- the network's optimiser is plain SGD at ``lr_net`` (no momentum); the pixel and FreD sets keep their
  own optimisers (SGD, momentum 0.5), DDiF its Adam;
- a network with BatchNorm gets its running statistics from 16 real images per class before each outer
  step and keeps them frozen (eval mode) while gradients are matched;
- ``inner_loop`` counts *epochs* over the synthetic set in batches of 256 (one step per epoch while the
  decoded set has at most 256 instances);
- the returned loss is the mean distance per class and outer step.

Differences: each class's distance is back-propagated on its own (a synthetic instance only gets gradient
from its own class, so this equals back-propagating the sum, with one class's graph in memory at a time),
and only parameters with two or more axes enter the gradient computation, because the distance ignores
the others (see :func:`gradient_distance`).
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import dist
from .dm import class_batches
from .errors import UserError
from .evaluate import train_epoch
from .networks import get_network
from .objective import Objective
from .utils import derive_seed

# ipc -> (outer_loop, inner_loop) of the original code
OUTER_INNER: dict[int, tuple[int, int]] = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15),
                                           50: (50, 10)}
BATCH_TRAIN = 256  # batch size of the inner-loop training on the synthetic set
BN_IMAGES_PER_CLASS = 16  # real images per class that set the BatchNorm statistics before an outer step
EPS = 1e-6


def add_dc_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_argument_group("DC (gradient matching)")
    g.add_argument("--outer_loop", type=int, default=None,
                   help=f"outer steps per iteration (None: by ipc, {_table_text()})")
    g.add_argument("--inner_loop", type=int, default=None,
                   help="epochs of network training on the synthetic set between outer steps (None: by ipc)")
    return p


def _table_text() -> str:
    return ", ".join(f"{k}->{v}" for k, v in OUTER_INNER.items())


def loops_for_ipc(ipc: int, outer_loop: Optional[int] = None, inner_loop: Optional[int] = None) -> tuple[int, int]:
    """(outer_loop, inner_loop) for ``ipc``: explicit values win, the rest come from :data:`OUTER_INNER`.

    An ipc outside the table needs both values given explicitly (there is no rule to extrapolate it by);
    otherwise a :class:`UserError` lists the table and the flags.
    """
    if ipc < 1:
        raise UserError(f"--ipc must be >= 1, got {ipc}")
    if outer_loop is None or inner_loop is None:
        if ipc not in OUTER_INNER:
            raise UserError(f"DC has no outer/inner loop lengths for ipc {ipc} (known: {_table_text()}); "
                            f"pass --outer_loop N --inner_loop M")
        outer_loop = OUTER_INNER[ipc][0] if outer_loop is None else outer_loop
        inner_loop = OUTER_INNER[ipc][1] if inner_loop is None else inner_loop
    if outer_loop < 1 or inner_loop < 0:
        raise UserError(f"--outer_loop must be >= 1 and --inner_loop >= 0, got {outer_loop} and {inner_loop}")
    return outer_loop, inner_loop


def unit_rows(g: Tensor) -> Optional[Tensor]:
    """A parameter's gradient as (output units, everything else), or None for tensors with < 2 axes."""
    if g.dim() < 2:
        return None
    return g.reshape(g.shape[0], -1)


def gradient_distance(gw_syn: Sequence[Tensor], gw_real: Sequence[Tensor], eps: float = EPS) -> Tensor:
    """Layer-wise gradient distance (the original's 'ours').

    For every parameter tensor with two or more axes -- linear (out, in), conv (out, in, k, k), conv3d
    (out, in, t, k, k), any rank -- the gradient is reshaped to one row per output unit and the distance is
    the sum over rows of ``1 - cos(row_syn, row_real)`` (``eps`` added to the product of the norms);
    the distances of all tensors are summed. Tensors with fewer than two axes (biases, normalisation
    scales and shifts) contribute 0, as in the original: they have one number per output unit, so a
    per-unit cosine would only compare signs.
    """
    if len(gw_syn) != len(gw_real):
        raise ValueError(f"gradient lists differ in length: {len(gw_syn)} vs {len(gw_real)}")
    total = None
    for gs, gr in zip(gw_syn, gw_real):
        if gs.shape != gr.shape:
            raise ValueError(f"gradient shapes differ: {tuple(gs.shape)} vs {tuple(gr.shape)}")
        s, r = unit_rows(gs), unit_rows(gr)
        if s is None:
            continue
        cos = (s * r).sum(1) / (s.norm(dim=1) * r.norm(dim=1) + eps)
        d = (1 - cos).sum()
        total = d if total is None else total + d
    if total is None:
        ref = gw_syn[0] if len(gw_syn) else torch.zeros(())
        return ref.new_zeros(())
    return total


def matched_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The parameters whose gradients the distance compares (two or more axes)."""
    return [p for p in net.parameters() if p.dim() >= 2]


def class_distance(net: nn.Module, params: list, img_real: Tensor, img_syn: Tensor, c: int,
                   create_graph: bool = True) -> Tensor:
    """Gradient distance of class ``c``: CE gradients of the real batch (constant) vs the synthetic one."""
    lab_real = torch.full((len(img_real),), c, dtype=torch.long, device=img_real.device)
    lab_syn = torch.full((len(img_syn),), c, dtype=torch.long, device=img_syn.device)
    gw_real = [g.detach() for g in torch.autograd.grad(F.cross_entropy(net(img_real), lab_real), params)]
    gw_syn = torch.autograd.grad(F.cross_entropy(net(img_syn), lab_syn), params, create_graph=create_graph)
    return gradient_distance(gw_syn, gw_real)


def class_distances(net, real, synset, batch_real: int, batch_syn: int, dsa, seed: int, generator: torch.Generator,
                    create_graph: bool = True, classes=None):
    """Yield (class, gradient distance of that class) for one outer step of ``net``, for the classes in
    ``classes`` (None: all; see :func:`~common.dm.class_batches`)."""
    params = matched_parameters(net)
    for c, img_real, img_syn in class_batches(real, synset, batch_real, batch_syn, dsa, seed, generator, classes):
        yield c, class_distance(net, params, img_real, img_syn, c, create_graph)


def has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def freeze_batchnorm(net: nn.Module, real, generator: torch.Generator) -> None:
    """Set BatchNorm running statistics from a few real images per class, then fix them (eval mode)."""
    net.train()
    imgs = torch.cat([real.get_images(c, BN_IMAGES_PER_CLASS, generator) for c in range(real.num_classes)])
    with torch.no_grad():
        net(imgs)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def train_on_synthetic(net: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor,
                       epochs: int, dsa, seed: int) -> None:
    """``epochs`` shuffled passes over (images, labels) in batches of :data:`BATCH_TRAIN`, DSA on each batch."""
    net.train()
    g = torch.Generator().manual_seed(seed)
    for e in range(epochs):
        train_epoch(net, optimizer, images, labels, BATCH_TRAIN, dsa, g, derive_seed(seed, e))


class GradientMatching(Objective):
    name = "DC"
    splits = "the classes"

    @classmethod
    def add_args(cls, p: argparse.ArgumentParser) -> None:
        add_dc_args(p)

    @classmethod
    def resolve(cls, values: dict) -> None:
        values["outer_loop"], values["inner_loop"] = loops_for_ipc(values["ipc"], values.get("outer_loop"),
                                                                   values.get("inner_loop"))

    def __init__(self, ctx):
        super().__init__(ctx)
        args = ctx.args
        self.outer_loop, self.inner_loop = loops_for_ipc(args.ipc, args.outer_loop, args.inner_loop)
        ctx.record.log(f"DC: outer_loop {self.outer_loop}, inner_loop {self.inner_loop} (ipc {args.ipc})")

    def step(self, it: int) -> float:
        ctx, args = self.ctx, self.ctx.args
        torch.manual_seed(derive_seed(args.seed, "net", it))
        net = get_network(args.model, ctx.real.channel, ctx.real.num_classes, ctx.real.im_size).to(ctx.device)
        net.train()
        optimizer_net = torch.optim.SGD(net.parameters(), lr=args.lr_net)
        batchnorm = has_batchnorm(net)
        g = torch.Generator().manual_seed(derive_seed(args.seed, "batch", it))
        syn_params = ctx.synset.trainable()
        mine = dist.shard(range(ctx.real.num_classes))  # torchrun: this rank's classes; their gradients are summed
        total = 0.0
        for ol in range(self.outer_loop):
            if batchnorm:
                freeze_batchnorm(net, ctx.real, g)
            ctx.optimizer.zero_grad(set_to_none=True)
            for _, d in class_distances(net, ctx.real, ctx.synset, args.batch_real, args.batch_syn, ctx.dsa,
                                        derive_seed(args.seed, "dsa", it, ol), g, classes=mine):
                torch.autograd.backward(d, inputs=syn_params)  # not into the network's weights
                total += d.item()
            ctx.synset.sync_gradients()
            ctx.optimizer.step()
            if ol == self.outer_loop - 1:
                break
            with torch.no_grad():
                images, labels = ctx.synset.get()
            train_on_synthetic(net, optimizer_net, images.detach(), labels, self.inner_loop, ctx.dsa,
                               derive_seed(args.seed, "inner", it, ol))
            dist.broadcast_tensors_(list(net.parameters()) + list(net.buffers()))  # GPUs may round differently
        return dist.sum_scalar(total) / (ctx.real.num_classes * self.outer_loop)
