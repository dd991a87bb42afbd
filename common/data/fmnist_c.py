"""Fashion-MNIST-C: an offline stand-in for CIFAR-10-C, made from the real Fashion-MNIST test set and written in
the CIFAR-10-C layout, so that ``eval.py --test_set FashionMNIST-C`` runs the real reader (:mod:`.shifted`).

The 15 corruptions of Hendrycks & Dietterich (ICLR 2019) at their 5 severities, with the severity parameters they
published for CIFAR-10-C (``make_cifar_c.py``), implemented here with NumPy, SciPy, PyTorch and Pillow for a batch
of grayscale images at once. What differs from their CIFAR code, and why:

- ``motion_blur`` (and the motion-blurred flakes of ``snow``): ImageMagick's ``MotionBlurImage`` is replaced by
  the same kernel written out: samples at distances 0, 1, ..., 2 * radius along the blur's direction, weighted by
  exp(-d^2 / (2 sigma^2)), bilinearly interpolated, edges clamped (ImageMagick's default virtual pixels).
- ``frost``: the original blends crops of six frost photographs that are not available here; the photographs are
  replaced by six synthesised textures (ridged multi-octave value noise with bright crystal streaks, :func:`_frost_bank`),
  blended with the published weights.
- ``elastic_transform``: the coefficients the CIFAR code gives as multiples of 32 (its image side) are multiples of
  28 here (Fashion-MNIST's side); the affine step and the displacement are resampled bilinearly with reflected
  borders, as there.
- ``brightness`` adds to the HSV value; for a grayscale image that is the pixel itself, so it adds to the pixel.
- ``contrast``, ``fog``: the mean and the maximum are per image, as there.

Randomness: every (corruption, severity) draws from its own generator seeded with (seed, corruption, severity), so
one corruption's file is the same whether or not the others are built.

On disk (:func:`build`)::

    <out_root>/FashionMNIST-C/<corruption>.npy   uint8 (5 n, 28, 28): the n test images at severity 1, then 2 ... 5
    <out_root>/FashionMNIST-C/labels.npy         uint8 (5 n,): their labels, 5 times
    <out_root>/FashionMNIST-C/preview.png        one row per corruption, one image at severities 0 (clean) to 5

The build writes into a hidden temporary sibling folder and renames it into place at the end, so an interrupted
build never leaves a half-written dataset.

Command line::

    python -m common.data.fmnist_c --out data                      # the 10,000 test images (about a minute)
    python -m common.data.fmnist_c --out data --test_per_class 100 --corruptions fog,contrast
"""
from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from ..cli import run_main
from ..errors import UserError, choice_error
from .offline import GARMENT, NUM_CLASSES, Parser, atomic_folder, check_int, load_sources, refuse_existing
from .shifted import CORRUPTIONS, SEVERITIES, check_corruptions

NAME = "FashionMNIST-C"
STREAM = 3  # this dataset's random stream (moving_fmnist and voxel_fmnist use 1 and 2)

# the published CIFAR-10-C parameters, severity 1..5
GAUSSIAN = (0.04, 0.06, 0.08, 0.09, 0.10)
SHOT = (500, 250, 100, 75, 50)
IMPULSE = (0.01, 0.02, 0.03, 0.05, 0.07)
DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # disk radius, its anti-alias blur
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # sigma, max shift, iterations
MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # radius, sigma
ZOOM_MAX = (1.06, 1.11, 1.16, 1.21, 1.26)  # zoom factors 1, 1.01, ... below this
SNOW = ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))
FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # image weight, frost weight
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # strength, wibble decay
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
ELASTIC = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))  # x side
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
JPEG = (80, 65, 58, 50, 40)

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


# --------------------------------------------------------------------------------------------------------
# helpers: x is float (N, H, W) in [0, 1] throughout

def _quantise(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> the uint8 they would be stored as (truncated, as np.uint8 of x * 255 is), back in [0, 1]."""
    return np.uint8(np.clip(x, 0, 1) * 255) / 255.0


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """A Gaussian blur of each image (not across images)."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode=mode, truncate=truncate)


def _sample(x: np.ndarray, grid: torch.Tensor, padding: str) -> np.ndarray:
    """Bilinear sampling of each image at ``grid`` (N, H, W, 2), (x, y) in pixel units."""
    n, h, w = x.shape
    norm = torch.stack([grid[..., 0] * 2 / (w - 1) - 1, grid[..., 1] * 2 / (h - 1) - 1], dim=-1)
    out = F.grid_sample(torch.from_numpy(x).double().unsqueeze(1), norm.double(), mode="bilinear",
                        padding_mode=padding, align_corners=True)
    return out[:, 0].numpy()


def _pixel_grid(n: int, h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    return torch.stack([xs, ys], dim=-1).expand(n, h, w, 2)


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray, chunk: int = 1000) -> np.ndarray:
    """Each image blurred along its own direction (degrees): the weighted mean of the image shifted by d pixels,
    d = 0 .. 2 * radius, weights exp(-d^2 / (2 sigma^2)) (those under 1e-6 of the largest left out); borders
    clamped. In chunks of images, single precision."""
    n, h, w = x.shape
    d = np.arange(2 * math.ceil(radius) + 1, dtype=np.float64)
    weights = np.exp(-d ** 2 / (2 * sigma ** 2))
    d, weights = d[weights > 1e-6], weights[weights > 1e-6]
    weights /= weights.sum()
    out = np.empty(x.shape)
    for s in range(0, n, chunk):
        part = torch.from_numpy(x[s:s + chunk]).float().unsqueeze(1)
        m = len(part)
        theta = torch.from_numpy(np.deg2rad(angles[s:s + chunk])).float().view(m, 1, 1, 1)
        step = torch.cat([torch.cos(theta) * 2 / (w - 1), torch.sin(theta) * 2 / (h - 1)], dim=-1)  # 1 px
        base = _unit_grid(m, h, w)
        acc = torch.zeros(m, 1, h, w)
        for dist, weight in zip(d, weights):
            acc += float(weight) * F.grid_sample(part, base - float(dist) * step, mode="bilinear",
                                                 padding_mode="border", align_corners=True)
        out[s:s + chunk] = acc[:, 0].double().numpy()
    return out


def _unit_grid(n: int, h: int, w: int) -> torch.Tensor:
    """(n, h, w, 2) float32: each pixel's (x, y) in grid_sample's [-1, 1] coordinates (corners at pixel centres)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack([xs, ys], dim=-1).expand(n, h, w, 2)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom each image by ``factor`` about its centre and keep the centre (H, W): the centre ceil(H / factor)
    square, linearly interpolated (corner pixels kept in place, as SciPy's order-1 zoom) up to round(ceil(H /
    factor) * factor) pixels, trimmed."""
    h = x.shape[1]
    ch = int(math.ceil(h / factor))
    top = (h - ch) // 2
    side = int(round(ch * factor))
    z = F.interpolate(torch.from_numpy(np.ascontiguousarray(x[:, top:top + ch, top:top + ch])).unsqueeze(1),
                      size=(side, side), mode="bilinear", align_corners=True)[:, 0].numpy()
    trim = (side - h) // 2
    return z[:, trim:trim + h, trim:trim + h]


def _plasma(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """n diamond-square height maps (size a power of two) in [0, 1], the random amplitude divided by ``decay`` at
    each halving of the step."""
    m = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def wibbled(a):
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corners = m[:, 0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares = squares + np.roll(squares, -1, axis=2)
        m[:, half:size:step, half:size:step] = wibbled(squares)
        centres = m[:, half:size:step, half:size:step]
        corners = m[:, 0:size:step, 0:size:step]
        m[:, 0:size:step, half:size:step] = wibbled(centres + np.roll(centres, 1, axis=1)
                                                    + corners + np.roll(corners, -1, axis=2))
        m[:, half:size:step, 0:size:step] = wibbled(centres + np.roll(centres, 1, axis=2)
                                                    + corners + np.roll(corners, -1, axis=1))
        step //= 2
        wibble /= decay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


def _frost_bank(rng: np.random.Generator, count: int = 6, size: int = 160) -> np.ndarray:
    """``count`` synthetic frost textures (size x size, [0, 1]) standing in for the six photographs: ridged
    multi-octave value noise (thin bright ridges where the noise crosses its middle) plus bright straight crystal
    streaks, slightly blurred, scaled to a mean near 0.45."""
    out = np.zeros((count, size, size))
    for k in range(count):
        tex = np.zeros((size, size))
        amp = 1.0
        for cells in (5, 10, 20, 40):
            coarse = rng.random((cells + 1, cells + 1))
            fine = ndimage.zoom(coarse, size / (cells + 1), order=3)[:size, :size]
            tex += amp * (1 - np.abs(2 * fine - 1)) ** 4
            amp *= 0.6
        for _ in range(60):  # crystal streaks
            y, x = rng.uniform(0, size, 2)
            angle, length = rng.uniform(0, np.pi), rng.uniform(5, 30)
            t = np.linspace(0, length, int(length * 2))
            ys = np.clip((y + t * np.sin(angle)).astype(int), 0, size - 1)
            xs = np.clip((x + t * np.cos(angle)).astype(int), 0, size - 1)
            tex[ys, xs] += rng.uniform(0.5, 1.0)
        tex = ndimage.gaussian_filter(tex, 0.7)
        tex = (tex - tex.min()) / (tex.max() - tex.min())
        out[k] = np.clip(tex * (0.45 / tex.mean()), 0, 1)
    return out


def _per_image_pil(x: np.ndarray, op: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(op(Image.fromarray(np.uint8(np.clip(im, 0, 1) * 255))),
                                dtype=np.float64) / 255.0 for im in x])


# --------------------------------------------------------------------------------------------------------
# the 15 corruptions: (x in [0, 1], severity 1..5, generator) -> [0, 1]

def gaussian_noise(x, s, rng):
    return x + rng.normal(scale=GAUSSIAN[s - 1], size=x.shape)


def shot_noise(x, s, rng):
    c = SHOT[s - 1]
    return rng.poisson(x * c) / c


def impulse_noise(x, s, rng):
    hit = rng.random(x.shape) < IMPULSE[s - 1]
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(np.float64), x)


def defocus_blur(x, s, rng):
    radius, alias = DEFOCUS[s - 1]
    span = np.arange(-8, 9) if radius <= 8 else np.arange(-math.ceil(radius), math.ceil(radius) + 1)
    xx, yy = np.meshgrid(span, span)
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias ** 2))  # the 3 x 3 Gaussian that anti-aliases the disk
    taps /= taps.sum()
    kernel = ndimage.correlate1d(ndimage.correlate1d(disk, taps, 0, mode="mirror"), taps, 1, mode="mirror")
    rows = np.flatnonzero(kernel.max(axis=1) > 1e-12)  # the kernel's support (a centred square)
    kernel = kernel[rows[0]:rows[-1] + 1, rows[0]:rows[-1] + 1]
    pad = len(kernel) // 2  # borders mirrored without repeating the edge pixel (OpenCV's default border)
    padded = F.pad(torch.from_numpy(x).unsqueeze(1), (pad,) * 4, mode="reflect")
    return F.conv2d(padded, torch.from_numpy(kernel)[None, None])[:, 0].numpy()


def glass_blur(x, s, rng):
    sigma, delta, iterations = GLASS[s - 1]
    n, h, w = x.shape
    x = _quantise(_gaussian(x, sigma))
    rows = np.arange(n)
    for _ in range(iterations):  # swap each pixel with a neighbour, bottom-right to top-left, every image at once
        for i in range(h - delta, delta, -1):
            for j in range(w - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=(2, n))
                a, b = x[rows, i, j], x[rows, i + dy, j + dx]
                x[rows, i, j], x[rows, i + dy, j + dx] = b, a
    return _gaussian(x, sigma)


def motion_blur(x, s, rng):
    radius, sigma = MOTION[s - 1]
    return _motion_blur(x, radius, sigma, rng.uniform(-45, 45, len(x)))


def zoom_blur(x, s, rng):
    factors = np.arange(1, ZOOM_MAX[s - 1], 0.01)
    out = sum(_clipped_zoom(x, f) for f in factors)
    return (x + out) / (len(factors) + 1)


def snow(x, s, rng):
    loc, scale, zoom, threshold, radius, sigma, blend = SNOW[s - 1]
    flakes = _clipped_zoom(rng.normal(loc=loc, scale=scale, size=x.shape), zoom)
    flakes[flakes < threshold] = 0
    flakes = _quantise(flakes)
    flakes = _quantise(_motion_blur(flakes, radius, sigma, rng.uniform(-135, -45, len(x))))
    x = blend * x + (1 - blend) * np.maximum(x, x * 1.5 + 0.5)  # grayscale: the gray image is the image
    return x + flakes + flakes[:, ::-1, ::-1]


def frost(x, s, rng):
    weight, frost_weight = FROST[s - 1]
    bank = _frost_bank(rng)
    n, h, w = x.shape
    which = rng.integers(0, len(bank), n)
    top = rng.integers(0, bank.shape[1] - h, n)
    left = rng.integers(0, bank.shape[2] - w, n)
    crops = np.stack([bank[k, t:t + h, l:l + w] for k, t, l in zip(which, top, left)])
    return weight * x + frost_weight * crops


def fog(x, s, rng):
    strength, decay = FOG[s - 1]
    n, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()  # the smallest power of two that covers the image
    peak = x.max(axis=(1, 2), keepdims=True)
    x = x + strength * _plasma(n, size, decay, rng)[:, :h, :w]
    return x * peak / (peak + strength)


def brightness(x, s, rng):
    return x + BRIGHTNESS[s - 1]


def contrast(x, s, rng):
    mean = x.mean(axis=(1, 2), keepdims=True)
    return (x - mean) * CONTRAST[s - 1] + mean


def elastic_transform(x, s, rng):
    n, h, w = x.shape
    alpha, sigma, affine = (c * min(h, w) for c in ELASTIC[s - 1])
    centre = np.array([w, h], np.float64) // 2
    side = min(h, w) // 3
    src = np.array([centre + side, [centre[0] + side, centre[1] - side], centre - side])  # (x, y) points
    grid = _pixel_grid(n, h, w)
    # each image's affine map takes the three points to randomly moved ones; the image is sampled through its inverse
    dst = src + rng.uniform(-affine, affine, (n, *src.shape))
    coef = np.linalg.solve(np.broadcast_to(np.c_[src, np.ones(3)], (n, 3, 3)), dst)  # dst = [src, 1] @ coef
    full = np.zeros((n, 3, 3))
    full[:, :2], full[:, 2, 2] = coef.transpose(0, 2, 1), 1
    inv = torch.from_numpy(np.linalg.inv(full)[:, :2])  # (n, 2, 3)
    pts = torch.einsum("nij,nhwj->nhwi", inv[:, :, :2], grid) + inv[:, None, None, :, 2]
    x = _sample(x, pts, "reflection")
    dx = _gaussian(rng.uniform(-1, 1, x.shape), sigma, mode="reflect", truncate=3) * alpha if sigma else 0 * x
    dy = _gaussian(rng.uniform(-1, 1, x.shape), sigma, mode="reflect", truncate=3) * alpha if sigma else 0 * x
    shifted = grid + torch.from_numpy(np.stack([dx, dy], axis=-1))
    return _sample(x, shifted, "reflection")


def pixelate(x, s, rng):
    h, w = x.shape[1:]
    small = (int(w * PIXELATE[s - 1]), int(h * PIXELATE[s - 1]))
    return _per_image_pil(x, lambda im: im.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BOX))


def jpeg_compression(x, s, rng):
    def roundtrip(im):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=JPEG[s - 1])
        buf.seek(0)
        return Image.open(buf).convert("L")
    return _per_image_pil(x, roundtrip)


FUNCTIONS: dict[str, Corruption] = {f.__name__: f for f in (
    gaussian_noise, shot_noise, impulse_noise, defocus_blur, glass_blur, motion_blur, zoom_blur, snow, frost, fog,
    brightness, contrast, elastic_transform, pixelate, jpeg_compression)}
assert tuple(FUNCTIONS) == CORRUPTIONS


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 (N, H, W) -> uint8 (N, H, W): corruption ``name`` at ``severity`` (1..5), deterministic from ``seed``
    (its own generator per corruption and severity)."""
    if name not in FUNCTIONS:
        raise choice_error("corruption", name, list(FUNCTIONS))
    rng = np.random.default_rng(np.random.SeedSequence([STREAM, seed, CORRUPTIONS.index(name), severity]))
    x = np.asarray(images, dtype=np.float64) / 255.0
    return np.uint8(np.clip(FUNCTIONS[name](x, severity, rng), 0, 1) * 255)


# --------------------------------------------------------------------------------------------------------
# the dataset

def choose_test_images(labels: np.ndarray, per_class: Optional[int]) -> np.ndarray:
    """Indices of the test images used: all of them (None), else the first ``per_class`` of each class, in the
    test set's order."""
    if per_class is None:
        return np.arange(len(labels))
    keep = np.zeros(len(labels), bool)
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise UserError(f"--test_per_class {per_class} is more than the {len(idx)} test images of class {c}")
        keep[idx[:per_class]] = True
    return np.flatnonzero(keep)


def build(out_root: str | Path = "data", data_path: str | Path = "data", seed: int = 0,
          test_per_class: Optional[int] = None, corruptions: Optional[Sequence[str]] = None,
          overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``<out_root>/FashionMNIST-C`` (see the module docstring) and return its path."""
    seed = check_int("--seed", seed, 0)
    if test_per_class is not None:
        check_int("--test_per_class", test_per_class, 1)
    names = check_corruptions(corruptions)
    for name in names:
        if name not in FUNCTIONS:  # one of the 4 extra CIFAR-10-C corruptions
            raise choice_error("corruption", name, list(FUNCTIONS))
    target = Path(out_root) / NAME
    refuse_existing(target, overwrite)
    src = load_sources(data_path)
    idx = choose_test_images(src.y_test, test_per_class)
    images, labels = src.x_test[idx], src.y_test[idx]
    with atomic_folder(Path(out_root), NAME, overwrite) as folder:
        np.save(folder / "labels.npy", np.tile(labels.astype(np.uint8), len(SEVERITIES)))
        preview = []
        for name in tqdm(names, desc=NAME, disable=not progress, file=sys.stderr):
            levels = [corrupt(images, name, s, seed) for s in SEVERITIES]
            np.save(folder / f"{name}.npy", np.concatenate(levels))
            preview.append(np.concatenate([images[0]] + [lv[0] for lv in levels], axis=1))
        Image.fromarray(np.concatenate(preview, axis=0)).resize(
            (preview[0].shape[1] * 3, len(preview) * GARMENT * 3), Image.Resampling.NEAREST).save(folder / "preview.png")
    return target


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m common.data.fmnist_c",
               description="Write Fashion-MNIST-C (an offline CIFAR-10-C stand-in) in the CIFAR-10-C layout.",
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_path", default="data", help="where Fashion-MNIST is (also looks in the Debian path)")
    p.add_argument("--out", default="data", help=f"output root; the dataset goes to <out>/{NAME}")
    p.add_argument("--test_per_class", type=int, default=None,
                   help="only the first N test images of each class (default: the whole test set)")
    p.add_argument("--corruptions", default="all", help=f"all, or a comma-separated list of {', '.join(CORRUPTIONS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help=f"replace an existing <out>/{NAME}")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> Path:
    a = build_parser().parse_args(argv)
    names = None if a.corruptions == "all" else [c.strip() for c in a.corruptions.split(",") if c.strip()]
    return build(a.out, a.data_path, a.seed, a.test_per_class, names, a.overwrite, a.progress)


if __name__ == "__main__":
    run_main(main)
