"""Distribution matching (DM) on video clips for a DDiF (3-D fields over t, h, w), FreD (3-D DCT) or pixel set.

    python Video/main_DM.py --synset ddif --dataset miniUCF101 --ipc 1 --dipc 1
    python Video/main_DM.py --synset ddif --dataset MovingFashionMNIST --model ConvNet3DW32
Defaults: dataset MovingFashionMNIST (build it once with `python -m common.data.moving_fmnist`), model
ConvNet3D (the video domain's). Flags left unset take their value from hyper_params.py (video: no DSA, 5,000
iterations, 64 real clips per class, 3 evaluation networks of 500 epochs); see --help. DC and TM run on clips
through DC/main_DC.py and TM/main_TM.py with the same --dataset.
"""
from common.cli import run_main
from common.distill import main as distill


def main(argv=None):
    return distill("DM", argv, __doc__, dataset="MovingFashionMNIST")


if __name__ == "__main__":
    run_main(main)
