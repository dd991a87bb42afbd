"""Distilled sets released by other code bases, read as sets this project evaluates.

Formats (``FORMATS``; :func:`detect` tells them apart by their contents):

- ``native``: this project's ``synset_best.pt`` or resume ``checkpoint.pt``.
- ``mtt``: MTT / DATM / FreD-TM's ``images_best.pt`` -- a float tensor (N, C, H, W) in the space the run trained
  in (mean/std-normalised, or ZCA-whitened with ``--zca``) -- and ``labels_best.pt`` beside it: int labels (N,), or
  DATM's learned soft labels (N, classes), trained on with a soft cross-entropy on their softmax. MTT does not save
  its learned lr: evaluation takes ``--lr_net``.
- ``fred``: FreD's DC/DM ``res_*.pt``: ``{"data": [(images, labels), ...], "accs_all_exps": ...}``, one decoded
  (images, labels) pair per experiment; the last is taken.
- ``ddif``: the official DDiF code's ``{"nf": [one SIREN state_dict per instance], "label": (N,)}`` (``syn_lr``
  with TM): keys ``net.{i}.linear.{weight,bias}`` and ``last_layer.linear.{weight,bias}``. It becomes this
  project's DDiF set (decodable at any ``--res``); ``w0_initial``/``w0`` are not stored and come from the flags or
  ``hyper_params.py``.

Every file is read with ``torch.load(weights_only=True)`` onto the CPU; one that needs arbitrary unpickling is
refused with a message saying so.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from .distill import checkpoint_meta
from .errors import CheckpointError, UserError
from .synsets import DDiF, SynSet, synset_from_payload
from .synsets.base import read_torch_file
from .synsets.ddif import params_per_field

FORMATS = ("auto", "native", "mtt", "fred", "ddif")
_LAYER = re.compile(r"net\.(\d+)\.linear\.(weight|bias)$")


@dataclass
class Released:
    """What a checkpoint file holds: a synthetic set to decode (``synset``; ``fields``: official DDiF fields that
    become one once the instance size is known, :meth:`synset_for`) or decoded ``images`` with ``labels`` (int
    (N,) or soft (N, classes) probabilities), the run's ``meta`` (native files) and a learned ``lr``."""

    format: str
    synset: Optional[SynSet] = None
    fields: Optional["DDiFFields"] = None
    images: Optional[Tensor] = None
    labels: Optional[Tensor] = None
    meta: dict = field(default_factory=dict)
    lr: Optional[float] = None
    note: str = ""  # what the format assumes, for the one-line summary

    def synset_for(self, im_size) -> Optional[SynSet]:
        """The set to decode (official DDiF fields: built for instances of ``im_size``); None for decoded sets."""
        return self.fields.build(im_size) if self.fields is not None else self.synset

    def per_class(self) -> str:
        if self.fields is not None:
            return str(self.fields.per_class)
        if self.synset is not None:
            return str(self.synset.n_per_class)
        hard = self.labels if self.labels.dim() == 1 else self.labels.argmax(1)
        counts = torch.bincount(hard).tolist()
        return str(counts[0]) if len(set(counts)) == 1 else f"{min(counts)}-{max(counts)}"

    def describe(self, path: str) -> str:
        if self.fields is not None:
            what, kind = f"{self.fields.n_total} neural fields", "int labels"
        elif self.synset is not None:
            what = f"a {self.synset.name} set of {self.synset.n_total} instances of {tuple(self.synset.im_size)}"
            kind = "int labels"
        else:
            what = f"{len(self.images)} instances of {tuple(self.images.shape[1:])}"
            kind = "soft labels" if self.labels.dim() == 2 else "int labels"
        return (f"{path}: {self.format} format, {what}, {self.per_class()} per class, {kind}"
                + (f", saved evaluation lr {self.lr:g}" if self.lr is not None else "")
                + (f"; {self.note}" if self.note else ""))


def detect(path: str, obj) -> str:
    """The format of the object loaded from ``path``."""
    if isinstance(obj, Tensor):
        return "mtt"
    if isinstance(obj, dict):
        if "nf" in obj and "label" in obj:
            return "ddif"
        if "data" in obj and "accs_all_exps" in obj:
            return "fred"
        if "synset" in obj:
            return "native"
    raise CheckpointError(f"{path} is not a distilled set this code knows ({', '.join(FORMATS[1:])}): it holds a "
                          f"{type(obj).__name__}" + (f" with keys {sorted(obj)[:8]}" if isinstance(obj, dict) else ""))


def load(path: str, fmt: str = "auto", w0_initial: Optional[float] = None, w0: Optional[float] = None) -> Released:
    """The set in ``path``, in format ``fmt`` (``auto``: detected). ``w0_initial``/``w0``: the official DDiF
    format's frequencies (required for it)."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    obj = read_torch_file(path, "checkpoint")
    found = detect(path, obj)
    if fmt != "auto" and fmt != found:
        raise CheckpointError(f"{path} holds the {found} format, not {fmt} (leave out --format, or give the right "
                              f"file)")
    if found == "native":
        return _native(path, obj)
    if found == "mtt":
        return _mtt(path, obj)
    if found == "fred":
        return _fred(path, obj)
    return _ddif(path, obj, w0_initial, w0)


def _native(path: str, payload: dict) -> Released:
    if "synset" in payload and isinstance(payload["synset"], dict):  # a resume checkpoint.pt
        meta, payload = checkpoint_meta(payload), payload["synset"]
    else:
        meta = payload.get("meta", {})
    return Released("native", synset=synset_from_payload(payload, f"checkpoint {path}"), meta=meta,
                    lr=meta.get("lr_net"))


def _check_images(images, path: str) -> Tensor:
    if not isinstance(images, Tensor) or not images.is_floating_point() or images.dim() < 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise CheckpointError(f"{path}: expected float instances (N, C, ...), got {shape}")
    return images.detach().float()  # a learned set may be saved with requires_grad


def _labels(labels, n: int, path: str) -> Tensor:
    """Int labels (N,), or soft labels (N, classes) turned into probabilities (softmax of DATM's logits)."""
    if not isinstance(labels, Tensor) or labels.shape[:1] != (n,) or labels.dim() not in (1, 2):
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise CheckpointError(f"{path}: expected {n} labels, (N,) or (N, classes), got {shape}")
    if labels.dim() == 1:
        if labels.is_floating_point() and not torch.equal(labels, labels.round()):
            raise CheckpointError(f"{path}: 1-D labels must be class indices")
        return labels.detach().long()
    return torch.softmax(labels.detach().float(), dim=1)


def _mtt(path: str, images) -> Released:
    images = _check_images(images, path)
    folder, name = os.path.split(path)
    label_path = os.path.join(folder, name.replace("images", "labels", 1))
    if label_path == path or not os.path.isfile(label_path):
        raise CheckpointError(f"{path}: the labels file {label_path} beside it is missing (MTT saves "
                              f"images_best.pt and labels_best.pt together)")
    labels = _labels(read_torch_file(label_path, "labels file"), len(images), label_path)
    lr_path = os.path.join(folder, name.replace("images", "lr", 1))  # DATM saves its learned lr (lr_best.pt)
    lr = float(read_torch_file(lr_path, "lr file")) if lr_path != path and os.path.isfile(lr_path) else None
    return Released("mtt", images=images, labels=labels, lr=lr,
                    note="instances taken to be in the run's input space (mean/std-normalised; --zca if the run "
                         "whitened)" + ("" if lr is not None else "; no learned lr saved (--lr_net)"))


def _fred(path: str, obj: dict) -> Released:
    """FreD stores one ``[(images, labels)]`` per experiment (the original DC/DM code: ``[images, labels]``)."""
    data = obj["data"]
    last = data[-1] if isinstance(data, (list, tuple)) and data else None
    if isinstance(last, (list, tuple)) and len(last) == 1:
        last = last[0]
    if not isinstance(last, (list, tuple)) or len(last) != 2:
        raise CheckpointError(f"{path}: 'data' does not hold an (images, labels) pair per experiment")
    images = _check_images(last[0], path)
    return Released("fred", images=images, labels=_labels(last[1], len(images), path),
                    note=f"the last of {len(data)} experiment(s); decoded instances in the run's input space")


def _ddif(path: str, obj: dict, w0_initial: Optional[float], w0: Optional[float]) -> Released:
    fields, labels = obj["nf"], obj["label"]
    if not isinstance(fields, (list, tuple)) or not fields or not all(isinstance(f, dict) for f in fields):
        raise CheckpointError(f"{path}: 'nf' is not a list of SIREN state dicts")
    labels = _labels(labels, len(fields), path)
    if labels.dim() != 1:
        raise CheckpointError(f"{path}: a DDiF set has one class index per field")
    if w0_initial is None or w0 is None:
        raise UserError("the official DDiF format does not store the SIREN frequencies: pass --w0_initial and --w0 "
                        "(hyper_params.py's DDIF_ARCH rows hold the paper's)")
    shapes = _siren_shapes(fields[0], path)
    counts = torch.bincount(labels)
    if (counts != counts[0]).any() or (counts == 0).any():
        raise CheckpointError(f"{path}: classes hold {counts.tolist()} fields; a DDiF set has the same number per "
                              f"class")
    order = torch.sort(labels, stable=True).indices  # class by class, as this project stores fields
    weights = [torch.stack([_param(fields[i], k, s, path) for i in order.tolist()]) for k, s in shapes["weight"]]
    biases = [torch.stack([_param(fields[i], k, s, path) for i in order.tolist()]) for k, s in shapes["bias"]]
    dim_in, layer_size, dim_out = weights[0].shape[2], weights[0].shape[1], weights[-1].shape[1]
    num_layers, per_class = len(weights) - 1, int(counts[0])
    return Released("ddif", fields=DDiFFields(len(counts), dim_out, dim_in, num_layers, layer_size, per_class,
                                              float(w0_initial), float(w0), weights, biases),
                    lr=float(obj["syn_lr"]) if "syn_lr" in obj else None,
                    note=f"SIREN {dim_in}->{layer_size}x{num_layers}->{dim_out}, w0_initial {w0_initial:g}, "
                         f"w0 {w0:g}; coordinates in [-1, 1]")


def _siren_shapes(sd: dict, path: str) -> dict:
    hidden = sorted({int(m.group(1)) for k in sd if (m := _LAYER.match(k))})
    if not hidden or hidden != list(range(len(hidden))) or "last_layer.linear.weight" not in sd:
        raise CheckpointError(f"{path}: a field's keys {sorted(sd)[:6]} are not a SIREN's (net.<i>.linear.weight, "
                              f"..., last_layer.linear.weight)")
    names = [f"net.{i}.linear" for i in hidden] + ["last_layer.linear"]
    return {kind: [(f"{n}.{kind}", tuple(sd[f"{n}.{kind}"].shape)) for n in names] for kind in ("weight", "bias")}


def _param(sd: dict, key: str, shape: tuple, path: str) -> Tensor:
    t = sd.get(key)
    if not isinstance(t, Tensor) or tuple(t.shape) != shape:
        got = tuple(t.shape) if isinstance(t, Tensor) else "missing"
        raise CheckpointError(f"{path}: a field's {key} is {got}, the first field's is {shape}")
    return t.float()


@dataclass
class DDiFFields:
    """An official DDiF set's fields, stacked class by class, before the instance size is known."""
    num_classes: int
    channel: int
    dim_in: int
    num_layers: int
    layer_size: int
    per_class: int
    w0_initial: float
    w0: float
    weights: list
    biases: list

    @property
    def n_total(self) -> int:
        return self.num_classes * self.per_class

    def build(self, im_size) -> DDiF:
        """This project's DDiF set at instance size ``im_size`` (the smallest ipc whose budget holds the fields)."""
        if len(im_size) != self.dim_in:
            raise UserError(f"the fields take {self.dim_in}-D coordinates; the dataset's instances are "
                            f"{tuple(im_size)}")
        ppf = params_per_field(self.dim_in, self.num_layers, self.layer_size, self.channel)
        ipc = max(1, math.ceil(self.per_class * ppf / (self.channel * math.prod(im_size))))
        s = DDiF(self.num_classes, self.channel, im_size, ipc, dipc=self.per_class, dim_in=self.dim_in,
                 num_layers=self.num_layers, layer_size=self.layer_size, dim_out=self.channel,
                 w0_initial=self.w0_initial, w0=self.w0)
        with torch.no_grad():
            for p, t in zip([*s.weights, *s.biases], [*self.weights, *self.biases]):
                p.copy_(t)
        return s
