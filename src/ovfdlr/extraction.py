"""The per-case extraction loop shared by radiomics, morphometry and deep features.

For every case of a cohort: look the result up in the cache under a key made of the image and
mask content hashes, the mask label and the stage's resolved settings; compute only what is
missing, in parallel (:mod:`ovfdlr.parallel`), writing each result to the cache the moment it
arrives; record every failure with its reason and go on; assemble one float64 feature table
indexed by case_id (in manifest order) and a separate diagnostics table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ovfdlr import imaging
from ovfdlr.cache import CaseCache, file_digest, stable_hash
from ovfdlr.parallel import TaskFailure, run_tasks

ERROR_COLUMNS = ["case_id", "stage", "reason"]


@dataclass(frozen=True)
class CaseTask:
    """What a stage needs to know of one case (picklable, for worker processes)."""

    case_id: str
    image: str
    mask: str
    mask_label: int = 1


class Stage(Protocol):
    """A per-case feature stage: a picklable callable plus the settings that key its cache."""

    name: str

    def cache_settings(self) -> dict[str, Any]: ...

    def __call__(self, task: CaseTask) -> dict[str, Any]: ...


@dataclass
class ExtractionResult:
    """Features (float64, index case_id), diagnostics (text) and failures of one stage.

    ``computed`` counts the cases computed by this call, ``cached`` those found in the cache.
    """

    features: pd.DataFrame
    diagnostics: pd.DataFrame
    errors: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ERROR_COLUMNS))
    computed: int = 0
    cached: int = 0

    @property
    def failed(self) -> int:
        return len(self.errors)


def tasks_from_cohort(cohort: pd.DataFrame) -> list[CaseTask]:
    """One task per row of a cohort frame (see :func:`ovfdlr.cohort.load_manifest`)."""
    return [
        CaseTask(str(r.case_id), str(r.image), str(r.mask), int(r.mask_label))
        for r in cohort.itertuples(index=False)
    ]


def case_key(stage: Stage, settings_hash: str, task: CaseTask) -> str:
    """Cache key: stage, settings, image and mask content hashes, mask label."""
    for kind, path in (("image", task.image), ("mask", task.mask)):
        if not Path(path).exists():
            raise imaging.ImageReadError(f"{kind} file not found: {path}")
    return stable_hash(
        stage.name, settings_hash, file_digest(task.image), file_digest(task.mask), task.mask_label
    )


def extract_features(
    stage: Stage,
    tasks: list[CaseTask],
    *,
    cache_dir: str | Path | None,
    jobs: int | None = 1,
    scheduler: Any = None,
    progress: bool = True,
    on_case: Callable[[str, dict | TaskFailure], None] | None = None,
) -> ExtractionResult:
    """Run ``stage`` over ``tasks`` with caching, parallelism and failure records.

    ``cache_dir=None`` disables the cache. Results (cached or new) are assembled in task order;
    a failed case is absent from the tables and listed in ``errors`` with its reason.
    """
    cache = CaseCache(cache_dir, stage.name) if cache_dir is not None else None
    settings_hash = stable_hash(stage.cache_settings())
    results: dict[str, dict] = {}
    errors: list[dict] = []
    keys: dict[str, str] = {}
    pending: list[CaseTask] = []
    for task in tasks:
        if cache is None:
            pending.append(task)
            continue
        try:
            keys[task.case_id] = case_key(stage, settings_hash, task)
        except (OSError, imaging.ImageReadError) as exc:
            errors.append({"case_id": task.case_id, "stage": stage.name, "reason": str(exc)})
            continue
        hit = cache.get(keys[task.case_id])
        if hit is not None:
            results[task.case_id] = hit
        else:
            pending.append(task)
    n_cached = len(results)

    def record(index: int, result: dict | TaskFailure) -> None:
        task = pending[index]
        if isinstance(result, TaskFailure):
            errors.append({"case_id": task.case_id, "stage": stage.name, "reason": result.reason})
        else:
            results[task.case_id] = result
            if cache is not None:
                cache.put(keys[task.case_id], result)
        if on_case is not None:
            on_case(task.case_id, result)

    run_tasks(
        stage,
        pending,
        jobs=jobs,
        scheduler=scheduler,
        description=stage.name,
        progress=progress,
        on_result=record,
    )
    order = [t.case_id for t in tasks if t.case_id in results]
    features = pd.DataFrame.from_dict(
        {cid: results[cid]["features"] for cid in order}, orient="index", dtype="float64"
    )
    diagnostics = pd.DataFrame.from_dict(
        {cid: results[cid].get("diagnostics", {}) for cid in order}, orient="index"
    )
    for frame in (features, diagnostics):
        frame.index = pd.Index(order, name="case_id", dtype="object")
    error_frame = pd.DataFrame(errors, columns=ERROR_COLUMNS)
    position = {t.case_id: i for i, t in enumerate(tasks)}
    error_frame = error_frame.sort_values("case_id", key=lambda s: s.map(position))
    return ExtractionResult(
        features,
        diagnostics,
        error_frame.reset_index(drop=True),
        computed=len(results) - n_cached,
        cached=n_cached,
    )


def write_errors(path: str | Path, stage: str, errors: pd.DataFrame) -> None:
    """Replace ``stage``'s rows of an ``errors.csv`` (other stages' rows are kept)."""
    path = Path(path)
    if path.is_file():
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
        old = old[old["stage"] != stage]
    else:
        old = pd.DataFrame(columns=ERROR_COLUMNS)
    merged = pd.concat([old, errors[ERROR_COLUMNS]], ignore_index=True)
    if merged.empty and not path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    merged.to_csv(path, index=False)


def write_tables(result: ExtractionResult, out: str | Path) -> dict[str, Path]:
    """Write features to ``out`` (Parquet), diagnostics beside it, failures to ``errors.csv``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = {"features": out}
    result.features.to_parquet(out)
    if not result.diagnostics.empty:
        diagnostics = out.with_name(out.name.removesuffix(".parquet") + ".diagnostics.parquet")
        result.diagnostics.astype("string").to_parquet(diagnostics)
        written["diagnostics"] = diagnostics
    return written
