"""Test sets under distribution shift, read from their published layouts and prepared exactly like a run's clean
test set (the same resizing, mean/std normalisation or ZCA transform), so that networks trained on a distilled set
are tested on them as on the clean one.

- ``CIFAR10-C`` (Hendrycks & Dietterich): ``<data_path>/CIFAR-10-C/<corruption>.npy``, uint8 (5 x 10,000, 32, 32, 3)
  -- the 10,000 test images at severity 1, then 2, ... 5 -- and ``labels.npy`` (the test labels, 5 times).
  15 corruptions, and 4 extra ones in the same folder.
- ``CIFAR10.1`` (Recht et al., v6): ``<data_path>/CIFAR-10.1/cifar10.1_v6_data.npy`` (2,000, 32, 32, 3) uint8 and
  ``cifar10.1_v6_labels.npy``.
- ``FashionMNIST-C``: the same layout as CIFAR-10-C under ``<data_path>/FashionMNIST-C/`` (arrays (5 n, 28, 28) or
  (5 n, 28, 28, 1)), the offline stand-in that :mod:`.fmnist_c` builds.
- ``ImageNet-C`` (Hendrycks & Dietterich): ``<data_path>/ImageNet-C/<corruption>/<severity>/<wnid>/*.JPEG``, the
  validation images of the ImageNet subset's classes, centre-cropped and resized to ``--res`` as the clean ones.

FreD's robustness script normalises corrupted images with mean = std = 0.5 whatever the training used; here they
are normalised as the run's clean test set, so a shift in accuracy is the corruption's alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DatasetNotFoundError, UserError, choice_error
from .base import DEFAULT_DATA_PATH, RealData, _normalise
from .images import IMAGENET_SUBSETS, _image_files, _read_images, _unit_pixels

CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class ShiftedSpec:
    dataset: str  # the clean dataset whose classes it has
    folder: str  # under data_path
    layout: str  # "npy-c": corruptions x severities in .npy files; "folders-c": image folders; "pair": one set
    hint: str

    @property
    def corrupted(self) -> bool:
        return self.layout != "pair"


TEST_SETS: dict[str, ShiftedSpec] = {
    "CIFAR10-C": ShiftedSpec("CIFAR10", "CIFAR-10-C", "npy-c", "extract CIFAR-10-C.tar (zenodo.org/record/2535967) "
                             "into {data}/"),
    "CIFAR10.1": ShiftedSpec("CIFAR10", "CIFAR-10.1", "pair", "put cifar10.1_v6_data.npy and cifar10.1_v6_labels.npy "
                             "(github.com/modestyachts/CIFAR-10.1, datasets/) into {root}/"),
    "FashionMNIST-C": ShiftedSpec("FashionMNIST", "FashionMNIST-C", "npy-c", "build it from Fashion-MNIST's test "
                                  "set: python -m common.data.fmnist_c --out {data}"),
    "ImageNet-C": ShiftedSpec("ImageNet", "ImageNet-C", "folders-c", "extract ImageNet-C's tars "
                              "(zenodo.org/record/2235448) into {root}/ (<corruption>/<severity>/<wnid>/*.JPEG)"),
}


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {what} {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                        ) from None


def _pixels(x: np.ndarray, path: Path) -> Tensor:
    """uint8 (N, H, W[, C]) -> uint8 (N, C, H, W)."""
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise UserError(f"{path}: expected uint8 images (N, H, W[, C]), got {x.dtype} {x.shape}")
    t = torch.from_numpy(np.array(x, copy=True))  # read from the memory map into writable memory
    return t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2).contiguous()


def prepare(x: Tensor, real: RealData) -> Tensor:
    """uint8 pixels (N, C, H, W) -> the input space of ``real``'s test set, by the loader's own steps: [0, 1],
    resized to its size, then ZCA-whitened with its fitted transform or mean/std-normalised."""
    if x.shape[1] != real.channel:
        raise UserError(f"the shifted images have {x.shape[1]} channel(s); {real.name} has {real.channel}")
    x = _unit_pixels(x, tuple(real.im_size))
    if real.zca is not None:
        with torch.no_grad():
            return real.zca(x.reshape(len(x), -1)).reshape(x.shape)
    return _normalise(x, real.mean, real.std)


def check_corruptions(names: Optional[Sequence[str]]) -> tuple[str, ...]:
    """None: the 15; else each must be one of the 15 or the 4 extra."""
    if not names:
        return CORRUPTIONS
    for n in names:
        if n not in CORRUPTIONS + EXTRA_CORRUPTIONS:
            raise choice_error("corruption", n, CORRUPTIONS + EXTRA_CORRUPTIONS)
    return tuple(names)


def _same_rows(labels: Tensor, real: RealData, name: str) -> Optional[Tensor]:
    """The rows of a shifted copy of the whole test set (``labels``, in the test set's order) that ``real``'s
    test set keeps after ``--n_test`` (None: all of them), so the clean and shifted accuracies are of the same
    images. A copy that is not the whole test set in its order cannot be matched: a one-line error."""
    rows = real.test_rows
    if rows is None:
        return None
    if len(labels) <= int(rows.max()) or not torch.equal(labels[rows], real.labels_test.cpu()):
        raise UserError(f"--n_test keeps {len(rows)} of {real.name}'s test images, but {name} is not a copy of its "
                        f"whole test set in the same order ({len(labels)} images per severity); drop --n_test")
    return rows


def _imagenet_c(root: Path, corruption: str, severity: int, subset: Optional[str], real: RealData, hint: str
                ) -> tuple[Tensor, Tensor]:
    """One corruption of ImageNet-C for the subset's classes (label = position in the subset's list)."""
    if subset not in IMAGENET_SUBSETS:
        raise choice_error("subset", subset, list(IMAGENET_SUBSETS))
    files, labels, missing = [], [], []
    for label, wnid in enumerate(IMAGENET_SUBSETS[subset]):
        found = _image_files(root / corruption / str(severity) / wnid)
        if not found:
            missing.append(wnid)
        files += found
        labels += [label] * len(found)
    if missing:
        raise DatasetNotFoundError(f"ImageNet-C: no images of corruption {corruption}, severity {severity} for "
                                   f"{', '.join(missing[:3])}{'...' if len(missing) > 3 else ''} in "
                                   f"{root / corruption / str(severity)}. To get it: {hint}")
    x, y = _read_images(files, labels, tuple(real.im_size))
    keep = _same_rows(y, real, f"ImageNet-C ({corruption})")
    if keep is not None:
        x, y = x[keep], y[keep]
    return prepare(x, real), y


def load_shifted(name: str, real: RealData, data_path: Optional[str] = None, severity: int = 5,
                 corruptions: Optional[Sequence[str]] = None, subset: Optional[str] = None
                 ) -> dict[str, tuple[Tensor, Tensor]]:
    """{test name: (images, labels)} of shifted test set ``name`` for a run on ``real`` (its classes, size and
    transform; ``subset``: the ImageNet subset): one entry per corruption at ``severity`` for the -C sets, one for
    CIFAR-10.1."""
    if name not in TEST_SETS:
        raise choice_error("test_set", name, ["clean", *TEST_SETS])
    spec = TEST_SETS[name]
    if real.name != spec.dataset:
        raise UserError(f"{name} holds {spec.dataset}'s classes; this set was distilled on {real.name}")
    if severity not in SEVERITIES:
        raise UserError(f"--severity must be one of {SEVERITIES}, got {severity}")
    data = Path(data_path or DEFAULT_DATA_PATH)
    root = data / spec.folder
    hint = spec.hint.format(data=data, root=root)
    if spec.layout == "folders-c":
        if not root.is_dir():
            raise DatasetNotFoundError(f"{name} not found: looked for {root}. To get it: {hint}")
        return {c: _imagenet_c(root, c, severity, subset, real, hint) for c in check_corruptions(corruptions)}
    if spec.layout == "pair":
        files = [root / "cifar10.1_v6_data.npy", root / "cifar10.1_v6_labels.npy"]
        if not all(f.is_file() for f in files):
            raise DatasetNotFoundError(f"{name} not found: looked for {files[0].name} and {files[1].name} in {root}. "
                                       f"To get it: {hint}")
        x, y = _load_npy(files[0], name), _load_npy(files[1], name)
        if len(x) != len(y):
            raise UserError(f"{root}: {len(x)} images but {len(y)} labels")
        return {name: (prepare(_pixels(x, files[0]), real), torch.from_numpy(np.asarray(y).astype(np.int64)))}
    labels_path = root / "labels.npy"
    if not labels_path.is_file():
        raise DatasetNotFoundError(f"{name} not found: looked for {labels_path}. To get it: {hint}")
    labels = _load_npy(labels_path, f"{name} labels")
    n = len(labels) // len(SEVERITIES)
    if n == 0 or len(labels) != n * len(SEVERITIES):
        raise UserError(f"{labels_path}: {len(labels)} labels, not 5 severities of the same test set")
    rows = np.arange((severity - 1) * n, severity * n)
    y = torch.from_numpy(np.asarray(labels[rows]).astype(np.int64))
    keep = _same_rows(y, real, name)
    if keep is not None:  # --n_test: the clean test images kept, under the corruption
        rows, y = rows[keep.numpy()], y[keep]
    out = {}
    for c in check_corruptions(corruptions):
        path = root / f"{c}.npy"
        if not path.is_file():
            raise DatasetNotFoundError(f"{name}: corruption {c} not found ({path}). To get it: {hint}")
        x = _load_npy(path, f"{name} corruption {c}")
        if len(x) != len(labels):
            raise UserError(f"{path}: {len(x)} images, {len(labels)} labels")
        out[c] = (prepare(_pixels(x[rows], path), real), y)
    return out
