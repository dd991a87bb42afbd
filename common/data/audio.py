"""Spoken commands as log-magnitude spectrograms (N, 1, 64, 64): Mini Speech Commands, Speech Commands v0.02 and
the offline espeak-ng stand-in, which its builder writes in the Mini Speech Commands layout
(:mod:`common.data.espeak_commands`). The pipeline is the one of IDC's speech experiments (Kim et al., ICML 2022,
``speech/`` of snu-mllab/Efficient-Dataset-Condensation), which DDiF compares with.

Layouts under ``data_path``:

* ``MiniSpeechCommands``: ``mini_speech_commands/<word>/*.wav`` (8 words, 1,000 clips each). The classes are
  IDC's order, yes, no, go, stop, left, right, up, down (other word folders: sorted). Per class, the sorted file list's every 8th file (index i with i % 8 == 0) is a
  test clip, the others are train clips (125 / 875 per word): the split of IDC's speech experiments.
* ``SpeechCommands`` (v0.02): ``speech_commands_v0.02/<word>/*.wav`` (35 words; ``_background_noise_`` is not a
  class), ``testing_list.txt`` and ``validation_list.txt`` (one ``<word>/<file>.wav`` per line). Test clips are
  those of ``testing_list.txt``; train clips are the others not in ``validation_list.txt`` (the validation clips
  are not used).

Every clip is read as 16 kHz mono (a file of another rate, with several channels, empty or unreadable is a
one-line error naming it: nothing is resampled or mixed down silently), padded with zeros or cut to 1 s (16,000
samples), turned into a magnitude STFT (:data:`N_FFT` 255, hop 128, Hann window, centred with reflected edges, as
librosa's default: 128 frequencies x 125 frames), padded with one silent frame before and two after to 128 x 128,
resized bilinearly to 64 x 64, and log-compressed (``log(x + 1e-3)``). The train spectrograms' global mean and standard deviation normalise both splits.

The spectrograms are computed once per (dataset, file list, :data:`CACHE_VERSION`) into float16 ``.npy`` files
under ``cache_dir`` (written atomically), then read into memory.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.io import wavfile
from tqdm.auto import tqdm

from ..atomic import write_npy
from ..errors import DatasetNotFoundError, UserError, choice_error
from .base import DEFAULT_DATA_PATH, RealData, _indices_by_class

SAMPLE_RATE = 16_000
CLIP_SAMPLES = SAMPLE_RATE  # 1 s
N_FFT, HOP = 255, 128  # 128 frequencies x 125 frames for 1 s
PAD_FRAMES = (1, 2)  # silent frames before and after: 125 -> 128
MINI_WORDS = ("yes", "no", "go", "stop", "left", "right", "up", "down")  # IDC's label order
SIDE = 64  # the spectrograms' side after resizing
LOG_EPS = 1e-3
DEFAULT_CACHE_DIR = os.path.join("cache", "spectrograms")
# part of every cache key: raise it when a change to reading or the STFT changes the cached spectrograms
CACHE_VERSION = 1
BATCH = 512  # clips per STFT batch
SPLITS = ("train", "test")


@dataclass(frozen=True)
class AudioSpec:
    layout: str  # "mini": every 8th sorted file of a class is test; "lists": testing/validation_list.txt
    folder: str  # under data_path
    hint: str  # how to get it ({data}: data_path, {root}: the folder)


AUDIO_SPECS: dict[str, AudioSpec] = {
    "MiniSpeechCommands": AudioSpec(
        "mini", "mini_speech_commands",
        "extract mini_speech_commands.zip (storage.googleapis.com/download.tensorflow.org/data/"
        "mini_speech_commands.zip) into {data}/, or build the offline stand-in: python -m "
        "common.data.espeak_commands --out {data}"),
    "SpeechCommands": AudioSpec(
        "lists", "speech_commands_v0.02",
        "extract speech_commands_v0.02.tar.gz (download.tensorflow.org/data/speech_commands_v0.02.tar.gz) into "
        "{root}/"),
}
AUDIO_DATASETS: tuple[str, ...] = tuple(AUDIO_SPECS)
BACKGROUND = "_background_noise_"


# --------------------------------------------------------------------------------------------------------
# reading clips and making spectrograms

def read_wav(path: str | os.PathLike) -> np.ndarray:
    """A 16 kHz mono WAV file as float32 samples in [-1, 1], padded with zeros or cut to 1 s. Unreadable, empty,
    multi-channel or non-16 kHz files are one-line errors naming the file."""
    try:
        rate, x = wavfile.read(path)
    except (OSError, ValueError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a readable WAV file ({msg})") from None
    if rate != SAMPLE_RATE:
        raise UserError(f"{path}: sampled at {rate} Hz; the loader reads {SAMPLE_RATE} Hz clips and does not "
                        f"resample (convert it first, e.g. sox in.wav -r 16000 out.wav)")
    if x.ndim != 1:
        raise UserError(f"{path}: {x.shape[1]} channels; the loader reads mono clips and does not mix them down")
    if len(x) == 0:
        raise UserError(f"{path}: no samples")
    if x.dtype == np.int16:
        x = x / 32768.0
    elif x.dtype == np.int32:
        x = x / 2147483648.0
    elif x.dtype == np.uint8:
        x = (x.astype(np.float64) - 128) / 128.0
    out = np.zeros(CLIP_SAMPLES, np.float32)
    n = min(len(x), CLIP_SAMPLES)
    out[:n] = x[:n]
    return out


def stft_magnitude(waves: torch.Tensor) -> torch.Tensor:
    """(N, samples) -> (N, 128, frames) magnitude STFT (n_fft 255, hop 128, Hann window, centred)."""
    window = torch.hann_window(N_FFT, dtype=waves.dtype, device=waves.device)
    return torch.stft(waves, N_FFT, HOP, window=window, center=True, return_complex=True).abs()


def spectrograms(waves: torch.Tensor, side: int = SIDE) -> torch.Tensor:
    """(N, 16000) samples -> (N, 1, side, side) log-magnitude spectrograms: the STFT's 128 x 125 padded with silent
    frames to 128 x 128, resized bilinearly, log(x + 1e-3). Rows are frequencies (row 0 the lowest), columns
    time."""
    mag = F.pad(stft_magnitude(waves.float()), PAD_FRAMES)
    mag = F.interpolate(mag.unsqueeze(1), size=(side, side), mode="bilinear", align_corners=False)
    return torch.log(mag.clamp_min(0) + LOG_EPS)


def magnitude_from_log(spec: torch.Tensor) -> torch.Tensor:
    """(..., side, side) log spectrograms -> (..., 128, 125) magnitudes: :func:`spectrograms`' log and resizing
    undone, the padding frames dropped; what Griffin-Lim starts from."""
    n_freq = N_FFT // 2 + 1
    mag = (spec.exp() - LOG_EPS).clamp_min(0)
    lead = mag.shape[:-2]
    mag = F.interpolate(mag.reshape(-1, 1, *mag.shape[-2:]), size=(n_freq, n_freq), mode="bilinear",
                        align_corners=False)[:, 0]
    return mag[:, :, PAD_FRAMES[0]:n_freq - PAD_FRAMES[1]].reshape(*lead, n_freq, n_freq - sum(PAD_FRAMES))


def griffin_lim(mag: torch.Tensor, iterations: int = 64, seed: int = 0) -> torch.Tensor:
    """(..., 128, frames) magnitudes -> (..., samples) waveforms whose STFT magnitude approximates them: Griffin-Lim
    with momentum 0.99 (Perraudin et al.), from random phases drawn from ``seed``."""
    window = torch.hann_window(N_FFT, dtype=mag.dtype)
    length = CLIP_SAMPLES
    g = torch.Generator().manual_seed(seed)
    angles = torch.polar(torch.ones_like(mag), 2 * torch.pi * torch.rand(mag.shape, generator=g, dtype=mag.dtype))
    previous = torch.zeros_like(angles)
    wave = torch.zeros(*mag.shape[:-2], length)
    for _ in range(iterations):
        wave = torch.istft(mag * angles, N_FFT, HOP, window=window, center=True, length=length)
        rebuilt = torch.stft(wave, N_FFT, HOP, window=window, center=True, return_complex=True)
        angles = rebuilt - 0.99 / (1 + 0.99) * previous
        previous = rebuilt
        angles = angles / angles.abs().clamp_min(1e-16)
    return torch.istft(mag * angles, N_FFT, HOP, window=window, center=True, length=length)


def write_wav(path: str, wave: torch.Tensor) -> None:
    """A waveform in [-1, 1] (peak-normalised to 0.9 when louder) as a 16 kHz 16-bit mono WAV."""
    x = wave.detach().float().cpu().numpy()
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak > 0.9:
        x = x * (0.9 / peak)
    wavfile.write(path, SAMPLE_RATE, np.round(x * 32767).astype(np.int16))


# --------------------------------------------------------------------------------------------------------
# layouts

@dataclass
class ClipList:
    classes: list[str]
    files: dict[str, list[tuple[str, int]]]  # split -> (path relative to the root, label)


def _wav_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())


def _class_folders(root: Path, mini: bool) -> list[str]:
    """The word folders: IDC's order when they are Mini Speech Commands' eight words, else sorted."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != BACKGROUND
                   and not d.name.startswith("."))
    return list(MINI_WORDS) if mini and sorted(MINI_WORDS) == found else found


def list_clips(name: str, root: Path) -> ClipList:
    """The classes and each split's clips of dataset ``name`` in ``root`` (see the module docstring)."""
    spec = AUDIO_SPECS[name]
    classes = _class_folders(root, spec.layout == "mini")
    if not classes:
        raise DatasetNotFoundError(f"{name}: no word folders in {root}")
    files = {s: [] for s in SPLITS}
    if spec.layout == "mini":
        for label, word in enumerate(classes):
            for i, f in enumerate(_wav_files(root / word)):
                files["test" if i % 8 == 0 else "train"].append((f"{word}/{f}", label))
    else:
        lists = {}
        for kind in ("testing", "validation"):
            path = root / f"{kind}_list.txt"
            if not path.is_file():
                raise DatasetNotFoundError(f"{name}: {path} not found; the v0.02 archive has it at its top level")
            lists[kind] = {line.strip() for line in path.read_text().splitlines() if line.strip()}
        for label, word in enumerate(classes):
            for f in _wav_files(root / word):
                rel = f"{word}/{f}"
                if rel in lists["testing"]:
                    files["test"].append((rel, label))
                elif rel not in lists["validation"]:
                    files["train"].append((rel, label))
    empty = [classes[c] for c in range(len(classes)) if not any(lab == c for _, lab in files["train"])]
    if empty:
        raise UserError(f"{name} in {root}: word(s) {', '.join(empty[:5])} have no train clips; every class needs "
                        f"some")
    return ClipList(classes, files)


def _fingerprint(root: Path, clips: Sequence[tuple[str, int]]) -> str:
    """A key of the clip list: names, labels, sizes and modification times."""
    h = hashlib.sha1()
    for rel, label in clips:
        st = (root / rel).stat()
        h.update(f"{rel}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _spectrogram_file(name: str, root: Path, clips: Sequence[tuple[str, int]], split: str, cache: Path,
                      progress: bool) -> Path:
    """The cached float16 (N, 1, 64, 64) spectrograms of ``clips``, computed first when missing."""
    key = hashlib.sha1(json.dumps([name, str(root.resolve()), _fingerprint(root, clips), N_FFT, HOP, SIDE,
                                   LOG_EPS, CACHE_VERSION]).encode()).hexdigest()[:16]
    path = cache / f"{name}_{split}_{key}.npy"
    if path.is_file():
        return path

    def fill(mm: np.ndarray) -> None:
        for s in tqdm(range(0, len(clips), BATCH), desc=f"{name} {split} spectrograms", disable=not progress):
            waves = torch.from_numpy(np.stack([read_wav(root / rel) for rel, _ in clips[s:s + BATCH]]))
            mm[s:s + len(waves)] = spectrograms(waves).numpy().astype(np.float16)

    write_npy(path, (len(clips), 1, SIDE, SIDE), fill, dtype=np.float16)
    return path


def load(name: str, data_path: Optional[str] = None, res: Optional[int] = None, zca: bool = False,
         cache_dir: Optional[str] = None, progress: bool = False, test_only: bool = False) -> RealData:
    """Audio dataset ``name`` as a RealData of normalised log spectrograms (N, 1, 64, 64); ``res`` other than 64
    resizes them bilinearly; ``test_only`` reads the train spectrograms only for their mean and std."""
    if name not in AUDIO_SPECS:
        raise choice_error("dataset", name, AUDIO_DATASETS)
    if zca:
        raise UserError("--zca whitens images; it is not defined for spectrograms")
    side = SIDE if res is None else int(res)
    if side < 1:
        raise UserError(f"--res must be >= 1, got {side}")
    spec = AUDIO_SPECS[name]
    data = Path(data_path or DEFAULT_DATA_PATH)
    root = data / spec.folder
    if not root.is_dir():
        raise DatasetNotFoundError(f"{name} not found: looked for {root}. To get it: "
                                   f"{spec.hint.format(data=data, root=root)}")
    clips = list_clips(name, root)
    cache = Path(cache_dir or DEFAULT_CACHE_DIR)
    arrays, labels = {}, {}
    for split in SPLITS:
        path = _spectrogram_file(name, root, clips.files[split], split, cache, progress)
        arrays[split] = np.load(path, mmap_mode="r")
        labels[split] = torch.tensor([lab for _, lab in clips.files[split]], dtype=torch.long)
    train = arrays["train"]
    mean = float(np.mean(train, dtype=np.float64))
    std = float(np.std(train, dtype=np.float64)) or 1.0

    def tensor(a: np.ndarray) -> torch.Tensor:
        x = (torch.from_numpy(np.asarray(a, dtype=np.float32)) - mean) / std
        if side != SIDE:
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        return x

    x_train = tensor(train[:0] if test_only else train)
    y_train = labels["train"][:0] if test_only else labels["train"]
    return RealData(
        name=name, channel=1, im_size=(side, side), num_classes=len(clips.classes), class_names=list(clips.classes),
        mean=[mean], std=[std], images_train=x_train, labels_train=y_train,
        images_test=tensor(arrays["test"]), labels_test=labels["test"],
        indices_class=_indices_by_class(y_train, len(clips.classes)), domain="audio")

