"""Evaluating a trained arm on every cohort, and comparing two arms case by case.

Tables (long format, one row per classifier x cohort x ... ) built from the predictions of
:func:`ovfdlr.training.predictions` with the statistics of :mod:`ovfdlr.stats`:

- ``performance``: every classifier on every cohort: macro and micro one-vs-rest AUC with 95 %
  CI, accuracy (Wilson CI) and the macro sensitivity, specificity and F1 at the argmax decision;
- ``per_class``: one-vs-rest AUC per class with DeLong CIs;
- for the arm's chosen model: ``metrics`` (per class, at the argmax decision and at each
  class's Youden threshold fitted on the training cohort's out-of-fold predictions),
  ``confusion``, ``calibration`` (reliability curves, Brier score, ECE), ``decision``
  (net benefit) and ``curves`` (ROC curves per class, macro and micro).

A cohort that lacks a class cannot give that class's AUC: the row says so in ``note`` instead of
failing the evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ovfdlr import stats
from ovfdlr.training import CLASSES, PROBA

SUMMARY_METRICS = ("sensitivity", "specificity", "f1")
COMPARISON_COLUMNS = [
    "cohort",
    "arm_a",
    "arm_b",
    "n",
    "test",
    "class",
    "auc_a",
    "auc_b",
    "difference",
    "statistic",
    "p_value",
    "ci_lower",
    "ci_upper",
    "note",
]


@dataclass
class Evaluation:
    """All evaluation tables of one arm (see the module docstring)."""

    performance: pd.DataFrame
    per_class: pd.DataFrame
    metrics: pd.DataFrame
    confusion: pd.DataFrame
    calibration: pd.DataFrame
    calibration_summary: pd.DataFrame
    decision: pd.DataFrame
    curves: pd.DataFrame
    thresholds: dict[int, float] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "performance": self.performance,
            "per_class_auc": self.per_class,
            "metrics": self.metrics,
            "confusion": self.confusion,
            "calibration": self.calibration,
            "calibration_summary": self.calibration_summary,
            "decision_curves": self.decision,
            "roc_curves": self.curves,
        }


def cohort_order(cohorts) -> list[str]:
    """Training first, then the usual validation order, then anything else alphabetically."""
    usual = ["train", "train (cv)", "internal", "external", "prospective"]
    present = list(dict.fromkeys(cohorts))
    return [c for c in usual if c in present] + sorted(c for c in present if c not in usual)


def _labelled(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    rows = frame[frame["label"].notna()]
    return rows["label"].astype(int).to_numpy(), rows[PROBA].to_numpy(np.float64)


def evaluate(
    preds: pd.DataFrame, chosen: str, *, training: str = "train", seed: int = 0, level=0.95
) -> Evaluation:
    """Evaluation tables of an arm from its predictions (see the module docstring)."""
    performance, per_class = [], []
    for (classifier, cohort), frame in preds.groupby(["classifier", "cohort"], sort=False):
        y, proba = _labelled(frame)
        row = {"classifier": classifier, "cohort": cohort, "n": len(y), "note": ""}
        try:
            result = stats.one_vs_rest(
                y, proba, classes=CLASSES, level=level, cohort=cohort, seed=seed
            )
        except stats.StatsError as exc:
            row["note"] = str(exc)
            performance.append(row)
            continue
        row |= {
            "macro_auc": result.macro.auc,
            "macro_auc_lower": result.macro.lower,
            "macro_auc_upper": result.macro.upper,
            "micro_auc": result.micro.auc,
            "micro_auc_lower": result.micro.lower,
            "micro_auc_upper": result.micro.upper,
        }
        metrics = stats.classification_metrics(y, proba, classes=CLASSES, level=level, seed=seed)
        argmax = metrics[metrics["decision"] == "argmax"]
        accuracy = argmax[argmax["metric"] == "accuracy"].iloc[0]
        row |= {
            "accuracy": accuracy["estimate"],
            "accuracy_lower": accuracy["lower"],
            "accuracy_upper": accuracy["upper"],
        }
        for name in SUMMARY_METRICS:
            macro = argmax[(argmax["metric"] == name) & (argmax["class"].astype(str) == "macro")]
            if not macro.empty:
                row |= {
                    name: macro.iloc[0]["estimate"],
                    f"{name}_lower": macro.iloc[0]["lower"],
                    f"{name}_upper": macro.iloc[0]["upper"],
                }
        performance.append(row)
        per_class.append(result.per_class.assign(classifier=classifier, cohort=cohort))

    performance = pd.DataFrame(performance)
    per_class = pd.concat(per_class, ignore_index=True) if per_class else pd.DataFrame()
    order = {c: i for i, c in enumerate(cohort_order(preds["cohort"]))}
    performance = performance.sort_values(
        ["classifier", "cohort"], key=lambda s: s.map(order) if s.name == "cohort" else s
    ).reset_index(drop=True)

    chosen_preds = preds[preds["classifier"] == chosen]
    oof = chosen_preds[chosen_preds["cohort"] == f"{training} (cv)"]
    y_oof, p_oof = _labelled(oof)
    thresholds = stats.youden_thresholds(y_oof, p_oof, classes=CLASSES)
    metrics, confusion, calibration, calibration_summary, decision, curves = [], [], [], [], [], []
    for cohort in cohort_order(chosen_preds["cohort"]):
        frame = chosen_preds[chosen_preds["cohort"] == cohort]
        y, proba = _labelled(frame)
        if len(y) == 0:
            continue
        try:
            metrics.append(
                stats.classification_metrics(
                    y, proba, classes=CLASSES, thresholds=thresholds, level=level, seed=seed
                ).assign(cohort=cohort)
            )
        except stats.StatsError as exc:  # e.g. a cohort whose cases are all of one class
            metrics.append(pd.DataFrame([{"cohort": cohort, "note": str(exc)}]))
        matrix = stats.confusion_matrix(y, proba.argmax(axis=1), classes=CLASSES)
        confusion.append(
            matrix.rename_axis(index="true", columns="predicted")
            .stack()
            .rename("count")
            .reset_index()
            .assign(cohort=cohort)
        )
        calibration.append(
            stats.reliability_curves(y, proba, classes=CLASSES).assign(cohort=cohort)
        )
        calibration_summary.append(
            {
                "cohort": cohort,
                "brier": stats.brier_score(y, proba),
                "ece_top_label": stats.expected_calibration_error(y, proba, kind="top-label"),
                "ece_classwise": stats.expected_calibration_error(y, proba, kind="classwise"),
            }
        )
        decision.append(stats.decision_curves(y, proba, classes=CLASSES).assign(cohort=cohort))
        try:
            result = stats.one_vs_rest(y, proba, classes=CLASSES, cohort=cohort, seed=seed)
            curves.append(result.curves.assign(cohort=cohort))
        except stats.StatsError:
            pass

    def stack(frames):
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return Evaluation(
        performance,
        per_class,
        stack(metrics),
        stack(confusion),
        stack(calibration),
        pd.DataFrame(calibration_summary),
        stack(decision),
        stack(curves),
        thresholds,
    )


def compare_arms(
    preds_a: pd.DataFrame,
    preds_b: pd.DataFrame,
    *,
    name_a: str = "A",
    name_b: str = "B",
    seed: int = 0,
    n_boot: int = 2000,
    level: float = 0.95,
    skip: tuple[str, ...] = ("train",),
) -> pd.DataFrame:
    """Paired tests between the chosen models of two arms on the cases they share, per cohort.

    Per cohort: one paired DeLong test per class, the stratified-DeLong test of the macro AUC
    difference and, as a cross-check, its paired stratified bootstrap. ``preds_*`` are the
    chosen models' predictions (one row per case and cohort). The cohorts in ``skip`` are left
    out: the training cohort's apparent (resubstitution) predictions say nothing a test could
    generalise; its out-of-fold predictions (``train (cv)``) are compared.
    """
    rows = []
    cohorts = cohort_order(list(preds_a["cohort"]) + list(preds_b["cohort"]))
    for cohort in [c for c in cohorts if c not in skip]:
        a = preds_a[(preds_a["cohort"] == cohort) & preds_a["label"].notna()]
        b = preds_b[(preds_b["cohort"] == cohort) & preds_b["label"].notna()]
        shared = a.index.intersection(b.index, sort=False)
        base = {"cohort": cohort, "arm_a": name_a, "arm_b": name_b, "n": len(shared)}
        if len(shared) == 0:
            continue
        if not (a.loc[shared, "label"].to_numpy() == b.loc[shared, "label"].to_numpy()).all():
            raise ValueError(
                f"cohort {cohort}: the two arms disagree on the labels of shared cases"
            )
        y = a.loc[shared, "label"].astype(int).to_numpy()
        pa = a.loc[shared, PROBA].to_numpy(np.float64)
        pb = b.loc[shared, PROBA].to_numpy(np.float64)
        try:
            macro = stats.macro_auc_test(y, pa, pb, classes=CLASSES, level=level, cohort=cohort)
            boot = stats.bootstrap_macro_test(y, pa, pb, n_boot=n_boot, seed=seed, level=level)
        except stats.StatsError as exc:
            rows.append(base | {"test": "macro", "note": str(exc)})
            continue
        for test, result in (("macro (DeLong, stratified)", macro), ("macro (bootstrap)", boot)):
            rows.append(
                base
                | {
                    "test": test,
                    "class": "macro",
                    "auc_a": result.macro_a,
                    "auc_b": result.macro_b,
                    "difference": result.difference,
                    "statistic": result.statistic,
                    "p_value": result.p_value,
                    "ci_lower": result.ci_lower,
                    "ci_upper": result.ci_upper,
                    "note": "",
                }
            )
        per_class = stats.per_class_tests(y, pa, pb, classes=CLASSES, level=level)
        for record in per_class.to_dict("records"):
            rows.append(
                base
                | {
                    "test": "per class (DeLong, paired)",
                    "class": record["class"],
                    "auc_a": record["auc_a"],
                    "auc_b": record["auc_b"],
                    "difference": record["difference"],
                    "statistic": record["z"],
                    "p_value": record["p_value"],
                    "ci_lower": record["ci_lower"],
                    "ci_upper": record["ci_upper"],
                    "note": "",
                }
            )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
