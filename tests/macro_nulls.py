"""Generators of paired three-class predictions for the size and coverage checks of the macro test.

Each generator draws a cohort of ``n`` cases with classes sampled at random (the class mix varies
from cohort to cohort, as for consecutive patients) and two models' probability matrices whose
true macro one-vs-rest AUCs at the population's class mix are equal (the null hypothesis):

- ``same_process``: both models from one process, noise correlated ``rho``;
- ``mirror``: per-class signal strengths (1.5, 1.0, 0.5) for A and (0.5, 1.0, 1.5) for B with
  shares 35/30/35: swapping classes 0 and 2 maps A onto B, so the macro AUCs are equal by
  symmetry while the per-class AUC profiles differ (the case that makes the variance
  conditional on the class counts too small);
- ``unequal``: shares 50/30/20, A with strengths (1.5, 1.0, 0.5) and B with (0.5, 1.0, b) where
  ``b`` was set so that the two true macro AUCs agree at that mix (``UNEQUAL_B``, found by
  bisection on 10^6 draws; ``tests/test_stats_macro_size.py`` checks the agreement).
"""

from __future__ import annotations

import numpy as np

UNEQUAL_B = 1.849
MIRROR = ((1.5, 1.0, 0.5), (0.5, 1.0, 1.5), (0.35, 0.30, 0.35))
SAME = ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.5, 0.3, 0.2))


def unequal_design(b: float = UNEQUAL_B):
    return (1.5, 1.0, 0.5), (0.5, 1.0, b), (0.5, 0.3, 0.2)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def draw(rng: np.random.Generator, n: int, design, rho: float = 0.9):
    """(y, proba_a, proba_b) for one cohort of ``n`` cases of ``design`` =
    (strengths of A, strengths of B, class shares)."""
    strength_a, strength_b, shares = design
    y = rng.choice(3, n, p=shares)
    onehot = np.eye(3)[y]
    shared = rng.normal(size=(n, 3))
    own_a = rng.normal(size=(n, 3))
    own_b = rng.normal(size=(n, 3))
    la = onehot * np.asarray(strength_a) + np.sqrt(rho) * shared + np.sqrt(1 - rho) * own_a
    lb = onehot * np.asarray(strength_b) + np.sqrt(rho) * shared + np.sqrt(1 - rho) * own_b
    return y, softmax(la), softmax(lb)


def true_macro(design, n: int = 1_000_000, seed: int = 12345) -> tuple[float, float]:
    """The two models' macro AUCs at the population's class mix, from ``n`` draws."""
    from ovfdlr.stats import roc_auc

    y, pa, pb = draw(np.random.default_rng(seed), n, design)
    return tuple(float(np.mean([roc_auc(y == k, p[:, k]) for k in range(3)])) for p in (pa, pb))
