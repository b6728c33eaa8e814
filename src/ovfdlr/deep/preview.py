"""Contact sheets of the prepared 2-D inputs, so a user can check them by eye."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ovfdlr.atomic import atomic_path
from ovfdlr.deep.inputs import InputSettings
from ovfdlr.parallel import TaskFailure, run_tasks


def contact_sheets(
    cohort: pd.DataFrame,
    out: str | Path,
    settings: InputSettings | None = None,
    *,
    per_sheet: int = 36,
    columns: int = 6,
    jobs: int | None = 1,
    progress: bool = True,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Write PNG sheets (``per_sheet`` cases each) of every case's input with its ROI outline.

    Returns the sheets written and the (case_id, reason) of cases that could not be prepared.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ovfdlr.deep.features import _Prepare
    from ovfdlr.extraction import tasks_from_cohort

    settings = settings or InputSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = tasks_from_cohort(cohort)
    results = run_tasks(
        _Prepare(settings), tasks, jobs=jobs, description="preview", progress=progress
    )
    ready, failed = [], []
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, TaskFailure):
            failed.append((task.case_id, result.reason))
        else:
            ready.append((task.case_id, result))
    sheets = []
    for number, start in enumerate(range(0, len(ready), per_sheet), start=1):
        chunk = ready[start : start + per_sheet]
        rows = math.ceil(len(chunk) / columns)
        figure, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.1 * rows), squeeze=False)
        for axis in axes.ravel():
            axis.axis("off")
        for axis, (case_id, prepared) in zip(axes.ravel(), chunk, strict=False):
            rgb = settings.plane == "2.5d"
            picture = np.moveaxis(prepared.image, 0, -1) if rgb else prepared.image[0]
            axis.imshow(picture, cmap=None if rgb else "gray", vmin=0, vmax=1)
            axis.contour(prepared.mask, levels=[0.5], colors="red", linewidths=0.6)
            label = cohort.loc[case_id, "label"] if "label" in cohort.columns else None
            suffix = "" if label is None or pd.isna(label) else f"  class {int(label)}"
            axis.set_title(f"{case_id}{suffix}", fontsize=7)
        figure.suptitle(
            f"{settings.plane} inputs, window {settings.window_level:g}/{settings.window_width:g}"
            f" HU, margin {settings.margin:.0%} (sheet {number})",
            fontsize=9,
        )
        figure.tight_layout()
        path = out / f"inputs-{number:03d}.png"
        try:  # each file renamed into place when complete: a sheet that exists is whole
            with atomic_path(path.with_suffix(".svg")) as temporary:
                figure.savefig(temporary, format="svg", dpi=90, metadata={"Date": None})
            with atomic_path(path) as temporary:
                figure.savefig(temporary, format="png", dpi=90)
        finally:
            plt.close(figure)
        sheets.append(path)
    return sheets, failed
