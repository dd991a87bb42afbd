"""Evaluation of a synthetic set: train fresh networks on it, report their accuracy on the real test set.

Protocol (``evaluate_synset`` of the original code): SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch
256, DSA (one transform per sample) on every training batch; ``epochs`` = E gives E + 1 passes over the set
(epochs 0..E), and after epoch E // 2 + 1 the learning rate is multiplied by 0.1 and the SGD optimiser is
created anew (its momentum reset); the mean and standard deviation of the test accuracy over ``num_eval``
networks.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import dist, malloc
from .augment import DSA
from .networks import get_network
from .synsets.base import sample_real
from .utils import derive_seed


@dataclass(frozen=True)
class EvalConfig:
    epochs: int
    num_eval: int
    device: torch.device
    lr: float = 0.01
    batch: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dsa: Optional[DSA] = None
    seed: int = 0
    progress: bool = False


# test batches hold at most 256 instances (the original's test loader) and at most this many numbers: on a GPU
# 1 << 24 (27 UCF101 clips of 3x16x112x112); on a CPU 1 << 20 (16 Moving Fashion-MNIST clips of 16x64x64, 256
# voxel grids of 16^3), so that no activation outgrows the few hundred MB that glibc then maps and unmaps (and the
# kernel zeroes) at every batch, while a CPU gains nothing from larger batches
TEST_BATCH_ELEMENTS = {"cuda": 1 << 24, "cpu": 1 << 20}


@torch.no_grad()
def test_accuracy(net: nn.Module, images: Tensor, labels: Tensor, batch: int = 256) -> float:
    net.eval()
    device = next(net.parameters()).device
    limit = TEST_BATCH_ELEMENTS.get(device.type, TEST_BATCH_ELEMENTS["cuda"])
    batch = max(1, min(batch, limit // max(1, math.prod(images.shape[1:]))))
    correct = 0
    for s in range(0, len(images), batch):
        x = images[s:s + batch].to(device, non_blocking=True)
        correct += (net(x).argmax(1).cpu() == labels[s:s + batch].cpu()).sum().item()
    return correct / max(1, len(images))


def train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor, batch: int,
                dsa, generator: torch.Generator, seed: int) -> None:
    """One shuffled pass over (images, labels) in batches of ``batch``: cross-entropy, an optimiser step per
    batch, DSA on every batch when ``dsa`` (batch b seeded by ``derive_seed(seed, b)``). The order is drawn
    from ``generator``. Shared by evaluation, DC's inner loop and the expert trajectories."""
    order = torch.randperm(len(images), generator=generator).to(images.device)
    for b, s in enumerate(range(0, len(images), batch)):
        idx = order[s:s + batch]
        x = images[idx]
        if dsa is not None:
            x = dsa.per_sample(x, derive_seed(seed, b))
        loss = F.cross_entropy(net(x), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def lr_decay_epoch(epochs: int) -> int:
    """The epoch after which the evaluation's learning rate drops by 10 (the original's ``Epoch // 2 + 1``)."""
    return epochs // 2 + 1


def train_network(net: nn.Module, images: Tensor, labels: Tensor, cfg: EvalConfig, seed: int,
                  desc: Optional[str] = None) -> nn.Module:
    """Train ``net`` on (images, labels) with the evaluation protocol: epochs 0..cfg.epochs (E + 1 passes),
    after epoch E // 2 + 1 a new SGD optimiser at a tenth of the learning rate. Returns ``net`` in eval mode.
    ``desc``: a progress bar over the epochs (with its ETA) under that name when ``cfg.progress``."""
    dev = cfg.device
    net.to(dev).train()
    images, labels = images.detach().to(dev), labels.to(dev)

    def sgd(lr: float) -> torch.optim.SGD:
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    opt = sgd(cfg.lr)
    g = torch.Generator().manual_seed(seed)
    epochs = range(cfg.epochs + 1)
    if desc is not None and cfg.progress and dist.is_main():
        epochs = tqdm(epochs, desc=desc, unit="epoch", leave=False)
    for epoch in epochs:
        train_epoch(net, opt, images, labels, cfg.batch, cfg.dsa, g, derive_seed(seed, epoch))
        if epoch == lr_decay_epoch(cfg.epochs):
            opt = sgd(cfg.lr * 0.1)
    return net.eval()


def evaluate_synset(model: str, images: Tensor, labels: Tensor, real, cfg: EvalConfig, tag=0) -> list[float]:
    """Test accuracies of ``cfg.num_eval`` fresh ``model`` networks trained on (images, labels). Under torchrun
    the networks are split over the processes (network k on rank k % world size, its seeds unchanged) and the
    accuracies gathered, so every rank returns the list one process would."""
    return evaluate_on(model, images, labels, real, cfg, tag)["clean"]


def evaluate_on(model: str, images: Tensor, labels: Tensor, real, cfg: EvalConfig, tag=0,
                tests: Optional[dict] = None) -> dict[str, list[float]]:
    """{test set: accuracies of the ``cfg.num_eval`` networks}: each network is trained once (as in
    :func:`evaluate_synset`) and tested on real's clean test set ("clean") and on every (images, labels) of
    ``tests`` (e.g. corrupted test sets)."""
    tests = {"clean": (real.images_test, real.labels_test), **(tests or {})}
    found = []
    im_size = tuple(images.shape[2:])
    mine = dist.shard(range(cfg.num_eval))
    malloc.release()  # the caller's, training's and testing's blocks differ in size: free pages go back between them
    for k in mine:
        seed = derive_seed(cfg.seed, "eval", tag, model, k)
        torch.manual_seed(seed)
        net = get_network(model, images.shape[1], real.num_classes, im_size)
        train_network(net, images, labels, cfg, seed, desc=f"eval {model} network {k + 1}/{cfg.num_eval}")
        malloc.release()
        found.append((k, {name: test_accuracy(net, x, y) for name, (x, y) in tests.items()}))
        malloc.release()
    ordered = [accs for _, accs in sorted(pair for part in dist.gather_objects(found) for pair in part)]
    return {name: [accs[name] for accs in ordered] for name in tests}


def summarize(accs: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(accs), (statistics.pstdev(accs) if len(accs) > 1 else 0.0)


def evaluate_pool(models: Sequence[str], images: Tensor, labels: Tensor, real, cfg: EvalConfig,
                  tag=0) -> dict[str, tuple[float, float]]:
    """{model: (mean, std)} over ``cfg.num_eval`` networks of each model."""
    return {m: summarize(evaluate_synset(m, images, labels, real, cfg, tag)) for m in models}


def random_real(real, ipc: int, seed: int) -> tuple[Tensor, Tensor]:
    """The random-real baseline at the same storage budget: ``ipc`` random real images per class."""
    g = torch.Generator().manual_seed(derive_seed(seed, "random_real"))
    images = torch.cat([sample_real(real, c, ipc, g) for c in range(real.num_classes)])
    labels = torch.arange(real.num_classes).repeat_interleave(ipc)
    return images, labels
