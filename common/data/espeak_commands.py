"""Spoken commands synthesised by espeak-ng: an offline stand-in for Mini Speech Commands, written in its layout
(``mini_speech_commands/<word>/*.wav``, 16 kHz mono 16-bit), so that the audio loader (:mod:`.audio`) reads it
exactly as it reads the real set.

Each clip is one of the eight words (yes, no, go, stop, left, right, up, down) spoken by espeak-ng with a voice
made of an English accent (``en-us``, ``en-gb``, Scottish, Lancastrian, RP, West Midlands, Caribbean, New York)
and one of espeak-ng's voice variants (``m1``, ``f3``, ``klatt2``, ``Storm``...), at a random pitch (``-p`` 25..75),
speed (``-s`` 130..210 words per minute) and amplitude; its leading and trailing silence is trimmed, it is resampled
from espeak-ng's 22,050 Hz to 16 kHz, faded in and out over 10 ms, placed at a random onset in a 1 s clip (cut if
longer), and a little background noise is added (white noise, random level from 0.001 to 0.01 of full scale,
low-passed at random).

Test voices are not training voices: the variants are split (every 4th in sorted order is a test variant), and
since the loader takes every 8th file of a word (in sorted order) as a test clip, file ``i`` of a word is spoken by
a test variant exactly when i % 8 == 0. File names are ``{i:05d}_{variant}_{accent}_nohash_0.wav``, so the sorted
order is the index order.

Everything is reproducible from ``seed``: clip i of word w draws its voice, pitch, speed, onset and noise from a
generator seeded with (seed, w, i), and espeak-ng is deterministic for given arguments. The build writes into a
hidden temporary folder and renames it into place at the end; ``build.json`` records the parameters and the voice
split.

Command line::

    python -m common.data.espeak_commands --out data                     # 1,000 clips per word, about 2 min
    python -m common.data.espeak_commands --out data --per_class 200
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.io import wavfile
from scipy.signal import butter, resample_poly, sosfilt
from tqdm.auto import tqdm

from ..cli import run_main
from ..errors import UserError
from .audio import CLIP_SAMPLES, MINI_WORDS, SAMPLE_RATE
from .offline import Parser, atomic_folder, check_int, refuse_existing

NAME = "mini_speech_commands"
STREAM = 4  # this dataset's random stream (moving_fmnist 1, voxel_fmnist 2, fmnist_c 3)
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
FADE = SAMPLE_RATE // 100  # samples of the fade in and out
TEST_EVERY = 8  # the loader's split: file i of a word is a test clip when i % 8 == 0
INSTALL = "install it with 'apt-get install espeak-ng' (setup.sh does when run as root)"


def espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise UserError(f"espeak-ng not found: {INSTALL}")
    return path


def _espeak_lines(exe: str, *args: str) -> list[str]:
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise UserError(f"espeak-ng {' '.join(args)} failed: {e}") from None
    return out.splitlines()[1:]  # below the header


def voices(exe: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(accents, train variants, test variants) this espeak-ng has: the accents of :data:`ACCENTS` it knows, and its
    voice variants, every 4th in sorted order a test variant."""
    languages = {line.split()[1] for line in _espeak_lines(exe, "--voices=en") if len(line.split()) > 1}
    accents = tuple(a for a in ACCENTS if a in languages)
    variants = sorted({line.split()[4].split("/")[-1] for line in _espeak_lines(exe, "--voices=variant")
                       if len(line.split()) > 4})
    if not accents or len(variants) < 8:
        raise UserError(f"this espeak-ng has {len(accents)} of the English accents {', '.join(ACCENTS)} and "
                        f"{len(variants)} voice variants; the set needs at least one accent and 8 variants")
    test = tuple(v for k, v in enumerate(variants) if k % 4 == 0)
    train = tuple(v for k, v in enumerate(variants) if k % 4 != 0)
    return accents, train, test


def rng(seed: int, word: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([STREAM, seed, word, index]))


def _trim(x: np.ndarray, level: float = 0.01) -> np.ndarray:
    """The part of ``x`` between its first and last sample louder than ``level`` of its peak."""
    loud = np.flatnonzero(np.abs(x) > level * max(1e-9, np.abs(x).max()))
    return x[loud[0]:loud[-1] + 1] if len(loud) else x


def make_clip(exe: str, word: str, r: np.random.Generator, accents: Sequence[str], variants: Sequence[str]
              ) -> tuple[np.ndarray, str]:
    """(int16 samples of one 1 s 16 kHz clip, its voice)."""
    accent, variant = accents[r.integers(len(accents))], variants[r.integers(len(variants))]
    pitch, speed = int(r.integers(25, 76)), int(r.integers(130, 211))
    cmd = [exe, "-v", f"{accent}+{variant}", "-p", str(pitch), "-s", str(speed), "--stdout", word]
    try:
        wav = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise UserError(f"espeak-ng failed on {' '.join(cmd[1:])}: {e}") from None
    if len(wav) <= 44 or wav[:4] != b"RIFF":
        raise UserError(f"espeak-ng {' '.join(cmd[1:])} wrote no WAV audio")
    rate = int.from_bytes(wav[24:28], "little")  # 22,050 Hz; the header's sizes are unset when streamed
    speech = np.frombuffer(wav[44:len(wav) - len(wav) % 2], dtype="<i2").astype(np.float64) / 32768.0
    g = math.gcd(SAMPLE_RATE, rate)
    speech = resample_poly(_trim(speech), SAMPLE_RATE // g, rate // g)[:CLIP_SAMPLES]
    speech *= r.uniform(0.3, 0.9) / max(1e-9, np.abs(speech).max())  # amplitude
    fade = min(FADE, len(speech) // 2)  # 10 ms ramps: the trimmed ends would click (a broadband stripe)
    if fade:
        ramp = np.linspace(0, 1, fade, endpoint=False)
        speech[:fade] *= ramp
        speech[len(speech) - fade:] *= ramp[::-1]
    clip = np.zeros(CLIP_SAMPLES)
    onset = int(r.integers(0, CLIP_SAMPLES - len(speech) + 1))
    clip[onset:onset + len(speech)] = speech
    noise = r.normal(size=CLIP_SAMPLES) * r.uniform(0.001, 0.01)
    noise = sosfilt(butter(2, r.uniform(2000, 7900), fs=SAMPLE_RATE, output="sos"), noise)
    return np.round(np.clip(clip + noise, -1, 1) * 32767).astype(np.int16), f"{variant}_{accent}"


def build(out_root: str | Path = "data", per_class: int = 1000, seed: int = 0, overwrite: bool = False,
          progress: bool = True, workers: int = 4) -> Path:
    """Write ``<out_root>/mini_speech_commands`` (see the module docstring) and return its path."""
    per_class = check_int("--per_class", per_class, TEST_EVERY)
    seed = check_int("--seed", seed, 0)
    target = Path(out_root) / NAME
    refuse_existing(target, overwrite)
    exe = espeak()
    accents, train_variants, test_variants = voices(exe)
    jobs = [(w, i) for w in range(len(MINI_WORDS)) for i in range(per_class)]

    with atomic_folder(Path(out_root), NAME, overwrite) as folder:
        for word in MINI_WORDS:
            (folder / word).mkdir()

        def write(job) -> None:
            w, i = job
            variants = test_variants if i % TEST_EVERY == 0 else train_variants
            samples, voice = make_clip(exe, MINI_WORDS[w], rng(seed, w, i), accents, variants)
            wavfile.write(folder / MINI_WORDS[w] / f"{i:05d}_{voice}_nohash_0.wav", SAMPLE_RATE, samples)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in tqdm(pool.map(write, jobs), total=len(jobs), desc=NAME, disable=not progress, file=sys.stderr):
                pass
        (folder / "build.json").write_text(json.dumps(
            {"words": list(MINI_WORDS), "per_class": per_class, "seed": seed, "accents": list(accents),
             "train_variants": list(train_variants), "test_variants": list(test_variants),
             "test_clips": f"file i of a word, i % {TEST_EVERY} == 0 (test variants only)"}, indent=2) + "\n")
    print(f"wrote {target}: {len(MINI_WORDS)} words x {per_class} clips ({len(train_variants)} train / "
          f"{len(test_variants)} test voice variants, {len(accents)} accents)")
    return target


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m common.data.espeak_commands",
               description="Write spoken commands synthesised by espeak-ng in the Mini Speech Commands layout.",
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="data", help=f"output root; the dataset goes to <out>/{NAME}")
    p.add_argument("--per_class", type=int, default=1000, help="clips per word (every 8th a test clip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=4, help="espeak-ng processes at once")
    p.add_argument("--overwrite", action="store_true", help=f"replace an existing <out>/{NAME}")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> Path:
    a = build_parser().parse_args(argv)
    return build(a.out, a.per_class, a.seed, a.overwrite, a.progress, check_int("--workers", a.workers, 1))


if __name__ == "__main__":
    run_main(main)
