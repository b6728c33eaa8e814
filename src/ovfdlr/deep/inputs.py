"""From a CT volume and a vertebral mask to the 2-D image a ResNet-50 sees.

Default: the **mid-sagittal plane** through the body's centroid, where height loss, wedging,
burst fragments and retropulsion show. Options: ``axial``, ``coronal``, ``max-area`` (the slice
with the largest ROI area along ``max_area_axis``) and ``2.5d`` (the mid-sagittal, mid-coronal
and mid-axial planes as the three channels).

Each plane is sampled directly from the volume onto a square grid of ``size`` x ``size`` pixels
(linear interpolation) in patient coordinates, which resamples to isotropic in-plane spacing,
crops and resizes in one step: the square's side is the ROI's larger in-plane extent times
``1 + margin`` (default 20 %), centred on the ROI. Orientation follows radiological display:
sagittal with anterior left and superior up, axial with the patient's right on the left and
anterior up, coronal with the patient's right on the left and superior up.

Intensities are windowed to bone (level 400 HU, width 1800 HU by default) and scaled to [0, 1]:
``x = clip((HU - (level - width / 2)) / width, 0, 1)``, replicated to three channels. Then
:func:`normalize` applies the convention of the weights (see :mod:`ovfdlr.deep.backbones`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import SimpleITK as sitk

from ovfdlr import imaging

Plane = Literal["sagittal", "axial", "coronal", "max-area", "2.5d"]
PLANES = ("sagittal", "axial", "coronal", "max-area", "2.5d")

# (column direction, row direction, normal) in LPS for each displayed plane
PLANE_AXES = {
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
}

NORMALIZATIONS = {
    # torchvision's ImageNet statistics, RGB in [0, 1]
    "imagenet": ("rgb", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # RadImageNet Keras fine-tuning: caffe mean subtraction on BGR 0..255, then / 255
    "radimagenet-keras": ("bgr", 255.0, (103.939, 116.779, 123.68), (255.0, 255.0, 255.0)),
    # RadImageNet PyTorch example: BGR 0..255 to [-1, 1]
    "radimagenet-torch": ("bgr", 255.0, (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
}


class InputError(ValueError):
    """A case whose 2-D input cannot be prepared; the message says why."""


@dataclass(frozen=True)
class InputSettings:
    """How a case becomes a 2-D network input (see the module docstring)."""

    plane: Plane = "sagittal"
    max_area_axis: Literal["sagittal", "axial", "coronal"] = "sagittal"
    margin: float = 0.2
    window_level: float = 400.0
    window_width: float = 1800.0
    size: int = 224

    def __post_init__(self):
        if self.plane not in PLANES:
            raise InputError(f"plane '{self.plane}' is not one of {', '.join(PLANES)}")
        if self.max_area_axis not in PLANE_AXES:
            raise InputError(f"max_area_axis '{self.max_area_axis}' is not sagittal/axial/coronal")
        if not 0 <= self.margin <= 5:
            raise InputError(f"margin {self.margin} must lie in [0, 5] (a fraction of the ROI)")
        if self.window_width <= 0:
            raise InputError(f"window width {self.window_width} must be positive")
        if self.size < 16:
            raise InputError(f"size {self.size} is too small (at least 16 pixels)")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PreparedInput:
    """The windowed image (3, size, size) in [0, 1] and the ROI mask on the same grid."""

    image: np.ndarray
    mask: np.ndarray
    pixel_mm: float

    @property
    def roi_fraction(self) -> float:
        """Share of the square crop covered by the ROI (on the first channel's plane)."""
        return float(self.mask.mean())


def _roi_points(mask: sitk.Image) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(mask)
    zyx = np.argwhere(array > 0)
    if zyx.size == 0:
        raise InputError("empty ROI: the mask has no voxel of this label")
    direction = np.asarray(mask.GetDirection()).reshape(3, 3)
    return (
        np.asarray(mask.GetOrigin()) + (zyx[:, ::-1] * np.asarray(mask.GetSpacing())) @ direction.T
    )


def _sample_plane(
    volume: sitk.Image,
    centre: np.ndarray,
    axes: tuple,
    side_mm: float,
    size: int,
    interpolator: int,
    default: float,
) -> np.ndarray:
    column, row, normal = (np.asarray(a, float) for a in axes)
    pixel = side_mm / size
    reference = sitk.Image([size, size, 1], sitk.sitkFloat32)
    reference.SetSpacing([pixel, pixel, 1.0])
    reference.SetDirection([float(v) for v in np.column_stack([column, row, normal]).ravel()])
    origin = centre - (size - 1) / 2 * pixel * column - (size - 1) / 2 * pixel * row
    reference.SetOrigin([float(v) for v in origin])
    sampled = sitk.Resample(
        volume, reference, sitk.Transform(), interpolator, default, sitk.sitkFloat32
    )
    return sitk.GetArrayFromImage(sampled)[0]


def _max_area_centre(mask: sitk.Image, axis: str, centroid: np.ndarray) -> np.ndarray:
    """The centroid moved onto the mask slice with the largest ROI area along ``axis``."""
    normal = np.asarray(PLANE_AXES[axis][2])
    direction = np.asarray(mask.GetDirection()).reshape(3, 3)
    voxel_axis = int(np.argmax(np.abs(direction.T @ normal)))  # x, y or z of the image
    array = sitk.GetArrayViewFromImage(mask) > 0
    numpy_axis = 2 - voxel_axis
    other = tuple(a for a in range(3) if a != numpy_axis)
    areas = array.sum(axis=other)
    best = int(np.argmax(areas))
    index = [0.0, 0.0, 0.0]
    index[voxel_axis] = float(best)
    position = np.asarray(mask.TransformContinuousIndexToPhysicalPoint(index))
    return centroid + normal * float(normal @ (position - centroid))


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Bone window: ``clip((HU - (level - width / 2)) / width, 0, 1)``."""
    return np.clip((hu - (level - width / 2.0)) / width, 0.0, 1.0).astype(np.float32)


def prepare(image: sitk.Image, mask: sitk.Image, settings: InputSettings) -> PreparedInput:
    """The 2-D input of one case from its CT and binary ROI mask (same grid)."""
    if image.GetDimension() != 3:
        raise InputError(f"image is {image.GetDimension()}-D; a 3-D volume is expected")
    points = _roi_points(mask)
    centroid = points.mean(axis=0)
    planes = ["sagittal", "coronal", "axial"] if settings.plane == "2.5d" else [settings.plane]
    # the ROI's extent along each displayed axis: voxel centres plus one voxel's projection
    direction = np.asarray(mask.GetDirection()).reshape(3, 3)
    voxel = np.abs(direction) @ np.asarray(mask.GetSpacing())
    extents = []
    for plane in planes:
        for axis in PLANE_AXES[settings.max_area_axis if plane == "max-area" else plane][:2]:
            axis = np.asarray(axis)
            extents.append(np.ptp(points @ axis) + float(np.abs(axis) @ voxel))
    side = max(extents) * (1.0 + settings.margin)
    mask_float = sitk.Cast(mask > 0, sitk.sitkFloat32)
    channels, masks = [], []
    for plane in planes:
        axes = PLANE_AXES[settings.max_area_axis if plane == "max-area" else plane]
        centre = centroid
        if plane == "max-area":
            centre = _max_area_centre(mask, settings.max_area_axis, centroid)
        hu = _sample_plane(image, centre, axes, side, settings.size, sitk.sitkLinear, -1024.0)
        roi = _sample_plane(mask_float, centre, axes, side, settings.size, sitk.sitkLinear, 0.0)
        channels.append(window(hu, settings.window_level, settings.window_width))
        masks.append(roi >= 0.5)
    if len(channels) == 1:
        channels = channels * 3
    return PreparedInput(np.stack(channels), masks[0].astype(np.uint8), side / settings.size)


def prepare_case(
    image_path: str,
    mask_path: str,
    mask_label: int,
    settings: InputSettings,
    series_uid: str | None = None,
) -> PreparedInput:
    """:func:`prepare` from files (a multi-label mask is reduced to ``mask_label``;
    ``series_uid`` chooses the image's series in a DICOM folder of several)."""
    image = imaging.read_image(image_path, series_uid)
    mask = imaging.read_mask(mask_path, mask_label)
    return prepare(image, mask, settings)


def normalize(batch: np.ndarray, normalization: str) -> np.ndarray:
    """Apply a weights family's preprocessing to (N, 3, H, W) images in [0, 1] (RGB order).

    ``imagenet``: ``(x - mean) / std`` with torchvision's statistics; ``radimagenet-keras``:
    ``(BGR_255 - [103.939, 116.779, 123.68]) / 255``; ``radimagenet-torch``:
    ``(BGR_255 - 127.5) / 127.5``.
    """
    if normalization not in NORMALIZATIONS:
        raise InputError(
            f"normalization '{normalization}' is not one of {', '.join(NORMALIZATIONS)}"
        )
    order, scale, mean, std = NORMALIZATIONS[normalization]
    x = np.asarray(batch, dtype=np.float32) * scale
    if order == "bgr":
        x = x[:, ::-1]
    mean_a = np.asarray(mean, np.float32)[None, :, None, None]
    std_a = np.asarray(std, np.float32)[None, :, None, None]
    return np.ascontiguousarray((x - mean_a) / std_a)
