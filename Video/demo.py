"""The video CPU table: Moving Fashion-MNIST at one clip per class (16x64x64 numbers per class), DM with DDiF
(budget filled), FreD and pixel, and random real clips at the same budget, evaluated with a narrow ConvNet3D;
then the DDiF set evaluated again with the frames of every clip shuffled (how much the motion matters).

    python -m Video.demo                      # builds Moving Fashion-MNIST in --data_path if it is missing
    python -m Video.demo --device cuda --protocol paper

Protocol "cpu" (stated in the table) is reduced from the video paper's (5,000 DM iterations, 64 real clips per
class, ConvNet3D, 3 networks x 500 epochs) so that it finishes in about half an hour on two CPU cores: REDUCED
below. Everything else is the normal default of Video/main_DM.py.
"""
from __future__ import annotations

import argparse
import os
import time

from common.cli import run_main
from common.data import moving_fmnist as mfm
from common.demo import build_once, distil_row, flags, prepare, publish, render_table
from common.eval_main import main as eval_main
from Video.main_DM import main as dm_main

PROTOCOLS = {
    "cpu": dict(model="ConvNet3DW32", Iteration=40, batch_real=16, epochs_init=40, lr_nf_init=5e-3, num_eval=2,
                epoch_eval_train=60, n_test=300),
    "paper": dict(model="ConvNet3D", Iteration=5000, batch_real=64, epochs_init=5000, lr_nf_init=5e-4, num_eval=3,
                  epoch_eval_train=500, n_test=None),
    # what the tests run: every step of the table, a few seconds each (48x48 frames: a small field fits)
    "smoke": dict(model="ConvNet3DW32", Iteration=1, batch_real=4, epochs_init=2, lr_nf_init=5e-3, num_eval=1,
                  epoch_eval_train=1, n_test=20, res=48, frames=8, dipc=1, layer_size=8, num_layers=2, dim_in=3,
                  dim_out=1, w0_initial=5, w0=5),
}
SYNSETS = ("ddif", "fred", "pixel")
DATASET = "MovingFashionMNIST"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/video_demo", help="where the runs and the table go (replaced)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data_path", default="data")
    p.add_argument("--protocol", default="cpu", choices=list(PROTOCOLS))
    p.add_argument("--synsets", nargs="+", default=list(SYNSETS), choices=list(SYNSETS))
    a = p.parse_args(argv)
    proto = dict(PROTOCOLS[a.protocol])
    prepare(a.out, a.device, lambda: build_once(mfm, mfm.CSV_NAME, a.data_path))
    model = proto.pop("model")
    evaluation = {k: proto[k] for k in ("num_eval", "epoch_eval_train", "n_test")}
    base = ["--dataset", DATASET, "--ipc", "1", "--model", model, "--device", a.device, "--data_path", a.data_path,
            "--save_path", a.out, "--eval_it", str(10 ** 9), "--no-eval_at_start", *flags(proto)]
    rows, t_all = [], time.time()
    for s in a.synsets:
        row, run = distil_row(dm_main, base, a.out, "DM", DATASET, s, "gif", "syn_latest.gif")
        rows.append(row)
        if s == "ddif":
            t = time.time()
            res = eval_main(["--ckpt", os.path.join(run, "synset_best.pt"), "--shuffle_frames", "--device",
                             a.device, *flags(evaluation), "--no-progress"])
            mean, std = res[model]
            rows.append(dict(method="ddif + DM, frames shuffled", per_class=row["per_class"],
                             numbers=row["numbers"], acc_mean=mean, acc_std=std, seconds=time.time() - t, gif=""))
    t = time.time()
    size = {k: proto.get(k) for k in ("frames", "res")}
    res = eval_main(["--random_real", "--dataset", DATASET, "--ipc", "1", "--model", model, "--device", a.device,
                     "--data_path", a.data_path, *flags(size), *flags(evaluation), "--no-progress"])
    mean, std = res[model]
    numbers = (size["frames"] or mfm.FRAMES) * (size["res"] or mfm.SIZE) ** 2 * 10
    rows.append(dict(method="random real", per_class=1, numbers=numbers, acc_mean=mean, acc_std=std,
                     seconds=time.time() - t, gif=""))
    publish(a.out, render(rows, a.protocol, model, proto, evaluation, time.time() - t_all), rows,
            f"GIF grids: {a.out}/DM/{DATASET}/*/imgs/")


def render(rows, protocol, model, proto, evaluation, seconds) -> str:
    head = (f"Moving Fashion-MNIST, 1 clip per class (budget 16x64x64 = 65,536 numbers per class), protocol "
            f"'{protocol}': DM for {proto['Iteration']} iterations (batch_real {proto['batch_real']}, no DSA, DDiF "
            f"warm start {proto['epochs_init']} steps at lr {proto['lr_nf_init']}); {model} evaluation: "
            f"{evaluation['num_eval']} networks x {evaluation['epoch_eval_train']} epochs, "
            f"{evaluation['n_test'] or 'all'} test clips; total {seconds / 60:.1f} min")
    return render_table(head, rows)


if __name__ == "__main__":
    run_main(main)
