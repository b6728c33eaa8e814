"""Radiomics: PyRadiomics' own baselines, the IBSI digital phantom, parameters and bad input."""

from __future__ import annotations

import ast
import copy
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ovfdlr import radiomics
from ovfdlr.cache import stable_hash
from ovfdlr.cli import app

from .conftest import good_row, write_manifest, write_volume

runner = CliRunner()


# ---------------------------------------------------------------------------------------------
# PyRadiomics' baselines


def _baseline_configurations(folder):
    """{(case, column): (settings, image types, {feature: value})} over every class but shape2D."""
    configs: dict = {}
    grouped = defaultdict(dict)
    for path in sorted((folder / "baseline").glob("baseline_*.csv")):
        feature_class = path.stem.removeprefix("baseline_")
        if feature_class == "shape2D":
            continue
        table = pd.read_csv(path, index_col=0)
        for column in table.columns:
            case = column.split("_")[0]
            if case not in ("brain1", "breast1"):
                continue
            settings = table.loc["diagnostics_Configuration_Settings", column]
            types = table.loc["diagnostics_Configuration_EnabledImageTypes", column]
            key = (case, column, settings, types)
            configs[key] = (ast.literal_eval(settings), ast.literal_eval(types))
            values = table.loc[table.index.str.startswith("original_"), column]
            grouped[key].update({name: float(v) for name, v in values.items()})
            grouped[key].setdefault("__classes__", set()).add(feature_class)  # type: ignore[union-attr]
    return configs, grouped


@pytest.mark.parametrize("engine", ["native", "pyradiomics"])
def test_pyradiomics_baselines_reproduced(shared_data, engine):
    """Every original_* baseline feature of brain1 and breast1, every configuration column,
    by each engine.

    Relative tolerance 1e-6, except shape features at 1e-3: PyRadiomics' mesh (marching cubes)
    code changed after these baselines were made, which moves mesh-based shape values slightly.
    The native engine's shape features are held to PyRadiomics' current mesh code instead
    (computed here), at 1e-9.
    """
    folder = shared_data / "pyradiomics"
    configs, grouped = _baseline_configurations(folder)
    assert len(configs) >= 16  # brain1 and breast1, 8 configurations each
    mismatches, compared = [], 0
    for key, (settings, image_types) in configs.items():
        case, column = key[0], key[1]
        expected = dict(grouped[key])
        classes = expected.pop("__classes__")
        params = {
            "setting": settings,
            "imageType": image_types,
            "featureClass": {c: [] for c in classes},
        }
        image, mask = folder / f"{case}_image.nrrd", folder / f"{case}_label.nrrd"
        result = radiomics.extract(image, mask, params, label=1, engine=engine)
        current_shape = {}
        if engine == "native" and "shape" in classes:
            shape_only = dict(params, featureClass={"shape": []})
            current_shape = radiomics.extract(
                image, mask, shape_only, label=1, engine="pyradiomics"
            ).features
        for name, reference in expected.items():
            compared += 1
            if name not in result.features:
                mismatches.append(f"{column} {name}: missing")
                continue
            tolerance = 1e-3 if "_shape_" in name else 1e-6
            if name in current_shape:
                reference, tolerance = current_shape[name], 1e-9
            ours = result.features[name]
            if not np.isclose(ours, reference, rtol=tolerance, atol=1e-12):
                mismatches.append(f"{column} {name}: {ours!r} vs baseline {reference!r}")
    assert compared > 1000
    assert not mismatches, "\n".join(mismatches)


# ---------------------------------------------------------------------------------------------
# IBSI digital phantom

# Where PyRadiomics deviates from IBSI by design (docs/radiomics.md):
IBSI_BY_DESIGN = {
    "stat_kurt",  # PyRadiomics reports kurtosis, IBSI excess kurtosis (kurtosis - 3)
    "morph_pca_min_axis",  # covariance of voxel centres normalised by N, IBSI by N - 1
    "morph_pca_least_axis",
}
IBSI_PREFIX_SETTINGS = {
    "3D_": {},
    "3D_Combined_": {"weightingNorm": "no_weighting"},
    "2D_": {"force2D": True},
    "2D_Combined_": {"force2D": True, "weightingNorm": "no_weighting"},
}


def _allowed(value: str, tolerance: str) -> float:
    """IBSI's tolerance, or half a unit of the 3rd significant digit where it is given as 0."""
    reference = float(value)
    sig = 0.5 * 10.0 ** (np.floor(np.log10(abs(reference))) - 2) if reference else 0.0
    return max(float(tolerance or 0), sig)


@pytest.mark.parametrize("engine", ["native", "pyradiomics"])
def test_ibsi_digital_phantom(shared_data, capsys, engine):
    folder = shared_data / "ibsi"
    base = radiomics.load_params(folder / "pyradiomics_phantom_params.yml")
    ours = {}
    for prefix, settings in IBSI_PREFIX_SETTINGS.items():
        params = copy.deepcopy(base)
        params["setting"].update(settings)
        result = radiomics.extract(
            folder / "digital_phantom_image.nii.gz",
            folder / "digital_phantom_mask.nii.gz",
            params,
            engine=engine,
        )
        ours.update({prefix + name: value for name, value in result.features.items()})
    reference = pd.read_csv(
        folder / "ibsi_1_digital_phantom_reference.csv",
        sep=";",
        dtype=str,
        keep_default_na=False,
        names=["value", "tolerance", "tag"],
        header=0,
    )
    mapping = pd.read_csv(folder / "ibsi_to_pyradiomics_phantom.csv").merge(
        reference, on="tag", how="left"
    )
    mapping = mapping[mapping["value"].fillna("") != ""]
    mapping["ours"] = mapping["pyradiomics_feature"].map(ours)
    mapping["reference"] = mapping["value"].astype(float)
    mapping["allowed"] = [
        _allowed(v, t) for v, t in zip(mapping["value"], mapping["tolerance"], strict=True)
    ]
    mapping["agrees"] = (mapping["ours"] - mapping["reference"]).abs() <= mapping["allowed"]
    mapping["family"] = mapping["tag"].str.split("_").str[0]
    summary = mapping.groupby("family")["agrees"].agg(agree="sum", mapped="count")
    with capsys.disabled():
        print(
            f"\nIBSI digital phantom ({engine}): features agreeing with the reference, per family"
        )
        print(summary.to_string())
        print(mapping.loc[~mapping["agrees"], ["tag", "reference", "ours"]].to_string(index=False))

    assert mapping["ours"].notna().all(), mapping.loc[mapping["ours"].isna(), "tag"].tolist()
    disagree = set(mapping.loc[~mapping["agrees"], "tag"])
    # first order, GLCM, GLRLM, GLSZM, GLDM, NGTDM and intensity histogram: all agree,
    # shape all but the documented axis lengths
    assert disagree == IBSI_BY_DESIGN
    for family in ("stat", "ih", "cm", "rlm", "szm", "ngl", "ngt"):
        rows = mapping[(mapping["family"] == family) & ~mapping["tag"].isin(IBSI_BY_DESIGN)]
        assert len(rows) > 0 and rows["agrees"].all(), family
    by_tag = mapping.set_index("tag")
    kurtosis = by_tag.loc["stat_kurt"]
    assert kurtosis["ours"] - 3 == pytest.approx(kurtosis["reference"], abs=kurtosis["allowed"])
    voxels = 74  # the phantom's ROI
    for tag in ("morph_pca_maj_axis", "morph_pca_min_axis", "morph_pca_least_axis"):
        row = by_tag.loc[tag]
        rescaled = row["ours"] * np.sqrt(voxels / (voxels - 1))
        assert rescaled == pytest.approx(row["reference"], abs=row["allowed"]), tag


# ---------------------------------------------------------------------------------------------
# parameters


def test_default_params_are_the_documented_vertebral_ct_settings():
    params = radiomics.load_params()
    assert set(params["imageType"]) == {"Original", "Wavelet", "LoG"}
    assert params["imageType"]["LoG"]["sigma"] == [1.0, 2.0, 3.0]
    assert set(params["featureClass"]) == {
        "shape",
        "firstorder",
        "glcm",
        "glrlm",
        "glszm",
        "gldm",
        "ngtdm",
    }
    setting = params["setting"]
    assert setting["resampledPixelSpacing"] == [1, 1, 1]
    assert setting["interpolator"] == "sitkBSpline"
    assert setting["binWidth"] == 25
    assert setting["normalize"] is False
    assert setting["preCrop"] is True


def test_cache_key_tracks_resolved_settings():
    def key(params):
        return stable_hash(radiomics.RadiomicsStage(params).cache_settings())

    params = radiomics.load_params()
    other = copy.deepcopy(params)
    other["setting"]["binWidth"] = 20
    assert key(params) == key(copy.deepcopy(params))
    assert key(params) != key(other)
    # an explicit default changes nothing: the key hashes what PyRadiomics applies
    explicit = copy.deepcopy(params)
    explicit["setting"]["distances"] = [1]
    assert key(explicit) == key(params)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ({"imageType": {"Sharpen": {}}}, "imageType.Sharpen"),
        ({"featureClass": {"glcmm": None}}, "featureClass.glcmm"),
        ({"featureClass": {"glcm": ["ClusterShadow"]}}, "featureClass.glcm.ClusterShadow"),
        ({"setting": {"binWidht": 25}}, "binWidht"),
        ({"settings": {"binWidth": 25}}, "section 'settings'"),
        ({"featureClass": {"glcm": "ClusterShade"}}, "must be a list"),
    ],
)
def test_bad_params_name_the_key(tmp_path, content, needle):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(radiomics.RadiomicsParamsError) as info:
        radiomics.load_params(path)
    assert needle in str(info.value) and str(path) in str(info.value)
    result = runner.invoke(
        app, ["extract", "radiomics", "m.csv", "--out", "f.parquet", "--params", str(path)]
    )
    assert result.exit_code == 1
    assert needle in result.output and "Traceback" not in result.output


def test_missing_params_file(tmp_path):
    result = runner.invoke(
        app,
        [
            "extract",
            "radiomics",
            "m.csv",
            "--out",
            "f.parquet",
            "--params",
            str(tmp_path / "no.yaml"),
        ],
    )
    assert result.exit_code == 1
    assert "no.yaml: parameter file not found" in result.output


# ---------------------------------------------------------------------------------------------
# bad cases: one-line reasons naming the case, other cases still complete

FAST = {"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "glcm": []}}


def test_roi_lost_after_resampling_and_2d_image(tmp_path):
    rows = [good_row(tmp_path, name, f"p{i}") for i, name in enumerate(("good", "tiny", "flat"))]
    tiny = np.zeros((24, 24, 24), np.uint8)
    tiny[12, 12, 12] = 1  # one 0.5 mm voxel: nothing left on a 4 mm grid
    half_mm = {"spacing": (0.5, 0.5, 0.5)}
    write_volume(tmp_path / "tiny_mask.nii.gz", tiny, **half_mm)
    write_volume(tmp_path / "tiny_ct.nii.gz", np.full((24, 24, 24), 50, np.int16), **half_mm)
    flat = np.zeros((24, 24), np.uint8)
    flat[5:15, 5:15] = 1
    write_volume(tmp_path / "flat_ct.nii.gz", np.full((24, 24), 50, np.int16), spacing=(1.0, 1.0))
    write_volume(tmp_path / "flat_mask.nii.gz", flat, spacing=(1.0, 1.0))
    manifest = write_manifest(tmp_path, rows)
    params = tmp_path / "p.yaml"
    params.write_text(
        yaml.safe_dump(FAST | {"setting": {"resampledPixelSpacing": [4, 4, 4], "binWidth": 25}})
    )
    out = tmp_path / "features" / "radiomics.parquet"
    args = ["extract", "radiomics", str(manifest), "--out", str(out), "--params", str(params)]
    result = runner.invoke(app, [*args, "--jobs", "1"])
    assert result.exit_code == 1
    assert "2 case(s) failed" in result.output
    errors = pd.read_csv(out.parent / "errors.csv")
    reasons = dict(zip(errors["case_id"], errors["reason"], strict=True))
    assert set(reasons) == {"tiny", "flat"}
    assert "after resampling to [4, 4, 4] mm" in reasons["tiny"]
    assert "2-D" in reasons["flat"] and "force2D" in reasons["flat"]
    assert pd.read_parquet(out).index.tolist() == ["good"]

    result = runner.invoke(app, [*args, "--jobs", "1", "--allow-failures"])
    assert result.exit_code == 0
    assert "cached 1" in result.output


def test_feature_table_contract(tmp_path):
    rows = [good_row(tmp_path, f"c{i}", f"p{i}") for i in range(3)]
    manifest = write_manifest(tmp_path, rows)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(FAST))
    out = tmp_path / "radiomics.parquet"
    result = runner.invoke(
        app,
        [
            "extract",
            "radiomics",
            str(manifest),
            "--out",
            str(out),
            "--params",
            str(params),
            "--jobs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert table.index.name == "case_id" and table.index.tolist() == ["c0", "c1", "c2"]
    assert (table.dtypes == "float64").all()
    assert "original_glcm_ClusterShade" in table.columns
    assert not any(c.startswith("diagnostics_") for c in table.columns)
    diagnostics = pd.read_parquet(tmp_path / "radiomics.diagnostics.parquet")
    assert diagnostics["diagnostics_Versions_Engine"].str.startswith("native ").all()
    assert not (tmp_path / "errors.csv").exists()
