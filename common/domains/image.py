"""Images (N, C, H, W): Fashion-MNIST, MNIST, CIFAR-10/100, SVHN, Tiny-ImageNet and ImageNet subsets."""
from __future__ import annotations

import os

from torch import Tensor

from ..atomic import atomic_path
from ..data import RealData, images
from .base import Domain, class_rows, grid_columns, to_display


class ImageDomain(Domain):
    name = "image"
    noun = "images"
    axes = "HW"
    default_model = "ConvNet"
    datasets = images.IMAGE_DATASETS
    whitens = True

    def native_res(self, dataset: str) -> int:
        return images.native_size(dataset)[0]

    def subset(self, dataset: str, subset):
        return subset if dataset in images.DATASETS_WITH_SUBSETS else None

    def load(self, dataset, *, data_path, res, subset, zca, options, cache_root, progress, test_only) -> RealData:
        return images.load(dataset, data_path, res, subset, zca)

    def save_visuals(self, x: Tensor, labels: Tensor, folder: str, stem: str, real: RealData) -> list[str]:
        """``{stem}.png``: a grid, one row per class."""
        path = os.path.join(folder, f"{stem}.png")
        save_grid(x, labels, path, real.mean, real.std, real.zca)
        return [path]

    def export_one(self, shown: Tensor, decoded: Tensor, label: int, path_stem: str) -> None:
        from torchvision.utils import save_image  # torchvision takes a second to import: only when drawing
        with atomic_path(path_stem + ".png") as tmp:
            save_image(shown, tmp, format="png")


def save_grid(x: Tensor, labels: Tensor, path: str, mean, std, zca=None, per_class: int = 10) -> None:
    """A PNG grid, one row per class, at most ``per_class`` instances each (as many columns as the fullest class
    fills; clips, volumes: the middle frame or slice)."""
    from torchvision.utils import save_image  # torchvision takes a second to import: only when drawing
    if x.dim() == 5:  # (n, C, T, H, W): show the middle frame / slice
        x = x[:, :, x.shape[2] // 2]
    per_class = grid_columns(labels, per_class)
    grid = class_rows(to_display(x, mean, std, zca), labels, per_class)
    with atomic_path(path) as tmp:
        save_image(grid, tmp, nrow=per_class, padding=2, format="png")
