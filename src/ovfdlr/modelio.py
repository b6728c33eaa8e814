"""Saving and loading fitted models as skops files, trusting only the types ovfdlr writes.

skops (https://skops.readthedocs.io) stores a model without pickle's arbitrary code execution;
on loading, every type that is not a plain scikit-learn / numpy building block must be trusted
explicitly. ovfdlr trusts exactly the types its own models contain (:data:`TRUSTED_TYPES`); a
file holding anything else (tampered, or made by another program) is refused with the names of
the unexpected types.
"""

from __future__ import annotations

from pathlib import Path

TRUSTED_TYPES = (
    "collections.OrderedDict",
    "numpy.dtype",
    "ovfdlr.selection.VarianceFilter",
    "ovfdlr.selection.UnivariateFilter",
    "ovfdlr.selection.CorrelationFilter",
    "ovfdlr.selection.LassoSelector",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.tree._tree.Tree",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
)


class ModelFileError(ValueError):
    """A model file that is missing, unreadable, or holds types ovfdlr does not trust."""


def save_model(model, path: str | Path) -> Path:
    """Write a fitted model as a skops file."""
    import skops.io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    skops.io.dump(model, path)
    return path


def load_model(path: str | Path):
    """Load a skops model file written by ovfdlr, refusing any type outside TRUSTED_TYPES."""
    import skops.io

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # not a zip, or not a skops schema
        raise ModelFileError(f"{path}: not a readable skops model file ({exc})") from exc
    foreign = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if foreign:
        raise ModelFileError(
            f"{path}: refused: the file holds types ovfdlr does not trust: {', '.join(foreign)}"
        )
    try:
        return skops.io.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise ModelFileError(f"{path}: the model could not be loaded ({exc})") from exc
