"""TM end to end on a real Fashion-MNIST subset: expert files, resumable buffer, TM steps, DDiF fields that
were not sampled, the gradient against finite differences, the shipped scripts and bad inputs."""
import copy
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from common.args import build_parser, resolve_args
from common.augment import DSA
from common.cli import run_main
from common.distill import build_context, initialise
from common.errors import UserError
from common.evaluate import test_accuracy as accuracy_of
from common.experts import ParamLayout, load_experts, read_expert_file
from common.networks import get_network
from common.synsets import DDiF, load_checkpoint
from common.tm import TrajectoryMatching, recompute_backward, tm_loss, unroll_backward, unroll_student
from helpers import SMALL, TEST_DEVICE, assert_same_run, cli, needs_fmnist, run_shipped_script

# end-to-end runs: the slow tier; one intra-op thread (tests/conftest.py)
pytestmark = [needs_fmnist, pytest.mark.e2e, pytest.mark.usefixtures("one_thread")]

BUFFER = ["--num_experts", "2", "--train_epochs", "2", "--save_interval", "1", "--batch_train", "128"]
TM_SMALL = ["--syn_steps", "3", "--expert_epochs", "1", "--max_start_epoch", "2", "--num_eval", "1",
            "--epoch_eval_train", "1", "--epochs_init", "100", "--no-eval_at_start"]
FOLDER = Path("FashionMNIST_NO_ZCA") / "ConvNetW32"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Two experts of two epochs (one per file), and a DDiF warm-start cache shared by the tests."""
    from TM.buffer import main
    root = tmp_path_factory.mktemp("tm")
    main(SMALL + BUFFER + ["--buffer_path", str(root / "buffers")])
    return root


def tm_args(work, tmp_path, *extra):
    argv = SMALL + TM_SMALL + ["--buffer_path", str(work / "buffers"), "--init_cache", str(work / "cache"),
                               "--save_path", str(tmp_path / "runs"), *extra]
    return resolve_args(build_parser("", "TM").parse_args(argv), "TM", log=lambda m: None)


def tm_objective(work, tmp_path, *extra) -> TrajectoryMatching:
    args = tm_args(work, tmp_path, *extra)
    ctx = build_context(args)
    initialise(args, ctx.synset, ctx.real, ctx.record)
    ctx.optimizer = ctx.synset.make_optimizer()
    return TrajectoryMatching(ctx)


def test_buffer_writes_trajectories_that_reload(work):
    folder = work / "buffers" / FOLDER
    net = get_network("ConvNetW32", 1, 10, (28, 28))
    layout = ParamLayout.of(net)
    for n in (0, 1):
        obj = read_expert_file(str(folder / f"replay_buffer_{n}.pt"))
        assert (obj["dataset"], obj["model"], obj["num_params"], obj["train_epochs"]) == \
            ("FashionMNIST", "ConvNetW32", layout.num_params, 2)
        assert obj["expert_indices"] == [n] and len(obj["trajectories"]) == 1
        traj = obj["trajectories"][0]
        assert traj.shape == (3, layout.num_params) and traj.dtype == torch.float32
        assert not torch.equal(traj[0], traj[2])
    # the flat order is net.parameters(): the last row loaded into the network gives the logged accuracy
    from common.distill import load_real
    real = load_real(tm_args(work, work))
    net.load_state_dict({k: v.clone() for k, v in layout.unflatten(traj[2]).items()})
    acc = accuracy_of(net.to(TEST_DEVICE), real.images_test, real.labels_test)
    assert abs(acc - obj["test_acc"][0]) <= (0 if TEST_DEVICE == "cpu" else 1 / len(real.labels_test))
    args = tm_args(work, work)
    for load_all in (False, True):
        experts = load_experts(str(folder), args, load_all=load_all, min_epochs=2)
        assert len(experts) == 2 and experts.train_epochs == 2
        a, b = experts.pair(1, 0, 2)
        assert torch.equal(a, traj[0]) and torch.equal(b, traj[2])
    assert len(load_experts(str(folder), args, max_files=1)) == 1
    with pytest.raises(UserError, match="num_params 24138, but"):
        load_experts(str(folder), args, expect={"num_params": 5})


def test_buffer_rerun_keeps_complete_files_and_continues(work, tmp_path):
    from TM.buffer import main
    shutil.copytree(work / "buffers", tmp_path / "buffers")
    folder = tmp_path / "buffers" / FOLDER
    (folder / "replay_buffer_7.pt.tmp123").write_bytes(b"half-written")  # a crash leftover: ignored
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("replay_buffer_*.pt")}
    base = SMALL + ["--train_epochs", "2", "--save_interval", "1", "--batch_train", "128",
                    "--buffer_path", str(tmp_path / "buffers")]
    main(base + ["--num_experts", "2"])  # complete: nothing to do
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("replay_buffer_*.pt")} == before
    main(base + ["--num_experts", "3"])  # one more expert, in the next file
    for name, (mtime, data) in before.items():
        assert (folder / name).stat().st_mtime_ns == mtime and (folder / name).read_bytes() == data
    new = read_expert_file(str(folder / "replay_buffer_2.pt"))
    assert new["expert_indices"] == [2] and new["trajectories"][0].shape[0] == 3
    assert "nothing to do" in (folder / "log.txt").read_text()
    with pytest.raises(UserError, match="train_epochs 2 \\(now 3\\)"):
        main(SMALL + ["--train_epochs", "3", "--num_experts", "4", "--buffer_path", str(tmp_path / "buffers")])


def test_original_buffers_import_to_the_same_experts_and_the_same_tm_loss(work, tmp_path):
    """Buffers in the original format (written here from the native files: per trajectory a list of snapshots,
    each a list of parameter tensors) import into expert files with the same numbers, and TM on them takes the
    same step; a buffer of another network is refused naming the first mismatch."""
    from TM.buffer import main
    layout = ParamLayout.of(get_network("ConvNetW32", 1, 10, (28, 28)))
    (tmp_path / "orig").mkdir()
    native = {n: read_expert_file(str(work / "buffers" / FOLDER / f"replay_buffer_{n}.pt")) for n in (0, 1)}
    for n, obj in native.items():
        original = [[list(layout.unflatten(row).values()) for row in t] for t in obj["trajectories"]]
        torch.save(original, tmp_path / "orig" / f"replay_buffer_{n}.pt")
    argv = SMALL + BUFFER + ["--import", str(tmp_path / "orig"), "--buffer_path", str(tmp_path / "imported")]
    main(argv)
    for n, obj in native.items():
        got = read_expert_file(str(tmp_path / "imported" / FOLDER / f"replay_buffer_{n}.pt"))
        assert torch.equal(got["trajectories"][0], obj["trajectories"][0])
        assert {k: v for k, v in got.items() if k not in ("trajectories", "test_acc")} == \
            {k: v for k, v in obj.items() if k not in ("trajectories", "test_acc")}
    main(argv)  # a rerun keeps what is there
    losses = [tm_objective(work, tmp_path / name, "--synset", "pixel", "--buffer_path", str(root)).step(0)
              for name, root in (("a", work / "buffers"), ("b", tmp_path / "imported"))]
    assert losses[0] == losses[1]
    with pytest.raises(UserError, match=r"parameter features\.0\.weight is \(32, 1, 3, 3\) in the file, "
                                        r"\(128, 1, 3, 3\) in the network"):
        main(SMALL[:2] + ["--model", "ConvNet"] + SMALL[4:] + BUFFER + ["--import", str(tmp_path / "orig"),
                                                                        "--buffer_path", str(tmp_path / "other")])


def test_tm_steps_change_the_set_and_the_step_size(work, tmp_path):
    obj = tm_objective(work, tmp_path, "--synset", "ddif", "--batch_syn", "20", "--lr_lr", "1e-5")
    synset = obj.ctx.synset
    before = [p.detach().clone() for p in synset.trainable()]
    losses = [obj.step(it) for it in range(3)]
    assert all(0 < l < 10 for l in losses), losses
    assert any(not torch.equal(a, b) for a, b in zip(before, synset.trainable()))
    assert obj.metrics()["syn_lr"] != 0.01 and obj.eval_lr() == obj.metrics()["syn_lr"] >= 1e-3
    assert [obj.choose(it)[0] for it in range(2)] in ([0, 1], [1, 0])  # every expert once per round


@pytest.mark.parametrize("tm_grad", ["recompute", "unroll"])
def test_unsampled_ddif_fields_do_not_move(work, tmp_path, tm_grad):
    obj = tm_objective(work, tmp_path, "--synset", "ddif", "--batch_syn", "4", "--syn_steps", "2",
                       "--tm_grad", tm_grad)
    synset = obj.ctx.synset
    sampled = torch.cat(obj.batches(0)).unique()
    assert 0 < len(sampled) <= 8 < synset.n_total
    rest = torch.ones(synset.n_total, dtype=torch.bool)
    rest[sampled] = False
    before = [p.detach().clone() for p in synset.trainable()]
    obj.step(0)
    for a, p in zip(before, synset.trainable()):
        assert torch.equal(a[rest], p.detach()[rest])
        assert (a[sampled] != p.detach()[sampled]).flatten(1).any(1).all()
    state = obj.ctx.optimizer.state[synset.weights[0]]
    assert state["step"][rest].eq(0).all() and state["step"][sampled].eq(1).all()


def test_tm_gradient_matches_finite_differences():
    """d(TM loss)/d(one DDiF field weight) and d/d(syn_lr) by both methods, float64, central differences."""
    torch.manual_seed(0)
    synset = DDiF(2, 1, (8, 8), ipc=2, layer_size=4).double()  # 3 fields of 37 parameters per class
    net = get_network("ConvNetW32", 1, 2, (8, 8)).double()
    for p in net.parameters():
        p.requires_grad_(False)
    layout = ParamLayout.of(net)
    theta_start = torch.cat([p.reshape(-1) for p in net.parameters()])
    theta_target = theta_start + 0.01 * torch.randn_like(theta_start)
    syn_lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    batches = [torch.tensor([0, 2, 3]), torch.tensor([1, 4, 5]), torch.tensor([0, 5])]
    dsa, seeds = DSA(), [11, 12, 13]

    def loss():
        end = unroll_student(net, layout, theta_start, syn_lr, synset, batches, dsa, seeds)
        return tm_loss(end, theta_start, theta_target)

    w = synset.weights[1]
    grad_w, grad_lr = torch.autograd.grad(loss(), [w, syn_lr])
    # the recomputation's gradient, checked against the same differences
    recompute_backward(net, layout, theta_start, theta_target, syn_lr, synset, batches, dsa, seeds)
    assert torch.count_nonzero(w.grad) and syn_lr.grad
    h = 1e-6
    for param, index, analytic in ((w, (2, 1, 3), grad_w[2, 1, 3]), (syn_lr, (), grad_lr),
                                   (w, (2, 1, 3), w.grad[2, 1, 3]), (syn_lr, (), syn_lr.grad)):
        with torch.no_grad():
            v = param[index].item()
            param[index] = v + h
        up = loss().item()
        with torch.no_grad():
            param[index] = v - h
        down = loss().item()
        with torch.no_grad():
            param[index] = v
        numeric = (up - down) / (2 * h)
        assert abs(analytic.item()) > 1e-6
        assert analytic.item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)


@pytest.fixture(scope="module")
def real_sets(work, tmp_path_factory):
    """A pixel, a DDiF and a FreD set of Fashion-MNIST ipc 1, each initialised from real images, and the
    experts (ConvNetW32)."""
    tmp = tmp_path_factory.mktemp("sets")
    objs = {kind: tm_objective(work, tmp, "--synset", kind) for kind in ("pixel", "ddif", "fred")}
    return {kind: obj.ctx.synset for kind, obj in objs.items()}, objs["pixel"].experts


def both_gradients(synset, model: str, experts, dtype, batches, dsa=True, checkpoint_every=1):
    """(loss, d loss / d set, d loss / d syn_lr) by the unroll and by the recomputation, from the same
    state: the student starts at expert 0's epoch 0 (ConvNetW32) or at a fresh network (ConvNetBN)."""
    channel, classes, size = synset.channel, synset.num_classes, tuple(synset.im_size)
    net = get_network(model, channel, classes, size, width=32).to(TEST_DEVICE, dtype)
    for p in net.parameters():
        p.requires_grad_(False)
    layout = ParamLayout.of(net)
    if model == "ConvNetW32":
        start, target = (t.to(TEST_DEVICE, dtype) for t in experts.pair(0, 0, 2))
    else:
        start = torch.cat([p.reshape(-1) for p in net.parameters()])
        target = start + 0.01 * torch.randn(start.shape, generator=torch.Generator().manual_seed(1)).to(start)
    out = []
    for backward, extra in ((unroll_backward, {}), (recompute_backward, {"checkpoint_every": checkpoint_every})):
        s = copy.deepcopy(synset).to(TEST_DEVICE, dtype)
        syn_lr = torch.tensor(0.01, device=TEST_DEVICE, dtype=dtype, requires_grad=True)
        loss = backward(net, layout, start, target, syn_lr, s, batches, DSA() if dsa else None,
                        list(range(10, 10 + len(batches))), **extra)
        out.append((loss, torch.cat([p.grad.reshape(-1) for p in s.trainable()]), syn_lr.grad))
    return out


# instances reused across steps, batches smaller than the set (10 pixel images, 110 fields, 20 FreD images)
REUSED = [[0, 3, 7, 9], [3, 1, 8, 0], [9, 2, 3], [5, 0, 1, 8]]


@pytest.mark.parametrize("dtype,rel", [(torch.float64, 1e-9), (torch.float32, 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("model", ["ConvNetW32", "ConvNetBN"])
@pytest.mark.parametrize("kind", ["pixel", "ddif", "fred"])
def test_recomputed_gradient_equals_the_unrolled_one(real_sets, kind, model, dtype, rel):
    """The default --tm_grad recompute gives MTT's gradient (the full unroll's) with respect to the set's
    parameters and the step size, with DSA on, instances reused across steps and a batch-norm network."""
    synsets, experts = real_sets
    batches = [torch.tensor(b) for b in REUSED]
    (loss_u, grad_u, lr_u), (loss_r, grad_r, lr_r) = both_gradients(synsets[kind], model, experts, dtype, batches)
    assert loss_r == pytest.approx(loss_u, rel=1e-12 if dtype == torch.float64 else 1e-6)
    assert grad_u.norm() > 0 and lr_u.abs() > 0
    assert float((grad_r - grad_u).norm() / grad_u.norm()) < rel
    assert float((lr_r - lr_u).abs() / lr_u.abs()) < rel


@pytest.mark.parametrize("every", [2, 3, 0])
def test_recomputation_from_checkpoints_gives_the_same_gradient(real_sets, every):
    """Storing the student only every k steps (k 2, 3 and ceil(sqrt(5)) = 3 for 0; segments of unequal
    length) changes the memory, not the gradient."""
    synsets, experts = real_sets
    batches = [torch.tensor(b) for b in REUSED + [[6, 2]]]
    (loss_u, grad_u, lr_u), (loss_r, grad_r, lr_r) = both_gradients(synsets["fred"], "ConvNetBN", experts,
                                                                    torch.float64, batches, checkpoint_every=every)
    assert loss_r == pytest.approx(loss_u, rel=1e-12)
    assert float((grad_r - grad_u).norm() / grad_u.norm()) < 1e-9 and float((lr_r - lr_u).abs() / lr_u.abs()) < 1e-9


def test_checkpoint_interval():
    from common.tm import checkpoint_interval
    assert [checkpoint_interval(0, s) for s in (1, 2, 4, 5, 9, 10, 80)] == [1, 2, 2, 3, 3, 4, 9]
    assert checkpoint_interval(5, 80) == 5


def test_recomputation_without_dsa_and_with_one_instance_in_every_step(real_sets):
    synsets, experts = real_sets
    batches = [torch.tensor([4])] * 3
    (_, grad_u, lr_u), (_, grad_r, lr_r) = both_gradients(synsets["ddif"], "ConvNetW32", experts, torch.float64,
                                                          batches, dsa=False)
    assert float((grad_r - grad_u).norm() / grad_u.norm()) < 1e-9 and float((lr_r - lr_u) / lr_u) < 1e-9
    assert torch.count_nonzero(grad_r) < grad_r.numel() / 100  # only field 4's parameters


def test_both_methods_log_the_same_loss_and_move_the_set_alike(work, tmp_path):
    """One TM iteration of each method from the same state (real experts, DDiF warm start): the same loss
    and, after the optimiser steps, the same fields and step size."""
    a, b = (tm_objective(work, tmp_path / m, "--synset", "ddif", "--batch_syn", "20", "--tm_grad", m,
                         "--lr_lr", "1e-5") for m in ("unroll", "recompute"))
    assert a.ctx.args.tm_grad == "unroll" and b.ctx.args.tm_grad == "recompute"
    for it in range(2):
        assert b.step(it) == pytest.approx(a.step(it), rel=1e-5)
    for p, q in zip(a.ctx.synset.trainable(), b.ctx.synset.trainable()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6)
    assert b.eval_lr() == pytest.approx(a.eval_lr(), rel=1e-6) and b.eval_lr() != 0.01


def test_run_records_syn_lr_resumes_exactly_and_eval_uses_it(work, tmp_path, monkeypatch):
    from TM.main_TM import main
    base = SMALL + TM_SMALL + ["--synset", "pixel", "--buffer_path", str(work / "buffers"), "--save_path",
                               str(tmp_path / "runs"), "--eval_it", "100", "--lr_lr", "1e-3", "--save_it", "1"]
    main(base + ["--Iteration", "3", "--exp_name", "straight"])
    main(base + ["--Iteration", "2", "--exp_name", "split"])
    main(base + ["--Iteration", "3", "--exp_name", "split", "--resume"])
    runs = tmp_path / "runs" / "TM" / "FashionMNIST"
    a, b = (load_checkpoint(str(runs / n / "checkpoint.pt")) for n in ("straight", "split"))
    assert a["iteration"] == b["iteration"] == 3
    assert_same_run(a["synset"]["state"]["images"], b["synset"]["state"]["images"])
    assert_same_run(a["objective"]["syn_lr"], b["objective"]["syn_lr"])
    assert a["objective"]["syn_lr"] != 0.01
    assert json.loads((runs / "straight" / "config.json").read_text())["tm_grad"] == "recompute"  # the default
    rows = [json.loads(l) for l in (runs / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 3 and rows[-1]["syn_lr"] == pytest.approx(a["objective"]["syn_lr"].item())
    best = load_checkpoint(str(runs / "straight" / "synset_best.pt"))
    assert best["meta"]["lr_net"] == best["meta"]["metrics"]["syn_lr"] == rows[-1]["syn_lr"]
    import common.eval_main as eval_main
    seen = {}

    def fake_pool(models, images, labels, real, cfg, tag=0):
        seen["lr"] = cfg.lr
        return {m: (0.5, 0.0) for m in models}
    monkeypatch.setattr(eval_main, "evaluate_pool", fake_pool)
    eval_main.main(["--ckpt", str(runs / "straight" / "synset_best.pt"), "--no-progress", "--n_test", "100"])
    assert seen["lr"] == rows[-1]["syn_lr"]


@pytest.mark.parametrize("script", ["run_buffer.sh", "run_DDiF.sh", "run_FreD.sh", "run_pixel.sh"])
def test_shipped_scripts_run_with_small_overrides(work, tmp_path, script):
    small = SMALL + ["--no-zca", "--buffer_path", str(tmp_path / "buffers")]
    if script == "run_buffer.sh":
        r = cli("bash", f"TM/scripts/{script}", *small, "--num_experts", "1", "--train_epochs", "1")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "buffers" / FOLDER / "replay_buffer_0.pt").is_file()
        return
    shutil.copytree(work / "buffers", tmp_path / "buffers")
    run_shipped_script("TM", script, tmp_path / "runs", *small, *TM_SMALL, "--syn_steps", "2", "--batch_syn", "10",
                       "--Iteration", "1", "--init_cache", str(work / "cache"))


def copy_experts(work, root, model="ConvNetW32", **header):
    folder = root / "FashionMNIST_NO_ZCA" / model
    folder.mkdir(parents=True)
    for p in (work / "buffers" / FOLDER).glob("replay_buffer_*.pt"):
        obj = torch.load(p, weights_only=True)
        obj.update(header)
        torch.save(obj, folder / p.name)


@pytest.mark.parametrize("case,flags,expect", [
    ("none", ["--buffer_path", "{tmp}/nothing"], "expert folder {tmp}/nothing/FashionMNIST_NO_ZCA/ConvNetW32 "
     "does not exist; build the experts first with: bash TM/scripts/run_buffer.sh --dataset FashionMNIST "
     "--model ConvNetW32 --no-zca --buffer_path {tmp}/nothing"),
    ("model", ["--model", "ConvNetW64"], "were built for model 'ConvNetW32', not 'ConvNetW64'"),
    ("dataset", [], "were built for dataset 'MNIST', not 'FashionMNIST'"),
    ("short", ["--max_start_epoch", "3", "--expert_epochs", "2"], "were trained 2 epochs; this run needs 4"),
    ("checkpoints", ["--tm_checkpoint_every", "-1"], "--tm_checkpoint_every must be >= 0 (1: every step, 0: every "
     "ceil(sqrt(syn_steps)) steps), got -1"),
])
def test_bad_inputs_give_one_clear_line(work, tmp_path, capsys, case, flags, expect):
    from TM.main_TM import main
    root = tmp_path / "buffers"
    if case == "model":
        copy_experts(work, root, "ConvNetW64")
    elif case == "dataset":
        copy_experts(work, root, dataset="MNIST")
    elif case == "short":
        shutil.copytree(work / "buffers", root)
    argv = SMALL + TM_SMALL + ["--synset", "pixel", "--save_path", str(tmp_path / "runs"), "--buffer_path",
                               str(root)] + [f.format(tmp=tmp_path) for f in flags]
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(argv))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error:") and len(err.splitlines()) == 1, err
    assert expect.format(tmp=tmp_path) in err
    assert not (tmp_path / "runs").exists()  # caught before any data loading or run folder


def test_bad_input_from_the_command_line(tmp_path):
    r = cli(sys.executable, "TM/main_TM.py", *SMALL, "--buffer_path", str(tmp_path / "nothing"))
    assert r.returncode == 2 and r.stderr.startswith("error: expert folder") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli(sys.executable, "TM/main_TM.py", *SMALL, "--tm_grad", "tesla")
    assert r.returncode == 2 and "--tm_grad: invalid choice: 'tesla'" in r.stderr
    assert "recompute" in r.stderr.splitlines()[-1] and "unroll" in r.stderr.splitlines()[-1]
    r = cli(sys.executable, "TM/buffer.py", "--model", "ConvNetXL")
    assert r.returncode == 2 and "unknown model 'ConvNetXL'" in r.stderr and "Traceback" not in r.stderr
