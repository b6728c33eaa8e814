r"""Variance of AUC estimators from their structural components: by class, by patient.

Every AUC here (binary, one-vs-rest, macro average, and differences of these) is, to first
order, a sum of per-case influences :math:`\hat\theta - \theta \approx \sum_i \psi(i)` (DeLong's
structural components; DeLong et al., Biometrics 1988). For a binary AUC with ``m`` cases and
``n`` controls, :math:`\psi(i) = (V_{10}(i) - \hat\theta)/m` for a case and
:math:`(V_{01}(i) - \hat\theta)/n` for a control; one-vs-rest and macro influences are built from
these (:mod:`ovfdlr.stats.multiclass`). The influences sum to zero over the cases exactly.
How their variance is estimated depends on how the cohort was sampled:

**Unconditional** (default; cases are i.i.d. draws from the population, the class mix varies
between samples, as in a cohort of consecutive patients). With :math:`\bar\psi_c` the mean and
:math:`\widehat{\mathrm{var}}_c` the sample variance (divisor :math:`n_c - 1`) of the influences
over the :math:`n_c` cases of true class ``c``,

.. math::  \widehat{\mathrm{Var}} = \sum_c n_c\,\widehat{\mathrm{var}}_c(\psi)
           + \sum_c n_c\,\bar\psi_c^2 .

The second term is the class mix's own contribution: a one-vs-rest "rest" is a mixture whose
AUC moves with the mix. For a binary AUC :math:`\bar\psi_c = 0` for both classes and the
estimator is DeLong's :math:`S_{10}/m + S_{01}/n` exactly.

**Conditional on the class counts** (the class sizes fixed by design, e.g. a case-control
sample): the first term alone, :math:`\sum_c n_c\,\widehat{\mathrm{var}}_c(\psi)`.

**Clustered by patient** (a patient contributes several vertebrae; Obuchowski, Biometrics
1997;53:567-78). With :math:`I` patients and :math:`\Psi_p = \sum_{i \in p}\psi(i)` the summed
influence of patient ``p``,

.. math::  \widehat{\mathrm{Var}} = \frac{I}{I-1} \sum_p \Psi_p^2 .

For a binary AUC this is Obuchowski's :math:`S_{10}/M + S_{01}/N + 2 S_{11}/(MN)` with
:math:`S_{10} = \frac{I}{(I-1)M}\sum_p (V_{10,p} - m_p\hat\theta)^2`,
:math:`S_{01} = \frac{I}{(I-1)N}\sum_p (V_{01,p} - n_p\hat\theta)^2` and
:math:`S_{11} = \frac{I}{I-1}\sum_p (V_{10,p} - m_p\hat\theta)(V_{01,p} - n_p\hat\theta)`
(:math:`V_{10,p}`, :math:`V_{01,p}` the sums of the patient's case and control placements,
:math:`m_p`, :math:`n_p` its numbers of cases and controls); expanding :math:`\Psi_p^2` gives the
three terms. The clustered estimator is used only when some patient has more than one case;
with one case per patient the unclustered estimator (DeLong's) applies, unchanged. The
conditional version with clusters, :math:`\sum_c \frac{I_c}{I_c-1}\sum_{p \in c}
(\Psi_p - n_{p}\bar\psi_c)^2`, needs every patient's cases in one class and is refused otherwise.

All functions take an influence matrix ``psi`` (k, n): one row per estimator (several models,
or the difference of two) and return the k x k covariance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.stats._checks import StatsError, prefix

UNCONDITIONAL = "unconditional"
CONDITIONAL = "conditional"
VARIANCES = (UNCONDITIONAL, CONDITIONAL)

# how each estimator is named in the output
VARIANCE_TEXT = {
    UNCONDITIONAL: "at the population's class mix",
    CONDITIONAL: "conditional on the class counts",
}
CLUSTERED_TEXT = "clustered by patient"


def check_variance(variance: str) -> str:
    if variance not in VARIANCES:
        raise StatsError(f"variance must be one of {', '.join(VARIANCES)}; got {variance!r}")
    return variance


def patient_codes(groups: Any, n: int, cohort: str | None = None) -> np.ndarray | None:
    """Integer patient codes (0..I-1) of the cases (None stays None: every case its own
    patient). ``groups``: one patient identifier per case, none missing."""
    if groups is None:
        return None
    pre = prefix(cohort)
    values = np.asarray(groups)
    if values.ndim != 1:
        raise StatsError(f"{pre}groups must be one-dimensional; got shape {values.shape}")
    if values.shape[0] != n:
        raise StatsError(f"{pre}groups has {values.shape[0]} values but y has {n}")
    if pd.isna(values).any():
        raise StatsError(f"{pre}groups contains missing patient ids")
    _, codes = np.unique(values.astype(str), return_inverse=True)
    return codes.astype(np.intp)


def cluster_codes(groups: Any, n: int, cohort: str | None = None) -> np.ndarray | None:
    """:func:`patient_codes`, or None when no patient has two cases (the unclustered
    estimators then apply unchanged)."""
    codes = patient_codes(groups, n, cohort)
    if codes is None or codes.size == 0 or np.bincount(codes).max() < 2:
        return None
    return codes


def patient_sums(psi: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(k, I) sums of each row of ``psi`` over every patient's cases."""
    out = np.zeros((psi.shape[0], int(codes.max()) + 1))
    np.add.at(out.T, codes, psi.T)
    return out


def binary_influence(
    theta: np.ndarray, v10: np.ndarray, v01: np.ndarray, is_case: np.ndarray
) -> np.ndarray:
    """(k, n) DeLong influences of k binary AUCs, in case order (``is_case`` (n,) bool)."""
    m, n_controls = v10.shape[1], v01.shape[1]
    psi = np.empty((theta.size, is_case.size))
    psi[:, is_case] = (v10 - theta[:, None]) / m
    psi[:, ~is_case] = (v01 - theta[:, None]) / n_controls
    return psi


def influence_covariance(
    psi: np.ndarray,
    strata: np.ndarray,
    *,
    variance: str = UNCONDITIONAL,
    codes: np.ndarray | None = None,
    cohort: str | None = None,
) -> np.ndarray:
    """The (k, k) covariance of the influence sums of ``psi`` (k, n); see the module docstring.

    ``strata``: the true class (0..K-1) of each case; ``codes``: patient codes from
    :func:`cluster_codes` (None: unclustered). Every stratum needs two cases (two patients
    when clustered); callers check this first and report why a CI cannot be given.
    """
    variance = check_variance(variance)
    psi = np.atleast_2d(psi)
    k = psi.shape[0]
    if codes is not None:
        return _clustered(psi, strata, codes, variance, cohort)
    total = np.zeros((k, k))
    for c in np.unique(strata):
        rows = psi[:, strata == c]
        n_c = rows.shape[1]
        mean = rows.mean(axis=1)
        dev = rows - mean[:, None]
        total += n_c * (dev @ dev.T) / (n_c - 1)
        if variance == UNCONDITIONAL:
            total += n_c * np.outer(mean, mean)
    return total


def _clustered(psi, strata, codes, variance, cohort) -> np.ndarray:
    sums = patient_sums(psi, codes)
    n_patients = sums.shape[1]
    if variance == UNCONDITIONAL:
        return n_patients / (n_patients - 1) * (sums @ sums.T)
    # conditional: each patient's cases must share one class
    first = np.full(n_patients, -1)
    first[codes] = strata
    mixed = np.flatnonzero(np.bincount(codes, weights=(strata != first[codes])) > 0)
    if mixed.size:
        raise StatsError(
            f"{prefix(cohort)}the variance conditional on the class counts cannot be clustered: "
            f"{mixed.size} patient(s) have vertebrae in different classes; use the "
            "unconditional variance (at the population's class mix)"
        )
    sizes = np.bincount(codes, minlength=n_patients)
    total = np.zeros((psi.shape[0], psi.shape[0]))
    for c in np.unique(strata):
        members = np.flatnonzero(first == c)
        mean_case = psi[:, strata == c].mean(axis=1)
        dev = sums[:, members] - np.outer(mean_case, sizes[members])
        i_c = members.size
        total += i_c / (i_c - 1) * (dev @ dev.T)
    return total


def too_few(
    strata: np.ndarray,
    codes: np.ndarray | None,
    names: list[str],
    variance: str = UNCONDITIONAL,
) -> str:
    """Why the variance cannot be estimated ("" when it can), e.g. ``"1 case in class 1"``:
    a stratum with fewer than two cases; when clustered, fewer than two patients (per class
    for the conditional variance)."""
    for c, name in enumerate(names):
        members = strata == c
        count = int(members.sum())
        if count < 2:
            return f"{count} case{'' if count == 1 else 's'} in {name}"
        if codes is not None and variance == CONDITIONAL and np.unique(codes[members]).size < 2:
            return f"1 patient in {name}"
    if codes is not None and int(codes.max()) + 1 < 2:
        return "1 patient"
    return ""


__all__ = [
    "CLUSTERED_TEXT",
    "CONDITIONAL",
    "UNCONDITIONAL",
    "VARIANCES",
    "VARIANCE_TEXT",
    "binary_influence",
    "check_variance",
    "cluster_codes",
    "influence_covariance",
    "patient_sums",
    "too_few",
]
