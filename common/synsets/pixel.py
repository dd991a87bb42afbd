"""Pixel: the synthetic instances are the stored tensors themselves (ipc per class)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from .base import Flag, SynSet, sample_real


class Pixel(SynSet):
    name = "pixel"
    title = "pixel"
    flags = (Flag("lr_img", float, "learning rate of the pixels (SGD, momentum 0.5)"),)

    def __init__(self, num_classes: int, channel: int, im_size: Sequence[int], ipc: int, lr_img: float = 1.0,
                 mom_img: float = 0.5):
        self.lr_img, self.mom_img = lr_img, mom_img
        super().__init__(num_classes, channel, im_size, ipc)
        self.images = nn.Parameter(torch.randn(self.n_total, channel, *self.im_size))

    def _instances_per_class(self) -> int:
        return self.ipc

    def params_per_instance(self) -> int:
        return self.channel * math.prod(self.im_size)

    def config(self) -> dict:
        return dict(super().config(), lr_img=self.lr_img, mom_img=self.mom_img)

    def decode(self, indices: Tensor, res=None) -> Tensor:
        return self.images[indices]

    @torch.no_grad()
    def init_from_real(self, real, generator: torch.Generator, progress: bool = False) -> Tensor:
        imgs = torch.cat([sample_real(real, c, self.n_per_class, generator) for c in range(self.num_classes)])
        self.images.copy_(imgs)
        return imgs

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.images], lr=self.lr_img, momentum=self.mom_img)
