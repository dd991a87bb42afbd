"""The record a run leaves: log.txt, config.json, metrics.jsonl, PNG grids and an accuracy plot."""
from __future__ import annotations

import json
import os
import time
from typing import Optional

import torch
from torch import Tensor

from .atomic import atomic_path, write_text
from .errors import UserError


class RunRecord:
    """The run folder. ``main=False`` (every rank but 0 under torchrun): the same paths, but nothing is checked,
    created, printed or written, so each file has one writer."""

    def __init__(self, folder: str, resume: bool = False, quiet: bool = False, main: bool = True):
        self.folder, self.quiet, self.main = folder, quiet, main
        self.t0 = time.time()
        if not main:
            return
        if os.path.isdir(folder) and os.listdir(folder) and not resume and os.path.exists(self.path("metrics.jsonl")):
            raise UserError(f"run folder {folder} already holds a run; pass --resume to continue it, or choose "
                            f"another --exp_name / --save_path")
        os.makedirs(self.path("imgs"), exist_ok=True)

    def path(self, *parts: str) -> str:
        return os.path.join(self.folder, *parts)

    def log(self, msg: str) -> None:
        if not self.main:
            return
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        if not self.quiet:
            from tqdm.auto import tqdm
            tqdm.write(line)
        with open(self.path("log.txt"), "a") as f:
            f.write(line + "\n")

    def write_config(self, config: dict) -> None:
        if self.main:
            write_text(self.path("config.json"), json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")

    def add_metric(self, **row) -> None:
        if not self.main:
            return
        row.setdefault("wall_time", round(time.time() - self.t0, 2))
        with open(self.path("metrics.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")

    def metrics(self) -> list[dict]:
        if not os.path.exists(self.path("metrics.jsonl")):
            return []
        with open(self.path("metrics.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]

    def truncate_metrics(self, before_iteration: int) -> None:
        """On resume: drop rows of iterations the resumed run will redo."""
        if not self.main:
            return
        rows = [r for r in self.metrics() if r.get("iteration", -1) < before_iteration]
        write_text(self.path("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))

    def plot_accuracy(self) -> Optional[str]:
        if not self.main:
            return None
        rows = [r for r in self.metrics() if "acc_mean" in r]
        if not rows:
            return None
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for model in dict.fromkeys(r["model"] for r in rows):
            pts = [r for r in rows if r["model"] == model]
            ax.errorbar([r["iteration"] for r in pts], [100 * r["acc_mean"] for r in pts],
                        yerr=[100 * r["acc_std"] for r in pts], marker="o", capsize=3, label=model)
        ax.set_xlabel("iteration")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(os.path.basename(self.folder))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        out = self.path("accuracy.png")
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        return out


def to_display(images: Tensor, mean, std, zca=None) -> Tensor:
    """Normalised (and possibly ZCA-whitened) images -> [0, 1] for drawing."""
    x = images.detach().float().cpu()
    if zca is not None:
        x = zca.inverse_transform(x.flatten(1)).view_as(x)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    x = x * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    return x.clamp(0, 1)


def save_grid(images: Tensor, labels: Tensor, path: str, mean, std, zca=None, per_class: int = 10) -> None:
    """A PNG grid, one row per class, at most ``per_class`` instances each (video: first frame)."""
    from torchvision.utils import save_image
    if images.dim() == 5:  # (n, C, T, H, W): show the middle frame / slice
        images = images[:, :, images.shape[2] // 2]
    grid = _class_rows(to_display(images, mean, std, zca), labels, per_class)
    with atomic_path(path) as tmp:
        save_image(grid, tmp, nrow=per_class, padding=2, format="png")



def _class_rows(x: Tensor, labels: Tensor, per_class: int) -> Tensor:
    """(classes * per_class, ...) instances, one row of ``per_class`` per class, padded with zeros."""
    rows = []
    for c in labels.unique(sorted=True).tolist():
        sel = x[(labels.cpu() == c)][:per_class]
        rows.append(torch.cat([sel, torch.zeros(per_class - len(sel), *x.shape[1:])]))
    return torch.cat(rows)


def _to_uint8_frames(grid_frames: Tensor) -> list:
    """(T, C, H, W) in [0, 1] -> T PIL images (grey or RGB)."""
    from PIL import Image
    x = (grid_frames * 255).round().clamp(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        return [Image.fromarray(f[0].numpy(), mode="L") for f in x]
    return [Image.fromarray(f.permute(1, 2, 0).numpy(), mode="RGB") for f in x]


def write_gif(clip: Tensor, path: str, fps: float = 8.0) -> None:
    """A (T, C, H, W) clip in [0, 1] as an animated GIF that loops, written atomically."""
    frames = _to_uint8_frames(clip)
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps),
                       loop=0)


def save_video_grid(clips: Tensor, labels: Tensor, path: str, mean, std, per_class: int = 10,
                    fps: float = 8.0) -> tuple[str, str]:
    """Clips (n, C, T, H, W) as an animated GIF grid, one row per class with at most ``per_class`` clips, at
    ``path`` (.gif), and a PNG frame strip next to it (``*_frames.png``: one row per class, its first clip's
    frames left to right). Returns both paths."""
    from torchvision.utils import make_grid, save_image
    x = to_display(clips, mean, std)  # (n, C, T, H, W)
    grid_clips = _class_rows(x, labels, per_class)
    frames = torch.stack([make_grid(grid_clips[:, :, t], nrow=per_class, padding=2)
                          for t in range(x.shape[2])])  # (T, 3, H', W')
    if x.shape[1] == 1:
        frames = frames[:, :1]
    write_gif(frames, path, fps)
    strip = _class_rows(x, labels, 1)  # (classes, C, T, H, W): the first clip of each class
    strip_path = path[:-4] + "_frames.png" if path.endswith(".gif") else path + "_frames.png"
    with atomic_path(strip_path) as tmp:
        save_image(strip.permute(0, 2, 1, 3, 4).reshape(-1, *strip.shape[1:2], *strip.shape[3:]), tmp,
                   nrow=x.shape[2], padding=2, format="png")
    return path, strip_path


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
    from PIL import Image
    if volumes.dim() != 5:
        raise ValueError(f"save_voxel_grid takes volumes (n, C, D, H, W), got shape {tuple(volumes.shape)}")
    x = volumes.detach().float().cpu()
    if mean is not None and std is not None:
        x = to_display(x, mean, std, zca)
    x = x.clamp(0, 1)
    shapes = _class_rows(x, labels, per_class)  # (classes * per_class, C, D, H, W)
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


def save_visuals(images: Tensor, labels: Tensor, folder: str, stem: str, real) -> list[str]:
    """What a user looks at for a set of instances of ``real``'s domain: images -> ``{stem}.png`` (a grid, one
    row per class); clips -> ``{stem}.gif`` (an animated grid) and ``{stem}_frames.png`` (a frame strip); voxel
    volumes -> ``{stem}.png`` (one row per class, each shape its three orthogonal projections)."""
    domain = getattr(real, "domain", "image")
    if domain == "video":
        return list(save_video_grid(images, labels, os.path.join(folder, f"{stem}.gif"), real.mean, real.std))
    if domain == "voxel":
        return [save_voxel_grid(images, labels, os.path.join(folder, f"{stem}.png"), mean=real.mean, std=real.std,
                                zca=getattr(real, "zca", None))]
    path = os.path.join(folder, f"{stem}.png")
    save_grid(images, labels, path, real.mean, real.std, real.zca)
    return [path]
