"""Tests of the synthetic multi-centre vertebral CT cohort."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from ovfdlr.synthetic import (
    CENTRES,
    LEVELS,
    MANIFEST_COLUMNS,
    PAPER_SCALE,
    TRUTH_COLUMNS,
    generate_cohort,
    render_case,
    sample_population,
    split_counts,
)

TARGET = np.array([0.40, 0.30, 0.30])


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    return sample_population(600, seed=0)


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cohort-a")
    generate_cohort(out, n=6, seed=11, jobs=1, progress=False)
    return out


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _array(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


# ----------------------------------------------------------------------------------------------
# the population
# ----------------------------------------------------------------------------------------------


def test_split_counts_are_exact_largest_remainder():
    assert split_counts(1098) == dict(PAPER_SCALE)
    for n in (1, 6, 7, 200, 601):
        counts = split_counts(n)
        assert sum(counts.values()) == n
        raw = n * np.array(list(PAPER_SCALE.values())) / 1098
        assert np.all(np.abs(np.array(list(counts.values())) - raw) < 1.0)
    assert split_counts(200) == {"train": 137, "internal": 34, "external": 20, "prospective": 9}
    with pytest.raises(ValueError):
        split_counts(0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_class_proportions_near_40_30_30(seed):
    df = sample_population(600, seed=seed)
    share = np.bincount(df["label"], minlength=3) / len(df)
    assert np.all(np.abs(share - TARGET) <= 0.10), share


def test_items_total_and_label_are_consistent(population):
    df = population
    items = df[["morphology", "mri_signal", "density", "pain"]]
    assert items.isin([0, 1, 2]).all().all()
    assert (items.sum(axis=1) == df["astlof_total"]).all()
    expected = np.where(df["astlof_total"] <= 3, 0, np.where(df["astlof_total"] == 4, 1, 2))
    assert (df["label"] == expected).all()
    hu = df["trabecular_hu"]
    assert (df.loc[hu >= 150, "density"] == 0).all()
    assert (df.loc[(hu >= 90) & (hu < 150), "density"] == 1).all()
    assert (df.loc[hu < 90, "density"] == 2).all()
    # every item is used and correlated with the others through the shared severity
    for col in items:
        assert set(df[col]) == {0, 1, 2}
    assert df[["morphology", "mri_signal"]].corr(method="spearman").iloc[0, 1] > 0.1
    assert df[["morphology", "pain"]].corr(method="spearman").iloc[0, 1] > 0.1


def test_demographics_drive_density(population):
    df = population
    assert df["age"].between(50, 95).all()
    assert 0.6 < (df["sex"] == "F").mean() < 0.8
    assert df[["age", "trabecular_hu"]].corr().iloc[0, 1] < -0.3
    women = df.loc[df["sex"] == "F", "trabecular_hu"].mean()
    men = df.loc[df["sex"] == "M", "trabecular_hu"].mean()
    assert women < men - 5


def test_fracture_geometry_follows_morphology(population):
    df = population
    intact = df[df["morphology"] == 0]
    compression = df[df["morphology"] == 1]
    burst = df[df["morphology"] == 2]
    assert (intact["fracture_type"] == "none").all()
    assert set(compression["fracture_type"]) == {"wedge", "biconcave", "crush"}
    assert (burst["fracture_type"] == "burst").all()
    assert np.allclose(intact["height_loss_pct"], 0.0)
    assert compression["height_loss_pct"].between(19.99, 40.01).all()
    assert (burst["height_loss_pct"] > 40.0).all()
    assert (burst["retropulsion_mm"] >= 1.5).all()
    assert (df.loc[df["morphology"] < 2, "retropulsion_mm"] == 0).all()
    assert ((df["cleft_volume_ml"] > 0) == (df["mri_signal"] == 2)).all()
    # the loss is the largest of the three against the pre-fracture height
    h = df[["height_anterior_mm", "height_middle_mm", "height_posterior_mm"]]
    assert (h.min(axis=1) > 0.3 * df["height_ref_mm"]).all()
    for col in ("width_mm", "depth_mm", "height_ref_mm"):
        lo, hi = {"width_mm": (38, 50), "depth_mm": (28, 36), "height_ref_mm": (23, 30)}[col]
        assert df[col].between(lo, hi).all()


def test_paper_scale_cohorts_patients_and_levels():
    df = sample_population(paper_scale=True, seed=5)
    assert df["cohort"].value_counts().to_dict() == dict(PAPER_SCALE)
    assert len(df) == 1098 and df["case_id"].is_unique
    assert (df.groupby("patient_id")["cohort"].nunique() == 1).all()
    per_patient = df.groupby("patient_id").size()
    assert set(per_patient) <= {1, 2}
    assert 0.07 <= (per_patient == 2).mean() <= 0.17
    for _, grp in df.groupby("patient_id"):
        if len(grp) == 2:
            k = sorted(LEVELS.index(v) for v in grp["level"])
            assert k[1] - k[0] == 1
            assert grp["age"].nunique() == 1 and grp["scan_date"].nunique() == 1
    expected_centre = {"train": "A", "internal": "A", "external": "B", "prospective": "C"}
    assert (df["cohort"].map(expected_centre) == df["centre"]).all()
    prospective = pd.to_datetime(df.loc[df["cohort"] == "prospective", "scan_date"])
    others = pd.to_datetime(df.loc[df["cohort"] != "prospective", "scan_date"])
    assert prospective.min() > others.max()
    assert set(df["level"]) <= set(LEVELS)
    assert df["level"].isin(["T12", "L1"]).mean() > 0.45
    with pytest.raises(ValueError):
        sample_population(500, paper_scale=True)


def test_explicit_sizes_equal_the_split_of_n():
    """``counts`` that equal n's split give the same population as n (same seed)."""
    assert sample_population(40, seed=3).equals(sample_population(seed=3, counts=split_counts(40)))
    df = sample_population(seed=3, counts={"external": 5, "train": 7, "internal": 0})
    assert df["cohort"].value_counts().to_dict() == {"train": 7, "external": 5}
    with pytest.raises(ValueError, match="cohort 'validation' is not a synthetic cohort"):
        sample_population(seed=0, counts={"validation": 3})
    with pytest.raises(ValueError, match="size must be a whole number >= 0"):
        sample_population(seed=0, counts={"train": -1})


@pytest.mark.parametrize("labels", ["astlof", "genant", "binary"])
def test_stratified_cohorts_hold_equal_classes_of_whole_patients(labels):
    from ovfdlr.synthetic.design import (
        SCHEME_CLASSES,
        CohortDesign,
        draw_population,
        synthetic_labels,
    )

    design = CohortDesign.of(
        sizes={"train": 30, "internal": 9, "external": 13}, stratify=["external"], labels=labels
    )
    pop = draw_population(design, seed=4)
    label = synthetic_labels(pop, labels)
    k = len(SCHEME_CLASSES[labels])
    external = label[pop["cohort"] == "external"].value_counts().sort_index()
    assert external.tolist() == [13 // k + (i < 13 % k) for i in range(k)]
    assert pop["cohort"].value_counts().to_dict() == {"train": 30, "internal": 9, "external": 13}
    assert (pop.groupby("patient_id")["cohort"].nunique() == 1).all()
    # ids consecutive in row order, patients' rows together, and the draw deterministic
    width = max(4, len(str(len(pop))))
    assert pop["case_id"].tolist() == [f"ovf-{i + 1:0{width}d}" for i in range(len(pop))]
    first = pop.groupby("patient_id", sort=False).head(1).index
    assert (
        pop.groupby("patient_id")
        .size()
        .loc[pop.loc[first, "patient_id"]]
        .cumsum()
        .shift(fill_value=0)
        .to_numpy()
        == first.to_numpy()
    ).all()
    assert draw_population(design, seed=4).equals(pop)
    assert not draw_population(design, seed=5).equals(pop)


def test_a_stratified_cohort_needs_a_case_per_class():
    from ovfdlr.synthetic.design import CohortDesign

    with pytest.raises(ValueError, match="cohort 'prospective' has 2 case"):
        CohortDesign.of(sizes={"train": 9, "prospective": 2}, stratify=["prospective"])
    with pytest.raises(ValueError, match="cohort 'prospective' has no cases in this design"):
        CohortDesign.of(10, stratify=["prospective"])  # 7/2/1/0 vertebrae
    with pytest.raises(ValueError, match=r"cohort 'external' has 1 case\(s\): too few .* 4 genant"):
        CohortDesign.of(10, stratify=["external"], labels="genant")
    design = CohortDesign.of(sizes={"train": 9, "prospective": 2}, stratify=["prospective"],
                             labels="binary")  # fmt: skip
    assert design.shares("prospective") == {0: 1, 1: 1} and design.shares("train") is None


def test_a_class_that_cannot_be_filled_is_named(monkeypatch):
    from ovfdlr.synthetic import design

    # no over-sampling: Genant grade 0 (about 1 case in 10) cannot fill a quarter of a cohort
    monkeypatch.setattr(design, "OVERSAMPLING", (1,))
    plan = design.CohortDesign.of(
        sizes={"train": 5, "external": 40}, stratify=["external"], labels="genant"
    )
    with pytest.raises(ValueError, match=r"cohort 'external': only \d+ of the 10 cases of class 0"):
        design.draw_population(plan, seed=0)


def test_scanner_parameters_by_centre(population):
    df = population
    assert df["spacing_inplane_mm"].between(0.6, 0.9).all()
    assert df["slice_thickness_mm"].between(1.0, 2.5).all()
    assert df["noise_sd_hu"].between(10, 30).all()
    med = df.groupby("centre")[["spacing_inplane_mm", "slice_thickness_mm", "noise_sd_hu"]].median()
    for name, centre in CENTRES.items():
        assert abs(med.loc[name, "spacing_inplane_mm"] - centre.spacing_inplane_mm) < 0.02
        assert med.loc[name, "slice_thickness_mm"] == centre.slice_thickness_mm
        assert abs(med.loc[name, "noise_sd_hu"] - centre.noise_sd_hu) < 0.1 * centre.noise_sd_hu
    assert df["tilt_sagittal_deg"].abs().max() <= 10 and df["tilt_coronal_deg"].abs().max() <= 5


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------


def test_manifest_truth_and_files(tiny_cohort):
    manifest = pd.read_csv(tiny_cohort / "manifest.csv")
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == 6 and manifest["case_id"].str.fullmatch(r"ovf-\d{4}").all()
    assert manifest["patient_id"].str.fullmatch(r"P\d{4}").all()
    assert (manifest["mask_label"] == 1).all()
    assert set(manifest["sex"]) <= {"F", "M"}
    pd.to_datetime(manifest["scan_date"], format="%Y-%m-%d")
    truth = pd.read_csv(tiny_cohort / "truth.csv").set_index("case_id")
    assert tuple(truth.columns) == TRUTH_COLUMNS[1:]
    assert (truth.loc[manifest["case_id"], "label"].to_numpy() == manifest["label"]).all()
    info = json.loads((tiny_cohort / "cohort.json").read_text(encoding="utf-8"))
    assert info["seed"] == 11 and info["n"] == 6 and set(info["centres"]) == {"A", "B", "C"}
    for _, row in manifest.iterrows():
        for col in ("image", "mask"):
            assert not Path(row[col]).is_absolute()
            assert (tiny_cohort / row[col]).is_file()
        img = sitk.ReadImage(str(tiny_cohort / row["image"]))
        msk = sitk.ReadImage(str(tiny_cohort / row["mask"]))
        assert img.GetPixelID() == sitk.sitkInt16 and msk.GetPixelID() == sitk.sitkUInt8
        assert img.GetSize() == msk.GetSize() and img.GetOrigin() == msk.GetOrigin()
        assert np.allclose(img.GetDirection(), np.eye(3).ravel())
        t = truth.loc[row["case_id"]]
        assert np.allclose(
            img.GetSpacing(),
            (t["spacing_inplane_mm"], t["spacing_inplane_mm"], t["slice_thickness_mm"]),
            atol=1e-4,
        )
        assert set(np.unique(_array(msk))) == {0, 1}


def test_same_seed_same_bytes_other_seed_differs_jobs_invariant(tiny_cohort, tmp_path):
    again = tmp_path / "again"
    generate_cohort(again, n=6, seed=11, jobs=1, progress=False)
    first = _digests(tiny_cohort)
    assert first == _digests(again)
    parallel = tmp_path / "parallel"
    generate_cohort(parallel, n=6, seed=11, jobs=2, progress=False)
    assert first == _digests(parallel)
    other = tmp_path / "other"
    generate_cohort(other, n=6, seed=12, jobs=1, progress=False)
    second = _digests(other)
    images = [k for k in first if k.startswith("images/")]
    assert images and all(first[k] != second.get(k) for k in images)


def test_regenerating_smaller_cohort_removes_stale_cases(tmp_path):
    generate_cohort(tmp_path, n=3, seed=1, progress=False)
    generate_cohort(tmp_path, n=2, seed=1, progress=False)
    assert len(list((tmp_path / "images").glob("ovf-*.nii.gz"))) == 2
    assert len(list((tmp_path / "masks").glob("ovf-*.nii.gz"))) == 2


# ----------------------------------------------------------------------------------------------
# rendered images
# ----------------------------------------------------------------------------------------------


def _pick(df, n=1, **cond) -> list[pd.Series]:
    sel = df
    for key, val in cond.items():
        sel = sel[sel[key].isin(val if isinstance(val, list | tuple) else [val])]
    assert len(sel) >= n, cond
    return [sel.iloc[i] for i in range(n)]


def _profile_height(case, v: float) -> float:
    """Height of the mask along the body's own axis at (0, v * b), as morphometry reads it."""
    body = case.model.target
    zs = np.arange(-25.0, 25.0, 0.05)
    local = np.stack([np.zeros_like(zs), np.full_like(zs, v * body.b), zs], axis=1)
    world = body.frame.to_world(local)
    idx = (world - np.array(case.grid.origin)) / np.array(case.grid.spacing)
    mask = _array(case.mask).astype(np.float32)
    vals = ndimage.map_coordinates(mask, [idx[:, 2], idx[:, 1], idx[:, 0]], order=1)
    return float((vals >= 0.5).sum() * 0.05)


def test_trabecular_hu_falls_with_density_item(population):
    means = {}
    for item in (0, 1, 2):
        rows = _pick(population, 2, density=item, centre="A", mri_signal=0)
        vals = []
        for row in rows:
            case = render_case(row)
            img, mask = _array(case.image), _array(case.mask).astype(bool)
            inner = ndimage.binary_erosion(mask, iterations=3)
            vals.append(float(img[inner].mean()))
            assert abs(vals[-1] - row["trabecular_hu"]) < 40
        means[item] = np.mean(vals)
    assert means[0] > means[1] > means[2], means


def test_height_loss_grows_with_morphology(population):
    losses = {}
    for item in (0, 1, 2):
        rows = _pick(population, 2, morphology=item, centre=["A", "C"])
        measured = []
        for row in rows:
            case = render_case(row, noise=False)
            h = [_profile_height(case, v) for v in (-0.7, 0.0, 0.7)]
            truth = row[["height_anterior_mm", "height_middle_mm", "height_posterior_mm"]]
            assert np.allclose(h, truth.to_numpy(float), atol=1.5), (h, truth.to_numpy())
            measured.append(100.0 * (1.0 - min(h) / row["height_ref_mm"]))
        losses[item] = np.mean(measured)
    assert losses[0] < 10 < 20 < losses[1] < 40 < losses[2], losses


def test_noise_and_spacing_differ_between_centres(population):
    sds = {}
    for name in ("A", "B", "C"):
        (row,) = _pick(population, 1, centre=name, morphology=0)
        noisy = render_case(row)
        clean = render_case(row, noise=False)
        diff = _array(noisy.image).astype(float) - _array(clean.image)
        sd = float(diff.std())
        assert abs(sd - row["noise_sd_hu"]) < 0.1 * row["noise_sd_hu"] + 0.5
        sds[name] = sd
        spacing = noisy.image.GetSpacing()
        assert spacing[0] == pytest.approx(row["spacing_inplane_mm"])
        assert spacing[2] == pytest.approx(row["slice_thickness_mm"])
        # the noise is spatially correlated: neighbours in-plane are not independent
        r = np.corrcoef(diff[:, :, 1:].ravel(), diff[:, :, :-1].ravel())[0, 1]
        assert r > 0.1
    assert sds["A"] < sds["C"] < sds["B"]


def _supersampled_dice(case, k: int = 4) -> float:
    """Dice between the voxel mask and the model's occupancy from k^3 points per voxel."""
    mask = _array(case.mask).astype(bool)
    zz, yy, xx = np.nonzero(ndimage.binary_dilation(mask, iterations=2))
    lo = np.array([zz.min(), yy.min(), xx.min()])
    hi = np.array([zz.max(), yy.max(), xx.max()]) + 1
    sx, sy, sz = case.grid.spacing
    offs = (np.arange(k) + 0.5) / k - 0.5
    sub = np.stack(np.meshgrid(offs * sx, offs * sy, offs * sz, indexing="ij"), -1).reshape(-1, 3)
    ref = np.zeros(mask.shape, dtype=bool)
    for iz in range(lo[0], hi[0]):
        pts = case.grid.points((slice(iz, iz + 1), slice(lo[1], hi[1]), slice(lo[2], hi[2])))
        inside = case.model.body_contains(pts[..., None, :] + sub)
        ref[iz, lo[1] : hi[1], lo[2] : hi[2]] = inside.mean(axis=-1)[0] >= 0.5
    return 2.0 * (mask & ref).sum() / (mask.sum() + ref.sum())


def test_mask_matches_body_model(population):
    rows = [
        *_pick(population, 1, centre="A", fracture_type="burst"),
        *_pick(population, 1, centre="B", fracture_type="wedge"),
        *_pick(population, 1, centre="C", fracture_type="biconcave"),
    ]
    for row in rows:
        case = render_case(row, noise=False)
        assert _supersampled_dice(case) >= 0.95


def test_gas_only_with_vacuum_cleft(population):
    rows = [
        *_pick(population, 2, mri_signal=2, centre=["A", "C"]),
        *_pick(population, 1, mri_signal=2, centre="B"),
        *_pick(population, 2, mri_signal=1, fracture_type="burst"),
        *_pick(population, 2, mri_signal=0, morphology=[1, 2]),
    ]
    for row in rows:
        case = render_case(row)
        img, mask = _array(case.image), _array(case.mask).astype(bool)
        has_gas = bool((img[mask] < -500).any())
        assert has_gas == (row["mri_signal"] == 2), (row["case_id"], row["mri_signal"])


def test_tilt_is_recovered_from_the_mask(population):
    rows = _pick(population, 3, morphology=0, centre=["A", "C"])
    for row in rows:
        case = render_case(row, noise=False)
        mask = _array(case.mask).astype(bool)
        pts = case.grid.points()[mask]
        cov = np.cov((pts - pts.mean(axis=0)).T)
        axis = np.linalg.eigh(cov)[1][:, 0]  # shortest extent: the body's own z axis
        axis *= np.sign(axis[2])
        sagittal = np.degrees(np.arctan2(axis[1], axis[2]))  # positive: leans posteriorly
        coronal = np.degrees(np.arctan2(axis[0], axis[2]))  # positive: leans to the left
        assert abs(sagittal - row["tilt_sagittal_deg"]) < 3.0
        assert abs(coronal - row["tilt_coronal_deg"]) < 3.0


def test_render_without_noise_keeps_anatomy(population):
    (row,) = _pick(population, 1, centre="A", mri_signal=2)
    noisy, clean = render_case(row), render_case(row, noise=False)
    assert np.array_equal(_array(noisy.mask), _array(clean.mask))
    assert np.array_equal(noisy.clean, clean.clean)
    assert noisy.regions["cleft"].any()
    gas = clean.clean[noisy.regions["cleft"]]  # voxels at least half filled with gas
    assert (gas < -150).all() and gas.min() < -800  # half gas, half bone at worst


def test_provenance_only_of_the_manifest_the_generator_wrote(tmp_path):
    from ovfdlr.synthetic.cohort import provenance

    generate_cohort(tmp_path, sizes={"train": 3, "external": 3}, stratify=["external"],
                    seed=2, progress=False)  # fmt: skip
    found = provenance(tmp_path / "manifest.csv")
    assert found["seed"] == 2 and found["stratified"] == {"external": {"0": 1, "1": 1, "2": 1}}
    relabelled = pd.read_csv(tmp_path / "manifest.csv").assign(label=0)
    relabelled.to_csv(tmp_path / "manifest.csv", index=False)
    assert provenance(tmp_path / "manifest.csv") is None
    relabelled.to_csv(tmp_path / "other.csv", index=False)
    assert provenance(tmp_path / "other.csv") is None
