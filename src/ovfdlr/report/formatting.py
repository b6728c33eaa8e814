"""How numbers appear in the report: estimates with intervals, p-values, durations."""

from __future__ import annotations

import math

EN_DASH = "\u2013"
MISSING = EN_DASH  # shown for a missing value
P_TOLERANCE = 1e-9  # floating-point slack allowed around [0, 1] before a p-value is refused


def is_missing(value: object) -> bool:
    """True for None, NaN and empty strings."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def number(value: object, digits: int = 3) -> str:
    """A number with ``digits`` decimals (``digits=0`` for counts); a dash when missing."""
    if is_missing(value):
        return MISSING
    if isinstance(value, bool | int):
        return str(value)
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        return str(value)
    if digits == 0:
        return str(round(as_float))
    return f"{as_float:.{digits}f}"


def estimate(value: object, lower: object = None, upper: object = None, digits: int = 3) -> str:
    """``0.843 (0.746-0.941)``: an estimate with its confidence interval when there is one."""
    if is_missing(value):
        return MISSING
    text = number(value, digits)
    if not is_missing(lower) and not is_missing(upper):
        text += f" ({number(lower, digits)}{EN_DASH}{number(upper, digits)})"
    return text


def p_value(value: object) -> str:
    """A p-value as ``< 0.001`` or with three decimals, always within [0, 1].

    A value outside [0, 1] (beyond floating-point slack) is not a p-value: it raises
    :class:`ValueError` instead of being printed.
    """
    if is_missing(value):
        return MISSING
    p = float(value)
    if p < -P_TOLERANCE or p > 1 + P_TOLERANCE:
        raise ValueError(f"p-value {p!r} is outside [0, 1]")
    p = min(max(p, 0.0), 1.0)
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}"


def seconds(value: object) -> str:
    """A duration: ``0.4 s``, ``12.3 s``, ``4 min 05 s``, ``1 h 02 min``."""
    if is_missing(value):
        return MISSING
    total = float(value)
    if total < 60:
        return f"{total:.1f} s"
    minutes, secs = divmod(round(total), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
