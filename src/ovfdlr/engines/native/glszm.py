r"""Gray Level Size Zone Matrix features, PyRadiomics 3.1's ``RadiomicsGLSZM`` (segment-based).

The matrix ``P(i, j)`` counts zones (connected ROI voxels of one gray level; 26-connected in 3D,
8-connected in the plane with ``force2D``) of gray level ``i`` and ``j`` voxels
(:func:`ovfdlr.engines.native.runs_zones.glszm_matrix`; as many columns as the largest zone). As
in ``RadiomicsGLSZM._calculateMatrix`` / ``_calculateCoefficients``: rows of gray levels absent
from the ROI are removed; ``Nz = sum_ij P`` (zones, 1 if 0), ``Np = sum_j ps(j) j`` (ROI voxels,
1 if 0), both computed before columns of absent zone sizes are removed; ``ps(j) = sum_i P``,
``pg(i) = sum_j P``. With ``p = P / Nz`` and ``eps = numpy.spacing(1)``:

==================================  ================================================================
SmallAreaEmphasis                   sum_j ps(j) / j^2 / Nz
LargeAreaEmphasis                   sum_j ps(j) j^2 / Nz
GrayLevelNonUniformity              sum_i pg(i)^2 / Nz
GrayLevelNonUniformityNormalized    sum_i pg(i)^2 / Nz^2
SizeZoneNonUniformity               sum_j ps(j)^2 / Nz
SizeZoneNonUniformityNormalized     sum_j ps(j)^2 / Nz^2
ZonePercentage                      Nz / Np
GrayLevelVariance                   sum_i (pg/Nz)(i) (i - mu_i)^2, mu_i = sum_i (pg/Nz)(i) i
ZoneVariance                        sum_j (ps/Nz)(j) (j - mu_j)^2, mu_j = sum_j (ps/Nz)(j) j
ZoneEntropy                         -sum_ij p(i, j) log2(p(i, j) + eps)
LowGrayLevelZoneEmphasis            sum_i pg(i) / i^2 / Nz
HighGrayLevelZoneEmphasis           sum_i pg(i) i^2 / Nz
SmallAreaLowGrayLevelEmphasis       sum_ij P(i, j) / (i^2 j^2) / Nz
SmallAreaHighGrayLevelEmphasis      sum_ij P(i, j) i^2 / j^2 / Nz
LargeAreaLowGrayLevelEmphasis       sum_ij P(i, j) j^2 / i^2 / Nz
LargeAreaHighGrayLevelEmphasis      sum_ij P(i, j) i^2 j^2 / Nz
==================================  ================================================================

Written here rather than calling PyRadiomics: the zones are labelled in one numba pass over the
voxels (one flood fill per zone, no GIL, so image types or cases can run in threads), and the
features come vectorised from the small matrix with the same numpy expressions, so values
agree with PyRadiomics to the last bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ovfdlr.engines.catalogue import FEATURES, resolve_names
from ovfdlr.engines.native.arrays import drop_absent_levels, drop_empty
from ovfdlr.engines.native.runs_zones import glszm_matrix, prepare, segment_settings

__all__ = ["FEATURE_NAMES", "compute"]

#: PyRadiomics' ``RadiomicsGLSZM.getFeatureNames()``: name -> deprecated.
FEATURE_NAMES: dict[str, bool] = FEATURES["glszm"]  # PyRadiomics' names, deprecated flags


class _Matrix:
    """The GLSZM after PyRadiomics' clean-up, with its coefficients."""

    def __init__(self, binned: np.ndarray, mask: np.ndarray, settings) -> None:
        force2d, force2d_dimension = segment_settings(settings)
        roi = prepare(binned, np.asarray(mask, dtype=bool))
        levels = roi.levels
        p = glszm_matrix(roi, force2d=force2d, force2d_dimension=force2d_dimension)
        p = drop_absent_levels(p, levels, roi.ng)
        ps = np.sum(p, 0)
        pg = np.sum(p, 1)
        jvector = np.arange(1, p.shape[1] + 1, dtype=np.float64)
        nz = np.sum(p, (0, 1))
        nz = nz if nz != 0 else 1.0
        np_ = np.sum(ps * jvector)
        np_ = np_ if np_ != 0 else 1.0
        empty = ps == 0
        self.p = drop_empty(p, empty, 1)
        self.ps = drop_empty(ps, empty, 0)
        self.pg = pg
        self.nz = nz
        self.np = np_
        self.ivector = levels.astype(float)
        self.jvector = drop_empty(jvector, empty, 0)


def _sae(m: _Matrix) -> float:
    return np.sum(m.ps / (m.jvector**2)) / m.nz


def _lae(m: _Matrix) -> float:
    return np.sum(m.ps * (m.jvector**2)) / m.nz


def _gln(m: _Matrix) -> float:
    return np.sum(m.pg**2) / m.nz


def _glnn(m: _Matrix) -> float:
    return np.sum(m.pg**2) / m.nz**2


def _szn(m: _Matrix) -> float:
    return np.sum(m.ps**2) / m.nz


def _sznn(m: _Matrix) -> float:
    return np.sum(m.ps**2) / m.nz**2


def _zp(m: _Matrix) -> float:
    return m.nz / m.np


def _glv(m: _Matrix) -> float:
    pg = m.pg / m.nz
    mean = np.sum(pg * m.ivector)
    return np.sum(pg * (m.ivector - mean) ** 2)


def _zv(m: _Matrix) -> float:
    ps = m.ps / m.nz
    mean = np.sum(ps * m.jvector)
    return np.sum(ps * (m.jvector - mean) ** 2)


def _ze(m: _Matrix) -> float:
    p = m.p / m.nz
    return -np.sum(p * np.log2(p + np.spacing(1)))


def _lglze(m: _Matrix) -> float:
    return np.sum(m.pg / (m.ivector**2)) / m.nz


def _hglze(m: _Matrix) -> float:
    return np.sum(m.pg * (m.ivector**2)) / m.nz


def _salgle(m: _Matrix) -> float:
    i2 = m.ivector[:, None] ** 2
    j2 = m.jvector[None, :] ** 2
    return np.sum(m.p / (i2 * j2)) / m.nz


def _sahgle(m: _Matrix) -> float:
    i2 = m.ivector[:, None] ** 2
    j2 = m.jvector[None, :] ** 2
    return np.sum(m.p * i2 / j2) / m.nz


def _lalgle(m: _Matrix) -> float:
    i2 = m.ivector[:, None] ** 2
    j2 = m.jvector[None, :] ** 2
    return np.sum(m.p * j2 / i2) / m.nz


def _lahgle(m: _Matrix) -> float:
    i2 = m.ivector[:, None] ** 2
    j2 = m.jvector[None, :] ** 2
    return np.sum(m.p * i2 * j2) / m.nz


_FEATURES: dict[str, Callable[[_Matrix], float]] = {
    "SmallAreaEmphasis": _sae,
    "LargeAreaEmphasis": _lae,
    "GrayLevelNonUniformity": _gln,
    "GrayLevelNonUniformityNormalized": _glnn,
    "SizeZoneNonUniformity": _szn,
    "SizeZoneNonUniformityNormalized": _sznn,
    "ZonePercentage": _zp,
    "GrayLevelVariance": _glv,
    "ZoneVariance": _zv,
    "ZoneEntropy": _ze,
    "LowGrayLevelZoneEmphasis": _lglze,
    "HighGrayLevelZoneEmphasis": _hglze,
    "SmallAreaLowGrayLevelEmphasis": _salgle,
    "SmallAreaHighGrayLevelEmphasis": _sahgle,
    "LargeAreaLowGrayLevelEmphasis": _lalgle,
    "LargeAreaHighGrayLevelEmphasis": _lahgle,
}


def compute(
    binned: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """GLSZM features of the ROI, as ``RadiomicsGLSZM(image, mask, **settings).execute()``.

    ``binned``: PyRadiomics' discretised gray levels (z, y, x), 1..N inside ``mask``;
    ``spacing`` is unused (the GLSZM has no distance weighting). Reads the settings ``force2D``
    and ``force2Ddimension`` (and refuses ``voxelBased``). ``names``: the features to compute
    (None: all). A 1-voxel array has no neighbour offset: ``RuntimeError``, as PyRadiomics
    raises.
    """
    del spacing
    chosen = resolve_names(names, FEATURE_NAMES)
    matrix = _Matrix(np.asarray(binned), mask, settings)
    return {name: float(_FEATURES[name](matrix)) for name in chosen}
