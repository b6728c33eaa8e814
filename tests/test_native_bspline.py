"""The numba cubic B-spline resampling against SimpleITK's: equal arrays, bit for bit.

``resample_bspline`` must return exactly what ``sitk.ResampleImageFilter`` with
``sitkBSpline`` returns (as ``imageops.resample`` calls it) on the synthetic vertebral CT
cohort, PyRadiomics' test images and random volumes of every pixel type the engine meets,
with random spacings, origins and directions (axis flips, permutations, an oblique rotation),
odd and even sizes down to one voxel along an axis; or ``None`` for the classes it declines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ovfdlr.engines.native import imageops
from ovfdlr.engines.native.bspline import resample_bspline
from ovfdlr.radiomics import load_params

from .conftest import shared_data_dir

PYRADIOMICS_DATA = shared_data_dir() / "pyradiomics"


def _sitk(image, size, origin, spacing, direction, pixel_id) -> np.ndarray:
    resampler = sitk.ResampleImageFilter()
    resampler.SetOutputSpacing([float(s) for s in spacing])
    resampler.SetOutputDirection([float(d) for d in direction])
    resampler.SetSize([int(s) for s in size])
    resampler.SetOutputOrigin([float(o) for o in origin])
    resampler.SetOutputPixelType(pixel_id)
    resampler.SetInterpolator(sitk.sitkBSpline)
    return sitk.GetArrayFromImage(resampler.Execute(image))


def _assert_same(image, size, origin, spacing, direction, pixel_id=None) -> bool:
    """Equal to SimpleITK's array; False where declined (only an input axis of two voxels)."""
    pixel_id = image.GetPixelID() if pixel_id is None else pixel_id
    expected = _sitk(image, size, origin, spacing, direction, pixel_id)
    got = resample_bspline(image, size, origin, spacing, direction, pixel_id)
    if got is None:
        assert 2 in image.GetSize()
        return False
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    different = int(np.sum(got != expected))
    assert np.array_equal(got, expected), f"{different} of {got.size} voxels differ"
    return True


def _engine_calls(monkeypatch, image, mask, settings, label) -> list[tuple]:
    """The B-spline resampling calls ``imageops.resample`` makes, with their arguments."""
    calls = []
    base = sitk.ResampleImageFilter

    class Recording(base):
        def Execute(self, *args):
            if self.GetInterpolator() == sitk.sitkBSpline:
                calls.append(
                    (
                        args[0],
                        self.GetSize(),
                        self.GetOutputOrigin(),
                        self.GetOutputSpacing(),
                        self.GetOutputDirection(),
                        self.GetOutputPixelType(),
                    )
                )
            return super().Execute(*args)

    mask = imageops.label_mask(mask, label)
    fast_image, fast_mask = imageops.resample(image, mask, settings, label)
    # the same call with ITK's resampling (the engine's numba path switched off), recorded
    monkeypatch.setattr(sitk, "ResampleImageFilter", Recording)
    monkeypatch.setattr(imageops, "resample_bspline", lambda *args: None)
    itk_image, itk_mask = imageops.resample(image, mask, settings, label)
    monkeypatch.undo()
    # the engine's resampled image and mask are ITK's, voxel for voxel, on the same grid
    for fast, itk in ((fast_image, itk_image), (fast_mask, itk_mask)):
        assert np.array_equal(sitk.GetArrayViewFromImage(fast), sitk.GetArrayViewFromImage(itk))
        assert fast.GetOrigin() == itk.GetOrigin() and fast.GetSpacing() == itk.GetSpacing()
        assert fast.GetDirection() == itk.GetDirection()
        assert fast.GetPixelID() == itk.GetPixelID()
    return calls


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from ovfdlr.synthetic import generate_cohort

    out = tmp_path_factory.mktemp("bspline-cohort")
    generate_cohort(out, n=8, seed=0, progress=False)
    return out


def test_synthetic_cohort(cohort, monkeypatch):
    settings = load_params()["setting"]
    images = sorted((cohort / "images").glob("*.nii.gz"))
    assert len(images) == 8
    for path in images:
        image = sitk.ReadImage(str(path))
        mask = sitk.ReadImage(str(cohort / "masks" / path.name))
        calls = _engine_calls(monkeypatch, image, mask, settings, 1)
        assert len(calls) == 1
        assert _assert_same(*calls[0])


@pytest.mark.parametrize("name", ["brain1", "breast1"])
@pytest.mark.parametrize("spacing", [[1, 1, 1], [2, 2, 2], [0.7, 0.9, 1.3]])
def test_pyradiomics_images(name, spacing, monkeypatch):
    image = sitk.ReadImage(str(PYRADIOMICS_DATA / f"{name}_image.nrrd"))
    mask = sitk.ReadImage(str(PYRADIOMICS_DATA / f"{name}_label.nrrd"))
    settings = {"resampledPixelSpacing": spacing, "interpolator": "sitkBSpline", "padDistance": 5}
    calls = _engine_calls(monkeypatch, image, mask, settings, 1)
    assert len(calls) == 1
    assert _assert_same(*calls[0])
    # the normalised (float) image as the engine resamples it with normalize: true
    normalised = imageops.normalize(image, {"normalizeScale": 100, "removeOutliers": None})
    calls = _engine_calls(monkeypatch, normalised, mask, settings, 1)
    assert _assert_same(*calls[0])


def _directions(rng) -> list[np.ndarray]:
    perm = np.eye(3)[rng.permutation(3)] * rng.choice([-1.0, 1.0], 3)
    oblique = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    lps_ras = np.diag([-1.0, -1.0, 1.0])
    return [np.eye(3), lps_ras, perm, oblique]


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64, np.uint8, np.int32])
def test_random_volumes(dtype):
    rng = np.random.default_rng(int(np.dtype(dtype).num))
    compared = 0
    for trial in range(24):
        shape = rng.integers(1, 14, size=3)
        shape[rng.integers(3)] = rng.choice([1, 3, 4, 5, 12, 13])
        if np.dtype(dtype).kind == "f":
            values = rng.normal(0, 400, size=shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            values = rng.integers(max(info.min, -2000), min(info.max, 2000) + 1, size=shape)
            values = values.astype(dtype)
        image = sitk.GetImageFromArray(values)
        spacing = rng.uniform(0.3, 2.5, 3)
        image.SetSpacing(spacing.tolist())
        image.SetOrigin(rng.uniform(-80, 80, 3).tolist())
        direction = _directions(rng)[trial % 4]
        image.SetDirection(direction.ravel().tolist())
        # the output direction is the mask's: usually the image's, sometimes another
        out_direction = direction if trial % 5 else _directions(rng)[trial % 3]
        out_spacing = rng.uniform(0.3, 2.5, 3)
        extent = np.array(image.GetSize()) * spacing
        size = np.maximum(1, (extent / out_spacing).astype(int) + rng.integers(-1, 4, 3))
        origin = image.TransformContinuousIndexToPhysicalPoint(rng.uniform(-1.5, 0.5, 3).tolist())
        compared += _assert_same(image, size.tolist(), origin, out_spacing, out_direction.ravel())
    assert compared >= 18


def test_clamping_and_other_output_types():
    """Overshoot beyond the output type's range is clamped (int16, uint8), float32 rounded."""
    rng = np.random.default_rng(7)
    values = rng.choice([-32768, 32767], size=(9, 10, 11)).astype(np.int16)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing([0.8, 0.7, 1.1])
    size, origin, spacing = [13, 11, 12], image.GetOrigin(), [0.6, 0.6, 0.9]
    direction = image.GetDirection()
    for pixel_id in (sitk.sitkInt16, sitk.sitkUInt8, sitk.sitkFloat32, sitk.sitkFloat64):
        _assert_same(image, size, origin, spacing, direction, pixel_id)
    expected = _sitk(image, size, origin, spacing, direction, sitk.sitkInt16)
    assert (expected == 32767).any() and (expected == -32768).any()  # clamping was exercised


def test_identity_grid_and_long_lines():
    """The input's own grid (the B-spline passes through the samples) and lines longer than
    the causal initialisation's horizon of 18 voxels in every axis."""
    rng = np.random.default_rng(3)
    image = sitk.GetImageFromArray(rng.normal(0, 300, size=(19, 23, 40)).astype(np.float32))
    image.SetSpacing([0.5, 0.75, 1.25])
    image.SetOrigin([3.0, -4.0, 10.0])
    assert _assert_same(
        image, image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection()
    )
    assert _assert_same(
        image, [70, 30, 40], [2.9, -4.3, 9.5], [0.3, 0.6, 0.7], image.GetDirection()
    )


def test_two_voxel_axis():
    """An axis of two voxels: ITK's mirror leaves index -1 and reads the line before; exact
    where that is inside the buffer, None where it would be before it."""
    rng = np.random.default_rng(11)
    image = sitk.GetImageFromArray(rng.normal(0, 100, size=(6, 7, 2)))
    # output rows from y = 3 on: every index -1 along x reads a coefficient of the row before
    inner = image.TransformContinuousIndexToPhysicalPoint([-0.4, 3.0, 2.0])
    assert _assert_same(image, [4, 3, 3], inner, [0.5, 1.0, 1.0], image.GetDirection())
    # from the first row: ITK would read before its buffer
    corner = image.TransformContinuousIndexToPhysicalPoint([-0.4, 0.0, 0.0])
    got = resample_bspline(
        image, [4, 3, 3], corner, [0.5, 1.0, 1.0], image.GetDirection(), image.GetPixelID()
    )
    assert got is None


def test_declined_classes():
    values = np.zeros((4, 5, 6), dtype=np.float32)
    values[1, 2, 3] = np.nan
    image = sitk.GetImageFromArray(values)
    args = ([3, 3, 3], image.GetOrigin(), [1.0, 1.0, 1.0], image.GetDirection())
    assert resample_bspline(image, *args, image.GetPixelID()) is None  # NaN
    flat = sitk.GetImageFromArray(np.zeros((5, 6), dtype=np.int16))
    assert resample_bspline(flat, [3, 3], (0.0, 0.0), [1.0, 1.0], (1, 0, 0, 1), 2) is None  # 2-D
    vector = sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 2)
    assert resample_bspline(vector, *args, sitk.sitkVectorFloat32) is None
