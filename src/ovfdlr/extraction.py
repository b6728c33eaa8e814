"""The per-case extraction loop shared by radiomics, morphometry and deep features.

For every case of a cohort: look the result up in the cache under a key made of the image and
mask content hashes, the mask label and the stage's resolved settings; compute only what is
missing, in parallel (:mod:`ovfdlr.parallel`), writing each result to the cache the moment it
arrives; record every failure with its reason and go on; assemble one float64 feature table
indexed by case_id (in manifest order) and a separate diagnostics table. A damaged cache entry
is reported, counted (:attr:`ExtractionResult.damaged`) and recomputed. Tables are written
atomically (:mod:`ovfdlr.atomic`): a file that exists is complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ovfdlr import imaging
from ovfdlr.atomic import WriteError, atomic_write
from ovfdlr.cache import CaseCache, DigestIndex, default_cache_dir, file_digest, stable_hash
from ovfdlr.parallel import TaskFailure, run_tasks

ERROR_COLUMNS = ["case_id", "stage", "table", "reason"]

CacheDir = str | Path | bool | None
"""``True``: the user cache (:func:`ovfdlr.cache.default_cache_dir`); a path: that folder;
``False`` or ``None``: no cache."""


def resolve_cache_dir(cache_dir: CacheDir) -> Path | None:
    if cache_dir is True:
        return default_cache_dir()
    if cache_dir is None or cache_dir is False:
        return None
    return Path(cache_dir)


@dataclass(frozen=True)
class CaseTask:
    """What a stage needs to know of one case (picklable, for worker processes)."""

    case_id: str
    image: str
    mask: str
    mask_label: int = 1
    series_uid: str | None = None  # the image's series in a DICOM folder of several


class Stage(Protocol):
    """A per-case feature stage: a picklable callable plus the settings that key its cache."""

    name: str

    def cache_settings(self) -> dict[str, Any]: ...

    def __call__(self, task: CaseTask) -> dict[str, Any]: ...


@dataclass
class ExtractionResult:
    """Features (float64, index case_id), diagnostics (text) and failures of one stage.

    ``computed`` counts the cases computed by this call, ``cached`` those found in the cache,
    ``damaged`` the cache entries (and digest index files) found damaged and not used.
    """

    features: pd.DataFrame
    diagnostics: pd.DataFrame
    errors: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ERROR_COLUMNS))
    computed: int = 0
    cached: int = 0
    damaged: int = 0
    # each feature column's IBSI tag (columns feature, ibsi_tag), for an IBSI-compliant engine
    ibsi_tags: pd.DataFrame | None = None

    @property
    def failed(self) -> int:
        return len(self.errors)


def tasks_from_cohort(cohort: pd.DataFrame) -> list[CaseTask]:
    """One task per row of a cohort frame (see :func:`ovfdlr.cohort.load_manifest`).

    Raises ``ValueError`` naming the case_ids that occur more than once: each case's result is
    stored and reported under its case_id.
    """
    duplicated = cohort["case_id"][cohort["case_id"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"case_id used more than once: {', '.join(map(str, duplicated[:10]))}")
    return [
        CaseTask(str(r.case_id), str(r.image), str(r.mask), int(r.mask_label), series_uid_of(r))
        for r in cohort.itertuples(index=False)
    ]


def series_uid_of(row: Any) -> str | None:
    """A cohort row's ``series_uid`` (the manifest's optional column), ``None`` when empty."""
    value = getattr(row, "series_uid", None)
    if value is None or pd.isna(value) or not str(value).strip():
        return None
    return str(value).strip()


def case_key(
    stage_name: str, settings_hash: str, task: CaseTask, index: DigestIndex | None = None
) -> str:
    """Cache key: stage, settings, image and mask content hashes, mask label."""
    digests = []
    for kind, path in (("image", task.image), ("mask", task.mask)):
        imaging.require_path(path, kind)
        series_uid = task.series_uid if kind == "image" else None
        digests.append(file_digest(path, index, series_uid))
    return stable_hash(stage_name, settings_hash, *digests, task.mask_label)


def lookup(
    stage_name: str, settings_hash: str, tasks: list[CaseTask], cache: CaseCache | None
) -> tuple[dict[int, dict], dict[int, str], list[int], list[dict]]:
    """Split tasks into cached results, keys of the rest, pending positions and failures."""
    hits: dict[int, dict] = {}
    keys: dict[int, str] = {}
    pending: list[int] = []
    errors: list[dict] = []
    for position, task in enumerate(tasks):
        if cache is None:
            pending.append(position)
            continue
        try:
            keys[position] = case_key(stage_name, settings_hash, task, cache.digests)
        except WriteError:  # the disk, not the case: the stage ends
            raise
        except (OSError, ValueError) as exc:
            errors.append({"case_id": task.case_id, "stage": stage_name, "reason": str(exc)})
            continue
        hit = cache.get(keys[position])
        if hit is not None:
            hits[position] = hit
        else:
            pending.append(position)
    return hits, keys, pending, errors


def assemble(
    tasks: list[CaseTask], results: dict[int, dict], errors: list[dict], n_cached: int
) -> ExtractionResult:
    """Tables in task order from per-position results and failure records."""
    order = sorted(results)
    index = pd.Index([tasks[i].case_id for i in order], name="case_id", dtype="object")
    if order:
        features = pd.DataFrame.from_records(
            [results[i]["features"] for i in order], index=index
        ).astype("float64")
        diagnostics = pd.DataFrame.from_records(
            [results[i].get("diagnostics", {}) for i in order], index=index
        )
    else:  # every case failed: empty tables, the reasons are in errors
        features, diagnostics = pd.DataFrame(index=index), pd.DataFrame(index=index)
    position = {t.case_id: i for i, t in enumerate(tasks)}
    error_frame = pd.DataFrame(errors, columns=ERROR_COLUMNS)
    error_frame = error_frame.sort_values("case_id", key=lambda s: s.map(position))
    return ExtractionResult(
        features,
        diagnostics,
        error_frame.reset_index(drop=True),
        computed=len(results) - n_cached,
        cached=n_cached,
    )


def extract_features(
    stage: Stage,
    tasks: list[CaseTask],
    *,
    cache_dir: CacheDir = True,
    jobs: int | None = 1,
    scheduler: Any = None,
    progress: bool = True,
) -> ExtractionResult:
    """Run ``stage`` over ``tasks`` with caching, parallelism and failure records.

    Results (cached or new) are assembled in task order; a failed case is absent from the
    tables and listed in ``errors`` with its reason.
    """
    root = resolve_cache_dir(cache_dir)
    cache = CaseCache(root, stage.name) if root is not None else None
    settings_hash = stable_hash(stage.cache_settings())
    results, keys, pending, errors = lookup(stage.name, settings_hash, tasks, cache)
    n_cached = len(results)

    def record(index: int, result: dict | TaskFailure) -> None:
        position = pending[index]
        if isinstance(result, TaskFailure):
            errors.append(
                {"case_id": tasks[position].case_id, "stage": stage.name, "reason": result.reason}
            )
            return
        results[position] = result
        if cache is not None:
            cache.put(keys[position], result)

    run_tasks(
        stage,
        [tasks[i] for i in pending],
        jobs=jobs,
        scheduler=scheduler,
        description=stage.name,
        progress=progress,
        on_result=record,
    )
    result = assemble(tasks, results, errors, n_cached)
    result.damaged = damaged_count(cache)
    return result


def damaged_count(cache: CaseCache | None) -> int:
    """Damaged cache entries and digest index files a cache met (each was reported)."""
    return 0 if cache is None else len(cache.damaged) + len(cache.digests.damaged)


def write_errors(path: str | Path, table: str, errors: pd.DataFrame) -> None:
    """Replace the rows of ``table`` (an output's file name) in an ``errors.csv``; rows of other
    tables are kept. Writes nothing when there is nothing to say and no file yet."""
    path = Path(path)
    if path.is_file():
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
        old = old[old.get("table", pd.Series("", index=old.index)) != table]
    else:
        old = pd.DataFrame(columns=ERROR_COLUMNS)
    new = errors.assign(table=table)[ERROR_COLUMNS]
    merged = pd.concat([old.reindex(columns=ERROR_COLUMNS), new], ignore_index=True)
    if merged.empty and not path.exists():
        return
    atomic_write(path, lambda temporary: merged.to_csv(temporary, index=False))


def diagnostics_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".parquet") + ".diagnostics.parquet")


def ibsi_tags_path(out: str | Path) -> Path:
    """``<features>.ibsi_tags.csv`` beside a feature table."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".parquet") + ".ibsi_tags.csv")


def write_tables(result: ExtractionResult, out: str | Path) -> dict[str, Path]:
    """Write features to ``out`` (Parquet) and the diagnostics beside it (when there are any;
    a stale diagnostics file from an earlier run is removed), and the IBSI tags of the columns
    (``<features>.ibsi_tags.csv``: feature, ibsi_tag) when the engine gives them."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = {"features": out}
    tags = ibsi_tags_path(out)
    if result.ibsi_tags is not None:
        table = result.ibsi_tags
        atomic_write(tags, lambda temporary: table.to_csv(temporary, index=False))
        written["ibsi_tags"] = tags
    else:
        tags.unlink(missing_ok=True)
    diagnostics = diagnostics_path(out)
    if result.diagnostics.shape[1]:  # first: the features table marks the pair complete
        atomic_write(diagnostics, result.diagnostics.astype("string").to_parquet)
        written["diagnostics"] = diagnostics
    else:
        diagnostics.unlink(missing_ok=True)
    atomic_write(out, result.features.to_parquet)
    return written
