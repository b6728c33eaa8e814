"""Input checks: every broken input is refused (or warned about) under its own check, in
validation and in a batch extraction, and nothing ITK prints is left on stderr."""

from __future__ import annotations

import math
import pickle
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from ovfdlr import cache, imaging, integrity
from ovfdlr.cli import app
from ovfdlr.cohort import MANIFEST_COLUMNS, load_manifest, validate_manifest
from ovfdlr.morphometry import extract_morphometry
from ovfdlr.radiomics import extract_radiomics

from .conftest import cube_case, good_row, write_manifest, write_volume
from .dicom_fixtures import IDENTIFIERS, ct_phantom, write_ct_series

FAST = {"imageType": {"Original": {}}, "featureClass": {"firstorder": []}}


def row_for(folder: Path, case_id: str, patient_id: str, image, mask, **extra) -> dict:
    return {
        "case_id": case_id,
        "patient_id": patient_id,
        "image": str(image),
        "mask": str(mask),
        "mask_label": 1,
        "label": 0,
        "cohort": "train",
        "centre": "A",
        **extra,
    }


def validate_rows(folder: Path, rows: list[dict]):
    return validate_manifest(write_manifest(folder, rows))


def the_problem(report, check: str, row: int = 2, case_id: str = "c1", severity="error"):
    """The one problem of ``check``; asserts its row, case and severity."""
    found = [p for p in report.problems if p.check == check]
    assert len(found) == 1, report.problems
    problem = found[0]
    assert (problem.row, problem.case_id, problem.severity) == (row, case_id, severity)
    return problem


def refused(folder: Path, image, mask=None, check: str = "", capfd=None, **extra):
    """Validate a one-row manifest of ``image`` (and a good mask) and return the problem of
    ``check``, an error at row 2 of case c1; the report has no other error of an input check."""
    if mask is None:
        _, mask = cube_case(folder, "ok")
    report = validate_rows(folder, [row_for(folder, "c1", "p1", image, mask, **extra)])
    assert not report.ok
    problem = the_problem(report, check)
    assert {p.check for p in report.errors} & set(integrity.CHECKS) == {check}
    if capfd is not None:
        assert capfd.readouterr().err == ""
    return problem


def cube_ct(folder: Path, name: str = "ct") -> sitk.Image:
    """The CT of a cube case, without the NIfTI meta-data (which other writers warn about)."""
    image_path, _ = cube_case(folder, name)
    read = sitk.ReadImage(str(image_path))
    image = sitk.GetImageFromArray(sitk.GetArrayFromImage(read))
    image.CopyInformation(read)
    return image


# ---------------------------------------------------------------------------------------------
# compressed streams and voxel counts


def test_nii_gz_cut_to_3000_bytes_is_refused_not_zero_filled(tmp_path, capfd):
    image, mask = cube_case(tmp_path, "full")
    data = image.read_bytes()
    assert len(data) > 6000
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[:3000])
    problem = refused(tmp_path, cut, mask, "truncated-file", capfd)
    assert "cut.nii.gz" in problem.message and "3000 bytes" in problem.message
    with pytest.raises(imaging.InputCheckError) as caught:
        imaging.read_image(cut)
    assert caught.value.check == "truncated-file"
    assert "[truncated-file]" in str(caught.value)
    again = pickle.loads(pickle.dumps(caught.value))  # as it crosses worker processes
    assert (again.check, str(again)) == ("truncated-file", str(caught.value))


@pytest.mark.parametrize(
    ("suffix", "cut"),
    [(".nii.gz", "crc"), (".nii.gz", "middle"), (".nrrd", "middle"), (".mha", "middle")],
)
def test_compressed_stream_that_fails_its_check(tmp_path, capfd, suffix, cut):
    path = tmp_path / f"whole{suffix}"
    sitk.WriteImage(cube_ct(tmp_path), str(path), useCompression=True)
    data = bytearray(path.read_bytes())
    where = len(data) - 6 if cut == "crc" else len(data) // 2  # in the gzip CRC, or the data
    data[where] ^= 0xFF
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(bytes(data))
    problem = refused(tmp_path, bad, check="corrupt-stream", capfd=capfd)
    assert "corrupt" in problem.message


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_compressed_stream_cut_short(tmp_path, capfd, suffix):
    path = tmp_path / f"whole{suffix}"
    sitk.WriteImage(cube_ct(tmp_path), str(path), useCompression=True)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    refused(tmp_path, cut, check="truncated-file", capfd=capfd)


@pytest.mark.parametrize("suffix", [".nii", ".nrrd", ".mha", ".mhd"])
def test_file_holding_fewer_voxels_than_its_header(tmp_path, capfd, suffix):
    path = tmp_path / f"whole{suffix}"
    sitk.WriteImage(cube_ct(tmp_path), str(path))
    data_file = path.with_suffix(".raw") if suffix == ".mhd" else path
    data = data_file.read_bytes()
    data_file.write_bytes(data[: len(data) - 1000])
    problem = refused(tmp_path, path, check="voxel-count", capfd=capfd)
    have, need = map(
        int,
        re.search(r"holds (\d+) bytes but the header describes (\d+)", problem.message).groups(),
    )
    assert need - have == 1000 and need >= 24**3 * 2  # the bytes cut off, the voxels described


# ---------------------------------------------------------------------------------------------
# headers


def nifti_bytes(folder: Path) -> bytearray:
    path = folder / "plain.nii"
    sitk.WriteImage(cube_ct(folder), str(path))
    return bytearray(path.read_bytes())


def patched(folder: Path, name: str, data: bytearray, *patches) -> Path:
    data = bytearray(data)
    for offset, fmt, values in patches:
        struct.pack_into(fmt, data, offset, *values)
    path = folder / name
    path.write_bytes(bytes(data))
    return path


def test_zero_spacing_in_nifti_and_negative_spacing_in_metaimage(tmp_path, capfd):
    data = nifti_bytes(tmp_path)
    # pixdim[1] = 0 with no qform / sform: ITK alone would read a 1 mm spacing
    zero = patched(tmp_path, "zero.nii", data, (80, "<f", [0.0]), (252, "<hh", [0, 0]))
    problem = refused(tmp_path, zero, check="header-spacing", capfd=capfd)
    assert "pixdim" in problem.message
    sitk.WriteImage(cube_ct(tmp_path), str(tmp_path / "plain.mha"))
    text = (tmp_path / "plain.mha").read_bytes()
    negative = tmp_path / "negative.mha"  # ITK alone would flip the axis
    negative.write_bytes(text.replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = -1 1 1"))
    refused(tmp_path, negative, check="header-spacing", capfd=capfd)


def test_sheared_direction_is_refused(tmp_path, capfd):
    data = nifti_bytes(tmp_path)
    # an sform with shear beside a valid qform: ITK warns and falls back to the qform
    shear = patched(tmp_path, "shear.nii", data, (280, "<4f", [-1.0, 0.5, 0.0, 0.0]))
    problem = refused(tmp_path, shear, check="header-direction", capfd=capfd)
    assert "unexpected scales in sform" in problem.message
    sitk.WriteImage(cube_ct(tmp_path), str(tmp_path / "plain.mha"))
    text = (tmp_path / "plain.mha").read_bytes()
    skew = tmp_path / "skew.mha"
    skew.write_bytes(text.replace(b"Matrix = 1 0 0 0 1 0", b"Matrix = 1 0.5 0 0 1 0"))
    problem = refused(tmp_path, skew, check="header-direction", capfd=capfd)
    assert "not orthonormal" in problem.message


def test_nan_in_the_nifti_affine(tmp_path, capfd):
    data = nifti_bytes(tmp_path)
    nan = patched(tmp_path, "nan.nii", data, (292, "<f", [math.nan]))  # sform x offset
    problem = refused(tmp_path, nan, check="header-affine", capfd=capfd)
    assert "sform" in problem.message and "nan" in problem.message


def test_an_itk_message_that_maps_to_no_check_fails_as_itk_warning(tmp_path, capfd, monkeypatch):
    data = nifti_bytes(tmp_path)
    shear = patched(tmp_path, "shear.nii", data, (280, "<4f", [-1.0, 0.5, 0.0, 0.0]))
    monkeypatch.setattr(integrity, "ITK_MESSAGES", ())  # as if the message were unknown
    problem = refused(tmp_path, shear, check="itk-warning", capfd=capfd)
    assert "NiftiImageIO: " in problem.message and "unexpected scales in sform" in problem.message


# ---------------------------------------------------------------------------------------------
# DICOM series


def dicom_case(folder: Path, name: str = "series", **series) -> tuple[Path, Path, list[Path]]:
    """A small CT series and a mask file on the grid ITK reads it to."""
    files = write_ct_series(folder / name, ct_phantom(), **series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    with integrity.captured_messages():
        image = reader.Execute()
    labels = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    labels[3:9, 5:11, 5:11] = 1
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    mask_path = folder / f"{name}_mask.nii.gz"
    sitk.WriteImage(mask, str(mask_path))
    return folder / name, mask_path, files


def test_dicom_series_with_a_slice_removed(tmp_path, capfd):
    folder, mask, files = dicom_case(tmp_path)
    files[5].unlink()
    problem = refused(tmp_path, folder, mask, "dicom-missing-slice", capfd)
    assert "1 slice(s) missing" in problem.message and "2 mm" in problem.message


def test_real_dicom_series_with_a_slice_removed(tmp_path, shared_data, capfd):
    folder = tmp_path / "real"
    shutil.copytree(shared_data / "totalsegmentator" / "example_ct_dicom", folder)
    sorted(folder.iterdir())[9].unlink()
    with pytest.raises(imaging.InputCheckError) as caught:
        imaging.read_image(folder)
    assert caught.value.check == "dicom-missing-slice"
    assert "2 mm" in str(caught.value)  # not the 2.11 mm average ITK would have used
    assert capfd.readouterr().err == ""


def test_dicom_series_with_a_slice_twice(tmp_path, capfd):
    folder, mask, files = dicom_case(tmp_path)
    shutil.copy(files[4], folder / "copy.dcm")
    refused(tmp_path, folder, mask, "dicom-duplicate-slice", capfd)


def test_dicom_series_unevenly_spaced(tmp_path, capfd):
    def shift(k, ds):
        if k >= 6:
            ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k + 0.5]

    folder, mask, _ = dicom_case(tmp_path, edit=shift)
    problem = refused(tmp_path, folder, mask, "dicom-slice-spacing", capfd)
    assert "2.5" in problem.message


def tilt_one_slice(ds):
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.995, 0.0998]


def respace_one_slice(ds):
    ds.PixelSpacing = [0.9, 0.9]


def halve_one_slice(ds):  # 8 rows instead of 16: ITK's series reader fails on it
    ds.Rows = 8
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]


@pytest.mark.parametrize(
    ("check", "change"),
    [
        ("dicom-mixed-orientation", tilt_one_slice),
        ("dicom-mixed-pixel-spacing", respace_one_slice),
        ("dicom-mixed-matrix", halve_one_slice),
    ],
)
def test_dicom_series_mixing_slices(tmp_path, capfd, check, change):
    folder, mask, files = dicom_case(tmp_path)
    ds = pydicom.dcmread(files[5])
    change(ds)
    ds.save_as(files[5])
    problem = refused(tmp_path, folder, mask, check, capfd)
    assert "slice005.dcm" in problem.message


def test_several_series_listed_then_chosen_by_series_uid(tmp_path, capfd):
    folder, mask, _ = dicom_case(tmp_path, series_uid="1.2.826.0.1.1", description="bone")
    write_ct_series(folder / "soft", ct_phantom((5, 16, 16)), series_uid="1.2.826.0.1.2")
    for path in (folder / "soft").iterdir():
        path.rename(folder / f"soft-{path.name}")
    (folder / "soft").rmdir()
    problem = refused(tmp_path, folder, mask, "dicom-several-series", capfd)
    assert "1.2.826.0.1.1 (12 slices, 'bone')" in problem.message
    assert "1.2.826.0.1.2 (5 slices" in problem.message and "series_uid" in problem.message

    rows = [row_for(tmp_path, "c1", "p1", folder, mask, series_uid="1.2.826.0.1.1")]
    report = validate_rows(tmp_path, rows)
    assert report.ok, report.problems
    assert imaging.read_image(folder, "1.2.826.0.1.1").GetSize() == (16, 16, 12)
    assert imaging.read_image(folder, "1.2.826.0.1.2").GetSize() == (16, 16, 5)
    # the content hash covers the chosen series' files only
    first = cache.file_digest(folder, series_uid="1.2.826.0.1.1")
    assert first != cache.file_digest(folder, series_uid="1.2.826.0.1.2")
    (folder / "soft-slice000.dcm").unlink()
    assert cache.file_digest(folder, series_uid="1.2.826.0.1.1") == first

    rows = [row_for(tmp_path, "c1", "p1", folder, mask, series_uid="9.9.9")]
    problem = the_problem(validate_rows(tmp_path, rows), "dicom-series-uid")
    assert "9.9.9" in problem.message and "1.2.826.0.1.1" in problem.message
    assert capfd.readouterr().err == ""


def test_gantry_tilt_is_a_warning_that_says_how_it_is_read(tmp_path, capfd):
    folder, mask, _ = dicom_case(tmp_path, tilt_degrees=15.0)
    report = validate_rows(tmp_path, [row_for(tmp_path, "c1", "p1", folder, mask)])
    assert report.ok, report.problems
    problem = the_problem(report, "dicom-gantry-tilt", severity="warning")
    assert "15.00 degrees" in problem.message and "read as is" in problem.message
    # what ITK does: no resampling; the slice distance is the distance between positions
    spacing = imaging.read_image(folder).GetSpacing()[2]
    assert spacing == pytest.approx(2.0 / math.cos(math.radians(15.0)))
    assert f"{spacing:.4g} mm" in problem.message
    assert capfd.readouterr().err == ""


def test_missing_rescale_and_uncalibrated_values_are_warnings(tmp_path, capfd):
    folder, mask, _ = dicom_case(tmp_path, rescale=False)
    report = validate_rows(tmp_path, [row_for(tmp_path, "c1", "p1", folder, mask)])
    assert report.ok, report.problems
    assert "Rescale" in the_problem(report, "dicom-no-rescale", severity="warning").message
    problem = the_problem(report, "ct-values", severity="warning")
    assert "no negative voxel value" in problem.message
    assert capfd.readouterr().err == ""


# ---------------------------------------------------------------------------------------------
# masks and duplicated images


@pytest.mark.parametrize(
    ("check", "values"),
    [("mask-not-integer", 0.5), ("mask-negative", -1)],
)
def test_label_map_values(tmp_path, check, values):
    image, _ = cube_case(tmp_path, "c1")
    labels = np.zeros((24, 24, 24), np.float32 if check == "mask-not-integer" else np.int16)
    labels[6:18, 6:18, 6:18] = 1
    labels[2:4, 2:4, 2:4] = values
    mask = write_volume(tmp_path / "odd_mask.nii.gz", labels)
    refused(tmp_path, image, mask, check)


def test_a_ct_given_as_its_own_mask(tmp_path):
    image, _ = cube_case(tmp_path, "c1")
    problem = refused(tmp_path, image, image, "mask-is-image")
    assert "looks like an image" in problem.message
    phantom = write_volume(tmp_path / "hu.nii.gz", ct_phantom((24, 24, 24)).astype(np.int16))
    problem = refused(tmp_path, image, phantom, "mask-is-image")
    assert "air and lung in HU" in problem.message


def test_same_image_under_two_patients_but_not_two_vertebrae(tmp_path):
    rows = [good_row(tmp_path, "c1", "p1"), good_row(tmp_path, "c2", "p1")]
    rows[1]["image"] = rows[0]["image"]  # one CT, two vertebrae of one patient
    rows.append(good_row(tmp_path, "c3", "p2", cohort="internal"))
    copy = tmp_path / "copy_ct.nii.gz"
    shutil.copy(tmp_path / rows[0]["image"], copy)
    rows[2]["image"] = copy.name  # the same content under another patient, another cohort
    report = validate_rows(tmp_path, rows)
    found = [p for p in report.problems if p.check == "same-image-two-patients"]
    assert [(p.row, p.case_id) for p in found] == [(2, "c1"), (3, "c2"), (4, "c3")]
    assert all(p.message == found[0].message for p in found)
    assert "row 2 (c1, patient p1" in found[0].message
    assert "row 4 (c3, patient p2, cohort internal)" in found[0].message
    assert "2 patients in 2 cohorts" in found[0].message
    del rows[2]
    assert validate_rows(tmp_path, rows).ok


# ---------------------------------------------------------------------------------------------
# batch extraction, stderr, identifiers


def test_batch_extraction_records_the_refused_case_and_completes_the_other(tmp_path, capfd):
    good = good_row(tmp_path, "c1", "p1")
    bad = good_row(tmp_path, "c2", "p2")
    cut = tmp_path / "c2_cut.nii.gz"
    cut.write_bytes((tmp_path / bad["image"]).read_bytes()[:3000])
    bad["image"] = cut.name
    cohort = load_manifest(write_manifest(tmp_path, [good, bad]))
    for result in (
        extract_radiomics(cohort, FAST, cache_dir=tmp_path / "cache", progress=False),
        extract_morphometry(cohort, cache_dir=False, progress=False),
    ):
        assert list(result.features.index) == ["c1"] and result.features.shape[1] > 0
        assert list(result.errors["case_id"]) == ["c2"]
        assert "[truncated-file]" in result.errors["reason"].iloc[0]
    assert capfd.readouterr().err == ""


def test_identifiers_in_a_dicom_series_stay_out_of_validate_output(tmp_path):
    folder, mask, files = dicom_case(tmp_path)
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert {k: str(header.get(k)) for k in IDENTIFIERS} == IDENTIFIERS
    image = imaging.read_image(folder)
    assert image.GetSize() == (16, 16, 12) and image.GetSpacing() == pytest.approx((0.8, 0.8, 2))
    hu = sitk.GetArrayFromImage(image)
    np.testing.assert_array_equal(hu, ct_phantom())

    path = write_manifest(tmp_path, [row_for(tmp_path, "c1", "p1", folder, mask)])
    problems = tmp_path / "problems.csv"
    result = CliRunner().invoke(
        app, ["validate", str(path), "--jobs", "1", "--problems-csv", str(problems)]
    )
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    written = result.output + problems.read_text(encoding="utf-8")
    for value in IDENTIFIERS.values():
        for part in value.replace("^", " ").split():
            assert part not in written


def test_series_uid_is_a_manifest_column_read_into_the_cohort(tmp_path):
    assert "series_uid" in MANIFEST_COLUMNS
    row = good_row(tmp_path, "c1", "p1") | {"series_uid": " 1.2.3 "}
    cohort = load_manifest(write_manifest(tmp_path, [row, good_row(tmp_path, "c2", "p2")]))
    from ovfdlr.extraction import tasks_from_cohort

    assert [t.series_uid for t in tasks_from_cohort(cohort)] == ["1.2.3", None]


def test_stream_checks_stop_at_a_clean_end_and_follow_gzip_members(tmp_path):
    header = nifti_bytes(tmp_path)
    two = tmp_path / "members.nii.gz"  # one file, two gzip members
    middle = len(header) // 2
    compress = lambda b: zlib.compress(b, wbits=31)  # noqa: E731
    two.write_bytes(compress(bytes(header[:middle])) + compress(bytes(header[middle:])))
    assert integrity.file_findings(two) == []
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(imaging.read_image(two)),
        sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "plain.nii"))),
    )
