"""The voxel CPU table: Voxel Fashion-MNIST (upright shapes) at ipc 1 (16^3 = 4,096 numbers per class), DC and DM
with DDiF (budget filled), FreD and pixel; the ceiling (the same network trained on every training shape) and
random real shapes at the same budget, evaluated with a narrow Conv3DNet; then the DDiF set distilled by DM at
16^3 decoded at 32^3 and evaluated against test shapes voxelised at 32^3 (the same fields, another resolution),
next to random real shapes at 32^3. Under the table: the DDiF warm starts' fit (PSNR, occupancy IoU).

    python -m 3D_Voxel.demo                   # builds Voxel Fashion-MNIST in --data_path if it is missing

Protocol "cpu" (stated in the table) is reduced from the paper's (DC 1,000 / DM 20,000 iterations, Conv3DNet at
32^3, 300 / 1,000 evaluation epochs) so that it finishes in about 21 minutes on two CPU cores: PROTOCOLS below.
Everything else is the normal default of 3D_Voxel/main_DC.py and main_DM.py. A Voxel Fashion-MNIST built with
another --rotation is refused with the command that rebuilds it.
"""
from __future__ import annotations

import argparse
import importlib
import os
import time

from common.cli import run_main
from common.data import voxel_fmnist as vfm
from common.demo import (build_once, distil_row, find_run, flags, prepare, publish, random_real_row, render_table,
                         run_summary, warm_start_fit, whole_row)
from common.eval_main import main as eval_main

PROTOCOLS = {
    "cpu": dict(model="Conv3DNetW32", res=16, iterations={"DC": 100, "DM": 200}, batch_real=32, epochs_init=1000,
                num_eval=2, epoch_eval_train=100, n_test=None, whole_epochs=30, rotation="upright"),
    # what the tests run: every step of the table, a few seconds each
    "smoke": dict(model="Conv3DNetW32", res=16, iterations={"DC": 1, "DM": 1}, batch_real=4, epochs_init=5,
                  num_eval=1, epoch_eval_train=1, n_test=20, whole_epochs=1, rotation="upright"),
}
SYNSETS = ("ddif", "fred", "pixel")
DATASET = "VoxelFashionMNIST"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/voxel_demo", help="where the runs and the table go (replaced)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data_path", default="data")
    p.add_argument("--protocol", default="cpu", choices=list(PROTOCOLS))
    p.add_argument("--objectives", nargs="+", default=["DC", "DM"], choices=["DC", "DM"])
    a = p.parse_args(argv)
    proto = dict(PROTOCOLS[a.protocol])
    rotation = proto.pop("rotation")
    prepare(a.out, a.device, lambda: build_once(vfm, vfm.SHAPE_NAMES, a.data_path, rotation=rotation))
    model, res, iterations = proto.pop("model"), proto.pop("res"), proto.pop("iterations")
    whole_epochs = proto.pop("whole_epochs")
    evaluation = {k: proto[k] for k in ("num_eval", "epoch_eval_train", "n_test")}
    base = ["--dataset", DATASET, "--ipc", "1", "--model", model, "--res", str(res), "--device", a.device,
            "--data_path", a.data_path, "--save_path", a.out, "--eval_it", str(10 ** 9), "--no-eval_at_start",
            *flags(proto)]
    rows, t_all, fits = [], time.time(), []
    for objective in a.objectives:
        entry = importlib.import_module(f"3D_Voxel.main_{objective}")
        for s in SYNSETS:
            argv = base + ["--Iteration", str(iterations[objective])]
            row, run = distil_row(entry.main, argv, a.out, objective, DATASET, s)
            rows.append(row)
            if s == "ddif" and (fit := warm_start_fit(run)):
                fits.append(f"DDiF warm start fit ({objective} run): {fit}.")
    common = ["--device", a.device, *flags(evaluation), "--no-progress"]
    n_train = vfm.train_count(a.data_path)  # the ceiling: the same network trained on every training shape
    rows.append(dict(whole_row(["--dataset", DATASET, "--res", str(res), "--data_path", a.data_path, "--device",
                                a.device, *flags({k: evaluation[k] for k in ("num_eval", "n_test")})], model, n_train,
                               n_train // 10, res ** 3, whole_epochs, "shapes"), grid=""))
    for r in (res, 2 * res):
        rows.append(dict(random_real_row(["--dataset", DATASET, "--res", str(r), "--data_path", a.data_path, *common],
                                         model, r ** 3 * 10, f"random real{'' if r == res else f' at {r}^3'}"),
                         grid=""))
        if r != res and "DM" in a.objectives:  # the DM DDiF set, decoded at 2 * res, against shapes at 2 * res
            t = time.time()
            run = find_run(a.out, "DM", DATASET, "ddif")
            result = eval_main(["--ckpt", os.path.join(run, "synset_best.pt"), "--res", str(r), *common])
            mean, std = result[model]
            _, budget = run_summary(run)
            rows.append(dict(method=f"ddif + DM trained at {res}^3, decoded at {r}^3", per_class=budget["per_class"],
                             numbers=budget["used"], acc_mean=mean, acc_std=std, seconds=time.time() - t, grid=""))
    head = (f"Voxel Fashion-MNIST, ipc 1 (budget {res}^3 = {res ** 3} numbers per class), protocol '{a.protocol}': "
            f"DC {iterations['DC']} / DM {iterations['DM']} iterations (batch_real {proto['batch_real']}, no "
            f"augmentation, DDiF warm start {proto['epochs_init']} steps); {model} evaluation: "
            f"{evaluation['num_eval']} networks x {evaluation['epoch_eval_train']} epochs, "
            f"{evaluation['n_test'] or 'all'} test shapes; "
            f"total {(time.time() - t_all) / 60:.1f} min")
    publish(a.out, "\n\n".join([render_table(head, rows), *fits]), rows,
            f"projection grids: {a.out}/*/{DATASET}_res{res}/*/imgs/")


if __name__ == "__main__":
    run_main(main)
