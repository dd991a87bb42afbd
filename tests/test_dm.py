"""DM end to end on a real Fashion-MNIST subset: run record, loss, resume, NaN stop, eval.py, scripts."""
import json
import sys

import pytest
import torch

from common.data import get_dataset
from common.dm import class_losses, random_frozen_network
from common.synsets import load_checkpoint, synset_from_payload
from helpers import SMALL_DISTILL as SMALL, TEST_DEVICE, cli, needs_fmnist, run_shipped_script

pytestmark = [needs_fmnist, pytest.mark.e2e]  # end-to-end runs: the slow tier


def run_dm(tmp_path, *extra):
    from DM.main_DM import main
    main(SMALL + ["--save_path", str(tmp_path / "runs"), "--init_cache", str(tmp_path / "cache"), *extra])
    return tmp_path / "runs" / "DM" / "FashionMNIST"


def fixed_dm_loss(synset, real, seeds=(11, 12, 13)) -> float:
    total = 0.0
    for s in seeds:
        net = random_frozen_network("ConvNetW32", real, "cpu", s)
        with torch.no_grad():
            total += sum(l.item() for _, l in class_losses(net, real, synset, 64, 0, None, s,
                                                           torch.Generator().manual_seed(s)))
    return total


@pytest.fixture(scope="module")
def fmnist():
    return get_dataset("FashionMNIST").restrict(40, 200, seed=0)


def test_ddif_run_writes_every_file_and_lowers_dm_loss(tmp_path, fmnist):
    root = run_dm(tmp_path, "--synset", "ddif", "--Iteration", "12", "--eval_it", "6", "--lr_nf", "1e-3")
    run = root / "ddif_ipc1_ConvNetW32_s0"
    for f in ("log.txt", "config.json", "metrics.jsonl", "accuracy.png", "synset_best.pt", "checkpoint.pt",
              "imgs/init_real.png", "imgs/syn_000000.png", "imgs/syn_000006.png", "imgs/syn_000012.png"):
        assert (run / f).is_file(), f
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 6, 12]
    assert all({"model", "acc_mean", "acc_std", "wall_time"} <= set(r) and 0 <= r["acc_mean"] <= 1 for r in rows)
    config = json.loads((run / "config.json").read_text())
    assert config["layer_size"] == 6 and config["budget"]["per_class"] == 11
    assert not list(run.rglob("*.tmp*"))
    # the DM loss on fixed networks is lower after distillation than after the warm start
    cache = list((tmp_path / "cache").glob("ddif_init_*.pt"))
    assert len(cache) == 1
    init = synset_from_payload(load_checkpoint(str(cache[0]))["synset"])
    final = synset_from_payload(load_checkpoint(str(run / "checkpoint.pt"))["synset"])
    before, after = fixed_dm_loss(init, fmnist), fixed_dm_loss(final, fmnist)
    assert after < 0.9 * before, (before, after)


@pytest.mark.parametrize("synset", ["fred", "pixel"])
def test_fred_and_pixel_lower_dm_loss(tmp_path, fmnist, synset):
    root = run_dm(tmp_path, "--synset", synset, "--Iteration", "10", "--eval_it", "100", "--no-eval_at_start")
    state = load_checkpoint(str(root / f"{synset}_ipc1_ConvNetW32_s0" / "checkpoint.pt"))
    final = synset_from_payload(state["synset"])
    init = synset_from_payload(state["synset"])
    with torch.no_grad():  # rebuild the initial set from the stored initial real images
        if synset == "pixel":
            init.images.copy_(state["init_images"])
        else:
            from common.synsets.fred import dctn
            spec = dctn(state["init_images"], init.dct_mats).flatten(2)
            init.coefs.copy_(spec.gather(2, init.freq_index[init.labels]))
    assert fixed_dm_loss(final, fmnist) < 0.9 * fixed_dm_loss(init, fmnist)


def test_resume_continues_and_rejects_another_experiment(tmp_path):
    root = run_dm(tmp_path, "--synset", "pixel", "--Iteration", "4", "--eval_it", "4", "--save_it", "2")
    run = root / "pixel_ipc1_ConvNetW32_s0"
    assert load_checkpoint(str(run / "checkpoint.pt"))["iteration"] == 4
    run_dm(tmp_path, "--synset", "pixel", "--Iteration", "8", "--eval_it", "4", "--resume")
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 4, 8]
    assert "resumed from" in (run / "log.txt").read_text()
    base = SMALL + ["--save_path", str(tmp_path / "runs"), "--synset", "pixel", "--Iteration", "8", "--resume"]
    r = cli(sys.executable, "DM/main_DM.py", *base, "--exp_name", "pixel_ipc1_ConvNetW32_s0", "--seed", "1")
    assert r.returncode == 2 and "another experiment" in r.stderr and "Traceback" not in r.stderr
    (run / "checkpoint.pt").write_bytes(b"garbage")
    r = cli(sys.executable, "DM/main_DM.py", *base)
    assert r.returncode == 2 and "cannot read resume checkpoint" in r.stderr and "Traceback" not in r.stderr
    r = cli(sys.executable, "DM/main_DM.py", *base[:-1])  # same folder without --resume
    assert r.returncode == 2 and "--resume" in r.stderr


def test_nan_stops_with_clear_message_and_keeps_last_good_checkpoint(tmp_path):
    r = cli(sys.executable, "DM/main_DM.py", *SMALL, "--save_path", str(tmp_path), "--synset", "pixel",
            "--lr_img", "1e38", "--Iteration", "5", "--eval_it", "100")
    assert r.returncode == 2 and "NaN/inf" in r.stderr and "Traceback" not in r.stderr, r.stderr
    ckpt = load_checkpoint(str(tmp_path / "DM" / "FashionMNIST" / "pixel_ipc1_ConvNetW32_s0" / "checkpoint.pt"))
    assert ckpt["iteration"] == 0 and torch.isfinite(ckpt["synset"]["state"]["images"]).all()


@pytest.mark.parametrize("flags,expect", [
    (["--dataset", "FashionMNSIT"], "unknown dataset 'FashionMNSIT'; valid choices: FashionMNIST"),
    (["--model", "ConvNetXL"], "unknown model 'ConvNetXL'; valid choices: ConvNet"),
    (["--synset", "gauss"], "unknown synset 'gauss'; valid choices: ddif, fred, pixel"),
    (["--eval_mode", "Q"], "unknown eval mode 'Q'"),
    (["--dataset", "CIFAR10", "--data_path", "/nonexistent"], "/nonexistent"),
    (["--layer_size", "100"], "does not fit the budget"),
    (["--dataset", "Tiny", "--data_path", "/nonexistent"], "no default for"),
])
def test_bad_input_gives_one_clear_line(tmp_path, flags, expect):
    r = cli(sys.executable, "DM/main_DM.py", "--save_path", str(tmp_path), "--Iteration", "1", "--no-progress",
            *flags)
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_eval_py_other_resolution_export_and_bad_checkpoints(tmp_path):
    root = run_dm(tmp_path, "--synset", "ddif", "--Iteration", "2", "--eval_it", "2", "--no-eval_at_start")
    best = root / "ddif_ipc1_ConvNetW32_s0" / "synset_best.pt"
    out = tmp_path / "png"
    r = cli(sys.executable, "DM/eval.py", "--ckpt", str(best), "--res", "32", "--n_test", "100", "--num_eval", "1",
            "--epoch_eval_train", "2", "--export_dir", str(out), "--json_out", str(tmp_path / "r.json"),
            "--no-progress", "--device", TEST_DEVICE)
    assert r.returncode == 0, r.stderr
    assert "ConvNetW32 accuracy" in r.stdout
    assert "ConvNetW32" in json.loads((tmp_path / "r.json").read_text())
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 10 and folders[0] == "000_T-shirt_top"
    from PIL import Image
    assert Image.open(next((out / folders[0]).iterdir())).size == (32, 32)
    assert len(list((out / folders[0]).iterdir())) == 11
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 10)
    r = cli(sys.executable, "DM/eval.py", "--ckpt", str(bad))
    assert r.returncode == 2 and "cannot read checkpoint" in r.stderr and "Traceback" not in r.stderr
    payload = load_checkpoint(str(best))
    payload["config"]["layer_size"] = 7  # state no longer fits the configuration
    torch.save(payload, bad)
    r = cli(sys.executable, "DM/eval.py", "--ckpt", str(bad))
    assert r.returncode == 2 and "does not fit" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("script", ["run_DDiF.sh", "run_FreD.sh", "run_pixel.sh"])
def test_shipped_scripts_run_with_small_overrides(tmp_path, script):
    run_shipped_script("DM", script, tmp_path, *SMALL, "--Iteration", "2", "--eval_it", "2", "--no-eval_at_start",
                       "--init_cache", str(tmp_path / "cache"))


def test_wandb_offline_writes_its_files_into_the_run_folder(tmp_path):
    pytest.importorskip("wandb")
    root = run_dm(tmp_path, "--synset", "pixel", "--Iteration", "2", "--eval_it", "2", "--no-eval_at_start",
                  "--wandb")
    runs = list((root / "pixel_ipc1_ConvNetW32_s0" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    log, = runs[0].glob("run-*.wandb")  # offline: config and history are records of this file
    assert b"acc/ConvNetW32" in log.read_bytes() and b"batch_real" in log.read_bytes()
    run_id = (root / "pixel_ipc1_ConvNetW32_s0" / "wandb_id.txt").read_text().strip()
    assert runs[0].name.endswith("-" + run_id)
    # a resumed run logs to the same wandb run
    run_dm(tmp_path, "--synset", "pixel", "--Iteration", "4", "--eval_it", "2", "--no-eval_at_start", "--wandb",
           "--resume")
    runs = list((root / "pixel_ipc1_ConvNetW32_s0" / "wandb").glob("offline-run-*"))  # one per start second
    assert runs and all(r.name.endswith("-" + run_id) for r in runs)
    assert (root / "pixel_ipc1_ConvNetW32_s0" / "wandb_id.txt").read_text().strip() == run_id


def test_select_on_val_picks_the_set_by_held_out_instances_and_reports_its_test_accuracy(tmp_path, fmnist):
    root = run_dm(tmp_path, "--synset", "pixel", "--Iteration", "6", "--eval_it", "2", "--select_on", "val",
                  "--n_val", "5", "--lr_img", "3")
    run = root / "pixel_ipc1_ConvNetW32_s0"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("val_acc_mean" in r for r in rows)
    chosen = max(rows, key=lambda r: (r["val_acc_mean"], -r["iteration"]))  # the first best on the held-out ones
    meta = load_checkpoint(str(run / "synset_best.pt"))["meta"]
    assert (meta["selected_on"], meta["iteration"]) == ("val", chosen["iteration"])
    assert meta["acc"] == chosen["acc_mean"] and meta["selection_acc"] == chosen["val_acc_mean"]
    log = (run / "log.txt").read_text()
    assert "model selection on 50 held-out train instances (5 per class)" in log
    assert "selected on the held-out train instances" in log
    config = json.loads((run / "config.json").read_text())
    assert config["select_on"] == "val" and config["n_val"] == 5


def test_the_log_estimates_the_rest_of_the_run_after_the_first_evaluation(tmp_path):
    from common.distill import time_estimate
    assert time_estimate(0, 0, 10, 4, 30.0, 0.0) == ("time estimate: one evaluation took 30s and 3 more follow "
                                                     "(about 1.5 min)")  # at 4, 8 and the last, 10
    line = time_estimate(4, 0, 10, 4, 60.0, 8.0)  # 2 s an iteration, 6 left; evaluations at 8 and 10
    assert "2 more follow" in line and "6 iterations remain at 2.00s each: about 2.2 min in all" in line
    root = run_dm(tmp_path, "--synset", "pixel", "--Iteration", "4", "--eval_it", "2", "--no-eval_at_start")
    log = (root / "pixel_ipc1_ConvNetW32_s0" / "log.txt").read_text()
    assert log.count("time estimate:") == 1 and "1 more follow" in log and "2 iterations remain" in log
