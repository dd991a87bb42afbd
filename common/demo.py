"""What the demo scripts (DM/demo.py, Video/demo.py, 3D_Voxel/demo.py) share: flags from a dict, the summary
of a finished run, and the markdown table they print."""
from __future__ import annotations

import glob
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

from . import dist
from .atomic import write_text
from .data.offline import read_build_info
from .errors import UserError
from .eval_main import main as eval_main


def prepare(out: str, device: str, build: Optional[Callable[[], None]] = None) -> None:
    """Start a demo: join the process group (under torchrun), then rank 0 builds the dataset if ``build`` and
    empties ``out`` while the others wait. A demo runs under torchrun on one machine: every rank reads the run
    folders rank 0 writes, and rank 0 alone prints and writes the table."""
    dist.setup(device)
    with dist.main_first():
        if dist.is_main():
            if build is not None:
                build()
            shutil.rmtree(out, ignore_errors=True)


def build_once(module, marker: str, data_path: str, source_path: Optional[str] = None, **settings) -> None:
    """Build the offline dataset ``module`` (common.data.moving_fmnist or voxel_fmnist) in ``data_path`` with
    ``settings`` unless its folder already holds ``marker``, a file the build writes; Fashion-MNIST is read from
    ``source_path`` (default ``data_path``; the Debian path is always looked in too). A module that records its
    build (``BUILD_INFO``) must have been built with ``settings``: otherwise a one-line error says how to rebuild."""
    source_path = source_path or data_path
    root = Path(data_path) / module.NAME
    if not (root / marker).is_file():
        print(f"building {module.NAME} in {data_path} (once)")
        module.build(data_path, data_path=source_path, progress=True, **settings)
        return
    info = getattr(module, "BUILD_INFO", None)
    if info and settings:
        built = read_build_info(root, info)
        differ = {k: v for k, v in settings.items() if built.get(k) != v}
        if differ:
            wanted = " ".join(f"--{k} {v}" for k, v in differ.items())
            found = ", ".join(f"{k} {built.get(k, 'unrecorded')}" for k in differ)
            raise UserError(f"{root} was built with {found}; this table needs {wanted}: rebuild it with python -m "
                            f"{module.__name__} --data_path {source_path} --out {data_path} --overwrite {wanted}")


def publish(out: str, table: str, rows: list, where: str) -> None:
    """Rank 0: print the table and write it to ``out``/results.md and the rows to results.json."""
    if not dist.is_main():
        return
    print("\n" + table)
    write_text(os.path.join(out, "results.md"), table + "\n")
    write_text(os.path.join(out, "results.json"), json.dumps(rows, indent=2) + "\n")
    print(f"table: {out}/results.md; {where}")


def flags(d: dict) -> list:
    """{"Iteration": 100, "n_test": None} -> ["--Iteration", "100"] (None values left out)."""
    return [x for k, v in d.items() if v is not None for x in (f"--{k}", str(v))]


def find_run(save_path: str, objective: str, dataset: str, exp_name: str) -> str:
    """The folder of run ``exp_name`` of ``objective`` on ``dataset`` (whatever its resolution tag)."""
    found = sorted(glob.glob(os.path.join(save_path, objective, f"{dataset}*", exp_name)))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one run folder {save_path}/{objective}/{dataset}*/{exp_name}, found {found}")
    return found[0]


def run_summary(run: str) -> tuple[dict, dict]:
    """(the last metrics row, the budget) of the run folder ``run``."""
    with open(os.path.join(run, "metrics.jsonl")) as f:
        last = [json.loads(line) for line in f if line.strip()][-1]
    with open(os.path.join(run, "config.json")) as f:
        budget = json.load(f)["budget"]
    return last, budget


def warm_start_fit(run: str) -> Optional[str]:
    """What a DDiF run's log says of its warm start's fit (``warm start fit: ...``), or None."""
    path = os.path.join(run, "log.txt")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        found = [line.split("warm start fit: ", 1)[1].strip() for line in f if "warm start fit: " in line]
    return found[-1] if found else None


def whole_row(eval_argv: list, model: str, n_train: int, per_class: int, numbers_each: int, epochs: int,
              noun: str) -> dict:
    """The ceiling row: ``model`` networks trained on every training instance (``eval.py --whole_real``)."""
    t = time.time()
    mean, std = eval_main(["--whole_real", "--model", model, "--epoch_eval_train", str(epochs), *eval_argv,
                           "--no-progress"])[model]
    return dict(method=f"whole training set ({n_train} {noun}, {epochs} epoch{'s' if epochs != 1 else ''})",
                per_class=per_class, numbers=n_train * numbers_each, acc_mean=mean, acc_std=std,
                seconds=time.time() - t)


def random_real_row(eval_argv: list, model: str, numbers: int, method: str = "random real") -> dict:
    """The baseline row: ``model`` networks trained on one random real instance per class (``eval.py
    --random_real --ipc 1``; ``eval_argv`` names the dataset, device and evaluation), ``numbers`` stored."""
    t = time.time()
    mean, std = eval_main(["--random_real", "--ipc", "1", "--model", model, *eval_argv])[model]
    return dict(method=method, per_class=1, numbers=numbers, acc_mean=mean, acc_std=std, seconds=time.time() - t)


def distil_row(main, argv: list, out: str, objective: str, dataset: str, synset: str, picture: str = "grid",
               file: str = "syn_latest.png") -> tuple[dict, str]:
    """Distil one set of a demo's table (``main`` on ``argv``, ``--exp_name`` the synset's name) and return its row
    (method, instances per class, numbers stored, accuracy, seconds, and under ``picture`` its ``imgs/file``) and
    its run folder."""
    t = time.time()
    main(argv + ["--synset", synset, "--exp_name", synset])
    run = find_run(out, objective, dataset, synset)
    last, budget = run_summary(run)
    return dict(method=f"{synset} + {objective}", per_class=budget["per_class"], numbers=budget["used"],
                acc_mean=last["acc_mean"], acc_std=last["acc_std"], seconds=time.time() - t,
                **{picture: os.path.join(run, "imgs", file)}), run


def render_table(head: str, rows: list[dict], accuracy: str = "accuracy (%)") -> str:
    """``head``, then a markdown table of rows with method, per_class, numbers, acc_mean, acc_std, seconds."""
    lines = [head, "", f"| method | instances/class | numbers stored | {accuracy} | time (s) |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['per_class']} | {r['numbers']} | {100 * r['acc_mean']:.2f} +- "
                     f"{100 * r['acc_std']:.2f} | {r['seconds']:.0f} |")
    lines += ["", SELECTION]
    return "\n".join(lines)


# the demos evaluate each run once, at its last iteration (--eval_it 10**9 --no-eval_at_start)
SELECTION = ("Model selection: none. Each distilled set is the one its run ends with, evaluated once; no set is "
             "picked by its test accuracy (--select_on is not used).")
