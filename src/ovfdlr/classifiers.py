"""The eight classifiers of the paper and their small, documented search spaces.

- ``lr``: multinomial logistic regression, L2; ``C`` in 0.01, 0.1, 1, 10.
- ``svm``: SVM with RBF kernel and Platt-scaled probabilities; ``C`` in 0.3, 1, 3, 10 and
  ``gamma`` "scale" or 0.01.
- ``knn``: k nearest neighbours; ``n_neighbors`` 5, 15 or 31, ``weights`` uniform or distance.
- ``rf``: random forest of 300 trees; ``max_depth`` None or 6, ``min_samples_leaf`` 1 or 5.
- ``et``: extremely randomised trees, 300 trees; as ``rf``.
- ``xgb``: XGBoost (hist), learning rate 0.05; ``n_estimators`` 100 or 300, ``max_depth`` 2 or 4.
- ``lgbm``: LightGBM, learning rate 0.05, deterministic; ``n_estimators`` 100 or 300,
  ``num_leaves`` 7 or 15.
- ``mlp``: multilayer perceptron (adam, no early stopping: its validation split would be by
  row, not by patient); ``hidden_layer_sizes`` (64,) or (128, 64), ``alpha`` 0.001 or 0.1.

Everything else is at the library default unless set in :func:`make_classifier`.
The spaces are deliberately small: with a few hundred training cases a wide search fits the
noise of the cross-validation. Every model is seeded, and single-threaded inside, so that the
same seed gives the same model; parallelism comes from running folds side by side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Literal

import numpy as np

Explainer = Literal["tree-probability", "tree-margin", "linear", "kernel"]


@dataclass(frozen=True)
class ClassifierInfo:
    """Everything ovfdlr knows about one classifier family, stated once.

    ``explainer`` is the SHAP explainer kind (:mod:`ovfdlr.explain`); ``estimators`` are the
    class names a fitted model of this family has (how a loaded model is recognised);
    ``trusted_types`` are the types beyond scikit-learn's and numpy's building blocks that its
    skops file holds (:mod:`ovfdlr.modelio` trusts exactly these).
    """

    key: str
    name: str
    space: dict[str, list]
    quick_space: dict[str, list]
    explainer: Explainer
    estimators: tuple[str, ...]
    trusted_types: tuple[str, ...] = ()


REGISTRY: dict[str, ClassifierInfo] = {
    info.key: info
    for info in (
        ClassifierInfo(
            "lr",
            "Logistic regression",
            {"C": [0.01, 0.1, 1.0, 10.0]},
            {"C": [0.1, 1.0]},
            "linear",
            ("LogisticRegression",),
        ),
        ClassifierInfo(
            "svm",
            "SVM (RBF)",
            {"C": [0.3, 1.0, 3.0, 10.0], "gamma": ["scale", 0.01]},
            {"C": [1.0]},
            "kernel",
            ("CalibratedClassifierCV", "SVC"),
            (
                "sklearn.calibration._CalibratedClassifier",
                "sklearn.calibration._SigmoidCalibration",
            ),
        ),
        ClassifierInfo(
            "knn",
            "KNN",
            {"n_neighbors": [5, 15, 31], "weights": ["uniform", "distance"]},
            {"n_neighbors": [15]},
            "kernel",
            ("KNeighborsClassifier",),
            (
                "sklearn.metrics._dist_metrics.EuclideanDistance64",
                "sklearn.neighbors._ball_tree.BallTree",
                "sklearn.neighbors._kd_tree.KDTree",
            ),
        ),
        ClassifierInfo(
            "rf",
            "Random forest",
            {"max_depth": [None, 6], "min_samples_leaf": [1, 5]},
            {"min_samples_leaf": [1, 5]},
            "tree-probability",
            ("RandomForestClassifier",),
            ("sklearn.tree._tree.Tree",),
        ),
        ClassifierInfo(
            "et",
            "Extra trees",
            {"max_depth": [None, 6], "min_samples_leaf": [1, 5]},
            {"min_samples_leaf": [1]},
            "tree-probability",
            ("ExtraTreesClassifier",),
            ("sklearn.tree._tree.Tree",),
        ),
        ClassifierInfo(
            "xgb",
            "XGBoost",
            {"n_estimators": [100, 300], "max_depth": [2, 4]},
            {"max_depth": [2]},
            "tree-margin",
            ("XGBClassifier",),
            ("xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"),
        ),
        ClassifierInfo(
            "lgbm",
            "LightGBM",
            {"n_estimators": [100, 300], "num_leaves": [7, 15]},
            {"num_leaves": [7]},
            "tree-margin",
            ("LGBMClassifier",),
            ("lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier"),
        ),
        ClassifierInfo(
            "mlp",
            "MLP",
            {"hidden_layer_sizes": [(64,), (128, 64)], "alpha": [0.001, 0.1]},
            {"alpha": [0.1]},
            "kernel",
            ("MLPClassifier",),
            (
                "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
                "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
            ),
        ),
    )
}
CLASSIFIERS = tuple(REGISTRY)  # the paper's order
NAMES = {key: info.name for key, info in REGISTRY.items()}


def display_name(key: str) -> str:
    """The classifier's name for tables and figures (the key itself when unknown)."""
    info = REGISTRY.get(key)
    return info.name if info else key


def info_of(model) -> ClassifierInfo:
    """The registry entry of a fitted classifier (recognised by its class name)."""
    name = type(model).__name__
    for info in REGISTRY.values():
        if name in info.estimators:
            return info
    raise ValueError(f"{name} is not one of ovfdlr's classifiers ({', '.join(CLASSIFIERS)})")


def keys_with_explainer(kind: Explainer) -> tuple[str, ...]:
    """The classifier keys explained with SHAP explainer ``kind``."""
    return tuple(k for k, info in REGISTRY.items() if info.explainer == kind)


@dataclass(frozen=True)
class Spec:
    """A classifier key, how to build it, and its search space."""

    key: str
    space: dict[str, list] = field(default_factory=dict)

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the search space (one empty dict when there is none)."""
        if not self.space:
            return [{}]
        keys = sorted(self.space)
        return [
            dict(zip(keys, values, strict=True))
            for values in product(*(self.space[k] for k in keys))
        ]

    def build(self, params: dict[str, Any] | None = None, seed: int = 0):
        return make_classifier(self.key, seed=seed, **(params or {}))


def make_classifier(key: str, seed: int = 0, **params):
    """A fresh, seeded classifier of family ``key`` with ``params`` over its defaults."""
    if key == "lr":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=5000, random_state=seed, **params)
    if key == "svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        # Platt-scaled probabilities from an internal 5-fold calibration (scikit-learn's
        # replacement for SVC(probability=True))
        return CalibratedClassifierCV(
            SVC(kernel="rbf", random_state=seed, **params), method="sigmoid", cv=5, ensemble=False
        )
    if key == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(**params)
    if key in ("rf", "et"):
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

        model = RandomForestClassifier if key == "rf" else ExtraTreesClassifier
        return model(
            n_estimators=params.pop("n_estimators", 300), random_state=seed, n_jobs=1, **params
        )
    if key == "xgb":
        from xgboost import XGBClassifier

        defaults = {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05}
        return XGBClassifier(
            **(defaults | params),
            tree_method="hist",
            subsample=0.9,
            colsample_bytree=0.9,
            random_state=seed,
            n_jobs=1,
            eval_metric="mlogloss",
            verbosity=0,
        )
    if key == "lgbm":
        from lightgbm import LGBMClassifier

        defaults = {"n_estimators": 200, "num_leaves": 15, "learning_rate": 0.05}
        return LGBMClassifier(
            **(defaults | params),
            subsample=0.9,
            subsample_freq=1,
            colsample_bytree=0.9,
            random_state=seed,
            n_jobs=1,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
    if key == "mlp":
        from sklearn.neural_network import MLPClassifier

        # no early stopping: its validation split is by row, and would split patients
        return MLPClassifier(max_iter=1000, random_state=seed, **params)
    raise ValueError(f"unknown classifier '{key}' (choose from {', '.join(CLASSIFIERS)})")


def fit_classifier(model, X, y, groups=None, seed: int = 0):
    """Fit ``model`` on (X, y); the SVM's Platt calibration folds are grouped by patient.

    ``CalibratedClassifierCV`` would otherwise split its internal 5 folds by row, putting two
    vertebrae of one patient on both sides of a calibration split.
    """
    from sklearn.calibration import CalibratedClassifierCV

    if isinstance(model, CalibratedClassifierCV) and groups is not None:
        from ovfdlr.cohort import patient_folds

        rarest = int(np.unique(np.asarray(y), return_counts=True)[1].min())
        n_splits = min(5, len(np.unique(groups)), rarest)
        if n_splits >= 2:
            model.set_params(cv=patient_folds(y, groups, n_splits, seed))
            model.fit(X, y)
            return model.set_params(cv=n_splits)  # the splits are not needed once fitted
    return model.fit(X, y)


def specs(keys: Iterable[str] | None = None, quick: bool = False) -> list[Spec]:
    """The classifier specs to train, in the paper's order; ``quick`` uses tiny spaces."""
    keys = list(keys) if keys is not None else list(CLASSIFIERS)
    unknown = [k for k in keys if k not in CLASSIFIERS]
    if unknown:
        raise ValueError(
            f"unknown classifier(s) {', '.join(unknown)} (choose from {', '.join(CLASSIFIERS)})"
        )
    return [Spec(k, REGISTRY[k].quick_space if quick else REGISTRY[k].space) for k in keys]
