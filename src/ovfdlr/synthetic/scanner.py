"""Centres and their CT scanners: voxel grid, reconstruction sharpness, noise, calibration.

A scanner turns the ideal HU volume ``f`` (already averaged over each voxel's box footprint by the
partial-volume model) into the reconstructed image

.. math::  I = G_{\\sigma} * f + \\sigma_n\\,\\nu + \\delta,

where ``G_sigma`` is a Gaussian point-spread function with standard deviation ``blur_mm``
in-plane and ``blur_z_mm`` along z (the reconstruction kernel and the slice profile beyond the
box), ``nu`` is unit-variance correlated noise, ``sigma_n = noise_sd_hu`` and ``delta`` a
calibration offset (``hu_offset``). The noise has the shape of filtered-back-projection CT
noise: its amplitude spectrum is

.. math::

    A(k) = \\sqrt{|k_{xy}|}\\; e^{-2\\pi^2 \\sigma^2 k_{xy}^2}\\;
           e^{-2\\pi^2 (\\sigma_z/2)^2 k_z^2},

a ramp-filtered spectrum rolled off by the same kernel, so a sharp kernel gives fine-grained
noise and a smooth kernel coarse, blotchy noise. The result is rounded to int16 and clipped to
``[-1024, 3071]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import MappingProxyType

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

HU_MIN = -1024
HU_MAX = 3071

#: Field of view of every crop (x left-right, y antero-posterior, z superior), mm.
FOV_MM: tuple[float, float, float] = (70.0, 70.0, 64.0)


@dataclass(frozen=True)
class Centre:
    """A centre's CT protocol; per-case values are jittered around these."""

    name: str
    description: str
    spacing_inplane_mm: float
    slice_thickness_mm: float
    blur_mm: float
    blur_z_mm: float
    noise_sd_hu: float
    hu_offset: float
    cohorts: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


#: The three centres. A feeds the training and internal-validation cohorts, B the external and
#: C the prospective validation cohort.
CENTRES: MappingProxyType[str, Centre] = MappingProxyType(
    {
        "A": Centre(
            name="A",
            description="64-row scanner, sharp bone kernel, thin slices",
            spacing_inplane_mm=0.70,
            slice_thickness_mm=1.0,
            blur_mm=0.45,
            blur_z_mm=0.55,
            noise_sd_hu=15.0,
            hu_offset=0.0,
            cohorts=("train", "internal"),
        ),
        "B": Centre(
            name="B",
            description="16-row scanner, smooth soft-tissue kernel, thick slices",
            spacing_inplane_mm=0.85,
            slice_thickness_mm=2.0,
            blur_mm=0.85,
            blur_z_mm=0.9,
            noise_sd_hu=25.0,
            hu_offset=8.0,
            cohorts=("external",),
        ),
        "C": Centre(
            name="C",
            description="dual-source scanner, medium kernel, small pixels",
            spacing_inplane_mm=0.62,
            slice_thickness_mm=1.25,
            blur_mm=0.6,
            blur_z_mm=0.6,
            noise_sd_hu=20.0,
            hu_offset=-5.0,
            cohorts=("prospective",),
        ),
    }
)

#: Which centre scans each cohort by default.
COHORT_CENTRE: MappingProxyType[str, str] = MappingProxyType(
    {cohort: c.name for c in CENTRES.values() for cohort in c.cohorts}
)


def sample_scanner(rng: np.random.Generator, centres: np.ndarray) -> dict[str, np.ndarray]:
    """Per-case protocol values for an array of centre names (vectorised).

    In-plane spacing varies with the reconstructed field of view (+-4 %, kept in 0.6-0.9 mm);
    one case in five at centre B uses 2.5 mm slices; kernel blur varies +-10 %, noise +-15 %
    (patient size, dose modulation; kept in 10-30 HU) and the offset by N(0, 1.5) HU.
    """
    n = len(centres)
    table = {
        key: np.array([getattr(CENTRES[c], key) for c in centres], dtype=float)
        for key in (
            "spacing_inplane_mm",
            "slice_thickness_mm",
            "blur_mm",
            "blur_z_mm",
            "noise_sd_hu",
            "hu_offset",
        )
    }
    spacing = np.clip(table["spacing_inplane_mm"] * rng.uniform(0.96, 1.04, n), 0.6, 0.9)
    thick = table["slice_thickness_mm"].copy()
    thick[(centres == "B") & (rng.random(n) < 0.2)] = 2.5
    blur = table["blur_mm"] * rng.uniform(0.9, 1.1, n)
    blur_z = table["blur_z_mm"] * rng.uniform(0.9, 1.1, n)
    noise = np.clip(table["noise_sd_hu"] * rng.uniform(0.85, 1.15, n), 10.0, 30.0)
    offset = table["hu_offset"] + rng.normal(0.0, 1.5, n)
    return {
        "spacing_inplane_mm": np.round(spacing, 4),
        "slice_thickness_mm": thick,
        "blur_mm": np.round(blur, 4),
        "blur_z_mm": np.round(blur_z, 4),
        "noise_sd_hu": np.round(noise, 3),
        "hu_offset": np.round(offset, 3),
    }


# ----------------------------------------------------------------------------------------------
# grid
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A voxel grid in LPS with identity direction; arrays are indexed ``[z, y, x]``."""

    size: tuple[int, int, int]  # (nx, ny, nz)
    spacing: tuple[float, float, float]  # (sx, sy, sz) mm
    origin: tuple[float, float, float]  # world position of voxel (0, 0, 0), mm

    @classmethod
    def around(cls, centre, spacing, fov=FOV_MM) -> Grid:
        """The grid of ``fov`` mm centred on world point ``centre``."""
        size = tuple(max(4, round(f / s)) for f, s in zip(fov, spacing, strict=True))
        origin = tuple(
            float(c - 0.5 * (n - 1) * s) for c, n, s in zip(centre, size, spacing, strict=True)
        )
        return cls(size, tuple(float(s) for s in spacing), origin)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(nz, ny, nx)``."""
        return (self.size[2], self.size[1], self.size[0])

    def axis(self, i: int, sl: slice | None = None) -> np.ndarray:
        """World coordinates (float32) of axis ``i`` (0 = x), optionally restricted."""
        idx = np.arange(self.size[i], dtype=np.float64)
        if sl is not None:
            idx = idx[sl]
        return (self.origin[i] + idx * self.spacing[i]).astype(np.float32)

    def axes(self, box: tuple[slice, slice, slice] | None = None):
        """Broadcastable world coordinate arrays ``(x, y, z)`` over ``box`` (array order)."""
        bz, by, bx = box if box is not None else (slice(None),) * 3
        x = self.axis(0, bx)[None, None, :]
        y = self.axis(1, by)[None, :, None]
        z = self.axis(2, bz)[:, None, None]
        return x, y, z

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Array slices ``(z, y, x)`` covering the world box ``[lo, hi]``; None if empty."""
        out = []
        for i in (2, 1, 0):
            a = int(np.floor((lo[i] - self.origin[i]) / self.spacing[i]))
            b = int(np.ceil((hi[i] - self.origin[i]) / self.spacing[i])) + 1
            a, b = max(a, 0), min(b, self.size[i])
            if b <= a:
                return None
            out.append(slice(a, b))
        return tuple(out)

    def points(self, box=None) -> np.ndarray:
        """Voxel centres ``(nz, ny, nx, 3)`` (world x, y, z) over ``box``."""
        x, y, z = self.axes(box)
        return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


# ----------------------------------------------------------------------------------------------
# fields in the Fourier domain
# ----------------------------------------------------------------------------------------------


def frequency_axes(shape, spacing):
    """Broadcastable spatial frequencies (cycles/mm) ``kx, ky, kz`` of an rfft over ``shape``."""
    nz, ny, nx = shape
    sx, sy, sz = spacing
    kx = sfft.rfftfreq(nx, d=sx).astype(np.float32)[None, None, :]
    ky = sfft.fftfreq(ny, d=sy).astype(np.float32)[None, :, None]
    kz = sfft.fftfreq(nz, d=sz).astype(np.float32)[:, None, None]
    return kx, ky, kz


def filtered_noise(rng: np.random.Generator, shape, amplitude) -> np.ndarray:
    """Standardised real Gaussian field whose amplitude spectrum is ``amplitude`` (rfft layout).

    White complex Gaussian coefficients are drawn directly in the Fourier domain, shaped and
    transformed back once; ``amplitude`` must vanish at ``k = 0`` (the field has zero mean) and
    the result is scaled to unit root-mean-square.
    """
    half = tuple(amplitude.shape)
    coef = rng.standard_normal((*half, 2), dtype=np.float32)
    spec = coef.view(np.complex64)[..., 0]
    spec *= amplitude
    field = sfft.irfftn(spec, s=shape, workers=1)
    rms = float(np.sqrt(np.mean(np.square(field))))
    if rms > 0:
        field *= np.float32(1.0 / rms)
    return field


def ct_noise(rng: np.random.Generator, shape, spacing, blur_mm: float, blur_z_mm: float):
    """Unit-variance CT-like correlated noise (ramp spectrum rolled off by the kernel)."""
    kx, ky, kz = frequency_axes(shape, spacing)
    kr2 = kx * kx + ky * ky
    c = np.float32(2.0 * np.pi**2)
    amp = np.sqrt(np.sqrt(kr2)) * np.exp(-c * blur_mm**2 * kr2)
    amp = amp * np.exp(-c * (0.5 * blur_z_mm) ** 2 * kz * kz)
    return filtered_noise(rng, shape, amp.astype(np.float32))


def apply_scanner(
    clean: np.ndarray,
    grid: Grid,
    rng: np.random.Generator,
    *,
    blur_mm: float,
    blur_z_mm: float,
    noise_sd_hu: float,
    hu_offset: float,
    noise: bool = True,
    psf: bool = True,
) -> np.ndarray:
    """PSF blur, correlated noise and offset; returns int16 HU (see the module docstring)."""
    sx, sy, sz = grid.spacing
    img = clean
    if psf:
        sigma = (blur_z_mm / sz, blur_mm / sy, blur_mm / sx)
        img = ndimage.gaussian_filter(clean, sigma=sigma, mode="nearest", truncate=3.0)
    if noise and noise_sd_hu > 0:
        nu = ct_noise(rng, clean.shape, grid.spacing, blur_mm, blur_z_mm)
        img = img + np.float32(noise_sd_hu) * nu
    img = img + np.float32(hu_offset)
    return np.clip(np.rint(img), HU_MIN, HU_MAX).astype(np.int16)
