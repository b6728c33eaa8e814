"""The one place that knows how work is spread over processes or a Dask cluster.

Every stage that loops over cases calls :func:`run_tasks`. It runs a picklable function over a
list of task arguments either

- serially in this process (``jobs=1``),
- in worker processes on this machine (``jobs=N``; ``None`` or ``0`` means all cores), through
  joblib's loky executor, or
- on a ``dask.distributed`` cluster (``scheduler="tcp://HOST:PORT"``, or a ``Client``).

Results arrive as they finish, so callers can cache each one at once (a run killed half-way
loses nothing it finished) and the progress bar shows cases done, failures and the ETA. A task
that raises does not stop the batch: its exception becomes a :class:`TaskFailure` carrying the
reason, and the caller decides what to record. A task that kills its worker process (out of
memory, a crash in native code) is retried in a fresh pool and, if it kills that one too,
recorded as a failure; the other tasks complete.

:class:`BackgroundCall` runs one function in a fresh process while the caller does other work
(``ovfdlr predict`` computes features while the model loads).
"""

from __future__ import annotations

import contextlib
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
        return index, TaskFailure(index, _reason(exc), traceback.format_exc())


def _reason(exc: BaseException) -> str:
    """One line for the user: ovfdlr's own errors are written for them, others keep their type."""
    text = str(exc).strip()
    lines = text.splitlines()
    own = type(exc).__module__.startswith("ovfdlr")
    first = lines[0] if lines else ""
    if own and first:
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _iter_serial(fn, tasks) -> Iterator[tuple[int, Any]]:
    for i, arg in enumerate(tasks):
        yield _call(fn, i, arg)


# A case that kills its worker process (out of memory, a crash in native code) must not end the
# batch. At most `jobs` tasks are in flight, so when a worker dies the suspects are known; each
# suspect is then run alone in a fresh pool, and one that kills that pool too is recorded as a
# failure. The other cases complete.
WORKER_DIED = (
    "the worker process died while computing this case (out of memory, or a crash in native code)"
)


_executor: Any = None  # this process's worker pool, once it has one


#: The thread pools a worker process's libraries start (OpenBLAS, MKL, OpenMP, numexpr).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def worker_threads(jobs: int) -> int:
    """Threads each of ``jobs`` worker processes may start: the cores shared out, at least one.

    As joblib does for its own workers: without it every worker's BLAS starts a thread per core,
    and on a machine with as many workers as cores the threads of small matrix products wait
    on each other (measured on 2 cores: an MLP grid of one cross-validation fold took 96 s with
    two workers of two BLAS threads each, 3 s with one thread each, the same probabilities).
    """
    return max(1, available_cores() // max(1, jobs))


def _workers(jobs: int, kill_workers: bool = False):
    """The reusable loky pool of ``jobs`` workers; they stay idle up to 300 s between batches,
    so the stages of a run share one pool. Each worker's thread pools are limited to
    :func:`worker_threads` (set in its environment before it imports anything)."""
    global _executor
    from joblib.externals import loky

    threads = str(worker_threads(jobs))
    _executor = loky.get_reusable_executor(
        max_workers=jobs,
        timeout=300,
        kill_workers=kill_workers,
        env=dict.fromkeys(THREAD_VARIABLES, threads),
    )
    return _executor


def shutdown_workers(*, kill: bool = False) -> None:
    """Stop this process's worker pool now instead of after its idle timeout (``kill``: at
    once, abandoning the cases in flight).

    A process started by ``multiprocessing`` must call this before its work function returns:
    at exit it waits for its child processes before the interpreter's exit hooks would stop
    the pool, so idle workers would hold it for the full timeout.
    """
    global _executor
    if _executor is not None:
        _executor.shutdown(wait=True, kill_workers=kill)
        _executor = None


class BackgroundError(RuntimeError):
    """A background process that ended without a result (killed, or crashed in native code)."""


class BackgroundCall:
    """``fn(*args, **kwargs)`` running in a fresh process (spawned: safe on every platform).

    :meth:`result` waits for its return value, or raises the exception it raised;
    :meth:`terminate` stops it, and its worker pool, at once. The process also stops when the
    process that started it dies, so an interrupted or killed command leaves nothing behind.
    ``fn`` and its arguments must be picklable; a script that starts one needs the usual
    ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, fn: Callable[..., R], *args: Any, **kwargs: Any):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.connection, sender = context.Pipe(duplex=False)
        name = f"ovfdlr-{getattr(fn, '__name__', 'background')}"
        self.process = context.Process(
            target=_background_main, args=(sender, fn, args, kwargs), name=name
        )
        self.process.start()
        sender.close()  # the child holds the only writing end: its death reads as EOF

    def result(self) -> Any:
        try:
            ok, value = self.connection.recv()
        except EOFError:
            self.process.join()
            raise BackgroundError(
                f"the background process stopped without a result (exit code "
                f"{self.process.exitcode})"
            ) from None
        self.process.join()
        if ok:
            return value
        raise value

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.connection.close()


def _background_main(sender, fn, args, kwargs) -> None:
    import signal
    import sys
    import threading

    def stop(*_):  # SIGTERM from terminate(), or the parent gone: unwind, stop the pool
        raise SystemExit(1)

    signal.signal(signal.SIGTERM, stop)
    parent = _parent_sentinel()
    if parent is not None:

        def watch() -> None:
            from multiprocessing.connection import wait

            wait([parent])
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, daemon=True).start()
    try:
        outcome = (True, fn(*args, **kwargs))
    except SystemExit:
        shutdown_workers(kill=True)
        sys.exit(1)
    except BaseException as exc:  # handed to the caller, which raises it there
        outcome = (False, exc)
    shutdown_workers()
    try:
        sender.send(outcome)
    except Exception:  # an exception or result that does not pickle: keep its message
        sender.send((False, BackgroundError(f"{type(outcome[1]).__name__}: {outcome[1]}")))


def _parent_sentinel():
    import multiprocessing

    parent = multiprocessing.parent_process()
    return None if parent is None else parent.sentinel


def _iter_processes(fn, tasks, jobs: int) -> Iterator[tuple[int, Any]]:
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    queue = list(range(len(tasks)))[::-1]  # pop() from the end keeps the task order
    suspects: list[int] = []
    crashed: set[int] = set()
    executor = _workers(jobs)
    running: dict[Any, int] = {}
    while queue or suspects or running:
        if suspects:
            if not running:  # a suspect runs alone, so its crash convicts it
                index = suspects.pop()
                running[executor.submit(_call, fn, index, tasks[index])] = index
        else:
            while queue and len(running) < jobs:
                index = queue.pop()
                running[executor.submit(_call, fn, index, tasks[index])] = index
        done, _ = wait(list(running), return_when=FIRST_COMPLETED)
        in_flight = []
        for future in done:
            index = running.pop(future)
            try:
                yield future.result()
            except BrokenProcessPool:
                in_flight.append(index)
        if in_flight:
            in_flight += list(running.values())
            running.clear()
            for index in in_flight:
                if index in crashed:
                    yield index, TaskFailure(index, WORKER_DIED)
                else:
                    crashed.add(index)
                    suspects.append(index)
            executor = _workers(jobs, kill_workers=True)


def _iter_dask(fn, tasks, scheduler) -> Iterator[tuple[int, Any]]:
    import uuid

    from dask.distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    batch = uuid.uuid4().hex  # keys unique per batch: a reused client never returns old results
    try:
        futures = {
            client.submit(_call, fn, i, arg, pure=False, key=f"ovfdlr-{batch}-{i}"): i
            for i, arg in enumerate(tasks)
        }
        for future in as_completed(futures):
            index = futures[future]
            try:
                yield future.result()
            except Exception as exc:  # KilledWorker and friends: this case, not the batch
                yield index, TaskFailure(index, _reason(exc))
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
    return _iter_processes(fn, tasks, n)


_COLUMNS = (
    TextColumn("[bold]{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TaskProgressColumn(),
    TextColumn("[red]{task.fields[failed]} failed"),
    TimeElapsedColumn(),
    TextColumn("ETA"),
    TimeRemainingColumn(),
)
_shared: Progress | None = None


@contextmanager
def shared_progress():
    """One live display for a whole run: every :func:`progress_bar` inside adds its bar to it."""
    global _shared
    if _shared is not None:  # already inside one
        yield _shared
        return
    with Progress(*_COLUMNS, console=console, transient=False) as progress:
        _shared = progress
        try:
            yield progress
        finally:
            _shared = None


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True):
    """A rich progress bar with cases done, failures and ETA; yields ``advance(failed=False)``.

    Inside :func:`shared_progress` the bar joins the run's display instead of opening its own.
    """
    if not enabled:
        yield lambda failed=False: None
        return
    with contextlib.ExitStack() as stack:
        progress = _shared or stack.enter_context(
            Progress(*_COLUMNS, console=console, transient=False)
        )
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
