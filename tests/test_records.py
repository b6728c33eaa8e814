"""The records of a run folder (run.json, arm.json, bundle.json) and where everything lies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovfdlr import records
from ovfdlr.labels import astlof, genant
from ovfdlr.layout import RunLayout
from ovfdlr.records import (
    VERSION,
    ArmRecord,
    AucEntry,
    BundleRecord,
    DeepNetwork,
    DeepSet,
    FeatureSets,
    ManifestRef,
    MorphometrySet,
    RadiomicsSet,
    RecordError,
    RunArm,
    RunRecord,
    StageEntry,
    TrainingSummary,
)


def run_record() -> RunRecord:
    return RunRecord(
        ovfdlr="0.1.0",
        created="2025-01-31T10:20:30+00:00",
        name="small",
        seed=3,
        config_sha256="ab" * 32,
        versions={"python": "3.12.0", "numpy": "2.0.0"},
        manifest=ManifestRef(path="/data/manifest.csv", sha256="cd" * 32, cases=60),
        data_sha256="ef" * 32,
        stages=[StageEntry(name="cohort", seconds=0.5, status="computed")],
        arms={
            "radiomics": RunArm(folder="arms/radiomics", feature_sets=["radiomics"], chosen="lr"),
            "deep": RunArm(
                folder="arms/deep",
                feature_sets=["radiomics", "deep-deep"],
                deep=DeepNetwork(weights="random:0", label="random", pretrained=False),
                chosen="rf",
            ),
        },
        comparisons=[["radiomics", "deep"]],
        training_cohort="train",
        warnings=["1 case failed"],
        failed_cases=1,
    )


def arm_record(labels=None) -> ArmRecord:
    labels = labels or genant()
    return ArmRecord(
        arm="deep",
        ovfdlr="0.1.0",
        settings={"training": "train", "folds": 3, "classifiers": ["lr", "rf"]},
        labels=labels.to_dict(),
        chosen="lr",
        chosen_on="cv",
        chosen_score=0.81,
        best_params={"lr": "{'C': 1.0}"},
        n_input_features=120,
        selected_features=["a", "b"],
        cohorts={"train": 40, "internal": 20},
        macro_auc={
            "train (out-of-fold)": AucEntry(auc=0.8, lower=0.7, upper=0.9),
            "internal": AucEntry(auc=0.75, lower=0.6, upper=0.88),
        },
        youden_thresholds={"0": 0.4, "1": 0.3, "2": 0.35, "3": 0.2},
        timings_s={"train": 1.5},
        warnings=[],
    )


def bundle_record() -> BundleRecord:
    return BundleRecord(
        arm="deep",
        ovfdlr="0.1.0",
        labels=astlof().to_dict(),
        classes=[0, 1, 2],
        class_names={"0": "conservative care", "1": "either", "2": "surgery"},
        classifier="lr",
        selected_features=["a"],
        input_columns=["a", "b"],
        feature_sets=FeatureSets(
            radiomics=RadiomicsSet(params="radiomics.yaml"),
            morphometry=MorphometrySet(settings={"slab_mm": 3.0, "ratios": [1.0, 0.95, 1.0]}),
            deep=DeepSet(
                weights="random:0",
                weights_label="random",
                pretrained=False,
                input={"plane": "sagittal", "margin": 0.2},
                batch_size=16,
                weights_sha256="01" * 32,
                pca="pca.npz",
            ),
        ),
        youden_thresholds={"0": 0.4},
        training=TrainingSummary(cohort="train", cases=40, macro_auc={}),
        seed=0,
        files={"model.skops": "aa" * 32},
        checksum="bb" * 32,
    )


KINDS = {
    "run": (run_record, records.read_run, records.write_run),
    "arm": (arm_record, records.read_arm, records.write_arm),
    "bundle": (bundle_record, records.read_bundle, records.write_bundle),
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_record_round_trips(kind, tmp_path):
    make, read, write = KINDS[kind]
    record = make()
    path = write(tmp_path / f"{kind}.json", record)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == VERSION
    assert read(path) == record
    # what the file holds is plain JSON that reads back to the same record
    assert records.to_data(read(path)) == data


def test_labels_of_arm_and_bundle_records():
    assert arm_record().label_scheme == genant()
    assert bundle_record().label_scheme == astlof()


def test_a_bundle_leaves_unused_feature_set_parts_out(tmp_path):
    record = bundle_record()
    record.feature_sets.radiomics = None
    data = json.loads(
        records.write_bundle(tmp_path / "bundle.json", record).read_text(encoding="utf-8")
    )
    assert set(data["feature_sets"]) == {"morphometry", "deep"}
    assert "finetuned" not in data["feature_sets"]["deep"]
    assert data["format"] == "ovfdlr-bundle" and data["format_version"] == VERSION
    assert records.read_bundle(tmp_path / "bundle.json").feature_sets.names() == [
        "morphometry",
        "deep",
    ]


# ---------------------------------------------------------------------------------------------
# files written before records had a version


def unversioned(record) -> dict:
    data = records.to_data(record)
    del data["version"]
    return data


def test_an_unversioned_run_json_is_version_1_and_read(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(unversioned(run_record())))
    assert records.read_run(path) == run_record()


def test_an_unversioned_arm_json_is_migrated(tmp_path):
    data = unversioned(arm_record(astlof()))
    del data["labels"]  # written before label schemes
    data["macro_auc"] = {  # the training cohort's views under the old names
        "train": {"auc": 0.99, "lower": 0.98, "upper": 1.0},
        "train (cv)": {"auc": 0.8, "lower": 0.7, "upper": 0.9},
        "internal": {"auc": 0.75, "lower": 0.6, "upper": 0.88},
    }
    path = tmp_path / "arm.json"
    path.write_text(json.dumps(data))
    record = records.read_arm(path)
    assert record.version == VERSION
    assert record.labels == astlof().to_dict() and record.label_scheme == astlof()
    assert list(record.macro_auc) == ["train (apparent)", "train (out-of-fold)", "internal"]
    assert record.macro_auc["train (out-of-fold)"].auc == 0.8


def test_an_unversioned_bundle_json_is_migrated(tmp_path):
    data = unversioned(bundle_record())
    del data["labels"]
    data["format_version"] = 1  # how bundles were marked before records had a version
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(data))
    record = records.read_bundle(path)
    assert record.version == VERSION and record.format_version == VERSION
    assert record.label_scheme == astlof()
    data["format_version"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="bundle format 7 is not one this ovfdlr reads"):
        records.read_bundle(path)


@pytest.mark.parametrize("kind", KINDS)
def test_a_newer_version_is_refused_naming_file_and_versions(kind, tmp_path):
    make, read, _ = KINDS[kind]
    data = records.to_data(make()) | {"version": VERSION + 1}
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError) as caught:
        read(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"schema version {VERSION + 1}" in message
    assert f"this ovfdlr reads version {VERSION}" in message


def test_a_missing_required_key_is_named(tmp_path):
    data = records.to_data(run_record())
    del data["arms"]
    del data["manifest"]["sha256"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"run\.json: .*missing key 'manifest\.sha256'") as caught:
        records.read_run(path)
    assert "missing key 'arms'" in str(caught.value)


def test_wrong_types_unknown_keys_and_broken_json_are_named(tmp_path):
    path = tmp_path / "arm.json"
    data = records.to_data(arm_record()) | {"chosen_scor": 1.0, "n_input_features": "many"}
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError) as caught:
        records.read_arm(path)
    assert "unknown key 'chosen_scor'" in str(caught.value)
    assert "n_input_features: " in str(caught.value)
    path.write_text("{")
    with pytest.raises(RecordError, match=r"arm\.json: not valid JSON"):
        records.read_arm(path)
    with pytest.raises(RecordError, match="not found"):
        records.read_arm(tmp_path / "nowhere.json")


# ---------------------------------------------------------------------------------------------
# the layout


def test_the_run_layout_names_every_path_once(tmp_path):
    layout = RunLayout(tmp_path)
    assert layout.run_json == tmp_path / "run.json"
    assert layout.keys_file == tmp_path / ".stage-keys.json"
    assert layout.deep_table("a") == tmp_path / "features" / "deep-a.parquet"
    assert layout.deep_label("a") == tmp_path / "features" / "deep-a.json"
    assert layout.pca("a") == tmp_path / "features" / "pca-a.npz"
    assert layout.finetuned("a") == tmp_path / "features" / "finetuned-a.safetensors"
    assert layout.table("comparison") == layout.comparison == tmp_path / "tables/comparison.csv"
    arm = layout.arm("a")
    assert arm.folder == tmp_path / "arms" / "a"
    assert layout.relative(arm.folder) == layout.arm_folder("a") == "arms/a"
    assert arm.model("lr") == tmp_path / "arms/a/models/lr.skops"
    assert arm.table("performance") == tmp_path / "arms/a/tables/performance.csv"
    bundle = layout.bundle("a")
    assert bundle.bundle_json == tmp_path / "bundles/a/bundle.json"
    assert bundle.background == Path(tmp_path / "bundles/a/background.parquet")
    assert layout.arm("a", "elsewhere/a").folder == tmp_path / "elsewhere" / "a"
