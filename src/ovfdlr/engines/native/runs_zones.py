"""Numba kernels that count gray-level runs (GLRLM) and size zones (GLSZM), PyRadiomics-exact.

Both matrices are those of PyRadiomics 3.1 (``radiomics.cMatrices.calculate_glrlm`` /
``calculate_glszm``, C sources ``radiomics/src/cmatrices.c`` in AIM-Harvard/pyradiomics), for a
segment (not voxel-based) extraction whose bounding box is the whole array:

- Angles (:func:`generate_angles`) are PyRadiomics' distance-1 angles for the array's shape
  (``cMatrices.generate_angles(shape, [1], bidirectional, force2D, force2Ddimension)``): every
  offset in {-1, 0, 1}^3 except (0, 0, 0), leaving out offsets that move along a dimension of
  size 1 and, with ``force2D``, along ``force2Ddimension``; listed in lexicographically
  decreasing order, (1, 1, 1) first. One-directional (GLRLM) keeps the first half, the offsets
  whose first non-zero component is +1. No angle at all (a 1-voxel array) is PyRadiomics'
  ``RuntimeError("Error getting angle count.")``.
- GLRLM ``P[g - 1, l - 1, a]``: the number of maximal runs of ``l`` consecutive ROI voxels of gray
  level ``g`` along angle ``a`` (lines cut at the array's border and at voxels outside the ROI),
  ``l <= max(shape)``. An angle along which no line holds two or more ROI voxels is zeroed (the C
  code's ``multiElement`` check: such an angle sees a 2D ROI edge-on); the GLRLM class then
  drops it as an empty angle.
- GLSZM ``P[g - 1, s - 1]``: the number of connected zones of gray level ``g`` and ``s`` voxels,
  voxels connected through the bidirectional angles (26-connectivity in 3D, 8 in the plane with
  ``force2D``); the matrix has as many columns as the largest zone.

Why here rather than PyRadiomics: the matrices are counted on a copy of the gray levels padded
by one voxel of "outside" (so neighbour look-ups need no bounds checks), in one raster pass over
the ROI for all angles at once (GLRLM: each voxel extends the run length of its predecessor along
every angle and counts the runs that end at it; GLSZM: one flood fill per zone, started from the
pass), where the C code sweeps the box once per angle; in numba with ``nogil=True`` so that
threads can work on image types or cases in parallel. The matrices equal the C ones element for
element (tests/test_native_runs_zones.py compares them on random arrays).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numba
import numpy as np

__all__ = [
    "Roi",
    "generate_angles",
    "glrlm_matrix",
    "glszm_matrix",
    "prepare",
    "segment_settings",
]

#: Code of a padding voxel (outside the array) in :class:`Roi`'s codes.
OUTSIDE = -1


def generate_angles(
    shape: tuple[int, ...], *, bidirectional: bool, force2d: bool, force2d_dimension: int
) -> np.ndarray:
    """PyRadiomics' distance-1 angles for an array of ``shape``, ``(Na, Nd)`` in its order
    (:func:`ovfdlr.engines.native.neighbourhood.generate_angles`: offsets along a dimension of
    size 1, and along ``force2d_dimension`` under ``force2d``, left out). Raises
    ``RuntimeError`` when no angle is left, as PyRadiomics' C code does."""
    from ovfdlr.engines.native.neighbourhood import generate_angles as angles_for

    try:
        return angles_for(tuple(shape), [1], bidirectional, force2d, force2d_dimension)
    except ValueError as exc:
        raise RuntimeError("Error getting angle count.") from exc


def segment_settings(settings: Mapping[str, Any]) -> tuple[bool, int]:
    """``(force2D, force2Ddimension)`` from PyRadiomics' settings; rejects voxel-based mode."""
    if settings.get("voxelBased", False):
        raise ValueError("voxelBased: only segment-based extraction is implemented natively")
    return bool(settings.get("force2D", False)), int(settings.get("force2Ddimension", 0))


@numba.njit(cache=True, nogil=True)
def _padded_codes(binned: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes (ROI gray level, 0 elsewhere, :data:`OUTSIDE` in a one-voxel frame), a
    presence table of the ROI's gray levels and the ROI's voxel count; a gray level below 1 in
    the ROI makes the table empty (the caller refuses it)."""
    nz, ny, nx = binned.shape
    codes = np.full((nz + 2, ny + 2, nx + 2), OUTSIDE, dtype=np.int32)
    top = 0
    n_roi = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if mask[z, y, x]:
                    g = binned[z, y, x]
                    if g < 1:
                        return codes, np.zeros(0, dtype=np.bool_), n_roi
                    top = max(top, g)
                    n_roi += 1
                    codes[z + 1, y + 1, x + 1] = g
                else:
                    codes[z + 1, y + 1, x + 1] = 0
    present = np.zeros(top + 1, dtype=np.bool_)
    for z in range(1, nz + 1):
        for y in range(1, ny + 1):
            for x in range(1, nx + 1):
                present[codes[z, y, x]] = True
    present[0] = False
    return codes, present, n_roi


class Roi(NamedTuple):
    """The ROI prepared for the kernels (what ``_applyBinning`` derives, plus the codes)."""

    codes: np.ndarray  #: int32 (z + 2, y + 2, x + 2): gray level in the ROI, 0, OUTSIDE frame
    levels: np.ndarray  #: the gray levels present in the ROI, ascending (``grayLevels``)
    ng: int  #: the largest of them (``Ng``)
    n_roi: int  #: ROI voxels
    shape: tuple[int, int, int]  #: the array's shape (the bounding box)


def prepare(binned: np.ndarray, mask: np.ndarray) -> Roi:
    """Pad the binned ROI for the kernels and find its gray levels (``_applyBinning``'s
    ``grayLevels`` = unique values in the ROI, ``Ng`` = their maximum)."""
    if binned.ndim != 3 or binned.shape != mask.shape:
        raise ValueError(
            f"binned {binned.shape} and mask {mask.shape} must be 3D arrays of the same shape"
        )
    if not np.issubdtype(binned.dtype, np.integer):
        raise ValueError(f"binned gray levels must be integers, got {binned.dtype}")
    codes, present, n_roi = _padded_codes(
        np.ascontiguousarray(binned, dtype=np.int64), np.ascontiguousarray(mask, dtype=bool)
    )
    if n_roi == 0:
        raise ValueError("the mask holds no voxel (empty ROI)")
    if present.size == 0:
        raise ValueError("binned gray levels inside the mask must be >= 1")
    levels = np.flatnonzero(present)
    return Roi(codes, levels, int(levels[-1]), n_roi, tuple(binned.shape))


def _linear_offsets(angles: np.ndarray, padded_shape: tuple[int, ...]) -> np.ndarray:
    """Each angle as a step in the flattened (C-order) padded array."""
    strides = np.array(
        [int(np.prod(padded_shape[d + 1 :])) for d in range(len(padded_shape))], dtype=np.int64
    )
    return (angles.astype(np.int64) * strides[None, :]).sum(axis=1)


@numba.njit(cache=True, nogil=True)
def _count_runs(codes: np.ndarray, offsets: np.ndarray, ng: int, nr: int) -> np.ndarray:
    """GLRLM counts ``(ng, nr, Na)`` over the padded ``codes`` for every angle in one pass.

    In raster order, the run of angle ``a`` that ends at ROI voxel ``v`` has length 1 plus, if
    ``v - offset`` has the same gray level, the length at ``v - offset`` (kept in a ring buffer
    two slices deep: a predecessor is at most one slice back). The run is counted at ``v`` when
    ``v + offset`` has another code (other gray level, outside the ROI or the padding).
    Indices are unsigned so that numba emits no negative-index wrap-around checks.

    An angle along which no line holds two ROI voxels is zeroed afterwards (PyRadiomics'
    ``multiElement`` check): it has no run longer than 1, and walking back from each ROI voxel
    to the padding meets no other ROI voxel.
    """
    flat = codes.ravel()
    na = offsets.size
    pz, py, px = codes.shape
    ring = 1
    while ring < 2 * py * px:
        ring *= 2
    wrap = np.uint64(ring - 1)
    una = np.uint64(na)
    one = np.uint64(1)
    steps = offsets.astype(np.uint64)  # two's complement: v + step wraps to v - |offset|
    run = np.zeros(ring * na, dtype=np.int32)  # run length ending at a voxel, per angle
    counts = np.zeros(ng * nr * na, dtype=np.int64)
    for z in range(1, pz - 1):
        for y in range(1, py - 1):
            base = (z * py + y) * px
            for x in range(1, px - 1):
                v = np.uint64(base + x)
                g = flat[v]
                if g <= 0:
                    continue
                here = (v & wrap) * una
                row = np.uint64((g - 1) * nr) * una
                for a in range(na):
                    ua = np.uint64(a)
                    before = v - steps[a]
                    length = np.uint64((flat[before] == g) * run[(before & wrap) * una + ua] + 1)
                    run[here + ua] = length
                    counts[row + (length - one) * una + ua] += flat[v + steps[a]] != g
    matrix = counts.reshape((ng, nr, na))
    for a in range(na):
        if matrix[:, 1:, a].sum() > 0:
            continue
        off = offsets[a]
        multi = False
        for v in range(flat.size):
            if flat[v] > 0:
                w = v - off
                while flat[w] != OUTSIDE:
                    if flat[w] > 0:
                        multi = True
                        break
                    w -= off
                if multi:
                    break
        if not multi:
            matrix[:, :, a] = 0
    return matrix


@numba.njit(cache=True, nogil=True)
def _count_zones(codes: np.ndarray, offsets: np.ndarray, ng: int, n_roi: int) -> np.ndarray:
    """GLSZM counts ``(ng, largest zone)``: one flood fill per zone, consuming ``codes``.

    A voxel joins the zone when it is pushed, and its code is then set to 0 (as the C code
    clears its copy of the mask), so that each ROI voxel is pushed exactly once. Indices are
    unsigned (no negative-index checks); the one-voxel frame stops the fill at the border.
    """
    flat = codes.ravel()
    steps = offsets.astype(np.uint64)  # two's complement: k + step wraps to k - |offset|
    stack = np.empty(max(n_roi, 1), dtype=np.uint64)
    zone_level = np.empty(max(n_roi, 1), dtype=np.int32)
    zone_size = np.empty(max(n_roi, 1), dtype=np.int64)
    n_zones = 0
    largest = 0
    na = offsets.size
    pz, py, px = codes.shape
    for z in range(1, pz - 1):
        for y in range(1, py - 1):
            base = (z * py + y) * px
            for x in range(1, px - 1):
                v = np.uint64(base + x)
                g = flat[v]
                if g <= 0:
                    continue
                flat[v] = 0
                stack[0] = v
                top = 1
                size = 0
                while top > 0:
                    top -= 1
                    k = stack[top]
                    size += 1
                    for a in range(na):
                        j = k + steps[a]
                        if flat[j] == g:
                            flat[j] = 0
                            stack[top] = j
                            top += 1
                zone_level[n_zones] = g
                zone_size[n_zones] = size
                n_zones += 1
                largest = max(largest, size)
    counts = np.zeros((ng, max(largest, 1)), dtype=np.int64)
    for i in range(n_zones):
        counts[zone_level[i] - 1, zone_size[i] - 1] += 1
    return counts


def glrlm_matrix(
    roi: Roi, *, force2d: bool, force2d_dimension: int
) -> tuple[np.ndarray, np.ndarray]:
    """PyRadiomics' GLRLM ``(Ng, max(shape), Na)`` float64 and its angles ``(Na, 3)``.

    ``calculate_glrlm(binned, mask, Ng, max(shape), force2D, force2Ddimension)`` on the whole
    array, gray levels ``1..Ng`` (rows of levels absent from the ROI are all zero).
    """
    angles = generate_angles(
        roi.shape, bidirectional=False, force2d=force2d, force2d_dimension=force2d_dimension
    )
    offsets = _linear_offsets(angles, roi.codes.shape)
    counts = _count_runs(roi.codes, offsets, roi.ng, max(roi.shape))
    return counts.astype(np.float64), angles


def glszm_matrix(roi: Roi, *, force2d: bool, force2d_dimension: int) -> np.ndarray:
    """PyRadiomics' GLSZM ``(Ng, largest zone size)`` float64 (``calculate_glszm``).

    Leaves ``roi.codes`` as they were (the flood fill works on a copy).
    """
    angles = generate_angles(
        roi.shape, bidirectional=True, force2d=force2d, force2d_dimension=force2d_dimension
    )
    offsets = _linear_offsets(angles, roi.codes.shape)
    counts = _count_zones(roi.codes.copy(), offsets, roi.ng, roi.n_roi)
    return counts.astype(np.float64)
