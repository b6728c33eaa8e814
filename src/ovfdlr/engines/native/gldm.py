r"""Gray Level Dependence Matrix features, PyRadiomics 3.1's ``RadiomicsGLDM`` (segment-based).

``P(i, j)`` counts ROI voxels of gray level ``i`` with ``j - 1`` dependent neighbours: a
neighbour is any ROI voxel at one of the bidirectional offsets of
:func:`ovfdlr.engines.native.neighbourhood.generate_angles` (26 for distance 1 in 3D), and it is
dependent when ``|level - level_centre| <= gldm_a`` (an integer, default 0). Voxels outside the
mask or the array are no neighbours. As ``RadiomicsGLDM._calculateMatrix`` does, rows of gray
levels absent from the ROI and columns of dependence counts that never occur are removed; ``i``
runs over the ROI's gray levels and ``j`` over the dependence counts present plus one (the
voxel itself). Every ROI voxel has one entry, so ``Nz = sum P = Np``.

With ``pg(i) = sum_j P(i, j)``, ``pd(j) = sum_i P(i, j)``, ``eps = numpy.spacing(1)``:

====================================  ==========================================================
SmallDependenceEmphasis               sum_j pd(j) / j^2 / Nz
LargeDependenceEmphasis               sum_j pd(j) j^2 / Nz
GrayLevelNonUniformity                sum_i pg(i)^2 / Nz
DependenceNonUniformity               sum_j pd(j)^2 / Nz
DependenceNonUniformityNormalized     sum_j pd(j)^2 / Nz^2
GrayLevelVariance                     sum_i (pg/Nz)(i) (i - mu)^2, mu = sum_i (pg/Nz)(i) i
DependenceVariance                    sum_j (pd/Nz)(j) (j - mu)^2, mu = sum_j (pd/Nz)(j) j
DependenceEntropy                     -sum_ij p(i, j) log2(p(i, j) + eps), p = P / Nz
LowGrayLevelEmphasis                  sum_i pg(i) / i^2 / Nz
HighGrayLevelEmphasis                 sum_i pg(i) i^2 / Nz
SmallDependenceLowGrayLevelEmphasis   sum_ij P(i, j) / (i^2 j^2) / Nz
SmallDependenceHighGrayLevelEmphasis  sum_ij P(i, j) i^2 / j^2 / Nz
LargeDependenceLowGrayLevelEmphasis   sum_ij P(i, j) j^2 / i^2 / Nz
LargeDependenceHighGrayLevelEmphasis  sum_ij P(i, j) i^2 j^2 / Nz
====================================  ==========================================================

The deprecated ``DependencePercentage`` and ``GrayLevelNonUniformityNormalized`` give no value in
PyRadiomics (their getters raise ``DeprecationWarning``), so asking for them returns no entry.

Written here rather than calling PyRadiomics: the dependence counts come from the shared
one-pass numba kernel (:mod:`ovfdlr.engines.native.neighbourhood`, no GIL, counted together with
the GLCM and NGTDM); the features use PyRadiomics' numpy expressions on the same arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ovfdlr.engines.catalogue import FEATURES, resolve_names
from ovfdlr.engines.native.arrays import drop_absent_levels, drop_empty
from ovfdlr.engines.native.neighbourhood import (
    NeighbourhoodMatrices,
)

__all__ = ["FEATURE_NAMES", "compute", "features_from_matrices"]

#: PyRadiomics' ``RadiomicsGLDM.getFeatureNames()``: name -> deprecated.
FEATURE_NAMES: dict[str, bool] = FEATURES["gldm"]  # PyRadiomics' names, deprecated flags


class _Coefficients:
    """``P``, ``pd``, ``pg``, ``Nz``, ``i`` and ``j`` exactly as ``RadiomicsGLDM`` holds them:
    with the leading voxel axis of length 1 and the memory layout ``numpy.delete`` leaves, so
    that the feature expressions below (PyRadiomics' own) sum in the same order."""

    def __init__(self, counts: np.ndarray, gray_levels: np.ndarray):
        ng, width = counts.shape  # width = Na + 1; cMatrices.calculate_gldm has 2 Na + 1
        p = np.zeros((1, ng, 2 * width - 1))
        p[0, :, :width] = counts
        p = drop_absent_levels(p, gray_levels, ng, axis=1)
        jvector = np.arange(1, p.shape[2] + 1, dtype="float64")
        pd = np.sum(p, 1)
        self.pg = np.sum(p, 2)
        empty_sizes = np.sum(pd, 0)
        empty = empty_sizes == 0
        self.p = drop_empty(p, empty, 2)
        self.jvector = drop_empty(jvector, empty, 0)
        self.pd = drop_empty(pd, empty, 1)
        nz = np.sum(self.pd, 1)
        nz[nz == 0] = 1
        self.nz = nz
        self.ivector = np.asarray(gray_levels).astype(float)


def _grey_level_variance(c: _Coefficients) -> np.ndarray:
    pg = c.pg / c.nz[:, None]
    u_i = np.sum(pg * c.ivector[None, :], 1, keepdims=True)
    return np.sum(pg * (c.ivector[None, :] - u_i) ** 2, 1)


def _dependence_variance(c: _Coefficients) -> np.ndarray:
    pd = c.pd / c.nz[:, None]
    u_j = np.sum(pd * c.jvector[None, :], 1, keepdims=True)
    return np.sum(pd * (c.jvector[None, :] - u_j) ** 2, 1)


def _dependence_entropy(c: _Coefficients) -> np.ndarray:
    p = c.p / c.nz[:, None, None]
    return -np.sum(p * np.log2(p + np.spacing(1)), (1, 2))


_FEATURES: dict[str, Callable[[_Coefficients], np.ndarray]] = {
    "DependenceEntropy": _dependence_entropy,
    "DependenceNonUniformity": lambda c: np.sum(c.pd**2, 1) / c.nz,
    "DependenceNonUniformityNormalized": lambda c: np.sum(c.pd**2, 1) / c.nz**2,
    "DependenceVariance": _dependence_variance,
    "GrayLevelNonUniformity": lambda c: np.sum(c.pg**2, 1) / c.nz,
    "GrayLevelVariance": _grey_level_variance,
    "HighGrayLevelEmphasis": lambda c: np.sum(c.pg * (c.ivector[None, :] ** 2), 1) / c.nz,
    "LargeDependenceEmphasis": lambda c: np.sum(c.pd * (c.jvector[None, :] ** 2), 1) / c.nz,
    "LargeDependenceHighGrayLevelEmphasis": lambda c: (
        np.sum(c.p * ((c.jvector[None, None, :] ** 2) * (c.ivector[None, :, None] ** 2)), (1, 2))
        / c.nz
    ),
    "LargeDependenceLowGrayLevelEmphasis": lambda c: (
        np.sum(c.p * (c.jvector[None, None, :] ** 2) / (c.ivector[None, :, None] ** 2), (1, 2))
        / c.nz
    ),
    "LowGrayLevelEmphasis": lambda c: np.sum(c.pg / (c.ivector[None, :] ** 2), 1) / c.nz,
    "SmallDependenceEmphasis": lambda c: np.sum(c.pd / (c.jvector[None, :] ** 2), 1) / c.nz,
    "SmallDependenceHighGrayLevelEmphasis": lambda c: (
        np.sum(c.p * (c.ivector[None, :, None] ** 2) / (c.jvector[None, None, :] ** 2), (1, 2))
        / c.nz
    ),
    "SmallDependenceLowGrayLevelEmphasis": lambda c: (
        np.sum(c.p / ((c.ivector[None, :, None] ** 2) * (c.jvector[None, None, :] ** 2)), (1, 2))
        / c.nz
    ),
}


def features_from_matrices(
    matrices: NeighbourhoodMatrices,
    spacing: tuple[float, float, float],
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """The GLDM features from the kernel's counts (``matrices.gldm`` must be present)."""
    chosen = resolve_names(names, FEATURE_NAMES)
    if matrices.gldm is None:
        raise ValueError("the neighbourhood matrices were counted without the GLDM")
    coefficients = _Coefficients(matrices.gldm, matrices.gray_levels)
    out: dict[str, float] = {}
    with np.errstate(all="ignore"):
        for name in chosen:
            if name in _FEATURES:  # deprecated ones: no value, as in PyRadiomics
                out[name] = float(_FEATURES[name](coefficients)[0])
    return out


def compute(
    binned: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """PyRadiomics' GLDM features of the ROI ``mask`` in the binned image ``binned``
    (z, y, x); ``names`` None: every non-deprecated feature (this class alone through
    :func:`ovfdlr.engines.native.texture.compute_classes`)."""
    from ovfdlr.engines.native.texture import compute_classes

    return compute_classes(binned, mask, spacing, settings, {"gldm": names})["gldm"]
