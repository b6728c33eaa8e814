"""Scoring new vertebrae with a bundle (``ovfdlr predict``).

Predicting recomputes the case's features exactly as the run did (same code, same settings
recorded in ``bundle.json``), so a case identical to a training case gets the probabilities the
run reported. :func:`run_prediction` is the whole command: verify the bundle, compute the
features (and the case's acquisition quantities) in fresh processes (one per group of feature
sets) while the model, the SHAP background and the explainer load here, score, explain, check
each case against the bundle's training envelope (:mod:`ovfdlr.envelope`) and write the
results. Every output says what produced it: the bundle (path and SHA-256 of ``bundle.json``),
the classifier, the deep weights and whether they were trained, the class names and the units
of the SHAP values (docs/predictions.md).

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
# features (torch) import different libraries, so each group runs in its own process; the
# acquisition quantities of the training envelope are measured with the image features
_GROUPS = (("acquisition", "radiomics", "morphometry"), ("deep",))

#: Endings of an ``--out`` name that name one of the two outputs (:func:`output_paths`).
OUTPUT_SUFFIXES = (".json", ".csv")


@dataclass
class Prediction:
    """What :func:`run_prediction` made: the scored cases (see :func:`score`), the cases that
    could not be scored (``case_id``, ``stage``, ``reason``), the files written, the bundle,
    and the cases' acquisition quantities (None when the bundle records no envelope)."""

    table: pd.DataFrame
    failures: pd.DataFrame
    written: list[Path]
    bundle: Bundle
    acquisition: pd.DataFrame | None = None


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
    ``<out>.csv`` (:func:`output_paths`) when ``out`` is given and a case was scored.

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
    table = score(
        loaded, features, acquisition=job.acquisition, weights=weights, explain_top=explain_top
    )
    written = write_predictions(table, out) if out is not None and not table.empty else []
    return Prediction(table, failures, written, loaded, job.acquisition)


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


def radiomics_columns(columns) -> list[str]:
    """The radiomics feature names among ``columns`` (PyRadiomics' ``<image>_<class>_<name>``)."""
    from ovfdlr.engines.catalogue import is_feature_name

    return [c for c in columns if is_feature_name(c)]


def radiomics_needed(bundle: Bundle) -> list[str] | None:
    """The radiomics features the bundle's model selected: what ``predict`` computes. None:
    every feature of the bundle's parameters, for an engine whose columns are not PyRadiomics'
    names (``ibsi``), whose parameters cannot be cut down to some columns."""
    from ovfdlr.engines import PYRADIOMICS_NAMED

    record = bundle.record
    if record.feature_sets.radiomics is None:
        return []
    if record.feature_sets.radiomics.engine not in PYRADIOMICS_NAMED:
        return None
    selected = set(record.selected_features)
    return [c for c in radiomics_columns(record.input_columns) if c in selected]


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
    if bundle.record.envelope is not None:
        present.append("acquisition")
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
    """Feature sets being computed for a cohort; :meth:`result` fuses them. After it,
    ``acquisition`` holds the cases' acquisition quantities (None when the bundle records no
    training envelope)."""

    def __init__(self, bundle: Bundle, *, done=None, calls=None):
        self.bundle, self._done, self._calls = bundle, done, calls or []
        self.acquisition: pd.DataFrame | None = None

    def result(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(features in the column order the model expects, failures), waiting if need be.

        The first background process to fail stops the others; its error is raised here. A
        case whose acquisition quantities cannot be measured is not a failure: its envelope
        check covers its features only.
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
        tables = [table for group_tables, _, _ in parts for table in group_tables]
        errors = [e for _, group_errors, _ in parts for e in group_errors if len(e)]
        measured = [a for _, _, a in parts if a is not None]
        self.acquisition = measured[0] if measured else None
        error_frame = (
            pd.concat(errors, ignore_index=True)
            if errors
            else pd.DataFrame(columns=["case_id", "stage", "reason"])
        )
        columns = self.bundle.record.input_columns
        features = fuse(tables)
        if features.empty:  # every case failed somewhere: the reasons say where
            return pd.DataFrame(columns=columns), error_frame
        # radiomics columns the selection drops are not computed: missing values, which the
        # model's column-wise steps (imputation, scaling) carry to the selector that drops them
        needed = radiomics_needed(self.bundle)
        skipped = (
            set(radiomics_columns(self.bundle.record.input_columns)) - set(needed)
            if needed is not None
            else set()
        )
        features = features.reindex(columns=[*features.columns, *sorted(skipped)])
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
) -> tuple[list[pd.DataFrame], list[pd.DataFrame], pd.DataFrame | None]:
    """Feature tables, failure tables and acquisition quantities (None unless named) of the
    named feature sets (one process's work)."""
    sets = bundle.record.feature_sets
    tables, errors, acquisition = [], [], None
    if "acquisition" in names:
        from ovfdlr.envelope import extract_acquisition

        acquisition = extract_acquisition(
            cohort, cache_dir=cache_dir, jobs=jobs, progress=progress
        ).features
    needed = radiomics_needed(bundle)
    if "radiomics" in names and needed != []:
        from ovfdlr.radiomics import extract_radiomics, load_params, params_for_features

        # only the image types, classes and features the model's selected features come from,
        # with the engine the model was trained with
        params = load_params(bundle.layout.file(sets.radiomics.params))
        result = extract_radiomics(
            cohort,
            params if needed is None else params_for_features(params, needed),
            cache_dir=cache_dir,
            jobs=jobs,
            progress=progress,
            engine=sets.radiomics.engine,
        )
        # (no columns when every case failed)
        tables.append(
            result.features if needed is None else result.features.reindex(columns=needed)
        )
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
    return tables, errors, acquisition


def _deep_features(bundle: Bundle, cohort, weights, jobs, cache_dir, progress):
    from ovfdlr.deep.backbones import load_backbone, spec_digest
    from ovfdlr.deep.features import TrainingPCA, extract_deep
    from ovfdlr.deep.inputs import InputSettings

    deep = bundle.record.feature_sets.deep
    if deep.finetuned:
        backbone = load_backbone(f"file:{bundle.layout.file(deep.finetuned)}")
    else:
        spec, _ = bundle.weights(weights)  # ``weights``: the same file elsewhere on this machine
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
    """Class probabilities, predicted class, the strongest SHAP contributions and the envelope
    check, computed in this process. Returns (predictions, failures); see :func:`score` for the
    columns."""
    job = start_features(bundle, cohort, weights=weights, jobs=jobs, cache_dir=cache_dir)
    features, failures = job.result()
    table = score(
        load_scoring(bundle),
        features,
        acquisition=job.acquisition,
        weights=weights,
        explain_top=explain_top,
    )
    return table, failures


def score(
    bundle: Bundle,
    features: pd.DataFrame,
    *,
    acquisition: pd.DataFrame | None = None,
    weights: str | None = None,
    explain_top: int = TOP_CONTRIBUTIONS,
) -> pd.DataFrame:
    """Score computed features with a loaded bundle (:func:`~ovfdlr.bundle.load_scoring`).

    One row per case (index ``case_id``), the columns of docs/predictions.md: the predicted
    class (``predicted_class``, ``predicted_name``), the probability of each class of the
    bundle's label scheme (``LabelScheme.proba_columns``: ``p0``, ``p1``, ...) and the same
    with the class names (``probabilities``), the envelope check (``out_of_domain``,
    ``outside_envelope``; ``acquisition`` holds the cases' acquisition quantities, when
    measured), the strongest SHAP contributions to the predicted class (``contributions``, a
    list of {feature, value, shap}, strongest first) and their units (``explained_output``),
    and what produced them (``arm``, ``classifier``, ``classifier_name``, ``weights`` and
    ``weights_state``, ``bundle``, ``bundle_sha256``). An empty table when there are no
    features.
    """
    from ovfdlr.classifiers import display_name
    from ovfdlr.envelope import domain_table
    from ovfdlr.explain import explain
    from ovfdlr.training import predict_proba

    if features.empty:
        return pd.DataFrame()
    labels = bundle.labels
    proba = predict_proba(bundle.model, features, labels)
    table = pd.DataFrame(index=features.index)
    positions = proba.argmax(axis=1)
    table["predicted_class"] = [labels.values[k] for k in positions]
    table["predicted_name"] = [labels.names[k] for k in positions]
    for j, column in enumerate(labels.proba_columns):
        table[column] = proba[:, j]
    table["probabilities"] = [
        [
            {"class": int(value), "name": name, "p": float(p)}
            for value, name, p in zip(labels.values, labels.names, row, strict=True)
        ]
        for row in proba
    ]
    domain = domain_table(bundle.record.envelope, features, acquisition)
    table["out_of_domain"] = domain["out_of_domain"]
    table["outside_envelope"] = domain["outside_envelope"]
    table["contributions"], table["explained_output"] = _explanations(
        bundle, features, positions, explain_top, explain
    )
    spec, state = bundle.weights(weights)
    provenance = {
        "arm": bundle.arm,
        "classifier": bundle.record.classifier,
        "classifier_name": display_name(bundle.record.classifier),
        "weights": spec,
        "weights_state": state,
        "bundle": str(Path(bundle.folder).resolve()),
        "bundle_sha256": bundle.sha256,
    }
    for key, value in provenance.items():
        table[key] = [value] * len(table)
    return table.rename_axis("case_id")


def _explanations(bundle: Bundle, features, positions, top: int, explain):
    """The strongest SHAP contributions to each case's predicted class, and what the SHAP
    values are in (``unavailable: ...`` when the explainer failed; the probabilities stand)."""
    try:
        shap_result = explain(
            bundle.model,
            bundle.background,
            features,
            seed=bundle.record.seed,
            background_selected=True,
            labels=bundle.labels,
        )
    except Exception as exc:
        return [[] for _ in range(len(features))], f"unavailable: {type(exc).__name__}: {exc}"
    contributions = []
    for i, k in enumerate(positions):
        values = shap_result.values[i, :, k]
        order = np.argsort(-np.abs(values), kind="stable")[:top]
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
    return contributions, shap_result.output_name


def header(table: pd.DataFrame) -> list[str]:
    """What produced a table of predictions, as console lines: the bundle and its SHA-256, the
    classifier, the deep weights (saying when they are untrained) and the SHAP units."""
    first = table.iloc[0]
    lines = [
        f"bundle: {first['bundle']} (bundle.json SHA-256 {first['bundle_sha256']})",
        f"arm {first['arm']}; classifier: {first['classifier_name']} ({first['classifier']})",
    ]
    if first["weights"] is None:
        lines.append("deep weights: none (no deep features)")
    elif first["weights_state"] == "untrained":
        lines.append(
            f"deep weights: {first['weights']}: UNTRAINED (a seeded random ResNet-50; its deep "
            "features carry no learned image content)"
        )
    else:
        lines.append(f"deep weights: {first['weights']} ({first['weights_state']})")
    lines.append(f"SHAP values in: {first['explained_output']}")
    return lines


def describe(bundle: Bundle, row: pd.Series, top: int = TOP_CONTRIBUTIONS) -> str:
    """The lines of a scored case: its class, each class's probability by name, whether it is
    outside the model's domain, its top SHAP contributions, then one indented line per quantity
    outside the training envelope."""
    from ovfdlr.envelope import deviation_text

    labels = bundle.labels
    proba = ", ".join(
        f"p({name}) = {row[column]:.3f}"
        for name, column in zip(labels.names, labels.proba_columns, strict=True)
    )
    shap = ", ".join(f"{c['feature']} {c['shap']:+.3f}" for c in row["contributions"][:top])
    flag = row.get("out_of_domain")
    if flag is None or pd.isna(flag):
        domain = "domain not checked (the bundle records no training envelope)"
    elif flag:
        domain = "OUTSIDE THE MODEL'S DOMAIN"
    outside = row.get("outside_envelope") or []
    if flag is not None and not pd.isna(flag) and not flag:
        domain = (
            f"in domain ({len(outside)} quantities outside the training range, none far)"
            if outside
            else "inside the training envelope"
        )
    lines = [
        f"{labels.label_text(row['predicted_class'])}; {proba}; {domain}; "
        f"top SHAP: {shap or 'unavailable'}"
    ]
    lines += [f"    {deviation_text(entry)}" for entry in outside]
    return "\n".join(lines)


def output_paths(out: str | Path) -> tuple[Path, Path]:
    """The JSON and CSV files that ``--out`` names: ``<out>.json`` and ``<out>.csv``, the name
    kept as given (``pred.L1.whole`` -> ``pred.L1.whole.json``), except that a name already
    ending in ``.json`` or ``.csv`` loses that ending first (``pred.json`` -> ``pred.json`` and
    ``pred.csv``)."""
    out = Path(out)
    name = out.name
    for suffix in OUTPUT_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(f"{name}.json"), out.with_name(f"{name}.csv")


def write_predictions(table: pd.DataFrame, prefix: str | Path) -> list[Path]:
    """``<prefix>.json`` (one record per case, lists nested) and ``<prefix>.csv`` (lists
    flattened to text), named by :func:`output_paths`."""
    from ovfdlr.atomic import atomic_write_text
    from ovfdlr.envelope import deviation_text

    json_path, csv_path = output_paths(prefix)
    records = table.reset_index().to_dict("records")
    atomic_write_text(json_path, json.dumps(records, indent=2, default=_number))
    flat = table.copy()
    flat["probabilities"] = [
        "; ".join(f"{p['class']} {p['name']}={p['p']:.6f}" for p in row)
        for row in table["probabilities"]
    ]
    flat["outside_envelope"] = [
        "; ".join(deviation_text(entry) for entry in row) for row in table["outside_envelope"]
    ]
    flat["contributions"] = [
        "; ".join(f"{c['feature']}={c['shap']:+.4f}" for c in row) for row in table["contributions"]
    ]
    atomic_write_text(csv_path, flat.to_csv())
    return [json_path, csv_path]


def _number(value):
    """numpy scalars and pandas' missing value in the JSON predictions (class values as
    integers, flags as booleans, the rest floats)."""
    if value is pd.NA:
        return None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return float(value)


__all__ = [
    "TOP_CONTRIBUTIONS",
    "FeatureJob",
    "Prediction",
    "case_features",
    "describe",
    "header",
    "output_paths",
    "predict",
    "run_prediction",
    "score",
    "start_features",
    "write_predictions",
]
