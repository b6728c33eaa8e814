r"""One-vs-rest multi-class AUCs, macro and micro averages, and tests between two models.

**One-vs-rest.** For class ``k`` the positives are the cases whose true class is ``k`` and the
negatives all others; the score is the probability column ``proba[:, k]`` (higher = class
``k``). Each per-class AUC has its DeLong CI (DeLong et al., Biometrics 1988).

**Macro AUC** :math:`\bar\theta = \frac1K\sum_k \hat\theta_k`. Its variance uses DeLong's
structural components, stratified by true class. For class ``k`` with :math:`m_k` positives and
:math:`n_k` negatives, case ``i`` has the influence

.. math::

    \psi_k(i) = \begin{cases} (V_{10,k}(i) - \hat\theta_k) / m_k & y_i = k \\
                (V_{01,k}(i) - \hat\theta_k) / n_k & y_i \ne k \end{cases},
    \qquad \psi(i) = \frac1K \sum_k \psi_k(i),

so that :math:`\bar\theta - \theta \approx \sum_i \psi(i)`. The cases of each true class ``c``
(:math:`n_c` of them) are an i.i.d. sample, the classes independent, hence

.. math::  \widehat{\mathrm{Var}}(\bar\theta) = \sum_c n_c\, \widehat{\mathrm{var}}_c(\psi),

with :math:`\widehat{\mathrm{var}}_c` the sample variance (divisor :math:`n_c - 1`) over the
cases of class ``c``. For two models on the same cases, :math:`\psi_d = \psi_A - \psi_B` gives
the variance of the macro difference and
:math:`z = (\bar\theta_A - \bar\theta_B)/\sqrt{\mathrm{Var}}`.

With two classes and complementary columns ``[1 - s, s]`` both one-vs-rest problems are the
same binary problem (:math:`\hat\theta_0 = \hat\theta_1`, :math:`\psi_0 = \psi_1`), the strata are
the cases and the controls, and :math:`\sum_c n_c \mathrm{var}_c(\psi) = S_{10}/m + S_{01}/n`:
the test is exactly DeLong's paired test.

**Micro AUC**: the AUC of the flattened one-hot labels against the flattened probability matrix
(scikit-learn's ``average="micro"``); its CI by a case-level bootstrap stratified by true class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.stats._bootstrap import block_labels, percentile_interval, stratified_indices
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
    prefix,
    proba_matrix,
    ratio,
    z_critical,
)
from ovfdlr.stats.delong import auc_rows, covariance_from_placements, delong_test, placements
from ovfdlr.stats.roc import AucCI, roc_curve

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

    ``per_class``: DataFrame (class, auc, lower, upper, n_positive, n_negative) with DeLong
    CIs. ``macro``: mean of the per-class AUCs, CI from the class-stratified DeLong variance.
    ``micro``: AUC of the flattened one-hot labels, stratified-bootstrap CI. ``curves``: long
    DataFrame (curve, fpr, tpr) with curves ``"class <k>"``, ``"macro"`` (pointwise mean of the
    per-class curves: its area is the macro AUC) and ``"micro"``.
    """

    per_class: pd.DataFrame
    macro: AucCI
    micro: AucCI
    curves: pd.DataFrame
    level: float = 0.95
    cohort: str | None = None

    def __str__(self) -> str:
        head = "One-vs-rest ROC analysis" + ("" if self.cohort is None else f", {self.cohort}")
        lines = [head, f"{'class':>8} {'AUC':>7}  {self.level * 100:g}% CI (DeLong)  cases/rest"]
        for row in self.per_class.itertuples(index=False):
            lines.append(
                f"{row[0]!s:>8} {row.auc:7.4f}  {row.lower:.4f}-{row.upper:.4f}"
                f"      {row.n_positive}/{row.n_negative}"
            )
        lines.append(
            f"{'macro':>8} {self.macro.auc:7.4f}  {self.macro.lower:.4f}-{self.macro.upper:.4f}"
            "      (DeLong, stratified by true class)"
        )
        lines.append(
            f"{'micro':>8} {self.micro.auc:7.4f}  {self.micro.lower:.4f}-{self.micro.upper:.4f}"
            "      (stratified bootstrap)"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class MacroAucTest:
    """Result of :func:`macro_auc_test` and :func:`bootstrap_macro_test`.

    ``difference = macro_a - macro_b``; ``statistic`` the z statistic; ``ci_lower``/``ci_upper``
    a two-sided interval for the difference at ``level`` (clipped to [-1, 1]).
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

    def __str__(self) -> str:
        counts = ", ".join(f"class {k}: {v}" for k, v in self.class_counts.items())
        boot = "" if self.n_boot is None else f", {self.n_boot} replicates"
        return "\n".join(
            [
                "",
                f"\t{self.method}",
                "",
                f"data:  macro one-vs-rest AUC of A and B on the same cases ({counts}{boot})",
                f"Z = {self.statistic:.4g}, {format_p(self.p_value)}",
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


def _prepare(y, probas, classes, cohort, *, min_per_class: int = 1):
    """Validate labels and probability matrices; return (classes, class index per case, mats)."""
    classes = check_classes(classes)
    yi = class_labels(y, classes, cohort=cohort)
    names = ["proba"] if len(probas) == 1 else ["proba_a", "proba_b"]
    mats = [
        proba_matrix(p, yi.size, len(classes), name=nm, cohort=cohort)
        for p, nm in zip(probas, names, strict=True)
    ]
    counts = np.bincount(yi, minlength=len(classes))
    for k, c in zip(classes, counts, strict=True):
        if c == 0:
            raise StatsError(
                f"{prefix(cohort)}class {k} has no cases; one-vs-rest AUC for class {k} "
                "cannot be estimated"
            )
    if min_per_class > 1:
        for k, c in zip(classes, counts, strict=True):
            if c < min_per_class:
                raise StatsError(
                    f"{prefix(cohort)}class {k} has only {c} case; its one-vs-rest DeLong "
                    f"variance needs at least {min_per_class} cases in every class"
                )
    return classes, yi, mats


def _components(yi: np.ndarray, mats: Sequence[np.ndarray], n_classes: int):
    """Per-class AUCs (models, K), DeLong variances (models, K) and macro influences (models, n).

    Every model's column ``k`` is scored against the same labels, so one pooled sort per class
    serves all models.
    """
    n_models = len(mats)
    aucs = np.empty((n_models, n_classes))
    variances = np.empty((n_models, n_classes))
    psi = np.zeros((n_models, yi.size))
    for k in range(n_classes):
        is_pos = yi == k
        x = np.vstack([p[:, k] for p in mats])
        theta, v10, v01 = placements(is_pos, x)
        aucs[:, k] = theta
        variances[:, k] = np.diag(covariance_from_placements(theta, v10, v01))
        m = v10.shape[1]
        n = v01.shape[1]
        psi[:, is_pos] += (v10 - theta[:, None]) / m
        psi[:, ~is_pos] += (v01 - theta[:, None]) / n
    return aucs, variances, psi / n_classes


def _stratified_variance(psi: np.ndarray, yi: np.ndarray, n_classes: int) -> float:
    """:math:`\\sum_c n_c \\mathrm{var}_c(\\psi)` with the sample variance (ddof=1) per class."""
    total = 0.0
    for c in range(n_classes):
        vals = psi[yi == c]
        dev = vals - vals.mean()
        total += vals.size * float(dev @ dev) / (vals.size - 1)
    return total


# --------------------------------------------------------------------------------------------
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
) -> MulticlassAUC:
    """One-vs-rest AUCs with DeLong CIs, the macro AUC (stratified DeLong CI) and micro AUC.

    ``y``: true classes, each one of ``classes``; ``proba``: (n, K) probabilities, column ``k``
    for ``classes[k]``. Macro AUC :math:`\\frac1K\\sum_k\\hat\\theta_k` with
    :math:`\\mathrm{Var} = \\sum_c n_c \\mathrm{var}_c(\\psi)` (see the module docstring; DeLong
    et al., Biometrics 1988; Sun & Xu, IEEE SPL 2014). Micro AUC as scikit-learn's
    ``roc_auc_score(..., average="micro")``, its percentile CI from ``n_boot`` case-level
    bootstrap replicates stratified by true class (seeded). A class without cases raises
    :class:`StatsError` naming ``cohort`` and the class; DeLong CIs need two cases per class.
    """
    level = check_level(level)
    n_boot = check_n_boot(n_boot)
    classes, yi, (p,) = _prepare(y, [proba], classes, cohort, min_per_class=2)
    n_classes = len(classes)
    aucs, variances, psi = _components(yi, [p], n_classes)
    zc = z_critical(level)
    counts = np.bincount(yi, minlength=n_classes)
    rows = []
    for k, label in enumerate(classes):
        auc = float(aucs[0, k])
        half = zc * float(np.sqrt(variances[0, k]))
        rows.append(
            {
                "class": label,
                "auc": auc,
                "lower": clip(auc - half, 0.0, 1.0),
                "upper": clip(auc + half, 0.0, 1.0),
                "n_positive": int(counts[k]),
                "n_negative": int(yi.size - counts[k]),
            }
        )
    per_class = pd.DataFrame(rows)
    macro_auc = float(aucs[0].mean())
    half = zc * float(np.sqrt(_stratified_variance(psi[0], yi, n_classes)))
    macro = AucCI(
        macro_auc,
        clip(macro_auc - half, 0.0, 1.0),
        clip(macro_auc + half, 0.0, 1.0),
        level,
        "delong-stratified",
    )
    # micro: flattened one-hot labels; stratified resampling keeps every column's class fixed
    onehot = yi[:, None] == np.arange(n_classes)[None, :]
    micro_auc = float(placements(onehot.ravel(), p.ravel()[None, :])[0][0])
    strata = [np.flatnonzero(yi == c) for c in range(n_classes)]
    idx = stratified_indices(strata, n_boot, np.random.default_rng(seed))
    block = block_labels(strata)
    labels = (block[:, None] == np.arange(n_classes)[None, :]).ravel()
    boot = auc_rows(labels, p[idx].reshape(n_boot, -1))
    lo, hi = percentile_interval(boot, level)
    micro = AucCI(micro_auc, clip(lo, 0.0, 1.0), clip(hi, 0.0, 1.0), level, "bootstrap")
    return MulticlassAUC(per_class, macro, micro, _curves(yi, p, classes), level, cohort)


def macro_auc_test(
    y: Any,
    proba_a: Any,
    proba_b: Any,
    *,
    classes: Sequence[int] = (0, 1, 2),
    alternative: str = "two-sided",
    level: float = 0.95,
    cohort: str | None = None,
) -> MacroAucTest:
    """Paired test of two models' macro one-vs-rest AUCs on the same cases.

    :math:`z = (\\bar\\theta_A - \\bar\\theta_B) / \\sqrt{\\sum_c n_c \\mathrm{var}_c(\\psi_A -
    \\psi_B)}` with the class-stratified DeLong structural components :math:`\\psi` of the
    module docstring; p-value from the normal distribution for ``alternative`` (about
    ``macro_a - macro_b``), CI :math:`d \\pm z_{1-\\alpha/2}\\,\\mathrm{se}`. With two classes and
    complementary probability columns it is exactly DeLong's paired test (DeLong et al.,
    Biometrics 1988).
    """
    alternative = check_alternative(alternative)
    level = check_level(level)
    classes, yi, mats = _prepare(y, [proba_a, proba_b], classes, cohort, min_per_class=2)
    n_classes = len(classes)
    aucs, _, psi = _components(yi, mats, n_classes)
    macro_a, macro_b = float(aucs[0].mean()), float(aucs[1].mean())
    d = macro_a - macro_b
    se = float(np.sqrt(max(_stratified_variance(psi[0] - psi[1], yi, n_classes), 0.0)))
    z = ratio(d, se)
    half = z_critical(level) * se
    counts = np.bincount(yi, minlength=n_classes)
    return MacroAucTest(
        macro_a=macro_a,
        macro_b=macro_b,
        difference=d,
        statistic=z,
        p_value=normal_p_value(z, alternative),
        ci_lower=clip(d - half, -1.0, 1.0),
        ci_upper=clip(d + half, -1.0, 1.0),
        level=level,
        alternative=alternative,
        method="DeLong's test for two correlated macro-average one-vs-rest AUCs "
        "(structural components stratified by true class)",
        se=se,
        class_counts={k: int(c) for k, c in zip(classes, counts, strict=True)},
    )


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
) -> MacroAucTest:
    """Paired bootstrap test of two macro AUCs, resampling cases within each true class.

    Each of the ``n_boot`` replicates (seeded) resamples the cases of every class with
    replacement, keeping the class sizes, and recomputes both macro AUCs on the same resampled
    cases. :math:`z = d / \\mathrm{sd}(d^*)` (sample sd of the replicate differences) with a
    normal p-value, as pROC's ``roc.test(method = "bootstrap")``; the CI is the percentile
    interval of :math:`d^*` (Efron & Tibshirani, An Introduction to the Bootstrap, 1993).
    """
    alternative = check_alternative(alternative)
    level = check_level(level)
    n_boot = check_n_boot(n_boot)
    classes, yi, mats = _prepare(y, [proba_a, proba_b], classes, cohort, min_per_class=1)
    n_classes = len(classes)
    aucs, _, _ = _components(yi, mats, n_classes)
    macro_a, macro_b = float(aucs[0].mean()), float(aucs[1].mean())
    d = macro_a - macro_b
    strata = [np.flatnonzero(yi == c) for c in range(n_classes)]
    idx = stratified_indices(strata, n_boot, np.random.default_rng(seed))
    block = block_labels(strata)
    boot = np.zeros((2, n_boot))
    for k in range(n_classes):
        x = np.vstack([mats[0][:, k][idx], mats[1][:, k][idx]])
        boot += auc_rows(block == k, x).reshape(2, n_boot)
    diffs = (boot[0] - boot[1]) / n_classes
    sd = float(np.std(diffs, ddof=1))
    z = ratio(d, sd)
    lo, hi = percentile_interval(diffs, level)
    counts = np.bincount(yi, minlength=n_classes)
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
        "(stratified by true class)",
        se=sd,
        class_counts={k: int(c) for k, c in zip(classes, counts, strict=True)},
        n_boot=n_boot,
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
) -> pd.DataFrame:
    """One paired DeLong test per class, one-vs-rest on ``proba_a[:, k]`` vs ``proba_b[:, k]``.

    Columns: class, auc_a, auc_b, difference, z, p_value, ci_lower, ci_upper (see
    :func:`ovfdlr.stats.delong_test`; DeLong et al., Biometrics 1988). The p-values are not
    adjusted for the K comparisons.
    """
    alternative = check_alternative(alternative)
    level = check_level(level)
    classes, yi, (pa, pb) = _prepare(y, [proba_a, proba_b], classes, cohort, min_per_class=2)
    rows = []
    for k, label in enumerate(classes):
        t = delong_test(yi == k, pa[:, k], pb[:, k], alternative=alternative, level=level)
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
            }
        )
    return pd.DataFrame(rows)
