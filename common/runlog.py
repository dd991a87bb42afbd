"""The record a run leaves: log.txt, config.json, metrics.jsonl and an accuracy plot (what its sets look like is
drawn by the run's domain: :mod:`common.domains`)."""
from __future__ import annotations

import json
import os
import time
from typing import Optional

import matplotlib
from tqdm.auto import tqdm

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
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # after choosing the file-only backend
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
