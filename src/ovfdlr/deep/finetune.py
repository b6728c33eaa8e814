"""Optional fine-tuning of a backbone on the training cohort, then features from it.

A linear head with one output per class of the run's label scheme (:mod:`ovfdlr.labels`;
ASTLOF's three by default) is put on the backbone's 2048-D output and the whole network is
trained on the **training cohort only**:

- a patient-grouped, class-stratified hold-out (``holdout``, default 20 % of the training
  patients) decides early stopping (``patience`` epochs without a lower hold-out loss) and the
  epoch whose weights are kept; no other cohort is ever seen;
- class-weighted cross-entropy, weights ``n / (K * n_k)`` from the training part;
- light augmentation on the [0, 1] inputs before normalisation: horizontal and vertical flips,
  rotations within +-``rotation_deg``, brightness and contrast jitter of +-``intensity_jitter``;
- AdamW; BatchNorm statistics stay frozen (small batches on CPU would make them noisy);
- seeded and deterministic on CPU (``torch.use_deterministic_algorithms``, one generator for
  batch order and augmentation).

The result is saved as safetensors (backbone and head, with the architecture, preprocessing,
base weights, class values and settings in the file's metadata; the format is
:mod:`ovfdlr.deep.finetuned`) beside its training curve (CSV), and loaded back with
:func:`ovfdlr.deep.backbones.load_finetuned`.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ovfdlr.deep.backbones import Backbone, state_digest
from ovfdlr.deep.finetuned import write_finetuned
from ovfdlr.deep.inputs import normalize
from ovfdlr.labels import DEFAULT, LabelScheme


@dataclass(frozen=True)
class FinetuneSettings:
    """Fine-tuning settings (``epochs=0`` means no fine-tuning)."""

    epochs: int = 0
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    holdout: float = 0.2
    patience: int = 3
    rotation_deg: float = 10.0
    intensity_jitter: float = 0.1
    flips: bool = True
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimiser steps (quick checks)


@dataclass
class FinetuneResult:
    """The fine-tuned backbone, its head, the training curve and the hold-out cases."""

    backbone: Backbone
    head: nn.Linear
    curve: pd.DataFrame
    best_epoch: int
    holdout_index: np.ndarray
    settings: FinetuneSettings
    base_spec: str = ""
    classes: tuple[int, ...] = DEFAULT.values  # the class value of each head output
    extra: dict = field(default_factory=dict)


def _normalize_torch(x: torch.Tensor, normalization: str) -> torch.Tensor:
    """:func:`ovfdlr.deep.inputs.normalize` on a tensor of inputs (no gradient flows here)."""
    return torch.from_numpy(normalize(x.detach().numpy(), normalization))


def augment(x: torch.Tensor, settings: FinetuneSettings, generator: torch.Generator):
    """Flips, small rotations and intensity jitter of a batch in [0, 1] (seeded)."""
    n = x.shape[0]
    if settings.flips:
        horizontal = torch.rand(n, generator=generator) < 0.5
        vertical = torch.rand(n, generator=generator) < 0.5
        x = torch.where(horizontal.view(-1, 1, 1, 1), x.flip(3), x)
        x = torch.where(vertical.view(-1, 1, 1, 1), x.flip(2), x)
    if settings.rotation_deg > 0:
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(settings.rotation_deg)
        cos, sin = torch.cos(angle), torch.sin(angle)
        zeros = torch.zeros(n)
        theta = torch.stack(
            [torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1
        )
        grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        x = nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
    if settings.intensity_jitter > 0:
        j = settings.intensity_jitter
        contrast = 1 + (torch.rand(n, generator=generator) * 2 - 1) * j
        brightness = (torch.rand(n, generator=generator) * 2 - 1) * j
        x = (x - 0.5) * contrast.view(-1, 1, 1, 1) + 0.5 + brightness.view(-1, 1, 1, 1)
    return x.clamp(0.0, 1.0)


def holdout_split(
    labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, hold-out): the first of ``round(1 / fraction)`` patient-grouped,
    class-stratified folds (:func:`ovfdlr.cohort.patient_folds`)."""
    from ovfdlr.cohort import patient_folds

    n_splits = max(2, round(1 / fraction))
    try:
        train, hold = patient_folds(labels, groups, n_splits, seed)[0]
    except ValueError as exc:
        raise ValueError(f"fine-tuning hold-out: {exc}") from None
    return train, hold


def _freeze_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


@dataclass
class _Data:
    """The training-cohort tensors of one fine-tuning: inputs, head indices, the split."""

    x: torch.Tensor  # (N, 3, H, W) in [0, 1]
    y: torch.Tensor  # head index of each row
    train_idx: np.ndarray
    hold_idx: np.ndarray
    class_weights: np.ndarray  # n / (K n_k) from the training part


def prepare_data(
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    settings: FinetuneSettings,
    scheme: LabelScheme,
) -> _Data:
    """Map label values to head indices (``scheme.index``), split off the patient-grouped
    hold-out and weight the classes from the training part."""
    labels = np.asarray(labels, dtype=np.int64)
    indices = np.array([scheme.index(v) for v in labels], dtype=np.int64)
    train_idx, hold_idx = holdout_split(labels, np.asarray(groups), settings.holdout, settings.seed)
    k = scheme.n_classes
    counts = np.bincount(indices[train_idx], minlength=k).astype(float)
    weights = np.where(counts > 0, len(train_idx) / (k * np.maximum(counts, 1)), 0.0)
    return _Data(
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
        torch.from_numpy(indices),
        train_idx,
        hold_idx,
        weights,
    )


@dataclass
class _Training:
    """The network being trained and what trains it."""

    model: nn.Sequential  # (trunk, head)
    optimiser: torch.optim.Optimizer
    loss_fn: nn.Module
    generator: torch.Generator  # batch order and augmentation
    normalization: str
    device: str = "cpu"  # where the network is; batches are made on the CPU

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.device == "cpu" else x.to(self.device, non_blocking=True)


def _train_epoch(
    training: _Training, data: _Data, settings: FinetuneSettings, steps: int
) -> tuple[list[float], int]:
    """One pass over the training part in a seeded order; the batch losses and the step count
    (stopping early at ``settings.max_steps``)."""
    model = training.model
    model.train()
    _freeze_batchnorm(model)
    permutation = torch.randperm(len(data.train_idx), generator=training.generator)
    order = data.train_idx[permutation.numpy()]
    losses = []
    for start in range(0, len(order), settings.batch_size):
        batch = order[start : start + settings.batch_size]
        x = augment(data.x[batch], settings, training.generator)
        logits = model(training.to_device(_normalize_torch(x, training.normalization)))
        loss = training.loss_fn(logits, training.to_device(data.y[batch]))
        training.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        training.optimiser.step()
        losses.append(float(loss.detach()))
        steps += 1
        if settings.max_steps is not None and steps >= settings.max_steps:
            break
    return losses, steps


def _holdout_metrics(training: _Training, data: _Data) -> tuple[float, float]:
    """Loss and accuracy on the hold-out (no augmentation, batches of 32)."""
    model, hold = training.model, data.hold_idx
    model.eval()
    with torch.inference_mode():
        logits = torch.cat(
            [
                model(
                    training.to_device(
                        _normalize_torch(data.x[hold[i : i + 32]], training.normalization)
                    )
                )
                for i in range(0, len(hold), 32)
            ]
        )
        target = training.to_device(data.y[hold])
        loss = float(training.loss_fn(logits, target))
        accuracy = float((logits.argmax(1) == target).float().mean())
    return loss, accuracy


def _train(training: _Training, data: _Data, settings: FinetuneSettings) -> tuple[list, int]:
    """The epoch loop with early stopping on the hold-out loss; leaves the best epoch's weights
    in the model and returns the curve's rows and that epoch."""
    rows, best, best_state, best_epoch, stale, steps = [], math.inf, None, 0, 0, 0
    for epoch in range(1, settings.epochs + 1):
        losses, steps = _train_epoch(training, data, settings, steps)
        hold_loss, hold_accuracy = _holdout_metrics(training, data)
        rows.append(
            {
                "epoch": epoch,
                "steps": steps,
                "train_loss": float(np.mean(losses)),
                "holdout_loss": hold_loss,
                "holdout_accuracy": hold_accuracy,
            }
        )
        if hold_loss < best:
            best, best_epoch, stale = hold_loss, epoch, 0
            best_state = copy.deepcopy(training.model.state_dict())
        else:
            stale += 1
        if stale >= settings.patience or (
            settings.max_steps is not None and steps >= settings.max_steps
        ):
            break
    if best_state is None:  # the hold-out loss was never finite
        raise ValueError("fine-tuning diverged: the hold-out loss was never finite")
    training.model.load_state_dict(best_state)
    return rows, best_epoch


def finetune(
    backbone: Backbone,
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    settings: FinetuneSettings,
    scheme: LabelScheme = DEFAULT,
    *,
    device: str = "cpu",
) -> FinetuneResult:
    """Fine-tune ``backbone`` (not modified) on training-cohort inputs (N, 3, H, W) in [0, 1].

    ``labels`` are class values of ``scheme`` (default ASTLOF 0-2; head output ``i`` is class
    ``scheme.values[i]``) and ``groups`` the patient ids of the same rows. ``device``: where the
    network trains (``cpu`` or ``cuda``); batches are drawn and augmented on the CPU with the
    seeded generator either way, and the result is returned on the CPU.
    """
    if settings.epochs < 1:
        raise ValueError("fine-tuning needs epochs >= 1")
    data = prepare_data(images, labels, groups, settings, scheme)
    if device == "cuda":  # deterministic cuBLAS needs a fixed workspace (CUDA's documentation)
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        trunk = copy.deepcopy(backbone.model)
        head = nn.Linear(2048, scheme.n_classes)
        model = nn.Sequential(trunk, head).to(device)
        optimiser = torch.optim.AdamW(
            model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        loss_fn = nn.CrossEntropyLoss(
            weight=torch.tensor(data.class_weights, dtype=torch.float32, device=device)
        )
        training = _Training(model, optimiser, loss_fn, generator, backbone.normalization, device)
        rows, best_epoch = _train(training, data, settings)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    model.to("cpu").eval()
    tuned = Backbone(
        trunk,
        f"finetuned({backbone.spec})",
        backbone.family,
        backbone.architecture,
        backbone.normalization,
        state_digest(trunk),
        True,
    )
    return FinetuneResult(
        tuned,
        head,
        pd.DataFrame(rows),
        best_epoch,
        data.hold_idx,
        settings,
        base_spec=backbone.spec,
        classes=scheme.values,
    )


def save_finetuned(result: FinetuneResult, path: str | Path, extra: dict | None = None) -> Path:
    """Write backbone and head as safetensors (metadata inside, see
    :mod:`ovfdlr.deep.finetuned`) and the curve as CSV beside."""
    metadata = {
        "architecture": result.backbone.architecture,
        "normalization": result.backbone.normalization,
        "family": result.backbone.family,
        "base_weights": result.base_spec,
        "best_epoch": str(result.best_epoch),
        "classes": json.dumps([int(v) for v in result.classes]),
        "settings": json.dumps(asdict(result.settings)),
        "extra": json.dumps(extra or {}, default=str),
    }
    return write_finetuned(
        path,
        result.backbone.model.state_dict(),
        result.head.state_dict(),
        metadata,
        result.curve,
    )
