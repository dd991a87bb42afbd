"""Spoken commands as log-magnitude spectrograms (N, 1, F, T): Mini Speech Commands, Speech Commands v0.02 and the
offline espeak-ng set. A spectrogram is a one-channel "image" over (frequency, time), so every parameterisation and
objective of images runs on it; what differs is what a user looks at (a colour-mapped grid, low frequencies at
the bottom) and listens to (each instance as a WAV, its phases recovered by Griffin-Lim)."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image
from torch import Tensor

from ..atomic import atomic_path
from ..data import RealData, audio
from .base import Domain, class_folder, class_rows, grid_columns

COLOUR_MAP = "magma"  # perceptually uniform
SPAN = 3.0  # the colour map covers normalised values -SPAN..SPAN (mean +- 3 std of the train spectrograms)
GRIFFIN_LIM_ITERATIONS = 64


class AudioDomain(Domain):
    name = "audio"
    noun = "spectrograms"
    axes = "FT"  # frequency (row 0 the lowest), time
    default_model = "ConvNetD4"
    datasets = audio.AUDIO_DATASETS
    cache_folder = "spectrograms"

    def native_res(self, dataset: str) -> int:
        return audio.SIDE

    def load(self, dataset, *, data_path, res, subset, zca, options, cache_root, progress, test_only) -> RealData:
        return audio.load(dataset, data_path, res, zca=zca, cache_dir=self.data_cache(cache_root), progress=progress,
                          test_only=test_only)

    def save_visuals(self, x: Tensor, labels: Tensor, folder: str, stem: str, real: RealData) -> list[str]:
        """``{stem}.png``: the spectrograms colour-mapped, one row per class (at most 10), low frequencies at the
        bottom of each."""
        path = os.path.join(folder, f"{stem}.png")
        save_spectrogram_grid(x, labels, path)
        return [path]

    def export(self, images: Tensor, labels: Tensor, real: RealData, folder: str) -> None:
        """One sub-folder per class; per instance a colour-mapped PNG and a WAV reconstructed by Griffin-Lim."""
        logs = unnormalise(images, real)
        waves = audio.griffin_lim(audio.magnitude_from_log(logs[:, 0]), GRIFFIN_LIM_ITERATIONS)
        for i, c in enumerate(labels.tolist()):
            stem = os.path.join(class_folder(folder, c, real.class_names), f"{i:05d}")
            with atomic_path(stem + ".png") as tmp:
                Image.fromarray(colour(images[i, 0])).save(tmp, format="png")
            with atomic_path(stem + ".wav") as tmp:
                audio.write_wav(tmp, waves[i])


def unnormalise(x: Tensor, real: RealData) -> Tensor:
    """Normalised spectrograms -> log magnitudes."""
    return x.detach().float().cpu() * real.std[0] + real.mean[0]


def colour(spec: Tensor) -> np.ndarray:
    """One normalised (F, T) spectrogram -> (F, T, 3) uint8, low frequencies at the bottom."""
    from matplotlib import colormaps  # matplotlib takes a while to import: only when drawing
    v = ((spec.detach().float().cpu().flip(0) + SPAN) / (2 * SPAN)).clamp(0, 1).numpy()
    return (colormaps[COLOUR_MAP](v)[..., :3] * 255).round().astype(np.uint8)


def save_spectrogram_grid(x: Tensor, labels: Tensor, path: str, per_class: int = 10, scale: int = 2) -> None:
    """A PNG grid of colour-mapped spectrograms (n, 1, F, T), one row per class with at most ``per_class`` (as many
    columns as the fullest class needs; a class with fewer leaves its cells black), each cell ``scale`` times
    enlarged, 2-pixel gaps."""
    labels = labels.cpu()
    cols = grid_columns(labels, per_class)
    counts = [min(cols, int((labels == c).sum())) for c in labels.unique(sorted=True).tolist()]
    cells = class_rows(x.detach().float().cpu(), labels, cols)
    f, t = x.shape[-2:]
    gap = 2
    canvas = np.zeros((len(counts) * (f * scale + gap) + gap, cols * (t * scale + gap) + gap, 3), np.uint8)
    for r, n in enumerate(counts):
        for k in range(n):
            y, left = gap + r * (f * scale + gap), gap + k * (t * scale + gap)
            canvas[y:y + f * scale, left:left + t * scale] = np.kron(colour(cells[r * cols + k, 0]),
                                                                    np.ones((scale, scale, 1), np.uint8))
    with atomic_path(path) as tmp:
        Image.fromarray(canvas).save(tmp, format="png")
