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

Every table has ``cohort`` and ``scoring`` columns (:mod:`ovfdlr.scoring`): the training cohort
appears twice, ``apparent`` and ``out-of-fold``; every other cohort is ``held-out``. The classes
are those of the run's label scheme (:mod:`ovfdlr.labels`); a two-class scheme is evaluated and
compared as a plain binary ROC problem. A cohort that lacks a class cannot give that class's
AUC: the row says so in ``note`` instead of failing the evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ovfdlr import stats
from ovfdlr.labels import DEFAULT, LabelScheme
from ovfdlr.scoring import APPARENT, OUT_OF_FOLD, view_order, view_sort_key

SUMMARY_METRICS = ("sensitivity", "specificity", "f1")
COMPARISON_COLUMNS = [
    "cohort",
    "scoring",
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
BINARY_TEST = "DeLong (paired)"
MACRO_TEST = "macro (DeLong, stratified)"
BOOTSTRAP_TEST = "macro (bootstrap)"
PER_CLASS_TEST = "per class (DeLong, paired)"


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


def _labelled(frame: pd.DataFrame, labels: LabelScheme) -> tuple[np.ndarray, np.ndarray]:
    rows = frame[frame["label"].notna()]
    return rows["label"].astype(int).to_numpy(), rows[labels.proba_columns].to_numpy(np.float64)


def _views(frame: pd.DataFrame, training: str) -> list[tuple[str, str]]:
    return view_order(zip(frame["cohort"], frame["scoring"], strict=True), training)


def auc_summary(
    y: np.ndarray,
    proba: np.ndarray,
    labels: LabelScheme,
    *,
    level: float = 0.95,
    cohort: str | None = None,
    seed: int = 0,
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """(macro / micro AUC with CIs, per-class AUCs, ROC curves) of one cohort's predictions.

    K classes: the one-vs-rest analysis of :func:`ovfdlr.stats.one_vs_rest`. Two classes: the
    plain ROC AUC of the positive class with DeLong's CI (:func:`ovfdlr.stats.auc_ci`), reported
    as macro and micro alike (both one-vs-rest AUCs equal it).
    """
    result = stats.one_vs_rest(
        y, proba, classes=labels.values, level=level, cohort=cohort, seed=seed
    )
    if labels.is_binary:
        plain = stats.auc_ci(y == labels.positive, proba[:, 1], level=level)
        macro = micro = (plain.auc, plain.lower, plain.upper)
    else:
        macro = (result.macro.auc, result.macro.lower, result.macro.upper)
        micro = (result.micro.auc, result.micro.lower, result.micro.upper)
    row = {
        "macro_auc": macro[0],
        "macro_auc_lower": macro[1],
        "macro_auc_upper": macro[2],
        "micro_auc": micro[0],
        "micro_auc_lower": micro[1],
        "micro_auc_upper": micro[2],
    }
    return row, result.per_class, result.curves


def _performance_row(y, proba, labels: LabelScheme, level: float, cohort: str, seed: int):
    """Discrimination and argmax-decision metrics of one classifier on one view."""
    row, per_class, _ = auc_summary(y, proba, labels, level=level, cohort=cohort, seed=seed)
    metrics = stats.classification_metrics(y, proba, classes=labels.values, level=level, seed=seed)
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
    return row, per_class


def performance_tables(
    preds: pd.DataFrame, labels: LabelScheme, training: str, *, seed: int = 0, level=0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every classifier on every view: the ``performance`` and ``per_class`` tables.

    A view that cannot give an AUC (a class without two cases) has a row whose ``note`` says
    why, instead of failing the evaluation.
    """
    performance, per_class = [], []
    groups = preds.groupby(["classifier", "cohort", "scoring"], sort=False)
    for (classifier, cohort, scoring), frame in groups:
        y, proba = _labelled(frame, labels)
        row = {"classifier": classifier, "cohort": cohort, "scoring": scoring, "n": len(y)}
        row["note"] = ""
        try:
            found, classes = _performance_row(y, proba, labels, level, cohort, seed)
        except stats.StatsError as exc:
            row["note"] = str(exc)
            performance.append(row)
            continue
        performance.append(row | found)
        per_class.append(classes.assign(classifier=classifier, cohort=cohort, scoring=scoring))
    performance = pd.DataFrame(performance)
    per_class = pd.concat(per_class, ignore_index=True) if per_class else pd.DataFrame()
    performance = performance.assign(
        _view=view_sort_key(performance["cohort"], performance["scoring"], training)
    )
    performance = (
        performance.sort_values(["classifier", "_view"], kind="stable")
        .drop(columns="_view")
        .reset_index(drop=True)
    )
    return performance, per_class


def _chosen_view_tables(y, proba, labels, thresholds, level, seed, cohort, scoring) -> dict:
    """The chosen model's tables of one view (each tagged with the view)."""
    tag = {"cohort": cohort, "scoring": scoring}
    out: dict[str, list] = {}
    try:
        metrics = stats.classification_metrics(
            y, proba, classes=labels.values, thresholds=thresholds, level=level, seed=seed
        ).assign(**tag)
    except stats.StatsError as exc:  # e.g. a cohort whose cases are all of one class
        metrics = pd.DataFrame([tag | {"note": str(exc)}])
    out["metrics"] = metrics
    predicted = np.asarray(labels.values)[proba.argmax(axis=1)]
    matrix = stats.confusion_matrix(y, predicted, classes=labels.values)
    out["confusion"] = (
        matrix.rename_axis(index="true", columns="predicted")
        .stack()
        .rename("count")
        .reset_index()
        .assign(**tag)
    )
    out["calibration"] = stats.reliability_curves(y, proba, classes=labels.values).assign(**tag)
    out["calibration_summary"] = pd.DataFrame(
        [
            tag
            | {
                "brier": stats.brier_score(y, proba, classes=labels.values),
                "ece_top_label": stats.expected_calibration_error(
                    y, proba, kind="top-label", classes=labels.values
                ),
                "ece_classwise": stats.expected_calibration_error(
                    y, proba, kind="classwise", classes=labels.values
                ),
            }
        ]
    )
    out["decision"] = stats.decision_curves(y, proba, classes=labels.values).assign(**tag)
    try:
        _, _, curves = auc_summary(y, proba, labels, cohort=cohort, seed=seed)
        out["curves"] = curves.assign(**tag)
    except stats.StatsError:
        pass
    return out


def evaluate(
    preds: pd.DataFrame,
    chosen: str,
    *,
    training: str = "train",
    labels: LabelScheme = DEFAULT,
    seed: int = 0,
    level=0.95,
) -> Evaluation:
    """Evaluation tables of an arm from its predictions (see the module docstring)."""
    performance, per_class = performance_tables(preds, labels, training, seed=seed, level=level)
    chosen_preds = preds[preds["classifier"] == chosen]
    oof = chosen_preds[
        (chosen_preds["cohort"] == training) & (chosen_preds["scoring"] == OUT_OF_FOLD)
    ]
    y_oof, p_oof = _labelled(oof, labels)
    thresholds = stats.youden_thresholds(y_oof, p_oof, classes=labels.values)
    parts: dict[str, list[pd.DataFrame]] = {}
    for cohort, scoring in _views(chosen_preds, training):
        frame = chosen_preds[
            (chosen_preds["cohort"] == cohort) & (chosen_preds["scoring"] == scoring)
        ]
        y, proba = _labelled(frame, labels)
        if len(y) == 0:
            continue
        found = _chosen_view_tables(y, proba, labels, thresholds, level, seed, cohort, scoring)
        for name, table in found.items():
            parts.setdefault(name, []).append(table)

    def stack(name):
        frames = parts.get(name, [])
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return Evaluation(
        performance,
        per_class,
        stack("metrics"),
        stack("confusion"),
        stack("calibration"),
        stack("calibration_summary"),
        stack("decision"),
        stack("curves"),
        thresholds,
    )


def _test_row(base: dict, test: str, klass, aucs: tuple[float, float], result) -> dict:
    """A comparison row from a DeLong or macro test result and the two AUCs it compares."""
    return base | {
        "test": test,
        "class": klass,
        "auc_a": aucs[0],
        "auc_b": aucs[1],
        "difference": result.difference,
        "statistic": result.statistic,
        "p_value": result.p_value,
        "ci_lower": result.ci_lower,
        "ci_upper": result.ci_upper,
        "note": "",
    }


def paired_tests(
    y: np.ndarray,
    pa: np.ndarray,
    pb: np.ndarray,
    labels: LabelScheme,
    base: dict,
    *,
    seed: int = 0,
    n_boot: int = 2000,
    level: float = 0.95,
) -> list[dict]:
    """The paired tests of two models on one view's shared cases, as comparison rows.

    Two classes: DeLong's paired test of the two AUCs (:func:`ovfdlr.stats.delong_test`), the
    plain ROC comparison. K classes: the stratified-DeLong test of the macro AUC difference, its
    paired stratified bootstrap as a cross-check, and one paired DeLong test per class.
    """
    cohort = base["cohort"]
    if labels.is_binary:
        try:
            test = stats.delong_test(y == labels.positive, pa[:, 1], pb[:, 1], level=level)
        except stats.StatsError as exc:
            return [base | {"test": BINARY_TEST, "note": str(exc)}]
        return [_test_row(base, BINARY_TEST, labels.positive, (test.auc_a, test.auc_b), test)]
    classes = labels.values
    try:
        macro = stats.macro_auc_test(y, pa, pb, classes=classes, level=level, cohort=cohort)
        boot = stats.bootstrap_macro_test(
            y, pa, pb, n_boot=n_boot, seed=seed, level=level, classes=classes
        )
    except stats.StatsError as exc:
        return [base | {"test": "macro", "note": str(exc)}]
    rows = [
        _test_row(base, MACRO_TEST, "macro", (macro.macro_a, macro.macro_b), macro),
        _test_row(base, BOOTSTRAP_TEST, "macro", (boot.macro_a, boot.macro_b), boot),
    ]
    per_class = stats.per_class_tests(y, pa, pb, classes=classes, level=level)
    for record in per_class.to_dict("records"):
        rows.append(
            base
            | {
                "test": PER_CLASS_TEST,
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
    return rows


def compare_arms(
    preds_a: pd.DataFrame,
    preds_b: pd.DataFrame,
    *,
    name_a: str = "A",
    name_b: str = "B",
    training: str = "train",
    labels: LabelScheme = DEFAULT,
    seed: int = 0,
    n_boot: int = 2000,
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired tests between the chosen models of two arms on the cases they share, per view.

    ``preds_*`` are the chosen models' predictions (one row per case and view). The training
    cohort's apparent (resubstitution) predictions are left out: they say nothing a test could
    generalise; its out-of-fold predictions and every held-out cohort are compared
    (:func:`paired_tests`).
    """
    rows = []
    views = view_order(
        [
            *zip(preds_a["cohort"], preds_a["scoring"], strict=True),
            *zip(preds_b["cohort"], preds_b["scoring"], strict=True),
        ],
        training,
    )
    for cohort, scoring in [v for v in views if v[1] != APPARENT]:

        def rows_of(preds, cohort=cohort, scoring=scoring):
            mask = (preds["cohort"] == cohort) & (preds["scoring"] == scoring)
            return preds[mask & preds["label"].notna()]

        a, b = rows_of(preds_a), rows_of(preds_b)
        shared = a.index.intersection(b.index, sort=False)
        if len(shared) == 0:
            continue
        if not (a.loc[shared, "label"].to_numpy() == b.loc[shared, "label"].to_numpy()).all():
            raise ValueError(
                f"cohort {cohort}: the two arms disagree on the labels of shared cases"
            )
        base = {
            "cohort": cohort,
            "scoring": scoring,
            "arm_a": name_a,
            "arm_b": name_b,
            "n": len(shared),
        }
        y = a.loc[shared, "label"].astype(int).to_numpy()
        pa = a.loc[shared, labels.proba_columns].to_numpy(np.float64)
        pb = b.loc[shared, labels.proba_columns].to_numpy(np.float64)
        rows += paired_tests(y, pa, pb, labels, base, seed=seed, n_boot=n_boot, level=level)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


__all__ = [
    "Evaluation",
    "auc_summary",
    "compare_arms",
    "evaluate",
    "paired_tests",
    "performance_tables",
]
