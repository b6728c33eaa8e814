"""GLCM, GLDM and NGTDM from one pass over the ROI: the kernel of
:mod:`ovfdlr.engines.native.neighbourhood` counts the three, each class module computes its
features from the counts. Kept apart from the kernel so that the class modules, which use the
kernel, and this function, which uses them, do not import each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ovfdlr.engines.catalogue import resolve_names
from ovfdlr.engines.native import glcm, gldm, ngtdm
from ovfdlr.engines.native.neighbourhood import neighbourhood_matrices_for


def compute_classes(
    binned: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    settings: Mapping[str, Any],
    names: Mapping[str, Iterable[str] | None],
) -> dict[str, dict[str, float]]:
    """The features of the classes named in ``names`` (``"glcm"``, ``"gldm"``, ``"ngtdm"`` ->
    feature names or None for all) from one kernel pass: ``{class: {feature: value}}``."""
    modules = {"glcm": glcm, "gldm": gldm, "ngtdm": ngtdm}
    unknown = set(names) - set(modules)
    if unknown:
        raise ValueError(f"not a neighbourhood feature class: {sorted(unknown)}")
    for class_name, chosen in names.items():
        resolve_names(chosen, modules[class_name].FEATURE_NAMES)  # fail before counting
    matrices = neighbourhood_matrices_for(
        binned,
        mask,
        settings,
        glcm="glcm" in names,
        gldm="gldm" in names,
        ngtdm="ngtdm" in names,
    )
    return {
        class_name: modules[class_name].features_from_matrices(matrices, spacing, settings, chosen)
        for class_name, chosen in names.items()
    }
