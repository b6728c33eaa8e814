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
- **Calibration regression** per class ``k`` (one-vs-rest logistic recalibration; Cox,
  Biometrika 1958;45:562-565; Steyerberg, Clinical Prediction Models, 2nd ed. 2019;
  Van Calster et al., J Clin Epidemiol 2016;74:167-176): with
  :math:`L_i = \mathrm{logit}(p_{ik})`, ``p`` clipped to :math:`[10^{-8}, 1 - 10^{-8}]` so that
  0 and 1 stay finite, the *calibration slope* ``b`` of
  :math:`\mathrm{logit}\,P(y_i = k) = a + b L_i` and the *calibration intercept*
  (calibration-in-the-large) ``a'`` of :math:`\mathrm{logit}\,P(y_i = k) = a' + L_i` (``L`` an
  offset, slope fixed at 1). Binomial GLMs (statsmodels), Wald CIs; with patient ids the
  cluster-robust (sandwich) covariance, since vertebrae of one patient are not independent.
- **Bootstrap CIs** of the Brier score and both ECEs: patient bootstrap
  (:func:`ovfdlr.stats._bootstrap.patient_weights`), every replicate a weight per case, so
  the weighted statistics of all replicates are a few matrix products.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.stats._bootstrap import patient_weights, percentile_interval
from ovfdlr.stats._checks import (
    StatsError,
    check_classes,
    check_level,
    check_n_boot,
    class_labels,
    prefix,
    proba_matrix,
)
from ovfdlr.stats.variance import patient_codes

__all__ = [
    "brier_score",
    "calibration_regression",
    "calibration_summary_ci",
    "expected_calibration_error",
    "reliability_curves",
]

#: probabilities are clipped to [CLIP, 1 - CLIP] before the logit (0 and 1 have no finite logit)
CLIP = 1e-8
#: bootstrap replicates whose weights are held in memory at once
_CHUNK = 256


def _inputs(y: Any, proba: Any, classes: Sequence[int] | None, cohort: str | None = None):
    if classes is None:
        arr = np.asarray(proba)
        if arr.ndim != 2:
            raise StatsError(
                f"{prefix(cohort)}proba must be a (cases, classes) matrix; got shape {arr.shape}"
            )
        classes = tuple(range(arr.shape[1]))
    classes = check_classes(classes)
    yi = class_labels(y, classes, cohort=cohort)
    p = proba_matrix(proba, yi.size, len(classes), cohort=cohort, unit_interval=True)
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
    return float(_weighted_brier(_brier_terms(yi, p), _unit_weights(yi.size))[0])


# Weighted statistics: ``w`` is a (replicates, cases) weight matrix, one row per replicate (a
# case's weight = how often its patient was drawn). A weighted statistic on the original cases
# equals the statistic on the resampled data; the plain statistic is the one row of ones.


def _unit_weights(n: int) -> np.ndarray:
    return np.ones((1, n))


def _brier_terms(yi: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per case :math:`\\sum_k (p_{ik} - 1[y_i = k])^2`."""
    onehot = yi[:, None] == np.arange(p.shape[1])[None, :]
    return np.sum((p - onehot) ** 2, axis=1)


def _weighted_brier(terms: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean of the per-case Brier terms, one value per row of ``w``."""
    return (w @ terms) / w.sum(axis=1)


def _gap_matrix(conf: np.ndarray, hit: np.ndarray, n_bins: int) -> np.ndarray:
    """(cases, bins): ``hit - conf`` in the column of the case's own confidence bin.

    The bins depend only on each case's confidence, so a replicate's bin sums are ``w @ D``.
    """
    b = _bin_index(conf, np.linspace(0.0, 1.0, n_bins + 1))
    gap = np.zeros((conf.size, n_bins))
    gap[np.arange(conf.size), b] = hit - conf
    return gap


def _weighted_ece(gap: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:math:`\\sum_b |\\sum_{i \\in B_b} w_i (hit_i - conf_i)| / \\sum_i w_i` per row of ``w``.

    Equals :math:`\\sum_b \\frac{|B_b|}{n}|\\mathrm{acc}(B_b) - \\mathrm{conf}(B_b)|` on the
    resampled data; empty bins add 0.
    """
    return np.abs(w @ gap).sum(axis=1) / w.sum(axis=1)


def _top_label_gap(yi: np.ndarray, p: np.ndarray, n_bins: int) -> np.ndarray:
    conf = p.max(axis=1)
    hit = (np.argmax(p, axis=1) == yi).astype(float)
    return _gap_matrix(conf, hit, n_bins)


def _classwise_gaps(yi: np.ndarray, p: np.ndarray, n_bins: int) -> list[np.ndarray]:
    return [_gap_matrix(p[:, k], (yi == k).astype(float), n_bins) for k in range(p.shape[1])]


def _weighted_classwise_ece(gaps: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    return np.mean(np.stack([_weighted_ece(g, w) for g in gaps], axis=1), axis=1)


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
    w = _unit_weights(yi.size)
    if kind == "top-label":
        return float(_weighted_ece(_top_label_gap(yi, p, n_bins), w)[0])
    return float(_weighted_classwise_ece(_classwise_gaps(yi, p, n_bins), w)[0])


# ------------------------------------------------------------------ calibration regression

_REGRESSION_COLUMNS = [
    "class",
    "intercept",
    "intercept_lower",
    "intercept_upper",
    "slope",
    "slope_lower",
    "slope_upper",
    "n",
    "n_events",
    "method",
    "note",
]


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, CLIP, 1.0 - CLIP)
    return np.log(q) - np.log1p(-q)


def _glm(
    event: np.ndarray,
    exog: np.ndarray,
    offset: np.ndarray | None,
    codes: np.ndarray | None,
    level: float,
    start: np.ndarray | None = None,
):
    """Binomial GLM fit: (params, lower, upper), or None when IRLS did not reach the MLE."""
    # imported here: statsmodels takes about a second to import
    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    model = GLM(event, exog, family=families.Binomial(), offset=offset)
    kwargs = {} if codes is None else {"cov_type": "cluster", "cov_kwds": {"groups": codes}}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # a diverging IRLS step divides by zero inside statsmodels; the checks below catch the
        # result, so the intermediate warnings are noise
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        # separation is detected before the slope fit (_separated); the offset-only fit always
        # has a finite MLE, and statsmodels' check (all mu within 1e-8 of y) fires spuriously
        # for a near-perfect model whose probabilities were clipped
        warnings.simplefilter("ignore", PerfectSeparationWarning)
        try:
            res = model.fit(start_params=start, **kwargs)
        except (ConvergenceWarning, np.linalg.LinAlgError):
            return None
    params = np.asarray(res.params, dtype=float)
    ci = np.asarray(res.conf_int(alpha=1.0 - level), dtype=float)
    if not (res.converged and np.isfinite(params).all() and np.isfinite(ci).all()):
        return None
    # IRLS can report convergence far from the MLE (huge first steps when every fitted
    # probability is near 0 or 1): require the score equations X'(y - mu) = 0 to hold
    score = exog.T @ (event - np.asarray(res.fittedvalues, dtype=float))
    if (np.abs(score) > 1e-6 * np.abs(exog).sum(axis=0) + 1e-9).any():
        return None
    return params, ci[:, 0], ci[:, 1]


def _offset_root(event: np.ndarray, L: np.ndarray) -> float:
    """The MLE of ``a'`` in logit P = a' + L: the root of sum(expit(a' + L)) = events.

    The left side increases from 0 to n, and |L| <= logit(1 - 1e-8) < 18.5, so the root of a
    sample with events and non-events lies within (-50, 50). IRLS then starts at the MLE:
    started elsewhere it can diverge when the offsets are extreme.
    """
    from scipy.optimize import brentq
    from scipy.special import expit

    events = float(event.sum())
    return float(brentq(lambda a: expit(a + L).sum() - events, -50.0, 50.0, xtol=1e-13))


def _separated(event: np.ndarray, L: np.ndarray) -> bool:
    """(Quasi-)complete separation of the events by a threshold on ``L``: no finite slope."""
    ev, non = L[event], L[~event]
    return bool(ev.min() >= non.max() or ev.max() <= non.min())


def _recalibrate(event: np.ndarray, L: np.ndarray, codes, level: float, label: int) -> dict:
    n_ev = int(event.sum())
    n_non = int(event.size - n_ev)
    out = dict.fromkeys(_REGRESSION_COLUMNS[1:7], np.nan)
    notes = []
    if n_ev < 2:
        return {**out, "note": f"n/a: {n_ev} case{'' if n_ev == 1 else 's'} in class {label}"}
    if n_non < 2:
        word = "case" if n_non == 1 else "cases"
        return {**out, "note": f"n/a: {n_non} {word} outside class {label}"}
    y = event.astype(float)
    fit = _glm(y, np.ones((y.size, 1)), L, codes, level, np.array([_offset_root(event, L)]))
    if fit is None:
        notes.append("intercept n/a: fit did not converge")
    else:
        out["intercept"], out["intercept_lower"], out["intercept_upper"] = (
            float(fit[0][0]),
            float(fit[1][0]),
            float(fit[2][0]),
        )
    if np.ptp(L) == 0:
        notes.append("slope n/a: constant predicted probability")
    elif _separated(event, L):
        notes.append("slope n/a: perfect separation")
    else:
        fit = _glm(y, np.column_stack([np.ones(y.size), L]), None, codes, level)
        if fit is None:
            notes.append("slope n/a: fit did not converge")
        else:
            out["slope"], out["slope_lower"], out["slope_upper"] = (
                float(fit[0][1]),
                float(fit[1][1]),
                float(fit[2][1]),
            )
    return {**out, "note": "; ".join(notes)}


def calibration_regression(
    y: Any,
    proba: Any,
    *,
    classes: Sequence[int] = (0, 1, 2),
    level: float = 0.95,
    groups: Any = None,
    cohort: str | None = None,
) -> pd.DataFrame:
    """Calibration intercept and slope of every class, one-vs-rest (logistic recalibration).

    With :math:`L_i = \\mathrm{logit}(p_{ik})` (``p`` clipped to ``[1e-8, 1 - 1e-8]``):

    - **slope** ``b`` of :math:`\\mathrm{logit}\\,P(y_i = k) = a + b L_i` (Cox 1958): 1 when
      the predictions are well calibrated, below 1 when they are too extreme (overfitting),
      above 1 when too modest;
    - **intercept** ``a'`` of :math:`\\mathrm{logit}\\,P(y_i = k) = a' + L_i` (``L`` an offset,
      the slope fixed at 1): calibration-in-the-large, 0 when the mean prediction matches the
      observed frequency, negative when the predictions are too high.

    Binomial GLMs with a logit link (statsmodels), Wald CIs at ``level``. ``groups`` (the
    patient of each case; several vertebrae per patient) switches to the cluster-robust
    covariance (statsmodels ``cov_type="cluster"``, CRV1 with its small-sample correction).

    Columns: class, intercept, intercept_lower, intercept_upper, slope, slope_lower,
    slope_upper, n, n_events, method, note. A class with fewer than two cases in it or
    outside it gives NaN estimates; a constant or perfectly separating ``L`` gives a NaN slope
    (the intercept is still defined). ``note`` says why, and how many probabilities were
    clipped; it is empty otherwise. Nothing here raises for such a class.
    """
    level = check_level(level)
    classes, yi, p = _inputs(y, proba, classes, cohort)
    codes = patient_codes(groups, yi.size, cohort)
    method = (
        "logistic recalibration, one-vs-rest: binomial GLM with logit link on logit(p) "
        f"(p clipped to [{CLIP:g}, 1 - {CLIP:g}]); Wald CI"
    )
    n_patients = None
    if codes is None:
        method += ", model-based covariance"
    else:
        n_patients = int(codes.max()) + 1
        method += (
            f", cluster-robust covariance by patient (statsmodels cov_type='cluster', "
            f"{n_patients} patients)"
        )
    rows = []
    for k, label in enumerate(classes):
        event = yi == k
        L = _logit(p[:, k])
        fit_codes = codes if n_patients is None or n_patients >= 2 else None
        row = _recalibrate(event, L, fit_codes, level, label)
        notes = [row["note"]] if row["note"] else []
        if n_patients is not None and n_patients < 2:
            for name in ("intercept", "slope"):
                row[f"{name}_lower"] = row[f"{name}_upper"] = np.nan
            notes.append("CI n/a: a clustered CI needs at least 2 patients")
        n_clipped = int(np.sum((p[:, k] < CLIP) | (p[:, k] > 1.0 - CLIP)))
        if n_clipped:
            word = "probability" if n_clipped == 1 else "probabilities"
            notes.append(f"{n_clipped} {word} clipped to [{CLIP:g}, 1 - {CLIP:g}]")
        row.update(
            {
                "class": label,
                "n": int(yi.size),
                "n_events": int(event.sum()),
                "method": method,
                "note": "; ".join(notes),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=_REGRESSION_COLUMNS)


# ---------------------------------------------------------- bootstrap CIs of Brier and ECE


def calibration_summary_ci(
    y: Any,
    proba: Any,
    *,
    classes: Sequence[int],
    groups: Any = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
    cohort: str | None = None,
) -> dict[str, Any]:
    """Brier score, top-label and class-wise ECE, each with a patient-bootstrap percentile CI.

    The point estimates are :func:`brier_score` and :func:`expected_calibration_error` (with
    ``n_bins`` equal-width bins). Each of ``n_boot`` replicates draws the patients (``groups``;
    None: every case its own patient) with replacement, all of a patient's vertebrae together
    and not within classes; the statistic of a replicate is the weighted statistic with each
    case weighted by its patient's number of draws, computed for blocks of replicates at once.
    Percentile intervals (numpy's linear quantiles) at ``level``; seeded (NumPy
    ``default_rng(seed)``), so the same seed gives the same result.

    Keys: brier, brier_lower, brier_upper, ece_top_label, ece_top_label_lower,
    ece_top_label_upper, ece_classwise, ece_classwise_lower, ece_classwise_upper, n_boot,
    method. The ECE is biased upwards in small samples and so are its replicates: when the
    model is close to perfectly calibrated the interval can lie above the point estimate.
    """
    n_bins = _check_bins(n_bins)
    n_boot = check_n_boot(n_boot)
    level = check_level(level)
    classes, yi, p = _inputs(y, proba, classes, cohort)
    n = yi.size
    codes = patient_codes(groups, n, cohort)
    terms = _brier_terms(yi, p)
    top = _top_label_gap(yi, p, n_bins)
    classwise = _classwise_gaps(yi, p, n_bins)

    ones = _unit_weights(n)
    point = {
        "brier": float(_weighted_brier(terms, ones)[0]),
        "ece_top_label": float(_weighted_ece(top, ones)[0]),
        "ece_classwise": float(_weighted_classwise_ece(classwise, ones)[0]),
    }
    reps = {name: np.empty(n_boot) for name in point}
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, _CHUNK):
        stop = min(n_boot, start + _CHUNK)
        w = patient_weights(codes, n, stop - start, rng)
        reps["brier"][start:stop] = _weighted_brier(terms, w)
        reps["ece_top_label"][start:stop] = _weighted_ece(top, w)
        reps["ece_classwise"][start:stop] = _weighted_classwise_ece(classwise, w)

    n_patients = n if codes is None else int(codes.max()) + 1
    unit = "cases (each its own patient)" if codes is None else "patients"
    out: dict[str, Any] = {}
    for name, value in point.items():
        lo, hi = percentile_interval(reps[name], level)
        out.update({name: value, f"{name}_lower": lo, f"{name}_upper": hi})
    out["n_boot"] = n_boot
    out["method"] = (
        f"patient bootstrap: {n_boot} replicates of {n_patients} {unit} drawn with replacement "
        f"(all of a patient's vertebrae together, not within classes); percentile CI at "
        f"level {level:g}; ECE with {n_bins} equal-width bins"
    )
    return out
