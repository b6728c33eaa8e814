r"""Multiplicity: Holm's step-down adjustment, for one p-value vector or per family of a table.

**Holm** (Scand J Statist 1979;6:65-70). With the ``m`` p-values of a family sorted ascending,
:math:`p_{(1)} \le \dots \le p_{(m)}`, the adjusted p-values are

.. math:: \tilde p_{(i)} = \max_{j \le i} \min\{1, (m - j + 1)\, p_{(j)}\},

so they are monotone in the raw p-values and lie in [0, 1]; rejecting where
:math:`\tilde p \le \alpha` controls the family-wise error rate at :math:`\alpha` under any
dependence. It is R's ``p.adjust(p, "holm")``; the computation is statsmodels'
``multipletests(method="holm")``. NaN p-values (tests that could not be computed) are not part
of the family: they do not count in ``m`` and stay NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.stats._checks import StatsError

__all__ = ["adjust_family", "holm"]


def holm(p_values: Any) -> np.ndarray:
    """Holm-adjusted p-values, in the input order; NaN entries stay NaN and are not counted.

    ``p_values``: a 1-D sequence of p-values within [0, 1] (NaN allowed).
    """
    try:
        p = np.asarray(p_values, dtype=float)
    except (TypeError, ValueError):
        raise StatsError("p-values must be numeric") from None
    if p.ndim != 1:
        raise StatsError(f"p-values must be one-dimensional; got shape {p.shape}")
    present = ~np.isnan(p)
    if ((p[present] < 0) | (p[present] > 1)).any():
        raise StatsError("p-values must lie within [0, 1] (NaN for a test not computed)")
    out = np.full(p.shape, np.nan)
    if present.any():
        # imported here: statsmodels takes about a second to import
        from statsmodels.stats.multitest import multipletests

        adjusted = multipletests(p[present], method="holm")[1]
        out[present] = np.clip(adjusted, 0.0, 1.0)
    return out


def adjust_family(
    table: pd.DataFrame, p_column: str = "p_value", family_column: str = "family"
) -> pd.DataFrame:
    """A copy of ``table`` with ``p_adjusted`` (Holm within each family) and ``adjustment``.

    Every distinct value of ``family_column`` is one family of tests; ``adjustment`` reads
    ``"Holm within <family> (m = k)"`` with ``k`` the family's number of non-NaN p-values. Rows
    keep their order and index; a NaN p-value stays NaN in ``p_adjusted``. (statsmodels'
    ``multipletests`` runs ``gc.collect()`` on every call, about 0.05-0.1 s per family.)
    """
    if not isinstance(table, pd.DataFrame):
        raise StatsError(f"table must be a pandas DataFrame; got {type(table).__name__}")
    missing = [c for c in (p_column, family_column) if c not in table.columns]
    if missing:
        raise StatsError(f"table has no column {missing[0]!r}")
    if table[family_column].isna().any():
        raise StatsError(f"column {family_column!r} has missing values: every test needs a family")
    try:
        p = table[p_column].to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise StatsError(f"column {p_column!r} must be numeric") from None
    adjusted = np.full(len(table), np.nan)
    text = np.empty(len(table), dtype=object)
    for family, rows in table.groupby(family_column, sort=False).indices.items():
        adjusted[rows] = holm(p[rows])
        m = int(np.count_nonzero(~np.isnan(p[rows])))
        text[rows] = f"Holm within {family} (m = {m})"
    out = table.copy()
    out["p_adjusted"] = adjusted
    out["adjustment"] = text
    return out
