"""The per-case extraction loop: cache, resume after SIGKILL, joblib and Dask give one answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ovfdlr.cohort import load_manifest
from ovfdlr.radiomics import RadiomicsStage, extract_radiomics, load_params

from .conftest import cube_case, write_manifest

FAST = {"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "glcm": []}}


def make_cohort(folder, n, shape=(32, 32, 32), box=(6, 26)):
    rows = []
    for i in range(n):
        image, mask = cube_case(folder, f"c{i:02d}", shape=shape, box=box)
        rows.append(
            {
                "case_id": f"c{i:02d}",
                "patient_id": f"p{i}",
                "image": image.name,
                "mask": mask.name,
                "mask_label": 1,
                "label": i % 3,
                "cohort": "train",
                "centre": "A",
            }
        )
    return write_manifest(folder, rows)


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    return load_manifest(make_cohort(folder, 6))


def test_rerun_recomputes_nothing_and_changes_recompute(small_cohort, tmp_path):
    first = extract_radiomics(small_cohort, FAST, cache_dir=tmp_path, progress=False)
    assert (first.computed, first.cached, first.failed) == (6, 0, 0)
    again = extract_radiomics(small_cohort, FAST, cache_dir=tmp_path, progress=False)
    assert (again.computed, again.cached) == (0, 6)
    pd.testing.assert_frame_equal(first.features, again.features)
    pd.testing.assert_frame_equal(first.diagnostics, again.diagnostics)

    changed = {**FAST, "setting": {"binWidth": 10}}
    other = extract_radiomics(small_cohort, changed, cache_dir=tmp_path, progress=False)
    assert (other.computed, other.cached) == (6, 0)
    assert not other.features.equals(first.features)

    # new content in one image: only that case is recomputed (the key hashes content, not paths)
    case = small_cohort.iloc[0]["case_id"]
    cube_case(tmp_path / "elsewhere", case, shape=(32, 32, 32), box=(6, 26))
    modified = small_cohort.copy()
    modified.loc[case, "image"] = str(tmp_path / "elsewhere" / f"{case}_ct.nii.gz")
    third = extract_radiomics(modified, FAST, cache_dir=tmp_path, progress=False)
    assert (third.computed, third.cached) == (0, 6)  # same bytes, new path: still cached
    noisy = tmp_path / "noisy_ct.nii.gz"
    from .conftest import write_volume

    write_volume(noisy, np.random.default_rng(1).normal(0, 50, (32, 32, 32)).astype(np.int16))
    modified.loc[case, "image"] = str(noisy)
    fourth = extract_radiomics(modified, FAST, cache_dir=tmp_path, progress=False)
    assert (fourth.computed, fourth.cached) == (1, 5)


def test_joblib_and_dask_match_serial(small_cohort, tmp_path):
    from dask import distributed

    params = load_params()
    serial = extract_radiomics(small_cohort, params, cache_dir=None, jobs=1, progress=False)
    parallel = extract_radiomics(small_cohort, params, cache_dir=None, jobs=2, progress=False)
    pd.testing.assert_frame_equal(serial.features, parallel.features, check_exact=True)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        dask = extract_radiomics(
            small_cohort,
            params,
            cache_dir=None,
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    pd.testing.assert_frame_equal(serial.features, dask.features, check_exact=True)
    assert serial.features.shape == (6, 1130)


def test_stage_is_picklable():
    import pickle

    stage = RadiomicsStage(FAST, threads=1)
    assert pickle.loads(pickle.dumps(stage)) == stage


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path):
    manifest = make_cohort(tmp_path / "cohort", 14, shape=(40, 40, 40), box=(8, 32))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"imageType": {"Original": {}, "LoG": {"sigma": [1.0, 2.0]}}}))
    command = [
        sys.executable,
        "-m",
        "ovfdlr",
        "extract",
        "radiomics",
        str(manifest),
        "--params",
        str(params),
        "--jobs",
        "1",
    ]
    killed_cache = tmp_path / "cache-killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, "--out", str(tmp_path / "killed.parquet"), "--cache", str(killed_cache)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    entries = []
    while time.monotonic() < deadline and process.poll() is None:
        entries = list(killed_cache.rglob("*.json"))
        if len(entries) >= 4:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(list(killed_cache.rglob("*.json")))
    assert 4 <= done_before < 14
    assert not (tmp_path / "killed.parquet").exists()

    resumed = subprocess.run(
        [*command, "--out", str(tmp_path / "killed.parquet"), "--cache", str(killed_cache)],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",  # the progress bars are not ASCII, whatever the locale
        check=True,
    )
    assert f"cached {done_before}" in resumed.stdout
    assert f"computed {14 - done_before}" in resumed.stdout
    subprocess.run(
        [*command, "--out", str(tmp_path / "straight.parquet"), "--cache", str(tmp_path / "c2")],
        env=env,
        capture_output=True,
        check=True,
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "killed.parquet"),
        pd.read_parquet(tmp_path / "straight.parquet"),
        check_exact=True,
    )


def test_damaged_cache_entry_is_recomputed(small_cohort, tmp_path):
    first = extract_radiomics(small_cohort, FAST, cache_dir=tmp_path, progress=False)
    entry = next((tmp_path / "radiomics").rglob("*.json"))
    entry.write_text('{"features": {"orig')  # a torn write from a crashed older version
    again = extract_radiomics(small_cohort, FAST, cache_dir=tmp_path, progress=False)
    assert (again.computed, again.cached) == (1, 5)
    pd.testing.assert_frame_equal(first.features, again.features)


def test_missing_file_is_recorded_not_raised(small_cohort, tmp_path):
    broken = small_cohort.copy()
    broken.loc[broken.index[2], "mask"] = str(tmp_path / "gone.nii.gz")
    result = extract_radiomics(broken, FAST, cache_dir=tmp_path, progress=False)
    assert result.failed == 1
    assert result.errors.iloc[0]["case_id"] == broken.index[2]
    assert "mask file not found" in result.errors.iloc[0]["reason"]
    assert len(result.features) == 5


def _crash_on_c02(task):
    """A stage function that kills its worker process on one case."""
    if task.case_id == "c02":
        os.kill(os.getpid(), signal.SIGKILL)
    return {"features": {"value": float(len(task.case_id))}}


class CrashingStage:
    name = "crashing"

    def cache_settings(self):
        return {"crash": "c02"}

    def __call__(self, task):
        return _crash_on_c02(task)


def test_a_case_that_kills_its_worker_does_not_end_the_batch(small_cohort, tmp_path):
    from ovfdlr.extraction import extract_features, tasks_from_cohort

    result = extract_features(
        CrashingStage(),
        tasks_from_cohort(small_cohort),
        cache_dir=tmp_path,
        jobs=2,
        progress=False,
    )
    assert result.errors["case_id"].tolist() == ["c02"]
    assert "worker process died" in result.errors.iloc[0]["reason"]
    assert sorted(result.features.index) == ["c00", "c01", "c03", "c04", "c05"]


def test_shutdown_workers_stops_the_idle_pool():
    """Idle workers wait 300 s for more work; a process started by multiprocessing (as
    ``ovfdlr predict`` starts them) must stop them itself or it waits for them at exit."""
    import multiprocessing

    from ovfdlr.parallel import run_tasks, shutdown_workers

    assert run_tasks(abs, [-1, -2, -3, -4], jobs=2, progress=False) == [1, 2, 3, 4]
    workers = [p for p in multiprocessing.active_children() if "Loky" in p.name]
    assert len(workers) >= 2 and all(p.is_alive() for p in workers)
    shutdown_workers()
    assert not any(p.is_alive() for p in workers)
    shutdown_workers()  # nothing left to stop: a no-op


def test_duplicate_case_ids_are_refused(small_cohort):
    doubled = pd.concat([small_cohort, small_cohort.iloc[[1]]])
    with pytest.raises(ValueError, match="case_id used more than once: c01"):
        extract_radiomics(doubled, FAST, cache_dir=None, progress=False)


def test_digests_are_remembered_across_processes(small_cohort, tmp_path):
    from ovfdlr import cache

    extract_radiomics(small_cohort, FAST, cache_dir=tmp_path, progress=False)
    index = cache.DigestIndex(tmp_path)
    image = small_cohort.iloc[0]["image"]
    key = cache._stat_key(Path(image))
    assert index.get(key) == cache.file_digest(image)
    # a file rewritten with other bytes has another stat key, so it is hashed again
    os.utime(image, ns=(1, 1))
    assert index.get(cache._stat_key(Path(image))) is None
