"""Bootstrap resampling: stratified indices, and patient (cluster) weights.

**Patient bootstrap** (:func:`patient_weights`): each replicate draws as many patients as the
data has, with replacement, from all patients alike (not within classes: the class mix varies
from replicate to replicate as it does between cohorts of consecutive patients), and every
vertebra of a drawn patient comes along. A replicate is a weight per case: the number of times
its patient was drawn. Weighted statistics on the original cases then equal the statistic on
the resampled data (Davison & Hinkley, Bootstrap Methods and their Application, 1997, 3.8).

**Stratified indices**: resample within each stratum, keep the strata in blocks.

Because every replicate keeps each stratum's size and puts its members in the same block of
columns, the stratum of column ``j`` is the same in every replicate. Statistics whose labels
are the strata (AUCs stratified by case/control or by true class) can then be computed for all
replicates at once on a (replicates, cases) matrix with one shared label vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_indices(
    strata: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """A (n_boot, sum of stratum sizes) integer matrix of resampled case indices.

    Column block ``s`` holds draws with replacement from ``strata[s]`` (indices into the data).
    """
    blocks = []
    for members in strata:
        members = np.asarray(members, dtype=np.intp)
        draws = rng.integers(0, members.size, size=(n_boot, members.size))
        blocks.append(members[draws])
    return np.concatenate(blocks, axis=1)


def patient_weights(
    groups: np.ndarray | None, n: int, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """A (n_boot, n) float matrix: case ``i``'s weight in each patient-bootstrap replicate.

    ``groups``: the patient of each case (None: every case its own patient). Each replicate
    draws the patients with replacement (as many draws as patients); a case's weight is the
    number of draws of its patient.
    """
    if groups is None:
        codes = np.arange(n)
    else:
        _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_patients = int(codes.max()) + 1 if n else 0
    draws = rng.integers(0, n_patients, size=(n_boot, n_patients))
    counts = np.zeros((n_boot, n_patients))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return counts[:, codes]


def weighted_auc(is_case: np.ndarray, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of the score ``x`` (n,) for the cases ``is_case`` (n,) under each row of case
    weights ``weights`` (B, n): the Mann-Whitney AUC (ties one half) of the data in which case
    ``i`` appears ``weights[b, i]`` times. NaN where a replicate has no case or no control.

    One sort of ``x`` serves every replicate: per tie group ``g`` with case weight ``P_g``,
    control weight ``N_g`` and control weight ``C_g`` below it,
    AUC = sum_g P_g (C_g + N_g / 2) / (sum P * sum N). Replicates are taken in chunks to
    bound the memory.
    """
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    step = max(1, _CHUNK_VALUES // max(x.size, 1))
    out = np.empty(weights.shape[0])
    for lo in range(0, weights.shape[0], step):
        out[lo : lo + step] = _weighted_auc_sorted(
            is_case[order], weights[lo : lo + step][:, order], starts
        )
    return out


_CHUNK_VALUES = 2_000_000


def _weighted_auc_sorted(is_case: np.ndarray, w: np.ndarray, starts: np.ndarray) -> np.ndarray:
    pos = np.where(is_case, w, 0.0)
    neg = w - pos
    p_g = np.add.reduceat(pos, starts, axis=1)
    n_g = np.add.reduceat(neg, starts, axis=1)
    below = np.cumsum(n_g, axis=1) - n_g
    total_p = p_g.sum(axis=1)
    total_n = n_g.sum(axis=1)
    num = (p_g * (below + n_g / 2.0)).sum(axis=1)
    den = total_p * total_n
    return np.divide(num, den, out=np.full(den.shape, np.nan), where=den > 0)


def block_labels(strata: Sequence[np.ndarray]) -> np.ndarray:
    """The stratum number of each column of :func:`stratified_indices`' matrix."""
    return np.concatenate([np.full(len(m), s, dtype=np.intp) for s, m in enumerate(strata)])


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval (R's quantile type 7, numpy's linear) of the finite replicates."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
