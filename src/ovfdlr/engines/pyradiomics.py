"""PyRadiomics' ``RadiomicsFeatureExtractor`` behind the :class:`~ovfdlr.engines.base.Engine`
interface: the reference the native engine is tested against, and an engine a user can choose
(``--engine pyradiomics``). PyRadiomics is the optional extra ``ovfdlr[pyradiomics]``
(``pyradiomics-bhklab``, compiled from source, so it needs a C compiler and Python headers).
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import numpy as np
import SimpleITK as sitk

from ovfdlr.engines.base import (
    CaseError,
    CaseFeatures,
    EngineUnavailable,
    flat_image_error,
    roi_error,
)

NAME = "pyradiomics"
EXTRA = "ovfdlr[pyradiomics]"


def load():
    """The ``radiomics`` module, quiet; a clear error naming the extra when it is missing."""
    try:
        import radiomics
    except ImportError as exc:
        raise EngineUnavailable(
            "the pyradiomics engine needs PyRadiomics, which is not installed: "
            f"pip install '{EXTRA}' (it compiles from source: gcc and the Python headers), "
            "or use --engine native"
        ) from exc
    # PyRadiomics logs every step at INFO and some notes at WARNING; ovfdlr reports failures.
    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    return radiomics


def version() -> str:
    return f"pyradiomics {load().__version__}"


@functools.lru_cache(maxsize=8)
def _extractor(params_json: str):
    """One extractor per parameter set and process (building one validates again)."""
    load()
    from radiomics import featureextractor

    return featureextractor.RadiomicsFeatureExtractor(json.loads(params_json))


def extractor(params: dict[str, Any]):
    return _extractor(json.dumps(params, sort_keys=True, default=str))


class PyRadiomicsEngine:
    """Features computed by PyRadiomics itself."""

    name = NAME

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.version = version()
        self._extractor = extractor(params)

    def extract(self, image: sitk.Image, mask: sitk.Image, label: int) -> CaseFeatures:
        settings = self._extractor.settings
        flat = image.GetDimension() != 3 or min(image.GetSize()) < 2
        if flat and not settings.get("force2D"):
            raise flat_image_error(image)
        try:
            result = self._extractor.execute(image, mask, label=int(label))
        except ValueError as exc:
            message = str(exc).splitlines()[0]
            if any(w in message.lower() for w in ("label", "mask", "roi", "bounding box")):
                spacing = settings.get("resampledPixelSpacing")
                raise roi_error(label, spacing, message) from exc
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


Engine = PyRadiomicsEngine


def check(params: dict[str, Any]) -> None:
    """PyRadiomics computes every parameter file its schema accepts: only that it is
    installed is checked."""
    load()
