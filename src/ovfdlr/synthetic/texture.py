"""Trabecular bone texture: vertical and horizontal struts whose balance follows bone density.

Two unit-variance Gaussian fields are drawn on the voxel grid with anisotropic band-pass
spectra defined in the vertebra's own frame (so the struts follow its tilt):

- ``V`` (vertical struts): Gaussian correlation ``sigma = (0.45, 0.45, 1.2)`` mm (x, y, z);
- ``Hz`` (horizontal struts): ``sigma = (0.9, 0.9, 0.45)`` mm.

Each transfer function is ``exp(-2 pi^2 k'Sk) (1 - exp(-2 pi^2 L^2 |k|^2)) prod_i sinc(k_i s_i)``
with ``S = R diag(sigma^2) R'``: a Gaussian low-pass that removes structure finer than the
struts, a high-pass (``L = 2.5`` mm) that removes marrow-scale blobs, and the voxel's box
footprint (spacing ``s``). Soft thresholds turn the fields into bone fractions

.. math::  f_v = \\operatorname{clip}((V - t_v)/r, 0, 1),\\quad
           f_h = \\operatorname{clip}((H_z - t_h)/r, 0, 1),\\quad
           f = 1 - (1 - f_v)(1 - f_h),

with ramp ``r = 2.5`` and thresholds ``t = Phi^{-1}(1 - p) - r/2`` for target fractions
``p_v = (1 - h) mean_f`` and ``p_h = h mean_f``. The horizontal share ``h`` falls with density
(``h = clip(0.1 + 0.35 (HU - 30) / 170, 0.1, 0.45)``): osteoporotic bone loses its horizontal
trabeculae first and keeps the vertical ones, the vertical striation seen on CT. The renderer
finally scales ``f`` so that the mean attenuation of the target's trabecular core,
``marrow (1 - f) + 500 f``, equals its ``trabecular_hu``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from .scanner import filtered_noise, frequency_axes

SIGMA_VERTICAL = (0.45, 0.45, 1.2)
SIGMA_HORIZONTAL = (0.9, 0.9, 0.45)
HIGHPASS_MM = 2.5
RAMP = 2.5


def horizontal_share(hu: float) -> float:
    """Fraction of trabecular bone in horizontal struts at a given mean trabecular HU."""
    return float(np.clip(0.1 + 0.35 * (hu - 30.0) / 170.0, 0.1, 0.45))


def _transfer(shape, spacing, R: np.ndarray, sigma) -> np.ndarray:
    kx, ky, kz = frequency_axes(shape, spacing)
    M = (R @ np.diag(np.asarray(sigma, dtype=float) ** 2) @ R.T).tolist()
    q = (
        M[0][0] * kx * kx
        + M[1][1] * ky * ky
        + M[2][2] * kz * kz
        + 2.0 * (M[0][1] * kx * ky + M[0][2] * kx * kz + M[1][2] * ky * kz)
    )
    c = float(2.0 * np.pi**2)
    k2 = kx * kx + ky * ky + kz * kz
    sx, sy, sz = (float(s) for s in spacing)
    box = np.sinc(kx * sx) * np.sinc(ky * sy) * np.sinc(kz * sz)
    out = np.exp(-c * q) * (1.0 - np.exp(-c * HIGHPASS_MM**2 * k2)) * box
    return out.astype(np.float32)


def strut_fields(rng: np.random.Generator, shape, spacing, R: np.ndarray):
    """The vertical and horizontal standardised fields ``(V, Hz)`` on a grid of ``shape``."""
    v = filtered_noise(rng, shape, _transfer(shape, spacing, R, SIGMA_VERTICAL))
    h = filtered_noise(rng, shape, _transfer(shape, spacing, R, SIGMA_HORIZONTAL))
    return v, h


def bone_fraction(v: np.ndarray, h: np.ndarray, mean_fraction: float, share: float) -> np.ndarray:
    """Soft-thresholded union of vertical and horizontal struts (see the module docstring)."""
    mean_fraction = float(np.clip(mean_fraction, 1e-3, 0.95))
    pv = np.clip((1.0 - share) * mean_fraction, 1e-4, 0.99)
    ph = np.clip(share * mean_fraction, 1e-4, 0.99)
    tv = float(ndtri(1.0 - pv)) - 0.5 * RAMP
    th = float(ndtri(1.0 - ph)) - 0.5 * RAMP
    fv = np.clip((v - tv) * (1.0 / RAMP), 0.0, 1.0)
    fh = np.clip((h - th) * (1.0 / RAMP), 0.0, 1.0)
    return 1.0 - (1.0 - fv) * (1.0 - fh)
