"""Checks made before any stage runs: everything a command can know is wrong without computing.

A run that is bound to fail should fail in a second, not after hours of feature extraction or
training. Every command that computes (``ovfdlr run``, ``train``, ``extract ...``, ``preview``)
and :func:`ovfdlr.experiment.run_experiment` first collects every problem found by the
functions here and stops with one error listing them all (:func:`raise_for_problems`). They
check:

- every input file the command or the config names: the manifest, the PyRadiomics parameter
  file (read and validated as the radiomics stage reads it), each arm's weights file (specs
  parsed by :func:`ovfdlr.deep.specs.parse_spec`; ``imagenet`` needs torchvision's cached
  file, ``random:SEED`` needs none) and feature tables;
- every output path: an existing file where a folder is expected, a folder where a file is
  expected, a path below a file, or a folder that cannot be written;
- the manifest's table checks (:func:`ovfdlr.cohort.check_table`: columns, labels, cohorts,
  duplicates, patients in two cohorts); the images themselves are read by the cohort stage;
- the cohort sizes the folds need, with the folds the training code will draw (the same
  :func:`ovfdlr.cohort.patient_folds` calls and seeds): ``models.folds`` patients of every class
  in the training cohort for cross-validation; with nested cross-validation, that many in the
  training part of every outer fold (``evaluation.nested_folds``); and as many patients as the
  LASSO's inner cross-validation draws folds in every fit of the selection;
- what else the config asks of the manifest: labelled internal cases for
  ``models.select_on: internal``, the primary endpoint's cohorts, enough training cases for a
  deep arm's PCA and patients for its fine-tuning hold-out.

Each finding is a :class:`ovfdlr.cohort.Problem` whose message is one line naming the option,
key or file (``--out run.txt is a file; a run folder is expected``). The training cohort's
checks assume every case yields features: a case that fails extraction can still leave a
class short later, and training then says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ovfdlr.cohort import Problem

if TYPE_CHECKING:
    from ovfdlr.config import ExperimentConfig
    from ovfdlr.labels import LabelScheme
    from ovfdlr.training import TrainSettings


class PreflightError(ValueError):
    """Problems found before any stage ran; ``problems`` lists them, the message has one line
    per problem."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        lines = [p.message for p in self.problems]
        if len(lines) == 1:
            message = lines[0]
        else:
            message = f"{len(lines)} problems, found before any stage ran:\n  " + "\n  ".join(lines)
        super().__init__(message)


def raise_for_problems(problems: Iterable[Problem]) -> None:
    """Raise :class:`PreflightError` listing every error among ``problems`` (warnings pass)."""
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise PreflightError(errors)


def _problem(check: str, message: str) -> Problem:
    return Problem(check, message)


# ---------------------------------------------------------------------------------------------
# files and folders


def _blocking_ancestor(path: Path) -> tuple[Path | None, Path | None]:
    """(an ancestor of ``path`` that exists but is not a folder, the nearest existing folder)."""
    for parent in Path(os.path.abspath(path)).parents:
        if parent.exists():
            return (None, parent) if parent.is_dir() else (parent, None)
    return None, None


def _writable_location(path: Path, option: str) -> list[Problem]:
    """A path that cannot be created: below a file, or in a folder that cannot be written."""
    blocker, folder = _blocking_ancestor(path)
    if blocker is not None:
        return [_problem("output", f"{option} {path}: {blocker} is a file, not a folder")]
    if folder is not None and not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        return [_problem("output", f"{option} {path}: cannot write to {folder}")]
    return []


def output_folder(path: str | Path, option: str, what: str = "a folder") -> list[Problem]:
    """Problems with ``path`` as a folder to write: an existing file there, or a place where
    it cannot be made (``what`` names the folder: "a run folder")."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return [_problem("output", f"{option} {path} is a file; {what} is expected")]
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        return [_problem("output", f"{option} {path}: cannot write to this folder")]
    return _writable_location(path, option)


def output_file(path: str | Path, option: str, what: str = "a file") -> list[Problem]:
    """Problems with ``path`` as a file to write: an existing folder there, or a place where
    it cannot be made (``what`` names the file: "a Parquet file")."""
    path = Path(path)
    if path.is_dir():
        return [_problem("output", f"{option} {path} is a folder; {what} is expected")]
    return _writable_location(path, option)


def input_file(path: str | Path, option: str, what: str = "file") -> list[Problem]:
    """Problems with ``path`` as a file to read: missing, or a folder."""
    path = Path(path)
    if path.is_dir():
        return [_problem("input", f"{option} {path} is a folder; a {what} is expected")]
    if not path.is_file():
        return [_problem("input", f"{option} {path}: {what} not found")]
    return []


def weights(spec: str, option: str) -> list[Problem]:
    """Problems with a weights spec (:mod:`ovfdlr.deep.backbones`): an unknown family, a
    missing file, or ImageNet weights absent from torchvision's cache."""
    from ovfdlr.deep.errors import WeightsError
    from ovfdlr.deep.specs import (
        IMAGENET_FILES,
        imagenet_cache_file,
        imagenet_cache_folder,
        parse_spec,
    )

    try:
        family, argument = parse_spec(spec)
    except WeightsError as exc:
        return [_problem("weights", f"{option}: {exc}")]
    if family == "random":
        if argument is not None and not argument.lstrip("-").isdigit():
            return [_problem("weights", f"{option}: {spec}: the seed must be an integer")]
        return []
    if family == "radimagenet" and argument is None:  # the imported file
        from ovfdlr.deep.store import named_file

        try:
            named_file("radimagenet")
        except WeightsError as exc:
            return [_problem("weights", f"{option}: {exc}")]
        return []
    if argument is None:  # plain imagenet: torchvision's cache
        if imagenet_cache_file() is None:
            folder = imagenet_cache_folder()
            return [
                _problem(
                    "weights",
                    f"{option}: ImageNet ResNet-50 weights not found in torchvision's "
                    f"cache ({folder}): run ovfdlr weights fetch imagenet, put "
                    f"{IMAGENET_FILES[0]} there, or give imagenet:PATH",
                )
            ]
        return []
    path = Path(argument)
    if path.is_dir():
        return [_problem("weights", f"{option}: {path} is a folder, not a weights file")]
    if not path.is_file():
        return [_problem("weights", f"{option}: {path}: weights file not found")]
    return []


def device(name: str, option: str) -> list[Problem]:
    """``cuda`` where torch sees no CUDA device (:func:`ovfdlr.deep.device.resolve_device`)."""
    if name == "cpu":
        return []
    from ovfdlr.deep.device import resolve_device
    from ovfdlr.deep.errors import DeviceError

    try:
        resolve_device(name, option)
    except DeviceError as exc:
        return [_problem("device", str(exc))]
    return []


def radiomics_params(
    path: str | Path | None, option: str, engine: str = "native", engine_option: str = "--engine"
) -> list[Problem]:
    """Problems with a PyRadiomics parameter file (None: the packaged default), read and
    validated as the radiomics stage reads it, and with the engine that is to compute it (a
    setting it does not compute, or an engine that is not installed)."""
    from ovfdlr.radiomics import (
        EngineUnavailable,
        RadiomicsParamsError,
        UnsupportedSetting,
        check_engine,
        load_params,
    )

    try:
        params = load_params(path)
    except RadiomicsParamsError as exc:
        return [_problem("radiomics-params", f"{option}: {exc}")]
    try:
        check_engine(engine, params)
    except UnsupportedSetting as exc:
        where = path if path is not None else "the default parameters"
        return [_problem("radiomics-engine", f"{option}: {where}: {exc}")]
    except EngineUnavailable as exc:
        return [_problem("radiomics-engine", f"{engine_option} {engine}: {exc}")]
    return []


def bundle_radiomics(bundle) -> list[Problem]:
    """Problems of computing a bundle's radiomics features here: its parameter file and the
    engine the model was trained with (e.g. PyRadiomics for a bundle made with it, when the
    extra is not installed); none for a bundle without radiomics."""
    radiomics = bundle.record.feature_sets.radiomics
    if radiomics is None:
        return []
    return radiomics_params(
        bundle.layout.file(radiomics.params),
        "bundle radiomics parameters",
        radiomics.engine,
        "the bundle's radiomics engine",
    )


def manifest(
    path: str | Path,
    option: str,
    *,
    labels: LabelScheme | str | None = None,
    training: str = "train",
) -> tuple[list[Problem], pd.DataFrame | None]:
    """The manifest's table-level errors (each naming ``option``, the file, its row and case)
    and, when it has none, the cohort (:func:`ovfdlr.cohort.load_manifest`; images unread)."""
    from ovfdlr.cohort import ManifestError, load_manifest

    path = Path(path)
    missing = input_file(path, option, "manifest")
    if missing:
        return missing, None
    try:
        return [], load_manifest(path, labels=labels, training=training)
    except ManifestError as exc:
        problems = []
        for p in exc.problems:
            if p.severity != "error":
                continue
            where = ", ".join(
                part
                for part in (
                    f"row {p.row}" if p.row is not None else "",
                    f"case {p.case_id}" if p.case_id else "",
                )
                if part
            )
            message = f"{option} {path}: {where + ': ' if where else ''}{p.message} [{p.check}]"
            problems.append(Problem(p.check, message, p.row, p.case_id))
        return problems, None


# ---------------------------------------------------------------------------------------------
# the training cohort and its folds


def _training_arrays(cohort: pd.DataFrame, training: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(classes, patient ids) of the labelled training cases, in the order training uses."""
    rows = cohort[(cohort["cohort"] == training) & cohort["label"].notna()]
    if rows.empty:
        return None
    return rows["label"].astype(int).to_numpy(), rows["patient_id"].astype(str).to_numpy()


def _patients_per_class(y: np.ndarray, groups: np.ndarray, values: Iterable[int]) -> dict:
    return {c: len(np.unique(groups[y == c])) for c in values}


def _listed(counts: dict[int, int]) -> str:
    return ", ".join(f"{c}: {n}" for c, n in counts.items())


def _patients(n: int) -> str:
    return f"{n} patient{'' if n == 1 else 's'}"


def _lasso_short(y: np.ndarray, groups: np.ndarray, lasso_cv: int) -> tuple[int, int] | None:
    """(folds, patients) when the LASSO's cross-validation on these rows draws more folds than
    there are patients (:class:`ovfdlr.selection.LassoSelector` draws ``max(2, min(cv, rows
    of the rarest class))``), else None."""
    present = np.bincount(np.unique(y, return_inverse=True)[1])
    n_splits = max(2, min(lasso_cv, int(present.min())))
    n_patients = len(np.unique(groups))
    return (n_splits, n_patients) if n_patients < n_splits else None


def _lasso_problems(
    y: np.ndarray,
    groups: np.ndarray,
    folds: int,
    seed: int,
    lasso_cv: int,
    cohort_name: str,
    where: str,
) -> list[Problem]:
    """The LASSO's fold count on every fit of one training procedure: all of ``y`` and the
    training part of each of its ``folds`` cross-validation folds."""
    from ovfdlr.cohort import patient_folds

    parts = [(where, np.arange(len(y)))]
    parts += [
        (f"CV fold {i}'s training part of {where}", train)
        for i, (train, _) in enumerate(patient_folds(y, groups, folds, seed))
    ]
    for name, rows in parts:
        short = _lasso_short(y[rows], groups[rows], lasso_cv)
        if short:
            n_splits, n_patients = short
            return [
                _problem(
                    "lasso-folds",
                    f"training cohort '{cohort_name}': the LASSO's {n_splits}-fold "
                    f"cross-validation (on {name}) needs at least {n_splits} patients (found "
                    f"{n_patients}): patients with many vertebrae leave it too few patients",
                )
            ]
    return []


def training_folds(
    cohort: pd.DataFrame,
    *,
    labels: LabelScheme,
    training: str,
    folds: int,
    seed: int,
    folds_option: str,
    nested_folds: int | None = None,
    nested_arms: Sequence[str] = (),
    lasso_cv: int | None = None,
) -> list[Problem]:
    """Whether the training cohort has the patients its folds need.

    Cross-validation draws ``folds`` patient-grouped, class-stratified folds: every class needs
    ``folds`` patients. With ``nested_arms`` (the arms that run nested cross-validation), the
    outer split (``nested_folds``, default ``folds``; seeded as
    :func:`ovfdlr.training.nested_cv` seeds it) must leave ``folds`` patients of every class in
    each outer training part. The LASSO's own cross-validation (``lasso_cv`` folds, default the
    selection's) must find enough patients in every fit. ``folds_option`` names the setting
    (``models.folds``, ``--folds``).
    """
    arrays = _training_arrays(cohort, training)
    if arrays is None:
        return [
            _problem("folds", f"training cohort '{training}': no labelled case in the manifest")
        ]
    y, groups = arrays
    counts = _patients_per_class(y, groups, labels.values)
    short = [c for c, n in counts.items() if n < folds]
    if short:
        c = short[0]
        return [
            _problem(
                "folds",
                f"training cohort '{training}': class {c} has {_patients(counts[c])} (patients "
                f"per class {_listed(counts)}); {folds}-fold cross-validation ({folds_option}) "
                f"needs at least {folds} patients in every class",
            )
        ]
    from ovfdlr.cohort import patient_folds
    from ovfdlr.selection import selection_pipeline
    from ovfdlr.training import outer_seed

    if lasso_cv is None:
        import inspect

        lasso_cv = inspect.signature(selection_pipeline).parameters["cv"].default
    problems = _lasso_problems(y, groups, folds, seed, lasso_cv, training, "the cohort")
    if not nested_arms:
        return problems
    outer = nested_folds or folds
    for i, (train, _) in enumerate(patient_folds(y, groups, outer, outer_seed(seed))):
        counts = _patients_per_class(y[train], groups[train], labels.values)
        short = [c for c, n in counts.items() if n < folds]
        if short:
            c = short[0]
            problems.append(
                _problem(
                    "nested-folds",
                    f"training cohort '{training}': nested cross-validation (arms "
                    f"{', '.join(nested_arms)}): outer fold {i} of {outer} leaves "
                    f"{_patients(counts[c])} of class {c} for training (patients per class "
                    f"there {_listed(counts)}); its {folds}-fold inner cross-validation "
                    f"({folds_option}) needs at least {folds} in every class: lower "
                    f"{folds_option} or evaluation.nested_folds, or set evaluation.nested_cv: "
                    "false",
                )
            )
            return problems
        if not problems:
            problems += _lasso_problems(
                y[train],
                groups[train],
                folds,
                seed,
                lasso_cv,
                training,
                f"nested outer fold {i}'s training part",
            )
    return problems


def _labelled(cohort: pd.DataFrame, name: str) -> pd.DataFrame:
    return cohort[(cohort["cohort"] == name) & cohort["label"].notna()]


def select_on_internal(cohort: pd.DataFrame, internal: str, option: str) -> list[Problem]:
    """``select_on: internal`` ranks the classifiers on the internal cohort's labelled cases."""
    if _labelled(cohort, internal).empty:
        return [
            _problem(
                "select-on",
                f"{option}: 'internal' ranks the classifiers on the internal cohort "
                f"'{internal}', which has no labelled case in the manifest",
            )
        ]
    return []


def deep_fitting(
    cohort: pd.DataFrame,
    *,
    training: str,
    pca: int | None,
    pca_option: str,
    finetune_epochs: int,
    finetune_option: str,
    seed: int,
) -> list[Problem]:
    """A deep arm's PCA needs as many labelled training cases as components; fine-tuning
    needs the patients of its patient-grouped hold-out (:func:`ovfdlr.deep.finetune.
    holdout_split`)."""
    problems = []
    rows = _labelled(cohort, training)
    if pca is not None and len(rows) < pca:
        problems.append(
            _problem(
                "pca",
                f"{pca_option}: a PCA with {pca} components needs at least as many "
                f"labelled '{training}' cases (found {len(rows)})",
            )
        )
    if finetune_epochs > 0 and len(rows):
        from ovfdlr.deep.finetune import FinetuneSettings, holdout_split

        settings = FinetuneSettings(epochs=finetune_epochs, seed=seed)
        try:
            holdout_split(
                rows["label"].astype(int).to_numpy(),
                rows["patient_id"].astype(str).to_numpy(),
                settings.holdout,
                seed,
            )
        except ValueError as exc:
            problems.append(_problem("finetune", f"{finetune_option}: {exc}"))
    return problems


# ---------------------------------------------------------------------------------------------
# per command


def check_experiment(
    config: ExperimentConfig, out: str | Path, *, out_option: str = "out"
) -> list[Problem]:
    """Every problem :func:`ovfdlr.experiment.run_experiment` would meet that can be found
    without computing: the run folder (``out_option`` names it), the cache folder, the manifest,
    the radiomics parameters, every arm's weights, and the folds and cohorts the config asks
    for."""
    from ovfdlr.cache import default_cache_dir

    problems = output_folder(out, out_option, "a run folder")
    cache = config.cache if config.cache is not None else default_cache_dir()
    problems += output_folder(cache, "cache", "a cache folder")
    if any(arm.radiomics for arm in config.arms):
        problems += radiomics_params(
            config.radiomics.params,
            "radiomics.params",
            config.radiomics.engine,
            "radiomics.engine:",
        )
    for i, arm in enumerate(config.arms):
        if arm.deep is not None:
            problems += weights(arm.deep.weights, f"arms.{i}.deep.weights ({arm.name})")
            problems += device(arm.deep.device, f"arms.{i}.deep.device ({arm.name})")
    scheme = config.labels.scheme_object()
    training = config.cohorts.training
    found, cohort = manifest(config.manifest, "manifest", labels=scheme, training=training)
    problems += found
    if cohort is None:
        return problems
    nested = [arm.name for arm in config.arms if config.nested_cv_for(arm)[0]]
    problems += training_folds(
        cohort,
        labels=scheme,
        training=training,
        folds=config.models.folds,
        seed=config.seed,
        folds_option="models.folds",
        nested_folds=config.evaluation.nested_folds,
        nested_arms=nested,
    )
    if config.models.select_on == "internal":
        problems += select_on_internal(cohort, config.cohorts.internal, "models.select_on")
    for i, arm in enumerate(config.arms):
        if arm.deep is not None:
            problems += deep_fitting(
                cohort,
                training=training,
                pca=arm.deep.pca,
                pca_option=f"arms.{i}.deep.pca ({arm.name})",
                finetune_epochs=arm.deep.finetune_epochs,
                finetune_option=f"arms.{i}.deep.finetune_epochs ({arm.name})",
                seed=config.seed,
            )
    from ovfdlr.experiment import RunError, primary_cohorts

    try:
        primary_cohorts(config, sorted(cohort["cohort"].astype(str).unique()))
    except RunError as exc:
        problems.append(_problem("primary", str(exc)))
    return problems


def check_training(
    features: Sequence[str | Path],
    manifest_path: str | Path,
    out: str | Path,
    settings: TrainSettings,
) -> list[Problem]:
    """Every problem ``ovfdlr train`` would meet that can be found without training: the
    feature tables, the arm folder ``--out``, the manifest, the folds and ``--select-on``."""
    problems = []
    for path in features:
        problems += input_file(path, "FEATURES", "feature table")
    problems += output_folder(out, "--out", "an arm folder")
    found, cohort = manifest(
        manifest_path, "--manifest", labels=settings.labels, training=settings.training
    )
    problems += found
    if cohort is None:
        return problems
    problems += training_folds(
        cohort,
        labels=settings.labels,
        training=settings.training,
        folds=settings.folds,
        seed=settings.seed,
        folds_option="--folds",
        lasso_cv=settings.selection.get("cv"),
    )
    if settings.select_on == "internal":
        problems += select_on_internal(cohort, settings.internal, "--select-on")
    return problems


def check_extraction(
    manifest_path: str | Path,
    out: str | Path,
    *,
    cache: str | Path | None = None,
    params: str | Path | None = None,
    radiomics: bool = False,
    engine: str = "native",
    weights_spec: str | None = None,
    labels: LabelScheme | None = None,
    training: str = "train",
    pca: int | None = None,
    finetune_epochs: int = 0,
    seed: int = 0,
    device_name: str = "cpu",
) -> list[Problem]:
    """Every problem ``ovfdlr extract`` would meet that can be found without computing: the
    feature table ``--out``, the cache folder, the manifest, and for ``radiomics`` the
    parameter file, for a ``weights_spec`` (deep features) the weights, the PCA and the
    fine-tuning hold-out."""
    from ovfdlr.cache import default_cache_dir

    problems = output_file(out, "--out", "a Parquet file")
    problems += output_folder(cache if cache is not None else default_cache_dir(), "--cache")
    if radiomics:
        problems += radiomics_params(params, "--params", engine)
    if weights_spec is not None:
        problems += weights(weights_spec, "--weights")
        problems += device(device_name, "--device")
    found, cohort = manifest(manifest_path, "MANIFEST", labels=labels, training=training)
    problems += found
    if cohort is not None and weights_spec is not None:
        problems += deep_fitting(
            cohort,
            training=training,
            pca=pca,
            pca_option="--pca",
            finetune_epochs=finetune_epochs,
            finetune_option="--finetune-epochs",
            seed=seed,
        )
    return problems


def check_preview(manifest_path: str | Path, out: str | Path) -> list[Problem]:
    """Every problem ``ovfdlr preview`` would meet before drawing: the folder ``--out`` and
    the manifest."""
    problems = output_folder(out, "--out", "a folder for the contact sheets")
    problems += manifest(manifest_path, "MANIFEST")[0]
    return problems
