"""The audio CPU table: spoken commands (the offline espeak-ng set in the Mini Speech Commands layout, 8 words,
log spectrograms of 64 x 64) distilled by DM at one spectrogram per class of storage with DDiF (budget filled),
FreD and pixels; random real spectrograms at the same budget; and the whole training set (the same network trained
on every real training spectrogram: the ceiling).

    python -m Audio.demo                      # builds the offline set in --data_path if it is missing
    python -m Audio.demo --device cuda --protocol paper

Protocol "cpu" (stated in the table) is reduced so that it finishes in about 20 minutes on two CPU cores: PROTOCOLS
below. Everything else is the normal default of Audio/main_DM.py (no augmentation, as IDC's speech experiments).
"""
from __future__ import annotations

import argparse
import os
import time

from common.cli import run_main
from common.data import audio
from common.data import espeak_commands as esc
from common.demo import distil_row, flags, prepare, publish, render_table
from common.eval_main import main as eval_main
from Audio.main_DM import main as dm_main

PROTOCOLS = {
    "cpu": dict(model="ConvNetD4", Iteration=100, batch_real=16, epochs_init=500, num_eval=2, epoch_eval_train=100,
                n_test=None),
    "paper": dict(model="ConvNetD4", Iteration=20000, batch_real=256, epochs_init=5000, num_eval=5,
                  epoch_eval_train=1000, n_test=None),
    # what the tests run: every step of the table, a few seconds each
    "smoke": dict(model="ConvNetD4", Iteration=1, batch_real=4, epochs_init=2, num_eval=1, epoch_eval_train=1,
                  n_test=16, n_train_per_class=6),
}
# the whole-training-set row: (networks, --epoch_eval_train); 7,000 spectrograms a pass, 2 passes on the CPU
WHOLE = {"cpu": (1, 1), "paper": (5, 100), "smoke": (1, 0)}
SYNSETS = ("ddif", "fred", "pixel")
DATASET = "MiniSpeechCommands"


def build_once(data_path: str, per_class: int) -> None:
    """Build the offline spoken-commands set in ``data_path`` unless the folder is there (the real set or a build)."""
    if not (os.path.isdir(os.path.join(data_path, esc.NAME))):
        print(f"building {esc.NAME} in {data_path} with espeak-ng (once)")
        esc.build(data_path, per_class=per_class)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/audio_demo", help="where the runs and the table go (replaced)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data_path", default="data")
    p.add_argument("--per_class", type=int, default=1000, help="clips per word of the offline set, if it is built")
    p.add_argument("--protocol", default="cpu", choices=list(PROTOCOLS))
    p.add_argument("--synsets", nargs="+", default=list(SYNSETS), choices=list(SYNSETS))
    a = p.parse_args(argv)
    proto = dict(PROTOCOLS[a.protocol])
    prepare(a.out, a.device, lambda: build_once(a.data_path, a.per_class))
    model = proto.pop("model")
    evaluation = {k: proto[k] for k in ("num_eval", "epoch_eval_train", "n_test")}
    data = {k: proto[k] for k in ("n_train_per_class",) if k in proto}
    common = ["--dataset", DATASET, "--model", model, "--device", a.device, "--data_path", a.data_path,
              "--no-progress"]
    base = common + ["--ipc", "1", "--save_path", a.out, "--eval_it", str(10 ** 9), "--no-eval_at_start",
                     *flags(proto)]
    rows, t_all = [], time.time()
    for s in a.synsets:
        rows.append(distil_row(dm_main, base, a.out, "DM", DATASET, s)[0])
    classes = len(audio.MINI_WORDS)
    nets, epochs = WHOLE[a.protocol]
    whole = dict(evaluation, num_eval=nets, epoch_eval_train=epochs)
    for what, extra, how, per_class, numbers in (
            ("random real", ["--random_real", "--ipc", "1"], evaluation, 1, audio.SIDE ** 2 * classes),
            ("whole training set", ["--whole_real"], whole, "all train clips", "all")):
        t = time.time()
        mean, std = eval_main(common + extra + flags(how) + flags(data))[model]
        rows.append(dict(method=what, per_class=per_class, numbers=numbers, acc_mean=mean, acc_std=std,
                         seconds=time.time() - t, grid=""))
    publish(a.out, render(rows, a.protocol, model, proto, evaluation, time.time() - t_all), rows,
            f"spectrogram grids: {a.out}/DM/{DATASET}/*/imgs/")


def render(rows, protocol, model, proto, evaluation, seconds) -> str:
    head = (f"Spoken commands (offline espeak-ng set, 8 words, 64x64 log spectrograms), 1 spectrogram per class of "
            f"storage (4,096 numbers per class), protocol '{protocol}': DM for {proto['Iteration']} iterations "
            f"(batch_real {proto['batch_real']}, no augmentation, DDiF warm start {proto['epochs_init']} steps); "
            f"{model} evaluation: {evaluation['num_eval']} networks x {evaluation['epoch_eval_train']} epochs, "
            f"{evaluation['n_test'] or 'all'} test spectrograms (the whole training set: "
            f"{WHOLE[protocol][0]} network(s) "
            f"x {WHOLE[protocol][1] + 1} passes); total {seconds / 60:.1f} min")
    return render_table(head, rows)


if __name__ == "__main__":
    run_main(main)
