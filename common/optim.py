"""Optimisers over stacked per-instance tensors."""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import Tensor


class FieldAdam(torch.optim.Optimizer):
    """Adam over tensors whose leading dimension indexes independent fields.

    Gives the numbers of one ``torch.optim.Adam`` over *separate* per-field parameters, where Adam
    skips a parameter whose ``.grad`` is None: fields reported inactive by ``active()`` keep their
    weights, their moments and their step count. Every field has its own step count, so its bias
    correction is the one it would have had alone.

    ``active``: a callable returning a bool tensor (N,) of the fields that received a gradient since
    the last step (and clearing that record), or None to treat every field as active.

    State per parameter: ``step`` (N,) step counts (float32, or the parameter's dtype when wider, so that half
    precision does not stop counting at 2048), ``exp_avg`` and ``exp_avg_sq`` in the parameter's dtype, all on
    the parameter's device, also after :meth:`load_state_dict` (torch's loader leaves a state called ``step``
    where it was: on the CPU, for a checkpoint).
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 active: Optional[Callable[[], Tensor]] = None):
        params = list(params)
        n = {p.shape[0] for p in params}
        if len(n) != 1:
            raise ValueError(f"FieldAdam needs tensors with one shared leading (field) dimension, got {sorted(n)}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))
        self.n_fields = n.pop()
        self.active = active

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        mask = self.active() if self.active is not None else None
        rows = None if mask is None or bool(mask.all()) else mask.nonzero().squeeze(1)
        if rows is not None and rows.numel() == 0:
            return loss
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros(self.n_fields, dtype=step_dtype(p), device=p.device)
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                if rows is None:
                    _adam_rows(p, p.grad, st["exp_avg"], st["exp_avg_sq"], st["step"], group["lr"], b1, b2,
                               group["eps"])
                else:
                    sub = [t.index_select(0, rows) for t in (p, p.grad, st["exp_avg"], st["exp_avg_sq"], st["step"])]
                    _adam_rows(*sub, group["lr"], b1, b2, group["eps"])
                    for t, s in zip((p, st["exp_avg"], st["exp_avg_sq"], st["step"]), (sub[0], sub[2], sub[3], sub[4])):
                        t.index_copy_(0, rows, s)
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        state_to_param_devices(self)


def step_dtype(p: Tensor) -> torch.dtype:
    """The dtype of step counts for parameter ``p``: float32, or p's dtype when wider."""
    return torch.promote_types(p.dtype, torch.float32)


def state_to_param_devices(optimizer: torch.optim.Optimizer) -> None:
    """Move every state tensor of ``optimizer`` to its parameter's device; floating-point ones take its dtype
    (``step`` counts: :func:`step_dtype`)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            for k, v in st.items():
                if torch.is_tensor(v):
                    dtype = (step_dtype(p) if k == "step" else p.dtype) if v.is_floating_point() else v.dtype
                    st[k] = v.to(device=p.device, dtype=dtype)


def _adam_rows(p: Tensor, g: Tensor, m: Tensor, v: Tensor, step: Tensor, lr: float, b1: float, b2: float,
               eps: float) -> None:
    """One Adam update in place, each row with its own step count: torch.optim.Adam's formula, with the bias
    corrections computed in float64 (as Adam computes them from its Python-number step)."""
    step += 1
    shape = (-1,) + (1,) * (p.dim() - 1)
    t = step.double()
    step_size = (lr / (1 - b1 ** t)).to(p.dtype).view(shape)
    bc2_sqrt = (1 - b2 ** t).sqrt().to(p.dtype).view(shape)
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (v.sqrt() / bc2_sqrt).add_(eps)
    p.addcdiv_(m * step_size, denom, value=-1.0)
