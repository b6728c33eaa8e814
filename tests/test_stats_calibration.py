"""Brier score, expected calibration error, reliability curves and decision curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve

from ovfdlr.stats import (
    StatsError,
    brier_score,
    decision_curves,
    expected_calibration_error,
    reliability_curves,
)

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
