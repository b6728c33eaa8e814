"""The three JSON records of a run: ``run.json``, ``arms/<arm>/arm.json`` and
``bundles/<arm>/bundle.json``, as pydantic models with one reader and one writer each.

Each record carries ``version``, the schema version (:data:`VERSION`). Files written before
records had one are version 1 and are migrated in memory when read (arm and bundle records get
the ASTLOF label scheme they were trained on; an arm's old training-cohort AUC keys ``train``
and ``train (cv)`` become ``train (apparent)`` and ``train (out-of-fold)``). A file of a newer
version than this ovfdlr knows is refused with a message naming the file and both versions.
Every problem is a :class:`RecordError` naming the file and the key.

Only the records are checked here; a bundle's checksum and file digests are verified by
:mod:`ovfdlr.bundle` (over the file as stored, before any migration).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ovfdlr.labels import LabelScheme, astlof

VERSION = 2  # the schema version this ovfdlr writes and reads (and every older one)
BUNDLE_FORMAT = "ovfdlr-bundle"


class RecordError(ValueError):
    """A record file that cannot be read; the message names the file and the problem."""


class Record(BaseModel):
    """Fields are explicit and unknown keys are errors: a typo cannot pass unnoticed."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------
# run.json


class ManifestRef(Record):
    path: str
    sha256: str | None  # None: a failed run that could not read the manifest
    cases: int | None  # None: a failed run that had not loaded the cohort


class StageEntry(Record):
    name: str
    seconds: float
    status: str  # computed | cached


class DeepNetwork(Record):
    """What an arm's network was (``features/deep-<arm>.json``)."""

    weights: str
    label: str
    pretrained: bool
    finetuned: bool = False
    device: str = "cpu"  # where it ran: cpu | cuda
    device_requested: str | None = None  # deep.device: auto | cpu | cuda
    device_note: str | None = None  # why auto ran on the CPU
    mixed_precision: bool = False


class RunArm(Record):
    folder: str  # relative to the run folder
    feature_sets: list[str] = []
    deep: DeepNetwork | None = None
    chosen: str | None = None


class RunRecord(Record):
    """``run.json``: versions, seed, hashes, stage timings, arms, warnings, failures.

    ``status`` is ``complete`` once every stage and the report are written, ``failed`` with
    ``failed_stage`` and ``error`` (the one-line reason) when the run stopped on an error, and
    ``running`` while a run writes the folder (what a killed run leaves). Files written before
    runs recorded it are ``complete``.
    """

    version: int = VERSION
    ovfdlr: str
    created: str
    name: str
    seed: int
    config_sha256: str
    versions: dict[str, str]
    manifest: ManifestRef
    data_sha256: str | None
    stages: list[StageEntry]
    arms: dict[str, RunArm]
    comparisons: list[list[str]]
    training_cohort: str
    warnings: list[str]
    failed_cases: int
    # the provenance of a cohort ovfdlr generated (ovfdlr.synthetic.cohort.provenance): None
    # for real data and for runs recorded before it was kept
    synthetic: dict[str, Any] | None = None
    status: Literal["running", "complete", "failed"] = "complete"
    failed_stage: str | None = None  # the stage that failed (None: before or between stages)
    error: str | None = None  # why the run failed, one line


# ---------------------------------------------------------------------------------------------
# arm.json


class AucEntry(Record):
    auc: float | None
    lower: float | None
    upper: float | None


class Labelled(Record):
    labels: dict[str, Any]  # LabelScheme.to_dict()

    @property
    def label_scheme(self) -> LabelScheme:
        return LabelScheme.from_dict(self.labels)


class NestedFold(Record):
    """One outer fold of nested cross-validation (:func:`ovfdlr.training.nested_cv`)."""

    outer_fold: int
    chosen: str  # the classifier the inner procedure chose
    inner_cv_auc: float | None  # its cross-validated macro AUC inside the fold
    outer_auc: float | None = None  # macro AUC on the fold's test part
    n_train: int | None = None
    n_test: int
    n_selected: int | None = None


class NestedEntry(Record):
    """Whether nested cross-validation ran for the arm (and why not), and its outer folds."""

    ran: bool
    reason: str = ""  # why it did not run
    outer_seed: int | None = None
    seconds: float | None = None
    folds: list[NestedFold] = []


NESTED_NOT_RECORDED = NestedEntry(
    ran=False, reason="not recorded (arm.json written before nested cross-validation)"
)


class ArmRecord(Labelled):
    """``arm.json``: the arm, its settings, chosen model and scores, selected features, and
    whether nested cross-validation ran (``nested_cv``; absent from older files)."""

    version: int = VERSION
    arm: str
    ovfdlr: str
    settings: dict[str, Any]  # TrainSettings.as_dict()
    chosen: str
    chosen_on: str
    chosen_score: float | None
    best_params: dict[str, str]
    n_input_features: int
    selected_features: list[str]
    cohorts: dict[str, int]
    macro_auc: dict[str, AucEntry]  # by view (``train (out-of-fold)``, ``internal``, ...)
    youden_thresholds: dict[str, Any]
    timings_s: dict[str, float]
    warnings: list[str]
    nested_cv: NestedEntry = NESTED_NOT_RECORDED

    @property
    def training(self) -> str:
        """The training cohort's name."""
        return str(self.settings.get("training", "train"))


# ---------------------------------------------------------------------------------------------
# bundle.json


class RadiomicsSet(Record):
    params: str  # file name in the bundle
    # the engine the model was trained with ("<name>"; "<name> <version>"); bundles written
    # before engines were recorded were all computed by PyRadiomics
    engine: str = "pyradiomics"
    engine_version: str | None = None


class MorphometrySet(Record):
    settings: dict[str, Any]


class DeepSet(Record):
    weights: str
    weights_label: str
    pretrained: bool
    normalization: str | None = None
    input: dict[str, Any]
    batch_size: int
    weights_sha256: str
    finetuned: str | None = None  # file name in the bundle
    pca: str | None = None  # file name in the bundle


class FeatureSets(Record):
    radiomics: RadiomicsSet | None = None
    morphometry: MorphometrySet | None = None
    deep: DeepSet | None = None

    def names(self) -> list[str]:
        return [name for name in ("radiomics", "morphometry", "deep") if getattr(self, name)]

    def files(self) -> set[str]:
        """The bundle's files the feature sets use."""
        found = {self.radiomics.params} if self.radiomics else set()
        if self.deep:
            found |= {name for name in (self.deep.finetuned, self.deep.pca) if name}
        return found


class TrainingSummary(Record):
    cohort: str
    cases: int
    macro_auc: dict[str, Any]


class EnvelopeQuantity(Record):
    """One quantity of a training envelope: the training rows' range and quartiles (``n`` rows
    had a value; none of the rest is set when ``n`` is 0) and the limits beyond which a new
    case's value is far outside (:mod:`ovfdlr.envelope`)."""

    name: str
    kind: str  # acquisition | feature
    unit: str = ""
    n: int
    min: float | None = None
    q1: float | None = None
    median: float | None = None
    q3: float | None = None
    max: float | None = None
    low_limit: float | None = None
    high_limit: float | None = None


class TrainingEnvelope(Record):
    """The training cohort's acquisition quantities and selected features as aggregates
    (``rows`` training rows; no identifiers), with the out-of-domain rule in words."""

    rows: int
    rule: str
    quantities: list[EnvelopeQuantity]


class BundleRecord(Labelled):
    """``bundle.json``: everything but the model needed to score a case, the SHA-256 of every
    other file, and the record's own checksum (:mod:`ovfdlr.bundle`). ``envelope`` is the
    training envelope that prediction checks new cases against (None in bundles written
    before it was recorded)."""

    format: str = BUNDLE_FORMAT
    version: int = VERSION
    # the same number under the name ovfdlr read before records had ``version``, so that an
    # older ovfdlr refuses a newer bundle with its own message
    format_version: int = VERSION
    arm: str
    ovfdlr: str
    classes: list[int]
    class_names: dict[str, str]
    classifier: str
    selected_features: list[str]
    input_columns: list[str]
    feature_sets: FeatureSets
    youden_thresholds: dict[str, Any]
    training: TrainingSummary
    seed: int
    files: dict[str, str]
    envelope: TrainingEnvelope | None = None
    checksum: str = ""


# ---------------------------------------------------------------------------------------------
# reading and writing


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`RecordError` when missing or not a JSON object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path} not found") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a JSON object")
    return data


def stored_version(data: dict[str, Any], source: str | Path) -> int:
    """The schema version of a record as stored (1 when it has none); a newer one than this
    ovfdlr reads is refused."""
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError(f"{source}: version {version!r} is not a schema version")
    if version > VERSION:
        raise RecordError(
            f"{source}: written with schema version {version}; this ovfdlr reads version "
            f"{VERSION} and older (upgrade ovfdlr to read it)"
        )
    return version


def _parse(model: type[Record], data: dict[str, Any], source: str | Path):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            if error["type"] == "missing":
                problems.append(f"missing key '{key}'")
            elif error["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}'")
            else:
                problems.append(f"{key}: {error['msg']} (got {error.get('input')!r:.60})")
        raise RecordError(f"{source}: " + "; ".join(problems)) from None


def json_default(value: Any) -> Any:
    """JSON form of what records may hold besides JSON types (numpy scalars and arrays,
    paths, tuples)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def to_data(record: Record) -> dict[str, Any]:
    """The record as the JSON object its file holds (absent optional parts left out of a
    bundle's feature sets)."""
    data = record.model_dump(mode="json", fallback=json_default)
    if isinstance(record, BundleRecord):
        data["feature_sets"] = record.feature_sets.model_dump(
            mode="json", exclude_none=True, fallback=json_default
        )
    return data


def _write(path: str | Path, record: Record) -> Path:
    from ovfdlr.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps(to_data(record), indent=2))
    return path


# -- run.json


def parse_run(data: dict[str, Any], source: str | Path = "run.json") -> RunRecord:
    """A run record from the content of a ``run.json`` (migrated from older versions)."""
    if stored_version(data, source) == 1:
        data = {**data, "version": VERSION}
    return _parse(RunRecord, data, source)


def read_run(path: str | Path) -> RunRecord:
    return parse_run(read_json(path), path)


def write_run(path: str | Path, record: RunRecord) -> Path:
    return _write(path, record)


# -- arm.json


def _migrate_arm(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (no ``version``): ASTLOF when it has no label scheme; the training cohort's
    AUC keys named by scoring (``train`` was the apparent view, ``train (cv)`` out-of-fold)."""
    from ovfdlr.scoring import APPARENT, OUT_OF_FOLD, view_label

    data = {**data, "version": VERSION}
    data.setdefault("labels", astlof().to_dict())
    training = str((data.get("settings") or {}).get("training", "train"))
    renamed = {
        training: view_label(training, APPARENT),
        f"{training} (cv)": view_label(training, OUT_OF_FOLD),
    }
    if isinstance(data.get("macro_auc"), dict):
        data["macro_auc"] = {renamed.get(k, k): v for k, v in data["macro_auc"].items()}
    return data


def parse_arm(data: dict[str, Any], source: str | Path = "arm.json") -> ArmRecord:
    """An arm record from the content of an ``arm.json`` (migrated from older versions)."""
    if stored_version(data, source) == 1:
        data = _migrate_arm(data)
    return _parse(ArmRecord, data, source)


def read_arm(path: str | Path) -> ArmRecord:
    return parse_arm(read_json(path), path)


def write_arm(path: str | Path, record: ArmRecord) -> Path:
    return _write(path, record)


# -- bundle.json


def parse_bundle(data: dict[str, Any], source: str | Path = "bundle.json") -> BundleRecord:
    """A bundle record from the content of a ``bundle.json`` (migrated from older versions).

    The content is the file as stored: :mod:`ovfdlr.bundle` checks its checksum first.
    """
    if data.get("format") != BUNDLE_FORMAT:
        raise RecordError(f"{source}: not an ovfdlr bundle")
    if stored_version(data, source) == 1:
        if data.get("format_version") != 1:
            raise RecordError(
                f"{source}: bundle format {data.get('format_version')!r} is not one this "
                f"ovfdlr reads (1 to {VERSION})"
            )
        data = {**data, "version": VERSION, "format_version": VERSION}
        data.setdefault("labels", astlof().to_dict())
    return _parse(BundleRecord, data, source)


def read_bundle(path: str | Path) -> BundleRecord:
    """A bundle's record, without verifying the bundle (:func:`ovfdlr.bundle.load_bundle`
    does)."""
    return parse_bundle(read_json(path), path)


def write_bundle(path: str | Path, record: BundleRecord) -> Path:
    return _write(path, record)


__all__ = [
    "BUNDLE_FORMAT",
    "VERSION",
    "ArmRecord",
    "AucEntry",
    "BundleRecord",
    "DeepNetwork",
    "DeepSet",
    "EnvelopeQuantity",
    "FeatureSets",
    "ManifestRef",
    "MorphometrySet",
    "NestedEntry",
    "NestedFold",
    "RadiomicsSet",
    "RecordError",
    "RunArm",
    "RunRecord",
    "StageEntry",
    "TrainingEnvelope",
    "TrainingSummary",
    "parse_arm",
    "parse_bundle",
    "parse_run",
    "read_arm",
    "read_bundle",
    "read_json",
    "read_run",
    "stored_version",
    "to_data",
    "write_arm",
    "write_bundle",
    "write_run",
]
