"""Evaluation tables: notes instead of blank rows, honest comparisons, families and Holm,
patients, subgroups (on synthetic prediction tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ovfdlr import stats
from ovfdlr.evaluation import (
    BOOTSTRAP_TEST,
    MACRO_TEST,
    NOT_ADJUSTED,
    PRIMARY,
    SECONDARY,
    adjust_comparisons,
    compare_arms,
    evaluate,
    performance_tables,
)
from ovfdlr.labels import DEFAULT
from ovfdlr.scoring import APPARENT, HELD_OUT, OUT_OF_FOLD
from tests.macro_nulls import MIRROR, draw

VIEWS = [("train", APPARENT), ("train", OUT_OF_FOLD), ("internal", HELD_OUT),
         ("external", HELD_OUT), ("prospective", HELD_OUT)]  # fmt: skip


def predictions(seed: int, shift: float = 0.0, sizes=(150, 60, 60, 60)) -> pd.DataFrame:
    """One model's predictions in the pipeline's layout (two patients' vertebrae share ids)."""
    rng = np.random.default_rng(seed)
    frames = []
    sizes = dict(zip(["train", "internal", "external", "prospective"], sizes, strict=True))
    for cohort, scoring in VIEWS:
        n = sizes[cohort]
        y, pa, _ = draw(np.random.default_rng(hash((cohort, 1)) % 2**32), n, MIRROR)
        noisy = pa + shift * rng.random(pa.shape)
        noisy /= noisy.sum(axis=1, keepdims=True)
        frame = pd.DataFrame(noisy, columns=DEFAULT.proba_columns)
        frame.index = [f"{cohort}-{i}" for i in range(n)]
        frame.insert(0, "label", y)
        frame.insert(0, "scoring", scoring)
        frame.insert(0, "cohort", cohort)
        frame.insert(0, "classifier", "lr")
        frames.append(frame)
    out = pd.concat(frames).rename_axis("case_id")
    out["label"] = out["label"].astype("Int64")
    return out


def manifest(preds: pd.DataFrame) -> pd.DataFrame:
    cases = preds[~preds.index.duplicated()]
    ids = cases.index.to_series()
    number = ids.str.rsplit("-", n=1).str[1].astype(int)
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "patient_id": cases["cohort"] + "-P" + (number // 2).astype(str),  # two per patient
            "cohort": cases["cohort"],
            "label": cases["label"],
            "centre": np.where(number % 3 == 0, "A", "B"),
            "sex": np.where(number % 2 == 0, "F", "m"),
            "age": rng.integers(55, 90, len(cases)),
        },
        index=cases.index,
    )


def test_comparisons_run_on_held_out_cohorts_only_by_default():
    a, b = predictions(1), predictions(2, shift=0.4)
    table = compare_arms(a, b, chose={"internal"})
    assert set(table["cohort"]) == {"external", "prospective"}
    assert (table["selection"] == "").all()
    labelled = compare_arms(a, b, chose={"internal"}, post_selection=True)
    views = labelled.drop_duplicates(["cohort", "scoring"]).set_index(["cohort", "scoring"])
    assert views.loc[("train", OUT_OF_FOLD), "selection"].startswith("post-selection")
    assert "chose the model" in views.loc[("internal", HELD_OUT), "selection"]
    assert views.loc[("external", HELD_OUT), "selection"] == ""
    assert APPARENT not in set(labelled["scoring"])
    # without a choosing internal cohort, internal is an honest validation cohort
    assert "internal" in set(compare_arms(a, b)["cohort"])


def test_comparisons_are_clustered_by_patient():
    a, b = predictions(1), predictions(2, shift=0.4)
    patients = manifest(a)["patient_id"]
    plain = compare_arms(a, b)
    clustered = compare_arms(a, b, patients=patients)
    macro = clustered[clustered["test"] == MACRO_TEST]
    assert macro["method"].str.contains("clustered by patient").all()
    assert not plain[plain["test"] == MACRO_TEST]["method"].str.contains("clustered").any()
    assert (macro["p_value"].between(0, 1)).all()
    # same point estimates, different standard errors
    ref = plain[plain["test"] == MACRO_TEST]
    np.testing.assert_allclose(macro["difference"], ref["difference"], atol=1e-15)
    assert not np.allclose(macro["ci_lower"], ref["ci_lower"])


def test_families_and_holm():
    a, b = predictions(1), predictions(2, shift=0.4)
    table = pd.concat(
        [
            compare_arms(a, b, name_a="rad", name_b="img"),
            compare_arms(a, b, name_a="rad", name_b="img", post_selection=True).query(
                "scoring == @OUT_OF_FOLD"
            ),
        ],
        ignore_index=True,
    )
    out = adjust_comparisons(table, ("img", "rad"), ["external", "prospective"])
    primary = out[out["family"] == PRIMARY]
    assert set(primary["cohort"]) == {"external", "prospective"}
    assert (primary["test"] == MACRO_TEST).all() and len(primary) == 2
    expected = stats.holm(primary["p_value"].to_numpy())
    np.testing.assert_allclose(primary["p_adjusted"], expected)
    assert primary["adjustment"].eq("Holm within primary (m = 2)").all()
    secondary = out[out["family"] == SECONDARY]
    np.testing.assert_allclose(secondary["p_adjusted"], stats.holm(secondary["p_value"]))
    assert (secondary["p_adjusted"] >= secondary["p_value"] - 1e-15).all()
    loose = out[out["family"] == NOT_ADJUSTED]
    assert set(loose["test"][loose["selection"] == ""]) == {BOOTSTRAP_TEST}
    assert loose["p_adjusted"].isna().all()
    assert loose.loc[loose["selection"] != "", "adjustment"].str.contains("post-selection").all()


def test_one_case_class_keeps_estimates_and_says_why():
    preds = predictions(3, sizes=(150, 60, 60, 60))
    ext = preds["cohort"] == "external"
    # keep a single class-2 case in the external cohort
    twos = preds.index[ext & (preds["label"] == 2)]
    preds = preds.drop(index=twos[1:])
    performance, per_class = performance_tables(preds, DEFAULT, "train")
    row = performance.set_index("cohort").loc["external"]
    assert np.isfinite(row["macro_auc"]) and np.isnan(row["macro_auc_lower"])
    assert row["note"] == "CI n/a: 1 case in class 2"
    assert np.isfinite(row["accuracy"])
    note = per_class[(per_class["cohort"] == "external") & (per_class["class"] == 2)]["note"]
    assert note.iloc[0] == "CI n/a: 1 case in class 2"
    table = compare_arms(preds, predictions(4, shift=0.4).drop(index=twos[1:]))
    ext_rows = table[table["cohort"] == "external"]
    assert ext_rows.loc[ext_rows["test"] == MACRO_TEST, "note"].iloc[0] == (
        "test n/a: 1 case in class 2"
    )


def test_evaluate_with_the_manifest():
    preds = predictions(5)
    cohort = manifest(preds)
    result = evaluate(preds, "lr", cohort=cohort, n_boot=200)
    # Youden thresholds come from the out-of-fold predictions and are not scored on them
    metrics = result.metrics
    oof = metrics[(metrics["cohort"] == "train") & (metrics["scoring"] == OUT_OF_FOLD)]
    assert set(oof["decision"]) == {"argmax"}
    assert "youden" in set(metrics.loc[metrics["cohort"] == "external", "decision"])
    # calibration: slope and intercept per class, bootstrap CIs of Brier and ECE
    reg = result.calibration_regression
    assert {"slope", "slope_lower", "intercept", "intercept_upper"} <= set(reg.columns)
    assert reg["method"].str.contains("cluster").all()
    summary = result.calibration_summary.set_index("cohort")
    assert (summary["brier_lower"] <= summary["brier"]).all()
    # clustered AUCs
    perf = result.performance
    assert perf.loc[perf["cohort"] == "external", "clustered"].all()
    # subgroups: centre, sex (upper-cased), age band from the training cohort's tertiles
    sub = result.subgroups
    assert set(sub["cohort"]) == {"internal", "external", "prospective"}
    assert set(sub["subgroup"]) == {"centre", "sex", "age band"}
    assert set(sub.loc[sub["subgroup"] == "sex", "level"]) == {"F", "M"}
    bands = sub.loc[(sub["subgroup"] == "age band") & (sub["cohort"] == "external"), "level"]
    assert len(bands) == 3
    filled = sub["macro_auc"].notna()
    assert (sub.loc[filled, "macro_auc"].between(0, 1)).all()
    assert (sub.loc[~filled, "note"] != "").all()


@pytest.mark.parametrize("variance", ["unconditional", "conditional"])
def test_variance_option_reaches_the_tables(variance):
    preds = predictions(6)
    performance, _ = performance_tables(preds, DEFAULT, "train", variance=variance)
    methods = set(performance["auc_ci_method"])
    expected = "delong-macro" if variance == "unconditional" else "delong-macro-conditional"
    assert methods <= {expected, "newcombe-score"} and expected in methods


def test_primary_endpoint_errors_name_the_key():
    from ovfdlr.config import ConfigError, parse_config
    from ovfdlr.experiment import RunError, primary_cohorts

    base = {"manifest": "m.csv", "arms": [{"name": "rad"}, {"name": "img"}]}
    with pytest.raises(ConfigError, match=r"evaluation.primary.arms.1: unknown arm 'imx'"):
        parse_config(base | {"evaluation": {"primary": {"arms": ["rad", "imx"]}}})
    config = parse_config(base | {"evaluation": {"primary": {"cohorts": ["external", "extrnal"]}}})
    cohorts = ["external", "internal", "train"]
    with pytest.raises(RunError, match=r"evaluation.primary.cohorts.1: cohort 'extrnal' is not"):
        primary_cohorts(config, cohorts)
    config = parse_config(base | {"evaluation": {"primary": {"cohorts": ["train"]}}})
    with pytest.raises(RunError, match="is the training cohort"):
        primary_cohorts(config, cohorts)
    # the defaults: the first compared pair, external and prospective where present
    config = parse_config(base)
    assert config.primary_arms() == ("rad", "img")
    assert primary_cohorts(config, cohorts) == ["external"]


def test_arms_without_a_comparable_view_give_an_empty_adjusted_table():
    a = predictions(1)
    a = a[a["cohort"] == "train"]  # apparent and out-of-fold only: nothing held out
    table = compare_arms(a, a.copy())
    assert table.empty and list(table.columns)[:3] == ["cohort", "scoring", "arm_a"]
    out = adjust_comparisons(table, ("A", "B"), ["external"])
    assert out.empty and {"family", "p_adjusted", "adjustment"} <= set(out.columns)
