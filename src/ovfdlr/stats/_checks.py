"""Input checks shared by the statistics modules, and the one error type they raise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as _sps

ALTERNATIVES = ("two-sided", "greater", "less")
DIRECTIONS = ("<", ">")


class StatsError(ValueError):
    """Bad input to a statistic: NaN, wrong shape, a single class, a label outside ``classes``.

    The message names the cohort and the class whenever the caller gave them.
    """


def prefix(cohort: str | None) -> str:
    """``"cohort X: "`` when a cohort name is given, else the empty string."""
    return "" if cohort is None else f"cohort {cohort}: "


def check_level(level: float) -> float:
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise StatsError(f"level must be a number in (0, 1); got {level!r}") from None
    if not 0.0 < value < 1.0:
        raise StatsError(f"level must lie strictly between 0 and 1; got {level!r}")
    return value


def check_alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise StatsError(f"alternative must be one of {ALTERNATIVES}; got {alternative!r}")
    return alternative


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise StatsError(
            f"direction must be '<' (controls < cases) or '>' (controls > cases); got {direction!r}"
        )
    return direction


def check_n_boot(n_boot: int) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 2:
        raise StatsError(f"n_boot must be an integer >= 2; got {n_boot!r}")
    return int(n_boot)


def _as_float(values: Any, name: str, pre: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise StatsError(f"{pre}{name} must be numeric") from None
    return arr


def _no_nan(arr: np.ndarray, name: str, pre: str) -> np.ndarray:
    if np.isnan(arr).any():
        raise StatsError(f"{pre}{name} contains NaN")
    return arr


def _label_vector(y: Any, name: str, pre: str) -> np.ndarray:
    """Labels as a non-empty 1-D array (any dtype)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise StatsError(f"{pre}{name} must be one-dimensional; got shape {arr.shape}")
    if arr.size == 0:
        raise StatsError(f"{pre}{name} is empty")
    return arr


def binary_labels(y: Any, *, name: str = "y", cohort: str | None = None) -> np.ndarray:
    """A 1-D boolean array (True = case) from 0/1 or bool labels, with both groups present."""
    pre = prefix(cohort)
    arr = _label_vector(y, name, pre)
    if arr.dtype == bool:
        out = arr
    else:
        num = _no_nan(_as_float(arr, name, pre), name, pre)
        bad = ~np.isin(num, (0.0, 1.0))
        if bad.any():
            found = np.unique(num[bad])[:5].tolist()
            raise StatsError(
                f"{pre}{name} must be binary (0 = control, 1 = case, or bool); found {found}"
            )
        out = num == 1.0
    n_cases = int(out.sum())
    if n_cases == 0:
        raise StatsError(f"{pre}{name} has no cases (label 1); an ROC curve needs both groups")
    if n_cases == out.size:
        raise StatsError(f"{pre}{name} has no controls (label 0); an ROC curve needs both groups")
    return out


def scores_1d(score: Any, n: int, *, name: str = "score", cohort: str | None = None) -> np.ndarray:
    """A 1-D float array of length ``n`` without NaN (infinite values rank normally)."""
    pre = prefix(cohort)
    arr = _as_float(score, name, pre)
    if arr.ndim != 1:
        raise StatsError(f"{pre}{name} must be one-dimensional; got shape {arr.shape}")
    if arr.shape[0] != n:
        raise StatsError(f"{pre}{name} has {arr.shape[0]} values but y has {n}")
    return _no_nan(arr, name, pre)


def score_matrix(scores: Any, n: int, *, name: str = "scores", cohort: str | None = None):
    """A 2-D float array (n, k) without NaN; a 1-D input becomes one column."""
    pre = prefix(cohort)
    arr = _as_float(scores, name, pre)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise StatsError(f"{pre}{name} must be a (cases, scores) matrix; got shape {arr.shape}")
    if arr.shape[0] != n:
        raise StatsError(f"{pre}{name} has {arr.shape[0]} rows but y has {n}")
    if arr.shape[1] == 0:
        raise StatsError(f"{pre}{name} has no columns")
    return _no_nan(arr, name, pre)


def check_classes(classes: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(c) for c in classes)
    except (TypeError, ValueError):
        raise StatsError(f"classes must be integers; got {classes!r}") from None
    if len(out) < 2:
        raise StatsError(f"classes must name at least two classes; got {out}")
    if len(set(out)) != len(out):
        raise StatsError(f"classes must be distinct; got {out}")
    if any(float(c) != float(o) for c, o in zip(classes, out, strict=True)):
        raise StatsError(f"classes must be integers; got {classes!r}")
    return out


def class_labels(
    y: Any, classes: tuple[int, ...], *, name: str = "y", cohort: str | None = None
) -> np.ndarray:
    """Map labels onto column indices 0..K-1 of ``classes``; every label must be one of them."""
    pre = prefix(cohort)
    num = _no_nan(_as_float(_label_vector(y, name, pre), name, pre), name, pre)
    lookup = np.asarray(classes, dtype=float)
    bad = ~np.isin(num, lookup)
    if bad.any():
        found = np.unique(num[bad])[:5]
        shown = [int(v) if float(v).is_integer() else float(v) for v in found]
        raise StatsError(f"{pre}{name} has labels {shown} outside classes {list(classes)}")
    order = np.argsort(lookup)
    return order[np.searchsorted(lookup[order], num)]


def proba_matrix(
    proba: Any,
    n: int,
    n_classes: int,
    *,
    name: str = "proba",
    cohort: str | None = None,
    unit_interval: bool = False,
) -> np.ndarray:
    """A (n, K) float matrix without NaN; optionally every value within [0, 1]."""
    pre = prefix(cohort)
    arr = _as_float(proba, name, pre)
    if arr.ndim != 2 or arr.shape[1] != n_classes:
        raise StatsError(
            f"{pre}{name} must have shape (cases, {n_classes}) (one column per class); "
            f"got {arr.shape}"
        )
    if arr.shape[0] != n:
        raise StatsError(f"{pre}{name} has {arr.shape[0]} rows but y has {n}")
    _no_nan(arr, name, pre)
    if unit_interval and ((arr < 0).any() or (arr > 1).any()):
        raise StatsError(f"{pre}{name} must hold probabilities within [0, 1]")
    if not unit_interval and not np.isfinite(arr).all():
        raise StatsError(f"{pre}{name} contains infinite values")
    return arr


def z_critical(level: float) -> float:
    """The two-sided normal quantile ``Phi^-1(1 - (1 - level) / 2)``."""
    return float(_sps.norm.isf((1.0 - level) / 2.0))


def normal_p_value(z: float, alternative: str) -> float:
    """P-value of a standard normal statistic, from survival functions, clipped to [0, 1]."""
    if np.isnan(z):
        return float("nan")
    if alternative == "two-sided":
        p = 2.0 * _sps.norm.sf(abs(z))
    elif alternative == "greater":
        p = _sps.norm.sf(z)
    else:
        p = _sps.norm.cdf(z)
    return float(min(1.0, max(0.0, p)))


def t_p_value(t: float, df: float, alternative: str) -> float:
    """P-value of a Student t statistic with ``df`` degrees of freedom, clipped to [0, 1]."""
    if np.isnan(t) or np.isnan(df):
        return float("nan")
    if alternative == "two-sided":
        p = 2.0 * _sps.t.sf(abs(t), df)
    elif alternative == "greater":
        p = _sps.t.sf(t, df)
    else:
        p = _sps.t.cdf(t, df)
    return float(min(1.0, max(0.0, p)))


def ratio(d: float, sd: float) -> float:
    """``d / sd`` with the convention 0 / 0 = 0 (no difference, no variance: z = 0, p = 1);
    a difference without variance is not estimable: NaN, never an infinite statistic."""
    if sd > 0:
        return float(d / sd)
    if d == 0:
        return 0.0
    return float("nan")


def clip(value: float, lo: float, hi: float) -> float:
    """``value`` clipped to [lo, hi]; NaN stays NaN."""
    if np.isnan(value):
        return float("nan")
    return float(min(hi, max(lo, value)))


def format_p(p: float) -> str:
    """R's ``format.pval`` style: four significant digits, ``< 2.2e-16`` below machine eps."""
    if np.isnan(p):
        return "p-value = NA"
    if p < np.finfo(float).eps:
        return "p-value < 2.2e-16"
    return f"p-value = {p:.4g}"


def alternative_text(alternative: str, what: str = "difference in AUC") -> str:
    tail = {"two-sided": "not equal to", "greater": "greater than", "less": "less than"}
    return f"alternative hypothesis: true {what} is {tail[alternative]} 0"
