r"""Decision curve analysis, one-vs-rest per class (Vickers & Elkin, Med Decis Making 2006).

At threshold probability :math:`p_t`, a case is treated as class ``k`` when
``proba[:, k] >= p_t``. With ``n`` cases, TP and FP counted one-vs-rest,

.. math::

    \mathrm{NB}_\text{model}(p_t) = \frac{TP}{n} - \frac{FP}{n}\,\frac{p_t}{1 - p_t}, \qquad
    \mathrm{NB}_\text{all}(p_t) = \pi - (1 - \pi)\frac{p_t}{1 - p_t}, \qquad
    \mathrm{NB}_\text{none} = 0,

with :math:`\pi` the proportion of class ``k`` ("treat all" calls every case class ``k``).
The odds :math:`p_t/(1-p_t)` weigh a false positive against a true positive as the threshold
implies. Same convention (``>=``) as the ``dcurves`` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ovfdlr.stats._checks import StatsError, check_classes, class_labels, proba_matrix

__all__ = ["decision_curves"]


def decision_curves(
    y: Any,
    proba: Any,
    *,
    classes: Sequence[int] = (0, 1, 2),
    thresholds: Any = None,
) -> pd.DataFrame:
    """Net benefit of the model, of treating all and of treating none, per class and threshold.

    ``thresholds``: threshold probabilities strictly between 0 and 1 (default
    ``np.arange(0.01, 1.0, 0.01)``). Columns: class, threshold, net_benefit_model,
    net_benefit_all, net_benefit_none (Vickers & Elkin, Med Decis Making 2006;26:565-74).
    """
    classes = check_classes(classes)
    yi = class_labels(y, classes)
    p = proba_matrix(proba, yi.size, len(classes), unit_interval=True)
    if thresholds is None:
        thresholds = np.arange(0.01, 1.0, 0.01)
    try:
        t = np.asarray(thresholds, dtype=float).ravel()
    except (TypeError, ValueError):
        raise StatsError("thresholds must be numeric") from None
    if t.size == 0 or np.isnan(t).any() or (t <= 0).any() or (t >= 1).any():
        raise StatsError("thresholds must be non-empty and lie strictly between 0 and 1")
    n = yi.size
    odds = t / (1.0 - t)
    frames = []
    for k, label in enumerate(classes):
        pos = yi == k
        prevalence = pos.mean()
        ps = np.sort(p[pos, k])
        ns = np.sort(p[~pos, k])
        tp = ps.size - np.searchsorted(ps, t, side="left")
        fp = ns.size - np.searchsorted(ns, t, side="left")
        frames.append(
            pd.DataFrame(
                {
                    "class": label,
                    "threshold": t,
                    "net_benefit_model": tp / n - fp / n * odds,
                    "net_benefit_all": prevalence - (1.0 - prevalence) * odds,
                    "net_benefit_none": 0.0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
