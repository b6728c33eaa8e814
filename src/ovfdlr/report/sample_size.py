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
) -> tuple[pd.DataFrame, str, str]:
    """Per arm and basis (:data:`BASES`): the predictor parameters, each criterion's minimum,
    the minimum, the training cohort's size, whether it is met, and events per parameter
    (fewest cases in a class / parameters). Returns the table, the method sentence and the
    assumptions sentence."""
    n_train = int(training_counts.sum())
    proportions = (training_counts / n_train).to_numpy(float)
    rows, method = [], ""
    for name, summary in arms:
        counts = {
            BASES[0]: int(summary.get("n_input_features") or 0),
            BASES[1]: len(summary.get("selected_features") or []),
        }
        for basis, parameters in counts.items():
            if parameters < 1:
                continue
            if labels.is_binary:
                positive = float(training_counts.get(f"class {labels.positive}", 0)) / n_train
                result = binary_sample_size(parameters, positive, c_statistic=anticipated_c)
            else:
                result = multinomial_sample_size(parameters, proportions, c_statistic=anticipated_c)
            method = result.method
            row: dict[str, Any] = {"arm": name, "basis": basis, "parameters": parameters}
            row.update({f"minimum by {k}": v for k, v in result.criteria.items()})
            row.update(
                {
                    "minimum": result.n,
                    "training cases": n_train,
                    "met": "yes" if n_train >= result.n else "no",
                    "events per parameter": float(training_counts.min()) / parameters,
                }
            )
            rows.append(row)
    shares = ", ".join(
        f"{c} {p:.0%}" for c, p in zip(training_counts.index, proportions, strict=True)
    )
    assumptions = (
        f"class proportions of the training cohort ({shares}; n = {n_train}); an anticipated "
        f"C-statistic of {anticipated_c:g} for every pair of classes (config "
        "evaluation.anticipated_c); target shrinkage 0.9; optimism in Nagelkerke's R\u00b2 at "
        + (
            "most 0.05; the outcome proportion estimated within \u00b10.05 (95% confidence). "
            if labels.is_binary
            else "most 0.05, with an anticipated Nagelkerke R\u00b2 of 0.15 for the whole "
            "multinomial model; each class proportion estimated within \u00b10.05 (95% "
            "confidence, Bonferroni over the classes). "
        )
        + "Parameters: one per feature (the candidate features are those that entered selection)."
    )
    return pd.DataFrame(rows), method, assumptions
