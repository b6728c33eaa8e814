r"""Calibration: reliability curves, the multi-class Brier score and expected calibration error.

- **Reliability curve** per class ``k`` (one-vs-rest): cases binned on ``proba[:, k]``; per
  non-empty bin the mean predicted probability, the observed fraction of class ``k`` and the
  count. Bins are right-closed, :math:`(e_{b}, e_{b+1}]` (the first also holds 0), with edges
  equally spaced on [0, 1] (``"uniform"``) or at the quantiles of ``proba[:, k]``
  (``"quantile"``); the same binning as scikit-learn's ``calibration_curve``.
- **Brier score** (Brier, Monthly Weather Review 1950;78:1-3), multi-class form:
  :math:`\frac1n\sum_i\sum_k (p_{ik} - 1[y_i = k])^2`, 0 for a perfect forecast, at most 2.
- **Expected calibration error**, top-label (Guo et al., ICML 2017): with confidence
  :math:`\hat p_i = \max_k p_{ik}`, prediction :math:`\hat y_i = \arg\max_k p_{ik}` and ``M``
  equal-width bins :math:`B_b = (b/M, (b+1)/M]`,
  :math:`\mathrm{ECE} = \sum_b \frac{|B_b|}{n}\,|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`.
  Class-wise (Kull et al., NeurIPS 2019): the same sum for every class on
  :math:`(p_{ik}, 1[y_i = k])`, averaged over classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.stats._checks import StatsError, check_classes, class_labels, proba_matrix

__all__ = ["brier_score", "expected_calibration_error", "reliability_curves"]


def _inputs(y: Any, proba: Any, classes: Sequence[int] | None):
    if classes is None:
        arr = np.asarray(proba)
        if arr.ndim != 2:
            raise StatsError(f"proba must be a (cases, classes) matrix; got shape {arr.shape}")
        classes = tuple(range(arr.shape[1]))
    classes = check_classes(classes)
    yi = class_labels(y, classes)
    p = proba_matrix(proba, yi.size, len(classes), unit_interval=True)
    return classes, yi, p


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Right-closed bins ``(e_b, e_{b+1}]``; values at or below the first edge go to bin 0."""
    return np.searchsorted(edges[1:-1], values, side="left")


def _check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise StatsError(f"n_bins must be a positive integer; got {n_bins!r}")
    return int(n_bins)


def reliability_curves(
    y: Any,
    proba: Any,
    *,
    classes: Sequence[int] = (0, 1, 2),
    n_bins: int = 10,
    strategy: str = "uniform",
) -> pd.DataFrame:
    """One-vs-rest reliability (calibration) curve of every class.

    Columns: class, bin (0-based), mean_predicted, observed_fraction, count, bin_lower,
    bin_upper; only non-empty bins. ``strategy``: ``"uniform"`` (equal-width bins on [0, 1]) or
    ``"quantile"`` (edges at the quantiles of the class's probabilities, so bins hold about the
    same number of cases). Matches scikit-learn's ``calibration_curve`` bin for bin.
    """
    n_bins = _check_bins(n_bins)
    if strategy not in ("uniform", "quantile"):
        raise StatsError(f"strategy must be 'uniform' or 'quantile'; got {strategy!r}")
    classes, yi, p = _inputs(y, proba, classes)
    frames = []
    for k, label in enumerate(classes):
        s = p[:, k]
        obs = (yi == k).astype(float)
        if strategy == "uniform":
            edges = np.linspace(0.0, 1.0, n_bins + 1)
        else:
            edges = np.percentile(s, np.linspace(0.0, 1.0, n_bins + 1) * 100)
        b = _bin_index(s, edges)
        count = np.bincount(b, minlength=n_bins)
        sum_p = np.bincount(b, weights=s, minlength=n_bins)
        sum_o = np.bincount(b, weights=obs, minlength=n_bins)
        nz = np.flatnonzero(count)
        frames.append(
            pd.DataFrame(
                {
                    "class": label,
                    "bin": nz,
                    "mean_predicted": sum_p[nz] / count[nz],
                    "observed_fraction": sum_o[nz] / count[nz],
                    "count": count[nz],
                    "bin_lower": edges[nz],
                    "bin_upper": edges[nz + 1],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def brier_score(y: Any, proba: Any, *, classes: Sequence[int] | None = None) -> float:
    """Multi-class Brier score :math:`\\frac1n\\sum_i\\sum_k (p_{ik} - 1[y_i = k])^2` (Brier 1950).

    ``proba`` (n, K) with column ``k`` for ``classes[k]`` (default ``0..K-1``). For a binary
    problem given as ``[1 - p, p]`` this is twice the usual binary Brier score.
    """
    classes, yi, p = _inputs(y, proba, classes)
    onehot = yi[:, None] == np.arange(len(classes))[None, :]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def _ece(conf: np.ndarray, hit: np.ndarray, n_bins: int) -> float:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = _bin_index(conf, edges)
    count = np.bincount(b, minlength=n_bins)
    gap = np.abs(
        np.bincount(b, weights=hit, minlength=n_bins)
        - np.bincount(b, weights=conf, minlength=n_bins)
    )
    # sum_b |B_b|/n * |acc_b - conf_b| = sum_b |sum(hit) - sum(conf)| / n
    return float(gap[count > 0].sum() / conf.size)


def expected_calibration_error(
    y: Any,
    proba: Any,
    n_bins: int = 10,
    kind: str = "top-label",
    *,
    classes: Sequence[int] | None = None,
) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins.

    ``"top-label"`` (Guo et al., ICML 2017): confidence = max probability, hit = argmax is the
    true class, :math:`\\sum_b \\frac{|B_b|}{n}|\\mathrm{acc}(B_b) - \\mathrm{conf}(B_b)|`.
    ``"classwise"`` (Kull et al., NeurIPS 2019): the same for each class's probability against
    its one-vs-rest indicator, averaged over classes.
    """
    n_bins = _check_bins(n_bins)
    if kind not in ("top-label", "classwise"):
        raise StatsError(f"kind must be 'top-label' or 'classwise'; got {kind!r}")
    classes, yi, p = _inputs(y, proba, classes)
    if kind == "top-label":
        conf = p.max(axis=1)
        hit = (np.argmax(p, axis=1) == yi).astype(float)
        return _ece(conf, hit, n_bins)
    return float(
        np.mean([_ece(p[:, k], (yi == k).astype(float), n_bins) for k in range(len(classes))])
    )
