"""The native 3-D shape features equal PyRadiomics' ``RadiomicsShape`` on the same inputs.

Inputs: what PyRadiomics' extractor hands ``computeShape`` for synthetic vertebrae (resampled to
1 mm by the project's parameter file; shape is computed on the original image only, so there is
one capture per case) and for PyRadiomics' own test images (native spacing and 2 mm resampling);
the synthetic masks at their native anisotropic spacing; random masks; and edge cases (one voxel,
one slice, lines, a hollow cube, two blobs, a sphere, a diagonal).  The values agree bit for bit
here; the assertion allows 1e-12 relative (a C compiler may fuse multiply-adds elsewhere).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

radiomics = pytest.importorskip("radiomics")

from radiomics import featureextractor, imageoperations  # noqa: E402
from radiomics.shape import RadiomicsShape  # noqa: E402

from ovfdlr.engines.native import shape as native_shape  # noqa: E402
from ovfdlr.engines.native.mesh_tables import GRID_ANGLES, TRI_TABLE, VERT_LIST  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "src" / "ovfdlr" / "params" / "ct-vertebra.yaml"
ALL_NAMES = list(native_shape.FEATURE_NAMES)


def _reference(mask: np.ndarray, spacing, label: int = 1) -> dict[str, float]:
    """PyRadiomics' shape class on the cropped mask (all features, deprecated ones too)."""
    mask_image = sitk.GetImageFromArray(mask.astype(np.uint8) * label)
    mask_image.SetSpacing(tuple(float(s) for s in spacing))
    image = sitk.GetImageFromArray(np.zeros(mask.shape, np.float32))
    image.CopyInformation(mask_image)
    return _run_reference(image, mask_image, label=label)


def _run_reference(image: sitk.Image, mask: sitk.Image, **settings) -> dict[str, float]:
    shape_class = RadiomicsShape(image, mask, **settings)
    for name in ALL_NAMES:
        shape_class.enableFeatureByName(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0/0 elongation, complex eigenvalues cast to real
        return {k: float(np.real(v)) for k, v in shape_class.execute().items()}


def _assert_equal(expected: dict[str, float], actual: dict[str, float], what: str) -> None:
    assert set(actual) == set(expected), what
    for name, want in expected.items():
        got = actual[name]
        if math.isnan(want):
            assert math.isnan(got), f"{what} {name}: {got} != NaN"
            continue
        assert isinstance(got, float)
        assert abs(got - want) <= 1e-12 * max(abs(want), 1.0), f"{what} {name}: {got} != {want}"


def _crop(mask: np.ndarray) -> np.ndarray:
    where = np.nonzero(mask)
    return mask[tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)]


def _capture_shape_inputs(extractor, image, mask, label):
    """Run the extractor on (image, mask); return the cropped (image, mask, settings) of shape."""
    captured = []
    original = extractor.computeShape

    def spy(image, mask, bounding_box, **kwargs):
        cropped_image, cropped_mask = imageoperations.cropToTumorMask(image, mask, bounding_box)
        captured.append((cropped_image, cropped_mask, kwargs))
        return original(image, mask, bounding_box, **kwargs)

    extractor.computeShape = spy
    try:
        extractor.execute(image, mask, label=label)
    finally:
        extractor.computeShape = original
    assert len(captured) == 1
    return captured[0]


@pytest.fixture(scope="module")
def vertebra_captures(tmp_path_factory):
    from ovfdlr.synthetic import generate_cohort

    radiomics.setVerbosity(60)
    folder = tmp_path_factory.mktemp("native-shape-cohort")
    manifest = generate_cohort(folder, n=3, seed=0, progress=False)
    extractor = featureextractor.RadiomicsFeatureExtractor(str(PARAMS))
    extractor.disableAllImageTypes()
    extractor.enableImageTypeByName("Original")  # shape runs on the original image only
    extractor.disableAllFeatures()
    extractor.enableFeatureClassByName("shape")
    captures = []
    for row in manifest.itertuples():
        label = int(row.mask_label)
        image, mask = str(folder / row.image), str(folder / row.mask)
        captures.append((row.case_id, *_capture_shape_inputs(extractor, image, mask, label)))
        # the same mask at its native (anisotropic) spacing, cropped without resampling
        native = sitk.ReadImage(mask)
        captures.append(
            (
                f"{row.case_id}-native",
                None,
                sitk.GetArrayFromImage(native) == label,
                native.GetSpacing(),
            )
        )
    return captures


def test_feature_names_match_pyradiomics():
    assert RadiomicsShape.getFeatureNames() == native_shape.FEATURE_NAMES


def test_tables_are_pyradiomics_layout():
    # the kernel hard-codes the corner bits of GRID_ANGLES: corners at x+1 are bits 1, 2, 5, 6
    assert [k for k in range(8) if GRID_ANGLES[k, 2] == 1] == [1, 2, 5, 6]
    assert GRID_ANGLES.tolist()[6] == [1, 1, 1] and GRID_ANGLES.tolist()[7] == [1, 1, 0]
    assert TRI_TABLE.shape == (128, 16) and VERT_LIST.shape == (12, 3)
    assert (TRI_TABLE[0] == -1).all() and TRI_TABLE[127].tolist()[:4] == [6, 7, 11, -1]


def test_vertebra_captures(vertebra_captures):
    for case_id, image, mask, third in vertebra_captures:
        if image is None:  # native-spacing mask: third is the spacing
            array, spacing = _crop(mask), third
            expected = _reference(array, spacing)
            settings = {"label": 1}
        else:
            settings = third
            array = sitk.GetArrayFromImage(mask) == settings["label"]
            spacing = mask.GetSpacing()
            expected = _run_reference(image, mask, **settings)
        actual = native_shape.compute(array, spacing, settings, names=ALL_NAMES)
        _assert_equal(expected, actual, case_id)


@pytest.mark.parametrize(
    ("case", "resampled"),
    [
        ("brain1", None),
        ("brain1", [2, 2, 2]),
        ("breast1", None),
        ("breast1", [2, 2, 2]),
        ("prostate_phantom_subvolume", None),
    ],
)
def test_pyradiomics_test_images(shared_data, case, resampled):
    folder = shared_data / "pyradiomics"
    if case.startswith("prostate"):
        image, mask = folder / f"{case}.nrrd", folder / f"{case}-label.nrrd"
    else:
        image, mask = folder / f"{case}_image.nrrd", folder / f"{case}_label.nrrd"
    settings = {"label": 1, "minimumROIDimensions": 1}
    if resampled:
        settings.update(resampledPixelSpacing=resampled, interpolator="sitkBSpline")
    radiomics.setVerbosity(60)
    extractor = featureextractor.RadiomicsFeatureExtractor(**settings)
    extractor.disableAllFeatures()
    extractor.enableFeatureClassByName("shape")
    c_image, c_mask, kwargs = _capture_shape_inputs(extractor, str(image), str(mask), 1)
    array = sitk.GetArrayFromImage(c_mask) == kwargs["label"]
    actual = native_shape.compute(array, c_mask.GetSpacing(), kwargs, names=ALL_NAMES)
    _assert_equal(_run_reference(c_image, c_mask, **kwargs), actual, case)


def _edge_cases() -> dict[str, np.ndarray]:
    cases = {"voxel": np.ones((1, 1, 1), bool)}
    flat = np.ones((1, 9, 7), bool)
    flat[0, 4, 0] = False
    cases["one_slice"] = flat
    cases["line_x"] = np.ones((1, 1, 9), bool)
    cases["line_y"] = np.ones((1, 9, 1), bool)
    cases["line_z"] = np.ones((9, 1, 1), bool)
    cases["plane_xz"] = np.ones((5, 1, 6), bool)
    hollow = np.ones((7, 7, 7), bool)
    hollow[2:5, 2:5, 2:5] = False
    cases["hollow_cube"] = hollow  # equal eigenvalues: PyRadiomics' come back complex
    blobs = np.zeros((5, 5, 12), bool)
    blobs[:2, :2, :3] = True
    blobs[3:, 3:, 8:] = True
    cases["two_blobs"] = blobs
    z, y, x = np.mgrid[-6:7, -6:7, -6:7]
    cases["sphere"] = x**2 + y**2 + z**2 <= 36
    eye = np.eye(6, dtype=bool)
    cases["diagonal"] = eye[:, :, None] & eye[:, None, :]
    return cases


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 2.5), (0.3, 1.9, 1.1)])
@pytest.mark.parametrize("case", sorted(_edge_cases()))
def test_edge_cases(case, spacing):
    mask = _edge_cases()[case]
    actual = native_shape.compute(mask, spacing, {}, names=ALL_NAMES)
    _assert_equal(_reference(mask, spacing), actual, f"{case} {spacing}")


def test_random_masks():
    rng = np.random.default_rng(7)
    for trial in range(25):
        mask = rng.random(rng.integers(1, 10, 3)) < rng.uniform(0.2, 0.9)
        if not mask.any():
            continue
        mask = _crop(mask)
        spacing = tuple(rng.uniform(0.3, 3.0, 3)) if trial % 2 else (1.0, 1.0, 1.0)
        actual = native_shape.compute(mask, spacing, {}, names=ALL_NAMES)
        _assert_equal(_reference(mask, spacing), actual, f"random {trial}")


def test_names_and_settings():
    mask = np.ones((3, 4, 5), bool)
    default = native_shape.compute(mask, (1.0, 1.0, 1.0), {})
    assert set(default) == {n for n, dep in native_shape.FEATURE_NAMES.items() if not dep}
    only = native_shape.compute(mask, (1.0, 1.0, 1.0), {}, names=["Compactness2", "Elongation"])
    assert list(only) == ["Compactness2", "Elongation"]
    assert only["Elongation"] == default["Elongation"]
    assert native_shape.compute(mask, (1.0, 1.0, 1.0), {}, names=[]) == {}
    with pytest.raises(LookupError):
        native_shape.compute(mask, (1.0, 1.0, 1.0), {}, names=["Volume"])
    with pytest.raises(ValueError, match="voxelBased"):
        native_shape.compute(mask, (1.0, 1.0, 1.0), {"voxelBased": True})
    with pytest.raises(ValueError, match="empty"):
        native_shape.compute(np.zeros((2, 2, 2), bool), (1.0, 1.0, 1.0), {})
