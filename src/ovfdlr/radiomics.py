"""PyRadiomics-compatible radiomics features behind one small interface.

Callers use :func:`load_params` (a PyRadiomics parameter file, unchanged) and
:func:`extract` (one case) or :func:`extract_radiomics` (a cohort). The numbers come from an
engine (:mod:`ovfdlr.engines`): ``native`` (default, ovfdlr's own implementation) or
``pyradiomics`` (PyRadiomics itself, the optional extra ``ovfdlr[pyradiomics]``); both return
PyRadiomics' names and values.

Feature names are PyRadiomics': ``<imageType>_<featureClass>_<Feature>``, e.g.
``original_glcm_ClusterShade`` or ``wavelet-LLH_firstorder_Mean``. Every feature's formula is in
the PyRadiomics documentation (https://pyradiomics.readthedocs.io/en/latest/features.html) and
in the docstrings of :mod:`ovfdlr.engines.native`; docs/radiomics.md gives the settings ovfdlr
uses for vertebral CT and why.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import multiprocessing
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk
import yaml

from ovfdlr import imaging
from ovfdlr.engines import (
    DEFAULT_ENGINE,
    ENGINES,
    CaseError,
    CaseFeatures,
    Engine,
    EngineUnavailable,
    UnsupportedSetting,
    check_engine,
    engine_version,
    make_engine,
)
from ovfdlr.engines.catalogue import SHAPE_CLASSES, split_feature_name
from ovfdlr.engines.params import ParamsError, resolve, validate

DEFAULT_PARAMS_NAME = "ct-vertebra.yaml"
RadiomicsParamsError = ParamsError

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "CaseError",
    "CaseFeatures",
    "Engine",
    "EngineUnavailable",
    "RadiomicsParamsError",
    "RadiomicsStage",
    "UnsupportedSetting",
    "check_engine",
    "default_params_path",
    "engine_version",
    "extract",
    "extract_radiomics",
    "load_params",
    "params_for_features",
    "resolved_params",
    "validate_params",
]


def default_params_path() -> Path:
    """The shipped ``ct-vertebra.yaml``."""
    return Path(str(importlib.resources.files("ovfdlr.params") / DEFAULT_PARAMS_NAME))


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read and validate a PyRadiomics parameter file (YAML or JSON); default ``ct-vertebra.yaml``.

    Returns the parameter dict (sections ``setting``, ``imageType``, ``featureClass``). Raises
    :class:`RadiomicsParamsError` with one line naming the file and the offending key for a
    missing file, a YAML error, an unknown section, image type, feature class, feature or
    setting, or a value PyRadiomics' schema rejects (:mod:`ovfdlr.engines.params`).
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
    """Check a parameter dict as PyRadiomics' schema would, with messages that name the key."""
    return validate(params, source)


def resolved_params(params: dict[str, Any], engine: str = DEFAULT_ENGINE) -> dict[str, Any]:
    """The parameters as the engine applies them (defaults filled in) and the engine's name and
    version. This is what the cache key hashes, so a changed default, or another engine, is a
    changed key."""
    resolved = resolve(params)
    resolved["setting"].pop("label", None)  # per case: the manifest's mask_label
    resolved["engine"] = engine_version(engine)
    return resolved


_LOG_NAME = re.compile(r"^log-sigma-(?P<sigma>[0-9-]+)-mm-3D$")


def params_for_features(params: dict[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    """The parameters cut down to what computes ``columns`` (PyRadiomics feature names) and
    little else: only the image types, LoG sigmas, feature classes and features they name.

    Used by ``predict``, which needs only a bundle's selected features. Every named column is
    among the features the cut-down parameters produce (the full parameters' values, since each
    image and class is computed independently); other columns of the same classes may come too.
    """
    resolved = resolve(params)
    types = {name.lower(): name for name in resolved["imageType"]}
    wanted_types: dict[str, dict[str, Any]] = {}
    wanted_classes: dict[str, list[str]] = {}
    for column in columns:
        parts = split_feature_name(column)
        if parts is None:
            raise ValueError(f"'{column}' is not a radiomics feature name")
        image, cls, feature = parts
        wanted_classes.setdefault(cls, [])
        if feature not in wanted_classes[cls]:
            wanted_classes[cls].append(feature)
        if cls in SHAPE_CLASSES:
            continue
        log = _LOG_NAME.match(image)
        if log is not None:
            custom = wanted_types.setdefault("LoG", dict(resolved["imageType"]["LoG"], sigma=[]))
            sigma = next(
                s
                for s in resolved["imageType"]["LoG"].get("sigma", [])
                if str(s).replace(".", "-") == log["sigma"]
            )
            if sigma not in custom["sigma"]:
                custom["sigma"].append(sigma)
        else:
            family = image.split("-")[0].rstrip("0123456789")
            name = types[family]
            wanted_types.setdefault(name, dict(resolved["imageType"][name]))
    return {
        "setting": dict(params.get("setting") or {}),
        "imageType": wanted_types or {"Original": {}},
        "featureClass": {
            cls: wanted_classes[cls] for cls in resolved["featureClass"] if cls in wanted_classes
        },
        **({"voxelSetting": params["voxelSetting"]} if params.get("voxelSetting") else {}),
    }


def extract(
    image: str | Path | sitk.Image,
    mask: str | Path | sitk.Image,
    params: dict[str, Any],
    label: int = 1,
    engine: Engine | str | None = None,
) -> CaseFeatures:
    """Radiomics features of one case: image and label map (paths or images) and a label.

    ``engine``: an engine, or its name (default ``native``). Raises
    :class:`ovfdlr.imaging.ImageReadError` for unreadable files and :class:`CaseError` for a
    2-D image under 3-D settings or an ROI that is empty after resampling.
    """
    image = image if isinstance(image, sitk.Image) else imaging.read_image(image)
    mask = mask if isinstance(mask, sitk.Image) else imaging.read_label_map(mask)
    if engine is None or isinstance(engine, str):
        engine = make_engine(engine or DEFAULT_ENGINE, params)
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
    engine: str = DEFAULT_ENGINE

    def cache_settings(self) -> dict[str, Any]:
        return resolved_params(self.params, self.engine)

    def __call__(self, task) -> dict[str, Any]:
        if self.threads and multiprocessing.parent_process() is not None:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(self.threads)
        image = imaging.read_image(task.image, task.series_uid)
        engine = _engine(self.engine, json.dumps(self.params, sort_keys=True, default=str))
        result = extract(image, task.mask, self.params, task.mask_label, engine=engine)
        return {"features": result.features, "diagnostics": result.diagnostics}


@functools.lru_cache(maxsize=8)
def _engine(name: str, params_json: str) -> Engine:
    """One engine per engine name, parameter set and process."""
    return make_engine(name, json.loads(params_json))


def extract_radiomics(
    cohort,
    params: dict[str, Any] | None = None,
    *,
    cache_dir: str | Path | bool | None = True,
    jobs: int | None = 1,
    scheduler: Any = None,
    progress: bool = True,
    engine: str = DEFAULT_ENGINE,
):
    """Radiomics features of every case of a cohort (see :func:`ovfdlr.cohort.load_manifest`).

    ``cache_dir``: ``True`` (default) the user cache, a folder, or ``False`` for none.
    ``engine``: ``native`` (default) or ``pyradiomics``; what it cannot compute is refused
    before any case runs (:class:`UnsupportedSetting`, :class:`EngineUnavailable`).

    Returns an :class:`ovfdlr.extraction.ExtractionResult`: the feature table (index case_id,
    float64, PyRadiomics names), the diagnostics table and the failed cases with their reasons.
    """
    from ovfdlr.extraction import extract_features, tasks_from_cohort
    from ovfdlr.parallel import resolve_jobs, worker_threads

    params = load_params() if params is None else params
    check_engine(engine, params)
    n_jobs = resolve_jobs(jobs) if scheduler is None else 1
    threads = worker_threads(n_jobs) if n_jobs > 1 else 0
    stage = RadiomicsStage(params, threads=threads, engine=engine)
    result = extract_features(
        stage,
        tasks_from_cohort(cohort),
        cache_dir=cache_dir,
        jobs=jobs,
        scheduler=scheduler,
        progress=progress,
    )
    if engine == "ibsi":
        from ovfdlr.engines.ibsi import ibsi_tags

        result.ibsi_tags = ibsi_tags(result.features.columns)
    return result
