r"""Cubic B-spline resampling, bit for bit SimpleITK's ``ResampleImageFilter`` with ``sitkBSpline``.

Written here because, on one thread, that SimpleITK call (``imageops.resample`` with the
default ``interpolator: sitkBSpline``) was the largest single cost of a native-engine case:
measured on the synthetic CT vertebrae (input ~100 x 100 x 64 int16 at 0.7 x 0.7 x 1 mm, output
~66 x 55 x 49 at 1 mm) 55-90 ms of a ~360 ms case with one SimpleITK thread; these kernels
return the same array, every voxel equal to the last bit, in 10-13 ms on one core (4.5-6x;
``tests/test_native_bspline.py`` checks the equality). The speed comes from evaluating four
output voxels side by side (four independent sums, each still in ITK's order) and, on lines
parallel to the input's x axis, computing the y and z supports once per line.

What is reproduced (ITK 5.4.7, the version SimpleITK 2.5 is built on; the arithmetic is redone
here in the same order, with the same double/float conversions, without fused multiply-adds):

``itk::BSplineDecompositionImageFilter`` (spline order 3)
    The input, cast to double, is turned into interpolation coefficients one axis after the
    other (x, y, z), each line on its own: the gain ``c0 = (1 - z)(1 - 1/z)`` (``z = sqrt(3) -
    2``, the cubic pole) multiplies the line, then the causal initialisation (mirror boundary:
    with ``horizon = ceil(log(1e-10) / log|z|) = 18`` below the line's length the truncated sum
    ``c[0] + sum_{n<horizon} z^n c[n]``, otherwise the full mirror sum with ``pow(z, N - 1)``),
    the causal recursion ``c[n] += z c[n-1]``, the anti-causal initialisation ``c[N-1] = z /
    (z^2 - 1) (z c[N-2] + c[N-1])`` and recursion ``c[n] = z (c[n+1] - c[n])``. A line of one
    voxel is left as it is.
``itk::BSplineInterpolateImageFunction::EvaluateAtContinuousIndex``
    Per axis the support starts at ``floor(float(x)) - 1`` (the index is rounded to *float*
    before the floor, as ITK does), the weights from ``w = x - (start + 1)``: ``w3 = w^3 / 6``,
    ``w0 = 1/6 + w (w - 1) / 2 - w3``, ``w2 = w + w0 - 2 w3``, ``w1 = 1 - w0 - w2 - w3``; the
    support indices are mirrored once at each end (below 0 to ``-i``, then at or above ``N - 1``
    to ``2 (N - 1) - i``; an axis of one voxel uses index 0 throughout); the 64 terms
    ``((wx wy) wz) c`` are summed in ITK's order, x fastest, z slowest, into a double. The
    coefficient is read at ITK's flat offset ``(k ny + j) nx + i``.
``itk::ResampleImageFilter`` (identity transform, linear fast path)
    Per output scan line (fixed y, z) the continuous input indices of output index 0 and of
    output index ``size_x`` are computed through physical space (``origin + M idx`` summed
    left to right, then ``P (point - origin_in)``, where ``M`` is the output's direction times
    spacing and ``P`` the input's inverse of that, both read from ITK itself so that the SVD
    inverse is ITK's) and the voxel ``i`` takes ``start + (i / size_x) (end - start)``. A voxel
    counts as inside when every index lies in ``[-0.5, N - 0.5)``; else it gets 0. The double
    result is clamped to the output type's range (``<= min`` gives min, ``>= max`` max) and
    then truncated toward zero (integers) or rounded (float32); float64 is taken as it is.

Returns ``None`` (the engine then calls SimpleITK) for what cannot be made exact: not 3-D,
vector pixels, uint64 or complex pixel types, a float image with a NaN or infinite value, and
an input axis of two voxels whose mirrored support would make ITK read before the start of its
coefficient buffer (ITK's mirror leaves index -1 there; where that offset still lands inside
the buffer, as ITK reads it, it is reproduced).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np
import SimpleITK as sitk

_POLE = math.sqrt(3.0) - 2.0  # ITK: std::sqrt(3.0) - 2.0
_TOLERANCE = 1e-10  # BSplineDecompositionImageFilter::m_Tolerance
_HORIZON = math.ceil(math.log(_TOLERANCE) / math.log(abs(_POLE)))  # 18

# output pixel type -> (numpy dtype, cast mode, lowest, highest); mode 0: double as is,
# 1: clamp to +-FLT_MAX then round to float, 2: clamp then truncate toward zero
_OUTPUT_TYPES: dict[int, tuple[type, int, float, float]] = {
    sitk.sitkFloat64: (np.float64, 0, 0.0, 0.0),
    sitk.sitkFloat32: (
        np.float32,
        1,
        -float(np.finfo(np.float32).max),
        float(np.finfo(np.float32).max),
    ),
}
for _pid, _dtype in (
    (sitk.sitkInt8, np.int8),
    (sitk.sitkUInt8, np.uint8),
    (sitk.sitkInt16, np.int16),
    (sitk.sitkUInt16, np.uint16),
    (sitk.sitkInt32, np.int32),
    (sitk.sitkUInt32, np.uint32),
    (sitk.sitkInt64, np.int64),
):
    _info = np.iinfo(_dtype)
    _OUTPUT_TYPES[_pid] = (_dtype, 2, float(_info.min), float(_info.max))

_INPUT_DTYPES = (
    np.int8,
    np.uint8,
    np.int16,
    np.uint16,
    np.int32,
    np.uint32,
    np.int64,
    np.float32,
    np.float64,
)


# ---------------------------------------------------------------------------------------------
# BSplineDecompositionImageFilter


@numba.njit(cache=True, nogil=True)
def _filter_lines(s: np.ndarray, z: float, horizon: int) -> None:
    """The order-3 mirror-boundary prefilter along axis 0 of ``s`` (N x M, M independent lines
    side by side), each line exactly as ``DataToCoefficients1D``."""
    n_len, m = s.shape
    if n_len == 1:
        return
    c0 = 1.0
    c0 = c0 * (1.0 - z) * (1.0 - 1.0 / z)
    for n in range(n_len):
        for j in range(m):
            s[n, j] *= c0
    # causal initialisation
    if horizon < n_len:
        for j in range(m):
            total = s[0, j]
            zn = z
            for n in range(1, horizon):
                total += zn * s[n, j]
                zn *= z
            s[0, j] = total
    else:
        iz = 1.0 / z
        z2n0 = math.pow(z, float(n_len - 1))
        for j in range(m):
            zn = z
            z2n = z2n0
            total = s[0, j] + z2n * s[n_len - 1, j]
            z2n *= z2n * iz
            for n in range(1, n_len - 1):
                total += (zn + z2n) * s[n, j]
                zn *= z
                z2n *= iz
            s[0, j] = total / (1.0 - zn * zn)
    # causal recursion
    for n in range(1, n_len):
        for j in range(m):
            s[n, j] += z * s[n - 1, j]
    # anti-causal initialisation and recursion
    a = z / (z * z - 1.0)
    for j in range(m):
        s[n_len - 1, j] = a * (z * s[n_len - 2, j] + s[n_len - 1, j])
    for n in range(n_len - 2, -1, -1):
        for j in range(m):
            s[n, j] = z * (s[n + 1, j] - s[n, j])


@numba.njit(cache=True, nogil=True)
def _coefficients(c: np.ndarray, z: float, horizon: int) -> None:
    """In place on the (z, y, x) double array: the prefilter along x, then y, then z."""
    nz, ny, nx = c.shape
    # x: gather blocks of lines into a scratch (nx, block) so the recursion runs across lines
    block = 16
    scratch = np.empty((nx, block))
    for k in range(nz):
        for j0 in range(0, ny, block):
            nb = min(block, ny - j0)
            s = scratch[:, :nb]
            for b in range(nb):
                for i in range(nx):
                    s[i, b] = c[k, j0 + b, i]
            _filter_lines(s, z, horizon)
            for b in range(nb):
                for i in range(nx):
                    c[k, j0 + b, i] = s[i, b]
    # y: each z-slice is (ny, nx), lines along axis 0
    for k in range(nz):
        _filter_lines(c[k], z, horizon)
    # z: the whole array as (nz, ny * nx)
    _filter_lines(c.reshape(nz, ny * nx), z, horizon)


# ---------------------------------------------------------------------------------------------
# BSplineInterpolateImageFunction + ResampleImageFilter (linear path)


@numba.njit(cache=True, nogil=True)
def _support(x: float, n_len: int, idx: np.ndarray, wts: np.ndarray) -> None:
    """Mirrored support indices and cubic weights along one axis at continuous index ``x``."""
    first = np.int64(math.floor(np.float32(x))) - 1
    w = x - float(first + 1)
    w3 = (1.0 / 6.0) * w * w * w
    w0 = (1.0 / 6.0) + 0.5 * w * (w - 1.0) - w3
    w2 = w + w0 - 2.0 * w3
    w1 = 1.0 - w0 - w2 - w3
    wts[0] = w0
    wts[1] = w1
    wts[2] = w2
    wts[3] = w3
    end = n_len - 1
    for q in range(4):
        if n_len == 1:
            idx[q] = 0
        else:
            v = first + q
            if v < 0:
                v = -v
            if v >= end:
                v = end - (v - end)
            idx[q] = v


@numba.njit(cache=True, nogil=True, inline="always")
def _store(out: np.ndarray, k: int, j: int, i: int, value: float, mode: int, lo: float, hi: float):
    """ResampleImageFilter::CastPixelWithBoundsChecking."""
    if mode == 0:
        out[k, j, i] = value
    elif value <= lo:
        out[k, j, i] = lo
    elif value >= hi:
        out[k, j, i] = hi
    elif mode == 1:
        out[k, j, i] = np.float32(value)
    else:
        out[k, j, i] = np.int64(value)


_GROUP = 4  # output voxels evaluated side by side: four independent sums in flight


@numba.njit(cache=True, nogil=True)
def _sum4(
    flat: np.ndarray,
    gx: np.ndarray,
    gyz: np.ndarray,
    gxy: np.ndarray,
    gwz: np.ndarray,
    acc: np.ndarray,
) -> None:
    """The 64-term sums of four queued voxels into ``acc``, each in ITK's order (x fastest, then
    y, then z; the term ``((wx wy) wz) c``), the four interleaved. ``gxy[v, 4 c1 + q]`` holds
    ``wx[q] wy[c1]``, ``gyz[v, 4 c2 + c1]`` the offset of the coefficient row (z, y) and
    ``gx[v, q]`` the x index, both unsigned so that their sum wraps to ITK's offset when a
    mirrored x index is -1."""
    xa0, xa1, xa2, xa3 = gx[0, 0], gx[0, 1], gx[0, 2], gx[0, 3]
    xb0, xb1, xb2, xb3 = gx[1, 0], gx[1, 1], gx[1, 2], gx[1, 3]
    xc0, xc1, xc2, xc3 = gx[2, 0], gx[2, 1], gx[2, 2], gx[2, 3]
    xd0, xd1, xd2, xd3 = gx[3, 0], gx[3, 1], gx[3, 2], gx[3, 3]
    sa = 0.0
    sb = 0.0
    sc = 0.0
    sd = 0.0
    for r in range(16):
        c1 = (r & 3) * 4
        c2 = r >> 2
        ra = gyz[0, r]
        za = gwz[0, c2]
        rb = gyz[1, r]
        zb = gwz[1, c2]
        rc = gyz[2, r]
        zc = gwz[2, c2]
        rd = gyz[3, r]
        zd = gwz[3, c2]
        sa += gxy[0, c1 + 0] * za * flat[ra + xa0]
        sb += gxy[1, c1 + 0] * zb * flat[rb + xb0]
        sc += gxy[2, c1 + 0] * zc * flat[rc + xc0]
        sd += gxy[3, c1 + 0] * zd * flat[rd + xd0]
        sa += gxy[0, c1 + 1] * za * flat[ra + xa1]
        sb += gxy[1, c1 + 1] * zb * flat[rb + xb1]
        sc += gxy[2, c1 + 1] * zc * flat[rc + xc1]
        sd += gxy[3, c1 + 1] * zd * flat[rd + xd1]
        sa += gxy[0, c1 + 2] * za * flat[ra + xa2]
        sb += gxy[1, c1 + 2] * zb * flat[rb + xb2]
        sc += gxy[2, c1 + 2] * zc * flat[rc + xc2]
        sd += gxy[3, c1 + 2] * zd * flat[rd + xd2]
        sa += gxy[0, c1 + 3] * za * flat[ra + xa3]
        sb += gxy[1, c1 + 3] * zb * flat[rb + xb3]
        sc += gxy[2, c1 + 3] * zc * flat[rc + xc3]
        sd += gxy[3, c1 + 3] * zd * flat[rd + xd3]
    acc[0] = sa
    acc[1] = sb
    acc[2] = sc
    acc[3] = sd


@numba.njit(cache=True, nogil=True)
def _resample(
    c: np.ndarray,
    out: np.ndarray,
    m_out: np.ndarray,
    origin_out: np.ndarray,
    p_in: np.ndarray,
    origin_in: np.ndarray,
    mode: int,
    lo: float,
    hi: float,
    window: np.ndarray,
) -> bool:
    """Every output voxel in ``window`` (z0, z1, y0, y1, x0, x1: half-open index ranges; the
    grid, and so each voxel's arithmetic, is the whole output's); False where ITK would read
    before its coefficient buffer."""
    nz_in, ny_in, nx_in = c.shape
    flat = c.reshape(-1)
    sxy = ny_in * nx_in
    nx = out.shape[2]
    size_x = float(nx)
    lower = -0.5
    upper_x = float(nx_in - 1) + 0.5
    upper_y = float(ny_in - 1) + 0.5
    upper_z = float(nz_in - 1) + 0.5
    start = np.empty(3)
    vec = np.empty(3)
    point = np.empty(3)
    ix = np.empty(4, dtype=np.int64)
    iy = np.empty(4, dtype=np.int64)
    iz = np.empty(4, dtype=np.int64)
    wx = np.empty(4)
    wy = np.empty(4)
    wz = np.empty(4)
    rows = np.empty(16, dtype=np.int64)
    gx = np.zeros((_GROUP, 4), dtype=np.uint64)
    gyz = np.zeros((_GROUP, 16), dtype=np.uint64)
    gxy = np.zeros((_GROUP, 16))
    gwz = np.zeros((_GROUP, 4))
    gi = np.empty(_GROUP, dtype=np.int64)
    acc = np.empty(_GROUP)
    for k in range(window[0], window[1]):
        for j in range(window[2], window[3]):
            # continuous input index of output (0, j, k) and of (size_x, j, k)
            for e in range(2):
                i0 = 0.0 if e == 0 else size_x
                for r in range(3):
                    p = origin_out[r]
                    p += m_out[r, 0] * i0
                    p += m_out[r, 1] * float(j)
                    p += m_out[r, 2] * float(k)
                    point[r] = p - origin_in[r]
                for r in range(3):
                    s = 0.0
                    s += p_in[r, 0] * point[0]
                    s += p_in[r, 1] * point[1]
                    s += p_in[r, 2] * point[2]
                    if e == 0:
                        start[r] = s
                    else:
                        vec[r] = s - start[r]
            # along an axis-aligned line y and z do not change: their support once per line
            # (start + alpha * 0 is start, up to the sign of a zero, which no weight sees)
            fixed_yz = vec[1] == 0.0 and vec[2] == 0.0
            y = start[1]
            zc = start[2]
            count = 0
            rows_stale = True
            for i in range(window[4], window[5]):
                alpha = float(i) / size_x
                x = start[0] + alpha * vec[0]
                if not fixed_yz:
                    y = start[1] + alpha * vec[1]
                    zc = start[2] + alpha * vec[2]
                if not (
                    x >= lower
                    and x < upper_x
                    and y >= lower
                    and y < upper_y
                    and zc >= lower
                    and zc < upper_z
                ):
                    out[k, j, i] = 0
                    continue
                if (not fixed_yz) or rows_stale:
                    _support(y, ny_in, iy, wy)
                    _support(zc, nz_in, iz, wz)
                    for c2 in range(4):
                        for c1 in range(4):
                            rows[c2 * 4 + c1] = iz[c2] * sxy + iy[c1] * nx_in
                    rows_stale = False
                _support(x, nx_in, ix, wx)
                # ITK reads the coefficient at (iz ny + iy) nx + ix unchecked: an index left
                # at -1 by the mirror (an axis of two voxels) reads the line before, or
                # before the buffer, which cannot be reproduced
                lowest = min(ix[0], ix[1], ix[2], ix[3])
                lowest += min(iy[0], iy[1], iy[2], iy[3]) * nx_in
                lowest += min(iz[0], iz[1], iz[2], iz[3]) * sxy
                if lowest < 0:
                    return False
                for q in range(4):
                    gx[count, q] = ix[q]
                    gwz[count, q] = wz[q]
                    for c1 in range(4):
                        gxy[count, c1 * 4 + q] = wx[q] * wy[c1]  # (1.0 * wx) * wy
                for r in range(16):
                    gyz[count, r] = rows[r]
                gi[count] = i
                count += 1
                if count == _GROUP:
                    _sum4(flat, gx, gyz, gxy, gwz, acc)
                    for v in range(_GROUP):
                        _store(out, k, j, gi[v], acc[v], mode, lo, hi)
                    count = 0
            if count > 0:
                for v in range(count, _GROUP):  # pad with copies of the last voxel
                    for q in range(4):
                        gx[v, q] = gx[count - 1, q]
                        gwz[v, q] = gwz[count - 1, q]
                    for r in range(16):
                        gyz[v, r] = gyz[count - 1, r]
                        gxy[v, r] = gxy[count - 1, r]
                _sum4(flat, gx, gyz, gxy, gwz, acc)
                for v in range(count):
                    _store(out, k, j, gi[v], acc[v], mode, lo, hi)
    return True


def _matrices(
    spacing: Sequence[float], direction: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """ITK's index-to-physical matrix and its (SVD) inverse for ``spacing`` and ``direction``,
    read column by column from a one-voxel image at the origin."""
    probe = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    probe.SetSpacing(tuple(float(s) for s in spacing))
    probe.SetDirection(tuple(float(d) for d in direction))
    forward = np.empty((3, 3))
    inverse = np.empty((3, 3))
    for col in range(3):
        unit = [0, 0, 0]
        unit[col] = 1
        forward[:, col] = probe.TransformIndexToPhysicalPoint(unit)
        inverse[:, col] = probe.TransformPhysicalPointToContinuousIndex([float(u) for u in unit])
    return forward, inverse


def resample_bspline(
    image: sitk.Image,
    size: Sequence[int],
    origin: Sequence[float],
    spacing: Sequence[float],
    direction: Sequence[float],
    pixel_id: int,
    window: Sequence[int] | None = None,
) -> np.ndarray | None:
    """``image`` resampled with cubic B-splines onto the grid ``size``/``origin``/``spacing``/
    ``direction``, as the (z, y, x) array of ``pixel_id``; None when not reproducible here.

    ``window`` (z0, z1, y0, y1, x0, x1, half-open): compute only those voxels (the others are
    0); each is the value the whole grid gives it, bit for bit.

    Equal, voxel for voxel, to ``sitk.ResampleImageFilter`` with ``SetSize(size)``,
    ``SetOutputOrigin(origin)``, ``SetOutputSpacing(spacing)``, ``SetOutputDirection(direction)``,
    ``SetOutputPixelType(pixel_id)``, ``SetInterpolator(sitk.sitkBSpline)``, the identity
    transform and default value 0 (ITK's ``BSplineDecompositionImageFilter``,
    ``BSplineInterpolateImageFunction`` and ``ResampleImageFilter``; see the module docstring
    for the arithmetic). None for input classes not made exact: not 3-D, vector pixels, an
    input or output pixel type outside (u)int8-32, int64, float32, float64, a float image with
    a non-finite value, or an axis of two voxels where ITK would read outside its buffer.
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        return None
    if pixel_id not in _OUTPUT_TYPES or len(size) != 3:
        return None
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.type not in _INPUT_DTYPES:
        return None
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return None
    dtype, mode, lo, hi = _OUTPUT_TYPES[pixel_id]
    m_out, _ = _matrices(spacing, direction)
    _, p_in = _matrices(image.GetSpacing(), image.GetDirection())
    coefficients = values.astype(np.float64)  # ImageAlgorithm::Copy: static_cast<double>
    _coefficients(coefficients, _POLE, _HORIZON)
    shape = (int(size[2]), int(size[1]), int(size[0]))
    if window is None:
        out = np.empty(shape, dtype=dtype)
        window = (0, shape[0], 0, shape[1], 0, shape[2])
    else:
        out = np.zeros(shape, dtype=dtype)
    ok = _resample(
        coefficients,
        out,
        m_out,
        np.array(origin, dtype=np.float64),
        p_in,
        np.array(image.GetOrigin(), dtype=np.float64),
        mode,
        lo,
        hi,
        np.asarray(window, dtype=np.int64),
    )
    return out if ok else None
