"""Trajectory matching (Cazenavette et al., CVPR 2022), as DDiF and FreD use it.

Each iteration picks an expert trajectory and a start epoch ``s < max_start_epoch``, starts a student at
the expert's parameters of epoch ``s``, and trains it for ``syn_steps`` differentiable SGD steps on
batches of ``batch_syn`` synthetic instances (DSA on each batch) with a learnable step size ``syn_lr``.
The loss is ``||theta_student - theta_target||^2 / ||theta_start - theta_target||^2`` with theta_target the
expert at epoch ``s + expert_epochs``; it is back-propagated through all the student's steps into the
synthetic set (its own optimiser) and into ``syn_lr`` (SGD, lr ``lr_lr``, momentum 0.5, kept >= 0.001).

The student is one flat parameter vector; each step runs the network with
:func:`torch.func.functional_call` on that vector cut into the parameter shapes.

Two ways to get the gradient, chosen by ``--tm_grad``; both are MTT's gradient of the full unroll:

- ``unroll`` (the reference) keeps every step's double-backward graph and back-propagates once at the end;
  its memory grows linearly with ``syn_steps`` (about 3 MB per synthetic image per step on Fashion-MNIST).
- ``recompute`` (the default) decodes the instances the iteration samples once, runs the steps without a
  graph keeping only the student's parameters after each step (``syn_steps + 1`` flat vectors), then walks
  the steps backwards: step j is recomputed from its stored start with the same batch and DSA draw, and the
  adjoint ``a`` of ``theta_j = theta_{j-1} - lr * g_j(theta_{j-1}, x_j)`` is carried back by one
  Hessian-vector product (double backward): ``a <- a - lr * H_j a``, ``dL/dx_j -= lr * d(g_j . a)/dx_j``,
  ``dL/dlr -= g_j . a``. The gradients of the decoded instances are summed over the steps and sent into the
  fields (DDiF), coefficients (FreD) or pixels once. Peak memory is one step's double-backward graph plus
  the stored vectors, independent of ``syn_steps``; the time is about one extra forward and backward pass
  per step.

With ``--trajectories T`` an iteration runs T trajectories (each its own expert, start epoch, batches and DSA
draws) and averages their gradients before the one step; under torchrun the T trajectories are split over the
processes (trajectory t on rank t % world size) and T defaults to the number of processes, so N processes give
the update of one process with ``--trajectories N`` in about 1/N of the time.

Either way only the sampled instances are decoded, so a DDiF field that was not sampled gets no gradient
and :class:`~common.optim.FieldAdam` leaves it untouched.
"""
from __future__ import annotations

import argparse
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from . import dist
from .errors import UserError
from .experts import ParamLayout, check_expert_folder, load_experts
from .networks import get_network
from .objective import Objective
from .paths import expert_dir
from .utils import derive_seed

Bool = argparse.BooleanOptionalAction
TM_GRADS = ("recompute", "unroll")
MIN_SYN_LR = 1e-3  # the learnable step size is clipped to at least this after each update
LR_MOMENTUM = 0.5


def add_tm_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_argument_group("trajectory matching")
    g.add_argument("--buffer_path", default="buffers", help="root of the expert folders (TM/buffer.py)")
    g.add_argument("--syn_steps", type=int, default=None, help="student steps on synthetic data per iteration")
    g.add_argument("--expert_epochs", type=int, default=None, help="expert epochs the student steps must cover")
    g.add_argument("--max_start_epoch", type=int, default=None, help="start epochs are drawn from [0, this)")
    g.add_argument("--lr_lr", type=float, default=None, help="learning rate of the learnable step size")
    g.add_argument("--lr_teacher", type=float, default=None, help="initial learnable step size")
    g.add_argument("--tm_grad", default="recompute", choices=TM_GRADS,
                   help="gradient through the student's steps, both exact: recompute (memory independent of "
                        "syn_steps; the steps are recomputed backwards with Hessian-vector products) or unroll "
                        "(keeps every step's graph; the reference)")
    g.add_argument("--tm_checkpoint_every", type=int, default=1,
                   help="recompute: store the student's parameters every this many steps (1: every step, the "
                        "fastest; k > 1: the vectors in between are recomputed, one more forward and backward "
                        "per step; 0: every ceil(sqrt(syn_steps)) steps)")
    g.add_argument("--trajectories", type=int, default=0,
                   help="expert trajectories (expert, start epoch) per iteration, their gradients averaged (0: one per "
                        "process, so 1 in one process and N under torchrun --nproc_per_node N; a run of N "
                        "processes equals one process with --trajectories N)")
    g.add_argument("--load_all", action=Bool, default=False,
                   help="read every expert into memory (default: memory-map the files)")
    g.add_argument("--max_files", type=int, default=0, help="use only the first this many expert files (0: all)")
    g.add_argument("--max_experts", type=int, default=0, help="use only the first this many experts per file (0: all)")
    return p


def check_tm_args(args) -> None:
    for k in ("syn_steps", "expert_epochs", "max_start_epoch"):
        if getattr(args, k) < 1:
            raise UserError(f"--{k} must be >= 1, got {getattr(args, k)}")
    for k in ("max_files", "max_experts", "trajectories"):
        if getattr(args, k) < 0:
            raise UserError(f"--{k} must be >= 0 (0: {'one per process' if k == 'trajectories' else 'all'}), got "
                            f"{getattr(args, k)}")
    if args.tm_checkpoint_every < 0:
        raise UserError(f"--tm_checkpoint_every must be >= 0 (1: every step, 0: every ceil(sqrt(syn_steps)) "
                        f"steps), got {args.tm_checkpoint_every}")
    if args.lr_teacher <= 0 or args.lr_lr < 0:
        raise UserError(f"--lr_teacher must be > 0 and --lr_lr >= 0, got {args.lr_teacher} and {args.lr_lr}")


def batch_schedule(n: int, batch: int, steps: int, generator: torch.Generator) -> list[Tensor]:
    """Index batches for ``steps`` student steps: a random permutation of the ``n`` instances cut into
    batches of ``batch`` (0: all), a new permutation whenever one is used up (the last batch may be smaller)."""
    batch = n if not batch or batch > n else batch
    out: list[Tensor] = []
    while len(out) < steps:
        out += list(torch.randperm(n, generator=generator).split(batch))
    return out[:steps]


def deterministic_student(net: torch.nn.Module) -> torch.nn.Module:
    """The student in train mode except its dropout layers (ConvNet3D's head), which are switched off: the
    recomputed backward (and the unroll it is checked against) needs every step to be a function of the student,
    the batch and the DSA seed only."""
    for m in net.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.eval()
    return net


def _student_loss(net, layout: ParamLayout, theta: Tensor, x: Tensor, y: Tensor, dsa, seed) -> Tensor:
    """Cross-entropy of the student ``theta`` on one (augmented) batch."""
    if dsa is not None:
        x = dsa.per_sample(x, seed)
    return F.cross_entropy(functional_call(net, layout.unflatten(theta), (x,)), y)


def unroll_student(net, layout: ParamLayout, theta: Tensor, syn_lr: Tensor, synset, batches: Sequence[Tensor],
                   dsa=None, dsa_seeds: Optional[Sequence[int]] = None) -> Tensor:
    """``len(batches)`` differentiable SGD steps of the student ``theta`` on the synthetic set; returns the
    final parameters, a function of ``theta``, ``syn_lr`` and the synthetic set's parameters (every step's
    graph is kept)."""
    if not theta.requires_grad:
        theta = theta.detach().requires_grad_(True)
    for s, idx in enumerate(batches):
        x, y = synset.get(idx.to(synset.labels.device))
        ce = _student_loss(net, layout, theta, x, y, dsa, None if dsa is None else dsa_seeds[s])
        grad, = torch.autograd.grad(ce, theta, create_graph=True)
        theta = theta - syn_lr * grad
    return theta


def unroll_backward(net, layout: ParamLayout, theta_start: Tensor, theta_target: Tensor, syn_lr: Tensor, synset,
                    batches: Sequence[Tensor], dsa=None, dsa_seeds: Optional[Sequence[int]] = None) -> float:
    """The TM loss of one iteration by the full unroll, its gradient accumulated into the synthetic set's
    parameters' and ``syn_lr``'s ``.grad``; returns the loss."""
    end = unroll_student(net, layout, theta_start, syn_lr, synset, batches, dsa, dsa_seeds)
    loss = tm_loss(end, theta_start, theta_target)
    torch.autograd.backward(loss, inputs=[*synset.trainable(), syn_lr])
    return loss.item()


def checkpoint_interval(every: int, steps: int) -> int:
    """Steps between stored student vectors: ``every``, or ceil(sqrt(steps)) for 0."""
    return every if every > 0 else max(1, math.isqrt(max(steps - 1, 0)) + 1)


def recompute_backward(net, layout: ParamLayout, theta_start: Tensor, theta_target: Tensor, syn_lr: Tensor,
                       synset, batches: Sequence[Tensor], dsa=None, dsa_seeds: Optional[Sequence[int]] = None,
                       checkpoint_every: int = 1) -> float:
    """What :func:`unroll_backward` computes (the same loss, the same gradients up to rounding), with memory
    independent of the number of steps: see the module docstring. ``checkpoint_every`` k > 1 stores the
    student only every k steps and recomputes the vectors in between, one segment of k at a time (one more
    forward and backward pass per step; 0: k = ceil(sqrt(syn_steps)))."""
    dev = synset.labels.device
    batches = [b.to(dev) for b in batches]
    used, inverse = torch.unique(torch.cat(batches), return_inverse=True)
    positions = inverse.split([len(b) for b in batches])
    decoded, labels = synset.get(used)  # the only decode; its graph reaches the set's parameters
    xs = decoded.detach()
    lr = syn_lr.detach()
    seeds = [None] * len(batches) if dsa is None else dsa_seeds
    steps, k = len(batches), checkpoint_interval(checkpoint_every, len(batches))

    def advance(theta: Tensor, j: int) -> Tensor:
        """theta_{j+1} from theta_j, without a graph."""
        theta = theta.detach().requires_grad_(True)
        x, y = xs[positions[j]], labels[positions[j]]
        g, = torch.autograd.grad(_student_loss(net, layout, theta, x, y, dsa, seeds[j]), theta)
        return theta.detach() - lr * g

    # the student after 0, k, 2k, ... steps, in one block allocated once (no heap fragmentation)
    stored = theta_start.new_empty((steps // k + 1, theta_start.numel()))
    theta = stored[0] = theta_start.detach()
    for j in range(steps):
        theta = advance(theta, j)
        if (j + 1) % k == 0:
            stored[(j + 1) // k] = theta

    end = theta.detach().requires_grad_(True)
    loss = tm_loss(end, theta_start, theta_target)
    adjoint, = torch.autograd.grad(loss, end)  # dL/dtheta_j, walked back from j = syn_steps
    grad_x = torch.zeros_like(xs)
    grad_lr = torch.zeros_like(lr)
    segment = theta_start.new_empty((k, theta_start.numel()))  # the student within one segment of k steps
    for first in reversed(range(0, steps, k)):
        n = min(k, steps - first)
        segment[0] = stored[first // k]
        for i in range(1, n):
            segment[i] = advance(segment[i - 1], first + i - 1)
        for i in reversed(range(n)):
            j = first + i
            theta = segment[i].detach().requires_grad_(True)
            x = xs[positions[j]].requires_grad_(True)
            g, = torch.autograd.grad(_student_loss(net, layout, theta, x, labels[positions[j]], dsa, seeds[j]),
                                     theta, create_graph=True)
            g_dot_a = torch.dot(g, adjoint)
            if j:
                h_a, g_x = torch.autograd.grad(g_dot_a, (theta, x))
                adjoint = adjoint - lr * h_a
            else:  # the expert's start needs no adjoint
                g_x, = torch.autograd.grad(g_dot_a, x)
            grad_x.index_add_(0, positions[j], g_x * -lr)
            grad_lr -= g_dot_a.detach()
    torch.autograd.backward(decoded, grad_x, inputs=synset.trainable())
    syn_lr.grad = grad_lr if syn_lr.grad is None else syn_lr.grad + grad_lr
    return loss.item()


def sqrt_checkpoint_backward(*args, **kw) -> float:
    """:func:`recompute_backward` storing the student every ceil(sqrt(syn_steps)) steps."""
    return recompute_backward(*args, **kw, checkpoint_every=0)


BACKWARDS = {"recompute": recompute_backward, "unroll": unroll_backward}


def step_size_optimizer(syn_lr: Tensor, lr_lr: float) -> torch.optim.SGD:
    """The optimiser of the learnable step size: SGD at ``lr_lr`` with momentum 0.5."""
    return torch.optim.SGD([syn_lr], lr=lr_lr, momentum=LR_MOMENTUM)


def tm_loss(theta_end: Tensor, theta_start: Tensor, theta_target: Tensor) -> Tensor:
    """||end - target||^2 / ||start - target||^2."""
    return (theta_end - theta_target).square().sum() / (theta_start - theta_target).square().sum()


class TrajectoryMatching(Objective):
    """The TM objective for :func:`common.distill.run_distillation`."""

    name = "TM"
    splits = "the trajectories of an iteration"

    @classmethod
    def add_args(cls, p: argparse.ArgumentParser) -> None:
        add_tm_args(p)

    @classmethod
    def preflight(cls, args) -> None:
        """The flags make sense and the experts exist and fit, before the data and the DDiF warm start are loaded."""
        check_tm_args(args)
        check_expert_folder(expert_dir(args), args, args.max_files, args.max_start_epoch - 1 + args.expert_epochs)

    def __init__(self, ctx):
        super().__init__(ctx)
        args, real, device = ctx.args, ctx.real, ctx.device
        check_tm_args(args)
        self.net = deterministic_student(get_network(args.model, real.channel, real.num_classes, real.im_size)
                                         .to(device).train())
        for p in self.net.parameters():  # replaced by the student's vector in every call
            p.requires_grad_(False)
        self.layout = ParamLayout.of(self.net)
        expect = dict(channel=real.channel, num_classes=real.num_classes, im_size=list(real.im_size),
                      num_params=self.layout.num_params)
        self.experts = load_experts(expert_dir(args), args, args.load_all, args.max_files, args.max_experts,
                                    expect=expect, min_epochs=args.max_start_epoch - 1 + args.expert_epochs)
        counts = dist.gather_objects(len(self.experts))
        if len(set(counts)) > 1:
            raise UserError(f"the processes see different numbers of experts in {expert_dir(args)} ({counts}, in rank "
                            f"order); every machine needs the same expert files")
        ctx.record.log(f"TM: {self.experts.describe()}; {args.syn_steps} student steps on batches of "
                       f"{args.batch_syn or 'all'} of {ctx.synset.n_total} instances, start epoch < "
                       f"{args.max_start_epoch}, target {args.expert_epochs} epochs later; gradient by "
                       f"{args.tm_grad}; evaluation uses the learned step size")
        self.syn_lr = torch.tensor(float(args.lr_teacher), device=device, requires_grad=True)
        self.lr_optimizer = step_size_optimizer(self.syn_lr, args.lr_lr)
        self.min_lr = min(MIN_SYN_LR, float(args.lr_teacher))
        self.n_traj = args.trajectories or dist.world_size()
        if self.n_traj > 1:
            ctx.record.log(f"TM: {self.n_traj} trajectories per iteration, their gradients averaged"
                           + (f", split over {dist.world_size()} processes" if dist.world_size() > 1 else ""))

    # -- what one iteration uses: a pure function of (seed, iteration, trajectory), so a resumed run continues
    # alike, and trajectory t is the same in one process and on whichever rank runs it --------------------------
    @staticmethod
    def _tail(t: int) -> tuple:
        """What trajectory t adds to an iteration's seed parts (trajectory 0: nothing, as with one per iteration)."""
        return () if t == 0 else ("trajectory", t)

    def choose(self, it: int, t: int = 0) -> tuple[int, int]:
        """(expert, start epoch) of trajectory ``t`` of iteration ``it``: trajectory i = it * n_traj + t of the
        run takes the experts in a fresh random order every round of len(experts) trajectories."""
        seed, n = self.ctx.args.seed, len(self.experts)
        i = it * self.n_traj + t
        order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, "experts", i // n)))
        g = torch.Generator().manual_seed(derive_seed(seed, "start", it, *self._tail(t)))
        start = int(torch.randint(self.ctx.args.max_start_epoch, (1,), generator=g))
        return int(order[i % n]), start

    def batches(self, it: int, t: int = 0) -> list[Tensor]:
        args = self.ctx.args
        g = torch.Generator().manual_seed(derive_seed(args.seed, "batches", it, *self._tail(t)))
        return batch_schedule(self.ctx.synset.n_total, args.batch_syn, args.syn_steps, g)

    def step(self, it: int) -> float:
        """One update from ``n_traj`` trajectories (this rank's share of them under torchrun): each one's gradient
        is accumulated, the sums are added over the ranks and divided by n_traj, then the set and the step size
        take one step."""
        ctx, args = self.ctx, self.ctx.args
        ctx.optimizer.zero_grad(set_to_none=True)
        self.lr_optimizer.zero_grad(set_to_none=True)
        extra = {"checkpoint_every": args.tm_checkpoint_every} if args.tm_grad == "recompute" else {}
        total = 0.0
        for t in dist.shard(range(self.n_traj)):
            k, start = self.choose(it, t)
            theta_start, theta_target = (x.to(ctx.device) for x in
                                         self.experts.pair(k, start, start + args.expert_epochs))
            seeds = [derive_seed(args.seed, "dsa", it, s, *self._tail(t)) for s in range(args.syn_steps)]
            total += BACKWARDS[args.tm_grad](self.net, self.layout, theta_start, theta_target, self.syn_lr,
                                             ctx.synset, self.batches(it, t), ctx.dsa, seeds, **extra)
        ctx.synset.sync_gradients()
        dist.sum_gradients_([self.syn_lr])
        if self.n_traj > 1:
            for p in [*ctx.synset.trainable(), self.syn_lr]:
                if p.grad is not None:
                    p.grad.div_(self.n_traj)
        ctx.optimizer.step()
        self.lr_optimizer.step()
        with torch.no_grad():
            self.syn_lr.clamp_(min=self.min_lr)
        return dist.sum_scalar(total) / self.n_traj

    # -- what run_distillation asks of an objective --------------------------------------------------------
    def eval_lr(self, default: Optional[float] = None) -> Optional[float]:
        """The learning rate evaluation networks train with: the learned step size (as in MTT)."""
        return float(self.syn_lr.detach())

    def metrics(self) -> dict:
        return {"syn_lr": float(self.syn_lr.detach())}

    def state_dict(self) -> dict:
        return {"syn_lr": self.syn_lr.detach().cpu(), "lr_optimizer": self.lr_optimizer.state_dict(),
                "trajectories": self.n_traj}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.syn_lr.copy_(state["syn_lr"])
        self.lr_optimizer.load_state_dict(state["lr_optimizer"])
        before = state.get("trajectories", 1)
        if before != self.n_traj:
            self.ctx.record.log(f"note: the checkpoint's iterations took {before} trajectories each, the resumed "
                                f"ones take {self.n_traj} (--trajectories, or the number of processes)")
