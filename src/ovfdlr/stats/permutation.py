r"""Paired permutation test of two models scored on the same cases.

Under the null hypothesis that models A and B are exchangeable on every patient, swapping the
two models' scores for a patient (all of its cases together) leaves the joint distribution
unchanged. Each of ``n_permutations`` seeded replicates swaps each patient's scores with
probability 1/2 and recomputes the difference :math:`d^*`; with :math:`d` the observed
difference, the p-values (Phipson & Smyth, Stat Appl Genet Mol Biol 2010, counting the observed
arrangement) are

.. math::

    p_{two-sided} = \frac{1 + \#\{|d^*| \ge |d|\}}{1 + B}, \quad
    p_{greater} = \frac{1 + \#\{d^* \ge d\}}{1 + B}, \quad
    p_{less} = \frac{1 + \#\{d^* \le d\}}{1 + B}.

It needs no variance estimate, which is why it replaces DeLong's test when the DeLong variance
of the difference is zero (e.g. two models that both separate the classes perfectly but differ
in a tie): a z statistic would be infinite.
"""

from __future__ import annotations

import numpy as np

MIN_PERMUTATIONS = 2000
# the note of a test whose DeLong variance is zero and whose p-value comes from permutations
NOT_ESTIMABLE = "DeLong not estimable (variance 0): paired permutation test"


def swap_masks(codes: np.ndarray | None, n: int, n_permutations: int, seed: int) -> np.ndarray:
    """(n_permutations, n) booleans: whether case ``i``'s two scores are swapped, patient-wise
    (``codes``: patient codes 0..I-1, or None: every case its own patient)."""
    rng = np.random.default_rng(seed)
    if codes is None:
        return rng.random((n_permutations, n)) < 0.5
    flips = rng.random((n_permutations, int(codes.max()) + 1)) < 0.5
    return flips[:, codes]


def permutation_p(observed: float, null: np.ndarray, alternative: str) -> float:
    """The permutation p-value of ``observed`` among the replicate differences ``null``."""
    tol = 1e-12 * max(1.0, abs(observed))  # equal up to rounding counts as "as extreme"
    if alternative == "two-sided":
        extreme = np.abs(null) >= abs(observed) - tol
    elif alternative == "greater":
        extreme = null >= observed - tol
    else:
        extreme = null <= observed + tol
    return float((1 + int(extreme.sum())) / (1 + null.size))


def swapped(a: np.ndarray, b: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, n) scores of A and B in every replicate: ``a`` and ``b`` (n,) swapped where masked."""
    return np.where(masks, b[None, :], a[None, :]), np.where(masks, a[None, :], b[None, :])


__all__ = ["MIN_PERMUTATIONS", "NOT_ESTIMABLE", "permutation_p", "swap_masks", "swapped"]
