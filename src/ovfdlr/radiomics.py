"""PyRadiomics-compatible radiomics features behind one small interface.

Callers use :func:`load_params` (a PyRadiomics parameter file, unchanged) and
:func:`extract` (one case) or :func:`ovfdlr.extraction.extract_features` (a cohort). The engine
that computes the numbers is PyRadiomics (``pyradiomics-bhklab``, import ``radiomics``); it sits
behind :class:`Engine` so that a faster implementation can replace it without touching callers,
as long as it returns PyRadiomics' names and values.

Feature names are PyRadiomics': ``<imageType>_<featureClass>_<Feature>``, e.g.
``original_glcm_ClusterShade`` or ``wavelet-LLH_firstorder_Mean``. Every feature's formula is in
the PyRadiomics documentation (https://pyradiomics.readthedocs.io/en/latest/features.html);
docs/radiomics.md gives the settings ovfdlr uses for vertebral CT and why.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import logging
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import SimpleITK as sitk
import yaml

from ovfdlr import imaging

DEFAULT_PARAMS_NAME = "ct-vertebra.yaml"
PARAM_SECTIONS = ("setting", "imageType", "featureClass", "voxelSetting")


class RadiomicsParamsError(ValueError):
    """A parameter file that cannot be used; the message names the file and the key."""


class CaseError(ValueError):
    """A case whose features cannot be computed; the message names the case and the reason."""


def default_params_path() -> Path:
    """The shipped ``ct-vertebra.yaml``."""
    return Path(str(importlib.resources.files("ovfdlr.params") / DEFAULT_PARAMS_NAME))


def _radiomics():
    import radiomics

    # PyRadiomics logs every step at INFO and some notes at WARNING; ovfdlr reports failures itself.
    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    return radiomics


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read and validate a PyRadiomics parameter file (YAML or JSON); default ``ct-vertebra.yaml``.

    Returns the parameter dict (sections ``setting``, ``imageType``, ``featureClass``). Raises
    :class:`RadiomicsParamsError` with one line naming the file and the offending key for a
    missing file, a YAML error, an unknown section, image type, feature class or feature, or a
    setting PyRadiomics' own schema rejects.
    """
    path = Path(path) if path is not None else default_params_path()
    if not path.is_file():
        raise RadiomicsParamsError(f"{path}: parameter file not found")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise RadiomicsParamsError(f"{path}: not a text (UTF-8) parameter file") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise RadiomicsParamsError(f"{path}: not valid YAML{where}") from exc
    return validate_params(params, source=str(path))


def validate_params(params: dict[str, Any], source: str = "parameters") -> dict[str, Any]:
    """Check a parameter dict as PyRadiomics would, with messages that name the key."""
    radiomics = _radiomics()
    if not isinstance(params, dict):
        raise RadiomicsParamsError(f"{source}: expected a mapping with setting / imageType / ...")
    for key in params:
        if key not in PARAM_SECTIONS:
            raise RadiomicsParamsError(
                f"{source}: unknown section '{key}' (expected {', '.join(PARAM_SECTIONS)})"
            )
    known_types = sorted(radiomics.getImageTypes())
    for image_type in params.get("imageType") or {}:
        if image_type not in known_types:
            raise RadiomicsParamsError(
                f"{source}: unknown image type 'imageType.{image_type}' "
                f"(PyRadiomics knows {', '.join(known_types)})"
            )
    classes = radiomics.getFeatureClasses()
    for name, features in (params.get("featureClass") or {}).items():
        if name not in classes:
            raise RadiomicsParamsError(
                f"{source}: unknown feature class 'featureClass.{name}' "
                f"(PyRadiomics knows {', '.join(sorted(classes))})"
            )
        known = classes[name].getFeatureNames()
        if features is not None and not isinstance(features, list):
            raise RadiomicsParamsError(
                f"{source}: 'featureClass.{name}' must be a list of feature names or empty"
            )
        for feature in features or []:
            if feature not in known:
                raise RadiomicsParamsError(
                    f"{source}: unknown feature 'featureClass.{name}.{feature}' "
                    f"(class {name} has {', '.join(sorted(known))})"
                )
    import pykwalify.core
    import pykwalify.errors

    schema, functions = radiomics.getParameterValidationFiles()
    pykwalify.core.log.setLevel(logging.CRITICAL)
    try:
        checked = pykwalify.core.Core(
            source_data=copy.deepcopy(params), schema_files=[schema], extensions=[functions]
        ).validate()
    except pykwalify.errors.PyKwalifyException as exc:
        detail = _schema_message(exc)
        raise RadiomicsParamsError(f"{source}: {detail}") from exc
    return checked


def _schema_message(exc: Exception) -> str:
    """pykwalify's report in one line: "Key 'binWidht' was not defined. Path: '/setting'"."""
    text = getattr(exc, "msg", None) or str(exc)
    lines = [ln.strip(" -") for ln in str(text).splitlines() if ln.strip(" -")]
    lines = [ln for ln in lines if "validation failed" not in ln.lower()]
    return "; ".join(lines) or "rejected by the PyRadiomics parameter schema"


def resolved_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as PyRadiomics will apply them: defaults filled in, every section present.

    This is what the cache key hashes, so a changed default is a changed key.
    """
    extractor = _extractor(json.dumps(params, sort_keys=True, default=str))
    settings = dict(extractor.settings)
    settings.pop("label", None)  # per case: the manifest's mask_label
    return {
        "setting": settings,
        "imageType": extractor.enabledImagetypes,
        "featureClass": extractor.enabledFeatures,
        "engine": engine_version(),
    }


@functools.lru_cache(maxsize=8)
def _extractor(params_json: str):
    """One PyRadiomics extractor per parameter set and process (building one validates again)."""
    from radiomics import featureextractor

    _radiomics()
    return featureextractor.RadiomicsFeatureExtractor(json.loads(params_json))


def engine_version() -> str:
    return f"pyradiomics {_radiomics().__version__}"


@dataclass(frozen=True)
class CaseFeatures:
    """Feature values (float) and PyRadiomics diagnostics (text) of one case."""

    features: dict[str, float]
    diagnostics: dict[str, str]


class Engine(Protocol):
    """What a radiomics engine provides: PyRadiomics names and values for one image and mask."""

    def extract(self, image: sitk.Image, mask: sitk.Image, label: int) -> CaseFeatures: ...


class PyRadiomicsEngine:
    """The PyRadiomics ``RadiomicsFeatureExtractor`` behind the :class:`Engine` interface."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self._extractor = _extractor(json.dumps(params, sort_keys=True, default=str))

    def extract(self, image: sitk.Image, mask: sitk.Image, label: int) -> CaseFeatures:
        settings = self._extractor.settings
        flat = image.GetDimension() != 3 or min(image.GetSize()) < 2
        if flat and not settings.get("force2D"):
            raise CaseError(
                f"image is {image.GetDimension()}-D (size {tuple(image.GetSize())}) but the "
                "parameters configure 3-D features; set setting.force2D: true for "
                "slice-wise features"
            )
        try:
            result = self._extractor.execute(image, mask, label=int(label))
        except ValueError as exc:
            message = str(exc).splitlines()[0]
            spacing = settings.get("resampledPixelSpacing")
            if any(w in message.lower() for w in ("label", "mask", "roi", "bounding box")):
                after = f" after resampling to {spacing} mm" if spacing else ""
                raise CaseError(f"ROI of label {label} is not usable{after}: {message}") from exc
            raise CaseError(f"PyRadiomics failed: {message}") from exc
        features: dict[str, float] = {}
        diagnostics: dict[str, str] = {}
        for name, value in result.items():
            if name.startswith("diagnostics_"):
                diagnostics[name] = _as_text(value)
            else:
                features[name] = float(value)
        return CaseFeatures(features, diagnostics)


def _as_text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return str(value.tolist())
    return str(value)


def extract(
    image: str | Path | sitk.Image,
    mask: str | Path | sitk.Image,
    params: dict[str, Any],
    label: int = 1,
    engine: Engine | None = None,
) -> CaseFeatures:
    """Radiomics features of one case: image and label map (paths or images) and a label.

    Raises :class:`ovfdlr.imaging.ImageReadError` for unreadable files and :class:`CaseError`
    for a 2-D image under 3-D settings or an ROI that is empty after resampling.
    """
    image = image if isinstance(image, sitk.Image) else imaging.read_image(image)
    mask = mask if isinstance(mask, sitk.Image) else imaging.read_label_map(mask)
    engine = engine if engine is not None else PyRadiomicsEngine(params)
    return engine.extract(image, mask, label)


@dataclass(frozen=True)
class RadiomicsStage:
    """The radiomics stage for :func:`ovfdlr.extraction.extract_features`.

    ``threads`` caps SimpleITK's threads in each worker process (resampling and filters are
    multi-threaded), so that several workers share the cores; a case computed in the calling
    process leaves its setting alone.
    """

    params: dict[str, Any]
    threads: int = 0
    name: str = "radiomics"

    def cache_settings(self) -> dict[str, Any]:
        return resolved_params(self.params)

    def __call__(self, task) -> dict[str, Any]:
        if self.threads and multiprocessing.parent_process() is not None:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(self.threads)
        image = imaging.read_image(task.image, task.series_uid)
        result = extract(image, task.mask, self.params, task.mask_label)
        return {"features": result.features, "diagnostics": result.diagnostics}


def extract_radiomics(
    cohort,
    params: dict[str, Any] | None = None,
    *,
    cache_dir: str | Path | bool | None = True,
    jobs: int | None = 1,
    scheduler: Any = None,
    progress: bool = True,
):
    """Radiomics features of every case of a cohort (see :func:`ovfdlr.cohort.load_manifest`).

    ``cache_dir``: ``True`` (default) the user cache, a folder, or ``False`` for none.

    Returns an :class:`ovfdlr.extraction.ExtractionResult`: the feature table (index case_id,
    float64, PyRadiomics names), the diagnostics table and the failed cases with their reasons.
    """
    from ovfdlr.extraction import extract_features, tasks_from_cohort
    from ovfdlr.parallel import available_cores, resolve_jobs

    params = load_params() if params is None else params
    n_jobs = resolve_jobs(jobs) if scheduler is None else 1
    threads = max(1, available_cores() // n_jobs) if n_jobs > 1 else 0
    stage = RadiomicsStage(params, threads=threads)
    return extract_features(
        stage,
        tasks_from_cohort(cohort),
        cache_dir=cache_dir,
        jobs=jobs,
        scheduler=scheduler,
        progress=progress,
    )
