"""The training envelope and the out-of-domain check of predictions, on small tables; output
names and files of ``ovfdlr predict``. (Bundles of a real run: tests/test_experiment.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ovfdlr.bundle import BundleInputs, training_envelope
from ovfdlr.envelope import (
    ACQUISITION,
    build_envelope,
    check_case,
    dicom_slice_thickness,
    domain_table,
    far_limits,
    hu_markers,
    measure_acquisition,
)
from ovfdlr.predict import output_paths, write_predictions
from ovfdlr.records import TrainingEnvelope

from .conftest import write_volume


def acquisition_rows(n: int, seed: int = 0, slice_mm: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "spacing_inplane_mm": rng.uniform(0.67, 0.73, n),
            "spacing_slice_mm": np.full(n, slice_mm),
            "slice_thickness_mm": np.full(n, np.nan),
            "air_hu": np.full(n, np.nan),
            "fat_hu": rng.normal(-95, 4, n),
            "roi_volume_ml": rng.uniform(15, 35, n),
        },
        index=[f"case{i}" for i in range(n)],
    )


def feature_rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "original_firstorder_Mean": rng.normal(150, 30, n),
            "morph_wedge_ratio": rng.normal(1, 0.1, n),
        },
        index=[f"case{i}" for i in range(n)],
    )


def quantity(envelope: TrainingEnvelope, name: str):
    return next(q for q in envelope.quantities if q.name == name)


def test_the_envelope_holds_the_training_rows_only():
    features = feature_rows(40)
    acquisition = acquisition_rows(40)
    # the last ten rows are another cohort with thicker slices and extreme values
    features.iloc[30:, 0] = 5000.0
    acquisition.iloc[30:, acquisition.columns.get_loc("spacing_slice_mm")] = 3.0
    training = features.index[:30]
    inputs = BundleInputs(
        arm=SimpleNamespace(selected_features=["original_firstorder_Mean", "not_a_column"]),
        model_file=Path("unused.skops"),
        features=features,
        training=training,
        training_cohort="train",
        seed=0,
        acquisition=acquisition,
    )
    envelope = training_envelope(inputs)
    assert envelope.rows == 30
    mean = quantity(envelope, "original_firstorder_Mean")
    assert mean.kind == "feature" and mean.n == 30
    assert mean.max == pytest.approx(features.loc[training, "original_firstorder_Mean"].max())
    assert mean.max < 1000  # the other cohort's 5000 is not in it
    assert mean.q1 == pytest.approx(features.loc[training].iloc[:, 0].quantile(0.25))
    # only the selected features, every acquisition quantity
    assert {q.name for q in envelope.quantities if q.kind == "feature"} == {mean.name}
    assert [q.name for q in envelope.quantities if q.kind == "acquisition"] == list(ACQUISITION)
    assert quantity(envelope, "spacing_slice_mm").max == 1.0
    assert quantity(envelope, "air_hu").n == 0  # not measurable in these crops: not checked
    # aggregates only: no case identifier
    text = envelope.model_dump_json()
    assert not any(case in text for case in features.index)


def test_far_limits_follow_the_rule():
    # a feature: two inter-quartile ranges beyond the range
    assert far_limits("f", "feature", 0.0, 1.0, 3.0, 10.0) == (-4.0, 14.0)
    # a feature whose IQR is 0: its range
    assert far_limits("f", "feature", 0.0, 1.0, 1.0, 4.0) == (-4.0, 8.0)
    # spacing: at least a factor 1.5
    low, high = far_limits("spacing_slice_mm", "acquisition", 1.0, 1.0, 1.0, 1.0)
    assert low == pytest.approx(1 / 1.5) and high == pytest.approx(1.5)
    # fat: at least 30 HU
    assert far_limits("fat_hu", "acquisition", -100.0, -98.0, -94.0, -90.0) == (-130.0, -60.0)


def test_a_case_inside_is_not_flagged_and_one_outside_is():
    envelope = build_envelope(acquisition_rows(60), feature_rows(60))
    inside = {**acquisition_rows(1, seed=9).iloc[0].to_dict(), **feature_rows(1, 9).iloc[0]}
    inside["original_firstorder_Mean"] = 150.0
    inside["morph_wedge_ratio"] = 1.0
    inside["spacing_inplane_mm"] = 0.7
    inside["fat_hu"] = -95.0
    inside["roi_volume_ml"] = 25.0
    assert check_case(envelope, inside) == []

    # just outside the range, but by less than the margin: reported, not far
    wedge = quantity(envelope, "morph_wedge_ratio")
    near = {**inside, "morph_wedge_ratio": wedge.max + 0.01}
    (deviation,) = check_case(envelope, near)
    assert deviation.quantity == "morph_wedge_ratio" and not deviation.far
    assert deviation.min == wedge.min and deviation.max == wedge.max

    # 3-mm voxels, an air marker the training never had, a feature far beyond its range
    far = {**inside, "spacing_inplane_mm": 3.0, "spacing_slice_mm": 3.0, "air_hu": -990.0}
    far["original_firstorder_Mean"] = 2000.0
    found = {d.quantity: d for d in check_case(envelope, far)}
    assert set(found) == {"spacing_inplane_mm", "spacing_slice_mm", "original_firstorder_Mean"}
    assert all(d.far for d in found.values())
    assert "3 mm (training 1 to 1 mm; far outside)" in found["spacing_slice_mm"].text()

    # a missing value is not checked
    assert check_case(envelope, {**inside, "fat_hu": math.nan}) == []

    features = pd.DataFrame([inside, near, far], index=["in", "near", "far"])[
        ["original_firstorder_Mean", "morph_wedge_ratio"]
    ]
    acquisition = pd.DataFrame([inside, near, far], index=["in", "near", "far"])[list(ACQUISITION)]
    table = domain_table(envelope, features, acquisition)
    assert table["out_of_domain"].tolist() == [False, False, True]
    assert [len(x) for x in table["outside_envelope"]] == [0, 1, 3]
    # without the acquisition quantities, the features alone are checked
    assert domain_table(envelope, features)["out_of_domain"].tolist() == [False, False, True]
    # a bundle without an envelope: not checked
    assert domain_table(None, features)["out_of_domain"].isna().all()


def test_hu_markers_measure_air_outside_the_body_and_fat(tmp_path):
    rng = np.random.default_rng(0)
    volume = np.full((20, 60, 60), -1000.0) + rng.normal(0, 5, (20, 60, 60))
    volume[:, 10:50, 10:50] = 40.0  # the body
    volume[:, 12:20, 12:48] = -100.0  # subcutaneous fat
    volume[:, 25:40, 20:40] = -850.0  # a lung, enclosed in every slice
    volume[:, :, :2] = -3024.0  # padding outside the reconstruction circle
    markers = hu_markers(volume.astype(np.int16))
    assert markers["air_hu"] == pytest.approx(-1000, abs=3)
    assert markers["fat_hu"] == -100.0
    # a crop with no air around the body: not measurable
    assert math.isnan(hu_markers(volume[:, 10:50, 10:50].astype(np.int16))["air_hu"])

    mask = np.zeros(volume.shape, np.uint8)
    mask[5:15, 25:35, 25:35] = 3
    image = write_volume(tmp_path / "ct.nii.gz", volume.astype(np.int16), spacing=(0.8, 0.8, 2.5))
    labels = write_volume(tmp_path / "mask.nii.gz", mask, spacing=(0.8, 0.8, 2.5))
    measured = measure_acquisition(image, labels, 3)
    assert measured["spacing_inplane_mm"] == pytest.approx(0.8)
    assert measured["spacing_slice_mm"] == pytest.approx(2.5)
    assert measured["roi_volume_ml"] == pytest.approx(1000 * 0.8 * 0.8 * 2.5 / 1000)
    assert math.isnan(measured["slice_thickness_mm"])  # not recorded in NIfTI


def test_slice_thickness_is_read_from_dicom(shared_data):
    folder = shared_data / "totalsegmentator" / "example_ct_dicom"
    assert dicom_slice_thickness(folder) == 3.0  # 2-mm slice spacing, 3-mm slices
    assert math.isnan(dicom_slice_thickness(shared_data / "totalsegmentator" / "example_ct.nii.gz"))


def test_out_names_are_kept():
    assert output_paths(Path("out/pred.L1.whole")) == (
        Path("out/pred.L1.whole.json"),
        Path("out/pred.L1.whole.csv"),
    )
    assert output_paths("pred.json") == (Path("pred.json"), Path("pred.csv"))
    assert output_paths("pred.CSV") == (Path("pred.json"), Path("pred.csv"))
    assert output_paths("scores") == (Path("scores.json"), Path("scores.csv"))


def test_written_predictions_carry_every_field(tmp_path):
    outside = [
        {
            "quantity": "spacing_slice_mm",
            "kind": "acquisition",
            "unit": "mm",
            "value": 3.0,
            "training_min": 1.0,
            "training_max": 1.0,
            "far_below": 0.667,
            "far_above": 1.5,
            "far": True,
        }
    ]
    table = pd.DataFrame(
        {
            "predicted_class": [np.int64(0)],
            "predicted_name": ["conservative"],
            "p0": [0.7],
            "p1": [0.2],
            "p2": [0.1],
            "probabilities": [
                [
                    {"class": 0, "name": "conservative", "p": 0.7},
                    {"class": 1, "name": "either", "p": 0.2},
                    {"class": 2, "name": "surgery", "p": 0.1},
                ]
            ],
            "out_of_domain": pd.array([True], dtype="boolean"),
            "outside_envelope": [outside],
            "contributions": [[{"feature": "f", "value": 1.0, "shap": 0.25}]],
            "explained_output": ["probability"],
            "weights": ["random:0"],
            "weights_state": ["untrained"],
        },
        index=pd.Index(["ct.nii.gz:L1"], name="case_id"),
    )
    written = write_predictions(table, tmp_path / "pred.L1.whole")
    assert [p.name for p in written] == ["pred.L1.whole.json", "pred.L1.whole.csv"]
    (record,) = json.loads(written[0].read_text(encoding="utf-8"))
    assert record["case_id"] == "ct.nii.gz:L1"
    assert record["predicted_class"] == 0 and record["out_of_domain"] is True
    assert record["outside_envelope"][0]["far"] is True
    assert record["weights_state"] == "untrained"
    row = pd.read_csv(written[1]).iloc[0]
    assert row["probabilities"] == "0 conservative=0.700000; 1 either=0.200000; 2 surgery=0.100000"
    assert row["outside_envelope"] == "spacing_slice_mm = 3 mm (training 1 to 1 mm; far outside)"
    assert row["contributions"] == "f=+0.2500"
    assert bool(row["out_of_domain"]) is True


def test_acquisition_of_a_folder_of_two_series_is_the_chosen_series(tmp_path):
    """The manifest's series_uid chooses the series the acquisition record measures (a folder
    of two series is otherwise refused, as every read refuses it)."""
    import SimpleITK as sitk

    from ovfdlr.envelope import AcquisitionStage
    from ovfdlr.extraction import CaseTask

    from .dicom_fixtures import ct_phantom, write_ct_series

    folder = tmp_path / "series"
    write_ct_series(folder / "a", ct_phantom(), spacing=(0.8, 0.8, 2.0), series_uid="1.2.826.0.9.1")
    write_ct_series(folder / "b", ct_phantom(), spacing=(0.5, 0.5, 1.0), series_uid="1.2.826.0.9.2")
    for sub in ("a", "b"):
        for path in (folder / sub).iterdir():
            path.rename(folder / f"{sub}-{path.name}")
        (folder / sub).rmdir()
    labels = np.zeros((12, 16, 16), np.uint8)
    labels[3:9, 5:11, 5:11] = 1
    mask = sitk.GetImageFromArray(labels)
    mask.SetSpacing((0.5, 0.5, 1.0))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    base = {"case_id": "c", "image": str(folder), "mask": str(tmp_path / "mask.nii.gz")}
    values = AcquisitionStage()(CaseTask(**base, series_uid="1.2.826.0.9.2"))["features"]
    assert values["spacing_inplane_mm"] == pytest.approx(0.5)
    assert values["spacing_slice_mm"] == pytest.approx(1.0)
    assert values["slice_thickness_mm"] == pytest.approx(1.0)
    with pytest.raises(Exception, match="dicom-several-series"):
        AcquisitionStage()(CaseTask(**base, series_uid=None))
