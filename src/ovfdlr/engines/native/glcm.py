r"""Gray Level Co-occurrence Matrix features, PyRadiomics 3.1's ``RadiomicsGLCM`` (segment-based).

The matrix ``P(i, j | a)`` counts ROI voxels of gray level ``i`` whose neighbour at offset
``a`` is in the ROI with gray level ``j``, for the one-directional angles of
:func:`ovfdlr.engines.native.neighbourhood.generate_angles` (13 for distance 1 in 3D; fewer
when an axis of the cropped array is shorter than the distance, or under ``force2D``). As
``RadiomicsGLCM._calculateMatrix`` then does:

1. rows and columns of gray levels absent from the ROI are removed (``i, j`` run over the ROI's
   gray levels, which are also the values used in the formulas);
2. ``symmetricalGLCM`` (default True): ``P <- P + P^T`` per angle;
3. ``weightingNorm`` set: the angles' matrices are multiplied by ``W = exp(-||a * spacing||^2)``
   (``infinity``: max, ``euclidean``: 2-norm, ``manhattan``: 1-norm of ``|a| * spacing`` in
   (z, y, x); ``no_weighting`` or an unknown name: W = 1) and summed into one matrix;
4. otherwise, with more than one angle, angles without any pair are removed;
5. each angle's matrix is normalised, ``p = P / sum P`` (NaN for an empty one).

Each feature is computed per angle and averaged over angles with ``nanmean`` (NaN when no angle
is left). With ``eps = numpy.spacing(1)``, ``px, py`` the marginals, ``ux, uy`` their means
(over the gray-level values), ``p_{x+y}(k)`` for ``k = 2..2 Ng`` and ``p_{x-y}(k)`` for
``k = 0..Ng-1`` (``Ng`` = the largest gray level in the ROI), ``HX, HY`` the marginal entropies,
``HXY = -sum p log2(p + eps)``, ``HXY1 = -sum p log2(px py + eps)`` and
``HXY2 = -sum px py log2(px py + eps)``:

==================  ==============================================================================
Autocorrelation     sum_ij p(i, j) i j
JointAverage        ux (mean over angles)
ClusterProminence   sum_ij (i + j - ux - uy)^4 p(i, j)
ClusterShade        sum_ij (i + j - ux - uy)^3 p(i, j)
ClusterTendency     sum_ij (i + j - ux - uy)^2 p(i, j)
Contrast            sum_ij (i - j)^2 p(i, j)
Correlation         (sum_ij p (i - ux)(j - uy)) / (sx sy + eps); 1 where sx sy = 0
DifferenceAverage   DA = sum_k k p_{x-y}(k)
DifferenceEntropy   -sum_k p_{x-y}(k) log2(p_{x-y}(k) + eps)
DifferenceVariance  sum_k (k - DA)^2 p_{x-y}(k)
JointEnergy         sum_ij p(i, j)^2
JointEntropy        HXY
Imc1                (HXY - HXY1) / max(HX, HY); 0 where max(HX, HY) = 0
Imc2                sqrt(1 - e^(-2 (HXY2 - HXY))); 0 where HXY2 = HXY
Idm                 sum_k p_{x-y}(k) / (1 + k^2)
MCC                 sqrt(second largest eigenvalue of Q), Q(i, j) = sum_k p(i, k) p(j, k) /
                    (px(i) py(k) + eps); 1 when the ROI has one gray level
Idmn                sum_k p_{x-y}(k) / (1 + k^2 / Ng^2)
Id                  sum_k p_{x-y}(k) / (1 + k)
Idn                 sum_k p_{x-y}(k) / (1 + k / Ng)
InverseVariance     sum_{k>=1} p_{x-y}(k) / k^2
MaximumProbability  max_ij p(i, j)
SumAverage          sum_k k p_{x+y}(k)
SumEntropy          -sum_k p_{x+y}(k) log2(p_{x+y}(k) + eps)
SumSquares          sum_ij (i - ux)^2 p(i, j)
==================  ==============================================================================

The deprecated ``Dissimilarity``, ``Homogeneity1``, ``Homogeneity2`` and ``SumVariance`` give no
value in PyRadiomics (their getters raise ``DeprecationWarning``, which ``execute`` drops), so
asking for them here returns no entry either.

Written here rather than calling PyRadiomics: the matrix comes from the shared one-pass numba
kernel (:mod:`ovfdlr.engines.native.neighbourhood`, no GIL), ``p_{x+y}``/``p_{x-y}`` come from one
``bincount`` instead of a loop over ``k`` (one angle: numpy's own pairwise sum per ``k``, as the
original's selection sums) and MCC's eigenvalues from a symmetric matrix similar to ``Q``
(:func:`_mcc`: the same values to 1e-9, four times faster); everything else uses PyRadiomics'
numpy expressions on the same arrays, in the same summation order, so values agree to the last
bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import Any

import numpy as np

from ovfdlr.engines.catalogue import FEATURES, resolve_names
from ovfdlr.engines.native.arrays import drop_absent_levels, drop_empty, nanmean
from ovfdlr.engines.native.neighbourhood import (
    NeighbourhoodMatrices,
)

__all__ = ["FEATURE_NAMES", "compute", "features_from_matrices", "glcm_probabilities"]

#: PyRadiomics' ``RadiomicsGLCM.getFeatureNames()``: name -> deprecated.
FEATURE_NAMES: dict[str, bool] = FEATURES["glcm"]  # PyRadiomics' names, deprecated flags

EPS = np.spacing(1)


def _angle_weights(angles: np.ndarray, spacing: tuple[float, ...], norm: str) -> np.ndarray:
    """``W`` per angle, with PyRadiomics' expressions (spacing reversed to z, y, x)."""
    pixel_spacing = tuple(spacing)[::-1]
    weights = np.empty(len(angles))
    for a_idx, a in enumerate(angles):
        if norm == "infinity":
            weights[a_idx] = np.exp(-(max(np.abs(a) * pixel_spacing) ** 2))
        elif norm == "euclidean":
            weights[a_idx] = np.exp(-np.sum((np.abs(a) * pixel_spacing) ** 2))
        elif norm == "manhattan":
            weights[a_idx] = np.exp(-(np.sum(np.abs(a) * pixel_spacing) ** 2))
        else:  # 'no_weighting' and (with a warning in PyRadiomics) any unknown name
            weights[a_idx] = 1
    return weights


def glcm_probabilities(
    counts: np.ndarray,
    gray_levels: np.ndarray,
    angles: np.ndarray,
    spacing: tuple[float, ...],
    symmetrical: bool = True,
    weighting_norm: str | None = None,
) -> np.ndarray:
    """The normalised GLCM ``p(i, j, a)`` over the ROI's gray levels (steps 1-5 above).

    ``counts``: the kernel's ``(Ng, Ng, Na)`` co-occurrence counts; ``angles``: their offsets.
    """
    # Mirrors RadiomicsGLCM._calculateMatrix step by step on the same (1, Ng, Ng, Na) array, so
    # that numpy.delete leaves the same memory layout and later sums add in the same order.
    ng = counts.shape[0]
    p = counts.astype(np.float64)[None]
    p = drop_absent_levels(p, gray_levels, ng, axis=1)
    p = drop_absent_levels(p, gray_levels, ng, axis=2)
    if symmetrical:
        p += np.transpose(p, (0, 2, 1, 3)).copy()
    if weighting_norm is not None:
        weights = _angle_weights(angles, spacing, weighting_norm)
        p = np.sum(p * weights[None, None, None, :], 3, keepdims=True)
    sum_p = np.sum(p, (1, 2))
    if p.shape[3] > 1:
        empty_angles = np.sum(sum_p, 0) == 0
        if empty_angles.any():
            p = drop_empty(p, empty_angles, 3)
            sum_p = drop_empty(sum_p, empty_angles, 1)
    sum_p[sum_p == 0] = np.nan
    p /= sum_p[:, None, None, :]
    return p[0]


class _Coefficients:
    """PyRadiomics' ``_calculateCoefficients`` on ``p`` (shape ``(n, n, Na)``), computed lazily."""

    def __init__(self, p: np.ndarray, gray_levels: np.ndarray, ng: int):
        self.p = p
        self.ng = ng
        levels = np.asarray(gray_levels, dtype=np.float64)
        self.i, self.j = np.meshgrid(levels, levels, indexing="ij", sparse=True)
        self.i3 = self.i[:, :, None]
        self.j3 = self.j[:, :, None]
        self.k_sum = np.arange(2, (ng * 2) + 1, dtype="float")
        self.k_diff = np.arange(0, ng, dtype="float")
        self.levels = np.asarray(gray_levels, dtype=np.intp)

    @cached_property
    def px(self) -> np.ndarray:
        return self.p.sum(1, keepdims=True)

    @cached_property
    def py(self) -> np.ndarray:
        return self.p.sum(0, keepdims=True)

    @cached_property
    def ux(self) -> np.ndarray:
        return np.sum(self.i3 * self.p, (0, 1), keepdims=True)

    @cached_property
    def uy(self) -> np.ndarray:
        return np.sum(self.j3 * self.p, (0, 1), keepdims=True)

    def _binned(self, index: np.ndarray, length: int) -> np.ndarray:
        """Sum ``p`` over the (i, j) with the given index, per angle, in row-major order (as
        the boolean-mask sums of PyRadiomics, so the same rounding)."""
        na = self.p.shape[2]
        if na != 1:
            # numpy adds the selected (i, j) one after the other for each angle: so does bincount
            flat = (index[:, :, None] * na + np.arange(na)[None, None, :]).ravel()
            values = self.p.ravel()  # row-major (i, j, a) whatever the memory layout
            return np.bincount(flat, weights=values, minlength=length * na).reshape(length, na)
        # One angle: numpy sums each selection as one contiguous vector (pairwise); do the same.
        keys = index.ravel()
        order = np.argsort(keys, kind="stable")
        values = self.p[:, :, 0].ravel()[order]
        keys = keys[order]
        bounds = np.flatnonzero(np.diff(keys)) + 1
        out = np.zeros((length, 1))
        for start, end in zip(np.r_[0, bounds], np.r_[bounds, keys.size], strict=True):
            out[keys[start], 0] = np.sum(values[start:end])
        return out

    @cached_property
    def px_add_y(self) -> np.ndarray:
        lv = self.levels
        return self._binned(lv[:, None] + lv[None, :] - 2, 2 * self.ng - 1)

    @cached_property
    def px_sub_y(self) -> np.ndarray:
        lv = self.levels
        return self._binned(np.abs(lv[:, None] - lv[None, :]), self.ng)

    @cached_property
    def hxy(self) -> np.ndarray:
        return (-1) * np.sum((self.p * np.log2(self.p + EPS)), (0, 1))

    @cached_property
    def sum_centred(self) -> np.ndarray:
        return (self.i + self.j)[:, :, None] - self.ux - self.uy

    @cached_property
    def sum_centred2(self) -> np.ndarray:
        return self.sum_centred**2  # numpy squares exactly (x * x)

    @cached_property
    def diff_average(self) -> np.ndarray:
        return np.sum((self.k_diff[:, None] * self.px_sub_y), 0)

    @cached_property
    def pxpy(self) -> np.ndarray:
        return self.px * self.py

    @cached_property
    def log_pxpy(self) -> np.ndarray:
        return np.log2(self.pxpy + EPS)


def _joint_average(c: _Coefficients) -> Any:
    ux = c.ux.ravel()
    return np.nan if ux.size == 0 else ux.mean()


def _correlation(c: _Coefficients) -> Any:
    sigx = np.sum(c.p * ((c.i3 - c.ux) ** 2), (0, 1), keepdims=True) ** 0.5
    sigy = np.sum(c.p * ((c.j3 - c.uy) ** 2), (0, 1), keepdims=True) ** 0.5
    corm = np.sum(c.p * (c.i3 - c.ux) * (c.j3 - c.uy), (0, 1), keepdims=True)
    corr = corm / (sigx * sigy + EPS)
    corr[sigx * sigy == 0] = 1
    return nanmean(corr)


def _difference_variance(c: _Coefficients) -> Any:
    k = c.k_diff[:, None]
    diffavg = np.sum((k * c.px_sub_y), 0, keepdims=True)
    return nanmean(np.sum((c.px_sub_y * ((k - diffavg) ** 2)), 0))


def _imc1(c: _Coefficients) -> Any:
    hx = (-1) * np.sum((c.px * np.log2(c.px + EPS)), (0, 1))
    hy = (-1) * np.sum((c.py * np.log2(c.py + EPS)), (0, 1))
    hxy1 = (-1) * np.sum((c.p * c.log_pxpy), (0, 1))
    div = np.fmax(hx, hy)
    imc1 = c.hxy - hxy1
    imc1[div != 0] /= div[div != 0]
    imc1[div == 0] = 0
    return nanmean(imc1)


def _imc2(c: _Coefficients) -> Any:
    hxy2 = (-1) * np.sum((c.pxpy * c.log_pxpy), (0, 1))
    imc2 = (1 - np.e ** (-2 * (hxy2 - c.hxy))) ** 0.5
    imc2[hxy2 == c.hxy] = 0
    return nanmean(imc2)


def _mcc(c: _Coefficients) -> Any:
    """Maximal correlation coefficient: sqrt of the second largest eigenvalue of
    ``Q(i, j) = sum_k p(i, k) p(j, k) / (px(i) py(k))``, averaged over angles.

    PyRadiomics takes the eigenvalues of Q itself (general, non-symmetric, with numpy.spacing(1)
    added to the denominator). Q = Dx^-1 P Dy^-1 P^T is similar to the symmetric B B^T with
    B = Dx^-1/2 P Dy^-1/2, whose eigenvalues come from a symmetric solver four times faster
    (this feature was a sixth of the engine's time). The two differ by the epsilon only: below
    1e-9 relative on the test cohort (tests/test_native_engine.py).
    """
    n = c.p.shape[0]
    p = np.transpose(c.p, (2, 0, 1))  # (angle, i, k)
    if np.isnan(p).any():
        return np.nan  # an empty single angle: PyRadiomics' eigvals raises and it records NaN
    if n < 2:
        return 1  # flat region
    px = p.sum(2)  # (angle, i)
    py = p.sum(1)  # (angle, k)
    with np.errstate(divide="ignore"):
        rx = np.where(px > 0, 1 / np.sqrt(px), 0.0)
        ry = np.where(py > 0, 1 / np.sqrt(py), 0.0)
    b = rx[:, :, None] * p * ry[:, None, :]
    eigen = np.linalg.eigvalsh(b @ np.transpose(b, (0, 2, 1)))  # ascending, per angle
    return nanmean(np.sqrt(np.maximum(eigen[:, -2], 0.0)))


_FEATURES: dict[str, Callable[[_Coefficients], Any]] = {
    "Autocorrelation": lambda c: nanmean(np.sum(c.p * (c.i * c.j)[:, :, None], (0, 1))),
    # third and fourth powers as products of the square: 3x faster than pow, the last bit apart
    "ClusterProminence": lambda c: nanmean(np.sum((c.p * (c.sum_centred2**2)), (0, 1))),
    "ClusterShade": lambda c: nanmean(np.sum((c.p * (c.sum_centred2 * c.sum_centred)), (0, 1))),
    "ClusterTendency": lambda c: nanmean(np.sum((c.p * c.sum_centred2), (0, 1))),
    "Contrast": lambda c: nanmean(np.sum((c.p * ((np.abs(c.i - c.j))[:, :, None] ** 2)), (0, 1))),
    "Correlation": _correlation,
    "DifferenceAverage": lambda c: nanmean(c.diff_average),
    "DifferenceEntropy": lambda c: nanmean(
        (-1) * np.sum((c.px_sub_y * np.log2(c.px_sub_y + EPS)), 0)
    ),
    "DifferenceVariance": _difference_variance,
    "Id": lambda c: nanmean(np.sum(c.px_sub_y / (1 + c.k_diff[:, None]), 0)),
    "Idm": lambda c: nanmean(np.sum(c.px_sub_y / (1 + (c.k_diff[:, None] ** 2)), 0)),
    "Idmn": lambda c: nanmean(np.sum(c.px_sub_y / (1 + ((c.k_diff[:, None] ** 2) / (c.ng**2))), 0)),
    "Idn": lambda c: nanmean(np.sum(c.px_sub_y / (1 + (c.k_diff[:, None] / c.ng)), 0)),
    "Imc1": _imc1,
    "Imc2": _imc2,
    "InverseVariance": lambda c: nanmean(np.sum(c.px_sub_y[1:, :] / c.k_diff[1:, None] ** 2, 0)),
    "JointAverage": _joint_average,
    "JointEnergy": lambda c: nanmean(np.sum((c.p**2), (0, 1))),
    "JointEntropy": lambda c: nanmean(c.hxy),
    "MCC": _mcc,
    "MaximumProbability": lambda c: nanmean(np.amax(c.p, (0, 1)) if c.p.shape[2] else np.empty(0)),
    "SumAverage": lambda c: nanmean(np.sum((c.k_sum[:, None] * c.px_add_y), 0)),
    "SumEntropy": lambda c: nanmean((-1) * np.sum((c.px_add_y * np.log2(c.px_add_y + EPS)), 0)),
    "SumSquares": lambda c: nanmean(np.sum((c.p * ((c.i3 - c.ux) ** 2)), (0, 1))),
}


def features_from_matrices(
    matrices: NeighbourhoodMatrices,
    spacing: tuple[float, float, float],
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """The GLCM features from the kernel's counts (``matrices.glcm`` must be present)."""
    chosen = resolve_names(names, FEATURE_NAMES)
    if matrices.glcm is None:
        raise ValueError("the neighbourhood matrices were counted without the GLCM")
    p = glcm_probabilities(
        matrices.glcm,
        matrices.gray_levels,
        matrices.glcm_angles,
        spacing,
        bool(settings.get("symmetricalGLCM", True)),
        settings.get("weightingNorm", None),
    )
    coefficients = _Coefficients(p, matrices.gray_levels, matrices.Ng)
    out: dict[str, float] = {}
    with np.errstate(all="ignore"):
        for name in chosen:
            if name in _FEATURES:  # deprecated ones: no value, as in PyRadiomics
                out[name] = float(_FEATURES[name](coefficients))
    return out


def compute(
    binned: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """PyRadiomics' GLCM features of the ROI ``mask`` in the binned image ``binned``
    (z, y, x); ``names`` None: every non-deprecated feature (this class alone through
    :func:`ovfdlr.engines.native.texture.compute_classes`)."""
    from ovfdlr.engines.native.texture import compute_classes

    return compute_classes(binned, mask, spacing, settings, {"glcm": names})["glcm"]
