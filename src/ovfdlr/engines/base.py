"""What every radiomics engine provides and returns (the :class:`Engine` interface)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import SimpleITK as sitk


class CaseError(ValueError):
    """A case whose features cannot be computed; the message names the case and the reason."""


class EngineUnavailable(RuntimeError):
    """An engine that cannot run here (e.g. its optional extra is not installed)."""


class UnsupportedSetting(ValueError):
    """A parameter-file setting this engine does not compute; the message names both."""


@dataclass(frozen=True)
class CaseFeatures:
    """Feature values (float) and diagnostics (text) of one case."""

    features: dict[str, float]
    diagnostics: dict[str, str]


class Engine(Protocol):
    """PyRadiomics names and values for one image and mask.

    ``name`` and ``version`` identify the engine in cache keys, run records and bundles.
    """

    name: str
    version: str

    def extract(self, image: sitk.Image, mask: sitk.Image, label: int) -> CaseFeatures: ...


def flat_image_error(image: sitk.Image) -> CaseError:
    """The one-line reason for a 2-D image under 3-D settings (both engines give it)."""
    return CaseError(
        f"image is {image.GetDimension()}-D (size {tuple(image.GetSize())}) but the "
        "parameters configure 3-D features; set setting.force2D: true for "
        "slice-wise features"
    )


def check_inputs(image: sitk.Image, mask: sitk.Image, settings: dict) -> None:
    """Refuse, as a :class:`CaseError` naming the reason, what no engine computes: a vector
    (multi-component) image or mask, a mask of another dimension than the image's, and a 2-D
    or single-slice image under 3-D settings (``force2D`` not set)."""
    for what, item in (("image", image), ("mask", mask)):
        if item.GetNumberOfComponentsPerPixel() != 1:
            raise CaseError(
                f"the {what} has {item.GetNumberOfComponentsPerPixel()} components per voxel; "
                "give a scalar image and a label map"
            )
    if mask.GetDimension() != image.GetDimension():
        raise CaseError(
            f"the mask is {mask.GetDimension()}-D and the image {image.GetDimension()}-D"
        )
    flat = image.GetDimension() != 3 or min(image.GetSize()) < 2
    if flat and not settings.get("force2D"):
        raise flat_image_error(image)


def roi_error(label: int, spacing, message: str) -> CaseError:
    """The one-line reason for an ROI that cannot be used (both engines give it)."""
    after = f" after resampling to {spacing} mm" if spacing else ""
    return CaseError(f"ROI of label {label} is not usable{after}: {message}")
