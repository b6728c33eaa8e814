"""SHAP explanations of an arm's chosen model (Lundberg & Lee, NeurIPS 2017; the shap package).

The explained function is the classifier on its own inputs: the selected, z-scored features
that the selection pipeline hands it. The explainer follows the model type:

- random forest, extra trees: ``TreeExplainer`` (exact, path-dependent), explaining the class
  probabilities;
- XGBoost, LightGBM: ``TreeExplainer``, explaining the raw margins (per-class log-odds, the
  softmax input);
- logistic regression: ``LinearExplainer`` with the training rows as background, explaining the
  per-class logits;
- SVM, KNN, MLP: ``KernelExplainer`` with a k-means summary of the training rows, explaining the
  class probabilities.

Values are per class: ``values[i, j, k]`` is feature j's contribution to case i's output for
class k, and additivity holds: ``base_values[i, k] + values[i, :, k].sum() = output[i, k]``
(checked by the tests for every model type). Global importance is the mean |SHAP| per feature,
per class and over the classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ovfdlr.classifiers import info_of, keys_with_explainer
from ovfdlr.labels import LabelScheme, resolve

TREE_PROBABILITY = keys_with_explainer("tree-probability")
TREE_MARGIN = keys_with_explainer("tree-margin")
KERNEL = keys_with_explainer("kernel")


@dataclass
class ShapResult:
    """Per-class SHAP values of a set of cases and what they explain."""

    values: np.ndarray  # (cases, features, classes)
    base_values: np.ndarray  # (cases, classes)
    data: pd.DataFrame  # the classifier's inputs (cases x features)
    output: np.ndarray  # the explained model output (cases, classes)
    output_name: str
    explainer: str
    classes: tuple[int, ...] = (0, 1, 2)  # the label scheme's class values, in order

    @property
    def features(self) -> list[str]:
        return list(self.data.columns)

    def importance(self) -> pd.DataFrame:
        """Mean |SHAP| per feature: one column per class and ``overall`` (mean over classes),
        sorted by ``overall``."""
        mean_abs = np.abs(self.values).mean(axis=0)
        table = pd.DataFrame(
            mean_abs, index=self.features, columns=[f"class {c}" for c in self.classes]
        )
        table["overall"] = table.mean(axis=1)
        return table.sort_values("overall", ascending=False).rename_axis("feature")

    def additivity_error(self) -> float:
        """Largest |base + sum(SHAP) - output| over cases and classes."""
        return float(np.abs(self.base_values + self.values.sum(axis=1) - self.output).max())

    def explanation(self, class_index: int, case: int | None = None):
        """A ``shap.Explanation`` for one class (and one case), for shap's plots."""
        import shap

        rows = slice(None) if case is None else case
        return shap.Explanation(
            values=self.values[rows, :, class_index],
            base_values=self.base_values[rows, class_index],
            data=self.data.to_numpy()[rows],
            feature_names=self.features,
        )

    def long(self) -> pd.DataFrame:
        """Every value as a row: case_id, feature, class, shap, feature value."""
        _cases, _features, classes = self.values.shape
        index = pd.MultiIndex.from_product(
            [self.data.index, self.features, list(self.classes)],
            names=["case_id", "feature", "class"],
        )
        frame = pd.DataFrame({"shap": self.values.reshape(-1)}, index=index).reset_index()
        frame["value"] = np.repeat(self.data.to_numpy().reshape(-1), classes)
        return frame


def _stack(values, n_cases: int, n_features: int) -> np.ndarray:
    """shap's outputs (a list per class, or an array) as (cases, features, classes)."""
    if isinstance(values, list):
        return np.stack([np.asarray(v) for v in values], axis=-1)
    values = np.asarray(values)
    if values.ndim == 2:  # a single output
        return values[:, :, None]
    if values.shape[:2] == (n_cases, n_features):
        return values
    return np.moveaxis(values, 0, -1)


def _base(expected, n_cases: int, n_classes: int) -> np.ndarray:
    expected = np.asarray(expected, dtype=np.float64).reshape(-1)
    if expected.size == n_classes:
        return np.tile(expected, (n_cases, 1))
    return expected.reshape(n_cases, n_classes)


def _full_classes(array: np.ndarray, classes_, scheme: LabelScheme) -> np.ndarray:
    """Map a model's class columns (class positions, see :meth:`LabelScheme.positions`) onto
    the scheme's classes (absent classes stay 0)."""
    out = np.zeros((*array.shape[:-1], scheme.n_classes))
    for j, c in enumerate(classes_):
        out[..., int(c)] = array[..., j]
    return out


def explain(
    model: Pipeline,
    background: pd.DataFrame,
    cases: pd.DataFrame,
    *,
    kernel_background: int = 10,
    kernel_samples: int = 500,
    seed: int = 0,
    background_selected: bool = False,
    labels: LabelScheme | None = None,
) -> ShapResult:
    """SHAP values of an arm model (selection + classifier) for ``cases``.

    ``background`` are the training cohort's features (the explainers' reference data): raw
    fused features like ``cases``, or already passed through the fitted selection when
    ``background_selected`` (what a bundle stores). Kernel explanations draw their coalitions
    from a generator re-seeded with ``seed`` for every case, so a case's values do not depend
    on which other cases are explained with it. ``labels`` is the run's label scheme (its
    classes order the last axis; default ASTLOF).

    A binary model's single-output explainers (logistic regression's logit, the boosters'
    margin) explain class 1: class 0's values are their negatives (the margin of class 0 is
    minus that of class 1), so both columns are filled and additivity holds for each.
    """
    import shap

    selection, classifier = model.named_steps["selection"], model.named_steps["classifier"]
    data = selection.transform(cases)
    reference = background if background_selected else selection.transform(background)
    reference = reference[list(data.columns)]
    key = _classifier_key(classifier)
    n, p = data.shape
    if key in TREE_PROBABILITY or key in TREE_MARGIN:
        explainer = shap.TreeExplainer(classifier)
        values = _stack(explainer.shap_values(data, check_additivity=True), n, p)
        base = _base(explainer.expected_value, n, values.shape[-1])
        if key in TREE_PROBABILITY:
            output, name = classifier.predict_proba(data), "probability"
        elif key == "xgb":
            output, name = classifier.predict(data, output_margin=True), "log-odds (margin)"
        else:
            output, name = classifier.predict(data, raw_score=True), "log-odds (raw score)"
        label = "TreeExplainer"
    elif key == "lr":
        explainer = shap.LinearExplainer(
            classifier, shap.maskers.Independent(reference.to_numpy(), max_samples=len(reference))
        )
        values = _stack(explainer.shap_values(data.to_numpy()), n, p)
        base = _base(explainer.expected_value, n, values.shape[-1])
        output, name = classifier.decision_function(data), "logit"
        label = "LinearExplainer"
    elif key in KERNEL:
        summary = shap.kmeans(reference.to_numpy(), min(kernel_background, len(reference)))
        columns = data.columns

        def probabilities(array):  # the classifier was fitted on named columns
            return classifier.predict_proba(pd.DataFrame(array, columns=columns))

        explainer = shap.KernelExplainer(probabilities, summary)
        per_case = []
        for row in data.to_numpy():
            # KernelExplainer draws its coalitions from numpy's global generator
            np.random.seed(seed)  # noqa: NPY002
            values = explainer.shap_values(row[None, :], nsamples=kernel_samples, silent=True)
            per_case.append(_stack(values, 1, p))
        values = np.concatenate(per_case, axis=0)
        base = _base(explainer.expected_value, n, values.shape[-1])
        output, name = classifier.predict_proba(data), "probability"
        label = f"KernelExplainer (k-means background of {kernel_background})"
    else:  # pragma: no cover - every classifier of ovfdlr.classifiers is covered above
        raise ValueError(f"no SHAP explainer for {type(classifier).__name__}")
    scheme = resolve(labels)
    output = np.asarray(output, dtype=np.float64).reshape(n, -1)
    classes_ = [int(c) for c in getattr(classifier, "classes_", range(scheme.n_classes))]
    if values.shape[-1] == 1 and len(classes_) == 2:  # one output: class 1 against class 0
        values, base, output = (np.concatenate([-a, a], axis=-1) for a in (values, base, output))
    if values.shape[-1] != scheme.n_classes or classes_ != list(range(scheme.n_classes)):
        values, base, output = (
            _full_classes(values, classes_, scheme),
            _full_classes(base, classes_, scheme),
            _full_classes(output, classes_, scheme),
        )
    return ShapResult(values, base, data, output, name, label, scheme.values)


def _classifier_key(classifier) -> str:
    return info_of(classifier).key


def sample_cases(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.Index:
    """Up to ``n`` case ids, stratified by cohort, in a fixed order (for costly explainers)."""
    if len(frame) <= n:
        return frame.index
    share = n / len(frame)
    chosen = []
    for _, group in frame.groupby("cohort", sort=True):
        k = max(1, round(len(group) * share))
        chosen.extend(group.sample(min(k, len(group)), random_state=seed).index)
    return pd.Index(chosen[:n])
