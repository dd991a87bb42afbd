"""Every folder a run reads or writes is computed here, once, for every script."""
from __future__ import annotations

import hashlib
import json
import os

from .domains import domain_of
from .synsets.ddif import WARM_START_VERSION


def dataset_tag(args) -> str:
    """{dataset}[_{subset}][_res{res}] and what the domain's options add (e.g. _f8_g2, _solid)."""
    domain = domain_of(args.dataset)
    tag = args.dataset + (f"_{args.subset}" if args.subset else "")
    tag += f"_res{args.res}" if args.res not in (None, domain.native_res(args.dataset)) else ""
    return tag + domain.tag(args)


def run_dir(args) -> str:
    """{save_path}/{objective}/{dataset}/{exp_name or synset_ipc_model[_zca]_seed}."""
    name = args.exp_name or f"{args.synset}_ipc{args.ipc}_{args.model}{'_zca' if args.zca else ''}_s{args.seed}"
    return os.path.join(args.save_path, args.objective, dataset_tag(args), name)


def expert_dir(args) -> str:
    """Expert trajectories: {buffer_path}/{dataset}[/{subset}][_res{res}][options][_NO_ZCA]/{model}/ (buffer.py and
    main_TM.py)."""
    domain = domain_of(args.dataset)
    folder = args.dataset + (f"/{args.subset}" if args.subset else "")
    if args.res not in (None, domain.native_res(args.dataset)):
        folder += f"_res{args.res}"
    folder += domain.tag(args)
    return os.path.join(args.buffer_path, folder + ("" if args.zca else "_NO_ZCA"), args.model)


def init_cache_path(args, synset_config: dict, targets=None) -> str | None:
    """Warm-started DDiF sets, keyed by everything that determines them, a SHA-256 of ``targets`` (the real
    instances the fields fit) included, so that a dataset rebuilt or changed on disk under the same name is fitted
    again; None when caching is off."""
    if not args.cache:
        return None
    key = dict(synset_config, dataset=args.dataset, subset=args.subset, res=args.res, zca=args.zca, seed=args.seed,
               n_train_per_class=args.n_train_per_class, version=WARM_START_VERSION,
               targets="" if targets is None else
               hashlib.sha256(targets.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16])
    key.update(domain_of(args.dataset).cache_key(args))  # how the data were made (video: how clips were sampled)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(args.cache, f"ddif_init_{args.dataset}_ipc{args.ipc}_{digest}.pt")
