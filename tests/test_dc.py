"""DC (gradient matching): the layer-wise distance, the loop table, and DC end to end on a Fashion-MNIST subset."""
import json
import sys

import pytest
import torch

from common.data import get_dataset
from common.dc import OUTER_INNER, class_distances, gradient_distance, loops_for_ipc
from common.errors import UserError
from common.networks import get_network
from common.synsets import load_checkpoint, synset_from_payload
from helpers import SMALL_DISTILL as SMALL, assert_same_run, cli, needs_fmnist, run_shipped_script

pytestmark = pytest.mark.e2e  # end-to-end runs: the slow tier


# -- the distance -------------------------------------------------------------------------------------------

def reference_distance(gs, gr, eps=1e-6):
    """Per output unit 1 - cosine, written out unit by unit."""
    total = 0.0
    for s, r in zip(gs, gr):
        if s.dim() < 2:
            continue
        for u in range(s.shape[0]):
            a, b = s[u].flatten().double(), r[u].flatten().double()
            total += 1 - float(a @ b) / (float(a.norm() * b.norm()) + eps)
    return total


@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 3, 3, 3), (3, 2, 2, 3, 3)])
def test_distance_zero_for_identical_symmetric_and_per_unit(shape):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    assert gradient_distance([a], [a]).abs().item() < 1e-5
    assert gradient_distance([a], [b]).item() == pytest.approx(gradient_distance([b], [a]).item(), abs=1e-6)
    assert gradient_distance([a], [b]).item() == pytest.approx(reference_distance([a], [b]), abs=1e-4)
    assert gradient_distance([a], [2.5 * a]).abs().item() < 1e-5  # scale does not matter
    expect = 0.0 if len(shape) == 1 else 2.0 * shape[0]
    assert gradient_distance([a], [-a]).item() == pytest.approx(expect, abs=1e-4)


def test_distance_hand_computed_5d_and_sum_over_tensors():
    # conv3d gradient (out 2, in 1, t 1, k 1, k 2): unit 0 rows (1, 0) vs (0, 1) -> cos 0; unit 1 (1, 1) vs (1, 0)
    # -> cos 1/sqrt(2); distance = (1 - 0) + (1 - 1/sqrt(2))
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(2, 1, 1, 1, 2)
    r = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(2, 1, 1, 1, 2)
    expect = 2 - 2 ** -0.5
    assert gradient_distance([s], [r]).item() == pytest.approx(expect, abs=1e-5)
    # 2-D: orthogonal rows -> 1 per unit; 1-D (bias) ignored; the tensors' distances add up
    lin_s, lin_r = torch.eye(3), torch.eye(3).roll(1, 0)
    bias = torch.tensor([1.0, -1.0, 2.0])
    total = gradient_distance([s, lin_s, bias], [r, lin_r, -bias]).item()
    assert total == pytest.approx(expect + 3, abs=1e-5)


def test_distance_is_differentiable_and_checks_shapes():
    a = torch.randn(4, 3, 3, 3, requires_grad=True)
    d = gradient_distance([a], [torch.randn(4, 3, 3, 3)])
    d.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    with pytest.raises(ValueError):
        gradient_distance([torch.zeros(2, 3)], [torch.zeros(3, 2)])
    assert gradient_distance([torch.zeros(3)], [torch.ones(3)]).item() == 0.0


def test_loops_table_and_explicit_flags():
    assert loops_for_ipc(1) == (1, 1) and loops_for_ipc(10) == (10, 50) and loops_for_ipc(50) == (50, 10)
    assert all(loops_for_ipc(k) == v for k, v in OUTER_INNER.items())
    assert loops_for_ipc(10, outer_loop=3) == (3, 50)
    assert loops_for_ipc(7, 5, 2) == (5, 2)
    with pytest.raises(UserError, match="--outer_loop N --inner_loop M"):
        loops_for_ipc(7)
    with pytest.raises(UserError, match="--outer_loop N --inner_loop M"):
        loops_for_ipc(7, outer_loop=5)
    with pytest.raises(UserError):
        loops_for_ipc(1, 0, 1)


# -- end to end ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fmnist():
    return get_dataset("FashionMNIST").restrict(40, 200, seed=0)


def fixed_dc_loss(synset, real, seeds=(21, 22)) -> float:
    """Mean gradient distance per class on fixed networks and real batches, without augmentation."""
    total = 0.0
    for s in seeds:
        torch.manual_seed(s)
        net = get_network("ConvNetW32", real.channel, real.num_classes, real.im_size)
        total += sum(d.item() for _, d in class_distances(net, real, synset, 40, 0, None, s,
                                                          torch.Generator().manual_seed(s), create_graph=False))
    return total / (len(seeds) * real.num_classes)


def run_dc(tmp_path, *extra):
    from DC.main_DC import main
    main(SMALL + ["--save_path", str(tmp_path / "runs"), "--init_cache", str(tmp_path / "cache"), *extra])
    return tmp_path / "runs" / "DC" / "FashionMNIST"


@needs_fmnist
def test_ddif_dc_lowers_matching_loss_and_writes_the_run(tmp_path, fmnist):
    root = run_dc(tmp_path, "--synset", "ddif", "--Iteration", "8", "--eval_it", "8", "--no-eval_at_start",
                  "--lr_nf", "1e-3")
    run = root / "ddif_ipc1_ConvNetW32_s0"
    for f in ("log.txt", "config.json", "metrics.jsonl", "synset_best.pt", "checkpoint.pt", "imgs/syn_000008.png"):
        assert (run / f).is_file(), f
    config = json.loads((run / "config.json").read_text())
    assert config["objective"] == "DC" and (config["outer_loop"], config["inner_loop"]) == (1, 1)
    assert "outer_loop 1, inner_loop 1" in (run / "log.txt").read_text()
    cache = list((tmp_path / "cache").glob("ddif_init_*.pt"))
    init = synset_from_payload(load_checkpoint(str(cache[0]))["synset"])
    final = synset_from_payload(load_checkpoint(str(run / "checkpoint.pt"))["synset"])
    before, after = fixed_dc_loss(init, fmnist), fixed_dc_loss(final, fmnist)
    assert after < 0.95 * before, (before, after)


@needs_fmnist
def test_pixel_dc_with_inner_loop_lowers_matching_loss(tmp_path, fmnist):
    # ipc 2 is not in the table: explicit loops, 2 outer steps with network training in between
    root = run_dc(tmp_path, "--synset", "pixel", "--ipc", "2", "--outer_loop", "2", "--inner_loop", "2",
                  "--Iteration", "6", "--eval_it", "100", "--no-eval_at_start")
    state = load_checkpoint(str(root / "pixel_ipc2_ConvNetW32_s0" / "checkpoint.pt"))
    final = synset_from_payload(state["synset"])
    init = synset_from_payload(state["synset"])
    with torch.no_grad():
        init.images.copy_(state["init_images"])
    before, after = fixed_dc_loss(init, fmnist), fixed_dc_loss(final, fmnist)
    assert after < 0.95 * before, (before, after)


@needs_fmnist
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    flags = ["--synset", "pixel", "--ipc", "2", "--outer_loop", "2", "--inner_loop", "1", "--eval_it", "100",
             "--no-eval_at_start"]
    root = run_dc(tmp_path, *flags, "--Iteration", "4", "--exp_name", "straight")
    run_dc(tmp_path, *flags, "--Iteration", "2", "--exp_name", "resumed")
    run_dc(tmp_path, *flags, "--Iteration", "4", "--exp_name", "resumed", "--resume")
    a, b = (load_checkpoint(str(root / name / "checkpoint.pt")) for name in ("straight", "resumed"))
    assert a["iteration"] == b["iteration"] == 4
    assert_same_run(a["synset"]["state"]["images"], b["synset"]["state"]["images"])


@needs_fmnist
@pytest.mark.parametrize("script", ["run_DDiF.sh", "run_FreD.sh", "run_pixel.sh"])
def test_shipped_scripts_run_with_small_overrides(tmp_path, script):
    run_shipped_script("DC", script, tmp_path, *SMALL, "--Iteration", "2", "--eval_it", "2", "--no-eval_at_start",
                       "--init_cache", str(tmp_path / "cache"))


def test_ipc_outside_the_table_is_one_clear_line(tmp_path):
    r = cli(sys.executable, "DC/main_DC.py", "--ipc", "3", "--save_path", str(tmp_path), "--no-progress")
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "ipc 3" in err and "--outer_loop" in err and "10->(10, 50)" in err
