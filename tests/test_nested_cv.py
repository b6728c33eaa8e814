"""Nested cross-validation of the whole training procedure, and the errors of small cohorts."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import ovfdlr.training
from ovfdlr.config import parse_config
from ovfdlr.training import (
    TrainingError,
    TrainSettings,
    fit_arm,
    macro_auc,
    nested_cv,
    outer_seed,
    patient_folds,
    predict_proba,
    predictions,
)

from .conftest import simulated_features

SETTINGS = TrainSettings(classifiers=("lr", "knn"), quick=True, folds=3, jobs=1)
PROBA = ["p0", "p1", "p2"]


@pytest.fixture(scope="module")
def data():
    features, cohort = simulated_features(150, 12, seed=2)
    cohort = cohort.copy()
    first = cohort.index[cohort["cohort"] == "train"][0]
    cohort.loc[first, "label"] = pd.NA  # an unlabelled training case is never scored
    return features, cohort


@pytest.fixture(scope="module")
def recorded(data):
    """Nested CV with every call of ``_training_matrix`` recorded: the first is the outer
    split's, each later one what an inner fit trained on."""
    features, cohort = data
    seen = []
    original = ovfdlr.training._training_matrix

    def spy(features, cohort, settings):
        found = original(features, cohort, settings)
        rows = found[3]
        seen.append((list(rows.index), set(cohort["cohort"]), set(features.index)))
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ovfdlr.training, "_training_matrix", spy)
        result = nested_cv(features, cohort, "nested", SETTINGS, progress=False)
    return result, seen


def _labelled_training(cohort):
    return cohort.index[(cohort["cohort"] == "train") & cohort["label"].notna()]


@pytest.mark.slow
def test_every_labelled_training_case_is_scored_once(data, recorded):
    _, cohort = data
    result, _ = recorded
    preds = result.predictions
    training = _labelled_training(cohort)
    assert preds.index.is_unique and set(preds.index) == set(training)
    assert list(preds.columns) == ["outer_fold", "chosen", *PROBA]
    assert set(preds["outer_fold"]) == {0, 1, 2}
    assert set(preds["chosen"]) <= set(SETTINGS.classifiers)
    np.testing.assert_allclose(preds[PROBA].sum(axis=1), 1.0)
    folds = result.folds
    assert list(folds.columns[:6]) == [
        "outer_fold",
        "n_train",
        "n_test",
        "chosen",
        "inner_cv_auc",
        "n_selected",
    ]
    assert folds["n_test"].sum() == len(training)
    assert (folds["n_train"] + folds["n_test"] == len(training)).all()
    assert (folds["n_test"] == preds.groupby("outer_fold").size()).all()
    assert folds["inner_cv_auc"].between(0.5, 1).all() and (folds["n_selected"] > 0).all()
    assert result.seed == outer_seed(SETTINGS.seed) != SETTINGS.seed and result.seconds > 0


@pytest.mark.slow
def test_no_outer_test_patient_reaches_its_inner_fit(data, recorded):
    """Each inner fit trains on the training cohort less its outer test part: no patient of the
    test part (nor any row of another cohort) is among the rows it saw."""
    _, cohort = data
    result, seen = recorded
    outer, *inner = seen
    assert outer[0] == list(_labelled_training(cohort))
    assert len(inner) == SETTINGS.folds
    patient = cohort["patient_id"]
    for fold, (rows, cohorts, feature_rows) in enumerate(inner):
        test = result.predictions.index[result.predictions["outer_fold"] == fold]
        assert set(rows) == set(_labelled_training(cohort)) - set(test)
        assert set(patient[rows]).isdisjoint(patient[test])
        # with select_on="cv" the inner fit is given the training cohort only
        assert cohorts == {"train"} and feature_rows.isdisjoint(test)


@pytest.mark.slow
def test_two_workers_give_the_same_result_and_the_seed_decides(data, recorded):
    features, cohort = data
    result, _ = recorded
    parallel = nested_cv(features, cohort, "nested", replace(SETTINGS, jobs=2), progress=False)
    pd.testing.assert_frame_equal(result.predictions, parallel.predictions)
    pd.testing.assert_frame_equal(result.folds, parallel.folds)
    # another seed draws other outer folds (the outer split uses the derived seed)
    rows = cohort.loc[_labelled_training(cohort)]
    y, groups = rows["label"].astype(int).to_numpy(), rows["patient_id"].to_numpy()
    first, other = (patient_folds(y, groups, 3, outer_seed(s)) for s in (0, 1))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))
    inner = patient_folds(y, groups, 3, 0)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, inner, strict=True))


@pytest.mark.slow
def test_on_noise_the_nested_estimate_is_honest():
    """Features without signal: the apparent AUC of the chosen model is high (the selection and
    the model fit noise); the nested AUC is near chance and below it."""
    features, cohort = simulated_features(180, 60, seed=2)
    features[:] = np.random.default_rng(2).normal(size=features.shape)
    fit = fit_arm(features, cohort, "noise", SETTINGS, progress=False)
    nested = nested_cv(features, cohort, "noise", SETTINGS, progress=False)
    rows = cohort.loc[_labelled_training(cohort)]
    y = rows["label"].astype(int).to_numpy()
    apparent = macro_auc(y, predict_proba(fit.models[fit.chosen], features.loc[rows.index]))
    honest = macro_auc(y, nested.predictions.loc[rows.index, PROBA].to_numpy())
    assert honest < apparent - 0.1, (honest, apparent)
    assert abs(honest - 0.5) < 0.1, honest
    # the predictions table carries the view under the chosen model
    table = predictions(fit, features, cohort, nested)
    view = table[table["scoring"] == "nested-cv"]
    assert set(view["classifier"]) == {fit.chosen} and set(view["cohort"]) == {"train"}
    assert len(view) == len(rows)
    assert macro_auc(y, view.loc[rows.index, PROBA].to_numpy()) == honest


def _few_patients(n_class2: int):
    """The simulated cohort with only ``n_class2`` training patients of class 2 (the others'
    class-2 cases relabelled 1)."""
    features, cohort = simulated_features(150, 12, seed=2)
    cohort = cohort.copy()
    train = cohort[cohort["cohort"] == "train"]
    keep = sorted(train.loc[train["label"] == 2, "patient_id"].unique())[:n_class2]
    relabel = (cohort["cohort"] == "train") & (cohort["label"] == 2)
    relabel &= ~cohort["patient_id"].isin(keep)
    cohort.loc[relabel, "label"] = 1
    return features, cohort


def _patients_per_class(cohort):
    train = cohort[(cohort["cohort"] == "train") & cohort["label"].notna()]
    return {c: train.loc[train["label"] == c, "patient_id"].nunique() for c in (0, 1, 2)}


def test_a_class_with_fewer_patients_than_folds_is_one_clear_error():
    features, cohort = _few_patients(2)
    counts = _patients_per_class(cohort)
    expected = (
        "training cohort 'train': class 2 has 2 patients (patients per class "
        f"0: {counts[0]}, 1: {counts[1]}, 2: 2); 3-fold cross-validation needs at least 3 "
        "patients in every class: lower models.folds"
    )
    for run in (fit_arm, nested_cv):
        with pytest.raises(TrainingError) as info:
            run(features, cohort, "small", SETTINGS, progress=False)
        message = str(info.value)
        assert message.startswith(expected) and "\n" not in message, message
        assert "n_splits" not in message


def test_nested_cv_needs_enough_patients_in_every_outer_training_part():
    features, cohort = _few_patients(3)  # enough for 3-fold CV, not for 3 x 3 nested
    with pytest.raises(TrainingError) as info:
        nested_cv(features, cohort, "small", SETTINGS, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert re.match(
        r"nested cross-validation of the training cohort 'train': outer fold \d leaves "
        r"2 patients of class 2 for training \(patients per class there 0: \d+, 1: \d+, 2: 2\); "
        r"its 3-fold inner cross-validation needs at least 3 patients in every class: lower "
        r"models\.folds, or switch nested cross-validation off \(evaluation\.nested_cv: false\)$",
        message,
    ), message


def test_a_class_absent_from_training_names_the_labels_key():
    features, cohort = _few_patients(0)
    with pytest.raises(TrainingError) as info:
        fit_arm(features, cohort, "small", SETTINGS, progress=False)
    message = str(info.value)
    assert "the training cohort 'train' has no case of class 2" in message
    assert "change labels (the label scheme)" in message and "'astlof'" in message


def test_a_failing_outer_fold_names_the_fold(data, monkeypatch):
    """An inner fit that fails stops nested CV with the fold's number; with
    select_on="internal" the inner fit is also given the internal cohort (to rank its
    classifiers), never the outer test part nor another cohort."""
    features, cohort = data
    given = []

    def failing(features, cohort, arm, settings, *, progress=True):
        given.append((set(cohort.index), set(features.index)))
        raise TrainingError("the LASSO found nothing")

    monkeypatch.setattr(ovfdlr.training, "fit_arm", failing)
    settings = replace(SETTINGS, select_on="internal")
    with pytest.raises(TrainingError, match=r"^nested cross-validation, outer fold 0: the LASSO"):
        nested_cv(features, cohort, "nested", settings, progress=False)
    assert len(given) == SETTINGS.folds  # the batch runs to its end, then the first failure
    training = cohort.index[cohort["cohort"] == "train"]
    internal = cohort.index[cohort["cohort"] == "internal"]
    for cases, feature_rows in given:
        assert set(internal) <= cases == feature_rows
        assert cases.isdisjoint(cohort.index[cohort["cohort"] == "external"])
        assert 0 < len(set(training) - cases) < len(training)  # the outer test part is out


def test_config_says_when_nested_cv_runs():
    base = {"manifest": "m.csv"}
    tuned = {"name": "tuned", "deep": {"weights": "random:0", "finetune_epochs": 1, "pca": 4}}
    plain = {"name": "plain"}
    config = parse_config(base | {"arms": [plain, tuned]})
    assert config.nested_cv_for(config.arms[0]) == (True, "")
    ran, reason = config.nested_cv_for(config.arms[1])
    assert not ran and "fine-tuned arm" in reason and "evaluation.nested_cv: true" in reason
    off = parse_config(base | {"arms": [plain], "evaluation": {"nested_cv": False}})
    assert off.nested_cv_for(off.arms[0]) == (False, "switched off (evaluation.nested_cv: false)")
    forced = parse_config(base | {"arms": [tuned], "evaluation": {"nested_cv": True}})
    assert forced.nested_cv_for(forced.arms[0]) == (True, "")

    from ovfdlr.experiment import _nested_warnings

    warned = _nested_warnings(forced.arms[0], True)
    assert any("forced for a fine-tuned arm" in w for w in warned)
    assert any("PCA (4 components) was fitted on the whole training cohort" in w for w in warned)
    assert _nested_warnings(config.arms[0], True) == [] == _nested_warnings(forced.arms[0], False)


@pytest.mark.slow
def test_the_arm_record_and_summary_hold_the_nested_view(data, recorded, tmp_path, monkeypatch):
    import ovfdlr.arm
    from ovfdlr.arm import train_arm
    from ovfdlr.experiment import summary_table
    from ovfdlr.records import read_arm

    features, cohort = data
    calls = []

    def computed(*args, **kwargs):  # the same data and settings: the fixture's result
        calls.append(args[2:])
        return recorded[0]

    monkeypatch.setattr(ovfdlr.arm, "nested_cv", computed)
    result = train_arm(
        features,
        cohort,
        "nested",
        tmp_path / "arms" / "nested",
        SETTINGS,
        explain_model=False,
        progress=False,
        nested=True,
    )
    assert calls == [("nested", SETTINGS)]
    folder = tmp_path / "arms" / "nested"
    record = read_arm(folder / "arm.json")
    entry = record.nested_cv
    assert entry.ran and entry.reason == "" and entry.seconds > 0
    assert [f.outer_fold for f in entry.folds] == [0, 1, 2]
    assert all(f.chosen in SETTINGS.classifiers and f.n_test > 0 for f in entry.folds)
    assert all(0.5 < f.inner_cv_auc <= 1 for f in entry.folds)
    assert list(record.macro_auc)[:3] == [
        "train (apparent)",
        "train (out-of-fold)",
        "train (nested cv)",
    ]
    assert "nested_cv" in record.timings_s
    performance = pd.read_csv(folder / "tables" / "performance.csv")
    nested_rows = performance[performance["scoring"] == "nested-cv"]
    assert list(nested_rows["classifier"]) == [result.fit.chosen]
    assert nested_rows["macro_auc"].iloc[0] == pytest.approx(
        record.macro_auc["train (nested cv)"].auc
    )
    assert len(pd.read_csv(folder / "tables" / "nested_cv_folds.csv")) == 3
    for kind in ("roc", "calibration"):
        assert (folder / "figures" / f"{kind}-train-nested.png").is_file()
        assert (folder / "figures" / f"{kind}-train.png").is_file()  # apparent: not overwritten

    # an arm that did not run it (as a fine-tuned arm's config decides), and an arm.json from
    # before nested cross-validation: the summary says so
    tuned = {"name": "t", "deep": {"weights": "random:0", "finetune_epochs": 1}}
    config = parse_config({"manifest": "m.csv", "arms": [tuned]})
    ran, reason = config.nested_cv_for(config.arms[0])
    assert not ran
    data_json = json.loads((folder / "arm.json").read_text(encoding="utf-8"))
    data_json["macro_auc"].pop("train (nested cv)")
    skipped = tmp_path / "arms" / "tuned"
    skipped.mkdir(parents=True)
    not_run = {"nested_cv": {"ran": False, "reason": reason}}
    (skipped / "arm.json").write_text(json.dumps(data_json | not_run))
    older = tmp_path / "arms" / "older"
    older.mkdir(parents=True)
    data_json.pop("nested_cv")
    (older / "arm.json").write_text(json.dumps(data_json))
    assert not read_arm(older / "arm.json").nested_cv.ran
    payload = {"arms": {name: {"folder": f"arms/{name}"} for name in ("nested", "tuned", "older")}}
    table = summary_table(tmp_path, payload)
    views = table[table["cohort"] == "train (nested cv)"].set_index("arm")["macro AUC (95% CI)"]
    assert re.match(r"^0\.\d{3} \(0\.\d{3}\u2013[01]\.\d{3}\)$", views["nested"])
    assert views["tuned"] == f"not run: {reason}"
    assert views["older"].startswith("not run: not recorded")
    for arm, rows in table.groupby("arm", sort=False):
        assert list(rows["cohort"])[:3] == [
            "train (apparent)",
            "train (out-of-fold)",
            "train (nested cv)",
        ], arm
