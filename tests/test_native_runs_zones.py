"""The native GLRLM and GLSZM (ovfdlr.engines.native.glrlm / glszm) give PyRadiomics' values.

Each check runs PyRadiomics' own class (``RadiomicsGLRLM`` / ``RadiomicsGLSZM``) on the raw
cropped image and the native ``compute`` on ``imageoperations.binImage``'s output of the same
image, and asserts ``|native - pyradiomics| <= 1e-12 * max(|pyradiomics|, spread)`` (spread: the
feature's range over the inputs of that check), NaN where PyRadiomics gives NaN. Inputs: what
PyRadiomics' extractor hands the feature classes for three synthetic vertebrae under the
project's parameter file (Original, 8 wavelet and 3 LoG image types), PyRadiomics' test images
under their baseline configurations (and their stored baseline values), setting variants
(force2D, weightingNorm), hand-made edge cases and small random images; the matrices and angles
themselves are compared with ``radiomics.cMatrices`` on random arrays. (At the time of writing
every value is bit-identical; 1e-12 leaves room for other numpy builds.)
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

radiomics = pytest.importorskip("radiomics")

from radiomics import cMatrices, featureextractor, imageoperations  # noqa: E402
from radiomics.glrlm import RadiomicsGLRLM  # noqa: E402
from radiomics.glszm import RadiomicsGLSZM  # noqa: E402

from ovfdlr.engines.native import glrlm, glszm, runs_zones  # noqa: E402

PARAMS = Path(__file__).resolve().parents[1] / "src" / "ovfdlr" / "params" / "ct-vertebra.yaml"
CLASSES = {"glrlm": (glrlm, RadiomicsGLRLM), "glszm": (glszm, RadiomicsGLSZM)}
RTOL = 1e-12


class Capture:
    """One image type of one case as a feature class receives it."""

    def __init__(self, name, image: np.ndarray, mask: np.ndarray, spacing, settings) -> None:
        self.name = name
        self.image = image
        self.mask = mask  # label values, as PyRadiomics' mask image holds them
        self.spacing = tuple(float(s) for s in spacing)
        self.settings = dict(settings)


def _pyradiomics(cls, capture: Capture, settings=None) -> dict[str, float]:
    settings = capture.settings if settings is None else settings
    image = sitk.GetImageFromArray(capture.image)
    image.SetSpacing(capture.spacing)
    mask = sitk.GetImageFromArray(capture.mask)
    mask.SetSpacing(capture.spacing)
    features = cls(image, mask, **settings)
    features.enableAllFeatures()
    with warnings.catch_warnings():  # 'Mean of empty slice' in the all-NaN edge cases
        warnings.simplefilter("ignore", RuntimeWarning)
        values = features.execute()
    return {name: float(value) for name, value in values.items()}


def _native(module, capture: Capture, settings=None) -> dict[str, float]:
    settings = capture.settings if settings is None else settings
    mask = capture.mask == settings.get("label", 1)
    binned = imageoperations.binImage(capture.image, mask, **settings)[0]
    return module.compute(binned, mask, capture.spacing, settings)


def _compare(results: list[tuple[str, dict, dict]]) -> dict[str, float]:
    """Assert native == PyRadiomics over ``(label, native, reference)``; the worst scaled gap."""
    names = results[0][2].keys()
    spread = {}
    for name in names:
        values = np.array([ref[name] for _, _, ref in results])
        finite = values[np.isfinite(values)]
        spread[name] = float(np.ptp(finite)) if finite.size else 0.0
    worst = dict.fromkeys(names, 0.0)
    failures = []
    for label, got, ref in results:
        assert set(got) == set(ref), label
        for name, expected in ref.items():
            value = got[name]
            if np.isnan(expected) or np.isnan(value):
                if not (np.isnan(expected) and np.isnan(value)):
                    failures.append(f"{label} {name}: {value!r} vs {expected!r}")
                continue
            scale = max(abs(expected), spread[name])
            gap = abs(value - expected) / scale if scale > 0 else abs(value - expected)
            worst[name] = max(worst[name], gap)
            if gap > RTOL:
                failures.append(f"{label} {name}: {value!r} vs {expected!r}")
    assert not failures, "\n".join(failures)
    return worst


# ---------------------------------------------------------------------------------------------
# Inputs


def _capturing_extractor(extractor, captures: list[Capture], case: str) -> None:
    def capture(image, mask, image_type, **settings):
        captures.append(
            Capture(
                f"{case}/{image_type}",
                sitk.GetArrayFromImage(image),
                sitk.GetArrayFromImage(mask),
                image.GetSpacing(),
                settings,
            )
        )
        return {}

    extractor.computeFeatures = capture


@pytest.fixture(scope="module")
def synthetic_captures(tmp_path_factory) -> list[Capture]:
    """Three synthetic vertebrae through the project's extraction settings: 36 inputs."""
    from ovfdlr.synthetic import generate_cohort

    folder = tmp_path_factory.mktemp("runs-zones-cohort")
    manifest = generate_cohort(folder, n=3, seed=0, progress=False)
    radiomics.setVerbosity(40)
    captures: list[Capture] = []
    for row in manifest.itertuples():
        extractor = featureextractor.RadiomicsFeatureExtractor(str(PARAMS))
        _capturing_extractor(extractor, captures, row.case_id)
        label = int(row.mask_label)
        extractor.execute(str(folder / row.image), str(folder / row.mask), label=label)
    assert len(captures) == 36
    return captures


def _baseline_configurations(folder: Path) -> dict[tuple[str, str], dict]:
    table = pd.read_csv(folder / "baseline" / "baseline_glrlm.csv", index_col=0)
    configs = {}
    for column in table.columns:
        case = table.loc["diagnostics_Configuration_TestCase", column]
        if not (folder / f"{case}_image.nrrd").exists():
            continue
        settings = ast.literal_eval(table.loc["diagnostics_Configuration_Settings", column])
        configs[(case, column)] = settings
    return configs


@pytest.fixture(scope="module")
def pyradiomics_captures(shared_data) -> list[Capture]:
    """PyRadiomics' test images: brain1 and breast1 under each baseline configuration (2D,
    binCount, no_weighting, flat region, normalisation, resampling, re-segmentation), and the
    prostate phantom (a mask with several labels)."""
    folder = shared_data / "pyradiomics"
    radiomics.setVerbosity(40)
    captures: list[Capture] = []
    runs = [
        (case, column, settings, f"{case}_image.nrrd", f"{case}_label.nrrd")
        for (case, column), settings in _baseline_configurations(folder).items()
    ]
    runs.append(
        (
            "prostate",
            "prostate",
            {"binWidth": 25, "label": 1},
            "prostate_phantom_subvolume.nrrd",
            "prostate_phantom_subvolume-label.nrrd",
        )
    )
    for _case, column, settings, image, mask in runs:
        extractor = featureextractor.RadiomicsFeatureExtractor(**settings)
        extractor.disableAllFeatures()
        extractor.enableFeatureClassByName("glrlm")
        _capturing_extractor(extractor, captures, column)
        extractor.execute(str(folder / image), str(folder / mask))
    assert len(captures) >= 17
    return captures


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_feature_names_are_pyradiomics(kind):
    module, cls = CLASSES[kind]
    assert cls.getFeatureNames() == module.FEATURE_NAMES


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_synthetic_vertebrae_all_image_types(kind, synthetic_captures):
    module, cls = CLASSES[kind]
    results = [(c.name, _native(module, c), _pyradiomics(cls, c)) for c in synthetic_captures]
    _compare(results)


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_pyradiomics_test_images(kind, pyradiomics_captures, shared_data):
    module, cls = CLASSES[kind]
    results = [(c.name, _native(module, c), _pyradiomics(cls, c)) for c in pyradiomics_captures]
    _compare(results)
    # and PyRadiomics' stored baselines (other numpy versions: 1e-6)
    table = pd.read_csv(
        shared_data / "pyradiomics" / "baseline" / f"baseline_{kind}.csv", index_col=0
    )
    checked = 0
    for label, got, _ in results:
        if label.split("/")[0] not in table.columns:
            continue
        for name, value in got.items():
            expected = float(table.loc[f"original_{kind}_{name}", label.split("/")[0]])
            assert value == pytest.approx(expected, rel=1e-6, abs=1e-12), (label, name)
            checked += 1
    assert checked >= 14 * 16  # glszm has no 'combined' (weightingNorm) columns


SETTING_VARIANTS = [
    {"force2D": True, "force2Ddimension": 0},
    {"force2D": True, "force2Ddimension": 1},
    {"force2D": True, "force2Ddimension": 2},
    {"force2D": True, "force2Ddimension": 7},  # PyRadiomics: no dimension excluded
    {"weightingNorm": "manhattan"},
    {"weightingNorm": "euclidean"},
    {"weightingNorm": "infinity"},
    {"weightingNorm": "no_weighting"},
    {"weightingNorm": "chebyshev"},  # unknown: PyRadiomics weighs every angle 1
    {"weightingNorm": "euclidean", "force2D": True, "force2Ddimension": 0},
]


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_setting_variants(kind, pyradiomics_captures):
    """force2D over each dimension and every weightingNorm, on anisotropic brain1 and breast1."""
    module, cls = CLASSES[kind]
    results = []
    for capture in pyradiomics_captures:
        if capture.name.split("/")[0] not in ("brain1", "breast1"):
            continue
        for variant in SETTING_VARIANTS:
            settings = {**capture.settings, **variant}
            label = f"{capture.name} {variant}"
            results.append(
                (label, _native(module, capture, settings), _pyradiomics(cls, capture, settings))
            )
    _compare(results)


def _edge(name: str, image, mask, spacing=(1.0, 1.0, 1.0), **settings) -> Capture:
    image = np.asarray(image, dtype=float)
    mask = np.asarray(mask, dtype=np.uint8)
    return Capture(name, image, mask, spacing, {"binWidth": 1, "label": 1, **settings})


def _edge_cases() -> list[Capture]:
    rng = np.random.default_rng(7)
    cases = []
    one = np.zeros((3, 3, 3))
    one[1, 1, 1] = 1
    cases.append(_edge("one voxel in a 3x3x3 box", rng.integers(0, 9, (3, 3, 3)), one))
    cases.append(_edge("two voxels", [[[4, 4]]], [[[1, 1]]]))
    cube = np.ones((4, 5, 6))
    cases.append(_edge("single gray level", np.full((4, 5, 6), 300.0), cube))
    cases.append(
        _edge("single gray level, sparse ROI", np.full((4, 5, 6), 3.0), rng.random((4, 5, 6)) < 0.3)
    )
    flat_mask = rng.random((1, 9, 11)) < 0.8
    flat_mask[0, 0, 0] = flat_mask[0, -1, -1] = True
    cases.append(_edge("flat (one slice)", rng.integers(0, 4, (1, 9, 11)), flat_mask))
    cases.append(
        _edge(
            "flat, force2D across it",
            rng.integers(0, 4, (1, 9, 11)),
            flat_mask,
            force2D=True,
            force2Ddimension=0,
        )
    )
    cases.append(_edge("line", rng.integers(0, 3, (1, 1, 12)), np.ones((1, 1, 12))))
    gaps = rng.choice([0, 1, 5, 6, 20, 21], size=(6, 7, 8))
    cases.append(_edge("gray levels with gaps", gaps, rng.random((6, 7, 8)) < 0.9))
    cases.append(
        _edge("large Ng (~300 bins)", rng.integers(0, 300, (10, 12, 14)), np.ones((10, 12, 14)))
    )
    blocks = np.kron(rng.integers(0, 3, (3, 3, 3)), np.ones((3, 4, 5)))
    cases.append(
        _edge("long runs, large zones", blocks, np.ones(blocks.shape), spacing=(0.7, 0.9, 2.5))
    )
    # No line along any angle holds two ROI voxels: every angle is empty, all GLRLM NaN.
    cases.append(
        _edge("no angle with two voxels", [[[5, 9, 7], [3, 4, 8]]], [[[1, 0, 0], [0, 0, 1]]])
    )
    cases.append(
        _edge(
            "no angle with two voxels, weighted",
            [[[5, 9, 7], [3, 4, 8]]],
            [[[1, 0, 0], [0, 0, 1]]],
            weightingNorm="euclidean",
        )
    )
    checker = (np.indices((4, 4, 4)).sum(axis=0) % 2).astype(float)
    cases.append(_edge("checkerboard", checker * 7 + 1, np.ones((4, 4, 4))))
    cases.append(
        _edge("sparse mask with holes", rng.integers(0, 5, (7, 8, 9)), rng.random((7, 8, 9)) < 0.2)
    )
    return cases


@pytest.mark.parametrize("kind", sorted(CLASSES))
@pytest.mark.parametrize("case", _edge_cases(), ids=lambda c: c.name)
def test_edge_cases(kind, case):
    module, cls = CLASSES[kind]
    _compare([(case.name, _native(module, case), _pyradiomics(cls, case))])


def _random_captures(count: int) -> list[Capture]:
    """Small random images: few or many gray levels, block textures (long runs, big zones),
    sparse masks, force2D on any dimension, every weighting norm, anisotropic spacing."""
    rng = np.random.default_rng(11)
    captures = []
    while len(captures) < count:
        shape = tuple(int(s) for s in rng.integers(1, 9, 3))
        if np.prod(shape) < 2:
            continue
        image = rng.integers(0, int(rng.integers(1, 40)), shape).astype(float)
        if rng.random() < 0.3:
            image = np.kron(rng.integers(0, 4, (2, 2, 2)), np.ones(shape))
        mask = rng.random(image.shape) < rng.choice([0.2, 0.6, 1.0])
        if not mask.any():
            continue
        settings = {"binWidth": int(rng.integers(1, 4))}
        if rng.random() < 0.3:
            settings.update(force2D=True, force2Ddimension=int(rng.integers(0, 3)))
        if rng.random() < 0.4:
            norms = ["manhattan", "euclidean", "infinity", "no_weighting"]
            settings["weightingNorm"] = str(rng.choice(norms))
        spacing = tuple(float(x) for x in rng.choice([0.5, 0.8, 1.0, 2.5], 3))
        captures.append(_edge(f"random {len(captures)}", image, mask, spacing, **settings))
    return captures


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_random_small_images(kind):
    module, cls = CLASSES[kind]
    results = []
    for capture in _random_captures(300):
        try:
            expected = _pyradiomics(cls, capture)
        except RuntimeError:  # no angle (force2D on a line): the native code raises too
            with pytest.raises(RuntimeError, match="Error getting angle count"):
                _native(module, capture)
            continue
        results.append((capture.name, _native(module, capture), expected))
    for result in results:
        _compare([result])


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_single_voxel_array_raises_as_pyradiomics(kind):
    """A 1x1x1 array has no angle: PyRadiomics' C code raises, and so does the native code
    (the extractor never gets there: checkMask refuses single-voxel ROIs)."""
    module, cls = CLASSES[kind]
    case = _edge("1x1x1", [[[7]]], [[[1]]])
    with pytest.raises(RuntimeError, match="Error getting angle count"):
        _pyradiomics(cls, case)
    with pytest.raises(RuntimeError, match="Error getting angle count"):
        _native(module, case)


def test_matrices_equal_cmatrices_on_random_arrays():
    """The integer matrices and the angles equal PyRadiomics' C ones, element for element."""
    rng = np.random.default_rng(3)
    compared = 0
    while compared < 1500:
        shape = tuple(int(s) for s in rng.integers(1, 7, 3))
        if np.prod(shape) == 1:
            continue
        mask = rng.random(shape) < rng.choice([0.1, 0.4, 0.8, 1.0])
        if not mask.any():
            continue
        binned = rng.integers(1, int(rng.integers(1, 6)) + 1, size=shape)
        binned[~mask] = rng.integers(-3, 9, size=int((~mask).sum()))  # anything outside
        force2d, dimension = bool(rng.integers(0, 2)), int(rng.integers(0, 3))
        roi = runs_zones.prepare(binned, mask)
        ng = roi.ng
        if force2d and all(shape[d] == 1 for d in range(3) if d != dimension):
            with pytest.raises(RuntimeError):
                cMatrices.calculate_glrlm(binned, mask, ng, max(shape), force2d, dimension)
            with pytest.raises(RuntimeError):
                runs_zones.glrlm_matrix(roi, force2d=force2d, force2d_dimension=dimension)
            continue
        expected, angles = cMatrices.calculate_glrlm(
            binned, mask, ng, max(shape), force2d, dimension
        )
        got, got_angles = runs_zones.glrlm_matrix(roi, force2d=force2d, force2d_dimension=dimension)
        np.testing.assert_array_equal(got_angles, angles)
        np.testing.assert_array_equal(got, expected[0])
        expected = cMatrices.calculate_glszm(binned, mask, ng, int(mask.sum()), force2d, dimension)
        got = runs_zones.glszm_matrix(roi, force2d=force2d, force2d_dimension=dimension)
        np.testing.assert_array_equal(got, expected[0])
        compared += 1


def test_angles_equal_pyradiomics():
    for shape in [(5, 6, 7), (1, 6, 7), (5, 1, 7), (5, 6, 1), (1, 1, 7), (2, 2, 2)]:
        for bidirectional in (False, True):
            for force2d, dimension in [(False, 0), (True, 0), (True, 1), (True, 2)]:
                try:
                    expected = cMatrices.generate_angles(
                        np.array(shape), np.array([1]), bidirectional, force2d, dimension
                    )
                except RuntimeError:
                    with pytest.raises(RuntimeError):
                        runs_zones.generate_angles(
                            shape,
                            bidirectional=bidirectional,
                            force2d=force2d,
                            force2d_dimension=dimension,
                        )
                    continue
                got = runs_zones.generate_angles(
                    shape, bidirectional=bidirectional, force2d=force2d, force2d_dimension=dimension
                )
                np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_names_settings_and_inputs(kind):
    module, _ = CLASSES[kind]
    rng = np.random.default_rng(0)
    binned = rng.integers(1, 5, (4, 5, 6))
    mask = rng.random((4, 5, 6)) < 0.7
    before = binned.copy(), mask.copy()
    everything = module.compute(binned, mask, (1.0, 1.0, 1.0), {})
    assert list(everything) == [
        n for n, deprecated in module.FEATURE_NAMES.items() if not deprecated
    ]
    assert all(isinstance(v, float) for v in everything.values())
    some = sorted(module.FEATURE_NAMES)[:3]
    assert module.compute(binned, mask, (1.0, 1.0, 1.0), {}, names=some) == {
        n: everything[n] for n in some
    }
    np.testing.assert_array_equal(binned, before[0])
    np.testing.assert_array_equal(mask, before[1])
    with pytest.raises(LookupError, match="Nope"):
        module.compute(binned, mask, (1.0, 1.0, 1.0), {}, names=["Nope"])
    with pytest.raises(ValueError, match="voxelBased"):
        module.compute(binned, mask, (1.0, 1.0, 1.0), {"voxelBased": True})
    with pytest.raises(ValueError, match="empty"):
        module.compute(binned, np.zeros_like(mask), (1.0, 1.0, 1.0), {})
