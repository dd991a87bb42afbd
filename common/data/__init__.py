"""Real datasets, one module per domain behind one :func:`get_dataset`.

``images`` (Fashion-MNIST, MNIST, CIFAR-10/100, SVHN, Tiny-ImageNet, ImageNet subsets) loads whole sets into
memory as normalised tensors; ``video`` (UCF101, miniUCF101, HMDB51 and the offline Moving Fashion-MNIST, all in
the frames layout) caches the sampled clips on disk once as uint8 and memory-maps them; ``voxels`` (ModelNet10/40,
ShapeNet, 3D-MNIST and the offline Voxel Fashion-MNIST) voxelises point clouds and meshes once into a cache of
occupancy grids; ``audio`` (Mini Speech Commands, Speech Commands and the offline espeak-ng set) turns WAV clips
into log spectrograms once, cached on disk. Every loader returns a :class:`RealData`.
"""
from __future__ import annotations

from ..errors import choice_error
from . import audio, images, video, voxels
from .audio import AUDIO_DATASETS
from .base import (DEFAULT_DATA_PATH, NO_DOWNLOAD_ENV, TRANSFORM_LEGACY_ZCA, TRANSFORM_NORMALISE, TRANSFORM_TEXT,
                   TRANSFORM_ZCA, ZCA_EPS, RealData, data_transform, recorded_transform, transform_mismatch)
from .images import (DEBIAN_FASHION_MNIST, FASHION_MNIST_CLASSES, IMAGE_DATASETS, IMAGENET_SUBSET_INDICES,
                     IMAGENET_SUBSET_NAMES, IMAGENET_SUBSETS)
from .video import VIDEO_DATASETS
from .voxels import VOXEL_DATASETS

DATASETS: tuple[str, ...] = IMAGE_DATASETS + VIDEO_DATASETS + VOXEL_DATASETS + AUDIO_DATASETS


def is_video(name: str) -> bool:
    return name in VIDEO_DATASETS


def is_voxel(name: str) -> bool:
    return name in VOXEL_DATASETS


def get_dataset(name: str, data_path: str | None = None, res: int | None = None, subset: str | None = None,
                zca: bool = False, **options) -> RealData:
    """Load dataset ``name`` from ``data_path`` (default ``data``).

    Images: ``res`` resizes to res x res (None: native size, 128 for ImageNet); ``subset`` picks the ImageNet
    subset; ``zca`` whitens the [0, 1] pixels as the original code (kornia, eps 0.1). Video: ``res`` is the side
    of the square frames, and ``options`` are :func:`common.data.video.load`'s (frames, frame_gap, clip_seed,
    short_clips, cache_dir, progress, test_only). Voxels: ``res`` is the side of the cubic grid, and ``options`` are
    :func:`common.data.voxels.load`'s (solid, cache_dir, progress, test_only). Audio: ``res`` is the side of
    the spectrograms (64), and ``options`` are :func:`common.data.audio.load`'s (cache_dir, progress, test_only)."""
    if name in IMAGE_DATASETS:
        return images.load(name, data_path, res, subset, zca)
    if name in VIDEO_DATASETS:
        return video.load(name, data_path, res, zca=zca, **options)
    if name in VOXEL_DATASETS:
        return voxels.load(name, data_path, res, zca=zca, **options)
    if name in AUDIO_DATASETS:
        return audio.load(name, data_path, res, zca=zca, **options)
    raise choice_error("dataset", name, DATASETS)
