"""Evaluate a distilled video set (or random real clips) and export it as GIFs, one folder per class.

    python Video/eval.py --ckpt runs/DM/MovingFashionMNIST/<run>/synset_best.pt --frames 32 --res 96
decodes a DDiF set at 32 frames of 96x96 and tests on clips sampled alike; --shuffle_frames trains on the
clips with their frames shuffled; --export_dir DIR writes one GIF per clip. See --help.
"""
from common.cli import run_main
from common.eval_main import main

if __name__ == "__main__":
    run_main(main)
