"""The millimetre body model: vertebral bodies, endplates, discs, canal and soft tissue.

Every structure is an implicit shape in its own right-handed local frame
(``x`` patient left, ``y`` posterior, ``z`` superior; the LPS convention of the image) placed in
the world by a rigid :class:`Frame`. A shape returns, for each query point, one or more
*components* ``(d_i, w_i)``: an approximate signed distance ``d_i`` in mm to one bounding
surface (negative inside) and the partial-volume width ``w_i`` of that surface on the voxel grid,

.. math::  w_i = \\sqrt{\\textstyle\\sum_j (n_{ij} s_j)^2},

the box-filter footprint of a voxel with spacing ``s`` projected on the world surface normal
``n_i``. A shape is the intersection of its components, and the fraction of a voxel it occupies is
approximated by the product of one-dimensional ramps

.. math::  \\alpha = \\prod_i \\operatorname{clip}(0.5 - d_i / w_i, 0, 1),

which is exact for a voxel cut by axis-aligned faces and a good approximation elsewhere.
Offsetting every ``d_i`` by ``t`` shrinks the shape by ``t`` mm along its normals: that is how the
cortical shell (outer minus inner body) and the trabecular core are made.

The vertebral body is an elliptic cylinder (semi-axes ``a`` left-right, ``b`` antero-posterior)
between two endplate surfaces ``z_top(x, y) = H/2 - D_top(u, v)`` and
``z_bot(x, y) = -H/2 + D_bot(u, v)`` with ``u = x/a``, ``v = y/b`` (clamped to the unit disc) and
the endplate depression

.. math::  D(u, v) = c\\,B_c(q) + w\\,P(v) + k + \\beta\\,B_w(q) + s\\tanh(\\xi / 0.12),

``q = u^2 + v^2``, where ``B_c(q) = \\max(0, 1 - q/0.49)^2`` is the physiological central
concavity (zero at the anterior and posterior measurement sites), ``P(v) = ((1 - v)/2)^{1.5}``
the anterior wedge (1 at the anterior wall, 0 at the posterior wall), ``k`` a uniform crush,
``B_w(q) = \\max(0, 1 - q)^{1.5}`` the central (biconcave) depression and the last term a step-off
of the fractured endplate across the line ``\\xi = u\\cos\\theta + v\\sin\\theta - c = 0``.
Posterior-wall retropulsion (burst fractures) displaces the posterior wall by
``R exp(-(x/s_x)^2 - ((z - z_0)/s_z)^2)`` (``s_x = 0.35 a``, ``s_z = 0.3 H``) into the canal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Where the heights are read, as fractions of the half-depth ``b`` from the centre (anterior is
#: ``-y``): 15 % of the depth in from each wall, as in Genant's morphometry, and the centre.
HEIGHT_SITES_V: tuple[float, float, float] = (-0.7, 0.0, 0.7)

_BC_RADIUS2 = 0.49  # physiological concavity vanishes at q = 0.49 (the anterior/posterior sites)
_STEP_WIDTH = 0.12  # width of an endplate step-off in units of the semi-axes


# ----------------------------------------------------------------------------------------------
# frames
# ----------------------------------------------------------------------------------------------


def rotation_x(theta: float) -> np.ndarray:
    """Rotation about the left-right axis; positive turns local +z towards anterior (-y)."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(phi: float) -> np.ndarray:
    """Rotation about the antero-posterior axis; positive turns +z towards the patient's left."""
    c, s = np.cos(phi), np.sin(phi)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass(frozen=True)
class Frame:
    """A rigid placement: ``p_world = origin + R @ p_local``."""

    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def compose(self, inner: Frame) -> Frame:
        """The frame of ``inner`` (given in this frame's coordinates) in world coordinates."""
        return Frame(self.R @ inner.R, self.origin + self.R @ inner.origin)

    def to_local(self, x, y, z):
        """World to local coordinates; ``x, y, z`` broadcast (e.g. 1-D grid axes)."""
        R = self.R.tolist()  # Python floats keep float32 inputs in float32
        o = self.origin.tolist()
        dx, dy, dz = x - o[0], y - o[1], z - o[2]
        return tuple(R[0][i] * dx + R[1][i] * dy + R[2][i] * dz for i in range(3))

    def to_world(self, pts_local: np.ndarray) -> np.ndarray:
        """Local points ``(..., 3)`` to world points."""
        return np.asarray(pts_local) @ self.R.T + self.origin


def footprint_metric(frame: Frame, spacing) -> np.ndarray:
    """``M = R^T diag(s^2) R`` so that ``w^2 = n_local^T M n_local`` for a local unit normal."""
    s2 = np.asarray(spacing, dtype=float) ** 2
    return frame.R.T @ np.diag(s2) @ frame.R


def _width(M: np.ndarray, nx, ny, nz):
    """Partial-volume width for (not necessarily unit) local normals ``(nx, ny, nz)``."""
    m = np.asarray(M).tolist()
    num = (
        m[0][0] * nx * nx
        + m[1][1] * ny * ny
        + m[2][2] * nz * nz
        + 2.0 * (m[0][1] * nx * ny + m[0][2] * nx * nz + m[1][2] * ny * nz)
    )
    den = nx * nx + ny * ny + nz * nz
    return np.sqrt(np.maximum(num, 1e-12) / np.maximum(den, 1e-12))


def _width_z(M: np.ndarray, gx, gy, sign: float):
    """Width for the normal ``(gx, gy, sign)`` of a surface ``z = f(x, y)`` (``g = -grad f``)."""
    m = np.asarray(M).tolist()
    num = (
        m[0][0] * gx * gx
        + m[1][1] * gy * gy
        + 2.0 * (m[0][1] * gx * gy + sign * (m[0][2] * gx + m[1][2] * gy))
        + m[2][2]
    )
    den = 1.0 + gx * gx + gy * gy
    return np.sqrt(np.maximum(num, 1e-12) / den)


def _width_xy(M: np.ndarray, gx, gy):
    """Width for an in-plane normal ``(gx, gy, 0)``."""
    m = np.asarray(M).tolist()
    gx2 = gx * gx
    gy2 = gy * gy
    num = m[0][0] * gx2 + m[1][1] * gy2 + 2.0 * m[0][1] * gx * gy
    return np.sqrt(np.maximum(num, 1e-12) / np.maximum(gx2 + gy2, 1e-12))


def occupancy(components, offset: float = 0.0):
    """Product of ramps ``clip(0.5 - (d_i + offset) / w_i, 0, 1)`` over the components."""
    occ = None
    for d, w in components:
        a = np.clip(0.5 - (d + offset) / w, 0.0, 1.0)
        occ = a if occ is None else occ * a
    return occ


def inside(components, offset: float = 0.0):
    """Exact indicator of the model: every component's distance <= -offset."""
    res = None
    for d, _ in components:
        m = d + offset <= 0.0
        res = m if res is None else res & m
    return res


# ----------------------------------------------------------------------------------------------
# endplates
# ----------------------------------------------------------------------------------------------


def _is_zero(a) -> bool:
    return np.ndim(a) == 0 and float(a) == 0.0


def _scalar(a):
    return float(a) if np.ndim(a) == 0 else np.asarray(a)


def endplate_depth(u, v, concavity, wedge, crush, bowl, step, step_theta, step_c):
    """Endplate depression ``D(u, v)`` in mm and its partial derivatives ``dD/du, dD/dv``.

    ``u, v`` are normalised in-plane coordinates; points outside the unit disc are projected onto
    its rim (the endplate is extended radially). All arguments broadcast, so the same function
    serves a voxel grid and a table of vertebrae; terms with a zero scalar amplitude are skipped.
    """
    u = np.asarray(u)
    v = np.asarray(v)
    concavity, wedge, crush, bowl, step = (
        _scalar(a) for a in (concavity, wedge, crush, bowl, step)
    )
    q = u * u + v * v
    if np.any(q > 1.0):
        scale = 1.0 / np.sqrt(np.maximum(q, 1.0))
        u = u * scale
        v = v * scale
        q = np.minimum(q, 1.0)

    depth = 0.0 * q
    dq_coef = 0.0 * q
    d_dv = 0.0 * q
    d_du = 0.0 * q
    if not _is_zero(concavity):
        tc = np.maximum(1.0 - q * (1.0 / _BC_RADIUS2), 0.0)
        depth = depth + concavity * (tc * tc)
        dq_coef = dq_coef - (2.0 / _BC_RADIUS2) * concavity * tc
    if not _is_zero(bowl):
        one_q = np.maximum(1.0 - q, 0.0)
        sq = np.sqrt(one_q)
        depth = depth + bowl * (one_q * sq)
        dq_coef = dq_coef - 1.5 * bowl * sq
    if not _is_zero(wedge):
        half = np.maximum((1.0 - v) * 0.5, 0.0)
        sq_half = np.sqrt(half)
        depth = depth + wedge * (half * sq_half)
        d_dv = d_dv - 0.75 * wedge * sq_half
    if not _is_zero(crush):
        depth = depth + crush
    if not _is_zero(step):
        ct = np.cos(step_theta)
        st = np.sin(step_theta)
        ct, st, step_c = (_scalar(a) for a in (ct, st, step_c))
        th = np.tanh((u * ct + v * st - step_c) * (1.0 / _STEP_WIDTH))
        dth = step * (1.0 - th * th) * (1.0 / _STEP_WIDTH)
        depth = depth + step * th
        d_du = d_du + dth * ct
        d_dv = d_dv + dth * st
    d_du = d_du + dq_coef * 2.0 * u
    d_dv = d_dv + dq_coef * 2.0 * v
    return depth, d_du, d_dv


@dataclass(frozen=True)
class Endplate:
    """Parameters of one endplate surface (all in mm, see :func:`endplate_depth`)."""

    concavity: float = 0.6
    wedge: float = 0.0
    crush: float = 0.0
    bowl: float = 0.0
    step: float = 0.0
    step_theta: float = 0.0
    step_c: float = 0.0

    def depth(self, u, v):
        return endplate_depth(
            u,
            v,
            self.concavity,
            self.wedge,
            self.crush,
            self.bowl,
            self.step,
            self.step_theta,
            self.step_c,
        )


# ----------------------------------------------------------------------------------------------
# vertebral body
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """A vertebral body: elliptic cylinder between two endplate surfaces, in ``frame``.

    ``a``, ``b``: semi-axes (mm); ``H``: pre-fracture height at the walls; ``retro``: peak
    posterior-wall displacement into the canal (mm) centred at local height ``retro_z``.
    """

    frame: Frame
    a: float
    b: float
    H: float
    top: Endplate = Endplate()
    bottom: Endplate = Endplate()
    retro: float = 0.0
    retro_z: float = 0.0

    def surfaces(self, x, y):
        """``z_top, dzt/dx, dzt/dy, z_bot, dzb/dx, dzb/dy`` at local ``(x, y)``."""
        u = x / self.a
        v = y / self.b
        dt, dt_du, dt_dv = self.top.depth(u, v)
        db, db_du, db_dv = self.bottom.depth(u, v)
        zt = 0.5 * self.H - dt
        zb = -0.5 * self.H + db
        return zt, -dt_du / self.a, -dt_dv / self.b, zb, db_du / self.a, db_dv / self.b

    def retro_shift(self, x, y, z):
        """Posterior-wall displacement (mm, towards +y) at local points."""
        if self.retro <= 0.0:
            return 0.0
        v = np.clip((y / self.b - 0.2) / 0.8, 0.0, 1.0)
        smooth = v * v * (3.0 - 2.0 * v)
        sx = 0.35 * self.a
        sz = 0.3 * self.H
        return self.retro * smooth * np.exp(-((x / sx) ** 2) - ((z - self.retro_z) / sz) ** 2)

    def radial_component(self, x, y, z, M: np.ndarray | None = None):
        """The elliptic wall (with retropulsion): ``(d, w)``."""
        yd = y - self.retro_shift(x, y, z) if self.retro > 0.0 else y
        ia2, ib2 = 1.0 / (self.a * self.a), 1.0 / (self.b * self.b)
        gx = x * ia2
        gy = yd * ib2
        r = np.sqrt(x * gx + yd * gy)
        gnorm = np.sqrt(gx * gx + gy * gy) / np.maximum(r, 1e-6)
        gnorm = np.maximum(gnorm, 1.0 / max(self.a, self.b))
        d_rad = (r - 1.0) / gnorm
        w = np.float32(1.0) if M is None else _width_xy(M, gx, gy)
        return (d_rad, w)

    def endplate_components(self, x, y, z, M: np.ndarray | None = None, surf=None):
        """``[(d_top, w_top), (d_bot, w_bot)]``; ``surf`` is a precomputed :meth:`surfaces`."""
        zt, tx, ty, zb, bx, by = self.surfaces(x, y) if surf is None else surf
        d_top = (z - zt) / np.sqrt(1.0 + tx * tx + ty * ty)
        d_bot = (zb - z) / np.sqrt(1.0 + bx * bx + by * by)
        if M is None:
            one = np.float32(1.0)
            return [(d_top, one), (d_bot, one)]
        return [
            (d_top, _width_z(M, -tx, -ty, 1.0)),
            (d_bot, _width_z(M, bx, by, -1.0)),
        ]

    def components(self, x, y, z, M: np.ndarray | None = None, surf=None):
        """Signed-distance components ``[(d, w), ...]`` at local points (``w = 1`` if no M):
        the wall, the superior and the inferior endplate."""
        return [self.radial_component(x, y, z, M), *self.endplate_components(x, y, z, M, surf)]

    def surface_range(self) -> tuple[float, float, float, float]:
        """``(min z_top, max z_top, min z_bot, max z_bot)`` over the body's footprint."""
        t = np.linspace(-1.0, 1.0, 13)
        u, v = np.meshgrid(t, t)
        keep = u * u + v * v <= 1.0
        zt, _, _, zb, _, _ = self.surfaces(u[keep] * self.a, v[keep] * self.b)
        return float(zt.min()), float(zt.max()), float(zb.min()), float(zb.max())

    def local_bbox(self, margin: float = 0.0) -> np.ndarray:
        """Local axis-aligned bounding box ``[[x0, y0, z0], [x1, y1, z1]]``."""
        return np.array(
            [
                [-self.a - margin, -self.b - margin, -0.5 * self.H - margin],
                [self.a + margin, self.b + self.retro + margin, 0.5 * self.H + margin],
            ]
        )

    def heights(self) -> tuple[float, float, float]:
        """Anterior, middle and posterior heights (mm) in the mid-sagittal plane."""
        v = np.asarray(HEIGHT_SITES_V)
        zt, _, _, zb, _, _ = self.surfaces(0.0 * v, v * self.b)
        h = zt - zb
        return float(h[0]), float(h[1]), float(h[2])

    def rim_heights(self):
        """``(top_anterior, top_posterior, bottom_anterior, bottom_posterior)`` at the walls."""
        y = np.array([-self.b, self.b])
        zt, _, _, zb, _, _ = self.surfaces(np.zeros(2), y)
        return float(zt[0]), float(zt[1]), float(zb[0]), float(zb[1])


# ----------------------------------------------------------------------------------------------
# other primitives (all in their own local frame)
# ----------------------------------------------------------------------------------------------


def ellipse_components(x, y, cx, cy, rx, ry, M=None):
    """Infinite elliptic cylinder along local z: one component."""
    dx = x - cx
    dy = y - cy
    gx = dx / (rx * rx)
    gy = dy / (ry * ry)
    r = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
    g = np.maximum(np.sqrt(gx * gx + gy * gy) / np.maximum(r, 1e-6), 1.0 / max(rx, ry))
    d = (r - 1.0) / g
    w = np.float32(1.0) if M is None else _width_xy(M, gx, gy)
    return (d, w)


def ellipsoid_components(x, y, z, c, radii, M=None, zshift=None, zshift_grad=(0.0, 0.0)):
    """Ellipsoid (optionally sheared along z by ``zshift(x, y)``): one component.

    ``zshift`` moves the ellipsoid's centre height with ``(x, y)`` (a crescent that follows an
    endplate); ``zshift_grad`` gives its derivatives for the normal.
    """
    rx, ry, rz = radii
    dx = x - c[0]
    dy = y - c[1]
    dz = z - c[2] - (0.0 if zshift is None else zshift)
    ex, ey, ez = dx / rx, dy / ry, dz / rz
    r = np.sqrt(ex * ex + ey * ey + ez * ez)
    sx, sy = zshift_grad
    gz = ez / rz
    gx = ex / rx - gz * sx
    gy = ey / ry - gz * sy
    g = np.sqrt(gx * gx + gy * gy + gz * gz) / np.maximum(r, 1e-6)
    g = np.maximum(g, 1.0 / max(rx, ry, rz))
    d = (r - 1.0) / g
    w = np.float32(1.0) if M is None else _width(M, gx, gy, gz)
    return (d, w)


def slab_components(z, z0, z1, M=None):
    """``z0 <= z <= z1`` along local z: two components."""
    if M is None:
        one = np.float32(1.0)
        return [(z - z1, one), (z0 - z, one)]
    w = float(np.sqrt(M[2, 2]))
    return [(z - z1, w), (z0 - z, w)]


def plane_slab_components(x, y, z, normal, offset, half_thickness, M=None):
    """``|n . p - offset| <= half_thickness`` for a unit local normal: one component."""
    n = np.asarray(normal, dtype=float)
    s = n[0] * x + n[1] * y + n[2] * z - offset
    d = np.abs(s) - half_thickness
    w = np.float32(1.0) if M is None else float(_width(M, n[0], n[1], n[2]))
    return (d, w)
