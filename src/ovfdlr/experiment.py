"""``ovfdlr run``: every stage of an experiment in order, each cached, the whole resumable.

Stages and what they write under the run folder (see docs/architecture.md):

=================  ====================================================================
cohort             the manifest validated (images opened), ``tables/cohort_*.csv``
radiomics          ``features/radiomics.parquet`` (+ diagnostics) when an arm uses it
morphometry        ``features/morphometry.parquet`` when an arm uses it
deep-<arm>         ``features/deep-<arm>.parquet`` (+ fine-tuned weights, PCA, Grad-CAM)
preview            ``figures/inputs-NNN.png``: contact sheets of the 2-D inputs
arm-<arm>          ``arms/<arm>/``: selection, eight classifiers, evaluation, SHAP
compare            ``tables/comparison.csv``: paired tests between arms
bundle-<arm>       ``bundles/<arm>/``: the deployable model
report             ``report.html``
=================  ====================================================================

Each stage has a key: a hash of its settings and of the keys of the stages it reads (and, for
the per-case stages, of every image and mask's content). A stage whose key and outputs are
already there is skipped, so a rerun after a config change redoes only what the change touches.
Keys are written only after a stage's outputs are complete, so a run killed at any point
resumes from the last finished stage; the per-case stages also resume case by case from their
cache. The resolved config, ``run.json`` (versions, seed, timings, hashes), ``errors.csv``
(cases that failed, with the reason) and ``run.log`` sit at the top of the folder.

Faults of long runs: one process writes a run folder at a time (:mod:`ovfdlr.runlock`; a second
is refused, naming the first; the lock of a killed run is taken over). Every file is written
atomically (:mod:`ovfdlr.atomic`), so a killed or failed write leaves no truncated table; a
stage output or cache entry that is damaged anyway is reported and recomputed, never used. A
run that stops on an error logs an ERROR line naming the stage and the reason in ``run.log``
and records them in ``run.json`` (``status: failed``, ``failed_stage``, ``error``); a write that
fails for want of space or over the file size limit ends its stage with a one-line message
naming the file, and the next run resumes.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ovfdlr import __version__
from ovfdlr.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from ovfdlr.cache import DigestIndex, default_cache_dir, file_digest, stable_hash
from ovfdlr.config import ExperimentConfig, dump_config
from ovfdlr.layout import RunLayout
from ovfdlr.parallel import console, shared_progress
from ovfdlr.records import RunRecord, read_arm
from ovfdlr.runlock import RunLock

log = logging.getLogger("ovfdlr.run")


class RunError(RuntimeError):
    """A stage that cannot go on; the message names the stage and the reason."""


class StageFailed(RunError):
    """A run that stopped on an expected error (a :class:`RunError`, a value that cannot be
    used, a file that cannot be read or written) in a stage: ``stage`` and the error's
    ``message`` (``stage compare failed: cannot write RUN/tables/comparison.csv: no space left
    on device``); the original exception is its ``__cause__``."""

    def __init__(self, stage: str, message: str):
        self.stage = stage
        named = message.startswith((f"stage {stage} ", f"stage {stage}:"))
        super().__init__(message if named else f"stage {stage} failed: {message}")


@dataclass
class StageRecord:
    name: str
    seconds: float
    status: str  # computed | cached | failed


@dataclass
class RunState:
    """What the stages share while a run goes on."""

    config: ExperimentConfig
    out: Path
    cache_dir: Path
    cohort: pd.DataFrame | None = None
    keys: dict[str, str] = field(default_factory=dict)
    stages: list[StageRecord] = field(default_factory=list)
    errors: list[pd.DataFrame] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    deep_labels: dict[str, dict] = field(default_factory=dict)
    arm_results: dict[str, dict] = field(default_factory=dict)
    data_sha256: str | None = None
    data_key: str = ""
    current: str | None = None  # the stage in progress
    current_start: float = 0.0
    damaged_keys_reported: bool = False

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.out)

    def warn(self, text: str) -> None:
        """A warning of the run: in run.log, on the console and in run.json."""
        log.warning(text)
        console.print(f"[yellow]warning:[/] {text}", highlight=False, soft_wrap=True)
        self.warnings.append(text)

    def saved_keys(self) -> dict[str, str]:
        """The stage keys of finished stages; a damaged file is reported (once) and read as
        empty, so every stage is checked again."""
        path = self.layout.keys_file
        try:
            keys = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            if not isinstance(keys, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
            ):
                raise ValueError("not an object of stage names and keys")
            return keys
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError too
            if not self.damaged_keys_reported:
                self.damaged_keys_reported = True
                self.warn(f"{path} is damaged ({exc}): every stage is checked again")
            return {}

    def save_key(self, stage: str, key: str | None) -> None:
        """Record (or, with ``None``, forget) a stage's key; written atomically."""
        keys = self.saved_keys()
        if key is None:
            keys.pop(stage, None)
        else:
            keys[stage] = key
        atomic_write_bytes(
            self.layout.keys_file, json.dumps(keys, indent=1, sort_keys=True).encode()
        )


def _versions(config=None) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = [
        "numpy",
        "scipy",
        "pandas",
        "scikit-learn",
        "SimpleITK",
        "pyradiomics-bhklab",
        "numba",
        "PyWavelets",
        "torch",
        "torchvision",
        "xgboost",
        "lightgbm",
        "shap",
        "skops",
    ]
    found = {"python": platform.python_version(), "ovfdlr": __version__}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    if config is not None and any(arm.radiomics for arm in config.arms):
        from ovfdlr.engines import EngineUnavailable, engine_version

        # the engine that computed the radiomics features: "native 0.1.0", "ibsi 0.1.0 mirp 2.7.0"
        try:
            found["radiomics engine"] = engine_version(config.radiomics.engine)
        except EngineUnavailable:
            found["radiomics engine"] = f"{config.radiomics.engine} (not installed)"
    return found


class _RunLogHandler(logging.FileHandler):
    """``run.log``. A line that cannot be written (the disk is full) is dropped rather than
    printed to the console with a traceback: the console and run.json still say why the run
    stopped."""

    def handleError(self, record: logging.LogRecord) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handleError(record)  # a fault of the logging call itself


def _setup_log(out: Path) -> logging.Handler:
    handler = _RunLogHandler(RunLayout(out).run_log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("ovfdlr")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def _output_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a finished output (``None`` when it is there and its structure
    is whole): missing, or truncated / unreadable for the kinds of file whose structure tells
    (Parquet, JSON, CSV, zip-based, PNG, safetensors)."""
    if not path.exists():
        return "missing"
    if path.is_dir():
        return None
    try:
        suffix = path.suffix
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_metadata(path)
        elif suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix in (".csv", ".png"):
            tail = b"\n" if suffix == ".csv" else b"IEND\xaeB`\x82"
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - len(tail)))
                if handle.read() != tail:
                    return "truncated (its end is missing)"
        elif suffix in (".npz", ".skops"):
            import zipfile

            with zipfile.ZipFile(path) as archive:
                archive.infolist()
        elif suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="np") as handle:
                handle.keys()
    except Exception as exc:  # whatever the reader says is wrong with it
        return f"unreadable: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
    return None


def _stage(state: RunState, name: str, key: str, outputs: list[Path], work: Callable[[], None]):
    """Run ``work`` unless the stage's key is stored and its outputs are there and whole;
    record it either way. An output found damaged is reported and the stage computed again."""
    start = time.perf_counter()
    state.current, state.current_start = name, start
    finished = state.saved_keys().get(name) == key
    problems = {p: _output_problem(p) for p in outputs} if finished else {}
    if finished and not any(problems.values()):
        status = "cached"
    else:
        for path, problem in problems.items():
            if problem and problem != "missing":
                state.warn(f"stage {name}: {path} is damaged ({problem}); computed again")
        log.info("stage %s: computing", name)
        state.save_key(name, None)  # a stage killed half-way must not pass for finished later
        work()
        missing = [str(p) for p in outputs if not p.exists()]
        if missing:
            raise RunError(f"stage {name} did not write {', '.join(missing)}")
        state.save_key(name, key)
        status = "computed"
    seconds = time.perf_counter() - start
    state.current = None
    state.keys[name] = key
    state.stages.append(StageRecord(name, seconds, status))
    log.info("stage %s: %s in %.1f s", name, status, seconds)
    console.print(f"[dim]stage[/] {name}: {status} in {seconds:.1f} s", highlight=False)


# ---------------------------------------------------------------------------------------------
# the stages


def _cohort_stage(state: RunState) -> None:
    from ovfdlr.cohort import centre_table, class_table, validate_manifest

    config = state.config
    state.current, state.current_start = "cohort", time.perf_counter()  # hashing is part of it
    manifest = Path(config.manifest)
    if not manifest.is_file():
        raise RunError(f"manifest not found: {manifest}")
    index = DigestIndex(state.cache_dir)
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    digests = []
    for column in ("image", "mask"):
        for value in table.get(column, []):
            path = (
                (manifest.parent / value)
                if value and not Path(value).is_absolute()
                else Path(value)
            )
            try:
                digests.append(file_digest(path, index) if value else "empty")
            except (OSError, ValueError):  # missing or unreadable: validation names it
                digests.append(f"unreadable:{value}")
    labels = config.labels.scheme_object()
    training = config.cohorts.training
    # each case's image and mask (their content and the label used) decide its features; the
    # rest of the manifest (labels, cohorts, patients), the label scheme and the training
    # cohort's name decide the class tables and what is fitted (the arms' keys cover them)
    geometry = [
        [str(v) for v in table.get(c, [])] for c in ("case_id", "image", "mask", "mask_label")
    ]
    state.data_key = stable_hash("cohort-images", geometry, digests)
    key = stable_hash("cohort", file_digest(manifest), digests, labels.to_dict(), training)
    state.data_sha256 = stable_hash(digests)
    layout = state.layout
    outputs = [layout.table("cohort_classes"), layout.table("cohort_centres")]

    def work():
        report = validate_manifest(
            manifest, labels=labels, training=training, jobs=config.jobs, progress=True
        )
        # every problem, warnings included, so that a cached cohort stage records the same
        # warnings in run.json as the run that computed it
        problems = report.problems_frame()
        atomic_write(layout.manifest_problems, lambda p: problems.to_csv(p, index=False))
        if not report.ok:
            first = "; ".join(str(p) for p in report.errors[:3])
            raise RunError(
                f"the manifest has {len(report.errors)} error(s) ({first}); all are listed in "
                f"{layout.manifest_problems}"
            )
        layout.tables.mkdir(parents=True, exist_ok=True)
        cohort = report.cohort
        atomic_write(layout.table("cohort_classes"), class_table(cohort).to_csv)
        atomic_write(layout.table("cohort_centres"), centre_table(cohort).to_csv)
        demographics = _demographics(cohort)
        if demographics is not None:
            atomic_write(
                layout.table("cohort_demographics"), lambda p: demographics.to_csv(p, index=False)
            )

    _stage(state, "cohort", key, [*outputs, layout.manifest_problems], work)
    state.warnings += manifest_warnings(layout.manifest_problems)
    if index.damaged:
        state.warn(f"the digest index {index.path} was damaged and has been made again")
    from ovfdlr.cohort import load_manifest

    state.cohort = load_manifest(manifest, labels=labels, training=training)


def manifest_warnings(path: Path) -> list[str]:
    """The warnings of a run's ``manifest_problems.csv``, each as validation words it."""
    from ovfdlr.cohort import Problem

    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return [
        str(
            Problem(r.check, r.message, int(r.row) if r.row else None, r.case_id or None, "warning")
        )
        for r in table.itertuples(index=False)
        if r.severity == "warning"
    ]


def _demographics(cohort: pd.DataFrame) -> pd.DataFrame | None:
    if "age" not in cohort.columns and "sex" not in cohort.columns:
        return None
    rows = []
    for name, group in cohort.groupby("cohort", sort=True):
        row = {"cohort": name, "n": len(group), "patients": group["patient_id"].nunique()}
        if "age" in group.columns:
            row |= {
                "age_mean": round(float(group["age"].mean()), 1),
                "age_sd": round(float(group["age"].std()), 1),
            }
        if "sex" in group.columns:
            sex = group["sex"].astype("string").str.upper().str[0]
            row["female_pct"] = round(100 * float((sex == "F").mean()), 1)
        rows.append(row)
    return pd.DataFrame(rows)


def _extraction_stage(state: RunState, name: str, run) -> None:
    """A per-case feature stage: radiomics or morphometry."""
    from ovfdlr.extraction import write_errors, write_tables

    out = state.layout.feature_table(name)
    settings = run["settings"]
    key = stable_hash(name, state.data_key, settings)

    def work():
        result = run["extract"]()
        write_tables(result, out)
        write_errors(state.layout.errors_csv, out.name, result.errors)
        if result.failed:
            state.warnings.append(f"{name}: {result.failed} case(s) failed (errors.csv)")
        _damaged_entries(state, name, result.damaged)

    _stage(state, name, key, [out], work)


def _damaged_entries(state: RunState, stage: str, count: int) -> None:
    """Warn of the damaged cache entries a stage met (run.log names each) and recomputed."""
    if count:
        state.warn(
            f"{stage}: {count} damaged cache entr{'y was' if count == 1 else 'ies were'} "
            "found and recomputed (run.log names them)"
        )


def _fitted_on(state: RunState, deep) -> list:
    """What the deep stage's learned steps see of the cohort: the training cases (PCA), and for
    fine-tuning also their patients and labels (the hold-out is by patient) and the scheme."""
    training = state.cohort[state.cohort["cohort"] == state.config.cohorts.training]
    if not deep.finetune_epochs:
        return [str(c) for c in training.index]
    return [_design(training), state.config.labels.scheme_object().to_dict()]


def _deep_stage(state: RunState, arm) -> None:
    from ovfdlr.deep.finetune import FinetuneSettings
    from ovfdlr.deep.stage import run_deep_stage
    from ovfdlr.extraction import write_errors, write_tables

    deep, config = arm.deep, state.config
    settings = deep.input_settings()
    from ovfdlr.deep.backbones import spec_digest
    from ovfdlr.deep.device import identity, resolve_device

    index = config.arms.index(arm)
    device, device_note = resolve_device(deep.device, f"arms.{index}.deep.device ({arm.name})")
    # the device and precision count only when they are not float32 on the CPU, so the CPU's
    # keys (and caches) are those of runs made before the option existed
    placement = identity(device, deep.mixed_precision)

    layout = state.layout
    out = layout.deep_table(arm.name)
    learned = bool(deep.finetune_epochs or deep.pca)
    # what decides the features: the weights' content (not their path), the inputs, the
    # preprocessing, and - only when something is fitted on the training cohort - that cohort,
    # the seed and the fitting settings (batch size and thread counts change nothing)
    key = stable_hash(
        "deep",
        state.data_key,
        _fitted_on(state, deep) if learned else None,
        deep.weights.partition(":")[0],
        spec_digest(deep.weights),
        settings.as_dict(),
        deep.normalization,
        {
            "pca": deep.pca,
            "finetune_epochs": deep.finetune_epochs,
            "gradcam_cases": deep.gradcam_cases if deep.finetune_epochs else 0,
            "seed": config.seed,
            "training": config.cohorts.training,
        }
        if learned
        else None,
        *([placement] if placement else []),
    )
    label_file = layout.deep_label(arm.name)

    def work():
        cohort = state.cohort
        outside = cohort[cohort["cohort"] != config.cohorts.training]
        gradcam = list(outside.index[: deep.gradcam_cases]) if deep.finetune_epochs else None
        result = run_deep_stage(
            cohort,
            deep.weights,
            arm.name,
            layout.features,
            settings=settings,
            finetune=FinetuneSettings(epochs=deep.finetune_epochs, seed=config.seed),
            normalization=deep.normalization,
            pca_components=deep.pca,
            training=config.cohorts.training,
            labels=config.labels.scheme_object(),
            gradcam_cases=gradcam,
            batch_size=deep.batch_size,
            jobs=config.jobs,
            cache_dir=state.cache_dir,
            device=device,
            mixed_precision=deep.mixed_precision,
        )
        extraction = result.extraction
        extraction.features = result.features
        write_tables(extraction, out)
        write_errors(layout.errors_csv, out.name, extraction.errors)
        _damaged_entries(state, f"deep-{arm.name}", extraction.damaged)
        atomic_write_text(
            label_file,
            json.dumps(
                {
                    "weights": deep.weights,
                    "label": result.backbone_label,
                    "pretrained": result.pretrained,
                    "finetuned": bool(deep.finetune_epochs),
                    "device": device,
                    "device_requested": deep.device,
                    "device_note": device_note,
                    "mixed_precision": deep.mixed_precision,
                }
            ),
        )

    outputs = [out, label_file]
    if deep.finetune_epochs:
        outputs += [layout.finetuned(arm.name), layout.finetune_curve(arm.name)]
    if deep.pca:
        outputs.append(layout.pca(arm.name))
    _stage(state, f"deep-{arm.name}", key, outputs, work)
    state.deep_labels[arm.name] = json.loads(label_file.read_text())


def _preview_stage(state: RunState) -> None:
    from ovfdlr.deep.inputs import InputSettings
    from ovfdlr.deep.preview import contact_sheets

    deep = next((a.deep for a in state.config.arms if a.deep), None)
    settings = deep.input_settings() if deep else InputSettings()
    # "svg": the sheets come as PNG and SVG (a sheet cached before that is drawn again)
    key = stable_hash("preview", "svg", state.data_key, settings.as_dict())
    first = state.layout.input_sheet(1)

    def work():
        sample = state.cohort.groupby("cohort", sort=True).head(6)
        contact_sheets(sample, state.layout.figures, settings, jobs=state.config.jobs)

    _stage(state, "preview", key, [first], work)


def _arm_tables(layout: RunLayout, arm) -> tuple[list[Path], list[str]]:
    """The feature tables an arm reads, and the names of its feature sets."""
    sources = [name for name in ("radiomics", "morphometry") if getattr(arm, name)]
    sources += [f"deep-{arm.name}"] if arm.deep else []
    return [layout.feature_table(name) for name in sources], sources


def _design(cohort: pd.DataFrame) -> list:
    """What an arm's fit depends on besides the features: each case's patient, cohort and label
    (in the manifest's order, labels as class values of the scheme)."""
    labels = cohort["label"].astype("object").where(cohort["label"].notna(), None)
    return [
        [str(c), str(p), str(k), None if v is None else int(v)]
        for c, p, k, v in zip(
            cohort.index, cohort["patient_id"], cohort["cohort"], labels, strict=True
        )
    ]


def _arm_stage(state: RunState, arm) -> None:
    from ovfdlr.arm import read_features, train_arm
    from ovfdlr.training import TrainSettings

    config = state.config
    tables, sources = _arm_tables(state.layout, arm)
    settings = TrainSettings(
        classifiers=tuple(config.models.classifiers),
        quick=config.models.quick,
        folds=config.models.folds,
        seed=config.seed,
        select_on=config.models.select_on,
        training=config.cohorts.training,
        internal=config.cohorts.internal,
        selection=config.selection.model_dump(),
        jobs=config.jobs,
        labels=config.labels.scheme_object(),
    )
    folder = state.layout.arm(arm.name)
    # the tables' content, not the upstream keys: a feature stage redone with the same result
    # leaves the arm cached; the number of worker processes changes nothing and is left out.
    # The cases' labels, cohorts and patients decide what is fitted and scored: a relabelled
    # case or a patient moved between cohorts leaves the feature tables as they were
    fitting = {k: v for k, v in settings.as_dict().items() if k != "jobs"}
    design = _design(state.cohort)
    # whether nested cross-validation runs (and the reason arm.json gives when it does not)
    nested, reason = config.nested_cv_for(arm)
    key = stable_hash(
        "arm",
        [file_digest(t) for t in tables],
        fitting,
        config.models.explain,
        design,
        {"nested_cv": nested, "reason": reason, "folds": config.evaluation.nested_folds},
        {"variance": config.evaluation.macro_variance, "n_boot": config.evaluation.n_boot},
    )

    def work():
        features = read_features(tables)
        train_arm(
            features,
            state.cohort,
            arm.name,
            folder.folder,
            settings,
            explain_model=config.models.explain,
            nested=nested,
            nested_reason=reason,
            arm_warnings=_nested_warnings(arm, nested),
            variance=config.evaluation.macro_variance,
            n_boot=config.evaluation.n_boot,
            nested_folds=config.evaluation.nested_folds,
        )

    _stage(state, f"arm-{arm.name}", key, [folder.arm_json, folder.predictions], work)
    summary = read_arm(folder.arm_json)
    state.arm_results[arm.name] = {"chosen": summary.chosen, "feature_sets": sources}


def _nested_warnings(arm, nested: bool) -> list[str]:
    """What the nested estimate of an arm includes that its outer folds did not refit."""
    if not (nested and arm.deep):
        return []
    found = []
    if arm.deep.finetune_epochs:
        found.append(
            "nested cross-validation was forced for a fine-tuned arm: the network was trained on "
            "every training row, outer test folds included, so the nested estimate is optimistic"
        )
    if arm.deep.pca:
        found.append(
            f"the deep features' PCA ({arm.deep.pca} components) was fitted on the whole "
            "training cohort: the nested cross-validation estimate includes that unsupervised "
            "step (fitted with the outer test folds' images, not their labels)"
        )
    return found


def primary_cohorts(config, cohorts: list[str]) -> list[str]:
    """The cohorts of the primary endpoint: the configured ones (each must be a validation
    cohort of the manifest), else external and prospective where present."""
    training = config.cohorts.training
    named = config.evaluation.primary.cohorts
    if named is None:
        return [c for c in ("external", "prospective") if c in cohorts]
    for i, name in enumerate(named):
        if name not in cohorts or name == training:
            others = ", ".join(c for c in cohorts if c != training)
            why = "is the training cohort" if name == training else "is not in the manifest"
            raise RunError(
                f"config: evaluation.primary.cohorts.{i}: cohort '{name}' {why} "
                f"(validation cohorts: {others})"
            )
    return list(named)


def _compared_pairs(config) -> list[tuple[str, str]]:
    """The configured pairs, and the primary pair when it is not among them."""
    pairs = list(config.pairs())
    primary = config.primary_arms()
    if primary and not any({*p} == {*primary} for p in pairs):
        pairs.insert(0, primary)
    return pairs


def _compare_stage(state: RunState) -> None:
    from ovfdlr.arm import compare_dirs
    from ovfdlr.evaluation import adjust_comparisons

    config = state.config
    pairs = _compared_pairs(config)
    layout = state.layout
    out = layout.comparison
    if not pairs:
        out.unlink(missing_ok=True)  # from an earlier run with more arms
        return
    cohorts = primary_cohorts(config, sorted(state.cohort["cohort"].astype(str).unique()))
    evaluation = config.evaluation
    settings = {
        "variance": evaluation.macro_variance,
        "post_selection": evaluation.compare_training_cv,
        "n_boot": evaluation.n_boot,
        "primary": [config.primary_arms(), cohorts],
    }
    arms = sorted({*sum(pairs, ())})
    key = stable_hash("compare", pairs, [state.keys[f"arm-{a}"] for a in arms], settings)
    patients = state.cohort["patient_id"]

    def work():
        frames = [
            compare_dirs(
                layout.arm(a).folder,
                layout.arm(b).folder,
                seed=config.seed,
                patients=patients,
                variance=evaluation.macro_variance,
                post_selection=evaluation.compare_training_cv,
                n_boot=evaluation.n_boot,
            )
            for a, b in pairs
        ]
        table = adjust_comparisons(
            pd.concat(frames, ignore_index=True), config.primary_arms(), cohorts
        )
        atomic_write(out, lambda p: table.to_csv(p, index=False))

    _stage(state, "compare", key, [out], work)


def _bundle_stage(state: RunState, arm) -> None:
    from ovfdlr.bundle import CONTENT, write_bundle

    folder = state.layout.bundle(arm.name)
    key = stable_hash("bundle", state.keys[f"arm-{arm.name}"], __version__, CONTENT)

    def work():
        write_bundle(_bundle_inputs(state, arm), folder.folder)

    _stage(state, f"bundle-{arm.name}", key, [folder.bundle_json], work)


def _bundle_inputs(state: RunState, arm):
    """What an arm's bundle is written from: its record and chosen model, its features as the
    model was fitted on them, the training rows, each feature set's settings, and the training
    cases' acquisition quantities (measured once per case and cached like the features)."""
    from ovfdlr.arm import read_features
    from ovfdlr.bundle import BundleInputs, DeepSource
    from ovfdlr.envelope import extract_acquisition
    from ovfdlr.morphometry import MorphometrySettings
    from ovfdlr.radiomics import load_params
    from ovfdlr.training import training_rows

    config, layout = state.config, state.layout
    folder = layout.arm(arm.name)
    record = read_arm(folder.arm_json)
    features = read_features(_arm_tables(layout, arm)[0])
    features, _ = record.label_scheme.without_excluded(features)  # as train_arm left them out
    training = training_rows(features, state.cohort, config.cohorts.training)
    acquisition = extract_acquisition(
        state.cohort.loc[training.index],
        cache_dir=state.cache_dir,
        jobs=config.jobs,
        scheduler=config.scheduler,
    ).features
    deep = None
    if arm.deep:
        label = state.deep_labels[arm.name]
        deep = DeepSource(
            weights=arm.deep.weights,
            weights_label=label["label"],
            pretrained=label["pretrained"],
            normalization=arm.deep.normalization,
            input={
                "plane": arm.deep.plane,
                "margin": arm.deep.margin,
                "window_level": arm.deep.window_level,
                "window_width": arm.deep.window_width,
            },
            batch_size=arm.deep.batch_size,
            finetuned=layout.finetuned(arm.name) if arm.deep.finetune_epochs else None,
            pca=layout.pca(arm.name) if arm.deep.pca else None,
        )
    return BundleInputs(
        arm=record,
        model_file=folder.model(record.chosen),
        features=features,
        training=training.index,
        training_cohort=config.cohorts.training,
        seed=config.seed,
        radiomics_params=load_params(config.radiomics.params) if arm.radiomics else None,
        radiomics_engine=config.radiomics.engine,
        morphometry_settings=MorphometrySettings().__dict__ if arm.morphometry else None,
        deep=deep,
        acquisition=acquisition,
    )


def _write_run_json(
    state: RunState,
    status: str = "complete",
    failed_stage: str | None = None,
    error: str | None = None,
) -> dict:
    """Write ``run.json`` (``status``: running, complete or failed with the stage and the
    reason); return its content. What a failed run could not learn is left empty."""
    from ovfdlr.records import ManifestRef, RunArm, StageEntry, to_data, write_run
    from ovfdlr.synthetic.cohort import provenance as synthetic_provenance

    config, layout = state.config, state.layout
    arms = {}
    for arm in config.arms:
        result = state.arm_results.get(arm.name, {})
        arms[arm.name] = RunArm(
            folder=layout.arm_folder(arm.name),
            feature_sets=result.get("feature_sets", []),
            deep=state.deep_labels.get(arm.name),
            chosen=result.get("chosen"),
        )
    failed = 0
    if layout.errors_csv.is_file():
        failed = pd.read_csv(layout.errors_csv)["case_id"].nunique()
    try:
        manifest_sha256 = file_digest(config.manifest)
    except OSError:  # a run that failed because the manifest cannot be read
        manifest_sha256 = None
    record = RunRecord(
        ovfdlr=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        name=config.name,
        seed=config.seed,
        config_sha256=stable_hash(dump_config(config)),
        versions=_versions(config),
        manifest=ManifestRef(
            path=str(config.manifest),
            sha256=manifest_sha256,
            cases=None if state.cohort is None else len(state.cohort),
        ),
        data_sha256=state.data_sha256,
        stages=[StageEntry(**s.__dict__) for s in state.stages],
        arms=arms,
        comparisons=[list(p) for p in config.pairs()],
        training_cohort=config.cohorts.training,
        warnings=state.warnings,
        failed_cases=int(failed),
        synthetic=synthetic_provenance(config.manifest),
        status=status,
        failed_stage=failed_stage,
        error=error,
    )
    write_run(layout.run_json, record)
    return to_data(record)


EXPECTED_ERRORS = (RunError, ValueError, OSError)
"""What ends a run with a one-line reason (a stage that cannot go on, a value or a file that
cannot be used, a write without space); anything else is a fault of ovfdlr, with its
traceback."""


def _failure_reason(exc: BaseException) -> str:
    """The one-line reason a run stopped."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, EXPECTED_ERRORS) and first:
        return first if len(text.splitlines()) == 1 else f"{first} (run.log has the rest)"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _record_failure(state: RunState, exc: BaseException) -> str:
    """Log the failure (an ERROR line with the stage and the reason, the whole message and
    any traceback after it) and record it in run.json; return the reason."""
    stage, reason = state.current, _failure_reason(exc)
    where = f"stage {stage}" if stage else "the run"
    log.error("%s failed: %s", where, reason)
    if not isinstance(exc, (*EXPECTED_ERRORS, KeyboardInterrupt)):
        log.error("traceback", exc_info=exc)
    elif reason.endswith("(run.log has the rest)"):
        log.error("%s", exc)
    if stage:
        seconds = time.perf_counter() - state.current_start
        state.stages.append(StageRecord(stage, seconds, "failed"))
    try:
        _write_run_json(state, status="failed", failed_stage=stage, error=reason)
    except Exception as problem:  # e.g. the disk is still full: the console says it all
        log.error("run.json could not be written: %s", problem)
    return reason


def _start_run(out: Path, lock: RunLock) -> None:
    """What a run does first in its folder, under its lock: say whose stale lock it took
    over, remove the temporary files of writes a killed run left, and mark an earlier
    run.json as running (a run killed from here on leaves it so)."""
    from ovfdlr.atomic import remove_partial_files
    from ovfdlr.records import RecordError, read_run, write_run

    if lock.stale is not None:
        log.warning(
            "took over the lock %s of a run that ended without releasing it (%s)",
            lock.path,
            lock.stale.describe(),
        )
        console.print(
            f"[yellow]note:[/] took over the run folder from a run that was stopped "
            f"({lock.stale.describe()})",
            highlight=False,
            soft_wrap=True,
        )
    for path in remove_partial_files(out):
        log.info("removed %s: the temporary file of an interrupted write", path)
    path = RunLayout(out).run_json
    if path.is_file():
        try:
            record = read_run(path)
        except RecordError:  # unreadable: written again at the end
            return
        if record.status != "running":
            update = {"status": "running", "failed_stage": None, "error": None}
            write_run(path, record.model_copy(update=update))


def _remove_stale_arms(out: Path, arms: set[str]) -> None:
    """Arms and bundles of an earlier run that the config no longer has (derived outputs)."""
    import shutil

    layout = RunLayout(out)
    for folder in (layout.arms, layout.bundles):
        for child in folder.iterdir() if folder.is_dir() else []:
            if child.is_dir() and child.name not in arms:
                log.info("removing %s: arm '%s' is no longer in the config", child, child.name)
                shutil.rmtree(child)


def run_experiment(config: ExperimentConfig, out: str | Path) -> dict:
    """Run (or resume) an experiment into ``out``; return the content of ``run.json``.

    Raises :class:`ovfdlr.runlock.RunFolderBusy` when another process writes ``out`` (nothing
    is written then), and :class:`StageFailed` (naming the stage; the original error is its
    cause) when a stage stops on an expected error. A run that fails logs an ERROR line with
    the stage and the reason in run.log and writes run.json with ``status: failed``."""
    from ovfdlr.morphometry import extract_morphometry
    from ovfdlr.preflight import check_experiment, raise_for_problems
    from ovfdlr.radiomics import RadiomicsStage, extract_radiomics, load_params

    # every problem found without computing, before anything is written (PreflightError)
    raise_for_problems(check_experiment(config, out))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out).acquire()  # one writer per run folder; a second is refused
    try:
        handler = _setup_log(out)
    except BaseException:
        lock.release()
        raise
    state = RunState(config, out, Path(config.cache or default_cache_dir()))
    try:
        log.info("run %s into %s (pid %d)", config.name, out, lock.holder.pid)
        _start_run(out, lock)
        atomic_write_text(RunLayout(out).config, dump_config(config))
        _remove_stale_arms(out, {arm.name for arm in config.arms})
        with shared_progress():
            _cohort_stage(state)
            cohort = state.cohort
            # a primary endpoint naming an unknown cohort fails now, not after the training
            primary_cohorts(config, sorted(cohort["cohort"].astype(str).unique()))
            common = {
                "cache_dir": state.cache_dir,
                "jobs": config.jobs,
                "scheduler": config.scheduler,
            }
            if any(a.radiomics for a in config.arms):
                params = load_params(config.radiomics.params)
                _extraction_stage(
                    state,
                    "radiomics",
                    {
                        "settings": RadiomicsStage(
                            params, engine=config.radiomics.engine
                        ).cache_settings(),
                        "extract": lambda: extract_radiomics(
                            cohort, params, engine=config.radiomics.engine, **common
                        ),
                    },
                )
            if any(a.morphometry for a in config.arms):
                from ovfdlr.morphometry import MorphometryStage

                _extraction_stage(
                    state,
                    "morphometry",
                    {
                        "settings": MorphometryStage().cache_settings(),
                        "extract": lambda: extract_morphometry(cohort, **common),
                    },
                )
            for arm in config.arms:
                if arm.deep:
                    _deep_stage(state, arm)
            if config.preview:
                _preview_stage(state)
            for arm in config.arms:
                _arm_stage(state, arm)
            _compare_stage(state)
            for arm in config.arms:
                _bundle_stage(state, arm)
            start = time.perf_counter()
            state.current, state.current_start = "report", start
            _write_run_json(state, status="running")  # what the report reads
            log.info("stage report: computing")
            from ovfdlr.report.html import render_report

            render_report(out)
            state.current = None
            state.stages.append(StageRecord("report", time.perf_counter() - start, "computed"))
            payload = _write_run_json(state, status="complete")
            log.info("run complete")
    except BaseException as exc:
        stage = state.current
        _record_failure(state, exc)
        if stage and isinstance(exc, EXPECTED_ERRORS):
            raise StageFailed(stage, str(exc).strip() or type(exc).__name__) from exc
        raise
    finally:
        logging.getLogger("ovfdlr").removeHandler(handler)
        handler.close()
        lock.release()
    return payload


def _auc_text(auc, lower, upper, note: str = "") -> str:
    """``0.812 (0.731\u20130.893)``; without a CI, the reason (``0.950 (CI n/a: 1 case in
    class 1)``); without an estimate, ``no AUC: <reason>``. Numbers as the report prints them
    (:mod:`ovfdlr.report.formatting`); never ``nan``."""
    from ovfdlr.report import formatting as fmt

    if fmt.is_missing(auc):
        return f"no AUC: {note}" if note else "no AUC"
    if fmt.is_missing(lower) or fmt.is_missing(upper):
        return f"{fmt.number(auc)} ({note or 'CI n/a'})"
    return fmt.estimate(auc, lower, upper)


def _chosen_views(arm, summary) -> dict[str, str]:
    """The chosen model's macro AUC text per view, in reading order, from the arm's
    performance table (so a view without an estimate is listed with its reason); from
    ``arm.json`` when the table is absent."""
    from ovfdlr.report.summary import chosen_macro_auc

    path = arm.table("performance")
    if not path.is_file():
        return {
            view: _auc_text(auc.auc, auc.lower, auc.upper)
            for view, auc in summary.macro_auc.items()
        }
    rows = chosen_macro_auc("", summary.model_dump(), pd.read_csv(path))
    return {
        r.view: _auc_text(r.auc, r.lower, r.upper, r.note) for r in rows.itertuples(index=False)
    }


def primary_summary(out: Path) -> tuple[str, pd.DataFrame]:
    """The primary endpoint's tests for the console: what is tested (``deep (knn) - radiomics
    (lr), macro (DeLong)``) and per cohort the AUCs, the difference with its 95% CI, p and the
    Holm-adjusted p, formatted as the report formats them (a p-value outside [0, 1] raises;
    a test that could not be done says why); an empty table when the run has none."""
    from ovfdlr.report import formatting as fmt
    from ovfdlr.report.summary import primary_endpoint
    from ovfdlr.scoring import view_label

    path = RunLayout(out).comparison
    if not path.is_file():
        return "", pd.DataFrame()
    rows = primary_endpoint(pd.read_csv(path))
    if rows.empty:
        return "", pd.DataFrame()
    first = rows.iloc[0]
    what = f"{first['arm_a']} - {first['arm_b']}, {first['test']}"
    table = []
    for _, row in rows.iterrows():
        note = "" if fmt.is_missing(row.get("note")) else str(row["note"])
        table.append(
            {
                "cohort": view_label(str(row["cohort"]), str(row["scoring"])),
                "AUCs": f"{fmt.number(row['auc_a'])} vs {fmt.number(row['auc_b'])}",
                "difference (95% CI)": _auc_text(
                    row["difference"], row["ci_lower"], row["ci_upper"], note
                ).replace("no AUC", "no test"),
                "p": fmt.p_value(row["p_value"]),
                "p (Holm)": fmt.p_value(row["p_adjusted"]),
            }
        )
    return what, pd.DataFrame(table)


def summary_table(out: Path, payload: dict) -> pd.DataFrame:
    """Chosen model and macro AUC (95 % CI) per arm and view, for the console: the training
    cohort's apparent, out-of-fold and nested cross-validation views (``not run: <reason>``
    where nested cross-validation did not run), then the held-out cohorts."""
    from ovfdlr.scoring import APPARENT, NESTED, OUT_OF_FOLD, view_label

    rows, layout = [], RunLayout(out)
    for name, arm in payload["arms"].items():
        summary = read_arm(layout.arm(name, arm["folder"]).arm_json)
        training = summary.training
        nested = view_label(training, NESTED)
        views = _chosen_views(layout.arm(name, arm["folder"]), summary)
        if nested not in views:
            record = summary.nested_cv
            views[nested] = (
                "no AUC (see the arm's performance table)"
                if record.ran
                else f"not run: {record.reason}"
            )
        # the recorded order (training views first, as evaluation sorts them), the nested
        # view after the other training views when it only says why it is missing
        first = [view_label(training, s) for s in (APPARENT, OUT_OF_FOLD, NESTED)]
        order = [v for v in first if v in views] + [v for v in views if v not in first]
        rows += [
            {
                "arm": name,
                "model": summary.chosen,
                "cohort": view,
                "macro AUC (95% CI)": views[view],
            }
            for view in order
        ]
    return pd.DataFrame(rows)
