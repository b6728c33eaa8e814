"""One-vs-rest AUCs, macro/micro averages, the macro DeLong test and its bootstrap cross-check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from ovfdlr.stats import (
    StatsError,
    auc_ci,
    bootstrap_macro_test,
    delong_test,
    macro_auc_test,
    one_vs_rest,
    per_class_tests,
)
from ovfdlr.stats._checks import z_critical


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def null_pair(rng, n=300, rho=0.5, signal=1.0, prior=(0.5, 0.3, 0.2)):
    """Two models from the same generating process with correlated noise: equal macro AUCs."""
    y = rng.choice(3, n, p=prior)
    mean = signal * np.eye(3)[y]
    shared = rng.normal(size=(n, 3))
    la = mean + np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.normal(size=(n, 3))
    lb = mean + np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.normal(size=(n, 3))
    return y, softmax(la), softmax(lb)


@pytest.fixture(scope="module")
def three_class():
    rng = np.random.default_rng(11)
    y, pa, _ = null_pair(rng, n=240, signal=1.2)
    # model B: a noisier version of A
    pb = softmax(np.log(pa) + rng.normal(0, 1.2, pa.shape))
    return y, pa, pb


# ------------------------------------------------------------------------------ one-vs-rest


def test_one_vs_rest_matches_sklearn_and_delong(three_class):
    y, pa, _ = three_class
    r = one_vs_rest(y, pa, cohort="internal")
    assert list(r.per_class.columns) == [
        "class",
        "auc",
        "lower",
        "upper",
        "n_positive",
        "n_negative",
        "method",
        "note",
    ]
    for k in range(3):
        row = r.per_class.iloc[k]
        assert (row["method"], row["note"]) == ("delong", "")
        assert row["class"] == k
        ci = auc_ci(y == k, pa[:, k])
        assert row["auc"] == pytest.approx(roc_auc_score(y == k, pa[:, k]), abs=1e-14)
        assert (row["lower"], row["upper"]) == pytest.approx((ci.lower, ci.upper), abs=1e-14)
        assert row["n_positive"] == (y == k).sum()
        assert row["n_positive"] + row["n_negative"] == y.size
    macro = roc_auc_score(y, pa, multi_class="ovr", average="macro")
    micro = roc_auc_score(np.eye(3)[y], pa, average="micro")
    assert r.macro.auc == pytest.approx(macro, abs=1e-14)
    assert r.micro.auc == pytest.approx(micro, abs=1e-14)
    assert r.macro.method == "delong-macro" and r.micro.method == "patient-bootstrap"
    assert not r.clustered
    assert r.macro.lower < r.macro.auc < r.macro.upper
    assert r.micro.lower < r.micro.auc < r.micro.upper
    assert "internal" in str(r) and "macro" in str(r)


def test_macro_ci_uses_the_macro_test_variance(three_class):
    """The macro CI half-width is z * se of the macro test against an uninformative model."""
    y, pa, _ = three_class
    r = one_vs_rest(y, pa)
    flat = np.full_like(pa, 1 / 3)  # constant scores: AUC 0.5 and zero influence
    t = macro_auc_test(y, pa, flat)
    assert t.macro_b == 0.5
    assert (r.macro.upper - r.macro.lower) / 2 == pytest.approx(z_critical(0.95) * t.se, rel=1e-12)


def test_curves(three_class):
    y, pa, _ = three_class
    r = one_vs_rest(y, pa)
    c = r.curves
    assert list(c.columns) == ["curve", "fpr", "tpr"]
    assert set(c["curve"]) == {"class 0", "class 1", "class 2", "macro", "micro"}
    for name, g in c.groupby("curve"):
        assert (g["fpr"].iloc[0], g["tpr"].iloc[0]) == (0.0, 0.0), name
        assert (g["fpr"].iloc[-1], g["tpr"].iloc[-1]) == (1.0, 1.0), name
        assert (np.diff(g["fpr"]) >= 0).all() and (np.diff(g["tpr"]) >= -1e-15).all(), name
    area = {n: np.trapezoid(g["tpr"], g["fpr"]) for n, g in c.groupby("curve")}
    for k in range(3):
        assert area[f"class {k}"] == pytest.approx(r.per_class["auc"][k], abs=1e-14)
    # the macro curve is the pointwise mean of the per-class curves: its area is the macro AUC
    assert area["macro"] == pytest.approx(r.macro.auc, abs=1e-12)
    assert area["micro"] == pytest.approx(r.micro.auc, abs=1e-14)


def test_micro_bootstrap_is_seeded(three_class):
    y, pa, _ = three_class
    a = one_vs_rest(y, pa, n_boot=300, seed=5).micro
    b = one_vs_rest(y, pa, n_boot=300, seed=5).micro
    c = one_vs_rest(y, pa, n_boot=300, seed=6).micro
    assert (a.lower, a.upper) == (b.lower, b.upper)
    assert (a.lower, a.upper) != (c.lower, c.upper)


def test_other_class_labels():
    rng = np.random.default_rng(2)
    y, pa, pb = null_pair(rng, n=150)
    labels = np.array([1, 2, 3])[y]
    r = one_vs_rest(labels, pa, classes=(1, 2, 3))
    assert list(r.per_class["class"]) == [1, 2, 3]
    assert r.macro.auc == pytest.approx(one_vs_rest(y, pa).macro.auc, abs=1e-15)
    t = per_class_tests(labels, pa, pb, classes=(1, 2, 3))
    assert list(t["class"]) == [1, 2, 3]


# ------------------------------------------------------------------------- missing classes


def test_missing_class_gives_notes_not_errors(three_class):
    y, pa, pb = three_class
    keep = y != 1
    r = one_vs_rest(y[keep], pa[keep], cohort="external", n_boot=50)
    row = r.per_class.set_index("class").loc[1]
    assert np.isnan(row["auc"]) and row["note"] == "AUC n/a: no case in class 1"
    # the other classes keep their AUCs and CIs; no macro AUC without every class
    assert r.per_class.set_index("class").loc[[0, 2], "note"].eq("").all()
    assert np.isnan(r.macro.auc) and r.macro.note == "AUC n/a: no case in class 1"
    assert np.isfinite(r.micro.auc) and r.curves.empty
    t = macro_auc_test(y[keep], pa[keep], pb[keep], cohort="external")
    assert np.isnan(t.p_value) and t.note == "test n/a: no case in class 1"
    assert not np.isinf(t.statistic)
    pc = per_class_tests(y[keep], pa[keep], pb[keep], cohort="prospective")
    assert pc.set_index("class").loc[1, "note"] == "test n/a: no case in class 1"
    b = bootstrap_macro_test(y[keep], pa[keep], pb[keep], n_boot=10)
    assert np.isnan(b.p_value) and "no case in class 1" in b.note


def test_single_case_class_gives_estimates_without_ci(three_class):
    y, pa, pb = three_class
    keep = (y != 2) | (np.cumsum(y == 2) == 1)  # only the first class-2 case stays
    r = one_vs_rest(y[keep], pa[keep], cohort="c", n_boot=50)
    row = r.per_class.set_index("class").loc[2]
    assert np.isfinite(row["auc"]) and np.isnan(row["lower"])
    assert row["note"] == "CI n/a: 1 case in class 2"
    assert np.isfinite(r.macro.auc) and np.isnan(r.macro.lower)
    assert r.macro.note == "CI n/a: 1 case in class 2"
    assert "CI n/a: 1 case in class 2" in str(r)
    t = macro_auc_test(y[keep], pa[keep], pb[keep])
    assert np.isfinite(t.difference) and np.isnan(t.p_value)
    assert t.note == "test n/a: 1 case in class 2" and "test n/a" in str(t)
    pc = per_class_tests(y[keep], pa[keep], pb[keep]).set_index("class")
    assert pc.loc[2, "note"] == "test n/a: 1 case in class 2"
    boot = bootstrap_macro_test(y[keep], pa[keep], pb[keep], n_boot=50)
    assert np.isnan(boot.p_value) and boot.note == "test n/a: 1 case in class 2"
    assert pc.loc[0, "note"] == "" and 0 <= pc.loc[0, "p_value"] <= 1


def test_zero_variance_difference_is_tested_by_permutation():
    # A separates every class perfectly, B is A reversed (every one-vs-rest AUC 0): every
    # placement is 0 or 1, so every influence is zero, yet the macro AUCs differ by 1
    y = np.repeat([0, 1, 2], 4)
    pa = np.eye(3)[y] * 0.7 + 0.1
    pb = (1 - pa) / 2
    t = macro_auc_test(y, pa, pb)
    assert t.difference > 0 and t.se == 0.0 and np.isnan(t.statistic)
    assert t.note == "DeLong not estimable (variance 0): paired permutation test"
    assert t.n_permutations == 2000 and 0.0 < t.p_value <= 1.0
    assert macro_auc_test(y, pa, pb).p_value == t.p_value  # seeded
    assert "2000 permutations" in str(t)
    # the per-class AUCs at 1 get Newcombe's interval, informative below 1
    r = one_vs_rest(y, pa, n_boot=50)
    assert (r.per_class["method"] == "newcombe-score").all()
    assert (r.per_class["lower"] < 1).all() and (r.per_class["upper"] == 1).all()
    assert r.macro.method == "newcombe-score" and r.macro.lower < 1


@pytest.mark.parametrize(
    ("y", "proba", "match"),
    [
        ([0, 1, 2, 3], np.full((4, 3), 1 / 3), r"labels \[3\] outside classes \[0, 1, 2\]"),
        ([0, 1, 2, np.nan], np.full((4, 3), 1 / 3), "y contains NaN"),
        ([0, 1, 2, 1], np.full((4, 2), 0.5), r"shape \(cases, 3\)"),
        ([0, 1, 2, 1], np.full((5, 3), 1 / 3), "5 rows but y has 4"),
        ([0, 1, 2, 1], [[np.nan, 0.5, 0.5]] + [[1 / 3] * 3] * 3, "proba contains NaN"),
    ],
)
def test_bad_multiclass_input(y, proba, match):
    with pytest.raises(StatsError, match=match):
        one_vs_rest(y, proba, cohort=None)


def test_bad_classes():
    with pytest.raises(StatsError, match="at least two classes"):
        one_vs_rest([0, 0], np.ones((2, 1)), classes=(0,))
    with pytest.raises(StatsError, match="distinct"):
        one_vs_rest([0, 1], np.ones((2, 2)), classes=(0, 0))


# ------------------------------------------------------------------------------ macro test


def test_macro_test_reduces_to_delong_on_random_binary_data():
    rng = np.random.default_rng(21)
    for _ in range(20):
        n = int(rng.integers(10, 400))
        y = (rng.random(n) < 0.35).astype(int)
        if y.sum() < 2 or (1 - y).sum() < 2:
            continue
        a = 1 / (1 + np.exp(-rng.normal(y * 1.0, 1)))
        b = np.round(1 / (1 + np.exp(-(0.5 * a + rng.normal(y * 0.6, 1)))), 2)  # with ties
        for alt in ("two-sided", "greater", "less"):
            d = delong_test(y, a, b, alternative=alt)
            m = macro_auc_test(y, np.c_[1 - a, a], np.c_[1 - b, b], classes=(0, 1), alternative=alt)
            assert m.macro_a == pytest.approx(d.auc_a, abs=1e-12)
            assert m.macro_b == pytest.approx(d.auc_b, abs=1e-12)
            assert m.statistic == pytest.approx(d.statistic, abs=1e-12)
            assert m.p_value == pytest.approx(d.p_value, abs=1e-12)
            assert m.ci_lower == pytest.approx(d.ci_lower, abs=1e-12)
            assert m.ci_upper == pytest.approx(d.ci_upper, abs=1e-12)
            assert m.se == pytest.approx(d.se, abs=1e-12)


def test_macro_test_type_one_error():
    rng = np.random.default_rng(2024)
    p = np.array([macro_auc_test(*null_pair(rng)).p_value for _ in range(1000)])
    rejection = float(np.mean(p < 0.05))
    assert 0.03 <= rejection <= 0.07, rejection
    # and the null p-values are roughly uniform, not just right at 5 %
    assert 0.07 <= np.mean(p < 0.1) <= 0.13
    assert 0.45 <= np.mean(p < 0.5) <= 0.55


def test_macro_test_detects_a_real_difference(three_class):
    y, pa, pb = three_class
    t = macro_auc_test(y, pa, pb)
    assert t.difference > 0 and t.p_value < 0.01
    assert t.ci_lower > 0
    assert macro_auc_test(y, pa, pb, alternative="greater").p_value == pytest.approx(
        t.p_value / 2, rel=1e-12
    )
    assert macro_auc_test(y, pb, pa).statistic == pytest.approx(-t.statistic, abs=1e-12)
    text = str(t)
    assert "at the population's class mix" in text and "not equal to 0" in text
    assert "class 0: " in text


def test_bootstrap_macro_test_agrees_with_delong(three_class):
    y, pa, pb = three_class
    d = macro_auc_test(y, pa, pb)
    b = bootstrap_macro_test(y, pa, pb, n_boot=2000, seed=3)
    assert b.difference == pytest.approx(d.difference, abs=1e-15)
    assert b.se == pytest.approx(d.se, rel=0.15)
    assert b.statistic == pytest.approx(d.statistic, rel=0.15)
    assert b.ci_lower == pytest.approx(d.ci_lower, abs=0.01)
    assert b.ci_upper == pytest.approx(d.ci_upper, abs=0.01)
    assert b.p_value < 0.05 and d.p_value < 0.05
    assert b.n_boot == 2000 and "Bootstrap" in b.method
    again = bootstrap_macro_test(y, pa, pb, n_boot=2000, seed=3)
    assert (again.statistic, again.ci_lower) == (b.statistic, b.ci_lower)


def test_bootstrap_macro_test_identical_models():
    rng = np.random.default_rng(4)
    y, pa, _ = null_pair(rng, n=60)
    b = bootstrap_macro_test(y, pa, pa, n_boot=50)
    assert (b.statistic, b.p_value, b.ci_lower, b.ci_upper) == (0.0, 1.0, 0.0, 0.0)
    d = macro_auc_test(y, pa, pa)
    assert (d.statistic, d.p_value) == (0.0, 1.0)


def test_per_class_tests(three_class):
    y, pa, pb = three_class
    t = per_class_tests(y, pa, pb, alternative="less", level=0.9)
    assert list(t.columns) == [
        "class",
        "auc_a",
        "auc_b",
        "difference",
        "z",
        "p_value",
        "ci_lower",
        "ci_upper",
        "method",
        "note",
    ]
    for k in range(3):
        ref = delong_test(y == k, pa[:, k], pb[:, k], alternative="less", level=0.9)
        row = t.iloc[k]
        assert (row["z"], row["p_value"], row["ci_lower"]) == (
            ref.statistic,
            ref.p_value,
            ref.ci_lower,
        )


# ------------------------------------------------------------------------ ranges (properties)


@st.composite
def small_three_class(draw):
    counts = [draw(st.integers(2, 8)) for _ in range(3)]
    y = np.repeat(np.arange(3), counts)
    n = y.size
    kind = draw(st.sampled_from(["ties", "float", "separated", "constant"]))

    def matrix():
        if kind == "ties":
            vals = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5]), min_size=3 * n, max_size=3 * n))
            return np.array(vals).reshape(n, 3)
        if kind == "float":
            vals = draw(st.lists(st.floats(0, 1), min_size=3 * n, max_size=3 * n))
            return np.array(vals).reshape(n, 3)
        if kind == "constant":
            return np.full((n, 3), 1 / 3)
        return np.eye(3)[y] * 0.9 + 0.05

    return y, matrix(), matrix()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_three_class(), st.sampled_from(["two-sided", "greater", "less"]))
def test_multiclass_ranges(sample, alternative):
    y, pa, pb = sample
    r = one_vs_rest(y, pa, n_boot=20)
    table = r.per_class
    assert ((table["lower"] >= 0) & (table["lower"] <= table["auc"])).all()
    assert ((table["auc"] <= table["upper"]) & (table["upper"] <= 1)).all()
    for ci in (r.macro, r.micro):
        assert 0.0 <= ci.lower <= ci.upper <= 1.0
    assert r.macro.lower <= r.macro.auc <= r.macro.upper
    t = macro_auc_test(y, pa, pb, alternative=alternative)
    assert 0.0 <= t.p_value <= 1.0 and not np.isinf(t.statistic)
    if t.n_permutations is None:
        assert -1.0 <= t.ci_lower <= t.difference <= t.ci_upper <= 1.0
    else:  # DeLong not estimable: a permutation p-value and no CI
        assert np.isnan(t.ci_lower) and np.isnan(t.statistic)
    b = bootstrap_macro_test(y, pa, pb, n_boot=20, alternative=alternative)
    assert not np.isinf(b.statistic)
    if not np.isnan(b.p_value):
        assert 0.0 <= b.p_value <= 1.0
        assert -1.0 <= b.ci_lower <= b.ci_upper <= 1.0
    pc = per_class_tests(y, pa, pb, alternative=alternative)
    assert pc["p_value"].between(0, 1).all() and not np.isinf(pc["z"]).any()
    estimable = pc["note"] == ""
    assert pc.loc[estimable, "ci_lower"].between(-1, 1).all()
    assert pc.loc[estimable, "ci_upper"].between(-1, 1).all()
