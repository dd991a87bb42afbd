"""Image datasets, loaded whole into memory as normalised (or ZCA-whitened) tensors and grouped by class.

:func:`load` (called by ``common.data.get_dataset``) returns a :class:`RealData`. Each on-disk format has one
reader; the table ``_SPECS`` maps a dataset name to its reader, normalisation, channels, native size and
class names. Nothing here needs torchvision except the download attempt of the datasets torchvision can
fetch (FashionMNIST, MNIST, CIFAR10, CIFAR100, SVHN); set ``DD_NO_DOWNLOAD=1`` to skip that attempt.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..augment import zca_whiten
from ..errors import DatasetNotFoundError, UserError, choice_error
from .base import (DEFAULT_DATA_PATH, NO_DOWNLOAD_ENV, ZCA_EPS, RealData, _find, _first_line, _indices_by_class,
                   _normalise, _Raw)

IMAGE_DATASETS: tuple[str, ...] = ("FashionMNIST", "MNIST", "CIFAR10", "CIFAR100", "SVHN", "Tiny", "ImageNet")

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
IMAGENET_DEFAULT_RES = 128
DATASETS_WITH_SUBSETS = ("ImageNet",)  # --subset picks one (IMAGENET_SUBSETS)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


# ImageNet subsets as defined by the MTT code (and reused by DDiF/FreD): ImageNet-1k class indices, where
# index i is the i-th of the 1000 ILSVRC-2012 wnids in sorted order (torchvision ImageFolder order).
# The list order defines the labels 0..9. Names are the usual ImageNet class names of those indices.
_IMAGENET_SUBSET_TABLE: dict[str, list[tuple[int, str, str]]] = {
    "imagenette": [
        (0, "n01440764", "tench"), (217, "n02102040", "English springer"),
        (482, "n02979186", "cassette player"), (491, "n03000684", "chain saw"), (497, "n03028079", "church"),
        (566, "n03394916", "French horn"), (569, "n03417042", "garbage truck"), (571, "n03425413", "gas pump"),
        (574, "n03445777", "golf ball"), (701, "n03888257", "parachute"),
    ],
    "imagewoof": [
        (193, "n02096294", "Australian terrier"), (182, "n02093754", "Border terrier"),
        (258, "n02111889", "Samoyed"), (162, "n02088364", "beagle"), (155, "n02086240", "Shih-Tzu"),
        (167, "n02089973", "English foxhound"), (159, "n02087394", "Rhodesian ridgeback"),
        (273, "n02115641", "dingo"), (207, "n02099601", "golden retriever"),
        (229, "n02105641", "Old English sheepdog"),
    ],
    "imagefruit": [
        (953, "n07753275", "pineapple"), (954, "n07753592", "banana"), (949, "n07745940", "strawberry"),
        (950, "n07747607", "orange"), (951, "n07749582", "lemon"), (957, "n07768694", "pomegranate"),
        (952, "n07753113", "fig"), (945, "n07720875", "bell pepper"), (943, "n07718472", "cucumber"),
        (948, "n07742313", "Granny Smith"),
    ],
    "imageyellow": [
        (309, "n02206856", "bee"), (986, "n12057211", "yellow lady's slipper"), (954, "n07753592", "banana"),
        (951, "n07749582", "lemon"), (987, "n12144580", "corn"), (779, "n04146614", "school bus"),
        (599, "n03530642", "honeycomb"), (291, "n02129165", "lion"),
        (72, "n01773157", "black and gold garden spider"), (11, "n01531178", "goldfinch"),
    ],
    "imagemeow": [
        (281, "n02123045", "tabby"), (282, "n02123159", "tiger cat"), (283, "n02123394", "Persian cat"),
        (284, "n02123597", "Siamese cat"), (285, "n02124075", "Egyptian cat"), (291, "n02129165", "lion"),
        (292, "n02129604", "tiger"), (290, "n02128925", "jaguar"), (289, "n02128757", "snow leopard"),
        (287, "n02127052", "lynx"),
    ],
    "imagesquawk": [
        (84, "n01806143", "peacock"), (130, "n02007558", "flamingo"), (88, "n01818515", "macaw"),
        (144, "n02051845", "pelican"), (145, "n02056570", "king penguin"), (22, "n01614925", "bald eagle"),
        (96, "n01843383", "toucan"), (9, "n01518878", "ostrich"), (100, "n01860187", "black swan"),
        (89, "n01819313", "sulphur-crested cockatoo"),
    ],
    # GLaD's ImageNet-[A..E] (FreD's ImageNet-abcde experiments use the same lists)
    "imagenet-a": [
        (255, "n02111129", "Leonberg"), (376, "n02489166", "proboscis monkey"), (984, "n11879895", "rapeseed"),
        (364, "n02457408", "three-toed sloth"), (500, "n03042490", "cliff dwelling"),
        (986, "n12057211", "yellow lady's slipper"), (333, "n02342885", "hamster"), (576, "n03447447", "gondola"),
        (148, "n02071294", "killer whale"), (135, "n02013706", "limpkin"),
    ],
    "imagenet-b": [
        (129, "n02006656", "spoonbill"), (916, "n06359193", "web site"), (90, "n01820546", "lorikeet"),
        (275, "n02116738", "African hunting dog"), (995, "n13044778", "earthstar"), (874, "n04487081", "trolleybus"),
        (102, "n01872401", "echidna"), (259, "n02112018", "Pomeranian"), (685, "n03841143", "odometer"),
        (139, "n02025239", "ruddy turnstone"),
    ],
    "imagenet-c": [
        (565, "n03393912", "freight car"), (94, "n01833805", "hummingbird"), (554, "n03344393", "fireboat"),
        (535, "n03208938", "disk brake"), (92, "n01828970", "bee eater"), (392, "n02606052", "rock beauty"),
        (291, "n02129165", "lion"), (136, "n02017213", "European gallinule"),
        (324, "n02280649", "cabbage butterfly"), (11, "n01531178", "goldfinch"),
    ],
    "imagenet-d": [
        (9, "n01518878", "ostrich"), (258, "n02111889", "Samoyed"), (13, "n01534433", "junco"),
        (262, "n02112706", "Brabancon griffon"), (19, "n01592084", "chickadee"), (339, "n02389026", "sorrel"),
        (321, "n02276258", "admiral"), (24, "n01622779", "great grey owl"), (93, "n01829413", "hornbill"),
        (322, "n02277742", "ringlet"),
    ],
    "imagenet-e": [
        (816, "n04277352", "spindle"), (96, "n01843383", "toucan"), (100, "n01860187", "black swan"),
        (145, "n02056570", "king penguin"), (739, "n03992509", "potter's wheel"), (713, "n03924679", "photocopier"),
        (783, "n04153751", "screw"), (76, "n01774750", "tarantula"), (688, "n03857828", "oscilloscope"),
        (326, "n02281787", "lycaenid"),
    ],
}
IMAGENET_SUBSET_INDICES: dict[str, list[int]] = {
    s: [i for i, _, _ in rows] for s, rows in _IMAGENET_SUBSET_TABLE.items()}
IMAGENET_SUBSETS: dict[str, list[str]] = {s: [w for _, w, _ in rows] for s, rows in _IMAGENET_SUBSET_TABLE.items()}
IMAGENET_SUBSET_NAMES: dict[str, list[str]] = {
    s: [n for _, _, n in rows] for s, rows in _IMAGENET_SUBSET_TABLE.items()}
# The fast.ai Imagenette download stores the parachute images (ILSVRC wnid n03888257) in a folder named
# n03888605, which is "parallel bars" in ILSVRC; that folder is used only when the ILSVRC one is absent.
IMAGENET_FOLDER_ALIASES: dict[str, tuple[str, ...]] = {"n03888257": ("n03888605",)}

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class _Spec:
    reader: Callable[[Path, Optional[str], tuple[int, int]], _Raw]  # (data_path, subset, im_size) -> _Raw
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel: int
    native_size: tuple[int, int]
    class_names: Optional[tuple[str, ...]] = None  # None: the reader takes them from the files


def load(name: str, data_path: str | None = None, res: int | None = None, subset: str | None = None,
         zca: bool = False) -> RealData:
    """Load dataset `name` from `data_path` (default ``data``). `res` resizes to res x res (None: native size,
    128 for ImageNet); `subset` picks the ImageNet subset (ignored by the other datasets). `zca` whitens the
    [0, 1] pixels, without mean/std normalisation, with ``common.augment.zca_whiten`` (kornia, eps 0.1) fitted
    on the training images, as the original code does."""
    if name not in _SPECS:
        raise choice_error("dataset", name, IMAGE_DATASETS)
    if name in DATASETS_WITH_SUBSETS and subset not in IMAGENET_SUBSETS:
        raise choice_error("subset", subset, IMAGENET_SUBSETS)
    spec = _SPECS[name]
    im_size = (res, res) if res else spec.native_size
    raw = spec.reader(Path(data_path or DEFAULT_DATA_PATH), subset, im_size)
    class_names = list(raw.class_names or spec.class_names)
    x_train, x_test = (_unit_pixels(x, im_size) for x in (raw.x_train, raw.x_test))
    zca_obj = None
    if zca:
        x_train, x_test, zca_obj = zca_whiten(x_train, x_test, eps=ZCA_EPS)
        mean, std = [0.0] * spec.channel, [1.0] * spec.channel
    else:
        x_train, x_test = (_normalise(x, spec.mean, spec.std) for x in (x_train, x_test))
        mean, std = list(spec.mean), list(spec.std)
    return RealData(
        name=name, channel=spec.channel, im_size=im_size, num_classes=len(class_names), class_names=class_names,
        mean=mean, std=std, images_train=x_train, labels_train=raw.y_train,
        images_test=x_test, labels_test=raw.y_test,
        indices_class=_indices_by_class(raw.y_train, len(class_names)), zca=zca_obj)


def native_size(name: str) -> tuple[int, int]:
    """(H, W) of dataset ``name`` when no --res is given."""
    if name not in _SPECS:
        raise choice_error("dataset", name, IMAGE_DATASETS)
    return _SPECS[name].native_size


def _unit_pixels(x: Tensor, im_size: tuple[int, int]) -> Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1], resized to im_size if needed."""
    x = x.float().div_(255)
    if tuple(x.shape[-2:]) != tuple(im_size):
        x = F.interpolate(x, size=im_size, mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous()


def _torchvision_download(cls_name: str, root: Path, *calls: dict) -> Callable[[], None]:
    """A function that makes torchvision download dataset `cls_name` into `root` (one constructor call per
    keyword dict in `calls`, e.g. one per SVHN split)."""
    def run():
        import torchvision
        cls = getattr(torchvision.datasets, cls_name)
        for kwargs in calls or ({},):
            cls(str(root), download=True, **kwargs)
    return run


# --------------------------------------------------------------------------------------------------------
# IDX (MNIST, FashionMNIST)

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_file(folder: Path, stem: str) -> Path | None:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.is_file():
            return p
    return None


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (plain or gzip) as a numpy array of its declared shape."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise UserError(f"{path} is not an IDX file of unsigned bytes; delete it and fetch it again")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise UserError(f"{path} is truncated (header says {shape}); delete it and fetch it again")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _read_idx_folder(folder: Path) -> _Raw:
    x_tr, y_tr, x_te, y_te = (_read_idx(_idx_file(folder, stem)) for stem in _IDX_FILES)
    return _Raw(torch.from_numpy(x_tr.copy()).unsqueeze(1), torch.from_numpy(y_tr.astype(np.int64)),
                torch.from_numpy(x_te.copy()).unsqueeze(1), torch.from_numpy(y_te.astype(np.int64)))


def _has_idx(folder: Path) -> bool:
    return all(_idx_file(folder, stem) for stem in _IDX_FILES)


def _read_fashion_mnist(data_path: Path, subset, im_size) -> _Raw:
    folder = _find("FashionMNIST", [data_path / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST], _has_idx,
                   _torchvision_download("FashionMNIST", data_path),
                   f"apt-get install dataset-fashion-mnist, or run once online so torchvision downloads it "
                   f"into {data_path}")
    return _read_idx_folder(folder)


def _read_mnist(data_path: Path, subset, im_size) -> _Raw:
    folder = _find("MNIST", [data_path / "MNIST" / "raw"], _has_idx,
                   _torchvision_download("MNIST", data_path),
                   f"run once online so torchvision downloads it into {data_path}, or put the four IDX files "
                   f"(plain or .gz) in {data_path / 'MNIST' / 'raw'}")
    return _read_idx_folder(folder)


# --------------------------------------------------------------------------------------------------------
# CIFAR python pickles

def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def _cifar_arrays(batches: list[dict], label_key: str) -> tuple[Tensor, Tensor]:
    x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    return torch.from_numpy(x), torch.from_numpy(y)


def _names(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


_CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _read_cifar10(data_path: Path, subset, im_size) -> _Raw:
    folder = _find("CIFAR10", [data_path / "cifar-10-batches-py"],
                   lambda f: all((f / n).is_file() for n in _CIFAR10_FILES),
                   _torchvision_download("CIFAR10", data_path),
                   f"run once online so torchvision downloads it into {data_path}, or unpack "
                   f"cifar-10-python.tar.gz there")
    x_tr, y_tr = _cifar_arrays([_unpickle(folder / n) for n in _CIFAR10_FILES[:5]], "labels")
    x_te, y_te = _cifar_arrays([_unpickle(folder / "test_batch")], "labels")
    meta = folder / "batches.meta"
    names = _names(_unpickle(meta)["label_names"]) if meta.is_file() else None
    return _Raw(x_tr, y_tr, x_te, y_te, names)


def _read_cifar100(data_path: Path, subset, im_size) -> _Raw:
    folder = _find("CIFAR100", [data_path / "cifar-100-python"],
                   lambda f: all((f / n).is_file() for n in ("train", "test", "meta")),
                   _torchvision_download("CIFAR100", data_path),
                   f"run once online so torchvision downloads it into {data_path}, or unpack "
                   f"cifar-100-python.tar.gz there")
    x_tr, y_tr = _cifar_arrays([_unpickle(folder / "train")], "fine_labels")
    x_te, y_te = _cifar_arrays([_unpickle(folder / "test")], "fine_labels")
    return _Raw(x_tr, y_tr, x_te, y_te, _names(_unpickle(folder / "meta")["fine_label_names"]))


# --------------------------------------------------------------------------------------------------------
# SVHN .mat

def _read_svhn_mat(path: Path) -> tuple[Tensor, Tensor]:
    import scipy.io
    mat = scipy.io.loadmat(str(path))
    x = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1), dtype=np.uint8))  # HWCN -> NCHW
    y = torch.from_numpy(mat["y"].astype(np.int64).reshape(-1) % 10)  # label 10 is the digit 0
    return x, y


def _read_svhn(data_path: Path, subset, im_size) -> _Raw:
    folder = _find("SVHN", [data_path, data_path / "SVHN"],
                   lambda f: all((f / n).is_file() for n in ("train_32x32.mat", "test_32x32.mat")),
                   _torchvision_download("SVHN", data_path, {"split": "train"}, {"split": "test"}),
                   f"run once online so torchvision downloads it into {data_path}, or put train_32x32.mat "
                   f"and test_32x32.mat there")
    return _Raw(*_read_svhn_mat(folder / "train_32x32.mat"), *_read_svhn_mat(folder / "test_32x32.mat"))


# --------------------------------------------------------------------------------------------------------
# Image files (Tiny-ImageNet, ImageNet folders)

def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if folder.is_dir() else []


def _read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 (H, W, 3): centre-cropped to a square and resized (antialiased bilinear) to `size`."""
    from PIL import Image
    with Image.open(path) as img:
        img.draft("RGB", (size[1], size[0]))  # JPEG: decode at a reduced scale when the image is much larger
        img = img.convert("RGB")
        w, h = img.size
        if (h, w) != tuple(size):
            s = min(w, h)
            box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
            img = img.resize((size[1], size[0]), Image.BILINEAR, box=box)
        return np.asarray(img, dtype=np.uint8)


def _read_images(files: list[Path], labels: list[int], size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(lambda p: _read_image(p, size), files))
    x = np.stack(arrays) if arrays else np.zeros((0, *size, 3), np.uint8)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.int64)


def _read_tiny(data_path: Path, subset, im_size) -> _Raw:
    """Read at the native 64x64; get_dataset resizes to `res` like for the other fixed-size datasets."""
    root = _find("Tiny-ImageNet", [data_path / "tiny-imagenet-200"],
                 lambda f: (f / "train").is_dir() and (f / "val").is_dir(), None,
                 f"download tiny-imagenet-200.zip and unzip it into {data_path}")
    wnids_txt = root / "wnids.txt"
    wnids = sorted(wnids_txt.read_text().split() if wnids_txt.is_file()
                   else [d.name for d in (root / "train").iterdir() if d.is_dir()])
    label_of = {w: i for i, w in enumerate(wnids)}

    train_files, train_labels = [], []
    for w in wnids:
        d = root / "train" / w
        files = _image_files(d / "images") or _image_files(d)
        if not files:
            raise DatasetNotFoundError(f"Tiny-ImageNet: no images in {d / 'images'} nor {d}")
        train_files += files
        train_labels += [label_of[w]] * len(files)

    val_files, val_labels = [], []
    annotations = root / "val" / "val_annotations.txt"
    if annotations.is_file():  # standard layout: val/images/*.JPEG listed with their wnid
        for line in annotations.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in label_of:
                val_files.append(root / "val" / "images" / parts[0])
                val_labels.append(label_of[parts[1]])
    else:  # val/<wnid>/*.JPEG (or val/<wnid>/images/*.JPEG)
        for w in wnids:
            files = _image_files(root / "val" / w / "images") or _image_files(root / "val" / w)
            val_files += files
            val_labels += [label_of[w]] * len(files)
    if not val_files:
        raise DatasetNotFoundError(
            f"Tiny-ImageNet: no validation images found ({annotations} or {root / 'val'}/<wnid>/)")

    words = root / "words.txt"
    names = wnids
    if words.is_file():
        table = dict(line.split("\t", 1) for line in words.read_text().splitlines() if "\t" in line)
        names = [table.get(w, w).split(",")[0].strip() for w in wnids]
    native = _SPECS["Tiny"].native_size
    return _Raw(*_read_images(train_files, train_labels, native), *_read_images(val_files, val_labels, native),
                names)


def _read_imagenet_subset(data_path: Path, subset: str, im_size) -> _Raw:
    """ImageFolder layout; only the subset's wnid folders are read, each image centre-cropped and resized."""
    wnids = IMAGENET_SUBSETS[subset]
    parts = []
    for split in ("train", "val"):
        files, labels, missing = [], [], []
        for label, w in enumerate(wnids):
            folder = next((data_path / split / a for a in (w, *IMAGENET_FOLDER_ALIASES.get(w, ()))
                           if _image_files(data_path / split / a)), None)
            if folder is None:
                missing.append(w)
                continue
            found = _image_files(folder)
            files += found
            labels += [label] * len(found)
        if missing:
            raise DatasetNotFoundError(
                f"ImageNet subset {subset} not found: looked in {data_path / split}/<wnid>/ and found no images "
                f"for {', '.join(missing)}. "
                f"To get it: point --data_path at an ImageNet copy in ImageFolder layout "
                f"(train/<wnid>/*.JPEG and val/<wnid>/*.JPEG)")
        parts += _read_images(files, labels, im_size)
    return _Raw(*parts, IMAGENET_SUBSET_NAMES[subset])


# --------------------------------------------------------------------------------------------------------

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

_SPECS: dict[str, _Spec] = {
    "FashionMNIST": _Spec(_read_fashion_mnist, (0.2861,), (0.3530,), 1, (28, 28), FASHION_MNIST_CLASSES),
    "MNIST": _Spec(_read_mnist, (0.1307,), (0.3081,), 1, (28, 28), DIGIT_CLASSES),
    "CIFAR10": _Spec(_read_cifar10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 3, (32, 32), CIFAR10_CLASSES),
    "CIFAR100": _Spec(_read_cifar100, (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762), 3, (32, 32)),
    "SVHN": _Spec(_read_svhn, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 3, (32, 32), DIGIT_CLASSES),
    "Tiny": _Spec(_read_tiny, _IMAGENET_MEAN, _IMAGENET_STD, 3, (64, 64)),
    "ImageNet": _Spec(_read_imagenet_subset, _IMAGENET_MEAN, _IMAGENET_STD, 3,
                      (IMAGENET_DEFAULT_RES, IMAGENET_DEFAULT_RES)),
}
