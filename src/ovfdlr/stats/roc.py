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

**Clustered by patient.** With ``groups`` (the patient of each case) and a patient with more
than one case, the DeLong variance becomes Obuchowski's clustered variance (Biometrics 1997;
:mod:`ovfdlr.stats.variance`), ``method="delong-clustered"``; with one case per patient it is
DeLong's, unchanged.

**At the boundary.** When the DeLong variance is zero (an AUC of 0 or 1: perfect separation)
the Wald interval would collapse to a point. The interval is then Newcombe's score-type
interval (Newcombe, Stat Med 2006;25:559-73, method 5): the set of :math:`\theta` with
:math:`(\hat\theta - \theta)^2 \le z^2_{1-\alpha/2} V(\theta)`, where

.. math::  V(\theta) = \frac{\theta(1-\theta)}{mn}\left[1 + (N^* - 1)
           \left(\frac{1-\theta}{2-\theta} + \frac{\theta}{1+\theta}\right)\right],
           \qquad N^* = \frac{m+n}{2},

Hanley and McNeil's variance with both group sizes replaced by their mean;
``method="newcombe-score"``. With fewer than two cases or controls no interval is given: the
bounds are NaN and ``note`` says why (e.g. ``"CI n/a: 1 case"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq

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
    auc_rows,
    covariance_from_placements,
    oriented,
    placements,
)
from ovfdlr.stats.variance import binary_influence, cluster_codes, influence_covariance

__all__ = ["AucCI", "auc_ci", "newcombe_interval", "roc_auc", "roc_curve"]

# every CI method, and how the output names it
METHOD_TEXT = {
    "delong": "DeLong",
    "delong-clustered": "DeLong, clustered by patient (Obuchowski 1997)",
    "bootstrap": "stratified percentile bootstrap",
    "patient-bootstrap": "percentile bootstrap of patients",
    "delong-macro": "DeLong structural components, at the population's class mix",
    "delong-macro-conditional": "DeLong structural components, conditional on the class counts",
    "delong-macro-clustered": "DeLong structural components, clustered by patient",
    "newcombe-score": "Newcombe's score-type interval (2006), DeLong variance 0",
    "none": "no interval",
}


@dataclass(frozen=True)
class AucCI:
    """An AUC with its confidence interval; ``method`` is a key of ``METHOD_TEXT``.

    ``note`` says why there is no interval (NaN bounds), e.g. ``"CI n/a: 1 case in class 1"``.
    """

    auc: float
    lower: float
    upper: float
    level: float
    method: str
    note: str = ""

    def __str__(self) -> str:
        how = METHOD_TEXT.get(self.method, self.method)
        if self.note:
            return f"Area under the curve: {self.auc:.4f}\n{self.note}"
        return (
            f"Area under the curve: {self.auc:.4f}\n"
            f"{self.level * 100:g}% CI: {self.lower:.4f}-{self.upper:.4f} ({how})"
        )


def _hanley_mcneil_modified(theta: float, m: int, n: int) -> float:
    """Newcombe's (2006) modified Hanley-McNeil variance of an AUC of ``theta``."""
    n_star = (m + n) / 2.0
    shape = (1.0 - theta) / (2.0 - theta) + theta / (1.0 + theta)
    return theta * (1.0 - theta) / (m * n) * (1.0 + (n_star - 1.0) * shape)


def newcombe_interval(
    auc: float, sizes: list[tuple[int, int]], level: float = 0.95
) -> tuple[float, float]:
    r"""Newcombe's score-type interval (Stat Med 2006, method 5) for an AUC, or for the mean
    of K AUCs with ``sizes`` = [(cases, controls) of each]: the set of ``theta`` with
    :math:`(\hat\theta - \theta)^2 \le z^2 V(\theta)`, ``V`` the modified Hanley-McNeil
    variance (the mean's: :math:`\frac{1}{K^2}\sum_k V_k(\theta)`, each AUC taken at
    ``theta``). Informative at an AUC of 0 or 1, where the Wald interval collapses.
    """
    z2 = z_critical(level) ** 2
    k = len(sizes)

    def excess(theta: float) -> float:
        var = sum(_hanley_mcneil_modified(theta, m, n) for m, n in sizes) / k**2
        return (auc - theta) ** 2 - z2 * var

    tiny = 1e-12
    lower = 0.0
    if auc > tiny and excess(0.0) > 0:
        lower = brentq(excess, 0.0, max(auc - tiny, 0.0)) if excess(auc - tiny) < 0 else auc
    upper = 1.0
    if auc < 1 - tiny and excess(1.0) > 0:
        upper = brentq(excess, min(auc + tiny, 1.0), 1.0) if excess(auc + tiny) < 0 else auc
    return float(lower), float(upper)


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
    groups: Any = None,
) -> AucCI:
    r"""AUC with a confidence interval by DeLong's variance or the stratified bootstrap.

    ``"delong"``: :math:`\hat\theta \pm z_{1-\alpha/2}\sqrt{S_{10}/m + S_{01}/n}`, clipped to
    [0, 1] (DeLong et al., Biometrics 1988; pROC's ``ci.auc``). With ``groups`` (patient per
    case) and a patient with several cases: Obuchowski's clustered variance
    (``"delong-clustered"``). A zero variance (perfect separation) gives Newcombe's score-type
    interval (``"newcombe-score"``); fewer than two cases or controls give NaN bounds and a
    ``note``. ``"bootstrap"``: ``n_boot`` replicates resampling cases and controls separately,
    percentile interval (quantile type 7), deterministic for a given ``seed``.
    """
    level = check_level(level)
    direction = check_direction(direction)
    is_case = binary_labels(y)
    s = oriented(scores_1d(score, is_case.size), direction)
    m = int(is_case.sum())
    n = is_case.size - m
    if method == "delong":
        theta, v10, v01 = placements(is_case, s[None, :])
        auc = float(theta[0])
        if m < 2 or n < 2:  # binary_labels guarantees one of each
            few = "1 case" if m < 2 else "1 control"
            return AucCI(auc, float("nan"), float("nan"), level, "none", f"CI n/a: {few}")
        codes = cluster_codes(groups, is_case.size)
        if codes is None:
            var = float(covariance_from_placements(theta, v10, v01)[0, 0])
        else:
            psi = binary_influence(theta, v10, v01, is_case)
            var = float(influence_covariance(psi, is_case.astype(int), codes=codes)[0, 0])
            method = "delong-clustered"
        if var <= 0:
            lo, hi = newcombe_interval(auc, [(m, n)], level)
            return AucCI(auc, lo, hi, level, "newcombe-score")
        half = z_critical(level) * float(np.sqrt(var))
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
