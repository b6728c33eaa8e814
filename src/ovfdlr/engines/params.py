"""PyRadiomics parameter files: their schema, checked without PyRadiomics, and their defaults.

A parameter file has the sections ``setting``, ``imageType``, ``featureClass`` and
``voxelSetting`` (https://pyradiomics.readthedocs.io/en/latest/customization.html). This module
checks one against the same rules as PyRadiomics' own schema (``paramSchema.yaml``: the keys, the
types and the ranges), with one-line messages that name the key, and fills in the defaults the
PyRadiomics extractor applies (:func:`resolve`), so that every engine, and the cache key, sees the
same settings. It imports no engine: PyRadiomics is an optional extra.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ovfdlr.engines.catalogue import FEATURES, IMAGE_TYPES

SECTIONS = ("setting", "imageType", "featureClass", "voxelSetting", "ibsi")

INTERPOLATORS = (
    "sitkNearestNeighbor",
    "sitkLinear",
    "sitkBSpline",
    "sitkGaussian",
    "sitkLabelGaussian",
    "sitkHammingWindowedSinc",
    "sitkCosineWindowedSinc",
    "sitkWelchWindowedSinc",
    "sitkLanczosWindowedSinc",
    "sitkBlackmanWindowedSinc",
)
WEIGHTING_NORMS = ("euclidean", "manhattan", "infinity", "no_weighting")

# The PyRadiomics extractor's defaults (RadiomicsFeatureExtractor._getDefaultSettings), then the
# defaults its feature classes and filters read when a setting is absent.
EXTRACTOR_DEFAULTS: dict[str, Any] = {
    "minimumROIDimensions": 2,
    "minimumROISize": None,
    "normalize": False,
    "normalizeScale": 1,
    "removeOutliers": None,
    "resampledPixelSpacing": None,
    "interpolator": "sitkBSpline",
    "preCrop": False,
    "padDistance": 5,
    "distances": [1],
    "force2D": False,
    "force2Ddimension": 0,
    "resegmentRange": None,
    "label": 1,
    "additionalInfo": True,
}
CLASS_DEFAULTS: dict[str, Any] = {
    "binWidth": 25,
    "binCount": None,
    "voxelArrayShift": 0,
    "symmetricalGLCM": True,
    "weightingNorm": None,
    "gldm_a": 0,
    "resegmentMode": "absolute",
    "resegmentShape": False,
    "correctMask": False,
    "geometryTolerance": None,
    "label_channel": 0,
    "wavelet": "coif1",
    "level": 1,
    "start_level": 0,
    "gradientUseSpacing": True,
}


class ParamsError(ValueError):
    """A parameter file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Rule:
    """One setting: what it must be, as a phrase for the message, and the check."""

    expected: str
    check: Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int(lo: float | None = None, hi: float | None = None, lo_ex: bool = False) -> Rule:
    return Rule(
        _phrase("an integer", lo, hi, lo_ex), lambda v: _is_int(v) and _in(v, lo, hi, lo_ex)
    )


def _float(lo: float | None = None, lo_ex: bool = False) -> Rule:
    return Rule(
        _phrase("a number", lo, None, lo_ex), lambda v: _is_number(v) and _in(v, lo, None, lo_ex)
    )


def _seq(item: Rule) -> Rule:
    return Rule(
        f"a list of {item.expected.removeprefix('a ').removeprefix('an ')}s",
        lambda v: isinstance(v, list) and all(item.check(x) for x in v),
    )


def _in(v: float, lo: float | None, hi: float | None, lo_ex: bool) -> bool:
    if lo is not None and (v <= lo if lo_ex else v < lo):
        return False
    return hi is None or v <= hi


def _phrase(kind: str, lo: float | None, hi: float | None, lo_ex: bool) -> str:
    if lo is not None and hi is not None:
        return f"{kind} from {lo:g} to {hi:g}"
    if lo is not None:
        return f"{kind} {'>' if lo_ex else '>='} {lo:g}"
    return kind


BOOL = Rule("true or false", lambda v: isinstance(v, bool))
OPTIONAL_INTERPOLATOR = Rule(
    f"one of {', '.join(INTERPOLATORS)} or an integer from 1 to 10",
    lambda v: v is None or v in INTERPOLATORS or (_is_int(v) and 1 <= v <= 10),
)
WEIGHTING = Rule(
    f"one of {', '.join(WEIGHTING_NORMS)} (or empty)", lambda v: v is None or v in WEIGHTING_NORMS
)


def _wavelet_rule() -> Rule:
    def check(v: Any) -> bool:
        import pywt

        return isinstance(v, str) and v in pywt.wavelist()

    return Rule("a wavelet PyWavelets knows (pywt.wavelist())", check)


SETTINGS: dict[str, Rule] = {
    "minimumROIDimensions": _int(1, 3),
    "minimumROISize": _int(0, lo_ex=True),
    "geometryTolerance": _float(0, lo_ex=True),
    "correctMask": BOOL,
    "additionalInfo": BOOL,
    "label": _int(0, lo_ex=True),
    "label_channel": _int(0),
    "binWidth": _float(0, lo_ex=True),
    "binCount": _int(0, lo_ex=True),
    "normalize": BOOL,
    "normalizeScale": _float(0, lo_ex=True),
    "removeOutliers": _float(0, lo_ex=True),
    "resampledPixelSpacing": _seq(_float(0)),
    "interpolator": OPTIONAL_INTERPOLATOR,
    "padDistance": _int(0),
    "distances": _seq(_int(0, lo_ex=True)),
    "force2D": BOOL,
    "force2Ddimension": _int(0, 2),
    "resegmentRange": _seq(_float()),
    "resegmentMode": Rule(
        "one of absolute, relative, sigma", lambda v: v in ("absolute", "relative", "sigma")
    ),
    "resegmentShape": BOOL,
    "preCrop": BOOL,
    "sigma": _seq(_float(0, lo_ex=True)),
    "start_level": _int(0),
    "level": _int(0, lo_ex=True),
    "wavelet": _wavelet_rule(),
    "gradientUseSpacing": BOOL,
    "lbp2DRadius": _float(0, lo_ex=True),
    "lbp2DSamples": _int(1),
    "lbp2DMethod": Rule(
        "one of default, ror, uniform, var", lambda v: v in ("default", "ror", "uniform", "var")
    ),
    "lbp3DLevels": _int(1),
    "lbp3DIcosphereRadius": _float(0, lo_ex=True),
    "lbp3DIcosphereSubdivision": _int(0),
    "voxelArrayShift": _int(),
    "symmetricalGLCM": BOOL,
    "weightingNorm": WEIGHTING,
    "gldm_a": _int(0),
}
VOXEL_SETTINGS: dict[str, Rule] = {
    "kernelRadius": _int(0, lo_ex=True),
    "maskedKernel": BOOL,
    "initValue": _float(),
    "voxelBatch": _int(0, lo_ex=True),
}


def validate(params: Any, source: str = "parameters") -> dict[str, Any]:
    """Check a parameter dict against PyRadiomics' schema; return it (a copy) unchanged.

    Raises :class:`ParamsError` with one line naming ``source`` and the key: an unknown section,
    image type (``imageType.Sharpen``), feature class (``featureClass.glcmm``), feature
    (``featureClass.glcm.ClusterShadow``) or setting (``setting.binWidht``), or a value of the
    wrong type or out of range (``setting.binWidth: expected a number > 0 (got -5)``).
    """
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping with setting / imageType / ...")
    for key in params:
        if key not in SECTIONS:
            raise ParamsError(f"{source}: unknown section '{key}' (expected {', '.join(SECTIONS)})")
    # ``ibsi``: what IBSI defines beyond PyRadiomics' settings, checked by the ibsi engine
    for section in SECTIONS:
        value = params.get(section)
        if value is not None and not isinstance(value, dict):
            raise ParamsError(f"{source}: section '{section}' must be a mapping")
    for image_type, custom in (params.get("imageType") or {}).items():
        if image_type not in IMAGE_TYPES:
            raise ParamsError(
                f"{source}: unknown image type 'imageType.{image_type}' "
                f"(known: {', '.join(sorted(IMAGE_TYPES))})"
            )
        if custom is not None and not isinstance(custom, dict):
            raise ParamsError(
                f"{source}: 'imageType.{image_type}' must be a mapping of settings or empty"
            )
        check_settings(custom or {}, SETTINGS, f"imageType.{image_type}", source)
    for name, features in (params.get("featureClass") or {}).items():
        if name not in FEATURES:
            raise ParamsError(
                f"{source}: unknown feature class 'featureClass.{name}' "
                f"(known: {', '.join(sorted(FEATURES))})"
            )
        if features is not None and not isinstance(features, list):
            raise ParamsError(
                f"{source}: 'featureClass.{name}' must be a list of feature names or empty"
            )
        for feature in features or []:
            if feature not in FEATURES[name]:
                raise ParamsError(
                    f"{source}: unknown feature 'featureClass.{name}.{feature}' "
                    f"(class {name} has {', '.join(sorted(FEATURES[name]))})"
                )
    check_settings(params.get("setting") or {}, SETTINGS, "setting", source)
    check_settings(params.get("voxelSetting") or {}, VOXEL_SETTINGS, "voxelSetting", source)
    return copy.deepcopy(params)


def check_settings(
    values: dict,
    rules: dict[str, Rule],
    where: str,
    source: str,
    error: type[ValueError] = ParamsError,
) -> None:
    """Each of ``values`` (the section ``where``) known to ``rules`` and as its rule expects,
    else ``error`` with one line naming ``source`` and the key. An empty value passes: its
    default then applies."""
    for key, value in values.items():
        rule = rules.get(key)
        if rule is None:
            raise error(
                f"{source}: unknown setting '{where}.{key}' (known: {', '.join(sorted(rules))})"
            )
        if value is None and key not in ("interpolator", "weightingNorm"):
            continue  # PyRadiomics' schema lets any setting be empty: its default then applies
        if not rule.check(value):
            raise error(f"{source}: {where}.{key}: expected {rule.expected} (got {value!r})")


def resolve(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the PyRadiomics extractor applies them, defaults filled in.

    ``setting``: the extractor's defaults, then the file's ``setting`` and ``voxelSetting``;
    ``imageType``: ``{"Original": {}}`` when none is given; ``featureClass``: every class
    when none is given (``shape2D`` included, as PyRadiomics does: it computes nothing for a
    3-D image unless ``force2D`` is set); each class maps to the list of features it enables
    (empty: all non-deprecated ones). Empty settings (``null``) are dropped so that the
    defaults apply, as they do in PyRadiomics.
    """
    settings = dict(EXTRACTOR_DEFAULTS)
    for section in ("setting", "voxelSetting"):
        settings.update({k: v for k, v in (params.get(section) or {}).items() if v is not None})
    image_types = {
        name: dict(custom or {}) for name, custom in (params.get("imageType") or {}).items()
    } or {"Original": {}}
    classes = params.get("featureClass") or {name: None for name in FEATURES if name != "shape2D"}
    resolved = {
        "setting": settings,
        "imageType": image_types,
        "featureClass": {name: list(features or []) for name, features in classes.items()},
    }
    if params.get("ibsi"):
        resolved["ibsi"] = dict(params["ibsi"])
    return resolved


def setting(settings: dict[str, Any], key: str) -> Any:
    """A setting's value with the feature classes' own default when the file leaves it out."""
    if key in settings:
        return settings[key]
    return CLASS_DEFAULTS.get(key, EXTRACTOR_DEFAULTS.get(key))
