r"""Neighbouring Gray Tone Difference Matrix features, PyRadiomics 3.1's ``RadiomicsNGTDM``.

For every ROI voxel of gray level ``i`` the neighbourhood is the ROI voxels at the bidirectional
offsets of :func:`ovfdlr.engines.native.neighbourhood.generate_angles` (the 26 around it for
distance 1 in 3D; voxels outside the mask or the array are left out, not padded), ``A`` their
mean gray level. ``n_i`` counts the ROI voxels of level ``i`` -- all of them: a voxel without any
neighbour in the ROI still counts, with difference 0 (PyRadiomics' docstring says such voxels
are excluded, its C code keeps them, and so does this) -- and ``s_i = sum |i - A|`` over them.
Gray levels with ``n_i = 0`` are removed. With ``Nvp = sum n_i``, ``p_i = n_i / Nvp`` and
``Ngp`` the number of gray levels left (sums over those levels):

==========  ========================================================================================
Coarseness  1 / sum_i p_i s_i; 1e6 where the sum is 0
Contrast    (sum_ij p_i p_j (i - j)^2) (sum_i s_i) / Nvp / (Ngp (Ngp - 1)); 0 where Ngp = 1
Busyness    sum_i p_i s_i / sum_ij |i p_i - j p_j|; 0 where the denominator is 0
Complexity  sum_ij |i - j| (p_i s_i + p_j s_j) / (p_i + p_j) / Nvp
Strength    sum_ij (p_i + p_j) (i - j)^2 / sum_i s_i; 0 where sum_i s_i = 0
==========  ========================================================================================

Written here rather than calling PyRadiomics: ``n_i`` and ``s_i`` come from the shared one-pass
numba kernel (:mod:`ovfdlr.engines.native.neighbourhood`, no GIL, counted together with the GLCM
and GLDM, ``s_i`` accumulated in the same voxel order); the features use PyRadiomics' numpy
expressions on the same arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ovfdlr.engines.catalogue import FEATURES, resolve_names
from ovfdlr.engines.native.neighbourhood import (
    NeighbourhoodMatrices,
)

__all__ = ["FEATURE_NAMES", "compute", "features_from_matrices"]

#: PyRadiomics' ``RadiomicsNGTDM.getFeatureNames()``: name -> deprecated.
FEATURE_NAMES: dict[str, bool] = FEATURES["ngtdm"]  # PyRadiomics' names, deprecated flags


class _Coefficients:
    """``p_i``, ``s_i``, ``i``, ``Nvp`` and ``Ngp`` over the gray levels with ``n_i > 0``."""

    def __init__(self, n: np.ndarray, s: np.ndarray):
        present = n != 0
        counts = n[present].astype(np.float64)
        self.s_i = s[present]
        self.ivector = (np.flatnonzero(present) + 1).astype(np.float64)
        self.nvp = np.sum(counts)
        self.p_i = counts / self.nvp
        self.ngp = int(np.sum(counts > 0))


def _coarseness(c: _Coefficients) -> Any:
    total = np.sum(c.p_i * c.s_i)
    return 1 / total if total != 0 else 1e6


def _contrast(c: _Coefficients) -> Any:
    div = c.ngp * (c.ngp - 1)
    i = c.ivector
    contrast = (
        np.sum(c.p_i[:, None] * c.p_i[None, :] * (i[:, None] - i[None, :]) ** 2)
        * np.sum(c.s_i)
        / c.nvp
    )
    return contrast / div if div != 0 else 0.0


def _busyness(c: _Coefficients) -> Any:
    i_pi = c.ivector * c.p_i
    absdiff = np.sum(np.abs(i_pi[:, None] - i_pi[None, :]))
    busyness = np.sum(c.p_i * c.s_i)
    return busyness / absdiff if absdiff != 0 else 0.0


def _complexity(c: _Coefficients) -> Any:
    pi_si = c.p_i * c.s_i
    numerator = pi_si[:, None] + pi_si[None, :]
    divisor = c.p_i[:, None] + c.p_i[None, :]
    divisor[divisor == 0] = 1
    i = c.ivector
    return np.sum(np.abs(i[:, None] - i[None, :]) * numerator / divisor) / c.nvp


def _strength(c: _Coefficients) -> Any:
    sum_s_i = np.sum(c.s_i)
    i = c.ivector
    strength = np.sum((c.p_i[:, None] + c.p_i[None, :]) * (i[:, None] - i[None, :]) ** 2)
    return strength / sum_s_i if sum_s_i != 0 else 0.0


_FEATURES: dict[str, Callable[[_Coefficients], Any]] = {
    "Busyness": _busyness,
    "Coarseness": _coarseness,
    "Complexity": _complexity,
    "Contrast": _contrast,
    "Strength": _strength,
}


def features_from_matrices(
    matrices: NeighbourhoodMatrices,
    spacing: tuple[float, float, float],
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """The NGTDM features from the kernel's sums (``matrices.ngtdm_n``/``ngtdm_s`` present)."""
    chosen = resolve_names(names, FEATURE_NAMES)
    if matrices.ngtdm_n is None or matrices.ngtdm_s is None:
        raise ValueError("the neighbourhood matrices were counted without the NGTDM")
    coefficients = _Coefficients(matrices.ngtdm_n, matrices.ngtdm_s)
    out: dict[str, float] = {}
    with np.errstate(all="ignore"):
        for name in chosen:
            out[name] = float(_FEATURES[name](coefficients))
    return out


def compute(
    binned: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """PyRadiomics' NGTDM features of the ROI ``mask`` in the binned image ``binned``
    (z, y, x); ``names`` None: every non-deprecated feature (this class alone through
    :func:`ovfdlr.engines.native.texture.compute_classes`)."""
    from ovfdlr.engines.native.texture import compute_classes

    return compute_classes(binned, mask, spacing, settings, {"ngtdm": names})["ngtdm"]
