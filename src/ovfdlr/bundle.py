"""Deployable model bundles: the format, written, verified and loaded.

A bundle (``bundles/<arm>/`` of a run, :class:`ovfdlr.layout.BundleLayout`) holds everything
needed to score a new vertebra:

- ``bundle.json`` (:class:`ovfdlr.records.BundleRecord`): the arm, its label scheme and class
  names, versions, the feature sets with their settings (the resolved PyRadiomics parameters,
  the morphometry settings, the deep-input settings and the weights reference with its
  SHA-256), the input columns the model expects, the chosen classifier, the Youden thresholds,
  the training summary, the SHA-256 of every other file, and a checksum of itself;
- ``model.skops``: the fitted selection and classifier, loaded only with ovfdlr's explicit list
  of trusted types (:mod:`ovfdlr.modelio`);
- ``radiomics.yaml`` (the PyRadiomics parameter file), ``background.parquet`` (training rows
  for the SHAP explainer, numbered 0, 1, ... rather than by case), and ``pca.npz`` /
  ``finetuned.safetensors`` when the arm used them.

``bundle.json`` also holds the training envelope (:mod:`ovfdlr.envelope`): the training rows'
acquisition quantities and selected features as ranges and quartiles, which prediction checks
every new case against. A bundle is meant to travel: none of its files holds a case or patient
identifier, an image path or a scan date of the training cohort.

Loading checks the metadata's checksum and every file against its recorded SHA-256: a modified
bundle is refused, as is a model file holding a type ovfdlr does not trust. Pretrained
ImageNet/RadImageNet weights are not copied (size, licence); the bundle records their spec and
SHA-256, and prediction refuses weights that differ. Scoring new cases with a bundle is
:mod:`ovfdlr.predict`.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ovfdlr import __version__
from ovfdlr.atomic import atomic_write, atomic_write_text
from ovfdlr.cache import file_digest
from ovfdlr.labels import LabelScheme
from ovfdlr.layout import BundleLayout
from ovfdlr.records import (
    BUNDLE_FORMAT,
    ArmRecord,
    BundleRecord,
    DeepSet,
    FeatureSets,
    MorphometrySet,
    RadiomicsSet,
    RecordError,
    TrainingEnvelope,
    TrainingSummary,
    parse_bundle,
    read_json,
    stored_version,
    to_data,
)

# this module stays light to import (no scikit-learn, no torch): ovfdlr.predict's feature
# functions run in fresh processes while the model loads

FORMAT = BUNDLE_FORMAT

#: What a bundle holds, in the run's bundle-stage key: a run rewrites the bundles written by an
#: ovfdlr whose bundles held less (2: the training envelope, background rows without case ids).
CONTENT = 2


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and the reason."""


# ---------------------------------------------------------------------------------------------
# writing


@dataclass
class DeepSource:
    """An arm's deep feature set as the run computed it: the network (``weights`` spec, its
    label and whether it was pretrained), the input settings, and the fitted files beside the
    features (fine-tuned weights, PCA) when the arm has them."""

    weights: str
    weights_label: str
    pretrained: bool
    normalization: str | None
    input: dict[str, Any]
    batch_size: int
    finetuned: Path | None = None
    pca: Path | None = None


@dataclass
class BundleInputs:
    """Everything a bundle is written from, stated explicitly.

    ``features`` are the arm's input features as the model was fitted on them (columns in
    order) and ``training`` the index of the training rows among them (the SHAP background).
    ``acquisition`` holds the acquisition quantities of (at least) the training cases
    (:func:`ovfdlr.envelope.extract_acquisition`); only the training rows enter the envelope.
    """

    arm: ArmRecord
    model_file: Path
    features: pd.DataFrame
    training: pd.Index
    training_cohort: str
    seed: int
    radiomics_params: dict[str, Any] | None = None
    radiomics_engine: str = "native"
    morphometry_settings: dict[str, Any] | None = None
    deep: DeepSource | None = None
    acquisition: pd.DataFrame | None = None


def write_bundle(inputs: BundleInputs, out: str | Path) -> Path:
    """Write the bundle of one trained arm into ``out`` (replacing what is there)."""
    from ovfdlr.modelio import load_model, save_model

    layout = BundleLayout(Path(out))
    if layout.folder.exists():
        shutil.rmtree(layout.folder)
    layout.folder.mkdir(parents=True)
    model = load_model(inputs.model_file)
    save_model(model, layout.model)
    feature_sets = _write_feature_sets(inputs, layout)
    _write_background(model, inputs.features.loc[inputs.training], layout)
    record = _bundle_record(inputs, feature_sets, training_cases=len(inputs.training))
    record = record.model_copy(update={"envelope": training_envelope(inputs)})
    return _seal(record, layout)


def training_envelope(inputs: BundleInputs) -> TrainingEnvelope:
    """The envelope of the training rows only: their acquisition quantities (when measured)
    and their values of the arm's selected features, as aggregates."""
    from ovfdlr.envelope import build_envelope

    selected = [c for c in inputs.arm.selected_features if c in inputs.features.columns]
    features = inputs.features.loc[inputs.training, selected]
    acquisition = inputs.acquisition
    if acquisition is not None:
        acquisition = acquisition.reindex(inputs.training)
    return build_envelope(acquisition, features)


def _write_feature_sets(inputs: BundleInputs, layout: BundleLayout) -> FeatureSets:
    """The feature sets' settings, with the files they need copied into the bundle."""
    sets = FeatureSets()
    if inputs.radiomics_params is not None:
        params = yaml.safe_dump(inputs.radiomics_params, sort_keys=False)
        atomic_write_text(layout.radiomics_params, params)
        from ovfdlr.engines import engine_version

        sets.radiomics = RadiomicsSet(
            params=layout.RADIOMICS_PARAMS,
            engine=inputs.radiomics_engine,
            engine_version=engine_version(inputs.radiomics_engine),
        )
    if inputs.morphometry_settings is not None:
        sets.morphometry = MorphometrySet(settings=dict(inputs.morphometry_settings))
    if inputs.deep is not None:
        sets.deep = _deep_set(inputs.deep, layout)
    return sets


def _deep_set(deep: DeepSource, layout: BundleLayout) -> DeepSet:
    from ovfdlr.deep.backbones import spec_digest

    copied: dict[str, str] = {}
    for key, source, target in (
        ("finetuned", deep.finetuned, layout.finetuned),
        ("pca", deep.pca, layout.pca),
    ):
        if source is None:
            continue
        if not Path(source).is_file():
            raise BundleError(f"{source} is missing: the arm's features depend on it")
        shutil.copy2(source, target)
        copied[key] = target.name
    return DeepSet(
        weights=deep.weights,
        weights_label=deep.weights_label,
        pretrained=deep.pretrained,
        normalization=deep.normalization,
        input=dict(deep.input),
        batch_size=deep.batch_size,
        weights_sha256=spec_digest(deep.weights),
        **copied,
    )


def _write_background(model, training: pd.DataFrame, layout: BundleLayout) -> None:
    """The explainers' reference: every training row, as the classifier sees it (selected,
    z-scored), so prediction explains exactly as the run did. Rows are numbered 0, 1, ...:
    the explainers use the values only, and the bundle carries no case identifier."""
    selected = model.named_steps["selection"].transform(training).reset_index(drop=True)
    atomic_write(layout.background, selected.to_parquet)


def _bundle_record(
    inputs: BundleInputs, feature_sets: FeatureSets, *, training_cases: int
) -> BundleRecord:
    arm = inputs.arm
    labels = arm.label_scheme
    return BundleRecord(
        arm=arm.arm,
        ovfdlr=__version__,
        labels=labels.to_dict(),
        classes=list(labels.values),
        class_names={str(k): v for k, v in labels.class_names.items()},
        classifier=arm.chosen,
        selected_features=arm.selected_features,
        input_columns=[str(c) for c in inputs.features.columns],
        feature_sets=feature_sets,
        youden_thresholds=arm.youden_thresholds,
        training=TrainingSummary(
            cohort=inputs.training_cohort,
            cases=training_cases,
            macro_auc={k: v.model_dump() for k, v in arm.macro_auc.items()},
        ),
        seed=inputs.seed,
        files={},
    )


def _seal(record: BundleRecord, layout: BundleLayout) -> Path:
    """Record every file's SHA-256 and the metadata's checksum; write ``bundle.json``."""
    from ovfdlr.records import write_bundle as write_record

    files = sorted(p.name for p in layout.folder.iterdir() if p.name != layout.BUNDLE_JSON)
    record = record.model_copy(
        update={"files": {name: file_digest(layout.file(name)) for name in files}}
    )
    record = record.model_copy(update={"checksum": _checksum(to_data(record))})
    write_record(layout.bundle_json, record)
    return layout.folder


def _checksum(meta: dict) -> str:
    """SHA-256 of the metadata itself (without this field), canonical JSON."""
    from ovfdlr.cache import stable_hash

    return stable_hash({k: v for k, v in meta.items() if k != "checksum"})


# ---------------------------------------------------------------------------------------------
# reading


@dataclass
class Bundle:
    """A verified bundle; ``model`` and ``background`` are None until :func:`load_scoring`."""

    folder: Path
    record: BundleRecord
    model: Any = None
    background: pd.DataFrame | None = None

    @property
    def arm(self) -> str:
        return self.record.arm

    @property
    def labels(self) -> LabelScheme:
        return self.record.label_scheme

    @property
    def layout(self) -> BundleLayout:
        return BundleLayout(self.folder)

    @cached_property
    def meta(self) -> dict[str, Any]:
        """The record as the JSON object of a ``bundle.json`` of this version."""
        return to_data(self.record)

    @cached_property
    def sha256(self) -> str:
        """SHA-256 of ``bundle.json`` as stored (it records every other file's SHA-256, so it
        names the whole bundle)."""
        return file_digest(self.layout.bundle_json)

    def weights(self, override: str | None = None) -> tuple[str | None, str | None]:
        """The deep network's weights spec as prediction uses it (``override``: the path of the
        same pretrained file on this machine) and its state: ``untrained`` (a seeded random
        network), ``pretrained``, ``fine-tuned`` (pretrained, then fine-tuned on the training
        cohort) or ``fine-tuned from untrained``; (None, None) without deep features."""
        deep = self.record.feature_sets.deep
        if deep is None:
            return None, None
        spec = deep.weights
        family = spec.partition(":")[0]
        if override and family != "random" and not deep.finetuned:
            spec = f"{family}:{override}"
        if deep.finetuned:
            return spec, "fine-tuned" if deep.pretrained else "fine-tuned from untrained"
        return spec, "pretrained" if deep.pretrained else "untrained"


def load_bundle(folder: str | Path, *, model: bool = True) -> Bundle:
    """Read a bundle, verify it and (``model=True``) load the model with trusted types only.

    Verified: the format and schema version, the metadata's own checksum (over the file as
    stored), that every file the bundle uses has a recorded SHA-256 and lies in the bundle's
    folder, and every file's SHA-256. This is an integrity check (accidental or careless
    changes are caught); it is not a signature, so a bundle is only as trustworthy as the place
    it comes from.
    """
    layout = BundleLayout(Path(folder))
    meta_path = layout.bundle_json
    if not meta_path.is_file():
        raise BundleError(f"{layout.folder}: not a bundle (no bundle.json)")
    try:
        meta = read_json(meta_path)
        if meta.get("format") != FORMAT:
            raise BundleError(f"{meta_path}: not an ovfdlr bundle")
        stored_version(meta, meta_path)
        _verify_checksum(meta, meta_path)
        record = parse_bundle(meta, meta_path)
    except RecordError as exc:
        raise BundleError(str(exc)) from None
    _verify_files(record, layout)
    bundle = Bundle(layout.folder, record)
    return load_scoring(bundle) if model else bundle


def _verify_checksum(meta: dict[str, Any], meta_path: Path) -> None:
    if "checksum" not in meta:
        raise BundleError(f"{meta_path}: has no checksum (written by an older ovfdlr); run again")
    if meta.get("checksum") != _checksum(meta):
        raise BundleError(f"{meta_path}: modified since the bundle was written (checksum differs)")


def _verify_files(record: BundleRecord, layout: BundleLayout) -> None:
    meta_path, files = layout.bundle_json, record.files
    referenced = {layout.MODEL, layout.BACKGROUND} | record.feature_sets.files()
    for name in referenced | set(files):
        if Path(name).name != name:
            raise BundleError(f"{meta_path}: file name '{name}' points outside the bundle")
        if name not in files:
            raise BundleError(f"{meta_path}: {name} has no recorded SHA-256")
    for name, digest in files.items():
        path = layout.file(name)
        if not path.is_file():
            raise BundleError(f"{layout.folder}: file {name} is missing")
        if file_digest(path) != digest:
            raise BundleError(f"{path}: modified since the bundle was written (SHA-256 differs)")


def load_scoring(bundle: Bundle) -> Bundle:
    """The bundle with what scoring needs besides the features: the model (trusted types
    only), the SHAP background, and the explainer library imported (slow to import, so the
    ``ovfdlr predict`` command does all of this while the features compute elsewhere)."""
    from ovfdlr.modelio import ModelFileError, load_model

    if bundle.model is not None:
        return bundle
    try:
        model = load_model(bundle.layout.model)
    except ModelFileError as exc:
        raise BundleError(str(exc)) from None
    with contextlib.suppress(Exception):  # explain() reports it; the probabilities stand
        import shap  # noqa: F401
    return replace(bundle, model=model, background=pd.read_parquet(bundle.layout.background))
