"""Stratified bootstrap indices: resample within each stratum, keep the strata in blocks.

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
