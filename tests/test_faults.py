"""Faults of long batch runs: a second writer, a killed holder, damaged caches and outputs, and
writes that fail for want of space (ENOSPC) or over the file size limit (EFBIG)."""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ovfdlr import atomic
from ovfdlr.atomic import WriteError, atomic_write, atomic_write_text, remove_partial_files
from ovfdlr.cache import CaseCache, DigestIndex, encode_entry, file_digest
from ovfdlr.cli import app
from ovfdlr.experiment import RunState, _stage
from ovfdlr.records import parse_run, to_data
from ovfdlr.runlock import RunFolderBusy, RunLock

from .test_extraction import make_cohort

runner = CliRunner()


def partial_files(folder: Path) -> list[Path]:
    """Temporary files of interrupted writes under ``folder``."""
    return [p for p in folder.rglob(".*") if p.name.endswith((".tmp", ".partial"))]


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory) -> Path:
    """Four small cube cases (morphometry on them takes a fraction of a second)."""
    folder = tmp_path_factory.mktemp("tiny")
    return make_cohort(folder, 4, shape=(24, 24, 24), box=(6, 18))


class FullDisk:
    """A file of a full disk: the first half of a write lands, then ENOSPC."""

    def __init__(self, path, mode):
        self.handle = open(path, mode)  # noqa: SIM115 (closed by __exit__)

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.handle.close()


def fill_the_disk(monkeypatch) -> None:
    """Every atomic write from now on meets a full disk (until ``monkeypatch.undo()``)."""
    monkeypatch.setattr(atomic, "open", FullDisk, raising=False)


# ---------------------------------------------------------------------------------------------
# one writer per run folder


def test_a_run_folder_has_one_writer_and_names_it(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    with RunLock(folder) as lock:
        body = json.loads(lock.path.read_text(encoding="utf-8"))
        assert body["pid"] == os.getpid() and body["host"] == socket.gethostname()
        with pytest.raises(RunFolderBusy) as info:
            RunLock(folder).acquire()
        message = str(info.value)
        assert f"host {socket.gethostname()}, pid {os.getpid()}" in message
        assert f"started {body['started']}" in message
        # `ovfdlr report RUN` writes into the folder: refused too, in one line
        result = runner.invoke(app, ["report", str(folder)])
        assert result.exit_code == 1
        assert "is in use by another run" in result.output and f"pid {os.getpid()}" in result.output
        assert "Traceback" not in result.output
    assert not lock.path.exists()  # released and removed
    with pytest.raises(RuntimeError, match="stage failed"), RunLock(folder):
        raise RuntimeError("stage failed")
    again = RunLock(folder).acquire()  # released on the exception
    assert again.stale is None
    again.release()


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from ovfdlr.runlock import RunLock\n"
            "RunLock(sys.argv[1]).acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}, started "):
            RunLock(folder).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = RunLock(folder).acquire()  # the kernel let the dead process's lock go
    try:
        assert lock.stale is not None and lock.stale.pid == holder.pid
        assert json.loads(lock.path.read_text(encoding="utf-8"))["pid"] == os.getpid()
    finally:
        lock.release()


def test_without_flock_the_lock_body_decides(tmp_path, monkeypatch):
    from ovfdlr import runlock

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(runlock.fcntl, "flock", no_flock)
    folder = tmp_path / "run"
    folder.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(gone.stdout)
    here = socket.gethostname()
    path = folder / ".run.lock"
    for host, pid, busy in ((here, 1, True), ("elsewhere", dead, True), (here, dead, False)):
        path.write_text(json.dumps({"host": host, "pid": pid, "started": "2024-01-01T00:00:00"}))
        if busy:  # alive on this host, or on a host that cannot be asked
            with pytest.raises(RunFolderBusy, match=f"host {host}, pid {pid}"):
                RunLock(folder).acquire()
        else:
            with RunLock(folder) as lock:
                assert lock.stale is not None and lock.stale.pid == dead


# ---------------------------------------------------------------------------------------------
# atomic writes, ENOSPC and EFBIG


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "tables" / "t.csv"
    atomic_write_text(target, "a,b\n1,2\n")
    probe = tmp_path / "probe"
    probe.write_text("")
    assert target.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777  # not mkstemp's 0600

    def half_then(code):
        def write(path: Path) -> None:
            path.write_text("a,b\n3,")
            raise OSError(code, os.strerror(code))

        return write

    reasons = {errno.ENOSPC: "no space left on device", errno.EFBIG: "file too large"}
    for code, reason in reasons.items():
        with pytest.raises(WriteError) as info:
            atomic_write(target, half_then(code))
        assert str(info.value) == f"cannot write {target}: {reason}"
        assert info.value.errno == code
        assert target.read_text(encoding="utf-8") == "a,b\n1,2\n"
        assert partial_files(tmp_path) == []
    with pytest.raises(ValueError):  # any other failure: the same clean-up, its own error
        atomic_write(target, lambda path: (path.write_text("x"), int("y")))
    assert target.read_text(encoding="utf-8") == "a,b\n1,2\n" and partial_files(tmp_path) == []
    # what a killed write leaves is found and removed; finished files are kept
    left = [tmp_path / "tables" / ".t.csv.k2j3.tmp", tmp_path / ".w.safetensors.partial"]
    for path in left:
        path.write_text("half")
    assert sorted(remove_partial_files(tmp_path)) == sorted(left)
    assert target.is_file() and partial_files(tmp_path) == []


def test_enospc_on_a_cache_entry_ends_the_extraction_and_the_rerun_completes(
    tiny_cohort, tmp_path, monkeypatch
):
    cache, out = tmp_path / "cache", tmp_path / "out" / "morphometry.parquet"
    command = ["extract", "morphometry", str(tiny_cohort), "--out", str(out), "--cache", str(cache)]
    fill_the_disk(monkeypatch)
    result = runner.invoke(app, [*command, "--jobs", "1"])
    assert result.exit_code == 1
    assert "error: cannot write " in result.output
    assert ".json: no space left on device" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and list(cache.rglob("*.json")) == []  # no entry, whole or half
    assert partial_files(tmp_path) == []
    monkeypatch.undo()
    result = runner.invoke(app, [*command, "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out)) == 4


def test_efbig_ends_the_extraction_in_a_child_and_the_rerun_resumes(tiny_cohort, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out" / "morphometry.parquet"
    index = DigestIndex(cache)  # known digests: the child's index file does not grow
    table = pd.read_csv(tiny_cohort)
    for name in [*table["image"], *table["mask"]]:
        file_digest(tiny_cohort.parent / name, index)
    command = [sys.executable, "-m", "ovfdlr", "extract", "morphometry", str(tiny_cohort)]
    command += ["--out", str(out), "--cache", str(cache), "--jobs", "1"]
    limit = 8192  # above a cache entry (under 1 kB), below the feature table (over 10 kB)

    def small_files() -> None:  # CPython ignores SIGXFSZ: the write raises EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    child = subprocess.run(
        command, preexec_fn=small_files, capture_output=True, text=True, encoding="utf-8", env=env
    )
    assert child.returncode == 1, child.stdout + child.stderr
    assert f"error: cannot write {out}: file too large" in child.stderr
    assert "Traceback" not in child.stderr
    assert not out.exists() and partial_files(tmp_path) == []
    entries = list(cache.rglob("*.json"))
    assert len(entries) == 4  # each case finished before the table: kept, and whole
    assert all(CaseCache(cache, "morphometry").get(p.stem) is not None for p in entries)
    resumed = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "computed 0, cached 4" in " ".join(resumed.stdout.split())
    assert len(pd.read_parquet(out)) == 4


# ---------------------------------------------------------------------------------------------
# damaged caches are reported and recomputed, never used


def test_a_damaged_cache_entry_is_reported_and_never_used(tmp_path, caplog):
    cache = CaseCache(tmp_path, "stage")
    value = {"features": {"a": 0.1, "b": 123456.0}, "diagnostics": {"v": "1"}}
    data = encode_entry(value)
    cases = {
        "cut": (data[:-3], "bytes of content"),
        "changed": (data.replace(b"123456", b"923456"), "checksum mismatch"),
        "header": (data[:30], "truncated or damaged first line"),
        "empty": (b"", "not a cache entry"),
        "torn-legacy": (b'{"features": {"a": 0.', "not valid JSON"),
    }
    with caplog.at_level(logging.WARNING, logger="ovfdlr.cache"):
        for key, (content, _) in cases.items():
            cache.path(key).parent.mkdir(parents=True, exist_ok=True)
            cache.path(key).write_bytes(content)
            assert cache.get(key) is None, key
            assert not cache.path(key).exists()  # removed: put() writes it again
    reasons = [reason for _, reason in cache.damaged]
    assert len(reasons) == len(cases)
    for (key, (_, why)), (path, reason) in zip(cases.items(), cache.damaged, strict=True):
        assert path == cache.path(key) and why in reason, (key, reason)
        assert any(str(path) in r.getMessage() and why in r.getMessage() for r in caplog.records)
    cache.put("good", value)
    assert cache.get("good") == value
    cache.path("legacy").parent.mkdir(parents=True, exist_ok=True)
    cache.path("legacy").write_text(json.dumps(value))  # an entry from before checksums
    assert cache.get("legacy") == value and len(cache.damaged) == len(cases)


def test_damaged_entries_are_counted_by_the_extraction(tiny_cohort, tmp_path):
    from ovfdlr.cohort import load_manifest
    from ovfdlr.morphometry import extract_morphometry

    cohort = load_manifest(tiny_cohort)
    first = extract_morphometry(cohort, cache_dir=tmp_path, progress=False)
    entry = next((tmp_path / "morphometry").rglob("*.json"))
    entry.write_bytes(entry.read_bytes()[:-5])  # truncated on disk
    again = extract_morphometry(cohort, cache_dir=tmp_path, progress=False)
    assert (again.computed, again.cached, again.damaged) == (1, 3, 1)
    pd.testing.assert_frame_equal(first.features, again.features)


def test_a_damaged_digest_index_is_reported_and_made_again(tmp_path, caplog):
    image = tmp_path / "image.bin"
    image.write_bytes(b"voxels")
    index = DigestIndex(tmp_path / "cache")
    digest = file_digest(image, index)
    index._connection.close()
    index.path.write_bytes(b"this is not an SQLite database, it only has its name" * 100)
    with caplog.at_level(logging.WARNING, logger="ovfdlr.cache"):
        fresh = DigestIndex(tmp_path / "cache")
        key = (str(image.resolve()), 6, image.stat().st_mtime_ns, image.stat().st_ino)
        assert fresh.get(key) is None
        assert len(fresh.damaged) == 1 and fresh.damaged[0][0] == fresh.path
        fresh.put(key, digest)
        assert fresh.get(key) == digest
        with sqlite3.connect(fresh.path) as connection:  # a stored value that is no digest
            connection.execute("UPDATE digests SET digest = 'x'")
        again = DigestIndex(tmp_path / "cache")
        assert again.get(key) is None and "no valid digest" in again.damaged[0][1]
    assert sum(str(fresh.path) in r.getMessage() for r in caplog.records) == 2


# ---------------------------------------------------------------------------------------------
# stages: a damaged output or key file is computed again; a failed stage leaves no key


def test_a_stage_with_a_damaged_output_or_key_file_is_computed_again(tmp_path):
    state = RunState(config=None, out=tmp_path, cache_dir=tmp_path / "cache")
    table = tmp_path / "features" / "t.parquet"
    frame = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.Index(["a", "b"], name="case_id"))
    runs = []

    def work() -> None:
        runs.append(1)
        atomic_write(table, frame.to_parquet)

    def status() -> str:
        _stage(state, "t", "key-1", [table], work)
        return state.stages[-1].status

    assert status() == "computed" and status() == "cached"
    table.write_bytes(table.read_bytes()[:-10])  # truncated: its footer is gone
    assert status() == "computed" and len(runs) == 2
    assert f"stage t: {table} is damaged (unreadable" in state.warnings[-1]
    pd.testing.assert_frame_equal(pd.read_parquet(table), frame)
    keys = state.layout.keys_file
    keys.write_text(keys.read_text(encoding="utf-8")[:-4])  # a torn key file
    assert status() == "computed" and status() == "cached"
    assert sum("every stage is checked again" in w for w in state.warnings) == 1

    def fails() -> None:
        table.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError):
        _stage(state, "t", "key-2", [table], fails)
    assert state.current == "t" and "t" not in json.loads(keys.read_text(encoding="utf-8"))


def test_run_json_records_a_failed_run_and_older_files_read_as_complete():
    data = {
        "ovfdlr": "1.0",
        "created": "2024-01-01T00:00:00+00:00",
        "name": "n",
        "seed": 0,
        "config_sha256": "c",
        "versions": {},
        "manifest": {"path": "m.csv", "sha256": "s", "cases": 3},
        "data_sha256": None,
        "stages": [],
        "arms": {},
        "comparisons": [],
        "training_cohort": "train",
        "warnings": [],
        "failed_cases": 0,
    }
    assert parse_run(data).status == "complete"  # written before runs recorded it
    failed = data | {
        "manifest": {"path": "m.csv", "sha256": None, "cases": None},
        "status": "failed",
        "failed_stage": "cohort",
        "error": "manifest not found: m.csv",
    }
    record = parse_run(failed)
    assert (record.status, record.failed_stage) == ("failed", "cohort")
    assert to_data(record)["error"] == "manifest not found: m.csv"
    with pytest.raises(ValueError, match="status"):
        parse_run(data | {"status": "half-done"})


def test_a_killed_write_is_never_a_finished_file(tmp_path):
    """A writer killed mid-file leaves its temporary file, not a truncated target."""
    target = tmp_path / "features" / "big.parquet"
    code = (
        "import os, signal, sys\n"
        "from ovfdlr.atomic import atomic_write\n"
        "def write(path):\n"
        "    with open(path, 'wb') as handle:\n"
        "        handle.write(b'PAR1' + bytes(4096))\n"
        "        handle.flush()\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic_write(sys.argv[1], write)\n"
    )
    child = subprocess.run([sys.executable, "-c", code, str(target)], check=False)
    assert child.returncode == -signal.SIGKILL
    assert not target.exists() and len(partial_files(tmp_path)) == 1
    assert remove_partial_files(tmp_path) and partial_files(tmp_path) == []


def test_a_cached_cohort_stage_keeps_the_manifest_warnings(tmp_path):
    """run.json's warnings of a resumed run equal those of the run that validated the manifest:
    the cohort stage keeps them in manifest_problems.csv and a cached stage reads them back."""
    from ovfdlr.config import parse_config
    from ovfdlr.experiment import _cohort_stage

    from .conftest import cube_case, write_manifest

    rows = []
    for i in range(3):
        box = (0, 12) if i == 0 else (6, 18)  # case c0's ROI touches the volume border
        image, mask = cube_case(tmp_path, f"c{i}", box=box)
        rows.append(
            {"case_id": f"c{i}", "patient_id": f"p{i}", "image": image.name, "mask": mask.name}
            | {"mask_label": 1, "label": i % 3, "cohort": "train", "centre": "A"}
        )
    manifest = write_manifest(tmp_path, rows)
    config = parse_config({"manifest": str(manifest), "arms": [{"name": "a"}]}, tmp_path / "x.yaml")
    seen = []
    for _ in range(2):
        state = RunState(config, tmp_path / "run", tmp_path / "cache")
        _cohort_stage(state)
        seen.append((state.stages[-1].status, state.warnings))
    assert [status for status, _ in seen] == ["computed", "cached"]
    assert seen[0][1] == seen[1][1]
    assert len(seen[0][1]) == 1 and "row 2, case c0" in seen[0][1][0]
    assert "[roi-border]" in seen[0][1][0]
