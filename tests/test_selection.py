"""Feature fusion and selection: scikit-learn conventions, what each step keeps, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import check_estimator

from ovfdlr.selection import (
    CorrelationFilter,
    LassoSelector,
    SelectionError,
    UnivariateFilter,
    VarianceFilter,
    funnel,
    fuse,
    selection_pipeline,
)


@pytest.mark.parametrize(
    "estimator",
    [VarianceFilter(), UnivariateFilter(), CorrelationFilter(), LassoSelector(Cs=4, cv=3)],
    ids=lambda e: type(e).__name__,
)
def test_scikit_learn_estimator_checks(estimator):
    """scikit-learn's own estimator checks, every one of them run and required to pass (the
    array-API checks are not applicable: the selectors take numpy and pandas input)."""
    check_estimator(estimator, on_fail="raise", on_skip=None)


def informative(n=240, seed=0):
    """Three classes; f0-f2 carry the class, f3 copies f0, f4 is constant, f5-f19 are noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    X = rng.normal(size=(n, 20))
    X[:, 0] += 1.5 * y
    X[:, 1] -= 1.0 * (y == 2)
    X[:, 2] += 1.0 * (y == 1)
    X[:, 3] = X[:, 0] * 2 + rng.normal(0, 0.01, n)
    X[:, 4] = 7.0
    X[:, 5] = np.where(rng.random(n) < 0.98, 0.0, 1.0)  # near-constant
    groups = np.repeat(np.arange(n // 2), 2)
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(20)]), y, groups


def test_each_step_keeps_what_it_should():
    X, y, groups = informative()
    assert set(VarianceFilter().fit(X).get_feature_names_out()) == set(X.columns) - {"f4", "f5"}
    univariate = UnivariateFilter().fit(X, y)
    kept = set(univariate.get_feature_names_out())
    assert {"f0", "f1", "f2", "f3"} <= kept and len(kept) < 10
    assert univariate.pvalues_.min() >= 0 and univariate.pvalues_.max() <= 1
    redundancy = CorrelationFilter(threshold=0.9).fit(X[["f0", "f3", "f1"]], y)
    assert list(redundancy.get_feature_names_out()) in (["f0", "f1"], ["f3", "f1"])
    lasso = LassoSelector(Cs=8, cv=3).fit(X[["f0", "f1", "f2", "f6", "f7"]], y, groups=groups)
    assert {"f0", "f1", "f2"} <= set(lasso.get_feature_names_out())
    assert list(lasso.path_.columns) == ["C", "cv_score_mean", "cv_score_sd", "n_features"]
    assert lasso.coefficients_.shape[1] == 3


def test_pipeline_funnel_and_pandas_output():
    X, y, groups = informative()
    pipeline = selection_pipeline(lasso_Cs=6, cv=3).fit(X, y, lasso__groups=groups)
    out = pipeline.transform(X)
    assert isinstance(out, pd.DataFrame) and set(out.columns) <= set(X.columns)
    table = funnel(pipeline, X.shape[1])
    assert table["step"].tolist() == ["input", "variance", "univariate", "redundancy", "lasso"]
    counts = table["features"].tolist()
    assert counts[0] == 20 and counts == sorted(counts, reverse=True) and counts[-1] >= 1


def test_transform_applies_training_statistics():
    """New rows are scaled with the training mean and sd; transforming never refits."""
    X, y, groups = informative()
    train = np.arange(len(y)) < 180
    pipeline = selection_pipeline(lasso_Cs=5, cv=3).fit(
        X[train], y[train], lasso__groups=groups[train]
    )
    scale = pipeline.named_steps["scale"]
    before = (scale.mean_.copy(), pipeline.named_steps["lasso"].coef_.copy())
    new = X[~train] * 3 + 100  # rows far from anything seen
    out = pipeline.transform(new)
    np.testing.assert_array_equal(scale.mean_, before[0])
    np.testing.assert_array_equal(pipeline.named_steps["lasso"].coef_, before[1])
    kept = list(out.columns)
    position = list(scale.get_feature_names_out()).index(kept[0])
    expected = (new[kept[0]] - scale.mean_[position]) / scale.scale_[position]
    np.testing.assert_allclose(out[kept[0]].to_numpy(), expected.to_numpy())


def test_lasso_cross_validation_never_splits_a_patient(monkeypatch):
    import ovfdlr.selection as selection

    X, y, _ = informative()
    groups = np.repeat(np.arange(60), 4)  # four vertebrae per patient, classes mixed
    seen = []

    def spy(y_, groups_, n_splits, seed):
        splits = selection_patient_folds(y_, groups_, n_splits, seed)
        seen.append((np.asarray(groups_), splits))
        return splits

    selection_patient_folds = selection.patient_folds
    monkeypatch.setattr(selection, "patient_folds", spy)
    LassoSelector(Cs=4, cv=4).fit(X[["f0", "f1", "f6"]], y, groups=groups)
    assert seen, "the LASSO's cross-validation did not go through patient_folds"
    for used, splits in seen:
        np.testing.assert_array_equal(used, groups)
        for train, test in splits:
            assert set(used[train]).isdisjoint(used[test])


def test_lasso_index_method_and_errors():
    X, y, groups = informative()
    lasso = LassoSelector(method="index", Cs=6, cv=3).fit(X[["f0", "f1", "f6"]], y, groups=groups)
    assert "f0" in lasso.get_feature_names_out()
    with pytest.raises(SelectionError, match="'ridge'"):
        LassoSelector(method="ridge").fit(X, y)
    with pytest.raises(SelectionError, match="'spearmen'"):
        CorrelationFilter(method="spearmen").fit(X, y)


def test_univariate_fallback_keeps_the_best_feature():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    y = np.repeat([0, 1, 2], 20)
    selector = UnivariateFilter(alpha=1e-12).fit(X, y)
    assert selector.fallback_ and selector.get_support().sum() == 1
    assert selector.get_support()[np.argmin(selector.pvalues_)]


def test_fuse_checks_ids_and_names():
    a = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.Index(["c1", "c2"], name="case_id"))
    b = pd.DataFrame({"y": [3.0, 4.0, 5.0]}, index=pd.Index(["c2", "c1", "c3"], name="case_id"))
    fused = fuse([a, b])
    assert fused.loc["c1", "y"] == 4.0 and list(fused.index) == ["c1", "c2"]
    with pytest.raises(SelectionError, match="column 'x' is in both"):
        fuse([a, a.copy()], ["radiomics", "morphometry"])
    doubled = pd.concat([a, a])
    with pytest.raises(SelectionError, match="case_id used more than once: c1"):
        fuse([doubled])
