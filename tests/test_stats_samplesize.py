"""Minimum sample size for prediction-model development: binary (Riley) and multinomial (Pate).

Reference values, with their sources:

- pmsampsize 1.1.3 (CRAN, Ensor J), tests/testthat/test_bin.R, "Test 4.1"-"Test 4.4": the
  sample size by criteria 1-3 and the final one, and the events per parameter (EPP) column.
- pmsampsize's documented C-statistic example, ``pmsampsize(type = "b", cstatistic = 0.89,
  parameters = 24, prevalence = 0.174)`` (man/pmsampsize.Rd); its expected output
  [615, 660, 221, 660] is in the Python port's tests (github.com/RebeccaWhittle/pmsampsize,
  tests/test_pmsampsize.py, "Test 2").
- Pate et al. 2023's worked example (17 parameters; 2557/186/176/467/120 ovarian tumours; ten
  pairwise C-statistics; Nagelkerke R² 0.15), as output by the first author's R package
  ``multsampsize`` (github.com/alexpate30/multsampsize, README.md): pairwise CS_Rsq and Max_Rsq,
  criteria 13136 / 1477 / 524; and its second README example (K = 3, events 50/100/150,
  pairwise Nagelkerke R² 0.15): 2660 / 714 (its criterion (iii), 664, uses qchisq(1 - 0.05/5)
  for K = 3; see the module docstring).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from ovfdlr.stats import samplesize
from ovfdlr.stats._checks import StatsError
from ovfdlr.stats.samplesize import (
    SampleSize,
    binary_sample_size,
    cstatistic_to_r2,
    expected_shrinkage,
    multinomial_sample_size,
)

# Pate et al. 2023 worked example: benign, borderline, stage I, stage II-IV, metastatic
PATE_EVENTS = (2557, 186, 176, 467, 120)
PATE_PROPORTIONS = [e / sum(PATE_EVENTS) for e in PATE_EVENTS]
PATE_C = {
    (0, 1): 0.85,
    (0, 2): 0.92,
    (0, 3): 0.99,
    (0, 4): 0.95,
    (1, 2): 0.75,
    (1, 3): 0.95,
    (1, 4): 0.87,
    (2, 3): 0.87,
    (2, 4): 0.71,
    (3, 4): 0.82,
}
# multsampsize README, $results_criteria1 (pairs numbered from 1 there)
PATE_CS_RSQ = {
    (0, 1): 0.116,
    (0, 2): 0.179,
    (0, 3): 0.497,
    (0, 4): 0.168,
    (1, 2): 0.185,
    (1, 3): 0.499,
    (1, 4): 0.372,
    (2, 3): 0.329,
    (2, 4): 0.128,
    (3, 4): 0.210,
}
PATE_MAX_RSQ = {
    (0, 1): 0.391,
    (0, 2): 0.380,
    (0, 3): 0.577,
    (0, 4): 0.306,
    (1, 2): 0.750,
    (1, 3): 0.697,
    (1, 4): 0.738,
    (2, 3): 0.691,
    (2, 4): 0.741,
    (3, 4): 0.637,
}


def _binary_max_r2(phi: float) -> float:
    return 1.0 - math.exp(2.0 * (phi * math.log(phi) + (1.0 - phi) * math.log(1.0 - phi)))


# ------------------------------------------------------------------------------------------
# binary: pmsampsize's reference values


@pytest.mark.parametrize(
    ("r2", "parameters", "prevalence", "sizes", "epp"),
    [
        # pmsampsize 1.1.3 tests/testthat/test_bin.R, Test 4.1 (the BMJ 2020 example)
        (0.288, 24, 0.174, (623, 662, 221, 662), (4.52, 4.8, 1.6, 4.8)),
        # Test 4.2
        (0.55, 24, 0.174, (255, 532, 221, 532), (1.85, 3.86, 1.6, 3.86)),
        # Test 4.3
        (0.288, 36, 0.174, (934, 992, 221, 992), (4.51, 4.79, 1.07, 4.79)),
        # Test 4.4
        (0.288, 24, 0.25, (623, 590, 289, 623), (6.49, 6.15, 3.01, 6.49)),
    ],
)
def test_binary_reproduces_pmsampsize(r2, parameters, prevalence, sizes, epp):
    result = binary_sample_size(parameters, prevalence, r2_cs=r2)
    got = (*result.criteria.values(), result.n)
    assert got == sizes
    assert list(result.criteria) == ["shrinkage", "optimism", "overall risk"]
    assert tuple(round(n * prevalence / parameters, 2) for n in got) == epp
    assert round(result.assumptions["events per parameter"], 2) == epp[-1]
    assert result.events == {"events": pytest.approx(result.n * prevalence)}


def test_binary_from_c_statistic_reproduces_pmsampsize_example():
    # pmsampsize(type = "b", cstatistic = 0.89, parameters = 24, prevalence = 0.174)
    # -> criteria 615, 660, 221 and final 660 (RebeccaWhittle/pmsampsize tests, Test 2)
    result = binary_sample_size(24, 0.174, c_statistic=0.89)
    assert (*result.criteria.values(), result.n) == (615, 660, 221, 660)
    assert result.assumptions["c_statistic"] == 0.89
    # pmsampsize rounds the simulated R² to 4 decimals before using it
    assert result.assumptions["R2_cs"] == round(result.assumptions["R2_cs (simulated from C)"], 4)


def test_binary_assumptions_and_shrinkage_at_n():
    result = binary_sample_size(24, 0.174, r2_cs=0.288)
    a = result.assumptions
    assert isinstance(result, SampleSize)
    assert a["parameters"] == 24 and a["prevalence"] == 0.174 and a["R2_cs"] == 0.288
    assert a["max R2_cs"] == pytest.approx(_binary_max_r2(0.174))
    assert a["R2_Nagelkerke"] == pytest.approx(0.288 / a["max R2_cs"])
    s_vh = 0.288 / (0.288 + 0.05 * a["max R2_cs"])
    assert a["shrinkage for optimism (S_VH)"] == pytest.approx(s_vh)
    # at n = max(n1, n2) the expected shrinkage is at least both targets
    assert a["expected shrinkage at n"] >= max(0.9, a["shrinkage for optimism (S_VH)"])
    assert "Riley" in result.method


def test_expected_shrinkage_inverts_criterion_one():
    for p, r2, s in [(24, 0.288, 0.9), (10, 0.1, 0.85), (5, 0.5, 0.95)]:
        n = p / ((s - 1) * math.log(1 - r2 / s))
        assert expected_shrinkage(p, r2, n) == pytest.approx(s, abs=1e-10)
        assert expected_shrinkage(p, r2, 2 * n) > s > expected_shrinkage(p, r2, n / 2)


# ------------------------------------------------------------------------------------------
# C-statistic -> Cox-Snell R²


def _population_r2(c: float, phi: float) -> float:
    """Large-sample Cox-Snell R² of the binormal model, by quadrature (independent of the code).

    With N(0, 1) non-events and N(mu, 1) events the true log-odds are linear in the predictor,
    so the fitted logistic model is the true one and LR/n -> 2 I(Y; LP), I the mutual
    information: R² = 1 - exp(-2 (E log P(y | lp) - E log P(y))).
    """
    mu = math.sqrt(2.0) * stats.norm.ppf(c)
    a = math.log(phi / (1.0 - phi)) - mu * mu / 2.0

    def events(x):
        return stats.norm.pdf(x, mu) * -np.logaddexp(0.0, -(a + mu * x))

    def non_events(x):
        return stats.norm.pdf(x) * -np.logaddexp(0.0, a + mu * x)

    ll = phi * integrate.quad(events, -np.inf, np.inf)[0]
    ll += (1.0 - phi) * integrate.quad(non_events, -np.inf, np.inf)[0]
    ll_null = phi * math.log(phi) + (1.0 - phi) * math.log(1.0 - phi)
    return 1.0 - math.exp(-2.0 * (ll - ll_null))


@pytest.mark.parametrize(("c", "phi"), [(0.89, 0.174), (0.71, 120 / 296), (0.75, 0.5)])
def test_cstatistic_to_r2_equals_population_value(c, phi):
    assert cstatistic_to_r2(c, phi) == pytest.approx(_population_r2(c, phi), abs=2e-5)


def test_cstatistic_to_r2_against_an_independently_fitted_logistic_model():
    # plain (unstratified) simulation with that C-statistic, a different seed, a different
    # optimiser (BFGS on the log-likelihood) and the C-statistic checked by ranks
    c, phi, n = 0.8, 0.3, 200_000
    rng = np.random.default_rng(20240101)
    n_events = int(phi * n)
    mu = math.sqrt(2.0) * stats.norm.ppf(c)
    x = np.concatenate([rng.normal(mu, 1.0, n_events), rng.normal(0.0, 1.0, n - n_events)])
    y = np.r_[np.ones(n_events), np.zeros(n - n_events)]
    ranks = stats.rankdata(x)
    auc = (ranks[:n_events].sum() - n_events * (n_events + 1) / 2) / (n_events * (n - n_events))
    assert auc == pytest.approx(c, abs=0.005)

    def mean_negloglik(beta):
        eta = beta[0] + beta[1] * x
        resid = special.expit(eta) - y
        value = (np.logaddexp(0.0, eta).sum() - eta[:n_events].sum()) / n
        return value, np.array([resid.sum(), resid @ x]) / n

    fit = optimize.minimize(
        mean_negloglik, np.zeros(2), jac=True, method="BFGS", options={"gtol": 1e-9}
    )
    assert fit.success
    ll_null = n_events * math.log(phi) + (n - n_events) * math.log(1.0 - phi)
    r2_mc = 1.0 - math.exp(-2.0 * (-fit.fun - ll_null / n))
    # Monte-Carlo SD of r2_mc at n = 200,000 is about 0.0013
    assert cstatistic_to_r2(c, phi) == pytest.approx(r2_mc, abs=0.006)


def test_cstatistic_to_r2_is_deterministic_and_seed_insensitive():
    first = cstatistic_to_r2(0.8, 0.2, n=20_000, seed=3)
    assert cstatistic_to_r2(0.8, 0.2, n=20_000, seed=3) == first
    assert cstatistic_to_r2(0.8, 0.2, n=20_000, seed=4) == pytest.approx(first, abs=1e-3)
    # R² grows with discrimination
    assert cstatistic_to_r2(0.7, 0.2, n=20_000) < first < cstatistic_to_r2(0.9, 0.2, n=20_000)


# ------------------------------------------------------------------------------------------
# multinomial: Pate et al. 2023


def test_multinomial_reproduces_pate_worked_example():
    result = multinomial_sample_size(17, PATE_PROPORTIONS, c_statistic=PATE_C)
    a = result.assumptions
    for (k, r), expected in PATE_CS_RSQ.items():
        # README values: 3 decimals of one R simulation (Monte-Carlo SD about 0.0006)
        assert a[f"R2_cs[{k},{r}]"] == pytest.approx(expected, abs=0.0015)
        assert round(a[f"max R2_cs[{k},{r}]"], 3) == PATE_MAX_RSQ[(k, r)]
        assert a[f"phi[{k},{r}]"] == pytest.approx(
            PATE_EVENTS[r] / (PATE_EVENTS[k] + PATE_EVENTS[r])
        )
    assert result.criteria["optimism"] == 1477
    assert result.criteria["class proportions"] == 524
    # 13136 rests on one simulated R² per pair; the binding pair (stage I vs metastatic, C 0.71)
    # moves N by about 110 per 0.001 of R²
    assert result.criteria["shrinkage"] == pytest.approx(13136, rel=0.015)
    assert result.n == result.criteria["shrinkage"]
    assert list(result.events) == [f"class {i}" for i in range(5)]
    assert sum(result.events.values()) == pytest.approx(result.n)
    for i, q in enumerate(PATE_PROPORTIONS):
        assert result.events[f"class {i}"] == pytest.approx(result.n * q)
    # the binding pair reaches the target shrinkage, the others exceed it
    shrink = {pair: a[f"expected shrinkage at n[{pair[0]},{pair[1]}]"] for pair in PATE_C}
    assert min(shrink.values()) == pytest.approx(0.9, abs=1e-4)
    assert min(shrink, key=shrink.get) == (2, 4)
    assert a["parameters (multinomial model)"] == 4 * 17
    assert a["R2_Nagelkerke (multinomial)"] == 0.15
    assert "Pate" in result.method


def test_multinomial_criterion_one_matches_multsampsize_given_pairwise_r2(monkeypatch):
    # multsampsize README, second example: K = 3, events 50/100/150, 17 parameters, pairwise
    # and overall Nagelkerke R² 0.15 -> criterion (i) 2660, criterion (ii) 714
    def nagelkerke_015(c_statistic, prevalence, **_):
        return 0.15 * _binary_max_r2(prevalence)

    monkeypatch.setattr(samplesize, "cstatistic_to_r2", nagelkerke_015)
    result = multinomial_sample_size(17, [50 / 300, 100 / 300, 150 / 300])
    assert result.criteria["shrinkage"] == 2660
    assert result.criteria["optimism"] == 714
    a = result.assumptions
    for pair, (cs, mx) in {
        (0, 1): (0.108, 0.720),
        (0, 2): (0.101, 0.675),
        (1, 2): (0.111, 0.740),
    }.items():
        assert round(a[f"R2_cs[{pair[0]},{pair[1]}]"], 3) == cs
        assert round(a[f"max R2_cs[{pair[0]},{pair[1]}]"], 3) == mx
    # criterion (iii): simultaneous 95% over K = 3 classes (Bonferroni), worst p_k = 0.5
    chi2 = stats.chi2.ppf(1 - 0.05 / 3, 1)
    assert result.criteria["class proportions"] == math.ceil(chi2 * 0.25 / 0.05**2)


def test_multinomial_with_two_classes_agrees_with_binary():
    phi, c, p = 0.3, 0.8, 12
    r2 = cstatistic_to_r2(c, phi)
    binary = binary_sample_size(p, phi, r2_cs=r2)
    multi = multinomial_sample_size(
        p, [1 - phi, phi], c_statistic=c, nagelkerke_r2=r2 / _binary_max_r2(phi)
    )
    assert multi.criteria["shrinkage"] == binary.criteria["shrinkage"]
    assert multi.criteria["optimism"] == binary.criteria["optimism"]
    # Bonferroni over the two classes makes (iii) stricter than the binary criterion
    assert multi.criteria["class proportions"] > binary.criteria["overall risk"]
    assert multi.assumptions["R2_cs[0,1]"] == r2


def test_multinomial_common_and_pairwise_c_statistics_and_key_order():
    props = [0.5, 0.3, 0.2]
    common = multinomial_sample_size(10, props, c_statistic=0.8)
    mapping = multinomial_sample_size(
        10, props, c_statistic={(1, 0): 0.8, (2, 0): 0.8, (2, 1): 0.8}
    )
    assert common == mapping
    assert multinomial_sample_size(10, np.array(props), c_statistic=0.8) == common
    default = multinomial_sample_size(10, props)
    assert default.assumptions["c_statistic[0,1]"] == 0.75
    assert set(default.criteria) == {"shrinkage", "optimism", "class proportions"}
    assert default.n == max(default.criteria.values())


def test_monotone_in_parameters_discrimination_and_margin():
    sizes = [binary_sample_size(p, 0.2, r2_cs=0.15).n for p in (5, 10, 20, 40)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    multi = [multinomial_sample_size(p, [0.5, 0.3, 0.2]).n for p in (5, 10, 20)]
    assert multi == sorted(multi) and len(set(multi)) == 3
    shrink = [
        multinomial_sample_size(10, [0.5, 0.3, 0.2], c_statistic=c).criteria["shrinkage"]
        for c in (0.75, 0.8, 0.9)
    ]
    assert shrink == sorted(shrink, reverse=True)
    risk = [
        binary_sample_size(10, 0.2, r2_cs=0.15, margin=m).criteria["overall risk"]
        for m in (0.1, 0.05, 0.025)
    ]
    assert risk == sorted(risk)
    stricter = binary_sample_size(10, 0.2, r2_cs=0.15, shrinkage=0.95)
    assert (
        stricter.criteria["shrinkage"]
        > binary_sample_size(10, 0.2, r2_cs=0.15).criteria["shrinkage"]
    )


# ------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"parameters": 0}, r"parameters .*got 0"),
        ({"parameters": -3}, r"parameters .*got -3"),
        ({"parameters": 2.5}, r"parameters .*got 2\.5"),
        ({"parameters": True}, r"parameters .*got True"),
        ({"prevalence": 0.0}, r"prevalence .*got 0\.0"),
        ({"prevalence": 1.2}, r"prevalence .*got 1\.2"),
        ({"c_statistic": 0.5, "r2_cs": None}, r"c_statistic .*0\.5 and 1; got 0\.5"),
        ({"c_statistic": 1.0, "r2_cs": None}, r"c_statistic .*got 1\.0"),
        ({"c_statistic": 0.8}, r"exactly one of r2_cs and c_statistic"),
        ({"r2_cs": None}, r"exactly one of r2_cs and c_statistic"),
        ({"r2_cs": 0.7}, r"r2_cs .*maximum Cox-Snell R² 0\.6032.*got 0\.7"),
        ({"shrinkage": 1.0}, r"shrinkage .*got 1\.0"),
        ({"margin": 0.0}, r"margin .*got 0\.0"),
    ],
)
def test_binary_bad_input(kwargs, match):
    args = {"parameters": 24, "prevalence": 0.174, "r2_cs": 0.288} | kwargs
    with pytest.raises(StatsError, match=match):
        binary_sample_size(args.pop("parameters"), args.pop("prevalence"), **args)


@pytest.mark.parametrize(
    ("proportions", "c_statistic", "match"),
    [
        ([0.5, 0.3, 0.3], 0.75, r"sum to 1.*1\.1"),
        ([1.0], 0.75, r"at least 2 classes; got 1: \[1\.0\]"),
        (7, 0.75, r"proportions must be a sequence.*got 7"),
        ([0.5, 0.5, 0.0], 0.75, r"proportions\[2\] .*got 0\.0"),
        ("abc", 0.75, r"proportions must be a sequence"),
        ([0.5, 0.3, 0.2], 0.45, r"c_statistic .*got 0\.45"),
        ([0.5, 0.3, 0.2], {(0, 1): 0.8, (0, 2): 0.8, (1, 3): 0.8}, r"\(1, 3\).*0\.\.2"),
        ([0.5, 0.3, 0.2], {(0, 1): 0.8, (0, 2): 0.8, (1, 1): 0.8}, r"\(1, 1\)"),
        ([0.5, 0.3, 0.2], {(0, 1): 0.8, (0, 2): 0.8}, r"lacks the pair.*\(1, 2\)"),
        ([0.5, 0.3, 0.2], {(0, 1): 0.8, (1, 0): 0.8, (0, 2): 0.8, (1, 2): 0.8}, r"twice"),
        ([0.5, 0.3, 0.2], {(0, 1): 0.8, (0, 2): 1.2, (1, 2): 0.8}, r"c_statistic\[\(0, 2\)\]"),
        ([0.5, 0.3, 0.2], {"a": 0.8}, r"keys must be pairs"),
    ],
)
def test_multinomial_bad_input(proportions, c_statistic, match):
    with pytest.raises(StatsError, match=match):
        multinomial_sample_size(10, proportions, c_statistic=c_statistic)


def test_other_bad_input():
    with pytest.raises(StatsError, match=r"parameters .*got 0"):
        multinomial_sample_size(0, [0.5, 0.5])
    with pytest.raises(StatsError, match=r"nagelkerke_r2 .*got 1\.5"):
        multinomial_sample_size(5, [0.5, 0.5], nagelkerke_r2=1.5)
    with pytest.raises(StatsError, match=r"n must be an integer >= 1000; got 10"):
        cstatistic_to_r2(0.8, 0.2, n=10)
    with pytest.raises(StatsError, match=r"prevalence .*got 1"):
        cstatistic_to_r2(0.8, 1)
    with pytest.raises(StatsError, match=r"seed .*got -1"):
        cstatistic_to_r2(0.8, 0.2, seed=-1)
    with pytest.raises(StatsError, match=r"n must be a positive number; got 0"):
        expected_shrinkage(10, 0.2, 0)
