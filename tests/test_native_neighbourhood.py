"""The native GLCM, GLDM and NGTDM (ovfdlr.engines.native.glcm / gldm / ngtdm) give PyRadiomics'.

Each check runs PyRadiomics' own class (``RadiomicsGLCM`` / ``RadiomicsGLDM`` /
``RadiomicsNGTDM``, every feature enabled, deprecated ones by name) on the raw cropped image and
the native ``compute`` on ``imageoperations.binImage``'s output of the same image, and asserts
``|native - pyradiomics| <= 1e-6 * max(|pyradiomics|, spread)`` (spread: the feature's range over
the inputs of that check; NaN where PyRadiomics gives NaN, the same keys). The values agree to
the last bit on these inputs (the native code keeps PyRadiomics' numpy expressions and summation
order), which :func:`test_synthetic_captures` also reports. Inputs: what PyRadiomics' extractor
hands the feature classes for three synthetic vertebrae under the project's parameter file
(Original, 8 wavelet and 3 LoG image types), PyRadiomics' test images under their baseline
configurations, setting variants and hand-made edge cases; the integer matrices and the angles
themselves are compared with ``radiomics.cMatrices``.
"""

from __future__ import annotations

import ast
import logging
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

radiomics = pytest.importorskip("radiomics")

from radiomics import cMatrices, featureextractor, imageoperations  # noqa: E402
from radiomics.glcm import RadiomicsGLCM  # noqa: E402
from radiomics.gldm import RadiomicsGLDM  # noqa: E402
from radiomics.ngtdm import RadiomicsNGTDM  # noqa: E402

from ovfdlr.engines.native import glcm, gldm, neighbourhood, ngtdm, texture  # noqa: E402

PARAMS = Path(__file__).resolve().parents[1] / "src" / "ovfdlr" / "params" / "ct-vertebra.yaml"
CLASSES = {
    "glcm": (glcm, RadiomicsGLCM),
    "gldm": (gldm, RadiomicsGLDM),
    "ngtdm": (ngtdm, RadiomicsNGTDM),
}
RTOL = 1e-6


class Capture:
    """One image type of one case as a feature class receives it."""

    def __init__(self, name, image: np.ndarray, mask: np.ndarray, spacing, settings) -> None:
        self.name = name
        self.image = image
        self.mask = mask  # label values, as PyRadiomics' mask image holds them
        self.spacing = tuple(float(s) for s in spacing)
        self.settings = dict(settings)

    def with_settings(self, **changes) -> Capture:
        return Capture(self.name, self.image, self.mask, self.spacing, {**self.settings, **changes})


def _pyradiomics(cls, capture: Capture) -> dict[str, float]:
    image = sitk.GetImageFromArray(capture.image)
    image.SetSpacing(capture.spacing)
    mask = sitk.GetImageFromArray(capture.mask)
    mask.SetSpacing(capture.spacing)
    features = cls(image, mask, **capture.settings)
    for name in features.getFeatureNames():  # deprecated ones too: they give no value
        features.enableFeatureByName(name)
    level = radiomics.handler.level
    radiomics.setVerbosity(logging.CRITICAL)  # MCC's LinAlgError on a NaN matrix is logged
    try:
        with warnings.catch_warnings():  # 'Mean of empty slice' in the all-NaN edge cases
            warnings.simplefilter("ignore", RuntimeWarning)
            values = features.execute()
    finally:
        radiomics.setVerbosity(level)
    return {name: float(value) for name, value in values.items()}


def _binned(capture: Capture) -> tuple[np.ndarray, np.ndarray]:
    mask = capture.mask == capture.settings.get("label", 1)
    return imageoperations.binImage(capture.image, mask, **capture.settings)[0], mask


def _native(module, capture: Capture) -> dict[str, float]:
    binned, mask = _binned(capture)
    return module.compute(
        binned, mask, capture.spacing, capture.settings, list(module.FEATURE_NAMES)
    )


def _compare(results: list[tuple[str, dict, dict]]) -> dict[str, float]:
    """Assert native == PyRadiomics over ``(label, native, reference)``; the worst scaled gap."""
    names = sorted({name for _, _, ref in results for name in ref})
    spread = {}
    for name in names:
        values = np.array([ref[name] for _, _, ref in results if name in ref])
        finite = values[np.isfinite(values)]
        spread[name] = float(np.ptp(finite)) if finite.size else 0.0
    worst = dict.fromkeys(names, 0.0)
    failures = []
    for label, got, ref in results:
        assert set(got) == set(ref), (label, set(got) ^ set(ref))
        for name, expected in ref.items():
            value = got[name]
            if np.isnan(expected) or np.isnan(value):
                if not (np.isnan(expected) and np.isnan(value)):
                    failures.append(f"{label} {name}: native {value!r}, pyradiomics {expected!r}")
                continue
            scale = max(abs(expected), spread[name])
            gap = abs(value - expected) / scale if scale > 0 else abs(value - expected)
            worst[name] = max(worst[name], gap)
            if gap > RTOL:
                failures.append(f"{label} {name}: native {value!r}, pyradiomics {expected!r}")
    assert not failures, "\n".join(failures[:20])
    return worst


def _check(captures: list[Capture]) -> dict[str, dict[str, float]]:
    worst = {}
    for class_name, (module, cls) in CLASSES.items():
        results = [
            (f"{c.name} {class_name}", _native(module, c), _pyradiomics(cls, c)) for c in captures
        ]
        worst[class_name] = _compare(results)
    return worst


def _extractor_captures(extractor, image_path, mask_path, label: int, case: str) -> list[Capture]:
    """The (image, mask, settings) the extractor gives the feature classes, per image type."""
    captured: list[Capture] = []

    def compute_features(image, mask, image_type, **kwargs):
        captured.append(
            Capture(
                f"{case}/{image_type}",
                sitk.GetArrayFromImage(image),
                sitk.GetArrayFromImage(mask),
                image.GetSpacing(),
                kwargs,
            )
        )
        return {}

    extractor.enabledFeatures = {"glcm": []}  # no shape: only the captures are wanted
    extractor.computeFeatures = compute_features
    extractor.execute(str(image_path), str(mask_path), label=label)
    return captured


@pytest.fixture(scope="module")
def synthetic_captures(tmp_path_factory) -> list[Capture]:
    from ovfdlr.synthetic import generate_cohort

    folder = tmp_path_factory.mktemp("neighbourhood-cohort")
    manifest = generate_cohort(folder, n=6, seed=0, progress=False)
    radiomics.setVerbosity(40)
    captures = []
    for row in manifest.head(3).itertuples():
        extractor = featureextractor.RadiomicsFeatureExtractor(str(PARAMS))
        captures += _extractor_captures(
            extractor, folder / row.image, folder / row.mask, int(row.mask_label), row.case_id
        )
    assert len(captures) == 36
    return captures


def test_feature_names_are_pyradiomics():
    for module, cls in CLASSES.values():
        assert cls.getFeatureNames() == module.FEATURE_NAMES


def test_synthetic_captures(synthetic_captures):
    """All 12 image types of three synthetic vertebrae (Ng 2..~70 bins)."""
    worst = _check(synthetic_captures)
    exact = sum(gap == 0.0 for gaps in worst.values() for gap in gaps.values())
    total = sum(len(gaps) for gaps in worst.values())
    print(f"\nfeatures equal to the last bit on every capture: {exact}/{total}")
    for class_name, gaps in worst.items():
        print(class_name, {name: gap for name, gap in gaps.items() if gap})


@pytest.mark.parametrize(
    "changes",
    [
        {"distances": [1, 2]},
        {"distances": [1, 1]},  # repeated distance: PyRadiomics lists the angles twice
        {"distances": [3]},
        {"weightingNorm": "infinity"},
        {"weightingNorm": "euclidean"},
        {"weightingNorm": "manhattan"},
        {"weightingNorm": "no_weighting"},
        {"weightingNorm": "unknown"},  # PyRadiomics warns and weights 1
        {"symmetricalGLCM": False},
        {"symmetricalGLCM": False, "weightingNorm": "euclidean"},
        {"gldm_a": 1},
        {"gldm_a": 4},
        {"force2D": True, "force2Ddimension": 0},
        {"force2D": True, "force2Ddimension": 1},
        {"force2D": True, "force2Ddimension": 2},
        {"binWidth": 5},  # large Ng on the original CT
    ],
    ids=str,
)
def test_setting_variants(synthetic_captures, changes):
    captures = [synthetic_captures[i].with_settings(**changes) for i in (0, 1, 9)]
    _check(captures)


def _baseline_configs(shared_data: Path) -> list[tuple[str, dict]]:
    table = pd.read_csv(shared_data / "pyradiomics" / "baseline" / "baseline_glcm.csv", index_col=0)
    row = table.loc["diagnostics_Configuration_Settings"]
    configs = []
    for column, text in row.items():
        case = column.split("_")[0]
        if (shared_data / "pyradiomics" / f"{case}_image.nrrd").exists():
            configs.append((column, ast.literal_eval(text)))
    return configs


def test_pyradiomics_test_images(shared_data):
    """brain1 and breast1 under every baseline configuration (2-D, binCount, resampling,
    normalisation, re-segmentation, a flat region, ...) and the prostate phantom."""
    folder = shared_data / "pyradiomics"
    radiomics.setVerbosity(40)
    captures: list[Capture] = []
    for column, settings in _baseline_configs(shared_data):
        case = column.split("_")[0]
        extractor = featureextractor.RadiomicsFeatureExtractor(**settings)
        extractor.disableAllImageTypes()
        extractor.enableImageTypeByName("Original")
        captures += _extractor_captures(
            extractor,
            folder / f"{case}_image.nrrd",
            folder / f"{case}_label.nrrd",
            int(settings.get("label", 1)),
            column,
        )
    extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=25)
    captures += _extractor_captures(
        extractor,
        folder / "prostate_phantom_subvolume.nrrd",
        folder / "prostate_phantom_subvolume-label.nrrd",
        1,
        "prostate",
    )
    assert len(captures) >= 17
    _check(captures)


def _edge(name: str, image: np.ndarray, mask: np.ndarray, spacing=(0.7, 0.8, 2.5), **settings):
    settings = {"binWidth": 25, "label": 1, **settings}
    return Capture(name, image.astype(np.float64), mask.astype(np.uint8), spacing, settings)


def _edge_cases() -> list[Capture]:
    rng = np.random.default_rng(11)
    cases = []
    one = np.zeros((3, 3, 3), bool)
    one[1, 1, 1] = True
    cases.append(_edge("one voxel in a 3x3x3 box", rng.normal(0, 50, (3, 3, 3)), one))
    cases.append(_edge("one gray level", np.full((4, 5, 6), 7.0), np.ones((4, 5, 6), bool)))
    blob = rng.random((4, 5, 6)) < 0.6
    blob[0, 0, 0] = blob[-1, -1, -1] = True
    cases.append(_edge("one gray level, holes", rng.normal(0, 1, (4, 5, 6)), blob))
    slab = rng.random((1, 9, 11)) < 0.7
    slab[0, 0, 0] = slab[0, -1, -1] = True
    cases.append(_edge("one slice", rng.normal(0, 60, (1, 9, 11)), slab))
    cases.append(
        _edge("one slice, weighted", rng.normal(0, 60, (1, 9, 11)), slab, weightingNorm="infinity")
    )
    gaps = rng.choice([0.0, 30.0, 200.0, 500.0, 510.0], size=(5, 6, 7))
    cases.append(_edge("gray levels with gaps", gaps, np.ones(gaps.shape, bool), binWidth=10))
    big = rng.random((10, 12, 14)) < 0.8
    big[0, 0, 0] = big[-1, -1, -1] = True
    cases.append(_edge("~300 bins", rng.normal(0, 1000, (10, 12, 14)), big))
    apart = np.zeros((3, 3, 3), bool)
    apart[0, 0, 0] = apart[2, 2, 2] = True
    image = np.where(apart, 0.0, 0.0)
    image[2, 2, 2] = 100.0
    cases.append(_edge("two voxels, no pair in any angle", image, apart))
    cases.append(_edge("two voxels, weighted", image, apart, weightingNorm="euclidean"))
    line = np.array([[[True, False, True]]])
    cases.append(_edge("one angle, no pair", np.array([[[10.0, 0.0, 100.0]]]), line))
    cases.append(_edge("a line of 3", np.array([[[10.0, 40.0, 100.0]]]), np.ones((1, 1, 3), bool)))
    cases.append(
        _edge(
            "a line, distance 2",
            np.array([[[10.0, 40.0, 100.0]]]),
            np.ones((1, 1, 3)),
            distances=[2],
        )
    )
    return cases


def test_edge_cases():
    for capture in _edge_cases():
        _check([capture])


def test_single_voxel_array_is_refused():
    """A 1x1x1 crop has no neighbour angle: PyRadiomics raises (RuntimeError 'Error getting
    angle count.'), so does the native code (ValueError)."""
    capture = _edge("1x1x1", np.array([[[5.0]]]), np.ones((1, 1, 1), bool))
    with pytest.raises(RuntimeError, match="angle count"):
        _pyradiomics(RadiomicsGLCM, capture)
    for module, _ in CLASSES.values():
        with pytest.raises(ValueError, match="angle"):
            _native(module, capture)


def _random_case(rng, shape=(6, 7, 8), levels=9):
    binned = rng.integers(1, levels + 1, size=shape)
    mask = rng.random(shape) < 0.7
    mask.flat[0] = True
    binned[mask] = np.maximum(binned[mask], 1)
    binned[~mask] = 0
    return binned, mask


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"distances": [1, 2]},
        {"distances": [2, 2, 1]},
        {"gldm_a": 2},
        {"force2D": True, "force2Ddimension": 1},
    ],
    ids=str,
)
def test_matrices_equal_cmatrices(settings):
    """The one-pass kernel's counts are ``cMatrices``' (GLCM, GLDM, NGTDM) exactly."""
    rng = np.random.default_rng(3)
    for shape in [(6, 7, 8), (1, 5, 9), (2, 2, 3)]:
        binned, mask = _random_case(rng, shape)
        ng = int(binned[mask].max())
        m = neighbourhood.neighbourhood_matrices_for(binned, mask, settings)
        args = (
            binned,
            mask,
            np.array(settings.get("distances", [1])),
            ng,
        )
        force = (settings.get("force2D", False), settings.get("force2Ddimension", 0))
        ref_glcm, ref_angles = cMatrices.calculate_glcm(*args, *force)
        assert np.array_equal(m.glcm_angles, ref_angles)
        assert np.array_equal(m.glcm, ref_glcm[0])
        ref_gldm = cMatrices.calculate_gldm(*args, settings.get("gldm_a", 0), *force)[0]
        assert np.array_equal(m.gldm, ref_gldm[:, : m.gldm.shape[1]])
        assert not ref_gldm[:, m.gldm.shape[1] :].any()
        ref_ngtdm = cMatrices.calculate_ngtdm(*args, *force)[0]
        assert np.array_equal(m.ngtdm_n, ref_ngtdm[:, 0])
        assert np.array_equal(m.ngtdm_s, ref_ngtdm[:, 1])  # same voxel order: same bits


def test_angles_equal_cmatrices():
    for size in [(1, 1, 2), (1, 3, 4), (2, 2, 2), (3, 5, 6), (7, 2, 9)]:
        for distances in ([1], [2], [1, 2], [3, 1], [1, 1], [5]):
            for bidirectional in (True, False):
                for force2d, dim in [(False, 0), (True, 0), (True, 1), (True, 2)]:
                    args = (np.array(size), np.array(distances), bidirectional, force2d, dim)
                    try:
                        expected = cMatrices.generate_angles(*args)
                    except RuntimeError:
                        with pytest.raises(ValueError):
                            neighbourhood.generate_angles(size, distances, *args[2:])
                        continue
                    got = neighbourhood.generate_angles(size, distances, *args[2:])
                    assert np.array_equal(got, expected), (size, distances, args[2:])


def test_one_pass_equals_separate_calls(synthetic_captures):
    capture = synthetic_captures[0]
    binned, mask = _binned(capture)
    shared = neighbourhood.neighbourhood_matrices_for(binned, mask, capture.settings)
    for module, _ in CLASSES.values():
        alone = module.compute(binned, mask, capture.spacing, capture.settings)
        together = module.features_from_matrices(shared, capture.spacing, capture.settings)
        assert alone == together
    names = {"glcm": ["MCC", "Idmn"], "gldm": None, "ngtdm": ["Busyness"]}
    combined = texture.compute_classes(binned, mask, capture.spacing, capture.settings, names)
    for class_name, chosen in names.items():
        module = CLASSES[class_name][0]
        alone = module.compute(binned, mask, capture.spacing, capture.settings, chosen)
        assert combined[class_name] == alone


def test_threads_give_the_same_values(synthetic_captures):
    captures = synthetic_captures[:6]
    serial = [_native(glcm, c) for c in captures]
    results: dict[int, dict] = {}

    def work(i):
        results[i] = _native(glcm, captures[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(captures))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, expected in enumerate(serial):
        assert results[i].keys() == expected.keys()
        for name in expected:
            assert results[i][name] == expected[name] or (
                np.isnan(results[i][name]) and np.isnan(expected[name])
            )


def test_names():
    rng = np.random.default_rng(0)
    binned, mask = _random_case(rng)
    settings = {"binWidth": 25}
    for module, _ in CLASSES.values():
        everything = module.compute(binned, mask, (1.0, 1.0, 1.0), settings)
        assert list(everything) == [n for n, dep in module.FEATURE_NAMES.items() if not dep]
        assert module.compute(binned, mask, (1.0, 1.0, 1.0), settings, []) == everything
        first = next(iter(everything))
        assert module.compute(binned, mask, (1.0, 1.0, 1.0), settings, [first]) == {
            first: everything[first]
        }
        deprecated = [n for n, dep in module.FEATURE_NAMES.items() if dep]
        if deprecated:  # PyRadiomics' deprecated getters of these classes raise: no value, no key
            assert module.compute(binned, mask, (1.0, 1.0, 1.0), settings, deprecated) == {}
        with pytest.raises(LookupError):
            module.compute(binned, mask, (1.0, 1.0, 1.0), settings, ["NoSuchFeature"])


@pytest.mark.parametrize(
    "settings, word",
    [
        ({"gldm_a": 0.5}, "gldm_a"),
        ({"distances": [0]}, "distances"),
        ({"distances": 1}, "distances"),
        ({"voxelBased": True}, "voxelBased"),
    ],
    ids=str,
)
def test_unsupported_settings(settings, word):
    rng = np.random.default_rng(0)
    binned, mask = _random_case(rng)
    module = gldm if word == "gldm_a" else glcm
    with pytest.raises(ValueError, match=word):
        module.compute(binned, mask, (1.0, 1.0, 1.0), settings)


def test_bad_inputs():
    rng = np.random.default_rng(0)
    binned, mask = _random_case(rng)
    with pytest.raises(ValueError, match="empty"):
        ngtdm.compute(binned, np.zeros_like(mask), (1.0, 1.0, 1.0), {})
    broken = binned.copy()
    broken[mask] = 0
    with pytest.raises(ValueError, match=">= 1"):
        ngtdm.compute(broken, mask, (1.0, 1.0, 1.0), {})


def test_kernel_checks_levels():
    rng = np.random.default_rng(0)
    binned, mask = _random_case(rng)
    angles = neighbourhood.generate_angles(binned.shape, [1], True)
    with pytest.raises(ValueError, match=r"1\.\.Ng"):
        neighbourhood.neighbourhood_matrices(binned, mask, angles, 3, True, True, True)
