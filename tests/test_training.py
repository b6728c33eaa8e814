"""Training an arm: grouped CV, no leakage, determinism, SHAP, the train and compare commands."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ovfdlr.classifiers import CLASSIFIERS, make_classifier
from ovfdlr.cli import app
from ovfdlr.evaluation import BOOTSTRAP_TEST, MACRO_TEST, PER_CLASS_TEST, evaluate
from ovfdlr.explain import explain
from ovfdlr.modelio import ModelFileError, load_model
from ovfdlr.training import (
    TrainingError,
    TrainSettings,
    fit_arm,
    patient_folds,
    predict_proba,
    predictions,
)

from .conftest import simulated_features

runner = CliRunner()


QUICK = TrainSettings(classifiers=("lr", "rf", "knn"), quick=True, folds=3, jobs=1)


@pytest.fixture(scope="module")
def data():
    return simulated_features()


@pytest.fixture(scope="module")
def fitted(data):
    features, cohort = data
    return fit_arm(features, cohort, "demo", QUICK, progress=False)


def test_patients_never_straddle_folds(data):
    _, cohort = data
    train = cohort[cohort["cohort"] == "train"]
    groups = train["patient_id"].to_numpy()
    y = train["label"].astype(int).to_numpy()
    folds = patient_folds(y, groups, 5, seed=0)
    seen = set()
    for train_idx, test_idx in folds:
        assert set(groups[train_idx]).isdisjoint(groups[test_idx])
        seen |= set(test_idx)
    assert seen == set(range(len(y)))


def test_fit_records_and_choice(fitted, data):
    _, cohort = data
    assert fitted.chosen in ("lr", "rf", "knn")
    assert 0.5 < fitted.chosen_score <= 1
    assert "original_firstorder_F0" in fitted.selected
    assert set(fitted.cv_results["classifier"]) == {"lr", "rf", "knn"}
    assert fitted.cv_results["fold"].nunique() == 3
    oof = fitted.oof[fitted.oof["classifier"] == fitted.chosen]
    train_ids = cohort.index[cohort["cohort"] == "train"]
    assert set(oof.index) == set(train_ids)
    np.testing.assert_allclose(oof[["p0", "p1", "p2"]].sum(axis=1), 1.0)


def test_no_row_outside_training_reaches_a_fit(data, fitted):
    """Changing any value of a non-training row leaves selection, scaler and models unchanged."""
    features, cohort = data
    changed = features.copy()
    outside = cohort.index[cohort["cohort"] != "train"]
    changed.loc[outside] = np.random.default_rng(5).normal(40, 9, size=(len(outside), 40))
    other = cohort.copy()
    other.loc[outside, "label"] = (other.loc[outside, "label"] + 1) % 3
    again = fit_arm(changed, other, "demo", QUICK, progress=False)
    first_scale, second_scale = (f.selection.named_steps["scale"] for f in (fitted, again))
    np.testing.assert_array_equal(first_scale.mean_, second_scale.mean_)
    np.testing.assert_array_equal(first_scale.scale_, second_scale.scale_)
    np.testing.assert_array_equal(
        fitted.selection.named_steps["lasso"].coef_, again.selection.named_steps["lasso"].coef_
    )
    assert fitted.selected == again.selected
    train_rows = features.loc[cohort.index[cohort["cohort"] == "train"]]
    for key in fitted.models:
        np.testing.assert_array_equal(
            predict_proba(fitted.models[key], train_rows),
            predict_proba(again.models[key], train_rows),
        )
    pd.testing.assert_frame_equal(fitted.cv_results, again.cv_results)


def test_choice_on_internal_never_looks_at_external(data):
    features, cohort = data
    settings = TrainSettings(classifiers=("lr", "knn"), quick=True, folds=3, select_on="internal")
    first = fit_arm(features, cohort, "demo", settings, progress=False)
    scrambled = cohort.copy()
    external = scrambled.index[scrambled["cohort"] == "external"]
    scrambled.loc[external, "label"] = (scrambled.loc[external, "label"] + 1) % 3
    second = fit_arm(features, scrambled, "demo", settings, progress=False)
    assert first.chosen == second.chosen and first.chosen_score == second.chosen_score


def test_evaluation_tables_and_missing_class(fitted, data):
    features, cohort = data
    preds = predictions(fitted, features, cohort)
    # an external cohort without class 1 cannot give a class-1 AUC or a macro AUC: it says so,
    # keeps its accuracy and the other classes' AUCs, and does not crash
    keep = ~((preds["cohort"] == "external") & (preds["label"] == 1))
    evaluation = evaluate(preds[keep], fitted.chosen)
    external = evaluation.performance[evaluation.performance["cohort"] == "external"]
    assert (external["note"] == "AUC n/a: no case in class 1").all()
    assert external["macro_auc"].isna().all() and external["accuracy"].between(0, 1).all()
    per_class = evaluation.per_class[evaluation.per_class["cohort"] == "external"]
    assert per_class.loc[per_class["class"] != 1, "auc"].between(0, 1).all()
    internal = evaluation.performance[evaluation.performance["cohort"] == "internal"]
    assert (internal["macro_auc"].between(0, 1)).all() and (internal["note"] == "").all()
    assert {"argmax", "youden"} <= set(evaluation.metrics["decision"])
    assert set(evaluation.thresholds) == {0, 1, 2}


@pytest.mark.parametrize("key", CLASSIFIERS)
def test_shap_additivity_for_every_model_type(key):
    from sklearn.pipeline import Pipeline

    from ovfdlr.selection import selection_pipeline

    features, cohort = simulated_features(150, 12, 3)
    y = cohort["label"].astype(int).to_numpy()
    selection = selection_pipeline(lasso_Cs=4, cv=3).fit(features, y)
    Z = selection.transform(features)
    model = Pipeline([("selection", selection), ("classifier", make_classifier(key).fit(Z, y))])
    result = explain(model, features.iloc[:100], features.iloc[100:110], kernel_samples=200)
    assert result.values.shape == (10, Z.shape[1], 3)
    assert result.additivity_error() < 1e-6, (key, result.additivity_error())
    importance = result.importance()
    assert list(importance.columns) == ["class 0", "class 1", "class 2", "overall"]
    assert importance["overall"].is_monotonic_decreasing


def test_training_needs_every_class(data):
    features, cohort = data
    no_two = cohort.copy()
    no_two.loc[(no_two["cohort"] == "train") & (no_two["label"] == 2), "label"] = 1
    with pytest.raises(TrainingError, match="no case of class 2"):
        fit_arm(features, no_two, "demo", QUICK, progress=False)


def _write_inputs(folder, features, cohort, name="features"):
    folder.mkdir(parents=True, exist_ok=True)
    features.to_parquet(folder / f"{name}.parquet")
    manifest = cohort.assign(image="ct.nii.gz", mask="mask.nii.gz", mask_label=1)
    manifest.to_csv(folder / "manifest.csv", index=False)
    return folder / f"{name}.parquet", folder / "manifest.csv"


@pytest.mark.slow
def test_train_command_is_deterministic_and_compare_runs(tmp_path):
    features, cohort = simulated_features(seed=4)
    table, manifest = _write_inputs(tmp_path / "inputs", features, cohort)
    args = [
        "train",
        str(table),
        "--manifest",
        str(manifest),
        "--classifiers",
        "lr,rf",
        "--quick",
        "--folds",
        "3",
        "--jobs",
        "2",
    ]
    outputs = []
    for name in ("run1", "run2"):
        result = runner.invoke(app, [*args, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        outputs.append(tmp_path / name)
    first, second = outputs
    pd.testing.assert_frame_equal(
        pd.read_parquet(first / "predictions.parquet"),
        pd.read_parquet(second / "predictions.parquet"),
    )
    for name in ("performance", "per_class_auc", "metrics", "selected_features", "shap_importance"):
        assert (first / "tables" / f"{name}.csv").read_bytes() == (
            second / "tables" / f"{name}.csv"
        ).read_bytes(), name
    summary = json.loads((first / "arm.json").read_text(encoding="utf-8"))
    assert summary["chosen"] in ("lr", "rf") and summary["selected_features"]
    for figure in (
        "roc-external",
        "confusion-internal",
        "calibration-train-cv",
        "decision-external",
        "selection-funnel",
        "lasso-cv",
        "shap-bar",
        "shap-beeswarm-class2",
        "shap-waterfall-1",
    ):
        for suffix in (".png", ".svg"):
            assert (first / "figures" / f"{figure}{suffix}").is_file(), figure
    model = load_model(first / "models" / f"{summary['chosen']}.skops")
    preds = pd.read_parquet(first / "predictions.parquet")
    mine = preds[(preds["classifier"] == summary["chosen"]) & (preds["cohort"] == "external")]
    np.testing.assert_allclose(
        predict_proba(model, features.loc[mine.index]),
        mine[["p0", "p1", "p2"]].to_numpy(),
        rtol=0,
        atol=1e-12,
    )

    # a second arm with a different feature set, then the paired comparison
    other = features.iloc[:, 5:].copy()
    table_b, _ = _write_inputs(tmp_path / "inputs", other, cohort, name="other")
    result = runner.invoke(
        app,
        [
            "train",
            str(table_b),
            "--manifest",
            str(manifest),
            "--classifiers",
            "lr",
            "--quick",
            "--folds",
            "3",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["compare", str(first), str(tmp_path / "b"), "--out", str(tmp_path / "comparison.csv")]
    )
    assert result.exit_code == 0, result.output
    comparison = pd.read_csv(tmp_path / "comparison.csv")
    assert {MACRO_TEST, BOOTSTRAP_TEST, PER_CLASS_TEST} <= set(comparison["test"])
    assert comparison["p_value"].dropna().between(0, 1).all()
    # held-out cohorts only: the out-of-fold predictions also chose the models
    assert set(comparison["cohort"]) >= {"internal", "external"}
    assert "out-of-fold" not in set(comparison["scoring"])
    # the primary endpoint (external, prospective) and the secondary family, Holm-adjusted
    assert set(comparison["family"]) >= {"primary", "secondary"}
    assert (comparison["p_adjusted"].dropna() >= comparison["p_value"].min()).all()


def test_tampered_model_file_is_refused(tmp_path, fitted):
    import zipfile

    from ovfdlr.modelio import save_model

    path = save_model(fitted.models["lr"], tmp_path / "lr.skops")
    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
        members = {n: archive.read(n) for n in archive.namelist() if n != "schema.json"}
    text = (
        json.dumps(schema)
        .replace('"sklearn.pipeline"', '"os"', 1)
        .replace('"Pipeline"', '"system"', 1)
    )
    tampered = tmp_path / "tampered.skops"
    with zipfile.ZipFile(tampered, "w") as archive:
        archive.writestr("schema.json", text)
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ModelFileError, match=r"refused.*os\.system"):
        load_model(tampered)
    (tmp_path / "foreign.skops").write_bytes(b"PK not really")
    with pytest.raises(ModelFileError, match="not a readable skops model file"):
        load_model(tmp_path / "foreign.skops")


def test_loading_a_model_keeps_array_libraries_out(tmp_path, fitted):
    """skops lists scikit-learn's estimators by importing sklearn's packages; the array-API
    wrappers among them would import torch and dask (seconds) unless ovfdlr hides them."""
    import subprocess
    import sys

    from ovfdlr.modelio import save_model

    path = save_model(fitted.models["rf"], tmp_path / "rf.skops")
    code = (
        "import sys\n"
        "from ovfdlr.modelio import load_model\n"
        f"model = load_model({str(path)!r})\n"
        "print(type(model).__name__, 'torch' in sys.modules, 'dask' in sys.modules)\n"
        "import torch\n"  # and the library still imports normally afterwards
        "print(torch.ones(1).item())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.split() == ["Pipeline", "False", "False", "1.0"], result.stderr


def test_the_number_of_worker_processes_changes_nothing(data, fitted):
    from dataclasses import replace

    features, cohort = data
    parallel = fit_arm(features, cohort, "demo", replace(QUICK, jobs=2), progress=False)
    pd.testing.assert_frame_equal(fitted.cv_results, parallel.cv_results)
    pd.testing.assert_frame_equal(fitted.oof, parallel.oof)
    for key in fitted.models:
        np.testing.assert_array_equal(
            predict_proba(fitted.models[key], features),
            predict_proba(parallel.models[key], features),
        )


def test_every_inner_split_is_grouped_by_patient(data, monkeypatch):
    """The LASSO's CV and the SVM's calibration folds keep a patient's vertebrae together."""
    import ovfdlr.cohort
    import ovfdlr.selection

    features, cohort = data
    calls = []
    original = ovfdlr.cohort.patient_folds

    def spy(y, groups, n_splits, seed=0):
        splits = original(y, groups, n_splits, seed)
        calls.append((None if groups is None else np.asarray(groups), splits))
        return splits

    monkeypatch.setattr(ovfdlr.cohort, "patient_folds", spy)
    monkeypatch.setattr(ovfdlr.selection, "patient_folds", spy)
    settings = TrainSettings(classifiers=("svm",), quick=True, folds=3, jobs=1)
    fit_arm(features, cohort, "demo", settings, progress=False)
    assert len(calls) > 3  # outer folds, every LASSO fit, every SVM calibration
    for groups, splits in calls:
        assert groups is not None and groups.dtype.kind in "OU"  # patient ids, not row numbers
        for train, test in splits:
            assert set(groups[train]).isdisjoint(groups[test])
