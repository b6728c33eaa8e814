"""Size and coverage of the macro-AUC test and CI, and the clustered (Obuchowski) variances.

Seeded simulations of the cohort size the pipeline meets (n = 300): the type-I error of the
default (unconditional) macro test under three null hypotheses, the coverage of the macro CI
against the true value from 10^6 draws, and the clustered variance against a direct
implementation of Obuchowski's (1997) formulas.
"""

from __future__ import annotations

import numpy as np
import pytest

from ovfdlr.stats import (
    auc_ci,
    bootstrap_macro_test,
    delong_test,
    macro_auc_test,
    one_vs_rest,
    per_class_tests,
)
from ovfdlr.stats._checks import z_critical
from tests.macro_nulls import MIRROR, SAME, draw, true_macro, unequal_design

PAIRS = 2000
N = 300


def rejection(design, seed: int, variance: str = "unconditional") -> float:
    rng = np.random.default_rng(seed)
    p = [macro_auc_test(*draw(rng, N, design), variance=variance).p_value for _ in range(PAIRS)]
    return float(np.mean(np.array(p) < 0.05))


def test_the_unequal_share_null_has_equal_true_macro_aucs():
    a, b = true_macro(unequal_design())
    assert abs(a - b) < 0.002  # two 10^6-draw estimates: their own error is about 0.0005
    a, b = true_macro(MIRROR)
    assert abs(a - b) < 0.002


@pytest.mark.parametrize(
    ("design", "seed"),
    [(SAME, 1), (MIRROR, 2), (unequal_design(), 3)],
    ids=["same-process", "mirror-image", "unequal-shares"],
)
def test_macro_test_holds_its_size(design, seed):
    rate = rejection(design, seed)
    assert 0.035 <= rate <= 0.065, rate


def test_conditional_variance_is_liberal_when_the_class_mix_varies():
    """The variance conditional on the class counts leaves out the class mix's own variation:
    on the mirror-image null, where the per-class AUC profiles differ, it rejects more often
    than the unconditional one on the very same cohorts."""
    conditional = rejection(MIRROR, 2, "conditional")
    unconditional = rejection(MIRROR, 2)
    assert conditional > unconditional + 0.01, (conditional, unconditional)


def test_macro_ci_coverage():
    truth, _ = true_macro(MIRROR)
    rng = np.random.default_rng(5)
    covered = []
    for _ in range(PAIRS):
        y, pa, _ = draw(rng, N, MIRROR)
        ci = one_vs_rest(y, pa, n_boot=2, curves=False).macro
        covered.append(ci.lower <= truth <= ci.upper)
    coverage = float(np.mean(covered))
    assert 0.93 <= coverage <= 0.97, coverage


def test_patient_bootstrap_agrees_with_the_unconditional_variance():
    rng = np.random.default_rng(8)
    y, pa, pb = draw(rng, N, MIRROR)
    d = macro_auc_test(y, pa, pb)
    b = bootstrap_macro_test(y, pa, pb, n_boot=2000, seed=1)
    assert b.se == pytest.approx(d.se, rel=0.15)
    assert "patients resampled" in b.method
    c = macro_auc_test(y, pa, pb, variance="conditional")
    assert c.se < d.se and "conditional on the class counts" in c.method


# ------------------------------------------------------------------------------ clustered


def obuchowski_variance(y: np.ndarray, score: np.ndarray, patient: np.ndarray) -> float:
    """Obuchowski (Biometrics 1997) eqs. for the clustered AUC variance, written out directly."""
    cases, controls = score[y == 1], score[y == 0]
    m_total, n_total = cases.size, controls.size

    def kernel(x, z):
        return (x > z) + 0.5 * (x == z)

    theta = np.mean([kernel(x, z) for x in cases for z in controls])
    ids = np.unique(patient)
    s10 = s01 = s11 = 0.0
    for p in ids:
        xs = score[(patient == p) & (y == 1)]
        zs = score[(patient == p) & (y == 0)]
        v10 = sum(np.mean(kernel(x, controls)) for x in xs)
        v01 = sum(np.mean(kernel(cases, z)) for z in zs)
        s10 += (v10 - xs.size * theta) ** 2
        s01 += (v01 - zs.size * theta) ** 2
        s11 += (v10 - xs.size * theta) * (v01 - zs.size * theta)
    i = ids.size
    s10 *= i / ((i - 1) * m_total)
    s01 *= i / ((i - 1) * n_total)
    s11 *= i / (i - 1)
    return s10 / m_total + s01 / n_total + 2 * s11 / (m_total * n_total)


def clustered_cohort(rng, n_patients=60, per_patient=2, effect=1.0):
    patient = np.repeat(np.arange(n_patients), per_patient)
    risk = rng.normal(size=n_patients)[patient]
    y = (risk + rng.normal(size=patient.size) > 0.3).astype(int)
    a = y * 1.0 + effect * rng.normal(size=n_patients)[patient] + rng.normal(size=patient.size)
    b = y * 1.0 + effect * rng.normal(size=n_patients)[patient] + rng.normal(size=patient.size)
    return y, np.round(a, 1), np.round(b, 1), patient


def test_clustered_auc_variance_is_obuchowskis():
    rng = np.random.default_rng(3)
    for per_patient in (2, 3):
        y, a, _, patient = clustered_cohort(rng, n_patients=40, per_patient=per_patient)
        ci = auc_ci(y, a, groups=patient)
        assert ci.method == "delong-clustered"
        half = (ci.upper - ci.lower) / 2
        expected = z_critical(0.95) * np.sqrt(obuchowski_variance(y, a, patient))
        assert half == pytest.approx(expected, abs=1e-12)
    # uneven clusters: some patients give one vertebra, some three
    patient = np.array([0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 5, 6, 6, 7, 8, 9, 9, 10])
    y = np.array([1, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0, 1])
    s = np.round(rng.normal(y * 0.8, 1), 1)
    ci = auc_ci(y, s, groups=patient)
    half = (ci.upper - ci.lower) / 2
    assert half == pytest.approx(
        z_critical(0.95) * np.sqrt(obuchowski_variance(y, s, patient)), abs=1e-12
    )


def test_clustered_paired_test_is_obuchowskis_on_the_difference():
    rng = np.random.default_rng(4)
    y, a, b, patient = clustered_cohort(rng, n_patients=50)
    t = delong_test(y, a, b, groups=patient)
    assert "clustered by patient" in t.method
    # the difference's influences are those of the difference of the scores' AUCs; Var(A - B)
    # = Var A + Var B - 2 Cov: check Var A and Var B each, and the total against the macro test
    va, vb = obuchowski_variance(y, a, patient), obuchowski_variance(y, b, patient)
    assert t.se**2 <= va + vb + 2 * np.sqrt(va * vb) + 1e-15
    m = macro_auc_test(y, np.c_[1 - a, a], np.c_[1 - b, b], classes=(0, 1), groups=patient)
    assert m.se == pytest.approx(t.se, abs=1e-12) and m.clustered and m.n_patients == 50
    assert m.statistic == pytest.approx(t.statistic, abs=1e-12)
    assert "clustered by patient" in m.method


def test_one_vertebra_per_patient_is_ordinary_delong_exactly():
    rng = np.random.default_rng(6)
    y, a, b, _ = clustered_cohort(rng, n_patients=80, per_patient=1)
    ids = [f"P{i:03d}" for i in range(y.size)]
    assert auc_ci(y, a, groups=ids) == auc_ci(y, a)
    assert delong_test(y, a, b, groups=ids) == delong_test(y, a, b)
    y3, pa, pb = draw(rng, 120, MIRROR)
    ids3 = np.arange(y3.size)
    assert macro_auc_test(y3, pa, pb, groups=ids3) == macro_auc_test(y3, pa, pb)
    r1, r2 = one_vs_rest(y3, pa, groups=ids3, n_boot=100), one_vs_rest(y3, pa, n_boot=100)
    assert r1.macro == r2.macro and r1.micro == r2.micro and not r1.clustered
    assert r1.per_class.equals(r2.per_class)


def test_clustered_test_holds_its_size_where_the_naive_one_does_not():
    """Patients with two vertebrae and a patient effect on each model's scores: the naive
    DeLong test treats the vertebrae as independent and rejects a true null too often."""
    rng = np.random.default_rng(10)
    naive, clustered = [], []
    for _ in range(1000):
        y, a, b, patient = clustered_cohort(rng, n_patients=100, effect=1.5)
        naive.append(delong_test(y, a, b).p_value < 0.05)
        clustered.append(delong_test(y, a, b, groups=patient).p_value < 0.05)
    assert 0.03 <= np.mean(clustered) <= 0.07, np.mean(clustered)
    assert np.mean(naive) > np.mean(clustered) + 0.02, (np.mean(naive), np.mean(clustered))


def test_conditional_variance_is_refused_for_patients_in_two_classes():
    rng = np.random.default_rng(12)
    y, pa, pb = draw(rng, 90, MIRROR)
    patient = np.arange(90) // 2  # pairs of consecutive cases: some pairs mix classes
    t = macro_auc_test(y, pa, pb, groups=patient, variance="conditional")
    assert np.isnan(t.p_value) and "vertebrae in different classes" in t.note
    assert "unconditional" in t.note
    r = one_vs_rest(y, pa, groups=patient, variance="conditional", n_boot=50)
    assert np.isnan(r.macro.lower) and "different classes" in r.macro.note
    # patients whose vertebrae share a class: the conditional clustered variance is given
    order = np.argsort(y, kind="stable")
    y_sorted, pa_s, pb_s = y[order], pa[order], pb[order]
    same = np.empty(90, dtype=int)
    for c in range(3):
        members = np.flatnonzero(y_sorted == c)
        same[members] = 1000 * c + np.arange(members.size) // 2
    t = macro_auc_test(y_sorted, pa_s, pb_s, groups=same, variance="conditional")
    assert np.isfinite(t.p_value) and t.clustered


def test_per_class_tests_clustered():
    rng = np.random.default_rng(13)
    y, pa, pb = draw(rng, 120, SAME)
    patient = np.arange(120) // 3
    pc = per_class_tests(y, pa, pb, groups=patient)
    for k in range(3):
        ref = delong_test(y == k, pa[:, k], pb[:, k], groups=patient)
        assert pc.loc[k, "p_value"] == ref.p_value and "clustered" in pc.loc[k, "method"]
