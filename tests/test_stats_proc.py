"""DeLong AUCs, variances, covariances, tests and CIs against pROC on its aSAH data set.

The reference values in ``proc/expected_delong.json`` are those pROC's own test suite asserts.
A few more values that pROC's suite asserts (tests/testthat/test-roc.test.R and
test-ci.auc.R: unpaired tests, one-sided p-values, a subset CI) are written out below.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ovfdlr.stats import (
    auc_ci,
    delong_covariance,
    delong_test,
    macro_auc_test,
    roc_auc,
)

TOL = 1e-9
MARKERS = ("wfns", "ndka", "s100b")


@pytest.fixture(scope="module")
def asah(shared_data):
    data = pd.read_csv(shared_data / "proc" / "aSAH.csv")
    assert len(data) == 113
    return data


@pytest.fixture(scope="module")
def expected(shared_data):
    return json.loads((shared_data / "proc" / "expected_delong.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def outcome(asah):
    y = (asah["outcome"] == "Poor").to_numpy()
    assert y.sum() == 41 and (~y).sum() == 72
    return y


@pytest.mark.parametrize("marker", MARKERS)
def test_auc_matches_proc(asah, outcome, expected, marker):
    assert roc_auc(outcome, asah[marker]) == pytest.approx(expected["auc"][marker], abs=TOL)
    # the reverse direction on negated scores is the same curve
    assert roc_auc(outcome, -asah[marker], direction=">") == pytest.approx(
        expected["auc"][marker], abs=TOL
    )


def test_variances_and_covariances_match_proc(asah, outcome, expected):
    aucs, cov = delong_covariance(outcome, asah[list(MARKERS)].to_numpy())
    for i, marker in enumerate(MARKERS):
        assert aucs[i] == pytest.approx(expected["auc"][marker], abs=TOL)
        assert cov[i, i] == pytest.approx(expected["delong_variance"][marker], abs=TOL)
    index = {m: i for i, m in enumerate(MARKERS)}
    for pair, value in expected["delong_covariance"].items():
        a, b = pair.split(",")
        assert cov[index[a], index[b]] == pytest.approx(value, abs=TOL)
        assert cov[index[b], index[a]] == pytest.approx(value, abs=TOL)
    # relative agreement too: the variances are ~1e-3, so 1e-9 absolute alone is loose
    for i, marker in enumerate(MARKERS):
        assert cov[i, i] == pytest.approx(expected["delong_variance"][marker], rel=1e-10)


def test_variance_direction_invariant(asah, outcome, expected):
    _, cov = delong_covariance(outcome, -asah["ndka"].to_numpy(), direction=">")
    assert cov[0, 0] == pytest.approx(expected["delong_variance"]["ndka"], rel=1e-10)


@pytest.mark.parametrize("pair", ["wfns vs s100b", "wfns vs ndka", "ndka vs s100b"])
def test_paired_tests_match_proc(asah, outcome, expected, pair):
    ref = expected["paired_delong_test_two_sided"][pair]
    a, b = pair.split(" vs ")
    t = delong_test(outcome, asah[a], asah[b])
    assert t.statistic == pytest.approx(ref["z"], abs=TOL)
    assert t.p_value == pytest.approx(ref["p"], abs=TOL)
    assert t.ci_lower == pytest.approx(ref["diff_ci95"][0], abs=TOL)
    assert t.ci_upper == pytest.approx(ref["diff_ci95"][1], abs=TOL)
    assert t.auc_a == pytest.approx(expected["auc"][a], abs=TOL)
    assert t.auc_b == pytest.approx(expected["auc"][b], abs=TOL)
    assert t.difference == pytest.approx(expected["auc"][a] - expected["auc"][b], abs=TOL)
    assert t.df is None and t.paired
    assert t.method == "DeLong's test for two correlated ROC curves"
    assert t.alternative == "two-sided" and t.level == 0.95
    assert (t.n_cases, t.n_controls) == (41, 72)
    # reversed order: same p, opposite z (pROC's test-roc.test.R)
    r = delong_test(outcome, asah[b], asah[a])
    assert r.statistic == pytest.approx(-ref["z"], abs=TOL)
    assert r.p_value == pytest.approx(ref["p"], abs=TOL)
    # the (n, 2) matrix form
    m = delong_test(outcome, asah[[a, b]].to_numpy())
    assert m.statistic == pytest.approx(ref["z"], abs=TOL)


def test_auc_ci_matches_proc(asah, outcome, expected):
    lo, auc, hi = expected["auc_ci95_delong"]["ndka"]
    ci = auc_ci(outcome, asah["ndka"])
    assert (ci.lower, ci.auc, ci.upper) == pytest.approx((lo, auc, hi), abs=TOL)
    assert ci.method == "delong" and ci.level == 0.95
    rev = auc_ci(outcome, -asah["ndka"], direction=">")
    assert (rev.lower, rev.auc, rev.upper) == pytest.approx((lo, auc, hi), abs=TOL)


def test_auc_ci_subset_matches_proc(asah, outcome):
    # pROC test-ci.auc.R: ci.auc(outcome ~ ndka, data = aSAH, subset = (gender == "Female"))
    female = (asah["gender"] == "Female").to_numpy()
    ci = auc_ci(outcome[female], asah["ndka"][female])
    assert (ci.lower, ci.auc, ci.upper) == pytest.approx(
        (0.5261398281, 0.6671428571, 0.8081458862), abs=1e-9
    )


def test_one_sided_tests_match_proc(asah, outcome):
    # pROC test-roc.test.R: roc.test(r.wfns, r.s100b, alternative = "greater" / "less")
    gt = delong_test(outcome, asah["wfns"], asah["s100b"], alternative="greater")
    lt = delong_test(outcome, asah["wfns"], asah["s100b"], alternative="less")
    assert gt.p_value == pytest.approx(0.0135878911145941, abs=TOL)
    assert lt.p_value == pytest.approx(0.986412108885406, abs=TOL)
    assert gt.statistic == lt.statistic == pytest.approx(2.20898359144091, abs=TOL)
    assert gt.alternative == "greater" and lt.alternative == "less"
    # direction ">" on negated scores gives the same test
    m = delong_test(outcome, -asah["wfns"], -asah["s100b"], alternative="greater", direction=">")
    assert m.p_value == pytest.approx(0.0135878911145941, abs=TOL)


@pytest.mark.parametrize(
    ("a", "b", "stat", "p"),
    [
        ("wfns", "s100b", 1.43490640926908, 0.152825378808796),
        ("wfns", "ndka", 3.10125096778969, 0.00220950791756457),
        ("ndka", "s100b", -1.55995743389685, 0.120192832430845),
    ],
)
def test_unpaired_tests_match_proc(asah, outcome, a, b, stat, p):
    # pROC test-roc.test.R: roc.test(r.a, r.b, paired = FALSE)
    t = delong_test(outcome, asah[a], asah[b], paired=False)
    assert t.statistic == pytest.approx(stat, abs=TOL)
    assert t.p_value == pytest.approx(p, abs=TOL)
    assert t.df is not None and t.df > 0
    assert t.method == "DeLong's test for two ROC curves"
    assert t.ci_lower <= t.difference <= t.ci_upper
    # the CI is the t interval consistent with the test: it holds 0 iff p >= 0.05
    assert (t.ci_lower <= 0 <= t.ci_upper) == (t.p_value >= 0.05)


def test_unpaired_one_sided_matches_proc(asah, outcome):
    gt = delong_test(outcome, asah["wfns"], asah["s100b"], paired=False, alternative="greater")
    lt = delong_test(outcome, asah["wfns"], asah["s100b"], paired=False, alternative="less")
    assert gt.p_value == pytest.approx(0.076412689404398, abs=TOL)
    assert lt.p_value == pytest.approx(0.923587310595602, abs=TOL)


def test_unpaired_with_separate_samples(asah, outcome):
    # sample B given by its own labels: the first 60 subjects scored by s100b
    t = delong_test(outcome, asah["wfns"], asah["s100b"][:60], y_b=outcome[:60], paired=False)
    assert t.auc_b == pytest.approx(roc_auc(outcome[:60], asah["s100b"][:60]), abs=1e-15)
    assert (t.n_cases_b, t.n_controls_b) == (int(outcome[:60].sum()), int((~outcome[:60]).sum()))
    assert 0.0 <= t.p_value <= 1.0


def test_identical_curves_give_z0_p1(asah, outcome):
    # pROC test-roc.test.R: roc.test(r.wfns, r.wfns) has p = 1 and Z = 0
    t = delong_test(outcome, asah["wfns"], asah["wfns"])
    assert t.statistic == 0.0
    assert t.p_value == 1.0
    assert t.ci_lower == t.ci_upper == 0.0


def test_printout_states_method_direction_alternative(asah, outcome):
    text = str(delong_test(outcome, asah["wfns"], asah["s100b"], alternative="greater"))
    assert "DeLong's test for two correlated ROC curves" in text
    assert "72 controls (y = 0) < 41 cases (y = 1)" in text
    assert "alternative hypothesis: true difference in AUC (A - B) is greater than 0" in text
    assert "Z = 2.209" in text
    assert "p-value = 0.01359" in text
    assert "0.01040618 0.1742144" in text
    assert "0.8236789" in text and "0.7313686" in text
    rev = str(delong_test(outcome, -asah["wfns"], -asah["s100b"], direction=">"))
    assert "72 controls (y = 0) > 41 cases (y = 1)" in rev
    assert "not equal to 0" in rev
    up = str(delong_test(outcome, asah["wfns"], asah["s100b"], paired=False))
    assert "DeLong's test for two ROC curves" in up and "df = " in up and "t = 1.435" in up


@pytest.mark.parametrize("pair", ["wfns vs s100b", "wfns vs ndka", "ndka vs s100b"])
def test_macro_test_on_two_classes_is_proc_delong(asah, outcome, expected, pair):
    ref = expected["paired_delong_test_two_sided"][pair]
    a, b = (asah[m].to_numpy(dtype=float) for m in pair.split(" vs "))
    t = macro_auc_test(outcome.astype(int), np.c_[1 - a, a], np.c_[1 - b, b], classes=(0, 1))
    assert t.statistic == pytest.approx(ref["z"], abs=1e-12)
    assert t.p_value == pytest.approx(ref["p"], abs=1e-12)
    assert t.ci_lower == pytest.approx(ref["diff_ci95"][0], abs=1e-12)
    assert t.ci_upper == pytest.approx(ref["diff_ci95"][1], abs=1e-12)
