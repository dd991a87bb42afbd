"""The distillation loop shared by every objective: set-up, periodic evaluation, checkpoints, resume.

An objective (DM, DC, TM: :class:`common.objective.Objective`) is built from a :class:`Context` and updates the
synthetic set once per ``step(it)``. Everything else -- data, synthetic set, warm start and its cache, the run
folder, evaluation, the best and the resume checkpoints, NaN checks -- lives here once; what differs by kind of
data is asked of the dataset's domain (:mod:`common.domains`). :func:`main` is every ``main_*.py``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from tqdm.auto import tqdm

from . import dist, malloc
from .args import build_parser, resolve_args, synset_config
from .augment import DSA
from .atomic import torch_save, write_text
from .data import RealData, transform_mismatch
from .domains import DOMAINS, Domain, domain_of
from .errors import CheckpointError, NonFiniteError, UserError
from .evaluate import EvalConfig, evaluate_on, summarize
from .networks import get_eval_pool, get_network
from .objective import Objective
from .objectives import objective_class
from .paths import init_cache_path, run_dir
from .runlog import RunRecord
from .synsets import SynSet, build_synset, load_checkpoint
from .utils import derive_seed, seed_everything

# args that define an experiment, besides its domain's options: a resumed run must agree on them
IDENTITY_KEYS = ("objective", "synset", "dataset", "subset", "res", "model", "ipc", "dipc", "zca", "seed",
                 "n_train_per_class", "batch_syn", "select_on")
# what a checkpoint written before a key existed is taken to have had
IDENTITY_DEFAULTS = {"select_on": "test"}
# what eval.py needs to rebuild the data a set was distilled on, besides its domain's options
META_KEYS = ("dataset", "subset", "res", "zca", "model", "data_path", "ipc", "seed", "objective")


@dataclass
class Context:
    args: object
    device: torch.device
    real: RealData
    synset: SynSet
    optimizer: torch.optim.Optimizer
    record: RunRecord
    dsa: Optional[DSA]
    eval_cfg: EvalConfig
    eval_pool: list
    domain: Optional[Domain] = None
    val: Optional[tuple] = None  # --select_on val: the held-out (images, labels) that pick the best set
    extras: dict = field(default_factory=dict)


def main(objective: str, argv: Optional[Sequence[str]] = None, description: str = "", **defaults) -> dict:
    """A ``main_*.py``: parse and resolve the flags (``defaults``: the script's own, e.g. its dataset), distil."""
    p = build_parser(description, objective)
    p.set_defaults(**defaults)
    return run_distillation(resolve_args(p.parse_args(argv), objective), objective_class(objective))


def load_real(args, test_only: bool = False) -> RealData:
    """The real data of resolved ``args`` (distillation runs, buffer.py, eval.py), restricted when asked."""
    domain = domain_of(args.dataset)
    real = domain.load(args.dataset, data_path=args.data_path, res=args.res, subset=args.subset, zca=args.zca,
                       options=domain.option_values(args), cache_root=args.cache,
                       progress=getattr(args, "progress", False), test_only=test_only)
    if args.n_train_per_class or args.n_test:
        real = real.restrict(args.n_train_per_class, args.n_test, seed=args.seed)
    malloc.release()  # the loader's temporary copies are freed: their pages go back
    return real


def identity(args) -> dict:
    """What a resume checkpoint records of the experiment."""
    held_out = {"n_val": args.n_val} if getattr(args, "select_on", "test") == "val" else {}
    return dict({k: getattr(args, k, IDENTITY_DEFAULTS.get(k)) for k in IDENTITY_KEYS}, **held_out,
                **domain_of(args.dataset).option_values(args))


def meta(args, real: RealData) -> dict:
    """What eval.py needs to rebuild the data a synthetic set was distilled on."""
    return dict({k: getattr(args, k, None) for k in META_KEYS}, **domain_of(args.dataset).option_values(args),
                transform=real.transform)


def shown(images: torch.Tensor, labels: torch.Tensor, domain: str) -> tuple[torch.Tensor, torch.Tensor]:
    """What checkpoints keep of the real instances a set was initialised from: every image; of clips and voxel
    grids the first few of each class (the domain's ``shown_per_class``), those the grid shows, in float16 (a
    budget-filled miniUCF101 set's would be 8.5 GB)."""
    per_class = DOMAINS[domain].shown_per_class
    if per_class is None:
        return images, labels
    keep = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in labels.unique(sorted=True).tolist()])
    return images[keep].half(), labels[keep]


def saved_init(payload: dict, synset: SynSet) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of the shown initial instances a checkpoint or cache holds (older files: every one)."""
    return payload["init_images"], payload.get("init_labels", synset.labels.cpu())


def log_fit(synset: SynSet, targets: torch.Tensor, real: RealData, record: RunRecord) -> None:
    """A fitted warm start (DDiF): how close the decoded fields came to the real instances they fit (decoded class
    by class, so that a large set is never held twice)."""
    domain = DOMAINS[real.domain]
    peak = float(targets.max() - targets.min())
    parts: dict[str, list] = {}
    with torch.no_grad():
        for c in range(synset.num_classes):
            idx = synset.class_indices(c)
            decoded = synset.get(idx)[0].detach().cpu()
            for k, v in domain.fit_metrics(decoded, targets[idx.cpu()], real, peak).items():
                parts.setdefault(k, []).append(v)
    record.log(f"warm start fit: {domain.fit_summary({k: torch.cat(v) for k, v in parts.items()})}")


def initialise(args, synset: SynSet, real: RealData, record: RunRecord) -> tuple[torch.Tensor, torch.Tensor]:
    """Initialise the set from real data, through the on-disk cache for DDiF; returns the shown real instances
    it was initialised from and their labels (see :func:`shown`)."""
    g = torch.Generator().manual_seed(derive_seed(args.seed, "init"))
    targets = synset.init_targets(real, g) if synset.cached_init else None  # g then goes on to the fit
    cache = init_cache_path(args, synset.config(), targets) if synset.cached_init else None
    if cache and os.path.exists(cache):
        try:
            payload = load_checkpoint(cache, "warm-start cache")
            why = transform_mismatch(dict(payload, zca=args.zca), args.zca)
            if why:
                raise CheckpointError(f"its fields were fitted to images {why}")
            synset.load_payload(payload["synset"], f"warm-start cache {cache}")
            record.log(f"warm start loaded from cache {cache}")
            log_fit(synset, targets, real, record)
            return saved_init(payload, synset)
        except (CheckpointError, KeyError) as e:
            record.log(f"ignoring unusable warm-start cache {cache} ({e}); fitting again")
    t = time.time()
    kw = {"targets": targets} if targets is not None else {}
    targets = synset.init_from_real(real, g, progress=args.progress, **kw).detach().cpu()
    record.log(f"initialised {synset.name} from real data in {time.time() - t:.1f}s")
    if synset.cached_init:
        log_fit(synset, targets, real, record)
    init_images, init_labels = shown(targets, synset.labels.cpu(), real.domain)
    if cache:
        torch_save({"synset": synset.payload(), "init_images": init_images, "init_labels": init_labels,
                    "transform": real.transform}, cache)
        record.log(f"warm start cached at {cache}")
    return init_images, init_labels


def build_context(args) -> Context:
    device = dist.setup(args.device)
    record = RunRecord(run_dir(args), resume=args.resume, main=dist.is_main())
    seed_everything(args.seed)
    with dist.main_first():  # rank 0 fills the clip / voxel caches, the others read them
        real = load_real(args)
    val = None
    if args.select_on == "val":  # held out before the objective, the warm start or any baseline sees the data
        real, val = real.hold_out(args.n_val, derive_seed(args.seed, "val"))
        val = tuple(t.to(device) for t in val)
        record.log(f"model selection on {len(val[1])} held-out train instances ({args.n_val} per class); the "
                   f"reported accuracy is the selected set's test accuracy")
    real = real.to(device)
    get_network(args.model, real.channel, real.num_classes, real.im_size)  # a clear error if it cannot take the data
    synset = build_synset(args.synset, **synset_config(args, real.channel, real.num_classes, real.im_size))
    synset.to(device)
    record.write_config(dict(args.as_dict(), budget=synset.budget(), device=str(device),
                             synset_config=synset.config()))
    b = synset.budget()
    record.log(f"{synset.name}: {synset.n_per_class} instances per class of {b['params_per_instance']} numbers; "
               f"budget {b['used']} of {b['allowed']} numbers used ({100 * b['ratio']:.1f}%)")
    dsa = DSA(args.dsa_strategy) if args.dsa else None
    eval_cfg = EvalConfig(epochs=args.epoch_eval_train, num_eval=args.num_eval, device=device, lr=args.lr_net,
                          dsa=dsa, seed=args.seed, progress=args.progress)
    return Context(args, device, real, synset, None, record, dsa, eval_cfg, get_eval_pool(args.eval_mode, args.model),
                   domain_of(args.dataset), val)


def run_distillation(args, objective_cls: type[Objective]) -> dict:
    """Distil with ``objective_cls``; returns {model: (acc_mean, acc_std)} of the last evaluation."""
    objective_cls.preflight(args)
    ctx = build_context(args)
    synset, record = ctx.synset, ctx.record
    ckpt_path = record.path("checkpoint.pt")
    start, best = 0, {"acc": -1.0, "iteration": -1}
    state, init_images, init_labels = None, None, None
    if dist.is_main():  # rank 0 reads the checkpoint or initialises; the other ranks get the set from it
        if args.resume and os.path.exists(ckpt_path):
            state = load_checkpoint(ckpt_path, "resume checkpoint")
            check_identity(state.get("args", {}), args, ckpt_path)
            if why := transform_mismatch(checkpoint_meta(state), args.zca):
                raise CheckpointError(f"resume checkpoint {ckpt_path} holds a set {why}; start a new run (another "
                                      f"--exp_name, or delete {record.folder})")
            synset.load_payload(state["synset"], f"resume checkpoint {ckpt_path}")
            init_images, init_labels = saved_init(state, synset)
        else:
            init_images, init_labels = initialise(args, synset, ctx.real, record)
        ctx.domain.save_visuals(init_images.float(), init_labels, record.path("imgs"), "init_real", ctx.real)
    if dist.world_size() > 1:
        resume_keys = ("optimizer", "objective", "iteration", "best")
        shared = dist.broadcast_object({"synset": synset.payload(),
                                        "state": {k: state[k] for k in resume_keys if k in state} if state else None}
                                       if dist.is_main() else None)
        if not dist.is_main():
            synset.load_payload(shared["synset"], "the set rank 0 sent")
            state = shared["state"]
    resumed = state is not None
    ctx.optimizer = synset.make_optimizer()
    objective = objective_cls(ctx)
    if resumed:
        try:
            ctx.optimizer.load_state_dict(state["optimizer"])
            objective.load_state_dict(state["objective"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"resume checkpoint {ckpt_path} does not fit this run: {e}") from None
        start, best = state["iteration"], state["best"]
        record.truncate_metrics(start)
        record.log(f"resumed from {ckpt_path} at iteration {start}")
    if dist.world_size() > 1:
        record.log(f"{dist.world_size()} processes ({dist.backend()}): {objective_cls.__name__} "
                   f"splits {objective.splits} over them; evaluation splits its networks")
    wandb = _wandb(args, record) if args.wandb and dist.is_main() else None

    def save_resume(next_it: int):
        if not dist.is_main():
            return
        torch_save({"format": 1, "args": identity(args),
                    "meta": meta(args, ctx.real), "transform": ctx.real.transform, "iteration": next_it,
                    "synset": synset.payload(), "optimizer": ctx.optimizer.state_dict(),
                    "objective": objective.state_dict(),
                    "best": best, "init_images": init_images, "init_labels": init_labels}, ckpt_path)

    last = {}
    bar = tqdm(range(start, args.Iteration + 1), desc=f"{args.objective} {synset.name}",
               disable=not args.progress or not dist.is_main(),
               initial=start, total=args.Iteration + 1, mininterval=1)
    loop_start, eval_seconds, estimated = time.time(), 0.0, False
    for it in bar:
        if (it % args.eval_it == 0 and (it > 0 or args.eval_at_start)) or it == args.Iteration:
            t_eval = time.time()
            last = evaluate_and_record(ctx, it, objective, best, wandb)
            eval_seconds += time.time() - t_eval
            save_resume(it)
            if not estimated and it < args.Iteration:  # once: what the rest of the run will cost
                estimated = True
                record.log(time_estimate(it, start, args.Iteration, args.eval_it, time.time() - t_eval,
                                         time.time() - loop_start - eval_seconds))
        if it == args.Iteration:
            break
        loss = objective.step(it)
        if not math.isfinite(loss) or not synset.is_finite():
            raise NonFiniteError(
                f"the synthetic set became NaN/inf at iteration {it} (loss {loss}); the last good state is kept in "
                f"{ckpt_path} and {record.path('synset_best.pt')}; lower the learning rate and rerun")
        bar.set_postfix(loss=f"{loss:.4g}")
        if (it + 1) % args.save_it == 0:
            save_resume(it + 1)
    record.plot_accuracy()
    record.log(f"done: best {args.model} accuracy {100 * best['acc']:.2f}% at iteration {best['iteration']} (the set "
               f"selected on the {'held-out train instances' if args.select_on == 'val' else 'test accuracy'})")
    if wandb is not None:
        _close_wandb(wandb)
    dist.barrier()  # rank 0's files are complete when the run returns on any rank
    return last


def evaluate_and_record(ctx: Context, it: int, objective, best: dict, wandb=None) -> dict:
    args, synset, record = ctx.args, ctx.synset, ctx.record
    with torch.no_grad():
        images, labels = synset.get()
    if dist.is_main():
        for stem in (f"syn_{it:06d}", "syn_latest"):
            ctx.domain.save_visuals(images, labels, record.path("imgs"), stem, ctx.real)
    t = time.time()
    # the objective sets the evaluation lr (TM: the learned step size)
    cfg = dataclasses.replace(ctx.eval_cfg, lr=objective.eval_lr(ctx.eval_cfg.lr))
    tests = {} if ctx.val is None else {"val": ctx.val}  # --select_on val: the same networks on the held-out ones
    accs = {m: evaluate_on(m, images, labels, ctx.real, cfg, it, tests) for m in ctx.eval_pool}
    results = {m: summarize(a["clean"]) for m, a in accs.items()}
    val = {m: summarize(a["val"]) for m, a in accs.items()} if tests else {}
    extra = objective.metrics()
    for model, (mean, std) in results.items():
        on_val = dict(val_acc_mean=val[model][0], val_acc_std=val[model][1]) if val else {}
        record.add_metric(iteration=it, model=model, acc_mean=mean, acc_std=std, num_eval=args.num_eval, **on_val,
                          **extra)
        record.log(f"it {it:5d}  {model:<12} acc {100 * mean:.2f} +- {100 * std:.2f}  "
                   + (f"val {100 * val[model][0]:.2f}  " if val else "")
                   + f"({args.num_eval} nets, {time.time() - t:.0f}s)")
        if wandb is not None:
            wandb.log({f"acc/{model}": mean, f"acc_std/{model}": std, **extra}, step=it)
    main = ctx.eval_pool[0]
    main_acc, score = results[main][0], (val or results)[main][0]  # what picks the best set: test or held-out
    if score > best.get("score", best["acc"]):
        best.update(acc=main_acc, score=score, iteration=it)
        if dist.is_main():
            torch_save(dict(synset.payload(), meta=dict(meta(args, ctx.real), iteration=it, acc=main_acc, lr_net=cfg.lr,
                                                        selected_on=args.select_on, selection_acc=score,
                                                        metrics=extra)), record.path("synset_best.pt"))
    record.plot_accuracy()
    return results


def time_estimate(it: int, start: int, iterations: int, eval_it: int, eval_seconds: float, step_seconds: float
                  ) -> str:
    """A log line after the first evaluation: what one evaluation took, how many follow, and (once iterations have
    run) the time the rest of the run should take, so a run at a paper protocol on a CPU says so at once."""
    evals_left = len([k for k in range(it + 1, iterations + 1) if k % eval_it == 0 or k == iterations])
    line = (f"time estimate: one evaluation took {eval_seconds:.0f}s and {evals_left} more follow (about "
            f"{evals_left * eval_seconds / 60:.1f} min)")
    if it > start:
        per_step = step_seconds / (it - start)
        total = (iterations - it) * per_step + evals_left * eval_seconds
        line += (f"; {iterations - it} iterations remain at {per_step:.2f}s each: about {total / 60:.1f} min in all "
                 f"(--Iteration, --eval_it, --num_eval and --epoch_eval_train shorten it)")
    return line


def checkpoint_meta(state: dict) -> dict:
    """What a resume checkpoint says about the data its set was distilled on (as ``synset_best.pt``'s meta)."""
    meta = dict(state.get("meta", {}), **state.get("args", {}))
    if state.get("transform"):
        meta["transform"] = state["transform"]
    return meta


def check_identity(saved: dict, args, path: str) -> None:
    """A resume checkpoint's experiment must be this run's (an option a checkpoint predates: its default)."""
    fallback = dict(IDENTITY_DEFAULTS, **{opt.name: opt.default for opt in domain_of(args.dataset).options})
    now = identity(args)
    diff = [f"{k}: checkpoint {saved.get(k, fallback.get(k))!r} vs now {v!r}"
            for k, v in now.items() if saved.get(k, fallback.get(k)) != v]
    if diff:
        raise CheckpointError(f"resume checkpoint {path} was written by another experiment: {'; '.join(diff)}")


def _close_wandb(run) -> None:
    """Finish the run and wait for wandb's service to exit: it may still be writing the offline .wandb file after
    finish() returns (a CI run once read a header-only file), and the run's files are complete when the run returns."""
    import wandb  # optional dependency, imported where --wandb is used
    run.finish()
    wandb.teardown()


def _wandb(args, record: RunRecord):
    """A wandb run in the run folder (mode --wandb_mode; offline by default), resumed along with the run."""
    try:
        import wandb  # optional dependency, imported where --wandb is used
    except ImportError:
        raise UserError("--wandb needs the wandb package: pip install -r requirements.txt") from None
    id_file = record.path("wandb_id.txt")  # a resumed run continues its wandb run; a new one starts its own
    if args.resume and os.path.exists(id_file):
        with open(id_file) as f:
            run_id = f.read().strip()
    else:
        run_id = uuid.uuid4().hex[:12]
        write_text(id_file, run_id + "\n")
    return wandb.init(project=args.wandb_project, name=os.path.basename(record.folder), id=run_id,
                      dir=record.folder, mode=args.wandb_mode, config=args.as_dict(),
                      resume="allow" if args.resume else None)
