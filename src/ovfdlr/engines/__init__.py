"""Radiomics engines: the names a config, a command line and a bundle use for them.

- ``native`` (default): ovfdlr's own implementation of PyRadiomics' features
  (:mod:`ovfdlr.engines.native`), the same names and values, several times faster; needs no
  compiler to install.
- ``pyradiomics``: PyRadiomics itself (the optional extra ``ovfdlr[pyradiomics]``), the
  reference the native engine is tested against.
- ``ibsi``: IBSI-compliant features computed by MIRP (the optional extra ``ovfdlr[ibsi]``;
  :mod:`ovfdlr.engines.ibsi`), held to IBSI's reference values.
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

ENGINES = ("native", "pyradiomics", "ibsi")
DEFAULT_ENGINE = "native"
# the engines whose columns are PyRadiomics' names (so a parameter file can be cut down to the
# features some columns need: ovfdlr.radiomics.params_for_features)
PYRADIOMICS_NAMED = ("native", "pyradiomics")

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


# each engine's module: ``Engine`` (the class), ``version()`` and ``check(params)`` (what it
# cannot compute, or that it is not installed, refused before any case runs)
_MODULES = {
    "native": "ovfdlr.engines.native",
    "pyradiomics": "ovfdlr.engines.pyradiomics",
    "ibsi": "ovfdlr.engines.ibsi",
}


def _module(name: str):
    if name not in ENGINES:
        raise ValueError(f"unknown radiomics engine '{name}' (known: {', '.join(ENGINES)})")
    import importlib

    return importlib.import_module(_MODULES[name])


def make_engine(name: str, params: dict[str, Any], **options: Any) -> Engine:
    """The engine ``name`` set up for a (validated) parameter dict (``options``: the native
    engine's ``threads``).

    Raises :class:`UnsupportedSetting` when the engine does not compute a setting the file asks
    for, and :class:`EngineUnavailable` when the engine is not installed.
    """
    return _module(name).Engine(params, **options)


def engine_version(name: str) -> str:
    """``"<name> <version>"``: what a cache key, a run record and a bundle record."""
    return _module(name).version()


def check_engine(name: str, params: dict[str, Any]) -> None:
    """Refuse early (before any case runs) what the engine cannot do with these parameters."""
    module = _module(name)
    if params.get("ibsi") and name != "ibsi":
        raise UnsupportedSetting(
            f"ibsi: the section of IBSI settings is read by the ibsi engine only, not by {name} "
            "(use --engine ibsi, or engine: ibsi in the config)"
        )
    module.check(params)


COMPLIANCE = {
    "native": (
        "PyRadiomics-compatible: PyRadiomics' feature definitions and values (1,130 features "
        "held equal to PyRadiomics'), which are not IBSI-compliant in every respect (resampling "
        "grid, bin edges counted from 0, kurtosis not excess, 2-D aggregation, some morphology); "
        "see docs/radiomics.md"
    ),
    "pyradiomics": (
        "PyRadiomics itself: not IBSI-compliant in every respect (resampling grid, bin edges "
        "counted from 0, kurtosis not excess, 2-D aggregation, some morphology); see "
        "docs/radiomics.md"
    ),
    "ibsi": (
        "IBSI 1-compliant (MIRP): every IBSI 1 reference value with a consensus for the CT "
        "phantom (configurations A, B, D, E) and the digital phantom reproduced within IBSI's "
        "tolerance; the agreement per configuration and family is below"
    ),
}


def ibsi_agreement():
    """The ibsi engine's agreement with IBSI 1's reference values of the CT phantom, per
    configuration and family (``configuration, family, agree, total``), as measured by
    ``tests/test_ibsi_engine.py`` (which holds this shipped table to its measurement)."""
    import importlib.resources

    import pandas as pd

    path = importlib.resources.files("ovfdlr.params") / "ibsi-agreement.csv"
    with path.open(encoding="utf-8") as handle:
        return pd.read_csv(handle)
