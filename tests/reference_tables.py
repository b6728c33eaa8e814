"""Compare a run's result tables with the tables recorded for the same config and seed.

``tests/reference/<name>/`` holds the tables of a fixed-seed run recorded before a change that
must not alter results (README.md there says which run and when). Tables written since then
carry a ``scoring`` column (apparent / out-of-fold / held-out) where the recorded ones named
the out-of-fold rows ``<training> (cv)``; :func:`as_recorded` maps the new form onto the old
before comparing. The training cohort's ``nested-cv`` view (nested cross-validation) is left
out where the recorded tables have none (:func:`without_new_views`): a new view, not a change
of the recorded ones. Floats are compared with a relative tolerance (summation order may change
in the last bits), everything else exactly.

    python tests/reference_tables.py tests/reference/demo runs/demo
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ARM_TABLES = (
    "performance",
    "per_class_auc",
    "selected_features",
    "cv_search",
    "metrics",
    "calibration_summary",
)
RUN_TABLES = ("comparison", "cohort_classes")
RTOL = 1e-9


def as_recorded(frame: pd.DataFrame) -> pd.DataFrame:
    """A table with a ``scoring`` column in the recorded form (no column; ``train (cv)``)."""
    if "scoring" not in frame.columns:
        return frame
    frame = frame.copy()
    oof = frame["scoring"] == "out-of-fold"
    frame["cohort"] = frame["cohort"].astype(str).where(~oof, frame["cohort"] + " (cv)")
    return frame.drop(columns="scoring")


def without_new_views(frame: pd.DataFrame, recorded: pd.DataFrame) -> pd.DataFrame:
    """The table less the nested cross-validation view when the recorded one has none (a run
    with nested CV on compared with tables recorded without it)."""
    if "scoring" not in frame.columns:
        return frame
    if "scoring" in recorded.columns and (recorded["scoring"] == "nested-cv").any():
        return frame
    return frame[frame["scoring"] != "nested-cv"]


def _sort(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [
        c
        for c in ("classifier", "cohort", "scoring", "test", "class", "decision", "metric", "fold")
        if c in frame.columns
    ]
    keys += [c for c in frame.columns[:1] if c not in keys]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True) if keys else frame


def differences(reference: Path, run: Path) -> list[str]:
    """Every difference between the recorded tables and the run's, one line each."""
    found = []
    pairs = [(reference / f"{t}.csv", run / "tables" / f"{t}.csv") for t in RUN_TABLES]
    for arm in sorted(p.name for p in reference.iterdir() if p.is_dir()):
        pairs += [
            (reference / arm / f"{t}.csv", run / "arms" / arm / "tables" / f"{t}.csv")
            for t in ARM_TABLES
        ]
    for recorded_path, path in pairs:
        if not path.is_file():
            found.append(f"{path}: missing")
            continue
        recorded = pd.read_csv(recorded_path, keep_default_na=False, na_values=[""])
        table = without_new_views(
            pd.read_csv(path, keep_default_na=False, na_values=[""]), recorded
        )
        if "scoring" not in recorded.columns:  # recorded before the scoring column
            table = as_recorded(table)
        recorded, table = _sort(recorded), _sort(table)
        name = path.relative_to(run)
        if list(table.columns) != list(recorded.columns):
            found.append(f"{name}: columns {list(table.columns)} != {list(recorded.columns)}")
            continue
        if len(table) != len(recorded):
            found.append(f"{name}: {len(table)} rows, recorded {len(recorded)}")
            continue
        for column in recorded.columns:
            a, b = table[column], recorded[column]
            if pd.api.types.is_numeric_dtype(b) and pd.api.types.is_numeric_dtype(a):
                x, y = a.to_numpy(np.float64), b.to_numpy(np.float64)
                same = np.isclose(x, y, rtol=RTOL, atol=1e-12) | (np.isnan(x) & np.isnan(y))
            else:
                # missing on both sides is the same, whichever dtype pandas read it as
                same = (a.astype(str) == b.astype(str)).to_numpy() | (
                    a.isna() & b.isna()
                ).to_numpy()
            if not same.all():
                row = int(np.flatnonzero(~same)[0])
                found.append(
                    f"{name}: column {column}, row {row}: {a.iloc[row]!r} != recorded "
                    f"{b.iloc[row]!r} ({int((~same).sum())} rows differ)"
                )
    return found


if __name__ == "__main__":
    problems = differences(Path(sys.argv[1]), Path(sys.argv[2]))
    print("\n".join(problems) or "the run's tables equal the recorded ones")
    sys.exit(1 if problems else 0)
