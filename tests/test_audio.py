"""The audio domain: WAV reading, the spectrogram pipeline, the two layouts, the cache, errors, Griffin-Lim export,
the spectrogram grid and the offline espeak-ng builder."""
from __future__ import annotations

import importlib
import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import wavfile

from common.data import audio, get_dataset
from common.data import espeak_commands as ec
from common.domains import domain_of
from common.domains.audio import save_spectrogram_grid
from common.errors import DatasetNotFoundError, UserError
from tests.helpers import TEST_DEVICE

RATE = audio.SAMPLE_RATE
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)


def write_mini(root, per_word: int = 9, words=audio.MINI_WORDS):
    """Mini Speech Commands layout: word k's clips are tones at 300 + 400 k Hz (distinct per word)."""
    for k, w in enumerate(words):
        (root / "mini_speech_commands" / w).mkdir(parents=True)
        for i in range(per_word):
            wavfile.write(root / "mini_speech_commands" / w / f"{i:03d}_nohash_0.wav", RATE,
                          tone(300 + 400 * k, 0.5 + 0.05 * i))
    return root


def make_mini(root) -> dict:
    write_mini(root)
    return dict(kwargs={"cache_dir": str(root / "cache")}, channel=1, size=(64, 64), num_classes=8, n_train=56,
                n_test=16)


def make_v2(root) -> dict:
    folder = root / "speech_commands_v0.02"
    for k, w in enumerate(("down", "up")):
        (folder / w).mkdir(parents=True)
        for i in range(3):
            wavfile.write(folder / w / f"a{i}_nohash_0.wav", RATE, tone(400 + 500 * k))
    (folder / "testing_list.txt").write_text("up/a0_nohash_0.wav\n")
    (folder / "validation_list.txt").write_text("")
    return dict(kwargs={"cache_dir": str(root / "cache")}, channel=1, size=(64, 64), num_classes=2, n_train=5,
                n_test=1)


# layout id -> (dataset, writer): tests/test_registries.py loads each
LAYOUTS = {"audio-mini": ("MiniSpeechCommands", make_mini), "audio-v2": ("SpeechCommands", make_v2)}


def test_spectrograms_are_64x64_log_magnitudes_with_frequency_rows():
    x = torch.from_numpy(np.stack([tone(1000), tone(4000)]) / 32768.0)
    mag = audio.stft_magnitude(x.float())
    assert mag.shape == (2, 128, 125)  # n_fft 255 (128 bins), hop 128, centred: 125 frames for 1 s
    s = audio.spectrograms(x)
    assert s.shape == (2, 1, 64, 64)
    peak = s[:, 0].mean(-1).argmax(-1)  # the loudest row: 1 kHz and 4 kHz of the 8 kHz span over 64 rows
    assert abs(int(peak[0]) - 1000 / 8000 * 64) <= 1 and abs(int(peak[1]) - 4000 / 8000 * 64) <= 1
    silent = audio.spectrograms(torch.zeros(1, RATE))
    torch.testing.assert_close(silent, torch.full_like(silent, np.log(audio.LOG_EPS)))


def test_read_wav_pads_cuts_and_scales(tmp_path):
    wavfile.write(tmp_path / "short.wav", RATE, np.full(100, 16384, np.int16))
    x = audio.read_wav(tmp_path / "short.wav")
    assert x.shape == (RATE,) and x.dtype == np.float32 and np.all(x[:100] == 0.5) and np.all(x[100:] == 0)
    wavfile.write(tmp_path / "long.wav", RATE, np.linspace(-1, 1, 2 * RATE).astype(np.float32))
    assert audio.read_wav(tmp_path / "long.wav").shape == (RATE,)


@pytest.mark.parametrize("case, message", [
    ("rate", "sampled at 8000 Hz; the loader reads 16000 Hz clips and does not resample"),
    ("stereo", "2 channels; the loader reads mono clips"),
    ("empty", "no samples"),
    ("garbage", "not a readable WAV file"),
])
def test_bad_wav_files_are_one_line_errors_naming_the_file(tmp_path, case, message):
    path = tmp_path / f"{case}.wav"
    if case == "rate":
        wavfile.write(path, 8000, tone(440)[:8000])
    elif case == "stereo":
        wavfile.write(path, RATE, np.stack([tone(440), tone(880)], 1))
    elif case == "empty":
        wavfile.write(path, RATE, np.zeros(0, np.int16))
    else:
        path.write_bytes(b"not a wav file at all")
    with pytest.raises(UserError, match=message) as e:
        audio.read_wav(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_mini_layout_splits_every_8th_sorted_file_and_normalises_by_the_train_set(tmp_path):
    write_mini(tmp_path)
    real = get_dataset("MiniSpeechCommands", str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert real.class_names == list(audio.MINI_WORDS) and real.domain == "audio"  # IDC's label order
    assert real.images_train.shape == (8 * 7, 1, 64, 64) and real.images_test.shape == (8 * 2, 1, 64, 64)
    assert torch.equal(real.labels_test, torch.arange(8).repeat_interleave(2))  # files 000 and 008 of each word
    assert abs(float(real.images_train.mean())) < 1e-4 and abs(float(real.images_train.std()) - 1) < 1e-2
    # the test clips are files 0 and 8 of each word, made as the pipeline says
    waves = torch.from_numpy(np.stack([audio.read_wav(tmp_path / "mini_speech_commands" / "go" / f)
                                       for f in ("000_nohash_0.wav", "008_nohash_0.wav")]))
    want = (audio.spectrograms(waves) - real.mean[0]) / real.std[0]
    torch.testing.assert_close(real.images_test[4:6], want, atol=2e-3 / real.std[0] * 8, rtol=0)  # float16 cache
    # the cache: computed once, reused, and recomputed when a clip changes
    cached = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 2
    again = get_dataset("MiniSpeechCommands", str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert torch.equal(again.images_test, real.images_test) and sorted((tmp_path / "cache").glob("*.npy")) == cached
    wavfile.write(tmp_path / "mini_speech_commands" / "go" / "000_nohash_0.wav", RATE, tone(5000))
    changed = get_dataset("MiniSpeechCommands", str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert not torch.equal(changed.images_test, real.images_test)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3  # file 000 is a test clip: the train split is reused
    assert get_dataset("MiniSpeechCommands", str(tmp_path), res=32, cache_dir=str(tmp_path / "cache")
                       ).images_train.shape == (56, 1, 32, 32)


def test_speech_commands_v2_uses_its_lists_and_ignores_background_noise(tmp_path):
    root = tmp_path / "speech_commands_v0.02"
    words = ["backward", "yes", "zero"]
    for k, w in enumerate(words):
        (root / w).mkdir(parents=True)
        for i in range(4):
            wavfile.write(root / w / f"s{i}_nohash_0.wav", RATE, tone(500 + 300 * k))
    (root / "_background_noise_").mkdir()
    wavfile.write(root / "_background_noise_" / "white.wav", RATE, tone(100, 3))
    (root / "testing_list.txt").write_text("yes/s0_nohash_0.wav\nzero/s1_nohash_0.wav\n")
    (root / "validation_list.txt").write_text("yes/s1_nohash_0.wav\n")
    real = get_dataset("SpeechCommands", str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert real.class_names == words
    assert real.labels_train.tolist() == [0] * 4 + [1] * 2 + [2] * 3 and real.labels_test.tolist() == [1, 2]
    (root / "testing_list.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="testing_list.txt not found"):
        get_dataset("SpeechCommands", str(tmp_path), cache_dir=str(tmp_path / "cache"))


def test_missing_sets_and_zca_are_one_line_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="python -m common.data.espeak_commands --out"):
        get_dataset("MiniSpeechCommands", str(tmp_path))
    write_mini(tmp_path, per_word=1)  # no train clips: file 0 is a test clip
    with pytest.raises(UserError, match="have no train clips"):
        get_dataset("MiniSpeechCommands", str(tmp_path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(UserError, match="--zca whitens images"):
        get_dataset("MiniSpeechCommands", str(tmp_path), zca=True)


def test_griffin_lim_recovers_a_sound_with_the_spectrogram(tmp_path):
    wave = torch.from_numpy(tone(880) / 32768.0).float()[None]
    target = audio.stft_magnitude(wave)
    back = audio.griffin_lim(target, iterations=64)
    assert back.shape == (1, RATE)
    error = (audio.stft_magnitude(back) - target).norm() / target.norm()
    assert error < 0.1  # spectral convergence after 64 iterations
    # through the 64 x 64 log spectrogram and back: the tone's pitch survives
    rebuilt = audio.griffin_lim(audio.magnitude_from_log(audio.spectrograms(wave)[:, 0]))
    spectrum = np.abs(np.fft.rfft(rebuilt[0].numpy()))
    assert abs(np.argmax(spectrum) - 880) < 70  # 1 Hz bins; the resizing blurs it by a 64th of 8 kHz
    audio.write_wav(str(tmp_path / "t.wav"), rebuilt[0])
    rate, x = wavfile.read(tmp_path / "t.wav")
    assert rate == RATE and x.dtype == np.int16 and x.shape == (RATE,) and np.abs(x).max() > 1000


def test_the_domain_draws_a_colour_grid_and_exports_png_and_wav(tmp_path):
    write_mini(tmp_path)
    real = get_dataset("MiniSpeechCommands", str(tmp_path), cache_dir=str(tmp_path / "cache"))
    d = domain_of("MiniSpeechCommands")
    x, y = real.images_train[:10], real.labels_train[:10]  # 7 of word 0, 3 of word 1
    path, = d.save_visuals(x, y, str(tmp_path), "grid", real)
    grid = np.asarray(Image.open(path))
    assert grid.shape == (2 * (128 + 2) + 2, 7 * (128 + 2) + 2, 3)
    assert grid[2 + 130:, 2 + 3 * 130:].max() == 0  # word 1 has 3 cells; the rest of its row is empty
    d.export(x[[0, 7]], y[[0, 7]], real, str(tmp_path / "out"))
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*"))
    assert files == ["000_yes/00000.png", "000_yes/00000.wav", "001_no/00001.png", "001_no/00001.wav"]
    rate, wave = wavfile.read(tmp_path / "out" / "001_no" / "00001.wav")
    assert rate == RATE and wave.shape == (RATE,)
    spectrum = np.abs(np.fft.rfft(wave.astype(float)))
    assert abs(np.argmax(spectrum) - 700) < 70  # word 1's clips are 700 Hz tones


def test_grid_with_one_instance_per_class(tmp_path):
    x = torch.randn(3, 1, 16, 20)
    save_spectrogram_grid(x, torch.tensor([0, 1, 2]), str(tmp_path / "g.png"), scale=1)
    assert np.asarray(Image.open(tmp_path / "g.png")).shape == (3 * (16 + 2) + 2, 20 + 2 + 2, 3)


@needs_espeak
def test_the_espeak_set_is_in_the_mini_layout_with_held_out_test_voices(tmp_path):
    out = ec.build(tmp_path / "a", per_class=8, seed=0, progress=False)
    info = json.loads((out / "build.json").read_text())
    assert set(info["train_variants"]).isdisjoint(info["test_variants"]) and info["test_variants"]
    for w in audio.MINI_WORDS:
        files = sorted(p.name for p in (out / w).iterdir())
        assert len(files) == 8
        for i, f in enumerate(files):
            variant = f.split("_")[1]
            assert variant in (info["test_variants"] if i % 8 == 0 else info["train_variants"]), f
            rate, x = wavfile.read(out / w / f)
            assert rate == RATE and x.dtype == np.int16 and x.shape == (RATE,) and np.abs(x).max() > 3000
    again = ec.build(tmp_path / "b", per_class=8, seed=0, progress=False, workers=1)
    one = out / "stop" / sorted(p.name for p in (out / "stop").iterdir())[5]
    assert one.read_bytes() == (again / "stop" / one.name).read_bytes()  # deterministic from the seed
    other = ec.build(tmp_path / "c", per_class=8, seed=1, progress=False)
    assert sorted(p.name for p in (other / "stop").iterdir()) != sorted(p.name for p in (out / "stop").iterdir())
    real = get_dataset("MiniSpeechCommands", str(tmp_path / "a"), cache_dir=str(tmp_path / "cache"))
    assert real.images_train.shape == (8 * 7, 1, 64, 64) and real.images_test.shape == (8 * 1, 1, 64, 64)
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        ec.build(tmp_path / "a", per_class=8, progress=False)
    with pytest.raises(UserError, match="--per_class must be an integer >= 8"):
        ec.main(["--out", str(tmp_path / "d"), "--per_class", "3"])


def test_a_missing_espeak_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setattr(ec.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="espeak-ng not found: install it with 'apt-get install espeak-ng'"):
        ec.build(tmp_path, per_class=8, progress=False)
    assert not (tmp_path / ec.NAME).exists()


# ---- end to end: every objective and parameterisation on a tiny spoken-commands set (tones, 7 train clips a word) ---

AUDIO_SMALL = ["--dataset", "MiniSpeechCommands", "--model", "ConvNetD4", "--ipc", "1", "--num_eval", "1",
               "--epoch_eval_train", "2", "--batch_real", "4", "--no-progress", "--device", TEST_DEVICE,
               "--epochs_init", "30"]


@pytest.fixture(scope="module")
def tones_root(tmp_path_factory):
    return write_mini(tmp_path_factory.mktemp("speech"))


def audio_flags(tmp_path, root):
    return ["--data_path", str(root), "--save_path", str(tmp_path / "runs"), "--init_cache", str(tmp_path / "cache")]


@pytest.mark.e2e
@pytest.mark.parametrize("objective,synset", [("DM", "ddif"), ("DM", "fred"), ("DC", "pixel"), ("DC", "ddif")])
def test_dc_and_dm_on_spectrograms_write_every_run_file(objective, synset, tmp_path, tones_root):
    main = importlib.import_module(f"Audio.main_{objective}").main
    main(AUDIO_SMALL + audio_flags(tmp_path, tones_root) + ["--synset", synset, "--Iteration", "2", "--eval_it", "2"])
    run = next((tmp_path / "runs" / objective).glob("MiniSpeechCommands*/*"))
    for name in ("config.json", "metrics.jsonl", "synset_best.pt", "imgs/init_real.png", "imgs/syn_latest.png"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["dsa"] is False and cfg["res"] == 64
    per_class = {"ddif": 4096 // 921, "fred": 4096 // 512, "pixel": 1}[synset]  # hyper_params' audio rows
    assert cfg["budget"]["per_class"] == per_class
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 2] and all(0 <= r["acc_mean"] <= 1 for r in rows)
    assert (tmp_path / "cache" / "spectrograms").is_dir()  # the spectrograms are cached under --init_cache


@pytest.mark.e2e
def test_tm_runs_on_spectrogram_experts(tmp_path, tones_root):
    from TM.buffer import main as buffer_main
    from TM.main_TM import main as tm_main
    buffer_main(["--dataset", "MiniSpeechCommands", "--model", "ConvNetD4", "--data_path", str(tones_root),
                 "--device", TEST_DEVICE, "--no-progress", "--buffer_path", str(tmp_path / "buffers"),
                 "--num_experts", "1", "--train_epochs", "2", "--cache", str(tmp_path / "cache"),
                 "--n_train_per_class", "3"])
    tm_main(AUDIO_SMALL + audio_flags(tmp_path, tones_root) +
            ["--synset", "pixel", "--Iteration", "2", "--eval_it", "2", "--no-eval_at_start", "--buffer_path",
             str(tmp_path / "buffers"), "--syn_steps", "2", "--expert_epochs", "1", "--max_start_epoch", "1"])
    run = next((tmp_path / "runs" / "TM").glob("MiniSpeechCommands*/*"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 2 and math.isfinite(rows[-1]["syn_lr"])


@pytest.mark.e2e
def test_a_ddif_set_decodes_finer_spectrograms_and_exports_sound(tmp_path, tones_root):
    importlib.import_module("Audio.main_DM").main(AUDIO_SMALL + audio_flags(tmp_path, tones_root) +
                                                  ["--synset", "ddif", "--Iteration", "1"])
    ckpt = next((tmp_path / "runs").rglob("synset_best.pt"))
    from common.eval_main import main as eval_main
    res = eval_main(["--ckpt", str(ckpt), "--num_eval", "1", "--epoch_eval_train", "1", "--no-progress",
                     "--device", TEST_DEVICE, "--res", "128", "--cache", str(tmp_path / "cache"),
                     "--export_dir", str(tmp_path / "export")])
    assert set(res) == {"ConvNetD4"}
    wavs = sorted((tmp_path / "export").glob("*/*.wav"))
    assert len(wavs) == 8 * 4 and wavs[0].parent.name == "000_yes"
    assert len(sorted((tmp_path / "export").glob("*/*.png"))) == 8 * 4
    rate, x = wavfile.read(wavs[0])
    assert rate == RATE and x.shape == (RATE,)
    assert np.asarray(Image.open(sorted((tmp_path / "export").glob("*/*.png"))[0])).shape == (128, 128, 3)
    whole = eval_main(["--whole_real", "--dataset", "MiniSpeechCommands", "--data_path", str(tones_root),
                       "--model", "ConvNetW32", "--num_eval", "1", "--epoch_eval_train", "20", "--no-progress",
                       "--device", TEST_DEVICE, "--cache", str(tmp_path / "cache")])
    assert whole["ConvNetW32"][0] >= 0.5  # eight tones, 56 training clips: far above chance (1/8)


@pytest.mark.e2e
def test_the_audio_demo_runs_every_row(tmp_path, tones_root):
    from Audio.demo import main
    main(["--protocol", "smoke", "--data_path", str(tones_root), "--out", str(tmp_path / "demo"), "--device",
          TEST_DEVICE])
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["method"] for r in rows] == ["ddif + DM", "fred + DM", "pixel + DM", "random real",
                                           "whole training set"]
    assert "Model selection: none." in (tmp_path / "demo" / "results.md").read_text()
