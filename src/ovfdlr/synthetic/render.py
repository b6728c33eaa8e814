"""Sampling the body model onto a centre's voxel grid with partial volume, then the scanner.

Each structure is painted over the ones before it with its voxel occupancy ``alpha`` (see
:mod:`.anatomy`): ``I <- I (1 - alpha) + value * alpha``, in the order muscle, intermuscular fat,
prevertebral fat, aorta, canal (CSF, cord, epidural fat), posterior arches, discs, vertebral
bodies, displaced fragments. Each structure is evaluated only inside its own bounding box.

A vertebral body's value is ``cortical_hu`` in the shell (outer minus inner occupancy, the inner
body being the outer one shrunk by ``cortical_mm``) and
``marrow_hu (1 - f) + 500 f`` in the core, with ``f`` the trabecular bone fraction
(:mod:`.texture`), raised by up to 35 % within a few mm of the endplates (subchondral bone).
In the target vertebra the lesions modify ``f`` and the shell: an acute sclerotic band adds
``gain (1 - f)`` under the fractured endplate, fracture lines remove 85 % of ``f`` and replace
the shell by haematoma (30 HU) where they cross it, and a vacuum cleft replaces the core by gas
(-900 HU) inside a 1.5 mm sclerotic rim. The mask is the target body's own occupancy >= 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import fft as sfft

from .anatomy import (
    Body,
    Frame,
    ellipse_components,
    ellipsoid_components,
    footprint_metric,
    occupancy,
    plane_slab_components,
)
from .model import (
    BLOOD_HU,
    CORD_HU,
    CSF_HU,
    DISC_ANNULUS_HU,
    DISC_NUCLEUS_HU,
    FAT_HU,
    GAP_HU,
    GAS_HU,
    MUSCLE_HU,
    CaseModel,
    Ellipsoid,
    as_params,
)
from .population import BONE_TISSUE_HU
from .scanner import Grid, apply_scanner
from .texture import bone_fraction, horizontal_share, strut_fields

_Z_INF = 80.0  # half-length of structures that run through the whole crop


@dataclass
class RenderedCase:
    """One rendered case.

    ``image`` (int16 HU) and ``mask`` (uint8 0/1) are SimpleITK images on ``grid``; ``model``
    is the millimetre body model (``model.body_contains(points)`` evaluates the generator's own
    vertebral body at world points); ``clean`` is the HU volume before the scanner (array
    ``[z, y, x]``); ``regions`` holds boolean arrays: ``core`` (trabecular core of the target,
    away from lesions), ``cleft`` (gas), ``lesion`` (band, lines, cleft) and ``background``
    (untouched muscle).
    """

    image: sitk.Image
    mask: sitk.Image
    model: CaseModel
    grid: Grid
    clean: np.ndarray
    regions: dict[str, np.ndarray] = field(default_factory=dict)


def case_grid(params: Mapping) -> Grid:
    """The case's voxel grid: 70 x 70 x 64 mm around the target, offset by ``fov_d*``."""
    p = as_params(params)
    s = float(p["spacing_inplane_mm"])
    spacing = (s, s, float(p["slice_thickness_mm"]))
    centre = (p["fov_dx_mm"], p["fov_dy_mm"], p["fov_dz_mm"])
    return Grid.around(centre, spacing)


# ----------------------------------------------------------------------------------------------
# painting helpers
# ----------------------------------------------------------------------------------------------


def _world_box(frame: Frame, lo, hi, margin: float):
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    w = frame.to_world(corners)
    return w.min(axis=0) - margin, w.max(axis=0) + margin


class _Canvas:
    def __init__(self, grid: Grid, base: float):
        self.grid = grid
        self.hu = np.full(grid.shape, base, dtype=np.float32)
        self.margin = 2.0 * max(grid.spacing)

    def local(self, frame: Frame, lo, hi):
        """``(box, x, y, z, M)``: local coordinates over the grid box covering ``[lo, hi]``."""
        box = self.grid.box(*_world_box(frame, lo, hi, self.margin))
        if box is None:
            return None
        x, y, z = self.grid.axes(box)
        xl, yl, zl = frame.to_local(x, y, z)
        shape = tuple(s.stop - s.start for s in box)
        xl, yl, zl = (np.broadcast_to(c, shape) for c in (xl, yl, zl))
        return box, xl, yl, zl, footprint_metric(frame, self.grid.spacing)

    def paint(self, box, alpha, value) -> None:
        view = self.hu[box]
        view *= 1.0 - alpha
        view += alpha * value  # value: a scalar or an array of the box's shape

    def ellipsoid(self, e: Ellipsoid) -> None:
        lo = np.subtract(e.centre, e.radii)
        hi = np.add(e.centre, e.radii)
        got = self.local(e.frame, lo, hi)
        if got is None:
            return
        box, x, y, z, M = got
        alpha = occupancy([ellipsoid_components(x, y, z, e.centre, e.radii, M)])
        self.paint(box, alpha, np.float32(e.hu))


# ----------------------------------------------------------------------------------------------
# structures
# ----------------------------------------------------------------------------------------------


def _soft_tissue(cv: _Canvas, m: CaseModel, rng: np.random.Generator) -> None:
    t = m.target
    f = t.frame
    for blob in m.blobs:
        cv.ellipsoid(blob)
    # prevertebral / paravertebral fat anterior and lateral to the column
    rx, ry, cy = t.a + m.fat_mm + 2.0, 1.15 * t.b + m.fat_mm, -0.15 * t.b
    got = cv.local(f, (-rx, cy - ry, -_Z_INF), (rx, 0.3 * t.b, _Z_INF))
    if got is not None:
        box, x, y, _, M = got
        comps = [
            ellipse_components(x, y, 0.0, cy, rx, ry, M),
            (y - 0.3 * t.b, float(np.sqrt(M[1, 1]))),
        ]
        cv.paint(box, occupancy(comps), np.float32(FAT_HU + rng.uniform(-10.0, 10.0)))
    # aorta (unenhanced blood), with a wall calcification in the elderly
    ao = m.aorta
    got = cv.local(
        f,
        (ao["cx"] - ao["r"], ao["cy"] - ao["r"], -_Z_INF),
        (ao["cx"] + ao["r"], ao["cy"] + ao["r"], _Z_INF),
    )
    if got is not None:
        box, x, y, _, M = got
        alpha = occupancy([ellipse_components(x, y, ao["cx"], ao["cy"], ao["r"], ao["r"], M)])
        cv.paint(box, alpha, np.float32(BLOOD_HU))
    if ao["calcified"]:
        c = (
            ao["cx"] + (ao["r"] - 0.8) * np.cos(ao["calc_angle"]),
            ao["cy"] + (ao["r"] - 0.8) * np.sin(ao["calc_angle"]),
            float(rng.uniform(-20.0, 20.0)),
        )
        cv.ellipsoid(Ellipsoid(f, c, (1.2, 1.2, float(rng.uniform(2.0, 5.0))), 450.0))


def _canal(cv: _Canvas, m: CaseModel) -> None:
    f = m.target.frame
    c = m.canal
    cx, cy, rx, ry = c["cx"], c["cy"], c["rx"], c["ry"]
    got = cv.local(f, (cx - rx, cy - ry, -_Z_INF), (cx + rx, cy + ry, _Z_INF))
    if got is None:
        return
    box, x, y, _, M = got
    cv.paint(box, occupancy([ellipse_components(x, y, cx, cy, rx, ry, M)]), np.float32(CSF_HU))
    if m.cord:
        r = 4.5
        alpha = occupancy([ellipse_components(x, y, cx, cy - 0.1 * ry, r, r * 0.85, M)])
        cv.paint(box, alpha, np.float32(CORD_HU))
    alpha = occupancy([ellipse_components(x, y, cx, cy + 0.55 * ry, 0.55 * rx, 0.45 * ry, M)])
    cv.paint(box, alpha, np.float32(FAT_HU + 10.0))


def _arch(cv: _Canvas, m: CaseModel, body: Body, hu: float) -> None:
    """Pedicles and laminae: an elliptic ring around the canal over the upper body height."""
    c = m.canal
    t = m.arch_mm
    rx, ry = c["rx"], c["ry"]
    cy = body.b + ry + 0.5
    z0, z1 = -0.3 * body.H, 0.45 * body.H
    got = cv.local(body.frame, (-rx - t, cy - ry - t, z0), (rx + t, cy + ry + t, z1))
    if got is None:
        return
    box, x, y, z, M = got
    d_in, w_in = ellipse_components(x, y, 0.0, cy, rx, ry, M)
    wz = float(np.sqrt(M[2, 2]))
    comps = [
        ellipse_components(x, y, 0.0, cy, rx + t, ry + t, M),
        (-d_in, w_in),
        (z - z1, wz),
        (z0 - z, wz),
    ]
    cv.paint(box, occupancy(comps), np.float32(hu))


def _disc(cv: _Canvas, below: Body, above: Body) -> None:
    """The disc between two bodies (in the lower body's frame), 1 mm into both endplates."""
    f = below.frame
    ad = max(below.a, above.a) + 1.2
    bd = max(below.b, above.b) + 1.0
    _, zt_max, _, _ = below.surface_range()
    zt_min = below.surface_range()[0]
    # the upper body's inferior surface, expressed in this frame (bounding box only)
    corners = np.array(
        [[sx * above.a, sy * above.b, -0.5 * above.H] for sx in (-1, 1) for sy in (-1, 1)]
    )
    in_world = above.frame.to_world(corners)
    in_below = (in_world - f.origin) @ f.R
    z_hi = float(in_below[:, 2].max()) + 2.0
    got = cv.local(f, (-ad, -bd, zt_min - 1.5), (ad, bd, max(z_hi, zt_max + 1.0)))
    if got is None:
        return
    box, x, y, z, M = got
    (dt, wt), _ = below.endplate_components(x, y, z, M)
    xa, ya, za = above.frame.to_local(*cv.grid.axes(box))
    Ma = footprint_metric(above.frame, cv.grid.spacing)
    _, (db, wb) = above.endplate_components(xa, ya, za, Ma)
    comps = [ellipse_components(x, y, 0.0, 0.0, ad, bd, M), (-dt - 1.0, wt), (-db - 1.0, wb)]
    alpha = occupancy(comps)
    r = np.sqrt((x / ad) ** 2 + (y / bd) ** 2)
    ramp = np.clip((r - 0.55) / 0.3, 0.0, 1.0)
    value = DISC_NUCLEUS_HU + (DISC_ANNULUS_HU - DISC_NUCLEUS_HU) * ramp
    cv.paint(box, alpha, value.astype(np.float32))


def _subchondral(comps) -> np.ndarray:
    """Factor ``1 + 0.35 exp(-depth / 2 mm)`` by depth below the nearer endplate."""
    depth = np.maximum(-np.maximum(comps[1][0], comps[2][0]), 0.0)
    return 1.0 + 0.35 * np.exp(-0.5 * depth)


@dataclass
class _BodyEval:
    box: tuple
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    M: np.ndarray
    surf: tuple
    comps: list
    occ: np.ndarray
    core: np.ndarray


def _evaluate(cv: _Canvas, body: Body, cortical_mm: float) -> _BodyEval | None:
    got = cv.local(body.frame, *body.local_bbox(0.5))
    if got is None:
        return None
    box, x, y, z, M = got
    surf = body.surfaces(x, y)
    comps = body.components(x, y, z, M, surf)
    occ = occupancy(comps)
    core = occupancy(comps, offset=cortical_mm)
    return _BodyEval(box, x, y, z, M, surf, comps, occ, core)


def _paint_body(cv: _Canvas, m: CaseModel, body: Body, ev: _BodyEval, fraction, lesions: bool):
    """Paint one evaluated vertebral body; returns the lesion maps of the target."""
    p = m.params
    x, y, z, M = ev.x, ev.y, ev.z, ev.M
    cort_mm = float(p["cortical_mm"])
    f = fraction[ev.box] * _subchondral(ev.comps)
    shell_value = np.float32(p["cortical_hu"])
    info: dict[str, np.ndarray] = {}
    gas = None
    if lesions:
        lesion = np.zeros(ev.occ.shape, dtype=np.float32)
        side = p["fractured_endplate"]
        gain = float(p["band_gain"])
        if gain > 0.0:
            zt, zb = ev.surf[0], ev.surf[3]
            if side == "both":
                sides = ("top", "bottom")
            else:
                sides = ("bottom",) if side == "inferior" else ("top",)
            c0, c1 = cort_mm, cort_mm + float(p["band_mm"])
            for s in sides:
                depth = (zt - z) if s == "top" else (z - zb)
                wb = np.clip(np.minimum(depth - c0, c1 - depth) + 0.5, 0.0, 1.0)
                f = f + (1.0 - f) * gain * wb
                lesion = np.maximum(lesion, wb)
        if m.lines:
            keep = np.ones(ev.occ.shape, dtype=np.float32)
            for ln in m.lines:
                comp = plane_slab_components(x, y, z, ln.normal, ln.offset, ln.half, M)
                a_line = occupancy([comp])
                keep *= 1.0 - a_line
                lesion = np.maximum(lesion, a_line)
            f = f * (1.0 - 0.85 * (1.0 - keep))
            shell_value = shell_value * keep + np.float32(GAP_HU) * (1.0 - keep)
        if m.cleft is not None:
            cl = m.cleft
            zc, sx, sy = cl.shift(body, x, y, ev.surf)
            comp = ellipsoid_components(
                x, y, z, (cl.x, cl.y, 0.0), (cl.rx, cl.ry, cl.t), M, zshift=zc, zshift_grad=(sx, sy)
            )
            gas = occupancy([comp])
            rim = occupancy([(comp[0] - 1.5, comp[1])]) - gas
            f = f + (1.0 - f) * 0.3 * rim
            lesion = np.maximum(lesion, np.maximum(gas, rim))
        info["lesion"] = lesion
    marrow = np.float32(p["marrow_hu"])
    trab = marrow + (np.float32(BONE_TISSUE_HU) - marrow) * f
    if gas is not None:
        trab = trab * (1.0 - gas) + np.float32(GAS_HU) * gas
        info["gas"] = gas
    view = cv.hu[ev.box]
    view *= 1.0 - ev.occ
    view += shell_value * (ev.occ - ev.core) + trab * ev.core
    return info


def _fraction(model: CaseModel, grid: Grid, rng: np.random.Generator, evals) -> np.ndarray:
    """Trabecular bone fraction over the bodies' boxes (``mean`` elsewhere), calibrated so that
    the mean over the target's core (subchondral factor included) gives ``trabecular_hu``."""
    p = model.params
    hu = float(p["trabecular_hu"])
    marrow = float(p["marrow_hu"])
    mean_f = (hu - marrow) / (BONE_TISSUE_HU - marrow)
    boxes = [ev.box for ev in evals if ev is not None]
    lo = [min(b[i].start for b in boxes) for i in range(3)]
    hi = [max(b[i].stop for b in boxes) for i in range(3)]
    tbox = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    shape = tuple(b - a for a, b in zip(lo, hi, strict=True))
    padded = (
        sfft.next_fast_len(shape[0]),
        sfft.next_fast_len(shape[1]),
        sfft.next_fast_len(shape[2], real=True),
    )
    v, h = strut_fields(rng, padded, grid.spacing, model.target.frame.R)
    crop = tuple(slice(0, n) for n in shape)
    fraction = np.full(grid.shape, mean_f, dtype=np.float32)
    fraction[tbox] = bone_fraction(v[crop], h[crop], mean_f, horizontal_share(hu))
    target = evals[1]
    core = target.core >= 0.999
    if core.any():
        f = fraction[target.box] * _subchondral(target.comps)
        fraction *= np.float32(mean_f / max(float(f[core].mean()), 1e-6))
    return fraction


def compose(model: CaseModel, grid: Grid, rng: np.random.Generator):
    """The ideal HU volume, the mask and the region maps (before the scanner)."""
    p = model.params
    cv = _Canvas(grid, MUSCLE_HU + float(rng.normal(0.0, 3.0)))
    background_value = float(cv.hu.flat[0])
    _soft_tissue(cv, model, rng)
    _canal(cv, model)
    arch_hu = 0.5 * float(p["cortical_hu"]) + 0.5 * (float(p["trabecular_hu"]) + 100.0)
    for body in (model.lower, model.target, model.upper):
        _arch(cv, model, body, arch_hu)
    _disc(cv, model.lower, model.target)
    _disc(cv, model.target, model.upper)

    cort = float(p["cortical_mm"])
    bodies = (model.lower, model.target, model.upper)
    evals = [_evaluate(cv, b, cort) for b in bodies]
    fraction = _fraction(model, grid, rng, evals)
    for body, ev in zip(bodies, evals, strict=True):
        if ev is not None and body is not model.target:
            _paint_body(cv, model, body, ev, fraction, lesions=False)
    target = evals[1]
    info = _paint_body(cv, model, model.target, target, fraction, lesions=True)
    for frag in model.fragments:
        cv.ellipsoid(frag)

    shape = grid.shape
    mask = np.zeros(shape, dtype=np.uint8)
    mask[target.box] = target.occ >= 0.5
    regions = {k: np.zeros(shape, dtype=bool) for k in ("core", "cleft", "lesion")}
    lesion = info["lesion"]
    regions["core"][target.box] = (target.core >= 0.999) & (lesion <= 0.0)
    regions["lesion"][target.box] = lesion > 0.0
    if "gas" in info:
        regions["cleft"][target.box] = info["gas"] >= 0.5
    regions["background"] = cv.hu == np.float32(background_value)
    return cv.hu, mask, regions


def _to_image(arr: np.ndarray, grid: Grid) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(grid.spacing)
    img.SetOrigin(grid.origin)
    return img


def render_case(row: Mapping, *, noise: bool = True, psf: bool = True) -> RenderedCase:
    """Render one population row: CT image (int16 HU) and vertebral-body mask (uint8).

    ``noise=False`` and ``psf=False`` switch off those scanner effects (same anatomy and
    texture: every random draw before the noise is unchanged).
    """
    p = as_params(row)
    rng = np.random.default_rng(int(p["render_seed"]))
    model = CaseModel.from_row(p, rng)
    grid = case_grid(p)
    clean, mask, regions = compose(model, grid, rng)
    img = apply_scanner(
        clean,
        grid,
        rng,
        blur_mm=float(p["blur_mm"]),
        blur_z_mm=float(p["blur_z_mm"]),
        noise_sd_hu=float(p["noise_sd_hu"]),
        hu_offset=float(p["hu_offset"]),
        noise=noise,
        psf=psf,
    )
    return RenderedCase(
        image=_to_image(img, grid),
        mask=_to_image(mask, grid),
        model=model,
        grid=grid,
        clean=clean,
        regions=regions,
    )
