r"""One-vs-rest multi-class AUCs, macro and micro averages, and tests between two models.

**One-vs-rest.** For class ``k`` the positives are the cases whose true class is ``k`` and the
negatives all others; the score is the probability column ``proba[:, k]`` (higher = class
``k``). Each per-class AUC has its DeLong CI (DeLong et al., Biometrics 1988).

**Macro AUC** :math:`\bar\theta = \frac1K\sum_k \hat\theta_k`: the estimand is the mean of the
K one-vs-rest AUCs *at the population's class mix* (each "rest" is a mixture of the other
classes in their population proportions). Its variance uses DeLong's structural components.
For class ``k`` with :math:`m_k` positives and :math:`n_k` negatives, case ``i`` has the
influence

.. math::

    \psi_k(i) = \begin{cases} (V_{10,k}(i) - \hat\theta_k) / m_k & y_i = k \\
                (V_{01,k}(i) - \hat\theta_k) / n_k & y_i \ne k \end{cases},
    \qquad \psi(i) = \frac1K \sum_k \psi_k(i),

so that :math:`\bar\theta - \theta \approx \sum_i \psi(i)`. With :math:`\bar\psi_c` and
:math:`\widehat{\mathrm{var}}_c` the mean and sample variance (divisor :math:`n_c - 1`) of
:math:`\psi` over the :math:`n_c` cases of true class ``c``, the default (unconditional)
variance is

.. math::  \widehat{\mathrm{Var}}(\bar\theta) = \sum_c n_c\,\widehat{\mathrm{var}}_c(\psi)
           + \sum_c n_c\,\bar\psi_c^2,

the second term being the class mix's own sampling variation (cohorts of consecutive patients:
the class counts are random); :math:`\bar\psi_c \ne 0` whenever the pairwise AUCs differ
between classes, as they do for ordinal classes. ``variance="conditional"`` keeps the first
term only: the variance conditional on the observed class counts. Clustered data (``groups``:
several vertebrae of one patient) use the patient sums of :math:`\psi` (Obuchowski 1997); see
:mod:`ovfdlr.stats.variance`. For two models on the same cases, :math:`\psi_d = \psi_A - \psi_B`
gives the variance of the macro difference and
:math:`z = (\bar\theta_A - \bar\theta_B)/\sqrt{\mathrm{Var}}`.

With two classes and complementary columns ``[1 - s, s]`` both one-vs-rest problems are the
same binary problem (:math:`\hat\theta_0 = \hat\theta_1`, :math:`\psi_0 = \psi_1`), the strata are
the cases and the controls, :math:`\bar\psi_c = 0`, and the variance is
:math:`S_{10}/m + S_{01}/n`: the test is exactly DeLong's paired test.

**Micro AUC**: the AUC of the flattened one-hot labels against the flattened probability matrix
(scikit-learn's ``average="micro"``); its CI by a patient bootstrap (patients resampled with
replacement, not within classes).

**Degenerate cases** never raise and never give an infinite statistic: a class with one case
gives its AUC without a CI (``note``: ``"CI n/a: 1 case in class 1"``), a class with no case
gives no AUC for that class and no macro AUC (``"AUC n/a: no case in class 2"``), a zero
variance gives Newcombe's score interval (:func:`ovfdlr.stats.newcombe_interval`), and a test
whose DeLong variance is zero is replaced by a paired permutation test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.stats import permutation as _perm
from ovfdlr.stats._bootstrap import patient_weights, percentile_interval, weighted_auc
from ovfdlr.stats._checks import (
    StatsError,
    alternative_text,
    check_alternative,
    check_classes,
    check_level,
    check_n_boot,
    class_labels,
    clip,
    format_p,
    normal_p_value,
    proba_matrix,
    ratio,
    z_critical,
)
from ovfdlr.stats.delong import auc_rows, covariance_from_placements, delong_test, placements
from ovfdlr.stats.roc import METHOD_TEXT, AucCI, newcombe_interval, roc_curve
from ovfdlr.stats.variance import (
    CLUSTERED_TEXT,
    UNCONDITIONAL,
    VARIANCE_TEXT,
    binary_influence,
    check_variance,
    cluster_codes,
    influence_covariance,
    too_few,
)

__all__ = [
    "MacroAucTest",
    "MulticlassAUC",
    "bootstrap_macro_test",
    "macro_auc_test",
    "one_vs_rest",
    "per_class_tests",
]


@dataclass(frozen=True)
class MulticlassAUC:
    """Result of :func:`one_vs_rest`.

    ``per_class``: DataFrame (class, auc, lower, upper, n_positive, n_negative, method, note)
    with DeLong CIs. ``macro``: mean of the per-class AUCs, CI from the structural-component
    variance (``macro.method`` names it). ``micro``: AUC of the flattened one-hot labels,
    patient-bootstrap CI. ``curves``: long DataFrame (curve, fpr, tpr) with curves
    ``"class <k>"``, ``"macro"`` (pointwise mean of the per-class curves: its area is the macro
    AUC) and ``"micro"``. ``clustered``: whether some patient gave several cases.
    """

    per_class: pd.DataFrame
    macro: AucCI
    micro: AucCI
    curves: pd.DataFrame
    level: float = 0.95
    cohort: str | None = None
    clustered: bool = False

    def __str__(self) -> str:
        head = "One-vs-rest ROC analysis" + ("" if self.cohort is None else f", {self.cohort}")
        lines = [head, f"{'class':>8} {'AUC':>7}  {self.level * 100:g}% CI  cases/rest"]
        for row in self.per_class.itertuples(index=False):
            ci = row.note or f"{row.lower:.4f}-{row.upper:.4f} ({row.method})"
            lines.append(
                f"{row[0]!s:>8} {row.auc:7.4f}  {ci}      {row.n_positive}/{row.n_negative}"
            )
        for name, est in (("macro", self.macro), ("micro", self.micro)):
            ci = est.note or f"{est.lower:.4f}-{est.upper:.4f}"
            lines.append(f"{name:>8} {est.auc:7.4f}  {ci}      ({METHOD_TEXT[est.method]})")
        return "\n".join(lines)


@dataclass(frozen=True)
class MacroAucTest:
    """Result of :func:`macro_auc_test` and :func:`bootstrap_macro_test`.

    ``difference = macro_a - macro_b``; ``statistic`` the z statistic (NaN when not
    estimable; never infinite); ``ci_lower``/``ci_upper`` a two-sided interval for the
    difference at ``level`` (clipped to [-1, 1]). ``note`` says why a test or CI is missing or
    was replaced (e.g. ``"DeLong not estimable (variance 0): paired permutation test"``);
    ``n_permutations`` is set when the p-value comes from the permutation test.
    """

    macro_a: float
    macro_b: float
    difference: float
    statistic: float
    p_value: float
    ci_lower: float
    ci_upper: float
    level: float
    alternative: str
    method: str
    se: float = float("nan")
    class_counts: dict[int, int] = field(default_factory=dict)
    n_boot: int | None = None
    note: str = ""
    n_permutations: int | None = None
    variance: str = UNCONDITIONAL
    clustered: bool = False
    n_patients: int | None = None

    def __str__(self) -> str:
        counts = ", ".join(f"class {k}: {v}" for k, v in self.class_counts.items())
        boot = "" if self.n_boot is None else f", {self.n_boot} replicates"
        patients = "" if not self.clustered else f"; {self.n_patients} patients"
        if self.n_permutations is not None:
            stat = f"{self.n_permutations} permutations, {format_p(self.p_value)}"
        elif self.note and np.isnan(self.p_value):
            stat = self.note
        else:
            stat = f"Z = {self.statistic:.4g}, {format_p(self.p_value)}"
        return "\n".join(
            [
                "",
                f"\t{self.method}",
                "",
                f"data:  macro one-vs-rest AUC of A and B on the same cases "
                f"({counts}{boot}{patients})",
                stat,
                alternative_text(self.alternative, "difference in macro AUC (A - B)"),
                f"{self.level * 100:g} percent confidence interval (two-sided):",
                f" {self.ci_lower:.7g} {self.ci_upper:.7g}",
                "sample estimates:",
                f"macro AUC of A: {self.macro_a:.7g}  macro AUC of B: {self.macro_b:.7g}",
                "",
            ]
        )


# --------------------------------------------------------------------------------------------
# shared checks and the structural components


def _prepare(y, probas, classes, cohort, groups=None):
    """Validate labels, probability matrices and patients; return
    (classes, class index per case, matrices, patient codes or None)."""
    classes = check_classes(classes)
    yi = class_labels(y, classes, cohort=cohort)
    names = ["proba"] if len(probas) == 1 else ["proba_a", "proba_b"]
    mats = [
        proba_matrix(p, yi.size, len(classes), name=nm, cohort=cohort)
        for p, nm in zip(probas, names, strict=True)
    ]
    return classes, yi, mats, cluster_codes(groups, yi.size, cohort)


def _class_names(classes: tuple[int, ...]) -> list[str]:
    return [f"class {k}" for k in classes]


def _absent(yi: np.ndarray, classes: tuple[int, ...]) -> str:
    """'no case in class k' for the first class without a case ("" when all are present)."""
    counts = np.bincount(yi, minlength=len(classes))
    missing = [str(k) for k, c in zip(classes, counts, strict=True) if c == 0]
    return f"no case in class {', '.join(missing)}" if missing else ""


def _components(yi: np.ndarray, mats: Sequence[np.ndarray], n_classes: int):
    """Per-class AUCs (models, K) (NaN for a class without a case) and the per-class
    influences (K, models, n); every model's column ``k`` is scored against the same labels,
    so one pooled sort per class serves all models."""
    n_models = len(mats)
    aucs = np.full((n_models, n_classes), np.nan)
    psi = np.zeros((n_classes, n_models, yi.size))
    parts = []
    for k in range(n_classes):
        is_pos = yi == k
        if not is_pos.any() or is_pos.all():
            parts.append(None)
            continue
        x = np.vstack([p[:, k] for p in mats])
        theta, v10, v01 = placements(is_pos, x)
        aucs[:, k] = theta
        psi[k] = binary_influence(theta, v10, v01, is_pos)
        parts.append((theta, v10, v01))
    return aucs, psi, parts


def _interval(auc: float, var: float, sizes, level: float, method: str) -> AucCI:
    """Wald interval from a variance; Newcombe's score interval when the variance is 0."""
    if var <= 0:
        lo, hi = newcombe_interval(auc, sizes, level)
        return AucCI(auc, lo, hi, level, "newcombe-score")
    half = z_critical(level) * float(np.sqrt(var))
    return AucCI(auc, clip(auc - half, 0.0, 1.0), clip(auc + half, 0.0, 1.0), level, method)


def _macro_method(variance: str, codes) -> str:
    if codes is not None:
        return "delong-macro-clustered"
    return "delong-macro" if variance == UNCONDITIONAL else "delong-macro-conditional"


# curves


def _interp(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray, side: str) -> np.ndarray:
    """Piecewise-linear ROC curve at ``grid``; at a vertical step, its bottom (``"left"``) or
    top (``"right"``) end."""
    if side == "right":
        j = np.clip(np.searchsorted(fpr, grid, side="right") - 1, 0, fpr.size - 2)
    else:
        j = np.clip(np.searchsorted(fpr, grid, side="left") - 1, 0, fpr.size - 2)
    x0, x1, y0, y1 = fpr[j], fpr[j + 1], tpr[j], tpr[j + 1]
    width = x1 - x0
    frac = np.divide(grid - x0, width, out=np.zeros_like(grid), where=width > 0)
    out = y0 + frac * (y1 - y0)
    # exactly on a vertex: its value from the side asked for
    if side == "right":
        hit = (grid == x0) & (width > 0)
        out = np.where(hit, y0, out)
        at_end = grid >= fpr[-1]
        out = np.where(at_end, tpr[-1], out)
    return out


def _curves(yi: np.ndarray, proba: np.ndarray, classes: tuple[int, ...]) -> pd.DataFrame:
    per = []
    for k, label in enumerate(classes):
        c = roc_curve(yi == k, proba[:, k])
        per.append((f"class {label}", c["fpr"].to_numpy(), c["tpr"].to_numpy()))
    grid = np.unique(np.concatenate([f for _, f, _ in per]))
    low = np.mean([_interp(f, t, grid, "left") for _, f, t in per], axis=0)
    high = np.mean([_interp(f, t, grid, "right") for _, f, t in per], axis=0)
    mfpr = np.repeat(grid, 2)
    mtpr = np.column_stack([low, high]).ravel()
    keep = np.ones(mfpr.size, dtype=bool)
    keep[1:] = (mfpr[1:] != mfpr[:-1]) | (mtpr[1:] != mtpr[:-1])
    onehot = yi[:, None] == np.arange(len(classes))[None, :]
    micro = roc_curve(onehot.ravel(), proba.ravel())
    frames = [pd.DataFrame({"curve": name, "fpr": f, "tpr": t}) for name, f, t in per]
    frames.append(pd.DataFrame({"curve": "macro", "fpr": mfpr[keep], "tpr": mtpr[keep]}))
    frames.append(pd.DataFrame({"curve": "micro", "fpr": micro["fpr"], "tpr": micro["tpr"]}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# public functions


def one_vs_rest(
    y: Any,
    proba: Any,
    *,
    classes: Sequence[int] = (0, 1, 2),
    level: float = 0.95,
    cohort: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    groups: Any = None,
    variance: str = UNCONDITIONAL,
    curves: bool = True,
) -> MulticlassAUC:
    """One-vs-rest AUCs with DeLong CIs, the macro AUC with its CI, and the micro AUC.

    ``y``: true classes, each one of ``classes``; ``proba``: (n, K) probabilities, column ``k``
    for ``classes[k]``; ``groups``: the patient of each case (clustered variances when a
    patient has several cases). Macro AUC :math:`\\frac1K\\sum_k\\hat\\theta_k` with the
    structural-component variance of the module docstring (``variance``: ``"unconditional"``,
    at the population's class mix, or ``"conditional"`` on the class counts; DeLong et al.,
    Biometrics 1988; Obuchowski, Biometrics 1997). Micro AUC as scikit-learn's
    ``roc_auc_score(..., average="micro")``, its percentile CI from ``n_boot`` patient-bootstrap
    replicates (seeded). Point estimates are always given; a CI that cannot be estimated has
    NaN bounds and a ``note`` (one case in a class, a class without cases). ``curves=False``
    leaves the ROC curves out (an empty table), for callers that need the numbers only.
    """
    level = check_level(level)
    n_boot = check_n_boot(n_boot)
    variance = check_variance(variance)
    classes, yi, (p,), codes = _prepare(y, [proba], classes, cohort, groups)
    n_classes = len(classes)
    names = _class_names(classes)
    aucs, psi, parts = _components(yi, [p], n_classes)
    counts = np.bincount(yi, minlength=n_classes)
    rows = []
    for k, label in enumerate(classes):
        n_rest = int(yi.size - counts[k])
        base = {"class": label, "n_positive": int(counts[k]), "n_negative": n_rest}
        if parts[k] is None:
            rows.append(base | _no_ci(np.nan, f"AUC n/a: no case in class {label}"))
            continue
        auc = float(aucs[0, k])
        is_pos = yi == k
        few = too_few(is_pos.astype(int), None, ["the rest", f"class {label}"])
        if few:
            rows.append(base | _no_ci(auc, f"CI n/a: {few}"))
            continue
        if codes is None:
            var = float(covariance_from_placements(*parts[k])[0, 0])
            method = "delong"
        else:
            var = float(influence_covariance(psi[k][:1], is_pos.astype(int), codes=codes)[0, 0])
            method = "delong-clustered"
        ci = _interval(auc, var, [(int(counts[k]), int(yi.size - counts[k]))], level, method)
        rows.append(base | {"auc": auc, "lower": ci.lower, "upper": ci.upper})
        rows[-1] |= {"method": ci.method, "note": ""}
    per_class = pd.DataFrame(rows)[
        ["class", "auc", "lower", "upper", "n_positive", "n_negative", "method", "note"]
    ]
    macro = _macro_ci(aucs[0], psi[:, 0].mean(axis=0), yi, codes, counts, names, level, variance)
    micro = _micro_ci(yi, p, codes, n_boot, seed, level)
    table = _curves(yi, p, classes) if curves and not _absent(yi, classes) else _no_curves()
    return MulticlassAUC(per_class, macro, micro, table, level, cohort, codes is not None)


def _no_ci(auc: float, note: str) -> dict:
    return {"auc": auc, "lower": np.nan, "upper": np.nan, "method": "none", "note": note}


def _no_curves() -> pd.DataFrame:
    return pd.DataFrame({"curve": [], "fpr": [], "tpr": []})


def _macro_ci(aucs, psi, yi, codes, counts, names, level, variance) -> AucCI:
    nan = float("nan")
    absent = [names[k] for k in range(len(names)) if counts[k] == 0]
    if absent:
        note = f"AUC n/a: no case in {', '.join(absent)}"
        return AucCI(nan, nan, nan, level, "none", note)
    auc = float(np.mean(aucs))
    few = too_few(yi, codes, names, variance)
    if few:
        return AucCI(auc, nan, nan, level, "none", f"CI n/a: {few}")
    try:
        var = float(influence_covariance(psi, yi, variance=variance, codes=codes)[0, 0])
    except StatsError as exc:  # the conditional variance refused for clustered data
        return AucCI(auc, nan, nan, level, "none", f"CI n/a: {exc}")
    sizes = [(int(c), int(yi.size - c)) for c in counts]
    return _interval(auc, var, sizes, level, _macro_method(variance, codes))


def _micro_ci(yi, p, codes, n_boot, seed, level) -> AucCI:
    n_classes = p.shape[1]
    onehot = (yi[:, None] == np.arange(n_classes)[None, :]).ravel()
    auc = float(placements(onehot, p.ravel()[None, :])[0][0])
    weights = patient_weights(codes, yi.size, n_boot, np.random.default_rng(seed))
    boot = weighted_auc(onehot, p.ravel(), np.repeat(weights, n_classes, axis=1))
    lo, hi = percentile_interval(boot, level)
    return AucCI(auc, clip(lo, 0.0, 1.0), clip(hi, 0.0, 1.0), level, "patient-bootstrap")


def _test_method(variance: str, codes) -> str:
    how = CLUSTERED_TEXT if codes is not None else VARIANCE_TEXT[variance]
    return f"DeLong's test for two correlated macro-average one-vs-rest AUCs (variance {how})"


def macro_auc_test(
    y: Any,
    proba_a: Any,
    proba_b: Any,
    *,
    classes: Sequence[int] = (0, 1, 2),
    alternative: str = "two-sided",
    level: float = 0.95,
    cohort: str | None = None,
    groups: Any = None,
    variance: str = UNCONDITIONAL,
    n_permutations: int = _perm.MIN_PERMUTATIONS,
    seed: int = 0,
) -> MacroAucTest:
    """Paired test of two models' macro one-vs-rest AUCs on the same cases.

    Estimand: the difference in macro AUC at the population's class mix (default) or
    conditional on the class counts (``variance="conditional"``).
    :math:`z = (\\bar\\theta_A - \\bar\\theta_B) / \\sqrt{\\mathrm{Var}(\\psi_A - \\psi_B)}`
    with the structural components and variances of the module docstring (clustered by
    patient when ``groups`` has a patient with several cases); p-value from the normal
    distribution for ``alternative`` (about ``macro_a - macro_b``), CI
    :math:`d \\pm z_{1-\\alpha/2}\\,\\mathrm{se}`. With two classes and complementary probability
    columns it is exactly DeLong's paired test (DeLong et al., Biometrics 1988). A zero variance
    with a non-zero difference: "DeLong not estimable", and ``n_permutations`` seeded paired
    permutations give the p-value (:mod:`ovfdlr.stats.permutation`). A class with fewer than
    two cases: no test, the ``note`` says why.
    """
    alternative = check_alternative(alternative)
    level = check_level(level)
    variance = check_variance(variance)
    classes, yi, mats, codes = _prepare(y, [proba_a, proba_b], classes, cohort, groups)
    n_classes = len(classes)
    aucs, psi, _ = _components(yi, mats, n_classes)
    macro_a, macro_b = float(aucs[0].mean()), float(aucs[1].mean())
    d = macro_a - macro_b
    counts = np.bincount(yi, minlength=n_classes)
    nan = float("nan")
    common = {
        "macro_a": macro_a,
        "macro_b": macro_b,
        "difference": d,
        "level": level,
        "alternative": alternative,
        "class_counts": {k: int(c) for k, c in zip(classes, counts, strict=True)},
        "variance": variance,
        "clustered": codes is not None,
        "n_patients": None if codes is None else int(codes.max()) + 1,
    }
    method = _test_method(variance, codes)
    few = _absent(yi, classes) or too_few(yi, codes, _class_names(classes), variance)
    if few:
        return MacroAucTest(
            **common, statistic=nan, p_value=nan, ci_lower=nan, ci_upper=nan, method=method,
            note=f"test n/a: {few}",
        )  # fmt: skip
    psi_d = psi[:, 0].mean(axis=0) - psi[:, 1].mean(axis=0)
    try:
        var = float(influence_covariance(psi_d, yi, variance=variance, codes=codes)[0, 0])
    except StatsError as exc:
        return MacroAucTest(
            **common, statistic=nan, p_value=nan, ci_lower=nan, ci_upper=nan, method=method,
            note=f"test n/a: {exc}",
        )  # fmt: skip
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0.0 and d != 0.0:
        null = _permutation_null(yi, mats, codes, n_permutations, seed)
        return MacroAucTest(
            **common,
            statistic=nan,
            p_value=_perm.permutation_p(d, null, alternative),
            ci_lower=nan,
            ci_upper=nan,
            method="Paired permutation test for two correlated macro-average one-vs-rest AUCs",
            se=0.0,
            note=_perm.NOT_ESTIMABLE,
            n_permutations=int(null.size),
        )
    z = ratio(d, se)
    half = z_critical(level) * se
    return MacroAucTest(
        **common,
        statistic=z,
        p_value=normal_p_value(z, alternative),
        ci_lower=clip(d - half, -1.0, 1.0),
        ci_upper=clip(d + half, -1.0, 1.0),
        method=method,
        se=se,
    )


def _permutation_null(yi, mats, codes, n_permutations, seed) -> np.ndarray:
    """Macro-AUC differences under patient-wise swaps of the two models' probability rows."""
    n_perm = max(int(n_permutations), _perm.MIN_PERMUTATIONS)
    masks = _perm.swap_masks(codes, yi.size, n_perm, seed)
    n_classes = mats[0].shape[1]
    null = np.zeros(n_perm)
    for k in range(n_classes):
        xa, xb = _perm.swapped(mats[0][:, k], mats[1][:, k], masks)
        null += auc_rows(yi == k, xa) - auc_rows(yi == k, xb)
    return null / n_classes


def bootstrap_macro_test(
    y: Any,
    proba_a: Any,
    proba_b: Any,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alternative: str = "two-sided",
    level: float = 0.95,
    classes: Sequence[int] = (0, 1, 2),
    cohort: str | None = None,
    groups: Any = None,
) -> MacroAucTest:
    """Paired bootstrap test of two macro AUCs, resampling patients.

    Each of the ``n_boot`` replicates (seeded) draws the patients with replacement from all
    patients alike (not within classes, so the class mix varies as between cohorts; all of a
    patient's vertebrae together: ``groups``) and recomputes both macro AUCs on the same
    resampled cases. Replicates that lack a class are left out (counted in ``note``); a class
    with fewer than two cases gives no test, as for the DeLong test.
    :math:`z = d / \\mathrm{sd}(d^*)` (sample sd of the replicate differences) with a normal
    p-value, as pROC's ``roc.test(method = "bootstrap")``; the CI is the percentile interval of
    :math:`d^*` (Efron & Tibshirani, An Introduction to the Bootstrap, 1993).
    """
    alternative = check_alternative(alternative)
    level = check_level(level)
    n_boot = check_n_boot(n_boot)
    classes, yi, mats, codes = _prepare(y, [proba_a, proba_b], classes, cohort, groups)
    n_classes = len(classes)
    aucs, _, _ = _components(yi, mats, n_classes)
    macro_a, macro_b = float(aucs[0].mean()), float(aucs[1].mean())
    d = macro_a - macro_b
    counts = np.bincount(yi, minlength=n_classes)
    weights = patient_weights(groups, yi.size, n_boot, np.random.default_rng(seed))
    diffs = np.zeros(n_boot)
    for k in range(n_classes):
        is_pos = yi == k
        diffs += weighted_auc(is_pos, mats[0][:, k], weights)
        diffs -= weighted_auc(is_pos, mats[1][:, k], weights)
    diffs /= n_classes
    finite = diffs[np.isfinite(diffs)]
    dropped = n_boot - finite.size
    note = "" if not dropped else f"{dropped} of {n_boot} replicates lacked a class"
    nan = float("nan")
    # the same minimum as the DeLong test: a class with one case gives no test
    few = _absent(yi, classes) or too_few(yi, None, _class_names(classes))
    if few or finite.size < 2:
        sd, z, lo, hi = nan, nan, nan, nan
        note = f"test n/a: {few or 'fewer than 2 usable replicates'}"
    else:
        sd = float(np.std(finite, ddof=1))
        z = ratio(d, sd)
        lo, hi = percentile_interval(finite, level)
        if np.isnan(z):
            note = "bootstrap not estimable (replicate differences all equal)"
    return MacroAucTest(
        macro_a=macro_a,
        macro_b=macro_b,
        difference=d,
        statistic=z,
        p_value=normal_p_value(z, alternative),
        ci_lower=clip(lo, -1.0, 1.0),
        ci_upper=clip(hi, -1.0, 1.0),
        level=level,
        alternative=alternative,
        method="Bootstrap test for two correlated macro-average one-vs-rest AUCs "
        "(patients resampled)",
        se=sd,
        class_counts={k: int(c) for k, c in zip(classes, counts, strict=True)},
        n_boot=n_boot,
        note=note,
        clustered=codes is not None,
        n_patients=None if codes is None else int(codes.max()) + 1,
    )


def per_class_tests(
    y: Any,
    proba_a: Any,
    proba_b: Any,
    *,
    classes: Sequence[int] = (0, 1, 2),
    alternative: str = "two-sided",
    level: float = 0.95,
    cohort: str | None = None,
    groups: Any = None,
    n_permutations: int = _perm.MIN_PERMUTATIONS,
    seed: int = 0,
) -> pd.DataFrame:
    """One paired DeLong test per class, one-vs-rest on ``proba_a[:, k]`` vs ``proba_b[:, k]``.

    Columns: class, auc_a, auc_b, difference, z, p_value, ci_lower, ci_upper, method, note (see
    :func:`ovfdlr.stats.delong_test`, clustered by patient with ``groups``; DeLong et al.,
    Biometrics 1988). A class without cases gives a row with its note. The p-values are not
    adjusted for the K comparisons.
    """
    alternative = check_alternative(alternative)
    level = check_level(level)
    classes, yi, (pa, pb), _ = _prepare(y, [proba_a, proba_b], classes, cohort)
    rows = []
    for k, label in enumerate(classes):
        is_pos = yi == k
        if not is_pos.any():
            rows.append({"class": label, "note": f"test n/a: no case in class {label}"})
            continue
        t = delong_test(
            is_pos,
            pa[:, k],
            pb[:, k],
            alternative=alternative,
            level=level,
            groups=groups,
            n_permutations=n_permutations,
            seed=seed,
        )
        rows.append(
            {
                "class": label,
                "auc_a": t.auc_a,
                "auc_b": t.auc_b,
                "difference": t.difference,
                "z": t.statistic,
                "p_value": t.p_value,
                "ci_lower": t.ci_lower,
                "ci_upper": t.ci_upper,
                "method": t.method,
                "note": t.note.replace("1 case", f"1 case in class {label}"),
            }
        )
    columns = ["class", "auc_a", "auc_b", "difference", "z", "p_value", "ci_lower", "ci_upper"]
    return pd.DataFrame(rows, columns=[*columns, "method", "note"])
