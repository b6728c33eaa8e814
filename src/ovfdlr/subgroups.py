"""Discrimination by subgroup: the chosen model's macro AUC per centre, sex and age band.

For every validation cohort (each held-out view), the cases are split by

- ``centre`` (the manifest's acquiring centre),
- ``sex`` (the first letter of the manifest's ``sex``, upper case), and
- ``age band``: the tertiles of the *training* cohort's ages (cut points fixed before any
  validation case is seen, so every cohort is split at the same ages),

and the macro one-vs-rest AUC (the AUC of the positive class for two classes) with its CI is
computed in each subgroup (:func:`ovfdlr.evaluation.auc_summary`: clustered by patient where
a patient gives several vertebrae). A subgroup without enough cases for a CI keeps its point
estimate, and its ``note`` says why (e.g. ``"CI n/a: 1 case in class 2"``); one without a case
of some class has no macro AUC (``"AUC n/a: no case in class 2"``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ovfdlr import stats
from ovfdlr.labels import LabelScheme
from ovfdlr.scoring import HELD_OUT
from ovfdlr.stats.variance import UNCONDITIONAL

SUBGROUP_COLUMNS = [
    "cohort",
    "scoring",
    "subgroup",
    "level",
    "n",
    "patients",
    "macro_auc",
    "macro_auc_lower",
    "macro_auc_upper",
    "auc_ci_method",
    "note",
]


def age_bands(cohort: pd.DataFrame, training: str) -> tuple[float, float] | None:
    """The tertile cut points of the training cohort's ages (None without ages)."""
    if "age" not in cohort.columns:
        return None
    ages = pd.to_numeric(cohort.loc[cohort["cohort"] == training, "age"], errors="coerce")
    ages = ages.dropna()
    if ages.nunique() < 3:
        return None
    low, high = np.quantile(ages.to_numpy(float), [1 / 3, 2 / 3])
    return float(low), float(high)


def _band(age: pd.Series, cuts: tuple[float, float]) -> pd.Series:
    low, high = cuts
    values = pd.to_numeric(age, errors="coerce")
    names = np.select(
        [values <= low, values <= high, values > high],
        [f"age <= {low:g}", f"{low:g} < age <= {high:g}", f"age > {high:g}"],
        default="age unknown",
    )
    return pd.Series(names, index=age.index)


def subgroup_variables(cohort: pd.DataFrame, training: str) -> dict[str, pd.Series]:
    """The subgroup of every case (index case_id) for each variable the manifest has."""
    out: dict[str, pd.Series] = {}
    if "centre" in cohort.columns:
        out["centre"] = cohort["centre"].astype(str)
    if "sex" in cohort.columns:
        out["sex"] = cohort["sex"].astype("string").str.strip().str.upper().str[0].fillna("?")
    cuts = age_bands(cohort, training)
    if cuts is not None:
        out["age band"] = _band(cohort["age"], cuts)
    return out


def subgroup_table(
    preds: pd.DataFrame,
    cohort: pd.DataFrame,
    labels: LabelScheme,
    training: str,
    *,
    level: float = 0.95,
    seed: int = 0,
    variance: str = UNCONDITIONAL,
) -> pd.DataFrame:
    """Macro AUC with CI per validation cohort x subgroup for one model's predictions.

    ``preds``: one model's predictions (one row per case and view, index case_id);
    ``cohort``: the manifest (index case_id). Rows in the order cohort, subgroup, level.
    """
    from ovfdlr.evaluation import auc_summary

    variables = subgroup_variables(cohort, training)
    rows = []
    held = preds[(preds["scoring"] == HELD_OUT) & preds["label"].notna()]
    for name in dict.fromkeys(held["cohort"]):
        view = held[held["cohort"] == name]
        for variable, groups in variables.items():
            of_case = groups.reindex(view.index)
            for level_name in sorted(of_case.dropna().unique(), key=str):
                part = view[of_case == level_name]
                y = part["label"].astype(int).to_numpy()
                proba = part[labels.proba_columns].to_numpy(np.float64)
                patients = cohort["patient_id"].reindex(part.index).astype(str).to_numpy()
                row = {
                    "cohort": name,
                    "scoring": HELD_OUT,
                    "subgroup": variable,
                    "level": level_name,
                    "n": len(part),
                    "patients": int(pd.unique(patients).size),
                }
                try:
                    found, _, _ = auc_summary(
                        y, proba, labels, level=level, cohort=name, seed=seed,
                        groups=patients, variance=variance, curves=False,
                    )  # fmt: skip
                except stats.StatsError as exc:  # e.g. every case of one class
                    rows.append(row | {"note": f"AUC n/a: {exc}"})
                    continue
                rows.append(row | {k: found[k] for k in SUBGROUP_COLUMNS if k in found})
    return pd.DataFrame(rows, columns=SUBGROUP_COLUMNS)


__all__ = ["SUBGROUP_COLUMNS", "age_bands", "subgroup_table", "subgroup_variables"]
