"""Evaluate a distilled video set (or random real clips) and export it as GIFs, one folder per class.

    python Video/eval.py --ckpt runs/DM/MovingFashionMNIST/<run>/synset_best.pt --res 96 \
        --num_eval 1 --epoch_eval_train 60
decodes a DDiF set at 96x96 and tests on clips sampled alike (--frames N asks for N frames; the test clips must
have them: Moving Fashion-MNIST's have 16, UCF101's are long enough for 32); --shuffle_frames trains on the clips
with their frames shuffled; --export_dir DIR writes one GIF per clip. Without --num_eval/--epoch_eval_train the
table's protocol runs (video: 3 networks x 500 epochs, hours on a CPU). See --help.
"""
from common.cli import run_main
from common.eval_main import main

if __name__ == "__main__":
    run_main(main)
