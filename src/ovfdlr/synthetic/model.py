"""One case's body model in millimetres, assembled from a population row.

The target vertebra sits at the world origin, turned by the sagittal and coronal tilt:
``R = R_y(c) R_x(-s)``, so its superior axis is ``(sin c cos s, sin s, cos c cos s)``, leaning
posteriorly for a positive sagittal tilt ``s`` and to the patient's left for a positive coronal
tilt ``c``; ``atan2(axis_y, axis_z)`` and ``atan2(axis_x, axis_z)`` read them back. Its
neighbours rest on the discs above and below: each neighbour's endplate rim lies one disc
height from the target's (possibly collapsed) rim, so a wedge fracture tilts the segment above
by ``atan((z_post - z_ant) / depth)`` as kyphosis does. Discs fill the space between the
endplates inside a slightly bulging ellipse; the spinal canal, a posterior arch (pedicles and
laminae) per vertebra, a prevertebral fat layer, the aorta and intermuscular fat blobs surround
them in muscle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .anatomy import Body, Endplate, Frame, rotation_x, rotation_y

MUSCLE_HU = 45.0
FAT_HU = -100.0
CSF_HU = 8.0
CORD_HU = 35.0
BLOOD_HU = 40.0
DISC_NUCLEUS_HU = 75.0
DISC_ANNULUS_HU = 95.0
GAS_HU = -900.0
GAP_HU = 30.0  # haematoma in a fracture line


def as_params(row: Mapping) -> dict:
    """A population row (Series or mapping) as a dict of plain Python scalars."""
    items = row.items() if hasattr(row, "items") else dict(row).items()
    out = {}
    for k, v in items:
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


@dataclass(frozen=True)
class Ellipsoid:
    frame: Frame
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    hu: float


@dataclass(frozen=True)
class Line:
    """A fracture line: the slab ``|n . p - offset| <= half`` inside the target (local frame)."""

    normal: tuple[float, float, float]
    offset: float
    half: float


@dataclass(frozen=True)
class Cleft:
    """Gas crescent following an endplate (local frame of the target)."""

    side: int  # +1 under the superior endplate, -1 over the inferior one
    x: float
    y: float
    rx: float
    ry: float
    t: float  # half thickness
    curv: float
    gap: float

    def shift(self, body: Body, x, y, surf=None):
        """Centre height of the crescent at ``(x, y)`` and its slope."""
        zt, tx, ty, zb, bx, by = body.surfaces(x, y) if surf is None else surf
        rho2 = ((x - self.x) / self.rx) ** 2 + ((y - self.y) / self.ry) ** 2
        drx = 2.0 * (x - self.x) / self.rx**2
        dry = 2.0 * (y - self.y) / self.ry**2
        if self.side > 0:
            zc = zt - self.gap - self.t + self.curv * rho2
            return zc, tx + self.curv * drx, ty + self.curv * dry
        zc = zb + self.gap + self.t - self.curv * rho2
        return zc, bx - self.curv * drx, by - self.curv * dry


@dataclass
class CaseModel:
    """Everything that is drawn for one case (millimetres, world = LPS)."""

    params: dict
    target: Body
    upper: Body
    lower: Body
    canal: dict
    arch_mm: float
    fat_mm: float
    cord: bool
    aorta: dict
    blobs: list[Ellipsoid] = field(default_factory=list)
    fragments: list[Ellipsoid] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    cleft: Cleft | None = None

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_row(cls, row: Mapping, rng: np.random.Generator) -> CaseModel:
        p = as_params(row)
        a, b, H = 0.5 * p["width_mm"], 0.5 * p["depth_mm"], p["height_ref_mm"]
        R = rotation_y(np.deg2rad(p["tilt_coronal_deg"])) @ rotation_x(
            -np.deg2rad(p["tilt_sagittal_deg"])
        )
        frame = Frame(R, np.zeros(3))

        def endplate(prefix: str) -> Endplate:
            return Endplate(
                concavity=p[f"{prefix}_concavity"],
                wedge=p[f"{prefix}_wedge"],
                crush=p[f"{prefix}_crush"],
                bowl=p[f"{prefix}_bowl"],
                step=p[f"{prefix}_step"],
                step_theta=p["step_theta"],
                step_c=p["step_c"],
            )

        target = Body(
            frame,
            a,
            b,
            H,
            endplate("top"),
            endplate("bottom"),
            retro=p["retropulsion_mm"],
            retro_z=p["retro_z_mm"],
        )
        upper = _neighbour(target, p["upper_scale"], p["disc_above_mm"], +1, rng)
        lower = _neighbour(target, p["lower_scale"], p["disc_below_mm"], -1, rng)

        rx, ry = p["canal_rx_mm"], p["canal_ry_mm"]
        canal = {"cx": 0.0, "cy": b + ry + 0.5, "rx": rx, "ry": ry}
        cord = p["level_index"] <= 3

        # aorta: anterior and to the patient's left of the body
        r_ao = rng.uniform(9.0, 13.0)
        aorta = {
            "cx": 0.55 * a + rng.uniform(-3.0, 3.0),
            "cy": -(0.6 * b + 0.85 * r_ao + 0.5 * p["fat_mm"]),
            "r": r_ao,
            "calcified": bool(rng.random() < (p["age"] - 45.0) / 60.0),
            "calc_angle": rng.uniform(0.0, 2.0 * np.pi),
        }

        blobs = []
        for _ in range(int(rng.integers(2, 6))):
            side = rng.choice((-1.0, 1.0))
            c = (
                side * rng.uniform(0.6 * a, a + 14.0),
                rng.uniform(b + 4.0, b + 32.0),
                rng.uniform(-30.0, 30.0),
            )
            radii = tuple(rng.uniform(2.5, 7.0, 3))
            blobs.append(Ellipsoid(frame, c, radii, FAT_HU + rng.uniform(-10.0, 10.0)))

        model = cls(
            params=p,
            target=target,
            upper=upper,
            lower=lower,
            canal=canal,
            arch_mm=p["arch_mm"],
            fat_mm=p["fat_mm"],
            cord=cord,
            aorta=aorta,
            blobs=blobs,
        )
        model.lines = _fracture_lines(model, rng)
        model.fragments = _fragments(model, rng)
        if p["cleft_side"] != 0:
            model.cleft = Cleft(
                side=int(p["cleft_side"]),
                x=p["cleft_x_mm"],
                y=p["cleft_y_mm"],
                rx=p["cleft_rx_mm"],
                ry=p["cleft_ry_mm"],
                t=p["cleft_t_mm"],
                curv=p["cleft_curv_mm"],
                gap=p["cleft_gap_mm"],
            )
        return model

    # ------------------------------------------------------------------------------------------
    def body_components(self, points: np.ndarray, spacing=None):
        """Components of the target body at world ``points (..., 3)``."""
        from .anatomy import footprint_metric

        f = self.target.frame
        x, y, z = f.to_local(points[..., 0], points[..., 1], points[..., 2])
        M = None if spacing is None else footprint_metric(f, spacing)
        return self.target.components(x, y, z, M)

    def body_contains(self, points: np.ndarray) -> np.ndarray:
        """The generator's own vertebral-body indicator at world points ``(..., 3)`` (mm)."""
        from .anatomy import inside

        return inside(self.body_components(np.asarray(points, dtype=np.float64)))

    def body_occupancy(self, points: np.ndarray, spacing) -> np.ndarray:
        """Partial-volume occupancy of voxels of ``spacing`` centred at ``points``."""
        from .anatomy import occupancy

        return occupancy(self.body_components(np.asarray(points, dtype=np.float64), spacing))


def _neighbour(target: Body, scale: float, disc: float, side: int, rng) -> Body:
    """The intact vertebra above (side=+1) or below (-1), resting on the disc."""
    zta, ztp, zba, zbp = target.rim_heights()
    if side > 0:
        z_ant, z_post = zta + disc, ztp + disc
    else:
        z_ant, z_post = zba - disc, zbp - disc
    theta = float(np.arctan2(z_post - z_ant, 2.0 * target.b))
    Rn = rotation_x(theta)
    a, b, H = target.a * scale, target.b * scale, target.H * scale
    rim_mid = np.array([0.0, 0.0, 0.5 * (z_ant + z_post)])
    centre = rim_mid + side * (Rn @ np.array([0.0, 0.0, 0.5 * H]))
    local = Frame(Rn, centre)
    concav = (float(rng.uniform(0.4, 0.9)), float(rng.uniform(0.4, 0.9)))
    return Body(
        target.frame.compose(local),
        a,
        b,
        H,
        Endplate(concavity=concav[0]),
        Endplate(concavity=concav[1]),
    )


def _fracture_lines(model: CaseModel, rng) -> list[Line]:
    p = model.params
    body = model.target
    lines: list[Line] = []
    side = p["fractured_endplate"]
    n_acute = int(p["n_lines"])
    for _ in range(n_acute):
        # roughly parallel to the fractured endplate, a few mm inside it
        sup = side != "inferior"
        tilt = rng.normal(0.0, 0.25, 2)
        n = np.array([tilt[0], tilt[1], 1.0])
        n /= np.linalg.norm(n)
        zt, _, _, zb, _, _ = body.surfaces(0.0, 0.0)
        depth = rng.uniform(2.0, 7.0)
        z0 = (zt - depth) if sup else (zb + depth)
        lines.append(Line(tuple(n), float(n[2] * z0), float(rng.uniform(0.35, 0.6))))
    if p["fracture_type"] == "burst":
        for _ in range(int(rng.integers(1, 3))):
            phi = rng.uniform(0.0, np.pi)
            n = np.array([np.cos(phi), np.sin(phi), rng.normal(0.0, 0.2)])
            n /= np.linalg.norm(n)
            off = rng.uniform(-0.3, 0.3) * body.a
            lines.append(Line(tuple(n), float(off), float(rng.uniform(0.4, 0.7))))
    return lines


def _fragments(model: CaseModel, rng) -> list[Ellipsoid]:
    p = model.params
    body = model.target
    out = []
    for _ in range(int(p["n_fragments"])):
        ang = rng.uniform(0.9 * np.pi, 2.1 * np.pi)  # anterior and lateral, not into the canal
        zt, _, _, _, _, _ = body.surfaces(0.0, 0.0)
        r = 1.0 + rng.uniform(0.5, 3.0) / min(body.a, body.b)
        c = (
            float(body.a * r * np.cos(ang)),
            float(body.b * r * np.sin(ang)),
            float(zt - rng.uniform(1.0, 5.0)),
        )
        radii = (
            float(rng.uniform(1.5, 3.5)),
            float(rng.uniform(1.5, 3.5)),
            float(rng.uniform(1.2, 2.5)),
        )
        out.append(Ellipsoid(body.frame, c, radii, float(rng.uniform(350.0, 600.0))))
    return out
