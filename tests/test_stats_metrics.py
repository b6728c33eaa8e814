"""Wilson intervals, confusion matrix, Youden thresholds and the classification-metrics table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_curve as sk_roc_curve

from ovfdlr.stats import (
    StatsError,
    classification_metrics,
    confusion_matrix,
    wilson_ci,
    youden_thresholds,
)
from ovfdlr.stats._checks import z_critical

# ------------------------------------------------------------------------------------ Wilson


def test_wilson_known_values():
    z = z_critical(0.95)
    lo, hi = wilson_ci(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(z**2 / (10 + z**2), abs=1e-15)  # closed form at k = 0
    assert hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_ci(5, 10)
    half = z / (1 + z**2 / 10) * np.sqrt(0.25 / 10 + z**2 / 400)
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-15)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_ci(10, 10) == pytest.approx((1 - 0.2775327998628892, 1.0), abs=1e-12)
    # Newcombe, Stat Med 1998;17:857-72, Table I, method 3 (Wilson score)
    for (k, n), ref in {
        (81, 263): (0.2553, 0.3662),
        (15, 148): (0.0624, 0.1605),
        (0, 20): (0.0, 0.1611),
        (1, 29): (0.0061, 0.1718),
    }.items():
        assert wilson_ci(k, n) == pytest.approx(ref, abs=1e-4)


def test_wilson_edge_cases():
    assert all(np.isnan(wilson_ci(0, 0)))
    assert wilson_ci(3, 10, level=0.99)[0] < wilson_ci(3, 10, level=0.9)[0]
    for bad in [(-1, 5), (6, 5), (1.5, 5), ("a", 5)]:
        with pytest.raises(StatsError):
            wilson_ci(*bad)
    with pytest.raises(StatsError, match="level"):
        wilson_ci(1, 5, level=1.0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_ranges(kn):
    k, n = kn
    lo, hi = wilson_ci(k, n)
    if n == 0:
        assert np.isnan(lo) and np.isnan(hi)
    else:
        assert 0.0 <= lo <= k / n <= hi <= 1.0


# ---------------------------------------------------------------------- confusion and Youden

Y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PRED = np.array([0, 0, 0, 1, 1, 1, 0, 2, 2, 1])


def toy_proba(pred: np.ndarray) -> np.ndarray:
    p = np.full((pred.size, 3), 0.2)
    p[np.arange(pred.size), pred] = 0.6
    return p


def test_confusion_matrix():
    cm = confusion_matrix(Y, PRED)
    expected = np.array([[3, 1, 0], [1, 2, 0], [0, 1, 2]])
    np.testing.assert_array_equal(cm.to_numpy(), expected)
    assert cm.index.name == "true" and cm.columns.name == "predicted"
    assert list(cm.index) == [0, 1, 2] and list(cm.columns) == [0, 1, 2]
    with pytest.raises(StatsError, match="outside classes"):
        confusion_matrix(Y, PRED + 1)
    with pytest.raises(StatsError, match="pred has 9 values"):
        confusion_matrix(Y, PRED[:-1])


def test_youden_toy():
    y = np.array([0, 0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.9])
    t = youden_thresholds(y, np.c_[1 - p1, p1], classes=(0, 1))
    # J = 1/3, 2/3, 1/3, 2/3, 1/3 at the midpoints 0.15, 0.3, 0.5, 0.65, 0.8: the higher of
    # the two best thresholds wins
    assert t[1] == pytest.approx(0.65, abs=1e-12)
    assert t[0] == pytest.approx(0.7, abs=1e-12)
    # without ties: one clear optimum between the groups
    y = np.array([0, 0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    assert youden_thresholds(y, np.c_[1 - p1, p1], classes=(0, 1))[1] == pytest.approx(0.4)


def test_youden_maximises_j():
    rng = np.random.default_rng(1)
    y = rng.choice(3, 200)
    p = rng.dirichlet(np.ones(3), 200) * 0.5 + np.eye(3)[y] * 0.5
    thresholds = youden_thresholds(y, p)
    assert set(thresholds) == {0, 1, 2}
    for k, t in thresholds.items():
        pos = y == k
        j = np.mean(p[pos, k] >= t) - np.mean(p[~pos, k] >= t)
        fpr, tpr, _ = sk_roc_curve(pos, p[:, k])
        assert j == pytest.approx(np.max(tpr - fpr), abs=1e-12)


def test_youden_needs_every_class():
    with pytest.raises(StatsError, match="cohort train: class 2 has no cases"):
        youden_thresholds([0, 1, 0, 1], np.full((4, 3), 1 / 3), cohort="train")


# --------------------------------------------------------------------- classification metrics


def _get(table, decision, cls, metric):
    row = table[
        (table["decision"] == decision) & (table["class"] == cls) & (table["metric"] == metric)
    ]
    assert len(row) == 1, (decision, cls, metric)
    return row.iloc[0]


def test_metrics_toy_argmax():
    table = classification_metrics(Y, toy_proba(PRED), n_boot=200)
    assert list(table.columns) == [
        "decision",
        "class",
        "metric",
        "estimate",
        "lower",
        "upper",
        "numerator",
        "denominator",
    ]
    assert set(table["decision"]) == {"argmax"}
    expected = {
        (0, "sensitivity"): (3, 4),
        (0, "specificity"): (5, 6),
        (0, "ppv"): (3, 4),
        (0, "npv"): (5, 6),
        (0, "f1"): (6, 8),
        (1, "sensitivity"): (2, 3),
        (1, "specificity"): (5, 7),
        (1, "ppv"): (2, 4),
        (1, "npv"): (5, 6),
        (1, "f1"): (4, 7),
        (2, "sensitivity"): (2, 3),
        (2, "specificity"): (7, 7),
        (2, "ppv"): (2, 2),
        (2, "npv"): (7, 8),
        (2, "f1"): (4, 5),
    }
    for (cls, metric), (num, den) in expected.items():
        row = _get(table, "argmax", cls, metric)
        assert (row["numerator"], row["denominator"]) == (num, den)
        assert row["estimate"] == pytest.approx(num / den, abs=1e-15)
        if metric != "f1":
            assert (row["lower"], row["upper"]) == wilson_ci(num, den)
    acc = _get(table, "argmax", "all", "accuracy")
    assert (acc["estimate"], acc["numerator"], acc["denominator"]) == (0.7, 7, 10)
    assert (acc["lower"], acc["upper"]) == wilson_ci(7, 10)
    macro = _get(table, "argmax", "macro", "sensitivity")
    assert macro["estimate"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3, abs=1e-15)
    assert np.isnan(macro["numerator"])


def test_metrics_bootstrap_intervals():
    rng = np.random.default_rng(5)
    y = rng.choice(3, 300, p=[0.5, 0.3, 0.2])
    p = rng.dirichlet(np.ones(3), 300) * 0.6 + np.eye(3)[y] * 0.4
    table = classification_metrics(y, p, n_boot=500, seed=1)
    again = classification_metrics(y, p, n_boot=500, seed=1)
    pd.testing.assert_frame_equal(table, again)
    other = classification_metrics(y, p, n_boot=500, seed=2)
    assert not table["lower"].equals(other["lower"])
    boot = table[(table["metric"] == "f1") | (table["class"] == "macro")]
    assert len(boot) == 3 + 5
    assert ((boot["lower"] <= boot["estimate"]) & (boot["estimate"] <= boot["upper"])).all()
    assert ((boot["upper"] - boot["lower"]) < 0.25).all()


def test_metrics_undefined_are_nan():
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    pred = np.array([0, 1, 1, 0, 0, 1, 0, 1])  # class 2 never predicted
    table = classification_metrics(y, toy_proba(pred), n_boot=50)
    ppv2 = _get(table, "argmax", 2, "ppv")
    assert ppv2["denominator"] == 0
    assert np.isnan(ppv2["estimate"]) and np.isnan(ppv2["lower"]) and np.isnan(ppv2["upper"])
    assert np.isnan(_get(table, "argmax", "macro", "ppv")["estimate"])
    f1 = _get(table, "argmax", 2, "f1")
    assert f1["estimate"] == 0.0 and f1["denominator"] == 2
    # a class absent from this cohort: its sensitivity is undefined, not an error
    keep = y != 2
    table = classification_metrics(y[keep], toy_proba(pred[keep]), n_boot=50)
    sens2 = _get(table, "argmax", 2, "sensitivity")
    assert sens2["denominator"] == 0 and np.isnan(sens2["estimate"])
    assert _get(table, "argmax", 2, "specificity")["estimate"] == 1.0


def test_metrics_at_youden_thresholds():
    rng = np.random.default_rng(9)
    y_train = rng.choice(3, 300)
    p_train = rng.dirichlet(np.ones(3), 300) * 0.5 + np.eye(3)[y_train] * 0.5
    thresholds = youden_thresholds(y_train, p_train)
    y = rng.choice(3, 120)
    p = rng.dirichlet(np.ones(3), 120) * 0.5 + np.eye(3)[y] * 0.5
    table = classification_metrics(y, p, thresholds=thresholds, n_boot=100)
    assert set(table["decision"]) == {"argmax", "youden"}
    youden = table[table["decision"] == "youden"]
    assert "accuracy" not in set(youden["metric"])
    for k in range(3):
        called = p[:, k] >= thresholds[k]
        tp = int(np.sum(called & (y == k)))
        row = _get(table, "youden", k, "sensitivity")
        assert (row["numerator"], row["denominator"]) == (tp, int(np.sum(y == k)))
        row = _get(table, "youden", k, "ppv")
        assert (row["numerator"], row["denominator"]) == (tp, int(called.sum()))
    with pytest.raises(StatsError, match="thresholds lack classes"):
        classification_metrics(y, p, thresholds={0: 0.5, 1: 0.5})


def test_metrics_bad_input():
    with pytest.raises(StatsError, match="single class"):
        classification_metrics([1, 1, 1], np.full((3, 3), 1 / 3))
    with pytest.raises(StatsError, match="outside classes"):
        classification_metrics([0, 1, 5], np.full((3, 3), 1 / 3))
    with pytest.raises(StatsError, match="NaN"):
        classification_metrics([0, 1, 2], [[np.nan, 0.5, 0.5]] * 3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(0, 2), min_size=2, max_size=30).filter(lambda v: len(set(v)) > 1),
    st.randoms(use_true_random=False),
)
def test_metrics_ranges(labels, random):
    y = np.array(labels)
    rng = np.random.default_rng(random.randint(0, 2**32 - 1))
    p = rng.dirichlet(np.ones(3), y.size)
    table = classification_metrics(y, p, n_boot=30, thresholds={0: 0.3, 1: 0.4, 2: 0.5})
    vals = table[["estimate", "lower", "upper"]].to_numpy(dtype=float)
    finite = vals[~np.isnan(vals)]
    assert ((finite >= 0) & (finite <= 1)).all()
    wilson = table[(table["metric"] != "f1") & (table["class"] != "macro")]
    ok = wilson.dropna(subset=["estimate"])
    assert ((ok["lower"] <= ok["estimate"]) & (ok["estimate"] <= ok["upper"])).all()
    nan_est = table["estimate"].isna()
    assert table.loc[nan_est, ["lower", "upper"]].isna().all().all()
