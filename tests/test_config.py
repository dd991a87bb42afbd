"""The configuration layer: every table row and every shipped script resolves, every entry point's flags come from
one builder, eval.py evaluates as the run did, and each domain's options go where they belong."""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

import hyper_params
from common import distill
from common.args import build_parser, resolve_args
from common.dc import OUTER_INNER
from common.domains import DATASETS, DOMAINS, domain_of
from common.errors import UserError
from common.eval_main import build_eval_parser, resolve_eval_args
from common.objective import Objective
from common.objectives import OBJECTIVES
from common.paths import expert_dir, run_dir
from common.synsets import SYNSETS
from test_readme import _exec_args

ROOT = Path(__file__).resolve().parents[1]
QUIET = dict(log=lambda m: None)
SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("*/scripts/*.sh") if p.name != "run_buffer.sh")


def resolve(objective: str, *argv: str):
    return resolve_args(build_parser("", objective).parse_args(list(argv)), objective, **QUIET)


def _experiments():
    """(objective, dataset, res, ipc) of every experiment row and every DDiF architecture row (under each objective)."""
    keys = set(hyper_params.ROWS)
    keys |= {(o, d, r, i) for (d, r, i) in hyper_params.DDIF_ARCH for o in hyper_params.OBJECTIVE}
    return sorted(keys)


@pytest.mark.parametrize("objective,dataset,res,ipc", _experiments())
def test_every_table_row_resolves(objective, dataset, res, ipc):
    """Each row resolves for FreD and pixel, and for DDiF wherever an architecture row exists; every value the
    row sets reaches the resolved flags."""
    loops = [] if objective != "DC" or ipc in OUTER_INNER else ["--outer_loop", "1", "--inner_loop", "1"]
    base = ["--dataset", dataset, "--res", str(res), "--ipc", str(ipc), *loops]
    domain = domain_of(dataset).name
    for synset in SYNSETS:
        if synset == "ddif" and (dataset, res, ipc) not in hyper_params.DDIF_ARCH:
            continue
        args = resolve(objective, *base, "--synset", synset)
        table, _ = hyper_params.defaults(objective, dataset, res, ipc, domain=domain)
        own = {f.name for f in SYNSETS[synset].flags}
        for key, value in hyper_params.ROWS.get((objective, dataset, res, ipc), {}).items():
            if key in own or key not in {f.name for s in SYNSETS.values() for f in s.flags}:
                assert getattr(args, key) == value, (key, synset)
        assert (args.num_eval, args.epoch_eval_train, args.dsa) == \
            (table["num_eval"], table["epoch_eval_train"], table["dsa"])
        assert args.model == domain_of(dataset).default_model


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_shipped_script_resolves_at_its_defaults(script, monkeypatch):
    """What ``bash <script>`` runs with no extra flags (the paper rows the scripts default to) resolves: the
    script's entry point parses and resolves its exec line (the distillation itself is replaced)."""
    launched = _exec_args(script)
    entry, argv = launched[0], launched[1:]
    seen = {}
    monkeypatch.setattr(distill, "run_distillation", lambda args, cls: seen.update(args=args, cls=cls))
    spec = importlib.util.spec_from_file_location(f"entry_{abs(hash(entry))}", ROOT / entry)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv)
    args = seen["args"]
    assert issubclass(seen["cls"], Objective) and seen["cls"].name == args.objective
    assert args.model in (argv[argv.index("--model") + 1],) and args.dataset in DATASETS
    with pytest.raises(AttributeError, match="read-only"):
        args.ipc = 2


def test_objectives_are_registered_with_their_table():
    assert set(OBJECTIVES) == set(hyper_params.OBJECTIVE)
    for name, cls in OBJECTIVES.items():
        assert issubclass(cls, Objective) and cls.name == name and cls.step is not Objective.step
        p = argparse.ArgumentParser()
        cls.add_args(p)  # declares its own flags, none of another's
        own = {a.dest for a in p._actions} - {"help"}
        others = set().union(*({a.dest for a in _parser_of(o)._actions} for o in OBJECTIVES if o != name))
        assert not (own & others), (name, own & others)


def _parser_of(name):
    p = argparse.ArgumentParser()
    OBJECTIVES[name].add_args(p)
    return p


def test_every_entry_point_takes_its_flags_from_the_one_builder():
    """The data, run and evaluation flags are the same objects in a run's, eval.py's and buffer.py's parser."""
    from TM.buffer import build_buffer_parser
    shared = {"--dataset", "--subset", "--res", "--data_path", "--zca", "--n_test", "--cache", "--device", "--seed",
              "--progress", "--dsa", "--dsa_strategy", *(f"--{o.name}" for d in DOMAINS.values() for o in d.options)}
    for p in (build_parser("", "DM"), build_eval_parser(), build_buffer_parser()):
        flags = {s for a in p._actions for s in a.option_strings}
        assert shared <= flags


def _eval_args(meta, *argv):
    return resolve_eval_args(build_eval_parser().parse_args(list(argv)), meta)[0]


def test_eval_takes_the_evaluation_protocol_of_the_run():
    """eval.py's defaults are the table's for the checkpoint's objective and domain (video: 3 networks of 500
    epochs, no DSA; voxel DC: 300 epochs), its lr the run's, and flags still win."""
    image = _eval_args({"dataset": "FashionMNIST", "objective": "DM", "res": 28, "model": "ConvNet"})
    assert (image.num_eval, image.epoch_eval_train, image.dsa, image.lr_net) == (5, 1000, True, 0.01)
    clip = _eval_args({"dataset": "MovingFashionMNIST", "objective": "DM", "res": 48, "frames": 8,
                       "model": "ConvNet3DW32"})
    assert (clip.num_eval, clip.epoch_eval_train, clip.dsa) == (3, 500, False)
    assert (clip.frames, clip.frame_gap, clip.short_clips, clip.clip_seed) == (8, 1, "error", 0)
    assert not clip.resized and clip.model == "ConvNet3DW32"
    voxel = _eval_args({"dataset": "ModelNet10", "objective": "DC", "lr_net": 0.037})
    assert (voxel.epoch_eval_train, voxel.dsa, voxel.lr_net, voxel.model, voxel.solid) == \
        (300, False, 0.037, "Conv3DNet", False)
    given = _eval_args({"dataset": "ModelNet10", "objective": "DC"}, "--epoch_eval_train", "7", "--dsa", "--res", "16")
    assert (given.epoch_eval_train, given.dsa, given.res, given.resized) == (7, True, 16, True)


def test_a_domain_option_is_refused_for_another_domain():
    with pytest.raises(UserError, match=r"--frames is for video clips; ModelNet10 holds voxel grids"):
        resolve("DC", "--dataset", "ModelNet10", "--frames", "4")
    with pytest.raises(UserError, match=r"--solid is for voxel grids; MovingFashionMNIST holds video clips"):
        resolve("DM", "--dataset", "MovingFashionMNIST", "--solid")
    with pytest.raises(UserError, match=r"--shuffle_frames is for video clips"):
        _eval_args({"dataset": "FashionMNIST"}, "--shuffle_frames")
    with pytest.raises(UserError, match=r"--zca whitens images; ModelNet10 holds voxel grids"):
        resolve("DC", "--dataset", "ModelNet10", "--zca")
    args = resolve("DM", "--dataset", "FashionMNIST")
    assert not any(hasattr(args, o.name) for d in DOMAINS.values() for o in d.options)


def test_domain_options_name_folders_and_caches():
    """What the options add to run and expert folders, and that --clip_cache (the older flag, the clip folder
    itself) still sets the cache root."""
    clip = resolve("DM", "--dataset", "MovingFashionMNIST", "--frames", "8", "--frame_gap", "2")
    assert run_dir(clip).split("/")[2] == "MovingFashionMNIST_f8_g2"
    assert resolve("DM", "--dataset", "MovingFashionMNIST").frames == 16
    solid = resolve("TM", "--dataset", "ModelNet10", "--solid", "--res", "16", "--synset", "pixel")
    assert expert_dir(solid) == "buffers/ModelNet10_res16_solid_NO_ZCA/Conv3DNet"
    assert domain_of("ModelNet10").recipe(solid) == {"solid": True}
    assert domain_of("MovingFashionMNIST").recipe(clip) == {"frame_gap": 2, "short_clips": "error", "clip_seed": 0}
    assert domain_of("MovingFashionMNIST").flags(clip) == ["--frames", "8", "--frame_gap", "2", "--short_clips",
                                                            "error", "--clip_seed", "0"]
    p = build_eval_parser()
    assert p.parse_args(["--clip_cache", "somewhere/clips"]).cache == "somewhere"
    assert p.parse_args(["--init_cache", "elsewhere"]).cache == "elsewhere"
    assert DOMAINS["video"].data_cache("somewhere") == "somewhere/clips"
    assert DOMAINS["image"].data_cache("somewhere") is None


@pytest.mark.parametrize("name", list(DOMAINS))
def test_every_domain_is_complete(name, tmp_path):
    """A domain's datasets belong to it alone, its native sizes and default network fit each other, each option
    is a flag with help, and it draws a set of its instances."""
    from common.data import RealData
    from common.networks import get_network, list_networks
    domain = DOMAINS[name]
    assert domain.name == name and domain.datasets and all(domain_of(d) is domain for d in domain.datasets)
    assert domain.default_model in list_networks()
    for dataset in domain.datasets:
        values = {"dataset": dataset, "res": domain.native_res(dataset), "zca": False}
        domain.resolve(values, dataset)
        size = domain.instance_size(values)
        assert len(size) == len(domain.axes) and min(size) >= 1
        assert domain.tag(values) == ""  # the dataset's defaults add nothing to folder names
    size = (4,) * len(domain.axes) if name != "video" else (4, 48, 48)
    net = get_network(domain.default_model, 1, 3, size)
    assert net(torch.zeros(2, 1, *size)).shape == (2, 3)
    for opt in (*domain.options, *domain.eval_options):
        p = argparse.ArgumentParser()
        opt.add_to(p)
        assert opt.help and p.parse_args([]).__dict__[opt.name] is None
    x, labels = torch.rand(4, 1, *size), torch.tensor([0, 0, 1, 2])
    real = RealData(name="x", channel=1, im_size=size, num_classes=3, class_names=["a", "b", "c"], mean=[0.0],
                    std=[1.0], images_train=x, labels_train=labels, images_test=x, labels_test=labels,
                    indices_class=[], domain=name)
    paths = domain.save_visuals(x, labels, str(tmp_path), "syn", real)
    assert paths and all(Path(p).stat().st_size > 0 for p in paths)
    domain.export(x, labels, real, str(tmp_path / "export"))
    assert len(list((tmp_path / "export").rglob("*.*"))) >= len(x)


def test_grids_have_as_many_columns_as_the_fullest_class(tmp_path):
    """A set of 2 instances per class draws 2 columns, not 10 with 8 empty (e.g. a DDiF voxel set of 4 shapes)."""
    from PIL import Image
    from common.domains.base import grid_columns
    from common.domains.image import save_grid
    from common.domains.voxel import VOXEL_TILE_GAP_PX, save_voxel_grid
    assert grid_columns(torch.tensor([0, 0, 1, 2]), 10) == 2 and grid_columns(torch.tensor([3] * 12), 10) == 10
    save_grid(torch.rand(4, 1, 28, 28), torch.tensor([0, 0, 1, 2]), str(tmp_path / "g.png"), [0.0], [1.0])
    assert Image.open(tmp_path / "g.png").size == (2 * (28 + 2) + 2, 3 * (28 + 2) + 2)
    save_voxel_grid(torch.rand(4, 1, 8, 8, 8), torch.tensor([0, 0, 1, 2]), str(tmp_path / "v.png"))
    one = str(tmp_path / "v1.png")
    save_voxel_grid(torch.rand(2, 1, 8, 8, 8), torch.tensor([0, 0]), one, per_class=1)
    assert Image.open(tmp_path / "v.png").size[0] == 2 * Image.open(one).size[0] - VOXEL_TILE_GAP_PX  # 2 tiles
