r"""Gray Level Run Length Matrix features, PyRadiomics 3.1's ``RadiomicsGLRLM`` (segment-based).

The matrix ``P(i, j | a)`` counts runs of gray level ``i`` and length ``j`` along each angle
``a`` (:func:`ovfdlr.engines.native.runs_zones.glrlm_matrix`: 13 one-directional distance-1
angles in 3D, fewer for a dimension of size 1 or with ``force2D``; run lengths up to the
array's largest dimension). As in ``RadiomicsGLRLM._calculateMatrix`` /
``_calculateCoefficients``:

1. rows of gray levels absent from the ROI are removed (``i`` runs over the ROI's gray levels);
2. with ``weightingNorm`` set, the angles' matrices are multiplied by the angle's length under
   that norm (``infinity``: max, ``euclidean``: 2-norm, ``manhattan``: 1-norm of
   ``|a| * spacing`` in (z, y, x); ``no_weighting`` or an unknown name: 1) and summed into one;
3. otherwise empty angles (no run) are removed when there is more than one angle;
4. ``Nr(a) = sum_ij P(i, j | a)``, NaN where 0; ``pr(j|a) = sum_i P``, ``pg(i|a) = sum_j P``;
5. columns of run lengths absent in every angle are removed (``j`` runs over those left).

Each feature is computed per angle and averaged over the angles with ``nanmean`` (one value
when weighted). With ``p = P / Nr`` and ``eps = numpy.spacing(1)``:

==================================  ================================================================
ShortRunEmphasis                    sum_j pr(j) / j^2 / Nr
LongRunEmphasis                     sum_j pr(j) j^2 / Nr
GrayLevelNonUniformity              sum_i pg(i)^2 / Nr
GrayLevelNonUniformityNormalized    sum_i pg(i)^2 / Nr^2
RunLengthNonUniformity              sum_j pr(j)^2 / Nr
RunLengthNonUniformityNormalized    sum_j pr(j)^2 / Nr^2
RunPercentage                       Nr / Np, Np = sum_j pr(j) j (voxels; times the angles summed)
GrayLevelVariance                   sum_i (pg/Nr)(i) (i - mu_i)^2, mu_i = sum_i (pg/Nr)(i) i
RunVariance                         sum_j (pr/Nr)(j) (j - mu_j)^2, mu_j = sum_j (pr/Nr)(j) j
RunEntropy                          -sum_ij p(i, j) log2(p(i, j) + eps)
LowGrayLevelRunEmphasis             sum_i pg(i) / i^2 / Nr
HighGrayLevelRunEmphasis            sum_i pg(i) i^2 / Nr
ShortRunLowGrayLevelEmphasis        sum_ij P(i, j) / (i^2 j^2) / Nr
ShortRunHighGrayLevelEmphasis       sum_ij P(i, j) i^2 / j^2 / Nr
LongRunLowGrayLevelEmphasis         sum_ij P(i, j) j^2 / i^2 / Nr
LongRunHighGrayLevelEmphasis        sum_ij P(i, j) j^2 i^2 / Nr
==================================  ================================================================

Written here rather than calling PyRadiomics: the runs of all angles are counted in one numba
pass over the voxels (no GIL, so image types or cases can run in threads), and the features
come vectorised from the small matrix with the same numpy expressions, so values agree with
PyRadiomics to the last bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ovfdlr.engines.catalogue import FEATURES, resolve_names
from ovfdlr.engines.native.arrays import drop_absent_levels, drop_empty, nanmean
from ovfdlr.engines.native.runs_zones import glrlm_matrix, prepare, segment_settings

__all__ = ["FEATURE_NAMES", "compute"]

#: PyRadiomics' ``RadiomicsGLRLM.getFeatureNames()``: name -> deprecated.
FEATURE_NAMES: dict[str, bool] = FEATURES["glrlm"]  # PyRadiomics' names, deprecated flags


def _angle_weights(angles: np.ndarray, spacing_zyx: np.ndarray, norm: str) -> np.ndarray:
    """Each angle's length under ``weightingNorm`` (PyRadiomics: unknown names weigh 1)."""
    weights = np.empty(len(angles))
    for k, angle in enumerate(angles):
        step = np.abs(angle) * spacing_zyx
        if norm == "infinity":
            weights[k] = max(step)
        elif norm == "euclidean":
            weights[k] = np.sqrt(np.sum(step**2))
        elif norm == "manhattan":
            weights[k] = np.sum(step)
        else:  # 'no_weighting', and PyRadiomics' fallback for an unknown norm
            weights[k] = 1
    return weights


class _Matrix:
    """The GLRLM after PyRadiomics' clean-up, with its coefficients (arrays over the angles)."""

    def __init__(
        self, binned: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float], settings
    ) -> None:
        force2d, force2d_dimension = segment_settings(settings)
        roi = prepare(binned, np.asarray(mask, dtype=bool))
        levels = roi.levels
        p, angles = glrlm_matrix(roi, force2d=force2d, force2d_dimension=force2d_dimension)
        p = drop_absent_levels(p, levels, roi.ng)
        norm = settings.get("weightingNorm", None)
        if norm is not None:
            spacing_zyx = np.asarray(spacing, dtype=float)[::-1]
            weights = _angle_weights(angles, spacing_zyx, norm)
            p = np.sum(p * weights[None, None, :], 2, keepdims=True)
        nr = np.sum(p, (0, 1))
        if p.shape[2] > 1:
            empty = nr == 0
            if empty.any():
                p = drop_empty(p, empty, 2)
                nr = drop_empty(nr, empty, 0)
        nr[nr == 0] = np.nan
        pr = np.sum(p, 0)  # (runs, angles)
        pg = np.sum(p, 1)  # (gray levels, angles)
        empty = np.sum(pr, 1) == 0
        self.p = drop_empty(p, empty, 1)
        self.pr = drop_empty(pr, empty, 0)
        self.jvector = drop_empty(np.arange(1, p.shape[1] + 1, dtype=np.float64), empty, 0)
        self.pg = pg
        self.nr = nr
        self.ivector = levels.astype(float)


def _sre(m: _Matrix) -> np.ndarray:
    return np.sum(m.pr / (m.jvector[:, None] ** 2), 0) / m.nr


def _lre(m: _Matrix) -> np.ndarray:
    return np.sum(m.pr * (m.jvector[:, None] ** 2), 0) / m.nr


def _gln(m: _Matrix) -> np.ndarray:
    return np.sum(m.pg**2, 0) / m.nr


def _glnn(m: _Matrix) -> np.ndarray:
    return np.sum(m.pg**2, 0) / (m.nr**2)


def _rln(m: _Matrix) -> np.ndarray:
    return np.sum(m.pr**2, 0) / m.nr


def _rlnn(m: _Matrix) -> np.ndarray:
    return np.sum(m.pr**2, 0) / m.nr**2


def _rp(m: _Matrix) -> np.ndarray:
    return m.nr / np.sum(m.pr * m.jvector[:, None], 0)


def _glv(m: _Matrix) -> np.ndarray:
    pg = m.pg / m.nr[None, :]
    i = m.ivector[:, None]
    mean = np.sum(pg * i, 0, keepdims=True)
    return np.sum(pg * (i - mean) ** 2, 0)


def _rv(m: _Matrix) -> np.ndarray:
    pr = m.pr / m.nr[None, :]
    j = m.jvector[:, None]
    mean = np.sum(pr * j, 0, keepdims=True)
    return np.sum(pr * (j - mean) ** 2, 0)


def _re(m: _Matrix) -> np.ndarray:
    p = m.p / m.nr[None, None, :]
    return -np.sum(p * np.log2(p + np.spacing(1)), (0, 1))


def _lglre(m: _Matrix) -> np.ndarray:
    return np.sum(m.pg / (m.ivector[:, None] ** 2), 0) / m.nr


def _hglre(m: _Matrix) -> np.ndarray:
    return np.sum(m.pg * (m.ivector[:, None] ** 2), 0) / m.nr


def _srlgle(m: _Matrix) -> np.ndarray:
    i2 = m.ivector[:, None, None] ** 2
    j2 = m.jvector[None, :, None] ** 2
    return np.sum(m.p / (i2 * j2), (0, 1)) / m.nr


def _srhgle(m: _Matrix) -> np.ndarray:
    i2 = m.ivector[:, None, None] ** 2
    j2 = m.jvector[None, :, None] ** 2
    return np.sum(m.p * i2 / j2, (0, 1)) / m.nr


def _lrlgle(m: _Matrix) -> np.ndarray:
    i2 = m.ivector[:, None, None] ** 2
    j2 = m.jvector[None, :, None] ** 2
    return np.sum(m.p * j2 / i2, (0, 1)) / m.nr


def _lrhgle(m: _Matrix) -> np.ndarray:
    i2 = m.ivector[:, None, None] ** 2
    j2 = m.jvector[None, :, None] ** 2
    return np.sum(m.p * (j2 * i2), (0, 1)) / m.nr


_FEATURES: dict[str, Callable[[_Matrix], np.ndarray]] = {
    "ShortRunEmphasis": _sre,
    "LongRunEmphasis": _lre,
    "GrayLevelNonUniformity": _gln,
    "GrayLevelNonUniformityNormalized": _glnn,
    "RunLengthNonUniformity": _rln,
    "RunLengthNonUniformityNormalized": _rlnn,
    "RunPercentage": _rp,
    "GrayLevelVariance": _glv,
    "RunVariance": _rv,
    "RunEntropy": _re,
    "LowGrayLevelRunEmphasis": _lglre,
    "HighGrayLevelRunEmphasis": _hglre,
    "ShortRunLowGrayLevelEmphasis": _srlgle,
    "ShortRunHighGrayLevelEmphasis": _srhgle,
    "LongRunLowGrayLevelEmphasis": _lrlgle,
    "LongRunHighGrayLevelEmphasis": _lrhgle,
}


def compute(
    binned: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """GLRLM features of the ROI, as ``RadiomicsGLRLM(image, mask, **settings).execute()``.

    ``binned``: PyRadiomics' discretised gray levels (z, y, x), 1..N inside ``mask``;
    ``spacing``: (x, y, z) as SimpleITK gives it (used by ``weightingNorm``). Reads the settings
    ``force2D``, ``force2Ddimension``, ``weightingNorm`` (and refuses ``voxelBased``). ``names``:
    the features to compute (None: all). A 1-voxel array has no angle: ``RuntimeError``, as
    PyRadiomics raises.
    """
    chosen = resolve_names(names, FEATURE_NAMES)
    matrix = _Matrix(np.asarray(binned), mask, spacing, settings)
    return {name: float(nanmean(_FEATURES[name](matrix))) for name in chosen}
