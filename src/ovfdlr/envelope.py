"""The training envelope of a bundle, and the out-of-domain check of new cases.

A model only knows the kind of scan it was trained on. A bundle therefore records the training
cohort's *envelope*: for each acquisition quantity of the training cases and each feature the
model selected, the range of the training rows (minimum, quartiles, maximum) and the limits
beyond which a value lies *far outside* it. ``ovfdlr predict`` measures the same quantities on
each new case and reports every one outside the training range; a case with any quantity far
outside is flagged *outside the model's domain* next to its probabilities (docs/predictions.md).

Acquisition quantities (:func:`measure_acquisition`, one record per case, cached like the
features):

- ``spacing_inplane_mm``: the mean of the voxel spacings along the image's first two axes;
- ``spacing_slice_mm``: the voxel spacing along the third axis (the slice spacing of an axial
  series; for DICOM, the distance between slice positions);
- ``slice_thickness_mm``: the nominal Slice Thickness (0018,0050) of a DICOM series' first file;
  not known for NIfTI, NRRD or MetaImage files;
- ``air_hu``: the median HU of the air outside the body: voxels between -1200 and -500 HU in the
  connected regions of voxels at or below -500 HU that reach the in-plane border of the volume
  (so the lungs and bowel gas, enclosed in every axial slice, do not count; padding below
  -1200 HU outside the reconstruction circle is left out);
- ``fat_hu``: the median HU of the voxels in the adipose-tissue window -190 to -30 HU;
- ``roi_volume_ml``: the ROI's volume (voxels of the mask label x voxel volume).

The two HU markers are calibration checks: air should read about -1000 HU and fat about -100 HU
(a little lower at low tube voltage); a scan off by tens of HU was reconstructed, calibrated or
converted differently. Each is measured on the volume subsampled by a whole stride to at most
:data:`MARKER_VOXELS` voxels (a median needs no more) and is missing (not checked) when fewer
than :data:`MIN_MARKER_VOXELS` voxels qualify, as in a tight crop around the spine with no air.

The envelope holds aggregates of the training rows only (their number, quantiles and limits):
no case or patient identifier, path or date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ovfdlr.records import EnvelopeQuantity, TrainingEnvelope

if TYPE_CHECKING:
    from ovfdlr.extraction import CaseTask, ExtractionResult

ACQUISITION_VERSION = 1  # part of the acquisition records' cache key

#: Acquisition quantities: name -> (unit, description).
ACQUISITION: dict[str, tuple[str, str]] = {
    "spacing_inplane_mm": ("mm", "in-plane voxel spacing"),
    "spacing_slice_mm": ("mm", "slice spacing"),
    "slice_thickness_mm": ("mm", "slice thickness (DICOM)"),
    "air_hu": ("HU", "median HU of the air outside the body"),
    "fat_hu": ("HU", "median HU of fat (-190 to -30 HU)"),
    "roi_volume_ml": ("mL", "ROI volume"),
}

MARKER_VOXELS = 4_000_000
MIN_MARKER_VOXELS = 100
AIR_WINDOW_HU = (-1200.0, -500.0)
FAT_WINDOW_HU = (-190.0, -30.0)

#: How far beyond the training range a value lies before it is far outside, in inter-quartile
#: ranges of the training rows. Chosen on in-distribution cases only: with 2, a training row
#: left out of its envelope falls far outside it fewer than 1 time in 20 (the demo's arms, 35
#: and 128 selected features); with 1, 1 time in 8 to 10.
IQR_MARGIN = 2.0

#: The least margin of an acquisition quantity: a factor for lengths and volumes (1.5: half as
#: large again, or two thirds as small), HU for the calibration markers.
RELATIVE_TOLERANCE = {
    "spacing_inplane_mm": 1.5,
    "spacing_slice_mm": 1.5,
    "slice_thickness_mm": 1.5,
    "roi_volume_ml": 1.5,
}
ABSOLUTE_TOLERANCE_HU = {"air_hu": 50.0, "fat_hu": 30.0}

RULE = (
    "A value outside a quantity's training range [min, max] is reported. It is far outside "
    "when beyond the range by more than twice the training rows' inter-quartile range (the "
    "range when the IQR is 0); for acquisition quantities by at least a factor 1.5 for "
    "spacings, slice thickness and ROI volume, 50 HU for air and 30 HU for fat. A case with "
    "any quantity far outside is outside the model's domain."
)


# ---------------------------------------------------------------------------------------------
# measuring


def measure_acquisition(
    image: str | Path, mask: str | Path, mask_label: int = 1, series_uid: str | None = None
) -> dict:
    """The acquisition quantities of one case (:data:`ACQUISITION`; NaN when not measurable);
    ``series_uid`` chooses the series of a DICOM folder, as the manifest's column does."""
    import SimpleITK as sitk

    from ovfdlr import imaging

    volume = imaging.read_image(image, series_uid)
    spacing = volume.GetSpacing()
    values = {
        "spacing_inplane_mm": float((spacing[0] + spacing[1]) / 2),
        "spacing_slice_mm": float(spacing[2]) if len(spacing) > 2 else math.nan,
        "slice_thickness_mm": dicom_slice_thickness(image, series_uid),
    }
    values.update(hu_markers(sitk.GetArrayViewFromImage(volume)))
    label_map = imaging.read_image(mask)  # kept alive while its array view is read
    labels = sitk.GetArrayViewFromImage(label_map)
    voxel_ml = float(np.prod(label_map.GetSpacing())) / 1000.0
    values["roi_volume_ml"] = float(np.count_nonzero(labels == int(mask_label))) * voxel_ml
    return values


def dicom_slice_thickness(path: str | Path, series_uid: str | None = None) -> float:
    """The Slice Thickness (0018,0050) of the first file of a DICOM folder's series (the one
    ``series_uid`` chooses), or of a ``.dcm`` file; NaN for other formats or when the tag is
    absent."""
    import SimpleITK as sitk

    path = Path(path)
    if path.is_dir():
        from ovfdlr.imaging import dicom_series_files

        first = dicom_series_files(path, series_uid)[0]
    elif path.suffix.lower() == ".dcm":
        first = str(path)
    else:
        return math.nan
    reader = sitk.ImageFileReader()
    reader.SetFileName(first)
    reader.ReadImageInformation()
    if not reader.HasMetaDataKey("0018|0050"):
        return math.nan
    try:
        return float(reader.GetMetaData("0018|0050").strip())
    except ValueError:
        return math.nan


def hu_markers(array: np.ndarray) -> dict[str, float]:
    """``air_hu`` and ``fat_hu`` of a (z, y, x) HU volume (see the module docstring)."""
    from scipy import ndimage

    stride = max(1, math.ceil((array.size / MARKER_VOXELS) ** (1 / 3)))
    sample = np.asarray(array[::stride, ::stride, ::stride])
    fat = sample[(sample >= FAT_WINDOW_HU[0]) & (sample <= FAT_WINDOW_HU[1])]
    low = sample <= AIR_WINDOW_HU[1]
    air = np.empty(0)
    if low.any():
        # connected in 3-D; the regions that reach the border of an axial slice are outside
        regions, _ = ndimage.label(low)
        border = np.unique(
            np.concatenate(
                [
                    regions[:, 0, :].ravel(),
                    regions[:, -1, :].ravel(),
                    regions[:, :, 0].ravel(),
                    regions[:, :, -1].ravel(),
                ]
            )
        )
        outside = np.isin(regions, border[border > 0])
        air = sample[outside & (sample >= AIR_WINDOW_HU[0])]
    return {
        "air_hu": float(np.median(air)) if air.size >= MIN_MARKER_VOXELS else math.nan,
        "fat_hu": float(np.median(fat)) if fat.size >= MIN_MARKER_VOXELS else math.nan,
    }


@dataclass(frozen=True)
class AcquisitionStage:
    """The per-case acquisition record for :func:`ovfdlr.extraction.extract_features`."""

    name: str = "acquisition"

    def cache_settings(self) -> dict[str, Any]:
        return {
            "version": ACQUISITION_VERSION,
            "marker_voxels": MARKER_VOXELS,
            "min_marker_voxels": MIN_MARKER_VOXELS,
            "air": AIR_WINDOW_HU,
            "fat": FAT_WINDOW_HU,
        }

    def __call__(self, task: CaseTask) -> dict[str, Any]:
        return {
            "features": measure_acquisition(task.image, task.mask, task.mask_label, task.series_uid)
        }


def extract_acquisition(
    cohort: pd.DataFrame,
    *,
    cache_dir: Any = True,
    jobs: int | None = 1,
    scheduler: Any = None,
    progress: bool = False,
) -> ExtractionResult:
    """The acquisition quantities of every case of ``cohort`` (cached per case, like the
    features; a case that cannot be read is listed in the result's errors)."""
    from ovfdlr.extraction import extract_features, tasks_from_cohort

    return extract_features(
        AcquisitionStage(),
        tasks_from_cohort(cohort),
        cache_dir=cache_dir,
        jobs=jobs,
        scheduler=scheduler,
        progress=progress,
    )


# ---------------------------------------------------------------------------------------------
# the envelope


def build_envelope(acquisition: pd.DataFrame | None, features: pd.DataFrame) -> TrainingEnvelope:
    """The envelope of the training rows: ``acquisition`` (one row per training case, the
    :data:`ACQUISITION` columns; None when not measured) and ``features`` (the training rows'
    values of the model's selected features, before scaling). Only aggregates are kept."""
    quantities = []
    if acquisition is not None:
        for name, (unit, _) in ACQUISITION.items():
            column = acquisition[name] if name in acquisition else pd.Series(dtype=float)
            quantities.append(_quantity(name, "acquisition", unit, column))
    for name in features.columns:
        quantities.append(_quantity(str(name), "feature", "", features[name]))
    return TrainingEnvelope(rows=len(features), rule=RULE, quantities=quantities)


def _quantity(name: str, kind: str, unit: str, column: pd.Series) -> EnvelopeQuantity:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return EnvelopeQuantity(name=name, kind=kind, unit=unit, n=0)
    low, q1, median, q3, high = (float(v) for v in np.quantile(values, [0, 0.25, 0.5, 0.75, 1]))
    low_limit, high_limit = far_limits(name, kind, low, q1, q3, high)
    return EnvelopeQuantity(
        name=name,
        kind=kind,
        unit=unit,
        n=int(values.size),
        min=low,
        q1=q1,
        median=median,
        q3=q3,
        max=high,
        low_limit=low_limit,
        high_limit=high_limit,
    )


def far_limits(
    name: str, kind: str, low: float, q1: float, q3: float, high: float
) -> tuple[float, float]:
    """The values below and above which a quantity is far outside its training range."""
    iqr = q3 - q1
    margin = IQR_MARGIN * (iqr if iqr > 0 else (high - low) / 2)
    low_limit, high_limit = low - margin, high + margin
    if kind == "acquisition" and name in RELATIVE_TOLERANCE:
        factor = RELATIVE_TOLERANCE[name]
        low_limit = min(low_limit, low / factor)
        high_limit = max(high_limit, high * factor)
    elif kind == "acquisition" and name in ABSOLUTE_TOLERANCE_HU:
        tolerance = ABSOLUTE_TOLERANCE_HU[name]
        low_limit = min(low_limit, low - tolerance)
        high_limit = max(high_limit, high + tolerance)
    return low_limit, high_limit


# ---------------------------------------------------------------------------------------------
# checking new cases


@dataclass(frozen=True)
class Deviation:
    """A quantity of a case outside its training range; ``far`` beyond the far limits."""

    quantity: str
    kind: str
    unit: str
    value: float
    min: float
    max: float
    low_limit: float
    high_limit: float
    far: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "kind": self.kind,
            "unit": self.unit,
            "value": self.value,
            "training_min": self.min,
            "training_max": self.max,
            "far_below": self.low_limit,
            "far_above": self.high_limit,
            "far": self.far,
        }

    def text(self) -> str:
        """``spacing_slice_mm = 3 mm (training 1-1 mm; far outside)``."""
        unit = f" {self.unit}" if self.unit else ""
        where = "far outside" if self.far else "outside"
        return (
            f"{self.quantity} = {self.value:.4g}{unit} (training {self.min:.4g} to "
            f"{self.max:.4g}{unit}; {where})"
        )


def check_case(envelope: TrainingEnvelope, values: Mapping[str, float]) -> list[Deviation]:
    """Every quantity of the envelope whose value in ``values`` lies outside the training range
    (a quantity without training values or without a value here is not checked)."""
    found = []
    for q in envelope.quantities:
        if q.n == 0 or q.name not in values:
            continue
        value = values[q.name]
        if value is None or not np.isfinite(value):
            continue
        value = float(value)
        if q.min <= value <= q.max:
            continue
        far = value < q.low_limit or value > q.high_limit
        found.append(
            Deviation(q.name, q.kind, q.unit, value, q.min, q.max, q.low_limit, q.high_limit, far)
        )
    return found


def domain_table(
    envelope: TrainingEnvelope | None,
    features: pd.DataFrame,
    acquisition: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per case (the index of ``features``): ``out_of_domain`` (True when any quantity lies far
    outside the envelope; None when the bundle records no envelope) and ``outside_envelope``
    (every quantity outside the training range, :meth:`Deviation.as_dict`)."""
    flags: list[bool | None] = []
    outside: list[list[dict[str, Any]]] = []
    for case_id in features.index:
        if envelope is None:
            flags.append(None)
            outside.append([])
            continue
        values = {str(k): v for k, v in features.loc[case_id].items()}
        if acquisition is not None and case_id in acquisition.index:
            values.update({str(k): v for k, v in acquisition.loc[case_id].items()})
        deviations = check_case(envelope, values)
        flags.append(any(d.far for d in deviations))
        outside.append([d.as_dict() for d in deviations])
    return pd.DataFrame(
        {"out_of_domain": pd.array(flags, dtype="boolean"), "outside_envelope": outside},
        index=features.index,
    )


def deviation_text(entry: Mapping[str, Any]) -> str:
    """One line of an ``outside_envelope`` entry (as :meth:`Deviation.text`)."""
    return Deviation(
        entry["quantity"],
        entry["kind"],
        entry["unit"],
        entry["value"],
        entry["training_min"],
        entry["training_max"],
        entry["far_below"],
        entry["far_above"],
        entry["far"],
    ).text()


__all__ = [
    "ACQUISITION",
    "IQR_MARGIN",
    "RULE",
    "AcquisitionStage",
    "Deviation",
    "build_envelope",
    "check_case",
    "deviation_text",
    "dicom_slice_thickness",
    "domain_table",
    "extract_acquisition",
    "far_limits",
    "hu_markers",
    "measure_acquisition",
]
