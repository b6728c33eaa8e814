"""Deep transfer-learning (DTL) features: 2048-D ResNet-50 outputs per case, cached.

For every case: prepare its 2-D input (:mod:`ovfdlr.deep.inputs`, in worker processes), run
the backbone in batches under ``torch.inference_mode`` and keep the 2048-D global-average-pooled
output of the last stage as columns ``dtl-<arm>_0000`` ... ``dtl-<arm>_2047``. Each case's
vector is cached under its image and mask content hashes, mask label, the input settings and
the weights' identity (file SHA-256 and preprocessing), written as soon as its batch finishes.

An optional PCA (:func:`training_pca`) is fitted on the training cohort only and applied
unchanged to every other cohort.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.cache import CaseCache, stable_hash
from ovfdlr.deep.inputs import InputSettings, PreparedInput, normalize, prepare_case
from ovfdlr.extraction import (
    CacheDir,
    CaseTask,
    ExtractionResult,
    assemble,
    damaged_count,
    lookup,
    resolve_cache_dir,
)
from ovfdlr.parallel import TaskFailure, run_tasks

N_FEATURES = 2048
CHUNK = 256  # cases prepared at a time: bounds memory to about 150 MB of inputs


def column_names(arm: str, n: int = N_FEATURES) -> list[str]:
    """``dtl-<arm>_0000`` ... (the arm names the weights, e.g. radimagenet)."""
    return [f"dtl-{arm}_{i:04d}" for i in range(n)]


@dataclass(frozen=True)
class _Prepare:
    """Picklable input preparation for worker processes."""

    settings: InputSettings

    def __call__(self, task: CaseTask) -> PreparedInput:
        return prepare_case(task.image, task.mask, task.mask_label, self.settings, task.series_uid)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run a block with ``torch.set_num_threads(threads)`` (None: leave as is)."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def embed(
    model,
    images: np.ndarray,
    normalization: str,
    batch_size: int = 16,
    *,
    device: str = "cpu",
    mixed_precision: bool = False,
) -> np.ndarray:
    """Backbone outputs (N, 2048) for prepared images (N, 3, H, W) in [0, 1], in batches, on
    ``device`` (the model must be there; :mod:`ovfdlr.deep.device`)."""
    import torch

    from ovfdlr.deep.device import autocast

    outputs = []
    model.eval()
    with torch.inference_mode(), autocast(device, mixed_precision):
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(normalize(images[start : start + batch_size], normalization))
            if device != "cpu":
                batch = batch.to(device, non_blocking=True)
            outputs.append(model(batch).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.empty((0, N_FEATURES), np.float32)


def backbone_identity(
    backbone, device: str = "cpu", mixed_precision: bool = False
) -> dict[str, Any]:
    """What makes two backbones give the same features: weights, architecture, preprocessing,
    and the device and precision when they are not float32 on the CPU."""
    from ovfdlr.deep.backbones import spec_digest, state_digest
    from ovfdlr.deep.device import identity

    weights = backbone.weights_sha256 or (
        spec_digest(backbone.spec) if not backbone.pretrained else state_digest(backbone.model)
    )
    return {
        "weights": weights,
        "architecture": backbone.architecture,
        "normalization": backbone.normalization,
        **identity(device, mixed_precision),
    }


def extract_deep(
    cohort: pd.DataFrame,
    backbone,
    arm: str,
    settings: InputSettings | None = None,
    *,
    batch_size: int = 16,
    threads: int | None = None,
    jobs: int | None = 1,
    cache_dir: CacheDir = True,
    progress: bool = True,
    device: str = "cpu",
    mixed_precision: bool = False,
) -> ExtractionResult:
    """DTL features of every case of a cohort with a loaded backbone, run on ``device``
    (``cpu`` or ``cuda``, resolved by :func:`ovfdlr.deep.device.resolve_device`).

    Returns an :class:`ovfdlr.extraction.ExtractionResult` (features float64, index case_id;
    failed cases with their reasons in ``errors``).
    """
    from ovfdlr.extraction import tasks_from_cohort

    settings = settings or InputSettings()
    tasks = tasks_from_cohort(cohort)
    identity = backbone_identity(backbone, device, mixed_precision)
    settings_hash = stable_hash("deep", settings.as_dict(), identity)
    root = resolve_cache_dir(cache_dir)
    cache = CaseCache(root, "deep") if root is not None else None
    hits, keys, pending, errors = lookup("deep", settings_hash, tasks, cache)
    columns = column_names(arm)
    results = {
        i: {"features": dict(zip(columns, hit["features"], strict=True))} for i, hit in hits.items()
    }
    n_cached = len(results)

    model = backbone.model.to(device) if pending and device != "cpu" else backbone.model
    with torch_threads(threads), _back_to_cpu(backbone, device):
        for start in range(0, len(pending), CHUNK):
            chunk = pending[start : start + CHUNK]
            prepared = run_tasks(
                _Prepare(settings),
                [tasks[i] for i in chunk],
                jobs=jobs,
                description=f"deep inputs ({arm})",
                progress=progress,
            )
            ready = []
            for position, result in zip(chunk, prepared, strict=True):
                if isinstance(result, TaskFailure):
                    case_id = tasks[position].case_id
                    errors.append({"case_id": case_id, "stage": "deep", "reason": result.reason})
                else:
                    ready.append((position, result))
            for batch_start in range(0, len(ready), batch_size):
                batch = ready[batch_start : batch_start + batch_size]
                images = np.stack([p.image for _, p in batch])
                out = embed(
                    model,
                    images,
                    backbone.normalization,
                    batch_size,
                    device=device,
                    mixed_precision=mixed_precision,
                )
                for (position, _), vector in zip(batch, out, strict=True):
                    values = vector.astype(np.float64).tolist()
                    results[position] = {"features": dict(zip(columns, values, strict=True))}
                    if cache is not None:
                        cache.put(keys[position], {"features": values})

    extraction = assemble(tasks, results, errors, n_cached)
    extraction.damaged = damaged_count(cache)
    extraction.features = extraction.features.reindex(columns=columns)
    extraction.diagnostics = pd.DataFrame(
        {
            "backbone": backbone.label,
            "pretrained": str(backbone.pretrained),
            "weights_sha256": identity["weights"],
            "normalization": backbone.normalization,
            "input_settings": str(settings.as_dict()),
        },
        index=extraction.features.index,
    )
    return extraction


@contextlib.contextmanager
def _back_to_cpu(backbone, device: str):
    """Leave the backbone's weights on the CPU after a block that ran them on ``device``."""
    try:
        yield
    finally:
        if device != "cpu":
            backbone.model.to("cpu")


@dataclass
class TrainingPCA:
    """A PCA fitted on the training cohort only; ``transform`` applies it to any cohort."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    prefix: str

    def transform(self, features: pd.DataFrame) -> pd.DataFrame:
        values = (features.to_numpy(np.float64) - self.mean) @ self.components.T
        columns = [f"{self.prefix}_pc{i:03d}" for i in range(values.shape[1])]
        return pd.DataFrame(values, index=features.index, columns=columns)

    def save(self, path: str | Path) -> None:
        """Write the PCA as ``.npz`` (atomically: a file that exists is complete)."""
        from ovfdlr.atomic import atomic_path

        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.savez(
                handle,
                mean=self.mean,
                components=self.components,
                explained_variance_ratio=self.explained_variance_ratio,
                prefix=np.array(self.prefix),
            )

    @classmethod
    def load(cls, path: str | Path) -> TrainingPCA:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                data["mean"],
                data["components"],
                data["explained_variance_ratio"],
                str(data["prefix"]),
            )


def training_pca(
    features: pd.DataFrame,
    cohort: pd.DataFrame,
    n_components: int,
    *,
    training: str = "train",
    seed: int = 0,
) -> TrainingPCA:
    """Fit a PCA with ``n_components`` on the rows of the training cohort only.

    Raises ``ValueError`` when the training cohort has fewer cases than components.
    """
    from sklearn.decomposition import PCA

    from ovfdlr.cohort import labelled_rows

    train_ids = labelled_rows(cohort, training).index
    train = features.loc[features.index.intersection(train_ids, sort=False)]
    if len(train) < n_components:
        raise ValueError(
            f"PCA with {n_components} components needs at least as many '{training}' cases "
            f"(found {len(train)})"
        )
    pca = PCA(n_components=n_components, random_state=seed, svd_solver="full")
    pca.fit(train.to_numpy(np.float64))
    prefix = features.columns[0].rsplit("_", 1)[0] if len(features.columns) else "dtl"
    return TrainingPCA(pca.mean_, pca.components_, pca.explained_variance_ratio_, prefix)
