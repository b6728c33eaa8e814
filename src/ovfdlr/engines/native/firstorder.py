"""First-order (intensity) features, PyRadiomics' definitions and arithmetic.

With X the N voxel values in the ROI (after any filter), c = ``voxelArrayShift``, V the voxel
volume, p(i) the fraction of ROI voxels in gray-level bin i (the discretisation shared with the
texture classes) and eps = numpy.spacing(1):

| feature | formula |
| --- | --- |
| Energy | sum (X + c)^2 |
| TotalEnergy | V sum (X + c)^2 |
| Entropy | -sum p(i) log2(p(i) + eps) |
| Minimum, Maximum, Range | min X, max X, max X - min X |
| 10Percentile, 90Percentile, Median | numpy percentiles (linear interpolation) |
| InterquartileRange | P75 - P25 |
| Mean | mean X |
| MeanAbsoluteDeviation | mean abs(X - mean X) |
| RobustMeanAbsoluteDeviation | the same over the voxels between P10 and P90 inclusive |
| RootMeanSquared | sqrt(sum (X + c)^2 / N) |
| StandardDeviation (deprecated), Variance | population SD, SD^2 |
| Skewness | m3 / m2^1.5 (0 for a flat ROI) |
| Kurtosis | m4 / m2^2 (not the excess: a normal distribution gives 3; 0 for a flat ROI) |
| Uniformity | sum p(i)^2 |

(m_k: central moments about the mean; https://pyradiomics.readthedocs.io/en/latest/features.html).
The calls are numpy's, made as PyRadiomics makes them (the values as a 1 x N row, the nan-aware
reductions), so that the results are the same floats; what is saved is the re-binning (the
discretised image comes from the engine) and the repeated statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ovfdlr.engines.catalogue import FEATURES, enabled_features
from ovfdlr.engines.params import setting

FEATURE_NAMES = FEATURES["firstorder"]


def compute(
    image: np.ndarray,
    binned: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, ...],
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """First-order features of the ROI ``mask`` of ``image`` (its gray-level bins: ``binned``)."""
    wanted = enabled_features("firstorder", list(names) if names is not None else None)
    x1 = image[mask].astype("float")
    x = x1.reshape((1, -1))
    shift = setting(dict(settings), "voxelArrayShift")
    binned_values = binned[mask]
    if binned_values.size and binned_values.min() >= 0:  # numpy.unique's counts, by counting
        counts = np.bincount(binned_values)
        counts = counts[counts > 0]
    else:
        _, counts = np.unique(binned_values, return_counts=True)
    p = counts.reshape((1, -1)).astype("float")
    total = np.sum(p, 1, keepdims=True)
    total[total == 0] = 1
    p = p / total
    cache: dict[str, Any] = {}

    def get(key, fn):
        if key not in cache:
            cache[key] = fn()
        return cache[key]

    def mean():
        return get("mean", lambda: np.nanmean(x, 1, keepdims=True))

    def deviations():
        return get("d", lambda: x - mean())

    def moment(k):
        # numpy.power(d, 2) is d * d; d^3 and d^4 as products differ from pow() in the last bit
        # only, and are several times faster.
        def m():
            d = deviations()
            d2 = get("d2", lambda: np.power(d, 2))
            return np.nanmean({2: d2, 3: d2 * d, 4: d2 * d2}[k], 1)

        return get(f"m{k}", m)

    def percentiles():
        # One partition for all four; the same values as numpy.nanpercentile row by row.
        return get(
            "pct",
            lambda: (
                dict(zip((10, 25, 75, 90), np.percentile(x1, [10, 25, 75, 90]), strict=True))
                if x1.size
                else dict.fromkeys((10, 25, 75, 90), np.nan)
            ),
        )

    def pct(q):
        return np.array([percentiles()[q]])

    def energy():
        return get("energy", lambda: np.nansum((x + shift) ** 2, 1))

    def robust_mad():
        kept = x.copy()
        valid = ~np.isnan(kept)
        valid[valid] = ((kept - pct(10)[:, None])[valid] < 0) | (
            (kept - pct(90)[:, None])[valid] > 0
        )
        kept[valid] = np.nan
        return np.nanmean(np.absolute(kept - np.nanmean(kept, 1, keepdims=True)), 1)

    def rms():
        if x.size == 0:
            return 0
        n = np.sum(~np.isnan(x), 1).astype("float")
        return np.sqrt(energy() / n)

    def skewness():
        m2, m3 = moment(2).copy(), moment(3)
        m2[m2 == 0] = 1
        return m3 / m2**1.5

    def kurtosis():
        m2, m4 = moment(2).copy(), moment(4)
        m2[m2 == 0] = 1
        return m4 / m2**2.0

    formulas = {
        "Energy": energy,
        "TotalEnergy": lambda: energy() * np.multiply.reduce(spacing),
        "Entropy": lambda: -1.0 * np.sum(p * np.log2(p + np.spacing(1)), 1),
        "Minimum": lambda: np.nanmin(x, 1),
        "10Percentile": lambda: pct(10),
        "90Percentile": lambda: pct(90),
        "Maximum": lambda: np.nanmax(x, 1),
        "Mean": lambda: np.nanmean(x, 1),
        "Median": lambda: np.median(x1) if x1.size else np.nan,
        "InterquartileRange": lambda: pct(75) - pct(25),
        "Range": lambda: np.nanmax(x, 1) - np.nanmin(x, 1),
        "MeanAbsoluteDeviation": lambda: np.nanmean(np.absolute(deviations()), 1),
        "RobustMeanAbsoluteDeviation": robust_mad,
        "RootMeanSquared": rms,
        "StandardDeviation": lambda: np.nanstd(x, axis=1),
        "Skewness": skewness,
        "Kurtosis": kurtosis,
        "Variance": lambda: np.nanstd(x, 1) ** 2,
        "Uniformity": lambda: np.nansum(p**2, 1),
    }
    return {name: float(np.asarray(formulas[name]()).reshape(-1)[0]) for name in wanted}
