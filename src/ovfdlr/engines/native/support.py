"""What the native engine computes, and a clear refusal of anything else.

It computes PyRadiomics' segment-based features: the classes shape, firstorder, glcm, glrlm,
glszm, gldm and ngtdm on the image types Original, Wavelet, LoG, Square, SquareRoot, Logarithm,
Exponential and Gradient, with every setting those read (``force2D`` included: texture matrices
per slice). It does not compute voxel-based feature maps (``voxelSetting``), ``shape2D`` or
the LBP image types: a parameter file that asks for them is refused before any case runs,
naming the setting, never answered with other numbers.
"""

from __future__ import annotations

from typing import Any

from ovfdlr.engines import catalogue
from ovfdlr.engines.base import UnsupportedSetting
from ovfdlr.engines.params import resolve

FEATURE_CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
# every image type but the local binary patterns (PyRadiomics' LBP2D, LBP3D)
IMAGE_TYPES = tuple(name for name in catalogue.IMAGE_TYPES if not name.startswith("LBP"))
_ELSEWHERE = "(use --engine pyradiomics, or engine: pyradiomics in the config)"


def check_supported(params: dict[str, Any]) -> dict[str, Any]:
    """The resolved parameters (:func:`ovfdlr.engines.params.resolve`) if the native engine
    computes all of them; otherwise :class:`UnsupportedSetting` naming the first that it does
    not."""
    if params.get("voxelSetting"):
        raise UnsupportedSetting(
            "voxelSetting: the native engine computes segment-based features only, "
            f"not voxel-based feature maps {_ELSEWHERE}"
        )
    resolved = resolve(params)
    for image_type in resolved["imageType"]:
        if image_type not in IMAGE_TYPES:
            raise UnsupportedSetting(
                f"imageType.{image_type}: not computed by the native engine "
                f"(it computes {', '.join(IMAGE_TYPES)}) {_ELSEWHERE}"
            )
    force2d = resolved["setting"].get("force2D")
    for name in resolved["featureClass"]:
        if name == "shape2D" and not force2d:
            continue  # PyRadiomics computes no shape2D feature for 3-D features either
        if name not in FEATURE_CLASSES:
            raise UnsupportedSetting(
                f"featureClass.{name}: not computed by the native engine "
                f"(it computes {', '.join(FEATURE_CLASSES)}) {_ELSEWHERE}"
            )
    return resolved
