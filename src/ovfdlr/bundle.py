"""Deployable model bundles and ``ovfdlr predict``.

A bundle (``bundles/<arm>/`` of a run) holds everything needed to score a new vertebra:

- ``bundle.json``: the arm, class names, versions, the feature sets with their settings (the
  resolved PyRadiomics parameters, the morphometry settings, the deep-input settings and the
  weights reference with its SHA-256), the input columns the model expects, the chosen
  classifier, the Youden thresholds, the training summary, and the SHA-256 of every other file;
- ``model.skops``: the fitted selection and classifier, loaded only with ovfdlr's explicit list
  of trusted types (:mod:`ovfdlr.modelio`);
- ``radiomics.yaml`` (the PyRadiomics parameter file), ``background.parquet`` (training rows
  for the SHAP explainer), and ``pca.npz`` / ``finetuned.safetensors`` when the arm used them.

Loading checks every file against its recorded SHA-256: a modified bundle is refused, as is a
model file holding a type ovfdlr does not trust. Pretrained ImageNet/RadImageNet weights are
not copied (size, licence); the bundle records their spec and SHA-256, and prediction refuses
weights that differ (``--weights`` points to the file on another machine).

Predicting recomputes the case's features exactly as the run did (same code, same settings),
so a case identical to a training case gets the probabilities the run reported.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ovfdlr import __version__
from ovfdlr.cache import file_digest

# this module stays light to import (no scikit-learn, no torch): its feature functions run in
# fresh processes while the model loads (:func:`start_features`)

FORMAT = "ovfdlr-bundle"
FORMAT_VERSION = 1
CLASS_NAMES = {0: "conservative care", 1: "either", 2: "surgery"}
TOP_CONTRIBUTIONS = 5


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and the reason."""


def write_bundle(run_dir: Path, arm, config, out: Path) -> Path:
    """Write the bundle of one arm of a finished run into ``out``."""
    from ovfdlr.cohort import load_manifest
    from ovfdlr.modelio import load_model, save_model
    from ovfdlr.morphometry import MorphometrySettings
    from ovfdlr.radiomics import load_params
    from ovfdlr.training import CLASSES

    run_dir, out = Path(run_dir), Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    folder = run_dir / "arms" / arm.name
    summary = json.loads((folder / "arm.json").read_text())
    model = load_model(folder / "models" / f"{summary['chosen']}.skops")
    save_model(model, out / "model.skops")
    feature_sets: dict[str, Any] = {}
    tables = []
    if arm.radiomics:
        params = load_params(config.radiomics.params)
        (out / "radiomics.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        feature_sets["radiomics"] = {"params": "radiomics.yaml"}
        tables.append(run_dir / "features" / "radiomics.parquet")
    if arm.morphometry:
        feature_sets["morphometry"] = {"settings": MorphometrySettings().__dict__}
        tables.append(run_dir / "features" / "morphometry.parquet")
    if arm.deep:
        deep = arm.deep
        label = json.loads((run_dir / "features" / f"deep-{arm.name}.json").read_text())
        entry: dict[str, Any] = {
            "weights": deep.weights,
            "weights_label": label["label"],
            "pretrained": label["pretrained"],
            "normalization": deep.normalization,
            "input": {
                "plane": deep.plane,
                "margin": deep.margin,
                "window_level": deep.window_level,
                "window_width": deep.window_width,
            },
            "batch_size": deep.batch_size,
        }
        from ovfdlr.deep.backbones import spec_digest

        entry["weights_sha256"] = spec_digest(deep.weights)
        for wanted, source, name, key in (
            (
                deep.finetune_epochs,
                f"finetuned-{arm.name}.safetensors",
                "finetuned.safetensors",
                "finetuned",
            ),
            (deep.pca, f"pca-{arm.name}.npz", "pca.npz", "pca"),
        ):
            if not wanted:
                continue
            path = run_dir / "features" / source
            if not path.is_file():
                raise BundleError(f"{path} is missing: the arm's features depend on it")
            shutil.copy2(path, out / name)
            entry[key] = name
        feature_sets["deep"] = entry
        tables.append(run_dir / "features" / f"deep-{arm.name}.parquet")
    from ovfdlr.arm import read_features
    from ovfdlr.training import training_rows

    features = read_features(tables)
    cohort = load_manifest(config.manifest)
    training = training_rows(features, cohort, config.cohorts.training)
    # the explainers' reference: every training row, as the classifier sees it (selected,
    # z-scored), so predict explains exactly as the run did
    background = model.named_steps["selection"].transform(features.loc[training.index])
    background.to_parquet(out / "background.parquet")
    files = sorted(p.name for p in out.iterdir())
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arm": arm.name,
        "ovfdlr": __version__,
        "classes": list(CLASSES),
        "class_names": {str(k): v for k, v in CLASS_NAMES.items()},
        "classifier": summary["chosen"],
        "selected_features": summary["selected_features"],
        "input_columns": list(features.columns),
        "feature_sets": feature_sets,
        "youden_thresholds": summary.get("youden_thresholds", {}),
        "training": {
            "cohort": config.cohorts.training,
            "cases": len(training),
            "macro_auc": summary.get("macro_auc", {}),
        },
        "seed": config.seed,
        "files": {name: file_digest(out / name) for name in files},
    }
    payload["checksum"] = _checksum(payload)
    (out / "bundle.json").write_text(json.dumps(payload, indent=2, default=str))
    return out


def _checksum(meta: dict) -> str:
    """SHA-256 of the metadata itself (without this field), canonical JSON."""
    from ovfdlr.cache import stable_hash

    return stable_hash({k: v for k, v in meta.items() if k != "checksum"})


@dataclass
class Bundle:
    """A verified bundle; ``model`` and ``background`` are None until :func:`load_scoring`."""

    folder: Path
    meta: dict[str, Any]
    model: Any = None
    background: pd.DataFrame | None = None

    @property
    def arm(self) -> str:
        return self.meta["arm"]


def load_bundle(folder: str | Path, *, model: bool = True) -> Bundle:
    """Read a bundle, verify it and (``model=True``) load the model with trusted types only.

    Verified: the format, the metadata's own checksum, that every file the bundle uses has a
    recorded SHA-256 and lies in the bundle's folder, and every file's SHA-256. This is an
    integrity check (accidental or careless changes are caught); it is not a signature, so a
    bundle is only as trustworthy as the place it comes from.
    """
    folder = Path(folder)
    meta_path = folder / "bundle.json"
    if not meta_path.is_file():
        raise BundleError(f"{folder}: not a bundle (no bundle.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path}: not valid JSON ({exc.msg})") from None
    if meta.get("format") != FORMAT:
        raise BundleError(f"{meta_path}: not an ovfdlr bundle")
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{meta_path}: bundle format {meta.get('format_version')} is not the {FORMAT_VERSION} "
            f"this ovfdlr reads"
        )
    if "checksum" not in meta:
        raise BundleError(f"{meta_path}: has no checksum (written by an older ovfdlr); run again")
    if meta.get("checksum") != _checksum(meta):
        raise BundleError(f"{meta_path}: modified since the bundle was written (checksum differs)")
    files = meta.get("files", {})
    referenced = {"model.skops", "background.parquet"} | {
        entry[key]
        for entry in meta.get("feature_sets", {}).values()
        for key in ("params", "finetuned", "pca")
        if isinstance(entry, dict) and entry.get(key)
    }
    for name in referenced | set(files):
        if Path(name).name != name:
            raise BundleError(f"{meta_path}: file name '{name}' points outside the bundle")
        if name not in files:
            raise BundleError(f"{meta_path}: {name} has no recorded SHA-256")
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            raise BundleError(f"{folder}: file {name} is missing")
        if file_digest(path) != digest:
            raise BundleError(f"{path}: modified since the bundle was written (SHA-256 differs)")
    bundle = Bundle(folder, meta)
    return load_scoring(bundle) if model else bundle


def load_scoring(bundle: Bundle) -> Bundle:
    """The bundle with what scoring needs besides the features: the model (trusted types
    only), the SHAP background, and the explainer library imported (slow to import, so the
    ``ovfdlr predict`` command does all of this while the features compute elsewhere)."""
    from ovfdlr.modelio import ModelFileError, load_model

    if bundle.model is not None:
        return bundle
    try:
        model = load_model(bundle.folder / "model.skops")
    except ModelFileError as exc:
        raise BundleError(str(exc)) from None
    with contextlib.suppress(Exception):  # explain() reports it; the probabilities stand
        import shap  # noqa: F401
    return replace(
        bundle, model=model, background=pd.read_parquet(bundle.folder / "background.parquet")
    )


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


# feature sets computed together: the image features (SimpleITK, PyRadiomics) and the deep
# features (torch) import different libraries, so each group runs in its own process
_GROUPS = (("radiomics", "morphometry"), ("deep",))


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
    sets = bundle.meta["feature_sets"]
    groups = [[name for name in group if name in sets] for group in _GROUPS]
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
        columns = self.bundle.meta["input_columns"]
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
    sets = bundle.meta["feature_sets"]
    tables, errors = [], []
    if "radiomics" in names:
        from ovfdlr.radiomics import extract_radiomics, load_params

        params = load_params(bundle.folder / sets["radiomics"]["params"])
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
                for k, v in sets["morphometry"]["settings"].items()
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


def _deep_features(bundle, cohort, weights, jobs, cache_dir, progress):
    from ovfdlr.deep.backbones import load_backbone, spec_digest
    from ovfdlr.deep.features import TrainingPCA, extract_deep
    from ovfdlr.deep.inputs import InputSettings

    deep = bundle.meta["feature_sets"]["deep"]
    if deep.get("finetuned"):
        backbone = load_backbone(f"file:{bundle.folder / deep['finetuned']}")
    else:
        spec = deep["weights"]
        if weights:  # the same weights, found elsewhere on this machine
            family = spec.partition(":")[0]
            spec = f"{family}:{weights}" if family != "random" else spec
        digest = spec_digest(spec)
        if digest != deep["weights_sha256"]:
            raise BundleError(
                f"weights {spec} are not those the bundle was trained with (SHA-256 "
                f"{deep['weights_sha256'][:12]}...); pass the same file with --weights"
            )
        backbone = load_backbone(spec)
    if deep.get("normalization"):
        backbone.normalization = deep["normalization"]
    settings = InputSettings(**deep["input"])
    result = extract_deep(
        cohort,
        backbone,
        bundle.arm,
        settings,
        batch_size=deep["batch_size"],
        jobs=jobs,
        cache_dir=cache_dir,
        progress=progress,
    )
    features = result.features
    if deep.get("pca"):
        features = TrainingPCA.load(bundle.folder / deep["pca"]).transform(features)
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
    """Class probabilities, predicted ASTLOF class and the strongest SHAP contributions.

    Returns (predictions, failures); see :func:`score` for the columns.
    """
    features, failures = case_features(
        bundle, cohort, weights=weights, jobs=jobs, cache_dir=cache_dir
    )
    return score(load_scoring(bundle), features, explain_top=explain_top), failures


def score(
    bundle: Bundle, features: pd.DataFrame, *, explain_top: int = TOP_CONTRIBUTIONS
) -> pd.DataFrame:
    """Score computed features with a loaded bundle (:func:`load_scoring`).

    One row per case: ``p0``, ``p1``, ``p2``, ``predicted_class``, ``predicted_name`` and
    ``contributions`` (a list of {feature, value, shap} for the predicted class, strongest
    first); an empty table when there are no features.
    """
    from ovfdlr.explain import explain
    from ovfdlr.training import PROBA, predict_proba

    if features.empty:
        return pd.DataFrame()
    proba = predict_proba(bundle.model, features)
    table = pd.DataFrame(proba, index=features.index, columns=PROBA)
    table["predicted_class"] = proba.argmax(axis=1)
    table["predicted_name"] = table["predicted_class"].map(
        {int(k): v for k, v in bundle.meta["class_names"].items()}
    )
    try:
        shap_result = explain(
            bundle.model,
            bundle.background,
            features,
            seed=bundle.meta.get("seed", 0),
            background_selected=True,
        )
    except Exception as exc:  # the probabilities stand without their explanation
        table["contributions"] = [[] for _ in range(len(table))]
        table["explained_output"] = f"unavailable: {type(exc).__name__}: {exc}"
        return table.rename_axis("case_id")
    contributions = []
    for i, case_id in enumerate(features.index):
        k = int(table.loc[case_id, "predicted_class"])
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


def write_predictions(table: pd.DataFrame, prefix: Path) -> list[Path]:
    """``<prefix>.json`` (one record per case, contributions nested) and ``<prefix>.csv``
    (contributions flattened as feature:shap pairs)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    records = table.reset_index().to_dict("records")
    json_path = prefix.with_suffix(".json")
    json_path.write_text(json.dumps(records, indent=2, default=float))
    flat = table.copy()
    flat["contributions"] = [
        "; ".join(f"{c['feature']}={c['shap']:+.4f}" for c in row) for row in table["contributions"]
    ]
    csv_path = prefix.with_suffix(".csv")
    flat.to_csv(csv_path)
    return [json_path, csv_path]
