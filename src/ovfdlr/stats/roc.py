r"""Binary ROC curve, AUC and its confidence interval.

**Direction** (pROC's convention). ``"<"``: controls score lower than cases, a case is called
when ``score >= threshold``; ``">"``: controls score higher, a case is called when
``score <= threshold``. The AUC is computed for the direction given, never flipped to be above
0.5 behind the caller's back.

**AUC** (Mann-Whitney with midranks; Hanley & McNeil, Radiology 1982): with ``m`` cases and
``n`` controls and :math:`R_i` the midranks of the cases among all scores,

.. math::  \hat\theta = \frac{\sum_i R_i - m(m+1)/2}{m n}
    = \frac{1}{mn}\sum_{i,j}\left(1[X_i > Y_j] + \tfrac12 1[X_i = Y_j]\right),

the area under the empirical ROC curve by the trapezoidal rule, and DeLong's :math:`\hat\theta`.

**Confidence interval.** ``method="delong"``: :math:`\hat\theta \pm z_{1-\alpha/2}\sqrt{V}` with
``V`` DeLong's variance (DeLong et al., Biometrics 1988), clipped to [0, 1]; pROC's
``ci.auc(method = "delong")``. ``method="bootstrap"``: stratified (cases and controls
resampled separately, sizes kept) percentile bootstrap, seeded; pROC's
``ci.auc(method = "bootstrap", boot.stratified = TRUE)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.stats._bootstrap import percentile_interval, stratified_indices
from ovfdlr.stats._checks import (
    StatsError,
    binary_labels,
    check_direction,
    check_level,
    check_n_boot,
    clip,
    scores_1d,
    z_critical,
)
from ovfdlr.stats.delong import (
    _need_two_each,
    auc_rows,
    covariance_from_placements,
    oriented,
    placements,
)

__all__ = ["AucCI", "auc_ci", "roc_auc", "roc_curve"]

_METHOD_TEXT = {
    "delong": "DeLong",
    "bootstrap": "stratified percentile bootstrap",
    "delong-stratified": "DeLong structural components stratified by true class",
}


@dataclass(frozen=True)
class AucCI:
    """An AUC with its confidence interval. ``method``: ``"delong"``, ``"bootstrap"`` or
    ``"delong-stratified"`` (the macro AUC's stratified structural-component variance)."""

    auc: float
    lower: float
    upper: float
    level: float
    method: str

    def __str__(self) -> str:
        how = _METHOD_TEXT.get(self.method, self.method)
        return (
            f"Area under the curve: {self.auc:.4f}\n"
            f"{self.level * 100:g}% CI: {self.lower:.4f}-{self.upper:.4f} ({how})"
        )


def roc_auc(y: Any, score: Any, *, direction: str = "<") -> float:
    """Area under the ROC curve: the Mann-Whitney statistic with ties counted one half.

    ``y``: binary (0/1 or bool, 1 = case); ``score``: one value per subject; ``direction``
    ``"<"`` (higher score = case) or ``">"`` (lower score = case). Equals pROC's ``auc()`` for
    the same direction and DeLong's :math:`\\hat\\theta` (DeLong et al., Biometrics 1988).
    """
    direction = check_direction(direction)
    is_case = binary_labels(y)
    s = scores_1d(score, is_case.size)
    return float(placements(is_case, oriented(s, direction)[None, :])[0][0])


def roc_curve(y: Any, score: Any, *, direction: str = "<") -> pd.DataFrame:
    """The empirical ROC curve from (0, 0) to (1, 1).

    One row per distinct score (plus the start point, threshold ``+inf`` for ``"<"`` and
    ``-inf`` for ``">"``), ordered by increasing false-positive rate. A subject is called a case
    when ``score >= threshold`` (``"<"``) or ``score <= threshold`` (``">"``). Columns:
    ``threshold``, ``fpr`` (1 - specificity), ``tpr`` (sensitivity). Tied cases and controls
    give a diagonal step, so the trapezoidal area under the curve equals :func:`roc_auc`.
    """
    direction = check_direction(direction)
    is_case = binary_labels(y)
    s = oriented(scores_1d(score, is_case.size), direction)
    cases = np.sort(s[is_case])
    controls = np.sort(s[~is_case])
    thresholds = np.unique(s)[::-1]
    tp = cases.size - np.searchsorted(cases, thresholds, side="left")
    fp = controls.size - np.searchsorted(controls, thresholds, side="left")
    fpr = np.concatenate([[0.0], fp / controls.size])
    tpr = np.concatenate([[0.0], tp / cases.size])
    thr = np.concatenate([[np.inf], thresholds])
    if direction == ">":
        thr = -thr
    return pd.DataFrame({"threshold": thr, "fpr": fpr, "tpr": tpr})


def auc_ci(
    y: Any,
    score: Any,
    level: float = 0.95,
    method: str = "delong",
    n_boot: int = 2000,
    seed: int = 0,
    direction: str = "<",
) -> AucCI:
    """AUC with a confidence interval by DeLong's variance or the stratified bootstrap.

    ``"delong"``: :math:`\\hat\\theta \\pm z_{1-\\alpha/2}\\sqrt{S_{10}/m + S_{01}/n}`, clipped to
    [0, 1] (DeLong et al., Biometrics 1988; pROC's ``ci.auc``); needs at least 2 cases and 2
    controls. ``"bootstrap"``: ``n_boot`` replicates resampling cases and controls separately,
    percentile interval (quantile type 7), deterministic for a given ``seed``.
    """
    level = check_level(level)
    direction = check_direction(direction)
    is_case = binary_labels(y)
    s = oriented(scores_1d(score, is_case.size), direction)
    if method == "delong":
        _need_two_each(is_case, "the DeLong AUC confidence interval")
        theta, v10, v01 = placements(is_case, s[None, :])
        sd = float(np.sqrt(covariance_from_placements(theta, v10, v01)[0, 0]))
        auc = float(theta[0])
        half = z_critical(level) * sd
        return AucCI(auc, clip(auc - half, 0.0, 1.0), clip(auc + half, 0.0, 1.0), level, method)
    if method == "bootstrap":
        n_boot = check_n_boot(n_boot)
        strata = [np.flatnonzero(~is_case), np.flatnonzero(is_case)]
        idx = stratified_indices(strata, n_boot, np.random.default_rng(seed))
        labels = np.concatenate([np.zeros(strata[0].size, bool), np.ones(strata[1].size, bool)])
        boot = auc_rows(labels, s[idx])
        auc = float(placements(is_case, s[None, :])[0][0])
        lo, hi = percentile_interval(boot, level)
        return AucCI(auc, clip(lo, 0.0, 1.0), clip(hi, 0.0, 1.0), level, method)
    raise StatsError(f"method must be 'delong' or 'bootstrap'; got {method!r}")
