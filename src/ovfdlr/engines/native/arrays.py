"""Array steps every texture class takes after counting, done as PyRadiomics does them.

PyRadiomics removes gray levels absent from the ROI and empty angles, run lengths, zone sizes
or dependences with ``numpy.delete``; numpy's summation order follows the memory layout that
call leaves (a C-ordered copy when one entry goes, an advanced-indexing layout otherwise), so
the same calls keep the features' sums bit-identical to PyRadiomics'. Features are averaged
over angles with ``numpy.nanmean``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def drop_absent_levels(
    matrix: np.ndarray, levels: np.ndarray, ng: int, axis: int = 0
) -> np.ndarray:
    """The matrix without the entries along ``axis`` of the gray levels ``1..ng`` that are not
    in ``levels`` (``numpy.delete`` with an index array, as PyRadiomics)."""
    absent = np.setdiff1d(np.arange(1, ng + 1), levels)
    return np.delete(matrix, absent - 1, axis)


def drop_empty(array: np.ndarray, empty: np.ndarray, axis: int) -> np.ndarray:
    """``array`` without the entries along ``axis`` where ``empty`` is True
    (``numpy.delete`` with ``numpy.where``'s tuple, as PyRadiomics)."""
    return np.delete(array, np.where(empty), axis)


def nanmean(values: np.ndarray) -> Any:
    """``numpy.nanmean`` over all elements (a feature over the angles); NaN, without numpy's
    warning, when none is a number."""
    if values.size == 0 or np.isnan(values).all():
        return np.nan
    return np.nanmean(values)
