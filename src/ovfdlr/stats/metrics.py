r"""Classification metrics at a decision rule, with confidence intervals.

For class ``k`` one-vs-rest, with TP, FP, FN, TN counted against "true class is ``k``":

- sensitivity :math:`TP/(TP+FN)`, specificity :math:`TN/(TN+FP)`,
- positive predictive value :math:`TP/(TP+FP)`, negative predictive value :math:`TN/(TN+FN)`,
- :math:`F_1 = 2TP/(2TP+FP+FN)`, and overall accuracy (correct / n) for the argmax rule.

Proportions get the Wilson score interval (Wilson, J Am Stat Assoc 1927;22:209-12):

.. math::

    \frac{\hat p + \frac{z^2}{2n}}{1 + \frac{z^2}{n}} \pm
    \frac{z}{1 + \frac{z^2}{n}}\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}},
    \qquad z = \Phi^{-1}(1 - \alpha/2),

which stays within [0, 1] and behaves at 0 and n events. :math:`F_1` and the macro averages
(unweighted means over classes) get percentile intervals from a bootstrap that resamples cases
within each true class (seeded). A proportion with a zero denominator is NaN with a NaN
interval, never an error.

**Decision rules.** ``"argmax"``: the predicted class is the column of the highest probability
(the first on ties). ``"youden"``: for each class separately, a case is called class ``k`` when
``proba[:, k] >= t_k``, with ``t_k`` from :func:`youden_thresholds` (Youden, Cancer
1950;3:32-5), normally fitted on the training cohort and applied unchanged to the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.stats._bootstrap import percentile_interval, stratified_indices
from ovfdlr.stats._checks import (
    StatsError,
    check_classes,
    check_level,
    check_n_boot,
    class_labels,
    prefix,
    proba_matrix,
    z_critical,
)

__all__ = ["classification_metrics", "confusion_matrix", "wilson_ci", "youden_thresholds"]

_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1")


def wilson_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (Wilson 1927).

    Returns ``(lower, upper)`` within [0, 1]; exactly 0 when ``k == 0`` and 1 when ``k == n``;
    ``(nan, nan)`` for ``n == 0``.
    """
    level = check_level(level)
    for name, v in (("k", k), ("n", n)):
        try:
            whole = not isinstance(v, bool) and float(v).is_integer()
        except (TypeError, ValueError):
            whole = False
        if not whole:
            raise StatsError(f"{name} must be a whole number; got {v!r}")
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        raise StatsError(f"need 0 <= k <= n; got k={k}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    z = z_critical(level)
    p = k / n
    z2n = z * z / n
    denom = 1.0 + z2n
    centre = (p + z2n / 2.0) / denom
    half = z * np.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / denom
    lower = 0.0 if k == 0 else max(0.0, centre - half)
    upper = 1.0 if k == n else min(1.0, centre + half)
    return float(lower), float(upper)


def confusion_matrix(y: Any, pred: Any, classes: Sequence[int] = (0, 1, 2)) -> pd.DataFrame:
    """Counts of true class (rows, index ``true``) by predicted class (columns, ``predicted``)."""
    classes = check_classes(classes)
    yi = class_labels(y, classes)
    pi = class_labels(pred, classes, name="pred")
    if pi.size != yi.size:
        raise StatsError(f"pred has {pi.size} values but y has {yi.size}")
    k = len(classes)
    counts = np.bincount(yi * k + pi, minlength=k * k).reshape(k, k)
    return pd.DataFrame(
        counts,
        index=pd.Index(classes, name="true"),
        columns=pd.Index(classes, name="predicted"),
    )


def _two_classes_present(yi: np.ndarray, cohort: str | None) -> None:
    if np.unique(yi).size < 2:
        raise StatsError(f"{prefix(cohort)}y holds a single class; these metrics need two or more")


def youden_thresholds(
    y: Any, proba: Any, classes: Sequence[int] = (0, 1, 2), *, cohort: str | None = None
) -> dict[int, float]:
    """Per class, the one-vs-rest threshold on ``proba[:, k]`` maximising Youden's J.

    :math:`J(t) = \\mathrm{sensitivity}(t) + \\mathrm{specificity}(t) - 1` with a case called
    class ``k`` when ``proba[:, k] >= t`` (Youden, Cancer 1950). Candidate thresholds are the
    midpoints between consecutive distinct values (as pROC's), so the threshold separates the
    fitted data the same way on any later cohort; among equal J the highest threshold (fewest
    calls) wins. A column with a single distinct value gives that value.
    """
    classes = check_classes(classes)
    yi = class_labels(y, classes, cohort=cohort)
    p = proba_matrix(proba, yi.size, len(classes), cohort=cohort)
    out: dict[int, float] = {}
    for k, label in enumerate(classes):
        pos = yi == k
        m = int(pos.sum())
        if m == 0 or m == yi.size:
            what = "no cases" if m == 0 else "no other-class cases"
            raise StatsError(
                f"{prefix(cohort)}class {label} has {what}; its Youden threshold cannot be "
                "estimated"
            )
        s = p[:, k]
        uniq = np.unique(s)
        if uniq.size == 1:
            out[label] = float(uniq[0])
            continue
        cand = (uniq[:-1] + uniq[1:]) / 2.0
        ps = np.sort(s[pos])
        ns = np.sort(s[~pos])
        tp = ps.size - np.searchsorted(ps, cand, side="left")
        fp = ns.size - np.searchsorted(ns, cand, side="left")
        # J * m * n in integers, so that equal J compare equal
        j = tp.astype(np.int64) * ns.size - fp.astype(np.int64) * ps.size
        best = np.flatnonzero(j == j.max())[-1]
        out[label] = float(cand[best])
    return out


def _rates(tp, fp, fn, tn) -> dict[str, tuple[Any, Any]]:
    """(numerator, denominator) of each metric; works on scalars and arrays."""
    return {
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
        "f1": (2 * tp, 2 * tp + fp + fn),
    }


def _divide(num, den) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _counts(truth: np.ndarray, called: np.ndarray):
    tp = np.sum(truth & called, axis=-1)
    fp = np.sum(~truth & called, axis=-1)
    fn = np.sum(truth & ~called, axis=-1)
    tn = np.sum(~truth & ~called, axis=-1)
    return tp, fp, fn, tn


def _table(
    yi: np.ndarray,
    calls: np.ndarray,
    classes: tuple[int, ...],
    decision: str,
    level: float,
    n_boot: int,
    seed: int,
    accuracy: np.ndarray | None,
) -> list[dict]:
    """Rows for one decision rule; ``calls`` (K, n) bool: case called class k."""
    n_classes = len(classes)
    rows: list[dict] = []

    def row(label, metric, est, lo, hi, num, den):
        rows.append(
            {
                "decision": decision,
                "class": label,
                "metric": metric,
                "estimate": est,
                "lower": lo,
                "upper": hi,
                "numerator": num,
                "denominator": den,
            }
        )

    # bootstrap replicates, resampling within each true class present
    present = [c for c in range(n_classes) if np.any(yi == c)]
    strata = [np.flatnonzero(yi == c) for c in present]
    idx = stratified_indices(strata, n_boot, np.random.default_rng(seed))
    truth_b = yi[idx[0]]  # the true class of each column is the same in every replicate
    boot: dict[str, np.ndarray] = {m: np.empty((n_classes, n_boot)) for m in _METRICS}
    point: dict[str, np.ndarray] = {m: np.empty(n_classes) for m in _METRICS}

    if accuracy is not None:
        correct = int(accuracy.sum())
        lo, hi = wilson_ci(correct, yi.size, level)
        row("all", "accuracy", correct / yi.size, lo, hi, correct, yi.size)

    for k, label in enumerate(classes):
        tp, fp, fn, tn = (int(v) for v in _counts(yi == k, calls[k]))
        btp, bfp, bfn, btn = _counts((truth_b == k)[None, :], calls[k][idx])
        for metric, (num, den) in _rates(tp, fp, fn, tn).items():
            est = float(_divide(num, den))
            point[metric][k] = est
            bnum, bden = _rates(btp, bfp, bfn, btn)[metric]
            boot[metric][k] = _divide(bnum, bden)
            if metric == "f1":
                lo, hi = percentile_interval(boot[metric][k], level) if den > 0 else (np.nan,) * 2
            else:
                lo, hi = wilson_ci(num, den, level)
            row(label, metric, est, lo, hi, num, den)

    for metric in _METRICS:
        est = float(np.mean(point[metric]))
        if np.isnan(est):
            lo, hi = np.nan, np.nan
        else:
            lo, hi = percentile_interval(np.mean(boot[metric], axis=0), level)
        row("macro", metric, est, lo, hi, np.nan, np.nan)
    return rows


def classification_metrics(
    y: Any,
    proba: Any,
    *,
    classes: Sequence[int] = (0, 1, 2),
    thresholds: Mapping[int, float] | None = None,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    cohort: str | None = None,
) -> pd.DataFrame:
    """Accuracy, per-class sensitivity, specificity, PPV, NPV and F1, and their macro means.

    Returns a long table: decision (``"argmax"``; also ``"youden"`` when ``thresholds`` are
    given), class (a class, ``"macro"``, or ``"all"`` for accuracy), metric, estimate, lower,
    upper, numerator, denominator. Proportions: Wilson intervals (Wilson 1927); F1 and macro
    means: percentile intervals from ``n_boot`` bootstrap replicates stratified by true class
    (seeded). Replicates in which a metric is undefined are left out of its interval; a macro
    mean is NaN when any class's metric is.
    """
    level = check_level(level)
    n_boot = check_n_boot(n_boot)
    classes = check_classes(classes)
    yi = class_labels(y, classes, cohort=cohort)
    p = proba_matrix(proba, yi.size, len(classes), cohort=cohort)
    _two_classes_present(yi, cohort)
    n_classes = len(classes)
    pred = np.argmax(p, axis=1)
    calls = pred[None, :] == np.arange(n_classes)[:, None]
    rows = _table(yi, calls, classes, "argmax", level, n_boot, seed, pred == yi)
    if thresholds is not None:
        missing = [c for c in classes if c not in thresholds]
        if missing:
            raise StatsError(f"{prefix(cohort)}thresholds lack classes {missing}")
        t = np.array([float(thresholds[c]) for c in classes])
        if np.isnan(t).any():
            raise StatsError(f"{prefix(cohort)}thresholds contain NaN")
        ycalls = (p >= t[None, :]).T
        rows += _table(yi, ycalls, classes, "youden", level, n_boot, seed, None)
    out = pd.DataFrame(rows)
    out["class"] = out["class"].astype(object)
    return out
