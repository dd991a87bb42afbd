"""The record a run leaves: log.txt, config.json, metrics.jsonl, PNG grids and an accuracy plot."""
from __future__ import annotations

import json
import os
import time
from typing import Optional

import torch
from torch import Tensor

from .errors import UserError


def atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class RunRecord:
    def __init__(self, folder: str, resume: bool = False, quiet: bool = False):
        self.folder, self.quiet = folder, quiet
        if os.path.isdir(folder) and os.listdir(folder) and not resume and os.path.exists(self.path("metrics.jsonl")):
            raise UserError(f"run folder {folder} already holds a run; pass --resume to continue it, or choose "
                            f"another --exp_name / --save_path")
        os.makedirs(self.path("imgs"), exist_ok=True)
        self.t0 = time.time()

    def path(self, *parts: str) -> str:
        return os.path.join(self.folder, *parts)

    def log(self, msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        if not self.quiet:
            from tqdm.auto import tqdm
            tqdm.write(line)
        with open(self.path("log.txt"), "a") as f:
            f.write(line + "\n")

    def write_config(self, config: dict) -> None:
        atomic_write_text(self.path("config.json"), json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")

    def add_metric(self, **row) -> None:
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
        rows = [r for r in self.metrics() if r.get("iteration", -1) < before_iteration]
        atomic_write_text(self.path("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))

    def plot_accuracy(self) -> Optional[str]:
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
        tmp = self.path(".accuracy.tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, out)
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
    x = to_display(images, mean, std, zca)
    rows = []
    classes = labels.unique(sorted=True).tolist()
    for c in classes:
        sel = x[(labels.cpu() == c)][:per_class]
        pad = torch.zeros(per_class - len(sel), *x.shape[1:])
        rows.append(torch.cat([sel, pad]))
    grid = torch.cat(rows)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp_{os.path.basename(path)}")
    save_image(grid, tmp, nrow=per_class, padding=2, format="png")
    os.replace(tmp, path)

