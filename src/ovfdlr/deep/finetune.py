"""Optional fine-tuning of a backbone on the training cohort, then features from it.

A 3-class linear head is put on the backbone's 2048-D output and the whole network is trained
on the **training cohort only**:

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
base weights and settings in the file's metadata) beside its training curve (CSV).
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

from ovfdlr.cache import atomic_write_bytes
from ovfdlr.deep.backbones import (
    Backbone,
    KerasResNet50,
    WeightsError,
    load_strict,
    state_digest,
    torchvision_resnet50,
)
from ovfdlr.deep.inputs import normalize

N_CLASSES = 3
METADATA_KEY = "ovfdlr_finetuned"


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


def finetune(
    backbone: Backbone,
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    settings: FinetuneSettings,
) -> FinetuneResult:
    """Fine-tune ``backbone`` (not modified) on training-cohort inputs (N, 3, H, W) in [0, 1].

    ``labels`` are the ASTLOF classes 0-2 and ``groups`` the patient ids of the same rows.
    """
    if settings.epochs < 1:
        raise ValueError("fine-tuning needs epochs >= 1")
    labels = np.asarray(labels, dtype=np.int64)
    train_idx, hold_idx = holdout_split(labels, np.asarray(groups), settings.holdout, settings.seed)
    counts = np.bincount(labels[train_idx], minlength=N_CLASSES).astype(float)
    weights = np.where(counts > 0, len(train_idx) / (N_CLASSES * np.maximum(counts, 1)), 0.0)

    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        trunk = copy.deepcopy(backbone.model)
        head = nn.Linear(2048, N_CLASSES)
        model = nn.Sequential(trunk, head)
        optimiser = torch.optim.AdamW(
            model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
        x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        y_all = torch.from_numpy(labels.copy())

        def holdout_metrics() -> tuple[float, float]:
            model.eval()
            with torch.inference_mode():
                logits = torch.cat(
                    [
                        model(_normalize_torch(x_all[hold_idx[i : i + 32]], backbone.normalization))
                        for i in range(0, len(hold_idx), 32)
                    ]
                )
                target = y_all[hold_idx]
                loss = float(loss_fn(logits, target))
                accuracy = float((logits.argmax(1) == target).float().mean())
            return loss, accuracy

        rows, best, best_state, best_epoch, stale, steps = [], math.inf, None, 0, 0, 0
        for epoch in range(1, settings.epochs + 1):
            model.train()
            _freeze_batchnorm(model)
            order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
            losses = []
            for start in range(0, len(order), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                x = augment(x_all[batch], settings, generator)
                logits = model(_normalize_torch(x, backbone.normalization))
                loss = loss_fn(logits, y_all[batch])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()))
                steps += 1
                if settings.max_steps is not None and steps >= settings.max_steps:
                    break
            hold_loss, hold_accuracy = holdout_metrics()
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
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            if stale >= settings.patience or (
                settings.max_steps is not None and steps >= settings.max_steps
            ):
                break
        if best_state is None:  # the hold-out loss was never finite
            raise ValueError("fine-tuning diverged: the hold-out loss was never finite")
        model.load_state_dict(best_state)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    model.eval()
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
        tuned, head, pd.DataFrame(rows), best_epoch, hold_idx, settings, base_spec=backbone.spec
    )


def save_finetuned(result: FinetuneResult, path: str | Path, extra: dict | None = None) -> Path:
    """Write backbone and head as safetensors (metadata inside) and the curve as CSV beside."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"backbone.{k}": v.contiguous() for k, v in result.backbone.model.state_dict().items()
    }
    tensors |= {f"head.{k}": v.contiguous() for k, v in result.head.state_dict().items()}
    metadata = {
        METADATA_KEY: "1",
        "architecture": result.backbone.architecture,
        "normalization": result.backbone.normalization,
        "family": result.backbone.family,
        "base_weights": result.base_spec,
        "best_epoch": str(result.best_epoch),
        "settings": json.dumps(asdict(result.settings)),
        "extra": json.dumps(extra or {}, default=str),
    }
    # curve first, weights last, each renamed into place: a file that exists is complete
    curve = path.with_suffix(".curve.csv")
    atomic_write_bytes(curve, result.curve.to_csv(index=False).encode())
    partial = path.with_name(f".{path.name}.partial")
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(path)
    return path


def is_finetuned_file(path: str | Path) -> bool:
    """True for a safetensors file written by :func:`save_finetuned`."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return (handle.metadata() or {}).get(METADATA_KEY) == "1"


def load_finetuned(path: str | Path, spec: str | None = None) -> tuple[Backbone, nn.Linear]:
    """The backbone and head saved by :func:`save_finetuned`, loaded strictly."""
    from safetensors import safe_open

    path = Path(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    if metadata.get(METADATA_KEY) != "1":
        raise WeightsError(f"{path}: not a fine-tuned ovfdlr weights file")
    architecture = metadata["architecture"]
    trunk = KerasResNet50() if architecture == "keras-resnet50" else torchvision_resnet50()
    head = nn.Linear(2048, N_CLASSES)
    load_strict(
        trunk,
        {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")},
        str(path),
    )
    load_strict(
        head,
        {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")},
        str(path),
    )
    backbone = Backbone(
        trunk.eval(),
        spec or f"file:{path}",
        metadata.get("family", "file"),
        architecture,
        metadata["normalization"],
        state_digest(trunk),  # as when the weights were made: features cache across the two
        True,
    )
    return backbone, head.eval()
