r"""One numba pass over the ROI counting the GLCM, GLDM and NGTDM (PyRadiomics 3.1, segment-based).

Written here rather than calling PyRadiomics' ``cMatrices``: PyRadiomics bins the image and walks
the ROI once per class (three times for these three), in C that holds the GIL. Here one
``@numba.njit(nogil=True)`` kernel visits each ROI voxel once, looks at each neighbour once and
updates every requested matrix, so threads can take image types or cases in parallel.

API (what the engine and the class modules use)
-----------------------------------------------

``matrices = neighbourhood_matrices_for(binned, mask, settings, glcm=True, gldm=True, ngtdm=True)``
    Resolves the settings the three classes read (``distances``, ``force2D``,
    ``force2Ddimension``, ``gldm_a``, ``voxelBased``), the ROI's gray levels and ``Ng`` (as
    ``RadiomicsFeaturesBase._applyBinning``) and the angles (:func:`generate_angles`), then calls
    the kernel once and returns a :class:`NeighbourhoodMatrices`.
``neighbourhood_matrices(binned, mask, angles, Ng, want_glcm, want_gldm, want_ngtdm, gldm_a)``
    The kernel call itself for given (bidirectional) angles.
``glcm.features_from_matrices(matrices, spacing, settings, names)`` (likewise ``gldm``, ``ngtdm``)
    The features from precomputed matrices; each module's ``compute(binned, mask, spacing,
    settings, names)`` is ``neighbourhood_matrices_for`` (its own matrix only) followed by that.

So the engine computes all three classes from one pass with::

    m = neighbourhood_matrices_for(binned, mask, settings, glcm=True, gldm=True, ngtdm=True)
    glcm.features_from_matrices(m, spacing, settings, names_glcm)
    gldm.features_from_matrices(m, spacing, settings, names_gldm)
    ngtdm.features_from_matrices(m, spacing, settings, names_ngtdm)

or, the same in one call, :func:`ovfdlr.engines.native.texture.compute_classes` ``(binned, mask,
spacing, settings, {"glcm": names_glcm, "gldm": names_gldm, "ngtdm": names_ngtdm})`` ->
``{"glcm": {...}, "gldm": {...}, ...}`` (any subset of the three classes; ``None`` names: every
non-deprecated feature).

The matrices (rows and columns indexed by gray level - 1, ``Ng`` = the ROI's largest gray level,
absent gray levels still present as zero rows, as ``cMatrices`` returns them):

- ``glcm[i, j, a]`` (int64, ``Ng x Ng x Na_glcm``): ROI voxels of level ``i + 1`` whose neighbour
  at offset ``glcm_angles[a]`` is in the ROI with level ``j + 1`` (``calculate_glcm``; not yet
  symmetrised).
- ``gldm[i, d]`` (int64, ``Ng x (Na + 1)``): ROI voxels of level ``i + 1`` with ``d`` dependent
  neighbours, i.e. neighbours (over all ``Na`` bidirectional angles) in the ROI with
  ``|level - level_i| <= gldm_a`` (``calculate_gldm``; PyRadiomics allocates ``2 Na + 1``
  columns, the extra ones are always empty and removed by the class anyway).
- ``ngtdm_n[i]`` (int64) ROI voxels of level ``i + 1`` (every one, also those without any
  neighbour in the ROI) and ``ngtdm_s[i]`` (float64) the sum over those voxels of
  ``|level - mean level of its neighbours in the ROI|`` (0 without neighbours), accumulated in
  C order as ``calculate_ngtdm`` does.

Neighbours are the voxels at the angles' offsets; one outside the array or outside the mask is
skipped (never counted as a neighbour, never padded with a value). The angles are
``cMatrices.generate_angles(size=binned.shape, distances, bidirectional, force2D,
force2Ddimension)`` -- the size of the array handed over, i.e. of the ROI's bounding box since
the engine crops to it as PyRadiomics does: every offset vector in ``{-D..D}^3`` (``D`` = the
largest distance, first axis slowest, from ``+D`` down to ``-D``) whose infinity norm is one of
``distances``, whose offset along each axis is smaller than the array's size along it and, with
``force2D``, zero along ``force2Ddimension``. GLDM and NGTDM use all of them (both directions);
the GLCM uses the first half, which is one of each opposite pair (a repeated distance makes
PyRadiomics list every angle twice, in both sets; reproduced).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

__all__ = [
    "NeighbourhoodMatrices",
    "angle_settings",
    "generate_angles",
    "neighbourhood_matrices",
    "neighbourhood_matrices_for",
    "roi_gray_levels",
]


@dataclass(frozen=True)
class NeighbourhoodMatrices:
    """The counts of one kernel pass (see the module docstring); unrequested ones are None."""

    gray_levels: np.ndarray  # levels present in the ROI, sorted (int64)
    Ng: int  # the largest of them: the matrices' size
    glcm_angles: np.ndarray  # (Na // 2, 3) one-directional offsets (z, y, x), GLCM
    glcm: np.ndarray | None = None
    gldm: np.ndarray | None = None
    ngtdm_n: np.ndarray | None = None
    ngtdm_s: np.ndarray | None = None


def roi_gray_levels(binned: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The gray levels in the ROI (sorted) and ``Ng``, their maximum (``_applyBinning``)."""
    if binned.ndim != 3 or binned.shape != mask.shape:
        raise ValueError(
            f"binned {binned.shape} and mask {mask.shape} must be 3D arrays of the same shape"
        )
    values = binned[mask]
    # the sorted distinct values, as numpy.unique gives them, from one counting pass
    levels = (
        np.flatnonzero(np.bincount(values))
        if values.size and values.min() >= 0
        else np.unique(values)
    )
    if levels.size == 0:
        raise ValueError("the mask holds no voxel (empty ROI)")
    if levels[0] < 1:
        raise ValueError(f"binned gray levels inside the mask must be >= 1, got {levels[0]}")
    return levels.astype(np.int64), int(levels[-1])


def angle_settings(settings: Mapping[str, Any]) -> tuple[np.ndarray, bool, int]:
    """``(distances, force2D, force2Ddimension)`` as PyRadiomics hands them to ``cMatrices``
    (distances cast to C int); ValueError for a setting it would reject or for voxel-based mode."""
    if settings.get("voxelBased", False):
        raise ValueError("voxelBased: only segment-based extraction is implemented natively")
    raw = np.array(settings.get("distances", [1]))
    if raw.ndim != 1 or raw.size == 0:
        raise ValueError(f"distances: expected a non-empty list of integers, got {raw.tolist()!r}")
    try:
        distances = raw.astype(np.intc)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"distances: expected integers, got {raw.tolist()!r}") from exc
    if (distances < 1).any():
        raise ValueError(f"distances: every distance must be >= 1, got {raw.tolist()!r}")
    force2d = bool(settings.get("force2D", False))
    try:
        force2d_dim = operator.index(settings.get("force2Ddimension", 0))
    except TypeError as exc:
        raise ValueError("force2Ddimension: expected an integer") from exc
    return distances, force2d, force2d_dim


def _gldm_alpha(settings: Mapping[str, Any]) -> int:
    """``gldm_a``: an integer, as ``cMatrices.calculate_gldm`` parses it (a float is a
    TypeError in PyRadiomics)."""
    value = settings.get("gldm_a", 0)
    try:
        return operator.index(value)
    except TypeError as exc:
        raise ValueError(f"gldm_a: expected an integer, got {value!r}") from exc


def generate_angles(
    size: tuple[int, ...],
    distances: Iterable[int],
    bidirectional: bool,
    force2D: bool = False,
    force2Ddimension: int = 0,
) -> np.ndarray:
    """The offsets ``cMatrices`` uses (``get_angle_count`` then ``build_angles``), ``(Na, Nd)``.

    ``Na`` is counted per distance ``d`` as ``prod(2 min(d, s - 1) + 1) - prod(2 min(d - 1,
    s - 1) + 1)`` over the axes of size ``s`` (the out-of-plane axis skipped under force2D),
    summed over the distances and halved when one-directional. The offsets are then taken in
    enumeration order (first axis slowest, each from ``+D`` to ``-D``), keeping the valid ones,
    until ``Na`` are collected; the enumeration restarts when it runs out, which happens only
    when ``distances`` repeats a value (PyRadiomics then lists those angles again).
    """
    size = tuple(int(s) for s in size)
    dists = [int(d) for d in distances]
    nd = len(size)
    skip = int(force2Ddimension) if force2D else -1
    if not dists or min(dists) < 1:
        raise ValueError(f"distances: every distance must be >= 1, got {dists}")
    na = 0
    for d in dists:
        na_d = na_dd = 1
        for dim in range(nd):
            if dim == skip:
                continue
            if d < size[dim]:
                na_d *= 2 * d + 1
                na_dd *= 2 * d - 1
            else:
                na_d *= 2 * (size[dim] - 1) + 1
                na_dd *= 2 * (size[dim] - 1) + 1
        na += na_d - na_dd
    if not bidirectional:
        na //= 2
    if na == 0:
        raise ValueError(
            f"no neighbour angle fits an array of size {size} for distances {dists} "
            "(PyRadiomics: 'Error getting angle count.')"
        )
    wanted = set(dists)
    top = max(dists)
    valid = []
    for offsets in itertools.product(range(top, -top - 1, -1), repeat=nd):
        if any(
            (dim == skip and o != 0) or o >= size[dim] or o <= -size[dim]
            for dim, o in enumerate(offsets)
        ):
            continue
        norm = max(abs(o) for o in offsets)
        if norm >= 1 and norm in wanted:
            valid.append(offsets)
    reps = -(-na // len(valid))
    return np.array((valid * reps)[:na], dtype=np.int64).reshape(na, nd)


@numba.njit(cache=True, nogil=True)
def _count(
    binned: np.ndarray,
    mask: np.ndarray,
    angles: np.ndarray,
    n_glcm: int,
    ng: int,
    want_glcm: bool,
    want_gldm: bool,
    want_ngtdm: bool,
    alpha: int,
):
    """The kernel: one C-order pass over the ROI voxels, each neighbour looked at once."""
    nz, ny, nx = binned.shape
    na = angles.shape[0]
    pz = 0
    py = 0
    px = 0
    for a in range(na):
        pz = max(pz, abs(angles[a, 0]))
        py = max(py, abs(angles[a, 1]))
        px = max(px, abs(angles[a, 2]))
    sy = nx + 2 * px
    sz = (ny + 2 * py) * sy
    # Gray levels in the ROI, 0 outside it and in a frame as wide as the largest offset: a
    # neighbour is in the ROI exactly when its code is > 0, with no bounds check.
    codes = np.zeros((nz + 2 * pz) * sz, dtype=np.int32)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if mask[z, y, x]:
                    level = binned[z, y, x]
                    if level < 1 or level > ng:
                        raise ValueError("binned gray levels inside the mask must be in 1..Ng")
                    codes[(z + pz) * sz + (y + py) * sy + x + px] = level
    steps = np.empty(na, dtype=np.int64)
    for a in range(na):
        steps[a] = angles[a, 0] * sz + angles[a, 1] * sy + angles[a, 2]

    glcm = np.zeros((ng if want_glcm else 0, ng if want_glcm else 0, n_glcm), dtype=np.int64)
    gldm = np.zeros((ng if want_gldm else 0, na + 1), dtype=np.int64)
    ngtdm_n = np.zeros(ng if want_ngtdm else 0, dtype=np.int64)
    ngtdm_s = np.zeros(ng if want_ngtdm else 0, dtype=np.float64)
    n_loop = na if (want_gldm or want_ngtdm) else (n_glcm if want_glcm else 0)
    n_pair = n_glcm if want_glcm else 0

    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if not mask[z, y, x]:
                    continue
                p = (z + pz) * sz + (y + py) * sy + x + px
                gi = codes[p]
                dep = 0
                count = 0.0
                total = 0.0
                for a in range(n_loop):
                    gj = codes[p + steps[a]]
                    if gj == 0:
                        continue
                    if a < n_pair:
                        glcm[gi - 1, gj - 1, a] += 1
                    if abs(gi - gj) <= alpha:
                        dep += 1
                    count += 1.0
                    total += gj
                if want_gldm:
                    gldm[gi - 1, dep] += 1
                if want_ngtdm:
                    diff = 0.0
                    if count != 0.0:
                        diff = abs(float(gi) - total / count)
                    ngtdm_n[gi - 1] += 1
                    ngtdm_s[gi - 1] += diff
    return glcm, gldm, ngtdm_n, ngtdm_s


def neighbourhood_matrices(
    binned: np.ndarray,
    mask: np.ndarray,
    angles: np.ndarray,
    Ng: int,
    want_glcm: bool,
    want_gldm: bool,
    want_ngtdm: bool,
    gldm_a: int = 0,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``(glcm, gldm, ngtdm_n, ngtdm_s)`` counted in one pass (None where not wanted).

    ``angles``: the bidirectional offsets ``(Na, 3)`` (:func:`generate_angles` with
    ``bidirectional=True``); the GLCM is counted for the first ``Na // 2`` of them, which are
    the one-directional angles. ``binned`` must hold levels ``1..Ng`` inside ``mask``.
    """
    angles = np.ascontiguousarray(angles, dtype=np.int64)
    if angles.ndim != 2 or angles.shape[1] != 3:
        raise ValueError(f"angles must have shape (Na, 3), got {angles.shape}")
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    glcm, gldm, n, s = _count(
        np.ascontiguousarray(binned, dtype=np.int64),
        mask,
        angles,
        angles.shape[0] // 2,
        int(Ng),
        bool(want_glcm),
        bool(want_gldm),
        bool(want_ngtdm),
        int(gldm_a),
    )
    return (
        glcm if want_glcm else None,
        gldm if want_gldm else None,
        n if want_ngtdm else None,
        s if want_ngtdm else None,
    )


def neighbourhood_matrices_for(
    binned: np.ndarray,
    mask: np.ndarray,
    settings: Mapping[str, Any],
    *,
    glcm: bool = True,
    gldm: bool = True,
    ngtdm: bool = True,
) -> NeighbourhoodMatrices:
    """The requested matrices for PyRadiomics' resolved ``settings`` (one kernel pass)."""
    mask = np.asarray(mask, dtype=np.bool_)
    levels, ng = roi_gray_levels(binned, mask)
    distances, force2d, force2d_dim = angle_settings(settings)
    alpha = _gldm_alpha(settings) if gldm else 0
    angles = generate_angles(binned.shape, distances, True, force2d, force2d_dim)
    p_glcm, p_gldm, n, s = neighbourhood_matrices(
        binned, mask, angles, ng, glcm, gldm, ngtdm, alpha
    )
    return NeighbourhoodMatrices(
        gray_levels=levels,
        Ng=ng,
        glcm_angles=angles[: angles.shape[0] // 2],
        glcm=p_glcm,
        gldm=p_gldm,
        ngtdm_n=n,
        ngtdm_s=s,
    )
