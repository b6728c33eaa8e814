"""Image reading on the real TotalSegmentator CT: NIfTI label maps, other formats, DICOM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from ovfdlr import imaging
from ovfdlr.cli import app
from ovfdlr.cohort import validate_manifest

LUMBAR = {27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1"}


@pytest.fixture(scope="module")
def ts(shared_data):
    return shared_data / "totalsegmentator"


def test_lumbar_bodies_validate_as_manifest(ts, tmp_path):
    rows = [
        {
            "case_id": f"example-{level}",
            "patient_id": "example",
            "image": str(ts / "example_ct.nii.gz"),
            "mask": str(ts / "example_ct_vertebral_bodies.nii.gz"),
            "mask_label": label,
            "label": "",
            "cohort": "prospective",
            "centre": "TS",
            "level": level,
        }
        for label, level in LUMBAR.items()
    ]
    path = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    report = validate_manifest(path, jobs=1)
    assert report.ok, report.problems
    assert len(report.cohort) == 5
    result = CliRunner().invoke(app, ["validate", str(path), "--jobs", "1"])
    assert result.exit_code == 0, result.output


def test_label_selection_gives_a_plausible_vertebral_body(ts):
    ct = imaging.read_image(ts / "example_ct.nii.gz")
    assert ct.GetSpacing() == (3.0, 3.0, 3.0)
    for label in LUMBAR:
        mask = imaging.read_mask(ts / "example_ct_vertebral_bodies.nii.gz", label)
        roi = sitk.GetArrayViewFromImage(mask).astype(bool)
        volume_ml = roi.sum() * 27.0 / 1000.0
        assert 15 < volume_ml < 70, (label, volume_ml)  # a lumbar vertebral body
        hu = sitk.GetArrayViewFromImage(ct)[roi]
        assert 100 < np.median(hu) < 400  # cancellous bone in HU


def test_other_formats_read_the_same_voxels(ts, tmp_path):
    ct = imaging.read_image(ts / "example_ct.nii.gz")
    reference = sitk.GetArrayFromImage(ct)
    for suffix in (".nrrd", ".mha", ".mhd", ".nii"):
        path = tmp_path / f"ct{suffix}"
        sitk.WriteImage(ct, str(path))
        again = imaging.read_image(path)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(again), reference)
        np.testing.assert_allclose(again.GetOrigin(), ct.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(again.GetDirection(), ct.GetDirection(), atol=1e-6)


def test_dicom_series_spacing_and_hu(ts):
    folder = ts / "example_ct_dicom"
    image = imaging.read_image(folder)
    assert image.GetSize() == (512, 512, 20)
    files = imaging.dicom_series_files(folder)
    first, second = (pydicom.dcmread(f) for f in files[:2])
    # in-plane spacing from PixelSpacing (row, column) and z from the slice positions
    dz = abs(float(second.ImagePositionPatient[2]) - float(first.ImagePositionPatient[2]))
    np.testing.assert_allclose(
        image.GetSpacing(), [float(first.PixelSpacing[1]), float(first.PixelSpacing[0]), dz]
    )
    assert dz == pytest.approx(2.0)  # 3 mm slices every 2 mm: spacing is not SliceThickness
    # HU = stored value x RescaleSlope + RescaleIntercept, slice by slice
    array = sitk.GetArrayViewFromImage(image)
    for k in (0, 9, 19):
        ds = pydicom.dcmread(files[k])
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(array[k], hu)
    assert array.min() == -1024  # air outside the patient


def test_dicom_folder_with_no_series_or_two(tmp_path, ts):
    with pytest.raises(imaging.ImageReadError, match="no DICOM series"):
        imaging.read_image(tmp_path)
    src = ts / "example_ct_dicom"
    for i, f in enumerate(sorted(src.iterdir())[:2]):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = f"1.2.3.{i}"
        ds.save_as(tmp_path / f"slice{i}.dcm")
    with pytest.raises(imaging.ImageReadError, match="2 DICOM series"):
        imaging.read_image(tmp_path)


def test_unsupported_and_missing(tmp_path):
    (tmp_path / "ct.png").write_bytes(b"x")
    with pytest.raises(imaging.ImageReadError, match="unsupported image format"):
        imaging.read_image(tmp_path / "ct.png")
    with pytest.raises(imaging.ImageReadError, match="file not found"):
        imaging.read_image(tmp_path / "absent.nii.gz")


def test_crop_to_roi_keeps_patient_coordinates(ts):
    ct = imaging.read_image(ts / "example_ct.nii.gz")
    mask = imaging.read_mask(ts / "example_ct_vertebral_bodies.nii.gz", 29)
    ct_crop, mask_crop = imaging.crop_to_roi(ct, mask, margin_mm=6.0)
    assert sitk.GetArrayViewFromImage(mask_crop).sum() == sitk.GetArrayViewFromImage(mask).sum()
    # the crop's first voxel sits where the same voxel of the full volume sits
    index = mask.TransformPhysicalPointToIndex(ct_crop.GetOrigin())
    assert ct_crop[0, 0, 0] == ct[index]
    box = imaging.roi_bounding_box(sitk.GetArrayViewFromImage(mask_crop))
    assert all(s.start == 2 for s in box)  # 6 mm margin at 3 mm spacing
