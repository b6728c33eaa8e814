"""How a row of predictions was scored, and how such rows are named and ordered.

The training cohort is scored up to three times: ``apparent`` (by the models fitted on all of it:
a resubstitution estimate, optimistic), ``out-of-fold`` (each row by the cross-validation model
that did not see it) and, when nested cross-validation ran, ``nested-cv`` (each row by the model
that the whole training procedure - selection, tuning, the choice of classifier - built without
it: an estimate of the procedure, :func:`ovfdlr.training.nested_cv`). Every other cohort is
``held-out``. Prediction and evaluation tables carry
this in a ``scoring`` column beside ``cohort``; nothing is encoded in a cohort's name.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

APPARENT = "apparent"
OUT_OF_FOLD = "out-of-fold"
NESTED = "nested-cv"
HELD_OUT = "held-out"
SCORINGS = (APPARENT, OUT_OF_FOLD, NESTED, HELD_OUT)  # the training cohort's views first
VALIDATION_ORDER = ("internal", "external", "prospective")  # the usual validation cohorts

# what each kind of estimate can claim, for tables and the report
CLAIMS = {
    APPARENT: "apparent: the training rows scored by models fitted on them (optimistic)",
    OUT_OF_FOLD: "out-of-fold: each training row scored by a cross-validation model that did "
    "not see it",
    NESTED: "nested cv: each training row scored by the model the whole training procedure "
    "(selection, tuning, choice of classifier) built without it (estimates the procedure, not "
    "the final model)",
    HELD_OUT: "held-out: a cohort no model or selection step saw",
}


def cohort_order(cohorts: Iterable[str], training: str = "train") -> list[str]:
    """The training cohort first, then internal, external, prospective, then any other
    cohort alphabetically (each once)."""
    present = list(dict.fromkeys(str(c) for c in cohorts))
    usual = [training, *VALIDATION_ORDER]
    return [c for c in usual if c in present] + sorted(c for c in present if c not in usual)


def view_label(cohort: str, scoring: str) -> str:
    """``train (out-of-fold)``, ``train (apparent)``, ``train (nested cv)``, ``internal``: how a
    table names a view."""
    if scoring == HELD_OUT:
        return cohort
    return f"{cohort} (nested cv)" if scoring == NESTED else f"{cohort} ({scoring})"


def view_slug(cohort: str, scoring: str) -> str:
    """The file-name form of a view: ``train``, ``train-cv``, ``train-nested``, ``internal``
    (figure names)."""
    slug = str(cohort).replace(" ", "-").replace("(", "").replace(")", "")
    return {OUT_OF_FOLD: f"{slug}-cv", NESTED: f"{slug}-nested"}.get(scoring, slug)


def view_order(views: Iterable[tuple[str, str]], training: str = "train") -> list[tuple[str, str]]:
    """(cohort, scoring) pairs in reading order: the training cohort's apparent, out-of-fold
    and nested-cv views, then the other cohorts in :func:`cohort_order`."""
    present = list(dict.fromkeys((str(c), str(s)) for c, s in views))
    rank = {c: i for i, c in enumerate(cohort_order([c for c, _ in present], training))}
    return sorted(present, key=lambda v: (rank[v[0]], SCORINGS.index(v[1])))


def view_sort_key(cohort, scoring, training: str = "train"):
    """A key for sorting table columns ``cohort`` and ``scoring`` together (pandas ``key``)."""
    order = view_order(zip(cohort, scoring, strict=True), training)
    rank = {v: i for i, v in enumerate(order)}
    return [rank[(str(c), str(s))] for c, s in zip(cohort, scoring, strict=True)]


def with_scoring(frame: pd.DataFrame, training: str = "train") -> pd.DataFrame:
    """A table with a ``scoring`` column: as it is when it has one; a table written before the
    column existed (out-of-fold rows under the cohort name ``<training> (cv)``, apparent ones
    under ``<training>``) gets it, and the out-of-fold rows their cohort's name back."""
    if "scoring" in frame.columns:
        return frame
    frame = frame.copy()
    cohort = frame["cohort"].astype(str)
    oof = cohort == f"{training} (cv)"
    scoring = np.where(oof, OUT_OF_FOLD, np.where(cohort == training, APPARENT, HELD_OUT))
    frame.insert(frame.columns.get_loc("cohort") + 1, "scoring", scoring)
    frame.loc[oof, "cohort"] = training
    return frame


def in_view_order(frame: pd.DataFrame, training: str = "train") -> pd.DataFrame:
    """A table with ``cohort`` and ``scoring`` columns (:func:`with_scoring` adds the latter to
    older tables), its rows in :func:`view_order` (stable within a view)."""
    frame = with_scoring(frame, training)
    if frame.empty:
        return frame
    rank = view_sort_key(frame["cohort"], frame["scoring"], training)
    return frame.iloc[np.argsort(rank, kind="stable")]


def rows_in_cohort_order(frame: pd.DataFrame, training: str = "train") -> pd.DataFrame:
    """A table whose first column names cohorts, its rows in :func:`cohort_order`; rows that
    name no cohort (totals such as ``(all)``) after them, in place."""
    keys = frame.iloc[:, 0].astype(str)
    rank = {c: i for i, c in enumerate(cohort_order(keys, training))}
    return frame.iloc[sorted(range(len(frame)), key=lambda i: rank.get(keys.iat[i], len(rank)))]
