"""Writing a synthetic cohort: images, masks, manifest, ground truth and provenance."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from ..cohort import MANIFEST_COLUMNS as COHORT_MANIFEST_COLUMNS
from ..parallel import TaskFailure, run_tasks
from .design import (
    SCHEME_CLASSES,
    CohortDesign,
    draw_population,
    synthetic_label_config,
    synthetic_labels,
)
from .population import PAPER_SCALE
from .render import render_case
from .scanner import CENTRES, COHORT_CENTRE, FOV_MM

GENERATOR_VERSION = "1.0.0"

# the synthetic cohort fills every column but series_uid (its images are files, not DICOM)
MANIFEST_COLUMNS = tuple(c for c in COHORT_MANIFEST_COLUMNS if c != "series_uid")

TRUTH_COLUMNS: tuple[str, ...] = (
    "case_id",
    "morphology",
    "mri_signal",
    "density",
    "pain",
    "astlof_total",
    "label",
    "fracture_type",
    "trabecular_hu",
    "cortical_mm",
    "width_mm",
    "depth_mm",
    "height_ref_mm",
    "height_anterior_mm",
    "height_middle_mm",
    "height_posterior_mm",
    "height_loss_mm",
    "height_loss_pct",
    "genant_grade",
    "retropulsion_mm",
    "cleft_volume_ml",
    "tilt_sagittal_deg",
    "tilt_coronal_deg",
    "spacing_inplane_mm",
    "slice_thickness_mm",
    "blur_mm",
    "noise_sd_hu",
    "hu_offset",
    "age",
    "sex",
    "centre",
    "level",
    # beyond the required set
    "patient_id",
    "cohort",
    "fractured_endplate",
    "ct_signs",
    "n_fragments",
    "marrow_hu",
    "cortical_hu",
    "blur_z_mm",
)

_CASE_FILE = re.compile(r"^ovf-\d+\.nii\.gz$")


def _render_and_write(task: tuple[dict, str]) -> str:
    """Render one case and write its image and mask (a module-level function for workers)."""
    row, out_dir = task
    case = render_case(row)
    out = Path(out_dir)
    sitk.WriteImage(case.image, str(out / "images" / f"{row['case_id']}.nii.gz"), True)
    sitk.WriteImage(case.mask, str(out / "masks" / f"{row['case_id']}.nii.gz"), True)
    return row["case_id"]


def generate_cohort(
    out_dir: Path | str,
    n: int | None = None,
    *,
    paper_scale: bool = False,
    seed: int = 0,
    jobs: int | None = 1,
    progress: bool = True,
    labels: str = "astlof",
    sizes: Mapping[str, int] | None = None,
    stratify: Collection[str] = (),
    design: CohortDesign | None = None,
) -> pd.DataFrame:
    """Generate the synthetic vertebral CT cohort under ``out_dir``; return the manifest.

    Writes ``images/<case_id>.nii.gz`` (int16 HU), ``masks/<case_id>.nii.gz`` (uint8 0/1),
    ``manifest.csv`` (paths relative to it), ``truth.csv`` (latent items and geometry) and
    ``cohort.json`` (seed, size, generator version, centres). ``n`` defaults to 200 vertebrae
    split 750:187:110:51 over train/internal/external/prospective; ``paper_scale=True`` gives
    exactly those 1,098. The same ``seed`` gives byte-identical files whatever ``jobs`` is.
    ``sizes`` gives the cases per cohort instead (``{"train": 68, "external": 24}``), and the
    cohorts named in ``stratify`` hold an equal number of cases of every class of the label
    scheme (see :mod:`ovfdlr.synthetic.design`); ``design`` gives all of that (and the labels)
    as one :class:`~ovfdlr.synthetic.design.CohortDesign`.
    ``labels`` chooses the manifest's label scheme (:func:`synthetic_labels`); ``truth.csv``
    keeps the ASTLOF class and the Genant grade whichever is chosen.
    Case files from an earlier cohort in the same folder that are not part of this one are
    removed.
    """
    out = Path(out_dir)
    if design is None:
        design = CohortDesign.of(
            n, paper_scale=paper_scale, sizes=sizes, stratify=stratify, labels=labels
        )
    elif n is not None or paper_scale or sizes is not None or stratify:
        raise ValueError("give the cohort's design either as design or as n/sizes/stratify")
    labels = design.labels
    pop = draw_population(design, seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)

    tasks = [(row, str(out)) for row in pop.to_dict("records")]
    results = run_tasks(
        _render_and_write,
        tasks,
        jobs=jobs,
        description="synthesising CT cohort",
        progress=progress,
    )
    failures = [r for r in results if isinstance(r, TaskFailure)]
    if failures:
        first = failures[0]
        raise RuntimeError(
            f"{len(failures)} of {len(tasks)} synthetic cases failed; first "
            f"({tasks[first.index][0]['case_id']}): {first.reason}\n{first.detail}"
        )

    keep = {f"{cid}.nii.gz" for cid in pop["case_id"]}
    for sub in ("images", "masks"):
        for path in sorted((out / sub).iterdir()):
            if _CASE_FILE.match(path.name) and path.name not in keep:
                path.unlink()

    manifest = pop.assign(
        image=[f"images/{cid}.nii.gz" for cid in pop["case_id"]],
        mask=[f"masks/{cid}.nii.gz" for cid in pop["case_id"]],
        label=synthetic_labels(pop, labels),
    )[list(MANIFEST_COLUMNS)].reset_index(drop=True)
    manifest.to_csv(out / "manifest.csv", index=False)

    truth = pop.assign(genant_grade=synthetic_labels(pop, "genant"))[list(TRUTH_COLUMNS)].copy()
    truth["ct_signs"] = truth["ct_signs"].astype(int)
    truth.to_csv(out / "truth.csv", index=False, float_format="%.4f")

    info = {
        "generator": "ovfdlr.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n": len(pop),
        "paper_scale": bool(design.paper_scale),
        "cohorts": {c: int((pop["cohort"] == c).sum()) for c in PAPER_SCALE},
        "stratified": design.stratified_shares(),
        "patients": int(pop["patient_id"].nunique()),
        "label_scheme": labels,
        "label_config": synthetic_label_config(labels),
        "labels": {str(k): int((manifest["label"] == k).sum()) for k in SCHEME_CLASSES[labels]},
        "fov_mm": list(FOV_MM),
        "cohort_centre": dict(COHORT_CENTRE),
        "centres": {name: c.as_dict() for name, c in CENTRES.items()},
        "files": {
            "manifest": "manifest.csv",
            # what the generator wrote: a manifest edited since is no longer this cohort
            "manifest_sha256": hashlib.sha256((out / "manifest.csv").read_bytes()).hexdigest(),
            "truth": "truth.csv",
            "images": "images/",
            "masks": "masks/",
        },
    }
    (out / "cohort.json").write_text(json.dumps(info, indent=2) + "\n")
    return manifest


def provenance(manifest: Path | str) -> dict | None:
    """What a run records of a synthetic cohort: ``cohort.json`` beside ``manifest`` when
    ovfdlr's generator wrote both and the manifest is unchanged since (its SHA-256 is in
    ``cohort.json``): generator version, seed, sizes, stratified cohorts, label scheme; None
    for any other manifest."""
    manifest = Path(manifest)
    info_path = manifest.parent / "cohort.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("generator") != "ovfdlr.synthetic":
        return None
    files = info.get("files") or {}
    if files.get("manifest") != manifest.name:
        return None
    try:  # the manifest as the generator wrote it, not one edited or relabelled since
        if files.get("manifest_sha256") != hashlib.sha256(manifest.read_bytes()).hexdigest():
            return None
    except OSError:
        return None
    keys = ("generator_version", "seed", "n", "cohorts", "stratified", "label_scheme")
    return {k: info[k] for k in keys if k in info}
