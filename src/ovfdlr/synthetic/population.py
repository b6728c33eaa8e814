"""Latent patients and vertebrae: demographics, ASTLOF items, fracture geometry, scanners.

The ASTLOF items come from one shared latent severity. For vertebra ``j`` of patient ``i``

.. math::

    S_{ij} = 0.5\\,U_i + 0.866\\,V_{ij} + 0.3\\,(110 - \\mathrm{HU}_{ij}) / 40,

with ``U_i, V_ij ~ N(0, 1)`` (patient frailty and vertebra-level variation) and ``HU`` the true
mean trabecular attenuation, which falls with age and is lower in women:
``HU_i = 185 - 1.9 (age - 50) - 18 [female] + 26 ε``. The items are ordinal cuts of
correlated latent scores (``ε`` independent standard normals):

- density: 0 if HU >= 150, 1 if 90 <= HU < 150, 2 if HU < 90 (a CT proxy of the T-score bands);
- morphology ``m``: cut of ``0.5 S + ε_m``;
- MRI signal ``r``: cut of ``0.5 S + 0.4 (m - 1) + ε_r`` (a vacuum cleft needs a deformed body:
  ``r = 2`` with ``m = 0`` becomes 1);
- pain ``p``: cut of ``0.5 S + 0.3 (m - 1) + 0.3 [r = 1] + ε_p``.

The cut points (:data:`THRESHOLDS`) were tuned by simulation so that the classes (total <= 3,
= 4, >= 5) come out close to 40/30/30 %. Morphology fixes the fracture type and height loss:
0 intact; 1 wedge, biconcave or crush with 20-40 % loss; 2 burst with 40-62 % loss,
posterior-wall retropulsion and fragments. MRI signal fixes the CT proxies: 1 an acute fracture
(sclerotic condensation band under the fractured endplate, fracture lines, cortical breaks; a
quarter of them are CT-occult), 2 an intravertebral vacuum cleft (gas crescent under the
fractured endplate). Pain is invisible on CT.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import pandas as pd

from .anatomy import HEIGHT_SITES_V, endplate_depth
from .scanner import COHORT_CENTRE, sample_scanner

LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3")
LEVEL_P: tuple[float, ...] = (0.05, 0.12, 0.30, 0.30, 0.14, 0.09)

#: The paper's cohorts (vertebrae): 750 training, 187 internal, 110 external, 51 prospective.
PAPER_SCALE: MappingProxyType[str, int] = MappingProxyType(
    {"train": 750, "internal": 187, "external": 110, "prospective": 51}
)
COHORTS: tuple[str, ...] = tuple(PAPER_SCALE)
DEFAULT_N = 200

#: Share of patients who contribute two (adjacent) vertebrae: 117 of 981 in the paper.
TWO_VERTEBRAE_FRACTION = 0.12

#: Ordinal cut points on the latent scores (morphology, MRI signal, pain).
THRESHOLDS: MappingProxyType[str, tuple[float, float]] = MappingProxyType(
    {"morphology": (-1.29, 1.01), "mri_signal": (-0.90, 1.34), "pain": (-1.20, 1.36)}
)
HU_INTERCEPT = 185.0
HU_PER_YEAR = 1.9
HU_FEMALE = 18.0
HU_SD = 26.0
LATENT_LOADING = 0.5

DENSITY_CUTS_HU: tuple[float, float] = (150.0, 90.0)

RETROSPECTIVE_DATES = ("2017-01-01", "2022-12-31")
PROSPECTIVE_DATES = ("2023-03-01", "2024-02-29")

FRACTURE_TYPES = ("none", "wedge", "biconcave", "crush", "burst")
HEIGHT_DEPTH_RATIO = 0.83
BONE_TISSUE_HU = 500.0  # attenuation of a voxel-scale bone-filled region (see render)


def split_counts(n: int, proportions=PAPER_SCALE) -> dict[str, int]:
    """Split ``n`` vertebrae over cohorts in the given proportions (largest remainder)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    names = list(proportions)
    weights = np.array([proportions[k] for k in names], dtype=float)
    raw = n * weights / weights.sum()
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    for i in order[: n - counts.sum()]:
        counts[i] += 1
    return {k: int(c) for k, c in zip(names, counts, strict=True)}


def density_item(hu):
    """ASTLOF density item from the trabecular HU: 0 (>= 150), 1 (90-150), 2 (< 90)."""
    hu = np.asarray(hu)
    return np.where(hu >= DENSITY_CUTS_HU[0], 0, np.where(hu >= DENSITY_CUTS_HU[1], 1, 2))


def astlof_class(total):
    """Class from the ASTLOF total: 0 (<= 3), 1 (= 4), 2 (>= 5)."""
    total = np.asarray(total)
    return np.where(total <= 3, 0, np.where(total == 4, 1, 2))


def _cut(z, cuts):
    return (z > cuts[0]).astype(np.int64) + (z > cuts[1])


def latent_items(rng: np.random.Generator, patient_u, hu, thresholds=THRESHOLDS) -> dict:
    """ASTLOF items for vertebrae with patient frailty ``patient_u`` and trabecular ``hu``."""
    n = len(hu)
    severity = 0.5 * patient_u + 0.866 * rng.standard_normal(n) + 0.3 * (110.0 - hu) / 40.0
    lam = LATENT_LOADING
    morph = _cut(lam * severity + rng.standard_normal(n), thresholds["morphology"])
    mri = _cut(
        lam * severity + 0.4 * (morph - 1) + rng.standard_normal(n), thresholds["mri_signal"]
    )
    mri = np.where((morph == 0) & (mri == 2), 1, mri)
    pain = _cut(
        lam * severity + 0.3 * (morph - 1) + 0.3 * (mri == 1) + rng.standard_normal(n),
        thresholds["pain"],
    )
    dens = density_item(hu)
    total = morph + mri + dens + pain
    return {
        "morphology": morph,
        "mri_signal": mri,
        "density": dens,
        "pain": pain,
        "astlof_total": total,
        "label": astlof_class(total),
        "severity": severity,
    }


# ----------------------------------------------------------------------------------------------
# patients and cohorts
# ----------------------------------------------------------------------------------------------


def _patients(rng: np.random.Generator, counts: dict[str, int]) -> pd.DataFrame:
    cohorts, n_vert = [], []
    p2 = TWO_VERTEBRAE_FRACTION / (1.0 + TWO_VERTEBRAE_FRACTION)
    for cohort, c in counts.items():
        doubles = min(round(c * p2), c // 2)
        cohorts += [cohort] * (c - doubles)
        n_vert += [1] * (c - 2 * doubles) + [2] * doubles
    order = rng.permutation(len(cohorts))
    pts = pd.DataFrame(
        {
            "cohort": np.asarray(cohorts, dtype=object)[order],
            "n_vertebrae": np.asarray(n_vert)[order],
        }
    )
    m = len(pts)
    width = max(4, len(str(m)))
    pts["patient_id"] = [f"P{i + 1:0{width}d}" for i in range(m)]
    pts["centre"] = [COHORT_CENTRE[c] for c in pts["cohort"]]
    pts["age"] = np.floor(50.0 + 45.0 * rng.beta(2.0, 1.8, m)).astype(int)
    female = rng.random(m) < 0.7
    pts["sex"] = np.where(female, "F", "M")
    pts["hu_patient"] = (
        HU_INTERCEPT
        - HU_PER_YEAR * (pts["age"] - 50)
        - HU_FEMALE * female
        + HU_SD * rng.standard_normal(m)
    )
    pts["frailty"] = rng.standard_normal(m)
    dates = []
    for cohort, u in zip(pts["cohort"], rng.random(m), strict=True):
        lo, hi = PROSPECTIVE_DATES if cohort == "prospective" else RETROSPECTIVE_DATES
        lo_d, hi_d = np.datetime64(lo), np.datetime64(hi)
        span = int((hi_d - lo_d).astype(int))
        dates.append(str(lo_d + np.timedelta64(int(u * (span + 1)), "D")))
    pts["scan_date"] = dates
    return pts


def _levels(rng: np.random.Generator, n_vertebrae: np.ndarray) -> list[list[int]]:
    p = np.asarray(LEVEL_P)
    pair_p = p[:-1] * p[1:]
    pair_p = pair_p / pair_p.sum()
    out = []
    for k in n_vertebrae:
        if k == 1:
            out.append([int(rng.choice(len(p), p=p))])
        else:
            lo = int(rng.choice(len(pair_p), p=pair_p))
            out.append([lo, lo + 1])
    return out


# ----------------------------------------------------------------------------------------------
# fracture geometry
# ----------------------------------------------------------------------------------------------

_AMP_KEYS = ("top_wedge", "top_crush", "top_bowl", "bottom_wedge", "bottom_crush", "bottom_bowl")


def _fracture_shapes(rng: np.random.Generator, ftype: np.ndarray):
    """Fractured endplate(s) and unit amplitude mix of the depression terms per vertebra."""
    n = len(ftype)
    amp = {k: np.zeros(n) for k in _AMP_KEYS}
    side = np.full(n, "none", dtype=object)
    u = rng.random((n, 4))
    for i, t in enumerate(ftype):
        if t == "wedge":
            s = "superior" if u[i, 0] < 0.7 else "inferior"
            e = "top" if s == "superior" else "bottom"
            amp[f"{e}_wedge"][i] = 1.0
            amp[f"{e}_bowl"][i] = 0.25 * u[i, 1]
        elif t == "biconcave":
            s = "both"
            top = 0.4 + 0.25 * u[i, 1]
            amp["top_bowl"][i] = top
            amp["bottom_bowl"][i] = 1.0 - top
            amp["top_wedge"][i] = 0.1 * u[i, 2]
        elif t == "crush":
            s = "superior" if u[i, 0] < 0.6 else "both"
            amp["top_wedge"][i] = 0.1 + 0.25 * u[i, 1]
            if s == "superior":
                amp["top_crush"][i] = 1.0
            else:
                amp["top_crush"][i] = 0.55
                amp["bottom_crush"][i] = 0.45
        elif t == "burst":
            s = "superior" if u[i, 0] < 0.6 else "both"
            amp["top_crush"][i] = 0.5
            amp["top_wedge"][i] = 0.2 + 0.3 * u[i, 1]
            amp["top_bowl"][i] = 0.2 + 0.2 * u[i, 2]
            if s == "both":
                amp["bottom_crush"][i] = 0.35
                amp["bottom_bowl"][i] = 0.1 + 0.2 * u[i, 3]
        else:
            s = "none"
        side[i] = s
    return side, amp


def _site_depths(df: pd.DataFrame, prefix: str, fracture: bool, v):
    """Depression of one endplate at the height sites (rows x sites)."""
    u = np.zeros((len(df), len(v)))
    vv = np.broadcast_to(np.asarray(v)[None, :], u.shape)

    def col(name):
        return df[f"{prefix}_{name}"].to_numpy()[:, None]

    if fracture:
        args = (col("wedge"), col("crush"), col("bowl"), col("step"))
    else:
        args = (0.0, 0.0, 0.0, 0.0)
    depth, _, _ = endplate_depth(
        u,
        vv,
        col("concavity"),
        *args[:3],
        args[3],
        df["step_theta"].to_numpy()[:, None],
        df["step_c"].to_numpy()[:, None],
    )
    return depth


def _heights(df: pd.DataFrame, fracture: bool = True) -> np.ndarray:
    """Anterior, middle, posterior heights (rows x 3) from the endplate parameters."""
    v = HEIGHT_SITES_V
    top = _site_depths(df, "top", fracture, v)
    bot = _site_depths(df, "bottom", fracture, v)
    return df["height_ref_mm"].to_numpy()[:, None] - top - bot


def _height_at(df: pd.DataFrame, x, y) -> np.ndarray:
    """Body height (mm) at local points ``x, y`` (rows x points)."""
    a = 0.5 * df["width_mm"].to_numpy()[:, None]
    b = 0.5 * df["depth_mm"].to_numpy()[:, None]
    u, v = x / a, y / b
    total = df["height_ref_mm"].to_numpy()[:, None].copy()
    for prefix in ("top", "bottom"):

        def col(name, prefix=prefix):
            return df[f"{prefix}_{name}"].to_numpy()[:, None]

        d, _, _ = endplate_depth(
            u,
            v,
            col("concavity"),
            col("wedge"),
            col("crush"),
            col("bowl"),
            col("step"),
            df["step_theta"].to_numpy()[:, None],
            df["step_c"].to_numpy()[:, None],
        )
        total = total - d
    return total


def _fracture_geometry(rng: np.random.Generator, df: pd.DataFrame) -> pd.DataFrame:
    n = len(df)
    morph = df["morphology"].to_numpy()
    H = df["height_ref_mm"].to_numpy()

    ftype = np.full(n, "none", dtype=object)
    kind = rng.choice(3, size=n, p=(0.55, 0.25, 0.20))
    ftype[morph == 1] = np.array(["wedge", "biconcave", "crush"], dtype=object)[kind][morph == 1]
    ftype[morph == 2] = "burst"
    df["fracture_type"] = ftype

    loss_pct = np.zeros(n)
    loss_pct[morph == 1] = (20.0 + 20.0 * rng.beta(1.5, 2.0, n))[morph == 1]
    loss_pct[morph == 2] = (40.5 + 21.5 * rng.beta(1.4, 2.6, n))[morph == 2]

    side, amp = _fracture_shapes(rng, ftype)
    df["fractured_endplate"] = side
    df["top_concavity"] = rng.uniform(0.4, 0.9, n)
    df["bottom_concavity"] = rng.uniform(0.4, 0.9, n)
    step = rng.uniform(0.3, 1.0, n) * rng.choice((-1.0, 1.0), n)
    df["step_theta"] = rng.uniform(0.0, 2.0 * np.pi, n)
    df["step_c"] = rng.uniform(-0.4, 0.4, n)
    top_fx = np.isin(side, ("superior", "both"))
    bot_fx = np.isin(side, ("inferior", "both"))
    df["top_step"] = np.where(top_fx, step, 0.0)
    df["bottom_step"] = np.where(bot_fx, np.where(side == "both", -0.6 * step, step), 0.0)

    # loss at the sites is linear in the amplitude scale s: loss_i = s * A_i + C_i
    for k in _AMP_KEYS:
        df[k] = amp[k]
    steps = df[["top_step", "bottom_step"]].copy()
    df[["top_step", "bottom_step"]] = 0.0
    A = _heights(df, fracture=False) - _heights(df, fracture=True)
    df[["top_step", "bottom_step"]] = steps.to_numpy()
    for k in _AMP_KEYS:
        df[k] = 0.0
    C = _heights(df, fracture=False) - _heights(df, fracture=True)
    target = loss_pct / 100.0 * H
    with np.errstate(divide="ignore", invalid="ignore"):
        s_i = np.where(A > 1e-9, (target[:, None] - C) / A, np.inf)
    s = np.where(morph > 0, np.clip(s_i.min(axis=1), 0.0, None), 0.0)
    s = np.where(np.isfinite(s), s, 0.0)
    for k in _AMP_KEYS:
        df[k] = amp[k] * s

    h0 = _heights(df, fracture=False)
    h = _heights(df, fracture=True)
    loss = h0 - h
    df["height_anterior_mm"] = h[:, 0]
    df["height_middle_mm"] = h[:, 1]
    df["height_posterior_mm"] = h[:, 2]
    df["height_loss_mm"] = np.maximum(loss.max(axis=1), 0.0)
    df["height_loss_pct"] = 100.0 * df["height_loss_mm"] / H

    # burst: posterior-wall retropulsion into the canal
    retro = np.where(
        morph == 2,
        np.clip(1.5 + 5.5 * rng.beta(2.0, 2.0, n) * loss_pct / 50.0, 1.5, 8.0),
        0.0,
    )
    df["retropulsion_mm"] = retro
    df["retro_z_mm"] = 0.15 * H
    df["n_fragments"] = np.where(morph == 2, rng.integers(1, 4, n), 0)
    return df


def _lesions(rng: np.random.Generator, df: pd.DataFrame) -> pd.DataFrame:
    """CT proxies of the MRI-signal item: sclerotic band and fracture lines, or a vacuum cleft."""
    n = len(df)
    mri = df["mri_signal"].to_numpy()
    side = df["fractured_endplate"].to_numpy()
    df["ct_signs"] = (mri == 2) | ((mri == 1) & (rng.random(n) < 0.75))
    acute = (mri == 1) & df["ct_signs"].to_numpy()
    df["band_mm"] = np.where(acute, rng.uniform(2.0, 5.0, n), 0.0)
    df["band_gain"] = np.where(acute, rng.uniform(0.25, 0.5, n), 0.0)
    df["n_lines"] = np.where(acute, rng.integers(1, 4, n), 0)

    cleft = mri == 2
    a = 0.5 * df["width_mm"].to_numpy()
    b = 0.5 * df["depth_mm"].to_numpy()
    df["cleft_side"] = np.where(cleft, np.where(side == "inferior", -1, 1), 0)
    cx = rng.uniform(-0.12, 0.12, n) * a
    cy = rng.uniform(-0.3, 0.05, n) * b
    rx = rng.uniform(0.3, 0.5, n) * a
    ry = rng.uniform(0.3, 0.45, n) * b
    gap = df["cortical_mm"].to_numpy() + 0.8
    xs = np.stack([cx, cx - 0.9 * rx, cx + 0.9 * rx, cx, cx], axis=1)
    ys = np.stack([cy, cy, cy, cy - 0.9 * ry, cy + 0.9 * ry], axis=1)
    h_min = _height_at(df, xs, ys).min(axis=1)
    t_max = (h_min - 2.0 * gap - 0.5) / 2.0
    t = np.clip(np.minimum(rng.uniform(1.5, 3.0, n), t_max), 1.0, None)
    df["cleft_x_mm"] = np.where(cleft, cx, 0.0)
    df["cleft_y_mm"] = np.where(cleft, cy, 0.0)
    df["cleft_rx_mm"] = np.where(cleft, rx, 0.0)
    df["cleft_ry_mm"] = np.where(cleft, ry, 0.0)
    df["cleft_t_mm"] = np.where(cleft, t, 0.0)
    df["cleft_curv_mm"] = np.where(cleft, rng.uniform(0.3, 0.5, n) * t, 0.0)
    df["cleft_gap_mm"] = np.where(cleft, gap, 0.0)
    df["cleft_volume_ml"] = np.where(cleft, 4.0 / 3.0 * np.pi * rx * ry * t / 1000.0, 0.0)
    return df


# ----------------------------------------------------------------------------------------------
# the population
# ----------------------------------------------------------------------------------------------


def population_seeds(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """Independent seed sequences for the latent population and for per-case rendering."""
    pop, render = np.random.SeedSequence(seed).spawn(2)
    return pop, render


def check_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Cases per cohort, checked: known cohort names (each has its centre), whole numbers >= 0,
    at least one case in all."""
    checked = {}
    for name, value in counts.items():
        if name not in COHORTS:
            raise ValueError(
                f"cohort '{name}' is not a synthetic cohort (one of {', '.join(COHORTS)})"
            )
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"cohort '{name}': size must be a whole number >= 0 (got {value!r})")
        checked[name] = int(value)
    if sum(checked.values()) < 1:
        raise ValueError("the cohort sizes add up to no case")
    return {c: checked[c] for c in COHORTS if checked.get(c)}


def sample_population(
    n: int | None = None,
    seed: int = 0,
    paper_scale: bool = False,
    *,
    counts: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Latent patients, vertebrae and scanner parameters (no rendering).

    One row per vertebra, ordered by case id; ``n`` defaults to 200, and ``paper_scale=True``
    gives the paper's 1,098 vertebrae (750/187/110/51); ``counts`` gives the vertebrae per
    cohort instead (``{"train": 68, "external": 24}``). Each row carries everything
    :func:`~ovfdlr.synthetic.render.render_case` needs, including ``render_seed``, drawn from a
    :class:`numpy.random.SeedSequence` spawned per case so a case renders the same whatever the
    order or process it is rendered in.
    """
    if counts is not None:
        if n is not None or paper_scale:
            raise ValueError("give the cohort sizes either as counts or as n / paper_scale")
        counts = check_counts(counts)
    elif paper_scale:
        total = sum(PAPER_SCALE.values())
        if n is not None and n != total:
            raise ValueError(f"paper_scale gives {total} vertebrae; got n={n}")
        counts = dict(PAPER_SCALE)
    else:
        counts = split_counts(DEFAULT_N if n is None else int(n))
    pop_ss, render_ss = population_seeds(seed)
    rng = np.random.default_rng(pop_ss)

    pts = _patients(rng, counts)
    levels = _levels(rng, pts["n_vertebrae"].to_numpy())
    idx = np.repeat(np.arange(len(pts)), pts["n_vertebrae"].to_numpy())
    df = pts.iloc[idx].reset_index(drop=True)
    df["level_index"] = np.concatenate([np.asarray(lv, dtype=int) for lv in levels])
    df["level"] = [LEVELS[k] for k in df["level_index"]]
    n_cases = len(df)
    width = max(4, len(str(n_cases)))
    df.insert(0, "case_id", [f"ovf-{i + 1:0{width}d}" for i in range(n_cases)])

    female = (df["sex"] == "F").to_numpy()
    age = df["age"].to_numpy().astype(float)
    k = df["level_index"].to_numpy().astype(float)

    hu = np.clip(df["hu_patient"].to_numpy() + rng.normal(0.0, 5.0, n_cases), 25.0, 260.0)
    df["trabecular_hu"] = hu
    items = latent_items(rng, df["frailty"].to_numpy(), hu)
    for key, val in items.items():
        df[key] = val
    df["marrow_hu"] = np.clip(10.0 - 0.8 * (age - 50.0) + rng.normal(0.0, 8.0, n_cases), -40, 30)
    df["marrow_hu"] = np.minimum(df["marrow_hu"], hu - 15.0)
    df["cortical_mm"] = np.clip(0.55 + 0.0035 * hu + rng.normal(0.0, 0.06, n_cases), 0.5, 1.4)
    df["cortical_hu"] = np.clip(430.0 + 2.2 * hu + rng.normal(0.0, 25.0, n_cases), 500, 900)

    sex_scale = np.where(female, 0.95, 1.0)
    df["width_mm"] = np.clip(
        (40.5 + 1.7 * k) * sex_scale * rng.normal(1.0, 0.04, n_cases), 38.0, 50.0
    )
    df["depth_mm"] = np.clip(
        (29.0 + 1.1 * k) * sex_scale * rng.normal(1.0, 0.04, n_cases), 28.0, 36.0
    )
    # body proportions scale together: the pre-fracture height follows the depth with a
    # height-to-depth ratio of about 0.83 (the normative prior morphometry uses for crush loss)
    df["height_ref_mm"] = np.clip(
        HEIGHT_DEPTH_RATIO * df["depth_mm"].to_numpy() * rng.normal(1.0, 0.018, n_cases),
        23.0,
        30.0,
    )
    df["disc_above_mm"] = np.clip(7.0 + 0.55 * (k - 0.5) + rng.normal(0, 0.4, n_cases), 7, 10)
    df["disc_below_mm"] = np.clip(7.0 + 0.55 * (k + 0.5) + rng.normal(0, 0.4, n_cases), 7, 10)
    df["upper_scale"] = 0.97 * rng.normal(1.0, 0.015, n_cases)
    df["lower_scale"] = 1.03 * rng.normal(1.0, 0.015, n_cases)

    df = _fracture_geometry(rng, df)
    df = _lesions(rng, df)

    df["tilt_sagittal_deg"] = rng.uniform(-10.0, 10.0, n_cases)
    df["tilt_coronal_deg"] = rng.uniform(-5.0, 5.0, n_cases)
    df["canal_rx_mm"] = 8.5 + 0.4 * k + rng.normal(0.0, 0.6, n_cases)
    df["canal_ry_mm"] = 7.5 + rng.normal(0.0, 0.6, n_cases)
    df["arch_mm"] = rng.uniform(4.0, 6.0, n_cases)
    df["fat_mm"] = 2.0 + 6.0 * rng.beta(2.0, 3.0, n_cases)
    df["fov_dx_mm"] = rng.normal(0.0, 1.5, n_cases)
    df["fov_dy_mm"] = 6.0 + rng.normal(0.0, 1.5, n_cases)
    df["fov_dz_mm"] = rng.normal(0.0, 1.5, n_cases)

    for key, val in sample_scanner(rng, df["centre"].to_numpy()).items():
        df[key] = val

    children = render_ss.spawn(n_cases)
    df["render_seed"] = [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children]
    df["mask_label"] = 1
    df = df.drop(columns=["hu_patient", "frailty", "n_vertebrae"])
    return df
