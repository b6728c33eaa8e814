"""Feature fusion and selection, each step a scikit-learn estimator fitted on training rows only.

:func:`fuse` joins an arm's feature tables on case_id. :func:`selection_pipeline` builds the
selection the paper calls "LASSO", with the steps radiomics studies use before it:

1. :class:`VarianceFilter`: drop constant and near-constant features, and features that are not
   finite in every training row;
2. median imputation (``SimpleImputer``) for missing values in other cohorts;
3. z-score (``StandardScaler``);
4. :class:`UnivariateFilter`: keep features associated with the class (Kruskal-Wallis H test by
   default, one-way ANOVA F test as an option), p < ``alpha``;
5. :class:`CorrelationFilter`: of every pair with |r| > ``threshold`` (Spearman by default),
   keep the member with the stronger univariate association;
6. :class:`LassoSelector`: L1-penalised multinomial logistic regression whose penalty is chosen
   by patient-grouped, class-stratified cross-validation; the features with a non-zero
   coefficient for any class are kept.

Every step learns only in ``fit`` and is carried unchanged to other cohorts by ``transform``;
the pipeline records how many features survive each step (:func:`funnel`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectorMixin, f_classif
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ovfdlr.cohort import patient_folds


class SelectionError(ValueError):
    """Feature tables or a selection that cannot be used; the message says which."""


# ---------------------------------------------------------------------------------------------
# fusion


def fuse(tables: Sequence[pd.DataFrame], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Join feature tables (index case_id) column-wise on their common cases.

    Raises :class:`SelectionError` when a table has duplicate case_ids or when two tables share
    a column name. Cases missing from any table are dropped (the caller reports them).
    """
    names = list(names) if names is not None else [f"table {i + 1}" for i in range(len(tables))]
    if not tables:
        raise SelectionError("no feature tables to fuse")
    seen: dict[str, str] = {}
    for name, table in zip(names, tables, strict=True):
        if table.index.has_duplicates:
            dup = table.index[table.index.duplicated()].unique()[:5].tolist()
            raise SelectionError(f"{name}: case_id used more than once: {', '.join(map(str, dup))}")
        for column in table.columns:
            if column in seen:
                raise SelectionError(f"column '{column}' is in both {seen[column]} and {name}")
            seen[column] = name
    fused = pd.concat([t.astype("float64") for t in tables], axis=1, join="inner")
    fused.index.name = "case_id"
    return fused


# ---------------------------------------------------------------------------------------------
# the filters


class _Selector(SelectorMixin, BaseEstimator):
    """A selector whose ``fit`` sets the boolean mask ``support_``."""

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_


class _SupervisedSelector(_Selector):
    """A selector that needs the class labels to fit."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


class VarianceFilter(_Selector):
    """Drop constant, near-constant and non-finite features.

    A feature is dropped when, over the training rows, it is not finite in every row, its
    variance is at most ``threshold``, or its most frequent value covers more than
    ``max_mode_fraction`` of the rows (a near-constant feature, e.g. zero in 97 % of cases).
    """

    def __init__(self, threshold: float = 0.0, max_mode_fraction: float = 0.95):
        self.threshold = threshold
        self.max_mode_fraction = max_mode_fraction

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X, y=None):
        X = validate_data(self, X, ensure_all_finite=False, dtype="numeric")
        X = np.asarray(X, dtype=np.float64)
        finite = np.isfinite(X).all(axis=0)
        with np.errstate(invalid="ignore"):
            variance = np.where(finite, np.var(np.where(np.isfinite(X), X, 0.0), axis=0), 0.0)
        mode_share = np.zeros(X.shape[1])
        for j in np.flatnonzero(finite):
            _, counts = np.unique(X[:, j], return_counts=True)
            mode_share[j] = counts.max() / X.shape[0]
        self.variances_ = variance
        self.mode_fraction_ = mode_share
        self.support_ = (
            finite & (variance > self.threshold) & (mode_share <= self.max_mode_fraction)
        )
        return self


def _class_samples(X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    return [X[y == c] for c in np.unique(y)]


def univariate_scores(X: np.ndarray, y: np.ndarray, test: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature statistic and p-value across the classes of ``y``.

    ``kruskal``: Kruskal-Wallis H (rank-based, tie-corrected; Kruskal & Wallis, JASA 1952);
    ``anova``: one-way ANOVA F. A feature constant within all classes gets p = 1.
    """
    X = np.asarray(X, dtype=np.float64)
    if test == "anova":
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", message=".*constant.*")
            statistic, p = f_classif(X, y)
    elif test == "kruskal":
        samples = _class_samples(X, y)
        if len(samples) < 2:
            raise SelectionError("univariate filter needs at least two classes (got one class)")
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            statistic, p = stats.kruskal(*samples, axis=0, nan_policy="propagate")
    else:
        raise SelectionError(f"univariate test '{test}' is not 'kruskal' or 'anova'")
    statistic = np.nan_to_num(np.asarray(statistic, dtype=np.float64), nan=0.0)
    p = np.nan_to_num(np.asarray(p, dtype=np.float64), nan=1.0)
    return statistic, np.clip(p, 0.0, 1.0)


class UnivariateFilter(_SupervisedSelector):
    """Keep features whose association with the class has p < ``alpha``.

    If fewer than ``min_features`` pass, the ``min_features`` with the smallest p are kept so
    that the pipeline never runs empty (recorded in ``fallback_``).
    """

    def __init__(self, test: str = "kruskal", alpha: float = 0.05, min_features: int = 1):
        self.test = test
        self.alpha = alpha
        self.min_features = min_features

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype="numeric")
        check_classification_targets(y)
        self.statistics_, self.pvalues_ = univariate_scores(X, y, self.test)
        support = self.pvalues_ < self.alpha
        self.fallback_ = bool(support.sum() < min(self.min_features, X.shape[1]))
        if self.fallback_:
            order = np.argsort(self.pvalues_, kind="stable")[: self.min_features]
            support = np.zeros_like(support)
            support[order] = True
        self.support_ = support
        return self


def _ranks(X: np.ndarray) -> np.ndarray:
    return np.apply_along_axis(stats.rankdata, 0, X)


class CorrelationFilter(_SupervisedSelector):
    """Remove redundancy: of features correlated beyond ``threshold``, keep the stronger one.

    Features are visited from the strongest univariate association (largest Kruskal-Wallis H,
    or ANOVA F) down; each is kept unless its absolute correlation (Spearman or Pearson) with a
    feature already kept exceeds ``threshold``.
    """

    def __init__(self, threshold: float = 0.9, method: str = "spearman", test: str = "kruskal"):
        self.threshold = threshold
        self.method = method
        self.test = test

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype="numeric")
        check_classification_targets(y)
        X = np.asarray(X, dtype=np.float64)
        if self.method not in ("spearman", "pearson"):
            raise SelectionError(f"correlation method '{self.method}' is not spearman/pearson")
        values = _ranks(X) if self.method == "spearman" else X
        with np.errstate(invalid="ignore", divide="ignore"):
            correlation = np.corrcoef(values, rowvar=False) if X.shape[1] > 1 else np.ones((1, 1))
        correlation = np.nan_to_num(np.atleast_2d(correlation), nan=0.0)
        strength, _ = univariate_scores(X, y, self.test)
        order = np.argsort(-strength, kind="stable")
        kept: list[int] = []
        for j in order:
            if all(abs(correlation[j, k]) <= self.threshold for k in kept):
                kept.append(j)
        support = np.zeros(X.shape[1], dtype=bool)
        support[kept] = True
        self.strength_ = strength
        self.support_ = support
        return self


class LassoSelector(_SupervisedSelector):
    """Features with a non-zero coefficient in an L1-penalised model chosen by grouped CV.

    ``method="multinomial"`` (default): multinomial logistic regression with an L1 penalty
    (``l1_ratio=1``, saga solver) over a grid of inverse penalties ``C``; ``method="index"``:
    a plain Lasso on the class index (``LassoCV``-style, over alphas ``1 / C``). The penalty is
    the one with the best mean cross-validated score (negative log loss, or negative squared
    error for ``index``) over ``cv`` folds, stratified by class and grouped by ``groups``
    (patient_id), so no patient straddles a fold; only penalties that keep at least one feature
    compete. Without ``groups`` every row counts as its own patient: give them whenever a
    patient can have several vertebrae (``fit_arm`` always does). The whole path is kept:
    ``path_`` (C, mean and sd of the CV score, features selected on all training rows), ``C_``
    and ``coefficients_`` (feature x class).
    """

    def __init__(
        self,
        method: str = "multinomial",
        Cs: int | Sequence[float] = 12,
        cv: int = 5,
        max_iter: int = 2000,
        tol: float = 1e-3,
        random_state: int = 0,
    ):
        self.method = method
        self.Cs = Cs
        self.cv = cv
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _grid(self) -> np.ndarray:
        if isinstance(self.Cs, int | np.integer):
            return np.logspace(-2.5, 1, int(self.Cs))
        return np.sort(np.asarray(self.Cs, dtype=np.float64))

    def _model(self, C: float):
        if self.method == "multinomial":
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(
                C=C,
                l1_ratio=1.0,
                solver="saga",
                max_iter=self.max_iter,
                tol=self.tol,
                random_state=self.random_state,
                warm_start=True,
            )
        if self.method == "index":
            from sklearn.linear_model import Lasso

            return Lasso(
                alpha=1.0 / C,
                max_iter=self.max_iter * 5,
                tol=self.tol,
                random_state=self.random_state,
                warm_start=True,
            )
        raise SelectionError(f"LASSO method '{self.method}' is not 'multinomial' or 'index'")

    def _path(self, X, y, grid):
        """Coefficients along the grid, from the strongest penalty up, warm-started."""
        model = self._model(grid[0])
        coefs, models = [], []
        for C in grid:
            if self.method == "multinomial":
                model.set_params(C=C)
            else:
                model.set_params(alpha=1.0 / C)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(X, y)
            coefs.append(np.atleast_2d(model.coef_).copy())
            models.append(_snapshot(model))
        return coefs, models

    def _score(self, snapshot, X, y) -> float:
        if self.method == "multinomial":
            from sklearn.metrics import log_loss

            return -log_loss(y, snapshot.predict_proba(X), labels=self.classes_)
        return -float(np.mean((snapshot.predict(X) - y) ** 2))

    def fit(self, X, y, groups=None):
        X, y = validate_data(self, X, y, dtype="numeric")
        check_classification_targets(y)
        X = np.asarray(X, dtype=np.float64)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise SelectionError("LASSO selection needs at least two classes (got one class)")
        grid = self._grid()
        y_fit = y if self.method == "multinomial" else y.astype(np.float64)
        n_splits = max(2, min(self.cv, np.bincount(np.unique(y, return_inverse=True)[1]).min()))
        splits = patient_folds(y, groups, n_splits, self.random_state)
        scores = np.zeros((len(splits), len(grid)))
        for f, (train, test) in enumerate(splits):
            _, snapshots = self._path(X[train], y_fit[train], grid)
            for i, snapshot in enumerate(snapshots):
                scores[f, i] = self._score(snapshot, X[test], y_fit[test])
        coefs, snapshots = self._path(X, y_fit, grid)
        n_selected = np.array([(np.abs(c) > 0).any(axis=0).sum() for c in coefs])
        mean = scores.mean(axis=0)
        candidates = np.flatnonzero(n_selected > 0)
        if candidates.size == 0:
            raise SelectionError("LASSO kept no feature at any penalty of the grid")
        best = candidates[np.argmax(mean[candidates])]
        # plain arrays (not DataFrames) so that the fitted selector serialises with skops
        self.Cs_ = grid
        self.cv_scores_ = scores
        self.path_n_features_ = n_selected
        self.C_ = float(grid[best])
        self.estimator_ = snapshots[best]
        self.n_iter_ = int(np.max(self.estimator_.n_iter_))
        self.support_ = (np.abs(coefs[best]) > 0).any(axis=0)
        self.coef_ = coefs[best][:, self.support_]
        return self

    @property
    def path_(self) -> pd.DataFrame:
        """The penalty path: C, mean and sd of the CV score, features selected on all rows."""
        check_is_fitted(self, "support_")
        return pd.DataFrame(
            {
                "C": self.Cs_,
                "cv_score_mean": self.cv_scores_.mean(axis=0),
                "cv_score_sd": self.cv_scores_.std(axis=0, ddof=1),
                "n_features": self.path_n_features_,
            }
        )

    @property
    def coefficients_(self) -> pd.DataFrame:
        """Coefficients of the selected features (rows) per class (columns) at ``C_``."""
        check_is_fitted(self, "support_")
        labels = [f"class {c}" for c in self.classes_] if self.coef_.shape[0] > 1 else ["index"]
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = np.array([f"x{j}" for j in range(len(self.support_))])
        return pd.DataFrame(self.coef_.T, index=names[self.support_], columns=labels)


def _snapshot(model):
    from copy import deepcopy

    return deepcopy(model)


# ---------------------------------------------------------------------------------------------
# the pipeline


def selection_pipeline(
    *,
    variance_threshold: float = 0.0,
    max_mode_fraction: float = 0.95,
    univariate_test: str = "kruskal",
    alpha: float = 0.05,
    correlation_threshold: float = 0.9,
    correlation_method: str = "spearman",
    lasso_method: str = "multinomial",
    lasso_Cs: int | Sequence[float] = 12,
    cv: int = 5,
    seed: int = 0,
) -> Pipeline:
    """The selection steps as one scikit-learn ``Pipeline`` (pandas output).

    Fit with ``pipeline.fit(X, y, lasso__groups=patient_ids)`` so the LASSO's cross-validation
    groups by patient.
    """
    pipeline = Pipeline(
        [
            ("variance", VarianceFilter(variance_threshold, max_mode_fraction)),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("univariate", UnivariateFilter(univariate_test, alpha)),
            (
                "redundancy",
                CorrelationFilter(correlation_threshold, correlation_method, univariate_test),
            ),
            ("lasso", LassoSelector(lasso_method, lasso_Cs, cv, random_state=seed)),
        ]
    )
    return pipeline.set_output(transform="pandas")


def funnel(pipeline: Pipeline, n_input: int) -> pd.DataFrame:
    """Features remaining after each step of a fitted selection pipeline."""
    rows = [{"step": "input", "features": n_input}]
    for name, step in pipeline.steps:
        if hasattr(step, "get_support"):
            rows.append({"step": name, "features": int(step.get_support().sum())})
    return pd.DataFrame(rows)
