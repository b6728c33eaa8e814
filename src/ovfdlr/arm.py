"""One arm from its feature tables to its folder: train, evaluate, explain, write everything.

``ovfdlr train FEATURES... --manifest MANIFEST --out DIR`` calls :func:`train_arm`, which
writes under DIR:

- ``arm.json``: the arm, its settings, the chosen model and its score, the selected features,
  the cohorts, versions and timings;
- ``selection.json``: the selection funnel, the LASSO path and penalty, the final features and
  their coefficients, and how often each feature was selected across the CV folds;
- ``models/<classifier>.skops``: each fitted model (selection + classifier);
- ``predictions.parquet``: every classifier's probabilities for every case (and the training
  cohort's out-of-fold ones, and its nested cross-validation ones under the chosen model);
- ``tables/*.csv`` and ``figures/*.png|svg`` (see :mod:`ovfdlr.evaluation`,
  :mod:`ovfdlr.report.figures`), with ``tables/nested_cv_folds.csv`` (one row per outer fold)
  when nested cross-validation ran (:func:`ovfdlr.training.nested_cv`).

``ovfdlr compare DIR_A DIR_B`` (:func:`compare_dirs`) runs the paired tests between two arms'
chosen models on each cohort.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ovfdlr import __version__
from ovfdlr.atomic import atomic_write, atomic_write_text
from ovfdlr.evaluation import Evaluation, compare_arms, evaluate
from ovfdlr.layout import ArmLayout
from ovfdlr.records import ArmRecord, json_default, read_arm
from ovfdlr.records import write_arm as write_arm_record
from ovfdlr.report import figures
from ovfdlr.scoring import (
    HELD_OUT,
    cohort_order,
    view_label,
    view_order,
    view_slug,
    with_scoring,
)
from ovfdlr.selection import fuse
from ovfdlr.training import (
    ArmFit,
    NestedCV,
    TrainSettings,
    fit_arm,
    nested_cv,
    predictions,
    training_rows,
)

SHAP_CASES = 200  # explained cases for kernel explainers (all cases for tree and linear ones)
NOT_REQUESTED = "not requested (train_arm(nested=False))"


@dataclass
class ArmResult:
    """A trained, evaluated and explained arm, and where its files are."""

    fit: ArmFit
    evaluation: Evaluation
    predictions: pd.DataFrame
    shap: object | None
    folder: Path
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    nested: NestedCV | None = None
    nested_reason: str = ""  # why nested cross-validation did not run


def read_features(paths: list[str | Path]) -> pd.DataFrame:
    """Read feature tables (Parquet, index case_id) and fuse them (see :func:`fuse`)."""
    tables, names = [], []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature table not found: {path}")
        table = pd.read_parquet(path)
        if table.index.name != "case_id" and "case_id" in table.columns:
            table = table.set_index("case_id")
        tables.append(table)
        names.append(str(path))
    return fuse(tables, names)


def _write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=json_default))


def _write_csv(frame: pd.DataFrame | pd.Series, path: Path, index: bool = False) -> None:
    """A table of the arm, written atomically (a file that exists is complete)."""
    atomic_write(path, lambda temporary: frame.to_csv(temporary, index=index))


def train_arm(
    features: pd.DataFrame,
    cohort: pd.DataFrame,
    arm: str,
    out: str | Path,
    settings: TrainSettings | None = None,
    *,
    explain_model: bool = True,
    progress: bool = True,
    nested: bool = False,
    nested_reason: str = NOT_REQUESTED,
    arm_warnings: Sequence[str] = (),
    variance: str = "unconditional",
    n_boot: int = 2000,
    nested_folds: int | None = None,
) -> ArmResult:
    """Train, evaluate and explain one arm; write its folder (see the module docstring).

    ``nested``: also cross-validate the whole training procedure
    (:func:`ovfdlr.training.nested_cv`; its predictions are the training cohort's
    ``nested-cv`` view); ``nested_reason`` says in ``arm.json`` why it did not run.
    ``arm_warnings`` are added to the arm's warnings (what the caller knows of the features).
    ``nested_folds``: its outer folds (default ``settings.folds``).
    ``variance`` and ``n_boot``: the macro AUC's variance estimator and the bootstrap size of the
    evaluation (:func:`ovfdlr.evaluation.evaluate`; CIs clustered by the manifest's patients).
    """
    from ovfdlr.modelio import save_model

    settings = settings or TrainSettings()
    out = Path(out)
    timings: dict[str, float] = {}
    warnings = list(arm_warnings)
    missing = cohort.index.difference(features.index)
    if len(missing):
        warnings.append(
            f"{len(missing)} case(s) of the manifest have no features and are left out: "
            + ", ".join(map(str, missing[:10]))
        )
    features, excluded = settings.labels.without_excluded(features)
    if excluded:
        warnings.append(f"left out {', '.join(excluded)}: {settings.labels.exclusion_reason}")
    start = time.perf_counter()
    fit = fit_arm(features, cohort, arm, settings, progress=progress)
    timings["train"] = time.perf_counter() - start
    nested_result = None
    if nested:
        nested_result = nested_cv(
            features, cohort, arm, settings, progress=progress, outer_folds=nested_folds
        )
        timings["nested_cv"] = nested_result.seconds

    start = time.perf_counter()
    preds = predictions(fit, features, cohort, nested_result)
    evaluation = evaluate(
        preds,
        fit.chosen,
        training=settings.training,
        labels=settings.labels,
        seed=settings.seed,
        cohort=cohort,
        variance=variance,
        n_boot=n_boot,
    )
    timings["evaluate"] = time.perf_counter() - start

    shap_result = None
    if explain_model:
        from ovfdlr.explain import KERNEL, explain, sample_cases

        start = time.perf_counter()
        background = features.loc[training_rows(features, cohort, settings.training).index]
        cases = cohort.loc[cohort.index.intersection(features.index, sort=False)]
        if fit.chosen in KERNEL:
            cases = cases.loc[sample_cases(cases, SHAP_CASES, settings.seed)]
        shap_result = explain(
            fit.models[fit.chosen],
            background,
            features.loc[cases.index],
            seed=settings.seed,
            labels=settings.labels,
        )
        timings["explain"] = time.perf_counter() - start

    start = time.perf_counter()
    result = ArmResult(
        fit,
        evaluation,
        preds,
        shap_result,
        out,
        timings,
        warnings,
        nested_result,
        "" if nested else nested_reason,
    )
    write_arm(result, cohort)
    for key, model in fit.models.items():
        save_model(model, ArmLayout(out).model(key))
    timings["write"] = time.perf_counter() - start
    write_arm_record(ArmLayout(out).arm_json, arm_summary(result, cohort))
    return result


def arm_summary(result: ArmResult, cohort: pd.DataFrame) -> ArmRecord:
    """The facts of an arm a reader (or ``compare``) needs: the record of ``arm.json``."""
    fit = result.fit
    performance = result.evaluation.performance
    chosen = performance[performance["classifier"] == fit.chosen]
    summary = {
        "arm": fit.arm,
        "ovfdlr": __version__,
        "settings": fit.settings.as_dict(),
        "labels": fit.settings.labels.to_dict(),
        "chosen": fit.chosen,
        "chosen_on": fit.settings.select_on,
        "chosen_score": fit.chosen_score,
        "best_params": {k: repr(v) for k, v in fit.best_params.items()},
        "n_input_features": fit.n_input_features,
        "selected_features": fit.selected,
        "cohorts": {
            c: int((cohort["cohort"] == c).sum())
            for c in cohort_order(cohort["cohort"], fit.settings.training)
        },
        "macro_auc": {
            view_label(row.cohort, row.scoring): {
                "auc": row.macro_auc,
                "lower": row.macro_auc_lower,
                "upper": row.macro_auc_upper,
            }
            for row in chosen.itertuples(index=False)
            if "macro_auc" in chosen.columns and pd.notna(row.macro_auc)
        },
        "youden_thresholds": {str(k): v for k, v in result.evaluation.thresholds.items()},
        "timings_s": result.timings,
        "warnings": result.warnings,
        "nested_cv": _nested_entry(result),
    }
    return ArmRecord.model_validate(summary)


def _nested_entry(result: ArmResult) -> dict:
    """``arm.json``'s ``nested_cv``: whether it ran (why not), each outer fold, the seconds."""
    nested = result.nested
    if nested is None:
        return {"ran": False, "reason": result.nested_reason or NOT_REQUESTED}
    return {
        "ran": True,
        "outer_seed": nested.seed,
        "seconds": nested.seconds,
        "folds": [
            {
                "outer_fold": int(row.outer_fold),
                "chosen": str(row.chosen),
                "inner_cv_auc": _number(row.inner_cv_auc),
                "outer_auc": _number(row.outer_auc),
                "n_train": int(row.n_train),
                "n_test": int(row.n_test),
                "n_selected": int(row.n_selected),
            }
            for row in nested.folds.itertuples(index=False)
        ],
    }


def _number(value) -> float | None:
    return None if pd.isna(value) else float(value)


def write_arm(result: ArmResult, cohort: pd.DataFrame) -> None:
    """Tables, predictions, selection record and figures of an arm."""
    layout, fit, evaluation = ArmLayout(result.folder), result.fit, result.evaluation
    tables = layout.tables
    tables.mkdir(parents=True, exist_ok=True)
    for name, table in evaluation.tables().items():
        _write_csv(table, tables / f"{name}.csv")
    _write_csv(fit.cv_results, tables / "cv_search.csv")
    if result.nested is not None:
        _write_csv(result.nested.folds, layout.table("nested_cv_folds"))
    _write_csv(fit.funnel, tables / "selection_funnel.csv")
    _write_csv(fit.lasso_path, tables / "lasso_path.csv")
    _write_csv(fit.coefficients.rename_axis("feature"), tables / "selected_features.csv", True)
    frequency = (
        fit.fold_features.groupby("feature")
        .size()
        .div(fit.settings.folds)
        .rename("fold_frequency")
        .sort_values(ascending=False)
    )
    _write_csv(frequency, tables / "selection_stability.csv", index=True)
    atomic_write(layout.predictions, result.predictions.to_parquet)
    _write_json(
        layout.selection_json,
        {
            "funnel": fit.funnel.to_dict("records"),
            "lasso_C": fit.selection.named_steps["lasso"].C_,
            "lasso_path": fit.lasso_path.to_dict("records"),
            "features": fit.coefficients.rename_axis("feature").reset_index().to_dict("records"),
            "fold_frequency": frequency.to_dict(),
        },
    )
    figure_dir = layout.figures
    figures.save(figures.funnel_figure(fit.funnel, fit.arm), figure_dir / "selection-funnel")
    figures.save(
        figures.lasso_figure(fit.lasso_path, fit.selection.named_steps["lasso"].C_, fit.arm),
        figure_dir / "lasso-cv",
    )
    per_class = evaluation.per_class
    labels = fit.settings.labels
    curves_all = evaluation.curves
    views = (
        view_order(
            zip(curves_all["cohort"], curves_all["scoring"], strict=True), fit.settings.training
        )
        if len(curves_all)
        else []
    )
    for cohort_name, scoring in views:
        slug, title = view_slug(cohort_name, scoring), view_label(cohort_name, scoring)

        def of(table, cohort_name=cohort_name, scoring=scoring):
            return table[(table["cohort"] == cohort_name) & (table["scoring"] == scoring)]

        chosen_auc = of(per_class[per_class["classifier"] == fit.chosen])
        figures.save(
            figures.roc_figure(of(curves_all), chosen_auc, title, f"{title}: {fit.chosen}", labels),
            figure_dir / f"roc-{slug}",
        )
        figures.save(
            figures.confusion_figure(of(evaluation.confusion), title),
            figure_dir / f"confusion-{slug}",
        )
        figures.save(
            figures.calibration_figure(of(evaluation.calibration), title, labels),
            figure_dir / f"calibration-{slug}",
        )
        figures.save(
            figures.decision_figure(of(evaluation.decision), title, labels),
            figure_dir / f"decision-{slug}",
        )
    if result.shap is not None:
        shap_result = result.shap
        importance = shap_result.importance()
        _write_csv(importance, tables / "shap_importance.csv", index=True)
        atomic_write(layout.shap_values, shap_result.long().to_parquet)
        figures.save(figures.shap_bar_figure(importance, labels), figure_dir / "shap-bar")
        for c in labels.values:
            figures.save(
                figures.shap_beeswarm_figure(shap_result, labels.index(c), labels),
                figure_dir / f"shap-beeswarm-class{c}",
            )
        for position, (case_id, c) in enumerate(_waterfall_cases(result, cohort)):
            index = list(shap_result.data.index).index(case_id)
            title = f"{case_id}: {labels.label_text(c)} ({shap_result.output_name})"
            figures.save(
                figures.shap_waterfall_figure(shap_result, index, labels.index(c), title),
                figure_dir / f"shap-waterfall-{position + 1}",
            )


def _waterfall_cases(result: ArmResult, cohort: pd.DataFrame) -> list[tuple[str, int]]:
    """Two example cases for waterfalls: the first correctly predicted case of the highest and
    of the lowest class (ASTLOF: class 2 and class 0) outside the training cohort (else any),
    each explained for its true class."""
    preds = result.predictions
    chosen = preds[(preds["classifier"] == result.fit.chosen) & preds["label"].notna()]
    chosen = chosen[chosen.index.isin(result.shap.data.index)]
    picks = []
    values = result.fit.settings.labels.values
    for c in (values[-1], values[0]):
        rows = chosen[(chosen["label"] == c) & (chosen["prediction"] == c)]
        outside = rows[rows["scoring"] == HELD_OUT]
        pool = outside if len(outside) else rows
        if len(pool):
            picks.append((str(pool.index[0]), c))
    return picks


def read_predictions(path: Path, training: str) -> pd.DataFrame:
    """An arm's ``predictions.parquet`` (older files get their ``scoring`` column in memory,
    :func:`ovfdlr.scoring.with_scoring`)."""
    return with_scoring(pd.read_parquet(path), training)


def compare_dirs(
    dir_a: str | Path,
    dir_b: str | Path,
    *,
    seed: int = 0,
    patients: pd.Series | None = None,
    variance: str = "unconditional",
    post_selection: bool = False,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """Paired tests between the chosen models of two trained arm folders, per cohort.

    Only views that played no part in fitting or choosing are compared unless
    ``post_selection`` (:func:`ovfdlr.evaluation.compare_arms`): an arm trained with
    ``select_on="internal"`` makes its internal cohort a choosing one. ``patients``
    (case_id -> patient_id) clusters the tests by patient. Two arms that share no labelled case
    on such a view give an empty table (a run then has nothing to compare for the pair).
    """
    loaded = []
    chose: set[str] = set()
    for folder in (ArmLayout(Path(dir_a)), ArmLayout(Path(dir_b))):
        for path in (folder.arm_json, folder.predictions):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{folder.folder} is not a trained arm folder: {path.name} missing"
                )
        summary = read_arm(folder.arm_json)
        training = summary.training
        if summary.settings.get("select_on") == "internal":
            chose.add(str(summary.settings.get("internal", "internal")))
        preds = read_predictions(folder.predictions, training)
        preds = preds[preds["classifier"] == summary.chosen]
        labels = summary.label_scheme
        loaded.append((f"{summary.arm} ({summary.chosen})", preds, training, labels))
    (name_a, preds_a, training, labels), (name_b, preds_b, _, labels_b) = loaded
    if (labels.values, dict(labels.mapping)) != (labels_b.values, dict(labels_b.mapping)):
        raise ValueError(
            f"{dir_a} and {dir_b} predict different classes ({labels.scheme}: "
            f"{list(labels.values)}; {labels_b.scheme}: {list(labels_b.values)}): no paired test"
        )
    table = compare_arms(
        preds_a,
        preds_b,
        name_a=name_a,
        name_b=name_b,
        training=training,
        labels=labels,
        seed=seed,
        n_boot=n_boot,
        patients=patients,
        variance=variance,
        chose=chose,
        post_selection=post_selection,
    )
    return table
