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
