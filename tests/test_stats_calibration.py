"""Brier score, expected calibration error, reliability curves, calibration regression, the
patient-bootstrap CIs of Brier and ECE, and decision curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit, softmax
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression

from ovfdlr.stats import (
    StatsError,
    brier_score,
    calibration_regression,
    calibration_summary_ci,
    decision_curves,
    expected_calibration_error,
    reliability_curves,
)
from ovfdlr.stats import calibration as cal

# ---------------------------------------------------------------------------------- Brier, ECE


def test_brier_hand_computed():
    y = [0, 1, 2]
    p = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]
    # 0 + (0.25 + 0.25) + (0.04 + 0.09 + 0.25) = 0.88 over 3 cases
    assert brier_score(y, p) == pytest.approx(0.88 / 3, abs=1e-15)
    assert brier_score([1, 0], [[0.0, 1.0], [1.0, 0.0]]) == 0.0
    assert brier_score([1, 0], [[1.0, 0.0], [0.0, 1.0]]) == 2.0
    # binary as [1 - p, p]: twice the usual binary Brier score
    yb = np.array([0, 1, 1, 0])
    pb = np.array([0.1, 0.8, 0.4, 0.3])
    assert brier_score(yb, np.c_[1 - pb, pb]) == pytest.approx(2 * np.mean((pb - yb) ** 2))
    assert brier_score([1, 2], [[1.0, 0.0], [0.0, 1.0]], classes=(1, 2)) == 0.0


def test_top_label_ece_hand_computed():
    y = [0, 1, 0, 2]
    p = [
        [0.9, 0.05, 0.05],  # confidence 0.9, correct   -> bin (0.8, 0.9]
        [0.9, 0.05, 0.05],  # confidence 0.9, wrong     -> bin (0.8, 0.9]
        [0.6, 0.3, 0.1],  # confidence 0.6, correct -> bin (0.5, 0.6]
        [0.2, 0.15, 0.65],  # confidence 0.65, correct -> bin (0.6, 0.7]
    ]
    # 2/4 |0.5 - 0.9| + 1/4 |1 - 0.6| + 1/4 |1 - 0.65|
    expected = 0.5 * 0.4 + 0.25 * 0.4 + 0.25 * 0.35
    assert expected_calibration_error(y, p) == pytest.approx(expected, abs=1e-15)
    # one bin: |accuracy - mean confidence| = |3/4 - 0.7625|
    assert expected_calibration_error(y, p, n_bins=1) == pytest.approx(0.0125, abs=1e-15)


def test_classwise_ece_hand_computed():
    y = [0, 1]
    p = [[0.8, 0.2], [0.3, 0.7]]
    # class 0: values 0.8 (hit) and 0.3 (miss) in separate bins: (0.2 + 0.3) / 2 = 0.25
    # class 1: values 0.2 (miss) and 0.7 (hit): (0.2 + 0.3) / 2 = 0.25
    assert expected_calibration_error(y, p, kind="classwise", classes=(0, 1)) == pytest.approx(
        0.25, abs=1e-15
    )
    perfect = expected_calibration_error([0, 1], [[1.0, 0.0], [0.0, 1.0]], kind="classwise")
    assert perfect == 0.0


def test_ece_bad_input():
    with pytest.raises(StatsError, match="kind"):
        expected_calibration_error([0, 1], [[1.0, 0.0], [0.0, 1.0]], kind="marginal")
    with pytest.raises(StatsError, match="within \\[0, 1\\]"):
        expected_calibration_error([0, 1], [[1.2, -0.2], [0.0, 1.0]])
    with pytest.raises(StatsError, match="n_bins"):
        expected_calibration_error([0, 1], [[1.0, 0.0], [0.0, 1.0]], n_bins=0)
    with pytest.raises(StatsError, match="NaN"):
        brier_score([0, 1], [[np.nan, 0.0], [0.0, 1.0]])


# -------------------------------------------------------------------------- reliability curves


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_matches_sklearn(strategy):
    rng = np.random.default_rng(3)
    y = rng.choice(3, 400, p=[0.5, 0.3, 0.2])
    p = rng.dirichlet(np.ones(3), 400) * 0.5 + np.eye(3)[y] * 0.5
    curves = reliability_curves(y, p, n_bins=8, strategy=strategy)
    assert list(curves.columns)[:5] == [
        "class",
        "bin",
        "mean_predicted",
        "observed_fraction",
        "count",
    ]
    for k in range(3):
        mine = curves[curves["class"] == k]
        prob_true, prob_pred = calibration_curve(y == k, p[:, k], n_bins=8, strategy=strategy)
        np.testing.assert_allclose(mine["observed_fraction"], prob_true, atol=1e-14)
        np.testing.assert_allclose(mine["mean_predicted"], prob_pred, atol=1e-14)
        assert mine["count"].sum() == y.size
        assert (mine["bin_lower"] <= mine["mean_predicted"] + 1e-15).all()
        assert (mine["mean_predicted"] <= mine["bin_upper"] + 1e-15).all()


def test_reliability_hand_computed():
    y = [0, 1, 1, 0]
    p = [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]]
    c = reliability_curves(y, p, classes=(0, 1), n_bins=2)
    one = c[c["class"] == 1]
    # class 1 probabilities 0.1, 0.3 in (0, 0.5] (no class 1); 0.6, 0.8 in (0.5, 1] (both)
    assert list(one["bin"]) == [0, 1]
    np.testing.assert_allclose(one["mean_predicted"], [0.2, 0.7])
    np.testing.assert_allclose(one["observed_fraction"], [0.0, 1.0])
    assert list(one["count"]) == [2, 2]
    with pytest.raises(StatsError, match="strategy"):
        reliability_curves(y, p, classes=(0, 1), strategy="kmeans")


# ----------------------------------------------------------------------------- decision curves


def test_decision_curve_hand_computed():
    y = [0, 0, 1, 1]
    p1 = np.array([0.2, 0.6, 0.4, 0.9])
    dc = decision_curves(y, np.c_[1 - p1, p1], classes=(0, 1), thresholds=[0.1, 0.3, 0.5])
    assert list(dc.columns) == [
        "class",
        "threshold",
        "net_benefit_model",
        "net_benefit_all",
        "net_benefit_none",
    ]
    one = dc[dc["class"] == 1].set_index("threshold")
    # p_t = 0.1: TP 2, FP 2 -> 2/4 - 2/4 * 1/9;  p_t = 0.3: TP 2, FP 1 -> 2/4 - 1/4 * 3/7
    # p_t = 0.5: TP 1 (0.9), FP 1 (0.6) -> 1/4 - 1/4 * 1
    np.testing.assert_allclose(
        one["net_benefit_model"], [0.5 - 0.5 / 9, 0.5 - 0.25 * 3 / 7, 0.0], atol=1e-15
    )
    np.testing.assert_allclose(
        one["net_benefit_all"], [0.5 - 0.5 / 9, 0.5 - 0.5 * 3 / 7, 0.0], atol=1e-15
    )
    assert (dc["net_benefit_none"] == 0).all()
    # the threshold is inclusive: a probability equal to p_t is treated
    at = decision_curves([0, 1], [[0.5, 0.5], [0.5, 0.5]], classes=(0, 1), thresholds=[0.5])
    assert at.loc[at["class"] == 1, "net_benefit_model"].item() == 0.5 - 0.5


def test_decision_curve_defaults_and_errors():
    rng = np.random.default_rng(0)
    y = rng.choice(3, 50)
    p = rng.dirichlet(np.ones(3), 50)
    dc = decision_curves(y, p)
    assert len(dc) == 3 * 99
    np.testing.assert_allclose(dc["threshold"].unique(), np.arange(0.01, 1.0, 0.01))
    for bad in ([0.0, 0.5], [0.5, 1.0], [], [np.nan]):
        with pytest.raises(StatsError, match="strictly between 0 and 1"):
            decision_curves(y, p, thresholds=bad)
    with pytest.raises(StatsError, match="outside classes"):
        decision_curves(y + 1, p)


def test_decision_curve_matches_dcurves():
    import dcurves

    rng = np.random.default_rng(12)
    y = rng.choice(3, 250, p=[0.5, 0.3, 0.2])
    p = rng.dirichlet(np.ones(3), 250) * 0.6 + np.eye(3)[y] * 0.4
    thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2)
    mine = decision_curves(y, p, thresholds=thresholds)
    for k in range(3):
        data = pd.DataFrame({"outcome": (y == k).astype(int), "model": p[:, k]})
        ref = dcurves.dca(data=data, outcome="outcome", modelnames=["model"], thresholds=thresholds)
        ours = mine[mine["class"] == k].reset_index(drop=True)
        for name, column in [
            ("model", "net_benefit_model"),
            ("all", "net_benefit_all"),
            ("none", "net_benefit_none"),
        ]:
            theirs = ref[ref["model"] == name].sort_values("threshold")
            np.testing.assert_allclose(theirs["threshold"], ours["threshold"], atol=1e-12)
            np.testing.assert_allclose(
                theirs["net_benefit"].to_numpy(dtype=float), ours[column], atol=1e-12
            )


# ---------------------------------------------------------------------- calibration regression

REGRESSION_COLUMNS = [
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


def _draw(rng, proba):
    """One class per row of ``proba`` (inverse-CDF draw)."""
    return (rng.random(len(proba))[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)


def _binary(p):
    return np.c_[1.0 - p, p]


def _width(row, name):
    return row[f"{name}_upper"] - row[f"{name}_lower"]


def test_regression_well_calibrated():
    rng = np.random.default_rng(20)
    p = rng.dirichlet(np.ones(3), 20000)
    y = _draw(rng, p)  # P(y = k | p) = p_k exactly: slope 1, intercept 0 for every class
    table = calibration_regression(y, p)
    assert list(table.columns) == REGRESSION_COLUMNS
    assert list(table["class"]) == [0, 1, 2]
    np.testing.assert_allclose(table["slope"], 1.0, atol=0.05)
    np.testing.assert_allclose(table["intercept"], 0.0, atol=0.05)
    assert (table["slope_lower"] < 1.0).all() and (table["slope_upper"] > 1.0).all()
    assert (table["intercept_lower"] < table["intercept"]).all()
    assert (table["intercept"] < table["intercept_upper"]).all()
    assert (table["n"] == 20000).all()
    assert list(table["n_events"]) == [int(np.sum(y == k)) for k in range(3)]
    assert (table["note"] == "").all()
    assert table["method"].str.contains("model-based").all()
    assert table["method"].str.contains("clipped to \\[1e-08").all()


def test_regression_overconfident_slope_one_half():
    rng = np.random.default_rng(21)
    # binary: logit of the doubled model is exactly twice the true logit, slope exactly 1/2
    z = 1.5 * rng.normal(size=20000)
    y = (rng.random(z.size) < expit(z)).astype(int)
    table = calibration_regression(y, _binary(expit(2 * z)), classes=(0, 1))
    np.testing.assert_allclose(table["slope"], 0.5, atol=0.05)
    # three classes with doubled logits: one-vs-rest slopes close to 1/2 as well
    z3 = rng.normal(size=(20000, 3)) + np.array([0.5, 0.0, -0.3])
    y3 = _draw(rng, softmax(z3, axis=1))
    table3 = calibration_regression(y3, softmax(2 * z3, axis=1))
    np.testing.assert_allclose(table3["slope"], 0.5, atol=0.05)
    assert (table3["slope_upper"] < 0.6).all()


def _offset_mle(event, L):
    """a' of logit P = a' + L by bounded minimisation of the negative log-likelihood."""

    def nll(a):
        return -np.sum(np.where(event, log_expit(a + L), log_expit(-(a + L))))

    return minimize_scalar(nll, bounds=(-50, 50), method="bounded", options={"xatol": 1e-10}).x


@pytest.mark.parametrize("case", ["smooth", "hard"])
def test_regression_matches_sklearn_and_likelihood(case):
    """Independent fits: scikit-learn's unpenalised logistic regression (C = inf, the same as
    penalty=None, which scikit-learn 1.8 deprecated) for the slope, and a bounded minimisation
    of the offset model's negative log-likelihood for the intercept. ``"hard"``: mostly 0/1
    probabilities (clipped to logits of about +-18.4), where IRLS left to itself diverges."""
    rng = np.random.default_rng(22)
    z = rng.normal(size=(600, 3)) + np.array([0.3, 0.0, -0.4])
    y = _draw(rng, softmax(z, axis=1))
    p = softmax(1.6 * z + np.array([0.2, -0.1, 0.0]), axis=1)  # miscalibrated on purpose
    if case == "hard":
        p[100:] = np.eye(3)[_draw(rng, p[100:])]
    table = calibration_regression(y, p)
    for k in range(3):
        q = np.clip(p[:, k], 1e-8, 1 - 1e-8)
        L = np.log(q) - np.log1p(-q)
        event = y == k
        lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(L[:, None], event)
        row = table.iloc[k]
        assert row["slope"] == pytest.approx(lr.coef_[0, 0], abs=1e-5)
        assert row["intercept"] == pytest.approx(_offset_mle(event, L), abs=1e-5)
        # the Wald interval: estimate -/+ z * SE from the inverse Fisher information
        mu = lr.predict_proba(L[:, None])[:, 1]
        X = np.c_[np.ones(L.size), L]
        se = np.sqrt(np.linalg.inv(X.T @ (X * (mu * (1 - mu))[:, None]))[1, 1])
        assert _width(row, "slope") == pytest.approx(2 * 1.959963984540054 * se, rel=1e-4)


def test_regression_slope_ci_coverage():
    """400 seeded data sets of n = 300 from a well-calibrated model: the 95 % Wald CIs cover
    the true slope 1 and intercept 0 about 95 % of the time (measured: 0.940 and 0.968)."""
    rng = np.random.default_rng(23)
    slope_hit, intercept_hit = [], []
    for _ in range(400):
        p = expit(1.5 * rng.normal(size=300) - 0.5)
        y = (rng.random(300) < p).astype(int)
        # the fit behind calibration_regression's row for class 1 (half the work of the call)
        row = cal._recalibrate(y == 1, np.log(p) - np.log1p(-p), None, 0.95, 1)
        slope_hit.append(row["slope_lower"] <= 1.0 <= row["slope_upper"])
        intercept_hit.append(row["intercept_lower"] <= 0.0 <= row["intercept_upper"])
    assert 0.91 <= np.mean(slope_hit) <= 0.98
    assert 0.91 <= np.mean(intercept_hit) <= 0.98


def test_regression_clustered():
    rng = np.random.default_rng(24)
    n = 1500
    z = rng.normal(size=(n, 3))
    y = _draw(rng, softmax(z, axis=1))
    p = softmax(1.3 * z, axis=1)
    naive = calibration_regression(y, p)
    single = calibration_regression(y, p, groups=np.arange(n))
    assert single["method"].str.contains("cluster-robust").all()
    assert single["method"].str.contains(f"{n} patients").all()
    np.testing.assert_allclose(single["slope"], naive["slope"], rtol=1e-12)
    np.testing.assert_allclose(single["intercept"], naive["intercept"], rtol=1e-12)
    for name in ("slope", "intercept"):
        # one case per patient: the sandwich estimate is close to the model-based one
        ratio = _width(single, name) / _width(naive, name)
        assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio

    # every case copied twice into one patient: the naive CI shrinks by 1/sqrt(2), the
    # clustered one keeps the width of the original data's
    yy, pp = np.repeat(y, 2), np.repeat(p, 2, axis=0)
    patients = np.repeat([f"patient-{i}" for i in range(n)], 2)
    dup_naive = calibration_regression(yy, pp)
    dup_cluster = calibration_regression(yy, pp, groups=patients)
    np.testing.assert_allclose(dup_cluster["slope"], naive["slope"], rtol=1e-8)
    for name in ("slope", "intercept"):
        np.testing.assert_allclose(
            _width(dup_naive, name), _width(naive, name) / np.sqrt(2), rtol=1e-6
        )
        np.testing.assert_allclose(_width(dup_cluster, name), _width(single, name), rtol=2e-3)


def test_regression_degenerate_cases_give_notes():
    rng = np.random.default_rng(25)
    p = rng.dirichlet(np.ones(3), 40)
    y = np.r_[np.zeros(20, int), np.full(19, 2), [1]]  # one case of class 1
    table = calibration_regression(y, p)
    row = table.set_index("class").loc[1]
    assert row["note"] == "n/a: 1 case in class 1"
    assert np.isnan(
        row[["intercept", "intercept_lower", "slope", "slope_upper"]].astype(float)
    ).all()
    assert (table.set_index("class").loc[[0, 2], "note"] == "").all()

    none = calibration_regression(np.zeros(40, int), p)
    assert list(none["note"]) == [
        "n/a: 0 cases outside class 0",
        "n/a: 0 cases in class 1",
        "n/a: 0 cases in class 2",
    ]

    # perfect separation: no finite slope; the intercept (offset model) is still defined
    ys = np.array([0, 0, 0, 1, 1, 1])
    ps = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    sep = calibration_regression(ys, _binary(ps), classes=(0, 1))
    assert (sep["note"] == "slope n/a: perfect separation").all()
    assert sep["slope"].isna().all() and sep["slope_lower"].isna().all()
    assert np.isfinite(sep[["intercept", "intercept_lower", "intercept_upper"]].to_numpy()).all()
    # quasi-complete separation (the groups touch at one value) is separation too
    quasi = calibration_regression(
        ys, _binary(np.array([0.1, 0.2, 0.5, 0.5, 0.7, 0.8])), classes=(0, 1)
    )
    assert (quasi["note"] == "slope n/a: perfect separation").all()

    # constant prediction: no slope, the intercept is logit(observed) - logit(predicted)
    const = calibration_regression([0, 1, 1, 0, 0, 0], np.full((6, 2), 0.5), classes=(0, 1))
    assert (const["note"] == "slope n/a: constant predicted probability").all()
    assert const["intercept"].iloc[0] == pytest.approx(np.log(4 / 2), abs=1e-8)

    # probabilities of exactly 0 and 1 are clipped, and the note says how many
    hard = np.eye(3)[_draw(rng, p)]
    hard[:5] = p[:5]
    y_hard = _draw(rng, p)
    clipped = calibration_regression(y_hard, hard)
    assert clipped["note"].str.contains("35 probabilities clipped to \\[1e-08, 1 - 1e-08\\]").all()

    # a clustered CI needs two patients: the estimates stay, the CIs are NaN
    one = calibration_regression(y_hard, p, groups=np.zeros(40))
    assert one["note"].str.contains("CI n/a: a clustered CI needs at least 2 patients").all()
    assert one["slope"].notna().all() and one["slope_lower"].isna().all()

    for frame in (table, none, sep, quasi, const, clipped, one):
        values = frame[REGRESSION_COLUMNS[1:7]].to_numpy(dtype=float)
        assert not np.isinf(values).any()


def test_regression_bad_input_names_cohort():
    p = np.full((4, 3), 1 / 3)
    y = [0, 1, 2, 0]
    with pytest.raises(StatsError, match="cohort external: proba contains NaN"):
        bad = p.copy()
        bad[0, 0] = np.nan
        calibration_regression(y, bad, cohort="external")
    with pytest.raises(StatsError, match="cohort external: proba must have shape"):
        calibration_regression(y, p[:, :2], cohort="external")
    with pytest.raises(StatsError, match="cohort external: y has labels \\[5\\] outside"):
        calibration_regression([0, 1, 5, 0], p, cohort="external")
    with pytest.raises(StatsError, match="cohort external: groups has 3 values but y has 4"):
        calibration_regression(y, p, groups=[1, 2, 3], cohort="external")
    with pytest.raises(StatsError, match="missing patient ids"):
        calibration_regression(y, p, groups=["a", None, "b", "c"])
    with pytest.raises(StatsError, match="within \\[0, 1\\]"):
        calibration_regression(y, p * 4)
    with pytest.raises(StatsError, match="level"):
        calibration_regression(y, p, level=1.5)


# --------------------------------------------------------- patient-bootstrap CIs, Brier and ECE

SUMMARY_KEYS = [
    "brier",
    "brier_lower",
    "brier_upper",
    "ece_top_label",
    "ece_top_label_lower",
    "ece_top_label_upper",
    "ece_classwise",
    "ece_classwise_lower",
    "ece_classwise_upper",
    "n_boot",
    "method",
]


def _miscalibrated(seed, n=400):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)) + np.array([0.4, 0.0, -0.4])
    y = _draw(rng, softmax(z, axis=1))
    return y, softmax(2.0 * z, axis=1), rng


def test_weighted_statistics_with_unit_weights_equal_the_plain_ones():
    y, p, _ = _miscalibrated(30)
    ones = np.ones((1, y.size))
    assert cal._weighted_brier(cal._brier_terms(y, p), ones)[0] == brier_score(y, p)
    top = cal._weighted_ece(cal._top_label_gap(y, p, 10), ones)[0]
    assert top == expected_calibration_error(y, p)
    cw = cal._weighted_classwise_ece(cal._classwise_gaps(y, p, 7), ones)[0]
    assert cw == expected_calibration_error(y, p, n_bins=7, kind="classwise")
    # and the plain statistics equal a direct per-bin computation
    conf, hit = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    direct = 0.0
    for b in range(10):
        inside = (conf > b / 10) & (conf <= (b + 1) / 10) if b else conf <= 0.1
        if inside.any():
            direct += inside.mean() * abs(hit[inside].mean() - conf[inside].mean())
    assert expected_calibration_error(y, p) == pytest.approx(direct, abs=1e-14)


def test_weighted_statistics_equal_the_statistics_of_the_resampled_data():
    y, p, rng = _miscalibrated(31, n=150)
    w = rng.integers(0, 4, size=(5, y.size)).astype(float)
    brier = cal._weighted_brier(cal._brier_terms(y, p), w)
    top = cal._weighted_ece(cal._top_label_gap(y, p, 10), w)
    cw = cal._weighted_classwise_ece(cal._classwise_gaps(y, p, 10), w)
    for r in range(5):
        idx = np.repeat(np.arange(y.size), w[r].astype(int))
        assert brier[r] == pytest.approx(brier_score(y[idx], p[idx]), abs=1e-13)
        assert top[r] == pytest.approx(expected_calibration_error(y[idx], p[idx]), abs=1e-13)
        assert cw[r] == pytest.approx(
            expected_calibration_error(y[idx], p[idx], kind="classwise"), abs=1e-13
        )


def test_summary_ci_deterministic_and_contains_estimate():
    y, p, _ = _miscalibrated(32)
    groups = np.arange(y.size) // 3
    out = calibration_summary_ci(y, p, classes=(0, 1, 2), groups=groups, n_boot=500, seed=4)
    assert list(out) == SUMMARY_KEYS
    assert out["n_boot"] == 500
    assert out["brier"] == brier_score(y, p)
    assert out["ece_top_label"] == expected_calibration_error(y, p)
    assert out["ece_classwise"] == expected_calibration_error(y, p, kind="classwise")
    for name in ("brier", "ece_top_label", "ece_classwise"):
        assert out[f"{name}_lower"] < out[name] < out[f"{name}_upper"]
    assert "134 patients" in out["method"] and "percentile" in out["method"]
    assert calibration_summary_ci(y, p, classes=(0, 1, 2), groups=groups, n_boot=500, seed=4) == out
    other = calibration_summary_ci(y, p, classes=(0, 1, 2), groups=groups, n_boot=500, seed=5)
    assert other["brier_lower"] != out["brier_lower"]
    # more replicates than one block of weights
    long = calibration_summary_ci(y, p, classes=(0, 1, 2), n_boot=600, seed=4, level=0.9)
    assert long["n_boot"] == 600 and "cases (each its own patient)" in long["method"]


def test_summary_ci_resamples_patients_not_vertebrae():
    y, p, _ = _miscalibrated(33, n=300)
    yy, pp = np.repeat(y, 2), np.repeat(p, 2, axis=0)
    base = calibration_summary_ci(y, p, classes=(0, 1, 2), groups=np.arange(300), n_boot=400)
    # every case copied twice into one patient: the same replicates, so the same intervals
    dup = calibration_summary_ci(
        yy, pp, classes=(0, 1, 2), groups=np.repeat(np.arange(300), 2), n_boot=400
    )
    for key in SUMMARY_KEYS[:9]:
        assert dup[key] == pytest.approx(base[key], abs=1e-12)
    # treating the copies as independent narrows the Brier interval by about 1/sqrt(2)
    naive = calibration_summary_ci(yy, pp, classes=(0, 1, 2), n_boot=400)
    ratio = (naive["brier_upper"] - naive["brier_lower"]) / (
        base["brier_upper"] - base["brier_lower"]
    )
    assert ratio == pytest.approx(1 / np.sqrt(2), abs=0.1)


def test_summary_ci_bad_input():
    p = np.full((4, 3), 1 / 3)
    with pytest.raises(StatsError, match="n_boot"):
        calibration_summary_ci([0, 1, 2, 0], p, classes=(0, 1, 2), n_boot=1)
    with pytest.raises(StatsError, match="n_bins"):
        calibration_summary_ci([0, 1, 2, 0], p, classes=(0, 1, 2), n_bins=0)
    with pytest.raises(StatsError, match="cohort test: y has labels"):
        calibration_summary_ci([0, 1, 3, 0], p, classes=(0, 1, 2), cohort="test")
    with pytest.raises(StatsError, match="groups has 2 values"):
        calibration_summary_ci([0, 1, 2, 0], p, classes=(0, 1, 2), groups=[1, 2])
