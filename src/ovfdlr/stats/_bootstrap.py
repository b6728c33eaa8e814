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
