"""Statistics for ovfdlr: ROC/AUC, DeLong tests, multi-class AUCs, metrics, calibration, DCA.

Every statistic states its method, direction and alternative, as pROC does; DeLong's variance,
covariance, tests and CIs reproduce pROC's to machine precision. P-values come from survival
functions and lie in [0, 1]; CIs lie in the statistic's range. Bad input (NaN, wrong shapes, a
single class, labels outside ``classes``) raises :class:`StatsError`. See docs/statistics.md.

Modules: :mod:`~ovfdlr.stats.roc` (binary ROC, AUC, AUC CI), :mod:`~ovfdlr.stats.delong`
(fast DeLong covariance and tests), :mod:`~ovfdlr.stats.multiclass` (one-vs-rest, macro/micro,
macro test), :mod:`~ovfdlr.stats.metrics` (classification metrics, Wilson CI, Youden),
:mod:`~ovfdlr.stats.calibration` and :mod:`~ovfdlr.stats.decision` (decision curves).
"""

from ovfdlr.stats._checks import StatsError
from ovfdlr.stats.calibration import (
    brier_score,
    calibration_regression,
    calibration_summary_ci,
    expected_calibration_error,
    reliability_curves,
)
from ovfdlr.stats.decision import decision_curves
from ovfdlr.stats.delong import DeLongTest, delong_covariance, delong_test
from ovfdlr.stats.metrics import (
    classification_metrics,
    confusion_matrix,
    wilson_ci,
    youden_thresholds,
)
from ovfdlr.stats.multiclass import (
    MacroAucTest,
    MulticlassAUC,
    bootstrap_macro_test,
    macro_auc_test,
    one_vs_rest,
    per_class_tests,
)
from ovfdlr.stats.multiplicity import adjust_family, holm
from ovfdlr.stats.roc import AucCI, auc_ci, newcombe_interval, roc_auc, roc_curve

__all__ = [
    "AucCI",
    "DeLongTest",
    "MacroAucTest",
    "MulticlassAUC",
    "StatsError",
    "adjust_family",
    "auc_ci",
    "bootstrap_macro_test",
    "brier_score",
    "calibration_regression",
    "calibration_summary_ci",
    "classification_metrics",
    "confusion_matrix",
    "decision_curves",
    "delong_covariance",
    "delong_test",
    "expected_calibration_error",
    "holm",
    "macro_auc_test",
    "newcombe_interval",
    "one_vs_rest",
    "per_class_tests",
    "reliability_curves",
    "roc_auc",
    "roc_curve",
    "wilson_ci",
    "youden_thresholds",
]
