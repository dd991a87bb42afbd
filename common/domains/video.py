"""Video clips (N, C, T, H, W): UCF101, miniUCF101, HMDB51 and the offline Moving Fashion-MNIST."""
from __future__ import annotations

import os

import torch
from PIL import Image
from torch import Tensor

from ..atomic import atomic_path
from ..data import RealData, video
from .base import Domain, Option, _get, class_rows, grid_columns, to_display


class VideoDomain(Domain):
    name = "video"
    noun = "video clips"
    axes = "THW"
    default_model = "ConvNet3D"
    datasets = video.VIDEO_DATASETS
    cache_folder = "clips"
    shown_per_class = 4  # a budget-filled miniUCF101 set's initial clips would be 8.5 GB
    options = (
        Option("frames", "video: frames per clip (None: the dataset's, 16; eval.py: the checkpoint's)", positive=True),
        Option("frame_gap", "video: distance between sampled frames (None: the dataset's; UCF101/HMDB51 4)",
               positive=True),
        Option("short_clips", "video: a clip shorter than (frames - 1) * frame_gap + 1 frames is an error (error, "
               "the default), or, as the original code, every clip of fewer than frames * frame_gap frames is "
               "sampled with the gap length // frames (shrink)", type=str, default="error",
               choices=video.SHORT_CLIPS),
        Option("clip_seed", "video: the seed of every training clip's start frame and flip (default 0; not --seed, "
               "so that runs and experts with other seeds see the same clips and share one clip cache)", default=0),
    )
    eval_options = (
        Option("shuffle_frames", "video: train on the synthetic clips with their frames in a random order (one "
               "permutation per clip, from --seed): how much the set's motion matters", type=None, default=False),
    )
    size_options = ("frames",)

    def native_res(self, dataset: str) -> int:
        return video.VIDEO_SPECS[dataset].side

    def dataset_default(self, dataset: str, option: str):
        spec = video.VIDEO_SPECS[dataset]
        return {"frames": spec.frames, "frame_gap": spec.gap}[option]

    def instance_size(self, values) -> tuple[int, ...]:
        res = _get(values, "res")
        return (_get(values, "frames"), res, res)

    def recipe(self, values) -> dict:
        """How the clips were sampled (their length is in the instance size)."""
        o = self.option_values(values)
        return {k: o[k] for k in ("frame_gap", "short_clips", "clip_seed")}

    def cache_key(self, values) -> dict:
        return self.option_values(values)

    def tag(self, values) -> str:
        """``_f{frames}_g{gap}`` for clips sampled otherwise than the dataset's default."""
        o = self.option_values(values)
        spec = video.VIDEO_SPECS[_get(values, "dataset")]
        if (o["frames"], o["frame_gap"]) == (spec.frames, spec.gap):
            return ""
        return f"_f{o['frames']}_g{o['frame_gap']}"

    def load(self, dataset, *, data_path, res, subset, zca, options, cache_root, progress, test_only) -> RealData:
        return video.load(dataset, data_path, res, zca=zca, cache_dir=self.data_cache(cache_root), progress=progress,
                          test_only=test_only, **options)

    def save_visuals(self, x: Tensor, labels: Tensor, folder: str, stem: str, real: RealData) -> list[str]:
        """``{stem}.gif`` (an animated grid) and ``{stem}_frames.png`` (a frame strip)."""
        return list(save_video_grid(x, labels, os.path.join(folder, f"{stem}.gif"), real.mean, real.std))

    def export_one(self, shown: Tensor, decoded: Tensor, label: int, path_stem: str) -> None:
        write_gif(shown.transpose(0, 1), path_stem + ".gif")

    def transform_for_eval(self, images: Tensor, values, seed: int) -> tuple[Tensor, str]:
        if not getattr(values, "shuffle_frames", False):
            return images, ""
        return shuffle_frames(images, seed), ", frames shuffled"


def shuffle_frames(clips: Tensor, seed: int) -> Tensor:
    """Each clip (n, C, T, H, W) with its frames in its own random order (drawn from ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(clips.shape[2], generator=g) for _ in range(len(clips))]).to(clips.device)
    index = order.view(len(clips), 1, -1, 1, 1).expand(-1, clips.shape[1], -1, *clips.shape[3:])
    return clips.gather(2, index)


def _to_uint8_frames(grid_frames: Tensor) -> list:
    """(T, C, H, W) in [0, 1] -> T PIL images (grey or RGB)."""
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
    from torchvision.utils import make_grid, save_image  # torchvision takes a second to import: only when drawing
    x = to_display(clips, mean, std)  # (n, C, T, H, W)
    per_class = grid_columns(labels, per_class)
    grid_clips = class_rows(x, labels, per_class)
    frames = torch.stack([make_grid(grid_clips[:, :, t], nrow=per_class, padding=2)
                          for t in range(x.shape[2])])  # (T, 3, H', W')
    if x.shape[1] == 1:
        frames = frames[:, :1]
    write_gif(frames, path, fps)
    strip = class_rows(x, labels, 1)  # (classes, C, T, H, W): the first clip of each class
    strip_path = path[:-4] + "_frames.png" if path.endswith(".gif") else path + "_frames.png"
    with atomic_path(strip_path) as tmp:
        save_image(strip.permute(0, 2, 1, 3, 4).reshape(-1, *strip.shape[1:2], *strip.shape[3:]), tmp,
                   nrow=x.shape[2], padding=2, format="png")
    return path, strip_path
