"""The numba LoG equals SimpleITK's ``LaplacianRecursiveGaussianImageFilter`` bit for bit.

Inputs: the synthetic vertebral CT cohort resampled to 1 mm as the native engine does it (int16,
and float after normalisation), PyRadiomics' brain1 / breast1 test images (native grid and 1 mm
resampling), random int16 / float32 / float64 (and a few other integer) volumes with random
spacings, origins and directions (axis flips and permutations, an oblique rotation), odd and
even sizes down to 4 voxels along an axis, 2-D images, and sigma / spacing ratios far outside
the usual range. Every comparison is ``np.array_equal`` (NaN equal to NaN) on the float32 array.
Images with an axis shorter than 4 voxels make ITK raise; there the function returns ``None``.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk

from ovfdlr.engines.native.imageops import prepare
from ovfdlr.engines.native.recursive_gaussian import laplacian_of_gaussian
from ovfdlr.synthetic import generate_cohort

from .conftest import shared_data_dir

SIGMAS = (0.5, 1.0, 2.0, 3.0, 5.0)
PYRADIOMICS_DATA = shared_data_dir() / "pyradiomics"
RESAMPLE_1MM = {"resampledPixelSpacing": [1, 1, 1], "interpolator": "sitkBSpline", "padDistance": 5}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    yield
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _reference(image: sitk.Image, sigma: float) -> np.ndarray:
    log = sitk.LaplacianRecursiveGaussianImageFilter()
    log.SetNormalizeAcrossScale(True)
    log.SetSigma(sigma)
    return sitk.GetArrayFromImage(log.Execute(image))


def _assert_exact(image: sitk.Image, sigmas=SIGMAS) -> None:
    for sigma in sigmas:
        expected = _reference(image, sigma)
        got = laplacian_of_gaussian(image, sigma)
        assert got is not None
        assert got.dtype == expected.dtype == np.float32
        assert got.shape == expected.shape
        assert np.array_equal(got, expected, equal_nan=True), (
            f"sigma {sigma}: {np.count_nonzero(got != expected)} voxels differ"
        )


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list[tuple[sitk.Image, sitk.Image, int]]:
    root = tmp_path_factory.mktemp("log_cohort")
    generate_cohort(root, n=8, seed=0, progress=False)
    with open(root / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        (
            sitk.ReadImage(str(root / row["image"])),
            sitk.ReadImage(str(root / row["mask"])),
            int(row["mask_label"]),
        )
        for row in rows
    ]


def test_synthetic_cohort_resampled_int16(cohort):
    for image, mask, label in cohort:
        resampled, _, _ = prepare(image, mask, RESAMPLE_1MM, label)
        assert resampled.GetPixelID() == sitk.sitkInt16
        _assert_exact(resampled)


def test_synthetic_cohort_normalised_float(cohort):
    settings = {**RESAMPLE_1MM, "normalize": True, "normalizeScale": 100}
    for image, mask, label in cohort[:3]:
        resampled, _, _ = prepare(image, mask, settings, label)
        assert resampled.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64)
        _assert_exact(resampled, (1.0, 3.0))


def test_synthetic_cohort_native_grid(cohort):
    image, _, _ = cohort[0]
    _assert_exact(image, (1.0, 2.0))


@pytest.mark.parametrize("name", ["brain1", "breast1"])
def test_pyradiomics_images(name):
    image = sitk.ReadImage(str(PYRADIOMICS_DATA / f"{name}_image.nrrd"))
    mask = sitk.ReadImage(str(PYRADIOMICS_DATA / f"{name}_label.nrrd"))
    _assert_exact(image, (1.0, 3.0))
    resampled, _, _ = prepare(image, mask, RESAMPLE_1MM, 1)
    _assert_exact(resampled)


def _directions() -> list[tuple[float, ...]]:
    flips = np.diag([-1.0, -1.0, 1.0])
    permutation = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    a, b = 0.3, -0.7
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return [tuple(np.eye(3).ravel()), tuple(flips.ravel()), tuple(permutation.ravel()),
            tuple((rz @ rx).ravel())]  # fmt: skip


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_random_volumes(dtype):
    rng = np.random.default_rng({np.int16: 1, np.float32: 2, np.float64: 3}[dtype])
    shapes = [(4, 4, 4), (5, 4, 7), (4, 9, 4), (6, 8, 10), (7, 9, 11), (33, 20, 4), (12, 17, 30)]
    for index, shape in enumerate(shapes):
        values = rng.normal(0.0, 400.0, shape)
        if rng.random() < 0.5:
            values += 1000.0 * (rng.random(shape) < 0.05)  # sharp spikes
        image = sitk.GetImageFromArray(values.astype(dtype))
        image.SetSpacing(tuple(rng.uniform(0.3, 3.0, 3)))
        image.SetOrigin(tuple(rng.uniform(-200.0, 200.0, 3)))
        image.SetDirection(_directions()[index % 4])
        _assert_exact(image)


def test_other_pixel_types_and_2d():
    rng = np.random.default_rng(4)
    for dtype in (np.uint8, np.uint16, np.int32, np.int8):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, (6, 7, 9), endpoint=True).astype(dtype)
        image = sitk.GetImageFromArray(values)
        image.SetSpacing((0.8, 1.3, 2.5))
        _assert_exact(image, (1.0, 2.0))
    for shape in [(4, 4), (5, 12), (31, 8)]:
        for dtype in (np.int16, np.float32):
            image = sitk.GetImageFromArray(rng.normal(0.0, 100.0, shape).astype(dtype))
            image.SetSpacing(tuple(rng.uniform(0.5, 2.0, 2)))
            image.SetDirection((0.0, 1.0, -1.0, 0.0))
            _assert_exact(image, (0.5, 1.0, 3.0))


def test_extreme_sigma_over_spacing():
    rng = np.random.default_rng(5)
    for _ in range(25):
        shape = tuple(int(n) for n in rng.integers(4, 9, 3))
        image = sitk.GetImageFromArray(rng.normal(0.0, 1000.0, shape).astype(np.float32))
        image.SetSpacing(tuple(10.0 ** rng.uniform(-2.0, 1.5, 3)))
        _assert_exact(image, (float(10.0 ** rng.uniform(-2.0, 1.5)),))


@pytest.mark.parametrize("shape", [(3, 10, 10), (10, 3, 10), (10, 10, 1), (1, 1, 1), (2, 2)])
def test_short_axis_returns_none(shape):
    image = sitk.GetImageFromArray(np.zeros(shape, np.int16))
    with pytest.raises(RuntimeError):
        _reference(image, 1.0)
    assert laplacian_of_gaussian(image, 1.0) is None


def test_unsupported_inputs_return_none():
    image = sitk.GetImageFromArray(np.zeros((5, 5, 5), np.int16))
    assert laplacian_of_gaussian(image, 0.0) is None
    vector = sitk.GetImageFromArray(np.zeros((5, 5, 5, 2), np.float32), isVector=True)
    assert laplacian_of_gaussian(vector, 1.0) is None
    four_d = sitk.Image([5, 5, 5, 5], sitk.sitkFloat32)
    assert laplacian_of_gaussian(four_d, 1.0) is None
