"""The deep-feature stage of one arm: weights -> (fine-tuning) -> features -> (PCA) -> Grad-CAM.

Used by ``ovfdlr extract deep`` and by ``ovfdlr run``. Only the training cohort ever reaches
fine-tuning or the PCA fit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ovfdlr.cache import file_digest, stable_hash
from ovfdlr.cohort import labelled_rows
from ovfdlr.deep.inputs import InputSettings
from ovfdlr.extraction import ExtractionResult, tasks_from_cohort
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


def _saved_key(path: Path) -> str | None:
    """The key recorded in a fine-tuned weights file; None when absent or unreadable."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads((handle.metadata() or {}).get("extra", "{}")).get("key")
    except Exception:  # a damaged file (a crash while writing it) is simply made again
        return None


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


def run_deep_stage(
    cohort: pd.DataFrame,
    spec: str,
    arm: str,
    out_dir: str | Path,
    *,
    settings: InputSettings | None = None,
    finetune=None,
    normalization: str | None = None,
    pca_components: int | None = None,
    training: str = "train",
    gradcam_cases: list[str] | None = None,
    batch_size: int = 16,
    threads: int | None = None,
    jobs: int | None = 1,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> DeepStageResult:
    """Run the deep stage of one arm; files go to ``out_dir`` (fine-tuned weights, PCA, PNGs)."""
    from ovfdlr.deep.backbones import load_backbone
    from ovfdlr.deep.features import backbone_identity, extract_deep, training_pca

    settings = settings or InputSettings()
    out_dir = Path(out_dir)
    backbone = load_backbone(spec)
    if normalization:
        backbone.normalization = normalization
    if not backbone.pretrained:
        console.print(
            f"[yellow]note:[/] arm '{arm}' uses an untrained ResNet-50 ({spec}): its deep "
            "features carry no pretrained knowledge"
        )
    result = DeepStageResult(None, backbone.label, backbone.pretrained, pd.DataFrame())

    if finetune is not None and finetune.epochs > 0:
        from ovfdlr.deep.finetune import finetune as run_finetune
        from ovfdlr.deep.finetune import load_finetuned, save_finetuned

        train = labelled_rows(cohort, training)
        key = stable_hash(
            "finetune",
            backbone_identity(backbone),
            asdict(finetune),
            settings.as_dict(),
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
        path = out_dir / f"finetuned-{arm}.safetensors"
        if _saved_key(path) == key and path.with_suffix(".curve.csv").is_file():
            tuned, head = load_finetuned(path, f"file:{path}")
            console.print(f"fine-tuned weights of '{arm}' reused from {path}")
        else:
            ids, images = _prepare_images(
                train, settings, jobs, progress, f"fine-tuning inputs ({arm})"
            )
            labels = train.loc[ids, "label"].astype(int).to_numpy()
            groups = train.loc[ids, "patient_id"].astype(str).to_numpy()
            finetuned = run_finetune(backbone, images, labels, groups, finetune)
            save_finetuned(finetuned, path, extra={"key": key, "arm": arm})
            tuned, head = finetuned.backbone, finetuned.head
        result.finetuned_path = path
        result.curve = pd.read_csv(path.with_suffix(".curve.csv"))
        backbone = tuned
        result.backbone_label = f"{backbone.label}, fine-tuned on '{training}'"
        if gradcam_cases:
            from ovfdlr.deep.gradcam import grad_cam, save_overlays

            chosen = cohort.loc[[c for c in gradcam_cases if c in cohort.index]]
            ids, images = _prepare_images(chosen, settings, 1, False, "grad-cam")
            if ids:
                maps = grad_cam(tuned, head, images)
                titles = [
                    f"{c} ({cohort.loc[c, 'cohort']}, class "
                    f"{'?' if pd.isna(cohort.loc[c, 'label']) else int(cohort.loc[c, 'label'])})"
                    for c in ids
                ]
                result.gradcam = save_overlays(
                    images, maps, ids, out_dir / f"gradcam-{arm}", titles
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
