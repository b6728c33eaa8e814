r"""Minimum sample size for developing a prediction model: binary (Riley) and multinomial (Pate).

**Binary outcome** (Riley RD, Snell KIE, Ensor J, et al. Stat Med 2019;38(7):1276-96,
doi:10.1002/sim.7992; Riley RD, Ensor J, Snell KIE, et al. BMJ 2020;368:m441). With ``p``
candidate predictor parameters, anticipated (optimism-adjusted) Cox-Snell :math:`R^2_{CS}`,
outcome prevalence :math:`\phi`, target shrinkage :math:`S` (0.9), tolerated optimism
:math:`\delta` (0.05) in Nagelkerke's :math:`R^2` and margin of error :math:`m` (0.05):

- criterion (i), expected uniform shrinkage :math:`\ge S`:
  :math:`n_1 = p / ((S - 1)\ln(1 - R^2_{CS}/S))`;
- criterion (ii), apparent minus adjusted Nagelkerke :math:`R^2 \le \delta`: with
  :math:`\ln L_{null}/n = \phi\ln\phi + (1-\phi)\ln(1-\phi)`,
  :math:`\max R^2_{CS} = 1 - \exp(2\ln L_{null}/n)`,
  :math:`S_{VH} = R^2_{CS}/(R^2_{CS} + \delta\max R^2_{CS})` and
  :math:`n_2 = p / ((S_{VH} - 1)\ln(1 - R^2_{CS}/S_{VH}))`;
- criterion (iii), the overall risk within :math:`\pm m` (95%):
  :math:`n_3 = (1.96/m)^2\phi(1-\phi)`;

each rounded up, and :math:`n = \max(n_1, n_2, n_3)`. This is ``pmsampsize_bin`` of the R package
pmsampsize 1.1.3 (Ensor J, CRAN), term for term, including its literal 1.96.

**R² from a C-statistic** (Riley RD, Van Calster B, Collins GS. Stat Med 2021;40(4):859-64,
doi:10.1002/sim.8806), as pmsampsize's ``cstat2rsq``: a large sample (:math:`n = 10^6`) whose
linear predictor is :math:`N(0, 1)` in the non-events and :math:`N(\mu, 1)` in the events, with
:math:`\mu = \sqrt2\,\Phi^{-1}(C)` so that the C-statistic is :math:`C`, and exactly
``round(prevalence * n)`` events; a logistic regression of the outcome on the linear predictor is
fitted by maximum likelihood and :math:`R^2_{CS} = 1 - \exp(-(D_{null} - D_{model})/n)`. The
normal draws are stratified (one uniform draw, from numpy's ``default_rng(seed)``, inside each of
the group's equal-probability strata, through :math:`\Phi^{-1}`) instead of pmsampsize's plain
``rnorm``: the estimand is the same, but the Monte-Carlo SD falls from about 6e-4 (plain draws,
enough to move a sample size by one or two) to about 1e-6, so the result is, to all digits that
matter, the population value and not one seed's. (pmsampsize also labels its :math:`N(0,1)` group
as the events; :math:`R^2_{CS}` is the same either way.) Binary results round it to 4 decimals
before use, as pmsampsize does.

**Multinomial outcome, K classes** (Pate A, Riley RD, Collins GS, et al. Stat Methods Med Res
2023;32(3):555-71, doi:10.1177/09622802231151220; the authors' worked-example code, "p3.1 worked
example.R" in github.com/alexpate30/MRC-multi-outcome, and their R package ``multsampsize``,
github.com/alexpate30/multsampsize, ``pmsampsize_mult``). With class proportions
:math:`p_1..p_K` and ``p`` predictor parameters per sub-model (the paper's :math:`Q`):

- criterion (i), expected shrinkage :math:`\ge S` in every distinct one-to-one logistic sub-model
  (all :math:`K(K-1)/2` pairs :math:`k < r`): :math:`p_{k,r} = p_k + p_r`,
  :math:`\phi_{k,r} = p_r/(p_k + p_r)`, :math:`R^2_{CS,k,r}` from the pairwise C-statistic at
  prevalence :math:`\phi_{k,r}`, :math:`m_{k,r} = p / ((S-1)\ln(1 - R^2_{CS,k,r}/S))` and
  :math:`N_{(i)} = \lceil\max_{k,r} m_{k,r}/p_{k,r}\rceil` (:math:`m_{k,r}` unrounded, as in the
  paper's worked example; ``multsampsize`` rounds :math:`m_{k,r}` up first, which adds at most
  :math:`1/p_{k,r}`);
- criterion (ii), optimism in the multinomial model's Nagelkerke :math:`R^2 \le \delta`:
  :math:`\max R^2_{CS} = 1 - (\prod_k p_k^{p_k})^2`, anticipated
  :math:`R^2_{CS} = R^2_{Nagelkerke}\max R^2_{CS}` (the authors' worked example assumes the
  conservative :math:`R^2_{Nagelkerke} = 0.15`, there being nothing better known),
  :math:`S_{VH} = R^2_{CS}/(R^2_{CS} + \delta\max R^2_{CS})` and
  :math:`N_{(ii)} = \lceil (K-1)p / ((S_{VH}-1)\ln(1 - R^2_{CS} - \delta\max R^2_{CS}))\rceil`;
- criterion (iii), every :math:`p_k` within :math:`\pm m` with simultaneous 95% confidence
  (Bonferroni over the K classes):
  :math:`N_{(iii)} = \lceil\max_k \chi^2_{1,1-0.05/K}\,p_k(1-p_k)/m^2\rceil`. The authors'
  code writes ``qchisq(1 - 0.05/5, 1)`` for their K = 5 example and ``multsampsize`` keeps the
  5 for every K; here it is K, as in the independent implementation ``sample.criteria``
  (``qchisq(0.05/k, 1, lower.tail = FALSE)``). For K = 2 this is stricter than the binary
  criterion (iii), which has no multiplicity correction;

and :math:`N = \max(N_{(i)}, N_{(ii)}, N_{(iii)})`, with :math:`N p_k` expected cases of class k.

The expected shrinkage at a sample size ``n`` reported here solves van Houwelingen's
:math:`S = 1 + p/(n\ln(1 - R^2_{CS}/S))` exactly (it is :math:`S` at :math:`n_1` and
:math:`S_{VH}` at :math:`n_2`); for a multinomial pair :math:`n = N p_{k,r}`.

**Why not a package.** The R package pmsampsize (CRAN, GPL >= 3) has binary, continuous and
survival outcomes but no multinomial one; its Python port ``pmsampsize`` 0.1.0 on PyPI (Whittle R,
Ensor J; GPL-3.0) has the same three outcome types only, requires Python >= 3.12 (this project
supports 3.11) and prints its tables. The multinomial criteria exist only as R code by the
paper's authors (``multsampsize``, not on CRAN). So both are implemented here, with numpy and
scipy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from numbers import Integral, Real

import numpy as np
from scipy import optimize as _opt
from scipy import special as _special
from scipy import stats as _sps

from ovfdlr.stats._checks import StatsError

__all__ = [
    "SampleSize",
    "binary_sample_size",
    "cstatistic_to_r2",
    "expected_shrinkage",
    "multinomial_sample_size",
]

#: z for the binary criterion (iii), written as pmsampsize writes it.
_Z_95 = 1.96
#: Family-wise level of the multinomial criterion (iii) (the paper's 95% confidence).
_ALPHA = 0.05
#: The anticipated Nagelkerke R² of the multinomial model, Pate et al.'s conservative default.
DEFAULT_NAGELKERKE_R2 = 0.15
#: Smallest simulation size accepted by :func:`cstatistic_to_r2` (it is a large-sample device).
MIN_SIMULATION_N = 1_000


@dataclass(frozen=True)
class SampleSize:
    """A minimum sample size by several criteria, with everything it was computed from.

    ``criteria``: the minimum n by each criterion, rounded up (binary: ``"shrinkage"``,
    ``"optimism"``, ``"overall risk"``; multinomial: ``"shrinkage"``, ``"optimism"``,
    ``"class proportions"``). ``n``: their maximum. ``events``: the expected cases at ``n``
    (binary: ``{"events": n * prevalence}``; multinomial: ``{"class k": n * p_k}``).
    ``assumptions``: every input and derived quantity (R² per pair, max R², shrinkage at ``n``,
    ...). ``method``: one sentence naming what was computed and the reference.
    """

    criteria: dict[str, int]
    n: int
    events: dict[str, float]
    assumptions: dict[str, float | int | str]
    method: str


# --------------------------------------------------------------------------------------------
# input checks


def _check_parameters(parameters: object) -> int:
    if isinstance(parameters, bool) or not isinstance(parameters, Integral) or parameters < 1:
        raise StatsError(
            f"parameters must be an integer >= 1 (candidate predictor parameters); "
            f"got {parameters!r}"
        )
    return int(parameters)


def _check_open_unit(value: object, name: str) -> float:
    """A real number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise StatsError(f"{name} must be a number strictly between 0 and 1; got {value!r}")
    x = float(value)
    if not 0.0 < x < 1.0:  # also rejects NaN
        raise StatsError(f"{name} must lie strictly between 0 and 1; got {value!r}")
    return x


def _check_cstatistic(value: object, name: str = "c_statistic") -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise StatsError(f"{name} must be a number strictly between 0.5 and 1; got {value!r}")
    c = float(value)
    if not 0.5 < c < 1.0:
        raise StatsError(f"{name} must lie strictly between 0.5 and 1; got {value!r}")
    return c


def _log_null_per_obs(props: Sequence[float]) -> float:
    """ln L_null / n = sum_k p_k ln p_k for an intercept-only model."""
    return float(sum(q * math.log(q) for q in props))


def _max_r2_cs(props: Sequence[float]) -> float:
    """Largest attainable Cox-Snell R²: 1 - exp(2 ln L_null / n) = 1 - (prod p_k^p_k)^2."""
    return 1.0 - math.exp(2.0 * _log_null_per_obs(props))


def _check_r2(r2: float, name: str, max_r2: float, shrinkage: float, optimism: float) -> None:
    if not 0.0 < r2 < max_r2:
        raise StatsError(
            f"{name} must lie strictly between 0 and the maximum Cox-Snell R² "
            f"{max_r2:.4f} for these outcome proportions; got {r2!r}"
        )
    if r2 >= shrinkage:
        raise StatsError(
            f"{name} ({r2!r}) must be below shrinkage ({shrinkage!r}): ln(1 - R²/S) is undefined"
        )
    if r2 + optimism * max_r2 >= 1.0:
        raise StatsError(
            f"{name} + optimism * max R² must stay below 1; got {r2!r} + {optimism!r} * "
            f"{max_r2:.4f}"
        )


# --------------------------------------------------------------------------------------------
# formulas


def _n_for_shrinkage(parameters: float, r2: float, shrinkage: float) -> float:
    """Unrounded n with expected shrinkage ``shrinkage``: p / ((S - 1) ln(1 - R²/S))."""
    return parameters / ((shrinkage - 1.0) * math.log1p(-r2 / shrinkage))


def _optimism_shrinkage(r2: float, max_r2: float, optimism: float) -> float:
    """S_VH = R² / (R² + delta max R²): the shrinkage that keeps Nagelkerke optimism <= delta."""
    return r2 / (r2 + optimism * max_r2)


def expected_shrinkage(parameters: int, r2_cs: float, n: float) -> float:
    r"""The expected uniform shrinkage at sample size ``n``: the root S in (R², 1) of
    :math:`S = 1 + p / (n \ln(1 - R^2_{CS}/S))` (van Houwelingen's heuristic shrinkage with the
    apparent :math:`R^2 = R^2_{CS}/S`, as in Riley et al. 2019).

    It inverts criterion (i): ``expected_shrinkage(p, r2, p / ((S - 1) * ln(1 - r2 / S)))`` is
    ``S``.
    """
    p = _check_parameters(parameters)
    r2 = _check_open_unit(r2_cs, "r2_cs")
    if isinstance(n, bool) or not isinstance(n, Real) or not float(n) > 0:
        raise StatsError(f"n must be a positive number; got {n!r}")
    size = float(n)

    def gap(s: float) -> float:
        return s - 1.0 - p / (size * math.log1p(-r2 / s))

    lo = r2 * (1.0 + 1e-12) + 1e-300
    # gap(lo) ~ r2 - 1 < 0 and gap(1) = -p / (n ln(1 - r2)) > 0: one root in between
    return float(_opt.brentq(gap, lo, 1.0, xtol=1e-14, rtol=1e-14))


def cstatistic_to_r2(
    c_statistic: float, prevalence: float, *, n: int = 1_000_000, seed: int = 0
) -> float:
    r"""Cox-Snell R² of a logistic model with C-statistic ``c_statistic`` at ``prevalence``.

    Riley, Van Calster & Collins (Stat Med 2021;40:859-64), as pmsampsize's ``cstat2rsq``:
    ``n`` linear-predictor values, ``round(prevalence * n)`` events from :math:`N(\mu, 1)` and
    the rest from :math:`N(0, 1)` with :math:`\mu = \sqrt2\,\Phi^{-1}(C)`; the outcome is
    regressed on them by maximum likelihood (logistic, with intercept) and
    :math:`R^2_{CS} = 1 - \exp(-LR/n)`, LR the likelihood-ratio statistic against the
    intercept-only model. The normal draws are stratified (see the module docstring), so the
    Monte-Carlo SD is about 1e-6 at the default ``n``; the result is deterministic for a
    ``seed`` and hardly depends on it.
    """
    c = _check_cstatistic(c_statistic)
    phi = _check_open_unit(prevalence, "prevalence")
    if isinstance(n, bool) or not isinstance(n, Integral) or n < MIN_SIMULATION_N:
        raise StatsError(f"n must be an integer >= {MIN_SIMULATION_N}; got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise StatsError(f"seed must be a non-negative integer; got {seed!r}")
    n_events = round(phi * int(n))
    if not 0 < n_events < int(n):
        raise StatsError(
            f"prevalence {prevalence!r} leaves no events or no non-events among n = {n!r}"
        )
    return _cstat_r2_cached(c, phi, int(n), int(seed))


@functools.lru_cache(maxsize=256)
def _cstat_r2_cached(c: float, phi: float, n: int, seed: int) -> float:
    n_events = round(phi * n)
    mu = math.sqrt(2.0) * float(_sps.norm.ppf(c))
    rng = np.random.default_rng(seed)
    lp = np.concatenate(
        [_stratified_normal(n_events, rng) + mu, _stratified_normal(n - n_events, rng)]
    )
    b0, b1 = _fit_logistic(lp, n_events, start=(math.log(phi / (1.0 - phi)) - mu * mu / 2.0, mu))
    eta = lp * b1
    eta += b0
    # log-likelihood sum(y * eta) - sum(log(1 + exp(eta))), the events being the first n_events
    softplus = np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta)))
    loglik = float(eta[:n_events].sum() - softplus.sum())
    loglik_null = n_events * math.log(n_events / n) + (n - n_events) * math.log1p(-n_events / n)
    lr = 2.0 * (loglik - loglik_null)
    return float(-math.expm1(-lr / n))


def _stratified_normal(size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` N(0, 1) draws, one uniformly within each of ``size`` equal-probability strata."""
    u = rng.random(size)
    u[u == 0.0] = 0.5  # keep (i + u) / size strictly inside (0, 1)
    return _special.ndtri((np.arange(size) + u) / size)


def _fit_logistic(x: np.ndarray, n_events: int, start: tuple[float, float]) -> tuple[float, float]:
    """Maximum-likelihood intercept and slope of logit P(y = 1) = b0 + b1 x, by Newton-Raphson.

    The outcome is 1 for the first ``n_events`` values of ``x`` and 0 for the rest.
    """
    b0, b1 = start
    sum_xy = float(x[:n_events].sum())
    for _ in range(100):
        prob = x * b1
        prob += b0
        _special.expit(prob, out=prob)
        w = prob * (1.0 - prob)
        wx = w * x
        grad = np.array([n_events - prob.sum(), sum_xy - np.einsum("i,i->", x, prob)])
        h01 = float(wx.sum())
        hess = np.array([[w.sum(), h01], [h01, np.einsum("i,i->", wx, x)]])
        step = np.linalg.solve(hess, grad)
        b0 += float(step[0])
        b1 += float(step[1])
        if float(np.max(np.abs(step))) < 1e-10:
            return b0, b1
    raise StatsError("the logistic fit in cstatistic_to_r2 did not converge")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# binary


def binary_sample_size(
    parameters: int,
    prevalence: float,
    *,
    r2_cs: float | None = None,
    c_statistic: float | None = None,
    shrinkage: float = 0.9,
    optimism: float = 0.05,
    margin: float = 0.05,
) -> SampleSize:
    """Minimum n to develop a logistic prediction model (Riley et al. 2019/2020; pmsampsize).

    Give exactly one of ``r2_cs`` (anticipated optimism-adjusted Cox-Snell R²) and
    ``c_statistic`` (anticipated C-statistic; R² then from :func:`cstatistic_to_r2` with its
    defaults, rounded to 4 decimals as pmsampsize does). ``parameters``: candidate predictor
    parameters; ``prevalence``: the anticipated outcome proportion. Criteria: ``"shrinkage"``
    (expected shrinkage >= ``shrinkage``), ``"optimism"`` (Nagelkerke R² optimism <=
    ``optimism``), ``"overall risk"`` (prevalence within +/- ``margin``, 95%). See the module
    docstring for the formulas.
    """
    p = _check_parameters(parameters)
    phi = _check_open_unit(prevalence, "prevalence")
    s = _check_open_unit(shrinkage, "shrinkage")
    delta = _check_open_unit(optimism, "optimism")
    moe = _check_open_unit(margin, "margin")
    if (r2_cs is None) == (c_statistic is None):
        raise StatsError(
            f"give exactly one of r2_cs and c_statistic; got r2_cs={r2_cs!r}, "
            f"c_statistic={c_statistic!r}"
        )
    max_r2 = _max_r2_cs([phi, 1.0 - phi])
    assumptions: dict[str, float | int | str] = {
        "parameters": p,
        "prevalence": phi,
        "shrinkage (target)": s,
        "optimism (Nagelkerke R², max)": delta,
        "margin (overall risk, 95%)": moe,
    }
    if c_statistic is not None:
        c = _check_cstatistic(c_statistic)
        r2_raw = cstatistic_to_r2(c, phi)
        r2 = round(r2_raw, 4)
        assumptions["c_statistic"] = c
        assumptions["R2_cs (simulated from C)"] = r2_raw
        assumptions["R2_cs source"] = (
            "C-statistic, Riley et al. 2021 (stratified simulation, n = 1e6, seed 0), 4 dp"
        )
    else:
        if isinstance(r2_cs, bool) or not isinstance(r2_cs, Real):
            raise StatsError(f"r2_cs must be a number; got {r2_cs!r}")
        r2 = float(r2_cs)
        assumptions["R2_cs source"] = "given"
    _check_r2(r2, "r2_cs", max_r2, s, delta)

    s_vh = _optimism_shrinkage(r2, max_r2, delta)
    n1 = math.ceil(_n_for_shrinkage(p, r2, s))
    n2 = math.ceil(_n_for_shrinkage(p, r2, s_vh))
    n3 = math.ceil((_Z_95 / moe) ** 2 * phi * (1.0 - phi))
    n = max(n1, n2, n3)
    events = n * phi
    assumptions.update(
        {
            "R2_cs": r2,
            "max R2_cs": max_r2,
            "R2_Nagelkerke": r2 / max_r2,
            "shrinkage for optimism (S_VH)": s_vh,
            "expected shrinkage at n": expected_shrinkage(p, r2, n),
            "events per parameter": events / p,
        }
    )
    return SampleSize(
        criteria={"shrinkage": n1, "optimism": n2, "overall risk": n3},
        n=n,
        events={"events": events},
        assumptions=assumptions,
        method=(
            "Minimum sample size to develop a binary-outcome (logistic) prediction model by the "
            "three criteria of Riley et al. (Stat Med 2019;38:1276-96; BMJ 2020;368:m441), as in "
            "the R package pmsampsize 1.1.3."
        ),
    )


# --------------------------------------------------------------------------------------------
# multinomial


def _check_proportions(proportions: object) -> list[float]:
    if isinstance(proportions, str | bytes):
        raise StatsError(f"proportions must be a sequence of numbers; got {proportions!r}")
    try:
        items = list(proportions)
    except TypeError:
        raise StatsError(
            f"proportions must be a sequence of numbers; got {proportions!r}"
        ) from None
    if len(items) < 2:
        raise StatsError(f"proportions needs at least 2 classes; got {len(items)}: {items!r}")
    props: list[float] = []
    for i, q in enumerate(items):
        if isinstance(q, bool) or not isinstance(q, Real) or not 0.0 < float(q) < 1.0:
            raise StatsError(
                f"proportions[{i}] must lie strictly between 0 and 1; got {q!r} "
                f"(proportions={items!r})"
            )
        props.append(float(q))
    total = math.fsum(props)
    if abs(total - 1.0) > 1e-6:
        raise StatsError(f"proportions must sum to 1; got {props!r} (sum {total!r})")
    return props


def _pairwise_cstatistics(
    c_statistic: float | Mapping[tuple[int, int], float], k: int
) -> dict[tuple[int, int], float]:
    pairs = list(combinations(range(k), 2))
    if not isinstance(c_statistic, Mapping):
        c = _check_cstatistic(c_statistic)
        return dict.fromkeys(pairs, c)
    out: dict[tuple[int, int], float] = {}
    for key, value in c_statistic.items():
        if (
            not isinstance(key, tuple)
            or len(key) != 2
            or any(isinstance(i, bool) or not isinstance(i, Integral) for i in key)
        ):
            raise StatsError(f"c_statistic keys must be pairs (k, r) of class indices; got {key!r}")
        a, b = int(key[0]), int(key[1])
        if not (0 <= a < k and 0 <= b < k) or a == b:
            raise StatsError(
                f"c_statistic key {key!r} is not a pair of two different classes among 0..{k - 1}"
            )
        pair = (min(a, b), max(a, b))
        if pair in out:
            raise StatsError(f"c_statistic gives the pair {pair} twice (as {key!r} again)")
        out[pair] = _check_cstatistic(value, f"c_statistic[{key!r}]")
    missing = [pair for pair in pairs if pair not in out]
    if missing:
        raise StatsError(f"c_statistic lacks the pair(s) {missing} (classes 0..{k - 1})")
    return {pair: out[pair] for pair in pairs}


def multinomial_sample_size(
    parameters: int,
    proportions: Sequence[float],
    *,
    c_statistic: float | Mapping[tuple[int, int], float] = 0.75,
    shrinkage: float = 0.9,
    optimism: float = 0.05,
    margin: float = 0.05,
    nagelkerke_r2: float = DEFAULT_NAGELKERKE_R2,
) -> SampleSize:
    """Minimum n to develop a K-class multinomial logistic prediction model (Pate et al. 2023).

    ``parameters``: predictor parameters per sub-model (the paper's Q; the multinomial model has
    (K - 1) times as many). ``proportions``: the anticipated class proportions p_0..p_{K-1}
    (summing to 1). ``c_statistic``: the anticipated pairwise C-statistic, one for all pairs or
    a mapping ``{(k, r): C}`` over every pair of class indices (either order). ``nagelkerke_r2``:
    the anticipated Nagelkerke R² of the multinomial model, for criterion (ii) (default 0.15,
    the paper's conservative choice). Criteria: ``"shrinkage"`` (i), ``"optimism"`` (ii),
    ``"class proportions"`` (iii); see the module docstring. Pairwise quantities are reported in
    ``assumptions`` under keys such as ``"R2_cs[0,2]"``; ``events`` has ``"class k"`` -> n p_k.
    """
    p = _check_parameters(parameters)
    props = _check_proportions(proportions)
    k = len(props)
    s = _check_open_unit(shrinkage, "shrinkage")
    delta = _check_open_unit(optimism, "optimism")
    moe = _check_open_unit(margin, "margin")
    nag = _check_open_unit(nagelkerke_r2, "nagelkerke_r2")
    cstats = _pairwise_cstatistics(c_statistic, k)

    assumptions: dict[str, float | int | str] = {
        "parameters per sub-model": p,
        "parameters (multinomial model)": (k - 1) * p,
        "classes": k,
        "shrinkage (target)": s,
        "optimism (Nagelkerke R², max)": delta,
        "margin (class proportions, simultaneous 95%)": moe,
        "R2_cs source": (
            "pairwise C-statistics, Riley et al. 2021 (stratified simulation, n = 1e6, seed 0)"
        ),
    }
    for i, q in enumerate(props):
        assumptions[f"proportion[{i}]"] = q

    # criterion (i): every one-to-one sub-model
    per_pair: dict[tuple[int, int], tuple[float, float, float]] = {}
    n_i_raw = 0.0
    for (a, b), c in cstats.items():
        p_ab = props[a] + props[b]
        phi = props[b] / p_ab
        r2 = cstatistic_to_r2(c, phi)
        max_r2 = _max_r2_cs([phi, 1.0 - phi])
        if not r2 < s:
            raise StatsError(
                f"pair ({a}, {b}): R² {r2:.4f} from C-statistic {c!r} is not below shrinkage {s!r}"
            )
        m_ab = _n_for_shrinkage(p, r2, s)
        n_ab = m_ab / p_ab
        n_i_raw = max(n_i_raw, n_ab)
        per_pair[(a, b)] = (p_ab, r2, m_ab)
        tag = f"[{a},{b}]"
        assumptions[f"c_statistic{tag}"] = c
        assumptions[f"phi{tag}"] = phi
        assumptions[f"p_kr{tag}"] = p_ab
        assumptions[f"R2_cs{tag}"] = r2
        assumptions[f"max R2_cs{tag}"] = max_r2
        assumptions[f"R2_Nagelkerke{tag}"] = r2 / max_r2
        assumptions[f"m_kr{tag}"] = m_ab
        assumptions[f"n for shrinkage{tag}"] = n_ab
    n_i = math.ceil(n_i_raw)

    # criterion (ii): the multinomial model's Nagelkerke R² optimism
    max_r2 = _max_r2_cs(props)
    r2_overall = nag * max_r2
    _check_r2(r2_overall, "nagelkerke_r2 * max R2_cs", max_r2, s, delta)
    s_vh = _optimism_shrinkage(r2_overall, max_r2, delta)
    n_ii = math.ceil(_n_for_shrinkage((k - 1) * p, r2_overall, s_vh))

    # criterion (iii): all class proportions within +/- margin, Bonferroni over K
    chi2 = float(_sps.chi2.ppf(1.0 - _ALPHA / k, 1))
    n_iii = math.ceil(max(chi2 * q * (1.0 - q) / moe**2 for q in props))

    n = max(n_i, n_ii, n_iii)
    assumptions.update(
        {
            "max R2_cs (multinomial)": max_r2,
            "R2_Nagelkerke (multinomial)": nag,
            "R2_cs (multinomial)": r2_overall,
            "shrinkage for optimism (S_VH)": s_vh,
            "chi2 quantile (1 df, 1 - 0.05/K)": chi2,
        }
    )
    for (a, b), (p_ab, r2, _) in per_pair.items():
        assumptions[f"expected shrinkage at n[{a},{b}]"] = expected_shrinkage(p, r2, n * p_ab)
    return SampleSize(
        criteria={"shrinkage": n_i, "optimism": n_ii, "class proportions": n_iii},
        n=n,
        events={f"class {i}": n * q for i, q in enumerate(props)},
        assumptions=assumptions,
        method=(
            f"Minimum sample size to develop a {k}-class multinomial logistic prediction model by "
            "the three criteria of Pate et al. (Stat Methods Med Res 2023;32:555-71), pairwise "
            "Cox-Snell R² from C-statistics after Riley et al. (Stat Med 2021;40:859-64)."
        ),
    )
