"""The ``ibsi`` engine: IBSI-compliant features computed by MIRP, behind the
:class:`~ovfdlr.engines.base.Engine` interface.

MIRP (https://github.com/oncoray/mirp, the optional extra ``ovfdlr[ibsi]``) implements the Image
Biomarker Standardisation Initiative's reference manual (IBSI 1): grid-centre aligned
interpolation, rounding of interpolated CT intensities, partial-volume mask interpolation, range
and outlier re-segmentation, fixed bin size counted from the re-segmentation range's lower bound,
excess kurtosis, and the IBSI aggregation methods of the texture matrices (2D_avg, 2D_comb,
2_5D_avg, 2_5D_comb, 3D_avg, 3D_comb). PyRadiomics differs on several of these, so this engine
gives IBSI's values under a PyRadiomics-style parameter file.

Parameters: the PyRadiomics parameter dict ovfdlr uses (``setting`` / ``imageType`` /
``featureClass``), read as follows, plus one optional section ``ibsi`` for what IBSI defines and
PyRadiomics cannot express (:data:`IBSI_SETTINGS`):

- ``resampledPixelSpacing`` [x, y, z] mm: the new voxel spacing; a 0 entry keeps that axis'
  spacing; with ``force2D`` only in-plane resampling (the z entry must be 0).
- ``interpolator``: ``sitkLinear`` (spline order 1) or ``sitkBSpline`` (order 3); nothing else.
- ``binWidth``: IBSI fixed bin size, bins counted from the lower bound of ``resegmentRange``
  (-1000 HU for CT without one); ``binCount``: IBSI fixed bin number.
- ``resegmentRange`` [lo, hi]: the re-segmentation intensity range; ``resegmentMode: sigma``
  with a symmetric range [-k, k] is IBSI's outlier re-segmentation (as ``ibsi.outlier_sigma: k``).
- ``force2D``: features by slice (IBSI 2-D / 2.5-D aggregation); ``distances``: one distance.
- ``featureClass``: shape -> morph, firstorder -> stat and ih, glcm -> cm, glrlm -> rlm,
  glszm -> szm, gldm -> ngl (IBSI's NGLDM, alpha 0), ngtdm -> ngt; a class's feature list keeps
  only those PyRadiomics features. IBSI's other families (loc, ivh, dzm) come from
  ``ibsi.families``.

PyRadiomics-only settings (``normalize``, ``voxelArrayShift``, ``removeOutliers``, ``preCrop``,
``padDistance``, ``symmetricalGLCM: false``, ``weightingNorm``, ``gldm_a``, ``resegmentShape``,
filtered image types such as LoG or Wavelet, ``voxelSetting``, ...) are refused with
:class:`UnsupportedSetting`, naming the setting and what IBSI expects instead.

Names: a feature PyRadiomics also has keeps PyRadiomics' name, ``original_<class>_<Feature>``
(values are IBSI's: e.g. ``original_firstorder_Kurtosis`` is IBSI's excess kurtosis, PyRadiomics'
minus 3); texture features carry their aggregation, ``original_glcm_ClusterShade_2D_avg``,
``original_glszm_SmallAreaEmphasis_3D``. Everything else is ``original_ibsi_<tag>`` with its IBSI
tag (``original_ibsi_stat_cov``, ``original_ibsi_dzm_sde_3D``). :func:`ibsi_tags` gives each
column's IBSI tag. IBSI's diagnostic values (image and ROI sizes, spacings and intensities at
each step, e.g. ``mean_int_interp_img``; computed here: MIRP does not export them) go to the
diagnostics table as ``diagnostics_ibsi_<tag>`` (:func:`diagnostic_values`), not among the
features a model learns from.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ovfdlr.engines.base import (
    CaseError,
    CaseFeatures,
    EngineUnavailable,
    UnsupportedSetting,
    check_inputs,
    roi_error,
)
from ovfdlr.engines.native.imageops import ROIError, roi_box
from ovfdlr.engines.params import Rule, check_settings, setting

NAME = "ibsi"
EXTRA = "ovfdlr[ibsi]"
PREFIX = "original"
IBSI_CLASS = "ibsi"  # the class part of a column with no PyRadiomics name: original_ibsi_<tag>

# IBSI aggregation methods (tag suffixes) and MIRP's spatial methods for them.
MATRIX_AGGREGATIONS = {  # GLCM, GLRLM: per direction, then averaged or merged
    "2D_avg": "2d_average",
    "2D_comb": "2d_slice_merge",
    "2_5D_avg": "2.5d_direction_merge",
    "2_5D_comb": "2.5d_volume_merge",
    "3D_avg": "3d_average",
    "3D_comb": "3d_volume_merge",
}
ZONE_AGGREGATIONS = {"2D": "2d", "2_5D": "2.5d", "3D": "3d"}  # GLSZM, GLDZM, NGTDM, NGLDM
AGGREGATIONS = tuple(MATRIX_AGGREGATIONS)

# IBSI families (tag prefixes) and MIRP's family names.
FAMILIES = {
    "morph": "morphology",
    "loc": "local_intensity",
    "stat": "statistics",
    "ih": "intensity_histogram",
    "ivh": "intensity_volume_histogram",
    "cm": "glcm",
    "rlm": "glrlm",
    "szm": "glszm",
    "dzm": "gldzm",
    "ngt": "ngtdm",
    "ngl": "ngldm",
}
TEXTURE = ("cm", "rlm", "szm", "dzm", "ngt", "ngl")
# PyRadiomics feature classes and the IBSI families they select.
CLASS_FAMILIES = {
    "shape": ("morph",),
    "firstorder": ("stat", "ih"),
    "glcm": ("cm",),
    "glrlm": ("rlm",),
    "glszm": ("szm",),
    "gldm": ("ngl",),
    "ngtdm": ("ngt",),
}

# IBSI tag (without aggregation) -> PyRadiomics class and feature: the tag -> name mapping of
# PyRadiomics' own IBSI benchmark (ibsi_to_pyradiomics_*.csv), where it names a feature with
# the same definition. Three of its rows reuse a name another tag has (cm_dissimilarity and
# cm_diff_avg are both DifferenceAverage, cm_sum_var and cm_clust_tend both ClusterTendency,
# ngl_glnu_norm is firstorder Uniformity, i.e. ih_uniformity); those tags keep their IBSI name.
PYRADIOMICS_NAMES: dict[str, tuple[str, str]] = {
    "morph_volume": ("shape", "MeshVolume"),
    "morph_vol_approx": ("shape", "VoxelVolume"),
    "morph_area_mesh": ("shape", "SurfaceArea"),
    "morph_av": ("shape", "SurfaceVolumeRatio"),
    "morph_comp_1": ("shape", "Compactness1"),
    "morph_comp_2": ("shape", "Compactness2"),
    "morph_sph_dispr": ("shape", "SphericalDisproportion"),
    "morph_sphericity": ("shape", "Sphericity"),
    "morph_diam": ("shape", "Maximum3DDiameter"),
    "morph_pca_maj_axis": ("shape", "MajorAxisLength"),
    "morph_pca_min_axis": ("shape", "MinorAxisLength"),
    "morph_pca_least_axis": ("shape", "LeastAxisLength"),
    "morph_pca_elongation": ("shape", "Elongation"),
    "morph_pca_flatness": ("shape", "Flatness"),
    "stat_mean": ("firstorder", "Mean"),
    "stat_var": ("firstorder", "Variance"),
    "stat_skew": ("firstorder", "Skewness"),
    "stat_kurt": ("firstorder", "Kurtosis"),
    "stat_median": ("firstorder", "Median"),
    "stat_min": ("firstorder", "Minimum"),
    "stat_p10": ("firstorder", "10Percentile"),
    "stat_p90": ("firstorder", "90Percentile"),
    "stat_max": ("firstorder", "Maximum"),
    "stat_iqr": ("firstorder", "InterquartileRange"),
    "stat_range": ("firstorder", "Range"),
    "stat_mad": ("firstorder", "MeanAbsoluteDeviation"),
    "stat_rmad": ("firstorder", "RobustMeanAbsoluteDeviation"),
    "stat_energy": ("firstorder", "Energy"),
    "stat_rms": ("firstorder", "RootMeanSquared"),
    "ih_entropy": ("firstorder", "Entropy"),
    "ih_uniformity": ("firstorder", "Uniformity"),
    "cm_joint_max": ("glcm", "MaximumProbability"),
    "cm_joint_avg": ("glcm", "JointAverage"),
    "cm_joint_var": ("glcm", "SumSquares"),
    "cm_joint_entr": ("glcm", "JointEntropy"),
    "cm_diff_avg": ("glcm", "DifferenceAverage"),
    "cm_diff_var": ("glcm", "DifferenceVariance"),
    "cm_diff_entr": ("glcm", "DifferenceEntropy"),
    "cm_sum_avg": ("glcm", "SumAverage"),
    "cm_sum_entr": ("glcm", "SumEntropy"),
    "cm_energy": ("glcm", "JointEnergy"),
    "cm_contrast": ("glcm", "Contrast"),
    "cm_inv_diff": ("glcm", "Id"),
    "cm_inv_diff_norm": ("glcm", "Idn"),
    "cm_inv_diff_mom": ("glcm", "Idm"),
    "cm_inv_diff_mom_norm": ("glcm", "Idmn"),
    "cm_inv_var": ("glcm", "InverseVariance"),
    "cm_corr": ("glcm", "Correlation"),
    "cm_auto_corr": ("glcm", "Autocorrelation"),
    "cm_clust_tend": ("glcm", "ClusterTendency"),
    "cm_clust_shade": ("glcm", "ClusterShade"),
    "cm_clust_prom": ("glcm", "ClusterProminence"),
    "cm_info_corr1": ("glcm", "Imc1"),
    "cm_info_corr2": ("glcm", "Imc2"),
    "rlm_sre": ("glrlm", "ShortRunEmphasis"),
    "rlm_lre": ("glrlm", "LongRunEmphasis"),
    "rlm_lgre": ("glrlm", "LowGrayLevelRunEmphasis"),
    "rlm_hgre": ("glrlm", "HighGrayLevelRunEmphasis"),
    "rlm_srlge": ("glrlm", "ShortRunLowGrayLevelEmphasis"),
    "rlm_srhge": ("glrlm", "ShortRunHighGrayLevelEmphasis"),
    "rlm_lrlge": ("glrlm", "LongRunLowGrayLevelEmphasis"),
    "rlm_lrhge": ("glrlm", "LongRunHighGrayLevelEmphasis"),
    "rlm_glnu": ("glrlm", "GrayLevelNonUniformity"),
    "rlm_glnu_norm": ("glrlm", "GrayLevelNonUniformityNormalized"),
    "rlm_rlnu": ("glrlm", "RunLengthNonUniformity"),
    "rlm_rlnu_norm": ("glrlm", "RunLengthNonUniformityNormalized"),
    "rlm_r_perc": ("glrlm", "RunPercentage"),
    "rlm_gl_var": ("glrlm", "GrayLevelVariance"),
    "rlm_rl_var": ("glrlm", "RunVariance"),
    "rlm_rl_entr": ("glrlm", "RunEntropy"),
    "szm_sze": ("glszm", "SmallAreaEmphasis"),
    "szm_lze": ("glszm", "LargeAreaEmphasis"),
    "szm_lgze": ("glszm", "LowGrayLevelZoneEmphasis"),
    "szm_hgze": ("glszm", "HighGrayLevelZoneEmphasis"),
    "szm_szlge": ("glszm", "SmallAreaLowGrayLevelEmphasis"),
    "szm_szhge": ("glszm", "SmallAreaHighGrayLevelEmphasis"),
    "szm_lzlge": ("glszm", "LargeAreaLowGrayLevelEmphasis"),
    "szm_lzhge": ("glszm", "LargeAreaHighGrayLevelEmphasis"),
    "szm_glnu": ("glszm", "GrayLevelNonUniformity"),
    "szm_glnu_norm": ("glszm", "GrayLevelNonUniformityNormalized"),
    "szm_zsnu": ("glszm", "SizeZoneNonUniformity"),
    "szm_zsnu_norm": ("glszm", "SizeZoneNonUniformityNormalized"),
    "szm_z_perc": ("glszm", "ZonePercentage"),
    "szm_gl_var": ("glszm", "GrayLevelVariance"),
    "szm_zs_var": ("glszm", "ZoneVariance"),
    "szm_zs_entr": ("glszm", "ZoneEntropy"),
    "ngt_coarseness": ("ngtdm", "Coarseness"),
    "ngt_contrast": ("ngtdm", "Contrast"),
    "ngt_busyness": ("ngtdm", "Busyness"),
    "ngt_complexity": ("ngtdm", "Complexity"),
    "ngt_strength": ("ngtdm", "Strength"),
    "ngl_lde": ("gldm", "SmallDependenceEmphasis"),
    "ngl_hde": ("gldm", "LargeDependenceEmphasis"),
    "ngl_lgce": ("gldm", "LowGrayLevelEmphasis"),
    "ngl_hgce": ("gldm", "HighGrayLevelEmphasis"),
    "ngl_ldlge": ("gldm", "SmallDependenceLowGrayLevelEmphasis"),
    "ngl_ldhge": ("gldm", "SmallDependenceHighGrayLevelEmphasis"),
    "ngl_hdlge": ("gldm", "LargeDependenceLowGrayLevelEmphasis"),
    "ngl_hdhge": ("gldm", "LargeDependenceHighGrayLevelEmphasis"),
    "ngl_glnu": ("gldm", "GrayLevelNonUniformity"),
    "ngl_dcnu": ("gldm", "DependenceNonUniformity"),
    "ngl_dcnu_norm": ("gldm", "DependenceNonUniformityNormalized"),
    "ngl_gl_var": ("gldm", "GrayLevelVariance"),
    "ngl_dc_var": ("gldm", "DependenceVariance"),
    "ngl_dc_entr": ("gldm", "DependenceEntropy"),
}
_TAG_OF_NAME = {f"{cls}_{feature}": tag for tag, (cls, feature) in PYRADIOMICS_NAMES.items()}


# The ``ibsi`` section: each key's rule (params.Rule: the phrase of the one-line error and the
# check), checked by the mechanism that checks PyRadiomics' settings.
def _finite(v: Any, low: float, high: float = math.inf, low_open: bool = True) -> bool:
    number = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return number and (v > low if low_open else v >= low) and v <= high


IBSI_SETTINGS: dict[str, Rule] = {
    "families": Rule(
        "a list of IBSI families computed in addition to featureClass's "
        f"({', '.join(FAMILIES)}) or 'all'",
        lambda v: v == "all" or (isinstance(v, list) and all(f in FAMILIES for f in v)),
    ),
    "aggregation": Rule(
        f"a list of IBSI texture aggregation methods ({', '.join(AGGREGATIONS)})",
        lambda v: isinstance(v, list) and bool(v) and all(a in MATRIX_AGGREGATIONS for a in v),
    ),
    "outlier_sigma": Rule(
        "a number > 0: IBSI outlier re-segmentation, mean +- sigma x SD",
        lambda v: _finite(v, 0),
    ),
    "round_intensities": Rule(
        "true (CT: intensities rounded to integer HU after interpolation, fixed bin size from "
        "-1000 HU by default) or false (any other modality)",
        lambda v: isinstance(v, bool),
    ),
    "mask_partial_volume": Rule(
        "a number > 0 and <= 1: the partial-volume fraction from which an interpolated mask "
        "voxel belongs to the ROI (IBSI: 0.5)",
        lambda v: _finite(v, 0, 1),
    ),
    "ivh_bin_width": Rule(
        "a number > 0: the intensity-volume histogram's fixed bin size", lambda v: _finite(v, 0)
    ),
    "ivh_bin_count": Rule(
        "an integer >= 2: the intensity-volume histogram's fixed bin number",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2,
    ),
    "discretise": Rule(
        "true, or false when the intensities are already grey levels 1..N (the IBSI digital "
        "phantom)",
        lambda v: isinstance(v, bool),
    ),
}
IBSI_DEFAULTS = {"round_intensities": True, "discretise": True, "mask_partial_volume": 0.5}

# Settings PyRadiomics has and IBSI does not express, and what IBSI expects instead; each is
# harmless at PyRadiomics' default (params.setting), refused at any other value.
_PYRADIOMICS_ONLY: dict[str, str] = {
    "normalize": "IBSI 1 computes features on the calibrated intensities (HU), "
    "without normalisation",
    "normalizeScale": "IBSI 1 computes features without normalisation",
    "removeOutliers": "use ibsi.outlier_sigma (IBSI's outlier re-segmentation "
    "of the ROI, not of a normalised image)",
    "voxelArrayShift": "IBSI's energy and RMS use the intensities unshifted",
    "preCrop": "IBSI interpolates the whole image grid; remove the setting",
    "padDistance": "IBSI interpolates the whole image grid; remove the setting",
    "symmetricalGLCM": "IBSI's co-occurrence matrices are symmetric",
    "weightingNorm": "IBSI averages or merges the directions' matrices unweighted "
    "(ibsi.aggregation)",
    "gldm_a": "IBSI's neighbouring grey level dependence uses a coarseness of 0",
    "resegmentShape": "IBSI computes morphology on the mask before intensity re-segmentation",
    "force2Ddimension": "IBSI's slices are axial (force2Ddimension 0)",
    "label_channel": "the ibsi engine reads a single-channel label map",
}
# Settings read elsewhere (or harmless): no refusal.
_ACCEPTED = {
    "minimumROIDimensions",
    "minimumROISize",
    "geometryTolerance",
    "correctMask",
    "additionalInfo",
    "label",
    "binWidth",
    "binCount",
    "resampledPixelSpacing",
    "interpolator",
    "distances",
    "force2D",
    "resegmentRange",
    "resegmentMode",
}
_SPLINE_ORDER = {"sitkLinear": 1, "sitkBSpline": 3}


def load():
    """The ``mirp`` module; a clear error naming the extra when it is missing."""
    try:
        import mirp
    except ImportError as exc:
        raise EngineUnavailable(
            "the ibsi engine needs MIRP, which is not installed: "
            f"pip install '{EXTRA}' (mirp needs pandas >= 3), or use --engine native"
        ) from exc
    return mirp


def mirp_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    load()
    try:
        return _version("mirp")
    except PackageNotFoundError:  # pragma: no cover - an unpackaged checkout
        return "unknown"


def version() -> str:
    """``ibsi <ovfdlr version> mirp <version>``: what computes the features is MIRP and this
    module, so both are in the cache key."""
    from ovfdlr import __version__

    return f"{NAME} {__version__} mirp {mirp_version()}"


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def _refuse(key: str, why: str) -> UnsupportedSetting:
    return UnsupportedSetting(f"{key}: not computed by the ibsi engine: {why}")


def check_ibsi_section(section: Any) -> dict[str, Any]:
    """The ``ibsi`` section checked key by key (one-line errors naming the key, by
    :func:`ovfdlr.engines.params.check_settings`); defaults filled."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise UnsupportedSetting("ibsi: expected a mapping of IBSI settings")
    check_settings(section, IBSI_SETTINGS, "ibsi", "parameters", error=UnsupportedSetting)
    out = {key: section.get(key) for key in IBSI_SETTINGS} | {
        key: section[key] if section.get(key) is not None else default
        for key, default in IBSI_DEFAULTS.items()
    }
    out["families"] = list(FAMILIES) if out["families"] == "all" else out["families"] or []
    out["mask_partial_volume"] = float(out["mask_partial_volume"])
    if out["ivh_bin_width"] is not None and out["ivh_bin_count"] is not None:
        raise UnsupportedSetting(
            "ibsi.ivh_bin_width, ibsi.ivh_bin_count: give one of them (fixed bin size or "
            "fixed bin number), not both"
        )
    return out


def check_supported(params: dict[str, Any]) -> dict[str, Any]:
    """The engine's plan for a parameter dict (PyRadiomics sections plus ``ibsi``), or
    :class:`UnsupportedSetting` naming the first setting IBSI / this engine does not compute."""
    from ovfdlr.engines.params import resolve, validate

    params = dict(params or {})
    ibsi = check_ibsi_section(params.pop("ibsi", None))
    validate(params, "parameters")
    if params.get("voxelSetting"):
        raise _refuse(
            "voxelSetting", "IBSI 1 defines features of the whole ROI, not voxel-based feature maps"
        )
    given = {k: v for k, v in (params.get("setting") or {}).items() if v is not None}
    resolved = resolve(params)
    image_types = resolved["imageType"]
    for image_type, custom in image_types.items():
        if image_type != "Original":
            raise _refuse(
                f"imageType.{image_type}",
                "IBSI 1 features are computed on the original image (IBSI 2's convolutional "
                "filters are not part of this engine); use imageType Original only",
            )
        given.update({k: v for k, v in (custom or {}).items() if v is not None})
    settings = dict(resolved["setting"], **given)
    for key, value in given.items():
        if key in _PYRADIOMICS_ONLY:
            if value != setting({}, key):
                raise _refuse(f"setting.{key}", _PYRADIOMICS_ONLY[key])
        elif key not in _ACCEPTED:
            raise _refuse(
                f"setting.{key}",
                "a PyRadiomics filter setting; IBSI 1 features are computed on the original image",
            )
    force2d = bool(settings.get("force2D"))

    # interpolation
    interpolator = given.get("interpolator")
    if interpolator is not None and interpolator not in _SPLINE_ORDER:
        raise _refuse(
            "setting.interpolator",
            f"{interpolator!r}: IBSI interpolates images with linear (sitkLinear) or cubic "
            "spline (sitkBSpline) interpolation",
        )
    spline_order = _SPLINE_ORDER[interpolator or "sitkBSpline"]
    spacing = settings.get("resampledPixelSpacing")
    if spacing is not None:
        if len(spacing) != 3:
            raise _refuse(
                "setting.resampledPixelSpacing",
                "IBSI resamples 3-D images: give [x, y, z] in mm (0: keep that axis' spacing)",
            )
        if force2d and spacing[2] != 0:
            raise _refuse(
                "setting.resampledPixelSpacing",
                "with force2D IBSI resamples in-plane only: set the z entry to 0",
            )
        spacing = [float(s) for s in spacing]

    # re-segmentation
    outlier = ibsi["outlier_sigma"]
    reseg_range = settings.get("resegmentRange")
    mode = setting(settings, "resegmentMode")
    if reseg_range is not None:
        if len(reseg_range) not in (1, 2):
            raise _refuse("setting.resegmentRange", "give [lower, upper] (or [lower])")
        if mode == "sigma":
            if len(reseg_range) != 2 or reseg_range[0] != -reseg_range[1] or reseg_range[1] <= 0:
                raise _refuse(
                    "setting.resegmentRange",
                    "IBSI's outlier re-segmentation is "
                    "symmetric: resegmentMode sigma needs [-k, k] (or ibsi.outlier_sigma)",
                )
            if outlier is not None and outlier != reseg_range[1]:
                raise UnsupportedSetting(
                    "setting.resegmentRange, ibsi.outlier_sigma: two "
                    "different outlier ranges; give one"
                )
            outlier, reseg_range = float(reseg_range[1]), None
        elif mode == "relative":
            raise _refuse(
                "setting.resegmentMode",
                "'relative' ranges are PyRadiomics'; IBSI "
                "re-segments by an absolute range (resegmentRange) and by "
                "outliers (ibsi.outlier_sigma)",
            )
        else:
            reseg_range = [
                float(reseg_range[0]),
                float(reseg_range[1]) if len(reseg_range) > 1 else math.nan,
            ]

    # discretisation
    if not ibsi["discretise"]:
        for key in ("binWidth", "binCount"):
            if key in given:
                raise UnsupportedSetting(
                    f"setting.{key}, ibsi.discretise: false: the image is "
                    "not discretised; remove one of them"
                )
        discretisation: dict[str, Any] = {"base_discretisation_method": "none"}
    elif settings.get("binCount"):
        discretisation = {
            "base_discretisation_method": "fixed_bin_number",
            "base_discretisation_n_bins": int(settings["binCount"]),
        }
    else:
        width = float(setting(settings, "binWidth"))
        if not ibsi["round_intensities"] and (reseg_range is None or math.isnan(reseg_range[0])):
            raise _refuse(
                "setting.binWidth",
                "IBSI's fixed bin size counts bins from the "
                "re-segmentation range's lower bound: set setting.resegmentRange "
                "[lower, upper] (CT, ibsi.round_intensities true, uses -1000 HU)",
            )
        discretisation = {
            "base_discretisation_method": "fixed_bin_size",
            "base_discretisation_bin_width": width,
        }
    if ibsi["ivh_bin_count"] is not None:
        ivh = {
            "ivh_discretisation_method": "fixed_bin_number",
            "ivh_discretisation_n_bins": ibsi["ivh_bin_count"],
        }
    elif ibsi["ivh_bin_width"] is not None:
        ivh = {
            "ivh_discretisation_method": "fixed_bin_size",
            "ivh_discretisation_bin_width": float(ibsi["ivh_bin_width"]),
        }
    else:
        ivh = {"ivh_discretisation_method": "none"}

    distances = settings.get("distances") or [1]
    if len(distances) != 1:
        raise _refuse(
            "setting.distances",
            "the ibsi engine computes one distance (IBSI's "
            "reference values use 1); give a list of one",
        )

    # families and aggregation
    families: list[str] = []
    keep: dict[str, set[str]] = {}
    for cls, features in resolved["featureClass"].items():
        if cls == "shape2D":
            if force2d or "shape2D" in (params.get("featureClass") or {}):
                raise _refuse(
                    "featureClass.shape2D",
                    "IBSI's morphology is 3-D (featureClass shape gives it, also with force2D)",
                )
            continue
        if cls not in CLASS_FAMILIES:
            raise _refuse(
                f"featureClass.{cls}",
                f"no IBSI family (the ibsi engine computes "
                f"{', '.join(CLASS_FAMILIES)} and ibsi.families)",
            )
        for family in CLASS_FAMILIES[cls]:
            if family not in families:
                families.append(family)
        if features:
            for feature in features:
                if f"{cls}_{feature}" not in _TAG_OF_NAME:
                    raise _refuse(
                        f"featureClass.{cls}.{feature}",
                        "this PyRadiomics feature has no IBSI definition the ibsi engine "
                        "computes (leave the class's list empty for all its IBSI features)",
                    )
            keep[cls] = set(features)
    for family in ibsi["families"]:
        if family not in families:
            families.append(family)
    families = [f for f in FAMILIES if f in families]  # IBSI's order
    aggregation = ibsi["aggregation"] or (
        ["2D_avg", "2D_comb", "2_5D_avg", "2_5D_comb"] if force2d else ["3D_avg", "3D_comb"]
    )
    if force2d and any(a.startswith("3D") for a in aggregation):
        raise UnsupportedSetting(
            "ibsi.aggregation: 3-D aggregation needs force2D false (force2D computes by slice)"
        )
    return {
        "settings": settings,
        "force2D": force2d,
        "spacing": spacing,
        "spline_order": spline_order,
        "resegment_range": reseg_range,
        "outlier_sigma": outlier,
        "discretisation": discretisation,
        "ivh": ivh,
        "distance": float(distances[0]),
        "families": families,
        "keep": keep,
        "aggregation": list(aggregation),
        "ibsi": ibsi,
    }


def _zone_aggregations(aggregation: list[str]) -> list[str]:
    dims = {a.rsplit("_", 1)[0] for a in aggregation}
    return [ZONE_AGGREGATIONS[d] for d in ZONE_AGGREGATIONS if d in dims]


def mirp_settings(plan: dict[str, Any], image_spacing_xyz: tuple[float, ...]) -> dict[str, Any]:
    """MIRP keyword arguments (extract_features_and_images) for one image."""
    matrix = [MATRIX_AGGREGATIONS[a] for a in plan["aggregation"]]
    zone = _zone_aggregations(plan["aggregation"])
    kwargs: dict[str, Any] = {
        "by_slice": plan["force2D"],
        "ibsi_compliant": True,
        "anti_aliasing": False,  # IBSI 1 interpolates without anti-aliasing
        "spline_order": plan["spline_order"],
        "roi_spline_order": 1,
        "roi_interpolation_mask_inclusion_threshold": plan["ibsi"]["mask_partial_volume"],
        "base_feature_families": [FAMILIES[f] for f in plan["families"]],
        "glcm_distance": plan["distance"],
        "ngldm_distance": plan["distance"],
        "ngldm_difference_level": 0.0,
        "glcm_spatial_method": matrix,
        "glrlm_spatial_method": matrix,
        "glszm_spatial_method": zone,
        "gldzm_spatial_method": zone,
        "ngtdm_spatial_method": zone,
        "ngldm_spatial_method": zone,
        **plan["discretisation"],
        **plan["ivh"],
    }
    spacing = plan["spacing"]
    if spacing is not None:
        xyz = [s if s > 0 else float(o) for s, o in zip(spacing, image_spacing_xyz, strict=True)]
        if plan["force2D"]:
            kwargs["new_spacing"] = [xyz[1], xyz[0]]  # MIRP: (y, x) in-plane
        else:
            kwargs["new_spacing"] = [xyz[2], xyz[1], xyz[0]]  # MIRP: (z, y, x)
    if plan["resegment_range"] is not None:
        kwargs["resegmentation_intensity_range"] = list(plan["resegment_range"])
    if plan["outlier_sigma"] is not None:
        kwargs["resegmentation_sigma"] = float(plan["outlier_sigma"])
    return kwargs


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

_MIRP_SPATIAL = (
    ("_2d_avg", "_2D_avg"),
    ("_2d_s_mrg", "_2D_comb"),
    ("_2.5d_d_mrg", "_2_5D_avg"),
    ("_2.5d_v_mrg", "_2_5D_comb"),
    ("_3d_avg", "_3D_avg"),
    ("_3d_v_mrg", "_3D_comb"),
    ("_2d", "_2D"),
    ("_2.5d", "_2_5D"),
    ("_3d", "_3D"),
)
_DISCRETISATION_SUFFIX = re.compile(r"_(fbn|fbs|fbnr|fbsr|fixed|none)(_[a-z]+[-0-9.e+]*)?$")
_DISTANCE = re.compile(r"_d[0-9.]+(_a[0-9.]+)?(?=_[23])")
_AGG_SUFFIX = re.compile(r"_(2D_avg|2D_comb|2_5D_avg|2_5D_comb|3D_avg|3D_comb|2D|2_5D|3D)$")


def mirp_tag(column: str) -> str | None:
    """The IBSI tag of a MIRP feature column (``cm_joint_max_d1_2d_avg_fbn_n32`` ->
    ``cm_joint_max_2D_avg``), or None for a column that is not a feature."""
    family = column.split("_", 1)[0]
    if family not in FAMILIES:
        return None
    tag = _DISCRETISATION_SUFFIX.sub("", column)
    tag = _DISTANCE.sub("", tag)
    if family in TEXTURE:
        for mirp_suffix, ibsi_suffix in _MIRP_SPATIAL:
            if tag.endswith(mirp_suffix):
                return tag[: -len(mirp_suffix)] + ibsi_suffix
    return tag


def column_name(tag: str) -> str:
    """The column an IBSI tag is written as (PyRadiomics' name where PyRadiomics has the
    feature, the aggregation appended to texture features; else ``original_ibsi_<tag>``)."""
    match = _AGG_SUFFIX.search(tag) if tag.split("_", 1)[0] in TEXTURE else None
    base = tag[: match.start()] if match else tag
    if base in PYRADIOMICS_NAMES:
        cls, feature = PYRADIOMICS_NAMES[base]
        return f"{PREFIX}_{cls}_{feature}" + (f"_{match.group(1)}" if match else "")
    return f"{PREFIX}_{IBSI_CLASS}_{tag}"


def column_tag(column: str) -> str:
    """The IBSI tag of a column this engine writes (the inverse of :func:`column_name`)."""
    head = f"{PREFIX}_{IBSI_CLASS}_"
    if column.startswith(head):
        return column[len(head) :]
    if not column.startswith(f"{PREFIX}_"):
        raise ValueError(f"'{column}' is not a column of the ibsi engine")
    rest = column[len(PREFIX) + 1 :]
    match = _AGG_SUFFIX.search(rest)
    base = rest[: match.start()] if match else rest
    tag = _TAG_OF_NAME.get(base)
    if tag is None:
        raise ValueError(f"'{column}' is not a column of the ibsi engine")
    return tag + (f"_{match.group(1)}" if match else "")


DIAGNOSTIC_PREFIX = "diagnostics_ibsi_"


def diagnostic_values(diagnostics: dict[str, str]) -> dict[str, float]:
    """The IBSI diagnostic values of a case's diagnostics, by IBSI tag (``img_dim_x_init_img``,
    ``int_mask_vox_count_reseg_roi``, ...)."""
    return {
        key.removeprefix(DIAGNOSTIC_PREFIX): float(value)
        for key, value in diagnostics.items()
        if key.startswith(DIAGNOSTIC_PREFIX)
    }


def ibsi_tags(columns):
    """``feature, ibsi_tag`` for columns this engine writes (a pandas DataFrame)."""
    import pandas as pd

    columns = list(columns)
    return pd.DataFrame({"feature": columns, "ibsi_tag": [column_tag(c) for c in columns]})


# --------------------------------------------------------------------------------------------
# Diagnostics (IBSI's, which MIRP does not export)
# --------------------------------------------------------------------------------------------


def _image_diagnostics(array: np.ndarray, spacing_zyx, stage: str) -> dict[str, float]:
    out = {}
    for axis, n, s in zip("zyx", array.shape, spacing_zyx, strict=True):
        out[f"img_dim_{axis}_{stage}_img"] = float(n)
        out[f"vox_dim_{axis}_{stage}_img"] = float(s)
    out[f"mean_int_{stage}_img"] = float(np.mean(array, dtype=np.float64))
    out[f"min_int_{stage}_img"] = float(np.min(array))
    out[f"max_int_{stage}_img"] = float(np.max(array))
    return out


def _roi_diagnostics(
    array: np.ndarray, int_mask: np.ndarray, morph_mask: np.ndarray, stage: str
) -> dict[str, float]:
    out = {}
    for axis, n in zip("zyx", int_mask.shape, strict=True):
        out[f"int_mask_dim_{axis}_{stage}_roi"] = float(n)
    for kind, mask in (("int", int_mask), ("morph", morph_mask)):
        index = np.nonzero(mask)
        for k, axis in enumerate("zyx"):
            extent = (index[k].max() - index[k].min() + 1) if index[k].size else 0
            out[f"{kind}_mask_bb_dim_{axis}_{stage}_roi"] = float(extent)
        out[f"{kind}_mask_vox_count_{stage}_roi"] = float(np.count_nonzero(mask))
    values = array[int_mask]
    if values.size:
        out[f"int_mask_mean_int_{stage}_roi"] = float(np.mean(values, dtype=np.float64))
        out[f"int_mask_min_int_{stage}_roi"] = float(np.min(values))
        out[f"int_mask_max_int_{stage}_roi"] = float(np.max(values))
    return out


def _resegment(array: np.ndarray, mask: np.ndarray, plan: dict[str, Any]) -> np.ndarray:
    """IBSI re-segmentation of the interpolated ROI as MIRP applies it: the range, intersected
    with mean +- sigma x SD of the interpolated ROI."""
    lo, hi = math.nan, math.nan
    if plan["resegment_range"] is not None:
        lo, hi = plan["resegment_range"]
    if plan["outlier_sigma"] is not None and mask.any():
        values = array[mask].astype(np.float64)
        mean, sd = values.mean(), values.std()
        k = plan["outlier_sigma"]
        lo = mean - k * sd if math.isnan(lo) else max(lo, mean - k * sd)
        hi = mean + k * sd if math.isnan(hi) else min(hi, mean + k * sd)
    out = mask.copy()
    if not math.isnan(lo):
        out &= array >= lo
    if not math.isnan(hi):
        out &= array <= hi
    return out


def moran_geary(array: np.ndarray, mask: np.ndarray, spacing_zyx) -> tuple[float, float]:
    """IBSI's Moran's I and Geary's C of the ROI's intensities, exact: the inverse-distance
    weights w_ij = 1 / |r_i - r_j| over every pair of ROI voxels, summed as FFT convolutions with
    the 1/d kernel on the voxel grid (MIRP estimates both from random 100-voxel subsets when the
    ROI has 1000 voxels or more, which misses the IBSI reference values)."""
    from scipy.signal import fftconvolve

    index = np.nonzero(mask)
    if index[0].size < 2:
        return math.nan, math.nan
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in index)
    m = mask[box].astype(np.float64)
    x = np.where(mask[box], array[box].astype(np.float64), 0.0)
    n = m.sum()
    mean = x.sum() / n
    a = (x - mean) * m
    grids = np.meshgrid(
        *[np.arange(-(k - 1), k) * float(s) for k, s in zip(m.shape, spacing_zyx, strict=True)],
        indexing="ij",
    )
    distance = np.sqrt(sum(g * g for g in grids))
    centre = tuple(k - 1 for k in m.shape)
    distance[centre] = np.inf
    kernel = 1.0 / distance

    def weighted(v: np.ndarray) -> np.ndarray:  # sum_j w_ij v_j at every voxel i
        return fftconvolve(v, kernel, mode="full")[tuple(slice(k - 1, 2 * k - 1) for k in m.shape)]

    wm = weighted(m)
    total_weight = float((m * wm).sum())
    squares = float((a * a).sum())
    if total_weight <= 0 or squares <= 0:
        return math.nan, math.nan
    moran = n / total_weight * float((a * weighted(a)).sum()) / squares
    geary_sum = 2.0 * float((a * a * wm).sum()) - 2.0 * float((a * weighted(a)).sum())
    geary = (n - 1) / (2.0 * total_weight) * geary_sum / squares
    return moran, geary


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """MIRP configures the root logger (INFO to stdout) on every call and warns freely: keep
    the host's logging as it was, and collect the warnings."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    previous_disable = logging.root.manager.disable
    logging.disable(logging.INFO)
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            yield caught
        caught.extend(
            str(r.message).splitlines()[0]
            for r in records
            if str(r.message) and not issubclass(r.category, DeprecationWarning)
        )
    finally:
        logging.disable(previous_disable)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


class IBSIEngine:
    """IBSI-compliant features (MIRP) for one image and mask."""

    name = NAME

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.plan = check_supported(params)
        load()
        self.version = version()

    def extract(self, image: sitk.Image, mask: sitk.Image, label: int) -> CaseFeatures:
        plan = self.plan
        label = int(label)
        check_inputs(image, mask, {"force2D": plan["force2D"]})
        if image.GetDimension() == 2:
            image, mask = sitk.JoinSeries(image), sitk.JoinSeries(mask)
        mask = self._mask_on_image(image, mask, label)
        array = sitk.GetArrayFromImage(image)
        roi = sitk.GetArrayFromImage(mask).astype(bool)
        try:  # the native engine's checks: absent, one voxel, too few dimensions or voxels
            roi_box(roi, plan["settings"], label)
        except ROIError as exc:
            raise roi_error(label, None, str(exc)) from exc
        spacing_zyx = tuple(reversed(image.GetSpacing()))
        diagnostics_values = _image_diagnostics(array, spacing_zyx, "init")
        diagnostics_values.update(_roi_diagnostics(array, roi, roi, "init"))

        kwargs = mirp_settings(plan, image.GetSpacing())
        features, processed, processed_mask, notes = self._run(image, mask, kwargs, label)
        diagnostics_values.update(
            _image_diagnostics(processed, spacing_zyx_after(processed_mask), "interp")
        )
        interp_roi = processed_mask["mask"].astype(bool)
        diagnostics_values.update(_roi_diagnostics(processed, interp_roi, interp_roi, "interp"))
        reseg_roi = _resegment(processed, interp_roi, plan)
        diagnostics_values.update(_roi_diagnostics(processed, reseg_roi, interp_roi, "reseg"))
        if "morph_moran_i" in features:  # exact, where MIRP estimates (ROIs of >= 1000 voxels)
            moran, geary = moran_geary(processed, reseg_roi, spacing_zyx_after(processed_mask))
            features["morph_moran_i"], features["morph_geary_c"] = moran, geary

        out: dict[str, float] = {}
        for column, value in features.items():
            tag = mirp_tag(column)
            if tag is None:
                continue
            name = column_name(tag)
            if not self._wanted(name):
                continue
            try:
                out[name] = float(value)
            except (TypeError, ValueError):
                out[name] = math.nan
        # IBSI's diagnostic values describe the image and the ROI at each step (sizes, spacings,
        # intensities): provenance, not features a model should learn from (they would carry the
        # scanner and the centre), so they go to the diagnostics table, by their IBSI tags
        diagnostics = {
            "diagnostics_Versions_ibsi": self.version,
            "diagnostics_Configuration_MIRP": _settings_text(kwargs),
            **{
                f"{DIAGNOSTIC_PREFIX}{tag}": repr(float(v)) for tag, v in diagnostics_values.items()
            },
        }
        if notes:
            diagnostics["diagnostics_Warnings_MIRP"] = " | ".join(dict.fromkeys(notes))
        return CaseFeatures(out, diagnostics)

    def _wanted(self, name: str) -> bool:
        """Whether a column is asked for: a class given as a list keeps exactly those features
        (not the IBSI-only features of its families); other classes keep everything."""
        parts = name.split("_", 2)
        cls = parts[1]
        if cls == IBSI_CLASS:  # an IBSI-only feature: its family's class decides
            family = parts[2].split("_", 1)[0]
            owner = next((c for c, fams in CLASS_FAMILIES.items() if family in fams), None)
            return owner not in self.plan["keep"]
        if cls not in self.plan["keep"]:
            return True
        feature = _AGG_SUFFIX.sub("", parts[2])
        return feature in self.plan["keep"][cls]

    def _mask_on_image(self, image: sitk.Image, mask: sitk.Image, label: int) -> sitk.Image:
        tolerance = self.plan["settings"].get("geometryTolerance") or 1e-3
        same = (
            mask.GetSize() == image.GetSize()
            and np.allclose(mask.GetSpacing(), image.GetSpacing(), atol=tolerance)
            and np.allclose(mask.GetOrigin(), image.GetOrigin(), atol=tolerance)
            and np.allclose(mask.GetDirection(), image.GetDirection(), atol=tolerance)
        )
        binary = sitk.Cast(sitk.BinaryThreshold(mask, label, label, 1, 0), sitk.sitkUInt8)
        if same:
            binary.CopyInformation(image)
            return binary
        if not self.plan["settings"].get("correctMask"):
            raise CaseError(
                "mask geometry differs from the image's (size, spacing, origin or direction); "
                "set setting.correctMask: true to resample the mask onto the image"
            )
        return sitk.Resample(binary, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)

    def _run(self, image: sitk.Image, mask: sitk.Image, kwargs: dict[str, Any], label: int):
        from mirp import extract_features_and_images

        with tempfile.TemporaryDirectory(prefix="ovfdlr-ibsi-") as tmp:
            image_path = str(Path(tmp) / "image.nii")
            mask_path = str(Path(tmp) / "mask.nii")
            sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), image_path)
            sitk.WriteImage(mask, mask_path)
            modality = "ct" if self.plan["ibsi"]["round_intensities"] else None
            try:
                with _quiet() as notes:
                    result = extract_features_and_images(
                        write_features=False,
                        export_features=True,
                        write_images=False,
                        export_images=True,
                        image_export_format="dict",
                        image=image_path,
                        mask=mask_path,
                        image_modality=modality,
                        **kwargs,
                    )
            except Exception as exc:  # whatever MIRP raises is this case's reason, in one line
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise CaseError(f"MIRP failed: {message}") from exc
        if not result or result[0] is None or result[0][0] is None or not result[0][2]:
            spacing = kwargs.get("new_spacing")
            raise roi_error(
                label, spacing, "the ROI is empty after interpolation and re-segmentation"
            )
        table, images, masks = result[0]
        row = table.iloc[0].to_dict()
        return row, images[0]["image"], masks[0], notes


def spacing_zyx_after(processed_mask: dict[str, Any]) -> tuple[float, ...]:
    return tuple(float(s) for s in processed_mask["image_spacing"])


def _settings_text(kwargs: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in kwargs.items())


Engine = IBSIEngine


def check(params: dict[str, Any]) -> None:
    """What the ibsi engine does not compute, refused, and that MIRP is installed."""
    check_supported(params)
    load()
