"""Training one arm: selection and the eight classifiers, tuned and chosen on the training cohort.

For an arm's fused feature table and the cohort:

1. The training cohort (labelled rows only) is split into ``folds`` patient-grouped,
   class-stratified folds (``StratifiedGroupKFold``): no patient straddles two folds.
2. In every fold the whole selection pipeline (:mod:`ovfdlr.selection`) is fitted on the fold's
   training part only, then every classifier at every point of its search space
   (:mod:`ovfdlr.classifiers`); the held-out part is predicted. Selection inside the folds keeps
   the cross-validated AUCs honest: features are never chosen with the rows that score them.
3. Each classifier's hyper-parameters are those with the best mean macro one-vs-rest AUC over
   the folds; its out-of-fold probabilities are kept (for thresholds and calibration).
4. The selection is refitted on the whole training cohort and each classifier with its chosen
   hyper-parameters on the selected features.
5. The model that represents the arm is the classifier with the best cross-validated macro AUC
   (``select_on="cv"``) or the best macro AUC on the internal validation cohort
   (``select_on="internal"``) - never on external or prospective data.
6. Optionally, **nested cross-validation** (:func:`nested_cv`) repeats steps 1-5 as a whole
   inside each of ``folds`` outer patient-grouped, class-stratified folds of the training cohort
   (split with :func:`outer_seed`, a seed derived from ``seed``, so that the outer split differs
   from the inner ones) and scores the outer test part with the model the procedure chose there.
   The out-of-fold AUCs of step 3 are those of models whose hyper-parameters, and with
   ``select_on="cv"`` whose classifier, were chosen on the same folds; the nested AUC is not.
   Its estimand is the expected performance, on new patients like the training cohort's, of a
   model built by this whole procedure from a training cohort of about ``(folds - 1) / folds``
   of this one's size: it estimates the procedure, not the final model (that one is fitted on
   all rows; the outer folds' models may even be other classifiers). Steps fitted upstream of this
   module on the whole training cohort (a deep-feature PCA, a fine-tuned network) are not
   repeated in the outer folds.

Nothing here sees a row outside the training cohort except the optional internal scoring of
step 5 (and of step 6's inner fits), which only ranks already fitted models.

Every cross-validation needs at least ``folds`` patients of every class in the training cohort
(and nested cross-validation that many in every outer training part): a smaller class is a
:class:`TrainingError` naming the cohort, the patients per class and the setting to change.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ovfdlr.classifiers import CLASSIFIERS, fit_classifier, specs
from ovfdlr.labels import DEFAULT, LabelScheme
from ovfdlr.parallel import TaskFailure, run_tasks
from ovfdlr.scoring import APPARENT, HELD_OUT, NESTED, OUT_OF_FOLD
from ovfdlr.selection import SelectionError, funnel, selection_pipeline


class TrainingError(ValueError):
    """A training request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class TrainSettings:
    """How an arm is trained (see the module docstring)."""

    classifiers: tuple[str, ...] = CLASSIFIERS
    quick: bool = False
    folds: int = 5
    seed: int = 0
    select_on: Literal["cv", "internal"] = "cv"
    training: str = "train"
    internal: str = "internal"
    selection: dict[str, Any] = field(default_factory=dict)
    jobs: int | None = 1
    labels: LabelScheme = DEFAULT

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["labels"] = self.labels.to_dict()
        return out


@dataclass
class ArmFit:
    """A trained arm: the fitted selection, one fitted model per classifier, and the records."""

    arm: str
    settings: TrainSettings
    selection: Pipeline
    models: dict[str, Pipeline]
    best_params: dict[str, dict[str, Any]]
    cv_results: pd.DataFrame
    oof: pd.DataFrame
    fold_features: pd.DataFrame
    chosen: str
    chosen_score: float
    n_input_features: int

    @property
    def funnel(self) -> pd.DataFrame:
        return funnel(self.selection, self.n_input_features)

    @property
    def lasso_path(self) -> pd.DataFrame:
        return self.selection.named_steps["lasso"].path_

    @property
    def coefficients(self) -> pd.DataFrame:
        return self.selection.named_steps["lasso"].coefficients_

    @property
    def selected(self) -> list[str]:
        return list(self.coefficients.index)


def macro_auc(y: np.ndarray, proba: np.ndarray, labels: LabelScheme = DEFAULT) -> float:
    """Mean one-vs-rest AUC over the classes present with both positives and negatives.

    For a two-class scheme both one-vs-rest AUCs equal the plain AUC of class 1 against
    class 0 (the scores are complementary), so this is the plain ROC AUC.
    """
    from ovfdlr.stats import roc_auc

    values = [
        roc_auc((y == c).astype(int), proba[:, i])
        for i, c in enumerate(labels.values)
        if 0 < (y == c).sum() < len(y)
    ]
    return float(np.mean(values)) if values else float("nan")


def training_rows(features: pd.DataFrame, cohort: pd.DataFrame, training: str) -> pd.DataFrame:
    """The labelled training cases that have features (raises when there are none)."""
    from ovfdlr.cohort import labelled_rows

    try:
        rows = labelled_rows(cohort, training)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    missing = rows.index.difference(features.index)
    if len(missing) == len(rows):
        raise TrainingError(f"none of the '{training}' cases has features")
    return rows.loc[rows.index.intersection(features.index, sort=False)]


def patient_folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int):
    """Patient-grouped, class-stratified folds (:func:`ovfdlr.cohort.patient_folds`)."""
    from ovfdlr.cohort import patient_folds as split

    try:
        return split(y, groups, folds, seed)
    except ValueError as exc:
        raise TrainingError(f"cross-validation: {exc}") from None


@dataclass(frozen=True)
class _SelectionTask:
    """Fit the selection on one part of the training cohort (a fold's training part, or all of
    it for the final model) and transform that part and the held-out one."""

    X: pd.DataFrame
    y: np.ndarray
    groups: np.ndarray
    train: np.ndarray
    test: np.ndarray | None  # None: the whole training cohort (step 4)
    settings: TrainSettings


@dataclass(frozen=True)
class _Selected:
    selection: Pipeline
    Z_train: pd.DataFrame
    Z_test: pd.DataFrame | None


def _fit_selection(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, settings: TrainSettings):
    pipeline = selection_pipeline(seed=settings.seed, **settings.selection)
    pipeline.fit(X, y, lasso__groups=groups)
    return pipeline


def _run_selection(task: _SelectionTask) -> _Selected:
    X_train = task.X.iloc[task.train]
    selection = _fit_selection(X_train, task.y[task.train], task.groups[task.train], task.settings)
    Z_test = None if task.test is None else selection.transform(task.X.iloc[task.test])
    return _Selected(selection, selection.transform(X_train), Z_test)


@dataclass(frozen=True)
class _GridTask:
    """One classifier at every point of its search space on one fold's selected features."""

    key: str
    Z_train: pd.DataFrame
    y_train: np.ndarray
    groups_train: np.ndarray
    Z_test: pd.DataFrame
    settings: TrainSettings


def _run_grid(task: _GridTask) -> list[np.ndarray]:
    """The held-out probabilities of every grid point, in grid order."""
    settings = task.settings
    spec = next(s for s in specs([task.key], settings.quick))
    y_train = settings.labels.positions(task.y_train)
    out = []
    for params in spec.grid():
        model = spec.build(params, seed=settings.seed)
        fit_classifier(model, task.Z_train, y_train, task.groups_train, settings.seed)
        out.append(_proba(model, task.Z_test, settings.labels))
    return out


@dataclass(frozen=True)
class _RefitTask:
    key: str
    params: dict[str, Any]
    Z: pd.DataFrame
    y: np.ndarray
    groups: np.ndarray
    settings: TrainSettings


def _run_refit(task: _RefitTask):
    spec = next(s for s in specs([task.key], task.settings.quick))
    model = spec.build(task.params, seed=task.settings.seed)
    labels = task.settings.labels
    return fit_classifier(model, task.Z, labels.positions(task.y), task.groups, task.settings.seed)


def _proba(model, Z, labels: LabelScheme = DEFAULT) -> np.ndarray:
    """Probabilities for the scheme's classes in order (a class absent from training gets 0).

    Classifiers are fitted on class positions (:meth:`LabelScheme.positions`), so a model's
    ``classes_`` are columns of the scheme.
    """
    raw = model.predict_proba(Z)
    out = np.zeros((len(Z), labels.n_classes))
    for j, c in enumerate(model.classes_):
        out[:, int(c)] = raw[:, j]
    return out


def _training_matrix(features, cohort, settings: TrainSettings):
    """(X, y, groups, rows) of the labelled training cases; every class must be present."""
    rows = training_rows(features, cohort, settings.training)
    # a fresh contiguous copy: sums then run in the same order whatever the caller's layout,
    # so the fit depends on the training values alone
    X = pd.DataFrame(
        np.ascontiguousarray(features.loc[rows.index].to_numpy(np.float64)),
        index=rows.index,
        columns=features.columns,
    )
    y = rows["label"].astype(int).to_numpy()
    groups = rows["patient_id"].astype(str).to_numpy()
    labels = settings.labels
    missing = [c for c in labels.values if not (y == c).any()]
    if missing:
        cases = ", ".join(f"{c}: {int((y == c).sum())}" for c in labels.values)
        raise TrainingError(
            f"the training cohort '{settings.training}' has no case of class "
            f"{', '.join(map(str, missing))} (cases per class {cases}); every class of the "
            f"label scheme '{labels.scheme}' needs training cases: change labels (the label "
            "scheme) or the training cohort"
        )
    _check_patients(y, groups, settings, settings.training)
    return X, y, groups, rows


def patients_per_class(y: np.ndarray, groups: np.ndarray, labels: LabelScheme) -> dict[int, int]:
    """The number of patients with at least one case of each class of the scheme."""
    return {c: len(np.unique(groups[y == c])) for c in labels.values}


def _check_patients(y, groups, settings: TrainSettings, cohort: str) -> None:
    """``settings.folds``-fold cross-validation needs that many patients of every class."""
    counts = patients_per_class(y, groups, settings.labels)
    short = [c for c, n in counts.items() if n < settings.folds]
    if short:
        c = short[0]
        raise TrainingError(
            f"training cohort '{cohort}': class {c} has {_patients(counts[c])} (patients per "
            f"class {_listed(counts)}); {settings.folds}-fold cross-validation needs at least "
            f"{settings.folds} patients in every class: lower models.folds (ovfdlr train: --folds)"
        )


def _patients(n: int) -> str:
    return f"{n} patient{'' if n == 1 else 's'}"


def _listed(counts: dict[int, int]) -> str:
    return ", ".join(f"{c}: {n}" for c, n in counts.items())


def _run_all(fn, tasks: list, settings: TrainSettings, description: str, progress: bool):
    """``fn`` over ``tasks`` in ``settings.jobs`` processes; the first failure is an error."""
    results = run_tasks(fn, tasks, jobs=settings.jobs, description=description, progress=progress)
    failures = [r for r in results if isinstance(r, TaskFailure)]
    if failures:
        raise TrainingError(f"{description} failed: {failures[0].reason}")
    return results


@dataclass(frozen=True)
class _Fold:
    fold: int
    train: np.ndarray
    test: np.ndarray


def _cross_validate(X, y, groups, settings: TrainSettings, arm: str, progress: bool):
    """Steps 1, 2 and the selection of step 4, as tasks that keep every process busy: the
    selection of every fold and of the whole cohort side by side, then every classifier's grid
    on every fold. Each task's result depends on its inputs and the seed only, so the results
    are those of fitting fold after fold in one process.

    Returns the folds, each fold's result (``selected`` features and ``predictions`` by
    (classifier, grid point)) and the selection fitted on the whole training cohort with its
    transform of it."""
    splits = patient_folds(y, groups, settings.folds, settings.seed)
    folds = [_Fold(fold, train, test) for fold, (train, test) in enumerate(splits)]
    every = np.arange(len(y))
    selections = _run_all(
        _run_selection,
        [_SelectionTask(X, y, groups, f.train, f.test, settings) for f in folds]
        + [_SelectionTask(X, y, groups, every, None, settings)],
        settings,
        f"selection ({arm})",
        progress,
    )
    keys = [spec.key for spec in specs(settings.classifiers, settings.quick)]
    grid_tasks = [
        _GridTask(
            key,
            selected.Z_train,
            y[f.train],
            groups[f.train],
            selected.Z_test,
            settings,
        )
        for f, selected in zip(folds, selections, strict=False)
        for key in keys
    ]
    grids = _run_all(_run_grid, grid_tasks, settings, f"cross-validation ({arm})", progress)
    results = []
    for i, (f, selected) in enumerate(zip(folds, selections, strict=False)):
        predictions = {}
        for j, key in enumerate(keys):
            for point, proba in enumerate(grids[i * len(keys) + j]):
                predictions[(key, point)] = proba
        results.append(
            {"fold": f.fold, "selected": list(selected.Z_train.columns), "predictions": predictions}
        )
    return folds, results, selections[-1]


def _tune(tasks, results, y, index: pd.Index, settings: TrainSettings):
    """Step 3: per classifier, the grid point with the best mean fold macro AUC and its
    out-of-fold probabilities; returns (cv records, best params, out-of-fold frames)."""
    labels = settings.labels
    records, best_params, oof_frames = [], {}, []
    for spec in specs(settings.classifiers, settings.quick):
        grid = spec.grid()
        means = []
        for point, params in enumerate(grid):
            scores = []
            for task, result in zip(tasks, results, strict=True):
                score = macro_auc(y[task.test], result["predictions"][(spec.key, point)], labels)
                scores.append(score)
                records.append(
                    {
                        "classifier": spec.key,
                        "params": repr(params),
                        "fold": task.fold,
                        "macro_auc": score,
                    }
                )
            means.append(np.nanmean(scores))
        best = int(np.nanargmax(means)) if not np.all(np.isnan(means)) else 0
        best_params[spec.key] = grid[best]
        oof = np.zeros((len(y), labels.n_classes))
        fold_of = np.zeros(len(y), dtype=int)
        for task, result in zip(tasks, results, strict=True):
            oof[task.test] = result["predictions"][(spec.key, best)]
            fold_of[task.test] = task.fold
        frame = pd.DataFrame(oof, index=index, columns=labels.proba_columns)
        frame.insert(0, "fold", fold_of)
        frame.insert(0, "classifier", spec.key)
        oof_frames.append(frame)
    return pd.DataFrame(records), best_params, oof_frames


def _refit(
    whole: _Selected, y, groups, settings: TrainSettings, best_params, arm: str, progress: bool
) -> tuple[Pipeline, dict]:
    """Step 4: each tuned classifier on the selection fitted on the whole training cohort."""
    selection = whole.selection
    keys = [spec.key for spec in specs(settings.classifiers, settings.quick)]
    fitted = _run_all(
        _run_refit,
        [_RefitTask(k, best_params[k], whole.Z_train, y, groups, settings) for k in keys],
        settings,
        f"final models ({arm})",
        progress,
    )
    models = {
        key: Pipeline([("selection", selection), ("classifier", model)])
        for key, model in zip(keys, fitted, strict=True)
    }
    return selection, models


def fit_arm(
    features: pd.DataFrame,
    cohort: pd.DataFrame,
    arm: str,
    settings: TrainSettings | None = None,
    *,
    progress: bool = True,
) -> ArmFit:
    """Train an arm on its fused features (index case_id); see the module docstring."""
    settings = settings or TrainSettings()
    X, y, groups, rows = _training_matrix(features, cohort, settings)
    folds, results, whole = _cross_validate(X, y, groups, settings, arm, progress)
    cv_results, best_params, oof_frames = _tune(folds, results, y, rows.index, settings)
    selection, models = _refit(whole, y, groups, settings, best_params, arm, progress)
    best_cv = (
        cv_results.groupby(["classifier", "params"])["macro_auc"].mean().groupby("classifier").max()
    )
    chosen, chosen_score = _choose(models, best_cv, features, cohort, settings)
    fold_features = pd.DataFrame(
        [{"fold": r["fold"], "feature": f} for r in results for f in r["selected"]]
    )
    return ArmFit(
        arm,
        settings,
        selection,
        models,
        best_params,
        cv_results,
        pd.concat(oof_frames).rename_axis("case_id"),
        fold_features,
        chosen,
        chosen_score,
        X.shape[1],
    )


def _choose(models, best_cv: pd.Series, features, cohort, settings) -> tuple[str, float]:
    if settings.select_on == "cv":
        key = str(best_cv.idxmax())
        return key, float(best_cv[key])
    if settings.select_on != "internal":
        raise TrainingError(f"select_on '{settings.select_on}' is not 'cv' or 'internal'")
    try:
        rows = training_rows(features, cohort, settings.internal)
    except TrainingError as exc:
        raise TrainingError(f"select_on='internal': {exc}") from None
    y = rows["label"].astype(int).to_numpy()
    scores = {
        key: macro_auc(
            y, predict_proba(model, features.loc[rows.index], settings.labels), settings.labels
        )
        for key, model in models.items()
    }
    key = max(scores, key=lambda k: (np.nan_to_num(scores[k], nan=-1), k))
    return key, float(scores[key])


# ---------------------------------------------------------------------------------------------
# nested cross-validation (step 6)


@dataclass
class NestedCV:
    """The whole training procedure cross-validated (:func:`nested_cv`).

    ``predictions``: one row per labelled training case (index case_id) with its ``outer_fold``,
    the classifier the procedure ``chosen`` in that fold and the scheme's probability columns.
    ``folds``: one row per outer fold (outer_fold, n_train, n_test, chosen, inner_cv_auc: the
    chosen classifier's cross-validated macro AUC inside the fold, n_selected: the features the
    fold's selection kept, outer_auc: the macro AUC on the fold's test part). ``seed``: the seed
    of the outer split (:func:`outer_seed`).
    """

    predictions: pd.DataFrame
    folds: pd.DataFrame
    seconds: float
    seed: int


def outer_seed(seed: int) -> int:
    """The seed of nested cross-validation's outer split, derived from the training seed (the
    inner splits use ``seed`` itself, so outer and inner folds are drawn differently)."""
    return int(np.random.SeedSequence([seed, 0x6E657374]).generate_state(1)[0])  # b"nest"


@dataclass(frozen=True)
class _OuterTask:
    features: pd.DataFrame
    cohort: pd.DataFrame
    test: pd.Index  # the outer fold's test cases (labelled training rows)
    fold: int
    arm: str
    settings: TrainSettings


def _run_outer_fold(task: _OuterTask) -> dict[str, Any]:
    """The whole of :func:`fit_arm` without the fold's test cases, then the test cases scored
    by the model it chose."""
    inner = task.cohort.drop(index=task.test)
    features = task.features.loc[task.features.index.intersection(inner.index, sort=False)]
    fit = fit_arm(features, inner, task.arm, task.settings, progress=False)
    labels = task.settings.labels
    proba = predict_proba(fit.models[fit.chosen], task.features.loc[task.test], labels)
    best_cv = (
        fit.cv_results.groupby(["classifier", "params"])["macro_auc"].mean().groupby("classifier")
    ).max()
    y_test = task.cohort.loc[task.test, "label"].astype(int).to_numpy()
    return {
        "fold": task.fold,
        "proba": proba,
        "row": {
            "outer_fold": task.fold,
            "n_train": int((fit.oof["classifier"] == fit.chosen).sum()),
            "n_test": len(task.test),
            "chosen": fit.chosen,
            "inner_cv_auc": float(best_cv[fit.chosen]),
            "n_selected": len(fit.selected),
            "outer_auc": macro_auc(y_test, proba, labels),
        },
    }


def nested_cv(
    features: pd.DataFrame,
    cohort: pd.DataFrame,
    arm: str,
    settings: TrainSettings | None = None,
    *,
    progress: bool = True,
    outer_folds: int | None = None,
) -> NestedCV:
    """Nested cross-validation of the whole training procedure (step 6 of the module docstring).

    The labelled training cases are split into ``outer_folds`` (default ``settings.folds``)
    patient-grouped,
    class-stratified outer folds (seed :func:`outer_seed`); in each, :func:`fit_arm` runs on
    everything but the fold's test cases (selection, every classifier's tuning, the choice of
    classifier by ``settings.select_on``; with ``"internal"`` it ranks on the internal cohort,
    which holds no training row), and the test cases are scored by the classifier it chose.
    Outer folds run side by side (``settings.jobs`` processes), each inner fit in its process
    (``jobs=1``); the result depends on the seed only.
    """
    settings = settings or TrainSettings()
    start = time.perf_counter()
    _, y, groups, rows = _training_matrix(features, cohort, settings)
    seed = outer_seed(settings.seed)
    splits = patient_folds(y, groups, outer_folds or settings.folds, seed)
    for fold, (train, _) in enumerate(splits):
        counts = patients_per_class(y[train], groups[train], settings.labels)
        short = [c for c, n in counts.items() if n < settings.folds]
        if short:
            c = short[0]
            raise TrainingError(
                f"nested cross-validation of the training cohort '{settings.training}': outer "
                f"fold {fold} leaves {_patients(counts[c])} of class {c} for training (patients "
                f"per class there {_listed(counts)}); its {settings.folds}-fold inner "
                f"cross-validation needs at least {settings.folds} patients in every class: "
                "lower models.folds, or switch nested cross-validation off "
                "(evaluation.nested_cv: false)"
            )
    inner = replace(settings, jobs=1)
    # what an inner fit may read: the training cohort (less the outer test part) and, to rank
    # its classifiers with select_on="internal", the internal cohort
    seen = [settings.training] + [settings.internal] * (settings.select_on == "internal")
    cohort = cohort[cohort["cohort"].isin(seen)]
    features = features.loc[features.index.intersection(cohort.index, sort=False)]
    tasks = [
        _OuterTask(features, cohort, rows.index[test], fold, arm, inner)
        for fold, (_, test) in enumerate(splits)
    ]
    results = run_tasks(
        _run_outer_fold,
        tasks,
        jobs=settings.jobs,
        description=f"nested cross-validation ({arm})",
        progress=progress,
    )
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, TaskFailure):
            raise TrainingError(f"nested cross-validation, outer fold {task.fold}: {result.reason}")
    labels = settings.labels
    frames = []
    for task, result in zip(tasks, results, strict=True):
        frame = pd.DataFrame(result["proba"], index=task.test, columns=labels.proba_columns)
        frame.insert(0, "chosen", result["row"]["chosen"])
        frame.insert(0, "outer_fold", task.fold)
        frames.append(frame)
    predictions = pd.concat(frames).reindex(rows.index).rename_axis("case_id")
    folds = pd.DataFrame([r["row"] for r in results])
    return NestedCV(predictions, folds, time.perf_counter() - start, seed)


def predict_proba(model: Pipeline, X: pd.DataFrame, labels: LabelScheme = DEFAULT) -> np.ndarray:
    """Probabilities of the scheme's classes (in order) of a fitted arm model for rows ``X``."""
    selection, classifier = model.named_steps["selection"], model.named_steps["classifier"]
    return _proba(classifier, selection.transform(X), labels)


def predictions(
    fit: ArmFit,
    features: pd.DataFrame,
    cohort: pd.DataFrame,
    nested: NestedCV | None = None,
) -> pd.DataFrame:
    """Every classifier's probabilities for every case with features.

    ``scoring`` says how each row was scored: the training cohort's rows twice, ``apparent``
    (by the models fitted on all of it) and ``out-of-fold`` (by the cross-validation model that
    did not see the row), and with ``nested`` a third time, ``nested-cv`` (by the model the
    whole procedure chose in the outer fold that held the row out; under the classifier
    ``fit.chosen``, so that the chosen model's tables show the view, whichever classifier each
    outer fold chose); every other cohort's rows ``held-out``. ``prediction`` is the class
    value with the highest probability.
    """
    labels = fit.settings.labels
    proba_columns = labels.proba_columns
    cases = cohort.loc[cohort.index.intersection(features.index, sort=False)]
    scoring = np.where(cases["cohort"] == fit.settings.training, APPARENT, HELD_OUT)
    frames = []
    for key, model in fit.models.items():
        proba = predict_proba(model, features.loc[cases.index], labels)
        frame = pd.DataFrame(proba, index=cases.index, columns=proba_columns)
        frame.insert(0, "label", cases["label"])
        frame.insert(0, "scoring", scoring)
        frame.insert(0, "cohort", cases["cohort"])
        frame.insert(0, "classifier", key)
        frames.append(frame)
    oof = fit.oof.drop(columns="fold").copy()
    oof.insert(1, "cohort", fit.settings.training)
    oof.insert(2, "scoring", OUT_OF_FOLD)
    oof.insert(3, "label", cohort.loc[oof.index, "label"])
    frames.append(oof)
    if nested is not None:
        rows = nested.predictions[proba_columns].copy()
        rows.insert(0, "label", cohort.loc[rows.index, "label"])
        rows.insert(0, "scoring", NESTED)
        rows.insert(0, "cohort", fit.settings.training)
        rows.insert(0, "classifier", fit.chosen)
        frames.append(rows)
    out = pd.concat(frames).rename_axis("case_id")
    out["label"] = out["label"].astype("Int64")
    values = np.asarray(labels.values)
    out["prediction"] = values[np.asarray(out[proba_columns]).argmax(axis=1)]
    return out


__all__ = [
    "ArmFit",
    "NestedCV",
    "SelectionError",
    "TrainSettings",
    "TrainingError",
    "fit_arm",
    "macro_auc",
    "nested_cv",
    "outer_seed",
    "patients_per_class",
    "predict_proba",
    "predictions",
]
