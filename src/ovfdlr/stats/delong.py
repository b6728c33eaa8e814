r"""DeLong's nonparametric AUC variance, covariance and test, with the fast midrank algorithm.

**Placements** (DeLong, DeLong & Clarke-Pearson, Biometrics 1988;44:837-45). With ``m`` cases
``X_i`` and ``n`` controls ``Y_j`` and the kernel :math:`\psi(x, y) = 1[x > y] + \tfrac12 1[x = y]`
(direction ``"<"``: controls score lower than cases),

.. math::

    V_{10}(X_i) = \frac1n \sum_j \psi(X_i, Y_j), \qquad
    V_{01}(Y_j) = \frac1m \sum_i \psi(X_i, Y_j), \qquad
    \hat\theta = \frac1m \sum_i V_{10}(X_i) = \frac1n \sum_j V_{01}(Y_j),

so :math:`\hat\theta` is the Mann-Whitney AUC with ties counted one half. For ``k`` scores on
the same cases, :math:`S_{10}` and :math:`S_{01}` are the ``k x k`` sample covariance matrices
(divisor ``m - 1`` and ``n - 1``) of the case and control placements, and

.. math::  \widehat{\mathrm{Cov}}(\hat\theta) = S_{10} / m + S_{01} / n .

**Fast algorithm** (Sun & Xu, IEEE Signal Processing Letters 2014;21:1389-93). With
:math:`T_Z` the midranks of all ``m + n`` scores and :math:`T_X`, :math:`T_Y` the midranks
within cases and within controls, :math:`V_{10}(X_i) = (T_Z(i) - T_X(i)) / n` and
:math:`V_{01}(Y_j) = 1 - (T_Z(j) - T_Y(j)) / m`. Here one sort of the pooled scores gives all
three: for a tie group ``g`` with ``c_g`` cases and ``d_g`` controls, preceded by ``C_g`` cases and
``D_g`` controls, :math:`T_Z - T_X = D_g + d_g/2` and :math:`T_Z - T_Y = C_g + c_g/2`. The cost is
:math:`O(N \log N)` and the computation is vectorised over several scores (rows) at once.

**Paired test** (correlated ROC curves, DeLong 1988): :math:`d = \hat\theta_A - \hat\theta_B`,
:math:`\sigma^2 = L S L^\top` with :math:`L = (1, -1)`, :math:`z = d / \sigma`; two-sided
:math:`p = 2\Phi(-|z|)`, ``greater`` :math:`p = \Phi(-z)`, ``less`` :math:`p = \Phi(z)`; the
confidence interval is :math:`d \pm z_{1-\alpha/2}\sigma` (two-sided whatever the alternative,
as in pROC). ``d = 0`` with :math:`\sigma = 0` gives ``z = 0`` and ``p = 1``; :math:`\sigma = 0`
with :math:`d \ne 0` would give an infinite z: DeLong's test is then not estimable and the
difference is tested by a paired permutation test instead (:mod:`ovfdlr.stats.permutation`).

**Clustered** (``groups``: the patient of each case, some patient with several cases): the
covariance is Obuchowski's clustered one (Biometrics 1997; :mod:`ovfdlr.stats.variance`); with
one case per patient it is DeLong's, unchanged.

**Unpaired test** (two independent samples): :math:`t = d / \sqrt{S_R + S_S}` with each
:math:`S = S_{10}/m + S_{01}/n`, Welch-Satterthwaite degrees of freedom
:math:`(S_R + S_S)^2 / (S_R^2 / (N_R - 1) + S_S^2 / (N_S - 1))` with :math:`N` the total sample
sizes, and Student-t p-values. This is pROC's ``roc.test(..., paired = FALSE)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps

from ovfdlr.stats import permutation as _perm
from ovfdlr.stats._checks import (
    StatsError,
    alternative_text,
    binary_labels,
    check_alternative,
    check_direction,
    check_level,
    clip,
    format_p,
    normal_p_value,
    prefix,
    ratio,
    score_matrix,
    scores_1d,
    t_p_value,
    z_critical,
)
from ovfdlr.stats.variance import (
    CLUSTERED_TEXT,
    binary_influence,
    cluster_codes,
    influence_covariance,
)

__all__ = ["DeLongTest", "delong_covariance", "delong_test"]

# Pooled-sort work is done in chunks of rows holding at most this many values (memory bound).
_CHUNK_VALUES = 4_000_000


def placements(is_case: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeLong placements of each row of ``x`` (k, N) for the cases ``is_case`` (N,) bool.

    Higher values indicate a case (orient the scores before calling). Returns ``theta`` (k,),
    ``v10`` (k, m): case placements in case order, ``v01`` (k, n): control placements.
    """
    k, n_total = x.shape
    m = int(is_case.sum())
    n = n_total - m
    order = np.argsort(x, axis=1)
    xs = np.take_along_axis(x, order, axis=1)
    lab = is_case[order]
    pos = np.arange(n_total)
    # first and last sorted position of the tie group of each sorted position
    new = np.empty((k, n_total), dtype=bool)
    new[:, 0] = True
    np.not_equal(xs[:, 1:], xs[:, :-1], out=new[:, 1:])
    del xs
    start = np.where(new, pos, 0)
    np.maximum.accumulate(start, axis=1, out=start)
    last = np.empty_like(new)
    last[:, -1] = True
    last[:, :-1] = new[:, 1:]
    del new
    end = np.where(last, pos, n_total - 1)[:, ::-1]
    end = np.minimum.accumulate(end, axis=1)[:, ::-1]
    del last
    # cases among the first p sorted positions
    ccase = np.zeros((k, n_total + 1), dtype=np.int64)
    np.cumsum(lab, axis=1, out=ccase[:, 1:])
    cases_before = np.take_along_axis(ccase, start, axis=1)
    cases_in = np.take_along_axis(ccase, end + 1, axis=1) - cases_before
    del ccase
    controls_before = start - cases_before
    controls_in = (end - start + 1) - cases_in
    del start, end
    # T_Z - T_X for cases, T_Z - T_Y for controls (Sun & Xu), as pROC's single pass has them
    value = np.where(
        lab,
        (controls_before + controls_in / 2.0) / n,
        1.0 - (cases_before + cases_in / 2.0) / m,
    )
    full = np.empty((k, n_total))
    np.put_along_axis(full, order, value, axis=1)
    v10 = full[:, is_case]
    v01 = full[:, ~is_case]
    theta = v10.mean(axis=1)
    return theta, v10, v01


def auc_rows(is_case: np.ndarray, x: np.ndarray) -> np.ndarray:
    """AUC of every row of ``x`` (rows, N) against the shared labels ``is_case``, chunked."""
    rows, n_total = x.shape
    step = max(1, _CHUNK_VALUES // max(n_total, 1))
    out = np.empty(rows)
    for lo in range(0, rows, step):
        out[lo : lo + step] = placements(is_case, x[lo : lo + step])[0]
    return out


def covariance_from_placements(theta: np.ndarray, v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    """``S10 / m + S01 / n`` (k, k), the sample covariances centred at ``theta`` as pROC does."""
    m = v10.shape[1]
    n = v01.shape[1]
    d10 = v10 - theta[:, None]
    d01 = v01 - theta[:, None]
    s10 = d10 @ d10.T / (m - 1)
    s01 = d01 @ d01.T / (n - 1)
    return s10 / m + s01 / n


def oriented(x: np.ndarray, direction: str) -> np.ndarray:
    """Scores turned so that higher means case: unchanged for ``"<"``, negated for ``">"``."""
    return x if direction == "<" else -x


def _need_two_each(is_case: np.ndarray, what: str, cohort: str | None = None) -> None:
    m = int(is_case.sum())
    n = is_case.size - m
    if m < 2 or n < 2:
        raise StatsError(
            f"{prefix(cohort)}{what} needs at least 2 cases and 2 controls; "
            f"got {m} cases and {n} controls"
        )


def delong_covariance(
    y: Any, scores: Any, *, direction: str = "<"
) -> tuple[np.ndarray, np.ndarray]:
    r"""AUCs and their DeLong covariance matrix for several scores on the same cases.

    ``y``: binary labels (1 or True = case). ``scores``: (n,) or (n, k), one column per score,
    all oriented by ``direction`` (``"<"``: controls < cases, higher score = case).

    Returns ``(aucs, covariance)``: ``aucs`` (k,) Mann-Whitney AUCs and ``covariance`` (k, k)
    :math:`S_{10}/m + S_{01}/n` (DeLong et al., Biometrics 1988), computed with the
    :math:`O(N \log N)` midrank algorithm of Sun & Xu (IEEE SPL 2014). The diagonal equals pROC's
    ``var(roc)`` and the off-diagonal pROC's ``cov(roc1, roc2)``. Needs at least two cases and
    two controls.
    """
    direction = check_direction(direction)
    is_case = binary_labels(y)
    x = score_matrix(scores, is_case.size)
    _need_two_each(is_case, "the DeLong covariance")
    theta, v10, v01 = placements(is_case, np.ascontiguousarray(oriented(x, direction).T))
    return theta, covariance_from_placements(theta, v10, v01)


@dataclass(frozen=True)
class DeLongTest:
    """Result of :func:`delong_test`. ``df`` is None for the paired (z) test.

    ``ci_lower``/``ci_upper`` bound ``difference = auc_a - auc_b`` (two-sided at ``level`` for
    every alternative, as pROC; clipped to [-1, 1]). ``se`` is the standard error of the
    difference. For the unpaired test ``n_cases_b``/``n_controls_b`` give the second sample.
    """

    auc_a: float
    auc_b: float
    difference: float
    statistic: float
    df: float | None
    p_value: float
    ci_lower: float
    ci_upper: float
    level: float
    alternative: str
    method: str
    n_cases: int
    n_controls: int
    direction: str = "<"
    se: float = float("nan")
    n_cases_b: int | None = None
    n_controls_b: int | None = None
    note: str = ""
    n_permutations: int | None = None

    @property
    def paired(self) -> bool:
        return self.df is None

    def __str__(self) -> str:
        sign = "<" if self.direction == "<" else ">"
        if self.paired:
            data = (
                f"data:  AUC A and AUC B on the same {self.n_cases + self.n_controls} subjects: "
                f"{self.n_controls} controls (y = 0) {sign} {self.n_cases} cases (y = 1)"
            )
            if self.n_permutations is not None:
                stat = f"{self.n_permutations} permutations, {format_p(self.p_value)}"
            elif self.note:
                stat = self.note
            else:
                stat = f"Z = {self.statistic:.4g}, {format_p(self.p_value)}"
        else:
            data = (
                f"data:  AUC A on {self.n_controls} controls (y = 0) {sign} {self.n_cases} "
                f"cases (y = 1); AUC B on {self.n_controls_b} controls {sign} "
                f"{self.n_cases_b} cases"
            )
            stat = f"t = {self.statistic:.4g}, df = {self.df:.4g}, {format_p(self.p_value)}"
        return "\n".join(
            [
                "",
                f"\t{self.method}",
                "",
                data,
                stat,
                alternative_text(self.alternative, "difference in AUC (A - B)"),
                f"{self.level * 100:g} percent confidence interval (two-sided):",
                f" {self.ci_lower:.7g} {self.ci_upper:.7g}",
                "sample estimates:",
                f"AUC of A: {self.auc_a:.7g}  AUC of B: {self.auc_b:.7g}",
                "",
            ]
        )


def delong_test(
    y: Any,
    score_a: Any,
    score_b: Any = None,
    *,
    y_b: Any = None,
    paired: bool = True,
    alternative: str = "two-sided",
    level: float = 0.95,
    direction: str = "<",
    groups: Any = None,
    n_permutations: int = _perm.MIN_PERMUTATIONS,
    seed: int = 0,
) -> DeLongTest:
    r"""DeLong's test of two AUCs: paired (same subjects, z test) or unpaired (t test).

    ``y`` binary labels (1 or True = case); ``score_a`` and ``score_b`` the two scores, oriented
    by ``direction`` (``"<"``: controls < cases). With ``score_b=None``, ``score_a`` must be an
    (n, 2) matrix. The hypothesis concerns ``auc_a - auc_b``: ``"greater"`` tests
    :math:`\theta_A > \theta_B`.

    Paired (DeLong et al., Biometrics 1988): :math:`z = d / \sqrt{L S L^\top}`, normal p-value,
    CI :math:`d \pm z_{1-\alpha/2} \sqrt{L S L^\top}`; equal to pROC's
    ``roc.test(method = "delong")``. Unpaired (``paired=False``; ``y_b`` gives the labels of the
    sample scored by ``score_b``, default ``y``): Welch-Satterthwaite t test as pROC's
    ``roc.test(paired = FALSE)``; its CI :math:`d \pm t_{1-\alpha/2, df}\sqrt{S_R + S_S}` is an
    addition (pROC reports none). P-values come from survival functions and lie in [0, 1].

    Paired only: ``groups`` (the patient of each case) gives Obuchowski's clustered variance
    when a patient has several cases. A zero variance with a non-zero difference is reported
    as "DeLong not estimable" and tested by ``n_permutations`` seeded paired permutations
    (statistic NaN, no CI). Fewer than two cases or controls: NaN statistic, p and CI and a
    ``note`` saying why. The statistic is never infinite.
    """
    alternative = check_alternative(alternative)
    level = check_level(level)
    direction = check_direction(direction)
    is_case = binary_labels(y)
    if score_b is None:
        both = score_matrix(score_a, is_case.size, name="score_a")
        if both.shape[1] != 2:
            raise StatsError(
                f"with score_b omitted, score_a must have two columns; got {both.shape[1]}"
            )
        a, b = both[:, 0], both[:, 1]
    else:
        a = scores_1d(score_a, is_case.size, name="score_a")
        b = None
    if paired:
        if y_b is not None:
            raise StatsError("y_b is only for the unpaired test (paired=False)")
        if b is None:
            b = scores_1d(score_b, is_case.size, name="score_b")
        codes = cluster_codes(groups, is_case.size)
        return _paired(is_case, a, b, alternative, level, direction, codes, (n_permutations, seed))
    if groups is not None:
        raise StatsError("groups (patients) are only for the paired test")
    is_case_b = is_case if y_b is None else binary_labels(y_b, name="y_b")
    if b is None:
        b = scores_1d(score_b, is_case_b.size, name="score_b")
    elif y_b is not None and is_case_b.size != b.size:
        raise StatsError(f"score_b has {b.size} values but y_b has {is_case_b.size}")
    return _unpaired(is_case, a, is_case_b, b, alternative, level, direction)


def _paired(is_case, a, b, alternative, level, direction, codes, permutations) -> DeLongTest:
    m = int(is_case.sum())
    x = oriented(np.vstack([a, b]), direction)
    theta, v10, v01 = placements(is_case, x)
    d = float(theta[0] - theta[1])
    common = {
        "auc_a": float(theta[0]),
        "auc_b": float(theta[1]),
        "difference": d,
        "df": None,
        "level": level,
        "alternative": alternative,
        "n_cases": m,
        "n_controls": is_case.size - m,
        "direction": direction,
    }
    method = "DeLong's test for two correlated ROC curves"
    if codes is not None:
        method += f" ({CLUSTERED_TEXT}, Obuchowski 1997)"
    nan = float("nan")
    if m < 2 or is_case.size - m < 2:
        few = "1 case" if m < 2 else "1 control"
        return DeLongTest(
            **common, statistic=nan, p_value=nan, ci_lower=nan, ci_upper=nan,
            method=method, note=f"test n/a: {few}",
        )  # fmt: skip
    if codes is None:
        cov = covariance_from_placements(theta, v10, v01)
    else:
        psi = binary_influence(theta, v10, v01, is_case)
        cov = influence_covariance(psi, is_case.astype(int), codes=codes)
    var_d = float(cov[0, 0] + cov[1, 1] - cov[0, 1] - cov[1, 0])
    sig = float(np.sqrt(max(var_d, 0.0)))
    if sig == 0.0 and d != 0.0:
        n_perm, seed = permutations
        masks = _perm.swap_masks(codes, is_case.size, max(n_perm, _perm.MIN_PERMUTATIONS), seed)
        xa, xb = _perm.swapped(x[0], x[1], masks)
        null = auc_rows(is_case, xa) - auc_rows(is_case, xb)
        return DeLongTest(
            **common,
            statistic=nan,
            p_value=_perm.permutation_p(d, null, alternative),
            ci_lower=nan,
            ci_upper=nan,
            method="Paired permutation test for two correlated ROC curves",
            se=0.0,
            note=_perm.NOT_ESTIMABLE,
            n_permutations=int(null.size),
        )
    z = ratio(d, sig)
    half = z_critical(level) * sig
    return DeLongTest(
        **common,
        statistic=z,
        p_value=normal_p_value(z, alternative),
        ci_lower=clip(d - half, -1.0, 1.0),
        ci_upper=clip(d + half, -1.0, 1.0),
        method=method,
        se=sig,
    )


def _unpaired(is_case_a, a, is_case_b, b, alternative, level, direction) -> DeLongTest:
    _need_two_each(is_case_a, "DeLong's unpaired test (sample A)")
    _need_two_each(is_case_b, "DeLong's unpaired test (sample B)")
    theta_a, v10a, v01a = placements(is_case_a, oriented(a, direction)[None, :])
    theta_b, v10b, v01b = placements(is_case_b, oriented(b, direction)[None, :])
    s_r = float(covariance_from_placements(theta_a, v10a, v01a)[0, 0])
    s_s = float(covariance_from_placements(theta_b, v10b, v01b)[0, 0])
    n_r, n_s = is_case_a.size, is_case_b.size
    d = float(theta_a[0] - theta_b[0])
    se = float(np.sqrt(s_r + s_s))
    t = ratio(d, se)
    denom = s_r**2 / (n_r - 1) + s_s**2 / (n_s - 1)
    note = ""
    if denom > 0:
        df = float((s_r + s_s) ** 2 / denom)
    else:  # both variances zero: no t distribution to refer to
        df = float("nan")
        note = "" if d == 0 else "DeLong not estimable (variance 0)"
    p = (1.0 if alternative == "two-sided" else 0.5) if t == 0.0 else t_p_value(t, df, alternative)
    if denom > 0:
        half = float(_sps.t.isf((1.0 - level) / 2.0, df)) * se
    else:  # no variance: a zero difference is exactly known, any other is not estimable
        half = 0.0 if d == 0 else float("nan")
    m_a, m_b = int(is_case_a.sum()), int(is_case_b.sum())
    return DeLongTest(
        auc_a=float(theta_a[0]),
        auc_b=float(theta_b[0]),
        difference=d,
        statistic=t,
        df=df,
        p_value=p,
        ci_lower=clip(d - half, -1.0, 1.0),
        ci_upper=clip(d + half, -1.0, 1.0),
        level=level,
        alternative=alternative,
        method="DeLong's test for two ROC curves",
        n_cases=m_a,
        n_controls=is_case_a.size - m_a,
        direction=direction,
        se=se,
        n_cases_b=m_b,
        n_controls_b=is_case_b.size - m_b,
        note=note,
    )
