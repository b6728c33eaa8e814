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
appears as ``apparent``, ``out-of-fold`` and (when run) ``nested-cv``; every other cohort is
``held-out``. The classes are those of the run's label scheme (:mod:`ovfdlr.labels`); a
two-class scheme is evaluated and compared as a plain binary ROC problem.

With the patients of the cases (``patients``: case_id -> patient_id), every CI and test is
clustered by patient where a patient gives several vertebrae (Obuchowski 1997); the macro AUC's
variance is at the population's class mix unless ``variance="conditional"``. Point estimates
are always given; a CI or test that cannot be computed (one case in a class, a class without
cases) says why in ``note`` (e.g. ``"CI n/a: 1 case in class 1"``).

Arm comparisons (:func:`compare_arms`) run by default only on views that played no part in
fitting or choosing the models: the held-out cohorts (not the internal cohort when it chose
the model) and the training cohort's nested cross-validation. The training cohort's
out-of-fold predictions (the folds also tuned and chose the models) and a choosing internal
cohort are compared on request only, labelled ``post-selection``. :func:`adjust_comparisons`
names each test's family (the primary endpoint; the secondary tests; cross-checks and
post-selection tests, not adjusted) and adds Holm-adjusted p-values within each family.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ovfdlr import stats
from ovfdlr.labels import DEFAULT, LabelScheme
from ovfdlr.scoring import APPARENT, HELD_OUT, NESTED, OUT_OF_FOLD, view_order, view_sort_key
from ovfdlr.stats.variance import UNCONDITIONAL

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
    "method",
    "selection",
    "note",
]
BINARY_TEST = "DeLong (paired)"
MACRO_TEST = "macro (DeLong)"
BOOTSTRAP_TEST = "macro (patient bootstrap)"
PER_CLASS_TEST = "per class (DeLong, paired)"
PRIMARY_TESTS = (BINARY_TEST, MACRO_TEST)  # the test of the primary endpoint, by scheme size
POST_SELECTION = "post-selection"
# the families of adjust_comparisons
PRIMARY = "primary"
SECONDARY = "secondary"
NOT_ADJUSTED = "not adjusted"


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
    calibration_regression: pd.DataFrame = field(default_factory=pd.DataFrame)
    subgroups: pd.DataFrame = field(default_factory=pd.DataFrame)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "performance": self.performance,
            "per_class_auc": self.per_class,
            "metrics": self.metrics,
            "confusion": self.confusion,
            "calibration": self.calibration,
            "calibration_summary": self.calibration_summary,
            "calibration_regression": self.calibration_regression,
            "decision_curves": self.decision,
            "roc_curves": self.curves,
            "subgroups": self.subgroups,
        }


def _labelled(
    frame: pd.DataFrame, labels: LabelScheme, patients: pd.Series | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(labels, probabilities, patient of each case or None) of a view's labelled rows."""
    rows = frame[frame["label"].notna()]
    groups = None if patients is None else patients.reindex(rows.index).astype(str).to_numpy()
    return (
        rows["label"].astype(int).to_numpy(),
        rows[labels.proba_columns].to_numpy(np.float64),
        groups,
    )


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
    groups: np.ndarray | None = None,
    variance: str = UNCONDITIONAL,
    curves: bool = True,
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(macro / micro AUC with CIs, per-class AUCs, ROC curves) of one cohort's predictions.

    K classes: the one-vs-rest analysis of :func:`ovfdlr.stats.one_vs_rest`. Two classes: the
    plain ROC AUC of the positive class with DeLong's CI (:func:`ovfdlr.stats.auc_ci`), reported
    as macro and micro alike (both one-vs-rest AUCs equal it). ``groups``: the patients (CIs
    clustered by patient where one gives several vertebrae). The row's ``auc_ci_method`` names
    the macro CI's method and ``note`` why a CI is missing.
    """
    result = stats.one_vs_rest(
        y,
        proba,
        classes=labels.values,
        level=level,
        cohort=cohort,
        seed=seed,
        groups=groups,
        variance=variance,
        curves=curves,
    )
    if labels.is_binary:
        macro = micro = stats.auc_ci(y == labels.positive, proba[:, 1], level=level, groups=groups)
    else:
        macro, micro = result.macro, result.micro
    row = {
        "macro_auc": macro.auc,
        "macro_auc_lower": macro.lower,
        "macro_auc_upper": macro.upper,
        "micro_auc": micro.auc,
        "micro_auc_lower": micro.lower,
        "micro_auc_upper": micro.upper,
        "auc_ci_method": macro.method,
        "clustered": result.clustered,
        "note": macro.note,
    }
    return row, result.per_class, result.curves


def _performance_row(y, proba, groups, labels: LabelScheme, level, cohort, seed, variance):
    """Discrimination and argmax-decision metrics of one classifier on one view."""
    row, per_class, _ = auc_summary(
        y, proba, labels, level=level, cohort=cohort, seed=seed, groups=groups,
        variance=variance, curves=False,
    )  # fmt: skip
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
    preds: pd.DataFrame,
    labels: LabelScheme,
    training: str,
    *,
    seed: int = 0,
    level=0.95,
    patients: pd.Series | None = None,
    variance: str = UNCONDITIONAL,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every classifier on every view: the ``performance`` and ``per_class`` tables.

    A view whose AUC CI cannot be computed keeps its point estimates; its row's ``note`` says
    why. Only input the statistics refuse (e.g. a view without any labelled case) leaves a row
    with the note alone.
    """
    performance, per_class = [], []
    groups = preds.groupby(["classifier", "cohort", "scoring"], sort=False)
    for (classifier, cohort, scoring), frame in groups:
        y, proba, patient = _labelled(frame, labels, patients)
        row = {"classifier": classifier, "cohort": cohort, "scoring": scoring, "n": len(y)}
        row["note"] = ""
        try:
            found, classes = _performance_row(
                y, proba, patient, labels, level, cohort, seed, variance
            )
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


def _chosen_view_tables(y, proba, groups, labels, thresholds, view, settings) -> dict:
    """The chosen model's tables of one view (each tagged with the view).

    ``thresholds`` (Youden, fitted on the training cohort's out-of-fold predictions) are not
    applied to those same predictions nor to the nested cross-validation's predictions of the
    same cases: those views get argmax metrics only.
    """
    level, seed, variance, n_boot = settings
    cohort, scoring = view
    tag = {"cohort": cohort, "scoring": scoring}
    out: dict[str, list] = {}
    applied = None if scoring in (OUT_OF_FOLD, NESTED) else thresholds
    try:
        metrics = stats.classification_metrics(
            y, proba, classes=labels.values, thresholds=applied, level=level, seed=seed
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
    summary = stats.calibration_summary_ci(
        y, proba, classes=labels.values, groups=groups, n_boot=n_boot, seed=seed, level=level
    )
    out["calibration_summary"] = pd.DataFrame([tag | summary])
    out["calibration_regression"] = stats.calibration_regression(
        y, proba, classes=labels.values, level=level, groups=groups, cohort=cohort
    ).assign(**tag)
    out["decision"] = stats.decision_curves(y, proba, classes=labels.values).assign(**tag)
    _, _, curves = auc_summary(
        y, proba, labels, cohort=cohort, seed=seed, groups=groups, variance=variance
    )
    if len(curves):
        out["curves"] = curves.assign(**tag)
    return out


def evaluate(
    preds: pd.DataFrame,
    chosen: str,
    *,
    training: str = "train",
    labels: LabelScheme = DEFAULT,
    seed: int = 0,
    level=0.95,
    cohort: pd.DataFrame | None = None,
    variance: str = UNCONDITIONAL,
    n_boot: int = 2000,
) -> Evaluation:
    """Evaluation tables of an arm from its predictions (see the module docstring).

    ``cohort``: the manifest (index case_id) for the patients of the cases (clustered CIs)
    and the subgroups (centre, sex, age band; :mod:`ovfdlr.subgroups`).
    """
    from ovfdlr.subgroups import subgroup_table

    patients = None if cohort is None else cohort["patient_id"]
    performance, per_class = performance_tables(
        preds, labels, training, seed=seed, level=level, patients=patients, variance=variance
    )
    chosen_preds = preds[preds["classifier"] == chosen]
    oof = chosen_preds[
        (chosen_preds["cohort"] == training) & (chosen_preds["scoring"] == OUT_OF_FOLD)
    ]
    y_oof, p_oof, _ = _labelled(oof, labels)
    thresholds = stats.youden_thresholds(y_oof, p_oof, classes=labels.values)
    parts: dict[str, list[pd.DataFrame]] = {}
    settings = (level, seed, variance, n_boot)
    for view in _views(chosen_preds, training):
        frame = chosen_preds[
            (chosen_preds["cohort"] == view[0]) & (chosen_preds["scoring"] == view[1])
        ]
        y, proba, groups = _labelled(frame, labels, patients)
        if len(y) == 0:
            continue
        found = _chosen_view_tables(y, proba, groups, labels, thresholds, view, settings)
        for name, table in found.items():
            parts.setdefault(name, []).append(table)

    def stack(name):
        frames = parts.get(name, [])
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    subgroups = (
        pd.DataFrame()
        if cohort is None
        else subgroup_table(
            chosen_preds, cohort, labels, training, level=level, seed=seed, variance=variance
        )
    )
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
        stack("calibration_regression"),
        subgroups,
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
        "method": result.method,
        "note": result.note,
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
    groups: np.ndarray | None = None,
    variance: str = UNCONDITIONAL,
) -> list[dict]:
    """The paired tests of two models on one view's shared cases, as comparison rows.

    Two classes: DeLong's paired test of the two AUCs (:func:`ovfdlr.stats.delong_test`), the
    plain ROC comparison. K classes: the DeLong test of the macro AUC difference (variance at
    the population's class mix, or ``variance``), its paired patient bootstrap as a
    cross-check, and one paired DeLong test per class. All clustered by patient (``groups``)
    where a patient gives several vertebrae; a test that cannot be computed says why in
    ``note``.
    """
    cohort = base["cohort"]
    if labels.is_binary:
        try:
            test = stats.delong_test(
                y == labels.positive, pa[:, 1], pb[:, 1], level=level, groups=groups, seed=seed
            )
        except stats.StatsError as exc:
            return [base | {"test": BINARY_TEST, "note": str(exc)}]
        return [_test_row(base, BINARY_TEST, labels.positive, (test.auc_a, test.auc_b), test)]
    classes = labels.values
    common = {"classes": classes, "level": level, "cohort": cohort, "groups": groups}
    try:
        macro = stats.macro_auc_test(y, pa, pb, variance=variance, seed=seed, **common)
        boot = stats.bootstrap_macro_test(y, pa, pb, n_boot=n_boot, seed=seed, **common)
        per_class = stats.per_class_tests(y, pa, pb, seed=seed, **common)
    except stats.StatsError as exc:
        return [base | {"test": MACRO_TEST, "note": str(exc)}]
    rows = [
        _test_row(base, MACRO_TEST, "macro", (macro.macro_a, macro.macro_b), macro),
        _test_row(base, BOOTSTRAP_TEST, "macro", (boot.macro_a, boot.macro_b), boot),
    ]
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
                "method": record["method"],
                "note": record["note"],
            }
        )
    return rows


def _selection_of(cohort: str, scoring: str, training: str, chose: set[str]) -> str:
    """Why a view is post-selection ("" when it played no part in fitting or choosing)."""
    if cohort == training and scoring == OUT_OF_FOLD:
        return f"{POST_SELECTION}: the folds also tuned and chose the models"
    if scoring == HELD_OUT and cohort in chose:
        return f"{POST_SELECTION}: this cohort chose the model"
    return ""


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
    patients: pd.Series | None = None,
    variance: str = UNCONDITIONAL,
    chose: set[str] | frozenset[str] = frozenset(),
    post_selection: bool = False,
) -> pd.DataFrame:
    """Paired tests between the chosen models of two arms on the cases they share, per view.

    ``preds_*`` are the chosen models' predictions (one row per case and view). The training
    cohort's apparent (resubstitution) predictions are never compared. By default only views
    that played no part in fitting or choosing are: the held-out cohorts except those in
    ``chose`` (an internal cohort that chose the model) and the training cohort's nested
    cross-validation. ``post_selection=True`` adds the training cohort's out-of-fold
    predictions and the choosing cohorts, labelled in ``selection``. ``patients``
    (case_id -> patient_id) clusters the tests by patient (:func:`paired_tests`).
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
        selection = _selection_of(cohort, scoring, training, set(chose))
        if selection and not post_selection:
            continue

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
            "selection": selection,
        }
        y = a.loc[shared, "label"].astype(int).to_numpy()
        pa = a.loc[shared, labels.proba_columns].to_numpy(np.float64)
        pb = b.loc[shared, labels.proba_columns].to_numpy(np.float64)
        groups = None if patients is None else patients.reindex(shared).astype(str).to_numpy()
        rows += paired_tests(
            y, pa, pb, labels, base, seed=seed, n_boot=n_boot, level=level, groups=groups,
            variance=variance,
        )  # fmt: skip
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def arm_names(labels: pd.Series) -> pd.Series:
    """Arm names without the chosen model's suffix: ``"rad (lr)"`` -> ``"rad"``."""
    return labels.astype(str).str.replace(r" \([^()]*\)$", "", regex=True)


def adjust_comparisons(
    table: pd.DataFrame,
    primary_arms: tuple[str, str] | None,
    primary_cohorts: list[str],
) -> pd.DataFrame:
    """Name each comparison's family and add Holm-adjusted p-values within it.

    Family ``primary``: the primary endpoint, the macro-AUC test (DeLong's test for two
    classes) of ``primary_arms`` (either order) on each of ``primary_cohorts`` (held-out),
    co-primary and Holm-adjusted across them. ``secondary``: every other test (per-class
    tests, other cohorts and arm pairs, nested cross-validation), Holm-adjusted within it.
    ``not adjusted``: the bootstrap cross-checks and the post-selection comparisons, whose
    p-values are descriptive. Columns added: ``family``, ``p_adjusted``, ``adjustment``
    (:func:`ovfdlr.stats.adjust_family`; Holm, Scand J Statist 1979). Arm labels may carry the
    chosen model in parentheses (``"rad (lr)"``, as :func:`ovfdlr.arm.compare_dirs` writes them).
    """
    out = table.copy()
    if out.empty:
        return out.assign(family=pd.Series(dtype=str), p_adjusted=np.nan, adjustment="")
    pair = set(primary_arms or ())
    is_primary = (
        out["test"].isin(PRIMARY_TESTS)
        & (out["scoring"] == HELD_OUT)
        & out["cohort"].isin(primary_cohorts)
        & (out["selection"].fillna("") == "")
        & pd.Series(
            [
                {a, b} == pair
                for a, b in zip(arm_names(out["arm_a"]), arm_names(out["arm_b"]), strict=True)
            ],
            index=out.index,
        )
    )
    descriptive = (out["test"] == BOOTSTRAP_TEST) | (out["selection"].fillna("") != "")
    out["family"] = np.where(is_primary, PRIMARY, np.where(descriptive, NOT_ADJUSTED, SECONDARY))
    adjusted = stats.adjust_family(out[out["family"] != NOT_ADJUSTED])
    out["p_adjusted"] = adjusted["p_adjusted"].reindex(out.index)
    out["adjustment"] = adjusted["adjustment"].reindex(out.index)
    loose = out["family"] == NOT_ADJUSTED
    out.loc[loose, "adjustment"] = np.where(
        out.loc[loose, "selection"].fillna("") != "",
        "not adjusted: post-selection (descriptive)",
        "not adjusted: cross-check of the DeLong macro test",
    )
    return out


__all__ = [
    "Evaluation",
    "adjust_comparisons",
    "arm_names",
    "auc_summary",
    "compare_arms",
    "evaluate",
    "paired_tests",
    "performance_tables",
]
