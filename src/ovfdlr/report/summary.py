"""The report's first screen: the question, the primary endpoint's test, the chosen models,
and the chosen model's macro AUC per arm and view (the forest plot and its table).

The table functions take what a run writes (``performance.csv``, ``comparison.csv``, the
content of ``arm.json``) and return data frames; the ``*_section`` functions turn them into
what the page shows and write them as CSV (and the forest plot as PNG and SVG) beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.classifiers import display_name
from ovfdlr.evaluation import PRIMARY, PRIMARY_TESTS
from ovfdlr.labels import LabelScheme
from ovfdlr.layout import ArmLayout
from ovfdlr.report import formatting as fmt
from ovfdlr.report.reading import Figure, ReportError, RunFolder, Table
from ovfdlr.scoring import (
    APPARENT,
    HELD_OUT,
    NESTED,
    OUT_OF_FOLD,
    in_view_order,
    view_label,
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


def choosing_cohort(summary: dict[str, Any]) -> str | None:
    """The held-out cohort that chose an arm's model (``arm.json``: ``chosen_on`` is
    ``internal``), or None when cross-validation on the training cohort chose it."""
    if summary.get("chosen_on") != "internal":
        return None
    return str((summary.get("settings") or {}).get("internal", "internal"))


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
    training = str((summary.get("settings") or {}).get("training", "train"))
    chosen = str(summary.get("chosen", ""))
    chose = choosing_cohort(summary)
    frame = in_view_order(performance, training)
    frame = frame[frame["classifier"].astype(str) == chosen]
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
    frame = in_view_order(comparison, training)
    return frame[(frame["family"] == PRIMARY) & frame["test"].isin(PRIMARY_TESTS)]


def chosen_models(arms: list[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """One row per arm: the chosen classifier, what chose it, its features, nested CV."""
    rows = []
    for name, summary in arms:
        chose = choosing_cohort(summary)
        folds = (summary.get("settings") or {}).get("folds", "?")
        how = f"{chose} cohort" if chose else f"{folds}-fold patient-grouped CV"
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


def _estimate_cells(frame: pd.DataFrame, digits: int = 3) -> list[str]:
    return [
        fmt.estimate(a, lo, hi, digits)
        for a, lo, hi in zip(frame["auc"], frame["lower"], frame["upper"], strict=True)
    ]


def forest_section(
    run: RunFolder, arms: list[tuple[str, dict, ArmLayout]]
) -> tuple[Figure | None, Table]:
    """The chosen model's macro AUC (95% CI) per arm and view: a forest plot and its table
    (``tables/report/summary-macro-auc.csv``)."""
    from ovfdlr.report import figures

    frames = [
        chosen_macro_auc(name, summary, run.read_csv(arm.table("performance")))
        for name, summary, arm in arms
    ]
    forest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    link = run.write_table("summary-macro-auc", forest)
    rows = [
        [
            r.arm,
            r.model,
            r.view,
            r.claim,
            fmt.number(r.n, 0),
            est,
            r.note,
        ]
        for r, est in zip(forest.itertuples(index=False), _estimate_cells(forest), strict=True)
    ]
    table = Table(
        ["arm", "model", "cohort", "what it can claim", "n", "macro AUC (95% CI)", "note"],
        rows,
        link,
    )
    drawable = (
        forest[pd.to_numeric(forest["auc"], errors="coerce").notna()] if len(forest) else forest
    )
    figure = None
    if len(drawable):
        figure = run.draw(
            figures.forest_figure(drawable),
            "summary-forest",
            "macro AUC (95% CI) per arm and cohort",
        )
    return figure, table


def primary_section(run: RunFolder, training: str) -> dict[str, Any]:
    """The primary endpoint's tests (``tables/report/primary-endpoint.csv``), with the family's
    adjustment, or why there is none."""
    path = run.layout.comparison
    if not path.is_file():
        return {"table": None, "why": "This run compares no arms, so it has no primary endpoint."}
    frame = primary_endpoint(run.read_csv(path), training)
    if frame.empty:
        return {
            "table": None,
            "why": "No comparison of this run belongs to the primary endpoint's family "
            "(see the arm comparison).",
        }
    keep = ["cohort", "scoring", "arm_a", "arm_b", "n", "test", "auc_a", "auc_b", "difference"]
    keep += ["ci_lower", "ci_upper", "statistic", "p_value", "p_adjusted", "adjustment", "note"]
    link = run.write_table("primary-endpoint", frame[[c for c in keep if c in frame.columns]])
    rows = []
    for index, row in frame.iterrows():
        try:
            p, p_holm = fmt.p_value(row.get("p_value")), fmt.p_value(row.get("p_adjusted"))
        except ValueError as exc:  # the CSV's row: the header is row 1
            raise ReportError(f"{path}, row {int(index) + 2}: {exc}") from exc
        rows.append(
            [
                view_label(str(row["cohort"]), str(row["scoring"])),
                fmt.number(row.get("n"), 0),
                f"{fmt.number(row.get('auc_a'))} vs {fmt.number(row.get('auc_b'))}",
                fmt.estimate(row.get("difference"), row.get("ci_lower"), row.get("ci_upper")),
                p,
                p_holm,
                "" if fmt.is_missing(row.get("note")) else str(row["note"]),
            ]
        )
    first = frame.iloc[0]
    adjustment = "" if fmt.is_missing(first.get("adjustment")) else str(first["adjustment"])
    methods = [m for m in frame.get("method", []) if not fmt.is_missing(m)]
    columns = ["cohort", "n", "AUCs", "difference (95% CI)", "p", "p (Holm)", "note"]
    if not any(r[-1] for r in rows):  # no note to show: no empty column
        columns, rows = columns[:-1], [r[:-1] for r in rows]
    return {
        "table": Table(columns, rows, link),
        "pair": f"{first['arm_a']} minus {first['arm_b']}",
        "test": str(first.get("test", "")),
        "method": str(methods[0]) if methods else "",
        "adjustment": adjustment,
        "why": "",
    }


def question(labels: LabelScheme, summaries: list[tuple[str, dict]], training: str) -> dict:
    """What the run asks: the classes, and where the models were fitted and chosen (per arm
    when the arms chose differently)."""
    classes = ", ".join(f"{v} {n}" for v, n in labels.class_names.items())
    chosen_on = {}
    for name, summary in summaries:
        chose = choosing_cohort(summary)
        chosen_on[name] = (
            f"the {chose} cohort" if chose else f"cross-validation on the {training} cohort"
        )
    places = set(chosen_on.values())
    if len(places) == 1:
        choice = f"models are chosen by {places.pop()}"
    else:
        choice = "; ".join(
            f"{arm}'s model is chosen by {where}" for arm, where in chosen_on.items()
        )
    return {"scheme": labels.scheme, "classes": classes, "training": training, "choice": choice}
