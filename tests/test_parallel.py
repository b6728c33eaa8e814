"""Background processes (``ovfdlr predict`` computes features in them while the model loads):
results and errors come back, and nothing outlives the command that started them."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from ovfdlr.parallel import BackgroundCall, BackgroundError


def gone(pid: int, within: float = 60.0) -> bool:
    """Whether the process ends (or is a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


def test_result_and_error_come_back():
    assert BackgroundCall(math.sqrt, 16.0).result() == 4.0
    with pytest.raises(ValueError, match="math domain error"):
        BackgroundCall(math.sqrt, -1.0).result()


def test_terminate_stops_it_and_a_killed_process_is_an_error():
    call = BackgroundCall(time.sleep, 600)
    call.terminate()
    assert not call.process.is_alive()

    call = BackgroundCall(time.sleep, 600)
    os.kill(call.process.pid, signal.SIGKILL)
    with pytest.raises(BackgroundError, match="stopped without a result"):
        call.result()


def test_it_stops_when_the_process_that_started_it_is_killed():
    code = (
        "import time\n"
        "from ovfdlr.parallel import BackgroundCall\n"
        "if __name__ == '__main__':\n"
        "    call = BackgroundCall(time.sleep, 600)\n"
        "    print(call.process.pid, flush=True)\n"
        "    time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(parent.stdout.readline())
        assert psutil.pid_exists(child)
        parent.kill()
        parent.wait()
        assert gone(child), "the background process outlived the process that started it"
    finally:
        parent.kill()
        if child is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(child).kill()


def _blas_threads(_):
    from threadpoolctl import threadpool_info

    return sorted({pool["num_threads"] for pool in threadpool_info()}), os.getpid()


def test_worker_processes_share_the_cores_out(monkeypatch):
    """Each of N workers runs its BLAS/OpenMP pools with cores // N threads (at least one), so
    workers on every core do not start a thread per core each."""
    from ovfdlr import parallel

    monkeypatch.setattr(parallel, "available_cores", lambda: 4)
    assert parallel.worker_threads(2) == 2
    assert parallel.worker_threads(4) == parallel.worker_threads(8) == 1
    monkeypatch.undo()
    expected = max(1, parallel.available_cores() // 2)
    results = parallel.run_tasks(_blas_threads, list(range(6)), jobs=2, progress=False)
    assert {pid for _, pid in results} - {os.getpid()}  # ran in worker processes
    assert all(threads == [expected] for threads, _ in results), results
    parallel.shutdown_workers()
