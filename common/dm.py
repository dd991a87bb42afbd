"""Distribution matching (Zhao & Bilen, WACV 2023).

Each iteration draws a freshly initialised network (frozen) and, for every class, matches the mean
embedding of a real batch with the mean embedding of that class's synthetic instances, both augmented
by the same DSA transform. Each class's loss is back-propagated on its own (so memory holds one class at
a time) and the synthetic set takes one optimiser step per iteration. Because a synthetic instance only
receives gradient from its own class's loss, this equals both the original's summed loss (pixel, FreD)
and DDiF's step per class (with :class:`~common.optim.FieldAdam`, fields of other classes do not move).
"""
from __future__ import annotations

import torch

from . import dist
from .networks import get_network
from .objective import Objective
from .utils import derive_seed


def sample_indices(idx: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` of ``idx`` at random (all of them when n is 0 or too large)."""
    if not n or n >= len(idx):
        return idx
    return idx[torch.randperm(len(idx), generator=generator)[:n].to(idx.device)]


def class_batches(real, synset, batch_real: int, batch_syn: int, dsa, seed: int, generator: torch.Generator,
                  classes=None):
    """Yield (class, real batch, decoded synthetic batch) for every class in ``classes`` (None: all), both
    augmented by the same DSA transform (seed derived from ``seed`` and the class). Shared by DM and DC.

    The batches of every class are drawn from ``generator`` in class order whichever classes are asked for, so a
    class gets the same batches in a process that handles all classes and in one that handles a share
    (torchrun: :func:`common.dist.shard`)."""
    wanted = range(real.num_classes) if classes is None else set(classes)
    for c in range(real.num_classes):
        real_idx = real.draw(c, batch_real, generator)
        syn_idx = sample_indices(synset.class_indices(c), batch_syn, generator)
        if c not in wanted:
            continue
        img_real = real.images_train[real_idx.to(real.images_train.device)]
        img_syn, _ = synset.get(syn_idx)
        if dsa is not None:
            s = derive_seed(seed, c)
            img_real, img_syn = dsa.siamese(img_real, s), dsa.siamese(img_syn, s)
        yield c, img_real, img_syn


REAL_CHUNK = 64  # real instances embedded at a time on the CPU


def mean_real_embedding(net, img_real: torch.Tensor) -> torch.Tensor:
    """The mean embedding of a real batch, without a graph. On the CPU, through a network whose instances do not
    see each other (no batch norm), the batch goes through ``REAL_CHUNK`` at a time: the same embeddings, bit for
    bit (tests/test_networks.py), with a quarter of the activations' memory at batch_real 256 (the peak of a DM
    iteration). A GPU, where cuDNN may pick another algorithm for another batch size, takes the batch whole."""
    coupled = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    if img_real.device.type != "cpu" or coupled or len(img_real) <= REAL_CHUNK:
        return net.embed(img_real).mean(0)
    return torch.cat([net.embed(part) for part in img_real.split(REAL_CHUNK)]).mean(0)


def class_losses(net, real, synset, batch_real: int, batch_syn: int, dsa, seed: int, generator: torch.Generator,
                 classes=None):
    """Yield (class, DM loss of that class): squared distance of mean real and mean synthetic embeddings."""
    for c, img_real, img_syn in class_batches(real, synset, batch_real, batch_syn, dsa, seed, generator, classes):
        with torch.no_grad():
            mean_real = mean_real_embedding(net, img_real)
        yield c, (mean_real - net.embed(img_syn).mean(0)).square().sum()


def random_frozen_network(model: str, real, device, seed: int):
    torch.manual_seed(seed)
    net = get_network(model, real.channel, real.num_classes, real.im_size).to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.train()


class DistributionMatching(Objective):
    """Under torchrun each rank computes the losses of its share of the classes (:func:`common.dist.shard`) on the
    same network; the set's gradients are summed over the ranks, so every rank takes the step one process would."""

    name = "DM"
    splits = "the classes"

    def step(self, it: int) -> float:
        ctx, args = self.ctx, self.ctx.args
        net = random_frozen_network(args.model, ctx.real, ctx.device, derive_seed(args.seed, "net", it))
        g = torch.Generator().manual_seed(derive_seed(args.seed, "batch", it))
        ctx.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _, loss in class_losses(net, ctx.real, ctx.synset, args.batch_real, args.batch_syn, ctx.dsa,
                                    derive_seed(args.seed, "dsa", it), g, dist.shard(range(ctx.real.num_classes))):
            loss.backward()
            total += loss.item()
        ctx.synset.sync_gradients()
        ctx.optimizer.step()
        return dist.sum_scalar(total)
