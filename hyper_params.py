"""Default hyper-parameters, keyed by objective, dataset, resolution and images per class.

Edit this file to change what a run uses for a flag left at ``None``. The values come from the DDiF and
FreD papers and their example scripts (see the README's table of sources); rows marked "ours" are not in
the papers (Fashion-MNIST, MNIST, SVHN) and were chosen for this code base.

``defaults(objective, dataset, res, ipc, domain)`` merges, in order:
  COMMON                                    -- the DDiF warm start and the evaluation networks' learning rate
  OBJECTIVE[objective]                      -- loop lengths, batch sizes, learning rates, evaluation
  DOMAIN_ROWS[(objective, domain)]          -- what a kind of data changes (video: no DSA, 3 evaluation networks...)
  DATASET_ROWS[(objective, dataset)]        -- what a dataset changes at every res and ipc
  DDIF_ARCH[(dataset, res, ipc)]            -- the neural-field architecture of DDiF
  ROWS[(objective, dataset, res, ipc)]      -- what differs for one experiment (e.g. TM trajectories)
Missing rows are only an error when a flag that needs them was left at None.
"""
from __future__ import annotations

# -- per objective ------------------------------------------------------------------------------------
OBJECTIVE: dict[str, dict] = {
    "DM": dict(Iteration=20000, eval_it=2000, batch_real=256, batch_syn=0, num_eval=5, epoch_eval_train=1000, dsa=True,
               lr_nf=5e-5, lr_img=1.0, lr_freq=1e6, mom_freq=0.5, msz_per_channel=64),
    "DC": dict(Iteration=1000, eval_it=500, batch_real=256, batch_syn=0, num_eval=5, epoch_eval_train=1000, dsa=True,
               lr_nf=5e-5, lr_img=0.1, lr_freq=1e3, mom_freq=0.5, msz_per_channel=32, lr_net=0.01),
    "TM": dict(Iteration=15000, eval_it=1000, batch_real=256, batch_syn=0, num_eval=5, epoch_eval_train=1000, dsa=True,
               lr_nf=1e-4, lr_img=100.0, lr_freq=1e8, mom_freq=0.5, msz_per_channel=64,
               syn_steps=60, expert_epochs=2, max_start_epoch=10, lr_lr=1e-5, lr_teacher=1e-2),
}
# -- per (objective, domain), at every dataset, resolution and ipc ---------------------------------------------
# Video (DDiF's Video/, on the video-distillation code base): DM with a fresh ConvNet3D each iteration, 64 real
# clips per class, no DSA, 5,000 iterations evaluated every 500 by 3 networks trained 500 epochs; fields lr 1e-4.
# FreD on clips and voxel grids keeps prod(size) // msz_fraction coefficients per channel when --msz_per_channel is
# left at None (and no ROWS entry sets it), i.e. msz_fraction instances per class per ipc at any size: FreD's
# 3D-MNIST script keeps 512 of 16^3 (1/8); on clips (in neither paper) ours
MSZ_FRACTION_3D = 8
_VIDEO_DM = dict(Iteration=5000, eval_it=500, batch_real=64, num_eval=3, epoch_eval_train=500, dsa=False, lr_nf=1e-4,
                 msz_fraction=MSZ_FRACTION_3D)
# ours: DC and TM on clips (not in the originals) keep their objective's loop and take video's evaluation
_VIDEO_OTHER = dict(num_eval=3, epoch_eval_train=500, dsa=False, lr_nf=1e-4, msz_fraction=MSZ_FRACTION_3D)
# Voxels (DDiF's 3D_Voxel/): no augmentation; DC 1,000 iterations, eval every 500, 300 evaluation epochs; DM 20,000,
# every 2,000, 1,000 epochs; fields lr 1e-4. TM on voxels (ours) keeps its loop with DC's evaluation.
_VOXEL = {"DC": dict(Iteration=1000, eval_it=500, epoch_eval_train=300, dsa=False, lr_nf=1e-4),
          "DM": dict(Iteration=20000, eval_it=2000, epoch_eval_train=1000, dsa=False, lr_nf=1e-4),
          "TM": dict(epoch_eval_train=300, dsa=False, lr_nf=1e-4)}
# Audio (log spectrograms 1 x 64 x 64, after IDC's speech experiments; in neither paper's code): no augmentation, as
# IDC ("for speech data, I didn't use data augmentation"); ours: FreD keeps 512 of the 4,096 DCT coefficients per
# instance (1/8, the share of FreD's ImageNet and 3D-MNIST rows): 8 instances per class per ipc
_AUDIO = dict(dsa=False, msz_per_channel=512)
DOMAIN_ROWS: dict[tuple, dict] = {
    ("DM", "video"): _VIDEO_DM, ("DC", "video"): _VIDEO_OTHER, ("TM", "video"): _VIDEO_OTHER,
    **{(o, "voxel"): dict(row, msz_fraction=MSZ_FRACTION_3D) for o, row in _VOXEL.items()},
    **{(o, "audio"): _AUDIO for o in ("DC", "DM", "TM")},
}
# -- per (objective, dataset), at every resolution and ipc ------------------------------------------------------
DATASET_ROWS: dict[tuple, dict] = {
    # FreD's 3D-MNIST DM script: 1,000 iterations, eval every 200, 500 evaluation epochs
    ("DM", "3DMNIST"): dict(Iteration=1000, eval_it=200, epoch_eval_train=500),
    # ours: spoken commands take the learning rates of the Fashion-MNIST rows (this code's orthonormal DCT and
    # normalised inputs, like Fashion-MNIST's; not tuned on spectrograms)
    **{(o, d): row for d in ("MiniSpeechCommands", "SpeechCommands") for o, row in (
        ("DM", dict(lr_nf_init=2e-3, lr_nf=1e-3, lr_img=1.0, lr_freq=1.0)),
        ("DC", dict(lr_nf_init=2e-3, lr_nf=1e-3, lr_freq=10.0)),
        ("TM", dict(lr_nf_init=2e-3)))},
}
# what evaluating a set means (eval.py takes these from the row of the objective that made the set)
EVAL_KEYS = ("num_eval", "epoch_eval_train", "lr_net", "dsa")

# shared by every objective: the DDiF warm start and the evaluation networks' learning rate
COMMON = dict(epochs_init=5000, lr_nf_init=5e-4, lr_net=0.01)

# -- DDiF architecture: (dataset, res, ipc) -> (dim_in, num_layers, layer_size, dim_out, w0_initial, w0) ----
_ARCH_ROWS = {
    ("CIFAR10", 32, 1): (2, 2, 6, 3, 30, 10), ("CIFAR10", 32, 10): (2, 2, 6, 3, 30, 10),
    ("CIFAR10", 32, 50): (2, 2, 20, 3, 30, 10),
    ("CIFAR100", 32, 1): (2, 2, 10, 3, 30, 10), ("CIFAR100", 32, 10): (2, 2, 15, 3, 30, 10),
    ("CIFAR100", 32, 50): (2, 2, 30, 3, 30, 10),
    ("ImageNet", 128, 1): (2, 3, 20, 3, 30, 40), ("ImageNet", 128, 10): (2, 3, 20, 3, 30, 40),
    ("ImageNet", 128, 50): (2, 3, 40, 3, 30, 40), ("ImageNet", 256, 1): (2, 3, 40, 3, 30, 40),
    # ours: 28x28 grey images (width 6 -> 67 parameters -> 11 fields per class at ipc 1). On Fashion-MNIST a
    # 2000-step warm start of these small fields fits best with w0_initial 10 (MSE 0.085 against 0.21 at 30,
    # pixel variance 1.03; with lr_nf_init 2e-3), and DM at ipc 1 ended at 77.5% against 74.3% (one run each)
    ("FashionMNIST", 28, 1): (2, 2, 6, 1, 10, 10), ("FashionMNIST", 28, 10): (2, 2, 6, 1, 10, 10),
    ("FashionMNIST", 28, 50): (2, 2, 20, 1, 30, 10),
    ("MNIST", 28, 1): (2, 2, 6, 1, 30, 10), ("MNIST", 28, 10): (2, 2, 6, 1, 30, 10),
    ("MNIST", 28, 50): (2, 2, 20, 1, 30, 10),
    # video, 16 frames: one field per class at 112x112 (the script passes --dipc 1); 8,483 parameters
    ("miniUCF101", 112, 1): (3, 6, 40, 3, 5, 5), ("miniUCF101", 112, 5): (3, 6, 40, 3, 5, 5),
    ("UCF101", 112, 1): (3, 6, 40, 3, 5, 5), ("HMDB51", 112, 1): (3, 6, 40, 3, 5, 5),
    # ours: the same field with one output channel (8,401 parameters: 7 fields per class at ipc 1, 16x64x64)
    ("MovingFashionMNIST", 64, 1): (3, 6, 40, 1, 5, 5), ("MovingFashionMNIST", 64, 5): (3, 6, 40, 1, 5, 5),
    # voxels 32^3, one output channel: 941 parameters -> 34 fields per class at ipc 1
    ("ModelNet10", 32, 1): (3, 3, 20, 1, 30, 40), ("ModelNet40", 32, 1): (3, 3, 20, 1, 30, 40),
    ("ShapeNet", 32, 1): (3, 3, 20, 1, 30, 40),
    # ours: the offline voxel set takes ModelNet's field (at 16^3: 4 fields per class at ipc 1)
    ("VoxelFashionMNIST", 32, 1): (3, 3, 20, 1, 30, 40), ("VoxelFashionMNIST", 16, 1): (3, 3, 20, 1, 30, 40),
    ("3DMNIST", 16, 1): (3, 3, 20, 1, 30, 40),
    # ours: spectrograms 64 x 64, one channel; ImageNet's 3-layer width-20 field with one output (921 parameters: 4
    # fields per class at ipc 1, 44 at ipc 10), w0 20 for the 64-sample side
    **{(d, 64, ipc): (2, 3, 20, 1, 30, 20) for d in ("MiniSpeechCommands", "SpeechCommands") for ipc in (1, 10, 20)},
    # ours: SVHN is CIFAR-10-shaped
    ("SVHN", 32, 1): (2, 2, 6, 3, 30, 10), ("SVHN", 32, 10): (2, 2, 6, 3, 30, 10), ("SVHN", 32, 50): (2, 2, 20, 3, 30, 10),
}
_ARCH_KEYS = ("dim_in", "num_layers", "layer_size", "dim_out", "w0_initial", "w0")
DDIF_ARCH: dict[tuple, dict] = {k: dict(zip(_ARCH_KEYS, v)) for k, v in _ARCH_ROWS.items()}

# -- one experiment: (objective, dataset, res, ipc) -> flags ---------------------------------------------
ROWS: dict[tuple, dict] = {
    # TM trajectories (DDiF paper)
    ("TM", "CIFAR10", 32, 10): dict(syn_steps=60, expert_epochs=2, max_start_epoch=10, lr_lr=1e-5, lr_teacher=1e-2),
    ("TM", "CIFAR10", 32, 50): dict(syn_steps=60, expert_epochs=2, max_start_epoch=40, lr_lr=1e-5, lr_teacher=1e-2),
    ("TM", "CIFAR100", 32, 1): dict(syn_steps=60, expert_epochs=2, max_start_epoch=40, lr_lr=1e-5, lr_teacher=1e-2),
    ("TM", "CIFAR100", 32, 10): dict(syn_steps=60, expert_epochs=2, max_start_epoch=40, lr_lr=1e-5, lr_teacher=1e-2),
    ("TM", "CIFAR100", 32, 50): dict(syn_steps=60, expert_epochs=2, max_start_epoch=40, lr_lr=1e-5, lr_teacher=1e-2),
    ("TM", "ImageNet", 128, 1): dict(syn_steps=20, expert_epochs=2, max_start_epoch=10, lr_lr=1e-6, lr_teacher=1e-2,
                                     msz_per_channel=2048, lr_freq=1e9),
    ("TM", "ImageNet", 128, 10): dict(syn_steps=40, expert_epochs=2, max_start_epoch=20, lr_lr=1e-5, lr_teacher=1e-2),
    ("TM", "ImageNet", 128, 50): dict(syn_steps=40, expert_epochs=2, max_start_epoch=20, lr_lr=1e-5, lr_teacher=1e-2),
    # TM on Fashion-MNIST (FreD's scripts)
    ("TM", "FashionMNIST", 28, 1): dict(syn_steps=50, expert_epochs=2, max_start_epoch=5, lr_lr=1e-7, lr_teacher=1e-2,
                                        lr_nf_init=2e-3),
    ("TM", "FashionMNIST", 28, 10): dict(syn_steps=60, expert_epochs=2, max_start_epoch=15, lr_lr=1e-5, lr_teacher=1e-2,
                                         lr_nf_init=2e-3),
    # FreD's ImageNet-[A..E] scripts (128x128, ConvNetD5, ipc 1: 2048 coefficients per channel, 8 instances per
    # class); its TM row above (msz 2048, lr_freq 1e9) keeps the trajectory values DDiF and FreD share
    ("DC", "ImageNet", 128, 1): dict(msz_per_channel=2048, lr_freq=1e5, mom_freq=0.5),
    ("DM", "ImageNet", 128, 1): dict(msz_per_channel=2048, lr_freq=1e6, mom_freq=0.5),
    # FreD example scripts (CIFAR-10); the TM row also holds the DDiF paper's trajectory values
    ("DC", "CIFAR10", 32, 2): dict(msz_per_channel=32, lr_freq=1e3),
    ("DM", "CIFAR10", 32, 2): dict(msz_per_channel=64, lr_freq=1e6),
    ("TM", "CIFAR10", 32, 1): dict(msz_per_channel=64, lr_freq=1e8, syn_steps=60, expert_epochs=2,
                                   max_start_epoch=10, lr_lr=1e-5, lr_teacher=1e-2),
    # ours: Fashion-MNIST with DM (lr_nf_init 2e-3 in every Fashion-MNIST row: see its DDIF_ARCH row)
    ("DM", "FashionMNIST", 28, 1): dict(lr_nf_init=2e-3, lr_nf=1e-3, lr_img=1.0, msz_per_channel=64, lr_freq=1.0),
    ("DM", "FashionMNIST", 28, 10): dict(lr_nf_init=2e-3, lr_nf=1e-3, lr_img=1.0, msz_per_channel=64, lr_freq=1.0),
    # ours: Fashion-MNIST with DC; checked at ipc 1 only (matching loss on fixed networks after 60-80 iterations); the
    # DC defaults lr_nf 5e-5 (ImageNette) barely move the fields and FreD's lr_freq 1e3 raises the loss here
    ("DC", "FashionMNIST", 28, 1): dict(lr_nf_init=2e-3, lr_nf=1e-3, lr_freq=10.0),
    ("DC", "FashionMNIST", 28, 10): dict(lr_nf_init=2e-3, lr_nf=1e-3, lr_freq=10.0),
    # video DM. pixel: lr 30, the video-distillation README's DM example for miniUCF101 ipc 1
    ("DM", "miniUCF101", 112, 1): dict(lr_img=30.0), ("DM", "miniUCF101", 112, 5): dict(lr_img=30.0),
    ("DM", "UCF101", 112, 1): dict(lr_img=30.0), ("DM", "HMDB51", 112, 1): dict(lr_img=30.0),
    # ours: Moving Fashion-MNIST takes the learning rates of the Fashion-MNIST DM rows (not tuned on clips)
    ("DM", "MovingFashionMNIST", 64, 1): dict(lr_nf=1e-3, lr_img=1.0, lr_freq=1.0),
    # ours: Voxel Fashion-MNIST takes the learning rates of the Fashion-MNIST rows (FreD's DM 1e6 and DC 1e3 are
    # for CIFAR-10 images; not tuned on voxels)
    ("DC", "VoxelFashionMNIST", 16, 1): dict(lr_nf=1e-3, lr_freq=10.0),
    ("DC", "VoxelFashionMNIST", 32, 1): dict(lr_nf=1e-3, lr_freq=10.0),
    ("DM", "VoxelFashionMNIST", 16, 1): dict(lr_nf=1e-3, lr_img=1.0, lr_freq=1.0),
    ("DM", "VoxelFashionMNIST", 32, 1): dict(lr_nf=1e-3, lr_img=1.0, lr_freq=1.0),
    # FreD's 3D-MNIST DM script (512 of 4,096 coefficients: 8 instances per class at ipc 1)
    ("DM", "3DMNIST", 16, 1): dict(msz_per_channel=512, lr_freq=1e6, mom_freq=0.5),
}
# Flags that need a (dataset, res, ipc) row of DDIF_ARCH when left at None.
ARCH_FLAGS = _ARCH_KEYS


class UnknownDefaultsError(KeyError):
    """No table row for a flag left at None."""

    def __str__(self) -> str:  # KeyError quotes its message; print it plainly
        return str(self.args[0])


def defaults(objective: str, dataset: str, res: int, ipc: int, needed=(), domain: str = "image"
             ) -> tuple[dict, list[str]]:
    """Defaults for one experiment and the names of the table entries they came from.

    ``needed``: the flags the caller left at None; raises :class:`UnknownDefaultsError` listing the
    known keys when one of them has no value here. A domain row with ``msz_fraction`` replaces the objective's
    ``msz_per_channel`` (unless a dataset or experiment row sets one): the caller computes it from the instance
    size.
    """
    if objective not in OBJECTIVE:
        raise UnknownDefaultsError(f"unknown objective {objective!r}; known: {sorted(OBJECTIVE)}")
    values, sources = dict(COMMON), ["COMMON"]
    values.update(OBJECTIVE[objective])
    sources.append(f"OBJECTIVE[{objective!r}]")
    if (objective, domain) in DOMAIN_ROWS:
        row = DOMAIN_ROWS[(objective, domain)]
        if "msz_fraction" in row:
            values.pop("msz_per_channel", None)
        values.update(row)
        sources.append(f"DOMAIN_ROWS{(objective, domain)}")
    if (objective, dataset) in DATASET_ROWS:
        values.update(DATASET_ROWS[(objective, dataset)])
        sources.append(f"DATASET_ROWS{(objective, dataset)}")
    arch_key = (dataset, res, ipc)
    if arch_key in DDIF_ARCH:
        values.update(DDIF_ARCH[arch_key])
        sources.append(f"DDIF_ARCH{arch_key}")
    row_key = (objective, dataset, res, ipc)
    if row_key in ROWS:
        values.update(ROWS[row_key])
        sources.append(f"ROWS{row_key}")
    if "msz_per_channel" in values:
        values.pop("msz_fraction", None)
    missing = [k for k in needed if k not in values and not (k == "msz_per_channel" and "msz_fraction" in values)]
    if missing:
        arch = sorted(k for k in DDIF_ARCH)
        raise UnknownDefaultsError(
            f"hyper_params.py has no default for {', '.join(missing)} at (dataset, res, ipc) = {arch_key}; pass "
            f"the flag(s) explicitly or add a row to DDIF_ARCH; known keys: {arch}")
    return values, sources
