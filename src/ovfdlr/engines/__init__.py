"""Radiomics engines: the names a config, a command line and a bundle use for them.

- ``native`` (default): ovfdlr's own implementation of PyRadiomics' features
  (:mod:`ovfdlr.engines.native`), the same names and values, several times faster; needs no
  compiler to install.
- ``pyradiomics``: PyRadiomics itself (the optional extra ``ovfdlr[pyradiomics]``), the
  reference the native engine is tested against.
"""

from __future__ import annotations

from typing import Any

from ovfdlr.engines.base import (
    CaseError,
    CaseFeatures,
    Engine,
    EngineUnavailable,
    UnsupportedSetting,
)

ENGINES = ("native", "pyradiomics")
DEFAULT_ENGINE = "native"

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "CaseError",
    "CaseFeatures",
    "Engine",
    "EngineUnavailable",
    "UnsupportedSetting",
    "engine_version",
    "make_engine",
]


def _check_name(name: str) -> None:
    if name not in ENGINES:
        raise ValueError(f"unknown radiomics engine '{name}' (known: {', '.join(ENGINES)})")


def make_engine(name: str, params: dict[str, Any], **options: Any) -> Engine:
    """The engine ``name`` set up for a (validated) parameter dict.

    Raises :class:`UnsupportedSetting` when the engine does not compute a setting the file asks
    for, and :class:`EngineUnavailable` when the engine is not installed.
    """
    _check_name(name)
    if name == "pyradiomics":
        from ovfdlr.engines.pyradiomics import PyRadiomicsEngine

        return PyRadiomicsEngine(params)
    from ovfdlr.engines.native import NativeEngine

    return NativeEngine(params, **options)


def engine_version(name: str) -> str:
    """``"<name> <version>"``: what a cache key, a run record and a bundle record."""
    _check_name(name)
    if name == "pyradiomics":
        from ovfdlr.engines.pyradiomics import version

        return version()
    from ovfdlr.engines.native import version

    return version()


def check_engine(name: str, params: dict[str, Any]) -> None:
    """Refuse early (before any case runs) what the engine cannot do with these parameters."""
    _check_name(name)
    if name == "pyradiomics":
        from ovfdlr.engines.pyradiomics import load

        load()
    else:
        from ovfdlr.engines.native.support import check_supported

        check_supported(params)
