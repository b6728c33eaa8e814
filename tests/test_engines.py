"""Radiomics engines: the shared vocabulary and schema, choosing an engine, and bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ovfdlr import radiomics
from ovfdlr.cli import app
from ovfdlr.engines import catalogue, params
from ovfdlr.engines.native.support import check_supported

from .conftest import good_row, write_manifest, write_volume

runner = CliRunner()


def test_catalogue_is_pyradiomics_vocabulary():
    """Feature names (with their deprecated flags, in PyRadiomics' order) and image types."""
    import radiomics as pyradiomics

    classes = pyradiomics.getFeatureClasses()
    assert set(classes) == set(catalogue.FEATURES)
    for name, cls in classes.items():
        assert list(cls.getFeatureNames().items()) == list(catalogue.FEATURES[name].items())
    assert sorted(pyradiomics.getImageTypes()) == sorted(catalogue.IMAGE_TYPES)


def test_schema_has_pyradiomics_settings():
    """Every setting of PyRadiomics' own parameter schema, and no other."""
    import radiomics as pyradiomics

    schema_file, _ = pyradiomics.getParameterValidationFiles()
    with open(schema_file, encoding="utf-8") as handle:
        schema = yaml.safe_load(handle)["mapping"]
    assert set(schema["setting"]["mapping"]) == set(params.SETTINGS)
    assert set(schema["voxelSetting"]["mapping"]) == set(params.VOXEL_SETTINGS)


def test_resolved_settings_are_the_extractors():
    """The defaults filled in are PyRadiomics' extractor's, for the shipped parameters."""
    from ovfdlr.engines.pyradiomics import extractor

    loaded = radiomics.load_params()
    ours = params.resolve(loaded)
    theirs = extractor(loaded)
    assert ours["setting"] == theirs.settings
    assert ours["imageType"] == theirs.enabledImagetypes


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ({"setting": {"binWidth": -5}}, "setting.binWidth: expected a number > 0 (got -5)"),
        ({"setting": {"interpolator": "cubic"}}, "setting.interpolator: expected one of"),
        ({"setting": {"distances": [0]}}, "setting.distances: expected a list of integer"),
        ({"imageType": {"LoG": {"sigmaa": [1.0]}}}, "unknown setting 'imageType.LoG.sigmaa'"),
        ({"voxelSetting": {"kernelRadius": 0}}, "voxelSetting.kernelRadius: expected"),
    ],
)
def test_values_outside_the_schema_name_the_key(content, needle):
    with pytest.raises(params.ParamsError, match=r"p\.yaml") as info:
        params.validate(content, "p.yaml")
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ({"voxelSetting": {"kernelRadius": 2}}, "voxelSetting"),
        ({"imageType": {"LBP3D": {}}}, "imageType.LBP3D"),
        ({"setting": {"force2D": True}, "featureClass": {"shape2D": None}}, "featureClass.shape2D"),
    ],
)
def test_native_engine_refuses_what_it_does_not_compute(tmp_path, content, needle):
    with pytest.raises(radiomics.UnsupportedSetting) as info:
        check_supported(params.validate(content))
    assert needle in str(info.value) and "native engine" in str(info.value)
    assert "--engine pyradiomics" in str(info.value)
    # the command line refuses it before any case runs, naming the file and the setting
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(content))
    rows = [good_row(tmp_path, "c0", "p0")]
    manifest = write_manifest(tmp_path, rows)
    out = tmp_path / "f.parquet"
    result = runner.invoke(
        app, ["extract", "radiomics", str(manifest), "--out", str(out), "--params", str(path)]
    )
    assert result.exit_code == 1
    assert needle in result.output and str(path) in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_unknown_engine_is_refused(tmp_path):
    result = runner.invoke(
        app, ["extract", "radiomics", "m.csv", "--out", "f.parquet", "--engine", "fast"]
    )
    assert result.exit_code == 1
    assert "unknown radiomics engine 'fast'" in result.output


def test_pyradiomics_engine_without_the_extra_names_it(tmp_path):
    """With PyRadiomics not importable, --engine pyradiomics is one line naming the extra."""
    rows = [good_row(tmp_path, "c0", "p0")]
    manifest = write_manifest(tmp_path, rows)
    script = (
        "import sys; sys.modules['radiomics'] = None\n"
        "from ovfdlr.cli import app\n"
        f"app(['extract', 'radiomics', {str(manifest)!r}, '--out', "
        f"{str(tmp_path / 'f.parquet')!r}, '--engine', 'pyradiomics'])\n"
    )
    run = {"capture_output": True, "encoding": "utf-8", "errors": "replace"}
    done = subprocess.run([sys.executable, "-c", script], **run)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "pip install 'ovfdlr[pyradiomics]'" in output and "Traceback" not in output
    # the native engine (the default) needs no PyRadiomics
    script = script.replace(", '--engine', 'pyradiomics'", "")
    done = subprocess.run([sys.executable, "-c", script], **run)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(pd.read_parquet(tmp_path / "f.parquet").columns) == 1130


def test_a_case_the_engine_cannot_compute_goes_to_errors(tmp_path):
    """An ROI lost on the resampling grid names the case; the batch goes on."""
    rows = [good_row(tmp_path, "good", "p0"), good_row(tmp_path, "tiny", "p1")]
    tiny = np.zeros((24, 24, 24), np.uint8)
    tiny[12, 12, 12] = 1
    write_volume(tmp_path / "tiny_mask.nii.gz", tiny, spacing=(0.5, 0.5, 0.5))
    ct = np.full((24, 24, 24), 50, np.int16)
    write_volume(tmp_path / "tiny_ct.nii.gz", ct, spacing=(0.5, 0.5, 0.5))
    manifest = write_manifest(tmp_path, rows)
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "imageType": {"Original": {}},
                "featureClass": {"firstorder": None, "glszm": None},
                "setting": {"resampledPixelSpacing": [4, 4, 4]},
            }
        )
    )
    out = tmp_path / "features" / "r.parquet"
    args = ["extract", "radiomics", str(manifest), "--out", str(out), "--params", str(path)]
    result = runner.invoke(app, [*args, "--jobs", "1"])
    assert result.exit_code == 1 and "1 case(s) failed" in result.output
    errors = pd.read_csv(out.parent / "errors.csv")
    assert errors["case_id"].tolist() == ["tiny"]
    assert "ROI of label 1 is not usable after resampling to [4, 4, 4] mm" in errors["reason"][0]
    assert pd.read_parquet(out).index.tolist() == ["good"]


def _slice_case():
    """A one-slice CT (1 x 20 x 20) with a 10 x 12 ROI."""
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    values = rng.integers(-100, 300, (1, 20, 20)).astype(np.int16)
    roi = np.zeros((1, 20, 20), np.uint8)
    roi[0, 5:15, 4:16] = 1
    return sitk.GetImageFromArray(values), sitk.GetImageFromArray(roi)


def test_one_slice_with_force2d_is_computed_as_pyradiomics_does():
    """force2D on a one-slice image: the native engine computes it (it refused it before),
    with PyRadiomics' names and values."""
    image, mask = _slice_case()
    classes = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
    params = {
        "imageType": {"Original": {}},
        "featureClass": dict.fromkeys(classes),
        "setting": {"force2D": True, "binWidth": 25},
    }
    ours = radiomics.extract(image, mask, params, engine="native").features
    theirs = radiomics.extract(image, mask, params, engine="pyradiomics").features
    assert list(ours) == list(theirs) and len(ours) == 93
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), name
    without = dict(params, setting={"binWidth": 25})
    with pytest.raises(radiomics.CaseError, match=r"set setting\.force2D: true"):
        radiomics.extract(image, mask, without, engine="native")


def test_inputs_no_engine_computes_are_one_line_case_errors():
    """A mask of another dimension than the image's, a vector image and an ROI value that is
    not a number: each a CaseError naming the reason (never an ITK or numpy traceback)."""
    import SimpleITK as sitk

    params = {"imageType": {"Original": {}}, "featureClass": {"firstorder": None}}
    image = sitk.GetImageFromArray(np.full((8, 8, 8), 40, np.int16))
    roi = np.zeros((8, 8, 8), np.uint8)
    roi[2:6, 2:6, 2:6] = 1
    mask = sitk.GetImageFromArray(roi)
    with pytest.raises(radiomics.CaseError, match="the mask is 2-D and the image 3-D"):
        radiomics.extract(image, sitk.GetImageFromArray(roi[4]), params, engine="native")
    vector = sitk.Compose(image, image)
    with pytest.raises(radiomics.CaseError, match="2 components per voxel"):
        radiomics.extract(vector, mask, params, engine="native")
    values = np.full((8, 8, 8), 40.0)
    values[3, 3, 3] = np.nan
    with pytest.raises(radiomics.CaseError, match="original image: 1 ROI value"):
        radiomics.extract(sitk.GetImageFromArray(values), mask, params, engine="native")


def test_predict_refuses_a_bundle_whose_engine_is_not_installed(tmp_path, monkeypatch):
    """A bundle made with PyRadiomics, scored where the extra is missing: a preflight problem
    naming the extra, before any feature is computed."""
    from types import SimpleNamespace

    from ovfdlr.preflight import bundle_radiomics

    params = tmp_path / "radiomics.yaml"
    params.write_text(yaml.safe_dump({"imageType": {"Original": {}}}))
    bundle = SimpleNamespace(
        layout=SimpleNamespace(file=lambda name: tmp_path / name),
        record=SimpleNamespace(
            feature_sets=SimpleNamespace(
                radiomics=SimpleNamespace(params="radiomics.yaml", engine="pyradiomics")
            )
        ),
    )
    assert bundle_radiomics(bundle) == []  # installed here
    monkeypatch.setitem(sys.modules, "radiomics", None)
    problems = bundle_radiomics(bundle)
    assert len(problems) == 1
    assert "pip install 'ovfdlr[pyradiomics]'" in problems[0].message
    assert "the bundle's radiomics engine pyradiomics" in problems[0].message


# The numba kernels of the native engine, by module: losing a decorator keeps every value (the
# same Python runs) but makes a case several times slower, which no equality test sees.
KERNELS = {
    "bspline": ("_filter_lines", "_coefficients", "_support", "_store", "_sum4", "_resample"),
    "neighbourhood": ("_count",),
    "recursive_gaussian": ("_filter_rows", "_filter_axis", "_log3d", "_log2d"),
    "runs_zones": ("_padded_codes", "_count_runs", "_count_zones"),
    "shape": (
        "_mesh",
        "_line_extremes",
        "_max_sq_distance",
        "_max_sq_distance_planes",
        "_diameters",
        "_padded_coordinates",
    ),
}


@pytest.mark.parametrize("module", sorted(KERNELS))
def test_native_kernels_are_compiled_without_the_gil(module):
    import importlib

    from numba.core.registry import CPUDispatcher

    loaded = importlib.import_module(f"ovfdlr.engines.native.{module}")
    for name in KERNELS[module]:
        kernel = getattr(loaded, name)
        assert isinstance(kernel, CPUDispatcher), f"{module}.{name} is not a numba kernel"
        assert kernel.targetoptions.get("nogil"), f"{module}.{name} holds the GIL"
        assert type(kernel._cache).__name__ == "FunctionCache", f"{module}.{name}: no disk cache"
