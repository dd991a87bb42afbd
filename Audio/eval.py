"""Evaluate a distilled audio set (or random real clips) and export it: one folder per word, each instance as a
colour-mapped spectrogram (PNG) and as sound (WAV, phases recovered by Griffin-Lim).

    python Audio/eval.py --ckpt runs/DM/MiniSpeechCommands/<run>/synset_best.pt --export_dir out/audio
    python Audio/eval.py --ckpt runs/DM/MiniSpeechCommands/<run>/synset_best.pt --res 128
decodes a DDiF set at 128 x 128 (a finer spectrogram) and tests on spectrograms made alike. See --help.
"""
from common.cli import run_main
from common.eval_main import main

if __name__ == "__main__":
    run_main(main)
