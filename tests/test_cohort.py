"""Manifest validation: every bad input gets its own message, all of them reported at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ovfdlr.cli import app
from ovfdlr.cohort import (
    ManifestError,
    centre_table,
    class_table,
    load_manifest,
    validate_manifest,
)

from .conftest import cube_case, good_row, write_manifest, write_volume

runner = CliRunner()


def checks(report) -> set[str]:
    return {p.check for p in report.errors}


def only_problem(report, check: str):
    found = [p for p in report.problems if p.check == check]
    assert len(found) == 1, report.problems
    return found[0]


def test_valid_manifest_passes_and_summarises(tmp_path):
    rows = [
        good_row(tmp_path, "c1", "p1", "train", 0),
        good_row(tmp_path, "c2", "p1", "train", 1),
        good_row(tmp_path, "c3", "p2", "internal", 2),
        good_row(tmp_path, "c4", "p3", "external", 0, centre="B"),
    ]
    path = write_manifest(tmp_path, rows)
    report = validate_manifest(path)
    assert report.ok, report.problems
    assert report.problems == []
    classes = class_table(report.cohort)
    assert classes.loc["train", "class 0"] == 1
    assert classes.loc["train", "class 1"] == 1
    assert classes.loc["train", "patients"] == 1
    assert classes.loc["(all)", "(all)"] == 4
    assert classes.loc["(all)", "patients"] == 3
    centres = centre_table(report.cohort)
    assert centres.loc["B", "external"] == 1
    assert centres.loc["A", "patients"] == 2
    assert centres.loc["(all)", "patients"] == 3

    result = runner.invoke(app, ["validate", str(path), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "Cases per cohort and ASTLOF class" in result.output
    assert "valid" in result.output


def test_load_manifest_types_and_paths(tmp_path):
    rows = [good_row(tmp_path, "c1", "p1"), good_row(tmp_path, "c2", "p2", "prospective", "")]
    path = write_manifest(tmp_path, rows)
    cohort = load_manifest(path)
    assert list(cohort.index) == ["c1", "c2"]
    assert cohort.loc["c1", "image"] == str(tmp_path / "c1_ct.nii.gz")
    assert cohort["label"].dtype.name == "Int64"
    assert cohort.loc["c1", "label"] == 0
    assert pd.isna(cohort.loc["c2", "label"])
    assert cohort["mask_label"].tolist() == [1, 1]
    assert cohort["manifest_row"].tolist() == [2, 3]


def test_mask_label_defaults_to_one(tmp_path):
    row = good_row(tmp_path, "c1", "p1")
    del row["mask_label"]
    cohort = load_manifest(write_manifest(tmp_path, [row]))
    assert cohort.loc["c1", "mask_label"] == 1


def test_missing_column(tmp_path):
    row = good_row(tmp_path, "c1", "p1")
    del row["patient_id"]
    report = validate_manifest(write_manifest(tmp_path, [row]))
    problem = only_problem(report, "missing-column")
    assert "'patient_id'" in problem.message
    with pytest.raises(ManifestError, match="patient_id"):
        load_manifest(tmp_path / "manifest.csv")


def test_duplicate_case_id(tmp_path):
    rows = [good_row(tmp_path, "c1", "p1"), good_row(tmp_path, "c1", "p2")]
    problem = only_problem(validate_manifest(write_manifest(tmp_path, rows)), "duplicate-case-id")
    assert (problem.row, problem.case_id) == (3, "c1")
    assert "row 2" in problem.message


def test_missing_image_and_mask_files(tmp_path):
    row = good_row(tmp_path, "c1", "p1")
    row["image"] = "nowhere/ct.nii.gz"
    row["mask"] = "nowhere/mask.nrrd"
    report = validate_manifest(write_manifest(tmp_path, [row]))
    assert {"image-missing", "mask-missing"} <= checks(report)
    assert "nowhere/ct.nii.gz" in only_problem(report, "image-missing").message


def test_unreadable_image(tmp_path):
    row = good_row(tmp_path, "c1", "p1")
    (tmp_path / "broken.nii.gz").write_bytes(b"this is not an image")
    row["image"] = "broken.nii.gz"
    problem = only_problem(validate_manifest(write_manifest(tmp_path, [row])), "image-unreadable")
    assert "broken.nii.gz" in problem.message
    assert problem.case_id == "c1"


@pytest.mark.parametrize(
    ("geometry", "word"),
    [
        ({"spacing": (1.0, 1.0, 1.5)}, "spacing"),
        ({"origin": (0.0, 0.0, 2.0)}, "origin"),
        ({"direction": (0, 1, 0, 1, 0, 0, 0, 0, 1)}, "direction"),
    ],
)
def test_geometry_mismatch(tmp_path, geometry, word):
    row = good_row(tmp_path, "c1", "p1")
    mask = np.zeros((24, 24, 24), np.uint8)
    mask[6:18, 6:18, 6:18] = 1
    write_volume(tmp_path / "c1_mask.nii.gz", mask, **geometry)
    problem = only_problem(validate_manifest(write_manifest(tmp_path, [row])), "geometry")
    assert f"{word} differs" in problem.message


def test_size_mismatch(tmp_path):
    row = good_row(tmp_path, "c1", "p1")
    write_volume(tmp_path / "c1_mask.nii.gz", np.ones((20, 24, 24), np.uint8))
    problem = only_problem(validate_manifest(write_manifest(tmp_path, [row])), "geometry")
    assert "size differs" in problem.message


def test_geometry_within_tolerance_passes(tmp_path):
    row = good_row(tmp_path, "c1", "p1")
    mask = np.zeros((24, 24, 24), np.uint8)
    mask[6:18, 6:18, 6:18] = 1
    write_volume(tmp_path / "c1_mask.nii.gz", mask, origin=(0.0, 0.0, 1e-5))
    assert validate_manifest(write_manifest(tmp_path, [row])).ok


def test_mask_label_absent(tmp_path):
    row = good_row(tmp_path, "c1", "p1")
    row["mask_label"] = 7
    problem = only_problem(validate_manifest(write_manifest(tmp_path, [row])), "mask-label")
    assert "mask_label 7" in problem.message and "labels: 1" in problem.message


def test_empty_roi(tmp_path):
    row = good_row(tmp_path, "c1", "p1")
    write_volume(tmp_path / "c1_mask.nii.gz", np.zeros((24, 24, 24), np.uint8))
    problem = only_problem(validate_manifest(write_manifest(tmp_path, [row])), "empty-roi")
    assert "empty ROI" in problem.message


def test_roi_touching_border_is_a_warning(tmp_path):
    image, mask = cube_case(tmp_path, "edge", box=(0, 10))
    row = good_row(tmp_path, "c1", "p1") | {"image": image.name, "mask": mask.name}
    report = validate_manifest(write_manifest(tmp_path, [row]))
    assert report.ok
    problem = only_problem(report, "roi-border")
    assert problem.severity == "warning"
    result = runner.invoke(app, ["validate", str(tmp_path / "manifest.csv"), "--strict"])
    assert result.exit_code == 1


def test_small_roi(tmp_path):
    image, mask = cube_case(tmp_path, "tiny", box=(10, 13))  # 27 voxels
    row = good_row(tmp_path, "c1", "p1") | {"image": image.name, "mask": mask.name}
    problem = only_problem(validate_manifest(write_manifest(tmp_path, [row])), "small-roi")
    assert "27 voxels" in problem.message and "64" in problem.message
    report = validate_manifest(tmp_path / "manifest.csv", min_roi_voxels=20)
    assert report.ok


@pytest.mark.parametrize("bad", ["3", "-1", "two", "1.5"])
def test_label_not_in_classes(tmp_path, bad):
    row = good_row(tmp_path, "c1", "p1") | {"label": bad}
    problem = only_problem(validate_manifest(write_manifest(tmp_path, [row])), "label")
    assert f"'{bad}'" in problem.message


def test_patient_in_two_cohorts(tmp_path):
    rows = [
        good_row(tmp_path, "c1", "p1", "train"),
        good_row(tmp_path, "c2", "p1", "external"),
        good_row(tmp_path, "c3", "p2", "train"),
    ]
    report = validate_manifest(write_manifest(tmp_path, rows))
    found = [p for p in report.errors if p.check == "patient-in-two-cohorts"]
    assert [(p.row, p.case_id) for p in found] == [(2, "c1"), (3, "c2")]
    assert "patient p1" in found[0].message and "external: row 3" in found[0].message


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_non_finite_voxels(tmp_path, suffix):
    # ITK's NIfTI reader turns NaN into 0; the check must still see them
    row = good_row(tmp_path, "c1", "p1") | {"image": f"float{suffix}"}
    ct = np.full((24, 24, 24), 40.0, np.float32)
    ct[0, 0, :3] = np.nan
    ct[1, 1, 1] = np.inf
    write_volume(tmp_path / f"float{suffix}", ct)
    problem = only_problem(validate_manifest(write_manifest(tmp_path, [row])), "non-finite")
    assert "4 non-finite" in problem.message


def test_two_dimensional_image(tmp_path):
    row = good_row(tmp_path, "c1", "p1")
    write_volume(tmp_path / "c1_ct.nii.gz", np.zeros((24, 24), np.int16))
    report = validate_manifest(write_manifest(tmp_path, [row]))
    assert "image-dimension" in checks(report)


def test_every_problem_reported_at_once_with_rows(tmp_path):
    rows = [
        good_row(tmp_path, "c1", "p1", "train", 0),
        good_row(tmp_path, "c1", "p2", "train", 1),  # duplicate id
        good_row(tmp_path, "c3", "p3", "train", 5),  # bad label
        good_row(tmp_path, "c4", "p1", "external", 0),  # p1 straddles cohorts
        good_row(tmp_path, "c5", "p5", "train", 0) | {"image": "missing.nii.gz"},
    ]
    path = write_manifest(tmp_path, rows)
    report = validate_manifest(path)
    assert {"duplicate-case-id", "label", "patient-in-two-cohorts", "image-missing"} <= checks(
        report
    )
    rows_with_errors = {p.row for p in report.errors}
    assert rows_with_errors == {2, 3, 4, 5, 6}

    result = runner.invoke(
        app,
        ["validate", str(path), "--jobs", "2", "--problems-csv", str(tmp_path / "problems.csv")],
    )
    assert result.exit_code == 1
    assert "error(s)" in result.output
    written = pd.read_csv(tmp_path / "problems.csv")
    assert len(written) == len(report.problems)
    assert set(written["check"]) >= {"duplicate-case-id", "label", "image-missing"}


def test_empty_required_cell_and_unknown_cohort(tmp_path):
    rows = [good_row(tmp_path, "c1", "", "training", 0)]
    report = validate_manifest(write_manifest(tmp_path, rows), cohorts=["train", "internal"])
    assert {"empty-cell", "cohort"} <= checks(report)
    assert "'patient_id' is empty" in {p.message for p in report.errors}


def test_manifest_file_missing_or_garbage(tmp_path):
    report = validate_manifest(tmp_path / "nope.csv")
    assert not report.ok and "manifest not found" in report.errors[0].message
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\xff\xfe\x00binary\x00\x01")
    report = validate_manifest(garbage)
    assert not report.ok
    assert {p.check for p in report.errors} <= {"manifest", "missing-column"}
    result = runner.invoke(app, ["validate", str(garbage)])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_blank_lines_keep_sheet_row_numbers(tmp_path):
    rows = [good_row(tmp_path, "c1", "p1"), good_row(tmp_path, "c2", "p2", label=7)]
    path = write_manifest(tmp_path, rows)
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], lines[1], "", ",,,,,,,", lines[2]]) + "\n")
    problem = only_problem(validate_manifest(path), "label")
    assert (problem.row, problem.case_id) == (5, "c2")  # header 1, c1 2, blank 3 and 4


def test_empty_manifest_and_reserved_column(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("case_id,patient_id,image,mask,label,cohort,centre\n")
    report = validate_manifest(path)
    assert [p.check for p in report.errors] == ["empty-manifest"]
    with pytest.raises(ManifestError, match="no case rows"):
        load_manifest(path)
    rows = [good_row(tmp_path, "c1", "p1") | {"manifest_row": 1}]
    report = validate_manifest(write_manifest(tmp_path, rows))
    assert [p.check for p in report.errors] == ["reserved-column"]


def test_cohorts_may_be_any_iterable(tmp_path):
    rows = [good_row(tmp_path, f"c{i}", f"p{i}", "train") for i in range(3)]
    report = validate_manifest(write_manifest(tmp_path, rows), cohorts=(c for c in ["train"]))
    assert report.ok, report.problems


def test_summary_names_that_look_like_margins(tmp_path):
    rows = [good_row(tmp_path, "c1", "p1", "total", centre="total")]
    report = validate_manifest(write_manifest(tmp_path, rows))
    assert report.ok
    assert class_table(report.cohort).loc["total", "class 0"] == 1
    assert centre_table(report.cohort).loc["total", "total"] == 1


def test_cohort_is_withheld_when_there_are_errors(tmp_path):
    rows = [good_row(tmp_path, "c1", "p1"), good_row(tmp_path, "c1", "p2")]
    report = validate_manifest(write_manifest(tmp_path, rows))
    assert not report.ok and report.cohort is None
