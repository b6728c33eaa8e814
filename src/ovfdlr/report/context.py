"""Reading a run folder into what the report template shows.

Only files that ``ovfdlr run`` writes are read: ``run.json``, ``config.yaml``, the CSV tables
under ``tables/`` and ``arms/<arm>/tables/``, ``arms/<arm>/arm.json`` and ``selection.json``,
the PNG figures, and the fine-tuning curves under ``features/``. Images of the cohort (CT
volumes, masks, DICOM files) are never opened, so nothing from an image header can reach the
report; cases appear only under the manifest's ``case_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ovfdlr import __version__
from ovfdlr.classifiers import display_name
from ovfdlr.labels import LabelScheme, astlof
from ovfdlr.layout import ArmLayout, RunLayout
from ovfdlr.records import RecordError, read_run, to_data
from ovfdlr.report import formatting as fmt
from ovfdlr.report.checklists import checklist_section
from ovfdlr.report.limitations import limitations_section
from ovfdlr.report.reading import (
    COLLAPSE_ROWS,
    Figure,
    Link,
    ReportError,
    RunFolder,
    Table,
    ci_text,
    frame_table,
)
from ovfdlr.report.sample_size import anticipated_c, sample_size_section
from ovfdlr.report.summary import choosing_cohort, forest_section, primary_section, question
from ovfdlr.scoring import (
    CLAIMS,
    cohort_order,
    in_view_order,
    rows_in_cohort_order,
    view_label,
    view_order,
    view_slug,
    view_sort_key,
    with_scoring,
)


def required_run_files(layout: RunLayout) -> list[Path]:
    """The files of a run folder the report cannot do without (besides each arm's)."""
    return [
        layout.run_json,
        layout.config,
        layout.table("cohort_classes"),
        layout.table("cohort_centres"),
    ]


def required_arm_files(arm: ArmLayout) -> list[Path]:
    """The files of an arm folder the report cannot do without."""
    return [
        arm.arm_json,
        arm.selection_json,
        arm.table("performance"),
        arm.table("selected_features"),
        arm.table("selection_stability"),
        arm.figures / "selection-funnel.png",
        arm.figures / "lasso-cv.png",
    ]


CALIBRATION_COLUMNS = {
    "brier": "Brier score",
    "ece_top_label": "ECE (top label)",
    "ece_classwise": "ECE (class-wise)",
}


@dataclass
class ArmView:
    """Everything the report shows of one arm."""

    name: str
    statement: str
    untrained: bool
    chosen: str
    chosen_name: str
    chosen_note: str
    folder: str
    funnel: Figure
    lasso: Figure
    lasso_C: str
    features: Table
    stability: Table
    performance: Table
    performance_chosen: Table
    hyperparameters: Table
    subgroups: Table | None
    calibration_regression: Table | None
    roc: list[Figure]
    confusion: list[Figure]
    calibration: list[Figure]
    calibration_summary: Table | None
    decision: list[Figure]
    shap: dict[str, Any] | None
    finetune_curve: Figure | None
    gradcam: list[Figure]
    table_links: list[tuple[str, str]]
    missing_figures: list[str]
    warnings: list[str]


# ---------------------------------------------------------------------------------------------
# checks


def check_required(run: RunFolder, manifest: dict) -> None:
    """Raise :class:`ReportError` naming every required file that is missing."""
    missing = [p for p in required_run_files(run.layout) if not p.is_file()]
    for name, info in (manifest.get("arms") or {}).items():
        missing += [p for p in required_arm_files(run.arm(name, info)) if not p.is_file()]
    if missing:
        listed = "\n  ".join(str(p) for p in missing)
        raise ReportError(f"the run folder {run.root} lacks required file(s):\n  {listed}")


def read_manifest(run: RunFolder) -> dict:
    """``run.json`` (:class:`ovfdlr.records.RunRecord`, migrated from older versions) as JSON
    data, with at least one arm."""
    path = run.layout.run_json
    if not path.is_file():
        raise ReportError(f"the run folder {run.root} lacks required file(s):\n  {path}")
    try:
        manifest = to_data(read_run(path))
    except RecordError as exc:
        raise ReportError(str(exc)) from None
    arms = manifest.get("arms")
    if not arms:
        raise ReportError(f"{path}: 'arms' must name at least one arm with its folder")
    return manifest


# ---------------------------------------------------------------------------------------------
# tables


def performance_table(
    run: RunFolder, path: Path, chosen: str, training: str = "train", only_chosen: bool = False
) -> Table:
    """Every classifier (or only the chosen one) on every cohort and scoring; the chosen
    model's rows first and marked."""
    frame = with_scoring(run.read_csv(path), training)
    if only_chosen:
        frame = frame[frame["classifier"].astype(str) == chosen]
    frame = frame.assign(
        _chosen=frame["classifier"] != chosen,
        _cohort=view_sort_key(frame["cohort"], frame["scoring"], training),
    ).sort_values(["_chosen", "classifier", "_cohort"], kind="stable")
    rows, classes = [], []
    for _, row in frame.iterrows():
        key = str(row["classifier"])
        name = display_name(key) + (" (chosen)" if key == chosen else "")
        rows.append(
            [
                name,
                str(row["cohort"]),
                str(row["scoring"]),
                fmt.number(row.get("n"), 0),
                ci_text(row, "macro_auc"),
                ci_text(row, "micro_auc"),
                ci_text(row, "accuracy"),
                ci_text(row, "sensitivity"),
                ci_text(row, "specificity"),
                ci_text(row, "f1"),
                "" if fmt.is_missing(row.get("note")) else str(row["note"]),
            ]
        )
        classes.append("chosen" if key == chosen else "")
    columns = [
        "classifier",
        "cohort",
        "scoring",
        "n",
        "macro AUC (95% CI)",
        "micro AUC (95% CI)",
        "accuracy (95% CI)",
        "sensitivity (macro)",
        "specificity (macro)",
        "F1 (macro)",
        "note",
    ]
    caption = "; ".join(CLAIMS.values())
    return Table(columns, rows, run.link(path), classes, caption=caption)


def features_table(run: RunFolder, coefficients: Path, stability: Path) -> Table:
    """The final features with their LASSO coefficient per class and fold frequency."""
    coef = run.read_csv(coefficients, index_col=0)
    freq = run.read_csv(stability, index_col=0).iloc[:, 0] if stability.is_file() else None
    order = coef.abs().max(axis=1).sort_values(ascending=False, kind="stable").index
    rows = []
    for feature in order:
        share = freq.get(feature) if freq is not None else None
        rows.append(
            [str(feature)]
            + [fmt.number(coef.at[feature, c], 3) for c in coef.columns]
            + [fmt.MISSING if fmt.is_missing(share) else f"{float(share):.0%}"]
        )
    columns = ["feature", *(f"coefficient, {c}" for c in coef.columns), "selected in CV folds"]
    return Table(columns, rows, run.link(coefficients))


def stability_table(run: RunFolder, path: Path, selected: list[str], top: int = 25) -> Table:
    """How often each feature was selected across the CV folds (the most frequent ``top``)."""
    freq = run.read_csv(path, index_col=0).iloc[:, 0]
    rows = [
        [str(f), f"{float(v):.0%}", "yes" if f in selected else "no"]
        for f, v in freq.head(top).items()
    ]
    caption = (
        f"{len(freq)} features were selected in at least one fold"
        + (f"; the {top} most frequent are shown" if len(freq) > top else "")
        + "."
    )
    return Table(
        ["feature", "selected in CV folds", "in the final model"], rows, run.link(path), [], caption
    )


def hyperparameters_table(run: RunFolder, name: str, summary: dict, cv_search: Path) -> Table:
    """Per classifier: the hyper-parameters its patient-grouped CV search chose, the mean (SD)
    macro AUC of that setting over the folds, and how many settings were tried."""
    best = summary.get("best_params") or {}
    search = run.read_csv(cv_search) if cv_search.is_file() else pd.DataFrame()
    chosen = str(summary.get("chosen", ""))
    rows = []
    for key, params in best.items():
        scores = pd.Series(dtype=float)
        tried = np.nan
        if not search.empty:
            mine = search[search["classifier"].astype(str) == key]
            scores = mine.loc[mine["params"].astype(str) == str(params), "macro_auc"]
            tried = mine["params"].nunique()
        rows.append(
            {
                "classifier": display_name(key) + (" (chosen)" if key == chosen else ""),
                "hyper-parameters": str(params),
                "CV macro AUC, mean": scores.mean() if len(scores) else np.nan,
                "SD over folds": scores.std(ddof=1) if len(scores) > 1 else np.nan,
                "folds": len(scores),
                "settings tried": tried,
            }
        )
    frame = pd.DataFrame(rows)
    link = run.write_table(f"{name}-hyperparameters", frame)
    table = frame_table(frame, link)
    table.row_classes = ["chosen" if "(chosen)" in r[0] else "" for r in table.rows]
    return table


def subgroups_table(run: RunFolder, path: Path, training: str = "train") -> Table | None:
    """The chosen model's macro AUC (95% CI) per validation cohort and subgroup."""
    if not path.is_file():
        return None
    frame = in_view_order(run.read_csv(path), training)
    rows = [
        [
            view_label(str(r["cohort"]), str(r["scoring"])),
            str(r["subgroup"]),
            str(r["level"]),
            fmt.number(r.get("n"), 0),
            fmt.number(r.get("patients"), 0),
            ci_text(r, "macro_auc"),
            "" if fmt.is_missing(r.get("note")) else str(r["note"]),
        ]
        for _, r in frame.iterrows()
    ]
    columns = ["cohort", "subgroup", "level", "n", "patients", "macro AUC (95% CI)", "note"]
    return Table(columns, rows, run.link(path))


def calibration_summary_table(run: RunFolder, path: Path, training: str) -> Table | None:
    """Brier score and both ECEs (95% CI) of the chosen model per view; the CI method as the
    caption (older tables without CIs show the estimates alone)."""
    if not path.is_file():
        return None
    frame = in_view_order(run.read_csv(path), training)
    rows = [
        [view_label(str(r["cohort"]), str(r["scoring"]))]
        + [ci_text(r, c) for c in CALIBRATION_COLUMNS]
        for _, r in frame.iterrows()
    ]
    columns = ["cohort", *(f"{t} (95% CI)" for t in CALIBRATION_COLUMNS.values())]
    method = str(frame["method"].iloc[0]) if len(frame) and "method" in frame else ""
    caption = "the chosen model's calibration per cohort" + (f"; CIs: {method}" if method else "")
    return Table(columns, rows, run.link(path), caption=caption)


def calibration_regression_table(
    run: RunFolder, path: Path, labels: LabelScheme, training: str = "train"
) -> Table | None:
    """Calibration intercept and slope (95% CI) per cohort and class (ideal: 0 and 1)."""
    if not path.is_file():
        return None
    # by view, then class (the stable view sort keeps the class order within a view)
    frame = in_view_order(run.read_csv(path).sort_values("class", kind="stable"), training)
    rows = []
    for _, r in frame.iterrows():
        try:
            name = labels.label_text(int(r["class"]))
        except (ValueError, TypeError):
            name = str(r["class"])
        rows.append(
            [
                view_label(str(r["cohort"]), str(r["scoring"])),
                name,
                fmt.number(r.get("n"), 0),
                fmt.number(r.get("n_events"), 0),
                ci_text(r, "intercept", 2),
                ci_text(r, "slope", 2),
                "" if fmt.is_missing(r.get("note")) else str(r["note"]),
            ]
        )
    columns = ["cohort", "class", "n", "events", "intercept (95% CI)", "slope (95% CI)", "note"]
    method = str(frame["method"].iloc[0]) if len(frame) and "method" in frame else ""
    caption = "ideal: intercept 0, slope 1" + (f"; {method}" if method else "")
    return Table(columns, rows, run.link(path), caption=caption)


def comparison_tables(
    run: RunFolder, path: Path, training: str = "train"
) -> list[tuple[str, Table]]:
    """``tables/comparison.csv``: one table per pair of arms, p-values within [0, 1]."""
    frame = with_scoring(run.read_csv(path), training)
    tables = []
    for (arm_a, arm_b), pair in frame.groupby(["arm_a", "arm_b"], sort=False):
        rows = []
        pair = pair.assign(
            _cohort=view_sort_key(pair["cohort"], pair["scoring"], training)
        ).sort_values("_cohort", kind="stable")
        for number, (_, row) in enumerate(pair.iterrows(), start=2):
            try:
                p = fmt.p_value(row.get("p_value"))
                p_holm = fmt.p_value(row.get("p_adjusted"))
            except ValueError as exc:
                raise ReportError(f"{path}, row {number}: {exc}") from exc
            notes = [row.get("selection"), row.get("note")]
            note = "; ".join(str(n) for n in notes if not fmt.is_missing(n) and str(n))
            rows.append(
                [
                    view_label(str(row["cohort"]), str(row["scoring"])),
                    fmt.number(row.get("n"), 0),
                    str(row.get("test", "")),
                    str(row.get("class", "")),
                    fmt.number(row.get("auc_a")),
                    fmt.number(row.get("auc_b")),
                    fmt.estimate(row.get("difference"), row.get("ci_lower"), row.get("ci_upper")),
                    fmt.number(row.get("statistic"), 2),
                    p,
                    p_holm,
                    "" if fmt.is_missing(row.get("family")) else str(row["family"]),
                    note,
                ]
            )
        columns = [
            "cohort",
            "n",
            "test",
            "class",
            f"AUC {arm_a}",
            f"AUC {arm_b}",
            "difference (95% CI)",
            "statistic",
            "p",
            "p (Holm)",
            "family",
            "note",
        ]
        tables.append((f"{arm_a} vs {arm_b}", Table(columns, rows, run.link(path))))
    return tables


# ---------------------------------------------------------------------------------------------
# arms


def weights_statement(name: str, info: dict) -> tuple[str, bool]:
    """A plain sentence on an arm's deep weights, and whether its network is untrained."""
    sets = ", ".join(info.get("feature_sets") or []) or "no feature sets recorded"
    deep = info.get("deep")
    if not deep:
        return f"{name}: no deep features (feature sets: {sets}).", False
    weights = deep.get("weights") or "weights not recorded"
    label = deep.get("label") or weights
    untrained = deep.get("pretrained") is False
    if untrained:
        text = (
            f"{name}: deep features from an UNTRAINED ResNet-50 ({label}; {weights}): random "
            "weights that carry no pretrained knowledge"
        )
    else:
        text = f"{name}: deep features from {label} (weights: {weights})"
    if deep.get("finetuned"):
        text += (
            ", fine-tuned on the whole training cohort (so its cross-validated figures are "
            "optimistic: the network had seen every training fold)"
        )
    text += _device_statement(deep)
    return f"{text}. Feature sets: {sets}.", untrained


def _device_statement(deep: dict) -> str:
    """Where the network ran (runs made before the device was recorded ran on the CPU)."""
    device = {"cuda": "a CUDA GPU", "cpu": "the CPU"}.get(deep.get("device") or "cpu", "the CPU")
    text = f"; computed on {device}"
    if deep.get("mixed_precision"):
        text += " in mixed precision (float16 on CUDA, bfloat16 on the CPU)"
    if deep.get("device_note"):
        text += f" ({deep['device_note']})"
    return text


def _chosen_note(summary: dict[str, Any]) -> str:
    """How the arm's model was chosen, and what that means for the cohort that chose it."""
    internal = choosing_cohort(summary)
    if internal is not None:
        return (
            f"chosen on the {internal} cohort: its AUC there picked the model and is not an "
            "independent estimate"
        )
    return "chosen on the training cross-validation"


def _cohort_figures(
    run: RunFolder, figures: Path, kind: str, views: list[tuple[str, str]], missing: list[str]
) -> list[Figure]:
    found = []
    for cohort, scoring in views:
        path = figures / f"{kind}-{view_slug(cohort, scoring)}.png"
        label = view_label(cohort, scoring)
        if path.is_file():
            found.append(run.figure(path, label))
        else:
            missing.append(f"{kind} figure for cohort '{label}' ({run.link(path)})")
    return found


def arm_labels(summary: dict) -> LabelScheme:
    """The label scheme an arm was trained on (:func:`ovfdlr.records.read_arm` gives arms
    written before schemes the ASTLOF one)."""
    return LabelScheme.from_dict(summary["labels"])


def _shap(run: RunFolder, folder: Path, labels: LabelScheme) -> dict[str, Any] | None:
    arm = ArmLayout(folder)
    figures = arm.figures
    bar = figures / "shap-bar.png"
    if not bar.is_file():
        return None
    importance = arm.table("shap_importance")
    table = None
    if importance.is_file():
        frame = run.read_csv(importance).head(15)
        table = frame_table(frame, run.link(importance), caption="mean |SHAP| per class")
    return {
        "bar": run.figure(bar, "global importance"),
        "beeswarms": [
            run.figure(p, labels.label_text(c))
            for c in labels.values
            if (p := figures / f"shap-beeswarm-class{c}.png").is_file()
        ],
        "waterfalls": [
            run.figure(p, f"example {p.stem.rsplit('-', 1)[-1]}")
            for p in sorted(figures.glob("shap-waterfall-*.png"))
        ],
        "importance": table,
    }


def _finetune(run: RunFolder, name: str) -> tuple[Figure | None, list[Figure]]:
    """The fine-tuning curve (drawn here, saved as PNG and SVG under ``figures/``) and the
    Grad-CAM overlays of an arm, when fine-tuning ran."""
    from ovfdlr.report import figures

    curve_path = run.layout.finetune_curve(name)
    curve = None
    if curve_path.is_file():
        frame = run.read_csv(curve_path)
        stem = run.layout.figure(f"finetune-{name}")
        figures.save(figures.finetune_figure(frame, name), stem)
        curve = run.figure(stem.with_suffix(".png"), f"fine-tuning ({name})")
    gradcam = [
        run.figure(p, p.stem.removeprefix("gradcam-"))
        for p in sorted(run.layout.gradcam(name).glob("gradcam-*.png"))
    ]
    return curve, gradcam


def arm_view(run: RunFolder, name: str, info: dict) -> ArmView:
    """Read one arm folder."""
    arm = run.arm(name, info)
    folder, tables, figures = arm.folder, arm.tables, arm.figures
    summary = run.read_arm(arm)
    selection = run.read_json(arm.selection_json)
    chosen = str(summary.get("chosen") or info.get("chosen", ""))
    statement, untrained = weights_statement(name, info)
    training = (summary.get("settings") or {}).get("training", "train")
    performance = with_scoring(run.read_csv(tables / "performance.csv"), training)
    labels = arm_labels(summary)
    cohorts = view_order(
        zip(performance["cohort"].astype(str), performance["scoring"], strict=True), training
    )
    missing: list[str] = []
    calibration_summary = calibration_summary_table(
        run, tables / "calibration_summary.csv", training
    )
    curve, gradcam = _finetune(run, name)
    return ArmView(
        name=name,
        statement=statement,
        untrained=untrained,
        chosen=chosen,
        chosen_name=display_name(chosen),
        chosen_note=_chosen_note(summary),
        folder=run.link(folder),
        funnel=run.figure(figures / "selection-funnel.png", "selection funnel"),
        lasso=run.figure(figures / "lasso-cv.png", "LASSO cross-validation"),
        lasso_C=fmt.number(selection.get("lasso_C"), 4),
        features=features_table(
            run, tables / "selected_features.csv", tables / "selection_stability.csv"
        ),
        stability=stability_table(
            run, tables / "selection_stability.csv", list(summary.get("selected_features", []))
        ),
        performance=performance_table(run, tables / "performance.csv", chosen, training),
        performance_chosen=performance_table(
            run, tables / "performance.csv", chosen, training, only_chosen=True
        ),
        hyperparameters=hyperparameters_table(run, name, summary, tables / "cv_search.csv"),
        subgroups=subgroups_table(run, tables / "subgroups.csv", training),
        calibration_regression=calibration_regression_table(
            run, tables / "calibration_regression.csv", labels, training
        ),
        roc=_cohort_figures(run, figures, "roc", cohorts, missing),
        confusion=_cohort_figures(run, figures, "confusion", cohorts, missing),
        calibration=_cohort_figures(run, figures, "calibration", cohorts, missing),
        calibration_summary=calibration_summary,
        decision=_cohort_figures(run, figures, "decision", cohorts, missing),
        shap=_shap(run, folder, labels),
        finetune_curve=curve,
        gradcam=gradcam,
        table_links=[(p.stem, run.link(p)) for p in sorted(tables.glob("*.csv"))],
        missing_figures=missing,
        warnings=[str(w) for w in summary.get("warnings", [])],
    )


# ---------------------------------------------------------------------------------------------
# the run


def metadata(run: RunFolder, manifest: dict) -> dict[str, Any]:
    """Seed, config, versions, stage timings, hashes, warnings and failures of the run."""
    stages = manifest.get("stages") or []
    stage_rows = [
        [str(s.get("name", "")), fmt.seconds(s.get("seconds")), str(s.get("status", ""))]
        for s in stages
    ]
    if stages:
        total = sum(float(s.get("seconds") or 0) for s in stages)
        stage_rows.append(["total", fmt.seconds(total), ""])
    versions = manifest.get("versions") or {}
    errors_path = run.layout.errors_csv
    errors = None
    if errors_path.is_file():
        frame = run.read_csv(errors_path, dtype=str, keep_default_na=False)
        ids = frame["case_id"].tolist() if "case_id" in frame.columns else []
        errors = {"link": run.link(errors_path), "case_ids": ids}
    data = manifest.get("manifest") or {}
    config_text = run.layout.config.read_text(encoding="utf-8")
    return {
        "seed": manifest.get("seed", fmt.MISSING),
        "created": manifest.get("created", fmt.MISSING),
        "ovfdlr": manifest.get("ovfdlr", fmt.MISSING),
        "config_text": config_text,
        "config_link": run.link(run.layout.config),
        "config_sha256": manifest.get("config_sha256", fmt.MISSING),
        "versions": Table(
            ["package", "version"],
            [[k, str(v)] for k, v in versions.items()],
            run.write_table(
                "versions",
                pd.DataFrame({"package": list(versions), "version": list(versions.values())}),
            ),
        ),
        "stages": Table(
            ["stage", "time", "status"],
            stage_rows,
            run.write_table(
                "stages",
                pd.DataFrame(
                    [
                        {
                            "stage": s.get("name"),
                            "seconds": s.get("seconds"),
                            "status": s.get("status"),
                        }
                        for s in stages
                    ],
                    columns=["stage", "seconds", "status"],
                ),
            ),
        ),
        "manifest_path": data.get("path", fmt.MISSING),
        "manifest_sha256": data.get("sha256", fmt.MISSING),
        "manifest_cases": data.get("cases", fmt.MISSING),
        "data_sha256": manifest.get("data_sha256", fmt.MISSING),
        "training_cohort": manifest.get("training_cohort", "train"),
        "warnings": [str(w) for w in manifest.get("warnings") or []],
        "failed_cases": manifest.get("failed_cases", 0),
        "errors": errors,
        "log": run.link(run.layout.run_log) if run.layout.run_log.is_file() else None,
        "radiomics": radiomics_engine(run, manifest, config_text),
    }


def radiomics_engine(run: RunFolder, manifest: dict, config_text: str) -> dict[str, Any] | None:
    """The radiomics engine of the run (None when no arm used radiomics): its name and version,
    its compliance (PyRadiomics-compatible, or IBSI 1 with the agreement table per configuration
    and family) and, for the ibsi engine, each feature column's IBSI tag."""
    import yaml

    from ovfdlr.engines import COMPLIANCE, ibsi_agreement
    from ovfdlr.extraction import ibsi_tags_path

    arms = (manifest.get("arms") or {}).values()
    if not any("radiomics" in (arm.get("feature_sets") or []) for arm in arms):
        return None
    config = yaml.safe_load(config_text) or {}
    versions = manifest.get("versions") or {}
    features = run.layout.feature_table("radiomics")
    engine = str((config.get("radiomics") or {}).get("engine", "native"))
    out: dict[str, Any] = {
        "engine": engine,
        "version": str(versions.get("radiomics engine", fmt.MISSING)),
        "compliance": COMPLIANCE.get(engine, fmt.MISSING),
        "agreement": None,
        "tags": None,
    }
    if engine == "ibsi":
        agreement = ibsi_agreement()
        out["agreement"] = Table(
            ["configuration", "family", "agree", "total"],
            [[str(v) for v in row] for row in agreement.itertuples(index=False)],
            run.write_table("ibsi_agreement", agreement),
        )
        tags_path = ibsi_tags_path(features)
        if tags_path.is_file():
            tags = run.read_csv(tags_path, dtype=str, keep_default_na=False)
            out["tags"] = Table(["feature", "ibsi_tag"], tags.values.tolist(), run.link(tags_path))
    return out


def _in_cohort_order(frame: pd.DataFrame, axis: str, training: str) -> pd.DataFrame:
    """Rows (``axis="rows"``, first column) or columns named by cohort in the usual order,
    anything else (totals, patients) after them in place."""
    if axis == "rows":
        return rows_in_cohort_order(frame, training)
    first, rest = frame.columns[0], [str(c) for c in frame.columns[1:]]
    cohorts = [c for c in rest if not (c.startswith("(") or c == "patients")]
    ordered = cohort_order(cohorts, training) + [c for c in rest if c not in cohorts]
    return frame[[first, *ordered]]


def cohort_section(run: RunFolder, training: str = "train") -> dict[str, Table | None]:
    """Cases per cohort x class, per centre x cohort, and demographics when recorded."""
    tables = {}
    for key, name, axis in (
        ("classes", "cohort_classes", "rows"),
        ("centres", "cohort_centres", "columns"),
        ("demographics", "cohort_demographics", "rows"),
    ):
        path = run.layout.table(name)
        if not path.is_file():
            tables[key] = None
            continue
        frame = run.read_csv(path, keep_default_na=False, na_values=[""])
        digits = 1 if key == "demographics" else 3
        tables[key] = frame_table(_in_cohort_order(frame, axis, training), run.link(path), digits)
    return tables


def build_context(run_dir: Path, report_dir: Path) -> dict[str, Any]:
    """Everything the template needs, read from ``run_dir`` (see the module docstring)."""
    run = RunFolder(run_dir, report_dir)
    manifest = read_manifest(run)
    check_required(run, manifest)
    arms = [arm_view(run, name, info) for name, info in manifest["arms"].items()]
    summaries = [
        (name, run.read_arm(run.arm(name, info))) for name, info in manifest["arms"].items()
    ]
    training = str(manifest.get("training_cohort") or "train")
    labels = arm_labels(summaries[0][1]) if summaries else astlof()
    comparison_path = run.layout.comparison
    table_links = [
        (p.relative_to(run.root).as_posix(), run.link(p))
        for p in sorted(run.layout.tables.glob("*.csv"))
    ]
    from ovfdlr.report.sections import BY_ID
    from ovfdlr.report.summary import chosen_models

    meta = metadata(run, manifest)
    layouts = [
        (name, summary, run.arm(name, manifest["arms"][name])) for name, summary in summaries
    ]
    forest_figure, forest_table = forest_section(run, layouts)
    chosen_frame = chosen_models(summaries)
    chosen = frame_table(chosen_frame, run.write_table("chosen-models", chosen_frame))
    sample_size = sample_size_section(
        run, summaries, labels, training, anticipated_c(meta["config_text"])
    )
    untrained = [a.name for a in arms if a.untrained]
    limitations = limitations_section(
        run,
        manifest,
        summaries,
        labels,
        untrained,
        sample_size["shortfalls"] if sample_size else [],
    )
    inputs = [run.figure(p, p.stem) for p in sorted(run.layout.figures.glob("inputs-*.png"))]
    comparisons = (
        comparison_tables(run, comparison_path, training) if comparison_path.is_file() else []
    )
    # the sections that show something in this run (a checklist item answered by an empty
    # section is for the authors to supply)
    empty = {
        "finetuning": not any(a.finetune_curve or a.gradcam for a in arms),
        "inputs": not inputs,
        "comparison": not comparisons,
        "sample-size": sample_size is None,
        "subgroups": not any(a.subgroups for a in arms),
        "shap": not any(a.shap for a in arms),
    }
    present = {s for s in BY_ID if not empty.get(s, False)}
    return {
        "sample_size": sample_size,
        "limitations": limitations,
        "checklists": checklist_section(run, present),
        "sections": BY_ID,
        "question": question(labels, summaries, training),
        "primary": primary_section(run, training),
        "forest": forest_figure,
        "forest_table": forest_table,
        "chosen": chosen,
        "title": "ovfdlr run report",
        "generator": __version__,
        "arms": arms,
        "untrained": untrained,
        "meta": meta,
        "cohort": cohort_section(run, training),
        "inputs": inputs,
        "comparisons": comparisons,
        "labels": labels,
        "run_tables": table_links,
        "finetuned": any(a.finetune_curve or a.gradcam for a in arms),
    }


__all__ = [
    "COLLAPSE_ROWS",
    "Figure",
    "Link",
    "ReportError",
    "RunFolder",
    "Table",
    "build_context",
]
