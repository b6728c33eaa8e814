"""The PyRadiomics vocabulary every engine speaks: image types, feature classes and features.

Stated once here so that parameter files can be checked, and feature names listed, without
importing an engine. ``FEATURES[cls]`` maps each feature of a class to whether PyRadiomics marks
it deprecated (a deprecated feature is computed only when a parameter file names it); the order
is PyRadiomics' (alphabetical), which is the order of the columns it writes. A test checks this
table against the installed PyRadiomics (``tests/test_engines.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

IMAGE_TYPES: tuple[str, ...] = (
    "Original",
    "Wavelet",
    "LoG",
    "Square",
    "SquareRoot",
    "Logarithm",
    "Exponential",
    "Gradient",
    "LBP2D",
    "LBP3D",
)

FEATURES: dict[str, dict[str, bool]] = {
    "firstorder": {
        "10Percentile": False,
        "90Percentile": False,
        "Energy": False,
        "Entropy": False,
        "InterquartileRange": False,
        "Kurtosis": False,
        "Maximum": False,
        "MeanAbsoluteDeviation": False,
        "Mean": False,
        "Median": False,
        "Minimum": False,
        "Range": False,
        "RobustMeanAbsoluteDeviation": False,
        "RootMeanSquared": False,
        "Skewness": False,
        "StandardDeviation": True,
        "TotalEnergy": False,
        "Uniformity": False,
        "Variance": False,
    },
    "glcm": {
        "Autocorrelation": False,
        "ClusterProminence": False,
        "ClusterShade": False,
        "ClusterTendency": False,
        "Contrast": False,
        "Correlation": False,
        "DifferenceAverage": False,
        "DifferenceEntropy": False,
        "DifferenceVariance": False,
        "Dissimilarity": True,
        "Homogeneity1": True,
        "Homogeneity2": True,
        "Id": False,
        "Idm": False,
        "Idmn": False,
        "Idn": False,
        "Imc1": False,
        "Imc2": False,
        "InverseVariance": False,
        "JointAverage": False,
        "JointEnergy": False,
        "JointEntropy": False,
        "MCC": False,
        "MaximumProbability": False,
        "SumAverage": False,
        "SumEntropy": False,
        "SumSquares": False,
        "SumVariance": True,
    },
    "gldm": {
        "DependenceEntropy": False,
        "DependenceNonUniformity": False,
        "DependenceNonUniformityNormalized": False,
        "DependencePercentage": True,
        "DependenceVariance": False,
        "GrayLevelNonUniformity": False,
        "GrayLevelNonUniformityNormalized": True,
        "GrayLevelVariance": False,
        "HighGrayLevelEmphasis": False,
        "LargeDependenceEmphasis": False,
        "LargeDependenceHighGrayLevelEmphasis": False,
        "LargeDependenceLowGrayLevelEmphasis": False,
        "LowGrayLevelEmphasis": False,
        "SmallDependenceEmphasis": False,
        "SmallDependenceHighGrayLevelEmphasis": False,
        "SmallDependenceLowGrayLevelEmphasis": False,
    },
    "glrlm": {
        "GrayLevelNonUniformity": False,
        "GrayLevelNonUniformityNormalized": False,
        "GrayLevelVariance": False,
        "HighGrayLevelRunEmphasis": False,
        "LongRunEmphasis": False,
        "LongRunHighGrayLevelEmphasis": False,
        "LongRunLowGrayLevelEmphasis": False,
        "LowGrayLevelRunEmphasis": False,
        "RunEntropy": False,
        "RunLengthNonUniformity": False,
        "RunLengthNonUniformityNormalized": False,
        "RunPercentage": False,
        "RunVariance": False,
        "ShortRunEmphasis": False,
        "ShortRunHighGrayLevelEmphasis": False,
        "ShortRunLowGrayLevelEmphasis": False,
    },
    "glszm": {
        "GrayLevelNonUniformity": False,
        "GrayLevelNonUniformityNormalized": False,
        "GrayLevelVariance": False,
        "HighGrayLevelZoneEmphasis": False,
        "LargeAreaEmphasis": False,
        "LargeAreaHighGrayLevelEmphasis": False,
        "LargeAreaLowGrayLevelEmphasis": False,
        "LowGrayLevelZoneEmphasis": False,
        "SizeZoneNonUniformity": False,
        "SizeZoneNonUniformityNormalized": False,
        "SmallAreaEmphasis": False,
        "SmallAreaHighGrayLevelEmphasis": False,
        "SmallAreaLowGrayLevelEmphasis": False,
        "ZoneEntropy": False,
        "ZonePercentage": False,
        "ZoneVariance": False,
    },
    "ngtdm": {
        "Busyness": False,
        "Coarseness": False,
        "Complexity": False,
        "Contrast": False,
        "Strength": False,
    },
    "shape": {
        "Compactness1": True,
        "Compactness2": True,
        "Elongation": False,
        "Flatness": False,
        "LeastAxisLength": False,
        "MajorAxisLength": False,
        "Maximum2DDiameterColumn": False,
        "Maximum2DDiameterRow": False,
        "Maximum2DDiameterSlice": False,
        "Maximum3DDiameter": False,
        "MeshVolume": False,
        "MinorAxisLength": False,
        "SphericalDisproportion": True,
        "Sphericity": False,
        "SurfaceArea": False,
        "SurfaceVolumeRatio": False,
        "VoxelVolume": False,
    },
    "shape2D": {
        "Elongation": False,
        "MajorAxisLength": False,
        "MaximumDiameter": False,
        "MeshSurface": False,
        "MinorAxisLength": False,
        "Perimeter": False,
        "PerimeterSurfaceRatio": False,
        "PixelSurface": False,
        "SphericalDisproportion": True,
        "Sphericity": False,
    },
}

SHAPE_CLASSES = ("shape", "shape2D")


def split_feature_name(column: str) -> tuple[str, str, str] | None:
    """``(image, class, feature)`` of a PyRadiomics feature name ``<image>_<class>_<Feature>``
    (``log-sigma-2-0-mm-3D_glcm_ClusterShade``); None for any other column."""
    parts = column.split("_", 2)
    if len(parts) == 3 and parts[1] in FEATURES and parts[2] in FEATURES[parts[1]]:
        return parts[0], parts[1], parts[2]
    return None


def is_feature_name(column: str) -> bool:
    """Whether ``column`` is a PyRadiomics feature name ``<image>_<class>_<Feature>``."""
    return split_feature_name(column) is not None


def resolve_names(names: Iterable[str] | None, feature_names: Mapping[str, bool]) -> list[str]:
    """The features to compute, in column order: ``names`` in the order given (each must exist,
    else ``LookupError``, as PyRadiomics' ``enableFeatureByName``), or every non-deprecated one
    in PyRadiomics' alphabetical order when None or empty (its ``execute`` enables all features
    when none is enabled)."""
    chosen = list(dict.fromkeys(names or []))
    if not chosen:
        return [name for name, deprecated in feature_names.items() if not deprecated]
    for name in chosen:
        if name not in feature_names:
            raise LookupError(f"Feature not found: {name}")
    return chosen


def enabled_features(feature_class: str, names: Iterable[str] | None) -> list[str]:
    """The features a parameter file's ``featureClass.<cls>`` entry enables, in column order
    (:func:`resolve_names` on the class's features)."""
    return resolve_names(names, FEATURES[feature_class])
