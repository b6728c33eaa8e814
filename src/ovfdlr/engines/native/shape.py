"""Native 3-D shape features, equal to PyRadiomics' ``radiomics.shape.RadiomicsShape`` (3.1.4).

Why this is written here rather than calling PyRadiomics: PyRadiomics pads the mask with
SimpleITK, runs its marching cubes in C and then compares *every* pair of mesh vertices for the
four maximum diameters (quadratic in the surface size, the bulk of its run time), all under the
GIL.  Here one numba kernel (``nogil``, cached) walks the padded mask once, builds the very same
mesh (PyRadiomics' lookup tables in :mod:`.mesh_tables`, same vertex placement, same triangle
order, so the volume and area sums are accumulated in the same order and come out bit-identical)
and finds the diameters among far fewer candidate vertices (see :func:`_diameters`), so threads
can take cases in parallel.

Mesh (PyRadiomics ``cshape.c``, ``calculate_coefficients``): the mask is padded by one voxel on
every side; a 2x2x2 cube visits every voxel position ``(iz, iy, ix)`` of the padded array but the
last in each dimension; corner ``k`` at ``(iz, iy, ix) + GRID_ANGLES[k]`` sets bit ``k`` of the
cube index ``c``; if ``c >= 128`` it is replaced by ``c ^ 0xFF`` and the volume sign becomes -1.
Each triangle ``(a, b, c)`` of ``TRI_TABLE[c]`` has the vertices ``p = ((iz, iy, ix) + VERT_LIST[e])
* spacing`` (z, y, x order, millimetres) and adds

- to the volume: ``sign * (a x b) . c``, six times the signed volume of the tetrahedron
  (origin, a, b, c) (the total is divided by 6 at the end),
- to the area: ``0.5 * |(a - c) x (b - c)|``,

both summed in PyRadiomics' order (z, then y, then x, then the triangles of the cube).  Cubes
with all corners equal add nothing and are skipped; each step along x reads only the 4 new corners.

Diameters: the mesh vertices are the midpoints of the edges between a voxel in the ROI and a
6-neighbour outside it; ``Maximum3DDiameter`` is the largest vertex-to-vertex distance,
``Maximum2DDiameterSlice`` / ``Column`` / ``Row`` the largest between vertices with equal z / y / x
coordinate (an exact floating-point equality test in PyRadiomics, the same here).

PCA (``_initSegmentBasedCalculation``): the voxel centres of the padded mask in physical units
(index * spacing, z, y, x), centred on their mean and divided by sqrt(N_v); the eigenvalues
``lambda_least <= lambda_minor <= lambda_major`` of their covariance (``numpy.linalg.eigvals``;
values in (-1e-10, 0) are rounded to 0, as PyRadiomics does).  This part runs the very numpy
operations PyRadiomics runs, so it is bit-identical too.

Features (V: mesh volume, A: surface area, N_v: voxels in the ROI; deprecated ones are only
computed when named explicitly):

=========================  ========================================================  ==========
name                       formula                                                   deprecated
=========================  ========================================================  ==========
MeshVolume                 V = sum_f sign_f (a_f x b_f) . c_f / 6
VoxelVolume                N_v * (s_z * s_x * s_y)
SurfaceArea                A = sum_f |(a_f - c_f) x (b_f - c_f)| / 2
SurfaceVolumeRatio         A / V
Sphericity                 (36 pi V^2)^(1/3) / A
Compactness1               V / (A^(3/2) sqrt(pi))                                    yes
Compactness2               36 pi V^2 / A^3                                           yes
SphericalDisproportion     A / (36 pi V^2)^(1/3)                                     yes
Maximum3DDiameter          max |p - q| over mesh vertices p, q
Maximum2DDiameterSlice     max |p - q| over vertices with p_z == q_z
Maximum2DDiameterColumn    max |p - q| over vertices with p_y == q_y
Maximum2DDiameterRow       max |p - q| over vertices with p_x == q_x
MajorAxisLength            4 sqrt(lambda_major)            (NaN if lambda_major < 0)
MinorAxisLength            4 sqrt(lambda_minor)            (NaN if lambda_minor < 0)
LeastAxisLength            4 sqrt(lambda_least)            (NaN if lambda_least < 0)
Elongation                 sqrt(lambda_minor / lambda_major)
Flatness                   sqrt(lambda_least / lambda_major)
=========================  ========================================================  ==========
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numba
import numpy as np

from ovfdlr.engines.catalogue import FEATURES

from .mesh_tables import TRI_TABLE, VERT_LIST

__all__ = ["FEATURE_NAMES", "compute", "mesh_coefficients"]

#: PyRadiomics' ``RadiomicsShape.getFeatureNames()``: name -> deprecated?
FEATURE_NAMES: dict[str, bool] = FEATURES["shape"]  # PyRadiomics' names, deprecated flags

# Corners (bit k of the cube index) and the edge vertices PyRadiomics stores per cube for the
# diameters: edge 6 (corners 7-6), 7 (7-4) and 11 (3-7) all touch corner 7, which is never set
# after the >= 128 flip, so a vertex lies on them exactly when corner 6, 4 resp. 3 is set.
_STORE_CORNERS = np.array([6, 4, 3], dtype=np.int64)
_STORE_EDGES = np.array([6, 7, 11], dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _mesh(mask, spacing, vert, tri, store_corners, store_edges):  # pragma: no cover - numba
    """Marching cubes over the padded mask: (area, volume, vertex half-indices, vertex count).

    Vertices are returned as integer half-indices ``h = 2 * (padded index + VERT_LIST offset)``
    (z, y, x), so that a vertex coordinate is exactly ``(h * 0.5) * spacing`` -- the value
    PyRadiomics computes as ``(double(i) + offset) * spacing`` (``i + offset`` is exact).
    """
    nz, ny, nx = mask.shape
    pz, py, px = nz + 2, ny + 2, nx + 2
    pad = np.zeros((pz, py, px), dtype=np.uint8)
    n_roi = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if mask[z, y, x]:
                    pad[z + 1, y + 1, x + 1] = 1
                    n_roi += 1
    # every vertex sits on one face of one ROI voxel
    verts = np.empty((6 * n_roi, 3), dtype=np.int32)
    nv = 0
    s0 = spacing[0]
    s1 = spacing[1]
    s2 = spacing[2]
    area = 0.0
    volume = 0.0
    for iz in range(pz - 1):
        for iy in range(py - 1):
            # corners at x = ix + 1 (bits 1, 2, 5, 6) become those at x = ix (bits 0, 3, 4, 7)
            # of the next cube: read only the 4 new ones per step
            nxt = 0
            if pad[iz, iy, 0]:
                nxt |= 1
            if pad[iz, iy + 1, 0]:
                nxt |= 8
            if pad[iz + 1, iy, 0]:
                nxt |= 16
            if pad[iz + 1, iy + 1, 0]:
                nxt |= 128
            for ix in range(px - 1):
                idx = nxt
                nxt = 0
                if pad[iz, iy, ix + 1]:
                    idx |= 2
                    nxt |= 1
                if pad[iz, iy + 1, ix + 1]:
                    idx |= 4
                    nxt |= 8
                if pad[iz + 1, iy, ix + 1]:
                    idx |= 32
                    nxt |= 16
                if pad[iz + 1, iy + 1, ix + 1]:
                    idx |= 64
                    nxt |= 128
                if idx == 0 or idx == 0xFF:
                    continue  # no surface, no stored vertex (corners 3, 4, 6 equal corner 7)
                if idx & 0x80:
                    idx ^= 0xFF
                    sign = -1.0
                else:
                    sign = 1.0
                for t in range(3):
                    if idx & (1 << store_corners[t]):
                        e = store_edges[t]
                        verts[nv, 0] = 2 * iz + int(2.0 * vert[e, 0])
                        verts[nv, 1] = 2 * iy + int(2.0 * vert[e, 1])
                        verts[nv, 2] = 2 * ix + int(2.0 * vert[e, 2])
                        nv += 1
                fz = float(iz)
                fy = float(iy)
                fx = float(ix)
                t = 0
                while tri[idx, 3 * t] >= 0:
                    ea = tri[idx, 3 * t]
                    eb = tri[idx, 3 * t + 1]
                    ec = tri[idx, 3 * t + 2]
                    a0 = (fz + vert[ea, 0]) * s0
                    a1 = (fy + vert[ea, 1]) * s1
                    a2 = (fx + vert[ea, 2]) * s2
                    b0 = (fz + vert[eb, 0]) * s0
                    b1 = (fy + vert[eb, 1]) * s1
                    b2 = (fx + vert[eb, 2]) * s2
                    c0 = (fz + vert[ec, 0]) * s0
                    c1 = (fy + vert[ec, 1]) * s1
                    c2 = (fx + vert[ec, 2]) * s2
                    # signed volume of the tetrahedron (origin, a, b, c), times 6
                    x0 = a1 * b2 - b1 * a2
                    x1 = a2 * b0 - b2 * a0
                    x2 = a0 * b1 - b0 * a1
                    volume += sign * (x0 * c0 + x1 * c1 + x2 * c2)
                    # area: half the norm of (a - c) x (b - c)
                    a0 -= c0
                    a1 -= c1
                    a2 -= c2
                    b0 -= c0
                    b1 -= c1
                    b2 -= c2
                    x0 = a1 * b2 - b1 * a2
                    x1 = a2 * b0 - b2 * a0
                    x2 = a0 * b1 - b0 * a1
                    area += 0.5 * math.sqrt(x0 * x0 + x1 * x1 + x2 * x2)
                    t += 1
    volume = volume / 6
    return area, volume, verts[:nv], n_roi


@numba.njit(cache=True, nogil=True)
def _line_extremes(h, keep, axis, extent):  # pragma: no cover - numba
    """Keep only the first and last kept vertex of every line parallel to ``axis``.

    A vertex strictly between two others on a line is no corner of their convex hull, and the
    largest distance from any point to a segment's points is reached at one of its ends, so
    dropping it changes no maximum distance (also within the planes containing the line).
    """
    a1 = 1 if axis == 0 else 0
    a2 = 1 if axis == 2 else 2
    n2 = extent[a2]
    size = extent[a1] * n2
    lo = np.full(size, np.iinfo(np.int32).max, dtype=np.int32)
    hi = np.full(size, -1, dtype=np.int32)
    n = h.shape[0]
    for i in range(n):
        if keep[i]:
            key = h[i, a1] * n2 + h[i, a2]
            v = h[i, axis]
            lo[key] = min(lo[key], v)
            hi[key] = max(hi[key], v)
    out = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        if keep[i]:
            key = h[i, a1] * n2 + h[i, a2]
            v = h[i, axis]
            out[i] = v == lo[key] or v == hi[key]
    return out


@numba.njit(cache=True, nogil=True)
def _max_sq_distance(p, idx):  # pragma: no cover - numba
    """Largest squared distance over all pairs of the points ``p[idx]`` (PyRadiomics' arithmetic).

    Pairs are visited by decreasing distance of their points from the centroid ``g``; as
    ``|a - b| <= |a - g| + |b - g|``, a pair (and every later one in its row) is skipped once that
    bound falls short of the best distance by far more than rounding (relative 1e-9), so the
    maximum is unchanged.
    """
    m = idx.shape[0]
    if m < 2:
        return 0.0
    g0 = 0.0
    g1 = 0.0
    g2 = 0.0
    for i in range(m):
        g0 += p[idx[i], 0]
        g1 += p[idx[i], 1]
        g2 += p[idx[i], 2]
    g0 /= m
    g1 /= m
    g2 /= m
    r = np.empty(m)
    for i in range(m):
        d0 = p[idx[i], 0] - g0
        d1 = p[idx[i], 1] - g1
        d2 = p[idx[i], 2] - g2
        r[i] = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
    order = np.argsort(-r)
    best = 0.0
    for ii in range(m - 1):
        i = order[ii]
        ri = r[i]
        bound = ri + r[order[ii + 1]]
        if bound * bound < best * (1.0 - 1e-9):
            break
        a0 = p[idx[i], 0]
        a1 = p[idx[i], 1]
        a2 = p[idx[i], 2]
        for jj in range(ii + 1, m):
            j = order[jj]
            bound = ri + r[j]
            if bound * bound < best * (1.0 - 1e-9):
                break
            d0 = a0 - p[idx[j], 0]
            d1 = a1 - p[idx[j], 1]
            d2 = a2 - p[idx[j], 2]
            dist = d0 * d0 + d1 * d1 + d2 * d2
            if dist > best:
                best = dist
    return best


@numba.njit(cache=True, nogil=True)
def _max_sq_distance_planes(h, p, keep, axis):  # pragma: no cover - numba
    """Largest squared distance over pairs of kept points with equal coordinate on ``axis``."""
    idx = np.nonzero(keep)[0]
    order = idx[np.argsort(h[idx, axis], kind="mergesort")]
    best = 0.0
    start = 0
    m = order.shape[0]
    while start < m:
        stop = start + 1
        plane = h[order[start], axis]
        while stop < m and h[order[stop], axis] == plane:
            stop += 1
        d = _max_sq_distance(p, order[start:stop])
        if d > best:
            best = d
        start = stop
    return best


@numba.njit(cache=True, nogil=True)
def _diameters(h, spacing, shape):  # pragma: no cover - numba
    """PyRadiomics' four mesh diameters (Slice, Column, Row, 3D) from vertex half-indices.

    PyRadiomics compares all vertex pairs.  The maxima are the same over the vertices that
    survive dropping the interior vertices of axis-parallel lines (:func:`_line_extremes`): along
    x, y and z for the 3-D diameter, along the two in-plane axes for a per-plane one.  Distances
    are then computed with PyRadiomics' arithmetic on the same coordinates.
    """
    n = h.shape[0]
    p = np.empty((n, 3))
    for i in range(n):
        for d in range(3):
            p[i, d] = (h[i, d] * 0.5) * spacing[d]
    extent = np.empty(3, dtype=np.int64)
    for d in range(3):
        extent[d] = 2 * (shape[d] + 2) + 1
    keep = np.ones(n, dtype=np.bool_)
    keep_x = _line_extremes(h, keep, 2, extent)
    keep_xy = _line_extremes(h, keep_x, 1, extent)
    keep_xyz = _line_extremes(h, keep_xy, 0, extent)
    keep_xz = _line_extremes(h, keep_x, 0, extent)
    keep_yz = _line_extremes(h, _line_extremes(h, keep, 1, extent), 0, extent)
    out = np.empty(4)
    out[0] = math.sqrt(_max_sq_distance_planes(h, p, keep_xy, 0))
    out[1] = math.sqrt(_max_sq_distance_planes(h, p, keep_xz, 1))
    out[2] = math.sqrt(_max_sq_distance_planes(h, p, keep_yz, 2))
    out[3] = math.sqrt(_max_sq_distance(p, np.nonzero(keep_xyz)[0]))
    return out


@numba.njit(cache=True, nogil=True)
def _padded_coordinates(mask, n):  # pragma: no cover - numba
    """``numpy.array(numpy.where(padded_mask))`` for the mask padded by one voxel: (3, n) int64."""
    out = np.empty((3, n), dtype=np.int64)
    nz, ny, nx = mask.shape
    k = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if mask[z, y, x]:
                    out[0, k] = z + 1
                    out[1, k] = y + 1
                    out[2, k] = x + 1
                    k += 1
    return out


def mesh_coefficients(
    mask: np.ndarray, spacing_zyx: np.ndarray
) -> tuple[float, float, np.ndarray, int]:
    """PyRadiomics' ``cShape.calculate_coefficients`` on the (unpadded) cropped mask.

    Returns (surface area, mesh volume, diameters [Slice, Column, Row, 3D], number of voxels).
    """
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    spacing_zyx = np.ascontiguousarray(spacing_zyx, dtype=np.float64)
    area, volume, verts, n_roi = _mesh(
        mask, spacing_zyx, VERT_LIST, TRI_TABLE, _STORE_CORNERS, _STORE_EDGES
    )
    shape = np.array(mask.shape, dtype=np.int64)
    diameters = _diameters(verts, spacing_zyx, shape)
    return float(area), float(volume), diameters, int(n_roi)


def _eigenvalues(mask: np.ndarray, spacing_zyx: np.ndarray, n: int) -> np.ndarray:
    """PyRadiomics' PCA eigenvalues, sorted ascending (the same numpy calls, bit-identical).

    The voxel indices are those of the padded mask (+1 per axis), as in PyRadiomics, and the
    arrays have PyRadiomics' memory layouts, so numpy sums in the same order.
    """
    coordinates = _padded_coordinates(mask, n).transpose((1, 0))
    physical = coordinates * spacing_zyx[None, :]
    physical -= np.mean(physical, axis=0)
    physical /= np.sqrt(n)
    covariance = np.dot(physical.T.copy(), physical)
    eigen = np.linalg.eigvals(covariance)
    machine_errors = np.bitwise_and(eigen < 0, eigen > -1e-10)
    if np.sum(machine_errors) > 0:
        eigen[machine_errors] = 0
    eigen.sort()
    return eigen


def _axis(value: Any) -> float:
    """``4 sqrt(lambda)``, NaN for a negative eigenvalue (PyRadiomics' axis lengths).

    ``eigvals`` of the symmetric covariance can come back complex with ~1e-16 imaginary parts when
    eigenvalues coincide (e.g. a cube); PyRadiomics then returns complex features.  The same
    complex arithmetic is done here and the real part returned.
    """
    if value < 0:
        return math.nan
    return float(np.real(np.sqrt(value) * 4))


def _ratio(num: Any, den: Any) -> float:
    """``sqrt(num / den)`` (Elongation, Flatness): NaN for negative eigenvalues or 0 / 0."""
    if num < 0 or den < 0:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.real(np.sqrt(num / den)))


def _guard(func: Any) -> float:
    """Evaluate one feature; an arithmetic error gives NaN (PyRadiomics catches and logs it)."""
    try:
        return float(func())
    except (ArithmeticError, ValueError, TypeError):
        return math.nan


def compute(
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """3-D shape features of a cropped ROI, equal to PyRadiomics' ``RadiomicsShape``.

    ``mask``: boolean (z, y, x) array cropped to the ROI's bounding box (``cropToTumorMask``,
    padDistance 0); ``spacing``: SimpleITK's (x, y, z) spacing; ``settings``: PyRadiomics'
    resolved settings (only ``voxelBased`` matters: shape has no voxel-based mode); ``names``: the
    features to compute (None: every non-deprecated one).
    """
    if settings.get("voxelBased", False):
        raise ValueError("voxelBased: shape features are not available in voxel-based mode")
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError("mask must be 3-D (z, y, x); 2-D shape features are shape2D")
    mask = mask.astype(bool, copy=False)
    if names is None:
        wanted = [n for n, deprecated in FEATURE_NAMES.items() if not deprecated]
    else:
        wanted = list(names)
        unknown = [n for n in wanted if n not in FEATURE_NAMES]
        if unknown:
            raise LookupError(f"Feature not found: {unknown[0]}")
    if not wanted:
        return {}
    spacing_zyx = np.array(tuple(spacing)[::-1], dtype=np.float64)
    if not mask.any():
        raise ValueError("mask: the ROI is empty")
    mask = np.ascontiguousarray(mask)

    out: dict[str, float] = {}
    mesh_names = {
        "MeshVolume",
        "SurfaceArea",
        "SurfaceVolumeRatio",
        "Sphericity",
        "Compactness1",
        "Compactness2",
        "SphericalDisproportion",
        "Maximum3DDiameter",
        "Maximum2DDiameterSlice",
        "Maximum2DDiameterColumn",
        "Maximum2DDiameterRow",
    }
    pca_names = {
        "MajorAxisLength",
        "MinorAxisLength",
        "LeastAxisLength",
        "Elongation",
        "Flatness",
    }
    if mesh_names.intersection(wanted):
        area, volume, diameters, n_roi = mesh_coefficients(mask, spacing_zyx)
    else:
        area = volume = math.nan
        diameters = np.full(4, math.nan)
        n_roi = int(np.count_nonzero(mask))
    ev = _eigenvalues(mask, spacing_zyx, n_roi) if pca_names.intersection(wanted) else None
    sz, sy, sx = spacing_zyx
    pi = np.pi
    formulas = {  # PyRadiomics' expressions, in its order of operations (Python floats)
        "MeshVolume": lambda: volume,
        "VoxelVolume": lambda: n_roi * (sz * sx * sy),
        "SurfaceArea": lambda: area,
        "SurfaceVolumeRatio": lambda: area / volume,
        "Sphericity": lambda: (36 * pi * volume**2) ** (1.0 / 3.0) / area,
        "Compactness1": lambda: volume / (area ** (3.0 / 2.0) * np.sqrt(pi)),
        "Compactness2": lambda: (36.0 * pi) * (volume**2.0) / (area**3.0),
        "SphericalDisproportion": lambda: area / (36 * pi * volume**2) ** (1.0 / 3.0),
        "Maximum3DDiameter": lambda: diameters[3],
        "Maximum2DDiameterSlice": lambda: diameters[0],
        "Maximum2DDiameterColumn": lambda: diameters[1],
        "Maximum2DDiameterRow": lambda: diameters[2],
        "MajorAxisLength": lambda: _axis(ev[2]),
        "MinorAxisLength": lambda: _axis(ev[1]),
        "LeastAxisLength": lambda: _axis(ev[0]),
        "Elongation": lambda: _ratio(ev[1], ev[2]),
        "Flatness": lambda: _ratio(ev[0], ev[2]),
    }
    for name in wanted:
        out[name] = _guard(formulas[name])
    return out
