"""Binary ROC/AUC and DeLong: fast midranks against the O(m n) definition, ranges, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from ovfdlr.stats import (
    StatsError,
    auc_ci,
    delong_covariance,
    delong_test,
    roc_auc,
    roc_curve,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def naive_delong(y: np.ndarray, scores: np.ndarray):
    """DeLong 1988 straight from the definition: the m x n kernel matrix per score."""
    y = np.asarray(y, bool)
    scores = np.atleast_2d(np.asarray(scores, float).T).T  # (N, k)
    cases, controls = scores[y], scores[~y]
    m, n = len(cases), len(controls)
    k = scores.shape[1]
    v10 = np.empty((k, m))
    v01 = np.empty((k, n))
    theta = np.empty(k)
    for r in range(k):
        x = cases[:, r][:, None]
        z = controls[:, r][None, :]
        psi = (x > z) + 0.5 * (x == z)
        v10[r] = psi.mean(axis=1)
        v01[r] = psi.mean(axis=0)
        theta[r] = psi.mean()
    s10 = np.cov(v10, ddof=1).reshape(k, k)
    s01 = np.cov(v01, ddof=1).reshape(k, k)
    return theta, s10 / m + s01 / n


@st.composite
def binary_sample(draw, n_scores=1, min_each=2, max_each=25):
    """Labels with at least ``min_each`` of each group and scores of several kinds."""
    m = draw(st.integers(min_each, max_each))
    n = draw(st.integers(min_each, max_each))
    y = np.array([1] * m + [0] * n)
    perm = draw(st.permutations(range(m + n)))
    y = y[list(perm)]
    kind = draw(st.sampled_from(["ties", "float", "separated", "reversed", "constant"]))
    cols = []
    for _ in range(n_scores):
        if kind == "ties":
            s = np.array(draw(st.lists(st.integers(0, 3), min_size=m + n, max_size=m + n)), float)
        elif kind == "float":
            s = np.array(
                draw(
                    st.lists(
                        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                        min_size=m + n,
                        max_size=m + n,
                    )
                )
            )
        elif kind == "constant":
            s = np.full(m + n, draw(st.floats(-10, 10, allow_nan=False)))
        else:
            noise = np.array(draw(st.lists(st.floats(0, 1), min_size=m + n, max_size=m + n)))
            sign = 1.0 if kind == "separated" else -1.0
            s = sign * (10.0 * y + noise)
        cols.append(s)
    return y, np.column_stack(cols)


# ------------------------------------------------------------------------------- fast vs naive


def test_fast_delong_equals_naive_on_random_ties():
    rng = np.random.default_rng(42)
    for trial in range(30):
        n = int(rng.integers(5, 300))
        y = rng.random(n) < rng.uniform(0.2, 0.8)
        if y.sum() < 2 or (~y).sum() < 2:
            continue
        # coarse rounding makes many ties within and across groups
        scores = np.round(rng.normal(y[:, None] * rng.uniform(0, 2, 4), 1.0), trial % 3)
        aucs, cov = delong_covariance(y, scores)
        ref_aucs, ref_cov = naive_delong(y, scores)
        np.testing.assert_allclose(aucs, ref_aucs, atol=1e-13, rtol=0)
        np.testing.assert_allclose(cov, ref_cov, atol=1e-13, rtol=0)


@PROPERTY
@given(binary_sample(n_scores=3))
def test_fast_delong_equals_naive_property(sample):
    y, scores = sample
    aucs, cov = delong_covariance(y, scores)
    ref_aucs, ref_cov = naive_delong(y, scores)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12, rtol=0)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-12, rtol=0)
    np.testing.assert_allclose(cov, cov.T, atol=1e-15)
    assert (np.diag(cov) >= -1e-15).all()


def test_auc_equals_sklearn_and_trapezoid():
    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.4
    s = np.round(rng.normal(y * 0.8, 1), 1)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-14)
    curve = roc_curve(y, s)
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(roc_auc(y, s), abs=1e-14)
    fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(curve["fpr"], fpr, atol=1e-15)
    np.testing.assert_allclose(curve["tpr"], tpr, atol=1e-15)


def test_roc_curve_shape_and_direction():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9])
    c = roc_curve(y, s)
    assert list(c.columns) == ["threshold", "fpr", "tpr"]
    assert (c.iloc[0][["fpr", "tpr"]] == 0).all() and (c.iloc[-1][["fpr", "tpr"]] == 1).all()
    assert (np.diff(c["fpr"]) >= 0).all() and (np.diff(c["tpr"]) >= 0).all()
    assert c["threshold"].iloc[0] == np.inf
    # threshold 0.4 calls the tied control pair and the cases at 0.8, 0.9 positive
    row = c[c["threshold"] == 0.4].iloc[0]
    assert (row["fpr"], row["tpr"]) == (2 / 3, 2 / 3)
    r = roc_curve(y, -s, direction=">")
    np.testing.assert_array_equal(r["fpr"], c["fpr"])
    np.testing.assert_array_equal(r["threshold"], -c["threshold"])
    assert r["threshold"].iloc[0] == -np.inf
    # direction is never flipped silently: ">" on the raw scores gives 1 - AUC
    assert roc_auc(y, s, direction=">") == pytest.approx(1 - roc_auc(y, s), abs=1e-15)


# ------------------------------------------------------------------------- ranges (properties)


@PROPERTY
@given(binary_sample(n_scores=2), st.sampled_from(["two-sided", "greater", "less"]))
def test_paired_test_ranges(sample, alternative):
    y, scores = sample
    t = delong_test(y, scores[:, 0], scores[:, 1], alternative=alternative)
    assert 0.0 <= t.p_value <= 1.0
    assert np.isfinite(t.statistic) or t.n_permutations is not None
    assert 0.0 <= t.auc_a <= 1.0 and 0.0 <= t.auc_b <= 1.0
    if t.n_permutations is not None:  # DeLong not estimable: no CI, permutation p
        assert np.isnan(t.ci_lower) and "not estimable" in t.note
        return
    assert -1.0 <= t.ci_lower <= t.difference <= t.ci_upper <= 1.0
    other = {"greater": "less", "less": "greater"}.get(alternative)
    if other is not None:
        u = delong_test(y, scores[:, 0], scores[:, 1], alternative=other)
        assert t.p_value + u.p_value == pytest.approx(1.0, abs=1e-12)


@PROPERTY
@given(binary_sample(n_scores=2), st.sampled_from(["two-sided", "greater", "less"]))
def test_unpaired_test_ranges(sample, alternative):
    y, scores = sample
    t = delong_test(y, scores[:, 0], scores[:, 1], paired=False, alternative=alternative)
    assert not np.isinf(t.statistic)
    if t.note:  # both variances zero and a difference: not estimable, said so
        assert "not estimable" in t.note and np.isnan(t.p_value) and np.isnan(t.ci_lower)
        return
    assert 0.0 <= t.p_value <= 1.0
    assert -1.0 <= t.ci_lower <= t.difference <= t.ci_upper <= 1.0


@PROPERTY
@given(binary_sample(n_scores=1), st.floats(0.5, 0.999))
def test_auc_ci_ranges(sample, level):
    y, scores = sample
    for method in ("delong", "bootstrap"):
        ci = auc_ci(y, scores[:, 0], level=level, method=method, n_boot=50)
        assert 0.0 <= ci.lower <= ci.upper <= 1.0
        if method == "delong":
            assert ci.lower <= ci.auc <= ci.upper
        assert ci.auc == pytest.approx(roc_auc(y, scores[:, 0]), abs=1e-15)


def test_perfect_separation():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([1.0, 2, 3, 4, 5, 6])
    ci = auc_ci(y, s)
    # DeLong's variance is 0: Newcombe's score interval, informative below 1
    assert ci.method == "newcombe-score" and ci.auc == 1.0 and ci.upper == 1.0
    assert 0.0 < ci.lower < 0.95  # three cases, three controls: wide, as it must be
    assert "Newcombe" in str(ci)
    # AUC 1 vs AUC 0: no variance, a difference of 1: DeLong not estimable, permutation test.
    # Of the 2^6 patient-wise swaps, |d*| = 1 when no case is swapped or every case is (the
    # controls stay below the cases or above them either way): 16 of 64, exact p = 1/4
    t = delong_test(y, s, -s)
    assert t.difference == 1.0 and np.isnan(t.statistic) and t.n_permutations == 2000
    assert t.p_value == pytest.approx(1 / 4, abs=0.03)
    assert "not estimable" in t.note and "permutation" in t.method
    assert np.isnan(t.ci_lower) and "permutations" in str(t)
    again = delong_test(y, s, -s)
    assert again.p_value == t.p_value  # seeded
    # both perfect: d = 0, sigma = 0, z = 0, p = 1
    same = delong_test(y, s, 2 * s)
    assert (same.statistic, same.p_value) == (0.0, 1.0)
    assert delong_test(y, s, 2 * s, alternative="greater").p_value == 0.5


def test_newcombe_interval_solves_its_score_equation():
    from ovfdlr.stats import newcombe_interval
    from ovfdlr.stats._checks import z_critical
    from ovfdlr.stats.roc import _hanley_mcneil_modified

    for auc, m, n in [(1.0, 10, 10), (1.0, 3, 40), (0.0, 8, 12), (0.8, 30, 50)]:
        lo, hi = newcombe_interval(auc, [(m, n)], 0.95)
        assert 0.0 <= lo <= auc <= hi <= 1.0
        for bound in (lo, hi):
            if 0.0 < bound < 1.0 and bound != auc:
                gap = (auc - bound) ** 2 - z_critical(0.95) ** 2 * _hanley_mcneil_modified(
                    bound, m, n
                )
                assert abs(gap) < 1e-10
    # more cases, a tighter interval at AUC 1
    assert newcombe_interval(1.0, [(50, 50)])[0] > newcombe_interval(1.0, [(10, 10)])[0]
    # an interior AUC: close to DeLong's Wald interval
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.4
    s = rng.normal(y * 1.2, 1)
    d = auc_ci(y, s)
    lo, hi = newcombe_interval(d.auc, [(int(y.sum()), int((~y).sum()))])
    assert lo == pytest.approx(d.lower, abs=0.02) and hi == pytest.approx(d.upper, abs=0.02)


def test_one_case_gives_an_auc_without_ci():
    y = np.array([0, 0, 0, 1, 0])
    s = np.array([0.1, 0.2, 0.3, 0.9, 0.4])
    ci = auc_ci(y, s)
    assert ci.auc == 1.0 and np.isnan(ci.lower) and ci.note == "CI n/a: 1 case"
    t = delong_test(y, s, s[::-1])
    assert np.isnan(t.p_value) and t.note == "test n/a: 1 case"


def test_bootstrap_ci_close_to_delong_and_seeded():
    rng = np.random.default_rng(7)
    y = rng.random(400) < 0.4
    s = rng.normal(y * 1.0, 1)
    d = auc_ci(y, s)
    b = auc_ci(y, s, method="bootstrap", n_boot=2000, seed=1)
    assert b.method == "bootstrap"
    assert b.lower == pytest.approx(d.lower, abs=0.01)
    assert b.upper == pytest.approx(d.upper, abs=0.01)
    again = auc_ci(y, s, method="bootstrap", n_boot=2000, seed=1)
    assert (again.lower, again.upper) == (b.lower, b.upper)
    other = auc_ci(y, s, method="bootstrap", n_boot=2000, seed=2)
    assert (other.lower, other.upper) != (b.lower, b.upper)
    assert "95% CI" in str(b) and "bootstrap" in str(b)


def test_levels_widen_the_interval():
    rng = np.random.default_rng(8)
    y = rng.random(100) < 0.5
    s = rng.normal(y * 0.5, 1)
    narrow, wide = auc_ci(y, s, level=0.8), auc_ci(y, s, level=0.99)
    assert wide.lower < narrow.lower < narrow.upper < wide.upper
    other = s + rng.normal(0, 1, 100)
    ta = delong_test(y, s, other, level=0.8)
    tb = delong_test(y, s, other, level=0.99)
    assert tb.ci_upper - tb.ci_lower > ta.ci_upper - ta.ci_lower


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([0, 1, np.nan, 1], [1, 2, 3, 4], "y contains NaN"),
        ([0, 1, 0, 1], [1, np.nan, 3, 4], "score contains NaN"),
        ([0, 1, 2, 1], [1, 2, 3, 4], "binary"),
        ([1, 1, 1, 1], [1, 2, 3, 4], "no controls"),
        ([0, 0, 0, 0], [1, 2, 3, 4], "no cases"),
        ([0, 1, 0], [1, 2, 3, 4], "has 4 values but y has 3"),
        ([[0, 1], [0, 1]], [[1, 2], [3, 4]], "one-dimensional"),
    ],
)
def test_bad_binary_input(y, s, match):
    with pytest.raises(StatsError, match=match):
        roc_auc(y, s)


def test_bad_options():
    y, s = [0, 0, 1, 1], [1, 2, 3, 4]
    with pytest.raises(StatsError, match="direction"):
        roc_auc(y, s, direction="auto")
    with pytest.raises(StatsError, match="alternative"):
        delong_test(y, s, s, alternative="two.sided")
    with pytest.raises(StatsError, match="level"):
        auc_ci(y, s, level=95)
    with pytest.raises(StatsError, match="method"):
        auc_ci(y, s, method="hanley")
    with pytest.raises(StatsError, match="at least 2 cases and 2 controls"):
        delong_covariance([0, 0, 1], [1, 2, 3])
    with pytest.raises(StatsError, match="only for the paired test"):
        delong_test(y, s, s, paired=False, groups=[1, 1, 2, 3])
    with pytest.raises(StatsError, match="two columns"):
        delong_test(y, np.ones((4, 3)))
    with pytest.raises(StatsError, match="y_b"):
        delong_test(y, s, s, y_b=y)
    with pytest.raises(StatsError, match="n_boot"):
        auc_ci(y, s, method="bootstrap", n_boot=1)
    assert issubclass(StatsError, ValueError)


def test_large_input_is_fast_enough():
    rng = np.random.default_rng(0)
    y = rng.random(200_000) < 0.3
    s = rng.normal(y * 1.0, 1)
    aucs, cov = delong_covariance(y, np.column_stack([s, s + rng.normal(0, 1, y.size)]))
    assert 0.7 < aucs[0] < 0.8 and cov.shape == (2, 2)
