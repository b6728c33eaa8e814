"""Scoring new vertebrae with a bundle (``ovfdlr predict``).

Predicting recomputes the case's features exactly as the run did (same code, same settings
recorded in ``bundle.json``), so a case identical to a training case gets the probabilities the
run reported. :func:`run_prediction` is the whole command: verify the bundle, compute the
features in fresh processes (one per group of feature sets) while the model, the SHAP
background and the explainer load here, score, explain and write the results.

This module stays light to import (no scikit-learn, no torch): its feature functions run in
fresh processes while the model loads (:func:`start_features`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.bundle import Bundle, BundleError, load_bundle, load_scoring

TOP_CONTRIBUTIONS = 5

# feature sets computed together: the image features (SimpleITK, PyRadiomics) and the deep
# features (torch) import different libraries, so each group runs in its own process
_GROUPS = (("radiomics", "morphometry"), ("deep",))


@dataclass
class Prediction:
    """What :func:`run_prediction` made: the scored cases (see :func:`score`), the cases that
    could not be scored (``case_id``, ``stage``, ``reason``), the files written, the bundle."""

    table: pd.DataFrame
    failures: pd.DataFrame
    written: list[Path]
    bundle: Bundle


def run_prediction(
    bundle_dir: str | Path | Bundle,
    cohort: pd.DataFrame,
    *,
    out: Path | None = None,
    weights: str | None = None,
    jobs: int | None = 1,
    cache_dir: Any = True,
    explain_top: int = TOP_CONTRIBUTIONS,
) -> Prediction:
    """Verify a bundle and score the cases of ``cohort`` with it; write ``<out>.json`` and
    ``<out>.csv`` when ``out`` is given and a case was scored.

    The features compute in background processes while the model loads. Raises
    :class:`~ovfdlr.bundle.BundleError` for a bundle that cannot be used and
    :class:`~ovfdlr.parallel.BackgroundError` when a feature process fails unexpectedly.
    """
    bundle = bundle_dir if isinstance(bundle_dir, Bundle) else load_bundle(bundle_dir, model=False)
    job = start_features(
        bundle, cohort, weights=weights, jobs=jobs, cache_dir=cache_dir, background=True
    )
    try:
        loaded = load_scoring(bundle)
        features, failures = job.result()
    finally:
        job.close()
    table = score(loaded, features, explain_top=explain_top)
    written = write_predictions(table, out) if out is not None and not table.empty else []
    return Prediction(table, failures, written, loaded)


def case_features(
    bundle: Bundle,
    cohort: pd.DataFrame,
    *,
    weights: str | None = None,
    jobs: int | None = 1,
    cache_dir: Any = True,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The bundle's input features for the cases of ``cohort`` (and the failures)."""
    job = start_features(
        bundle, cohort, weights=weights, jobs=jobs, cache_dir=cache_dir, progress=progress
    )
    return job.result()


def start_features(
    bundle: Bundle,
    cohort: pd.DataFrame,
    *,
    weights: str | None = None,
    jobs: int | None = 1,
    cache_dir: Any = True,
    progress: bool = False,
    background: bool = False,
) -> FeatureJob:
    """Start computing the bundle's input features for ``cohort``.

    ``background=False`` computes them now; ``background=True`` hands each group of feature
    sets to a fresh process (spawned, so safe on every platform), and the caller does other
    work (loading the model) before :meth:`FeatureJob.result` collects them. Either way the
    features are the same: the same functions on the same settings.
    """
    present = bundle.record.feature_sets.names()
    groups = [[name for name in group if name in present] for group in _GROUPS]
    groups = [group for group in groups if group]
    light = replace(bundle, model=None, background=None)  # what the processes need
    args = dict(weights=weights, jobs=jobs, cache_dir=cache_dir)
    if not background or not groups:
        done = [_feature_group(light, group, cohort, progress=progress, **args) for group in groups]
        return FeatureJob(bundle, done=done)
    from ovfdlr.parallel import BackgroundCall

    calls = [
        BackgroundCall(_feature_group, light, group, cohort, progress=False, **args)
        for group in groups
    ]
    return FeatureJob(bundle, calls=calls)


class FeatureJob:
    """Feature sets being computed for a cohort; :meth:`result` fuses them."""

    def __init__(self, bundle: Bundle, *, done=None, calls=None):
        self.bundle, self._done, self._calls = bundle, done, calls or []

    def result(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(features in the column order the model expects, failures), waiting if need be.

        The first background process to fail stops the others; its error is raised here.
        """
        from multiprocessing.connection import wait

        from ovfdlr.selection import fuse

        parts = self._done
        if parts is None:
            try:
                found: dict[int, Any] = {}
                waiting = {call.connection: i for i, call in enumerate(self._calls)}
                while waiting:
                    for connection in wait(list(waiting)):
                        i = waiting.pop(connection)
                        found[i] = self._calls[i].result()
                parts = [found[i] for i in range(len(self._calls))]
            finally:
                self.close()
        tables = [table for group_tables, _ in parts for table in group_tables]
        errors = [e for _, group_errors in parts for e in group_errors if len(e)]
        error_frame = (
            pd.concat(errors, ignore_index=True)
            if errors
            else pd.DataFrame(columns=["case_id", "stage", "reason"])
        )
        columns = self.bundle.record.input_columns
        features = fuse(tables)
        if features.empty:  # every case failed somewhere: the reasons say where
            return pd.DataFrame(columns=columns), error_frame
        missing = [c for c in columns if c not in features.columns]
        if missing:
            raise BundleError(
                f"the computed features lack {len(missing)} column(s) the model expects, e.g. "
                + ", ".join(missing[:5])
            )
        return features[columns], error_frame

    def close(self) -> None:
        """Stop the background processes still running (after :meth:`result`, none are)."""
        for call in self._calls:
            call.terminate()
        self._calls = []


def _feature_group(
    bundle: Bundle,
    names: list[str],
    cohort: pd.DataFrame,
    *,
    weights: str | None,
    jobs: int | None,
    cache_dir: Any,
    progress: bool,
) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Feature tables and failure tables of the named feature sets (one process's work)."""
    sets = bundle.record.feature_sets
    tables, errors = [], []
    if "radiomics" in names:
        from ovfdlr.radiomics import extract_radiomics, load_params

        params = load_params(bundle.layout.file(sets.radiomics.params))
        result = extract_radiomics(
            cohort, params, cache_dir=cache_dir, jobs=jobs, progress=progress
        )
        tables.append(result.features)
        errors.append(result.errors)
    if "morphometry" in names:
        from ovfdlr.morphometry import MorphometrySettings, extract_morphometry

        settings = MorphometrySettings(
            **{
                k: tuple(v) if isinstance(v, list) else v
                for k, v in sets.morphometry.settings.items()
            }
        )
        result = extract_morphometry(
            cohort, settings, cache_dir=cache_dir, jobs=jobs, progress=progress
        )
        tables.append(result.features)
        errors.append(result.errors)
    if "deep" in names:
        table, error = _deep_features(bundle, cohort, weights, jobs, cache_dir, progress)
        tables.append(table)
        errors.append(error)
    return tables, errors


def _deep_features(bundle: Bundle, cohort, weights, jobs, cache_dir, progress):
    from ovfdlr.deep.backbones import load_backbone, spec_digest
    from ovfdlr.deep.features import TrainingPCA, extract_deep
    from ovfdlr.deep.inputs import InputSettings

    deep = bundle.record.feature_sets.deep
    if deep.finetuned:
        backbone = load_backbone(f"file:{bundle.layout.file(deep.finetuned)}")
    else:
        spec = deep.weights
        if weights:  # the same weights, found elsewhere on this machine
            family = spec.partition(":")[0]
            spec = f"{family}:{weights}" if family != "random" else spec
        digest = spec_digest(spec)
        if digest != deep.weights_sha256:
            raise BundleError(
                f"weights {spec} are not those the bundle was trained with (SHA-256 "
                f"{deep.weights_sha256[:12]}...); pass the same file with --weights"
            )
        backbone = load_backbone(spec)
    if deep.normalization:
        backbone.normalization = deep.normalization
    settings = InputSettings(**deep.input)
    result = extract_deep(
        cohort,
        backbone,
        bundle.arm,
        settings,
        batch_size=deep.batch_size,
        jobs=jobs,
        cache_dir=cache_dir,
        progress=progress,
    )
    features = result.features
    if deep.pca:
        features = TrainingPCA.load(bundle.layout.file(deep.pca)).transform(features)
    return features, result.errors


def predict(
    bundle: Bundle,
    cohort: pd.DataFrame,
    *,
    weights: str | None = None,
    jobs: int | None = 1,
    cache_dir: Any = True,
    explain_top: int = TOP_CONTRIBUTIONS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Class probabilities, predicted class and the strongest SHAP contributions, computed in
    this process. Returns (predictions, failures); see :func:`score` for the columns."""
    features, failures = case_features(
        bundle, cohort, weights=weights, jobs=jobs, cache_dir=cache_dir
    )
    return score(load_scoring(bundle), features, explain_top=explain_top), failures


def score(
    bundle: Bundle, features: pd.DataFrame, *, explain_top: int = TOP_CONTRIBUTIONS
) -> pd.DataFrame:
    """Score computed features with a loaded bundle (:func:`~ovfdlr.bundle.load_scoring`).

    One row per case: the probability of each class of the bundle's label scheme
    (``LabelScheme.proba_columns``: ``p0``, ``p1``, ...), ``predicted_class`` (the class
    value), ``predicted_name`` and ``contributions`` (a list of {feature, value, shap} for the
    predicted class, strongest first); an empty table when there are no features.
    """
    from ovfdlr.explain import explain
    from ovfdlr.training import predict_proba

    if features.empty:
        return pd.DataFrame()
    labels = bundle.labels
    proba = predict_proba(bundle.model, features, labels)
    table = pd.DataFrame(proba, index=features.index, columns=labels.proba_columns)
    positions = proba.argmax(axis=1)
    table["predicted_class"] = [labels.values[k] for k in positions]
    table["predicted_name"] = [labels.names[k] for k in positions]
    try:
        shap_result = explain(
            bundle.model,
            bundle.background,
            features,
            seed=bundle.record.seed,
            background_selected=True,
            labels=labels,
        )
    except Exception as exc:  # the probabilities stand without their explanation
        table["contributions"] = [[] for _ in range(len(table))]
        table["explained_output"] = f"unavailable: {type(exc).__name__}: {exc}"
        return table.rename_axis("case_id")
    contributions = []
    for i, k in enumerate(positions):
        values = shap_result.values[i, :, k]
        order = np.argsort(-np.abs(values), kind="stable")[:explain_top]
        contributions.append(
            [
                {
                    "feature": shap_result.features[j],
                    "value": float(shap_result.data.iloc[i, j]),
                    "shap": float(values[j]),
                }
                for j in order
            ]
        )
    table["contributions"] = contributions
    table["explained_output"] = shap_result.output_name
    return table.rename_axis("case_id")


def describe(bundle: Bundle, row: pd.Series, top: int = TOP_CONTRIBUTIONS) -> str:
    """One line of a scored case: its class, each class's probability by name, top SHAP."""
    labels = bundle.labels
    proba = ", ".join(
        f"p({name}) = {row[column]:.3f}"
        for name, column in zip(labels.names, labels.proba_columns, strict=True)
    )
    shap = ", ".join(f"{c['feature']} {c['shap']:+.3f}" for c in row["contributions"][:top])
    return (
        f"{labels.label_text(row['predicted_class'])}; {proba}; top SHAP: {shap or 'unavailable'}"
    )


def write_predictions(table: pd.DataFrame, prefix: Path) -> list[Path]:
    """``<prefix>.json`` (one record per case, contributions nested) and ``<prefix>.csv``
    (contributions flattened as feature:shap pairs)."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    records = table.reset_index().to_dict("records")
    json_path = prefix.with_suffix(".json")
    json_path.write_text(json.dumps(records, indent=2, default=_number))
    flat = table.copy()
    flat["contributions"] = [
        "; ".join(f"{c['feature']}={c['shap']:+.4f}" for c in row) for row in table["contributions"]
    ]
    csv_path = prefix.with_suffix(".csv")
    flat.to_csv(csv_path)
    return [json_path, csv_path]


def _number(value):
    """numpy scalars in the JSON predictions (class values as integers, the rest floats)."""
    if isinstance(value, np.integer):
        return int(value)
    return float(value)


__all__ = [
    "TOP_CONTRIBUTIONS",
    "FeatureJob",
    "Prediction",
    "case_features",
    "describe",
    "predict",
    "run_prediction",
    "score",
    "start_features",
    "write_predictions",
]
