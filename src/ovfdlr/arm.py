"""One arm from its feature tables to its folder: train, evaluate, explain, write everything.

``ovfdlr train FEATURES... --manifest MANIFEST --out DIR`` calls :func:`train_arm`, which
writes under DIR:

- ``arm.json``: the arm, its settings, the chosen model and its score, the selected features,
  the cohorts, versions and timings;
- ``selection.json``: the selection funnel, the LASSO path and penalty, the final features and
  their coefficients, and how often each feature was selected across the CV folds;
- ``models/<classifier>.skops``: each fitted model (selection + classifier);
- ``predictions.parquet``: every classifier's probabilities for every case (and the training
  cohort's out-of-fold ones);
- ``tables/*.csv`` and ``figures/*.png|svg`` (see :mod:`ovfdlr.evaluation`,
  :mod:`ovfdlr.report.figures`).

``ovfdlr compare DIR_A DIR_B`` (:func:`compare_dirs`) runs the paired tests between two arms'
chosen models on each cohort.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ovfdlr import __version__
from ovfdlr.evaluation import Evaluation, cohort_order, compare_arms, evaluate
from ovfdlr.report import figures
from ovfdlr.selection import fuse
from ovfdlr.training import CLASSES, ArmFit, TrainSettings, fit_arm, predictions, training_rows

SHAP_CASES = 200  # explained cases for kernel explainers (all cases for tree and linear ones)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def train_arm(
    features: pd.DataFrame,
    cohort: pd.DataFrame,
    arm: str,
    out: str | Path,
    settings: TrainSettings | None = None,
    *,
    explain_model: bool = True,
    progress: bool = True,
) -> ArmResult:
    """Train, evaluate and explain one arm; write its folder (see the module docstring)."""
    from ovfdlr.modelio import save_model

    settings = settings or TrainSettings()
    out = Path(out)
    timings: dict[str, float] = {}
    warnings = []
    missing = cohort.index.difference(features.index)
    if len(missing):
        warnings.append(
            f"{len(missing)} case(s) of the manifest have no features and are left out: "
            + ", ".join(map(str, missing[:10]))
        )
    start = time.perf_counter()
    fit = fit_arm(features, cohort, arm, settings, progress=progress)
    timings["train"] = time.perf_counter() - start

    start = time.perf_counter()
    preds = predictions(fit, features, cohort)
    evaluation = evaluate(preds, fit.chosen, training=settings.training, seed=settings.seed)
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
            fit.models[fit.chosen], background, features.loc[cases.index], seed=settings.seed
        )
        timings["explain"] = time.perf_counter() - start

    start = time.perf_counter()
    result = ArmResult(fit, evaluation, preds, shap_result, out, timings, warnings)
    write_arm(result, cohort)
    for key, model in fit.models.items():
        save_model(model, out / "models" / f"{key}.skops")
    timings["write"] = time.perf_counter() - start
    _write_json(out / "arm.json", arm_summary(result, cohort))
    return result


def arm_summary(result: ArmResult, cohort: pd.DataFrame) -> dict:
    """The facts of an arm a reader (or ``compare``) needs, as JSON."""
    fit = result.fit
    performance = result.evaluation.performance
    chosen = performance[performance["classifier"] == fit.chosen]
    return {
        "arm": fit.arm,
        "ovfdlr": __version__,
        "settings": fit.settings.as_dict(),
        "chosen": fit.chosen,
        "chosen_on": fit.settings.select_on,
        "chosen_score": fit.chosen_score,
        "best_params": {k: repr(v) for k, v in fit.best_params.items()},
        "n_input_features": fit.n_input_features,
        "selected_features": fit.selected,
        "cohorts": {c: int((cohort["cohort"] == c).sum()) for c in cohort_order(cohort["cohort"])},
        "macro_auc": {
            row.cohort: {
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
    }


def write_arm(result: ArmResult, cohort: pd.DataFrame) -> None:
    """Tables, predictions, selection record and figures of an arm."""
    out, fit, evaluation = result.folder, result.fit, result.evaluation
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    for name, table in evaluation.tables().items():
        table.to_csv(tables / f"{name}.csv", index=False)
    fit.cv_results.to_csv(tables / "cv_search.csv", index=False)
    fit.funnel.to_csv(tables / "selection_funnel.csv", index=False)
    fit.lasso_path.to_csv(tables / "lasso_path.csv", index=False)
    fit.coefficients.rename_axis("feature").to_csv(tables / "selected_features.csv")
    frequency = (
        fit.fold_features.groupby("feature")
        .size()
        .div(fit.settings.folds)
        .rename("fold_frequency")
        .sort_values(ascending=False)
    )
    frequency.to_csv(tables / "selection_stability.csv")
    result.predictions.to_parquet(out / "predictions.parquet")
    _write_json(
        out / "selection.json",
        {
            "funnel": fit.funnel.to_dict("records"),
            "lasso_C": fit.selection.named_steps["lasso"].C_,
            "lasso_path": fit.lasso_path.to_dict("records"),
            "features": fit.coefficients.rename_axis("feature").reset_index().to_dict("records"),
            "fold_frequency": frequency.to_dict(),
        },
    )
    figure_dir = out / "figures"
    figures.save(figures.funnel_figure(fit.funnel, fit.arm), figure_dir / "selection-funnel")
    figures.save(
        figures.lasso_figure(fit.lasso_path, fit.selection.named_steps["lasso"].C_, fit.arm),
        figure_dir / "lasso-cv",
    )
    per_class = evaluation.per_class
    for cohort_name in cohort_order(evaluation.curves["cohort"]) if len(evaluation.curves) else []:
        slug = cohort_name.replace(" ", "-").replace("(", "").replace(")", "")
        curves = evaluation.curves[evaluation.curves["cohort"] == cohort_name]
        chosen_auc = per_class[
            (per_class["classifier"] == fit.chosen) & (per_class["cohort"] == cohort_name)
        ]
        figures.save(
            figures.roc_figure(curves, chosen_auc, cohort_name, f"{cohort_name}: {fit.chosen}"),
            figure_dir / f"roc-{slug}",
        )
        confusion = evaluation.confusion[evaluation.confusion["cohort"] == cohort_name]
        figures.save(
            figures.confusion_figure(confusion, cohort_name), figure_dir / f"confusion-{slug}"
        )
        calibration = evaluation.calibration[evaluation.calibration["cohort"] == cohort_name]
        figures.save(
            figures.calibration_figure(calibration, cohort_name), figure_dir / f"calibration-{slug}"
        )
        decision = evaluation.decision[evaluation.decision["cohort"] == cohort_name]
        figures.save(
            figures.decision_figure(decision, cohort_name), figure_dir / f"decision-{slug}"
        )
    if result.shap is not None:
        shap_result = result.shap
        importance = shap_result.importance()
        importance.to_csv(tables / "shap_importance.csv")
        shap_result.long().to_parquet(out / "shap_values.parquet")
        figures.save(figures.shap_bar_figure(importance), figure_dir / "shap-bar")
        for c in CLASSES:
            figures.save(
                figures.shap_beeswarm_figure(shap_result, c), figure_dir / f"shap-beeswarm-class{c}"
            )
        for position, (case_id, c) in enumerate(_waterfall_cases(result, cohort)):
            index = list(shap_result.data.index).index(case_id)
            title = f"{case_id}: class {c} ({shap_result.output_name})"
            figures.save(
                figures.shap_waterfall_figure(shap_result, index, c, title),
                figure_dir / f"shap-waterfall-{position + 1}",
            )


def _waterfall_cases(result: ArmResult, cohort: pd.DataFrame) -> list[tuple[str, int]]:
    """Two example cases for waterfalls: the first correctly predicted class-2 and class-0 case
    outside the training cohort (else any), each explained for its true class."""
    preds = result.predictions
    chosen = preds[(preds["classifier"] == result.fit.chosen) & preds["label"].notna()]
    chosen = chosen[chosen.index.isin(result.shap.data.index)]
    picks = []
    for c in (2, 0):
        rows = chosen[(chosen["label"] == c) & (chosen["prediction"] == c)]
        outside = rows[~rows["cohort"].str.startswith(result.fit.settings.training)]
        pool = outside if len(outside) else rows
        if len(pool):
            picks.append((str(pool.index[0]), c))
    return picks


def compare_dirs(dir_a: str | Path, dir_b: str | Path, *, seed: int = 0) -> pd.DataFrame:
    """Paired tests between the chosen models of two trained arm folders, per cohort."""
    loaded = []
    for folder in (Path(dir_a), Path(dir_b)):
        summary_path, preds_path = folder / "arm.json", folder / "predictions.parquet"
        for path in (summary_path, preds_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{folder} is not a trained arm folder: {path.name} missing"
                )
        summary = json.loads(summary_path.read_text())
        preds = pd.read_parquet(preds_path)
        preds = preds[preds["classifier"] == summary["chosen"]]
        training = summary.get("settings", {}).get("training", "train")
        loaded.append((f"{summary['arm']} ({summary['chosen']})", preds, training))
    (name_a, preds_a, training), (name_b, preds_b, _) = loaded
    table = compare_arms(
        preds_a, preds_b, name_a=name_a, name_b=name_b, seed=seed, skip=(training,)
    )
    if table.empty:
        raise ValueError(f"{dir_a} and {dir_b} share no labelled case to compare")
    return table
