"""The video CPU table: Moving Fashion-MNIST built for it (8 frames on a 48x48 canvas: the garment fills more of the
frame than on the default 64x64 set) at one clip per class (8x48x48 = 18,432 numbers per class), DM with DDiF
(budget filled), FreD and pixel; the ceiling (the same network trained on every training clip) and random real
clips at the same budget, evaluated with a narrow ConvNet3D; then the DDiF set evaluated again with the frames of
every clip shuffled (how much the motion matters). Under the table: the DDiF warm start's fit (PSNR).

    python -m Video.demo                      # builds its Moving Fashion-MNIST in data/video_demo if it is missing
    python -m Video.demo --device cuda --protocol paper

Protocol "cpu" (stated in the table) is reduced from the video paper's (5,000 DM iterations, 64 real clips per
class, ConvNet3D, 3 networks x 500 epochs) so that it finishes in about 25 minutes on two CPU cores: PROTOCOLS
below. The set is built once, with the protocol's settings, in --data_path (its own folder, so that the default
Moving Fashion-MNIST in data/ stays as it is); a set there built otherwise is refused with the command that
rebuilds it. The DDiF field and the learning rates are the protocol's, given as flags (hyper_params.py has no row
for 48x48 clips); everything else is the normal default of Video/main_DM.py.
"""
from __future__ import annotations

import argparse
import os
import time

from common.cli import run_main
from common.data import moving_fmnist as mfm
from common.demo import (build_once, distil_row, flags, prepare, publish, random_real_row, render_table,
                         warm_start_fit, whole_row)
from common.eval_main import main as eval_main
from Video.main_DM import main as dm_main

# the DDiF field of the cpu table: 3 -> 30 x 4 -> 1 (2,941 parameters: 6 fields per class at 8x48x48), the
# learning rates of the Fashion-MNIST DM rows
_CPU_FIELD = dict(dim_in=3, num_layers=4, layer_size=30, dim_out=1, w0_initial=5, w0=5, lr_nf=1e-3, lr_img=1.0,
                  lr_freq=1.0)
PROTOCOLS = {
    "cpu": dict(model="ConvNet3DW32", res=48, frames=8, Iteration=100, batch_real=16, epochs_init=200,
                lr_nf_init=5e-3, **_CPU_FIELD, num_eval=2, epoch_eval_train=300, n_test=None, whole_epochs=30,
                build=dict(size=48, frames=8)),
    "paper": dict(model="ConvNet3D", Iteration=5000, batch_real=64, epochs_init=5000, lr_nf_init=5e-4, num_eval=3,
                  epoch_eval_train=500, n_test=None, whole_epochs=500, build=dict(size=mfm.SIZE, frames=mfm.FRAMES)),
    # what the tests run: every step of the table, a few seconds each (48x48 frames: a small field fits), on
    # whatever Moving Fashion-MNIST --data_path holds
    "smoke": dict(model="ConvNet3DW32", Iteration=1, batch_real=4, epochs_init=2, lr_nf_init=5e-3, num_eval=1,
                  epoch_eval_train=1, n_test=20, res=48, frames=8, dipc=1, layer_size=8, num_layers=2, dim_in=3,
                  dim_out=1, w0_initial=5, w0=5, whole_epochs=1, build={}),
}
SYNSETS = ("ddif", "fred", "pixel")
DATASET = "MovingFashionMNIST"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/video_demo", help="where the runs and the table go (replaced)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data_path", default="data/video_demo",
                   help="where the table's Moving Fashion-MNIST is (built there once)")
    p.add_argument("--source_path", default="data",
                   help="where Fashion-MNIST is, to build it (the Debian path is looked in too)")
    p.add_argument("--protocol", default="cpu", choices=list(PROTOCOLS))
    p.add_argument("--synsets", nargs="+", default=list(SYNSETS), choices=list(SYNSETS))
    a = p.parse_args(argv)
    proto = dict(PROTOCOLS[a.protocol])
    settings = proto.pop("build")
    prepare(a.out, a.device, lambda: build_once(mfm, mfm.CSV_NAME, a.data_path, a.source_path, **settings))
    model, whole_epochs = proto.pop("model"), proto.pop("whole_epochs")
    evaluation = {k: proto[k] for k in ("num_eval", "epoch_eval_train", "n_test")}
    size = {k: proto.get(k) for k in ("frames", "res")}
    frames, res = size["frames"] or mfm.FRAMES, size["res"] or mfm.SIZE
    base = ["--dataset", DATASET, "--ipc", "1", "--model", model, "--device", a.device, "--data_path", a.data_path,
            "--save_path", a.out, "--eval_it", str(10 ** 9), "--no-eval_at_start", *flags(proto)]
    rows, fits, t_all = [], [], time.time()
    for s in a.synsets:
        row, run = distil_row(dm_main, base, a.out, "DM", DATASET, s, "gif", "syn_latest.gif")
        rows.append(row)
        if s == "ddif":
            if fit := warm_start_fit(run):
                fits.append(f"DDiF warm start fit: {fit}.")
            t = time.time()
            res_ = eval_main(["--ckpt", os.path.join(run, "synset_best.pt"), "--shuffle_frames", "--device",
                              a.device, *flags(evaluation), "--no-progress"])
            mean, std = res_[model]
            rows.append(dict(method="ddif + DM, frames shuffled", per_class=row["per_class"],
                             numbers=row["numbers"], acc_mean=mean, acc_std=std, seconds=time.time() - t, gif=""))
    data = ["--dataset", DATASET, "--data_path", a.data_path, "--device", a.device, *flags(size)]
    n_train = mfm.train_count(a.data_path)  # the ceiling: the same network trained on every training clip
    rows.append(dict(whole_row(data + flags({k: evaluation[k] for k in ("num_eval", "n_test")}), model, n_train,
                               n_train // 10, frames * res * res, whole_epochs, "clips"), gif=""))
    rows.append(dict(random_real_row([*data, *flags(evaluation), "--no-progress"], model, frames * res * res * 10),
                     gif=""))
    head = (f"Moving Fashion-MNIST ({frames} frames of {res}x{res}), 1 clip per class (budget {frames}x{res}x{res} = "
            f"{frames * res * res:,} numbers per class), protocol '{a.protocol}': DM for {proto['Iteration']} "
            f"iterations (batch_real {proto['batch_real']}, no DSA, DDiF warm start {proto['epochs_init']} steps at "
            f"lr {proto['lr_nf_init']}); {model} evaluation: {evaluation['num_eval']} networks x "
            f"{evaluation['epoch_eval_train']} epochs, {evaluation['n_test'] or 'all'} test clips; total "
            f"{(time.time() - t_all) / 60:.1f} min")
    publish(a.out, "\n\n".join([render_table(head, rows), *fits]), rows,
            f"GIF grids: {a.out}/DM/{DATASET}*/*/imgs/")


if __name__ == "__main__":
    run_main(main)
