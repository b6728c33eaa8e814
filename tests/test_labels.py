"""Label schemes: the classes, manifest labels checked against them, binary runs that are
exactly the plain ROC / DeLong analysis, and Genant and binary runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ovfdlr import labels as schemes
from ovfdlr import stats
from ovfdlr.cli import app
from ovfdlr.cohort import load_manifest, validate_manifest
from ovfdlr.config import ConfigError, parse_config
from ovfdlr.evaluation import BINARY_TEST, compare_arms, evaluate
from ovfdlr.scoring import HELD_OUT, OUT_OF_FOLD
from tests.conftest import good_row, write_manifest

runner = CliRunner()


def test_schemes_name_their_classes_and_map_manifest_labels():
    astlof = schemes.astlof()
    assert astlof.values == (0, 1, 2) and astlof.name_of(2) == "surgery"
    assert astlof.proba_columns == ["p0", "p1", "p2"]
    genant = schemes.genant()
    assert genant.n_classes == 4 and genant.label_text(3) == "class 3 (severe)"
    assert "morph_genant_grade" in genant.excluded_features
    surgery = schemes.binary()  # ASTLOF 2 against 0-1
    assert [surgery.encode(v) for v in ("0", "1", "2", "")] == [0, 0, 1, None]
    assert surgery.is_binary and surgery.positive == 1
    custom = schemes.custom({0: "acute", 1: "chronic"})
    assert custom.names == ("acute", "chronic")
    assert schemes.LabelScheme.from_dict(genant.to_dict()) == genant
    assert schemes.LabelScheme.from_dict(surgery.to_dict()) == surgery
    with pytest.raises(schemes.LabelError, match=r"label '3' is not one of 0, 1, 2 .*'astlof'"):
        astlof.encode("3")
    with pytest.raises(schemes.LabelError, match="both positive and negative"):
        schemes.binary(positive=[1], negative=[0, 1])
    with pytest.raises(schemes.LabelError, match="unknown label scheme 'astloff'"):
        schemes.scheme_named("astloff")


def test_config_labels_key():
    base = {"manifest": "m.csv", "arms": [{"name": "a"}]}
    assert parse_config(base).labels.scheme_object() == schemes.astlof()
    assert parse_config(base | {"labels": "genant"}).labels.scheme_object().n_classes == 4
    binary = parse_config(
        base | {"labels": {"scheme": "binary", "positive": [1], "negative": [0]}}
    ).labels.scheme_object()
    assert binary.mapping == {0: 0, 1: 1}
    for bad, needle in (
        ({"scheme": "custom"}, "labels: a custom scheme needs classes"),
        ({"scheme": "binary", "names": ["a"]}, "labels: a binary scheme takes two names"),
        ("genat", "labels.scheme: Input should be"),
    ):
        with pytest.raises(ConfigError, match=needle):
            parse_config(base | {"labels": bad})


def test_a_label_outside_the_scheme_names_row_value_and_scheme(tmp_path):
    rows = [
        good_row(tmp_path, "a", "P1", label=3),
        good_row(tmp_path, "b", "P2", label=1),
        good_row(tmp_path, "c", "P3", label=2),
    ]
    manifest = write_manifest(tmp_path, rows)
    report = validate_manifest(manifest, check_images=False)
    [problem] = [p for p in report.errors if p.check == "label"]
    assert problem.row == 2 and problem.case_id == "a"
    assert "label '3' is not one of 0, 1, 2 (label scheme 'astlof')" in problem.message
    genant = validate_manifest(manifest, labels="genant", check_images=False)
    assert genant.ok
    ok = tmp_path / "ok"
    ok.mkdir()
    grouped = write_manifest(ok, [good_row(ok, c, f"P{i}", label=i) for i, c in enumerate("xyz")])
    cohort = load_manifest(grouped, labels=schemes.binary())
    assert cohort["label"].tolist() == [0, 0, 1]
    problems = tmp_path / "problems.csv"
    result = runner.invoke(
        app, ["validate", str(manifest), "--labels", "binary", "--problems-csv", str(problems)]
    )
    assert result.exit_code == 1
    [message] = pd.read_csv(problems).query("check == 'label'")["message"]
    assert message.startswith("label '3' is not one of 0, 1, 2 (label scheme 'binary')")


def _binary_predictions(seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 80
    y = rng.integers(0, 2, n)
    score = 1 / (1 + np.exp(-(shift * y + rng.normal(size=n))))
    ids = [f"c{i}" for i in range(n)]
    cohort = np.where(np.arange(n) < 50, "train", "external")
    scoring = np.where(cohort == "train", OUT_OF_FOLD, HELD_OUT)
    frame = pd.DataFrame(
        {
            "classifier": "lr",
            "cohort": cohort,
            "scoring": scoring,
            "label": pd.array(y, dtype="Int64"),
            "p0": 1 - score,
            "p1": score,
        },
        index=pd.Index(ids, name="case_id"),
    )
    frame["prediction"] = (score > 0.5).astype(int)
    return frame


def test_a_two_class_run_is_the_plain_roc_and_delong_analysis():
    scheme = schemes.binary()
    a, b = _binary_predictions(1, 2.0), _binary_predictions(1, 1.0)
    b["label"] = a["label"]
    table = compare_arms(a, b, name_a="A", name_b="B", labels=scheme)
    assert set(table["test"]) == {BINARY_TEST}
    for row in table.itertuples(index=False):
        rows = a[(a["cohort"] == row.cohort) & (a["scoring"] == row.scoring)]
        y = rows["label"].astype(int).to_numpy() == 1
        expected = stats.delong_test(y, rows["p1"], b.loc[rows.index, "p1"])
        assert row.auc_a == expected.auc_a and row.auc_b == expected.auc_b
        assert row.statistic == expected.statistic and row.p_value == expected.p_value
        assert (row.ci_lower, row.ci_upper) == (expected.ci_lower, expected.ci_upper)
    evaluation = evaluate(a, "lr", labels=scheme)
    external = evaluation.performance.query("cohort == 'external'").iloc[0]
    rows = a[a["cohort"] == "external"]
    plain = stats.auc_ci(rows["label"].astype(int) == 1, rows["p1"])
    assert (external.macro_auc, external.macro_auc_lower, external.macro_auc_upper) == (
        plain.auc,
        plain.lower,
        plain.upper,
    )
    assert set(evaluation.confusion["true"]) == {0, 1}


LIGHT = {
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "shape": None},
    "setting": {"resampledPixelSpacing": [1, 1, 1], "binWidth": 25, "preCrop": True},
}


def _run(tmp_path, cohort_60: Path, scheme: str, *, nested: bool = False):
    """A run of the 60-case cohort (``synthetic_60``) with the labels ``ovfdlr synth --labels
    scheme`` writes (from its truth); the per-case features come from the session's shared
    cache after the first scheme's run."""
    from ovfdlr.synthetic.design import synthetic_label_config, synthetic_labels

    folder = tmp_path / scheme
    (folder / "cohort").mkdir(parents=True)
    truth = pd.read_csv(cohort_60 / "truth.csv").set_index("case_id")
    manifest = pd.read_csv(cohort_60 / "manifest.csv")
    truth = truth.loc[manifest["case_id"]]
    manifest = manifest.assign(
        image=[str(cohort_60 / p) for p in manifest["image"]],
        mask=[str(cohort_60 / p) for p in manifest["mask"]],
        # the grade as the generator computed it (truth.csv rounds the height loss)
        label=(
            truth["genant_grade"] if scheme == "genant" else synthetic_labels(truth, scheme)
        ).to_numpy(),
    )
    manifest.to_csv(folder / "cohort" / "manifest.csv", index=False)
    (folder / "light.yaml").write_text(yaml.safe_dump(LIGHT))
    config = {
        "manifest": str(folder / "cohort" / "manifest.csv"),
        "labels": synthetic_label_config(scheme),
        "radiomics": {"params": "light.yaml"},
        "arms": [{"name": "image"}],
        "models": {"classifiers": ["lr", "rf"], "quick": True, "folds": 3},
        # two outer folds keep the suite's one nested run short (and test the setting)
        "evaluation": {"nested_cv": nested, "nested_folds": 2},
        "preview": False,
        "jobs": 2,
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(
        app, ["run", str(folder / "experiment.yaml"), "--out", str(folder / "run")]
    )
    assert result.exit_code == 0, result.output
    return folder / "run", result.output


@pytest.mark.slow
def test_genant_run_end_to_end(tmp_path, synthetic_60):
    """Four Genant grades from the synthetic height loss; the features that define the grade
    are left out and the report says why."""
    run, _ = _run(tmp_path, synthetic_60, "genant")
    arm = json.loads((run / "arms" / "image" / "arm.json").read_text(encoding="utf-8"))
    assert arm["labels"]["scheme"] == "genant"
    assert not any(f in schemes.GENANT_DEFINING_FEATURES for f in arm["selected_features"])
    assert any("left out morph_genant_grade" in w for w in arm["warnings"])
    preds = pd.read_parquet(run / "arms" / "image" / "predictions.parquet")
    assert [c for c in preds.columns if c.startswith("p")][:4] == ["p0", "p1", "p2", "p3"]
    per_class = pd.read_csv(run / "arms" / "image" / "tables" / "per_class_auc.csv")
    assert set(per_class["class"]) == {0, 1, 2, 3}
    assert (run / "arms" / "image" / "figures" / "shap-beeswarm-class3.png").is_file()
    report = (run / "report.html").read_text(encoding="utf-8")
    assert "Label scheme <strong>genant</strong>" in report
    assert "the Genant grade is defined by the vertebral height loss" in report
    classes = pd.read_csv(run / "tables" / "cohort_classes.csv")
    assert "class 3" in classes.columns


@pytest.mark.slow
def test_binary_run_end_to_end(tmp_path, synthetic_60):
    """A two-class run, the one end-to-end run of the suite with nested cross-validation on."""
    run, output = _run(tmp_path, synthetic_60, "binary", nested=True)
    performance = pd.read_csv(run / "arms" / "image" / "tables" / "performance.csv")
    preds = pd.read_parquet(run / "arms" / "image" / "predictions.parquet")
    assert [c for c in preds.columns if c.startswith("p") and c[1:].isdigit()] == ["p0", "p1"]
    chosen = json.loads((run / "arms" / "image" / "arm.json").read_text(encoding="utf-8"))["chosen"]
    row = performance.query("classifier == @chosen and cohort == 'internal'").iloc[0]
    rows = preds[(preds["classifier"] == chosen) & (preds["cohort"] == "internal")]
    # the plain ROC AUC of class 1 with DeLong's CI, clustered by the manifest's patients
    manifest = pd.read_csv(run.parent / "cohort" / "manifest.csv", index_col="case_id")
    patients = manifest.loc[rows.index, "patient_id"].astype(str)
    plain = stats.auc_ci(rows["label"].astype(int) == 1, rows["p1"], groups=patients)
    assert row.macro_auc == pytest.approx(plain.auc, abs=1e-12)
    assert row.macro_auc_lower == pytest.approx(plain.lower, abs=1e-12)
    assert row.auc_ci_method == plain.method

    # nested cross-validation: the arm record, the performance table, the console summary
    arm = json.loads((run / "arms" / "image" / "arm.json").read_text(encoding="utf-8"))
    assert arm["nested_cv"]["ran"] and len(arm["nested_cv"]["folds"]) == 2
    assert {"chosen", "inner_cv_auc", "n_test"} <= set(arm["nested_cv"]["folds"][0])
    nested = arm["macro_auc"]["train (nested cv)"]["auc"]
    row = performance.query("classifier == @chosen and scoring == 'nested-cv'").iloc[0]
    assert row.cohort == "train" and row.macro_auc == pytest.approx(nested, abs=1e-12)
    rows = preds[(preds["classifier"] == chosen) & (preds["scoring"] == "nested-cv")]
    assert rows.index.is_unique and len(rows) == sum(f["n_test"] for f in arm["nested_cv"]["folds"])
    assert stats.roc_auc(rows["label"].astype(int) == 1, rows["p1"]) == pytest.approx(nested)
    from ovfdlr.experiment import summary_table  # what `ovfdlr run` prints

    table = summary_table(run, json.loads((run / "run.json").read_text(encoding="utf-8")))
    assert list(table["cohort"])[:3] == [
        "train (apparent)",
        "train (out-of-fold)",
        "train (nested cv)",
    ]
    assert table["macro AUC (95% CI)"].iloc[2].startswith(f"{nested:.3f} (")
    assert "Chosen model per arm" in output


def test_synthetic_labels_follow_the_truth():
    from ovfdlr.morphometry import genant_grade
    from ovfdlr.synthetic.design import synthetic_label_config, synthetic_labels

    pop = pd.DataFrame({"label": [0, 1, 2, 2], "height_loss_pct": [5.0, 21.0, 30.0, 55.0]})
    assert synthetic_labels(pop, "astlof").tolist() == [0, 1, 2, 2]
    assert synthetic_labels(pop, "genant").tolist() == [genant_grade(v) for v in [5, 21, 30, 55]]
    assert synthetic_labels(pop, "genant").tolist() == [0, 1, 2, 3]
    assert synthetic_labels(pop, "binary").tolist() == [0, 0, 1, 1]
    binary = parse_config(
        {"manifest": "m.csv", "arms": [{"name": "a"}], "labels": synthetic_label_config("binary")}
    ).labels.scheme_object()
    assert [binary.encode(v) for v in ("0", "1")] == [0, 1]
    with pytest.raises(ValueError, match="labels 'ordinal' is not one of"):
        synthetic_labels(pop, "ordinal")


def test_a_scheme_class_no_case_has_is_a_warning(tmp_path):
    """A 0/1 manifest read with the default binary grouping (ASTLOF 2 against 0-1) makes every
    case class 0: validation warns instead of passing silently."""
    rows = [good_row(tmp_path, c, f"P{i}", label=i % 2) for i, c in enumerate("abcd")]
    manifest = write_manifest(tmp_path, rows)
    report = validate_manifest(manifest, labels=schemes.binary(), check_images=False)
    [warning] = [p for p in report.warnings if p.check == "class-absent"]
    assert "no case has class 1 (surgery)" in warning.message and "0->0, 1->0, 2->1" in (
        warning.message
    )
    assert report.ok
    coded = schemes.binary(positive=[1], negative=[0])
    assert not [
        p
        for p in validate_manifest(manifest, labels=coded, check_images=False).warnings
        if p.check == "class-absent"
    ]


def test_classes_that_are_not_0_to_k_minus_1_train_every_classifier():
    """Classifiers are fitted on class positions: XGBoost (which needs 0..K-1) and the SVM's
    patient-grouped calibration work for a scheme with the values (1, 2)."""
    from ovfdlr.training import TrainSettings, fit_arm, predictions
    from tests.conftest import simulated_features

    features, cohort = simulated_features(n=120, n_features=8, seed=3)
    cohort = cohort.assign(label=pd.array((cohort["label"] > 0).astype(int) + 1, dtype="Int64"))
    scheme = schemes.custom({1: "acute", 2: "chronic"})
    settings = TrainSettings(classifiers=("xgb", "svm"), quick=True, folds=3, labels=scheme)
    fit = fit_arm(features, cohort, "a", settings, progress=False)
    preds = predictions(fit, features, cohort)
    assert set(preds["prediction"]) <= {1, 2}
    assert {"p1", "p2"} <= set(preds.columns) and "p0" not in preds.columns
    np.testing.assert_allclose(preds[["p1", "p2"]].sum(axis=1), 1.0)
    held = preds[(preds["scoring"] == HELD_OUT) & (preds["classifier"] == "xgb")]
    y = held["label"].astype(int) == 2
    assert stats.roc_auc(y, held["p2"]) > 0.6
