"""The report's sample-size section, as tables: cases (events) per class in each cohort, and
the minimum training-cohort size by Riley et al.'s criteria for each arm's model.

The minimum sample size is computed twice per arm, because the number of predictor parameters
it needs is a matter of definition here: with every candidate feature that entered selection
(what Riley et al. ask for: selection spends degrees of freedom) and with the final model's
features only (a lower bound that ignores selection). Both use the training cohort's class
proportions and an anticipated C-statistic for every pair of classes (the config's
``evaluation.anticipated_c``); :mod:`ovfdlr.stats.samplesize` has the formulas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.labels import LabelScheme
from ovfdlr.report import formatting as fmt
from ovfdlr.report.reading import RunFolder, frame_table
from ovfdlr.scoring import rows_in_cohort_order
from ovfdlr.stats import StatsError
from ovfdlr.stats.samplesize import binary_sample_size, multinomial_sample_size

#: The two counts of predictor parameters an arm's minimum sample size is given for.
BASES = ("candidate features", "selected features")


def class_columns(classes: pd.DataFrame, labels: LabelScheme) -> list[str]:
    """The columns of ``cohort_classes.csv`` that hold the scheme's classes, in its order."""
    wanted = [f"class {v}" for v in labels.values]
    return [c for c in wanted if c in classes.columns]


def cases_table(classes: pd.DataFrame, labels: LabelScheme) -> pd.DataFrame:
    """Per cohort: cases, patients, and per class its cases (the events of its one-vs-rest
    models) with their share of the cohort."""
    columns = class_columns(classes, labels)
    frame = classes[~classes.iloc[:, 0].astype(str).str.startswith("(")]
    rows = []
    for _, row in frame.iterrows():
        counts = pd.to_numeric(row[columns], errors="coerce").fillna(0).astype(int)
        total = int(counts.sum())
        out: dict[str, Any] = {"cohort": str(row.iloc[0]), "labelled cases": total}
        if "patients" in row:
            out["patients"] = row["patients"]
        for column, count in counts.items():
            share = count / total if total else np.nan
            out[f"{column}: cases"] = int(count)
            out[f"{column}: share"] = share
        out["fewest in a class"] = int(counts.min()) if len(counts) else 0
        rows.append(out)
    return pd.DataFrame(rows)


def minimum_table(
    arms: list[tuple[str, dict]],
    training_counts: pd.Series,
    labels: LabelScheme,
    anticipated_c: float,
    patients: int | None = None,
) -> tuple[pd.DataFrame, str, str]:
    """Per arm and basis (:data:`BASES`): the predictor parameters (per sub-model, for K
    classes), each criterion's minimum, the minimum, the training cohort's size, whether it is
    met, and events per parameter (fewest cases in a class over the model's parameters: the
    per-sub-model count times K - 1). Returns the table, the method sentence and the
    assumptions sentence (its numbers read from the calculation's own record)."""
    n_train = int(training_counts.sum())
    proportions = (training_counts / n_train).to_numpy(float)
    k = labels.n_classes
    rows, method, record = [], "", {}
    for name, summary in arms:
        counts = {
            BASES[0]: int(summary.get("n_input_features") or 0),
            BASES[1]: len(summary.get("selected_features") or []),
        }
        for basis, parameters in counts.items():
            if parameters < 1:
                continue
            row: dict[str, Any] = {"arm": name, "basis": basis, "parameters": parameters}
            try:
                if labels.is_binary:
                    positive = float(training_counts.get(f"class {labels.positive}", 0))
                    result = binary_sample_size(
                        parameters, positive / n_train, c_statistic=anticipated_c
                    )
                else:
                    result = multinomial_sample_size(
                        parameters, proportions, c_statistic=anticipated_c
                    )
            except StatsError as exc:  # e.g. a class without training cases: say why
                rows.append(row | {"training cases": n_train, "met": f"not computed: {exc}"})
                continue
            method, record = result.method, result.assumptions
            row.update({f"minimum by {c}": v for c, v in result.criteria.items()})
            row.update(
                {
                    "minimum": result.n,
                    "training cases": n_train,
                    "met": "yes" if n_train >= result.n else "no",
                    "events per parameter": float(training_counts.min())
                    / (parameters * max(1, k - 1)),
                }
            )
            rows.append(row)
    return (
        pd.DataFrame(rows),
        method,
        _assumptions(record, training_counts, labels, anticipated_c, patients),
    )


def _assumptions(
    record: dict,
    training_counts: pd.Series,
    labels: LabelScheme,
    anticipated_c: float,
    patients: int | None,
) -> str:
    """What the calculation assumed, in words, from its record (:class:`SampleSize`)."""
    n_train = int(training_counts.sum())
    shares = ", ".join(
        f"{c} {v / n_train:.0%}"
        for c, v in zip(training_counts.index, training_counts, strict=True)
    )
    shrinkage = record.get("shrinkage (target)", 0.9)
    optimism = record.get("optimism (Nagelkerke R², max)", 0.05)
    margin = record.get(
        "margin (overall risk, 95%)",
        record.get("margin (class proportions, simultaneous 95%)", 0.05),
    )
    unit = f"{n_train} vertebrae"
    if patients is not None and patients < n_train:
        unit += (
            f" of {patients} patients; the criteria assume independent rows, so with several "
            "vertebrae per patient the effective size is smaller"
        )
    if labels.is_binary:
        pairs = f"an anticipated C-statistic of {anticipated_c:g}"
        optimism_text = f"optimism in Nagelkerke's R\u00b2 at most {optimism:g}"
        margin_text = f"the outcome proportion within \u00b1{margin:g} (95% confidence)"
    else:
        nagelkerke = record.get("R2_Nagelkerke (multinomial)", 0.15)
        pairs = f"an anticipated C-statistic of {anticipated_c:g} for every pair of classes"
        optimism_text = (
            f"optimism in the multinomial model's Nagelkerke R\u00b2 at most {optimism:g}, "
            f"from an anticipated Nagelkerke R\u00b2 of {nagelkerke:g} for the whole model "
            "(a fixed conservative value, not derived from the C-statistic)"
        )
        margin_text = (
            f"each class proportion within \u00b1{margin:g} (95% confidence, Bonferroni over "
            "the classes)"
        )
    return (
        f"Training cohort: {unit}; class proportions {shares}. {pairs[0].upper()}{pairs[1:]} "
        "(config evaluation.anticipated_c) gives the Cox-Snell R\u00b2 of the shrinkage "
        f"criterion; target shrinkage {shrinkage:g}; {optimism_text}; {margin_text}. "
        "Parameters: one per feature and sub-model (the candidate features are those that "
        "entered selection). The criteria are for (penalised) regression models; for flexible "
        "classifiers (SVM, KNN, tree ensembles, MLP) they are a lower bound."
    )


def sample_size_section(
    run: RunFolder,
    summaries: list[tuple[str, dict]],
    labels: LabelScheme,
    training: str,
    anticipated_c: float,
) -> dict[str, Any] | None:
    """Cases per class per cohort and each arm's minimum sample size (see
    :mod:`ovfdlr.report.sample_size`), written as ``tables/report/sample-size-*.csv``."""
    classes = run.read_csv(run.layout.table("cohort_classes"))
    columns = class_columns(classes, labels)
    rows = classes[classes.iloc[:, 0].astype(str) == training]
    if not columns or rows.empty:
        return None
    cases = rows_in_cohort_order(cases_table(classes, labels), training)
    counts = pd.to_numeric(rows.iloc[0][columns], errors="coerce").fillna(0)
    patients = pd.to_numeric(rows.iloc[0].get("patients"), errors="coerce")
    minimum, method, assumptions = minimum_table(
        summaries, counts, labels, anticipated_c, None if pd.isna(patients) else int(patients)
    )
    shown = frame_table(cases, run.write_table("sample-size-cases", cases), digits=3)
    for row in shown.rows:  # shares as percentages
        for i, column in enumerate(cases.columns):
            if column.endswith(": share") and row[i] != fmt.MISSING:
                row[i] = f"{float(row[i]):.0%}"
    shortfalls = [
        f"{r['arm']} needs at least {r['minimum']:,} training cases with its "
        f"{r['parameters']:,} {r['basis']} (the training cohort has {r['training cases']:,})"
        for _, r in minimum.iterrows()
        if r["met"] == "no"
    ]
    return {
        "cases": shown,
        "minimum": frame_table(minimum, run.write_table("sample-size-minimum", minimum)),
        "method": method,
        "assumptions": assumptions,
        "shortfalls": shortfalls,
    }


def anticipated_c(config_text: str) -> float:
    """``evaluation.anticipated_c`` of the resolved config (its default when absent)."""
    import yaml

    from ovfdlr.config import EvaluationConfig

    default = EvaluationConfig().anticipated_c
    try:
        data = yaml.safe_load(config_text) or {}
        value = (data.get("evaluation") or {}).get("anticipated_c", default)
        return float(value)
    except (yaml.YAMLError, AttributeError, TypeError, ValueError):
        return default
