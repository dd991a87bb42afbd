"""Voxel grids (N, 1, D, H, W): ModelNet10/40, ShapeNet, 3D-MNIST and the offline Voxel Fashion-MNIST."""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..atomic import atomic_path
from ..data import RealData, voxels
from .base import Domain, Option, class_rows, grid_columns, to_display


class VoxelDomain(Domain):
    name = "voxel"
    noun = "voxel grids"
    axes = "DHW"
    default_model = "Conv3DNet"
    datasets = voxels.VOXEL_DATASETS
    cache_folder = "voxels"
    shown_per_class = 10
    options = (Option("solid", "voxels: fill the inside of each shape's surface (default: surface occupancy, as the "
                      "original)", type=None, default=False),)

    def native_res(self, dataset: str) -> int:
        return voxels.VOXEL_SPECS[dataset].res

    def recipe(self, values) -> dict:
        """Filled shapes (surfaces, the default, record nothing: files from before --solid read alike)."""
        return {"solid": True} if self.option_values(values)["solid"] else {}

    def tag(self, values) -> str:
        return "_solid" if self.option_values(values)["solid"] else ""

    def load(self, dataset, *, data_path, res, subset, zca, options, cache_root, progress, test_only) -> RealData:
        return voxels.load(dataset, data_path, res, zca=zca, cache_dir=self.data_cache(cache_root),
                           progress=progress, test_only=test_only, **options)

    def save_visuals(self, x: Tensor, labels: Tensor, folder: str, stem: str, real: RealData) -> list[str]:
        """``{stem}.png``: one row per class, each shape its three orthogonal projections."""
        return [save_voxel_grid(x, labels, os.path.join(folder, f"{stem}.png"), mean=real.mean, std=real.std,
                                zca=real.zca)]

    def fit_metrics(self, decoded: Tensor, targets: Tensor, real: RealData, peak: float) -> dict[str, Tensor]:
        """The PSNR, and the IoU of the occupied voxels (above 0.5 once the normalisation is undone)."""
        x = to_display(decoded, real.mean, real.std) > 0.5
        y = to_display(targets, real.mean, real.std) > 0.5
        iou = (x & y).flatten(1).sum(1) / (x | y).flatten(1).sum(1).clamp_min(1)
        return dict(super().fit_metrics(decoded, targets, real, peak), IoU=iou)

    def fit_summary(self, metrics: dict[str, Tensor]) -> str:
        iou = metrics["IoU"]
        return f"{super().fit_summary(metrics)}; occupancy IoU {iou.mean():.3f} (lowest {iou.min():.3f})"

    def export_one(self, shown: Tensor, decoded: Tensor, label: int, path_stem: str) -> None:
        """A .npy grid (float16, as decoded) and a PNG of its three projections."""
        with atomic_path(path_stem + ".npy") as tmp:
            np.save(tmp, decoded[0].detach().cpu().numpy().astype(np.float16))
        save_voxel_grid(shown[None], torch.tensor([label]), path_stem + ".png", per_class=1)


VOXEL_VIEW_MIN_PX = 48  # a projection of a small volume is upscaled (nearest) to at least this many pixels
VOXEL_VIEW_SEP_PX = 1  # grey line between the three views of one shape
VOXEL_TILE_GAP_PX = 4  # white gap between shapes and around the grid
_VIEW_SEP_VALUE, _TILE_GAP_VALUE = 0.5, 1.0


def voxel_projections(volume: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The three orthogonal max projections of a (D, H, W) or (C, D, H, W) occupancy volume (channels are
    merged by their max): over D -> (H, W), over H -> (D, W), over W -> (D, H)."""
    v = volume.detach().float().cpu()
    if v.dim() == 4:
        v = v.amax(0)
    if v.dim() != 3:
        raise ValueError(f"a volume is (D, H, W) or (C, D, H, W), got shape {tuple(volume.shape)}")
    return v.amax(0), v.amax(1), v.amax(2)


def voxel_tile(volume: Tensor, view_px: int) -> Tensor:
    """One shape as a (view_px, 3 * view_px + 2 * VOXEL_VIEW_SEP_PX) image in [0, 1]: its three projections left
    to right, each padded (bottom, right) to a square of side max(D, H, W), upscaled by nearest to `view_px`,
    with grey separators between them."""
    views = voxel_projections(volume)
    side = max(volume.shape[-3:])
    parts: list[Tensor] = []
    for i, view in enumerate(views):
        square = torch.zeros(side, side)
        square[:view.shape[0], :view.shape[1]] = view.clamp(0, 1)
        scale = view_px // side
        parts.append(square.repeat_interleave(scale, 0).repeat_interleave(scale, 1))
        if i < 2:
            parts.append(torch.full((view_px, VOXEL_VIEW_SEP_PX), _VIEW_SEP_VALUE))
    return torch.cat(parts, dim=1)


def voxel_view_px(volume_shape) -> int:
    """Side in pixels of one drawn projection: max(D, H, W) times the smallest integer factor reaching
    VOXEL_VIEW_MIN_PX (1 for volumes already that large)."""
    side = max(volume_shape[-3:])
    return side * max(1, -(-VOXEL_VIEW_MIN_PX // side))


def save_voxel_grid(volumes: Tensor, labels: Tensor, path: str, per_class: int = 10, *, mean=None, std=None,
                    zca=None) -> str:
    """Volumes (n, 1, D, H, W) as ONE grey PNG at ``path``: one row per class with at most ``per_class`` shapes
    (rows padded with empty tiles), each shape a tile of its three orthogonal max projections (over D, over H,
    over W; see :func:`voxel_tile`), tiles separated by white gaps. ``mean``/``std``/``zca`` (the real data's)
    undo the normalisation first (:func:`to_display`); without them the volumes are taken as occupancies, and
    values are clamped to [0, 1]. Written atomically; returns ``path``."""
    if volumes.dim() != 5:
        raise ValueError(f"save_voxel_grid takes volumes (n, C, D, H, W), got shape {tuple(volumes.shape)}")
    x = volumes.detach().float().cpu()
    if mean is not None and std is not None:
        x = to_display(x, mean, std, zca)
    x = x.clamp(0, 1)
    per_class = grid_columns(labels, per_class)
    shapes = class_rows(x, labels, per_class)  # (classes * per_class, C, D, H, W)
    rows = len(shapes) // per_class
    view_px = voxel_view_px(x.shape)
    tile_w, gap = 3 * view_px + 2 * VOXEL_VIEW_SEP_PX, VOXEL_TILE_GAP_PX
    grid = torch.full((rows * (view_px + gap) + gap, per_class * (tile_w + gap) + gap), _TILE_GAP_VALUE)
    for i, shape in enumerate(shapes):
        r, c = divmod(i, per_class)
        top, left = gap + r * (view_px + gap), gap + c * (tile_w + gap)
        grid[top:top + view_px, left:left + tile_w] = voxel_tile(shape, view_px)
    pixels = (grid * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(pixels, mode="L").save(tmp, format="PNG")
    return path
