"""The README's main job: distil Fashion-MNIST at ipc 1 with DM for DDiF, FreD and pixel on CPU, evaluate
them and the random-real baseline at the same budget, print one accuracy table, write image grids.

Reduced from the paper's protocol so that it finishes in minutes on two CPU cores (stated in the table):
DEMO below. Everything else (model ConvNet, DSA, optimisers, learning rates) is the normal default.
"""
import argparse
import time

from common.cli import run_main
from common.demo import distil_row, flags, prepare, publish, random_real_row, render_table
from DM.main_DM import main as dm_main

DEMO = dict(Iteration=100, batch_real=32, epochs_init=2000, num_eval=2, epoch_eval_train=100, n_test=2000)
SYNSETS = ("ddif", "fred", "pixel")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="where the demo's runs and table go (replaced)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data_path", default="data")
    a = p.parse_args(argv)
    prepare(a.out, a.device)
    common = ["--dataset", "FashionMNIST", "--ipc", "1", "--model", "ConvNet", "--device", a.device,
              "--data_path", a.data_path, "--save_path", a.out, "--eval_it", str(10 ** 9), "--no-eval_at_start",
              *flags(DEMO)]
    rows, t_all = [], time.time()
    for s in SYNSETS:
        rows.append(distil_row(dm_main, common, a.out, "DM", "FashionMNIST", s)[0])
    rows.append(dict(random_real_row(["--dataset", "FashionMNIST", "--device", a.device, "--data_path", a.data_path,
                                      "--num_eval", str(DEMO["num_eval"]), "--epoch_eval_train",
                                      str(DEMO["epoch_eval_train"]), "--n_test", str(DEMO["n_test"])], "ConvNet",
                                     7840), grid=""))
    publish(a.out, render(rows, time.time() - t_all), rows, f"image grids: {a.out}/DM/FashionMNIST/*/imgs/")


def render(rows, seconds) -> str:
    head = (f"Fashion-MNIST, ipc 1 (budget 7840 numbers), DM for {DEMO['Iteration']} iterations "
            f"(batch_real {DEMO['batch_real']}, DDiF warm start {DEMO['epochs_init']} steps); ConvNet evaluation: "
            f"{DEMO['num_eval']} networks x {DEMO['epoch_eval_train']} epochs, {DEMO['n_test']} test images; "
            f"total {seconds / 60:.1f} min")
    return render_table(head, rows)


if __name__ == "__main__":
    run_main(main)
