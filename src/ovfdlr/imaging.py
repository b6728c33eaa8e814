"""Reading CT volumes and vertebra masks, checking their geometry, and cropping to the ROI.

Images are read with SimpleITK in the forms people have: NIfTI (``.nii``, ``.nii.gz``), NRRD
(``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``) and DICOM series folders. A DICOM series
is read through GDCM, which applies Rescale Slope / Intercept, so CT voxels come out in HU, and
orders slices by position, so the z spacing is the distance between slice positions (not the
nominal Slice Thickness, which differs for overlapping reconstructions).

Masks may be multi-label maps (e.g. one label per vertebra); :func:`select_label` turns one
label into the binary ROI the rest of ovfdlr works with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


class ImageReadError(ValueError):
    """An image or mask could not be read; the message names the path and the reason."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def dicom_series_files(folder: Path) -> list[str]:
    """File names of the single DICOM series in ``folder``, ordered by slice position.

    Raises :class:`ImageReadError` when the folder holds no series or more than one (naming the
    series instance UIDs found, so the user can split the folder).
    """
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise ImageReadError(f"{folder}: folder holds no DICOM series")
    if len(series) > 1:
        listed = ", ".join(uid or "<no SeriesInstanceUID>" for uid in series)
        raise ImageReadError(
            f"{folder}: folder holds {len(series)} DICOM series ({listed}); "
            "put each series in its own folder"
        )
    return list(reader.GetGDCMSeriesFileNames(str(folder), series[0]))


def require_path(path: str | Path, kind: str = "image") -> Path:
    """``path`` as a Path; raises :class:`ImageReadError` ("<kind> file not found: ...")."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{kind} file not found: {path}")
    return path


def read_image(path: str | Path) -> sitk.Image:
    """Read a volume from a file or a DICOM series folder.

    Raises :class:`ImageReadError` (naming the path) when the path is missing, the format is not
    supported or the reader fails.
    """
    path = require_path(path, "image")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(dicom_series_files(path))
            return reader.Execute()
        if _suffix(path) not in IMAGE_SUFFIXES and path.suffix.lower() != ".dcm":
            raise ImageReadError(
                f"{path}: unsupported image format (use NIfTI, NRRD, MHA/MHD or a DICOM folder)"
            )
        return sitk.ReadImage(str(path))
    except ImageReadError:
        raise
    except RuntimeError as exc:  # SimpleITK reports reader failures as RuntimeError
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        raise ImageReadError(f"{path}: cannot be read ({first[:200]})") from exc


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
    """Read a (multi-)label map and return the binary mask of ``label``."""
    return select_label(read_image(path), label)


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
