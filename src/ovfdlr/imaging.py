"""Reading CT volumes and vertebra masks, checking their geometry, and cropping to the ROI.

Images are read with SimpleITK in the forms people have: NIfTI (``.nii``, ``.nii.gz``), NRRD
(``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``) and DICOM series folders. A DICOM series
is read through GDCM, which applies Rescale Slope / Intercept, so CT voxels come out in HU, and
orders slices by position, so the z spacing is the distance between slice positions (not the
nominal Slice Thickness, which differs for overlapping reconstructions). A folder holding
several series is read only with the chosen series' UID (the manifest's ``series_uid``).

Every read is complete or refused: the input checks of :mod:`ovfdlr.integrity` run around it
(compressed streams whole and intact, every voxel the header promises present, a consistent
header, a DICOM series without missing, duplicated or unevenly spaced slices, ITK's messages
captured and mapped to named checks), and a refused input raises :class:`InputCheckError`
naming its check. Validation, every feature stage, the previews and ``predict`` read through
here, so they all refuse the same inputs.

Masks may be multi-label maps (e.g. one label per vertebra); :func:`read_label_map` also
refuses a "mask" whose values are not labels, and :func:`select_label` turns one label into the
binary ROI the rest of ovfdlr works with.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ovfdlr import integrity
from ovfdlr.integrity import Finding

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

# Private switch for benchmarks/bench_radiomics.py only: False reads without the input checks
# (as ovfdlr did before them), so the benchmark can measure what the checks cost.
_INPUT_CHECKS = True


class ImageReadError(ValueError):
    """An image or mask could not be read; the message names the path and the reason."""


class InputCheckError(ImageReadError):
    """An image or mask refused by an input check (:data:`ovfdlr.integrity.CHECKS`).

    ``check`` names the first check that failed, ``findings`` lists every error found; the
    message names the path, what is wrong and the check (``... [truncated-file]``), so a
    batch's record of the failed case names the check too.
    """

    def __init__(self, path: str | Path, findings: list[Finding]):
        self.path = Path(path)
        self.findings = list(findings)
        first = self.findings[0]
        self.check = first.check
        others = sorted({f.check for f in self.findings[1:]} - {first.check})
        more = f" (also: {', '.join(others)})" if others else ""
        super().__init__(f"{self.path}: {first.message} [{first.check}]{more}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.findings))


@dataclass
class ImageReading:
    """An image read and checked, with the warnings of its checks (errors were raised)."""

    image: sitk.Image
    warnings: list[Finding] = field(default_factory=list)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _refuse(path: Path, findings: list[Finding]) -> None:
    errors = integrity.errors(findings)
    if errors:
        raise InputCheckError(path, errors)


def _series_description(files: list[str]) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    key = "0008|103e"
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _several_series(folder: Path, reader: sitk.ImageSeriesReader, series: list[str]) -> str:
    listed = []
    for uid in series:
        files = list(reader.GetGDCMSeriesFileNames(str(folder), uid))
        description = _series_description(files) if files else ""
        described = f", '{description}'" if description else ""
        listed.append(f"{uid or '<no SeriesInstanceUID>'} ({len(files)} slices{described})")
    return "; ".join(listed)


def dicom_series_files(folder: Path, series_uid: str | None = None) -> list[str]:
    """File names of one DICOM series in ``folder``, ordered by slice position.

    ``series_uid`` chooses the series; without it the folder must hold a single one. Raises
    :class:`ImageReadError` when the folder holds no series, and :class:`InputCheckError`
    (``dicom-several-series``, naming every series with its slice count and description;
    ``dicom-series-uid`` for a UID the folder does not hold).
    """
    reader = sitk.ImageSeriesReader()
    series = list(reader.GetGDCMSeriesIDs(str(folder)))
    if not series:
        raise ImageReadError(f"{folder}: folder holds no DICOM series")
    if series_uid:
        if series_uid not in series:
            message = (
                f"series_uid {series_uid} is not in the folder, which holds "
                f"{_several_series(folder, reader, series)}"
            )
            raise InputCheckError(folder, [integrity.finding("dicom-series-uid", message)])
        return list(reader.GetGDCMSeriesFileNames(str(folder), series_uid))
    if len(series) > 1:
        message = (
            f"folder holds {len(series)} DICOM series: {_several_series(folder, reader, series)}; "
            "choose one with the manifest column series_uid (or put each series in its own "
            "folder)"
        )
        raise InputCheckError(folder, [integrity.finding("dicom-several-series", message)])
    return list(reader.GetGDCMSeriesFileNames(str(folder), series[0]))


def dicom_folder_files(folder: Path, series_uid: str | None = None) -> list[str]:
    """The DICOM files that decide what reading ``folder`` gives: the chosen (or only) series'
    files in slice order; for a folder of several series and no choice, every series' files
    (series in UID order), which the read refuses but a content hash can still cover."""
    try:
        return dicom_series_files(folder, series_uid)
    except InputCheckError as exc:
        if exc.check != "dicom-several-series":
            raise
    reader = sitk.ImageSeriesReader()
    return [
        name
        for uid in sorted(reader.GetGDCMSeriesIDs(str(folder)))
        for name in reader.GetGDCMSeriesFileNames(str(folder), uid)
    ]


def require_path(path: str | Path, kind: str = "image") -> Path:
    """``path`` as a Path; raises :class:`ImageReadError` ("<kind> file not found: ...")."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{kind} file not found: {path}")
    return path


def _failure(path: Path, exc: RuntimeError, findings: list[Finding]) -> ImageReadError:
    """The error for a reader failure: the named check when what ITK said (its exception or
    its messages) maps to one, else a plain :class:`ImageReadError`."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in lines:
        check = integrity.message_check(line)
        if check is not None:
            return InputCheckError(path, [integrity.finding(check, f"ITK refused: {line[:300]}")])
    errors = integrity.errors(findings)
    if errors:
        return InputCheckError(path, errors)
    first = next((ln for ln in lines if "ERROR" in ln or "rror" in ln), lines[0] if lines else "")
    return ImageReadError(f"{path}: cannot be read ({first[:200]})")


def _floats(reader: sitk.ImageSeriesReader, index: int, key: str) -> tuple[float, ...] | None:
    if not reader.HasMetaDataKey(index, key):
        return None
    try:
        return tuple(float(v) for v in reader.GetMetaData(index, key).split("\\") if v.strip())
    except ValueError:
        return None


def _slice_headers(reader: sitk.ImageSeriesReader, files: list[str]) -> list:
    """The series checks' view of each slice, from the headers the reader parsed."""
    slices = []
    for i, name in enumerate(files):
        rows, columns = _floats(reader, i, "0028|0010"), _floats(reader, i, "0028|0011")
        tilt = _floats(reader, i, "0018|1120")
        uid = reader.GetMetaData(i, "0008|0018") if reader.HasMetaDataKey(i, "0008|0018") else ""
        slices.append(
            integrity.SliceHeader(
                Path(name).name,
                _floats(reader, i, "0020|0032"),
                _floats(reader, i, "0020|0037"),
                _floats(reader, i, "0028|0030"),
                (int(rows[0]), int(columns[0])) if rows and columns else None,
                uid.strip().strip("\x00"),
                reader.HasMetaDataKey(i, "0028|1052") and reader.HasMetaDataKey(i, "0028|1053"),
                tilt[0] if tilt else None,
            )
        )
    return slices


class _FileHeaders:
    """Per-slice headers read file by file (when the series reader itself failed), offering
    the series reader's metadata interface (hence SimpleITK's method names)."""

    def __init__(self, files: list[str]):
        self.readers = []
        for name in files:
            reader = sitk.ImageFileReader()
            reader.SetFileName(name)
            with contextlib.suppress(RuntimeError):  # a file GDCM cannot parse has no headers
                reader.ReadImageInformation()
            self.readers.append(reader)

    def HasMetaDataKey(self, index: int, key: str) -> bool:
        return self.readers[index].HasMetaDataKey(key)

    def GetMetaData(self, index: int, key: str) -> str:
        return self.readers[index].GetMetaData(key)


def _read_dicom(folder: Path, series_uid: str | None) -> ImageReading:
    if not _INPUT_CHECKS:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(dicom_series_files(folder, series_uid))
        return ImageReading(reader.Execute())
    failure = image = None
    with integrity.captured_messages() as messages:
        files = dicom_series_files(folder, series_uid)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        reader.MetaDataDictionaryArrayUpdateOn()
        reader.SetSpacingWarningRelThreshold(integrity.SLICE_SPACING_TOLERANCE)
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            failure = exc
    if failure is not None:
        with integrity.captured_messages():
            headers = _slice_headers(_FileHeaders(files), files)
        findings = integrity.dicom_findings(headers)
        raise _failure(folder, failure, findings + integrity.message_findings(messages, findings))
    findings = integrity.dicom_findings(_slice_headers(reader, files))
    findings += integrity.message_findings(messages, findings)
    findings += integrity.geometry_findings(image)
    _refuse(folder, findings)
    return ImageReading(image, integrity.warnings(findings))


def inspect_image(path: str | Path, series_uid: str | None = None) -> ImageReading:
    """Read a volume from a file or a DICOM series folder, with the input checks.

    ``series_uid`` chooses a series of a DICOM folder that holds several. Returns the image and
    the checks' warnings. Raises :class:`InputCheckError` (naming the check) for a refused
    input, and :class:`ImageReadError` (naming the path) when the path is missing, the format
    is not supported or the reader fails for another reason.
    """
    path = require_path(path, "image")
    try:
        if path.is_dir():
            return _read_dicom(path, series_uid or None)
        if _suffix(path) not in IMAGE_SUFFIXES and path.suffix.lower() != ".dcm":
            raise ImageReadError(
                f"{path}: unsupported image format (use NIfTI, NRRD, MHA/MHD or a DICOM folder)"
            )
        if not _INPUT_CHECKS:
            return ImageReading(sitk.ReadImage(str(path)))
        findings = integrity.file_findings(path)
        _refuse(path, findings)
        failure = image = None
        with integrity.captured_messages() as messages:
            try:
                image = sitk.ReadImage(str(path))
            except RuntimeError as exc:
                failure = exc
        findings += integrity.message_findings(messages, findings)
        if failure is not None:
            raise _failure(path, failure, findings)
        findings += integrity.geometry_findings(image)
        _refuse(path, findings)
        return ImageReading(image, integrity.warnings(findings))
    except ImageReadError:
        raise
    except RuntimeError as exc:  # SimpleITK reports reader failures as RuntimeError
        raise _failure(path, exc, []) from exc
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc})") from exc


def read_image(path: str | Path, series_uid: str | None = None) -> sitk.Image:
    """Read a volume from a file or a DICOM series folder (see :func:`inspect_image`).

    Raises :class:`InputCheckError` for a refused input and :class:`ImageReadError` (naming the
    path) when the path is missing, the format is not supported or the reader fails.
    """
    return inspect_image(path, series_uid).image


def inspect_label_map(path: str | Path) -> ImageReading:
    """:func:`inspect_image` for a label map, plus the checks of its values
    (:func:`ovfdlr.integrity.label_map_findings`: ``mask-is-image``, ``mask-not-integer``,
    ``mask-negative``)."""
    reading = inspect_image(path)
    if not _INPUT_CHECKS or reading.image.GetNumberOfComponentsPerPixel() != 1:
        return reading
    path = Path(path)
    key = integrity.stat_key(path) if path.is_file() else None
    array = sitk.GetArrayViewFromImage(reading.image)
    findings = integrity.label_map_findings(array, key)
    _refuse(path, findings)
    reading.warnings += integrity.warnings(findings)
    return reading


def read_label_map(path: str | Path) -> sitk.Image:
    """Read a (multi-)label map, refusing one whose values are not labels
    (:func:`inspect_label_map`)."""
    return inspect_label_map(path).image


def count_non_finite(path: str | Path, image: sitk.Image) -> int:
    """Number of NaN or infinite voxels of an image read from ``path``.

    ITK's NIfTI reader turns NaN into 0 on reading, which would hide them, so floating-point
    NIfTI files are counted from the file itself with nibabel; every other form from ``image``.
    """
    path = Path(path)
    if path.is_file() and _suffix(path) in (".nii", ".nii.gz"):
        import nibabel

        nifti = nibabel.load(str(path))
        if np.issubdtype(nifti.get_data_dtype(), np.floating):
            return int(np.count_nonzero(~np.isfinite(np.asanyarray(nifti.dataobj))))
        return 0
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        return int(np.count_nonzero(~np.isfinite(array)))
    return 0


def select_label(mask: sitk.Image, label: int) -> sitk.Image:
    """Binary uint8 mask (1 inside) of the voxels equal to ``label``, same geometry as ``mask``."""
    if mask.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError("mask has several components per voxel; a label map is expected")
    return sitk.Cast(sitk.Equal(mask, int(label)), sitk.sitkUInt8)


def read_mask(path: str | Path, label: int = 1) -> sitk.Image:
    """Read a (multi-)label map (:func:`read_label_map`) and return the binary mask of
    ``label``."""
    return select_label(read_label_map(path), label)


@dataclass(frozen=True)
class Geometry:
    """Size (voxels, x y z), spacing (mm), origin (mm) and direction cosines of a volume."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(
            tuple(image.GetSize()),
            tuple(image.GetSpacing()),
            tuple(image.GetOrigin()),
            tuple(image.GetDirection()),
        )


def geometry_mismatches(image: sitk.Image, mask: sitk.Image, tolerance: float = 1e-3) -> list[str]:
    """Differences between the image and mask grids, one sentence each (empty when they match).

    Size must be equal; spacing and origin may differ by at most ``tolerance`` x the image
    spacing (relative, so the check means the same at 0.5 mm and 5 mm); direction cosines by at
    most ``tolerance`` (absolute).
    """
    a, b = Geometry.of(image), Geometry.of(mask)
    problems = []
    if a.size != b.size:
        problems.append(f"size differs: image {a.size}, mask {b.size}")
        return problems
    spacing = np.asarray(a.spacing)
    if np.any(np.abs(np.subtract(a.spacing, b.spacing)) > tolerance * spacing):
        problems.append(f"spacing differs: image {_fmt(a.spacing)}, mask {_fmt(b.spacing)} mm")
    if np.any(np.abs(np.subtract(a.origin, b.origin)) > tolerance * spacing):
        problems.append(f"origin differs: image {_fmt(a.origin)}, mask {_fmt(b.origin)} mm")
    if np.any(np.abs(np.subtract(a.direction, b.direction)) > tolerance):
        problems.append(f"direction differs: image {_fmt(a.direction)}, mask {_fmt(b.direction)}")
    return problems


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def roi_bounding_box(mask_array: np.ndarray) -> tuple[slice, ...] | None:
    """Slices (numpy z, y, x order) bounding the non-zero voxels, or ``None`` for an empty ROI."""
    nonzero = np.nonzero(mask_array)
    if nonzero[0].size == 0:
        return None
    return tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in nonzero)


def roi_touches_border(mask_array: np.ndarray) -> bool:
    """True when the ROI reaches the first or last voxel along any axis (it may be cut off)."""
    box = roi_bounding_box(mask_array)
    if box is None:
        return False
    return any(s.start == 0 or s.stop == n for s, n in zip(box, mask_array.shape, strict=True))


def crop_to_roi(
    image: sitk.Image, mask: sitk.Image, margin_mm: float = 10.0
) -> tuple[sitk.Image, sitk.Image]:
    """Crop image and binary mask to the ROI bounding box plus ``margin_mm`` on every side.

    Geometry (origin, spacing, direction) is kept, so the crops stay in patient coordinates.
    Raises ``ValueError`` for an empty ROI.
    """
    array = sitk.GetArrayViewFromImage(mask)
    box = roi_bounding_box(array)
    if box is None:
        raise ValueError("empty ROI: the mask has no voxel of this label")
    spacing_zyx = np.asarray(mask.GetSpacing())[::-1]
    pad = np.ceil(margin_mm / spacing_zyx).astype(int)
    lower = [max(s.start - p, 0) for s, p in zip(box, pad, strict=True)]
    upper = [min(s.stop + p, n) for s, p, n in zip(box, pad, array.shape, strict=True)]
    index = [int(v) for v in lower[::-1]]
    size = [int(u - lo) for lo, u in zip(lower[::-1], upper[::-1], strict=True)]
    return (
        sitk.RegionOfInterest(image, size, index),
        sitk.RegionOfInterest(mask, size, index),
    )
