"""TotalSegmentator outputs -> manifest rows, on the shared TotalSegmentator example CT."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from ovfdlr.cli import app
from ovfdlr.cohort import MANIFEST_COLUMNS, validate_manifest
from ovfdlr.totalseg import (
    NUMBERINGS,
    TotalSegError,
    build_manifest,
    vertebra_label,
    vertebra_name,
    write_manifest,
)

runner = CliRunner()
BODY_LEVELS = ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]  # cranial to caudal
ALL_LEVELS = ["T11", *BODY_LEVELS]


@pytest.fixture(scope="module")
def ts(shared_data):
    folder = shared_data / "totalsegmentator"
    return {
        "ct": folder / "example_ct.nii.gz",
        "seg": folder / "example_ct_vertebrae.nii.gz",
        "body": folder / "example_ct_vertebrae_body.nii.gz",
        "bodies": folder / "example_ct_vertebral_bodies.nii.gz",
    }


@pytest.fixture(scope="module")
def structure_folder(ts, tmp_path_factory):
    """The multi-label map as TotalSegmentator's per-structure folder (binary files), with an
    empty file for T10 (absent) as TotalSegmentator writes it."""
    folder = tmp_path_factory.mktemp("structures")
    labels = sitk.ReadImage(str(ts["seg"]))
    array = sitk.GetArrayFromImage(labels)
    for level, value in [*((lv, vertebra_label(lv)) for lv in ALL_LEVELS), ("T10", 34)]:
        image = sitk.GetImageFromArray((array == value).astype(np.uint8))
        image.CopyInformation(labels)
        sitk.WriteImage(image, str(folder / f"vertebrae_{level}.nii.gz"))
    return folder


def read_array(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------
# numberings


def test_numberings_match_totalsegmentator_and_verse():
    assert vertebra_label("L1") == 31 and vertebra_label("L1", "v2") == 31
    assert vertebra_label("L1", "verse") == 20
    assert vertebra_label("S1") == 26 and vertebra_label("C1") == 50 and vertebra_label("T12") == 32
    assert vertebra_label("L5", "v1") == 18 and vertebra_label("C1", "v1") == 41
    assert vertebra_label("L1", "v1") == 22
    assert vertebra_label("C1", "verse") == 1 and vertebra_label("T1", "verse") == 8
    assert vertebra_label("T12", "verse") == 19 and vertebra_label("L6", "verse") == 25
    assert vertebra_label("sacrum", "verse") == 26
    # every name <-> number both ways, no number used twice
    for numbering, table in NUMBERINGS.items():
        assert len(set(table.values())) == len(table)
        for level, value in table.items():
            assert vertebra_name(value, numbering) == level
            assert vertebra_label(level, numbering) == value
    assert len(NUMBERINGS["v2"]) == 25 and len(NUMBERINGS["v1"]) == 24
    assert sorted(NUMBERINGS["v2"].values()) == list(range(26, 51))
    assert sorted(NUMBERINGS["v1"].values()) == list(range(18, 42))
    assert sorted(NUMBERINGS["verse"].values()) == list(range(1, 27))
    assert vertebra_name(20, "verse") == "L1" and vertebra_name(31) == "L1"


def test_names_are_case_insensitive_with_or_without_prefix():
    assert vertebra_label("vertebrae_L1") == vertebra_label("l1") == vertebra_label(" L1 ") == 31
    assert vertebra_label("VERTEBRAE_t12", "verse") == 19


@pytest.mark.parametrize(
    ("name", "numbering"), [("L7", "v2"), ("S1", "v1"), ("sacrum", "v2"), ("L6", "v2")]
)
def test_unknown_vertebra_names_the_name_and_numbering(name, numbering):
    with pytest.raises(TotalSegError, match=rf"'{name}'.*'{numbering}'") as info:
        vertebra_label(name, numbering)
    assert isinstance(info.value, ValueError)


def test_unknown_label_and_numbering():
    with pytest.raises(TotalSegError, match="label 25 is not a vertebra in numbering 'v2'"):
        vertebra_name(25, "v2")
    with pytest.raises(TotalSegError, match="unknown numbering 'v3'"):
        vertebra_label("L1", "v3")


# ---------------------------------------------------------------------------------------------
# body-only masks


def check_body_masks(frame, ts):
    expected = read_array(ts["bodies"])
    assert list(frame["level"]) == BODY_LEVELS
    assert frame["mask"].nunique() == 1  # one derived map per CT, referenced by every row
    written = read_array(frame["mask"].iloc[0])
    for row in frame.itertuples():
        assert row.mask_label == vertebra_label(row.level)
        mine = written == row.mask_label
        assert mine.any()
        assert np.array_equal(mine, expected == row.mask_label), row.level
    assert np.array_equal(written, expected)


def test_body_masks_equal_the_reference_and_the_sliver_is_reported(ts, tmp_path):
    frame = build_manifest(ts["ct"], ts["seg"], body=ts["body"], centre="A", mask_dir=tmp_path)
    check_body_masks(frame, ts)
    assert list(frame["case_id"]) == [f"example_ct_{lv}" for lv in BODY_LEVELS]
    assert set(frame["patient_id"]) == {"example_ct"} and set(frame["cohort"]) == {"train"}
    assert list(frame.columns[:9]) == list(MANIFEST_COLUMNS[:9])  # then the demographic ones
    sliver = [w for w in frame.attrs["warnings"] if w["level"] == "T11"]
    assert len(sliver) == 1 and sliver[0]["check"] == "no-body"
    assert "left out" in sliver[0]["message"] and "example_ct_T11" in sliver[0]["message"]
    assert "T11" not in set(frame["level"])


def test_per_structure_folder_gives_the_same_rows_and_masks(ts, structure_folder, tmp_path):
    folder = build_manifest(
        ts["ct"], structure_folder, body=ts["body"], centre="A", mask_dir=tmp_path / "a"
    )
    check_body_masks(folder, ts)
    multi = build_manifest(ts["ct"], ts["seg"], body=ts["body"], centre="A", mask_dir=tmp_path)
    columns = ["case_id", "patient_id", "mask_label", "label", "cohort", "centre", "level"]
    pd.testing.assert_frame_equal(folder[columns], multi[columns])
    assert folder.attrs["warnings"] == multi.attrs["warnings"]

    # without --body: one whole-vertebra map per CT, equal to TotalSegmentator's multi-label map
    whole = build_manifest(ts["ct"], structure_folder, centre="A", mask_dir=tmp_path / "b")
    assert list(whole["level"]) == ALL_LEVELS  # T10's file is empty: absent
    assert whole["mask"].nunique() == 1
    assert whole["mask"].iloc[0].endswith("example_ct_vertebrae.nii.gz")
    assert np.array_equal(read_array(whole["mask"].iloc[0]), read_array(ts["seg"]))
    plain = build_manifest(ts["ct"], ts["seg"], centre="A")
    assert list(plain["level"]) == ALL_LEVELS
    assert set(plain["mask"]) == {str(ts["seg"].resolve())}  # the map itself, nothing derived
    pd.testing.assert_frame_equal(whole[columns], plain[columns])


def test_levels_filter(ts, tmp_path):
    frame = build_manifest(
        ts["ct"],
        ts["seg"],
        body=ts["body"],
        levels="L2,l1,vertebrae_T12",
        centre="A",
        mask_dir=tmp_path,
    )
    assert list(frame["level"]) == ["T12", "L1", "L2"]  # cranial to caudal, whatever the order
    assert list(frame["mask_label"]) == [32, 31, 30]
    frame = build_manifest(ts["ct"], ts["seg"], levels=["L1", "T5"], centre="A")
    assert list(frame["level"]) == ["L1"]
    absent = [w for w in frame.attrs["warnings"] if w["check"] == "level-absent"]
    assert [w["level"] for w in absent] == ["T5"]


def test_roi_border_warning_and_drop_cut(ts, tmp_path):
    frame = build_manifest(ts["ct"], ts["seg"], body=ts["body"], centre="A", mask_dir=tmp_path)
    border = [w for w in frame.attrs["warnings"] if w["check"] == "roi-border"]
    assert [w["level"] for w in border] == ["T12"]  # T12 reaches the last slice
    assert "T12" in set(frame["level"])
    dropped = build_manifest(
        ts["ct"], ts["seg"], body=ts["body"], centre="A", mask_dir=tmp_path, drop_cut=True
    )
    assert list(dropped["level"]) == BODY_LEVELS[1:]
    cut = [w for w in dropped.attrs["warnings"] if w["check"] == "roi-border"]
    assert len(cut) == 1 and "left out" in cut[0]["message"]


# ---------------------------------------------------------------------------------------------
# the label CSV


def test_labels_joined_from_a_csv(ts, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "image,level,patient_id,label,cohort,centre,age\n"
        "example_ct.nii.gz,L1,P7,2,internal,B,71\n"
        "example_ct.nii.gz,vertebrae_L2,P7,0,internal,B,71\n"
        "example_ct.nii.gz,T11,P7,1,internal,B,71\n"  # the sliver: ignored with a warning
    )
    frame = build_manifest(
        ts["ct"], ts["seg"], body=ts["body"], labels_csv=csv, mask_dir=tmp_path / "m"
    )
    by_level = frame.set_index("level")
    assert by_level.loc["L1", "label"] == "2" and by_level.loc["L2", "label"] == "0"
    assert by_level.loc["L3", "label"] == ""  # no row: to predict
    assert set(frame["patient_id"]) == {"P7"}  # the CT's patient for rows without a CSV row
    assert set(frame["cohort"]) == {"internal"} and set(frame["centre"]) == {"B"}
    assert by_level.loc["L1", "age"] == "71" and by_level.loc["L3", "age"] == ""
    ignored = [w for w in frame.attrs["warnings"] if w["check"] == "label-row-ignored"]
    assert len(ignored) == 1 and "row 4" in ignored[0]["message"]

    # keyed by another column holding the CT's stem
    other = tmp_path / "study.csv"
    other.write_text("study_id,level,label\nexample_ct,S1,1\n")
    frame = build_manifest(
        ts["ct"], ts["seg"], labels_csv=other, key="study_id", centre="A", levels="S1,L5"
    )
    assert dict(zip(frame["level"], frame["label"], strict=True)) == {"L5": "", "S1": "1"}


def test_labels_are_checked_against_the_scheme(ts, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("image,level,label\nexample_ct.nii.gz,L1,3\n")
    with pytest.raises(TotalSegError, match=r"labels.csv: row 2 \(image 'example_ct.nii.gz'"):
        build_manifest(ts["ct"], ts["seg"], labels_csv=csv, centre="A")
    frame = build_manifest(ts["ct"], ts["seg"], labels_csv=csv, centre="A", labels="genant")
    assert frame.set_index("level").loc["L1", "label"] == "3"


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the file and the key, nothing written


def shifted(ts, tmp_path):
    image = sitk.ReadImage(str(ts["seg"]))
    image.SetOrigin(tuple(np.add(image.GetOrigin(), (6.0, 0.0, 0.0))))
    path = tmp_path / "inputs" / "shifted.nii.gz"
    path.parent.mkdir(exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def empty_map(ts, tmp_path):
    image = sitk.ReadImage(str(ts["seg"]))
    array = sitk.GetArrayFromImage(image)
    array[:] = 0
    array[5:9, 5:9, 5:9] = 5  # an organ, not a vertebra
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    path = tmp_path / "inputs" / "empty.nii.gz"
    path.parent.mkdir(exist_ok=True)
    sitk.WriteImage(out, str(path))
    return path


def label_csv(tmp_path, text):
    path = tmp_path / "inputs" / "labels.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("empty", r"empty.nii.gz: no vertebra of numbering 'v2' .*example_ct.nii.gz"),
        ("levels", r"--levels: unknown vertebra 'L7' in numbering 'v2'"),
        ("grid", r"shifted.nii.gz: not on the grid of the CT .*example_ct.nii.gz: origin differs"),
        ("body-grid", r"shifted.nii.gz: not on the grid of the CT"),
        ("row", r"labels.csv: row 3 \(image 'example_ct.nii.gz', level T5\): matches no vertebra"),
        ("key", r"labels.csv: row 2 \(image 'other.nii.gz', level L1\): matches no CT"),
        ("level", r"labels.csv: row 2 .*unknown vertebra 'Q1' in numbering 'v2'"),
        ("duplicate", r"labels.csv: row 3 .*duplicates row 2"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(ts, tmp_path, case, pattern):
    options = {"body": ts["body"], "centre": "A"}
    seg = ts["seg"]
    if case == "empty":
        seg = empty_map(ts, tmp_path)
    elif case == "levels":
        options["levels"] = "L1,L7"
    elif case == "grid":
        seg = shifted(ts, tmp_path)
    elif case == "body-grid":
        options["body"] = shifted(ts, tmp_path)
    else:
        options["labels_csv"] = label_csv(
            tmp_path,
            {
                "row": "image,level,label\nexample_ct.nii.gz,L1,0\nexample_ct.nii.gz,T5,1\n",
                "key": "image,level,label\nother.nii.gz,L1,0\n",
                "level": "image,level,label\nexample_ct.nii.gz,Q1,0\n",
                "duplicate": "image,level\nexample_ct.nii.gz,L1\nexample_ct.nii.gz,vertebrae_l1\n",
            }[case],
        )
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.csv").write_text("old\n")
    before = listing(out)
    with pytest.raises(TotalSegError, match=pattern) as info:
        write_manifest(ts["ct"], seg, out / "manifest.csv", **options)
    assert "\n" not in str(info.value)
    assert listing(out) == before  # no mask folder, no warnings file, no temporary folder
    assert (out / "manifest.csv").read_text(encoding="utf-8") == "old\n"


def test_missing_centre_and_missing_per_ct_output(ts, tmp_path):
    with pytest.raises(TotalSegError, match="no centre for example_ct_T11: give --centre"):
        build_manifest(ts["ct"], ts["seg"])
    cts = tmp_path / "cts"
    cts.mkdir()
    shutil.copy(ts["ct"], cts / "a.nii.gz")
    (tmp_path / "segs").mkdir()
    with pytest.raises(TotalSegError, match=r"segs: no --seg output for the CT a.nii.gz"):
        build_manifest(cts, tmp_path / "segs", centre="A")


# ---------------------------------------------------------------------------------------------
# writing, several CTs, the CLI, validation


def test_write_manifest_is_valid_and_relative(ts, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "image,level,label,patient_id\n"
        + "".join(f"example_ct.nii.gz,{lv},{i % 3},P1\n" for i, lv in enumerate(BODY_LEVELS))
    )
    out = tmp_path / "run" / "manifest.csv"
    frame = write_manifest(ts["ct"], ts["seg"], out, body=ts["body"], labels_csv=csv, centre="A")
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(written["case_id"]) == list(frame["case_id"])
    assert set(written["mask"]) == {"manifest_masks/example_ct_vertebral_bodies.nii.gz"}
    assert np.array_equal(read_array(out.parent / written["mask"][0]), read_array(ts["bodies"]))
    assert listing(out.parent) == [
        "manifest.csv",
        "manifest_masks",
        "manifest_masks/example_ct_vertebral_bodies.nii.gz",
        "manifest_warnings.csv",
    ]
    recorded = pd.read_csv(out.parent / "manifest_warnings.csv")
    assert set(recorded["check"]) == {"no-body", "roi-border"}
    assert list(recorded.loc[recorded["check"] == "no-body", "level"]) == ["T11"]
    report = validate_manifest(out)
    assert report.ok, [str(p) for p in report.errors]
    assert [p.case_id for p in report.warnings] == ["example_ct_T12"]  # the roi-border one
    assert len(report.cohort) == 7 and report.cohort["label"].notna().all()


def test_a_folder_of_cts(ts, structure_folder, tmp_path):
    cts, segs, bodies = tmp_path / "cts", tmp_path / "segs", tmp_path / "bodies"
    for folder in (cts, segs, bodies):
        folder.mkdir()
    for stem in ("a", "b"):
        shutil.copy(ts["ct"], cts / f"{stem}.nii.gz")
        shutil.copy(ts["body"], bodies / f"{stem}.nii.gz")
    # patient b's CT differs from a's by one corner voxel: the same scan under two patient ids
    # would be refused (same-image-two-patients)
    other = sitk.ReadImage(str(ts["ct"]))
    other[0, 0, 0] = other[0, 0, 0] + 1
    sitk.WriteImage(other, str(cts / "b.nii.gz"))
    shutil.copy(ts["seg"], segs / "a.nii.gz")  # multi-label
    shutil.copytree(structure_folder, segs / "b")  # per-structure
    out = tmp_path / "out" / "cohort.csv"
    frame = write_manifest(cts, segs, out, body=bodies, centre="A")
    assert list(frame["case_id"]) == [f"{s}_{lv}" for s in "ab" for lv in BODY_LEVELS]
    assert sorted(set(frame["mask"])) == [
        "cohort_masks/a_vertebral_bodies.nii.gz",
        "cohort_masks/b_vertebral_bodies.nii.gz",
    ]
    for mask in set(frame["mask"]):
        assert np.array_equal(read_array(out.parent / mask), read_array(ts["bodies"]))
    assert set(frame["patient_id"]) == {"a", "b"}
    assert validate_manifest(out).ok


def test_cli_end_to_end(ts, tmp_path):
    out = tmp_path / "m" / "manifest.csv"
    args = ["manifest", "totalseg", str(ts["ct"]), "--seg", str(ts["seg"])]
    result = runner.invoke(
        app, [*args, "--body", str(ts["body"]), "--centre", "A", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 7 vertebra row(s)" in result.output
    assert "example_ct_T11" in result.output and "[no-body]" in result.output
    assert "[roi-border]" in result.output
    table = pd.read_csv(out)
    assert list(table["level"]) == BODY_LEVELS and set(table["centre"]) == {"A"}

    result = runner.invoke(
        app, [*args, "--levels", "L9", "--numbering", "verse", "--out", str(tmp_path / "x.csv")]
    )
    assert result.exit_code == 1
    assert "unknown vertebra 'L9' in numbering 'verse'" in result.output
    assert not (tmp_path / "x.csv").exists()

    result = runner.invoke(
        app,
        [
            *args,
            "--levels",
            "L1",
            "--drop-cut",
            "--numbering",
            "v1",
            "--centre",
            "A",
            "--out",
            str(tmp_path / "y.csv"),
        ],
    )  # the v2 map read as v1: labels 26-33 are T9-T2 there, and L1 (22) is absent
    assert result.exit_code == 1 and "no vertebra left to write" in result.output


def test_an_unreadable_label_csv_is_a_one_line_error(ts, tmp_path):
    """A label table that is not a CSV (here: not the gzip file its suffix promises) is refused
    naming the file, as a manifest would be, not with the reader's traceback."""
    from ovfdlr.cohort import ManifestError, read_table

    bad = tmp_path / "labels.csv.gz"
    bad.write_text("case,level\n")
    with pytest.raises(TotalSegError, match=r"labels\.csv\.gz: not a readable CSV"):
        build_manifest(ts["ct"], ts["seg"], labels_csv=bad, centre="A", mask_dir=tmp_path)
    with pytest.raises(ManifestError, match="not a readable CSV"):
        read_table(bad)
