"""The report's first screen, as tables: the chosen model's macro AUC per arm and view (the
forest plot's rows), the primary endpoint's test, and the chosen models.

Each function takes the tables a run writes (``performance.csv``, ``comparison.csv``, the
content of ``arm.json``) and returns a data frame; :mod:`ovfdlr.report.context` turns them into
what the page shows and writes them as CSV beside the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.classifiers import display_name
from ovfdlr.evaluation import PRIMARY, PRIMARY_TESTS
from ovfdlr.scoring import (
    APPARENT,
    HELD_OUT,
    NESTED,
    OUT_OF_FOLD,
    view_label,
    view_sort_key,
    with_scoring,
)

#: What an estimate of each kind can claim, in a few words (the forest plot's second line).
VIEW_CLAIMS = {
    APPARENT: "apparent: optimistic (fitted on these rows)",
    OUT_OF_FOLD: "out-of-fold: optimistic (these folds tuned it)",
    NESTED: "nested CV: estimates the whole procedure",
    HELD_OUT: "held out: independent estimate",
}
CHOSE_CLAIM = "held out, but chose the model: optimistic"

FOREST_COLUMNS = ["arm", "model", "view", "claim", "n", "auc", "lower", "upper", "note"]


def view_claim(scoring: str, cohort: str, chose: str | None = None) -> str:
    """What the estimate of a view can claim; ``chose`` names the held-out cohort (if any) on
    which the arm chose its model."""
    if scoring == HELD_OUT and chose is not None and cohort == chose:
        return CHOSE_CLAIM
    return VIEW_CLAIMS.get(scoring, scoring)


def chosen_macro_auc(arm: str, summary: dict[str, Any], performance: pd.DataFrame) -> pd.DataFrame:
    """The chosen model's macro one-vs-rest AUC with 95% CI on every view of one arm, in
    reading order (training views, then internal, external, prospective, others), with what
    each view can claim and, where there is no estimate or CI, the reason (the table's note).

    ``summary`` is the arm's ``arm.json`` content (``chosen``, ``chosen_on``, ``settings``).
    """
    settings = summary.get("settings") or {}
    training = str(settings.get("training", "train"))
    chosen = str(summary.get("chosen", ""))
    chose = (
        str(settings.get("internal", "internal"))
        if summary.get("chosen_on") == "internal"
        else None
    )
    frame = with_scoring(performance, training)
    frame = frame[frame["classifier"].astype(str) == chosen]
    frame = frame.assign(
        _order=view_sort_key(frame["cohort"], frame["scoring"], training)
    ).sort_values("_order", kind="stable")
    rows = [
        {
            "arm": arm,
            "model": display_name(chosen),
            "view": view_label(str(row["cohort"]), str(row["scoring"])),
            "claim": view_claim(str(row["scoring"]), str(row["cohort"]), chose),
            "n": row.get("n"),
            "auc": row.get("macro_auc"),
            "lower": row.get("macro_auc_lower"),
            "upper": row.get("macro_auc_upper"),
            "note": "" if pd.isna(row.get("note")) else str(row.get("note")),
        }
        for _, row in frame.iterrows()
    ]
    return pd.DataFrame(rows, columns=FOREST_COLUMNS)


def primary_endpoint(comparison: pd.DataFrame, training: str = "train") -> pd.DataFrame:
    """The rows of ``comparison.csv`` that make up the primary endpoint: its family's tests of
    the macro AUC (or, with two classes, of the AUC), in cohort order."""
    if "family" not in comparison.columns or comparison.empty:
        return comparison.iloc[0:0]
    frame = with_scoring(comparison, training)
    rows = frame[(frame["family"] == PRIMARY) & frame["test"].isin(PRIMARY_TESTS)]
    order = view_sort_key(rows["cohort"], rows["scoring"], training) if len(rows) else []
    return rows.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order")


def chosen_models(arms: list[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """One row per arm: the chosen classifier, what chose it, its features, nested CV."""
    rows = []
    for name, summary in arms:
        settings = summary.get("settings") or {}
        on = summary.get("chosen_on")
        how = (
            f"{settings.get('internal', 'internal')} cohort"
            if on == "internal"
            else f"{settings.get('folds', '?')}-fold patient-grouped CV"
        )
        score = summary.get("chosen_score")
        if score is not None and np.isfinite(score):
            how += f", {float(score):.3f}"
        nested = summary.get("nested_cv") or {}
        if nested.get("ran"):
            nested_text = f"ran ({len(nested.get('folds') or [])} outer folds)"
        else:
            nested_text = f"not run: {nested.get('reason') or 'not recorded'}"
        selected = len(summary.get("selected_features") or [])
        rows.append(
            {
                "arm": name,
                "chosen model": display_name(str(summary.get("chosen", ""))),
                "chosen on (best macro AUC)": how,
                "features": f"{summary.get('n_input_features', '?')} \u2192 {selected}",
                "nested CV": nested_text,
            }
        )
    return pd.DataFrame(rows)
