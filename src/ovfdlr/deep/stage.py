"""The deep-feature stage of one arm: weights -> (fine-tuning) -> features -> (PCA) -> Grad-CAM.

Used by ``ovfdlr extract deep`` and by ``ovfdlr run``. Only the training cohort ever reaches
fine-tuning or the PCA fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ovfdlr.cache import file_digest, stable_hash
from ovfdlr.cohort import labelled_rows
from ovfdlr.deep.inputs import InputSettings
from ovfdlr.extraction import ExtractionResult, tasks_from_cohort
from ovfdlr.labels import LabelScheme
from ovfdlr.parallel import TaskFailure, console, run_tasks


@dataclass
class DeepStageResult:
    """What the stage produced; paths are None for the optional parts that did not run."""

    extraction: ExtractionResult
    backbone_label: str
    pretrained: bool
    features: pd.DataFrame
    finetuned_path: Path | None = None
    curve: pd.DataFrame | None = None
    pca_path: Path | None = None
    gradcam: list[Path] = field(default_factory=list)


def _prepare_images(cohort, settings, jobs, progress, description):
    from ovfdlr.deep.features import _Prepare

    tasks = tasks_from_cohort(cohort)
    results = run_tasks(
        _Prepare(settings), tasks, jobs=jobs, description=description, progress=progress
    )
    kept = [
        (t.case_id, r)
        for t, r in zip(tasks, results, strict=True)
        if not isinstance(r, TaskFailure)
    ]
    return [c for c, _ in kept], (
        np.stack([r.image for _, r in kept]) if kept else np.empty((0, 3, 1, 1), np.float32)
    )


def _load_weights(spec: str, arm: str, normalization: str | None):
    """The arm's base backbone, with its normalisation overridden when asked."""
    from ovfdlr.deep.backbones import load_backbone

    backbone = load_backbone(spec)
    if normalization:
        backbone.normalization = normalization
    if not backbone.pretrained:
        console.print(
            f"[yellow]note:[/] arm '{arm}' uses an untrained ResNet-50 ({spec}): its deep "
            "features carry no pretrained knowledge"
        )
    return backbone


def _finetune_key(
    backbone,
    finetune,
    settings: InputSettings,
    scheme: LabelScheme,
    train: pd.DataFrame,
    device: str = "cpu",
) -> str:
    """What decides the fine-tuned weights: the base weights, the fine-tuning and input
    settings, the classes (the head's outputs), each training case's content, label and
    patient, and the device when it is not the CPU."""
    from ovfdlr.deep.features import backbone_identity

    return stable_hash(
        "finetune",
        backbone_identity(backbone, device),
        asdict(finetune),
        settings.as_dict(),
        list(scheme.values),
        [
            (
                file_digest(r.image),
                file_digest(r.mask),
                int(r.mask_label),
                int(r.label),
                str(r.patient_id),
            )
            for r in train.itertuples(index=False)
        ],
    )


def _finetuned(
    backbone,
    cohort: pd.DataFrame,
    arm: str,
    out_dir: Path,
    settings: InputSettings,
    finetune,
    labels: LabelScheme | None,
    training: str,
    jobs: int | None,
    progress: bool,
    device: str = "cpu",
):
    """The fine-tuned backbone and head of the arm: reused from ``out_dir`` when the file
    there was made from the same training data and settings, else trained and saved."""
    from ovfdlr.deep.backbones import load_finetuned
    from ovfdlr.deep.finetune import finetune as run_finetune
    from ovfdlr.deep.finetune import save_finetuned
    from ovfdlr.deep.finetuned import curve_path, recorded_extra
    from ovfdlr.labels import DEFAULT

    scheme = labels or DEFAULT
    train = labelled_rows(cohort, training)
    key = _finetune_key(backbone, finetune, settings, scheme, train, device)
    path = out_dir / f"finetuned-{arm}.safetensors"
    if (recorded_extra(path) or {}).get("key") == key and curve_path(path).is_file():
        tuned, head = load_finetuned(path, f"file:{path}")
        console.print(f"fine-tuned weights of '{arm}' reused from {path}")
        return path, tuned, head
    ids, images = _prepare_images(train, settings, jobs, progress, f"fine-tuning inputs ({arm})")
    values = train.loc[ids, "label"].astype(int).to_numpy()
    groups = train.loc[ids, "patient_id"].astype(str).to_numpy()
    result = run_finetune(backbone, images, values, groups, finetune, scheme, device=device)
    save_finetuned(result, path, extra={"key": key, "arm": arm})
    return path, result.backbone, result.head


def _grad_cam_overlays(tuned, head, cohort, cases, settings, out_dir: Path, arm: str):
    """Grad-CAM overlays of the chosen cases (those in the cohort) under ``gradcam-<arm>/``."""
    from ovfdlr.deep.gradcam import grad_cam, save_overlays

    chosen = cohort.loc[[c for c in cases if c in cohort.index]]
    ids, images = _prepare_images(chosen, settings, 1, False, "grad-cam")
    if not ids:
        return []
    maps = grad_cam(tuned, head, images)
    titles = [
        f"{c} ({cohort.loc[c, 'cohort']}, class "
        f"{'?' if pd.isna(cohort.loc[c, 'label']) else int(cohort.loc[c, 'label'])})"
        for c in ids
    ]
    return save_overlays(images, maps, ids, out_dir / f"gradcam-{arm}", titles)


def run_deep_stage(
    cohort: pd.DataFrame,
    spec: str,
    arm: str,
    out_dir: str | Path,
    *,
    settings: InputSettings | None = None,
    finetune=None,
    labels: LabelScheme | None = None,
    normalization: str | None = None,
    pca_components: int | None = None,
    training: str = "train",
    gradcam_cases: list[str] | None = None,
    batch_size: int = 16,
    threads: int | None = None,
    jobs: int | None = 1,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    device: str = "cpu",
    mixed_precision: bool = False,
) -> DeepStageResult:
    """Run the deep stage of one arm; files go to ``out_dir`` (fine-tuned weights, PCA, PNGs).

    ``labels`` is the run's label scheme (default ASTLOF): the fine-tuning head has one output
    per class. ``device`` (``cpu`` or ``cuda``, already resolved) runs fine-tuning and
    inference; ``mixed_precision`` the inference only (:mod:`ovfdlr.deep.device`).
    """
    from ovfdlr.deep.features import extract_deep, training_pca
    from ovfdlr.deep.finetuned import curve_path

    settings = settings or InputSettings()
    out_dir = Path(out_dir)
    backbone = _load_weights(spec, arm, normalization)
    result = DeepStageResult(None, backbone.label, backbone.pretrained, pd.DataFrame())

    if finetune is not None and finetune.epochs > 0:
        path, backbone, head = _finetuned(
            backbone,
            cohort,
            arm,
            out_dir,
            settings,
            finetune,
            labels,
            training,
            jobs,
            progress,
            device,
        )
        result.finetuned_path = path
        result.curve = pd.read_csv(curve_path(path))
        result.backbone_label = f"{backbone.label}, fine-tuned on '{training}'"
        if gradcam_cases:
            result.gradcam = _grad_cam_overlays(
                backbone, head, cohort, gradcam_cases, settings, out_dir, arm
            )

    extraction = extract_deep(
        cohort,
        backbone,
        arm,
        settings,
        batch_size=batch_size,
        threads=threads,
        jobs=jobs,
        cache_dir=cache_dir,
        progress=progress,
        device=device,
        mixed_precision=mixed_precision,
    )
    result.extraction = extraction
    result.features = extraction.features
    if pca_components:
        pca = training_pca(extraction.features, cohort, pca_components, training=training)
        result.pca_path = out_dir / f"pca-{arm}.npz"
        out_dir.mkdir(parents=True, exist_ok=True)
        pca.save(result.pca_path)
        result.features = pca.transform(extraction.features)
    return result
