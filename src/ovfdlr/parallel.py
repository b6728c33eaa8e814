"""The one place that knows how work is spread over processes or a Dask cluster.

Every stage that loops over cases calls :func:`run_tasks`. It runs a picklable function over a
list of task arguments either

- serially in this process (``jobs=1``),
- in joblib worker processes on this machine (``jobs=N``; ``None`` or ``-1`` means all cores), or
- on a ``dask.distributed`` cluster (``scheduler="tcp://HOST:PORT"``, or a ``Client``).

Results arrive as they finish, so callers can cache each one at once (a run killed half-way
loses nothing it finished) and the progress bar shows cases done, failures and the ETA. A task
that raises does not stop the batch: its exception becomes a :class:`TaskFailure` carrying the
reason, and the caller decides what to record.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
R = TypeVar("R")

console = Console(stderr=True)


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised: which one, the one-line reason and the full traceback."""

    index: int
    reason: str
    detail: str = ""


def available_cores() -> int:
    """Cores this process may use (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def resolve_jobs(jobs: int | None) -> int:
    """``None``, 0 or a negative number mean all cores; anything else is taken as given."""
    if jobs is None or jobs <= 0:
        return available_cores()
    return int(jobs)


def _call(fn: Callable[[T], R], index: int, arg: T) -> tuple[int, R | TaskFailure]:
    try:
        return index, fn(arg)
    except Exception as exc:  # a batch goes on past one bad case
        # ovfdlr's own errors are written for the user; others keep their type for context
        own = type(exc).__module__.startswith("ovfdlr")
        reason = str(exc).strip() if own else f"{type(exc).__name__}: {exc}".strip()
        return index, TaskFailure(index, reason.splitlines()[0], traceback.format_exc())


def _iter_serial(fn, tasks) -> Iterator[tuple[int, Any]]:
    for i, arg in enumerate(tasks):
        yield _call(fn, i, arg)


def _iter_joblib(fn, tasks, jobs: int) -> Iterator[tuple[int, Any]]:
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=jobs, return_as="generator_unordered", backend="loky")
    yield from parallel(delayed(_call)(fn, i, arg) for i, arg in enumerate(tasks))


def _iter_dask(fn, tasks, scheduler) -> Iterator[tuple[int, Any]]:
    from dask.distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = [
            client.submit(_call, fn, i, arg, pure=False, key=f"ovfdlr-task-{os.getpid()}-{i}")
            for i, arg in enumerate(tasks)
        ]
        for future in as_completed(futures):
            yield future.result()
            future.release()
    finally:
        if client is not scheduler:
            client.close()


def iter_results(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    jobs: int | None = 1,
    scheduler: Any = None,
) -> Iterator[tuple[int, R | TaskFailure]]:
    """Yield ``(index, result_or_failure)`` for every task, in order of completion."""
    if not tasks:
        return iter(())
    if scheduler is not None:
        return _iter_dask(fn, tasks, scheduler)
    n = min(resolve_jobs(jobs), len(tasks))
    if n <= 1:
        return _iter_serial(fn, tasks)
    return _iter_joblib(fn, tasks, n)


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True):
    """A rich progress bar with cases done, failures and ETA; yields ``advance(failed=False)``."""
    if not enabled:
        yield lambda failed=False: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, failed=0)
        failures = 0

        def advance(failed: bool = False) -> None:
            nonlocal failures
            failures += int(failed)
            progress.update(task, advance=1, failed=failures)

        yield advance


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    jobs: int | None = 1,
    scheduler: Any = None,
    description: str = "working",
    progress: bool = True,
    on_result: Callable[[int, R | TaskFailure], None] | None = None,
) -> list[R | TaskFailure]:
    """Run ``fn`` over ``tasks``; return results in task order, failures as :class:`TaskFailure`.

    ``on_result(index, result)`` is called in this process as each task finishes, before the
    next result is awaited: the place to write a cache entry so nothing finished is lost.
    """
    results: list[Any] = [None] * len(tasks)
    with progress_bar(description, len(tasks), enabled=progress) as advance:
        for index, result in iter_results(fn, tasks, jobs=jobs, scheduler=scheduler):
            results[index] = result
            if on_result is not None:
                on_result(index, result)
            advance(isinstance(result, TaskFailure))
    return results
